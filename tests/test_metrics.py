import math

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio as sk_psnr
from skimage.metrics import structural_similarity as sk_ssim
from torchmetrics.functional.image import peak_signal_noise_ratio as tm_psnr
from torchmetrics.functional.image import structural_similarity_index_measure as tm_ssim

from dualinpaint.metrics import (
    NOT_AVAILABLE,
    detail_ratio,
    detail_region,
    gradient_energy,
    l1,
    lpips,
    lpips_available,
    psnr,
    ssim,
)

SIZES = [(32, 32), (40, 56)]


def pair(n: int, h: int, w: int, seed: int = 0, noise: float = 0.3) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    target = torch.rand(n, 3, h, w, generator=g) * 2 - 1
    pred = (target + noise * torch.randn(n, 3, h, w, generator=g)).clamp(-1, 1)
    return pred, target


def box_mask(n: int, h: int, w: int, top: int, left: int, size: int) -> torch.Tensor:
    mask = torch.zeros(n, 1, h, w)
    mask[..., top : top + size, left : left + size] = 1
    return mask


def to255_hwc(x: torch.Tensor) -> np.ndarray:
    return (x.double() * 127.5 + 127.5).permute(1, 2, 0).numpy()


def skimage_ssim(p: torch.Tensor, t: torch.Tensor, full: bool = False):
    kw = dict(gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255, channel_axis=-1)
    return sk_ssim(to255_hwc(p), to255_hwc(t), full=full, **kw)


@pytest.mark.parametrize("h,w", SIZES)
def test_psnr_matches_skimage_and_torchmetrics(h, w):
    pred, target = pair(2, h, w)
    ours = psnr(pred, target)
    assert ours.shape == (2,) and ours.dtype == torch.float64
    ref = torch.tensor([sk_psnr(to255_hwc(target[i]), to255_hwc(pred[i]), data_range=255) for i in range(2)])
    assert torch.allclose(ours, ref.double(), rtol=0, atol=1e-4)
    p255, t255 = pred.double() * 127.5 + 127.5, target.double() * 127.5 + 127.5
    tm = tm_psnr(p255, t255, data_range=255.0, reduction="none", dim=(1, 2, 3))
    assert torch.allclose(ours, tm, rtol=0, atol=1e-4)


@pytest.mark.parametrize("h,w", SIZES)
def test_ssim_matches_skimage_and_torchmetrics(h, w):
    pred, target = pair(2, h, w)
    ours = ssim(pred, target)
    assert ours.shape == (2,) and ours.dtype == torch.float64
    ref = torch.tensor([skimage_ssim(pred[i], target[i]) for i in range(2)], dtype=torch.float64)
    assert torch.allclose(ours, ref, rtol=0, atol=1e-4)

    # torchmetrics 1.9 reflect-pads and averages the full-size map: that is border="reflect". Its map
    # cropped by the 5-pixel border is scikit-image's convention, our default.
    p255, t255 = pred.double() * 127.5 + 127.5, target.double() * 127.5 + 127.5
    tm, tm_map = tm_ssim(p255, t255, data_range=255.0, reduction="none", return_full_image=True)
    assert torch.allclose(ssim(pred, target, border="reflect"), tm, rtol=0, atol=1e-4)
    assert torch.allclose(ours, tm_map[..., 5:-5, 5:-5].flatten(1).mean(1), rtol=0, atol=1e-4)
    # The two conventions really differ on small images; the tests above would not notice a mix-up otherwise.
    assert (ours - tm).abs().max() > 1e-4


def test_psnr_known_constant_error():
    _, target = pair(2, 16, 16, noise=0)
    target = target * 0.5  # keep target ± error inside the range (not required, but realistic)
    pred = target + 10 / 127.5  # error of exactly 10 levels on the 0..255 scale
    expected = 10 * math.log10(255**2 / 100)
    assert torch.allclose(psnr(pred, target), torch.full((2,), expected, dtype=torch.float64), atol=1e-4)


