"""Hostile image files through ``dualinpaint fill``: unreadable files end in one clean line (exit 2, no
output written), every Pillow mode and odd geometry gives a correct fill (outside the hole untouched)."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from dualinpaint.images import ImageTooLarge, open_image

from .conftest import (
    H,
    W,
    assert_one_line_error,
    assert_outside_identical,
    assert_warning_lines,
    encoded,
    hole_array,
    mask_image,
    photo,
    run_cli,
    write,
)

pytestmark = pytest.mark.usefixtures("reuse_model")


def fill(capsys, model_dir: Path, image: Path, mask: Path, out: Path, *extra: str):
    return run_cli(capsys, "fill", image, "--mask", mask, "-o", out, "--model", model_dir, "--quiet", *extra)


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_header_only(width: int, height: int, bit_depth: int = 8, colour: int = 0) -> bytes:
    """A PNG whose header claims ``width``×``height`` but whose data is a few bytes (a bomb's shape)."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour, 0, 0, 0)
    idat = zlib.compress(b"\0" * 64)
    return (
        b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")
    )


def png_rgb48(arr: np.ndarray) -> bytes:
    """A 16-bit-per-channel RGB PNG (Pillow cannot write these) from a uint16 H×W×3 array."""
    h, w, _ = arr.shape
    ihdr = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    raw = b"".join(b"\0" + row.astype(">u2").tobytes() for row in arr)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", zlib.compress(raw))
        + png_chunk(b"IEND", b"")
    )


# ----------------------------------------------------------------------------------- unreadable files

UNREADABLE = {
    "empty": (".png", lambda: b"", "empty"),
    "truncated-png": (".png", lambda: encoded(photo())[:300], "cannot read image"),
    "truncated-jpeg": (".jpg", lambda: encoded(photo(), "JPEG", quality=90)[:400], "cannot read image"),
    "text-named-png": (".png", lambda: b"just some notes, not a picture\n" * 4, "not an image file"),
    "png-magic-then-garbage": (".png", lambda: b"\x89PNG\r\n\x1a\n" + b"\xff" * 64, "cannot read image"),
}


@pytest.mark.parametrize("which", ["image", "mask"])
@pytest.mark.parametrize("kind", list(UNREADABLE))
def test_unreadable_file_is_one_clean_line(tmp_path, capsys, model_dir, kind, which):
    """Outcome: clean one-line error, exit 2, nothing written."""
    suffix, make, words = UNREADABLE[kind]
    bad = tmp_path / f"bad{suffix}"
    bad.write_bytes(make())
    image = bad if which == "image" else write(photo(), tmp_path / "photo.png")
    mask = bad if which == "mask" else write(mask_image(), tmp_path / "mask.png")
    out = tmp_path / "out" / "result.png"
    code, stdout, err = fill(capsys, model_dir, image, mask, out)
    assert code == 2
    assert_one_line_error(err, words, bad.name)
    assert not out.exists() and not (tmp_path / "out").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted({image.name, mask.name})


# ------------------------------------------------------------------------------------------ every mode


def _grey() -> np.ndarray:
    return np.asarray(photo().convert("L"))


def _mode_image(mode: str) -> tuple[Image.Image, str, np.ndarray]:
    """(image in ``mode``, file suffix that stores it, its expected RGB pixels)."""
    base = photo()
    g = _grey()
    if mode == "I;16":  # 16-bit samples g·257 map back to exactly g
        im = Image.fromarray(g.astype(np.uint16) * 257)
        return im, ".png", np.repeat(g[..., None], 3, -1)
    if mode == "I":
        return Image.fromarray(g.astype(np.int32)), ".tif", np.repeat(g[..., None], 3, -1)
    if mode == "F":
        im = Image.fromarray(g.astype(np.float32) / 255.0)
        return im, ".tif", np.repeat(g[..., None], 3, -1)
    if mode == "P+transparency":
        im = base.convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
        im.info["transparency"] = 0
        return im, ".png", None
    if mode == "LA":
        im = base.convert("L")
        im.putalpha(
            Image.fromarray(((np.arange(W)[None, :] * 5 + np.zeros((H, 1), int)) % 256).astype(np.uint8))
        )
        return im, ".png", None
    if mode == "RGBA":
        im = base.copy()
        im.putalpha(
            Image.fromarray(((np.arange(H)[:, None] * 6 + np.zeros((1, W), int)) % 256).astype(np.uint8))
        )
        return im, ".png", None
    if mode == "CMYK":
        return base.convert("CMYK"), ".tif", None
    return base.convert(mode), ".png", None


