"""The dual-path inpainting network: encoders E1/E2, latent heads and generators G1/G2.

Reconstruction path: E1 encodes the complement image I_c = hole ⊙ I (the real pixels inside the hole);
its posterior q(z | I_c) gives z, which G1 decodes together with the masked image's features.
Generation path: E2 encodes the masked image I_m = (1 − hole) ⊙ I; its prior p(z | I_m) gives z, which
G2 decodes with the same features. At test time only the generation path runs: z = prior mean for a
deterministic fill, or K draws from the prior for K different fills (pluralistic sampling).

This module knows nothing of files, devices or the command line: tensors in, tensors out.
Images are N×3×H×W in [-1, 1]; masks N×1×H×W with 1 = hole; H and W multiples of ``cfg.stride``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from .config import ModelConfig
from .layers import (
    ResBlock,
    ResBlockDecoder,
    ResBlockStart,
    ShortLongAttention,
    ToRGB,
    channels_at,
    resize_kernel_from_deconv,
    sn,
)


@dataclass
class Gaussian:
    """A diagonal Gaussian over the spatial latent: mean and std, each N×Z×h×w (h = H/stride)."""

    mu: torch.Tensor
    sigma: torch.Tensor

    def rsample(self, noise: torch.Tensor | None = None) -> torch.Tensor:
        """Reparameterised draw μ + σ·ε (ε standard normal unless ``noise`` is given)."""
        eps = torch.randn_like(self.mu) if noise is None else noise
        return self.mu + self.sigma * eps


@dataclass
class TrainOutput:
    """Everything one training forward pass produces (both paths)."""

    rec: list[torch.Tensor]  # reconstruction path (G1) outputs, coarse → fine, last = N×3×H×W
    gen: list[torch.Tensor]  # generation path (G2) outputs, coarse → fine
    posterior: Gaussian  # q(z | I_c), reconstruction path
    prior: Gaussian  # p(z | I_m), generation path


class EncoderTrunk(nn.Module):
    """Residual encoder: a start block then ``n_down`` downsampling ResBlocks.

    N×3×H×W (N×4×H×W with ``mask_input``: image and unknown-pixel mask) → list of features
    f[0..n_down]; f[k] has stride 2^(k+1) and channels_at(k) channels.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        ch = [channels_at(k, cfg.ngf, cfg.max_channels) for k in range(cfg.n_down + 1)]
        cin = 4 if cfg.mask_input else 3
        self.start = ResBlockStart(cin, ch[0], leak=cfg.leak, use_sn=cfg.spectral_norm)
        self.down = nn.ModuleList(
            ResBlock(
                ch[k],
                ch[k + 1],
                ch[k],
                norm="none",
                leak=cfg.leak,
                down=True,
                skip=cfg.skip,
                use_sn=cfg.spectral_norm,
            )
            for k in range(cfg.n_down)
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = [self.start(x)]
        for block in self.down:
            feats.append(block(feats[-1]))
        return feats


class LatentHead(nn.Module):
    """``blocks`` ResBlocks then a ResBlock head to 2·Z channels: mean and softplus std of z.

    N×C×h×w → Gaussian(N×Z×h×w, N×Z×h×w).
    """

    def __init__(self, cfg: ModelConfig, blocks: int) -> None:
        super().__init__()
        c = channels_at(cfg.n_down, cfg.ngf, cfg.max_channels)
        kw = dict(norm="none", leak=cfg.leak, skip=cfg.skip, use_sn=cfg.spectral_norm)
        self.body = nn.Sequential(*[ResBlock(c, c, c, **kw) for _ in range(blocks)])
        self.head = ResBlock(c, 2 * cfg.z_channels, c, **kw)

    def forward(self, f: torch.Tensor) -> Gaussian:
        mu, raw = self.head(self.body(f)).chunk(2, dim=1)
        return Gaussian(mu, F.softplus(raw))


class Generator(nn.Module):
    """Decoder from a latent z and the masked image's features to multi-scale RGB outputs.

    stem ResBlock(z) fused with f_m (add or concat+1×1) → n_down+1 ResBlockDecoders, each doubling the
    resolution; short+long term attention after decoder ``attention_level``; the last ``output_scales``
    decoders emit an RGB image (tanh) that is concatenated into the next decoder's input.
    ``decoder_skips``: decoder i also adds a 1×1 projection of ``skips[i]``, the masked image's encoder
    feature at its output resolution (the last decoder: the masked — or prefilled — image and hole).
    ``prefill``: the final image is clamp(``base`` + hole·RGB), ``base`` being the N×3×H×W smooth fill of
    ``harmonic_fill`` or ``biharmonic_fill``; the final RGB layer has no spectral norm and starts at zero,
    so training starts from the smooth fill (and its weights get a gradient from the first step). The
    residual counts only inside the hole: outside it ``base`` already is the photo, so a loss on known
    pixels would otherwise fine every non-zero residual and pin the last layer at zero.

    Inputs: z N×Z×h×w, f_m N×C×h×w, f_e (encoder feature at the attention's resolution), hole N×1×H×W,
    skips (``decoder_skips`` only, see ``DualPathInpainter.skip_inputs``), base (``prefill`` only).
    Returns a list of ``output_scales`` images, coarse → fine; the last is N×3×H×W.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        use_sn, leak, n_up = cfg.spectral_norm, cfg.leak, cfg.n_down + 1
        top = channels_at(cfg.n_down, cfg.ngf, cfg.max_channels)
        self.stem = ResBlock(cfg.z_channels, top, top, norm="none", leak=leak, skip=cfg.skip, use_sn=use_sn)
        self.fuse = sn(nn.Conv2d(2 * top, top, 1), use_sn) if cfg.fusion == "concat" else None
        self.first_output = n_up - cfg.output_scales
        self.decoders = nn.ModuleList()
        self.outputs = nn.ModuleDict()
        cin = top
        for i in range(n_up):
            cout = channels_at(cfg.n_down - i, cfg.ngf, cfg.max_channels)
            extra = 3 if i - 1 >= self.first_output else 0
            self.decoders.append(
                ResBlockDecoder(
                    cin + extra, cout, cout, norm=cfg.norm, leak=leak, use_sn=use_sn, upsample=cfg.upsample
                )
            )
            if i >= self.first_output:
                self.outputs[str(i)] = ToRGB(cout, leak=leak, use_sn=use_sn)
            cin = cout
        self.residual = cfg.prefill != "none"
        if self.residual:  # the final RGB is a residual on the smooth fill: its conv starts at zero (no SN)
            last = ToRGB(channels_at(0, cfg.ngf, cfg.max_channels), leak=leak, use_sn=False)
            nn.init.zeros_(last.body[2].weight)
            nn.init.zeros_(last.body[2].bias)
            self.outputs[str(n_up - 1)] = last
        self.skip_proj = None
        if cfg.decoder_skips:
            self.skip_proj = nn.ModuleList(
                sn(
                    nn.Conv2d(
                        channels_at(cfg.n_down - i - 1, cfg.ngf, cfg.max_channels) if i < cfg.n_down else 4,
                        channels_at(cfg.n_down - i, cfg.ngf, cfg.max_channels),
                        1,
                    ),
                    use_sn,
                )
                for i in range(n_up)
            )
        self.attention = None
        if cfg.attention:
            level = cfg.attention_level
            c_dec = channels_at(cfg.n_down - level, cfg.ngf, cfg.max_channels)
            c_enc = channels_at(cfg.n_down - level - 1, cfg.ngf, cfg.max_channels)
            self.attention = ShortLongAttention(c_dec, use_sn=use_sn)
            self.attn_proj = None if c_enc == c_dec else sn(nn.Conv2d(c_enc, c_dec, 1), use_sn)

    @property
    def encoder_level(self) -> int:
        """Index of the encoder feature the long-term attention reads."""
        return self.cfg.n_down - self.cfg.attention_level - 1

    def forward(
        self,
        z: torch.Tensor,
        f_m: torch.Tensor,
        f_e: torch.Tensor | None,
        hole: torch.Tensor,
        skips: list[torch.Tensor] | None = None,
        base: torch.Tensor | None = None,
    ) -> list[torch.Tensor]:
        if (self.skip_proj is None) != (skips is None):
            raise ValueError("skips must be given exactly when model.decoder_skips is on")
        if self.residual != (base is not None):
            raise ValueError("base (the smooth fill) must be given exactly when model.prefill is on")
        out = self.stem(z)
        out = out + f_m if self.fuse is None else self.fuse(torch.cat([out, f_m], dim=1))
        results = []
        for i, decoder in enumerate(self.decoders):
            out = decoder(out)
            if self.skip_proj is not None:
                out = out + self.skip_proj[i](skips[i])
            if self.attention is not None and i == self.cfg.attention_level:
                pre = f_e if self.attn_proj is None else self.attn_proj(f_e)
                small = F.interpolate(hole, size=out.shape[-2:], mode="bilinear", align_corners=True)
                out = self.attention(out, pre, small)
            if str(i) in self.outputs:
                rgb = self.outputs[str(i)](out)
                results.append(rgb)
                out = torch.cat([out, rgb], dim=1)
        if base is not None:
            results[-1] = (base + hole * results[-1]).clamp(-1, 1)
        return results


def _jacobi(x: torch.Tensor, colour: torch.Tensor, known: torch.Tensor, sweeps: int) -> torch.Tensor:
    """``sweeps`` Jacobi sweeps of x ← known·colour + (1 − known)·(mean of x's 4 neighbours).

    x, colour N×3×H×W; known N×1×H×W in [0, 1] (a known fraction; 1 = fixed, 0 = free). Borders replicate.
    """
    fixed, free = colour * known, 1 - known
    for _ in range(sweeps):
        p = F.pad(x, (1, 1, 1, 1), mode="replicate")
        around = p[..., :-2, 1:-1] + p[..., 2:, 1:-1]  # 4-neighbour sum, accumulated in place
        around += p[..., 1:-1, :-2]
        around += p[..., 1:-1, 2:]
        x = torch.addcmul(fixed, around, free, value=0.25)
    return x


def _known_pyramid(
    image: torch.Tensor, known: torch.Tensor, levels: int
) -> tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor]:
    """The smooth fills' pyramid: ``levels`` average-poolings of image·known (sums) and of known (weights,
    the known fraction), finest first, and each image's mean known colour N×3×1×1."""
    sums, weights = [image * known], [known]
    for _ in range(levels):
        sums.append(F.avg_pool2d(sums[-1], 2))
        weights.append(F.avg_pool2d(weights[-1], 2))
    mean = sums[0].sum((2, 3), keepdim=True) / weights[0].sum((2, 3), keepdim=True).clamp_min(1e-8)
    return sums, weights, mean


def _laplacian(x: torch.Tensor) -> torch.Tensor:
    """The 5-point Laplacian of each channel with replicated (Neumann) borders; N×C×H×W → N×C×H×W.

    Equal to the zero-padded Laplacian plus b·x, where b counts a pixel's neighbours outside the image,
    so the operator is symmetric: ⟨Δx, y⟩ = ⟨x, Δy⟩.
    """
    p = F.pad(x, (1, 1, 1, 1), mode="replicate")
    out = p[..., :-2, 1:-1] + p[..., 2:, 1:-1]  # accumulated in place: 3× faster at 260², same values
    out += p[..., 1:-1, :-2]
    out += p[..., 1:-1, 2:]
    return out.sub_(x, alpha=4)


def _biharmonic_cg(x: torch.Tensor, free: torch.Tensor, iters: int) -> torch.Tensor:
    """``iters`` conjugate-gradient steps on min ‖Δx‖² over the pixels where ``free`` = 1, the rest fixed.

    The system is Pᵀ Δ² P (P: the free pixels; Δ is symmetric), positive semi-definite; each image and
    channel has its own step sizes. x N×3×H×W, free N×1×H×W in {0, 1}.
    Every 8 steps, eager mode stops early once every image and channel has converged: the remaining
    steps would have step size 0, so the result is the same (small coarse levels converge in 10–40).
    """
    r = -_laplacian(_laplacian(x)) * free
    p, rr = r, (r * r).sum((2, 3), keepdim=True)
    floor = rr * 1e-10  # converged once ‖r‖ < 1e-5·‖r₀‖: later steps would divide rounding noise by itself
    for step in range(iters):
        if not torch.jit.is_scripting():  # noqa: SIM102 - TorchScript skips this block; ONNX runs every step
            if step % 8 == 0 and not bool((rr > floor).any()):
                break
        ap = _laplacian(_laplacian(p)).mul_(free)
        alpha = rr / (p * ap).sum((2, 3), keepdim=True).clamp_min(1e-30)
        alpha = torch.where(rr > floor, alpha, torch.zeros_like(alpha))  # 0 also when nothing is free
        x = x + alpha * p
        r = r - alpha * ap
        rr_new = (r * r).sum((2, 3), keepdim=True)
        p = r + (rr_new / rr.clamp_min(1e-30)) * p
        rr = rr_new
    return x


_SCRIPTED: dict[Any, Any] = {}  # loop function → its TorchScript version


def _loop_for_export(fn: Any) -> Any:
    """``fn`` itself, or while tracing (ONNX export) its TorchScript version, so the iterations export as
    one ONNX Loop instead of being unrolled (hundreds of unrolled iterations took minutes to export)."""
    if not torch.jit.is_tracing():
        return fn
    if fn not in _SCRIPTED:
        _SCRIPTED[fn] = torch.jit.script(fn)
    return _SCRIPTED[fn]


def _solve_in_boxes(x: torch.Tensor) -> bool:
    """Whether :func:`_biharmonic_solve` loops over images (on the CPU, where arithmetic dominates) or
    solves the whole batch at once (an accelerator: there the loop's kernel launches, about ten per CG
    step, 50 steps per pyramid level, per image, would grow a training step's fill cost with the batch)."""
    return x.device.type == "cpu"


def _biharmonic_solve(x: torch.Tensor, free: torch.Tensor, iters: int) -> torch.Tensor:
    """:func:`_biharmonic_cg` for each image on the bounding box of its free pixels grown by 2 pixels.

    The same equations as on the whole image: a free pixel's residual reads Δx only within 1 pixel of the
    free set, and that Δx reads x only within 2 pixels, so the crop's replicated edge (known pixels) never
    enters. The sums run over fewer zeros, and conjugate gradients amplify that rounding difference
    (~1e-6 in float32 after 50 steps on photographs, 1.4e-4 on the multilevel fill of uniform noise; it
    can reach 1e-2 on a single level whose known pixels are noise). One box per image keeps an image's
    fill independent of the rest of its batch. A localised hole in a large image costs its box, not the
    image. Off the CPU (:func:`_solve_in_boxes`), and while tracing (ONNX export, so that the graph does
    not depend on one example's hole), the whole batch is solved at once.
    """
    if torch.jit.is_tracing():
        return _loop_for_export(_biharmonic_cg)(x, free, iters)
    if not _solve_in_boxes(x):
        return _biharmonic_cg(x, free, iters)
    h, w = free.shape[-2:]
    out = x.clone()
    for i in range(x.shape[0]):
        rows = free[i].amax(dim=(0, 2)).nonzero()
        if rows.numel() == 0:
            continue  # nothing to solve in this image
        cols = free[i].amax(dim=(0, 1)).nonzero()
        r0, r1 = max(int(rows[0]) - 2, 0), min(int(rows[-1]) + 3, h)
        c0, c1 = max(int(cols[0]) - 2, 0), min(int(cols[-1]) + 3, w)
        box = (slice(i, i + 1), slice(None), slice(r0, r1), slice(c0, c1))
        out[box] = _biharmonic_cg(x[box], free[box], iters)
    return out


@torch.compiler.disable  # like harmonic_fill: unrolled element-wise iterations gain nothing from compile
def biharmonic_fill(image: torch.Tensor, hole: torch.Tensor, iters: int, levels: int) -> torch.Tensor:
    """A parameter-free smooth fill that continues the border's gradients: a multilevel biharmonic solve.

    Pyramid: ``levels`` times average-pool the known pixels and their known fraction w. On a pooled level
    a cell is known when w ≥ 1/2 (its mean known colour), so thin holes vanish there and are solved at
    full resolution, while wide holes get their low frequencies from the coarse levels. The coarsest level
    starts from ``harmonic_fill`` (from the mean known colour if none of its cells is known); each finer
    level starts from the bilinearly upsampled coarser solution.
    Each level then runs ``iters`` conjugate-gradient steps towards min ‖Δu‖² (Δ²u = 0 in the hole, the
    discrete biharmonic equation scikit-image's ``inpaint_biharmonic`` solves exactly). It is unconverged
    on wide holes, which keeps them nearer the harmonic fill; on the validation photos that scored higher
    than scikit-image's exact solution on 10–60 % strokes and the centre square. Known pixels are returned
    unchanged; the fill may overshoot [-1, 1] where the border's gradients point outwards (the model
    clamps its output).
    image N×3×H×W, hole N×1×H×W (H, W multiples of 2**levels) → N×3×H×W.
    """
    image, hole = image.contiguous(), hole.contiguous()
    known = 1 - hole
    sums, weights, mean = _known_pyramid(image, known, levels)
    x = None
    for level in range(levels, -1, -1):
        w = weights[level]
        colour = sums[level] / w.clamp_min(1e-8)
        free = (w < 0.5).to(image.dtype) if level > 0 else hole
        if x is None:  # no cell known on the coarsest level (a huge hole): start from the mean known colour
            some_known = (1 - free).sum((2, 3), keepdim=True) > 0
            x = torch.where(some_known, harmonic_fill(colour * (1 - free), free, iters, 0), mean)
        else:
            x = colour * (1 - free) + F.interpolate(x, scale_factor=2.0, mode="bilinear") * free
        x = _biharmonic_solve(x, free, iters)
    return image * known + x * hole


@torch.compiler.disable  # element-wise sweeps gain nothing from compile; tracing them unrolled takes minutes
def harmonic_fill(image: torch.Tensor, hole: torch.Tensor, iters: int, levels: int) -> torch.Tensor:
    """A parameter-free smooth fill of the hole: a multilevel solve of Laplace's equation.

    Pyramid: ``levels`` times average-pool the known pixels and their known fraction w. From the coarsest
    level down (its empty cells start at the mean known colour; finer levels start from the bilinearly
    upsampled coarser solution), each level runs ``iters`` Jacobi sweeps in which a cell keeps fraction w
    of its own known colour and takes 1 − w from its neighbours. With ``iters`` = 0 this is push-pull; at
    full resolution w is 0 or 1, so pixels outside the hole never change and the hole tends to the harmonic
    interpolant of its border. image N×3×H×W, hole N×1×H×W (H, W multiples of 2**levels) → N×3×H×W.
    """
    image, hole = image.contiguous(), hole.contiguous()  # the sweeps are ~1.5× slower in channels_last
    known = 1 - hole
    sums, weights, mean = _known_pyramid(image, known, levels)
    x = None
    for level in range(levels, -1, -1):
        w = weights[level].clamp(0, 1)
        colour = sums[level] / weights[level].clamp_min(1e-8)
        start = mean.expand_as(colour) if x is None else F.interpolate(x, scale_factor=2.0, mode="bilinear")
        x = _loop_for_export(_jacobi)(colour * w + start * (1 - w), colour, w, iters)
    return x


def adaptive_prior_sigma(hole: torch.Tensor) -> torch.Tensor:
    """PICNet's fixed prior std for the reconstruction path: σ_m = sigmoid(8·(0.8 − visible fraction)).

    hole N×1×H×W → N×1×1×1. Larger holes get a larger prior variance.
    """
    visible = 1.0 - hole.mean(dim=(1, 2, 3), keepdim=True) - 1e-5
    return torch.sigmoid(8.0 * (0.8 - visible))


class DualPathInpainter(nn.Module):
    """E1/E2 + latent heads + G1/G2 (the whole generator side, trained by one optimiser).

    ``share_trunk``: one encoder trunk serves both paths (PICNet: I_m and I_c are batch-concatenated);
    otherwise E1 (complement image) and E2 (masked image) are separate networks (the paper).
    ``share_generator``: one G decodes both latents (PICNet) or G1 and G2 are separate.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.enc_m = EncoderTrunk(cfg)  # E2: masked image (generation path; its features feed both Gs)
        self.enc_c = None if cfg.share_trunk else EncoderTrunk(cfg)  # E1: complement image
        self.prior_head = LatentHead(cfg, cfg.prior_blocks)
        self.posterior_head = LatentHead(cfg, cfg.posterior_blocks)
        self.gen_g = Generator(cfg)  # G2
        self.gen_r = None if cfg.share_generator else Generator(cfg)  # G1

    def check_input(self, image: torch.Tensor, hole: torch.Tensor) -> None:
        """Raise ValueError unless image is N×3×H×W and hole N×1×H×W with H, W multiples of the stride."""
        st = self.cfg.stride
        if image.dim() != 4 or image.shape[1] != 3:
            raise ValueError(f"image must be N×3×H×W, got {tuple(image.shape)}")
        if (
            hole.dim() != 4
            or hole.shape[1] != 1
            or hole.shape[0] != image.shape[0]
            or hole.shape[-2:] != image.shape[-2:]
        ):
            raise ValueError(
                f"mask must be N×1×H×W matching image {tuple(image.shape)}, got {tuple(hole.shape)}"
            )
        if image.shape[-2] % st or image.shape[-1] % st:
            raise ValueError(f"image size {image.shape[-2]}×{image.shape[-1]} must be a multiple of {st}")

    def _encoder_input(self, image: torch.Tensor, unknown: torch.Tensor) -> torch.Tensor:
        """The encoder's input: the image, with the unknown-pixel mask as a 4th channel if ``mask_input``."""
        return torch.cat([image, unknown], dim=1) if self.cfg.mask_input else image

    def prefill(self, image: torch.Tensor, hole: torch.Tensor) -> torch.Tensor | None:
        """The smooth fill G's residual is added to (``model.prefill``), N×3×H×W; None when off.
        Reads only the pixels outside the hole."""
        if self.cfg.prefill == "none":
            return None
        fill = biharmonic_fill if self.cfg.prefill == "biharmonic" else harmonic_fill
        return fill(image * (1 - hole), hole, self.cfg.prefill_iters, self.cfg.n_down + 1)

    def skip_inputs(
        self, feats: list[torch.Tensor], masked: torch.Tensor, hole: torch.Tensor
    ) -> list[torch.Tensor] | None:
        """Per-decoder skip inputs (``decoder_skips``): E2's features fine-ward of the bottleneck, then
        ``masked`` (the masked or prefilled image) with its hole, N×4×H×W, for the full-resolution
        decoder; None when off."""
        if not self.cfg.decoder_skips:
            return None
        return [*feats[-2::-1], torch.cat([masked, hole], dim=1)]

    def _features(self, feats: list[torch.Tensor], level: int) -> torch.Tensor | None:
        return feats[level] if self.cfg.attention else None

    def forward(
        self, image: torch.Tensor, hole: torch.Tensor, noise: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> TrainOutput:
        """Training pass through both paths. image N×3×H×W (ground truth), hole N×1×H×W.

        ``noise`` = (ε_posterior, ε_prior), each N×Z×h×w, makes the latent draws explicit (the trainer
        derives them from the seed, step and sample position); standard normal draws otherwise.
        """
        self.check_input(image, hole)
        img_m = image * (1 - hole)
        img_c = image * hole
        n = image.shape[0]
        x_m, x_c = self._encoder_input(img_m, hole), self._encoder_input(img_c, 1 - hole)
        if self.enc_c is None:
            both = self.enc_m(torch.cat([x_m, x_c], dim=0))
            feats_m = [f[:n] for f in both]
            top_c = both[-1][n:]
        else:
            feats_m = self.enc_m(x_m)
            top_c = self.enc_c(x_c)[-1]
        posterior = self.posterior_head(top_c)
        prior = self.prior_head(feats_m[-1])
        eps_p, eps_q = noise if noise is not None else (None, None)
        z_p, z_q = posterior.rsample(eps_p), prior.rsample(eps_q)
        f_m = feats_m[-1]
        f_e, skips, base = self.decoder_inputs(feats_m, hole, image)
        if self.gen_r is None:

            def dup(t: torch.Tensor | None) -> torch.Tensor | None:
                return None if t is None else torch.cat([t, t], dim=0)

            both_skips = None if skips is None else [dup(t) for t in skips]
            outs = self.gen_g(
                torch.cat([z_p, z_q], dim=0), dup(f_m), dup(f_e), dup(hole), both_skips, dup(base)
            )
            rec = [o[:n] for o in outs]
            gen = [o[n:] for o in outs]
        else:
            rec = self.gen_r(z_p, f_m, f_e, hole, skips, base)
            gen = self.gen_g(z_q, f_m, f_e, hole, skips, base)
        return TrainOutput(rec=rec, gen=gen, posterior=posterior, prior=prior)

    def encode_masked(self, image: torch.Tensor, hole: torch.Tensor) -> tuple[Gaussian, list[torch.Tensor]]:
        """Generation path encoder only: prior p(z | I_m) and the masked image's features."""
        self.check_input(image, hole)
        feats = self.enc_m(self._encoder_input(image * (1 - hole), hole))
        return self.prior_head(feats[-1]), feats

    def decoder_inputs(
        self,
        feats: list[torch.Tensor],
        hole: torch.Tensor,
        image: torch.Tensor,
        base: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor | None, list[torch.Tensor] | None, torch.Tensor | None]:
        """What G reads besides z and the bottleneck feature, the same for every latent draw: the
        attention's encoder feature, the skip inputs and the smooth fill (each None when off).
        ``feats`` are E2's features of ``image`` (N×3×H×W, read only through its known pixels).
        ``base``: ``self.prefill(image, hole)`` when the caller computed it already (an ONNX graph that
        takes the smooth fill as an input); ValueError if given to a model without ``model.prefill``."""
        if base is None:
            base = self.prefill(image, hole)
        elif self.cfg.prefill == "none":
            raise ValueError("base (a smooth fill) was given to a model without model.prefill")
        skips = self.skip_inputs(feats, image * (1 - hole) if base is None else base, hole)
        return self._features(feats, self.gen_g.encoder_level), skips, base

    def decode(
        self,
        z: torch.Tensor,
        feats: list[torch.Tensor],
        hole: torch.Tensor,
        image: torch.Tensor,
        inputs: tuple[torch.Tensor | None, list[torch.Tensor] | None, torch.Tensor | None] | None = None,
    ) -> torch.Tensor:
        """G2 on a latent z (N×Z×h×w) and cached features of ``image``; returns the raw full-size image
        N×3×H×W. ``inputs``: ``decoder_inputs(feats, hole, image)`` if already computed (K samples)."""
        f_e, skips, base = self.decoder_inputs(feats, hole, image) if inputs is None else inputs
        return self.gen_g(z, feats[-1], f_e, hole, skips, base)[-1]

    def complete(
        self,
        image: torch.Tensor,
        hole: torch.Tensor,
        noise: torch.Tensor | None = None,
        samples: int = 1,
        generator: torch.Generator | None = None,
        base: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Fill the hole; pixels outside it are copied from ``image``.

        noise None and samples == 1: deterministic fill with z = prior mean. Otherwise each of the
        ``samples`` fills draws z = μ + σ·ε (ε from ``noise`` S×N×Z×h×w if given, else from
        ``generator``). Returns N×3×H×W for the deterministic fill, S×N×3×H×W otherwise.
        ``base``: ``self.prefill(image, hole)`` when the caller has it already (see ``decoder_inputs``).
        """
        prior, feats = self.encode_masked(image, hole)
        if noise is None and samples == 1:
            raw = self.decode(prior.mu, feats, hole, image, self.decoder_inputs(feats, hole, image, base))
            return raw * hole + image * (1 - hole)
        if noise is None:
            noise = torch.randn((samples, *prior.mu.shape), generator=generator, dtype=prior.mu.dtype).to(
                prior.mu.device
            )
        if noise.dim() != 5 or noise.shape[1:] != prior.mu.shape:
            want = "×".join(map(str, prior.mu.shape))
            raise ValueError(f"noise must be S×{want}, got {tuple(noise.shape)}")
        inputs = self.decoder_inputs(feats, hole, image, base)  # the smooth fill once, not per sample
        return torch.stack(
            [
                self.decode(prior.rsample(eps), feats, hole, image, inputs) * hole + image * (1 - hole)
                for eps in noise
            ]
        )

    def latent_shape(self, height: int, width: int) -> tuple[int, int, int]:
        """Shape Z×h×w of the latent for an H×W image."""
        st = self.cfg.stride
        return (self.cfg.z_channels, height // st, width // st)


def build_generator(cfg: ModelConfig) -> nn.Module:
    """The generator side of ``cfg.family``: the dual-path network, or a baseline's generator.

    Every family offers ``complete(image, hole, noise=None, samples=1, generator=None)`` and ``cfg``.
    """
    if cfg.family == "dualpath":
        return DualPathInpainter(cfg)
    from .baseline_models import build_baseline_generator

    return build_baseline_generator(cfg)


@torch.no_grad()
def freeze_for_inference(net: DualPathInpainter) -> DualPathInpainter:
    """A copy without spectral-norm parametrizations, holding the effective (normalised) weights.

    In eval mode spectral norm divides each weight by a fixed σ from the stored u/v vectors; baking that
    in once saves recomputing it on every forward and gives a graph that exports cleanly to ONNX. The
    copy computes the same function as ``net.eval()`` (to float rounding) and is returned in eval mode.
    """
    was_training = net.training
    net.eval()
    plain = DualPathInpainter(dataclasses.replace(net.cfg, spectral_norm=False))
    state = {}
    for key in plain.state_dict():
        path, _, attr = key.rpartition(".")
        state[key] = getattr(net.get_submodule(path) if path else net, attr).detach().clone()
    plain.load_state_dict(state)
    net.train(was_training)
    device = next(net.parameters()).device  # the copy lives where the network does (CUDA too)
    return plain.to(device).eval().requires_grad_(False)


@torch.no_grad()
def convert_upsample(net: DualPathInpainter, kind: str = "resize") -> DualPathInpainter:
    """A copy of ``net`` whose decoders upsample with ``kind``: a warm start for training, not a drop-in.

    Every other weight is copied. Each deconv of a ``deconv`` network becomes the resize-conv kernel
    closest to its effective (spectrally normalised) weight (``layers.resize_kernel_from_deconv``); what
    the fit drops is the checkerboard part, plus whatever scale spectral norm then restores, so the copy
    needs fine-tuning. Returned in ``net``'s train/eval mode, on CPU.
    """
    if net.cfg.upsample == kind:
        raise ValueError(f"the network already upsamples with {kind!r}")
    if (net.cfg.upsample, kind) != ("deconv", "resize"):
        raise ValueError(f"only deconv → resize is supported, not {net.cfg.upsample} → {kind}")
    was_training = net.training
    net.eval()  # effective weights from the stored u/v: what the network computes at inference
    out = DualPathInpainter(dataclasses.replace(net.cfg, upsample=kind))
    source = net.state_dict()
    target = out.state_dict()
    for key, value in target.items():
        if key in source and source[key].shape == value.shape:
            value.copy_(source[key])
    for name, module in out.named_modules():
        if isinstance(module, nn.Upsample):  # Sequential(Upsample, conv) at name[:-2]
            layer_path = name.rpartition(".")[0]
            conv = out.get_submodule(layer_path)[1]
            deconv = net.get_submodule(layer_path)
            kernel = resize_kernel_from_deconv(deconv.weight)
            if parametrize.is_parametrized(conv, "weight"):
                conv.parametrizations.weight.original.copy_(kernel)
                _converge_spectral_norm(conv)
            else:
                conv.weight.copy_(kernel)
            conv.bias.copy_(deconv.bias)
    net.train(was_training)
    return out.train(was_training)


def _converge_spectral_norm(conv: nn.Module, iters: int = 50) -> None:
    """Run power iterations on a spectral-norm layer's u/v buffers, so that σ matches its new weight:
    each read of ``conv.weight`` in training mode runs one (the caller resets the mode)."""
    conv.train()
    for _ in range(iters):
        conv.weight  # noqa: B018 (the read updates u and v)