def test_identical_images():
    pred, _ = pair(2, 24, 24)
    assert torch.isinf(psnr(pred, pred)).all() and (psnr(pred, pred) > 0).all()
    assert torch.equal(psnr(pred, pred, max_db=100.0), torch.full((2,), 100.0, dtype=torch.float64))
    for border in ("crop", "reflect"):
        assert torch.allclose(ssim(pred, pred, border=border), torch.ones(2, dtype=torch.float64), atol=1e-12)
    assert torch.equal(l1(pred, pred), torch.zeros(2, dtype=torch.float64))


def test_symmetry():
    pred, target = pair(3, 24, 32)
    mask = box_mask(3, 24, 32, 6, 8, 12)
    for fn in (psnr, ssim, l1):
        assert torch.allclose(fn(pred, target), fn(target, pred), atol=1e-12)
        assert torch.allclose(fn(pred, target, mask), fn(target, pred, mask), atol=1e-12)


def test_hole_psnr_and_l1_by_hand():
    pred, target = pair(1, 20, 20)
    mask = box_mask(1, 20, 20, 3, 5, 7)
    hole = mask[0, 0].bool()
    diff = (pred[0] - target[0]).double() * 127.5  # 3×H×W on the 0..255 scale
    d = diff[:, hole]  # 3 × (number of hole pixels)
    assert d.numel() == 3 * 49
    expected_psnr = 10 * math.log10(255**2 / d.pow(2).mean().item())
    assert psnr(pred, target, mask).item() == pytest.approx(expected_psnr, abs=1e-9)
    assert l1(pred, target, mask).item() == pytest.approx(d.abs().mean().item() / 255, abs=1e-12)


def test_l1_known_value():
    target = torch.zeros(1, 3, 4, 4)  # 127.5 on the 0..255 scale
    pred = target.clone()
    pred[0, 0] = 1.0  # red channel: |255 − 127.5| / 255 = 0.5 on all 16 pixels
    pred[0, 1, 0, 0] = -1.0  # one green pixel: 0.5
    expected = (16 * 0.5 + 0.5) / 48
    assert l1(pred, target).item() == pytest.approx(expected, abs=1e-12)


def test_hole_metrics_ignore_changes_outside_the_hole():
    pred, target = pair(1, 48, 48)
    mask = box_mask(1, 48, 48, 18, 18, 12)  # hole rows/cols 18..29
    far = torch.ones_like(mask)
    far[..., 13:35, 13:35] = 0  # more than 5 pixels away from the hole
    changed = pred * (1 - far) + (-pred) * far
    near_changed = pred.clone()
    near_changed[..., 16, 20] = -near_changed[..., 16, 20]  # outside the hole, 2 px above it
    for fn in (psnr, l1):
        base = fn(pred, target, mask).item()
        assert fn(changed, target, mask).item() == pytest.approx(base, abs=1e-12)
        assert fn(near_changed, target, mask).item() == pytest.approx(base, abs=1e-12)
        assert fn(changed, target).item() != pytest.approx(fn(pred, target).item(), abs=1e-6)
    for border in ("crop", "reflect"):
        base = ssim(pred, target, mask, border=border).item()
        assert ssim(changed, target, mask, border=border).item() == pytest.approx(base, abs=1e-12)
        # documented: the 11×11 window around a hole pixel reaches 5 pixels outside the hole
        assert ssim(near_changed, target, mask, border=border).item() != pytest.approx(base, abs=1e-9)


def test_masked_ssim_is_the_hole_mean_of_the_skimage_map():
    pred, target = pair(1, 40, 48)
    mask = box_mask(1, 40, 48, 0, 10, 14)  # touches the top border: rows 0..4 are outside the valid region
    _, smap = skimage_ssim(pred[0], target[0], full=True)
    smap = torch.from_numpy(smap).mean(-1)  # H×W, channel mean
    hole = mask[0, 0].bool().clone()
    hole[:5], hole[-5:], hole[:, :5], hole[:, -5:] = False, False, False, False
    assert ssim(pred, target, mask).item() == pytest.approx(smap[hole].mean().item(), abs=1e-4)
    # an all-ones mask gives the whole-image value under both conventions
    ones = torch.ones(1, 1, 40, 48)
    for border in ("crop", "reflect"):
        assert ssim(pred, target, ones, border=border).item() == pytest.approx(
            ssim(pred, target, border=border).item(), abs=1e-12
        )


