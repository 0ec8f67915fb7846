"""Mask generators, registry, sampler and mask sets (src/dualinpaint/masks.py)."""

from __future__ import annotations

import json
import pickle
import random

import numpy as np
import pytest
import torch
from PIL import Image

from dualinpaint.masks import (
    MASK_KINDS,
    MaskSampler,
    generate_mask,
    hole_ratio,
    load_mask_file,
    load_mask_set,
    make_mask_set,
    picnet_regular_mask,
)

RANDOM_KINDS = [
    "rect",
    "stroke",
    "picnet_regular",
    "picnet_irregular",
    "lama_thin",
    "lama_medium",
    "lama_thick",
]
GENERATED_KINDS = ["center", *RANDOM_KINDS]
SIZES = [(64, 64), (256, 256), (48, 80)]

# Sane hole-ratio bounds per kind (observed ranges over hundreds of draws at 32..512 px, with margin).
RATIO_BOUNDS = {
    "center": (0.25, 0.25),
    "rect": (0.005, 0.6),
    "stroke": (0.002, 0.6),
    "picnet_regular": (0.01, 0.95),
    "picnet_irregular": (0.1, 0.9),
    "lama_thin": (0.005, 0.5),
    "lama_medium": (0.0005, 0.5),
    "lama_thick": (0.005, 0.5),
}


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def save_l(path, array: np.ndarray) -> None:
    Image.fromarray(array.astype(np.uint8), "L").save(path)


@pytest.fixture
def mask_folder(tmp_path):
    """Three masks of different sizes (white = hole) plus one without any hole."""
    folder = tmp_path / "masks"
    (folder / "sub").mkdir(parents=True)
    left = np.zeros((4, 4), np.uint8)
    left[:, :2] = 255  # left half hole, 4×4
    save_l(folder / "a_left.png", left)
    top = np.zeros((30, 50), np.uint8)
    top[:15] = 200  # top half hole, 50 wide × 30 high
    save_l(folder / "b_top.png", top)
    grey = np.full((20, 20), 127, np.uint8)  # exactly at the threshold: not a hole
    grey[5:15, 5:15] = 128
    save_l(folder / "sub" / "c_grey.png", grey)
    save_l(folder / "d_empty.png", np.zeros((16, 16), np.uint8))
    return folder


# --- every generated kind: shape, dtype, values, ratio, non-empty -------------------------------------------


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("kind", GENERATED_KINDS)
def test_kind_contract(kind, size):
    height, width = size
    lo, hi = RATIO_BOUNDS[kind]
    g = rng(1)
    for _ in range(3):
        raw = MASK_KINDS[kind](height, width, g)
        assert isinstance(raw, np.ndarray) and raw.shape == (height, width) and raw.dtype == np.float32
        mask = generate_mask(kind, height, width, g)
        assert mask.shape == (1, height, width) and mask.dtype == torch.float32
        for m in (raw, mask.numpy()):  # numpy: tiny torch reductions are slow on a busy CPU
            assert set(np.unique(m).tolist()) <= {0.0, 1.0}
            assert m.any(), "empty mask"
            assert lo <= hole_ratio(torch.from_numpy(m)) <= hi, (kind, m.mean())


@pytest.mark.parametrize("kind", RANDOM_KINDS)
def test_seeded_determinism(kind):
    a = generate_mask(kind, 64, 96, rng(7))
    b = generate_mask(kind, 64, 96, rng(7))
    assert torch.equal(a, b)
    others = [generate_mask(kind, 64, 96, rng(seed)) for seed in (8, 9, 10)]
    assert any(not torch.equal(a, o) for o in others), "different seeds gave identical masks"


def test_generators_never_touch_global_rngs():
    random.seed(123)
    np.random.seed(123)
    torch.manual_seed(123)
    py_state, np_state, torch_state = random.getstate(), np.random.get_state(), torch.get_rng_state()
    for kind in GENERATED_KINDS:
        generate_mask(kind, 64, 64, rng(0))
    MaskSampler({"stroke": 1, "lama_thick": 1}, 64, 64).batch(4, rng(0))
    assert random.getstate() == py_state
    after = np.random.get_state()
    assert np.array_equal(after[1], np_state[1]) and after[2:] == np_state[2:]
    assert torch.equal(torch.get_rng_state(), torch_state)


