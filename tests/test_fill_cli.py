"""``dualinpaint fill`` and ``dualinpaint demo`` on temporary files, with a tiny random-weight model.

Run: pytest tests/test_fill_cli.py
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dualinpaint import checkpoint
from dualinpaint.inference import (
    Inpainter,
    add_demo_arguments,
    add_fill_arguments,
    demo_command,
    fill_command,
    run_demo,
    run_fill,
)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model_dir(tiny_model_dir: Path) -> Path:
    return tiny_model_dir


@pytest.fixture(scope="module")
def inpainter(model_dir: Path) -> Inpainter:
    """The saved model, loaded once (most tests exercise the file handling, not the loading)."""
    return Inpainter.from_pretrained(model_dir)


def write_photo(path: Path, size: tuple[int, int] = (48, 40), seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(arr).save(path, quality=95) if path.suffix == ".jpg" else Image.fromarray(arr).save(path)
    return path


def write_mask(path: Path, size: tuple[int, int] = (48, 40), box=(10, 10, 30, 25)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.zeros((size[1], size[0]), np.uint8)
    x0, y0, x1, y1 = box
    arr[y0:y1, x0:x1] = 255
    Image.fromarray(arr).save(path)
    return path


def fill_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    add_fill_arguments(parser)
    return fill_command(parser.parse_args([*argv, "--quiet"]))


def outside_identical(src: Path, out: Path, mask: Path) -> bool:
    a, b = np.asarray(Image.open(src).convert("RGB")), np.asarray(Image.open(out).convert("RGB"))
    hole = np.asarray(Image.open(mask).convert("L")) > 127
    return a.shape == b.shape and np.array_equal(a[~hole], b[~hole]) and not np.array_equal(a[hole], b[hole])


def test_single_file(tmp_path: Path, model_dir: Path, capsys: pytest.CaptureFixture) -> None:
    src, mask = write_photo(tmp_path / "in.png"), write_mask(tmp_path / "m.png")
    out = tmp_path / "res" / "out.png"  # parent folder created
    assert fill_cli(str(src), "--mask", str(mask), "-o", str(out), "--model", str(model_dir)) == 0
    assert outside_identical(src, out, mask)
    assert f"wrote {out}" in capsys.readouterr().out


def test_single_file_into_folder_and_suffix_kept(tmp_path: Path, inpainter: Inpainter) -> None:
    src, mask = write_photo(tmp_path / "in.jpg"), write_mask(tmp_path / "m.png")
    assert run_fill(src, mask, f"{tmp_path / 'outdir'}/", model=inpainter) == 0
    assert Image.open(tmp_path / "outdir" / "in.jpg").format == "JPEG"
    assert run_fill(src, mask, tmp_path / "noext", model=inpainter) == 0
    assert Image.open(tmp_path / "noext.jpg").format == "JPEG"
    assert run_fill(src, mask, tmp_path / "as.png", model=inpainter) == 0
    assert Image.open(tmp_path / "as.png").format == "PNG"


def test_k_samples_naming(tmp_path: Path, model_dir: Path) -> None:
    src, mask = write_photo(tmp_path / "in.png"), write_mask(tmp_path / "m.png")
    out = tmp_path / "out.png"
    assert fill_cli(str(src), "--mask", str(mask), "-o", str(out), "--samples", "3", "--seed", "1",
                    "--model", str(model_dir)) == 0  # fmt: skip
    files = [tmp_path / f"out_{i}.png" for i in range(3)]
    assert all(f.is_file() for f in files) and not out.exists()
    assert len({f.read_bytes() for f in files}) == 3


def test_folder_with_per_file_masks(tmp_path: Path, inpainter: Inpainter) -> None:
    photos = [write_photo(tmp_path / "in" / "a.png"), write_photo(tmp_path / "in" / "sub" / "b.jpg", seed=1)]
    masks = [
        write_mask(tmp_path / "masks" / "a.png"),
        write_mask(tmp_path / "masks" / "b_mask.png", box=(0, 0, 9, 9)),
    ]
    out = tmp_path / "out" / "deep"
    assert run_fill(tmp_path / "in", tmp_path / "masks", out, model=inpainter, progress=False) == 0
    results = [out / "a.png", out / "sub" / "b.jpg"]
    assert outside_identical(photos[0], results[0], masks[0])
    assert Image.open(results[1]).format == "JPEG" and Image.open(results[1]).size == (48, 40)


def test_one_mask_for_a_folder_and_samples(tmp_path: Path, inpainter: Inpainter) -> None:
    for name in ("x", "y"):
        write_photo(tmp_path / "in" / f"{name}.png")
    mask = write_mask(tmp_path / "mask.png")
    assert run_fill(tmp_path / "in", mask, tmp_path / "out", samples=2, model=inpainter, progress=False) == 0
    for name in ("x", "y"):
        for i in range(2):
            assert outside_identical(
                tmp_path / "in" / f"{name}.png", tmp_path / "out" / f"{name}_{i}.png", mask
            )


def test_masks_beside_photos_are_not_inputs(tmp_path: Path, inpainter: Inpainter) -> None:
    """The bundled-samples layout: photo.jpg and photo_mask.png in one folder."""
    write_photo(tmp_path / "in" / "p.jpg")
    write_mask(tmp_path / "in" / "p_mask.png")
    assert run_fill(tmp_path / "in", tmp_path / "in", tmp_path / "out", model=inpainter, progress=False) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["p.jpg"]


def test_mask_folder_inside_the_input_folder(tmp_path: Path, inpainter: Inpainter) -> None:
    write_photo(tmp_path / "in" / "p.png")
    write_mask(tmp_path / "in" / "masks" / "p.png")
    write_mask(tmp_path / "in" / "masks" / "unused.png")
    assert run_fill(tmp_path / "in", tmp_path / "in" / "masks", tmp_path / "out", model=inpainter) == 0
    assert sorted(p.name for p in (tmp_path / "out").rglob("*")) == ["p.png"]


def test_rgba_to_jpeg_drops_alpha_with_warning(tmp_path: Path, inpainter: Inpainter, capsys) -> None:
    rgba = np.random.default_rng(0).integers(0, 256, (40, 48, 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "in.png")
    mask = write_mask(tmp_path / "m.png")
    assert run_fill(tmp_path / "in.png", mask, tmp_path / "out.jpg", model=inpainter) == 0
    assert Image.open(tmp_path / "out.jpg").mode == "RGB"
    assert "transparency dropped" in capsys.readouterr().err


def test_output_equal_to_input_refused(tmp_path: Path, inpainter: Inpainter) -> None:
    src, mask = write_photo(tmp_path / "in.png"), write_mask(tmp_path / "m.png")
    before = src.read_bytes()
    with pytest.raises(ValueError, match="overwrite"):
        run_fill(src, mask, src, model=inpainter)
    with pytest.raises(ValueError, match="overwrite"):
        run_fill(tmp_path, mask, tmp_path, model=inpainter)
    assert src.read_bytes() == before
    assert run_fill(src, mask, src, model=inpainter, overwrite=True) == 0
    assert src.read_bytes() != before


def test_mixed_good_and_bad_folder(
    tmp_path: Path, inpainter: Inpainter, capsys: pytest.CaptureFixture
) -> None:
    good = write_photo(tmp_path / "in" / "good.png")
    (tmp_path / "in" / "broken.png").write_bytes(b"not an image")
    write_photo(tmp_path / "in" / "lonely.png")  # no mask
    write_mask(tmp_path / "masks" / "good.png")
    write_mask(tmp_path / "masks" / "broken.png")
    code = run_fill(tmp_path / "in", tmp_path / "masks", tmp_path / "out", model=inpainter, progress=False)
    assert code == 1
    assert (tmp_path / "out" / "good.png").is_file()
    assert outside_identical(good, tmp_path / "out" / "good.png", tmp_path / "masks" / "good.png")
    err = capsys.readouterr().err
    bad_lines = [line for line in err.splitlines() if line.startswith("  ")]
    assert len(bad_lines) == 2
    assert any("broken.png" in line for line in bad_lines) and any("lonely.png" in line for line in bad_lines)


def test_warnings_are_one_line(tmp_path: Path, inpainter: Inpainter, capsys: pytest.CaptureFixture) -> None:
    src = write_photo(tmp_path / "in.png")
    mask = write_mask(tmp_path / "m.png", box=(0, 0, 48, 38))
    assert run_fill(src, mask, tmp_path / "out.png", model=inpainter) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("dualinpaint: warning: in.png:") and "--invert" in err[0]


def test_bad_paths(tmp_path: Path, inpainter: Inpainter) -> None:
    src, mask = write_photo(tmp_path / "in.png"), write_mask(tmp_path / "m.png")
    with pytest.raises(ValueError, match="no such image"):
        run_fill(tmp_path / "missing.png", mask, tmp_path / "o.png", model=inpainter)
    with pytest.raises(ValueError, match="no such mask"):
        run_fill(src, tmp_path / "missing.png", tmp_path / "o.png", model=inpainter)
    with pytest.raises(ValueError, match="format"):
        run_fill(src, mask, tmp_path / "o.xyz", model=inpainter)
    with pytest.raises(ValueError, match="no model"):
        run_fill(src, mask, tmp_path / "o.png", model=tmp_path / "nowhere")


def test_demo(tmp_path: Path, model_dir: Path, capsys: pytest.CaptureFixture) -> None:
    parser = argparse.ArgumentParser()
    add_demo_arguments(parser)
    assert demo_command(parser.parse_args(["--model", str(model_dir), "-o", str(tmp_path / "demo")])) == 0
    path = tmp_path / "demo" / "demo.png"
    assert f"wrote {path}" in capsys.readouterr().out
    sheet = Image.open(path)
    assert sheet.width > 3 * 256 and sheet.height > 3 * 256  # three columns, three sample rows
    args = ["--model", str(model_dir), "-o", str(tmp_path / "tex"), "--texture"]
    assert demo_command(parser.parse_args(args)) == 0
    textured = Image.open(tmp_path / "tex" / "demo.png")
    assert textured.size == sheet.size and textured.tobytes() != sheet.tobytes()  # the fills got texture


def test_demo_without_packaged_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(checkpoint, "MODEL_DIR", tmp_path / "no-models")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="--model"):
        run_demo(tmp_path / "demo")


def test_adapt_fills_with_a_tuned_copy_and_bad_values_are_one_line_errors(
    tmp_path: Path, model_dir: Path, capsys: pytest.CaptureFixture
) -> None:
    from dualinpaint.cli import main

    src, mask = write_photo(tmp_path / "in.png"), write_mask(tmp_path / "m.png")
    plain, tuned = tmp_path / "plain.png", tmp_path / "tuned.png"
    model = ("--model", str(model_dir), "--precision", "fp32")
    assert fill_cli(str(src), "--mask", str(mask), "-o", str(plain), *model) == 0
    assert fill_cli(str(src), "--mask", str(mask), "-o", str(tuned), *model, "--adapt", "3") == 0
    assert outside_identical(src, tuned, mask)
    a, b = (np.asarray(Image.open(p)) for p in (plain, tuned))
    assert not np.array_equal(a, b)  # the tuned copy filled it
    again = tmp_path / "again.png"
    assert fill_cli(str(src), "--mask", str(mask), "-o", str(again), *model, "--adapt", "3") == 0
    assert np.array_equal(np.asarray(Image.open(again)), b)  # seeded: reproducible
    capsys.readouterr()
    bad = tmp_path / "bad.png"
    assert main(["fill", str(src), "--mask", str(mask), "-o", str(bad), *model, "--adapt", "-2"]) == 2
    err = capsys.readouterr().err.strip()
    assert "adapt steps must be an int >= 0" in err and "\n" not in err and not bad.exists()
    with pytest.raises(ValueError, match="runtime='torch'"):
        Inpainter.from_pretrained(model_dir, runtime="onnx", adapt_steps=2)
    # per call: the same checks, and the same fill as an Inpainter built with the steps
    per_call = Inpainter.from_pretrained(model_dir, precision="fp32")
    image, hole = Image.open(src).convert("RGB"), Image.open(mask)
    got = per_call.fill(image, hole, adapt_steps=3)[0]
    assert np.array_equal(
        np.asarray(got),
        np.asarray(Inpainter.from_pretrained(model_dir, precision="fp32", adapt_steps=3)(image, hole)),
    )
    with pytest.raises(ValueError, match="adapt steps must be an int >= 0"):
        per_call.fill(image, hole, adapt_steps=-1)
