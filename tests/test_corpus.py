"""dualinpaint.corpus: the pure parts (names, licences, splits, manifest, masks). No apt, no network."""

from __future__ import annotations

import io
import json
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dualinpaint.corpus import (
    SAMPLE_MASKS,
    CorpusError,
    assign_splits,
    draw_mask,
    encode_photo,
    find_folder_photos,
    find_named_photos,
    parse_debian_copyright,
    parse_photo_name,
    write_manifest,
)
from dualinpaint.data import read_image_list
from dualinpaint.images import mask_to_tensor


@pytest.mark.parametrize(
    ("stem", "expected"),
    [
        ("Bridge_by_Sander_Klootwijk", ("Bridge", "Sander Klootwijk")),
        ("Picture_0B_by_freespace", ("Picture_0B", "freespace")),
        ("Painting-Colors_by__herobrine7gamer", ("Painting-Colors", "herobrine7gamer")),
        ("sunset_BY_Aitzol_Berasategi", ("sunset", "Aitzol Berasategi")),
        ("Aqua", ("Aqua", None)),
        ("_by_nobody", ("_by_nobody", None)),
        ("Wood_by_", ("Wood", None)),
    ],
)
def test_parse_photo_name(stem: str, expected: tuple) -> None:
    assert parse_photo_name(stem) == expected


COPYRIGHT = """\
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: wallpapers

Files: *
Copyright: 2020, Someone
License: GPL-2+

Files: 16.04/Bridge_by_Sander_Klootwijk.jpg
Copyright: 2018. Sander Klootwijk
License: CC-BY-SA-4.0

Files: nature/Aqua.jpg
       nature/Garden.jpg
Copyright: 2008, Charles Barbin
           2008, Hylke Bons
License: GPL-2+
Comment: see AUTHORS.
"""


def test_parse_debian_copyright() -> None:
    legal = parse_debian_copyright(COPYRIGHT)
    assert set(legal) == {"Bridge_by_Sander_Klootwijk.jpg", "Aqua.jpg", "Garden.jpg"}
    assert legal["Bridge_by_Sander_Klootwijk.jpg"] == {
        "copyright": "2018. Sander Klootwijk",
        "license": "CC-BY-SA-4.0",
    }
    assert legal["Garden.jpg"] == {"copyright": "2008, Charles Barbin; 2008, Hylke Bons", "license": "GPL-2+"}


