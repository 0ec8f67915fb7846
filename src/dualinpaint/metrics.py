"""Image-quality metrics: pure functions of tensors that return one value per image.

Inputs follow the package convention: ``pred`` and ``target`` are float tensors N×3×H×W, RGB, in [-1, 1];
an optional ``mask`` is N×1×H×W (or 1×1×H×W, broadcast over the batch) with 1 = hole, binarised at 0.5.
Every metric returns a float64 tensor of shape (N,).

Definitions (as in the paper and MAT's ``cal_psnr_ssim_l1.py``): images are mapped to [0, 255] with
``x * 127.5 + 127.5`` and the data range is 255. Nothing is rounded or clipped here; a caller that wants
uint8-quantised scores quantises before calling.

- :func:`psnr`: ``10·log10(255² / MSE)``, MSE over all pixels and channels, or over the hole pixels
  (all three channels of each) with a mask. Identical inputs give ``+inf`` (as scikit-image and
  torchmetrics do); pass ``max_db`` to cap. An empty mask gives ``NaN`` for that image.
- :func:`ssim`: Wang et al. SSIM with an 11×11 Gaussian window (σ = 1.5, K1 = 0.01, K2 = 0.03, L = 255,
  population covariances), per channel on RGB, averaged over channels. ``border="crop"`` (default)
  averages the SSIM map only where the window fits inside the image (a 5-pixel border is dropped), which
  is scikit-image's ``structural_similarity(gaussian_weights=True, sigma=1.5,
  use_sample_covariance=False, data_range=255)``. ``border="reflect"`` reflect-pads by 5 pixels and
  averages the full-size map, which is torchmetrics' ``structural_similarity_index_measure`` (1.9).
- :func:`l1`: mean ``|a − b| / 255`` over pixels and channels (hole pixels only with a mask).
- :func:`gradient_energy` and :func:`detail_ratio`: how much texture a fill has. The mean Sobel gradient
  magnitude of the luminance (BT.601, [0, 255] scale) inside the hole eroded by 2 pixels (so no Sobel
  window reaches a known pixel), of the fill over that of the real photo. 1.0 = as much detail as the
  photo; smooth PDE fills score about 0.3–0.5. A bucket's ratio is the ratio of the two means over its
  images (:func:`detail_ratio` of a batch does that), so a near-flat photo (a sky) cannot blow it up.

LPIPS and FID need backbone weights (AlexNet/VGG, Inception) that no installable package ships on the
project's machines; this module never downloads anything. :func:`lpips_available` and :func:`lpips`
report "not available" instead of computing a number.
"""

from __future__ import annotations

import os
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

DATA_RANGE = 255.0
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03
NOT_AVAILABLE = "n/a (no weights)"

_PAD = (SSIM_WINDOW - 1) // 2


def _to_255(image: Tensor) -> Tensor:
    """[-1, 1] → [0, 255] in float64, unrounded."""
    return image.double() * 127.5 + 127.5


def _check_pair(pred: Tensor, target: Tensor) -> None:
    if pred.dim() != 4 or pred.shape[1] != 3:
        raise ValueError(f"expected images N×3×H×W, got pred of shape {tuple(pred.shape)}")
    if pred.shape != target.shape:
        raise ValueError(f"pred and target shapes differ: {tuple(pred.shape)} vs {tuple(target.shape)}")


def _hole(mask: Tensor, like: Tensor) -> Tensor:
    """Validate a mask against images ``like`` (N×3×H×W) → float64 {0, 1} tensor N×1×H×W on its device."""
    n, _, h, w = like.shape
    if (
        mask.dim() != 4
        or mask.shape[1] != 1
        or tuple(mask.shape[-2:]) != (h, w)
        or mask.shape[0] not in (1, n)
    ):
        raise ValueError(f"expected a mask {n}×1×{h}×{w} (or 1×1×{h}×{w}), got {tuple(mask.shape)}")
    return (mask.to(like.device) > 0.5).double().expand(n, 1, h, w)


def _masked_mean(values: Tensor, hole: Tensor | None) -> Tensor:
    """Per-image mean of ``values`` (N×C×H×W) over all entries, or over hole pixels (N×1×H×W weights).

    0/0 for an empty hole gives NaN on purpose.
    """
    if hole is None:
        return values.flatten(1).mean(1)
    weights = hole.expand_as(values)
    return (values * weights).flatten(1).sum(1) / weights.flatten(1).sum(1)


