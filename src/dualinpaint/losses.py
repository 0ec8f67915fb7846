"""Loss terms: pure functions of tensors that return scalar tensors.

None of them holds state, reads a config object or calls ``backward``; the trainer weights and sums them
in one visible expression (train.py). Images N×3×H×W in [-1, 1], masks N×1×H×W with 1 = hole.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F


def critic_loss(mode: str, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """Discriminator / critic loss on critic outputs for real and fake images (any equal-rank shapes).

    wgangp: mean D(fake) − mean D(real) (the gradient penalty is added separately);
    lsgan: mean (D(real) − 1)² + mean D(fake)²; hinge: mean relu(1 − D(real)) + mean relu(1 + D(fake));
    vanilla: binary cross-entropy on logits, real → 1, fake → 0.
    """
    if mode == "wgangp":
        return fake.mean() - real.mean()
    if mode == "lsgan":
        return (real - 1).pow(2).mean() + fake.pow(2).mean()
    if mode == "hinge":
        return F.relu(1 - real).mean() + F.relu(1 + fake).mean()
    if mode == "vanilla":
        return F.binary_cross_entropy_with_logits(
            real, torch.ones_like(real)
        ) + F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake))
    raise ValueError(f"unknown gan mode {mode!r}; valid: wgangp, lsgan, hinge, vanilla")


def generator_adv_loss(mode: str, fake: torch.Tensor) -> torch.Tensor:
    """Adversarial loss of the generator on critic outputs for its fakes.

    wgangp and hinge: −mean D(fake); lsgan: mean (D(fake) − 1)²; vanilla: BCE(D(fake), 1) (non-saturating).
    """
    if mode in ("wgangp", "hinge"):
        return -fake.mean()
    if mode == "lsgan":
        return (fake - 1).pow(2).mean()
    if mode == "vanilla":
        return F.binary_cross_entropy_with_logits(fake, torch.ones_like(fake))
    raise ValueError(f"unknown gan mode {mode!r}; valid: wgangp, lsgan, hinge, vanilla")


def gradient_penalty(
    critic: Callable[[torch.Tensor], torch.Tensor],
    real: torch.Tensor,
    fake: torch.Tensor,
    alpha: torch.Tensor | None = None,
) -> torch.Tensor:
    """WGAN-GP penalty mean over samples of (‖∇_x D(x̂)‖₂ − 1)², x̂ = α·real + (1 − α)·fake.

    ``alpha`` (N×1×1×1, uniform in [0, 1] unless given) is drawn per sample. The graph is kept
    (create_graph) so the penalty can be back-propagated into the critic. Not multiplied by λ.
    """
    fake = fake.detach()
    if alpha is None:
        alpha = torch.rand(real.shape[0], 1, 1, 1, dtype=real.dtype, device=real.device)
    mixed = (alpha * real.detach() + (1 - alpha) * fake).requires_grad_(True)
    out = critic(mixed)
    (grad,) = torch.autograd.grad(out.sum(), mixed, create_graph=True)
    return (grad.flatten(1).norm(2, dim=1) - 1).pow(2).mean()


def scale_pyramid(image: torch.Tensor, scales: int) -> list[torch.Tensor]:
    """Bilinear (align_corners) downsampled copies at H/2^(scales−1) … H, coarse → fine (PICNet)."""
    h, w = image.shape[-2:]
    out = []
    for s in range(scales - 1, 0, -1):
        out.append(F.interpolate(image, size=(h >> s, w >> s), mode="bilinear", align_corners=True))
    out.append(image)
    return out


def multiscale_l1(
    preds: list[torch.Tensor], target: torch.Tensor, weight: torch.Tensor | None = None, norm: str = "l1"
) -> torch.Tensor:
    """Σ over scales of mean |pred_s − target_s| (· weight_s when given), each mean over all elements.

    ``preds`` coarse → fine, the last at the target's size; ``weight`` N×1×H×W is resized like the target
    (PICNet: the visible region (1 − hole) for the generation path, with the mean still over all pixels).
    ``norm="l2"`` takes the squared difference instead of the absolute one.
    """
    if norm not in ("l1", "l2"):
        raise ValueError(f"unknown norm {norm!r}; valid: l1, l2")
    targets = scale_pyramid(target, len(preds))
    weights = scale_pyramid(weight, len(preds)) if weight is not None else [None] * len(preds)
    total = target.new_zeros(())
    for pred, tgt, wgt in zip(preds, targets, weights, strict=True):
        diff = (pred - tgt).abs() if norm == "l1" else (pred - tgt).pow(2)
        total = total + (diff if wgt is None else diff * wgt).mean()
    return total


def per_sample_hole_weight(hole: torch.Tensor) -> torch.Tensor:
    """Weights N×1×H×W that make every sample's hole count equally in a mean over all pixels.

    ``hole`` (N×1×H×W, 1 = hole) scaled per sample by (the mean hole fraction of the samples that have a
    hole / the sample's own): a mean of ``diff · weight`` then weighs a thin stroke's pixels as much in
    total as a large hole's, and the weights sum to the same total as ``hole`` (so a loss weight keeps
    its meaning). A sample without hole pixels keeps weight 0.
    """
    area = hole.mean(dim=(1, 2, 3), keepdim=True)
    has_hole = area > 0
    mean_area = area.sum() / has_hole.sum().clamp_min(1)
    scale = torch.where(has_hole, mean_area / area.clamp_min(1e-12), torch.zeros_like(area))
    return hole * scale


def hole_log_mse(
    pred: torch.Tensor, target: torch.Tensor, hole: torch.Tensor, floor: float = 1e-5
) -> torch.Tensor:
    """Mean over samples of 10·log10(MSE inside the sample's hole + ``floor``): minus the hole PSNR
    (images in [-1, 1], so PSNR = 10·log10(4) minus this), the quantity the evaluator averages per image.

    pred, target N×3×H×W, hole N×1×H×W (1 = hole). A sample's gradient scales with 1 / its own MSE,
    so a thin stroke the smooth fill already gets nearly right weighs as much, in dB, as a large hole
    (an L1 or L2 mean lets the large holes decide). ``floor`` caps a sample's PSNR near 56 dB. Samples
    without hole pixels are left out; a batch without any gives 0 (with a gradient of zeros).
    """
    hole = hole.float()  # counted in float32: a bf16 sum rounds the pixel count (autocast)
    area = hole.sum(dim=(1, 2, 3))
    has_hole = area > 0
    sq = ((pred.float() - target.float()) ** 2 * hole).sum(dim=(1, 2, 3))
    mse = sq / (pred.shape[1] * area).clamp_min(1)
    per_sample = 10 * torch.log10(torch.where(has_hole, mse + floor, torch.ones_like(mse)))
    return (per_sample * has_hole).sum() / has_hole.sum().clamp_min(1)


def focal_frequency_loss(
    pred: torch.Tensor, target: torch.Tensor, hole: torch.Tensor, alpha: float = 1.0
) -> torch.Tensor:
    """Focal frequency loss (Jiang et al., ICCV 2021) of the error inside the hole.

    pred, target N×C×H×W, hole N×1×H×W (1 = hole). The error ``(pred − target)·hole`` goes through an
    orthonormal 2-D FFT per channel; each frequency's squared distance |ΔF|² is weighted by
    |ΔF|^alpha over its sample's and channel's largest (detached, in [0, 1]), so the frequencies the
    fill gets most wrong dominate. Per sample, divided by its hole's pixel count × C: with alpha = 0
    this is the hole's MSE (Parseval). Mean over the samples that have a hole; 0 for a batch without any.
    """
    hole = hole.float()
    area = hole.sum(dim=(1, 2, 3))
    has_hole = area > 0
    err = (pred.float() - target.float()) * hole
    spectrum = torch.fft.fft2(err, norm="ortho")
    dist = spectrum.real.pow(2) + spectrum.imag.pow(2)
    with torch.no_grad():
        weight = dist.sqrt().pow(alpha)
        weight = weight / weight.amax(dim=(-2, -1), keepdim=True).clamp_min(1e-12)
    per_sample = (weight * dist).sum(dim=(1, 2, 3)) / (pred.shape[1] * area).clamp_min(1)
    return (per_sample * has_hole).sum() / has_hole.sum().clamp_min(1)


def kl_normal(
    mu_a: torch.Tensor, sigma_a: torch.Tensor, mu_b: torch.Tensor, sigma_b: torch.Tensor
) -> torch.Tensor:
    """Mean over elements of KL(N(μ_a, σ_a²) ‖ N(μ_b, σ_b²)) for diagonal Gaussians (broadcasting)."""
    var_ratio = (sigma_a / sigma_b).pow(2)
    t1 = ((mu_a - mu_b) / sigma_b).pow(2)
    kl = 0.5 * (var_ratio + t1 - 1 - var_ratio.log())
    return kl.mean()


def feature_match_l2(fake_out: torch.Tensor, real_out: torch.Tensor) -> torch.Tensor:
    """PICNet's reconstruction-path adversarial term: mean (D1(fake) − D1(real))², real detached."""
    return (fake_out - real_out.detach()).pow(2).mean()


def composite(raw: torch.Tensor, image: torch.Tensor, hole: torch.Tensor) -> torch.Tensor:
    """Generated pixels inside the hole, real pixels outside: raw·hole + image·(1 − hole)."""
    return raw * hole + image * (1 - hole)


def masked_gram(feat: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Gram matrix of ``feat`` (N×C×h×w) over the pixels weighted by ``weight`` (N×1×h×w): N×C×C,
    Σ_p w_p f_p f_pᵀ / Σ_p w_p (a zero-weight image gives a zero matrix)."""
    f = (feat * weight).flatten(2)
    total = weight.flatten(1).sum(1).clamp_min(1e-6).view(-1, 1, 1)
    return torch.bmm(f, feat.flatten(2).transpose(1, 2)) / total


def texture_loss(
    fake_feats: list[torch.Tensor], real_feats: list[torch.Tensor], hole: torch.Tensor
) -> torch.Tensor:
    """Σ over levels of mean |Gram(fake) − Gram(real)| inside the hole (resized to each level by area).

    Features come from :class:`dualinpaint.layers.RandomFeatures` of the fill and of the photo; hole
    N×1×H×W. The real features are detached. Compares the texture statistics of the fill with those of
    the true hole content, so a smooth fill whose second moments are too small costs more than a
    textured one.
    """
    total = hole.new_zeros(())
    for fake, real in zip(fake_feats, real_feats, strict=True):
        w = F.adaptive_avg_pool2d(hole, fake.shape[-2:]) if fake.shape[-2:] != hole.shape[-2:] else hole
        total = total + (masked_gram(fake, w) - masked_gram(real.detach(), w)).abs().mean()
    return total


def feature_matching(fake_feats: list[torch.Tensor], real_feats: list[torch.Tensor]) -> torch.Tensor:
    """pix2pixHD's feature-matching loss: Σ over layers of mean |D_l(fake) − D_l(real)|, real detached."""
    total = fake_feats[0].new_zeros(())
    for fake, real in zip(fake_feats, real_feats, strict=True):
        total = total + (fake - real.detach()).abs().mean()
    return total