def _fake_package(root: Path) -> Path:
    """An unpacked-package tree like lomiri-wallpapers / mate-backgrounds."""
    bg = root / "usr/share/backgrounds"
    for rel, size in [
        ("Bridge_by_Sander_Klootwijk.jpg", (40, 30)),
        ("picosdeeuropa_by_Aitzol_Berasategi.jpg", (40, 30)),
        ("mate/nature/Aqua.jpg", (30, 20)),
        ("mate/nature/Storm.png", (30, 20)),
        ("mate/abstract/Waves.png", (30, 20)),
        ("mate/abstract/Elephants.jpg", (30, 20)),
        ("mate/abstract/Elephants_3840x2160.jpg", (60, 40)),
    ]:
        (bg / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", size, (10, 20, 30)).save(bg / rel)
    doc = root / "usr/share/doc/pkg"
    doc.mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(doc / "Bridge.png")  # documentation images never count
    (doc / "copyright").write_text(COPYRIGHT)
    return root


def test_find_named_photos_case_insensitive(tmp_path: Path) -> None:
    root = _fake_package(tmp_path / "pkg")
    found = find_named_photos(root, ["bridge", "PicosDeEuropa", "Elephants"], "pkg")
    assert found["bridge"] == Path("usr/share/backgrounds/Bridge_by_Sander_Klootwijk.jpg")
    assert found["PicosDeEuropa"].name == "picosdeeuropa_by_Aitzol_Berasategi.jpg"
    assert found["Elephants"].name == "Elephants.jpg"


def test_find_named_photos_missing_lists_contents(tmp_path: Path) -> None:
    root = _fake_package(tmp_path / "pkg")
    with pytest.raises(CorpusError) as info:
        find_named_photos(root, ["Bridge", "Kleiber", "Fossa"], "lomiri-wallpapers-20.04")
    msg = str(info.value)
    assert "lomiri-wallpapers-20.04" in msg and "Kleiber, Fossa" in msg
    assert "/usr/share/backgrounds/Bridge_by_Sander_Klootwijk.jpg" in msg and "doc" not in msg


def test_find_folder_photos(tmp_path: Path) -> None:
    root = _fake_package(tmp_path / "pkg")
    found = find_folder_photos(root, "nature", "mate-backgrounds")
    assert [p.name for p in found] == ["Aqua.jpg", "Storm.png"]
    with pytest.raises(CorpusError, match="no images under a space/ folder; it contains: .*Aqua.jpg"):
        find_folder_photos(root, "space", "mate-backgrounds")


def _corpus_like() -> dict[str, str]:
    """31 file names from four sources, shaped like the real corpus."""
    sources = {f"images/l16_{i:02d}.jpg": "lomiri-wallpapers-16.04" for i in range(14)}
    sources["images/Kleiber.jpg"] = "lomiri-wallpapers-20.04"
    sources.update({f"images/mate_{i:02d}.jpg": "mate-backgrounds" for i in range(12)})
    sources.update({f"images/{n}.png": "scikit-image" for n in ("astronaut", "chelsea", "coffee", "rocket")})
    return sources


def test_assign_splits_stratified_and_deterministic() -> None:
    sources = _corpus_like()
    split = assign_splits(sources, 0.2, seed=0)
    assert set(split) == set(sources) and set(split.values()) == {"train", "val"}
    val = [f for f, s in split.items() if s == "val"]
    assert len(val) == 6  # round(31 * 0.2)
    for source in set(sources.values()):
        assert any(split[f] == "train" for f, s in sources.items() if s == source)
    per_source = {
        s: sum(split[f] == "val" for f, src in sources.items() if src == s) for s in set(sources.values())
    }
    assert per_source == {
        "lomiri-wallpapers-16.04": 3,
        "lomiri-wallpapers-20.04": 0,
        "mate-backgrounds": 2,
        "scikit-image": 1,
    }
    # the same names in any order give the same split; another seed gives another one
    assert assign_splits(dict(reversed(list(sources.items()))), 0.2, seed=0) == split
    assert assign_splits(sources, 0.2, seed=1) != split


def test_assign_splits_minimum_and_edges() -> None:
    ten = {f"{i}.jpg": "a" if i < 6 else "b" for i in range(10)}
    split = assign_splits(ten, 0.2, seed=0)
    assert sum(s == "val" for s in split.values()) == 4  # at least 4, though 20 % is 2
    assert {ten[f] for f, s in split.items() if s == "train"} == {"a", "b"}
    assert set(assign_splits(ten, 0.0, seed=0).values()) == {"train"}
    # three singletons: a source must give up its only file, but one file stays in train
    tiny = assign_splits({"a": "x", "b": "y", "c": "z"}, 0.2, seed=0)
    assert sorted(tiny.values()) == ["train", "val", "val"]
    assert assign_splits({}, 0.2, seed=0) == {}
    with pytest.raises(ValueError):
        assign_splits(ten, 1.0, seed=0)


def test_write_manifest_and_flists(tmp_path: Path) -> None:
    out = tmp_path / "corpus"
    (out / "images").mkdir(parents=True)
    records = []
    for i, split in enumerate(["val", "train", "train"]):
        name = f"images/p{2 - i}.png"
        Image.new("RGB", (12, 8)).save(out / name)
        records.append({"file": name, "source": "pkg", "split": split, "bytes": 10, "author": None})
    manifest = write_manifest(out, records, {"name": "test", "seed": 0})
    on_disk = json.loads((out / "manifest.json").read_text())
    assert on_disk == manifest
    assert manifest["name"] == "test" and manifest["counts"] == {"total": 3, "train": 2, "val": 1}
    assert manifest["by_source"] == {"pkg": {"train": 2, "val": 1}} and manifest["total_bytes"] == 30
    assert [r["file"] for r in manifest["files"]] == ["images/p0.png", "images/p1.png", "images/p2.png"]
    assert (out / "train.flist").read_text() == "images/p0.png\nimages/p1.png\n"
    assert read_image_list(out / "val.flist") == [out / "images/p2.png"]
    with pytest.raises(ValueError, match="split"):
        write_manifest(out, [{"file": "x.png", "split": "test"}])


def test_encode_photo_downscales_longer_side() -> None:
    image = Image.new("RGB", (300, 120), (200, 10, 10))
    data, size = encode_photo(image, "JPEG", max_side=100)
    assert size == (100, 40)
    with Image.open(io.BytesIO(data)) as im:
        assert im.format == "JPEG" and im.size == (100, 40)
    assert encode_photo(image, "PNG", max_side=None)[1] == (300, 120)


def test_sample_masks_are_plausible() -> None:
    for name, shapes in SAMPLE_MASKS.items():
        mask = np.asarray(draw_mask(shapes, 256))
        assert mask.shape == (256, 256) and set(np.unique(mask)) == {0, 255}
        assert 0.05 <= (mask > 0).mean() <= 0.15, name


def test_bundled_samples_match_their_masks() -> None:
    folder = resources.files("dualinpaint") / "assets" / "samples"
    total = 0
    for name in SAMPLE_MASKS:
        photo, mask_file = folder / f"{name}.jpg", folder / f"{name}_mask.png"
        total += len(photo.read_bytes()) + len(mask_file.read_bytes())
        with Image.open(photo) as im, Image.open(mask_file) as mk:
            assert im.size == mk.size == (256, 256)
            hole = mask_to_tensor(mk)
        assert 0.05 <= hole.mean().item() <= 0.15
        assert np.array_equal(hole[0, 0].numpy() > 0.5, np.asarray(draw_mask(SAMPLE_MASKS[name])) > 127)
    assert total < 400_000
    assert "Licence" in (folder / "README.md").read_text() or "licence" in (folder / "README.md").read_text()
