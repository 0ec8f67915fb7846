"""dualinpaint.data: image lists, the image dataset, splits. All inputs are generated in tmp_path."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dualinpaint.data import ImageDataset, read_image_list, split_list, write_flist


def _noise(path: Path, w: int = 48, h: int = 40, seed: int = 0) -> Path:
    """A random-noise RGB image (so different crops give different pixels)."""
    arr = np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return path


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "imgs"
    for i, name in enumerate(["a.png", "b.jpg", "c.png", "d.png"]):
        _noise(root / name, seed=i)
    return root


def test_folder_is_walked_recursively_with_suffix_filter(tmp_path: Path) -> None:
    _noise(tmp_path / "b.png")
    _noise(tmp_path / "sub" / "deep" / "a.JPG")
    _noise(tmp_path / "sub" / "c.webp")
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "sub" / "x.json").write_text("{}")
    got = read_image_list(tmp_path)
    assert got == sorted(got)
    assert [p.relative_to(tmp_path).as_posix() for p in got] == ["b.png", "sub/c.webp", "sub/deep/a.JPG"]


def test_flist_relative_paths_comments_and_labels(tmp_path: Path) -> None:
    a = _noise(tmp_path / "data" / "a.png")
    b = _noise(tmp_path / "data" / "x" / "b.png")
    c = _noise(tmp_path / "elsewhere" / "c.png")
    lists = tmp_path / "lists"
    lists.mkdir()
    flist = lists / "train.flist"
    flist.write_text(f"# my split\n\n../data/a.png\n  ../data/x/b.png  \n# ../data/skipped.png\n{c} 17\n")
    got = read_image_list(flist)
    assert [p.resolve() for p in got] == [a.resolve(), b.resolve(), c.resolve()]
    txt = lists / "val.txt"
    txt.write_text("../data/a.png\n")
    assert [p.resolve() for p in read_image_list(txt)] == [a.resolve()]


def test_places365_list_with_leading_slash_is_relative_to_its_folder(tmp_path: Path) -> None:
    root = tmp_path / "places365"
    a = _noise(root / "a" / "airfield" / "00000001.jpg")
    b = _noise(root / "b" / "bakery" / "00000002.jpg")
    flist = root / "places365_train_standard.txt"
    flist.write_text("/a/airfield/00000001.jpg 0\n/b/bakery/00000002.jpg 41\n")
    assert [p.resolve() for p in read_image_list(flist)] == [a.resolve(), b.resolve()]
    # a real absolute path is kept as it is
    elsewhere = tmp_path / "abs.flist"
    elsewhere.write_text(f"{a}\n")
    assert read_image_list(elsewhere) == [a]


@pytest.mark.parametrize("kind", ["missing", "empty_dir", "empty_list", "bad_suffix"])
def test_bad_sources_give_one_line_value_errors(tmp_path: Path, kind: str) -> None:
    source = {
        "missing": tmp_path / "nope",
        "empty_dir": tmp_path / "empty",
        "empty_list": tmp_path / "empty.flist",
        "bad_suffix": tmp_path / "list.csv",
    }[kind]
    if kind == "empty_dir":
        source.mkdir()
        (source / "readme.md").write_text("no images")
    elif kind == "empty_list":
        source.write_text("# only a comment\n\n")
    elif kind == "bad_suffix":
        source.write_text("a.png\n")
    with pytest.raises(ValueError) as info:
        read_image_list(source)
    assert str(source) in str(info.value) and "\n" not in str(info.value)


def test_write_flist_round_trips_and_is_relative_inside(tmp_path: Path, folder: Path) -> None:
    outside = _noise(tmp_path / "outside" / "z.png")
    paths = [*read_image_list(folder), outside]
    out = write_flist(paths, tmp_path / "imgs" / "all.flist")
    lines = out.read_text().splitlines()
    assert lines[0] == "a.png" and Path(lines[-1]).is_absolute()
    assert [p.resolve() for p in read_image_list(out)] == [p.resolve() for p in paths]


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    # Stored 64×32: top half red, bottom half blue. Orientation 6 = displayed rotated 90° clockwise,
    # i.e. 32 wide × 64 high with the red half on the right.
    arr = np.zeros((32, 64, 3), dtype=np.uint8)
    arr[:16, :, 0] = 255
    arr[16:, :, 2] = 255
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "rotated.jpg"
    Image.fromarray(arr).save(path, quality=95, exif=exif)

    ds = ImageDataset(path, size=32, train=False)
    img = ds[0]["image"]
    assert img.shape == (3, 32, 32)
    left, right = img[:, :, :12].mean(dim=(1, 2)), img[:, :, 20:].mean(dim=(1, 2))
    assert right[0] > 0.8 and right[2] < -0.8  # red on the right
    assert left[2] > 0.8 and left[0] < -0.8  # blue on the left

    ds = ImageDataset(path, size=16, load_size=16, train=True, flip=False)
    tall = ds[0]["image"]  # resized to 16×16 from a 32×64 portrait: red still on the right
    assert tall[0, :, 10:].mean() > 0.8 and tall[2, :, :6].mean() > 0.8


def test_output_shape_range_and_default_load_size(folder: Path) -> None:
    ds = ImageDataset(folder, size=32)
    assert len(ds) == 4 and ds.load_size == 33  # round(32 * 266 / 256)
    assert ImageDataset(folder, size=256).load_size == 266
    item = ds[2]
    assert set(item) == {"image", "index"} and item["index"] == 2
    img = item["image"]
    assert img.shape == (3, 32, 32) and img.dtype == torch.float32
    assert img.min() >= -1.0 and img.max() <= 1.0 and img.std() > 0.1


def test_train_sample_is_a_pure_function_of_seed_epoch_index(folder: Path) -> None:
    a = ImageDataset(folder, size=24, load_size=40, seed=7)
    b = ImageDataset(folder, size=24, load_size=40, seed=7)
    b.set_epoch(3)
    b_epoch3 = [b[i]["image"] for i in reversed(range(4))][::-1]  # visit order does not matter
    b.set_epoch(0)
    for i in range(4):
        assert torch.equal(a[i]["image"], b[i]["image"])
    a.set_epoch(3)
    for i in range(4):
        assert torch.equal(a[i]["image"], b_epoch3[i])
    # another epoch, or another seed, gives other crops
    a.set_epoch(4)
    assert any(not torch.equal(a[i]["image"], b_epoch3[i]) for i in range(4))
    c = ImageDataset(folder, size=24, load_size=40, seed=8)
    c.set_epoch(3)
    assert any(not torch.equal(c[i]["image"], b_epoch3[i]) for i in range(4))
    # the global RNGs neither matter nor move
    np.random.seed(123)
    torch.manual_seed(123)
    state = (np.random.get_state()[1].copy(), torch.get_rng_state().clone())
    a.set_epoch(3)
    assert torch.equal(a[1]["image"], b_epoch3[1])
    assert np.array_equal(np.random.get_state()[1], state[0]) and torch.equal(torch.get_rng_state(), state[1])


def test_same_samples_in_dataloader_workers(folder: Path) -> None:
    ds = ImageDataset(folder, size=16, load_size=30, seed=1)
    ds.set_epoch(2)
    direct = torch.stack([ds[i]["image"] for i in range(4)])
    loader = torch.utils.data.DataLoader(ds, batch_size=2, num_workers=2, shuffle=False)
    batches = list(loader)
    assert torch.equal(torch.cat([b["image"] for b in batches]), direct)
    assert torch.cat([b["index"] for b in batches]).tolist() == [0, 1, 2, 3]


def test_flip_off_and_on(tmp_path: Path) -> None:
    _noise(tmp_path / "a.png", w=16, h=16)
    ds = ImageDataset(tmp_path, size=16, load_size=16, flip=False)
    ref = ImageDataset(tmp_path, size=16, train=False)[0]["image"]
    assert all(torch.equal(ds[0]["image"], ref) for ds.epoch in range(6))
    ds.flip = True
    flipped = [not torch.equal(ds[0]["image"], ref) for ds.epoch in range(16)]
    assert any(flipped) and not all(flipped)
    assert torch.equal(next(ds[0]["image"] for ds.epoch in [flipped.index(True)]), ref.flip(-1))


def test_val_mode_has_no_randomness_and_centre_crops(tmp_path: Path) -> None:
    arr = np.tile(np.arange(80, dtype=np.uint8)[None, :, None] * 3, (40, 1, 3))  # 80 wide, 40 high ramp
    Image.fromarray(arr).save(tmp_path / "ramp.png")
    outs = []
    for seed in (0, 5):
        ds = ImageDataset(tmp_path, size=20, train=False, seed=seed)
        for epoch in (0, 9):
            ds.set_epoch(epoch)
            outs.append(ds[0]["image"])
    assert all(torch.equal(o, outs[0]) for o in outs)
    # shorter side 40 → 20 (width 80 → 40), then the centre 20 columns: the ramp's middle half (60..180)
    row = (outs[0][0, 10] + 1) * 127.5
    assert 55 < row[0] < 70 and 170 < row[-1] < 185
    assert torch.all(row[1:] >= row[:-1])


def test_unreadable_file_is_skipped_with_one_warning(folder: Path) -> None:
    bad = folder / "b.jpg"
    bad.write_bytes(b"this is not a jpeg")
    ds = ImageDataset(folder, size=16, train=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = [ds[i] for i in range(len(ds))]
        second = [ds[i] for i in range(len(ds))]
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1 and str(bad) in messages[0]
    assert [item["index"] for item in first] == [0, 1, 2, 3]
    assert torch.equal(first[1]["image"], first[2]["image"])  # the next readable file stands in
    assert all(torch.equal(x["image"], y["image"]) for x, y in zip(first, second, strict=True))


def test_unreadable_last_file_wraps_around(folder: Path) -> None:
    (folder / "d.png").write_bytes(b"")
    ds = ImageDataset(folder, size=16, train=False)
    with pytest.warns(RuntimeWarning, match="d.png"):
        assert torch.equal(ds[3]["image"], ds[0]["image"])


def test_all_unreadable_raises(tmp_path: Path) -> None:
    for name in ("a.png", "b.jpg"):
        (tmp_path / name).write_bytes(b"garbage")
    ds = ImageDataset(tmp_path, size=16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(RuntimeError, match="none of the 2 images"):
            ds[0]


def test_bad_arguments(folder: Path) -> None:
    with pytest.raises(ValueError, match="load_size"):
        ImageDataset(folder, size=32, load_size=16)
    with pytest.raises(ValueError, match="epoch"):
        ImageDataset(folder, size=8).set_epoch(-1)
    with pytest.raises(IndexError):
        ImageDataset(folder, size=8)[4]
    paths = read_image_list(folder)
    assert len(ImageDataset(paths[:2], size=8)) == 2


def test_split_list_is_deterministic_disjoint_and_order_free() -> None:
    paths = [Path(f"/data/places/{i:05d}.jpg") for i in range(50)]
    train, val = split_list(paths, 0.2, seed=0)
    assert len(train) == 40 and len(val) == 10
    assert set(train).isdisjoint(val) and set(train) | set(val) == set(paths)
    assert train == sorted(train) and val == sorted(val)
    shuffled = [paths[i] for i in np.random.default_rng(3).permutation(50)]
    assert split_list(shuffled, 0.2, seed=0) == (train, val)
    assert split_list(paths, 0.2, seed=1) != (train, val)
    # moving the data keeps the split
    moved = [Path("/mnt/other") / p.name for p in paths]
    assert [p.name for p in split_list(moved, 0.2, seed=0)[1]] == [p.name for p in val]


def test_split_list_edges() -> None:
    assert split_list(["a", "b", "c"], 0.01, seed=0)[1] != []  # at least one val
    assert len(split_list(["a", "b"], 0.99, seed=0)[0]) == 1  # at least one train
    assert split_list(["a", "b"], 0.0, seed=0) == (["a", "b"], [])
    with pytest.raises(ValueError):
        split_list(["a"], 1.5, seed=0)


def test_scale_crop_draws_squares_of_varying_scale(tmp_path: Path) -> None:
    """min_scale > 0: a square of s·(shorter side), s ~ U[min_scale, 1], resized to size; seeded."""
    arr = np.zeros((60, 100, 3), np.uint8)
    arr[:, :, 0] = np.arange(100, dtype=np.uint8)[None, :] * 2  # red encodes the x coordinate
    arr[:, :, 1] = np.arange(60, dtype=np.uint8)[:, None] * 4  # green encodes y
    Image.fromarray(arr).save(tmp_path / "a.png")
    ds = ImageDataset(tmp_path, 16, train=True, flip=False, min_scale=0.2)
    spans = set()
    for epoch in range(12):
        ds.set_epoch(epoch)
        img = ds[0]["image"]
        red = (img[0] + 1) * 127.5
        spans.add(round(float(red[:, -1].mean() - red[:, 0].mean())))
        assert img.shape == (3, 16, 16)
        ds.set_epoch(epoch)
        assert torch.equal(ds[0]["image"], img)
    assert len(spans) > 6  # the crop's width (hence its x-span) varies from epoch to epoch
    assert max(spans) <= 2 * 60 and min(spans) >= 2 * 60 * 0.2 * 15 / 16 - 4
    with pytest.raises(ValueError, match="min_scale"):
        ImageDataset(tmp_path, 16, min_scale=1.5)