def test_center_exact_position():
    m = generate_mask("center", 256, 256, rng())[0]
    expected = torch.zeros(256, 256)
    expected[64:192, 64:192] = 1
    assert torch.equal(m, expected) and m.sum() == 128 * 128
    m = generate_mask("center", 48, 80, rng())[0]  # rows [12, 36), cols [20, 60)
    expected = torch.zeros(48, 80)
    expected[12:36, 20:60] = 1
    assert torch.equal(m, expected)
    assert torch.equal(generate_mask("center", 48, 80, rng(1)), generate_mask("center", 48, 80, rng(2)))


@pytest.mark.parametrize("kind", ["lama_thin", "lama_medium", "lama_thick"])
def test_lama_max_area_over_many_draws(kind):
    g = rng(3)
    ratios = [hole_ratio(generate_mask(kind, 64, 64, g)) for _ in range(100)]
    ratios += [hole_ratio(generate_mask(kind, 256, 256, g)) for _ in range(10)]
    assert max(ratios) <= 0.5
    assert min(ratios) > 0
    tight = [hole_ratio(generate_mask(kind, 64, 64, g, max_area=0.2)) for _ in range(30)]
    assert max(tight) <= 0.2


@pytest.mark.parametrize("kind", ["stroke", "lama_thick", "picnet_irregular"])
def test_scale_aware_hole_ratio(kind):
    """Pixel sizes scale with the image, so the hole-ratio distribution is about the same at 32 and 192 px."""
    small = np.mean([hole_ratio(generate_mask(kind, 32, 32, rng(s))) for s in range(30)])
    large = np.mean([hole_ratio(generate_mask(kind, 192, 192, rng(s))) for s in range(30)])
    assert 0.6 < small / large < 1.6, (small, large)


def test_lama_thin_has_no_boxes_and_thick_sometimes_does():
    def is_box(m: torch.Tensor) -> bool:
        ys, xs = torch.nonzero(m[0], as_tuple=True)
        return len(ys) == (ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1)  # one filled rectangle

    g = rng(4)
    thin = [generate_mask("lama_thin", 64, 64, g) for _ in range(40)]
    assert not any(is_box(m) for m in thin)
    thick = [generate_mask("lama_thick", 64, 64, g) for _ in range(80)]
    assert any(is_box(m) for m in thick)


def test_rect_options_bound_the_rectangles():
    g = rng(5)
    for _ in range(20):
        m = generate_mask("rect", 100, 200, g, min_count=1, max_count=1, min_size=0.2, max_size=0.3)[0]
        ys, xs = torch.nonzero(m, as_tuple=True)
        h, w = int(ys.max() - ys.min() + 1), int(xs.max() - xs.min() + 1)
        assert 20 <= h <= 30 and 40 <= w <= 60 and m.sum() == h * w
    with pytest.raises(ValueError, match="min_size"):
        generate_mask("rect", 64, 64, g, min_size=0.6, max_size=0.5)


def test_empty_draws_are_redrawn():
    """At 8 px PICNet's regular boxes can all have zero extent; the registry entry redraws such masks."""
    raw = picnet_regular_mask.__wrapped__  # the generator without the registry wrapper
    g = rng(0)
    assert sum(not raw(8, 8, g).any() for _ in range(500)) > 0  # the raw generator does produce empties
    assert all(MASK_KINDS["picnet_regular"](8, 8, g).any() for _ in range(500))
    for kind in RANDOM_KINDS:
        for _ in range(5):
            assert generate_mask(kind, 16, 16, g).sum() > 0, kind


# --- registry and argument errors ---------------------------------------------------------------------------


