"""``dualinpaint bench``: how fast inference and training run on this machine, measured the same way.

Rows (each timed after ``warmup`` untimed runs; median and spread of ``runs`` timed runs):

- inference, one image per size (a square random image with a rectangular hole), through
  (a) ``fp32 baseline``: the network as loaded (spectral-norm parametrizations, channels-first, fp32,
  ``torch.no_grad``); (b) ``fast path``: ``fastpath.prepare_for_inference`` (frozen spectral norm, blocked
  attention, channels_last) under ``torch.inference_mode`` with bf16 autocast only where the CPU supports
  it (``--precision fp32|bf16`` forces one); (c) ``torch.compile`` of (b) (``--compile``; the first
  call's time is reported as compile time); (d) ``onnxruntime``: the dynamic-size ONNX export in ONNX
  Runtime (``--onnx``; export time reported), as the package's ``--runtime onnx`` runs it: a model's
  smooth fill is computed by PyTorch on the hole's box and fed to the graph
  (``export.onnx_graph(prefill_input=True)``), the rest runs in ORT.
  Every row also gives the max abs difference of its output from (a).
- photo (``--photo``): a 4000×3000 JPEG with a ~10 % hole, end to end (decode JPEG and mask → Inpainter:
  crop, fill, paste → encode JPEG), in a fresh Python process so that its peak resident memory
  (``VmHWM``; see ``_peak_rss_mb``) belongs to this case alone.
- training (``--train``): one trainer step (critic update(s) + generator update, with the gradient
  penalty when the preset's loss is WGAN-GP, EMA update) on a fixed synthetic batch, in samples/s, for
  fp32 channels-first and for channels_last (+ bf16 where supported); with ``--compile`` also for
  ``train.compile`` (the generator side through ``torch.compile``; compile time = first step).

Device (``--device cpu|cuda|cuda:N``, default cpu): the inference and training rows run there: the
network, its inputs and the trainer live on that device, bf16 autocast runs on its type and
``precision="auto"`` asks that device (``fastpath.bf16_supported(device)``). On CUDA every timed call is
bracketed by ``torch.cuda.synchronize`` (queued kernels are counted), the GPU's name, memory and CUDA
version join the machine info and each row gets ``peak_gpu_mb`` (``torch.cuda.max_memory_allocated``
over the row, inputs included). The photo case's torch runtime runs on the device too (its decode,
crop and encode stay on the CPU); ONNX Runtime runs on the CPU only, so its rows are skipped on CUDA
with a note. Asking for CUDA where there is none is a one-line error.

``--json`` is rewritten after every row (atomically), so an interrupted run keeps the rows it finished.

Timings are wall-clock (``time.perf_counter``) and only mean something on an otherwise idle machine.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_SIZES = (256, 512, 1024)
DEFAULT_TRAIN_SIZES = (128, 256)
PHOTO_SIZE = (4000, 3000)  # width, height
PHOTO_HOLE = 0.10


# --------------------------------------------------------------------------------------------- helpers


def parse_sizes(text: str, what: str = "--sizes") -> list[int]:
    """``"256,512"`` → [256, 512]; a one-line ValueError for anything else."""
    try:
        sizes = [int(s) for s in str(text).split(",") if s.strip()]
    except ValueError:
        raise ValueError(f"{what} {text!r} must be comma-separated integers, e.g. 256,512") from None
    if not sizes or any(s <= 0 for s in sizes):
        raise ValueError(f"{what} {text!r} must list positive sizes, e.g. 256,512")
    return sizes


def measure(
    fn: Callable[[], Any], runs: int, warmup: int, sync: Callable[[], None] | None = None
) -> dict[str, Any]:
    """Call ``fn`` ``warmup`` times untimed, then ``runs`` times timed; seconds: median, min, max, IQR.

    ``sync`` (a device's synchronise, e.g. ``torch.cuda.synchronize``) is called before each timed call
    and, inside its timing, after it: the time then covers the work ``fn`` queued on the device."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        if sync is not None:
            sync()
        t0 = time.perf_counter()
        fn()
        if sync is not None:
            sync()
        times.append(time.perf_counter() - t0)
    return summarise(times)


def summarise(times: list[float]) -> dict[str, Any]:
    """Median, min, max and quartiles (seconds) of a list of timings."""
    q1, q3 = (float(np.percentile(times, q)) for q in (25, 75))
    return {
        "median_s": statistics.median(times),
        "min_s": min(times),
        "max_s": max(times),
        "q1_s": q1,
        "q3_s": q3,
        "runs": len(times),
        "times_s": list(times),
    }


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (or platform.processor())."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info(device: Any = "cpu") -> dict[str, Any]:
    """Cores, CPU model, library versions, torch threads, the device benchmarked and whether it computes
    bf16 natively; on CUDA also the GPU's name, memory, compute capability, CUDA/cuDNN versions and TF32."""
    import torch

    from .fastpath import bf16_supported, physical_cores
    from .inference import resolve_device

    dev = resolve_device(device)

    try:
        import onnxruntime

        ort = onnxruntime.__version__
    except ImportError:
        ort = None
    info: dict[str, Any] = {
        "cpu": cpu_model(),
        "physical_cores": physical_cores(),
        "logical_cpus": os.cpu_count(),
        "torch": torch.__version__,
        "onnxruntime": ort,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "device": str(dev),
        "bf16_supported": bf16_supported(dev),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }
    if dev.type == "cuda":
        props = torch.cuda.get_device_properties(dev)
        info.update(
            gpu=torch.cuda.get_device_name(dev),
            gpu_memory_gb=round(props.total_memory / 2**30, 1),
            gpu_capability=f"{props.major}.{props.minor}",
            cuda=torch.version.cuda,
            cudnn=torch.backends.cudnn.version(),
            tf32={"matmul": torch.backends.cuda.matmul.allow_tf32, "cudnn": torch.backends.cudnn.allow_tf32},
        )
    return info


def load_network(model: str | None, config: str | None) -> tuple[Any, Any, str]:
    """(network in eval mode, Config, description): a model source, or random weights for a preset."""
    import torch

    from .config import load_config
    from .generator import build_generator

    if config is not None:
        cfg = load_config(config)
        torch.manual_seed(0)
        return (
            build_generator(cfg.model).eval().requires_grad_(False),
            cfg,
            f"{config} preset, random weights",
        )
    from .checkpoint import CheckpointError, load_model, packaged_models

    source = model or "default"
    if source == "default" and "default" not in packaged_models() and not Path(source).exists():
        raise ValueError(
            "no packaged model 'default' in this installation yet; benchmark random weights with "
            "--config photo (or pass --model DIR)"
        )
    try:
        net, cfg, _ = load_model(source)
    except CheckpointError as err:
        raise ValueError(f"{err}; or benchmark random weights with --config photo") from None
    return net, cfg, str(source)


def _example(size: int, stride: int) -> tuple[Any, Any]:
    """A random image 1×3×S×S in [-1, 1] and a centred square hole (¼ of the area); S a stride multiple."""
    import torch

    side = max(2 * stride, size // stride * stride)
    g = torch.Generator().manual_seed(0)
    image = torch.rand(1, 3, side, side, generator=g) * 2 - 1
    hole = torch.zeros(1, 1, side, side)
    hole[..., side // 4 : 3 * side // 4, side // 4 : 3 * side // 4] = 1
    return image, hole


class _Device:
    """A benchmarked device: synchronise, and the peak GPU memory of a row (no-ops on the CPU)."""

    def __init__(self, device: Any) -> None:
        from .inference import resolve_device

        self.device = resolve_device(device)
        self.cuda = self.device.type == "cuda"

    def sync(self) -> None:
        if self.cuda:
            import torch

            torch.cuda.synchronize(self.device)

    @property
    def syncer(self) -> Callable[[], None] | None:
        """``sync`` for ``measure``, None on the CPU (nothing to wait for)."""
        return self.sync if self.cuda else None

    def reset_peak(self) -> None:
        if self.cuda:
            import gc

            import torch

            gc.collect()  # an earlier row's networks, held by reference cycles, are freed first
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)

    def peak(self) -> dict[str, float]:
        """``{"peak_gpu_mb": MiB}`` allocated since ``reset_peak`` on CUDA; ``{}`` on the CPU."""
        if not self.cuda:
            return {}
        import torch

        return {"peak_gpu_mb": round(torch.cuda.max_memory_allocated(self.device) / 2**20, 1)}


def _device_of(net: Any) -> Any:
    from .inference import _device_of as device_of

    return device_of(net)


# ------------------------------------------------------------------------------------------- inference


def bench_inference(
    net: Any,
    sizes: list[int],
    *,
    runs: int,
    warmup: int,
    compile: bool = False,
    onnx: bool = False,
    threads: int | None = None,
    precision: str = "auto",
    device: Any = "cpu",
    on_row: Callable[[dict[str, Any]], None] | None = None,
    texture: float = 0.0,
) -> list[dict[str, Any]]:
    """Rows of single-image inference timings: baseline, fast path, optionally compile and ONNX Runtime.

    ``precision`` (auto, fp32, bf16) is the fast path's, as ``Inpainter``'s: auto is bf16 only where
    ``device`` computes bf16 natively. ``device``: where the network (a copy of ``net`` when it lives
    elsewhere) and the inputs go; ONNX Runtime rows are skipped off the CPU. ``on_row`` is called with
    each row as it is done. ``texture`` > 0 adds a row: the fast path followed by
    ``texture.transfer_texture`` at that strength (its output differs from the fp32 fill by design)."""
    import copy

    import torch

    from .fastpath import prepare_for_inference, resolve_precision

    dev = _Device(device)
    stride = net.cfg.stride
    bf16 = resolve_precision(precision, dev.device) == "bf16"
    if _device_of(net) != dev.device:  # the caller's network stays where it is
        net = copy.deepcopy(net).to(dev.device)
    fast = prepare_for_inference(net, channels_last=True)
    fast_name = "fast path (frozen, channels_last, inference_mode" + (", bf16)" if bf16 else ", fp32)")
    session, export_s, onnx_note = None, None, None
    if onnx and dev.cuda:
        onnx_note = f"ONNX Runtime runs on the CPU only: not timed on {dev.device} (use --device cpu)"
    elif onnx:
        from .export import require_onnxruntime, runtime_session

        require_onnxruntime()
        if type(net).__name__ != "DualPathInpainter":
            onnx_note = "ONNX export covers the dual-path model only"
        else:  # as --runtime onnx runs it: the smooth fill in PyTorch, on the hole's box
            session, export_s = runtime_session(fast, threads=threads or torch.get_num_threads())
    rows: list[dict[str, Any]] = []

    def add(row: dict[str, Any]) -> None:
        rows.append(row)
        if on_row is not None:
            on_row(row)

    for size in sizes:
        image, hole = _example(size, stride)
        image, hole = image.to(dev.device), hole.to(dev.device)
        image_cl = image.contiguous(memory_format=torch.channels_last)
        with torch.no_grad():
            ref = net.complete(image, hole)

        def baseline(image=image, hole=hole) -> Any:
            with torch.no_grad():
                return net.complete(image, hole)

        def fast_run(image=image_cl, hole=hole, fn=fast.complete) -> Any:
            with torch.inference_mode(), torch.autocast(dev.device.type, torch.bfloat16, enabled=bf16):
                return fn(image, hole)

        variants: list[tuple[str, Callable[[], Any], dict[str, Any]]] = [
            ("fp32 baseline", baseline, {}),
            (fast_name, fast_run, {}),
        ]
        if compile:
            compiled = torch.compile(fast.complete, dynamic=False)
            dev.sync()
            t0 = time.perf_counter()
            fast_run(fn=compiled)
            dev.sync()
            extra = {"compile_s": time.perf_counter() - t0}
            variants.append(("torch.compile (fast path)", lambda f=compiled: fast_run(fn=f), extra))
        if texture > 0:
            from .texture import transfer_texture

            def textured(image=image_cl, hole=hole) -> Any:
                return transfer_texture(fast_run(image, hole).float(), hole, strength=texture)

            variants.append((f"fast path + texture {texture:g}", textured, {"texture": texture}))
        if session is not None:
            variants.append(
                (
                    "onnxruntime",
                    lambda image=image, hole=hole: session.run(image, hole),
                    {"export_s": export_s, "dynamic_shape": True, "prefill_in_torch": session.takes_base},
                )
            )
        elif onnx_note:
            add({"size": image.shape[-1], "variant": "onnxruntime", "skipped": onnx_note})
        base_median = None
        for name, fn, extra in variants:
            dev.reset_peak()
            out = fn()
            row = {"size": image.shape[-1], "variant": name, **measure(fn, runs, warmup, dev.syncer), **extra}
            row["max_abs_diff"] = float((out.float() - ref).abs().max())
            base_median = base_median or row["median_s"]
            row["speedup"] = base_median / row["median_s"]
            row.update(dev.peak())
            add(row)
            _progress(f"inference {row['size']}² {name}: {row['median_s']:.3f} s{_peak_text(row)}")
    return rows


def _texture_text(row: dict[str, Any]) -> str:
    return f" + texture {row['texture']:g}" if row.get("texture") else ""


def _peak_text(row: dict[str, Any]) -> str:
    return f", peak GPU {row['peak_gpu_mb']:.0f} MB" if row.get("peak_gpu_mb") is not None else ""


# ----------------------------------------------------------------------------------------------- photo


def make_photo(
    folder: Path, size: tuple[int, int] = PHOTO_SIZE, hole: float = PHOTO_HOLE
) -> tuple[Path, Path]:
    """Write a smooth photo-like JPEG (``size`` = W×H) and an elliptical mask covering ``hole`` of it."""
    from PIL import Image, ImageDraw

    w, h = size
    rng = np.random.default_rng(0)
    small = Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8), "RGB")
    arr = np.asarray(small.resize((w, h), Image.Resampling.BICUBIC)).astype(np.int16)
    arr += rng.integers(-12, 13, (h, w, 1), dtype=np.int16)  # sensor-like grain
    photo = folder / "photo.jpg"
    Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB").save(photo, quality=90)
    mask = Image.new("L", (w, h), 0)
    ry = (hole * w * h / np.pi / (w / h)) ** 0.5  # ellipse with the image's aspect: π·rx·ry = hole·W·H
    rx = ry * w / h
    cx, cy = 0.6 * w, 0.45 * h
    ImageDraw.Draw(mask).ellipse((cx - rx, cy - ry, cx + rx, cy + ry), fill=255)
    mask_path = folder / "mask.png"
    mask.save(mask_path)
    return photo, mask_path


