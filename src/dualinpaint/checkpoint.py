"""Saving and loading: inference weights (safetensors + config JSON) and full training state.

- ``model.safetensors`` holds the generator side (E1/E2, heads, G1/G2) with the config JSON in its
  metadata; ``model.json`` beside it holds the same config and the step. This pair is what inference
  loads; nothing is unpickled.
- ``state.pt`` holds everything needed to resume exactly: network, critics, optimisers, EMA, step, data
  position, RNG states and the config. It contains tensors and plain data only and is read with
  ``torch.load(weights_only=True)``.
Every file is written to a temporary file first and renamed, so a crash mid-write never leaves a
half-written checkpoint where the previous one was.
"""

from __future__ import annotations

import io
import json
import math
import warnings
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import nn

from .config import Config, ConfigError
from .images import atomic_write_bytes

FORMAT_VERSION = 1
WEIGHTS_NAME = "model.safetensors"
META_NAME = "model.json"
STATE_NAME = "state.pt"
PICKLE_SUFFIXES = (".pt", ".pth", ".ckpt", ".pkl", ".bin")


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable, inconsistent or unsafe; the message says which file and why."""


class CheckpointWriteError(OSError, CheckpointError):
    """A checkpoint file could not be written (disk full, …); the previous file of that name is intact.

    Both a ``CheckpointError`` (a ``ValueError``: the command line prints it as one line) and an
    ``OSError`` (its ``errno`` is the original one).
    """

    def __str__(self) -> str:
        return self.strerror or super().__str__()


def write_file(path: Path, data: bytes) -> None:
    """``atomic_write_bytes``; a failure is a ``CheckpointWriteError`` (one line, the old file kept)."""
    try:
        atomic_write_bytes(path, data)
    except OSError as err:
        raise CheckpointWriteError(
            err.errno, f"cannot write {path}: {err.strerror or err}; the previous {path.name} is kept"
        ) from err


def clean_state_dict(module: nn.Module) -> dict[str, torch.Tensor]:
    """State dict of an unwrapped module (no ``module.`` / ``_orig_mod.`` prefixes), contiguous CPU copies."""
    module = getattr(module, "_orig_mod", module)
    module = getattr(module, "module", module)
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in module.state_dict().items()}


def save_weights(out_dir: str | Path, net: nn.Module, cfg: Config, step: int) -> Path:
    """Write ``model.safetensors`` (+ ``model.json``) for inference. Returns the weights path."""
    out_dir = Path(out_dir)
    meta = {"format_version": FORMAT_VERSION, "step": step, "config": cfg.to_dict()}
    text = json.dumps(meta, indent=2)
    data = st_save(clean_state_dict(net), metadata={"dualinpaint": text})
    write_file(out_dir / WEIGHTS_NAME, data)
    write_file(out_dir / META_NAME, (text + "\n").encode())
    return out_dir / WEIGHTS_NAME


def read_weights(path: str | Path) -> tuple[dict[str, torch.Tensor], Config, dict[str, Any]]:
    """Read a safetensors weights file (or a run folder holding one).

    Returns (state dict, config, metadata). Refuses anything that is not safetensors, files whose
    metadata has no dualinpaint config, and tensors holding NaN or infinity.
    """
    path = Path(path)
    if path.is_dir():
        path = path / WEIGHTS_NAME
    if not path.is_file():
        raise CheckpointError(f"no weights file at {path}")
    raw = path.read_bytes()
    try:
        tensors = st_load(raw)
        header_len = int.from_bytes(raw[:8], "little")
        header = json.loads(raw[8 : 8 + header_len])
    except (SafetensorError, ValueError, json.JSONDecodeError, OSError) as err:
        raise CheckpointError(f"{path} is not a readable safetensors file ({err})") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path} is not a readable safetensors file (its header is not a JSON object)")
    meta_text = (header.get("__metadata__") or {}).get("dualinpaint")
    if meta_text is None:
        raise CheckpointError(f"{path} has no dualinpaint config in its metadata")
    try:
        meta = json.loads(meta_text)
        cfg = Config.from_dict(meta["config"])
    except (ConfigError, KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{path}: stored config is invalid: {err}") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: stored metadata is not a JSON object")
    _check_finite(tensors, path)
    return tensors, cfg, meta


def _check_finite(tensors: dict[str, Any], path: Path) -> None:
    for name, t in tensors.items():
        if not isinstance(t, torch.Tensor):
            raise CheckpointError(f"{path}: entry {name!r} is not a tensor")
        if t.is_floating_point() and not torch.isfinite(t).all():
            raise CheckpointError(f"{path}: tensor {name!r} holds NaN or infinity; refusing to load")


def _is_safetensors(path: Path) -> bool:
    """True when the file starts like safetensors: an 8-byte header length, then a JSON object."""
    with path.open("rb") as f:
        head = f.read(9)
    return len(head) == 9 and head[8:9] == b"{"


def read_pickled_state(path: str | Path) -> tuple[dict[str, torch.Tensor], Config, dict[str, Any]]:
    """Weights from a ``.pt`` file that ``torch.load(weights_only=True)`` accepts: a training ``state.pt``.

    Anything else is refused: a pickle that needs arbitrary code (it could run anything), a file that
    is not a torch file, or tensors without a dualinpaint config. Returns what ``read_weights`` returns
    (the EMA generator when the run kept one).
    """
    path = Path(path)
    try:
        with warnings.catch_warnings():  # torch's multi-line notes about pickle protocols
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - UnpicklingError, zip errors, EOF …: all mean "refused"
        raise CheckpointError(
            f"{path}: refusing to load a pickled model that safe (weights_only) loading rejects "
            f"({err.__class__.__name__}); dualinpaint models are .safetensors"
        ) from None
    net = state.get("ema") or state.get("net") if isinstance(state, dict) else None
    if not isinstance(net, dict) or "config" not in state:
        raise CheckpointError(
            f"{path} holds no dualinpaint network and config (not a training state.pt); "
            "dualinpaint models are .safetensors"
        )
    try:
        cfg = Config.from_dict(state["config"])
    except (ConfigError, KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{path}: stored config is invalid: {err}") from None
    _check_finite(net, path)
    return net, cfg, {"format_version": state.get("format_version"), "step": state.get("step")}


def load_into(module: nn.Module, tensors: dict[str, torch.Tensor], source: str | Path) -> None:
    """Load a state dict strictly; a mismatch raises CheckpointError naming missing / unexpected keys."""
    try:
        result = module.load_state_dict(tensors, strict=False)
    except RuntimeError as err:  # shapes that do not match (a config edited by hand, another model's file)
        first = next((line.strip() for line in str(err).splitlines() if "mismatch" in line), str(err))
        raise CheckpointError(
            f"{source}: weights do not match the network built from its config ({first[:200]})"
        ) from None
    if result.missing_keys or result.unexpected_keys:
        raise CheckpointError(
            f"{source}: weights do not match the network built from its config "
            f"(missing {result.missing_keys[:3]}…, unexpected {result.unexpected_keys[:3]}…)"
        )


def save_state(out_dir: str | Path, state: dict[str, Any]) -> Path:
    """Write the full training state atomically as ``state.pt`` (tensors and plain data only)."""
    buf = io.BytesIO()
    torch.save({"format_version": FORMAT_VERSION, **state}, buf)
    path = Path(out_dir) / STATE_NAME
    write_file(path, buf.getvalue())
    return path


def load_state(out_dir: str | Path) -> dict[str, Any]:
    """Read ``state.pt`` with ``weights_only=True``; unreadable or foreign files raise CheckpointError."""
    path = Path(out_dir) / STATE_NAME
    if not path.is_file():
        raise CheckpointError(f"no training state at {path} (nothing to resume)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means the same to the user
        raise CheckpointError(f"{path} is not a readable training state ({err.__class__.__name__})") from None
    if not isinstance(state, dict) or state.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path} is not a dualinpaint training state of format {FORMAT_VERSION}")
    return state


def remove_stale_temporaries(out_dir: str | Path) -> list[Path]:
    """Delete the temporary files a checkpoint write leaves when its process is killed half-way
    (``.state.pt.*.tmp``, …). Call it only while no other process writes to ``out_dir``."""
    removed = []
    for p in Path(out_dir).glob(".*.tmp"):
        if p.is_file() and any(p.name.startswith(f".{n}.") for n in (WEIGHTS_NAME, META_NAME, STATE_NAME)):
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def is_finite_module(module: nn.Module) -> bool:
    """True when every floating parameter and buffer is finite."""
    return all(
        math.isfinite(float(t.detach().abs().max())) if t.numel() else True
        for t in list(module.parameters()) + list(module.buffers())
        if t.is_floating_point()
    )


MODEL_DIR = Path(__file__).parent / "assets" / "models"


def packaged_models() -> list[str]:
    """Names of the models shipped inside the package (``--model NAME``)."""
    if not MODEL_DIR.is_dir():
        return []
    return sorted(p.name for p in MODEL_DIR.iterdir() if (p / WEIGHTS_NAME).is_file())


def resolve_model(source: str | Path) -> Path:
    """A packaged model name (``default``), a run folder or a ``.safetensors`` file → the weights path."""
    p = Path(source)
    if p.is_dir():
        p = p / WEIGHTS_NAME
    if p.is_file():
        return p
    if p.parent == Path(".") and (MODEL_DIR / str(source) / WEIGHTS_NAME).is_file():
        return MODEL_DIR / str(source) / WEIGHTS_NAME
    names = ", ".join(packaged_models()) or "none"
    raise CheckpointError(
        f"no model {str(source)!r}: not a run folder, a .safetensors file or a packaged "
        f"model name (packaged: {names})"
    )


def load_model(source: str | Path):
    """Build the network from a model's stored config and load its weights (eval mode, CPU).

    ``source``: packaged model name, run folder or ``.safetensors`` file. A ``.pt``/``.pth``/… file is read
    only if it is safetensors under another name or a training ``state.pt`` that
    ``torch.load(weights_only=True)`` accepts; any other pickle is refused (unpickling can run code).
    Returns (DualPathInpainter, Config, metadata).
    """
    from .generator import build_generator

    path = resolve_model(source)
    if path.suffix.lower() in PICKLE_SUFFIXES and not _is_safetensors(path):
        tensors, cfg, meta = read_pickled_state(path)
    else:
        tensors, cfg, meta = read_weights(path)
    net = build_generator(cfg.model)
    load_into(net, tensors, path)
    net.eval().requires_grad_(False)
    return net, cfg, meta
