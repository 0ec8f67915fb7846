"""Shared pieces of the hostile-input suite: a tiny random-weight model saved once per session, image and
mask makers, and checks of what a failure looks like from the outside (one line, no traceback).

The tiny model comes from ``tests/conftest.py`` (``tiny_model_dir``).
"""

from __future__ import annotations

import errno
import io
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dualinpaint.cli import main
from dualinpaint.config import Config, load_config
from dualinpaint.inference import Inpainter

W, H = 48, 40
BOX = (12, 10, 30, 26)  # x0, y0, x1, y1 of the default hole


@pytest.fixture(scope="session", autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny convolutions run faster on one thread, and the machine is busy with a training run."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny() -> Config:
    return load_config("tiny")


@pytest.fixture(scope="session")
def model_dir(tiny_model_dir: Path) -> Path:
    """A run folder holding a tiny random-weight model (model.safetensors + model.json)."""
    return tiny_model_dir


@pytest.fixture(scope="session")
def inpainter(model_dir: Path) -> Inpainter:
    return Inpainter.from_pretrained(model_dir)


@pytest.fixture
def reuse_model(monkeypatch: pytest.MonkeyPatch, model_dir: Path, inpainter: Inpainter) -> None:
    """``--model MODEL_DIR`` gives the session's already loaded ``inpainter`` (loading costs 0.2 s a call;
    the loading itself is what test_weights.py exercises). Any other source loads for real."""
    real = Inpainter.from_pretrained.__func__
    defaults = {"margin": 0.5, "working_size": None, "runtime": "torch", "precision": "auto"}
    defaults.update({"compile": False, "threads": None, "channels_last": True})

    def from_pretrained(cls, source="default", **kw):
        plain = all(k in defaults and v == defaults[k] for k, v in kw.items())
        if plain and Path(source).resolve() == model_dir.resolve():
            return inpainter
        return real(cls, source, **kw)

    monkeypatch.setattr(Inpainter, "from_pretrained", classmethod(from_pretrained))


class DiskFull:
    """A file object that writes half of what it is given, then fails with ENOSPC (a disk that fills up
    mid-write); wrap the result of ``os.fdopen`` with it."""

    def __init__(self, f):
        self.f = f

    def write(self, data):
        self.f.write(data[: len(data) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def __getattr__(self, name):
        return getattr(self.f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()
        return False


# --------------------------------------------------------------------------------------------- pictures


def photo(size: tuple[int, int] = (W, H), seed: int = 0) -> Image.Image:
    """Gradients plus noise: an RGB image whose hole content a random model cannot reproduce."""
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    rng = np.random.default_rng(seed)
    base = np.stack([xx * 255 // max(1, w - 1), yy * 255 // max(1, h - 1), (xx + yy) * 3 % 256], -1)
    noisy = base + rng.integers(-20, 21, (h, w, 3))
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8), "RGB")


def hole_array(size: tuple[int, int] = (W, H), box: tuple[int, int, int, int] = BOX) -> np.ndarray:
    """Bool H×W, True inside ``box`` (x0, y0, x1, y1)."""
    w, h = size
    hole = np.zeros((h, w), bool)
    x0, y0, x1, y1 = box
    hole[y0:y1, x0:x1] = True
    return hole


def mask_image(size: tuple[int, int] = (W, H), box: tuple[int, int, int, int] = BOX) -> Image.Image:
    """L-mode mask, white = hole."""
    return Image.fromarray(hole_array(size, box).astype(np.uint8) * 255, "L")


def grey_edge_mask() -> np.ndarray:
    """uint8 H×W: the default hole at 128 (one level above the threshold 127) in a field of 127 (exactly at
    it: kept), with a 4×4 core of 255 and a border of 0. Intended hole (``> 127``): ``hole_array()``."""
    arr = np.full((H, W), 127, np.uint8)
    arr[hole_array()] = 128
    x0, y0 = BOX[:2]
    arr[y0 + 4 : y0 + 8, x0 + 4 : x0 + 8] = 255
    arr[:2] = 0
    assert np.array_equal(arr > 127, hole_array())
    return arr


def write(im: Image.Image, path: Path, **params) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path, **params)
    return path


def encoded(im: Image.Image, fmt: str = "PNG", **params) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **params)
    return buf.getvalue()


def rgb_of(path_or_image: Path | Image.Image) -> np.ndarray:
    """The RGB pixels of a file (as stored, no EXIF rotation) or an image, uint8 H×W×3."""
    im = Image.open(path_or_image) if isinstance(path_or_image, Path) else path_or_image
    return np.asarray(im.convert("RGB"))


FILLED = 0.9  # share of hole pixels a fill changes (the tiny random model on photo(): 100 %)


def assert_outside_identical(before: np.ndarray, after: np.ndarray, hole: np.ndarray) -> None:
    """Exactly ``hole`` was filled: same shape; every pixel outside ``hole`` bit-identical; and the hole
    filled all over, not just somewhere: at least ``FILLED`` of its pixels changed (in any channel), so a
    part of the intended hole that the code did not treat as hole (a mask threshold off by one grey level,
    a resize off by a row) fails as surely as a changed pixel outside it. Pass the intended hole (for a
    grey mask: ``mask > 127``, the documented threshold), not the code's own reading of the mask."""
    assert before.shape == after.shape, (before.shape, after.shape)
    assert hole.shape == before.shape[:2] and hole.dtype == bool, (hole.shape, hole.dtype)
    assert hole.any(), "the intended hole is empty: nothing to check"
    assert np.array_equal(before[~hole], after[~hole]), "a pixel outside the hole changed"
    changed = before != after
    if changed.ndim == 3:
        changed = changed.any(axis=-1)
    share = float(changed[hole].mean())
    assert share >= FILLED, f"only {share:.0%} of the hole's {int(hole.sum())} pixels were filled"


# ---------------------------------------------------------------------------------------- the outside


def run_cli(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    """``dualinpaint.cli.main(argv)`` in-process: (exit code, stdout, stderr)."""
    capsys.readouterr()
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_no_traceback(text: str) -> None:
    assert "Traceback" not in text and 'File "' not in text, text
    assert "warnings.warn(" not in text, f"a raw Python warning leaked: {text}"


def assert_one_line_error(err: str, *fragments: str) -> None:
    """stderr is exactly one line ``dualinpaint: error: …`` holding every fragment."""
    assert_no_traceback(err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"expected one line, got {len(lines)}: {err!r}"
    assert lines[0].startswith("dualinpaint: error: "), lines[0]
    for f in fragments:
        assert f in lines[0], (f, lines[0])


def assert_warning_lines(err: str, *fragments: str) -> list[str]:
    """Every stderr line is ``dualinpaint: warning: …`` and every fragment is in one of them."""
    assert_no_traceback(err)
    lines = err.strip().splitlines()
    for line in lines:
        assert line.startswith("dualinpaint: warning: "), f"not a one-line warning: {line!r} in {err!r}"
    for f in fragments:
        assert any(f in line for line in lines), (f, lines)
    return lines