def test_registry_names_and_unknown_kind():
    assert set(MASK_KINDS) == {*GENERATED_KINDS, "folder"}
    with pytest.raises(ValueError, match="unknown mask kind 'blob'") as err:
        generate_mask("blob", 64, 64, rng())
    for name in MASK_KINDS:
        assert name in str(err.value)


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown option.*'widht'.*max_width"):
        generate_mask("stroke", 64, 64, rng(), widht=3)
    with pytest.raises(TypeError, match="numpy.random.Generator"):
        generate_mask("stroke", 64, 64, np.random.RandomState(0))
    with pytest.raises(TypeError, match="numpy.random.Generator"):
        generate_mask("center", 64, 64, None)
    with pytest.raises(ValueError, match="height must be at least"):
        generate_mask("rect", 4, 64, rng())
    with pytest.raises(ValueError, match="reference"):
        generate_mask("lama_thin", 64, 64, rng(), reference=300)


def test_hole_ratio():
    m = torch.zeros(2, 1, 4, 5)
    m[0, 0, :2] = 1
    assert hole_ratio(m) == pytest.approx(10 / 40)
    assert hole_ratio(torch.ones(3, 3)) == 1.0


# --- MaskSampler --------------------------------------------------------------------------------------------


def test_sampler_single_kind_is_always_that_kind():
    sampler = MaskSampler({"center": 1.0}, 64, 64)
    center = generate_mask("center", 64, 64, rng())
    g = rng(1)
    for _ in range(20):
        kind, mask = sampler.draw(g)
        assert kind == "center" and torch.equal(mask, center)
    batch = sampler.batch(4, g)
    assert batch.shape == (4, 1, 64, 64) and batch.dtype == torch.float32
    assert torch.equal(batch, center.expand(4, 1, 64, 64))


def test_sampler_frequencies_match_config():
    config = {"center": 2.0, "rect": 3.0, "picnet_regular": 5.0, "stroke": 0.0}
    sampler = MaskSampler(config, 32, 32)
    assert sampler.probabilities == pytest.approx({"center": 0.2, "rect": 0.3, "picnet_regular": 0.5})
    g = rng(2)
    n = 600
    kinds = [sampler.draw(g)[0] for _ in range(n)]
    for kind, p in sampler.probabilities.items():
        assert abs(kinds.count(kind) / n - p) < 0.065, (kind, kinds.count(kind) / n, p)  # > 3 sigma
    assert "stroke" not in kinds


def test_sampler_seeded_and_pickles():
    sampler = MaskSampler(
        {"stroke": 1, "rect": 1, "lama_medium": 1}, 48, 80, options={"rect": {"max_count": 1}}
    )
    a = sampler.batch(6, rng(11))
    b = pickle.loads(pickle.dumps(sampler)).batch(6, rng(11))
    assert a.shape == (6, 1, 48, 80) and torch.equal(a, b)
    assert all(m.sum() > 0 for m in a)
    assert not torch.equal(a, sampler.batch(6, rng(12)))
    assert torch.equal(sampler(rng(3)), sampler.draw(rng(3))[1])


@pytest.mark.parametrize(
    ("config", "match"),
    [
        ({"strokes": 1.0}, "'strokes'.*valid kinds"),
        ({"center": -0.5, "rect": 1.0}, "'center'.*-0.5"),
        ({"center": float("nan")}, "'center'"),
        ({"center": "1"}, "'center'.*'1'"),
        ({"center": 0.0, "rect": 0}, "sum to > 0"),
        ({}, "non-empty"),
        ({"folder": 0.5, "center": 0.5}, "no folder was given"),
    ],
)
def test_sampler_invalid_config(config, match):
    with pytest.raises(ValueError, match=match):
        MaskSampler(config, 64, 64)


def test_sampler_option_for_unknown_kind_and_missing_folder(tmp_path):
    with pytest.raises(ValueError, match="'bogus'"):
        MaskSampler({"rect": 1}, 64, 64, options={"bogus": {}})
    with pytest.raises(ValueError, match="unknown option.*'sides'"):
        MaskSampler({"rect": 1}, 64, 64, options={"rect": {"sides": 5}})
    with pytest.raises(ValueError, match="min_size"):
        MaskSampler({"rect": 1}, 64, 64, options={"rect": {"min_size": 0.9, "max_size": 0.2}})
    with pytest.raises(ValueError, match="does not exist"):
        MaskSampler({"folder": 1}, 64, 64, folder=tmp_path / "nope")
    MaskSampler({"rect": 1, "folder": 0}, 64, 64)  # zero weight: no folder needed
    MaskSampler({"rect": 1}, 64, 64, folder="")  # a config's empty folder string is "no folder"
    with pytest.raises(ValueError, match="no folder was given"):
        MaskSampler({"folder": 1}, 64, 64, folder="")


