"""Texture transfer: the photo's own fine texture copied into a smooth fill, guided by its structure.

A network trained for PSNR fills a large hole with the conditional mean: the right colours and shapes,
blurred. ``transfer_texture`` keeps that fill as the structure (its low frequencies) and adds high
frequencies copied from the photo's known region, the way exemplar methods (shift-map, He & Sun 2012)
copy whole patches:

1. The image is cut into a grid of cells (``cell`` px, about 1/64 of the shorter side). Each cell is
   described by its 3×3-cell neighbourhood of the low-pass image (the structure; inside the hole that is
   the fill).
2. A few dozen candidate *offsets* are taken from the photo's self-similarity: the most frequent offsets
   from known cells to their nearest known look-alikes (at least ``MIN_SHIFT`` cells away), and the most
   frequent offsets from hole cells to their nearest known look-alikes; plus shifts in the 8 compass
   directions long enough to carry any hole cell out of the hole.
3. Each hole cell gets one offset: the one whose source looks most like the cell's structure, smoothed
   over neighbours (a Potts model, a few sweeps of iterated conditional modes) so that neighbouring cells
   copy one contiguous region instead of repeating one source (which would tile the hole periodically).
4. The high-pass of the photo (compressed above ``KNEE``, so strong edges do not come through as ghosts)
   is pasted through the offsets with overlapping Hann windows (normalised so that neighbouring copies
   from different places do not dip in amplitude between cells), brought to the local texture energy of
   the hole's surroundings (a push-pull fill of the known region's energy: a hole in a smooth sky gets
   none), faded in over ``cell`` px from the hole's border (thin strokes stay smooth), scaled by
   ``strength`` and added inside the hole.

It is parameter-free and runs on any device; a ``generator`` jitters the offset choice, so samples drawn
with different seeds get different texture. Tensors are NCHW in [-1, 1]; masks N×1×H×W, 1 = hole.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

TEXTURE_VERSION = 2  # bump when the output changes: evaluation caches key on it
GRID = 64  # cells across the shorter side
MIN_SHIFT = 3  # cells: known-to-known matches closer than this are the patch itself, not a repetition
KNOWN_SAMPLES = 512  # known cells whose nearest look-alike votes for an offset
ESCAPE_STEPS = 8  # lengths per compass direction of the shifts that reach out of a large hole
OFFSETS_KNOWN = 24
OFFSETS_HOLE = 16
SMOOTH = 2.0  # Potts weight per disagreeing neighbour, in units of the median best data cost
SWEEPS = 6
KNEE = 0.3
GAIN_MAX = 1.5
FADE = 1.0  # cells from the hole's border to full strength
JITTER = 1.0  # data-cost noise (same units as SMOOTH) when a generator is given


def _blur(x: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian blur, edges replicated (N×C×H×W)."""
    r = max(1, math.ceil(3 * sigma))
    t = torch.arange(-r, r + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-(t**2) / (2 * sigma * sigma))
    k = k / k.sum()
    c = x.shape[1]
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="replicate"), k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(
        F.pad(x, (0, 0, r, r), mode="replicate"), k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c
    )


def push_pull(values: Tensor, known: Tensor) -> Tensor:
    """``values`` (N×C×H×W) where ``known`` (N×1×H×W, {0,1}) is 1, filled elsewhere from ever coarser
    averages of the known values (push-pull, halving per level). An image with nothing known is returned
    as it is."""
    if bool((known > 0).all()) or not bool((known > 0).any()) or min(values.shape[-2:]) <= 1:
        return values
    weight = F.avg_pool2d(known, 2, ceil_mode=True)
    coarse = F.avg_pool2d(values * known, 2, ceil_mode=True) / weight.clamp(min=1e-6)
    coarse = push_pull(coarse, (weight > 0).to(values.dtype))
    up = F.interpolate(coarse, scale_factor=2.0, mode="bilinear", align_corners=False)
    up = up[..., : values.shape[-2], : values.shape[-1]]
    return values * known + up * (1 - known)


def _dilate(x: Tensor, r: int) -> Tensor:
    """Max over a (2r+1)² square, as two separable passes (N×C×H×W)."""
    x = F.max_pool2d(x, (1, 2 * r + 1), 1, (0, r))
    return F.max_pool2d(x, (2 * r + 1, 1), 1, (r, 0))


