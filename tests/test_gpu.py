"""CUDA checks, run on a GPU machine (``scripts/device_run.sh``); every test is skipped without CUDA.

- every preset's networks (channels shrunk) compute on CUDA what they compute on the CPU, in fp32 with
  TF32 off (a training forward of both paths with explicit noise, the deterministic fill, a critic);
- one trainer step of each GAN loss on CUDA under bf16 autocast with channels_last: finite losses, the
  WGAN-GP penalty's double backward, every network's weights moved;
- the inference fast path and ``Inpainter(device="cuda")`` (and a CUDA network staying there): the same
  fills as on the CPU in fp32, bf16 autocast on CUDA, the caller's network left where it was;
- ``dualinpaint bench --device cuda`` on the tiny preset: rows on the GPU, synchronised timings, the GPU
  in the machine info, peak GPU memory per row, ONNX rows skipped with a note, the photo case's fresh
  process on CUDA;
- the nccl process group with one process (in a subprocess): all_reduce, a trainer step under it and
  the trainer's collective helpers.

Run: ``python -m pytest -m gpu tests/test_gpu.py``.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dualinpaint import bench
from dualinpaint.cli import main
from dualinpaint.config import Config, load_config
from dualinpaint.discriminator import build_discriminator
from dualinpaint.fastpath import bf16_supported, prepare_for_inference
from dualinpaint.generator import DualPathInpainter
from dualinpaint.inference import Inpainter
from dualinpaint.train import Trainer

from .conftest import opened_tiny_net

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

SRC = Path(__file__).resolve().parents[1] / "src"
SMALL = [  # tests/test_generator.py's small(): each preset's structure with few channels
    "model.ngf=8",
    "model.max_channels=16",
    "model.z_channels=8",
    "model.disc_channels=8",
    "model.disc_max_channels=16",
]
# fp32 CPU vs CUDA, TF32 off. The networks differ from a float64 run by ~4e-6 (measured on the CPU), so
# 1e-4 is tight. The photo preset's biharmonic smooth fill runs 50 conjugate-gradient steps per level,
# which amplify rounding (float32 vs float64: 1.3e-3 on these inputs), hence its own tolerance.
ATOL = 1e-4
ATOL_CG = 5e-3
ATOL_CRITIC = 1e-5


@pytest.fixture(autouse=True)
def no_tf32():
    """Plain fp32 matrix products and convolutions on CUDA (TF32 would round to 10 mantissa bits)."""
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def small(preset: str, *extra: str) -> Config:
    return load_config(preset).with_overrides([*SMALL, *extra])


def _inputs(n: int, h: int, w: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(n, 3, h, w, generator=g) * 2 - 1
    hole = torch.zeros(n, 1, h, w)
    hole[..., h // 4 : 3 * h // 4, w // 4 : 3 * w // 4] = 1
    return image, hole


def _perturbed(cfg: Config, seed: int = 0) -> DualPathInpainter:
    """A network whose every weight matters: zero-initialised parts (attention gates, the photo preset's
    residual output conv) are moved off zero."""
    torch.manual_seed(seed)
    net = DualPathInpainter(cfg.model)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return net


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.detach().float().cpu() - b.detach().float().cpu()).abs().max())


# ----------------------------------------------------------------------------- CPU vs CUDA, fp32


@pytest.mark.parametrize(
    ("preset", "extra", "atol"),
    [
        ("tiny", [], ATOL),
        ("picnet", [], ATOL),
        ("paper", [], ATOL),
        ("photo", [], ATOL_CG),
        ("photo", ["model.prefill=none"], ATOL),  # the rest of the photo structure, tightly
    ],
    ids=["tiny", "picnet", "paper", "photo", "photo-no-prefill"],
)
def test_cpu_and_cuda_compute_the_same_fp32(preset: str, extra: list[str], atol: float) -> None:
    cfg = small(preset, *extra)
    cpu = _perturbed(cfg)
    gpu = copy.deepcopy(cpu).cuda()
    image, hole = _inputs(2, 64, 96)
    g = torch.Generator().manual_seed(2)
    shape = cpu.latent_shape(64, 96)
    noise = (torch.randn(2, *shape, generator=g), torch.randn(2, *shape, generator=g))
    # training forward (train mode: spectral norm's power iteration runs on both)
    ref = cpu(image, hole, noise)
    got = gpu(image.cuda(), hole.cuda(), tuple(t.cuda() for t in noise))
    assert got.rec[-1].is_cuda
    for name, a, b in [
        *((f"rec[{i}]", a, b) for i, (a, b) in enumerate(zip(ref.rec, got.rec, strict=True))),
        *((f"gen[{i}]", a, b) for i, (a, b) in enumerate(zip(ref.gen, got.gen, strict=True))),
        ("prior.mu", ref.prior.mu, got.prior.mu),
        ("posterior.sigma", ref.posterior.sigma, got.posterior.sigma),
    ]:
        diff = _max_diff(a, b)
        assert diff <= atol, f"{preset} {name}: max |cpu - cuda| = {diff:.2e} > {atol:.0e}"
    # the deterministic fill (eval mode)
    cpu.eval()
    gpu.eval()
    with torch.no_grad():
        ref_fill = cpu.complete(image, hole)
        got_fill = gpu.complete(image.cuda(), hole.cuda())
    diff = _max_diff(ref_fill, got_fill)
    assert diff <= atol, f"{preset} fill: max |cpu - cuda| = {diff:.2e}"
    assert _max_diff(ref_fill, image) > 0.05  # the fill changes the hole
    # a critic (128² so that every preset's critic has room)
    torch.manual_seed(0)
    d_cpu = build_discriminator(cfg.model).eval()
    d_gpu = copy.deepcopy(d_cpu).cuda()
    crit_in, _ = _inputs(2, 128, 128, seed=3)
    with torch.no_grad():
        diff = _max_diff(d_cpu(crit_in), d_gpu(crit_in.cuda()))
    assert diff <= ATOL_CRITIC, f"{preset} critic: max |cpu - cuda| = {diff:.2e}"


# ------------------------------------------------------------------ training steps, bf16 + channels_last


class FixedStream:
    """The trainer's stream interface: the same batch every time (CPU tensors, as the DataLoader gives)."""

    def __init__(self, batch: int, size: int) -> None:
        self.batch = dict(zip(("image", "hole"), _inputs(batch, size, size, seed=4), strict=True))

    def next(self) -> tuple[dict[str, torch.Tensor], list[int]]:
        return self.batch, list(range(self.batch["image"].shape[0]))


