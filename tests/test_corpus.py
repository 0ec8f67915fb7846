"""dualinpaint.corpus: the pure parts (names, licences, splits, manifest, masks). No apt, no network."""

from __future__ import annotations

import io
import json
import zipfile
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dualinpaint import corpus
from dualinpaint.corpus import (
    FIRST_CORPUS,
    MIN_VAL,
    NAMED_PHOTOS,
    PATH_PHOTOS,
    SAMPLE_MASKS,
    SKIMAGE_PHOTOS,
    WHEEL_PHOTOS,
    CorpusError,
    assign_splits,
    desktop_legal,
    draw_mask,
    encode_photo,
    extract_wheel_members,
    fetch_wheel,
    find_folder_photos,
    find_named_photos,
    find_path_photos,
    parse_debian_copyright,
    parse_debian_copyright_default,
    parse_desktop_entry,
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


def test_parse_debian_copyright_default() -> None:
    assert parse_debian_copyright_default(COPYRIGHT) == {"copyright": "2020, Someone", "license": "GPL-2+"}
    assert parse_debian_copyright_default("Files: a.jpg\nCopyright: x\nLicense: MIT\n") == {}


DESKTOP = """\
[Desktop Entry]
Name=Castle of Maintenon
Name[de]=Schloss Maintenon
Icon=castle-maintenon.jpg
X-KDE-PluginInfo-Author=Eric Pouhier
X-KDE-PluginInfo-Website=http://commons.wikimedia.org/wiki/Image:EPO_2432_wiki.jpg
X-KDE-PluginInfo-License=FDL

[Job]
Image=castle-maintenon.jpg
X-KDE-PluginInfo-Author=not this one
"""


def test_parse_desktop_entry_and_legal() -> None:
    entry = parse_desktop_entry(DESKTOP)
    assert entry["Name"] == "Castle of Maintenon" and entry["Name[de]"] == "Schloss Maintenon"
    assert "Image" not in entry and entry["X-KDE-PluginInfo-Author"] == "Eric Pouhier"
    assert desktop_legal(entry) == {
        "author": "Eric Pouhier",
        "copyright": "Eric Pouhier (http://commons.wikimedia.org/wiki/Image:EPO_2432_wiki.jpg)",
        "license": "FDL",
    }
    assert desktop_legal({"X-KDE-PluginInfo-Author": "A"}) == {"author": "A", "copyright": "A"}
    assert desktop_legal(parse_desktop_entry("[Desktop Entry]\nName=x\n")) == {}


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


def test_find_path_photos(tmp_path: Path) -> None:
    root = _fake_package(tmp_path / "pkg")
    paths = {"aqua": "usr/share/backgrounds/mate/nature/Aqua.jpg", "doc": "usr/share/doc/pkg/Bridge.png"}
    assert find_path_photos(root, paths, "pkg") == {k: Path(v) for k, v in paths.items()}
    with pytest.raises(CorpusError) as info:
        find_path_photos(root, {**paths, "x": "usr/share/backgrounds/mate/nature/Fog.jpg"}, "opencv-doc")
    msg = str(info.value)
    assert "opencv-doc has no file /usr/share/backgrounds/mate/nature/Fog.jpg" in msg
    assert "/usr/share/backgrounds/mate/nature/Aqua.jpg" in msg and "Waves" not in msg


def _fake_wheel(path: Path, members: dict[str, bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def _jpeg_bytes(size: tuple[int, int] = (20, 10)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (200, 100, 50)).save(buf, format="JPEG")
    return buf.getvalue()


def test_extract_wheel_members(tmp_path: Path) -> None:
    jpeg = _jpeg_bytes()
    wheel = _fake_wheel(
        tmp_path / "scikit_learn-1.9.1-cp311-cp311-manylinux_2_28_x86_64.whl",
        {"sklearn/datasets/images/china.jpg": jpeg, "sklearn/__init__.py": b"", "sklearn/x/logo.png": b"png"},
    )
    out = extract_wheel_members(wheel, ["sklearn/datasets/images/china.jpg"], tmp_path / "unpacked")
    target = tmp_path / "unpacked/sklearn/datasets/images/china.jpg"
    assert out == {"sklearn/datasets/images/china.jpg": target} and target.read_bytes() == jpeg
    with pytest.raises(
        CorpusError, match="has no sklearn/flower.jpg; its images: sklearn/datasets/images/china"
    ):
        extract_wheel_members(wheel, ["sklearn/flower.jpg"], tmp_path / "unpacked")
    (tmp_path / "broken.whl").write_bytes(b"not a zip")
    with pytest.raises(CorpusError, match="cannot read wheel"):
        extract_wheel_members(tmp_path / "broken.whl", ["a"], tmp_path / "unpacked")


def test_fetch_wheel_downloads_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def fake_run(cmd: list[str], cwd: Path | None = None) -> str:
        calls.append(cmd)
        dest = Path(cmd[cmd.index("--dest") + 1])
        _fake_wheel(dest / "matplotlib-3.11.2-cp311-cp311-manylinux2014_x86_64.whl", {"a": b""})
        return ""

    monkeypatch.setattr(corpus, "_run", fake_run)
    wheel, version = fetch_wheel("matplotlib", tmp_path)
    assert version == "3.11.2" and wheel.parent == tmp_path / "wheels"
    assert calls[0][1:5] == ["-m", "pip", "download", "--no-deps"] and calls[0][-1] == "matplotlib"
    assert fetch_wheel("matplotlib", tmp_path) == (wheel, version) and len(calls) == 1  # reused

    # a hyphenated distribution's wheel has an underscore: scikit-learn → scikit_learn-*.whl
    _fake_wheel(tmp_path / "wheels/scikit_learn-1.9.1-cp311-cp311-linux_x86_64.whl", {"a": b""})
    assert fetch_wheel("scikit-learn", tmp_path)[1] == "1.9.1" and len(calls) == 1

    def failing_run(cmd: list[str], cwd: Path | None = None) -> str:
        raise CorpusError("`pip download` failed (exit 1): no such package")

    monkeypatch.setattr(corpus, "_run", failing_run)
    with pytest.raises(CorpusError, match="cannot download the nothere wheel: .*no such package"):
        fetch_wheel("nothere", tmp_path)


def test_photo_lists_are_explicit_and_distinct() -> None:
    """Every output name is used once (case-insensitively, across all sources), paths are explicit."""
    names = [n for package in NAMED_PHOTOS.values() for n in package]
    names += [n for package in PATH_PHOTOS.values() for n in package]
    names += [n for photos in WHEEL_PHOTOS.values() for n in photos] + list(SKIMAGE_PHOTOS)
    folded = [n.lower() for n in names]
    assert len(folded) == len(set(folded))
    for package in PATH_PHOTOS.values():
        paths = list(package.values())
        assert len(paths) == len(set(paths)) and all(not p.startswith("/") and "*" not in p for p in paths)
    # with mate-backgrounds' twelve nature photos the corpus has at least 100 photos
    assert len(names) + 12 >= 100
    assert len(FIRST_CORPUS) == 31 and MIN_VAL >= 20


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


FIRST_VAL = {
    "images/Garden.jpg",
    "images/GreenMeadow.jpg",
    "images/astronaut.png",
    "images/free.jpg",
    "images/picosdeeuropa.jpg",
    "images/seeding.jpg",
}


def _first_corpus() -> dict[str, str]:
    """The 31 photos of the first corpus with their sources."""
    lomiri = {f"images/{n}.jpg" for n in NAMED_PHOTOS["lomiri-wallpapers-16.04"]}
    sources = {}
    for file in FIRST_CORPUS:
        if file in lomiri:
            sources[file] = "lomiri-wallpapers-16.04"
        elif file == "images/Kleiber.jpg":
            sources[file] = "lomiri-wallpapers-20.04"
        elif file.endswith(".png"):
            sources[file] = "scikit-image"
        else:
            sources[file] = "mate-backgrounds"
    return sources


def test_first_corpus_keeps_its_split() -> None:
    first = _first_corpus()
    assert {f for f, s in assign_splits(first, 0.2, seed=0).items() if s == "val"} == FIRST_VAL
    # the new corpus: the first 31 plus 72 new photos from five new sources
    sources = dict(first)
    for source, count in [
        ("opencv-doc", 53),
        ("scikit-image", 11),
        ("palapeli-data", 5),
        ("scikit-learn", 2),
    ]:
        sources.update({f"images/{source}_{i:02d}.jpg": source for i in range(count)})
    sources["images/grace_hopper.jpg"] = "matplotlib"
    assert len(sources) == 103
    pinned = assign_splits(first, 0.2, seed=0)
    split = assign_splits(sources, 0.2, seed=0, min_val=MIN_VAL, pinned=pinned)
    assert {f: split[f] for f in first} == pinned  # first-corpus photos keep their split
    val = {f for f, s in split.items() if s == "val"}
    assert len(val) == 21 and val >= FIRST_VAL
    per_source = {s: sum(sources[f] == s for f in val) for s in set(sources.values())}
    assert per_source == {
        "lomiri-wallpapers-16.04": 3,  # pinned (quota 2.9)
        "lomiri-wallpapers-20.04": 0,
        "mate-backgrounds": 2,  # pinned
        "scikit-image": 3,  # 1 pinned + 2 drawn (quota 3.1)
        "opencv-doc": 11,  # quota 10.8
        "palapeli-data": 1,
        "scikit-learn": 1,
        "matplotlib": 0,
    }
    assert assign_splits(dict(reversed(list(sources.items()))), 0.2, 0, MIN_VAL, pinned) == split
    other = assign_splits(sources, 0.2, seed=1, min_val=MIN_VAL, pinned=pinned)
    assert other != split and {f: other[f] for f in first} == pinned
    # min_val: a smaller fraction still holds out MIN_VAL photos
    assert sum(s == "val" for s in assign_splits(sources, 0.1, 0, MIN_VAL, pinned).values()) == MIN_VAL


def test_assign_splits_pinned_edges() -> None:
    sources = {f"{s}{i}": s for s in "ab" for i in range(5)}
    # pins outside the sources are ignored; pinned val files count towards the total
    split = assign_splits(sources, 0.2, seed=0, min_val=2, pinned={"a0": "val", "a1": "val", "zz": "val"})
    assert sorted(f for f, s in split.items() if s == "val") == ["a0", "a1"]
    # more pinned val files than the fraction asks for: all of them stay val, even with fraction 0
    pins = dict.fromkeys(["a0", "a1", "a2", "b0"], "val")
    assert sum(s == "val" for s in assign_splits(sources, 0.0, 0, pinned=pins).values()) == 4
    # a source whose files are all pinned to train gives none to val; the others make up the count
    pins = {f"a{i}": "train" for i in range(5)}
    split = assign_splits(sources, 0.4, seed=0, pinned=pins)
    assert [split[f"a{i}"] for i in range(5)] == ["train"] * 5
    assert sorted(split[f"b{i}"] for i in range(5)) == ["train"] + ["val"] * 4  # b keeps one in train
    with pytest.raises(ValueError, match="pinned"):
        assign_splits(sources, 0.2, pinned={"a0": "test"})


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


def test_export_file_copies_plain_photos_and_converts_the_rest(tmp_path: Path) -> None:
    rgb, rgba = tmp_path / "rgb.png", tmp_path / "rgba.png"
    Image.new("RGB", (40, 30), (1, 2, 3)).save(rgb)
    Image.new("RGBA", (40, 30), (1, 2, 3, 128)).save(rgba)
    dest, data, size, original = corpus._export_file(rgb, tmp_path / "out/a", max_side=1024)
    assert dest == tmp_path / "out/a.png" and data == rgb.read_bytes() and size == original == (40, 30)
    dest, data, size, _ = corpus._export_file(rgba, tmp_path / "out/b", max_side=1024)
    assert data != rgba.read_bytes()
    with Image.open(io.BytesIO(data)) as im:
        assert im.mode == "RGB" and im.size == (40, 30) and im.getpixel((0, 0)) == (1, 2, 3)
    jpeg = tmp_path / "big.jpg"
    jpeg.write_bytes(_jpeg_bytes((2048, 100)))
    dest, data, size, original = corpus._export_file(jpeg, tmp_path / "out/c", max_side=1024)
    assert dest.name == "c.jpg" and size == (1024, 50) and original == (2048, 100)


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
