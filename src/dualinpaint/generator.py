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

import torch
import torch.nn.functional as F
from torch import nn

from .config import ModelConfig
from .layers import ResBlock, ResBlockDecoder, ResBlockStart, ShortLongAttention, ToRGB, channels_at, sn


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

    N×3×H×W → list of features f[0..n_down]; f[k] has stride 2^(k+1) and channels_at(k) channels.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        ch = [channels_at(k, cfg.ngf, cfg.max_channels) for k in range(cfg.n_down + 1)]
        self.start = ResBlockStart(3, ch[0], leak=cfg.leak, use_sn=cfg.spectral_norm)
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

    Inputs: z N×Z×h×w, f_m N×C×h×w, f_e (encoder feature at the attention's resolution), hole N×1×H×W.
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
                ResBlockDecoder(cin + extra, cout, cout, norm=cfg.norm, leak=leak, use_sn=use_sn)
            )
            if i >= self.first_output:
                self.outputs[str(i)] = ToRGB(cout, leak=leak, use_sn=use_sn)
            cin = cout
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
        self, z: torch.Tensor, f_m: torch.Tensor, f_e: torch.Tensor | None, hole: torch.Tensor
    ) -> list[torch.Tensor]:
        out = self.stem(z)
        out = out + f_m if self.fuse is None else self.fuse(torch.cat([out, f_m], dim=1))
        results = []
        for i, decoder in enumerate(self.decoders):
            out = decoder(out)
            if self.attention is not None and i == self.cfg.attention_level:
                pre = f_e if self.attn_proj is None else self.attn_proj(f_e)
                small = F.interpolate(hole, size=out.shape[-2:], mode="bilinear", align_corners=True)
                out = self.attention(out, pre, small)
            if str(i) in self.outputs:
                rgb = self.outputs[str(i)](out)
                results.append(rgb)
                out = torch.cat([out, rgb], dim=1)
        return results


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
        if self.enc_c is None:
            both = self.enc_m(torch.cat([img_m, img_c], dim=0))
            feats_m = [f[:n] for f in both]
            top_c = both[-1][n:]
        else:
            feats_m = self.enc_m(img_m)
            top_c = self.enc_c(img_c)[-1]
        posterior = self.posterior_head(top_c)
        prior = self.prior_head(feats_m[-1])
        eps_p, eps_q = noise if noise is not None else (None, None)
        z_p, z_q = posterior.rsample(eps_p), prior.rsample(eps_q)
        f_m = feats_m[-1]
        f_e = self._features(feats_m, self.gen_g.encoder_level)
        if self.gen_r is None:

            def dup(t: torch.Tensor | None) -> torch.Tensor | None:
                return None if t is None else torch.cat([t, t], dim=0)

            outs = self.gen_g(torch.cat([z_p, z_q], dim=0), dup(f_m), dup(f_e), dup(hole))
            rec = [o[:n] for o in outs]
            gen = [o[n:] for o in outs]
        else:
            rec = self.gen_r(z_p, f_m, f_e, hole)
            gen = self.gen_g(z_q, f_m, f_e, hole)
        return TrainOutput(rec=rec, gen=gen, posterior=posterior, prior=prior)

    def encode_masked(self, image: torch.Tensor, hole: torch.Tensor) -> tuple[Gaussian, list[torch.Tensor]]:
        """Generation path encoder only: prior p(z | I_m) and the masked image's features."""
        self.check_input(image, hole)
        feats = self.enc_m(image * (1 - hole))
        return self.prior_head(feats[-1]), feats

    def decode(self, z: torch.Tensor, feats: list[torch.Tensor], hole: torch.Tensor) -> torch.Tensor:
        """G2 on a latent z (N×Z×h×w) and cached features; returns the raw full-size image N×3×H×W."""
        return self.gen_g(z, feats[-1], self._features(feats, self.gen_g.encoder_level), hole)[-1]

    def complete(
        self,
        image: torch.Tensor,
        hole: torch.Tensor,
        noise: torch.Tensor | None = None,
        samples: int = 1,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Fill the hole; pixels outside it are copied from ``image``.

        noise None and samples == 1: deterministic fill with z = prior mean. Otherwise each of the
        ``samples`` fills draws z = μ + σ·ε (ε from ``noise`` S×N×Z×h×w if given, else from
        ``generator``). Returns N×3×H×W for the deterministic fill, S×N×3×H×W otherwise.
        """
        prior, feats = self.encode_masked(image, hole)
        if noise is None and samples == 1:
            raw = self.decode(prior.mu, feats, hole)
            return raw * hole + image * (1 - hole)
        if noise is None:
            noise = torch.randn((samples, *prior.mu.shape), generator=generator, dtype=prior.mu.dtype).to(
                prior.mu.device
            )
        if noise.dim() != 5 or noise.shape[1:] != prior.mu.shape:
            want = "×".join(map(str, prior.mu.shape))
            raise ValueError(f"noise must be S×{want}, got {tuple(noise.shape)}")
        return torch.stack(
            [self.decode(prior.rsample(eps), feats, hole) * hole + image * (1 - hole) for eps in noise]
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
    return plain.eval().requires_grad_(False)