TRAIN_CASES = {
    "wgangp": ("tiny", ["loss.gan_mode=wgangp"]),
    "hinge": ("tiny", ["loss.gan_mode=hinge"]),
    "lsgan": ("tiny", ["loss.gan_mode=lsgan"]),
    "vanilla": ("tiny", ["loss.gan_mode=vanilla"]),
    # the shipped preset's structure (hinge, smooth fill, skips, mask input, EMA) with texture and
    # feature-matching terms, and PICNet's (LSGAN, residual critics with attention, D-match L2)
    "photo-hinge-texture": (
        "photo",
        [*SMALL, "loss.hole_norm=l2", "loss.lambda_texture=5", "loss.lambda_fm=2"],
    ),
    "picnet-lsgan": ("picnet", [*SMALL, "model.disc_layers=3"]),
}


def _snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.named_parameters()}


@pytest.mark.parametrize("case", list(TRAIN_CASES))
def test_one_bf16_channels_last_training_step(case: str) -> None:
    preset, extra = TRAIN_CASES[case]
    cfg = load_config(preset).with_overrides(
        [
            *extra,
            "data.size=64",
            "data.load_size=0",
            "data.batch_size=4",
            "train.bf16=true",
            "train.channels_last=true",
        ]
    )
    trainer = Trainer(cfg, "cuda")
    assert trainer.use_bf16, "train.bf16 fell back to fp32 on this GPU"
    before = {name: _snapshot(m) for name, m in (("net", trainer.net), ("d_rec", trainer.d_rec))}
    before["d_gen"] = _snapshot(trainer.d_gen)
    ema_before = _snapshot(trainer.ema) if trainer.ema is not None else None
    stream = FixedStream(4, 64)
    values = {}
    for _ in range(2):  # the second step runs with the attention gates already moved off zero
        values = trainer.train_step(stream).values
    bad = {k: v for k, v in values.items() if not np.isfinite(v)}
    assert not bad, f"non-finite losses: {bad}"
    if cfg.loss.gan_mode == "wgangp":  # the gradient penalty's double backward ran under autocast
        assert values["d/gp1"] > 0 and values["d/gp2"] > 0, values
    for name, module in (("net", trainer.net), ("d_rec", trainer.d_rec), ("d_gen", trainer.d_gen)):
        params = dict(module.named_parameters())
        assert all(p.is_cuda and torch.isfinite(p).all() for p in params.values()), name
        moved = [k for k, old in before[name].items() if not torch.equal(old, params[k])]
        assert len(moved) >= 0.9 * len(params), f"{name}: only {len(moved)} of {len(params)} tensors moved"
        convs = [p for p in params.values() if p.dim() == 4 and p.shape[-1] > 1]
        assert all(p.is_contiguous(memory_format=torch.channels_last) for p in convs), name
    if ema_before is not None:
        now = dict(trainer.ema.named_parameters())
        assert any(not torch.equal(v, now[k]) for k, v in ema_before.items()), "the EMA did not move"


