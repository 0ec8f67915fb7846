"""Evaluation: fixed mask protocols, per-image metrics for models and classical baselines, and reports.

Two entry points:

- :func:`make_eval_masks` writes the standard protocol: a ``center`` bucket (the paper's / PICNet's 128² hole
  at 256², i.e. the middle half of each side) and six free-form stroke buckets binned by hole ratio
  (1–10 %, 10–20 %, …, 50–60 %). Each bucket is a mask set written by :func:`dualinpaint.masks.make_mask_set`
  (seeded, every file's sha256 in its ``manifest.json``); ``protocol.json`` lists the buckets.
- :func:`evaluate` runs models and baselines on a fixed list of images against such a protocol and writes
  ``results.csv`` (one row per bucket, method and image), ``results.json`` (rows, aggregates, protocol,
  software versions, command), ``report.md`` (a Table-I-like table per bucket) and ``grid.png``.

The protocol, stated once (it is also written into every report):

- Images: the sorted file list, each resized (shorter side to ``size``, antialiased bilinear) and
  centre-cropped to size×size (``ImageDataset(train=False)``). Image ``i`` of bucket ``b`` gets mask
  ``i mod len(masks of b)``; with ``masks_per_image`` K > 1 it also gets masks ``(i + j·n) mod len`` for
  j = 1 … K − 1 (n images), at most ``len // n`` masks in all so that no image gets a mask twice: the
  same first fill as with K = 1, and more of the bucket's masks for a less noisy mean.
- Every method's output is quantised to uint8 (round, clip) before any metric, as anyone scoring saved
  PNGs would. Ground truth is uint8 already.
- Models: the headline row is the **deterministic** fill (latent = prior mean, one output per image).
  With ``best_of=K`` a separate row ``"<label> best-of-K"`` draws K samples (seeded per image from ``seed``
  and the image and mask hashes) and keeps, per image, the sample with the lowest whole-image L1 to the
  ground truth: an oracle selection (PICNet's best-of-50 protocol), never mixed into the headline row.
- Metrics (:mod:`dualinpaint.metrics`) on [0, 255]: PSNR and SSIM of the whole image, PSNR / SSIM / L1
  over the hole, whole-image L1; PSNR is capped at 100 dB. LPIPS and FID need backbone weights that are
  not available: their columns say "n/a (no weights)".
- Detail ratio (:func:`dualinpaint.metrics.gradient_energy`): mean Sobel gradient magnitude of the
  luminance inside the hole eroded by 2 pixels, of the output over that of the ground truth. Each row keeps
  the image's two gradient sums and the pixel count, and a bucket's ratio is pooled: the sum of the
  outputs' sums over the sum of the photos' sums (not a mean of per-image ratios, which one near-flat
  photo could blow up). 1.0 = as much texture as the photo; smooth PDE fills score about 0.3–0.5.
- Network contribution: a model with a smooth prefill (``model.prefill``) gets a row ``"<label> own fill"``:
  ``net.prefill(image, hole)`` composited into the image, exactly the base its residual is added to
  (same function, iterations, levels and float32 as in the model). Per bucket the report gives the model
  minus that row in PSNR, hole PSNR and detail ratio, with the standard error of the mean difference
  (paired by image and mask, over images) and how many fills are above and below it. The
  ``mlbiharmonic`` / ``harmonic`` baselines run the same functions but in float64 and with their own
  iterations and levels (at most 5, by divisibility), so they are not used for this: in float32 vs
  float64 the conjugate-gradient fill differs by a uint8 level or two in a few % of the hole's values.
- Models against each other: with several models, each model's deterministic row after the first minus
  the first's (``comparisons``), with the same paired statistics. The same photos and masks on both
  sides cancel most of the photo-to-photo spread, so checkpoints a few hundredths of a dB apart can be
  told apart where their contributions' standard errors (a tenth of a dB or more) cannot.

Resuming: every finished (method, image, mask) is appended to ``cache.jsonl`` in the output folder under a
key made of the method id (for a model: its weights' sha256; for its own smooth fill: the fill's function,
iterations, levels and dtype, so checkpoints of one config share it), the image file's sha256, the mask
file's sha256, the size and the cache version; a rerun skips those entries. Version 2 added the detail sums: a
version-1 entry (no detail) never matches a version-2 key, so it is recomputed, not read. Metrics are
deterministic, so a rerun or a resumed run gives the same tables (the timing column aside).

Heavy modules (torch, numpy, Pillow, the package's model code) are imported inside the functions, so the
command-line parser can import this module cheaply.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import math
import platform
import re
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

PathLike = str | Path

PROTOCOL_NAME = "protocol.json"
PROTOCOL_FORMAT_VERSION = 1
RESULTS_FORMAT_VERSION = 2  # 2: detail columns, "contributions"
CACHE_NAME = "cache.jsonl"
CACHE_VERSION = 2  # 2: rows carry detail_sum / detail_ref_sum / detail_count (version-1 rows are ignored)
RESULTS_CSV = "results.csv"
RESULTS_JSON = "results.json"
REPORT_MD = "report.md"
GRID_PNG = "grid.png"
OUTPUTS_DIR = "outputs"

STROKE_BINS: tuple[tuple[float, float], ...] = (
    (0.01, 0.10),
    (0.10, 0.20),
    (0.20, 0.30),
    (0.30, 0.40),
    (0.40, 0.50),
    (0.50, 0.60),
)
STROKE_OPTIONS: dict[str, Any] = {"max_strokes": 8}  # reaches every bin at 256² (default 3 strokes does not)
DEFAULT_MASK_COUNT = 100
PSNR_CAP_DB = 100.0
GRID_MAX_ROWS = 8

METRIC_COLUMNS = ("psnr", "ssim", "hole_psnr", "hole_ssim", "l1", "hole_l1")
# per image: the output's and the photo's gradient-magnitude sums over the eroded hole, its pixel count
DETAIL_COLUMNS = ("detail_sum", "detail_ref_sum", "detail_count")
CONTRIBUTION_COLUMNS = ("psnr", "hole_psnr", "detail_ratio")  # model minus its own smooth fill
CSV_COLUMNS = (
    "bucket",
    "method",
    "image_index",
    "image",
    "image_sha256",
    "mask_index",
    "mask_sha256",
    "hole_ratio",
    *METRIC_COLUMNS,
    "detail_ratio",
    *DETAIL_COLUMNS,
    "lpips",
    "seconds",
    "chosen_sample",
    "method_id",
)
_BASELINE_PACKAGES = {
    "telea": "opencv-python-headless",
    "ns": "opencv-python-headless",
    "biharmonic": "scikit-image",
    "harmonic": "dualinpaint",
    "mlbiharmonic": "dualinpaint",
    "patchmatch": "patchmatch-cython",
}
_SOFTWARE = (
    "torch",
    "numpy",
    "pillow",
    "scikit-image",
    "opencv-python-headless",
    "opencv-python",
    "patchmatch-cython",
    "tqdm",
)


# ----------------------------------------------------------------------------------------------------------
# Small helpers
# ----------------------------------------------------------------------------------------------------------


def _sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _sha256_file(path: PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _jsonable(value: Any) -> Any:
    """Non-finite floats → None (strict JSON), recursively; paths → str."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def _json_bytes(value: Any) -> bytes:
    return (json.dumps(_jsonable(value), indent=2, allow_nan=False) + "\n").encode("utf-8")


def _float(value: Any) -> float:
    return math.nan if value is None else float(value)


def _dist_version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


