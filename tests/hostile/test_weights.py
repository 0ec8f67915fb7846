"""Hostile model files offered to ``dualinpaint fill --model``: pickles (never executed), truncated
safetensors, configs that do not match the weights, NaN weights. Each is refused with one clean line
(exit 2) before any image is touched; the safe forms of a ``.pt`` load and fill correctly."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from dualinpaint import checkpoint
from dualinpaint.generator import DualPathInpainter
from dualinpaint.inference import Inpainter
from dualinpaint.train import Trainer

from .conftest import (
    assert_one_line_error,
    assert_outside_identical,
    hole_array,
    mask_image,
    photo,
    rgb_of,
    run_cli,
    write,
)


class Payload:
    """Unpickling this object creates ``marker``: proof that a loader ran code from the file."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture
def files(tmp_path):
    image = write(photo(), tmp_path / "photo.png")
    mask = write(mask_image(), tmp_path / "mask.png")
    return image, mask, tmp_path / "out" / "filled.png"


def fill_with(capsys, model, files):
    image, mask, out = files
    return run_cli(capsys, "fill", image, "--mask", mask, "-o", out, "--model", model, "--quiet")


def refused(capsys, model, files, *words):
    code, _, err = fill_with(capsys, model, files)
    assert code == 2
    assert_one_line_error(err, *words)
    assert not files[2].exists() and not files[2].parent.exists()


# -------------------------------------------------------------------------------------------- pickles


@pytest.mark.parametrize(
    "name, writer",
    [
        ("evil.pt", "pickle"),
        ("evil.pth", "torch.save"),
        ("evil.ckpt", "torch.save"),
        ("run/model.safetensors", "pickle"),
    ],
    ids=["raw-pickle.pt", "torch-zip.pth", "torch-zip.ckpt", "pickle-named-safetensors"],
)
def test_code_carrying_pickle_is_refused_and_never_run(tmp_path, capsys, files, name, writer):
    """Outcome: clean one-line error; the payload never runs."""
    marker = tmp_path / "PWNED"
    path = tmp_path / name
    path.parent.mkdir(exist_ok=True)
    payload = {"config": {}, "net": Payload(marker)}
    if writer == "pickle":
        path.write_bytes(pickle.dumps(payload))
    else:
        torch.save(payload, path)
    words = (
        "not a readable safetensors file" if name.endswith(".safetensors") else "refusing to load a pickled"
    )
    refused(capsys, path.parent if name.startswith("run/") else path, files, words)
    assert not marker.exists(), "the pickle's code ran"


def test_plain_state_dict_pt_is_refused_for_want_of_a_config(tmp_path, capsys, files, tiny):
    """Outcome: clean one-line error (safe to read, but nothing says how to build the network)."""
    path = tmp_path / "weights.pt"
    torch.save(DualPathInpainter(tiny.model).state_dict(), path)
    refused(capsys, path, files, "holds no dualinpaint network and config")


def _trained_pair(tmp_path: Path, tiny) -> tuple[Path, Path]:
    """A state.pt and the model.safetensors saved from the same (briefly perturbed) trainer."""
    trainer = Trainer(tiny)
    with torch.no_grad():
        for p in trainer.net.parameters():
            p.add_(0.01 * torch.randn_like(p))
    run = tmp_path / "run"
    checkpoint.save_state(run, trainer.state_dict({"epoch": 0, "batch": 0}))
    checkpoint.save_weights(run, trainer.inference_net, tiny, 0)
    return run / checkpoint.STATE_NAME, run / checkpoint.WEIGHTS_NAME


@pytest.mark.parametrize("form", ["training-state.pt", "safetensors-named.pt"])
def test_safe_pt_forms_load_and_fill_like_the_safetensors(tmp_path, capsys, files, tiny, form):
    """Outcome: correct result, identical to the fill from the run's model.safetensors."""
    state, weights = _trained_pair(tmp_path, tiny)
    if form == "safetensors-named.pt":
        offered = tmp_path / "renamed.pt"
        offered.write_bytes(weights.read_bytes())
    else:
        offered = state
    code, _, err = fill_with(capsys, offered, files)
    assert code == 0, err
    image, _, out = files
    assert_outside_identical(rgb_of(image), rgb_of(out), hole_array())
    reference = Inpainter.from_pretrained(weights)(photo(), mask_image())
    assert np.array_equal(rgb_of(out), np.asarray(reference))