# --- folder kind and single files ---------------------------------------------------------------------------


def test_folder_index_is_deterministic_nearest_and_thresholded(mask_folder):
    # sorted recursively: a_left, b_top, d_empty, sub/c_grey
    left = generate_mask("folder", 8, 8, rng(), path=mask_folder, index=0)[0]
    expected = torch.zeros(8, 8)
    expected[:, :4] = 1
    assert torch.equal(left, expected)  # NEAREST upscale of a 4×4 file keeps the hard edge
    top = generate_mask("folder", 12, 16, rng(), path=mask_folder, index=1)[0]
    expected = torch.zeros(12, 16)
    expected[:6] = 1
    assert torch.equal(top, expected)  # 200 > 127 is a hole; downscale and aspect change
    assert generate_mask("folder", 8, 8, rng(), path=mask_folder, index=2).sum() == 0  # as is, no redraw
    grey = generate_mask("folder", 20, 20, rng(), path=mask_folder, index=3)[0]
    expected = torch.zeros(20, 20)
    expected[5:15, 5:15] = 1
    assert torch.equal(grey, expected)  # 127 is not a hole, 128 is
    assert torch.equal(generate_mask("folder", 8, 8, rng(), path=mask_folder, index=4)[0], left)  # wraps


def test_folder_random_pick_uses_rng_and_skips_empty_files(mask_folder):
    sampler = MaskSampler({"folder": 1}, 16, 16, folder=mask_folder)
    g = rng(9)
    seen = set()
    for _ in range(40):
        mask = sampler(g)
        assert mask.shape == (1, 16, 16) and mask.sum() > 0
        seen.add(mask.numpy().tobytes())
    assert len(seen) == 3  # every non-empty file is picked, the empty one never
    assert torch.equal(MaskSampler({"folder": 1}, 16, 16, folder=mask_folder)(rng(1)), sampler(rng(1)))


def test_folder_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no image files"):
        generate_mask("folder", 8, 8, rng(), path=tmp_path / "empty")
    with pytest.raises(ValueError, match="needs option.*'path'"):
        generate_mask("folder", 8, 8, rng())


def test_load_mask_file(tmp_path):
    arr = np.zeros((30, 50), np.uint8)
    arr[:10, :25] = 255
    save_l(tmp_path / "m.png", arr)
    m = load_mask_file(tmp_path / "m.png")
    assert m.shape == (1, 30, 50) and m.dtype == torch.float32 and m.sum() == 250
    small = load_mask_file(tmp_path / "m.png", size=(6, 10))  # (height, width)
    expected = torch.zeros(1, 6, 10)
    expected[:, :2, :5] = 1
    assert torch.equal(small, expected)
    assert torch.equal(load_mask_file(tmp_path / "m.png", size=(6, 10), invert=True), 1 - expected)
    rgba = Image.new("RGBA", (50, 30), (255, 0, 0, 0))  # one-colour brush layer: alpha is the mask
    rgba.paste((255, 0, 0, 255), (0, 0, 25, 10))
    rgba.save(tmp_path / "brush.png")
    assert torch.equal(load_mask_file(tmp_path / "brush.png"), m)
    with pytest.raises(ValueError, match="no such image"):
        load_mask_file(tmp_path / "missing.png")


# --- mask sets ----------------------------------------------------------------------------------------------