MODE_OUT = {
    "1": "RGB",
    "L": "L",
    "LA": "LA",
    "P": "RGB",
    "P+transparency": "RGBA",
    "RGB": "RGB",
    "RGBA": "RGBA",
    "CMYK": "RGB",
    "I;16": "RGB",
    "I": "RGB",
    "F": "RGB",
}


TEXTURE = pytest.mark.parametrize("extra", [(), ("--texture",)], ids=["plain", "texture"])


@TEXTURE
@pytest.mark.parametrize("mode", list(MODE_OUT))
def test_every_pillow_mode_is_filled(tmp_path, capsys, model_dir, mode, extra):
    """Outcome: correct result (size kept, outside the hole identical, alpha kept, mode as documented)."""
    im, suffix, expected = _mode_image(mode)
    src = write(im, tmp_path / f"photo{suffix}")
    stored = Image.open(src)
    assert stored.mode == mode.split("+")[0], stored.mode  # the file really holds that mode
    if expected is None:
        expected = np.asarray(stored.convert("RGB"))
    mask = write(mask_image(), tmp_path / "mask.png")
    out = tmp_path / "out.png"
    code, _, err = fill(capsys, model_dir, src, mask, out, *extra)
    assert code == 0, err
    assert err == ""
    result = Image.open(out)
    assert result.size == (W, H) and result.mode == MODE_OUT[mode]
    assert_outside_identical(expected, np.asarray(result.convert("RGB")), hole_array())
    if MODE_OUT[mode] in ("RGBA", "LA"):
        alpha_in = np.asarray(stored.convert("RGBA").getchannel("A"))
        assert np.array_equal(np.asarray(result.getchannel("A")), alpha_in)


def test_16_bit_rgb_png(tmp_path, capsys, model_dir):
    """Outcome: correct result; 16-bit samples are brought to 8 bits, not clipped or wrapped."""
    rgb = np.asarray(photo()).astype(np.uint16)
    src = tmp_path / "deep.png"
    src.write_bytes(png_rgb48(rgb * 257 + (rgb < 255) * 100))  # the low byte must not matter
    mask = write(mask_image(), tmp_path / "mask.png")
    out = tmp_path / "out.png"
    code, _, err = fill(capsys, model_dir, src, mask, out)
    assert code == 0, err
    result = np.asarray(Image.open(out).convert("RGB"))
    assert_outside_identical(np.asarray(Image.open(src).convert("RGB")), result, hole_array())
    assert np.abs(result[~hole_array()].astype(int) - rgb[~hole_array()]).max() <= 1


# ------------------------------------------------------------------------------------------ orientation