def _hann(n: int, like: Tensor) -> Tensor:
    """Periodic Hann window of length ``n``: w(t) + w(t + n/2) = 1, so half-overlapping windows sum to 1."""
    t = torch.arange(n, dtype=like.dtype, device=like.device)
    return 0.5 - 0.5 * torch.cos(2 * math.pi * (t + 0.5) / n)


def _frequent(offsets: Tensor, k: int, h: int, w: int) -> Tensor:
    """The ``k`` most frequent rows of ``offsets`` (M×2, cells, |dy| < h, |dx| < w)."""
    if offsets.numel() == 0 or k <= 0:
        return offsets.new_zeros((0, 2))
    key = (offsets[:, 0] + h) * (2 * w + 1) + (offsets[:, 1] + w)
    values, counts = torch.unique(key, return_counts=True)
    top = values[counts.argsort(descending=True, stable=True)[:k]]
    return torch.stack([top // (2 * w + 1) - h, top % (2 * w + 1) - w], 1)


def _escape_offsets(cells: Tensor, dev: torch.device) -> Tensor:
    """Shifts in the 8 compass directions long enough to carry any of ``cells`` (M×2, row/col) out of
    the region they span, in ``ESCAPE_STEPS`` lengths: without them the middle of a large hole has no
    valid shared offset and each cell would copy its own fragment (a lattice at the cell period)."""
    extent = int((cells.amax(0) - cells.amin(0)).max()) + 2
    step = max(1, math.ceil(extent / ESCAPE_STEPS))
    lengths = torch.arange(MIN_SHIFT, extent + step, step, device=dev)
    dirs = torch.tensor([[a, b] for a in (-1, 0, 1) for b in (-1, 0, 1) if a or b], device=dev)
    return (dirs[:, None, :] * lengths[None, :, None]).reshape(-1, 2)


def _choose_sources(
    cells: Tensor, feat: Tensor, usable: Tensor, target: Tensor, generator: torch.Generator | None
) -> tuple[Tensor, Tensor]:
    """One source cell per target cell of one image.

    ``cells``: C×h×w cell colours; ``feat``: (9·C)×h×w their 3×3 neighbourhoods; ``usable``: h×w
    bool, cells whose window is fully known; ``target``: h×w bool, cells to write. Returns (target
    cells, their source cells), flat indices.
    """
    _, h, w = feat.shape
    dev = feat.device
    ys, xs = torch.meshgrid(torch.arange(h, device=dev), torch.arange(w, device=dev), indexing="ij")
    pos = torch.stack([ys.flatten(), xs.flatten()], 1)
    flat = feat.flatten(1).T
    src = usable.flatten().nonzero().squeeze(1)
    tgt = target.flatten().nonzero().squeeze(1)
    # votes of the photo's self-similarity: known cells' nearest look-alikes a few cells away
    picker = torch.Generator().manual_seed(0)
    sample = src[torch.randperm(src.numel(), generator=picker)[:KNOWN_SAMPLES].to(dev)]
    d = torch.cdist(flat[sample], flat[src])
    near = ((ys.flatten()[sample][:, None] - ys.flatten()[src][None]).abs() < MIN_SHIFT) & (
        (xs.flatten()[sample][:, None] - xs.flatten()[src][None]).abs() < MIN_SHIFT
    )
    d.masked_fill_(near, float("inf"))
    known_votes = pos[src][d.argmin(1)] - pos[sample]
    nearest = src[torch.cdist(flat[tgt], flat[src]).argmin(1)]  # each hole cell's own best source
    hole_votes = pos[nearest] - pos[tgt]
    offs = torch.cat(
        [
            _frequent(known_votes, OFFSETS_KNOWN, h, w),
            _frequent(hole_votes, OFFSETS_HOLE, h, w),
            _escape_offsets(pos[tgt], dev),
        ]
    )
    offs = torch.unique(offs, dim=0)
    k = offs.shape[0]
    sy, sx = ys[None] + offs[:, 0, None, None], xs[None] + offs[:, 1, None, None]  # K×h×w
    inside = (sy >= 0) & (sy < h) & (sx >= 0) & (sx < w)
    sy, sx = sy.clamp(0, h - 1), sx.clamp(0, w - 1)
    valid = inside & usable[sy, sx]
    # the 3×3-cell patch distance as a box sum of per-cell colour distances (9× less gathering)
    per_cell = ((cells[:, sy, sx] - cells[:, None]) ** 2).sum(0, keepdim=True)  # 1×K×h×w
    box = torch.ones(1, 1, 3, 3, dtype=feat.dtype, device=dev)
    cost = (
        F.conv2d(F.pad(per_cell.transpose(0, 1), (1, 1, 1, 1), mode="replicate"), box)[:, 0] / feat.shape[0]
    )
    cost = torch.where(valid, cost, torch.full_like(cost, float("inf")))
    best = cost.min(0).values
    covered = target & torch.isfinite(best)
    scale = best[covered].median().clamp(min=1e-8) if bool(covered.any()) else best.new_tensor(1.0)
    cost = cost / scale
    if generator is not None:
        cost = cost + JITTER * torch.rand(cost.shape, generator=generator).to(dev)
    label = cost.argmin(0)
    cross = torch.tensor([[0.0, 1, 0], [1, 0, 1], [0, 1, 0]], dtype=feat.dtype, device=dev).view(1, 1, 3, 3)
    neighbours = F.conv2d(F.pad(feat.new_ones(1, 1, h, w), (1, 1, 1, 1)), cross)[0]
    for _ in range(SWEEPS):  # iterated conditional modes on cost + SMOOTH · disagreeing neighbours
        onehot = F.one_hot(label, k).permute(2, 0, 1)[None].to(feat.dtype)
        agree = F.conv2d(F.pad(onehot, (1, 1, 1, 1)), cross.expand(k, 1, 3, 3), groups=k)[0]
        label = (cost + SMOOTH * (neighbours - agree)).argmin(0)
    ok = valid.gather(0, label[None])[0].flatten()[tgt]
    chosen = (sy.gather(0, label[None])[0] * w + sx.gather(0, label[None])[0]).flatten()[tgt]
    return tgt, torch.where(ok, chosen, nearest)


def _blend_norm(
    tgt: Tensor, src: Tensor, gh: int, gw: int, c_px: int, h_px: int, w_px: int, hann: Tensor
) -> Tensor:
    """Per pixel (1×H×W), the amplitude the Hann-weighted sum of the overlapping cells' copies has
    relative to one copy, taking copies through different offsets as uncorrelated and copies through
    the same offset as one contiguous piece: sqrt(Σ_ij w_i w_j [o_i = o_j]). Dividing by it keeps the
    texture's amplitude even across the cells (a plain blend dips between cells that copy from
    different places, which shows as a grid at the cell period)."""
    dev = tgt.device
    offset = torch.full((gh * gw,), -1, dtype=torch.long, device=dev)
    d = src - tgt
    offset[tgt] = d - d.min()  # one id per offset (flat differences are equal iff the offsets are)
    offset = offset.view(gh, gw)

    def axis(n: int, cells: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        q = torch.arange(n, device=dev) + c_px // 2  # padded coordinate
        k0 = torch.div(q, c_px, rounding_mode="floor") - 1
        k1 = k0 + 1
        w0 = torch.where(k0 >= 0, hann[(q - k0 * c_px).clamp(0, 2 * c_px - 1)], 0.0)
        w1 = torch.where(k1 < cells, hann[(q - k1 * c_px).clamp(0, 2 * c_px - 1)], 0.0)
        return k0.clamp(0, cells - 1), k1.clamp(0, cells - 1), w0, w1

    y0, y1, wy0, wy1 = axis(h_px, gh)
    x0, x1, wx0, wx1 = axis(w_px, gw)
    ids, weights = [], []
    for ky, wy in ((y0, wy0), (y1, wy1)):
        for kx, wx in ((x0, wx0), (x1, wx1)):
            o = offset[ky[:, None], kx[None, :]]
            ids.append(o)
            weights.append(torch.where(o >= 0, wy[:, None] * wx[None, :], 0.0))
    norm2 = torch.zeros_like(weights[0])
    for a in range(4):
        for b in range(4):
            norm2 = norm2 + weights[a] * weights[b] * (ids[a] == ids[b])
    return norm2.sqrt()[None]


def transfer_texture(
    image: Tensor,
    mask: Tensor,
    *,
    strength: float = 1.0,
    cell: int | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """``image`` (N×3×H×W, a completed image: the photo outside the hole, a fill inside) plus texture
    copied from its known region, inside ``mask`` (N×1×H×W, 1 = hole) only; same shape, clamped to
    [-1, 1]. ``strength`` 0 returns ``image`` unchanged; 1 brings the copied texture to the energy of the
    hole's surroundings. ``cell``: grid cell in px (default: the shorter side / 64, at least 2).
    ``generator``: jitter the choice of sources (different texture per seed); None is deterministic.
    An image with no hole, or with no fully known cell to copy from, is returned unchanged."""
    if image.dim() != 4 or mask.dim() != 4 or mask.shape[1] != 1 or mask.shape[-2:] != image.shape[-2:]:
        raise ValueError(
            f"image N×C×H×W and mask N×1×H×W expected, got {tuple(image.shape)}, {tuple(mask.shape)}"
        )
    if not strength >= 0 or not math.isfinite(strength):
        raise ValueError(f"texture strength must be a finite number >= 0, got {strength!r}")
    if cell is not None and (isinstance(cell, bool) or not isinstance(cell, int) or cell < 2):
        raise ValueError(f"texture cell must be an int >= 2 (px) or None, got {cell!r}")
    if strength == 0 or not bool((mask > 0.5).any()):
        return image
    dtype = image.dtype
    x, m = image.float(), (mask > 0.5).float()
    n, c, h_px, w_px = x.shape
    c_px = cell or max(2, round(min(h_px, w_px) / GRID))
    sigma = c_px / 2
    low = _blur(x, sigma)
    high = KNEE * torch.tanh((x - low) / KNEE)  # fine texture passes, strong edges are compressed
    r = max(1, math.ceil(3 * sigma))
    ph, pw = (-h_px) % c_px, (-w_px) % c_px
    gh, gw = (h_px + ph) // c_px, (w_px + pw) // c_px
    pad = (c_px // 2, c_px // 2 + pw, c_px // 2, c_px // 2 + ph)
    hole_p = F.pad(m, pad, value=1.0)
    tainted = F.max_pool2d(_dilate(hole_p, r), 2 * c_px, c_px)[:, 0] > 0
    target = F.max_pool2d(hole_p, 2 * c_px, c_px)[:, 0] > 0  # windows that touch a hole pixel
    cells = F.avg_pool2d(F.pad(low, (0, pw, 0, ph), mode="replicate"), c_px)
    feat = F.unfold(F.pad(cells, (1, 1, 1, 1), mode="replicate"), 3).view(n, -1, gh, gw)
    patches = F.unfold(F.pad(high, pad, mode="replicate"), 2 * c_px, stride=c_px)  # N×(C·4c²)×(gh·gw)
    hann = _hann(2 * c_px, x)
    window = (hann[:, None] * hann[None, :]).flatten().repeat(c)[:, None]
    copied = torch.zeros_like(x)
    for i in range(n):
        if not bool(target[i].any()) or not bool((~tainted[i]).any()):
            continue
        tgt, src = _choose_sources(cells[i], feat[i], ~tainted[i], target[i], generator)
        cols = torch.zeros_like(patches[i])
        cols[:, tgt] = patches[i][:, src] * window
        full = F.fold(cols[None], (gh * c_px + c_px, gw * c_px + c_px), 2 * c_px, stride=c_px)
        copied[i] = full[0, :, c_px // 2 : c_px // 2 + h_px, c_px // 2 : c_px // 2 + w_px]
        copied[i] /= _blend_norm(tgt, src, gh, gw, c_px, h_px, w_px, hann).clamp(min=1e-3)

    # the local texture energy, per cell: the known region's, pushed into the hole, against the copy's
    def per_cell(v: Tensor) -> Tensor:
        return F.avg_pool2d(F.pad(v.pow(2).mean(1, keepdim=True), (0, pw, 0, ph), mode="replicate"), c_px)

    known_cells = (~tainted)[:, None].to(x.dtype)
    energy = push_pull(
        _blur(per_cell(high) * known_cells, 1.0) / _blur(known_cells, 1.0).clamp(min=1e-6), known_cells
    )
    gain = (energy / (_blur(per_cell(copied), 1.0) + 1e-6)).sqrt().clamp(max=GAIN_MAX)
    gain = F.interpolate(gain, size=(gh * c_px, gw * c_px), mode="bilinear", align_corners=False)[
        ..., :h_px, :w_px
    ]
    # 0 on the hole's border, 1 from FADE cells inside (a box filter: thin strokes stay smooth)
    f_px = max(1, round(FADE * c_px))
    box = F.avg_pool2d(F.pad(m, (f_px, f_px, 0, 0), mode="replicate"), (1, 2 * f_px + 1), 1)
    box = F.avg_pool2d(F.pad(box, (0, 0, f_px, f_px), mode="replicate"), (2 * f_px + 1, 1), 1)
    fade = (2 * box - 1).clamp(0, 1)
    out = (x + fade * strength * gain * copied).clamp(-1, 1)
    return torch.where(m > 0, out, x).to(dtype)  # outside the hole: the input, bit for bit