def test_make_mask_set_is_bit_identical_and_index_seeded(tmp_path):
    m1 = make_mask_set("stroke", 5, 64, 42, tmp_path / "a")
    m2 = make_mask_set("stroke", 5, 64, 42, tmp_path / "b")
    assert m1 == m2
    assert (tmp_path / "a" / "manifest.json").read_bytes() == (tmp_path / "b" / "manifest.json").read_bytes()
    for entry in m1["files"]:
        assert (tmp_path / "a" / entry["name"]).read_bytes() == (tmp_path / "b" / entry["name"]).read_bytes()
    assert [f["name"] for f in m1["files"]] == [f"{i:05d}.png" for i in range(5)]
    assert {k: m1[k] for k in ("kind", "size", "seed", "count", "min_ratio", "max_ratio")} == {
        "kind": "stroke",
        "size": 64,
        "seed": 42,
        "count": 5,
        "min_ratio": None,
        "max_ratio": None,
    }
    prefix = make_mask_set("stroke", 3, 64, 42, tmp_path / "c")  # mask i depends on (seed, i) only
    assert prefix["files"] == m1["files"][:3]
    other = make_mask_set("stroke", 5, 64, 43, tmp_path / "d")
    assert {f["sha256"] for f in other["files"]}.isdisjoint(f["sha256"] for f in m1["files"])
    png = Image.open(tmp_path / "a" / "00000.png")
    assert png.mode == "L" and png.size == (64, 64) and set(np.unique(np.asarray(png))) <= {0, 255}
    assert not list((tmp_path / "a").glob("*.tmp"))


@pytest.mark.parametrize(("lo", "hi"), [(0.01, 0.1), (0.2, 0.3), (0.5, 0.6)])
def test_make_mask_set_ratio_bins(tmp_path, lo, hi):
    manifest = make_mask_set(
        "stroke", 4, 64, 0, tmp_path, min_ratio=lo, max_ratio=hi, options={"max_strokes": 8}
    )
    assert manifest["min_ratio"] == lo and manifest["max_ratio"] == hi
    masks, _ = load_mask_set(tmp_path)
    for entry, mask in zip(manifest["files"], masks, strict=True):
        assert lo <= entry["hole_ratio"] < hi
        assert hole_ratio(mask) == entry["hole_ratio"]


def test_make_mask_set_impossible_bin_and_bad_args(tmp_path):
    with pytest.raises(ValueError, match=r"no hole ratio in \[0.9"):
        make_mask_set("lama_thin", 1, 32, 0, tmp_path, min_ratio=0.9, max_ratio=1.0, max_attempts=20)
    with pytest.raises(ValueError, match="min_ratio < max_ratio"):
        make_mask_set("stroke", 1, 32, 0, tmp_path, min_ratio=0.3, max_ratio=0.2)
    with pytest.raises(ValueError, match="unknown mask kind"):
        make_mask_set("nope", 1, 32, 0, tmp_path)
    with pytest.raises(ValueError, match="seed"):
        make_mask_set("stroke", 1, 32, -1, tmp_path)
    with pytest.raises(ValueError, match="needs folder"):
        make_mask_set("folder", 1, 32, 0, tmp_path)


def test_mask_set_from_folder(tmp_path, mask_folder):
    manifest = make_mask_set("folder", 6, 16, 1, tmp_path / "set", folder=mask_folder)
    assert manifest["folder"] == str(mask_folder)
    masks, _ = load_mask_set(tmp_path / "set")
    assert len(masks) == 6 and all(m.shape == (1, 16, 16) and m.sum() > 0 for m in masks)


def test_load_mask_set_round_trip_and_tamper_detection(tmp_path):
    manifest = make_mask_set("lama_medium", 4, 48, 5, tmp_path)
    masks, loaded = load_mask_set(tmp_path)
    assert loaded == json.loads((tmp_path / "manifest.json").read_text()) == manifest
    for i, mask in enumerate(masks):
        assert mask.shape == (1, 48, 48) and mask.dtype == torch.float32
        expected = generate_mask("lama_medium", 48, 48, np.random.default_rng([5, i]))
        assert torch.equal(mask, expected)
    arr = np.zeros((48, 48), np.uint8)
    arr[:4, :4] = 255
    save_l(tmp_path / "00002.png", arr)  # a valid PNG, but not the one in the manifest
    with pytest.raises(ValueError, match="00002.png"):
        load_mask_set(tmp_path)
    (tmp_path / "00002.png").unlink()
    with pytest.raises(ValueError, match="missing.*00002.png"):
        load_mask_set(tmp_path)
    with pytest.raises(ValueError, match="no manifest.json"):
        load_mask_set(tmp_path / "elsewhere")