def _exif(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif.tobytes()


# what the file must store so that applying the EXIF orientation gives the picture we mean
_STORE = {3: Image.Transpose.ROTATE_180, 6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270}


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_rotated_jpeg_and_mask_are_both_turned(tmp_path, capsys, model_dir, orientation):
    """Outcome: correct result in display orientation; the hole lands where the (rotated) mask shows it."""
    shown, shown_mask = photo(), mask_image()
    src = write(
        shown.transpose(_STORE[orientation]), tmp_path / "photo.jpg", quality=100, exif=_exif(orientation)
    )
    mask = write(shown_mask.transpose(_STORE[orientation]), tmp_path / "mask.png", exif=_exif(orientation))
    assert ImageOps.exif_transpose(Image.open(src)).size == (W, H)  # the set-up is right
    out = tmp_path / "out.png"
    code, _, err = fill(capsys, model_dir, src, mask, out)
    assert code == 0, err
    assert err == "", "a correctly oriented mask of the right size needs no resize warning"
    result = Image.open(out)
    assert result.size == (W, H)
    # no orientation tag left in the output: viewers must not turn it a second time
    assert result.getexif().get(0x0112, 1) == 1
    expected = np.asarray(ImageOps.exif_transpose(Image.open(src)).convert("RGB"))
    assert_outside_identical(expected, np.asarray(result.convert("RGB")), hole_array())


# --------------------------------------------------------------------------------------------- geometry


@TEXTURE
def test_one_by_one_image(tmp_path, capsys, model_dir, extra):
    """Outcome: warning + result (the one pixel is the whole image: no context)."""
    src = write(Image.new("RGB", (1, 1), (200, 30, 40)), tmp_path / "dot.png")
    mask = write(Image.new("L", (1, 1), 255), tmp_path / "mask.png")
    out = tmp_path / "out.png"
    code, _, err = fill(capsys, model_dir, src, mask, out, *extra)
    assert code == 0
    assert_warning_lines(err, "whole image")
    assert Image.open(out).size == (1, 1)


@TEXTURE
def test_three_by_five_thousand_image(tmp_path, capsys, model_dir, extra):
    """Outcome: correct result on a 3 px wide, 5000 px tall strip."""
    rng = np.random.default_rng(1)
    arr = rng.integers(0, 256, (5000, 3, 3), dtype=np.uint8)
    src = write(Image.fromarray(arr, "RGB"), tmp_path / "strip.png")
    hole = np.zeros((5000, 3), bool)
    hole[2400:2460, 1] = True
    mask = write(Image.fromarray(hole.astype(np.uint8) * 255, "L"), tmp_path / "mask.png")
    out = tmp_path / "out.png"
    code, _, err = fill(capsys, model_dir, src, mask, out, *extra)
    assert code == 0, err
    assert_outside_identical(arr, np.asarray(Image.open(out).convert("RGB")), hole)


# ----------------------------------------------------------------------------------------------- bombs


@pytest.mark.parametrize("which", ["image", "mask"])
def test_decompression_bomb_refused_by_the_pixel_cap(tmp_path, capsys, model_dir, which):
    """Outcome: clean one-line error naming the size, before any pixel is decoded."""
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_header_only(40_000, 40_000))  # 1.6 gigapixels in 120 bytes
    image = bomb if which == "image" else write(photo(), tmp_path / "photo.png")
    mask = bomb if which == "mask" else write(mask_image(), tmp_path / "mask.png")
    out = tmp_path / "out.png"
    code, _, err = fill(capsys, model_dir, image, mask, out)
    assert code == 2
    assert_one_line_error(err, "bomb.png", "too large", "1600000000 pixels")
    assert not out.exists()


def test_compressed_bomb_refused_before_decoding(tmp_path):
    """Outcome: clean error from the API: a real, tiny, highly compressed file over a given cap."""
    bomb = write(Image.new("L", (6000, 6000)), tmp_path / "zeros.png")
    assert bomb.stat().st_size < 100_000
    with pytest.raises(ImageTooLarge, match=r"6000×6000 = 36\.0 MP, more than the limit of 1 MP") as info:
        open_image(bomb, max_pixels=1_000_000)
    assert "\n" not in str(info.value)


# ------------------------------------------------------------------------------------------- animation


def test_animated_gif_gives_its_first_frame_with_a_warning(tmp_path, capsys, model_dir):
    """Outcome: warning + result: the first frame is filled, the others are ignored."""
    frames = [photo(seed=0), photo(seed=1).transpose(Image.Transpose.FLIP_LEFT_RIGHT), photo(seed=2)]
    src = tmp_path / "anim.gif"
    frames[0].save(src, save_all=True, append_images=frames[1:], duration=100, loop=0)
    with Image.open(src) as anim:
        assert anim.n_frames == 3
        decoded = []
        for k in range(3):
            anim.seek(k)
            decoded.append(np.asarray(anim.convert("RGB")))
    first, hole = decoded[0], hole_array()
    for other in decoded[1:]:  # the others differ outside the hole: an identical outside means frame 0
        assert not np.array_equal(other[~hole], first[~hole])
    mask = write(mask_image(), tmp_path / "mask.png")
    out = tmp_path / "out.png"
    code, _, err = fill(capsys, model_dir, src, mask, out)
    assert code == 0
    assert_warning_lines(err, "anim.gif has 3 frames; using the first")
    with Image.open(out) as result:
        assert getattr(result, "n_frames", 1) == 1  # one picture (an APNG would have 3 frames)
        assert_outside_identical(first, np.asarray(result.convert("RGB")), hole)
