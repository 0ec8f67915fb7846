"""``dualinpaint fill`` and the paths it is given: missing output folders (created), outputs that would
overwrite an input (refused unless --overwrite), folders mixing good and bad files (good ones filled, bad
ones listed one line each, exit 1), and writes that fail (one clean line, no half-written file)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from .conftest import (
    DiskFull,
    H,
    W,
    assert_no_traceback,
    assert_one_line_error,
    assert_outside_identical,
    encoded,
    hole_array,
    mask_image,
    photo,
    rgb_of,
    run_cli,
    write,
)

pytestmark = pytest.mark.usefixtures("reuse_model")


def fill(capsys, model_dir, image, mask, out, *extra):
    return run_cli(capsys, "fill", image, "--mask", mask, "-o", out, "--model", model_dir, "--quiet", *extra)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


# -------------------------------------------------------------------------------------- missing folders


@pytest.mark.parametrize(
    "target", ["a/b/c/out.png", "a/b/c/"], ids=["file-in-missing-folders", "missing-folder/"]
)
def test_output_in_a_missing_folder_is_created(tmp_path, capsys, model_dir, target):
    """Outcome: correct result; the folders are made."""
    src = write(photo(), tmp_path / "in" / "photo.png")
    mask = write(mask_image(), tmp_path / "in" / "mask.png")
    code, stdout, err = fill(capsys, model_dir, src, mask, str(tmp_path / "deep") + "/" + target)
    assert code == 0 and err == ""
    out = tmp_path / "deep" / "a" / "b" / "c" / ("out.png" if target.endswith(".png") else "photo.png")
    assert f"wrote {out}" in stdout
    assert_outside_identical(rgb_of(src), rgb_of(out), hole_array())


def test_folder_into_a_missing_nested_folder(tmp_path, capsys, model_dir):
    """Outcome: correct result for every image, sub-folders mirrored."""
    for i, rel in enumerate(["one.png", "sub/two.png", "sub/deeper/three.jpg"]):
        write(photo(seed=i), tmp_path / "in" / rel, **({"quality": 95} if rel.endswith(".jpg") else {}))
    mask = write(mask_image(), tmp_path / "mask.png")
    code, stdout, err = fill(capsys, model_dir, tmp_path / "in", mask, tmp_path / "x" / "y" / "z")
    assert code == 0 and err == ""
    assert "filled 3 of 3 images" in stdout
    for rel in ["one.png", "sub/two.png", "sub/deeper/three.jpg"]:
        out = tmp_path / "x" / "y" / "z" / rel
        assert Image.open(out).format == Image.open(tmp_path / "in" / rel).format
        if rel.endswith(".png"):
            assert_outside_identical(rgb_of(tmp_path / "in" / rel), rgb_of(out), hole_array())


# --------------------------------------------------------------------------------------- overwriting


@pytest.mark.parametrize("onto", ["image", "mask"])
def test_output_equal_to_an_input_is_refused(tmp_path, capsys, model_dir, onto):
    """Outcome: clean one-line error; the input is byte-identical afterwards."""
    src = write(photo(), tmp_path / "photo.png")
    mask = write(mask_image(), tmp_path / "mask.png")
    before = snapshot(tmp_path)
    target = src if onto == "image" else mask
    code, _, err = fill(capsys, model_dir, src, mask, target)
    assert code == 2
    assert_one_line_error(err, "refusing to overwrite", "--overwrite")
    assert snapshot(tmp_path) == before


def test_output_equal_to_input_with_overwrite(tmp_path, capsys, model_dir):
    """Outcome: correct result written over the input, atomically (no temporary left behind)."""
    src = write(photo(), tmp_path / "photo.png")
    mask = write(mask_image(), tmp_path / "mask.png")
    original = rgb_of(src)
    code, _, err = fill(capsys, model_dir, src, mask, src, "--overwrite")
    assert code == 0 and err == ""
    assert_outside_identical(original, rgb_of(src), hole_array())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mask.png", "photo.png"]


def test_folder_onto_itself_is_refused_then_allowed(tmp_path, capsys, model_dir):
    """Outcome: clean one-line error (nothing changed); with --overwrite every image filled in place."""
    folder = tmp_path / "photos"
    for i in range(3):
        write(photo(seed=i), folder / f"p{i}.png")
    masks = tmp_path / "masks"
    for i in range(3):
        write(mask_image(), masks / f"p{i}.png")
    before = snapshot(folder)
    code, _, err = fill(capsys, model_dir, folder, masks, folder)
    assert code == 2
    assert_one_line_error(err, "is the input folder", "--overwrite")
    assert snapshot(folder) == before
    code, stdout, err = fill(capsys, model_dir, folder, masks, folder, "--overwrite")
    assert code == 0 and err == "" and "filled 3 of 3" in stdout
    for i in range(3):
        assert_outside_identical(rgb_of(photo(seed=i)), rgb_of(folder / f"p{i}.png"), hole_array())
    assert sorted(snapshot(folder)) == ["p0.png", "p1.png", "p2.png"]


# -------------------------------------------------------------------------------------- mixed folders


def _mixed_folder(tmp_path: Path) -> tuple[Path, Path, list[str], list[str]]:
    """A photo folder with 3 good images and 6 bad ones, and a mask folder; (photos, masks, good, bad)."""
    photos, masks = tmp_path / "photos", tmp_path / "masks"
    good = ["a.png", "b.jpg", "sub/c.png"]
    for i, name in enumerate(good):
        write(photo(seed=i), photos / name, **({"quality": 95} if name.endswith(".jpg") else {}))
    bad = {
        "empty.png": b"",
        "notes.png": b"not an image\n",
        "cut.jpg": encoded(photo(), "JPEG")[:300],
        "cut.png": encoded(photo())[:200],
    }
    for name, data in bad.items():
        (photos / name).write_bytes(data)
    write(photo(), photos / "nomask.png")  # no mask of that name in the mask folder
    write(photo(), photos / "badmask.png")
    for name in [*good, *bad]:
        write(mask_image(), (masks / name).with_suffix(".png"))
    (masks / "badmask.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    return photos, masks, good, [*bad, "nomask.png", "badmask.png"]


def test_folder_with_good_and_bad_files(tmp_path, capsys, model_dir):
    """Outcome: good files filled, each bad file listed on one line, exit 1, no output for a bad file."""
    photos, masks, good, bad = _mixed_folder(tmp_path)
    inputs = snapshot(photos)
    out = tmp_path / "out"
    code, stdout, err = fill(capsys, model_dir, photos, masks, out)
    assert code == 1
    assert f"filled {len(good)} of {len(good) + len(bad)} images" in stdout
    assert_no_traceback(err)
    lines = err.strip().splitlines()
    assert lines[0] == f"dualinpaint: {len(bad)} file(s) failed:"
    assert len(lines) == 1 + len(bad)
    for name in bad:
        assert sum(line.startswith(f"  {photos / name}: ") for line in lines[1:]) == 1, name
    assert sorted(snapshot(out)) == sorted(good)  # nothing for the bad ones, no temporaries
    for name in good:
        if name.endswith(".png"):
            assert_outside_identical(rgb_of(photos / name), rgb_of(out / name), hole_array())
    assert snapshot(photos) == inputs


def test_real_process_prints_only_one_line_messages(tmp_path, model_dir):
    """Outcome (as a user sees it, outside pytest's warning capture): warnings and failures are one line
    each, no Python warning source lines, no traceback; exit 1."""
    photos, masks = tmp_path / "photos", tmp_path / "masks"
    write(photo(), photos / "fine.png")
    write(mask_image(), masks / "fine.png")
    frames = [photo(seed=1), photo(seed=2)]
    frames[0].save(photos / "anim.gif", save_all=True, append_images=frames[1:])
    write(mask_image(), masks / "anim.png")
    write(photo(), photos / "small.png")
    write(mask_image().resize((W // 2, H // 2)), masks / "small.png")
    (photos / "broken.png").write_bytes(b"")
    write(mask_image(), masks / "broken.png")
    cmd = [sys.executable, "-m", "dualinpaint", "fill", str(photos), "--mask", str(masks)]
    cmd += ["-o", str(tmp_path / "out"), "--model", str(model_dir), "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "default"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 1, proc.stderr
    assert_no_traceback(proc.stderr)
    lines = proc.stderr.strip().splitlines()
    warnings_ = [line for line in lines if line.startswith("dualinpaint: warning: ")]
    assert any("anim.gif has 2 frames; using the first" in line for line in warnings_), lines
    assert any("small.png: mask is 24×20 but the image is 48×40" in line for line in warnings_), lines
    rest = [line for line in lines if line not in warnings_]
    assert rest[0] == "dualinpaint: 1 file(s) failed:" and len(rest) == 2, lines
    assert rest[1].startswith(f"  {photos / 'broken.png'}: ") and "empty" in rest[1]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["anim.gif", "fine.png", "small.png"]


# ------------------------------------------------------------------------------------- failing writes


@pytest.fixture
def disk_full(monkeypatch):
    """Every file written through os.fdopen (the atomic writers) gets half its bytes, then ENOSPC."""
    real = os.fdopen

    monkeypatch.setattr(os, "fdopen", lambda fd, mode="r", *a, **k: DiskFull(real(fd, mode, *a, **k)))


def test_disk_full_on_a_single_output(tmp_path, capsys, model_dir, disk_full):
    """Outcome: clean one-line error; no output, no temporary file."""
    src = write(photo(), tmp_path / "photo.png")
    mask = write(mask_image(), tmp_path / "mask.png")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    (out_dir / "result.png").write_bytes(b"an older result")
    code, _, err = fill(capsys, model_dir, src, mask, out_dir / "result.png")
    assert code == 2
    assert_one_line_error(err, "No space left on device")
    assert snapshot(out_dir) == {"result.png": b"an older result"}


def test_disk_full_in_a_folder_lists_every_file(tmp_path, capsys, model_dir, disk_full):
    """Outcome: every file listed as failed (exit 1), nothing half-written."""
    for i in range(2):
        write(photo(seed=i), tmp_path / "in" / f"p{i}.png")
    mask = write(mask_image(), tmp_path / "mask.png")
    code, _, err = fill(capsys, model_dir, tmp_path / "in", mask, tmp_path / "out")
    assert code == 1
    assert_no_traceback(err)
    assert err.count("No space left on device") == 2
    assert not list((tmp_path / "out").rglob("*.*")) if (tmp_path / "out").exists() else True


@pytest.mark.parametrize(
    "target, words",
    [("blocker.png/out.png", "blocker.png"), ("out.xyz", "cannot tell the image format")],
    ids=["parent-is-a-file", "unknown-suffix"],
)
def test_unwritable_output_path(tmp_path, capsys, model_dir, target, words):
    """Outcome: clean one-line error; nothing written."""
    src = write(photo(), tmp_path / "photo.png")
    mask = write(mask_image(), tmp_path / "mask.png")
    (tmp_path / "blocker.png").write_bytes(b"a file, not a folder")
    before = snapshot(tmp_path)
    code, _, err = fill(capsys, model_dir, src, mask, tmp_path / target)
    assert code == 2
    assert_one_line_error(err, words)
    assert snapshot(tmp_path) == before
    assert np.array_equal(rgb_of(src), np.asarray(photo()))