def _photo_child(spec: dict[str, Any]) -> dict[str, Any]:
    """Runs in a fresh process: the end-to-end photo case; returns timings and peak RSS."""
    import torch

    from .images import open_image
    from .inference import Inpainter, save_output

    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    dev = _Device(spec.get("device", "cpu"))
    net, cfg, _ = load_network(spec.get("model"), spec.get("config"))
    inpainter = Inpainter(
        net,
        cfg,
        runtime=spec.get("runtime", "torch"),
        threads=spec.get("threads"),
        device=dev.device,
        texture=spec.get("texture", 0.0),
    )
    del net
    rss_loaded = _peak_rss_mb()
    stages: dict[str, list[float]] = {"decode": [], "fill": [], "encode": [], "total": []}
    out = Path(spec["out"])
    for i in range(spec["warmup"] + spec["runs"]):
        t0 = time.perf_counter()
        image, mask = open_image(spec["photo"]), open_image(spec["mask"])
        t1 = time.perf_counter()
        result = inpainter(image, mask)
        t2 = time.perf_counter()
        save_output(result, out)
        t3 = time.perf_counter()
        if i >= spec["warmup"]:
            for key, value in zip(stages, (t1 - t0, t2 - t1, t3 - t2, t3 - t0), strict=True):
                stages[key].append(value)
    hole = np.asarray(open_image(spec["mask"])) > 127
    return {
        "runtime": inpainter.runtime,
        "texture": inpainter.texture,
        "device": str(inpainter.device),
        "image": list(image.size),
        "hole_fraction": float(hole.mean()),
        "working_size": inpainter.working_size,
        **summarise(stages["total"]),
        "stages_median_s": {k: statistics.median(v) for k, v in stages.items() if k != "total"},
        "peak_rss_mb": _peak_rss_mb(),
        "rss_after_load_mb": rss_loaded,
        **dev.peak(),  # CUDA: the peak since the process started
    }


