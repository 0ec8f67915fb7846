"""Table I baselines that the shared trainer can train: Context Encoders and GLCIC (``model.family``).

- ``ce``: Context Encoders (Pathak et al., CVPR 2016): a conv encoder–decoder with a channel-wise
  bottleneck, L2 + adversarial loss, a DCGAN discriminator on the whole image.
- ``gl``: Globally and Locally Consistent Image Completion (Iizuka et al., SIGGRAPH 2017): a dilated
  completion network, MSE + α·adversarial loss, one discriminator with a global and a local branch.

Both generators are deterministic and offer the dual-path network's interface (``cfg``,
``complete(image, hole, noise=None, samples=1, generator=None)``, ``latent_shape``, ``check_input``), so
``checkpoint.load_model``, ``train.validate``, inference and evaluation use them unchanged. Their trainers
subclass ``train.Trainer``: the critic step and the generator step are written out below; the run loop,
checkpoints, exact resume, EMA, logging and torchrun all come from ``Trainer`` / ``train.train``.

Conventions as everywhere in the package: images N×3×H×W in [-1, 1], masks N×1×H×W with 1 = hole; H and W
multiples of ``cfg.stride`` = 2**(n_down+1). The generators' input is the masked image (1 − hole)·image
(the hole is 0, mid-grey, close to the mean colour both papers fill it with) concatenated with the hole
mask: 4 channels. GLCIC feeds the mask channel too; Context Encoders did not (its holes were either the
fixed centre or drawn from a fixed distribution); the extra channel only adds information.

Deviations from the papers, and why:

- Normalisation (generators): both papers use BatchNorm. Here it is ``model.norm`` (``instance`` or
  ``none``): instance norm has no running statistics, so a fill does not depend on the rest of the batch,
  batch-size-1 inference behaves as in training, and train and eval mode compute the same function.
- CE bottleneck: the paper's channel-wise fully connected layer (a separate h·w × h·w matrix per channel,
  followed by a 1×1 conv) and the released code's 4×4 "valid" conv to a 4000-d vector both fix the input
  size. The stand-in is a depthwise (channel-wise) 7×7 conv, which connects every cell of a ≤ 4×4 latent
  to every other one per channel (the preset's 256² / 2**6 = 4×4 latent: full reach, as the channel-wise
  FC), followed by a 1×1 conv to ``z_channels`` that mixes the channels (as the paper's stride-1 conv).
  It works at any size; on larger latents its reach is ±3 cells. CE's dropout (0.5) after the bottleneck
  is left out: training stays a pure function of the seed, and the package draws no unseeded randomness.
- CE reconstruction loss: the masked L2 inside the hole, a mean over hole pixels. CE predicted only the
  hole (plus a 4-px band around it whose L2 it weighted 10×); here the network predicts the whole image
  and only the hole reaches the composite, so the band weighting is not reproduced.
- CE discriminator: DCGAN's discriminator (4×4 stride-2 convs, LeakyReLU 0.2, BatchNorm after all but the
  first, a last conv over the remaining 4×4 map → one logit) on the whole composite image: the
  random-region setting of CE, in which the whole image is judged. It is built for ``data.size``.
- GL discriminator: as the paper (5×5 stride-2 convs down to 4×4, FC to 1024 per branch, concat, FC → 1)
  with widths ``disc_channels``·2^i capped at ``disc_max_channels`` and FC widths 16·``disc_channels``
  (1024 at the paper's 64). The local branch sees a (H/2)×(W/2) crop centred on the hole's bounding box,
  clamped inside the image, at the same place in the real and in the completed image. Built for
  ``data.size`` (its FC layers fix the input size, as in the paper).
- Discriminator normalisation: BatchNorm (as both papers; none on the first layer, DCGAN's rule) with the
  BCE, LSGAN and hinge losses; none with WGAN-GP, whose per-sample gradient penalty is not defined for a
  critic that mixes samples. ``model.spectral_norm`` adds spectral norm to the critics' layers (the
  generators never use it: neither paper does). BatchNorm batch statistics are per process, so a
  W-process run is not bit-identical to a 1-process run with a W-times batch (it is with WGAN-GP).
- GLCIC's three-phase schedule (T_C = 90k MSE-only iterations, T_D = 10k discriminator-only, then joint) is
  not reproduced: there is no config field for it, and training is joint from step 0 with the α weighting.
  GLCIC's Poisson-blending post-processing is not applied either (neither is any to the other models).
- Optimisers: the trainer's Adam (``optim.*``); GLCIC used Adadelta (see configs/table1/gl.yaml).
- ``complete`` is deterministic: ``samples`` > 1 (or ``noise`` S×…) returns S identical copies
  S×N×3×H×W, so best-of-K and sampling code paths work; the noise is ignored.

This module knows nothing of files, devices or the command line apart from the trainers, which reuse
``train.Trainer``'s device and process handling.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from .config import Config, ModelConfig
from .layers import channels_at, make_norm, sn
from .losses import composite, critic_loss, generator_adv_loss, gradient_penalty
from .train import Trainer, _set_requires_grad

CE_BOTTLENECK_KERNEL = 7  # depthwise kernel of CE's bottleneck: full reach on latents up to 4×4
GL_DILATIONS = (2, 4, 8, 16)  # Iizuka et al., Table 1


# --------------------------------------------------------------------------------------------- helpers


def dcgan_init(module: nn.Module) -> None:
    """DCGAN's initialisation (as Context Encoders' code): conv/linear weights N(0, 0.02), biases 0,
    normalisation scales N(1, 0.02)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d | nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d | nn.InstanceNorm2d) and m.affine:
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


