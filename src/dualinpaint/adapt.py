"""Per-photo adaptation: a few steps of fine-tuning on one photo's own known pixels before filling it.

The network learned a fill from other photos; the photo being filled holds its own textures and
colours around the hole. ``adapt`` draws free-form strokes (masks.stroke_mask) inside the known region,
keeps the real hole unknown too (its pixels are never read), and trains a copy of the network to fill the
strokes from the rest: the generation path at the prior mean (the deterministic fill), loss = hole
log-MSE (losses.hole_log_mse, the per-image hole PSNR) + ``l1_weight`` · L1 inside the strokes, Adam.
The copy is then used for this photo only; the network passed in is not modified.
"""

from __future__ import annotations

import copy

import numpy as np
import torch

from .losses import hole_log_mse, multiscale_l1
from .masks import stroke_mask

DEFAULT_LR = 5e-5
DEFAULT_BATCH = 2
L1_WEIGHT = 20.0


def check_adapt_options(steps: int, lr: float, batch: int) -> None:
    """ValueError (one line) unless steps >= 0, lr > 0 and batch >= 1."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"adapt steps must be an int >= 0, got {steps!r}")
    if not lr > 0 or not np.isfinite(lr):
        raise ValueError(f"adapt lr must be a finite number > 0, got {lr!r}")
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"adapt batch must be an int >= 1, got {batch!r}")


def stroke_batch(known: torch.Tensor, batch: int, rng: np.random.Generator) -> torch.Tensor:
    """``batch`` stroke masks B×1×H×W (1 = stroke) restricted to ``known`` (1×1×H×W, 1 = known pixel)."""
    h, w = known.shape[-2:]
    strokes = np.stack([stroke_mask(h, w, rng) for _ in range(batch)]).astype(np.float32)
    return torch.from_numpy(strokes)[:, None].to(known.device) * known


def adapt(
    net: torch.nn.Module,
    image: torch.Tensor,
    hole: torch.Tensor,
    *,
    steps: int,
    lr: float = DEFAULT_LR,
    batch: int = DEFAULT_BATCH,
    seed: int = 0,
    l1_weight: float = L1_WEIGHT,
) -> torch.nn.Module:
    """A copy of ``net`` (a DualPathInpainter) fine-tuned for ``steps`` Adam steps on ``image``'s known
    pixels; returned in eval mode without gradients. ``steps`` 0 returns ``net`` itself.

    image 1×3×H×W in [-1, 1], hole 1×1×H×W (1 = hole; those pixels are never read), H and W multiples of
    the network's stride. Each step: ``batch`` new strokes inside the known region (drawn from ``seed``,
    so the result is reproducible), hole = strokes ∪ the real hole, loss on the strokes only. Runs in
    float32 with autograd on, whatever mode the caller is in.
    """
    check_adapt_options(steps, lr, batch)
    if image.dim() != 4 or image.shape[0] != 1 or hole.shape != (1, 1, *image.shape[-2:]):
        raise ValueError(
            "adapt needs one image 1×3×H×W and its hole 1×1×H×W, "
            f"got {tuple(image.shape)} and {tuple(hole.shape)}"
        )
    if steps == 0:
        return net
    rng = np.random.default_rng(seed)
    with torch.inference_mode(False), torch.enable_grad():
        image = image.detach().clone().float()
        hole = hole.detach().clone().float()
        known = 1 - hole
        masked = image * known  # the real hole's pixels are gone before anything is drawn
        tuned = copy.deepcopy(net).float().train(False).requires_grad_(True)
        opt = torch.optim.Adam(tuned.parameters(), lr=lr, betas=(0.0, 0.99))
        x = masked.expand(batch, -1, -1, -1)
        for _ in range(steps):
            strokes = stroke_batch(known, batch, rng)
            if not strokes.any():
                continue
            both = torch.clamp(strokes + hole, 0, 1)
            prior, feats = tuned.encode_masked(x, both)
            raw = tuned.decode(prior.mu, feats, both, x)
            loss = hole_log_mse(raw, x, strokes) + l1_weight * multiscale_l1([raw], x, weight=strokes)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return tuned.requires_grad_(False)