def software_versions() -> dict[str, str | None]:
    """Python, platform and the versions of the packages that can change a number in the tables."""
    from . import __version__

    out: dict[str, str | None] = {
        "dualinpaint": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    for name in _SOFTWARE:
        v = _dist_version(name)
        if v is not None or name != "opencv-python":
            out[name] = v
    return out


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "method"


def _ratio_text(lo: float | None, hi: float | None) -> str:
    if lo is None and hi is None:
        return "any"
    if lo is not None and hi is not None and lo == hi:
        return f"{100 * lo:g} %"
    return f"{100 * (lo or 0.0):g}–{100 * hi:g} %" if hi is not None else f"≥ {100 * lo:g} %"


def quantise(image: torch.Tensor) -> torch.Tensor:
    """Float image in [-1, 1] → the same image rounded to the uint8 grid (float32, CPU, still [-1, 1]).

    Identical to writing a PNG with :func:`dualinpaint.images.tensor_to_pil` and reading it back with
    :func:`dualinpaint.images.pil_to_tensor`.
    """
    return image.detach().float().cpu().add(1.0).mul(127.5).round().clamp(0, 255).div(127.5).sub(1.0)


# ----------------------------------------------------------------------------------------------------------
# Mask protocol
# ----------------------------------------------------------------------------------------------------------


def _bucket_specs(count: int) -> list[tuple[str, str, dict, float | None, float | None, int]]:
    specs: list[tuple[str, str, dict, float | None, float | None, int]] = [
        ("center", "center", {}, None, None, 1)
    ]
    for lo, hi in STROKE_BINS:
        name = f"stroke_{round(100 * lo):02d}-{round(100 * hi):02d}"
        specs.append((name, "stroke", dict(STROKE_OPTIONS), lo, hi, count))
    return specs


def make_eval_masks(
    out_dir: PathLike, size: int = 256, count: int = DEFAULT_MASK_COUNT, seed: int = 0
) -> dict:
    """Write the standard evaluation protocol to ``out_dir`` and return its ``protocol.json`` content.

    Buckets (each a subfolder written by :func:`dualinpaint.masks.make_mask_set`, with its manifest):

    - ``center``: one mask, the centre hole of half the side (128² at 256², hole ratio 25 %); every image
      gets the same hole, so one file is enough.
    - ``stroke_01-10`` … ``stroke_50-60``: ``count`` free-form stroke masks each (``kind="stroke"`` with up to
      8 strokes), redrawn until the hole ratio is in the bucket's [min, max).

    Every bucket uses ``seed``; mask ``i`` of a bucket is drawn from ``default_rng([seed, i])``, so the
    sets are bit-identical for the same arguments. ``protocol.json`` (written last, atomically) lists the
    buckets: name, folder, kind, ratio range, count, options and the sha256 of the bucket's manifest.
    """
    from . import __version__
    from .images import atomic_write_bytes
    from .masks import MANIFEST_NAME, make_mask_set

    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"count must be a positive int, got {count!r}")
    out = Path(out_dir)
    buckets = []
    for name, kind, options, lo, hi, n in _bucket_specs(count):
        manifest = make_mask_set(kind, n, size, seed, out / name, min_ratio=lo, max_ratio=hi, options=options)
        ratios = [f["hole_ratio"] for f in manifest["files"]]
        buckets.append(
            {
                "name": name,
                "folder": name,
                "kind": kind,
                # the center bucket has no bounds: its range is the (exact) ratio of its mask
                "min_ratio": min(ratios) if lo is None else lo,
                "max_ratio": max(ratios) if hi is None else hi,
                "count": n,
                "seed": int(seed),
                "options": options,
                "mean_hole_ratio": sum(ratios) / len(ratios),
                "manifest_sha256": _sha256_file(out / name / MANIFEST_NAME),
            }
        )
    protocol = {
        "format_version": PROTOCOL_FORMAT_VERSION,
        "size": int(size),
        "seed": int(seed),
        "count": int(count),
        "buckets": buckets,
        "made_by": f"dualinpaint {__version__} evaluate.make_eval_masks",
    }
    atomic_write_bytes(out / PROTOCOL_NAME, _json_bytes(protocol))
    return protocol


@dataclass
class Bucket:
    """One mask bucket, loaded and hash-checked."""

    name: str
    folder: Path
    kind: str
    min_ratio: float | None
    max_ratio: float | None
    masks: list  # 1×1×H×W float tensors
    mask_sha256: list[str]
    hole_ratios: list[float]
    manifest_sha256: str
    size: int

    def describe(self) -> dict:
        return {
            "name": self.name,
            "folder": str(self.folder),
            "kind": self.kind,
            "min_ratio": self.min_ratio,
            "max_ratio": self.max_ratio,
            "count": len(self.masks),
            "mean_hole_ratio": sum(self.hole_ratios) / len(self.hole_ratios),
            "manifest_sha256": self.manifest_sha256,
        }


def _load_bucket(
    name: str, folder: Path, kind: str | None, lo: Any, hi: Any, expect_sha: str | None
) -> Bucket:
    from .masks import MANIFEST_NAME, load_mask_set

    masks, manifest = load_mask_set(folder)  # checks every file's sha256
    manifest_sha = _sha256_file(folder / MANIFEST_NAME)
    if expect_sha is not None and manifest_sha != expect_sha:
        raise ValueError(f"{folder / MANIFEST_NAME} does not match the sha256 recorded in {PROTOCOL_NAME}")
    if not masks:
        raise ValueError(f"mask set {folder} holds no masks")
    return Bucket(
        name=name,
        folder=folder,
        kind=kind or manifest.get("kind", "?"),
        min_ratio=lo if lo is not None else manifest.get("min_ratio"),
        max_ratio=hi if hi is not None else manifest.get("max_ratio"),
        masks=[m[None] if m.dim() == 3 else m for m in masks],
        mask_sha256=[f["sha256"] for f in manifest["files"]],
        hole_ratios=[float(f["hole_ratio"]) for f in manifest["files"]],
        manifest_sha256=manifest_sha,
        size=int(manifest["size"]),
    )


def load_protocol(masks: PathLike) -> tuple[list[Bucket], dict]:
    """A protocol folder (``protocol.json``) or one mask-set folder (``manifest.json``, one bucket).

    Returns the buckets (masks loaded, files checked against their manifests, manifests against the
    protocol) and a description ``{source, protocol_sha256, buckets: [...]}``.
    """
    from .masks import MANIFEST_NAME

    root = Path(masks)
    if (root / PROTOCOL_NAME).is_file():
        raw = (root / PROTOCOL_NAME).read_bytes()
        try:
            protocol = json.loads(raw)
            entries = protocol["buckets"]
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise ValueError(f"{root / PROTOCOL_NAME} is not a valid protocol file: {err}") from None
        buckets = [
            _load_bucket(
                b["name"],
                root / b["folder"],
                b.get("kind"),
                b.get("min_ratio"),
                b.get("max_ratio"),
                b.get("manifest_sha256"),
            )
            for b in entries
        ]
        protocol_sha: str | None = _sha256_bytes(raw)
    elif (root / MANIFEST_NAME).is_file():
        buckets = [_load_bucket(root.resolve().name, root, None, None, None, None)]
        protocol_sha = None
    elif root.is_dir():
        raise ValueError(
            f"{root} is neither an evaluation protocol ({PROTOCOL_NAME}) nor a mask set ({MANIFEST_NAME}); "
            "make one with `dualinpaint eval-masks --out DIR`"
        )
    else:
        raise ValueError(f"no such mask protocol folder: {root}")
    names = [b.name for b in buckets]
    if len(set(names)) != len(names):
        raise ValueError(f"{root / PROTOCOL_NAME}: bucket names repeat: {names}")
    return buckets, {
        "source": str(root),
        "protocol_sha256": protocol_sha,
        "buckets": [b.describe() for b in buckets],
    }


# ----------------------------------------------------------------------------------------------------------
# Methods
# ----------------------------------------------------------------------------------------------------------

RunFn = Callable[["torch.Tensor", "torch.Tensor", int, "torch.Tensor"], tuple["torch.Tensor", dict]]


@dataclass
class Method:
    """One row label of the tables: ``run(masked, mask, seed, target) -> (output, extras)``.

    ``masked`` is the ground truth with the hole set to 0, so no method can see the hole's pixels;
    ``target`` (the ground truth) is for oracle selection only (the best-of-K rows).
    """

    label: str
    method_id: str  # goes into the cache key: changes whenever the outputs could change
    kind: str  # "model", "model best-of", "model fill" (a model's own smooth fill), "baseline"
    run: RunFn
    info: dict = field(default_factory=dict)
    own_fill: Method | None = None  # a "model" row: its "model fill" row (None without a prefill)


def _model_label(source: PathLike, weights: Path) -> str:
    from .checkpoint import MODEL_DIR

    try:
        weights.resolve().relative_to(MODEL_DIR.resolve())
        return weights.parent.name  # packaged model name
    except ValueError:
        pass
    if Path(source).is_dir():
        return Path(source).resolve().name
    return weights.stem if weights.stem != "model" else weights.resolve().parent.name