# ------------------------------------------------------------------------------------------ truncation


@pytest.mark.parametrize("keep", [0, 4, 8, 200, 0.5, -1], ids=lambda k: f"keep-{k}")
def test_truncated_safetensors_is_refused(tmp_path, capsys, files, model_dir, keep):
    """Outcome: clean one-line error, whatever the cut."""
    raw = (model_dir / checkpoint.WEIGHTS_NAME).read_bytes()
    n = int(len(raw) * keep) if isinstance(keep, float) else (len(raw) + keep if keep < 0 else keep)
    bad = tmp_path / "cut.safetensors"
    bad.write_bytes(raw[:n])
    refused(capsys, bad, files, "cut.safetensors", "not a readable safetensors file")


# ----------------------------------------------------------------------------------------- mismatches


def _rewrite(model_dir: Path, out: Path, *, meta=None, tensors=None) -> Path:
    """A copy of the tiny model with its stored metadata and/or tensors replaced."""
    stored = load_file(model_dir / checkpoint.WEIGHTS_NAME)
    text = json.loads((model_dir / checkpoint.META_NAME).read_text())
    metadata = {"dualinpaint": json.dumps(meta(text) if meta else text)} if meta is not False else None
    save_file(tensors(stored) if tensors else stored, str(out), metadata=metadata)
    return out


def _with(section: str, key: str, value):
    def edit(text):
        text["config"][section][key] = value
        return text

    return edit


MISMATCHES = {
    "wider-config": (dict(meta=_with("model", "ngf", 16)), "weights do not match the network"),
    "other-depth": (dict(meta=_with("model", "n_down", 4)), "weights do not match the network"),
    "no-metadata": (dict(meta=False), "has no dualinpaint config"),
    "unknown-config-key": (dict(meta=_with("model", "wings", 2)), "stored config is invalid"),
    "bad-config-type": (dict(meta=_with("model", "ngf", "eight")), "stored config is invalid"),
    "missing-tensor": (dict(tensors=lambda t: dict(list(t.items())[1:])), "missing"),
    "extra-tensor": (dict(tensors=lambda t: {**t, "spare.weight": torch.zeros(3)}), "unexpected"),
}


@pytest.mark.parametrize("kind", list(MISMATCHES))
def test_weights_whose_config_does_not_match_are_refused(tmp_path, capsys, files, model_dir, kind):
    """Outcome: clean one-line error naming the file."""
    change, words = MISMATCHES[kind]
    bad = _rewrite(model_dir, tmp_path / "odd.safetensors", **change)
    refused(capsys, bad, files, "odd.safetensors", words)


# ---------------------------------------------------------------------------------------- non-finite


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")], ids=["nan", "inf", "-inf"])
def test_non_finite_weights_are_refused_at_load(tmp_path, capsys, files, model_dir, value):
    """Outcome: clean one-line error naming the tensor; nothing is filled with garbage."""

    def poison(t):
        name = sorted(k for k, v in t.items() if v.is_floating_point())[5]
        t[name] = t[name].clone()
        t[name].view(-1)[0] = value
        return t

    bad = _rewrite(model_dir, tmp_path / "poisoned.safetensors", tensors=poison)
    refused(capsys, bad, files, "holds NaN or infinity")


def test_nan_in_a_training_state_pt_is_refused(tmp_path, capsys, files, tiny):
    """Outcome: clean one-line error (the weights_only path checks finiteness too)."""
    trainer = Trainer(tiny)
    state = trainer.state_dict({"epoch": 0, "batch": 0})
    first = next(k for k, v in state["net"].items() if v.is_floating_point())
    state["net"][first].view(-1)[0] = float("nan")
    checkpoint.save_state(tmp_path / "run", state)
    refused(capsys, tmp_path / "run" / checkpoint.STATE_NAME, files, "holds NaN or infinity")