def test_empty_mask_gives_nan():
    pred, target = pair(2, 24, 24)
    mask = box_mask(2, 24, 24, 8, 8, 6)
    mask[1] = 0
    for fn in (psnr, ssim, l1):
        out = fn(pred, target, mask)
        assert torch.isfinite(out[0]) and torch.isnan(out[1])
    border_only = box_mask(1, 24, 24, 0, 0, 4)  # within the dropped 5-pixel border
    assert torch.isnan(ssim(pred[:1], target[:1], border_only))
    assert torch.isfinite(ssim(pred[:1], target[:1], border_only, border="reflect"))


def test_batch_consistency_and_mask_broadcast():
    pred, target = pair(3, 24, 40, seed=3)
    boxes = [box_mask(1, 24, 40, 2, 3, 9), box_mask(1, 24, 40, 10, 20, 12)]
    mask = torch.cat([*boxes, torch.ones(1, 1, 24, 40)])
    for fn in (psnr, ssim, l1):
        batch = fn(pred, target, mask)
        single = torch.cat([fn(pred[i : i + 1], target[i : i + 1], mask[i : i + 1]) for i in range(3)])
        assert torch.allclose(batch, single, rtol=0, atol=1e-12)
        whole = fn(pred, target)
        single = torch.cat([fn(pred[i : i + 1], target[i : i + 1]) for i in range(3)])
        assert torch.allclose(whole, single, rtol=0, atol=1e-12)
        shared = fn(pred, target, mask[1:2])
        repeated = fn(pred, target, mask[1:2].expand(3, 1, 24, 40))
        assert torch.allclose(shared, repeated, rtol=0, atol=1e-12)


def test_bad_shapes_raise():
    pred, target = pair(2, 16, 16)
    with pytest.raises(ValueError, match="differ"):
        psnr(pred, target[:, :, :8])
    with pytest.raises(ValueError, match="N×3×H×W"):
        l1(pred[:, :1], target[:, :1])
    with pytest.raises(ValueError, match="mask"):
        psnr(pred, target, torch.ones(2, 3, 16, 16))
    with pytest.raises(ValueError, match="mask"):
        ssim(pred, target, torch.ones(3, 1, 16, 16))
    with pytest.raises(ValueError, match="at least 11"):
        ssim(pred[..., :10], target[..., :10])
    with pytest.raises(ValueError, match="border"):
        ssim(pred, target, border="same")


def test_lpips_reports_not_available():
    pred, target = pair(1, 16, 16)
    assert lpips_available() is False
    assert lpips(pred, target) is None
    assert NOT_AVAILABLE == "n/a (no weights)"


# ---------------------------------------------------------------------------------------------------------
# detail ratio
# ---------------------------------------------------------------------------------------------------------


