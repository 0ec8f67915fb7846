"""Hostile masks through ``dualinpaint fill`` and the ``Inpainter`` API: wrong size, wrong polarity, greys,
empty, full, alpha channels and every mode. Each ends in a correct fill (with a one-line warning where the
mask is suspicious) and never touches a pixel outside the hole it describes."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from dualinpaint.images import mask_to_tensor
from dualinpaint.inference import mask_array

from .conftest import (
    H,
    W,
    assert_outside_identical,
    assert_warning_lines,
    grey_edge_mask,
    hole_array,
    mask_image,
    photo,
    rgb_of,
    run_cli,
    write,
)

pytestmark = pytest.mark.usefixtures("reuse_model")


@pytest.fixture
def src(tmp_path):
    return write(photo(), tmp_path / "photo.png")


def fill(capsys, model_dir, image, mask, out, *extra):
    return run_cli(capsys, "fill", image, "--mask", mask, "-o", out, "--model", model_dir, "--quiet", *extra)


# ---------------------------------------------------------------------------------------------- size


@pytest.mark.parametrize(
    "size", [(W // 2, H // 2), (W * 3, H * 3), (W, H // 4)], ids=["half", "triple", "squashed"]
)
def test_mask_of_another_size_is_resized_with_a_warning(tmp_path, capsys, model_dir, src, size):
    """Outcome: warning + result; the hole is the nearest-resized mask."""
    small = mask_image().resize(size, Image.Resampling.NEAREST)
    mask = write(small, tmp_path / "mask.png")
    out = tmp_path / "out.png"
    code, _, err = fill(capsys, model_dir, src, mask, out)
    assert code == 0
    assert_warning_lines(err, f"mask is {size[0]}×{size[1]} but the image is {W}×{H}; mask resized")
    hole = np.asarray(small.resize((W, H), Image.Resampling.NEAREST)) > 127
    assert_outside_identical(rgb_of(src), rgb_of(out), hole)


# ------------------------------------------------------------------------------------------- polarity


def test_inverted_mask_warns(tmp_path, capsys, model_dir, src):
    """Outcome: warning + result (the white 85 % is filled as asked, the user is told to try --invert)."""
    inverted = write(Image.fromarray(255 - np.asarray(mask_image())), tmp_path / "mask.png")
    out = tmp_path / "out.png"
    code, _, err = fill(capsys, model_dir, src, inverted, out)
    assert code == 0
    assert_warning_lines(err, "it may be inverted: try --invert")
    assert_outside_identical(rgb_of(src), rgb_of(out), ~hole_array())


def test_inverted_mask_with_invert_flag(tmp_path, capsys, model_dir, src):
    """Outcome: correct result, no warning: --invert reads black as the hole."""
    inverted = write(Image.fromarray(255 - np.asarray(mask_image())), tmp_path / "mask.png")
    out = tmp_path / "out.png"
    code, _, err = fill(capsys, model_dir, src, inverted, out, "--invert")
    assert code == 0 and err == ""
    assert_outside_identical(rgb_of(src), rgb_of(out), hole_array())


# ---------------------------------------------------------------------------------------------- greys


def test_non_binary_grey_mask_is_thresholded_at_127(tmp_path, capsys, model_dir, src):
    """Outcome: correct result; 128 and above is a hole, 127 and below is kept."""
    arr = grey_edge_mask()
    mask = write(Image.fromarray(arr), tmp_path / "mask.png")
    out = tmp_path / "out.png"
    code, _, err = fill(capsys, model_dir, src, mask, out)
    assert code == 0 and err == ""
    assert_outside_identical(rgb_of(src), rgb_of(out), arr > 127)


@pytest.mark.parametrize("form", ["PIL-L", "PIL-RGB", "PIL-LA-alpha", "uint8-HxW", "uint8-HxWx3", "int64"])
def test_grey_127_is_kept_and_128_is_a_hole_through_the_api(inpainter, form):
    """Outcome: correct result; the threshold is the documented 127 for PIL masks (images.mask_to_tensor)
    and integer arrays (inference.mask_array) alike: 127 is kept, 128 is a hole."""
    arr = grey_edge_mask()
    mask = {
        "PIL-L": lambda: Image.fromarray(arr, "L"),
        "PIL-RGB": lambda: Image.fromarray(arr, "L").convert("RGB"),
        "PIL-LA-alpha": lambda: Image.merge("LA", (Image.new("L", (W, H), 255), Image.fromarray(arr, "L"))),
        "uint8-HxW": lambda: arr,
        "uint8-HxWx3": lambda: np.repeat(arr[..., None], 3, -1),
        "int64": lambda: arr.astype(np.int64),
    }[form]()
    assert np.array_equal(mask_array(mask, (W, H)), arr > 127)
    if isinstance(mask, Image.Image):
        assert np.array_equal(mask_to_tensor(mask)[0, 0].numpy() > 0.5, arr > 127)
    image = photo()
    assert_outside_identical(np.asarray(image), np.asarray(inpainter(image, mask)), arr > 127)


def test_lossy_jpeg_mask(tmp_path, capsys, model_dir, src):
    """Outcome: correct result; JPEG ringing around the brush is thresholded like any grey."""
    mask = write(mask_image(), tmp_path / "mask.jpg", quality=30)
    decoded = np.asarray(Image.open(mask).convert("L"))
    assert len(np.unique(decoded)) > 2  # the set-up really has greys
    out = tmp_path / "out.png"
    code, _, err = fill(capsys, model_dir, src, mask, out)
    assert code == 0 and err == ""
    assert_outside_identical(rgb_of(src), rgb_of(out), decoded > 127)


# -------------------------------------------------------------------------------------- empty and full


@pytest.mark.parametrize("mode", ["RGB", "RGBA"])
def test_all_zero_mask_returns_the_input_unchanged_and_says_so(tmp_path, capsys, model_dir, mode):
    """Outcome: warning + result identical to the input (alpha included)."""
    image = photo() if mode == "RGB" else photo().convert("RGBA")
    if mode == "RGBA":
        image.putalpha(Image.fromarray((np.arange(W)[None, :] * 4 + np.zeros((H, 1), int)).astype(np.uint8)))
    src = write(image, tmp_path / "photo.png")
    mask = write(Image.new("L", (W, H), 0), tmp_path / "mask.png")
    out = tmp_path / "out.png"
    code, _, err = fill(capsys, model_dir, src, mask, out)
    assert code == 0
    assert_warning_lines(err, "mask has no hole; nothing to fill")
    result = Image.open(out)
    assert result.mode == mode
    assert np.array_equal(np.asarray(result), np.asarray(Image.open(src)))


def test_all_zero_mask_through_the_api(inpainter):
    """Outcome: warning + result: K copies of the input, not the input object itself."""
    image = photo()
    with pytest.warns(UserWarning, match="nothing to fill"):
        results = inpainter.fill(image, np.zeros((H, W), bool), samples=2, seed=3)
    assert len(results) == 2 and all(r is not image for r in results)
    assert all(np.array_equal(np.asarray(r), np.asarray(image)) for r in results)


@pytest.mark.parametrize("extra", [(), ("--texture",)], ids=["plain", "texture"])
def test_all_hole_mask_fills_and_warns(tmp_path, capsys, model_dir, src, extra):
    """Outcome: warning + result (no context at all: the fill is made from nothing, but it is made;
    with --texture there is nothing to copy texture from, and that is no error)."""
    mask = write(Image.new("L", (W, H), 255), tmp_path / "mask.png")
    out = tmp_path / "out.png"
    code, _, err = fill(capsys, model_dir, src, mask, out, *extra)
    assert code == 0
    assert_warning_lines(err, "mask covers the whole image")
    result = rgb_of(out)
    assert result.shape == (H, W, 3) and not np.array_equal(result, rgb_of(src))


# ----------------------------------------------------------------------------------------- alpha, modes


def _alpha_brush(mode: str) -> Image.Image:
    """A brush layer: uniform white colour, the stroke painted in the alpha channel only."""
    alpha = Image.fromarray(hole_array().astype(np.uint8) * 255)
    im = Image.new("RGBA" if mode == "RGBA" else "LA", (W, H), "white")
    im.putalpha(alpha)
    return im


def _opaque_rgba() -> Image.Image:
    """An RGBA mask that is fully opaque: its colours carry the hole."""
    return mask_image().convert("RGBA")


def _palette_transparent() -> Image.Image:
    """A P mask whose background colour is transparent and whose stroke is opaque white."""
    im = mask_image().convert("P")
    black = im.getpixel((0, 0))
    im.info["transparency"] = black
    return im


def _mode_mask(mode: str) -> tuple[Image.Image, str]:
    hole = hole_array()
    if mode == "I;16":
        return Image.fromarray(hole.astype(np.uint16) * 65535), ".png"
    if mode == "I":
        return Image.fromarray(hole.astype(np.int32) * 255), ".tif"
    if mode == "I-16bit":
        return Image.fromarray(hole.astype(np.int32) * 65535), ".tif"
    if mode == "F":
        return Image.fromarray(hole.astype(np.float32)), ".tif"
    if mode == "CMYK":
        return mask_image().convert("RGB").convert("CMYK"), ".tif"
    return mask_image().convert(mode), ".png"


MASKS = {
    "alpha-brush-RGBA": lambda: (_alpha_brush("RGBA"), ".png"),
    "alpha-brush-LA": lambda: (_alpha_brush("LA"), ".png"),
    "opaque-RGBA": lambda: (_opaque_rgba(), ".png"),
    "P-transparent-background": lambda: (_palette_transparent(), ".png"),
    **{
        f"mode-{m}": (lambda m=m: _mode_mask(m))
        for m in ("1", "P", "RGB", "I;16", "I", "I-16bit", "F", "CMYK")
    },
}


# the mode each mask file has when read back: the test covers the mode its name says
MODES_ON_DISK = {
    "alpha-brush-RGBA": "RGBA",
    "alpha-brush-LA": "LA",
    "opaque-RGBA": "RGBA",
    "P-transparent-background": "P",
    "mode-1": "1",
    "mode-P": "P",
    "mode-RGB": "RGB",
    "mode-I;16": "I;16",
    "mode-I": "I",
    "mode-I-16bit": "I",
    "mode-F": "F",
    "mode-CMYK": "CMYK",
}


@pytest.mark.parametrize("kind", list(MASKS))
def test_mask_with_alpha_or_in_another_mode(tmp_path, capsys, model_dir, src, kind):
    """Outcome: correct result: the hole is the white (or painted-alpha) area whatever the mode."""
    im, suffix = MASKS[kind]()
    mask = write(im, tmp_path / f"mask{suffix}")
    out = tmp_path / "out.png"
    code, _, err = fill(capsys, model_dir, src, mask, out)
    assert code == 0 and err == "", err
    with Image.open(mask) as on_disk:
        assert on_disk.mode == MODES_ON_DISK[kind], (kind, on_disk.mode)
        assert np.array_equal(mask_array(on_disk, (W, H)), hole_array())  # the code reads the hole
    assert_outside_identical(rgb_of(src), rgb_of(out), hole_array())


@pytest.mark.parametrize("kind", ["bool", "uint8-255", "float-01", "tensor-1x1xHxW", "HxWx3"])
def test_array_and_tensor_masks_through_the_api(inpainter, kind):
    """Outcome: correct result from every array form the API documents."""
    import torch

    hole = hole_array()
    mask = {
        "bool": lambda: hole,
        "uint8-255": lambda: hole.astype(np.uint8) * 255,
        "float-01": lambda: hole.astype(np.float32),
        "tensor-1x1xHxW": lambda: torch.from_numpy(hole).float()[None, None],
        "HxWx3": lambda: np.repeat(hole[..., None].astype(np.uint8) * 255, 3, -1),
    }[kind]()
    image = photo()
    result = inpainter(image, mask)
    assert_outside_identical(np.asarray(image), np.asarray(result), hole)


@pytest.mark.parametrize(
    "mask, words",
    [
        (np.zeros((0, 5)), "mask array must be"),
        (np.zeros((2, 3, H, W)), "mask array must be"),
        ("mask.png", "mask must be a PIL image"),
        (Image.new("L", (0, 0)), "mask is empty"),
    ],
    ids=["empty-array", "batch-of-masks", "a-string", "zero-size-image"],
)
def test_unusable_mask_objects_are_value_errors(inpainter, mask, words):
    """Outcome: clean one-line ValueError from the API."""
    with pytest.raises(ValueError, match=words) as info:
        inpainter(photo(), mask)
    assert "\n" not in str(info.value)