def _model_methods(
    source: PathLike, best_of: int, adapt_steps: int = 0, texture: float = 0.0
) -> list[Method]:
    import torch

    from .baseline_models import display_name
    from .checkpoint import load_model, resolve_model
    from .metrics import l1

    weights = resolve_model(source)
    weights_sha = _sha256_file(weights)
    net, cfg, meta = load_model(source)
    label = _model_label(source, weights)
    prefill = cfg.model.prefill if cfg.model.family == "dualpath" else "none"
    info = {
        "name": display_name(cfg),
        "source": str(source),
        "weights": str(weights),
        "weights_sha256": weights_sha,
        "step": meta.get("step"),
        "train_size": cfg.data.size,
        "prefill": prefill,
    }

    last: list[Any] = [None, None, None]  # (photo, mask, fill) of the latest deterministic fill

    def fill_of(image: torch.Tensor, mask: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The deterministic fill, computed once per photo and mask for the rows that start from it
        (the headline row, then its texture row): the same tensors are passed for one photo and mask."""
        if last[0] is not target or last[1] is not mask:
            with torch.inference_mode():
                last[:] = [target, mask, net.complete(image, mask)]
        return last[2]

    def deterministic(
        image: torch.Tensor, mask: torch.Tensor, seed: int, target: torch.Tensor
    ) -> tuple[torch.Tensor, dict]:
        del seed
        return fill_of(image, mask, target), {}

    methods = [Method(label, f"model:{weights_sha}:prior-mean", "model", deterministic, info)]
    if prefill != "none":

        def own_fill(
            image: torch.Tensor, mask: torch.Tensor, seed: int, target: torch.Tensor
        ) -> tuple[torch.Tensor, dict]:
            del seed, target
            with torch.inference_mode():  # the base complete() adds the residual to, same dtype and call
                return net.prefill(image, mask) * mask + image * (1 - mask), {}

        fill_info = {
            "of": label,
            "weights_sha256": weights_sha,
            "prefill": prefill,
            "function": f"{prefill}_fill",
            "iters": cfg.model.prefill_iters,
            "levels": cfg.model.n_down + 1,
            "dtype": str(next(net.parameters()).dtype).removeprefix("torch."),
        }
        # keyed by what the fill depends on, not by the weights: checkpoints of one config share it
        fill_id = "prefill:{function}:iters={iters}:levels={levels}:{dtype}".format(**fill_info)
        fill = Method(f"{label} own fill", fill_id, "model fill", own_fill, fill_info)
        methods[0].own_fill = fill
    if adapt_steps > 0 and cfg.model.family == "dualpath":
        from .adapt import DEFAULT_BATCH, DEFAULT_LR, L1_WEIGHT, adapt

        def adapted(
            image: torch.Tensor, mask: torch.Tensor, seed: int, target: torch.Tensor
        ) -> tuple[torch.Tensor, dict]:
            del target
            tuned = adapt(net, image, mask, steps=adapt_steps, seed=seed)
            with torch.inference_mode():
                return tuned.complete(image, mask), {}

        tag = f"adapt-{adapt_steps}-lr{DEFAULT_LR:g}-b{DEFAULT_BATCH}-l1{L1_WEIGHT:g}"
        methods.append(
            Method(
                f"{label} adapted-{adapt_steps}",
                f"model:{weights_sha}:{tag}",
                "model",
                adapted,
                {**info, "adapt_steps": adapt_steps, "adapt_lr": DEFAULT_LR, "adapt_batch": DEFAULT_BATCH},
                own_fill=methods[0].own_fill,
            )
        )
    if texture > 0:
        from .texture import TEXTURE_VERSION, transfer_texture

        def textured(
            image: torch.Tensor, mask: torch.Tensor, seed: int, target: torch.Tensor
        ) -> tuple[torch.Tensor, dict]:
            del seed
            with torch.inference_mode():
                return transfer_texture(fill_of(image, mask, target), mask, strength=texture), {}

        methods.append(
            Method(
                f"{label} texture-{texture:g}",
                f"model:{weights_sha}:prior-mean:texture-v{TEXTURE_VERSION}-{texture:g}",
                "model",
                textured,
                {**info, "texture": texture, "texture_version": TEXTURE_VERSION},
                own_fill=methods[0].own_fill,
            )
        )
    if best_of > 0:
        k = int(best_of)

        def best(
            image: torch.Tensor, mask: torch.Tensor, seed: int, target: torch.Tensor
        ) -> tuple[torch.Tensor, dict]:
            gen = torch.Generator().manual_seed(seed)
            with torch.inference_mode():
                samples = quantise(net.complete(image, mask, samples=k, generator=gen)[:, 0])
            errors = l1(samples, quantise(target).expand_as(samples))
            chosen = int(torch.argmin(errors))  # the first of equal minima
            return samples[chosen : chosen + 1], {"sample_l1": errors.tolist(), "chosen_sample": chosen}

        methods.append(
            Method(
                f"{label} best-of-{k}",
                f"model:{weights_sha}:best-of-{k}",
                "model best-of",
                best,
                {**info, "samples": k, "selection": "lowest whole-image L1 to the ground truth (oracle)"},
            )
        )
    if methods[0].own_fill is not None:
        methods.append(methods[0].own_fill)
    return methods


def _check_baseline_installed(name: str) -> None:
    """Raise the baseline's own ImportError (with its install hint) when its package is missing."""
    import torch

    from .baselines import available_baselines, get_baseline

    if name in available_baselines():
        return
    mask = torch.zeros(1, 1, 16, 16)
    mask[..., 6:10, 6:10] = 1
    get_baseline(name)(torch.zeros(1, 3, 16, 16), mask)  # raises ImportError naming the package


def _baseline_method(name: str) -> Method:
    from .baselines import get_baseline

    get_baseline(name)  # ValueError listing the valid names
    _check_baseline_installed(name)
    package = _BASELINE_PACKAGES.get(name)
    version = _dist_version(package) if package else None
    if package == "opencv-python-headless" and version is None:
        version = _dist_version("opencv-python")

    def run(
        image: torch.Tensor, mask: torch.Tensor, seed: int, target: torch.Tensor
    ) -> tuple[torch.Tensor, dict]:
        del seed, target
        return get_baseline(name)(image, mask), {}

    return Method(
        name,
        f"baseline:{name}:{package}=={version}",
        "baseline",
        run,
        {"package": package, "version": version},
    )


def _parse_baselines(value: str | Sequence[str] | None) -> list[str]:
    from .baselines import available_baselines

    if value is None:
        return []
    items = value.split(",") if isinstance(value, str) else list(value)
    names: list[str] = []
    for item in items:
        item = str(item).strip()
        if not item:
            continue
        for name in available_baselines() if item == "all" else [item]:
            if name not in names:
                names.append(name)
    return names


def _unique_labels(methods: list[Method]) -> None:
    seen: dict[str, int] = {}
    for m in methods:
        if m.label in seen:
            seen[m.label] += 1
            m.label = f"{m.label} ({seen[m.label]})"
        else:
            seen[m.label] = 1


# ----------------------------------------------------------------------------------------------------------
# Cache
# ----------------------------------------------------------------------------------------------------------


class _Cache:
    """``cache.jsonl``: one JSON object per line, ``{"key": ..., "row": {...}}``, appended and fsynced.

    A torn last line (a crash mid-append) is ignored on reading and terminated before the next append.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.entries: dict[str, dict] = {}
        self._needs_newline = False
        if path.is_file():
            data = path.read_bytes()
            self._needs_newline = bool(data) and not data.endswith(b"\n")
            for line in data.decode("utf-8", errors="replace").splitlines():
                try:
                    item = json.loads(line)
                    self.entries[item["key"]] = item["row"]
                except (json.JSONDecodeError, KeyError, TypeError):
                    continue

    def __contains__(self, key: str) -> bool:
        return key in self.entries

    def get(self, key: str) -> dict:
        return self.entries[key]

    def add(self, key: str, row: dict) -> None:
        import os

        line = json.dumps(_jsonable({"key": key, "row": row}), allow_nan=False, sort_keys=True) + "\n"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            if self._needs_newline:
                f.write("\n")
                self._needs_newline = False
            f.write(line)
            f.flush()
            os.fsync(f.fileno())
        self.entries[key] = row


def _cache_key(method: Method, size: int, image_sha: str, mask_sha: str, seed: int) -> str:
    seed_part = f"|seed={seed}" if method.kind == "model best-of" else ""
    return f"v{CACHE_VERSION}|{method.method_id}{seed_part}|size={size}|image={image_sha}|mask={mask_sha}"


def _sample_seed(seed: int, image_sha: str, mask_sha: str) -> int:
    """The per-image seed of the sampled rows: depends on the content, not on the position in the list."""
    digest = hashlib.sha256(f"{seed}|{image_sha}|{mask_sha}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


# ----------------------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------------------


@dataclass
class _Data:
    source: str
    paths: list[Path]
    names: list[str]
    sha256: list[str]
    list_sha256: str
    dataset: Any


def _load_data(data: PathLike, size: int, limit: int | None) -> _Data:
    from .data import ImageDataset, read_image_list

    source = Path(data)
    paths = sorted(read_image_list(source), key=str)
    if limit is not None:
        paths = paths[:limit]
    root = source if source.is_dir() else source.parent
    names = []
    for p in paths:
        try:
            names.append(p.resolve().relative_to(root.resolve()).as_posix())
        except ValueError:
            names.append(p.name)
    try:
        shas = [_sha256_file(p) for p in paths]
    except FileNotFoundError as err:
        raise ValueError(f"image listed in {source} is missing: {err.filename}") from None
    list_sha = _sha256_bytes("".join(s + "\n" for s in shas).encode())
    return _Data(str(source), paths, names, shas, list_sha, ImageDataset(paths, size, train=False))


def _load_image(data: _Data, index: int) -> torch.Tensor:
    """Image ``index`` (1×3×S×S); an unreadable file is an error here, not a silent substitution."""
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="skipping unreadable image", category=RuntimeWarning)
        try:
            return data.dataset[index]["image"][None]
        except RuntimeWarning as err:
            raise ValueError(str(err).replace("skipping ", "")) from None


# ----------------------------------------------------------------------------------------------------------
# Scoring, aggregation and writers
# ----------------------------------------------------------------------------------------------------------


def score(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> dict[str, float]:
    """The per-image metric columns of one output, quantised first (all 1×…×H×W).

    Besides :data:`METRIC_COLUMNS`: ``detail_sum`` / ``detail_ref_sum`` (the output's / the ground
    truth's gradient-magnitude sums over the eroded hole), ``detail_count`` (its pixels) and
    ``detail_ratio`` = detail_sum / detail_ref_sum (NaN when the eroded hole is empty or flat in the photo).

    Computed with one torch thread: float64 reductions split over several threads differ in the last bit
    with the thread count, and the numbers should not depend on it.
    """
    import torch

    from . import metrics

    pred, target = quantise(pred), quantise(target)
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = {
            "psnr": metrics.psnr(pred, target, max_db=PSNR_CAP_DB),
            "ssim": metrics.ssim(pred, target),
            "hole_psnr": metrics.psnr(pred, target, mask, max_db=PSNR_CAP_DB),
            "hole_ssim": metrics.ssim(pred, target, mask),
            "l1": metrics.l1(pred, target),
            "hole_l1": metrics.l1(pred, target, mask),
        }
        out["detail_sum"], out["detail_count"] = metrics.gradient_energy(pred, mask)
        out["detail_ref_sum"], _ = metrics.gradient_energy(target, mask)
    finally:
        torch.set_num_threads(previous)
    row = {k: float(v[0]) for k, v in out.items()}
    row["detail_ratio"] = _ratio(row["detail_sum"], row["detail_ref_sum"], row["detail_count"])
    return row


def _ratio(fill: float, real: float, count: float) -> float:
    """A detail ratio from gradient sums; NaN when no pixel is counted or the photo is flat there."""
    if not count > 0 or not real > 0 or math.isnan(fill):
        return math.nan
    return fill / real


def _mean(values: list[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return math.fsum(finite) / len(finite) if finite else math.nan


def aggregate(rows: list[dict], buckets: Sequence[str], methods: Sequence[str]) -> list[dict]:
    """Per (bucket, method) means of the metric columns (NaN entries skipped), image count and s/image,
    and the pooled detail ratio: the sum of the rows' ``detail_sum`` over the sum of their
    ``detail_ref_sum`` (rows with an empty eroded hole add nothing); the three pooled sums are kept."""
    out = []
    for b in buckets:
        for m in methods:
            sel = [r for r in rows if r["bucket"] == b and r["method"] == m]
            if not sel:
                continue
            agg: dict[str, Any] = {"bucket": b, "method": m, "images": len(sel)}
            for col in METRIC_COLUMNS:
                agg[col] = _mean([_float(r[col]) for r in sel])
            counted = [r for r in sel if _float(r.get("detail_count")) > 0]
            for col in DETAIL_COLUMNS:
                agg[col] = math.fsum(_float(r.get(col)) for r in counted)
            agg["detail_ratio"] = _ratio(agg["detail_sum"], agg["detail_ref_sum"], agg["detail_count"])
            agg["lpips"] = None
            agg["fid"] = None
            agg["seconds_per_image"] = _mean([_float(r["seconds"]) for r in sel])
            out.append(agg)
    return out


def _paired_spread(diffs: dict[Any, list[float]]) -> float:
    """Standard error of the mean of paired differences grouped by image: each image's mean difference
    (over its masks), then their sample standard deviation / √images, since one image's fills are not
    independent draws. One mask per image: the plain standard error. NaN under two images."""
    means = [math.fsum(d) / len(d) for d in diffs.values() if d]
    n = len(means)
    if n < 2:
        return math.nan
    mean = math.fsum(means) / n
    return math.sqrt(math.fsum((m - mean) ** 2 for m in means) / (n - 1) / n)


def _paired_differences(
    aggregates: list[dict], pairs: Sequence[tuple[str, str]], rows: Sequence[dict], other: str
) -> list[dict]:
    """Per bucket and (label, other label) pair: the bucket aggregates' differences in
    :data:`CONTRIBUTION_COLUMNS` with both sides' values (``model_<col>``, ``<other>_<col>``), and from
    ``rows`` the paired statistics of :func:`contributions`. The second label is stored under ``other``."""
    prefix = "fill" if other == "own_fill" else other
    by_key = {(a["bucket"], a["method"]): a for a in aggregates}
    per_image: dict[tuple[str, str], dict[tuple[Any, Any], dict]] = {}
    for r in rows:
        per_image.setdefault((r["bucket"], r["method"]), {})[(r["image_index"], r["mask_index"])] = r
    out = []
    for bucket in dict.fromkeys(a["bucket"] for a in aggregates):
        for model, second in pairs:
            a, f = by_key.get((bucket, model)), by_key.get((bucket, second))
            if a is None or f is None:
                continue
            entry: dict[str, Any] = {"bucket": bucket, "model": model, other: second}
            for col in CONTRIBUTION_COLUMNS:
                entry[col] = _float(a[col]) - _float(f[col])
                entry[f"model_{col}"], entry[f"{prefix}_{col}"] = _float(a[col]), _float(f[col])
            if rows:
                mine, theirs = per_image.get((bucket, model), {}), per_image.get((bucket, second), {})
                both = [(mine[k], theirs[k]) for k in mine if k in theirs]
                by_image: dict[str, dict[Any, list[float]]] = {"psnr": {}, "hole_psnr": {}}
                for col, grouped in by_image.items():  # the finite differences, grouped by image
                    for m, t in both:
                        d = _float(m[col]) - _float(t[col])
                        if math.isfinite(d):
                            grouped.setdefault(m["image_index"], []).append(d)
                    entry[f"{col}_se"] = _paired_spread(grouped)
                diffs = [d for image_diffs in by_image["psnr"].values() for d in image_diffs]
                entry["paired"] = len(diffs)
                entry["wins"] = sum(d > 0 for d in diffs)
                entry["losses"] = sum(d < 0 for d in diffs)
            out.append(entry)
    return out


def contributions(
    aggregates: list[dict], pairs: Sequence[tuple[str, str]], rows: Sequence[dict] = ()
) -> list[dict]:
    """The network's contribution per bucket: for each (model label, own-fill label) pair, the model's
    bucket aggregate minus its own smooth fill's in :data:`CONTRIBUTION_COLUMNS` (PSNR and hole PSNR in
    dB, pooled detail ratio), with both sides' values (``model_<col>``, ``fill_<col>``).

    From ``rows`` (per fill), the same fills paired by image and mask: ``paired`` (fills with a finite
    PSNR on both sides), ``psnr_se`` and ``hole_psnr_se`` (standard error of the mean difference over
    images, :func:`_paired_spread`: about how far the contribution would move on another draw of photos),
    and ``wins`` / ``losses`` (fills whose PSNR is above / below the own fill's)."""
    return _paired_differences(aggregates, pairs, rows, "own_fill")


def comparisons(
    aggregates: list[dict], pairs: Sequence[tuple[str, str]], rows: Sequence[dict] = ()
) -> list[dict]:
    """Models against a reference model, per bucket: for each (model label, reference label) pair the
    same differences and paired statistics as :func:`contributions`, the reference's values under
    ``reference_<col>``. Both fill the same photos with the same masks, so the photo-to-photo spread
    that dominates a contribution's standard error mostly cancels: differences of a few hundredths of a
    dB can be told apart."""
    return _paired_differences(aggregates, pairs, rows, "reference")


def _csv_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _write_csv(path: Path, rows: list[dict]) -> None:
    from .images import atomic_write_bytes
    from .metrics import NOT_AVAILABLE

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for r in rows:
        values = {**r, "lpips": NOT_AVAILABLE if r.get("lpips") is None else r["lpips"]}
        writer.writerow([_csv_value(values.get(c)) for c in CSV_COLUMNS])
    atomic_write_bytes(path, buf.getvalue().encode("utf-8"))


def _fmt(value: float, digits: int, scale: float = 1.0, sign: bool = False) -> str:
    if value is None or math.isnan(value):
        return "–"
    text = f"{value * scale:{'+' if sign else ''}.{digits}f}"
    return "+" + text[1:] if sign and text.startswith("-") and float(text) == 0 else text  # not "-0.000"


def _se_text(contribution: dict, col: str, digits: int = 2) -> str:
    """The text " ± SE" for a contribution column, or nothing (fewer than two paired fills, or an old
    results file without the paired statistics)."""
    se = _float(contribution.get(f"{col}_se"))
    return "" if math.isnan(se) else f" ± {se:.{digits}f}"


def _wins_text(contribution: dict, other: str = "its own fill") -> str:
    """The text "; above ``other`` on W of N fills, below on L", or nothing without paired fills."""
    if not contribution.get("paired"):
        return ""
    c = contribution
    return f"; above {other} on {c['wins']} of {c['paired']} fills, below on {c['losses']}"


PUBLISHED_COLUMNS = ("method", "masks", "psnr", "ssim")


def read_published(path: PathLike) -> dict:
    """Published numbers to print beside ours (e.g. the paper's Table I): a CSV file with the header
    ``method,masks,psnr,ssim`` (+ optional ``source``), one row per method and mask setting; an empty
    cell = not published. Returns ``{"file", "sha256", "rows"}``; a malformed file raises ValueError."""
    import csv

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"--published {path}: cannot read ({err.__class__.__name__})") from None
    reader = csv.DictReader(line for line in text.splitlines() if line.strip() and not line.startswith("#"))
    missing = [c for c in PUBLISHED_COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise ValueError(
            f"--published {path}: needs the columns {','.join(PUBLISHED_COLUMNS)}; missing {missing}"
        )
    rows = []
    for n, row in enumerate(reader, start=2):
        out = {"method": (row["method"] or "").strip(), "masks": (row["masks"] or "").strip()}
        if not out["method"]:
            raise ValueError(f"--published {path}: line {n} has no method")
        for key in ("psnr", "ssim"):
            cell = (row[key] or "").strip()
            try:
                out[key] = float(cell) if cell else None
            except ValueError:
                raise ValueError(f"--published {path}: line {n}: {key} {cell!r} is not a number") from None
        out["source"] = (row.get("source") or "").strip()
        rows.append(out)
    if not rows:
        raise ValueError(f"--published {path}: no rows")
    return {"file": str(path), "sha256": _sha256_bytes(text.encode("utf-8")), "rows": rows}


def render_published(published: dict) -> list[str]:
    """Report lines: the published table, labelled as not re-run, before our own tables."""
    lines = [
        f"## Published numbers (not re-run here; from `{published['file']}`, sha256 "
        f"`{published['sha256'][:16]}…`)",
        "",
        "Their data, resolution, masks and training budget differ from this protocol: compare the order "
        "of the methods with ours, not the values.",
        "",
        "| method | masks | PSNR ↑ | SSIM ↑ | source |",
        "|---|---|---:|---:|---|",
    ]
    for r in published["rows"]:
        psnr = "–" if r["psnr"] is None else f"{r['psnr']:.2f}"
        ssim = "–" if r["ssim"] is None else f"{r['ssim']:.4f}"
        lines.append(f"| {r['method']} | {r['masks']} | {psnr} | {ssim} | {r['source']} |")
    lines.append("")
    return lines


def render_report(results: dict) -> str:
    """The markdown report: protocol paragraph, then one table per bucket."""
    from .metrics import NOT_AVAILABLE

    proto = results["protocol"]
    data, masks = proto["data"], proto["masks"]
    methods = results["methods"]
    lines = ["# Evaluation report", ""]
    limit = f" (first {proto['limit']} of the sorted list)" if proto.get("limit") else ""
    lines.append(
        f"**Protocol.** {data['images']} images from `{data['source']}`{limit}, sorted by path; list sha256 "
        f"`{data['list_sha256'][:16]}…` (sha256 of the images' sha256s in order). Each image is resized "
        f"(shorter side to {proto['size']}, antialiased bilinear) and centre-cropped to "
        f"{proto['size']}×{proto['size']}. Masks from `{masks['source']}`"
        + (
            f" (protocol.json sha256 `{masks['protocol_sha256'][:16]}…`)"
            if masks.get("protocol_sha256")
            else ""
        )
        + "; image *i* of a bucket gets mask *i* mod (masks in the bucket)"
        + (
            f", and up to {proto['masks_per_image'] - 1} more, masks (*i* + *j*·{data['images']}) mod "
            "(masks in the bucket), none twice (`fills` counts them)"
            if proto.get("masks_per_image", 1) > 1
            else ""
        )
        + ". Methods get the image with "
        "the hole set to 0 (they never see the hole's pixels). Every output is quantised to "
        "uint8 (round, clip) before scoring. PSNR (capped at 100 dB) and SSIM (11×11 Gaussian, σ 1.5, RGB "
        "mean, border cropped as scikit-image) are over the whole image; hole PSNR over the hole pixels; "
        "L1 is the whole-image mean |error| in % of 255. **Detail** is the detail ratio: the mean Sobel "
        "gradient magnitude of the luminance inside the hole eroded by 2 px, of the output over that of "
        "the real photo, pooled over the bucket (sum of the outputs' gradient sums over sum of the photos'); "
        "1.0 = as much texture as the photo, smooth PDE fills score about 0.3–0.5. LPIPS and FID: "
        f"{NOT_AVAILABLE}."
    )
    lines.append("")
    model_lines = []
    for m in methods:
        if m["kind"] == "model":
            name = f" ({m['info']['name']})" if m["info"].get("name") else ""
            model_lines.append(
                f"- `{m['label']}`{name}: weights `{m['info']['weights']}` "
                f"(sha256 `{m['info']['weights_sha256'][:16]}…`, step {m['info'].get('step')}); "
                "**deterministic**: one fill per image with the latent at the prior mean."
            )
        elif m["kind"] == "model fill":
            i = m["info"]
            model_lines.append(
                f"- `{m['label']}`: `{i['of']}`'s own smooth fill without the network: `net.prefill` "
                f"({i['function']}, {i['iters']} iterations per level, {i['levels']} levels, {i['dtype']}) "
                "composited into the image, the base the network adds its residual to."
            )
        elif m["kind"] == "model best-of":
            model_lines.append(
                f"- `{m['label']}`: {m['info']['samples']} samples per image (seed {proto['seed']}, "
                "derived per image from the image and mask hashes); per image the sample with the lowest "
                "whole-image L1 to the ground truth is kept. **Oracle selection** (PICNet's best-of-N "
                "protocol): optimistic, not comparable with single-output rows."
            )
        else:
            model_lines.append(
                f"- `{m['label']}`: classical baseline ({m['info']['package']} {m['info']['version']})."
            )
    lines += model_lines
    lines.append("")
    published = results.get("published")
    if published:
        lines += render_published(published)
    if any(m["kind"] == "model" for m in methods):
        lines.append(
            "**Network contribution** (per bucket, under the table): a model minus its own smooth fill "
            "(the `own fill` row), in PSNR, hole PSNR and detail ratio; ± is the standard error of the "
            "mean difference (same photo, same mask; a photo's fills averaged first), the spread to expect "
            "on another draw of photos. The `mlbiharmonic` / `harmonic` "
            "baselines run the same functions but in float64 with their own iterations and levels, so they "
            "are not used for it. A model without a prefill gets no contribution line."
            + (
                " With several models, each one after the first is also compared with the first on the same "
                "fills (`against`), with the same ± and counts; there the photo-to-photo spread mostly "
                "cancels."
                if results.get("comparisons")
                else ""
            )
        )
        lines.append("")
    lines.append("Mask buckets (folder, kind, hole ratio, masks, manifest sha256):")
    lines.append("")
    for b in masks["buckets"]:
        lines.append(
            f"- `{b['name']}`: {b['kind']}, hole {_ratio_text(b['min_ratio'], b['max_ratio'])}, "
            f"{b['count']} mask{'' if b['count'] == 1 else 's'}, `{b['manifest_sha256'][:16]}…`"
        )
    lines.append("")
    header = (
        "| method | PSNR ↑ | SSIM ↑ | hole PSNR ↑ | L1 (%) ↓ | detail (→1) | LPIPS ↓ | FID ↓ | fills "
        "| s/image |"
    )
    rule = "|---|---:|---:|---:|---:|---:|---|---|---:|---:|"
    contribs = results.get("contributions", [])
    for b in masks["buckets"]:
        aggs = [a for a in results["aggregates"] if a["bucket"] == b["name"]]
        lines.append(
            f"## {b['name']}: {b['kind']}, hole {_ratio_text(b['min_ratio'], b['max_ratio'])} "
            f"(mean {100 * b['mean_hole_ratio']:.1f} %)"
        )
        lines.append("")
        lines.append(header)
        lines.append(rule)
        for a in aggs:
            lines.append(
                f"| {a['method']} | {_fmt(_float(a['psnr']), 2)} | {_fmt(_float(a['ssim']), 4)} | "
                f"{_fmt(_float(a['hole_psnr']), 2)} | {_fmt(_float(a['l1']), 2, 100.0)} | "
                f"{_fmt(_float(a.get('detail_ratio')), 3)} | {NOT_AVAILABLE} | "
                f"{NOT_AVAILABLE} | {a['images']} | {_fmt(_float(a['seconds_per_image']), 3)} |"
            )
        lines.append("")
        for m in methods:
            if m["kind"] != "model":
                continue
            c = next((c for c in contribs if c["bucket"] == b["name"] and c["model"] == m["label"]), None)
            if c is None:
                why = f"model.prefill = {m['info'].get('prefill', 'none')}, no smooth fill to subtract"
                lines.append(f"Network contribution of `{m['label']}`: none ({why}).")
            else:
                lines.append(
                    f"Network contribution of `{m['label']}` (minus `{c['own_fill']}`): "
                    f"PSNR {_fmt(_float(c['psnr']), 2, sign=True)}{_se_text(c, 'psnr')} dB, "
                    f"hole PSNR {_fmt(_float(c['hole_psnr']), 2, sign=True)}{_se_text(c, 'hole_psnr')} dB, "
                    f"detail {_fmt(_float(c['detail_ratio']), 3, sign=True)} "
                    f"({_fmt(_float(c['fill_detail_ratio']), 3)} → "
                    f"{_fmt(_float(c['model_detail_ratio']), 3)}){_wins_text(c)}."
                )
            lines.append("")
        for c in (c for c in results.get("comparisons", []) if c["bucket"] == b["name"]):
            lines.append(
                f"`{c['model']}` against `{c['reference']}` (the same fills): "
                f"PSNR {_fmt(_float(c['psnr']), 3, sign=True)}{_se_text(c, 'psnr', 3)} dB, "
                f"detail {_fmt(_float(c['detail_ratio']), 3, sign=True)}"
                f"{_wins_text(c, 'it')}."
            )
            lines.append("")
    lines.append(f"Command: `{' '.join(results['command'])}`")
    lines.append("")
    return "\n".join(lines)


def _output_path(out: Path, bucket: str, method: str, index: int, name: str, mask: int | None = None) -> Path:
    """Where an output PNG is kept: ``index_name.png``, or ``index_name_mMASK.png`` for an image's further
    masks (``masks_per_image`` > 1)."""
    tail = "" if mask is None else f"_m{mask:05d}"
    return (
        out / OUTPUTS_DIR / _slug(bucket) / _slug(method) / f"{index:05d}_{_slug(Path(name).stem)}{tail}.png"
    )


def mask_assignment(n_masks: int, n_images: int, per_image: int) -> list[list[int]]:
    """The mask indices of each image in a bucket of ``n_masks`` masks: image i gets i mod n_masks first,
    then (i + j·n_images) mod n_masks for j = 1 … K − 1, K = min(per_image, max(1, n_masks // n_images))
    so that no image gets the same mask twice. Returns n_images lists of K indices."""
    k = min(per_image, max(1, n_masks // n_images))
    return [[(i + j * n_images) % n_masks for j in range(k)] for i in range(n_images)]


def _make_grid(cells: list[list[torch.Tensor]], labels: list[str], size: int):
    """Rows of equally sized image tensors (1×3×S×S) under a header of column labels → PIL image."""
    from PIL import Image, ImageDraw, ImageFont

    from .images import tensor_to_pil

    header = 14
    cols = len(labels)
    grid = Image.new("RGB", (cols * size, header + len(cells) * size), (255, 255, 255))
    draw = ImageDraw.Draw(grid)
    font = ImageFont.load_default()
    for c, label in enumerate(labels):
        draw.text((c * size + 2, 1), label[: max(1, size // 6)], fill=(0, 0, 0), font=font)
    for r, row in enumerate(cells):
        for c, tile in enumerate(row):
            grid.paste(tensor_to_pil(tile), (c * size, header + r * size))
    return grid


# ----------------------------------------------------------------------------------------------------------
# evaluate
# ----------------------------------------------------------------------------------------------------------


def evaluate(
    data: PathLike,
    masks: PathLike,
    out_dir: PathLike,
    *,
    models: Sequence[PathLike] = (),
    baselines: Sequence[str] | str = (),
    size: int = 256,
    best_of: int = 0,
    seed: int = 0,
    limit: int | None = None,
    progress: bool = True,
    save_outputs: bool = False,
    threads: int | None = None,
    command: Sequence[str] | None = None,
    published: PathLike | None = None,
    adapt: int = 0,
    texture: float = 0.0,
    masks_per_image: int = 1,
) -> dict:
    """Evaluate ``models`` and ``baselines`` on the images ``data`` with the mask protocol ``masks``.

    Args:
        data: image folder or file list; the sorted list is used (first ``limit`` images if given).
        masks: a protocol folder from :func:`make_eval_masks`, or one mask-set folder (one bucket).
        out_dir: report folder (``results.csv``, ``results.json``, ``report.md``, ``grid.png``,
            ``cache.jsonl``, ``outputs/``); an existing one is resumed from its cache.
        models: packaged model names, run folders or ``.safetensors`` files (label: packaged name or
            folder name). Each gives a deterministic row; with ``best_of`` K > 0 also a "best-of-K" row.
        baselines: names from :data:`dualinpaint.baselines.BASELINES` (a list, or "telea,ns"; "all" =
            every installed one). Unknown names raise ValueError, missing packages ImportError.
        size: evaluation side; the masks must have this size.
        best_of: K samples per image for the oracle best-of-K rows (0 = none).
        seed: seed of the best-of-K sampling.
        progress: show a tqdm bar on stderr.
        save_outputs: keep every quantised output PNG under ``outputs/`` (only the grid's otherwise).
        threads: torch intra-op threads during the run (restored afterwards); None keeps the current
            setting. On a machine already busy (e.g. training on every core) 1 is several times faster.
        command: the command line to record (default ``sys.argv``).
        published: a CSV of published numbers (:func:`read_published`) printed in the report beside
            ours, labelled as not re-run; read before anything runs, so a bad file changes nothing.
        adapt: > 0 adds a row ``"<label> adapted-N"`` per dual-path model: the deterministic fill after N
            steps of per-photo adaptation (:func:`dualinpaint.adapt.adapt`, seeded per image from ``seed``).
        texture: > 0 adds a row ``"<label> texture-S"`` per model: the deterministic fill with texture
            transferred from the known region at strength S (:func:`dualinpaint.texture.transfer_texture`).
        masks_per_image: K masks per image and bucket (see the module docstring): K fills per image, one
            row each; every bucket mean is over its fills.

    Returns the content of ``results.json``: ``{protocol, software, command, args, methods, aggregates,
    contributions, comparisons, rows, paths}``. Rows are ordered by bucket, method, image.
    """
    import torch

    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ValueError(f"threads must be a positive int or None, got {threads!r}")
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return _evaluate(
            data,
            masks,
            out_dir,
            models=models,
            baselines=baselines,
            size=size,
            best_of=best_of,
            seed=seed,
            limit=limit,
            progress=progress,
            save_outputs=save_outputs,
            threads=threads,
            command=command,
            published=read_published(published) if published is not None else None,
            adapt=adapt,
            texture=texture,
            masks_per_image=masks_per_image,
        )
    finally:
        torch.set_num_threads(previous)


def _evaluate(
    data: PathLike,
    masks: PathLike,
    out_dir: PathLike,
    *,
    models: Sequence[PathLike],
    baselines: Sequence[str] | str,
    size: int,
    best_of: int,
    seed: int,
    limit: int | None,
    progress: bool,
    save_outputs: bool,
    threads: int | None,
    command: Sequence[str] | None,
    published: dict | None,
    adapt: int = 0,
    texture: float = 0.0,
    masks_per_image: int = 1,
) -> dict:
    from tqdm import tqdm

    from .images import atomic_write_bytes, pil_to_tensor, save_image_atomic, tensor_to_pil

    if isinstance(size, bool) or not isinstance(size, int) or size < 16:
        raise ValueError(f"size must be an int >= 16, got {size!r}")
    if isinstance(best_of, bool) or not isinstance(best_of, int) or best_of < 0:
        raise ValueError(f"best_of must be an int >= 0, got {best_of!r}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be a positive int or None, got {limit!r}")
    if isinstance(masks_per_image, bool) or not isinstance(masks_per_image, int) or masks_per_image < 1:
        raise ValueError(f"masks_per_image must be an int >= 1, got {masks_per_image!r}")
    if isinstance(models, str | Path):
        models = [models]
    baseline_names = _parse_baselines(baselines)
    if not models and not baseline_names:
        raise ValueError("nothing to evaluate: give at least one model or baseline")
    if best_of and not models:
        raise ValueError("best_of needs at least one model (baselines have a single output)")
    if isinstance(adapt, bool) or not isinstance(adapt, int) or adapt < 0:
        raise ValueError(f"adapt must be an int >= 0, got {adapt!r}")
    if adapt and not models:
        raise ValueError("adapt needs at least one model (baselines are not trained)")
    from .texture import check_strength

    check_strength(texture)
    if texture and not models:
        raise ValueError("texture needs at least one model (it is added to a model's fill)")

    buckets, masks_info = load_protocol(masks)
    for b in buckets:
        if b.size != size:
            raise ValueError(
                f"mask set {b.folder} is {b.size}×{b.size} but the evaluation size is {size}: make masks "
                f"at that size (dualinpaint eval-masks --size {size})"
            )
    # baselines first: their checks are cheap, a model load is not
    base_methods = [_baseline_method(name) for name in baseline_names]
    methods: list[Method] = []
    headline: list[str] = []  # each model's deterministic row
    for source in models:
        rows_of_model = _model_methods(source, best_of, adapt, texture)
        headline.append(rows_of_model[0].label)
        methods += rows_of_model
    methods += base_methods
    _unique_labels(methods)
    dataset = _load_data(data, size, limit)
    n_images = len(dataset.paths)

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cache = _Cache(out / CACHE_NAME)
    grid_pairs = {(bi, bi % n_images) for bi in range(min(len(buckets), GRID_MAX_ROWS))}
    fills = [mask_assignment(len(b.masks), n_images, masks_per_image) for b in buckets]
    short = [  # a bucket of one mask (the centre square) is one fill per image by design: not reported
        f"{b.name} {len(f[0])}"
        for b, f in zip(buckets, fills, strict=True)
        if len(b.masks) > 1 and len(f[0]) < masks_per_image
    ]
    if short:
        warnings.warn(
            f"masks_per_image={masks_per_image}: fewer per image where a bucket has too few masks for that "
            f"many without repeats (masks // images): {', '.join(short)}",
            stacklevel=3,
        )

    def key_of(bi: int, i: int, mi: int, method: Method) -> str:
        return _cache_key(method, size, dataset.sha256[i], buckets[bi].mask_sha256[mi], seed)

    def compute(bi: int, i: int, mi: int, method: Method, image: torch.Tensor) -> tuple[dict, torch.Tensor]:
        b = buckets[bi]
        mask = b.masks[mi]
        run_seed = _sample_seed(seed, dataset.sha256[i], b.mask_sha256[mi])
        masked = image * (1 - mask)  # no method sees the hole's pixels
        start = time.perf_counter()
        pred, extra = method.run(masked, mask, run_seed, image)
        seconds = time.perf_counter() - start
        pred = quantise(pred)
        row = {**score(pred, image, mask), "lpips": None, "seconds": seconds, **extra}
        return row, pred

    def save_output(bi: int, i: int, mi: int, method: Method, pred: torch.Tensor) -> None:
        first = mi == fills[bi][i][0]  # the first mask keeps the name it has with one mask per image
        path = _output_path(out, buckets[bi].name, method.label, i, dataset.names[i], None if first else mi)
        save_image_atomic(tensor_to_pil(pred), path)

    total = sum(len(image_fills) for bucket_fills in fills for image_fills in bucket_fills) * len(methods)
    computed = 0
    bar = tqdm(total=total, desc="evaluate", unit="img", disable=not progress, dynamic_ncols=True)
    try:
        for i in range(n_images):
            every = [
                (bi, mi, method) for bi in range(len(buckets)) for mi in fills[bi][i] for method in methods
            ]
            todo = [(bi, mi, method) for bi, mi, method in every if key_of(bi, i, mi, method) not in cache]
            bar.update(len(every) - len(todo))
            if not todo:
                continue
            image = _load_image(dataset, i)
            for bi, mi, method in todo:
                bar.set_postfix_str(f"{buckets[bi].name} · {method.label}", refresh=False)
                row, pred = compute(bi, i, mi, method, image)
                if save_outputs or ((bi, i) in grid_pairs and mi == fills[bi][i][0]):
                    save_output(bi, i, mi, method, pred)  # before the cache entry: cached ⇒ saved
                cache.add(key_of(bi, i, mi, method), row)
                computed += 1
                bar.update(1)
    finally:
        bar.close()

    rows = []
    for bi, b in enumerate(buckets):
        for method in methods:
            for i, mi in [(i, mi) for i, image_fills in enumerate(fills[bi]) for mi in image_fills]:
                cached = cache.get(key_of(bi, i, mi, method))
                row = {
                    "bucket": b.name,
                    "method": method.label,
                    "image_index": i,
                    "image": dataset.names[i],
                    "image_sha256": dataset.sha256[i],
                    "mask_index": mi,
                    "mask_sha256": b.mask_sha256[mi],
                    "hole_ratio": b.hole_ratios[mi],
                    **{c: _float(cached.get(c)) for c in METRIC_COLUMNS},
                    "detail_ratio": _float(cached.get("detail_ratio")),
                    **{c: _float(cached.get(c)) for c in DETAIL_COLUMNS},
                    "lpips": cached.get("lpips"),
                    "seconds": _float(cached.get("seconds")),
                    "chosen_sample": cached.get("chosen_sample"),
                    "method_id": method.method_id,
                }
                if "sample_l1" in cached:
                    row["sample_l1"] = [_float(v) for v in cached["sample_l1"]]
                rows.append(row)
    aggregates = aggregate(rows, [b.name for b in buckets], [m.label for m in methods])
    pairs = [(m.label, m.own_fill.label) for m in methods if m.kind == "model" and m.own_fill is not None]

    # grid: masked input | each method | real, one row per bucket (first few buckets)
    cells, labels = [], ["masked input", *[m.label for m in methods], "real"]
    for bi, i in sorted(grid_pairs):
        b = buckets[bi]
        mi = fills[bi][i][0]
        mask = b.masks[mi]
        image = _load_image(dataset, i)
        row_cells = [image * (1 - mask) + mask]  # hole shown white
        for method in methods:
            path = _output_path(out, b.name, method.label, i, dataset.names[i])
            if not path.is_file():  # e.g. an older cache without the PNG: recompute for the picture only
                save_output(bi, i, mi, method, compute(bi, i, mi, method, image)[1])
            row_cells.append(pil_to_tensor(_open_png(path)))
        row_cells.append(image)
        cells.append(row_cells)
    grid = _make_grid(cells, labels, size)

    protocol = {
        "size": size,
        "seed": seed,
        "best_of": best_of,
        "limit": limit,
        "quantisation": "uint8 (round, clip) before metrics",
        "transform": f"shorter side to {size} (antialiased bilinear), centre crop {size}x{size}",
        "masks_per_image": masks_per_image,
        "mask_assignment": "image i of a bucket uses mask i mod len(bucket)"
        + (
            f", and masks (i + j·{n_images}) mod len(bucket) for j = 1 … {masks_per_image - 1}, at most "
            f"len(bucket) // {n_images} masks per image"
            if masks_per_image > 1
            else ""
        ),
        "input": "ground truth with the hole set to 0 (mid grey); the hole's pixels are never passed",
        "metrics": {
            "psnr": f"10·log10(255²/MSE) over the whole image, capped at {PSNR_CAP_DB:g} dB",
            "ssim": "11x11 Gaussian sigma 1.5, RGB channel mean, border cropped (scikit-image)",
            "hole_psnr": "PSNR over the hole pixels (all channels)",
            "hole_ssim": "SSIM map averaged over hole pixels",
            "l1": "mean |error| / 255 over the whole image",
            "hole_l1": "mean |error| / 255 over the hole pixels",
            "detail_ratio": "mean Sobel gradient magnitude (BT.601 luminance, [0, 255], replicated "
            "borders) over the hole eroded by 2 px, output over ground truth; a bucket's value is "
            "sum(detail_sum) / sum(detail_ref_sum) over its images (pooled)",
            "contribution": "model minus its own smooth fill (the '<model> own fill' row: "
            "net.prefill composited) in bucket PSNR, hole PSNR and pooled detail ratio; psnr_se and "
            "hole_psnr_se: standard error of the mean difference (paired by image and mask; each image's "
            "differences averaged, then the standard error over images); "
            "wins / losses: fills above / below the own fill in PSNR",
            "comparison": "each model's deterministic row after the first minus the first's, with the "
            "same paired statistics as the contribution",
            "lpips": "n/a (no weights)",
            "fid": "n/a (no weights)",
        },
        "data": {
            "source": dataset.source,
            "images": n_images,
            "list_sha256": dataset.list_sha256,
            "files": [{"name": n, "sha256": s} for n, s in zip(dataset.names, dataset.sha256, strict=True)],
        },
        "masks": masks_info,
    }
    results = {
        "format_version": RESULTS_FORMAT_VERSION,
        "protocol": protocol,
        "software": software_versions(),
        "command": list(sys.argv if command is None else command),
        "args": {
            "data": str(data),
            "masks": str(masks),
            "out_dir": str(out_dir),
            "models": [str(m) for m in models],
            "baselines": baseline_names,
            "size": size,
            "best_of": best_of,
            "adapt": adapt,
            "texture": texture,
            "seed": seed,
            "limit": limit,
            "masks_per_image": masks_per_image,
            "save_outputs": save_outputs,
            "threads": threads,
        },
        "methods": [
            {
                "label": m.label,
                "method_id": m.method_id,
                "kind": m.kind,
                "info": m.info,
                **({"own_fill": m.own_fill.label} if m.own_fill is not None else {}),
            }
            for m in methods
        ],
        **({"published": published} if published else {}),
        "aggregates": aggregates,
        "contributions": contributions(aggregates, pairs, rows),
        "comparisons": comparisons(aggregates, [(label, headline[0]) for label in headline[1:]], rows),
        "rows": rows,
        "computed": computed,
        "cached": total - computed,
    }
    _write_csv(out / RESULTS_CSV, rows)
    atomic_write_bytes(out / RESULTS_JSON, _json_bytes(results))
    atomic_write_bytes(out / REPORT_MD, render_report(results).encode("utf-8"))
    save_image_atomic(grid, out / GRID_PNG)
    results["paths"] = {
        name: str(out / name) for name in (RESULTS_CSV, RESULTS_JSON, REPORT_MD, GRID_PNG, CACHE_NAME)
    }
    return results


def _open_png(path: Path):
    from .images import open_image

    return open_image(path)


# ----------------------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------------------


def add_evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``dualinpaint evaluate``."""
    parser.add_argument(
        "--data", required=True, help="evaluation images: a folder (recursive) or a file list"
    )
    parser.add_argument(
        "--masks", required=True, help="mask protocol folder (dualinpaint eval-masks) or one mask-set folder"
    )
    parser.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="CKPT",
        help="packaged model name, run folder or .safetensors file (repeatable)",
    )
    parser.add_argument(
        "--baselines",
        default="",
        metavar="NAMES",
        help="comma-separated classical baselines: telea,ns,biharmonic,harmonic,mlbiharmonic,patchmatch "
        "(or 'all' installed)",
    )
    parser.add_argument("--out", required=True, help="report folder (resumed if it holds a cache.jsonl)")
    parser.add_argument("--size", type=int, default=256, help="evaluation side (masks must match)")
    parser.add_argument(
        "--best-of",
        type=int,
        default=0,
        metavar="K",
        help="also report each model's best of K samples vs the ground truth (oracle; separate rows)",
    )
    parser.add_argument(
        "--adapt",
        type=int,
        default=0,
        metavar="STEPS",
        help="also report each model after STEPS steps of per-photo adaptation (separate rows)",
    )
    parser.add_argument(
        "--texture",
        type=float,
        default=0.0,
        metavar="S",
        help="also report each model with texture transferred from the known region at strength S "
        "(separate rows)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the best-of-K sampling and adaptation")
    parser.add_argument("--limit", type=int, default=None, metavar="N", help="first N images only")
    parser.add_argument(
        "--masks-per-image",
        type=int,
        default=1,
        metavar="K",
        help="K masks per image in each bucket (default 1; at most masks // images, so none repeats): "
        "K fills per image, a less noisy mean",
    )
    parser.add_argument(
        "--save-outputs",
        action="store_true",
        help="keep every output PNG under OUT/outputs (grid rows only otherwise)",
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's; 1 on a busy machine)"
    )
    parser.add_argument(
        "--published",
        default=None,
        metavar="CSV",
        help="published numbers to print beside ours, labelled as not re-run (columns method,masks,psnr,ssim"
        "[,source]), e.g. the paper's Table I",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def evaluate_command(args: argparse.Namespace) -> int:
    """``dualinpaint evaluate``: run, print the tables, return the exit status."""
    try:
        results = evaluate(
            args.data,
            args.masks,
            args.out,
            models=args.model,
            baselines=args.baselines,
            size=args.size,
            best_of=args.best_of,
            seed=args.seed,
            limit=args.limit,
            progress=not args.quiet,
            save_outputs=args.save_outputs,
            threads=args.threads,
            command=["dualinpaint", *sys.argv[1:]],
            published=args.published,
            adapt=args.adapt,
            texture=args.texture,
            masks_per_image=args.masks_per_image,
        )
    except ImportError as err:
        print(f"dualinpaint: error: {err}", file=sys.stderr)
        return 2
    report = Path(results["paths"][REPORT_MD]).read_text(encoding="utf-8")
    print(report[report.find("## ") :] if "## " in report else report, end="")
    print(
        f"{results['computed']} computed, {results['cached']} from the cache; "
        f"report in {results['paths'][REPORT_MD]}"
    )
    return 0


def add_eval_masks_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``dualinpaint eval-masks``."""
    parser.add_argument(
        "--out", required=True, help="protocol folder (a subfolder per bucket + protocol.json)"
    )
    parser.add_argument("--size", type=int, default=256, help="mask side (the evaluation size)")
    parser.add_argument(
        "--count", type=int, default=DEFAULT_MASK_COUNT, help="masks per stroke bucket (center has one)"
    )
    parser.add_argument("--seed", type=int, default=0)


def eval_masks_command(args: argparse.Namespace) -> int:
    """``dualinpaint eval-masks``: write the protocol, print one line per bucket."""
    protocol = make_eval_masks(args.out, size=args.size, count=args.count, seed=args.seed)
    for b in protocol["buckets"]:
        print(
            f"{b['name']:>14}: {b['count']:>4} {b['kind']} masks, hole "
            f"{_ratio_text(b['min_ratio'], b['max_ratio'])} (mean {100 * b['mean_hole_ratio']:.1f} %)"
        )
    print(f"wrote {Path(args.out) / PROTOCOL_NAME}")
    return 0