def _peak_rss_mb() -> float:
    """This process's peak resident memory in MiB.

    Linux: ``VmHWM`` of /proc/self/status, the high-water mark of this program image alone. Not
    ``ru_maxrss``: Linux carries the parent's peak into a forked child across ``exec``, so a child
    started by a large benchmark process would report the parent's memory. Elsewhere ``ru_maxrss``
    (KiB on Linux, bytes on macOS).
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def bench_photo(
    model: str | None,
    config: str | None,
    *,
    runs: int,
    warmup: int,
    threads: int | None,
    runtimes: tuple[str, ...] = ("torch",),
    size: tuple[int, int] = PHOTO_SIZE,
    device: Any = "cpu",
    on_row: Callable[[dict[str, Any]], None] | None = None,
    texture: float = 0.0,
) -> list[dict[str, Any]]:
    """The 4000×3000 (``size``) end-to-end case, one fresh subprocess per runtime; the torch runtime's
    network runs on ``device`` (the onnx runtime on the CPU only: refused elsewhere). ``texture`` > 0
    adds one more process: the torch runtime with ``fill --texture`` at that strength."""
    from .inference import resolve_device

    dev = resolve_device(device)
    if dev.type != "cpu" and any(r != "torch" for r in runtimes):
        raise ValueError(f"the photo case runs ONNX Runtime on the CPU only, not on {dev}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="dualinpaint-bench-") as tmp:
        photo, mask = make_photo(Path(tmp), size)
        cases = [(runtime, 0.0) for runtime in runtimes] + ([("torch", texture)] if texture > 0 else [])
        for runtime, strength in cases:
            spec = {
                "model": model,
                "config": config,
                "runs": runs,
                "warmup": warmup,
                "threads": threads,
                "runtime": runtime,
                "texture": strength,
                "device": str(dev),
                "photo": str(photo),
                "mask": str(mask),
                "out": str(Path(tmp) / "out.jpg"),
            }
            proc = subprocess.run(
                [sys.executable, "-m", "dualinpaint.bench", "--photo-child", json.dumps(spec)],
                capture_output=True,
                text=True,
                check=False,
            )
            if proc.returncode != 0:
                tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
                raise RuntimeError(f"the photo benchmark process failed: {tail}")
            row = json.loads(proc.stdout.strip().splitlines()[-1])
            rows.append(row)
            if on_row is not None:
                on_row(row)
            _progress(
                f"photo {size[0]}×{size[1]} ({runtime}{_texture_text(row)}, {dev}): {row['median_s']:.2f} s, "
                f"peak {row['peak_rss_mb']:.0f} MB{_peak_text(row)}"
            )
    return rows


# -------------------------------------------------------------------------------------------- training


class _FixedStream:
    """Stands in for the trainer's BatchStream: the same synthetic batch every time (no data loading)."""

    def __init__(self, batch: int, size: int) -> None:
        import torch

        g = torch.Generator().manual_seed(0)
        self.batch = {"image": torch.rand(batch, 3, size, size, generator=g) * 2 - 1}
        hole = torch.zeros(batch, 1, size, size)
        for i in range(batch):
            y, x = torch.randint(0, size // 2, (2,), generator=g).tolist()
            hole[i, :, y : y + size // 2, x : x + size // 2] = 1
        self.batch["hole"] = hole

    def next(self) -> tuple[dict[str, Any], list[int]]:
        return self.batch, list(range(self.batch["image"].shape[0]))


def bench_train(
    preset: str,
    sizes: list[int],
    batch: int,
    *,
    runs: int,
    warmup: int,
    compile: bool = False,
    precision: str = "auto",
    device: Any = "cpu",
    on_row: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Training step rows: fp32 channels-first, then channels_last (+ bf16 where ``device`` supports it,
    or as ``precision`` forces it), then with ``compile`` channels-first + ``train.compile`` (its first
    step, which compiles, is ``first_step_s``). The trainer lives on ``device``; the batch comes from the
    CPU each step, as a DataLoader's does. ``on_row`` is called with each row as it is done."""
    import warnings

    from .config import load_config
    from .fastpath import resolve_precision
    from .train import make_trainer

    dev = _Device(device)
    bf16 = resolve_precision(precision, dev.device) == "bf16"
    variants = [("fp32 channels-first", ["train.channels_last=false", "train.bf16=false"])]
    if bf16:
        fast = "channels_last + bf16"
    else:
        fast = "channels_last (fp32)" if precision == "fp32" else "channels_last (fp32: no native bf16)"
    variants.append((fast, ["train.channels_last=true", f"train.bf16={str(bf16).lower()}"]))
    if compile:
        variants.append(("fp32 channels-first + train.compile", [*variants[0][1], "train.compile=true"]))
    rows = []
    for size in sizes:
        base = None
        for name, sets in variants:
            # load_size: the synthetic batch is not loaded, and 0 lets any size pass the config checks
            over = [f"data.size={size}", "data.load_size=0", f"data.batch_size={batch}", *sets]
            cfg = load_config(preset, over)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                trainer = make_trainer(cfg, dev.device)
            if cfg.train.bf16 and not trainer.use_bf16:  # the trainer fell back: say what was timed
                name = "channels_last (fp32: no native bf16)"
            stream = _FixedStream(batch, size)
            dev.reset_peak()
            t0 = time.perf_counter()
            trainer.train_step(stream)  # first step: allocations
            dev.sync()
            first = time.perf_counter() - t0
            row = {
                "preset": preset,
                "size": size,
                "batch": batch,
                "variant": name,
                "gan_mode": cfg.loss.gan_mode,
                "n_critic": cfg.optim.n_critic,
                "first_step_s": first,
                **measure(lambda t=trainer, s=stream: t.train_step(s), runs, max(0, warmup - 1), dev.syncer),
            }
            row["samples_per_s"] = batch / row["median_s"]
            base = base or row["samples_per_s"]
            row["speedup"] = row["samples_per_s"] / base
            row.update(dev.peak())
            rows.append(row)
            if on_row is not None:
                on_row(row)
            _progress(
                f"train {preset} {size}² ×{batch} {name}: {row['samples_per_s']:.2f} samples/s"
                f"{_peak_text(row)}"
            )
            del trainer
    return rows


# ----------------------------------------------------------------------------------------------- report


def run_bench(
    *,
    model: str | None = "default",
    config: str | None = None,
    sizes: list[int] | tuple[int, ...] = DEFAULT_SIZES,
    runs: int = 5,
    warmup: int = 1,
    train: bool = False,
    train_config: str = "picnet",
    train_sizes: list[int] | tuple[int, ...] = DEFAULT_TRAIN_SIZES,
    batch: int = 4,
    threads: int | None = None,
    compile: bool = False,
    onnx: bool = False,
    photo: bool = False,
    precision: str = "auto",
    device: Any = "cpu",
    on_update: Callable[[dict[str, Any]], None] | None = None,
    texture: float = 0.0,
) -> dict[str, Any]:
    """Everything ``dualinpaint bench`` measures, as one JSON-ready dict. ``precision`` (auto, fp32,
    bf16) is the fast path's and the fast training row's (auto: bf16 only where ``device`` computes it
    natively). ``device``: where inference, the photo case's torch runtime and training run (cpu,
    cuda, cuda:N; ONNX Runtime rows are skipped off the CPU, with a note). ``train_config``: a preset,
    or several separated by commas. ``texture`` > 0: also time the fast path plus texture transfer at
    that strength. ``on_update`` is called with the report so far after every row."""
    import torch

    from .fastpath import resolve_precision, set_threads
    from .inference import resolve_device

    dev = resolve_device(device)  # first: a one-line error before anything is loaded
    resolved = resolve_precision(precision, dev)
    if runs < 1 or warmup < 0 or batch < 1:
        raise ValueError(f"--runs {runs} must be >= 1, --warmup {warmup} >= 0 and --batch {batch} >= 1")
    if threads is not None and threads < 1:
        raise ValueError(f"--threads {threads} must be >= 1")
    if not 0 <= texture < float("inf"):
        raise ValueError(f"--texture {texture} must be a number >= 0")
    presets = [p.strip() for p in str(train_config).split(",") if p.strip()]
    if train and not presets:
        raise ValueError(f"--train-config {train_config!r} must name a preset, e.g. photo or photo,paper")
    set_threads(threads)
    notes = []
    if onnx and dev.type != "cpu":
        notes.append(
            f"ONNX Runtime runs on the CPU only: its rows are not timed on {dev} "
            "(run bench --device cpu --onnx for them)"
        )
    elif onnx:
        from .export import require_onnxruntime

        require_onnxruntime()
    net, cfg, described = load_network(model, config)
    params = sum(p.numel() for p in net.parameters())
    report: dict[str, Any] = {
        "machine": machine_info(dev),
        "model": {
            "source": described,
            "family": cfg.model.family,
            "parameters": params,
            "ngf": cfg.model.ngf,
        },
        "settings": {
            "runs": runs,
            "warmup": warmup,
            "sizes": list(sizes),
            "threads": torch.get_num_threads(),
            "precision": resolved,
            "device": str(dev),
            "texture": texture,
            "notes": notes,
        },
        "inference": [],
        "photo": [],
        "train": [],
    }

    def collect(key: str) -> Callable[[dict[str, Any]], None]:
        def on_row(row: dict[str, Any]) -> None:
            report[key].append(row)
            if on_update is not None:
                on_update(report)

        return on_row

    bench_inference(
        net,
        list(sizes),
        runs=runs,
        warmup=warmup,
        compile=compile,
        onnx=onnx,
        threads=threads,
        precision=resolved,
        device=dev,
        on_row=collect("inference"),
        texture=texture,
    )
    del net
    if photo:
        runtimes = ("torch", "onnx") if onnx and dev.type == "cpu" else ("torch",)
        bench_photo(
            None if config else model,
            config,
            runs=runs,
            warmup=warmup,
            threads=threads,
            runtimes=runtimes,
            device=dev,
            on_row=collect("photo"),
            texture=texture,
        )
    if train:
        for preset in presets:
            bench_train(
                preset,
                list(train_sizes),
                batch,
                runs=runs,
                warmup=warmup,
                compile=compile,
                precision=resolved,
                device=dev,
                on_row=collect("train"),
            )
    return report


def _spread(row: dict[str, Any]) -> str:
    return f"{row['min_s']:.3f}–{row['max_s']:.3f}"


def machine_line(m: dict[str, Any]) -> str:
    """One line describing the machine (and the GPU benchmarked, if one was; native bf16 is the
    benchmarked device's)."""
    gpu = ""
    if m.get("gpu"):
        gpu = (
            f"; device {m['device']}: {m['gpu']} ({m['gpu_memory_gb']} GB, compute {m['gpu_capability']}, "
            f"CUDA {m['cuda']})"
        )
    return (
        f"{m['cpu']}, {m['physical_cores']} physical cores ({m['logical_cpus']} logical), "
        f"torch {m['torch']}, "
        f"onnxruntime {m['onnxruntime'] or 'not installed'}, {m['threads']} threads{gpu}, "
        f"native bf16: {'yes' if m['bf16_supported'] else 'no'}"
    )


def to_markdown(report: dict[str, Any]) -> str:
    """The report as Markdown tables (machine, inference, photo, training)."""
    m = report["machine"]
    lines = [f"Machine: {machine_line(m)}.", ""]
    model = report["model"]
    s = report["settings"]
    if s.get("notes"):
        lines += [*(f"Note: {n}." for n in s["notes"]), ""]
    lines += [
        f"Model: {model['source']} ({model['family']}, {model['parameters']:,} parameters). "
        f"{s['warmup']} warm-up + {s['runs']} timed runs; median and min–max in seconds.",
        "",
        "| size | variant | median s | min–max s | speed-up | max abs diff vs fp32 | note |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in report["inference"]:
        if "skipped" in r:
            lines.append(f"| {r['size']}² | {r['variant']} | – | – | – | – | {r['skipped']} |")
            continue
        note = []
        if "compile_s" in r:
            note.append(f"compile {r['compile_s']:.1f} s")
        if r.get("export_s") is not None:
            note.append(f"export {r['export_s']:.1f} s, dynamic shape")
            if r.get("prefill_in_torch"):
                note.append("smooth fill in PyTorch")
        if r.get("texture"):
            note.append("adds texture: differs from the fp32 fill by design")
        if r.get("peak_gpu_mb") is not None:
            note.append(f"peak GPU {r['peak_gpu_mb']:.0f} MB")
        lines.append(
            f"| {r['size']}² | {r['variant']} | {r['median_s']:.3f} | {_spread(r)} | {r['speedup']:.2f}× | "
            f"{r['max_abs_diff']:.1e} | {'; '.join(note)} |"
        )
    if report["photo"]:
        lines += [
            "",
            f"{report['photo'][0]['image'][0]}×{report['photo'][0]['image'][1]} JPEG, ~10 % hole, end to end "
            "in a fresh process "
            "(decode → crop → fill → paste → encode):",
            "",
            "| runtime | median s | min–max s | decode s | fill s | encode s | peak RSS MB |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in report["photo"]:
            st = r["stages_median_s"]
            where = f" on {r['device']}" if r.get("device", "cpu") != "cpu" else ""
            rss = f"{r['peak_rss_mb']:.0f}" + (
                f" (GPU {r['peak_gpu_mb']:.0f})" if r.get("peak_gpu_mb") is not None else ""
            )
            lines.append(
                f"| {r['runtime']}{_texture_text(r)}{where} | {r['median_s']:.2f} | {_spread(r)} | "
                f"{st['decode']:.2f} | {st['fill']:.2f} | {st['encode']:.2f} | {rss} |"
            )
    if report["train"]:
        lines += [
            "",
            "Training step (critic + generator update, EMA; gradient penalty when the loss is WGAN-GP), "
            "synthetic batch:",
            "",
        ]
        gpu = any(r.get("peak_gpu_mb") is not None for r in report["train"])
        head = "| preset | size | batch | variant | samples/s | step min–max s | speed-up | first step s |"
        lines += [head + (" peak GPU MB |" if gpu else ""), "|---" * (9 if gpu else 8) + "|"]
        for r in report["train"]:
            peak = f" {r['peak_gpu_mb']:.0f} |" if gpu and r.get("peak_gpu_mb") is not None else ""
            lines.append(
                f"| {r['preset']} ({r['gan_mode']}) | {r['size']}² | {r['batch']} | {r['variant']} | "
                f"{r['samples_per_s']:.2f} | {_spread(r)} | {r['speedup']:.2f}× | {r['first_step_s']:.1f} |"
                + (peak or (" – |" if gpu else ""))
            )
    return "\n".join(lines) + "\n"


def _progress(text: str) -> None:
    print(f"  {text}", file=sys.stderr, flush=True)


def bench_command(args: Any) -> int:
    """``dualinpaint bench``: run, print the machine and the tables, write --json (after every row, so
    an interrupted run keeps what it finished) and --markdown (at the end)."""
    from .images import atomic_write_bytes

    if args.model is not None and args.config is not None:
        raise ValueError("pass either --model or --config (random weights), not both")

    def write_json(report: dict[str, Any]) -> None:
        atomic_write_bytes(args.json, (json.dumps(report, indent=2) + "\n").encode())

    report = run_bench(
        model=args.model or "default",
        config=args.config,
        sizes=parse_sizes(args.sizes),
        runs=args.runs,
        warmup=args.warmup,
        train=args.train,
        train_config=args.train_config,
        train_sizes=parse_sizes(args.train_sizes, "--train-sizes"),
        batch=args.batch,
        threads=args.threads,
        compile=args.compile,
        onnx=args.onnx,
        photo=args.photo,
        precision=args.precision,
        device=getattr(args, "device", "cpu"),
        on_update=write_json if args.json else None,
        texture=getattr(args, "texture", 0.0),
    )
    text = to_markdown(report)
    print(text, end="")
    if args.json:
        write_json(report)
        print(f"wrote {args.json}")
    if args.markdown:
        atomic_write_bytes(args.markdown, text.encode())
        print(f"wrote {args.markdown}")
    return 0


def add_bench_arguments(parser: Any) -> None:
    """Arguments of ``dualinpaint bench``."""
    p = parser
    p.add_argument(
        "--model", default=None, help="packaged model name, run folder or .safetensors (default: default)"
    )
    p.add_argument(
        "--config", default=None, metavar="PRESET", help="benchmark random weights of a preset (photo, …)"
    )
    p.add_argument("--sizes", default="256,512,1024", help="inference sizes (default 256,512,1024)")
    p.add_argument("--runs", type=int, default=5, help="timed runs per row (default 5)")
    p.add_argument("--warmup", type=int, default=1, help="untimed runs first (default 1)")
    p.add_argument(
        "--texture",
        type=float,
        default=0.0,
        metavar="S",
        help="also time the fast path followed by texture transfer at strength S (fill --texture)",
    )
    p.add_argument("--train", action="store_true", help="also time training steps")
    p.add_argument(
        "--train-config",
        default="picnet",
        metavar="PRESET",
        help="preset for --train, or several: photo,paper (default picnet)",
    )
    p.add_argument("--train-sizes", default="128,256", help="training crop sizes (default 128,256)")
    p.add_argument("--batch", type=int, default=4, help="training batch (default 4)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: physical cores)")
    p.add_argument(
        "--device",
        default="cpu",
        metavar="DEV",
        help="run inference, the photo fill and training on cpu (default), cuda or cuda:N "
        "(ONNX Runtime rows stay on the CPU: skipped elsewhere)",
    )
    p.add_argument(
        "--compile",
        action="store_true",
        help="also time torch.compile: inference, and with --train the train.compile step "
        "(compile time reported)",
    )
    p.add_argument(
        "--onnx", action="store_true", help="also time ONNX Runtime (pip install 'dualinpaint[onnx]')"
    )
    p.add_argument(
        "--photo", action="store_true", help="also time a 4000×3000 photo end to end, with peak memory"
    )
    p.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16"),
        default="auto",
        help="fast path and fast training row: auto (default): bf16 only where the device computes it "
        "natively; fp32 or bf16 force it",
    )
    p.add_argument("--json", default=None, metavar="OUT", help="write everything as JSON")
    p.add_argument("--markdown", default=None, metavar="OUT", help="write the tables as Markdown")


def main(argv: list[str] | None = None) -> int:
    """``python -m dualinpaint.bench --photo-child SPEC``: the photo case's fresh process."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2 or argv[0] != "--photo-child":
        print("usage: dualinpaint bench … (this module's own entry point is internal)", file=sys.stderr)
        return 2
    print(json.dumps(_photo_child(json.loads(argv[1]))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