# -------------------------------------------------------------------------- fast path and Inpainter


@pytest.fixture(scope="module")
def tiny_net() -> DualPathInpainter:
    """The tiny preset with moved spectral-norm vectors and open attention gates (conftest)."""
    return opened_tiny_net()


def test_fast_path_on_cuda_matches_the_plain_network(tiny_net: DualPathInpainter) -> None:
    plain = copy.deepcopy(tiny_net).cuda()
    fast = prepare_for_inference(tiny_net, channels_last=True).cuda()
    image, hole = _inputs(2, 64, 96)
    image, hole = image.cuda(), hole.cuda()
    with torch.no_grad():
        ref = plain.complete(image, hole)
    image_cl = image.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        got = fast.complete(image_cl, hole)
        with torch.autocast("cuda", torch.bfloat16):
            got_bf16 = fast.complete(image_cl, hole).float()
    assert got.is_cuda
    diff = _max_diff(got, ref)
    assert diff <= ATOL, f"fast path fp32 vs plain network on CUDA: {diff:.2e}"
    # bf16: measured with emulated bf16 on the CPU, mean 0.011 / max 0.083 in the hole on this input
    d = (got_bf16 - ref).abs() * hole
    mean_hole = float(d.sum() / (3 * hole.sum()))
    assert 0 < mean_hole < 0.03 and float(d.max()) < 0.3, (mean_hole, float(d.max()))


def _fills(inpainter: Inpainter, image: Image.Image, mask: np.ndarray) -> list[np.ndarray]:
    det = inpainter(image, mask)
    sampled = inpainter.fill(image, mask, samples=2, seed=7)
    return [np.asarray(x, np.int16) for x in (det, *sampled)]


def _photo_and_mask() -> tuple[Image.Image, np.ndarray]:
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (70, 150, 3), dtype=np.uint8))
    mask = np.zeros((70, 150), bool)
    mask[20:45, 30:60] = True
    mask[10:30, 110:140] = True  # two windows
    return image, mask


def test_inpainter_on_cuda_fills_like_on_the_cpu(tiny_net: DualPathInpainter) -> None:
    cfg = load_config("tiny")
    cpu = Inpainter(tiny_net, cfg, precision="fp32")
    gpu = Inpainter(tiny_net, cfg, precision="fp32", device="cuda")
    assert gpu.device == torch.device("cuda", torch.cuda.current_device())
    assert all(p.is_cuda for p in gpu.net.parameters())
    assert all(not p.is_cuda for p in tiny_net.parameters()), "the network passed in was moved"
    image, mask = _photo_and_mask()
    for a, b in zip(_fills(cpu, image, mask), _fills(gpu, image, mask), strict=True):
        assert np.abs(a - b).max() <= 1  # 8-bit levels: a float difference can flip a .5
        assert (b[~mask] == np.asarray(image, np.int16)[~mask]).all()


