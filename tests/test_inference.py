"""Inpainter API: only hole pixels change, any size and mode, crop windows, mask checks, sampling.

Uses the tiny preset with random weights (working size 64, stride 16): fast, and enough to check plumbing.
Run: pytest tests/test_inference.py (add -m slow for the 4000×3000 case).
"""

from __future__ import annotations

import time
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from dualinpaint import generator
from dualinpaint.config import load_config
from dualinpaint.generator import DualPathInpainter
from dualinpaint.images import pil_to_tensor
from dualinpaint.inference import Inpainter, dilate_mask, hole_boxes, mask_array

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def inpainter() -> Inpainter:
    torch.manual_seed(0)
    cfg = load_config("tiny")
    return Inpainter(DualPathInpainter(cfg.model).eval(), cfg)


@pytest.fixture
def shapes(inpainter: Inpainter, monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, ...]]:
    """Records the image shape of every net.complete call."""
    seen: list[tuple[int, ...]] = []
    original = inpainter.net.complete

    def recording(image, hole, **kw):
        seen.append(tuple(image.shape))
        return original(image, hole, **kw)

    monkeypatch.setattr(inpainter.net, "complete", recording)
    return seen


def photo(w: int, h: int, mode: str = "RGB", seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "RGBA": 4, "L": 1, "LA": 2}[mode]
    arr = rng.integers(0, 256, (h, w, channels), dtype=np.uint8)
    return Image.fromarray(arr[..., 0] if channels == 1 else arr, mode)


def box_mask(w: int, h: int, *boxes: tuple[int, int, int, int]) -> Image.Image:
    """L mask, white = hole, from (x0, y0, x1, y1) boxes."""
    arr = np.zeros((h, w), np.uint8)
    for x0, y0, x1, y1 in boxes:
        arr[y0:y1, x0:x1] = 255
    return Image.fromarray(arr, "L")


def changed(a: Image.Image, b: Image.Image) -> np.ndarray:
    """Bool H×W: where any channel differs."""
    x, y = np.asarray(a), np.asarray(b)
    return (x != y).reshape(x.shape[0], x.shape[1], -1).any(axis=-1)


def hole_of(mask: Image.Image) -> np.ndarray:
    return np.asarray(mask) > 127


def test_only_hole_pixels_change_rgb(inpainter: Inpainter) -> None:
    image, mask = photo(96, 80), box_mask(96, 80, (30, 20, 60, 50))
    out = inpainter(image, mask)
    assert out.mode == "RGB" and out.size == image.size
    diff = changed(image, out)
    assert not diff[~hole_of(mask)].any()
    assert diff[hole_of(mask)].mean() > 0.9  # the hole really is filled


@pytest.mark.parametrize("mode", ["RGBA", "LA", "L"])
def test_modes_kept_and_alpha_copied(inpainter: Inpainter, mode: str) -> None:
    image, mask = photo(64, 48, mode), box_mask(64, 48, (10, 10, 30, 30))
    out = inpainter(image, mask)
    assert out.mode == mode and out.size == image.size
    assert not changed(image, out)[~hole_of(mask)].any()
    if mode in ("RGBA", "LA"):
        assert np.array_equal(np.asarray(out.getchannel("A")), np.asarray(image.getchannel("A")))


def test_other_modes_come_back_rgb(inpainter: Inpainter) -> None:
    image = photo(48, 48).convert("P")
    mask = box_mask(48, 48, (10, 10, 20, 20))
    out = inpainter(image, mask)
    assert out.mode == "RGB"
    assert not changed(image.convert("RGB"), out)[~hole_of(mask)].any()


def test_large_image_uses_a_crop_window(inpainter: Inpainter, shapes: list) -> None:
    image, mask = photo(1200, 900), box_mask(1200, 900, (500, 400, 620, 500))
    out = inpainter(image, mask)
    assert out.size == image.size
    assert not changed(image, out)[~hole_of(mask)].any()
    assert len(shapes) == 1
    _, _, h, w = shapes[0]
    assert max(h, w) <= inpainter.working_size and h % inpainter.stride == 0 and w % inpainter.stride == 0