def critic_norm(cfg: Config) -> str:
    """Normalisation of the baseline critics: BatchNorm (both papers), none with WGAN-GP."""
    return "none" if cfg.loss.gan_mode == "wgangp" else "batch"


def _norm2d(kind: str, channels: int) -> nn.Module:
    return nn.BatchNorm2d(channels) if kind == "batch" else make_norm(kind, channels)


def halvings_to(side: int, target: int = 4, ceil: bool = True) -> tuple[int, int]:
    """Stride-2 layers until the side is at most ``target`` (at least one), and the side they leave.

    Each layer maps s to ⌈s/2⌉ (5×5 convs, padding 2) or, with ``ceil`` false, to ⌊s/2⌋ (4×4, padding 1).
    """
    n = 0
    while side > target or n == 0:
        side, n = (math.ceil(side / 2) if ceil else side // 2), n + 1
    return n, side


def _check_input(image: torch.Tensor, hole: torch.Tensor, stride: int) -> None:
    if image.dim() != 4 or image.shape[1] != 3:
        raise ValueError(f"image must be N×3×H×W, got {tuple(image.shape)}")
    if (
        hole.dim() != 4
        or hole.shape[1] != 1
        or hole.shape[0] != image.shape[0]
        or hole.shape[-2:] != image.shape[-2:]
    ):
        raise ValueError(f"mask must be N×1×H×W matching image {tuple(image.shape)}, got {tuple(hole.shape)}")
    if image.shape[-2] % stride or image.shape[-1] % stride:
        raise ValueError(f"image size {image.shape[-2]}×{image.shape[-1]} must be a multiple of {stride}")


class _DeterministicInpainter(nn.Module):
    """The ``complete`` / ``latent_shape`` / ``check_input`` interface of a deterministic generator.

    Subclasses implement ``forward(image, hole) -> raw`` N×3×H×W in [-1, 1].
    """

    cfg: ModelConfig

    def check_input(self, image: torch.Tensor, hole: torch.Tensor) -> None:
        """Raise ValueError unless image is N×3×H×W and hole N×1×H×W with H, W multiples of the stride
        (and, with instance norm, at least twice the stride: the latent needs 2×2 cells)."""
        st = self.cfg.stride
        _check_input(image, hole, st)
        if self.cfg.norm == "instance" and min(image.shape[-2:]) < 2 * st:
            raise ValueError(
                f"image size {image.shape[-2]}×{image.shape[-1]} is too small for stride {st} with instance "
                f"norm: sides must be at least {2 * st} (a latent of 2×2 cells or more)"
            )

    @staticmethod
    def network_input(image: torch.Tensor, hole: torch.Tensor) -> torch.Tensor:
        """The generators' 4-channel input: the masked image (hole = 0) and the hole mask."""
        return torch.cat([image * (1 - hole), hole], dim=1)

    def complete(
        self,
        image: torch.Tensor,
        hole: torch.Tensor,
        noise: torch.Tensor | None = None,
        samples: int = 1,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Fill the hole; pixels outside it are copied from ``image`` (raw·hole + image·(1 − hole)).

        Deterministic: N×3×H×W when ``noise`` is None and ``samples`` == 1; otherwise S identical copies
        S×N×3×H×W (S = ``noise.shape[0]`` if given, else ``samples``). ``noise`` and ``generator`` are
        accepted for the common interface and not used.
        """
        fill = composite(self(image, hole), image, hole)
        if noise is None and samples == 1:
            return fill
        if noise is not None:
            if noise.dim() != 5 or noise.shape[1] != image.shape[0]:
                raise ValueError(f"noise must be S×{image.shape[0]}×…, got {tuple(noise.shape)}")
            samples = noise.shape[0]
        if samples < 1:
            raise ValueError(f"samples must be >= 1, got {samples}")
        return fill.unsqueeze(0).repeat(samples, 1, 1, 1, 1)

    def latent_shape(self, height: int, width: int) -> tuple[int, int, int]:
        """Nominal noise shape 1×h×w (h = H/stride): these models take no noise; any given is ignored."""
        st = self.cfg.stride
        return (1, height // st, width // st)


# ---------------------------------------------------------------------------------- Context Encoders


class ContextEncoder(_DeterministicInpainter):
    """Context Encoders' encoder–decoder (no skip connections).

    Encoder: ``n_down``+1 convs 4×4 stride 2 (4 → ngf·2^i channels, capped at ``max_channels``),
    ``model.norm`` after all but the first, LeakyReLU(``model.leak``; CE: 0.2). Bottleneck: depthwise 7×7
    conv (channel-wise, the size-agnostic stand-in for CE's channel-wise FC) → LeakyReLU → 1×1 conv to
    ``z_channels`` → LeakyReLU. Decoder: ``n_down``+1 transposed convs 4×4 stride 2 mirroring the encoder,
    ``model.norm`` + ReLU, the last to 3 channels + tanh.

    N×3×H×W image, N×1×H×W hole → raw N×3×H×W in [-1, 1]; H, W multiples of 2**(n_down+1).
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        levels = cfg.n_down + 1
        ch = [channels_at(k, cfg.ngf, cfg.max_channels) for k in range(levels)]
        enc: list[nn.Module] = []
        cin = 4
        for k in range(levels):
            enc += [nn.Conv2d(cin, ch[k], 4, 2, 1)]
            enc += [make_norm(cfg.norm, ch[k])] if k > 0 else []
            enc += [nn.LeakyReLU(cfg.leak)]
            cin = ch[k]
        self.encoder = nn.Sequential(*enc)
        top = ch[-1]
        k = CE_BOTTLENECK_KERNEL
        self.bottleneck = nn.Sequential(
            nn.Conv2d(top, top, k, 1, k // 2, groups=top),  # channel-wise: each channel to itself
            nn.LeakyReLU(cfg.leak),
            nn.Conv2d(top, cfg.z_channels, 1),  # across channels (CE's stride-1 conv)
            nn.LeakyReLU(cfg.leak),
        )
        dec: list[nn.Module] = []
        cin = cfg.z_channels
        for k in range(levels - 1, -1, -1):
            cout = ch[k - 1] if k > 0 else 3
            dec += [nn.ConvTranspose2d(cin, cout, 4, 2, 1)]
            dec += [make_norm(cfg.norm, cout), nn.ReLU()] if k > 0 else [nn.Tanh()]
            cin = cout
        self.decoder = nn.Sequential(*dec)
        dcgan_init(self)

    def forward(self, image: torch.Tensor, hole: torch.Tensor) -> torch.Tensor:
        self.check_input(image, hole)
        return self.decoder(self.bottleneck(self.encoder(self.network_input(image, hole))))


class DCGANDiscriminator(nn.Module):
    """DCGAN's discriminator on the whole image (Context Encoders' adversarial network).

    4×4 stride-2 convs (3 → ``disc_channels``·2^i, capped at ``disc_max_channels``) until the side is ≤ 4
    (6 at 256²), LeakyReLU 0.2, ``norm`` after all but the first; then one conv over the whole remaining map
    → one logit. Built for ``size``×``size`` inputs. N×3×size×size → N×1×1×1 (logits, no sigmoid).
    """

    def __init__(self, cfg: ModelConfig, size: int, norm: str = "batch") -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin, (n, side) = 3, halvings_to(size, ceil=False)
        for i in range(n):
            cout = channels_at(i, cfg.disc_channels, cfg.disc_max_channels)
            with_norm = i > 0 and norm != "none"
            layers.append(sn(nn.Conv2d(cin, cout, 4, 2, 1, bias=not with_norm), cfg.spectral_norm))
            layers += [_norm2d(norm, cout)] if with_norm else []
            layers.append(nn.LeakyReLU(0.2))
            cin = cout
        layers.append(sn(nn.Conv2d(cin, 1, side, bias=False), cfg.spectral_norm))
        self.body = nn.Sequential(*layers)
        self.size = size
        dcgan_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != (self.size, self.size):
            raise ValueError(f"this discriminator is built for {self.size}² inputs, got {tuple(x.shape)}")
        return self.body(x)


# --------------------------------------------------------------------------------------------- GLCIC


def _conv_block(cin: int, cout: int, k: int, stride: int, dilation: int, norm: str) -> list[nn.Module]:
    pad = dilation * (k - 1) // 2
    return [nn.Conv2d(cin, cout, k, stride, pad, dilation=dilation), make_norm(norm, cout), nn.ReLU()]


class GLCompletionNet(_DeterministicInpainter):
    """Iizuka et al.'s completion network (their Table 1), widths scaled by ``ngf`` (paper: 64).

    conv 5×5 (c0) → per level k = 1..n_down+1: conv 3×3 stride 2 (c_k), conv 3×3 (c_k) [+ one more conv at
    the last level] → dilated 3×3 convs, dilation 2, 4, 8, 16 → two convs 3×3 → per level back up: deconv
    4×4 stride 2 (c_k) and conv 3×3 (c_k; c0/2 at full size) → conv 3×3 to 3 + tanh (the paper's sigmoid,
    for images in [-1, 1]). c_k = ngf·2^k capped at ``max_channels``. ``model.norm`` + ReLU after every
    conv but the last. With n_down = 1 (stride 4) this is the paper's network layer for layer.

    N×3×H×W image, N×1×H×W hole → raw N×3×H×W in [-1, 1]; H, W multiples of 2**(n_down+1).
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        levels = cfg.n_down + 1
        norm = cfg.norm
        ch = [channels_at(k, cfg.ngf, cfg.max_channels) for k in range(levels + 1)]
        layers = _conv_block(4, ch[0], 5, 1, 1, norm)
        for k in range(1, levels + 1):
            layers += _conv_block(ch[k - 1], ch[k], 3, 2, 1, norm)
            layers += _conv_block(ch[k], ch[k], 3, 1, 1, norm)
        layers += _conv_block(ch[-1], ch[-1], 3, 1, 1, norm)
        for d in GL_DILATIONS:
            layers += _conv_block(ch[-1], ch[-1], 3, 1, d, norm)
        layers += _conv_block(ch[-1], ch[-1], 3, 1, 1, norm)
        layers += _conv_block(ch[-1], ch[-1], 3, 1, 1, norm)
        cin = ch[-1]
        for k in range(levels - 1, -1, -1):
            layers += [nn.ConvTranspose2d(cin, ch[k], 4, 2, 1), make_norm(norm, ch[k]), nn.ReLU()]
            cout = ch[k] if k > 0 else max(ch[0] // 2, 1)
            layers += _conv_block(ch[k], cout, 3, 1, 1, norm)
            cin = cout
        layers += [nn.Conv2d(cin, 3, 3, 1, 1), nn.Tanh()]
        self.body = nn.Sequential(*layers)

    def forward(self, image: torch.Tensor, hole: torch.Tensor) -> torch.Tensor:
        self.check_input(image, hole)
        return self.body(self.network_input(image, hole))


def hole_crop_origins(hole: torch.Tensor, crop_h: int, crop_w: int) -> list[tuple[int, int]]:
    """Top-left corners (y, x) of crop_h×crop_w windows centred on each hole's bounding box.

    The window is clamped inside the image; a mask without a hole pixel gives the centred window.
    hole N×1×H×W (1 = hole, > 0.5 counts) → N pairs of ints.
    """
    h, w = hole.shape[-2:]
    if not (0 < crop_h <= h and 0 < crop_w <= w):
        raise ValueError(f"crop {crop_h}×{crop_w} must fit in the {h}×{w} image")
    inside = hole[:, 0].detach() > 0.5
    rows, cols = inside.any(dim=2), inside.any(dim=1)  # N×H, N×W

    def span(flags: torch.Tensor, n: int) -> tuple[list[int], list[int], list[bool]]:
        first = flags.int().argmax(dim=1)
        last = n - 1 - flags.flip(1).int().argmax(dim=1)
        return first.tolist(), last.tolist(), flags.any(dim=1).tolist()

    (t, b, any_), (left, right, _) = span(rows, h), span(cols, w)
    origins = []
    for i in range(hole.shape[0]):
        if any_[i]:  # centre of the box [t, b] × [l, r] is ((t + b + 1) / 2, (l + r + 1) / 2)
            y0, x0 = (t[i] + b[i] + 1 - crop_h) // 2, (left[i] + right[i] + 1 - crop_w) // 2
        else:
            y0, x0 = (h - crop_h) // 2, (w - crop_w) // 2
        origins.append((min(max(y0, 0), h - crop_h), min(max(x0, 0), w - crop_w)))
    return origins


def crop_around_hole(x: torch.Tensor, hole: torch.Tensor, crop_h: int, crop_w: int) -> torch.Tensor:
    """Differentiable slices of ``x`` (N×C×H×W) centred on each hole: N×C×crop_h×crop_w."""
    origins = hole_crop_origins(hole, crop_h, crop_w)
    return torch.stack([x[i, :, y : y + crop_h, c : c + crop_w] for i, (y, c) in enumerate(origins)])


class _GLBranch(nn.Module):
    """5×5 stride-2 convs until the side is ≤ 4, then flatten → FC → ReLU. N×3×s×s → N×F."""

    def __init__(self, cfg: ModelConfig, size: int, features: int, norm: str) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin, (n, side) = 3, halvings_to(size)
        for i in range(n):
            cout = channels_at(i, cfg.disc_channels, cfg.disc_max_channels)
            with_norm = i > 0 and norm != "none"
            layers.append(sn(nn.Conv2d(cin, cout, 5, 2, 2, bias=not with_norm), cfg.spectral_norm))
            layers += [_norm2d(norm, cout)] if with_norm else []
            layers.append(nn.ReLU())
            cin = cout
        self.convs = nn.Sequential(*layers)
        self.fc = nn.Sequential(
            nn.Flatten(), sn(nn.Linear(cin * side * side, features), cfg.spectral_norm), nn.ReLU()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.convs(x))


class GLDiscriminator(nn.Module):
    """GLCIC's context discriminator: a global branch on the whole image and a local branch on a
    (size/2)² crop centred on the hole, each → FC 16·``disc_channels`` (paper: 1024), concatenated → FC → 1.

    Built for ``size``×``size`` images. ``forward(x, hole)``: x N×3×size×size, hole N×1×size×size →
    N×1 logits (no sigmoid). The crop is a slice, so gradients reach x through both branches.
    """

    def __init__(self, cfg: ModelConfig, size: int, norm: str = "batch") -> None:
        super().__init__()
        features = 16 * cfg.disc_channels
        self.size, self.local_size = size, size // 2
        self.global_branch = _GLBranch(cfg, size, features, norm)
        self.local_branch = _GLBranch(cfg, self.local_size, features, norm)
        self.head = sn(nn.Linear(2 * features, 1, bias=False), cfg.spectral_norm)

    def forward(self, x: torch.Tensor, hole: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != (self.size, self.size):
            raise ValueError(f"this discriminator is built for {self.size}² inputs, got {tuple(x.shape)}")
        local = crop_around_hole(x, hole, self.local_size, self.local_size)
        return self.head(torch.cat([self.global_branch(x), self.local_branch(local)], dim=1))


# ------------------------------------------------------------------------------------------- trainers


class NoCritic(nn.Module):
    """Fills the trainer's second critic slot (D1, the dual-path reconstruction critic) for families with
    one discriminator: no parameters, no state; calling it is an error."""

    def forward(self, *args: object) -> torch.Tensor:
        raise RuntimeError("this model family has a single discriminator (d_gen); d_rec is a placeholder")


@dataclass
class BaselineOutput:
    """One training forward pass of a baseline generator: its raw full-size output N×3×H×W."""

    raw: torch.Tensor


def masked_reconstruction(
    raw: torch.Tensor, image: torch.Tensor, hole: torch.Tensor, norm: str
) -> torch.Tensor:
    """Per-sample mean of |raw − image|^p over the hole's pixels and channels (p = 2 for ``l2``, 1 for
    ``l1``), averaged over the batch; a sample without a hole contributes 0."""
    diff = raw - image
    err = diff.pow(2) if norm == "l2" else diff.abs()
    per_sample = (err * hole).sum(dim=(1, 2, 3)) / (hole.sum(dim=(1, 2, 3)) * raw.shape[1]).clamp_min(1.0)
    return per_sample.mean()


class _BaselineTrainer(Trainer):
    """Shared D and G steps of the single-discriminator baselines.

    D step: ``critic_loss`` on real images vs detached composites (+ λ_gp · gradient penalty with
    WGAN-GP). G step: λ_rec · masked reconstruction (``loss.rec_norm``) + λ_g · adversarial loss of the
    composite. ``d_gen`` is the discriminator, ``d_rec`` a parameter-free placeholder.
    """

    def critic(self, x: torch.Tensor, hole: torch.Tensor) -> torch.Tensor:
        """The discriminator's logits for images x (N×3×H×W) with holes ``hole``."""
        raise NotImplementedError

    def forward(
        self, image: torch.Tensor, hole: torch.Tensor, positions: list[int], round_: int
    ) -> BaselineOutput:
        with self.autocast():
            raw = self.net_forward(image, hole)
        return BaselineOutput(raw.float())

    def d_step(
        self, image: torch.Tensor, hole: torch.Tensor, out: BaselineOutput, positions: list[int], round_: int
    ) -> dict[str, float]:
        """One discriminator update: real images vs detached composites of the generator's output."""
        L = self.cfg.loss
        _set_requires_grad([self.d_gen], True)
        fake = composite(out.raw.detach(), image, hole)
        with self.autocast():
            d_real, d_fake = self.critic(image, hole).float(), self.critic(fake, hole).float()
        loss_adv = critic_loss(L.gan_mode, d_real, d_fake)
        gp = image.new_zeros(())
        if L.gan_mode == "wgangp":
            alpha = self._per_sample(positions, round_, 3, (1, 1, 1))
            with self.autocast():
                gp = gradient_penalty(lambda x: self.critic(x, hole), image, fake, alpha).float()
        half = 0.5 if L.d_loss_half else 1.0
        total = half * loss_adv + L.lambda_gp * gp
        self._check_finite(total, "critic")
        self.opt_d.zero_grad(set_to_none=True)
        total.backward()
        self._apply(self.opt_d, list(self.d_gen.parameters()))
        return {
            "d/adv": loss_adv.item(),
            "d/gp": gp.item(),
            "d/total": total.item(),
            "d/real_minus_fake": (d_real.mean() - d_fake.mean()).item(),
        }

    def g_terms(
        self, image: torch.Tensor, hole: torch.Tensor, out: BaselineOutput
    ) -> dict[str, torch.Tensor]:
        """The unweighted generator terms: masked reconstruction and adversarial loss of the composite."""
        L = self.cfg.loss
        rec = masked_reconstruction(out.raw, image, hole, L.rec_norm)
        with self.autocast():
            adv = generator_adv_loss(L.gan_mode, self.critic(composite(out.raw, image, hole), hole).float())
        return {"rec": rec, "adv": adv}

    def g_total(self, t: dict[str, torch.Tensor], scales: int = 1) -> torch.Tensor:
        """The generator objective: λ_rec · reconstruction + λ_g · adversarial."""
        L = self.cfg.loss
        return L.lambda_rec * t["rec"] + L.lambda_g * t["adv"]

    def g_step(self, image: torch.Tensor, hole: torch.Tensor, out: BaselineOutput) -> dict[str, float]:
        """One generator update with the discriminator frozen."""
        _set_requires_grad([self.d_gen], False)
        terms = self.g_terms(image, hole, out)
        total = self.g_total(terms)
        self._check_finite(total, "generator")
        self.opt_g.zero_grad(set_to_none=True)
        total.backward()
        self._apply(self.opt_g, list(self.net.parameters()))
        _set_requires_grad([self.d_gen], True)
        if self.ema is not None:
            self._update_ema()
        return {"g/total": total.item(), **{f"g/{k}": v.item() for k, v in terms.items()}}


class CETrainer(_BaselineTrainer):
    """Context Encoders: ContextEncoder + a DCGAN discriminator on the whole composite image."""

    @staticmethod
    def build_networks(cfg: Config) -> tuple[nn.Module, nn.Module, nn.Module]:
        return (
            ContextEncoder(cfg.model),
            NoCritic(),
            DCGANDiscriminator(cfg.model, cfg.data.size, critic_norm(cfg)),
        )

    def critic(self, x: torch.Tensor, hole: torch.Tensor) -> torch.Tensor:
        return self.d_gen(x)


class GLTrainer(_BaselineTrainer):
    """GLCIC: GLCompletionNet + the global-and-local discriminator (one module, as in the paper)."""

    @staticmethod
    def build_networks(cfg: Config) -> tuple[nn.Module, nn.Module, nn.Module]:
        return (
            GLCompletionNet(cfg.model),
            NoCritic(),
            GLDiscriminator(cfg.model, cfg.data.size, critic_norm(cfg)),
        )

    def critic(self, x: torch.Tensor, hole: torch.Tensor) -> torch.Tensor:
        return self.d_gen(x, hole)


BASELINE_TRAINERS: dict[str, type[Trainer]] = {"ce": CETrainer, "gl": GLTrainer}
BASELINE_GENERATORS: dict[str, type[nn.Module]] = {"ce": ContextEncoder, "gl": GLCompletionNet}


def build_baseline_generator(cfg: ModelConfig) -> nn.Module:
    """The generator of a baseline family (``ce`` or ``gl``) from the model config alone."""
    try:
        return BASELINE_GENERATORS[cfg.family](cfg)
    except KeyError:
        raise ValueError(f"no baseline generator for family {cfg.family!r}; valid: ce, gl") from None