def test_texture_on_cuda(tiny_net: DualPathInpainter) -> None:
    """``transfer_texture`` on CUDA tensors stays there, keeps the known pixels and adds detail like on
    the CPU; an Inpainter on CUDA runs it there (same fills as on the CPU up to offsets that flip)."""
    from dualinpaint.metrics import detail_ratio
    from dualinpaint.texture import transfer_texture

    g = torch.Generator().manual_seed(0)
    ramp = torch.linspace(-0.5, 0.5, 96).expand(1, 3, 96, 96)
    photo = (ramp + 0.2 * torch.randn(1, 3, 96, 96, generator=g)).clamp(-1, 1)
    hole = torch.zeros(1, 1, 96, 96)
    hole[..., 24:72, 24:72] = 1
    smooth = photo * (1 - hole) + ramp * hole
    cpu = transfer_texture(smooth, hole)
    gpu = transfer_texture(smooth.cuda(), hole.cuda(), generator=torch.Generator().manual_seed(1))
    assert gpu.is_cuda and torch.equal(gpu.cpu() * (1 - hole), smooth * (1 - hole))
    d_cpu = float(detail_ratio(cpu, photo, hole))
    d_gpu = float(detail_ratio(gpu.cpu(), photo, hole))
    assert abs(d_gpu - d_cpu) < 0.15 and d_gpu > float(detail_ratio(smooth, photo, hole)) + 0.2
    cfg = load_config("tiny")
    image, mask = _photo_and_mask()
    out = np.asarray(Inpainter(tiny_net, cfg, precision="fp32", device="cuda", texture=1.0)(image, mask))
    assert (out[~mask] == np.asarray(image)[~mask]).all()


def test_inpainter_on_cuda_in_bf16(tiny_net: DualPathInpainter) -> None:
    """``precision="auto"`` asks the GPU (bf16 on an H200); bf16 autocast runs on CUDA, not on the CPU."""
    cfg = load_config("tiny")
    auto = Inpainter(tiny_net, cfg, device="cuda")
    assert auto.precision == ("bf16" if bf16_supported("cuda") else "fp32")
    bf16 = Inpainter(tiny_net, cfg, device="cuda", precision="bf16")
    fp32 = Inpainter(tiny_net, cfg, device="cuda", precision="fp32")
    seen = []
    original = bf16.net.complete

    def recording(image, hole, **kw):
        seen.append((image.device.type, torch.get_autocast_dtype("cuda"), torch.is_autocast_enabled("cuda")))
        return original(image, hole, **kw)

    bf16.net.complete = recording
    image, mask = _photo_and_mask()
    got, ref = (np.asarray(x(image, mask), np.int16) for x in (bf16, fp32))
    assert seen and all(s == ("cuda", torch.bfloat16, True) for s in seen), seen
    assert (got[~mask] == np.asarray(image, np.int16)[~mask]).all()
    d = np.abs(got - ref)[mask]
    # bf16 vs fp32 (test_fast_path_on_cuda_matches_the_plain_network: mean ~0.011, max ~0.08 of [-1, 1])
    assert d.mean() < 6 and d.max() < 64, (d.mean(), d.max())


def test_a_cuda_network_stays_on_cuda(tiny_net: DualPathInpainter) -> None:
    net = copy.deepcopy(tiny_net).cuda()
    assert next(prepare_for_inference(net).parameters()).is_cuda
    inpainter = Inpainter(net, load_config("tiny"))  # no device: where the network is
    assert inpainter.device.type == "cuda" and next(inpainter.net.parameters()).is_cuda
    fast = inpainter.net  # a fast copy given again is not copied a second time
    assert Inpainter(fast, load_config("tiny"), device="cuda").net is fast
    assert next(Inpainter(fast, load_config("tiny"), device="cpu").net.parameters()).device.type == "cpu"
    assert next(fast.parameters()).is_cuda  # ... and not moved by another Inpainter