def test_small_window_is_padded_not_upscaled(inpainter: Inpainter, shapes: list) -> None:
    inpainter_big = Inpainter(inpainter.net, inpainter.cfg, working_size=512)
    inpainter_big(photo(300, 300), box_mask(300, 300, (140, 140, 150, 150)))
    # window = 10 px box + 2 × 32 px margin = 74 → padded to 80, not scaled up to 512
    assert shapes == [(1, 3, 80, 80)]


def test_several_holes_get_separate_windows(inpainter: Inpainter, shapes: list) -> None:
    boxes = [(20, 20, 40, 40), (500, 30, 530, 60), (250, 300, 290, 320)]
    image, mask = photo(600, 400), box_mask(600, 400, *boxes)
    out = inpainter(image, mask)
    assert len(shapes) == 3
    diff = changed(image, out)
    assert not diff[~hole_of(mask)].any()
    for x0, y0, x1, y1 in boxes:
        assert diff[y0:y1, x0:x1].mean() > 0.9


def test_nearby_holes_share_a_window(inpainter: Inpainter) -> None:
    hole = hole_of(box_mask(400, 400, (100, 100, 120, 120), (130, 100, 150, 120)))
    assert len(hole_boxes(hole)) == 2
    (win,) = inpainter.windows(hole)
    y0, y1, x0, x1 = win
    assert hole[y0:y1, x0:x1].sum() == hole.sum()


def test_hole_touching_the_border(inpainter: Inpainter) -> None:
    image, mask = photo(200, 150), box_mask(200, 150, (0, 0, 40, 30), (170, 100, 200, 150))
    out = inpainter(image, mask)
    diff = changed(image, out)
    assert not diff[~hole_of(mask)].any()
    assert diff[hole_of(mask)].mean() > 0.9


