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
   none), weighted by the hole's local thickness (none in strokes narrower than four cells, which a
   smooth fill already gets nearly right; full where the hole is eight cells or wider, from a cell inside
   its border), scaled by ``strength`` and added inside the hole.

It is parameter-free and runs on any device; a ``generator`` jitters the offset choice, so samples drawn
with different seeds get different texture. Tensors are NCHW in [-1, 1]; masks N×1×H×W, 1 = hole.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

TEXTURE_VERSION = 4  # bump when the output changes: evaluation caches key on it
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
THICK = (2.0, 4.0)  # cells: the hole's local half-width where texture starts, and where it is full
BORDER = 1.0  # cells from the hole's border to full strength, where the hole is thick enough
JITTER = 1.0  # data-cost noise (same units as SMOOTH) when a generator is given


def check_strength(value: object) -> float:
    """A texture strength as a float; ValueError (one line) unless it is a finite number >= 0 (a bool is
    not a strength)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < math.inf:
        raise ValueError(f"texture={value!r} must be a number >= 0 (0 = off, 1 = full)")
    return float(value)


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


def _box_mean(x: Tensor, r: int) -> Tensor:
    """Mean over a (2r+1)² square, edges replicated (N×C×H×W); cumulative sums, so the cost does not
    grow with ``r``."""
    k = 2 * r + 1
    for dim in (-1, -2):
        pad = (r, r, 0, 0) if dim == -1 else (0, 0, r, r)
        c = F.pad(x, pad, mode="replicate").double().cumsum(dim)
        c = F.pad(c, (1, 0, 0, 0) if dim == -1 else (0, 0, 1, 0))  # a leading zero
        n = x.shape[dim]
        x = ((c.narrow(dim, k, n) - c.narrow(dim, 0, n)) / k).to(x.dtype)
    return x


def _low_pass(x: Tensor, sigma: float) -> Tensor:
    """Gaussian blur of width ``sigma`` px; for wide blurs computed at a lower resolution (a factor of
    about sigma / 2, area-averaged) and brought back bilinearly, which a low-pass can afford."""
    f = max(1, int(sigma // 2))
    if f == 1:
        return _blur(x, sigma)
    h, w = x.shape[-2:]
    small = F.avg_pool2d(F.pad(x, (0, (-w) % f, 0, (-h) % f), mode="replicate"), f)
    small = _blur(small, sigma / f)
    up = F.interpolate(small, scale_factor=float(f), mode="bilinear", align_corners=False)
    return up[..., :h, :w]


def _cell_energy(v: Tensor, c_px: int) -> Tensor:
    """Mean squared value (over channels and pixels) of each ``c_px`` cell of ``v`` (N×C×H×W), its
    bottom and right edges replicated up to whole cells: N×1×ceil(H/c)×ceil(W/c)."""
    h, w = v.shape[-2:]
    energy = F.pad(v.pow(2).mean(1, keepdim=True), (0, (-w) % c_px, 0, (-h) % c_px), mode="replicate")
    return F.avg_pool2d(energy, c_px)


def _span(any_hole: Tensor, c_px: int, n: int) -> tuple[int, int]:
    """The pixel range [a, b) of one axis that holds every hole pixel (``any_hole``: bool, length n),
    widened by two cells (as far as a window that touches the hole reaches) and to whole cells."""
    where = any_hole.nonzero()
    first, last = int(where[0]), int(where[-1])
    return max(0, (first // c_px - 2) * c_px), min(n, (last // c_px + 3) * c_px)


def _thickness_fade(m: Tensor, c_px: int) -> Tensor:
    """How much texture each pixel of ``m`` (N×1×H×W, 1 = hole) gets, 0…1: none where the hole is thin
    (local half-width under THICK[0] cells: strokes that a smooth fill gets nearly right), full from
    THICK[1] cells, ramped up over BORDER cells from the hole's border; 0 outside the hole. Cells wider
    than 4 px are measured on a mask shrunk to about 4 px per cell and brought back bilinearly."""
    h, w = m.shape[-2:]
    f = max(1, c_px // 4)
    small = m if f == 1 else F.avg_pool2d(F.pad(m, (0, (-w) % f, 0, (-h) % f), mode="replicate"), f)
    small = (small > 0.5).to(m.dtype)
    c = c_px / f
    t0, t1 = THICK[0] * c, THICK[1] * c
    k = max(1, math.ceil(t1))
    depth, cur = torch.zeros_like(small), small
    for _ in range(k):  # chessboard distance to the known region (1 on the border), up to k
        depth = depth + cur
        cur = -F.max_pool2d(-cur, 3, 1, 1)  # erosion; beyond the image edge: neither hole nor known
    # the deepest hole pixel within k px: the hole's local half-width (a separable max)
    local = F.max_pool2d(F.max_pool2d(depth, (1, 2 * k + 1), 1, (0, k)), (2 * k + 1, 1), 1, (k, 0))
    thick = ((local - t0) / max(t1 - t0, 1e-6)).clamp(0, 1)
    fade = thick * (depth / max(1.0, BORDER * c)).clamp(max=1)
    if f > 1:
        fade = F.interpolate(fade, scale_factor=float(f), mode="bilinear", align_corners=False)[..., :h, :w]
    return fade * m


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


def _paste(
    high_p: Tensor, tgt: Tensor, src: Tensor, gh: int, gw: int, c_px: int, rows: range, cols: range
) -> Tensor:
    """One image's copied texture on pixel ``rows`` × ``cols`` (C×len(rows)×len(cols)): every target
    cell's 2c-px window, Hann-weighted, read from ``high_p`` (C×(gh+1)c×(gw+1)c, the high-pass padded by
    half a cell) at its source cell's place.

    Each pixel lies in four windows (two per axis). The weighted sum is divided by
    sqrt(Σ_ij w_i w_j [o_i = o_j]): copies through different offsets count as uncorrelated and copies
    through one offset as one contiguous piece, so the texture keeps its amplitude between cells (a
    plain blend dips between cells that copy from different places, which shows as a grid at the cell
    period). Read pixel by pixel (no unfolded copies), so memory stays a few images' worth."""
    dev = high_p.device
    lo = c_px // 2
    source = torch.full((gh * gw,), -1, dtype=torch.long, device=dev)
    source[tgt] = src
    hann = _hann(2 * c_px, high_p)

    def axis(span: range, cells: int) -> list[tuple[Tensor, Tensor, Tensor]]:
        """Per pixel of one axis, for its two windows: (cell index, Hann weight, padded coordinate)."""
        q = torch.arange(span.start, span.stop, device=dev) + lo
        out = []
        for k in (torch.div(q, c_px, rounding_mode="floor") - 1, torch.div(q, c_px, rounding_mode="floor")):
            inside = (k >= 0) & (k < cells)
            weight = torch.where(inside, hann[(q - k * c_px).clamp(0, 2 * c_px - 1)], 0.0)
            out.append((k.clamp(0, cells - 1), weight, q))
        return out

    wp = high_p.shape[-1]
    flat = high_p.flatten(1)
    total = torch.zeros(high_p.shape[0], len(rows), len(cols), dtype=high_p.dtype, device=dev)
    ids, weights = [], []
    for ky, wy, qy in axis(rows, gh):
        for kx, wx, qx in axis(cols, gw):
            cell = ky[:, None] * gw + kx[None, :]
            s = source[cell]  # H×W: the source cell of this window, -1 where it writes nothing
            weight = torch.where(s >= 0, wy[:, None] * wx[None, :], 0.0)
            s = s.clamp(min=0)
            dy = (torch.div(s, gw, rounding_mode="floor") - ky[:, None]) * c_px
            dx = (s % gw - kx[None, :]) * c_px
            index = ((qy[:, None] + dy) * wp + (qx[None, :] + dx)).clamp(0, flat.shape[1] - 1)
            total += flat[:, index.flatten()].view_as(total) * weight
            ids.append((s - cell).to(torch.int32))  # the offset, as one number
            weights.append(weight)
    norm2 = sum(w * w for w in weights)
    for a in range(4):
        for b in range(a + 1, 4):
            norm2 += 2 * weights[a] * weights[b] * (ids[a] == ids[b])
    return total / norm2.sqrt().clamp(min=1e-3)


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
    check_strength(strength)
    if cell is not None and (isinstance(cell, bool) or not isinstance(cell, int) or cell < 2):
        raise ValueError(f"texture cell must be an int >= 2 (px) or None, got {cell!r}")
    if strength == 0 or not bool((mask > 0.5).any()):
        return image
    dtype = image.dtype
    x, m = image.float(), (mask > 0.5).float()
    n, c, h_px, w_px = x.shape
    c_px = cell or max(2, round(min(h_px, w_px) / GRID))
    sigma = c_px / 2
    low = _low_pass(x, sigma)
    high = KNEE * torch.tanh((x - low) / KNEE)  # fine texture passes, strong edges are compressed
    r = max(1, math.ceil(3 * sigma))
    ph, pw = (-h_px) % c_px, (-w_px) % c_px
    gh, gw = (h_px + ph) // c_px, (w_px + pw) // c_px
    lo, hi = c_px // 2, c_px - c_px // 2  # half a cell around (c_px in all, odd cells too)
    pad = (lo, hi + pw, lo, hi + ph)
    hole_p = F.pad(m, pad, value=1.0)
    near_hole = (_box_mean(hole_p, r) > 1e-6).to(x.dtype)  # within r px of a hole pixel
    tainted = F.max_pool2d(near_hole, 2 * c_px, c_px)[:, 0] > 0
    target = F.max_pool2d(hole_p, 2 * c_px, c_px)[:, 0] > 0  # windows that touch a hole pixel
    cells = F.avg_pool2d(F.pad(low, (0, pw, 0, ph), mode="replicate"), c_px)
    del low  # full-size tensors are freed as soon as they are used: big windows are several MP
    feat = F.unfold(F.pad(cells, (1, 1, 1, 1), mode="replicate"), 3).view(n, -1, gh, gw)
    high_p = F.pad(high, pad, mode="replicate")
    # per-pixel work only where texture goes: the holes' bounding box, widened to whole cells
    rows_any, cols_any = m.amax((0, 1, 3)) > 0, m.amax((0, 1, 2)) > 0
    ya, yb = _span(rows_any, c_px, h_px)
    xa, xb = _span(cols_any, c_px, w_px)

    # the local texture energy, per cell: the known region's, pushed into the hole, against the copy's
    known_cells = (~tainted)[:, None].to(x.dtype)
    energy = push_pull(
        _blur(_cell_energy(high, c_px) * known_cells, 1.0) / _blur(known_cells, 1.0).clamp(min=1e-6),
        known_cells,
    )
    del high
    copied = x.new_zeros(n, c, yb - ya, xb - xa)
    for i in range(n):
        if not bool(target[i].any()) or not bool((~tainted[i]).any()):
            continue
        tgt, src = _choose_sources(cells[i], feat[i], ~tainted[i], target[i], generator)
        copied[i] = _paste(high_p[i], tgt, src, gh, gw, c_px, range(ya, yb), range(xa, xb))
    del high_p
    # the copy's energy per cell, on the whole grid (zero outside the box, as the copy is; the box
    # starts on a cell boundary, so its cells are the grid's)
    copied_cells = x.new_zeros(n, 1, gh, gw)
    copied_cells[..., ya // c_px : -(-yb // c_px), xa // c_px : -(-xb // c_px)] = _cell_energy(copied, c_px)
    gain = (energy / (_blur(copied_cells, 1.0) + 1e-6)).sqrt().clamp(max=GAIN_MAX)
    gain = F.interpolate(gain, size=(gh * c_px, gw * c_px), mode="bilinear", align_corners=False)
    gain = gain[..., ya:yb, xa:xb]
    # on the whole image (a hole on the image's edge is as thick as it looks), then on the box
    m_box, x_box = m[..., ya:yb, xa:xb], x[..., ya:yb, xa:xb]
    fade = _thickness_fade(m, c_px)[..., ya:yb, xa:xb]
    textured = (x_box + fade * strength * gain * copied).clamp(-1, 1)
    out = x.clone()
    out[..., ya:yb, xa:xb] = torch.where(m_box > 0, textured, x_box)  # outside the hole: the input
    return out.to(dtype)