def test_from_pretrained_on_cuda(tiny_model_dir: Path) -> None:
    inpainter = Inpainter.from_pretrained(tiny_model_dir, device="cuda")
    assert inpainter.device.type == "cuda" and next(inpainter.net.parameters()).is_cuda
    image, mask = _photo_and_mask()
    out = inpainter(image, mask)
    assert out.size == image.size and out.mode == "RGB"
    assert (np.asarray(out)[~mask] == np.asarray(image)[~mask]).all()
    with pytest.raises(ValueError, match="CPU"):
        Inpainter.from_pretrained(tiny_model_dir, device="cuda", runtime="onnx")


# ------------------------------------------------------------------------------------- bench on CUDA


def test_bench_command_on_cuda(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out_json = tmp_path / "bench.json"
    args = [
        "bench",
        "--device",
        "cuda",
        "--config",
        "tiny",
        "--sizes",
        "32,64",
        "--runs",
        "2",
        "--warmup",
        "1",
    ]
    args += ["--train", "--train-config", "tiny", "--train-sizes", "32", "--batch", "2", "--onnx"]
    assert main([*args, "--json", str(out_json)]) == 0
    printed = capsys.readouterr().out
    name = torch.cuda.get_device_name(torch.cuda.current_device())
    assert name in printed and "Note: ONNX Runtime runs on the CPU only" in printed
    report = json.loads(out_json.read_text())
    m, s = report["machine"], report["settings"]
    assert m["gpu"] == name and m["device"] == s["device"] and s["device"].startswith("cuda")
    assert m["bf16_supported"] == bf16_supported("cuda") and m["gpu_memory_gb"] > 1
    assert s["precision"] == ("bf16" if m["bf16_supported"] else "fp32") and s["notes"]
    timed = [r for r in report["inference"] if "skipped" not in r]
    skipped = [r for r in report["inference"] if "skipped" in r]
    assert [r["size"] for r in timed] == [32, 32, 64, 64] and len(skipped) == 2
    assert all(r["variant"] == "onnxruntime" and "CPU only" in r["skipped"] for r in skipped)
    for r in timed:
        assert 0 < r["min_s"] <= r["median_s"] and r["peak_gpu_mb"] > 0 and np.isfinite(r["max_abs_diff"])
    assert timed[0]["max_abs_diff"] <= 1e-5  # the baseline against its own reference call
    train = report["train"]
    assert [r["variant"] for r in train][0] == "fp32 channels-first" and len(train) == 2
    assert all(r["samples_per_s"] > 0 and r["peak_gpu_mb"] > 0 for r in train)
    if m["bf16_supported"]:
        assert train[1]["variant"] == "channels_last + bf16"


def test_bench_inference_on_cuda_fp32_matches_the_plain_network(tiny_net: DualPathInpainter) -> None:
    rows = bench.bench_inference(tiny_net, [64], runs=1, warmup=0, precision="fp32", device="cuda")
    assert [r["variant"] for r in rows][1].endswith(", fp32)")
    assert rows[1]["max_abs_diff"] <= ATOL and rows[1]["peak_gpu_mb"] > 0
    assert all(not p.is_cuda for p in tiny_net.parameters()), "the network passed in was moved"


def test_bench_photo_case_on_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")])))
    (row,) = bench.bench_photo(None, "tiny", runs=1, warmup=0, threads=1, size=(400, 300), device="cuda")
    assert row["device"].startswith("cuda") and row["runtime"] == "torch" and row["peak_gpu_mb"] > 0
    with pytest.raises(ValueError, match="CPU only"):
        bench.bench_photo(None, "tiny", runs=1, warmup=0, threads=1, runtimes=("onnx",), device="cuda")


# ------------------------------------------------------------------------------------------- nccl

NCCL_CHILD = r"""
import json, sys
import torch
import torch.distributed as dist
from dualinpaint import distributed as D
from dualinpaint.config import load_config
from dualinpaint.train import Trainer

store, out_path = sys.argv[1], sys.argv[2]
out = {}
torch.cuda.set_device(0)
dist.init_process_group(
    "nccl", init_method="file://" + store, rank=0, world_size=1, device_id=torch.device("cuda", 0)
)
out["backend"] = dist.get_backend()
t = torch.arange(4.0, device="cuda")
dist.all_reduce(t)
out["all_reduce"] = t.tolist()

# a trainer under the process group: broadcast_module on CUDA parameters, one bf16 step
cfg = load_config("tiny").with_overrides(
    ["data.size=32", "data.batch_size=2", "train.bf16=true", "train.channels_last=true"]
)
trainer = Trainer(cfg, "cuda", D.DistInfo(0, 0, 1))
g = torch.Generator().manual_seed(0)
batch = {"image": torch.rand(2, 3, 32, 32, generator=g) * 2 - 1, "hole": torch.zeros(2, 1, 32, 32)}
batch["hole"][..., 8:24, 8:24] = 1


class Stream:
    def next(self):
        return batch, [0, 1]


out["step_values"] = trainer.train_step(Stream()).values
D.barrier()


class Pretend:
    # torch.distributed as seen by dualinpaint.distributed, but reporting two processes: with one real
    # rank the collectives are identities, so the helpers' results are exactly predictable
    def __getattr__(self, name):
        return getattr(dist, name)

    def get_world_size(self, group=None):
        return 2


D.dist = Pretend()
p = torch.nn.Parameter(torch.ones(3, device="cuda"))
q = torch.nn.Parameter(torch.ones(2, 2, device="cuda"))
p.grad = torch.full((3,), 4.0, device="cuda")
q.grad = torch.full((2, 2), 6.0, device="cuda")
D.average_gradients([p, q])
out["average_gradients"] = [p.grad.tolist(), q.grad.flatten().tolist()]
for name, call in (("all_reduce_mean", lambda: D.all_reduce_mean({"a": 1.0, "b": 3.0})),
                   ("any_rank", lambda: D.any_rank(True))):
    try:
        out[name] = call()
    except Exception as err:  # reported, not raised: the parent test names the failing helper
        out[name + "_error"] = f"{type(err).__name__}: {str(err).splitlines()[0][:300]}"
D.dist = dist
dist.destroy_process_group()
with open(out_path, "w") as f:
    json.dump(out, f)
"""


@pytest.fixture(scope="module")
def nccl_result(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Run NCCL_CHILD in a fresh process (a process group of one; a file store, no ports)."""
    tmp = tmp_path_factory.mktemp("nccl")
    out = tmp / "out.json"
    path = os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path}
    proc = subprocess.run(
        [sys.executable, "-c", NCCL_CHILD, str(tmp / "store"), str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
        check=False,
    )
    assert proc.returncode == 0 and out.exists(), f"nccl child failed:\n{proc.stderr[-3000:]}"
    return json.loads(out.read_text())


def test_nccl_world_size_one_all_reduce_and_trainer_step(nccl_result: dict) -> None:
    assert nccl_result["backend"] == "nccl"
    assert nccl_result["all_reduce"] == [0.0, 1.0, 2.0, 3.0]
    values = nccl_result["step_values"]
    assert values and all(np.isfinite(v) for v in values.values()), values


def test_nccl_average_gradients_all_reduces_cuda_gradients(nccl_result: dict) -> None:
    p, q = nccl_result["average_gradients"]
    assert p == [2.0] * 3 and q == [3.0] * 4  # summed over the one rank, divided by the two "processes"


def test_nccl_logging_helpers(nccl_result: dict) -> None:
    """``all_reduce_mean`` and ``any_rank`` (called every step under torchrun) must work on nccl too."""
    errors = {k: v for k, v in nccl_result.items() if k.endswith("_error")}
    assert not errors, errors
    assert nccl_result["all_reduce_mean"] == {"a": 0.5, "b": 1.5}
    assert nccl_result["any_rank"] is True