def textured(n: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    """Random texture in [-1, 1] (plenty of gradient everywhere)."""
    return torch.rand(n, 3, h, w, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_detail_ratio_identical_flat_and_scaled():
    target = textured(2, 32, 40)
    mask = torch.cat([box_mask(1, 32, 40, 6, 8, 14), box_mask(1, 32, 40, 10, 20, 12)])
    one = detail_ratio(target, target, mask)
    assert one.dtype == torch.float64 and one.dim() == 0 and one.item() == 1.0
    flat = target * (1 - mask) + 0.3 * mask  # a constant fill: no Sobel window in the eroded hole sees a step
    assert detail_ratio(flat, target, mask).item() == 0.0
    # luminance on [0, 255] is 127.5·(1 + Y): halving the image halves every gradient
    assert detail_ratio(0.5 * target, target, mask).item() == pytest.approx(0.5, abs=1e-12)


def test_detail_ratio_erosion():
    target = textured(1, 32, 32, seed=1)
    pred = textured(1, 32, 32, seed=2)
    mask = box_mask(1, 32, 32, 10, 10, 12)  # hole rows/cols 10..21, eroded region 12..19
    region = detail_region(mask)
    assert region.sum().item() == 8 * 8 and region[0, 0, 12:20, 12:20].all()
    base = detail_ratio(pred, target, mask).item()

    def changed(row: int, col: int) -> float:
        out = pred.clone()
        out[..., row, col] = -out[..., row, col] + 0.5
        return detail_ratio(out, target, mask).item()

    # outside the hole (1 and 2 px from it) and the hole's edge row: no Sobel window of the region reaches
    for row, col in [(9, 15), (8, 15), (15, 9), (10, 15), (15, 21), (21, 21)]:
        assert changed(row, col) == base, (row, col)
    # 2 px deep (in the eroded region) it counts; so does 1 px deep, read by the region's edge windows
    for row, col in [(12, 15), (15, 19), (11, 15)]:
        assert changed(row, col) != pytest.approx(base, abs=1e-9), (row, col)


def test_detail_ratio_is_pooled_over_the_batch():
    target = textured(3, 32, 32, seed=3)
    target[1] = target[1] * 0.1  # a near-flat photo: its own ratio would dominate a mean of ratios
    pred = (target + 0.3 * textured(3, 32, 32, seed=4)).clamp(-1, 1)
    mask = torch.cat(
        [box_mask(1, 32, 32, 4, 4, 10), box_mask(1, 32, 32, 12, 8, 16), box_mask(1, 32, 32, 0, 20, 12)]
    )
    fill, count = gradient_energy(pred, mask)
    real, count_real = gradient_energy(target, mask)
    assert fill.shape == (3,) and torch.equal(count, count_real)
    assert count.tolist() == [36.0, 144.0, 100.0]  # beyond the border is hole: 12² in the corner → 10²
    pooled = detail_ratio(pred, target, mask).item()
    assert pooled == pytest.approx((fill.sum() / real.sum()).item(), rel=1e-15)
    per_image = [detail_ratio(pred[i : i + 1], target[i : i + 1], mask[i : i + 1]).item() for i in range(3)]
    assert per_image == pytest.approx((fill / real).tolist(), rel=1e-15)
    assert abs(pooled - sum(per_image) / 3) > 0.05  # pooling is not the mean of the per-image ratios


def test_detail_ratio_empty_region_is_nan():
    target = textured(1, 16, 16)
    thin = box_mask(1, 16, 16, 4, 4, 4)  # 4×4 hole: nothing left after a 2 px erosion
    assert torch.isnan(detail_ratio(target, target, thin))
    flat = torch.zeros(1, 3, 16, 16)
    assert torch.isnan(detail_ratio(target, flat, box_mask(1, 16, 16, 2, 2, 10)))


def test_detail_ratio_matches_opencv_sobel():
    cv2 = pytest.importorskip("cv2")
    target = textured(1, 40, 56, seed=5)
    pred = (target * 0.6 + 0.2 * textured(1, 40, 56, seed=6)).clamp(-1, 1)
    mask = box_mask(1, 40, 56, 8, 12, 20)
    mask[..., 0:14, 40:56] = 1  # a second hole on the top-right corner: border pixels count as hole

    def energy(image: torch.Tensor) -> float:
        rgb = (image[0].double() * 127.5 + 127.5).permute(1, 2, 0).numpy()
        luma = rgb @ np.array([0.299, 0.587, 0.114])
        gx = cv2.Sobel(luma, cv2.CV_64F, 1, 0, ksize=3, borderType=cv2.BORDER_REPLICATE)
        gy = cv2.Sobel(luma, cv2.CV_64F, 0, 1, ksize=3, borderType=cv2.BORDER_REPLICATE)
        hole = (mask[0, 0].numpy() > 0.5).astype(np.uint8)
        region = cv2.erode(hole, np.ones((5, 5), np.uint8)).astype(bool)  # default border: never erodes
        return float(np.sqrt(gx**2 + gy**2)[region].sum()), int(region.sum())

    fill, count = energy(pred)
    real, _ = energy(target)
    ours_fill, ours_count = gradient_energy(pred, mask)
    assert ours_count.item() == count
    assert ours_fill.item() == pytest.approx(fill, rel=1e-12)
    assert detail_ratio(pred, target, mask).item() == pytest.approx(fill / real, abs=1e-9)