@pytest.mark.parametrize("size", [(37, 53), (53, 37), (5, 7), (17, 300)])
def test_sizes_not_multiple_of_stride(inpainter: Inpainter, size: tuple[int, int]) -> None:
    w, h = size
    image, mask = photo(w, h), box_mask(w, h, (w // 4, h // 4, w // 2 + 1, h // 2 + 1))
    out = inpainter(image, mask)
    assert out.size == image.size
    assert not changed(image, out)[~hole_of(mask)].any()


def test_polarity_warning(inpainter: Inpainter) -> None:
    image, mask = photo(64, 64), box_mask(64, 64, (0, 0, 64, 56))
    with pytest.warns(UserWarning, match="inverted"):
        inpainter(image, mask)


def test_invert_swaps_polarity(inpainter: Inpainter) -> None:
    image, mask = photo(64, 64), box_mask(64, 64, (0, 0, 64, 56))  # black = hole: rows 56..63
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = inpainter(image, mask, invert=True)
    diff = changed(image, out)
    assert not diff[:56].any() and diff[56:].mean() > 0.9


def test_all_hole_fills_and_warns(inpainter: Inpainter) -> None:
    image = photo(40, 40)
    with pytest.warns(UserWarning, match="whole image"):
        out = inpainter(image, Image.new("L", (40, 40), 255))
    assert changed(image, out).mean() > 0.9


def test_empty_mask_returns_copies_and_warns(inpainter: Inpainter, shapes: list) -> None:
    image = photo(40, 30, "RGBA")
    with pytest.warns(UserWarning, match="mask has no hole; nothing to fill"):
        outs = inpainter.fill(image, Image.new("L", (40, 30), 0), samples=2)
    assert len(outs) == 2 and shapes == []
    for out in outs:
        assert out is not image and out.mode == "RGBA" and out.tobytes() == image.tobytes()


def test_mask_size_mismatch_resized_with_warning(inpainter: Inpainter) -> None:
    image = photo(80, 60)
    small = box_mask(40, 30, (10, 10, 20, 20))  # same hole at half size
    with pytest.warns(UserWarning, match="resized"):
        out = inpainter(image, small)
    expected = hole_of(small.resize((80, 60), Image.Resampling.NEAREST))
    assert not changed(image, out)[~expected].any()


def test_grey_mask_thresholded_at_127(inpainter: Inpainter) -> None:
    image = photo(64, 64)
    arr = np.zeros((64, 64), np.uint8)
    arr[10:20, 10:20] = 127  # not a hole
    arr[30:40, 30:40] = 128  # hole
    out = inpainter(image, Image.fromarray(arr))
    diff = changed(image, out)
    assert not diff[arr <= 127].any() and diff[arr > 127].mean() > 0.9


def test_array_and_tensor_masks(inpainter: Inpainter) -> None:
    image, mask = photo(48, 48), box_mask(48, 48, (10, 10, 30, 30))
    hole = hole_of(mask)
    ref = inpainter(image, mask)
    for m in (hole, hole.astype(np.float32), torch.from_numpy(hole).float()[None, None]):
        assert inpainter(image, m).tobytes() == ref.tobytes()
    assert np.array_equal(mask_array(torch.from_numpy(hole)[None], (48, 48)), hole)


def test_dilate_grows_the_hole(inpainter: Inpainter) -> None:
    image, mask = photo(96, 96), box_mask(96, 96, (40, 40, 50, 50))
    out = inpainter(image, mask, dilate=5)
    grown = dilate_mask(hole_of(mask), 5)
    assert grown.sum() == 20 * 20
    diff = changed(image, out)
    assert not diff[~grown].any()
    assert diff[hole_of(mask)].all() or diff[hole_of(mask)].mean() > 0.9
    assert diff[grown & ~hole_of(mask)].mean() > 0.9  # the ring is filled too


def test_feather_keeps_outside_identical(inpainter: Inpainter) -> None:
    image, mask = photo(96, 96), box_mask(96, 96, (20, 20, 60, 60))
    sharp = inpainter(image, mask)
    soft = inpainter(image, mask, feather=4)
    assert not changed(image, soft)[~hole_of(mask)].any()
    a, b, o = (np.asarray(x).astype(int) for x in (sharp, soft, image))
    # deep inside the hole: the plain fill; on the border ring: between fill and original
    assert np.array_equal(a[30:50, 30:50], b[30:50, 30:50])
    ring = b[20, 25:55] - o[20, 25:55]
    assert np.abs(ring).sum() < np.abs(a[20, 25:55] - o[20, 25:55]).sum()


def test_samples_differ_and_seed_reproduces(inpainter: Inpainter) -> None:
    image, mask = photo(64, 64), box_mask(64, 64, (16, 16, 48, 48))
    first = inpainter.fill(image, mask, samples=3, seed=7)
    again = inpainter.fill(image, mask, samples=3, seed=7)
    assert [x.tobytes() for x in first] == [x.tobytes() for x in again]
    assert len({x.tobytes() for x in first}) == 3
    for x in first:
        assert not changed(image, x)[~hole_of(mask)].any()


def test_samples_that_come_out_alike_are_reported(
    inpainter: Inpainter, monkeypatch: pytest.MonkeyPatch
) -> None:
    image, mask = photo(64, 64), box_mask(64, 64, (16, 16, 48, 48))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a random tiny network's draws differ: no warning
        inpainter.fill(image, mask, samples=2, seed=7)
    # a latent that carries nothing (as the default before issue 15's GPU fine-tune): identical draws
    monkeypatch.setattr(generator.Gaussian, "rsample", lambda self, noise=None: self.mu)
    with pytest.warns(UserWarning, match=r"the 3 samples differ by 0\.\d\d grey levels .* look the same"):
        outs = inpainter.fill(image, mask, samples=3, seed=7)
    assert len(outs) == 3
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        inpainter.fill(image, mask)  # one fill: nothing to compare


def test_deterministic_default_is_repeatable(inpainter: Inpainter) -> None:
    image, mask = photo(64, 64), box_mask(64, 64, (16, 16, 48, 48))
    assert inpainter(image, mask).tobytes() == inpainter(image, mask).tobytes()
    assert inpainter(image, mask).tobytes() != inpainter(image, mask, seed=1).tobytes()


def test_bad_inputs(inpainter: Inpainter) -> None:
    with pytest.raises(ValueError, match="PIL image"):
        inpainter(np.zeros((8, 8, 3), np.uint8), Image.new("L", (8, 8)))
    with pytest.raises(ValueError, match="empty"):
        inpainter(Image.new("RGB", (0, 5)), Image.new("L", (0, 5)))
    with pytest.raises(ValueError, match="mask"):
        inpainter(photo(8, 8), "mask.png")
    with pytest.raises(ValueError, match="samples"):
        inpainter.fill(photo(8, 8), Image.new("L", (8, 8), 255), samples=0)


def test_info_carried_over(inpainter: Inpainter) -> None:
    image = photo(32, 32)
    image.info["icc_profile"] = b"fake-profile"
    out = inpainter(image, box_mask(32, 32, (8, 8, 16, 16)))
    assert out.info["icc_profile"] == b"fake-profile"


def test_working_size_default_and_rounding(inpainter: Inpainter) -> None:
    assert inpainter.working_size == 2 * inpainter.cfg.data.size
    assert Inpainter(inpainter.net, inpainter.cfg, working_size=100).working_size == 96
    with pytest.raises(ValueError, match="working_size"):
        Inpainter(inpainter.net, inpainter.cfg, working_size=16)


def test_4000x3000_small_hole(inpainter: Inpainter, shapes: list) -> None:
    rng = np.random.default_rng(1)
    image = Image.fromarray(rng.integers(0, 256, (3000, 4000, 3), dtype=np.uint8))
    mask = box_mask(4000, 3000, (2500, 1200, 2700, 1350))
    start = time.perf_counter()
    out = inpainter(image, mask, dilate=4)
    seconds = time.perf_counter() - start
    grown = dilate_mask(hole_of(mask), 4)
    diff = changed(image, out)
    assert not diff[~grown].any() and diff[grown].mean() > 0.9
    assert len(shapes) == 1 and max(shapes[0][2:]) <= inpainter.working_size
    print(f"4000×3000, one 200×150 hole: {seconds:.2f} s")


# ------------------------------------------------------------------------------------------------ device


def test_explicit_cpu_device_fills_exactly_as_the_default(inpainter: Inpainter) -> None:
    """``device="cpu"`` (and a ``torch.device``) is the default's path: same network, same bytes."""
    image, mask = photo(96, 80), box_mask(96, 80, (30, 20, 60, 50))
    assert inpainter.device == torch.device("cpu")
    for device in ("cpu", torch.device("cpu")):
        explicit = Inpainter(inpainter.net, inpainter.cfg, device=device)
        assert explicit.device == torch.device("cpu") and explicit.net is inpainter.net  # no second copy
        assert explicit(image, mask).tobytes() == inpainter(image, mask).tobytes()
        sampled = explicit.fill(image, mask, samples=2, seed=3)
        ref = inpainter.fill(image, mask, samples=2, seed=3)
        assert [x.tobytes() for x in sampled] == [x.tobytes() for x in ref]


def test_from_pretrained_takes_a_device(tiny_model_dir) -> None:
    loaded = Inpainter.from_pretrained(tiny_model_dir, device="cpu", precision="fp32")
    assert loaded.device == torch.device("cpu") and loaded.precision == "fp32"
    assert next(loaded.net.parameters()).device == torch.device("cpu")
    image, mask = photo(48, 40), box_mask(48, 40, (10, 10, 30, 30))
    out = loaded(image, mask)
    assert out.size == image.size and not changed(image, out)[~hole_of(mask)].any()


def test_resolve_device() -> None:
    from dualinpaint.inference import resolve_device

    assert resolve_device("cpu") == torch.device("cpu") == resolve_device(torch.device("cpu"))
    for bad, message in (("tpu", "not a device"), ("cuda:x", "not a device"), ("meta", "not supported")):
        with pytest.raises(ValueError, match=message) as err:
            resolve_device(bad)
        assert "\n" not in str(err.value)


@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_cuda_without_cuda_is_a_one_line_error(
    inpainter: Inpainter, device: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from dualinpaint.cli import main

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="CUDA is not available") as err:
        Inpainter(inpainter.net, inpainter.cfg, device=device)
    assert "\n" not in str(err.value) and repr(device) in str(err.value)
    # the fill command: exit 2 and one line, before any model is loaded
    argv = ["fill", "x.png", "--mask", "m.png", "-o", "out.png", "--model", "no/such", "--device", device]
    assert main(argv) == 2
    stderr = capsys.readouterr().err
    assert "CUDA is not available" in stderr and stderr.count("\n") == 1


@pytest.fixture
def loaded_with(monkeypatch: pytest.MonkeyPatch) -> dict:
    """The keyword arguments the next ``Inpainter.from_pretrained`` calls get (the CLI's options)."""
    from dualinpaint import inference

    seen: dict = {}
    original = inference.Inpainter.from_pretrained.__func__

    def spy(cls, source="default", **kw):
        seen.update(kw)
        return original(cls, source, **kw)

    monkeypatch.setattr(inference.Inpainter, "from_pretrained", classmethod(spy))
    return seen


def test_fill_command_passes_the_device(tmp_path, tiny_model_dir, loaded_with) -> None:
    from dualinpaint.cli import main

    photo(40, 32).save(tmp_path / "a.png")
    box_mask(40, 32, (8, 8, 20, 20)).save(tmp_path / "m.png")
    out = tmp_path / "out.png"
    argv = ["fill", str(tmp_path / "a.png"), "--mask", str(tmp_path / "m.png"), "-o", str(out)]
    assert main([*argv, "--model", str(tiny_model_dir), "--device", "cpu", "--quiet"]) == 0
    assert loaded_with["device"] == "cpu" and out.is_file()


def textured_photo(size: int = 96, seed: int = 0) -> Image.Image:
    """A smooth gradient with fine grain: the texture a smooth fill loses."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(40, 200, size)
    base = ramp[None, :, None] * 0.7 + ramp[:, None, None] * 0.3
    grain = rng.normal(0, 18, (size, size, 3))
    return Image.fromarray(np.clip(base + grain, 0, 255).astype(np.uint8), "RGB")


def test_texture_adds_the_photos_grain_inside_the_hole_only() -> None:
    """The shipped model fills smoothly; ``texture`` adds grain copied from around the hole, changes
    nothing outside it, and gives differently textured samples where the latent alone gives alike ones."""
    from dualinpaint.metrics import detail_ratio

    image, mask = textured_photo(), box_mask(96, 96, (24, 24, 72, 72))
    plain = Inpainter.from_pretrained("default")
    textured = Inpainter.from_pretrained("default", texture=1.0)
    smooth, grainy = plain(image, mask), textured(image, mask)
    hole = hole_of(mask)
    assert not changed(image, grainy)[~hole].any()
    assert textured(image, mask).tobytes() == grainy.tobytes()  # deterministic without a seed
    assert plain.fill(image, mask, texture=1.0)[0].tobytes() == grainy.tobytes()  # per call
    assert textured.fill(image, mask, texture=0)[0].tobytes() == smooth.tobytes()
    truth = pil_to_tensor(image)
    m = torch.from_numpy(hole)[None, None].float()
    d_smooth = float(detail_ratio(pil_to_tensor(smooth), truth, m))
    d_grainy = float(detail_ratio(pil_to_tensor(grainy), truth, m))
    assert d_grainy > d_smooth + 0.25, (d_smooth, d_grainy)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the texture differs per sample: no "samples look the same"
        outs = textured.fill(image, mask, samples=2, seed=3)
    assert outs[0].tobytes() != outs[1].tobytes()
    with pytest.raises(ValueError, match="texture=-1 must be a number >= 0"):
        Inpainter(plain.net, plain.cfg, texture=-1)


def test_fill_command_passes_texture(tmp_path, tiny_model_dir, loaded_with) -> None:
    from dualinpaint.cli import main

    textured_photo(48).save(tmp_path / "a.png")
    box_mask(48, 48, (12, 12, 36, 36)).save(tmp_path / "m.png")
    argv = ["fill", str(tmp_path / "a.png"), "--mask", str(tmp_path / "m.png")]
    argv += ["--model", str(tiny_model_dir)]
    assert main([*argv, "-o", str(tmp_path / "o.png"), "--quiet", "--texture"]) == 0
    assert loaded_with["texture"] == 1.0 and (tmp_path / "o.png").is_file()
    assert main([*argv, "-o", str(tmp_path / "p.png"), "--quiet", "--texture", "0.5"]) == 0
    assert loaded_with["texture"] == 0.5