def psnr(pred: Tensor, target: Tensor, mask: Tensor | None = None, max_db: float | None = None) -> Tensor:
    """Peak signal-to-noise ratio per image, in dB.

    Args:
        pred, target: N×3×H×W in [-1, 1] (mapped to [0, 255], not rounded).
        mask: optional N×1×H×W or 1×1×H×W, 1 = hole. With a mask the MSE is taken over the hole pixels
            only, all three channels of each.
        max_db: if given, results are capped at this value (e.g. 100); by default a zero MSE gives +inf.

    Returns:
        float64 tensor (N,): ``10·log10(255² / MSE)``; +inf where MSE = 0 (unless capped); NaN where the
        mask has no hole pixel.
    """
    _check_pair(pred, target)
    hole = None if mask is None else _hole(mask, pred)
    mse = _masked_mean((_to_255(pred) - _to_255(target)).pow(2), hole)
    out = 10.0 * torch.log10(DATA_RANGE**2 / mse)
    if max_db is not None:
        out = out.clamp(max=max_db)  # NaN stays NaN
    return out


def l1(pred: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
    """Mean absolute error per image in [0, 1] units: mean of ``|a − b| / 255`` on the [0, 255] scale.

    Args:
        pred, target: N×3×H×W in [-1, 1].
        mask: optional N×1×H×W or 1×1×H×W, 1 = hole: average over hole pixels (all channels) only.

    Returns:
        float64 tensor (N,); NaN where the mask has no hole pixel.
    """
    _check_pair(pred, target)
    hole = None if mask is None else _hole(mask, pred)
    return _masked_mean((_to_255(pred) - _to_255(target)).abs() / DATA_RANGE, hole)


DETAIL_ERODE = 2
_SOBEL_X = ((-1.0, 0.0, 1.0), (-2.0, 0.0, 2.0), (-1.0, 0.0, 1.0))
_LUMA = (0.299, 0.587, 0.114)


def detail_region(mask: Tensor, erode: int = DETAIL_ERODE) -> Tensor:
    """The hole eroded by ``erode`` pixels (a square structuring element), float64 N×1×H×W in {0, 1}.

    ``mask`` N×1×H×W, 1 = hole (binarised at 0.5). Pixels beyond the image border count as hole.
    """
    hole = (mask > 0.5).double()
    if erode <= 0:
        return hole
    k = 2 * erode + 1
    return 1.0 - F.max_pool2d(F.pad(1.0 - hole, (erode,) * 4, value=0.0), k, stride=1)


def gradient_energy(image: Tensor, mask: Tensor, erode: int = DETAIL_ERODE) -> tuple[Tensor, Tensor]:
    """Sum of the luminance's Sobel gradient magnitude over the eroded hole, and its pixel count.

    image N×3×H×W in [-1, 1] (luminance on the [0, 255] scale; replicated borders); mask N×1×H×W, 1 = hole.
    Returns two float64 tensors (N,): the sums and the counts (0 where the eroded hole is empty).
    """
    if image.dim() != 4 or image.shape[1] != 3:
        raise ValueError(f"expected images N×3×H×W, got {tuple(image.shape)}")
    region = detail_region(_hole(mask, image), erode)
    weights = torch.tensor(_LUMA, dtype=torch.float64, device=image.device).view(1, 3, 1, 1)
    luma = (_to_255(image) * weights).sum(1, keepdim=True)
    kx = torch.tensor(_SOBEL_X, dtype=torch.float64, device=image.device).view(1, 1, 3, 3)
    padded = F.pad(luma, (1, 1, 1, 1), mode="replicate")
    gx, gy = F.conv2d(padded, kx), F.conv2d(padded, kx.transpose(-1, -2))
    magnitude = (gx * gx + gy * gy).sqrt()
    return (magnitude * region).flatten(1).sum(1), region.flatten(1).sum(1)


def detail_ratio(pred: Tensor, target: Tensor, mask: Tensor, erode: int = DETAIL_ERODE) -> Tensor:
    """Detail of a fill relative to the photo: mean gradient magnitude of ``pred`` over that of ``target``
    inside the hole eroded by ``erode`` pixels, pooled over the batch (ratio of the two batch means).

    pred, target N×3×H×W in [-1, 1]; mask N×1×H×W (or 1×1×H×W), 1 = hole. Returns a float64 scalar
    tensor; NaN when no pixel is left after erosion or the photo is flat there. For one value per image,
    call it on one image at a time.
    """
    _check_pair(pred, target)
    fill, count = gradient_energy(pred, mask, erode)
    real, _ = gradient_energy(target, mask, erode)
    if float(count.sum()) == 0 or float(real.sum()) == 0:
        return torch.tensor(float("nan"), dtype=torch.float64)
    return fill.sum() / real.sum()


def _gaussian_window(dtype: torch.dtype, device: torch.device) -> Tensor:
    """1-D Gaussian of length 11, σ = 1.5, summing to 1 (scipy's gaussian_filter with truncate=3.5)."""
    x = torch.arange(SSIM_WINDOW, dtype=dtype, device=device) - _PAD
    g = torch.exp(-(x**2) / (2 * SSIM_SIGMA**2))
    return g / g.sum()


def _ssim_map(pred: Tensor, target: Tensor, border: Literal["crop", "reflect"]) -> Tensor:
    """SSIM map N×3×H'×W' on [0, 255] float64 images; H' = H − 10 for "crop", H for "reflect"."""
    x, y = _to_255(pred), _to_255(target)
    if border == "reflect":
        x = F.pad(x, (_PAD, _PAD, _PAD, _PAD), mode="reflect")
        y = F.pad(y, (_PAD, _PAD, _PAD, _PAD), mode="reflect")
    g = _gaussian_window(x.dtype, x.device)
    kh, kw = g.view(1, 1, -1, 1).repeat(3, 1, 1, 1), g.view(1, 1, 1, -1).repeat(3, 1, 1, 1)

    def blur(t: Tensor) -> Tensor:  # separable "valid" Gaussian filtering, channel by channel
        return F.conv2d(F.conv2d(t, kh, groups=3), kw, groups=3)

    n = x.shape[0]
    mu = blur(torch.cat([x, y, x * x, y * y, x * y])).split(n)
    mu_x, mu_y = mu[0], mu[1]
    var_x = mu[2] - mu_x * mu_x
    var_y = mu[3] - mu_y * mu_y
    cov = mu[4] - mu_x * mu_y
    c1, c2 = (SSIM_K1 * DATA_RANGE) ** 2, (SSIM_K2 * DATA_RANGE) ** 2
    return ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))


def ssim(
    pred: Tensor,
    target: Tensor,
    mask: Tensor | None = None,
    border: Literal["crop", "reflect"] = "crop",
) -> Tensor:
    """Structural similarity per image (11×11 Gaussian window, σ = 1.5, L = 255, RGB channel mean).

    Args:
        pred, target: N×3×H×W in [-1, 1] (mapped to [0, 255], not rounded); H, W ≥ 11.
        mask: optional N×1×H×W or 1×1×H×W, 1 = hole: the SSIM map is averaged over hole pixels only
            (mask-weighted mean). The map at a hole pixel still sees the 5 pixels around it, so changes
            outside the hole but within 5 pixels of it do move the value.
        border: "crop" (default) averages the map only where the 11×11 window fits inside the image,
            matching scikit-image; with a mask, hole pixels within 5 pixels of the image border are then
            not counted, and an all-ones mask gives the whole-image value. "reflect" reflect-pads the
            images by 5 pixels and averages the full-size map, matching torchmetrics.

    Returns:
        float64 tensor (N,); 1 for identical images; NaN where no hole pixel is counted.
    """
    _check_pair(pred, target)
    if border not in ("crop", "reflect"):
        raise ValueError(f"unknown border {border!r}; valid: crop, reflect")
    if min(pred.shape[-2:]) < SSIM_WINDOW:
        raise ValueError(
            f"ssim needs images at least {SSIM_WINDOW}×{SSIM_WINDOW}, got {tuple(pred.shape[-2:])}"
        )
    hole = None if mask is None else _hole(mask, pred)
    if hole is not None and border == "crop":
        hole = hole[..., _PAD:-_PAD, _PAD:-_PAD]
    return _masked_mean(_ssim_map(pred, target, border), hole)


def lpips_available(weights_path: str | os.PathLike | None = None) -> bool:
    """Whether LPIPS can be computed. Always False today.

    LPIPS needs an AlexNet or VGG backbone plus its linear heads; the backbones ship in no package that
    installs on the project's machines (torchvision does not import beside torch there), and this module
    never downloads. A local weights file is not enough either: no backbone port is written yet. The
    argument is accepted so callers can already pass a path.
    """
    del weights_path
    return False


def lpips(
    pred: Tensor, target: Tensor, mask: Tensor | None = None, weights_path: str | os.PathLike | None = None
) -> Tensor | None:
    """LPIPS per image, or None when it cannot be computed (see :func:`lpips_available`).

    Always None today: no backbone weights are available (see :func:`lpips_available`). Callers print
    :data:`NOT_AVAILABLE` ("n/a (no weights)") in place of a None result.
    """
    _check_pair(pred, target)
    del mask, weights_path
    return None
