"""Table I baselines that the shared trainer can train (``model.family``): their networks.

- ``ce``: Context Encoders (Pathak et al., CVPR 2016): a conv encoder–decoder with a channel-wise
  bottleneck, L2 + adversarial loss, a DCGAN discriminator on the whole image.
- ``gl``: Globally and Locally Consistent Image Completion (Iizuka et al., SIGGRAPH 2017): a dilated
  completion network, MSE + α·adversarial loss, one discriminator with a global and a local branch.
- ``gntipt``: Generative Image Inpainting with Contextual Attention (Yu et al., CVPR 2018; "DeepFill v1",
  GntIpt in Table I): a coarse network and a refinement network whose contextual-attention branch copies
  background feature patches into the hole beside a dilated-conv branch; WGAN-GP with a global and a
  local critic. Layer for layer the released TensorFlow code (JiahuiYu/generative_inpainting, v1.0.0).
- ``gmcnn``: Image Inpainting via Generative Multi-column CNNs (Wang et al., NeurIPS 2018): three
  columns (7×7, 5×5, 3×3 convs with dilations) merged at full resolution; confidence-driven L1, ID-MRF on
  VGG19 features, WGAN-GP with a global and a local critic. Layer for layer the released TensorFlow code
  (shepnerd/inpainting_gmcnn, tensorflow/net/network.py).

Every generator is deterministic and offers the dual-path network's interface (``cfg``,
``complete(image, hole, noise=None, samples=1, generator=None)``, ``latent_shape``, ``check_input``), so
``checkpoint.load_model``, ``train.validate``, inference and evaluation use them unchanged. Their trainers
(the critic step and the generator step written out, and the losses) are in ``baseline_trainers.py``;
this module imports nothing from the trainers or from ``train.py``.

Conventions as everywhere in the package: images N×3×H×W in [-1, 1], masks N×1×H×W with 1 = hole; H and W
multiples of ``cfg.stride`` = 2**(n_down+1). The CE and GL generators' input is the masked image
(1 − hole)·image (the hole is 0, mid-grey, close to the mean colour both papers fill it with) concatenated
with the hole mask: 4 channels. GLCIC feeds the mask channel too; Context Encoders did not (its holes were
either the fixed centre or drawn from a fixed distribution); the extra channel only adds information.
GntIpt and GMCNN read the originals' 5 channels: masked image, a plane of ones (marks the image border
under zero padding), the mask.

Deviations from the papers, and why:

- Normalisation (CE / GL generators): both papers use BatchNorm. Here it is ``model.norm`` (``instance`` or
  ``none``): instance norm has no running statistics, so a fill does not depend on the rest of the batch,
  batch-size-1 inference behaves as in training, and train and eval mode compute the same function.
  GntIpt and GMCNN have no normalisation (as their code); ``model.norm`` is not used by them.
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
- Local critics of GntIpt and GMCNN: both originals train on one 128×128 rectangle per batch at 256² and
  crop exactly its box. Holes here are free-form and per sample, so the local critic sees the same
  (H/2)×(W/2) window centred on each hole's bounding box as GLCIC's local branch (128² at 256²).
- Contextual attention: as the released layer (3×3 patches of the 2×-downscaled features, cosine
  similarity, attention propagation with a 3×3 identity kernel along both axes, softmax scale 10, pasting
  of the 4×4 full-resolution patches by a transposed conv, / 4), except that a background cell counts as
  hole when any of its pixels is a hole pixel (max pooling; the original's nearest-neighbour sampling
  misses thin free-form strokes) and the mask is per sample (the original used one mask per batch).
- GMCNN resamplings: PyTorch's nearest-neighbour upsampling has no ``align_corners``; the TF code's
  ``resize_nearest_neighbor(align_corners=True)`` picks slightly different source pixels. Bilinear
  upsampling is ``align_corners=True`` as the original. "SAME" zero padding is symmetric here (TF pads
  stride-2 convs one pixel more at the bottom/right); shapes and parameter counts are the same.
- Discriminator normalisation (CE / GL): BatchNorm (as both papers; none on the first layer, DCGAN's rule)
  with the BCE, LSGAN and hinge losses; none with WGAN-GP, whose per-sample gradient penalty is not
  defined for a critic that mixes samples. ``model.spectral_norm`` adds spectral norm to the critics'
  layers (the generators never use it: no paper does). BatchNorm batch statistics are per process, so a
  W-process run is not bit-identical to a 1-process run with a W-times batch (it is with WGAN-GP).
- GLCIC's three-phase schedule (T_C = 90k MSE-only iterations, T_D = 10k discriminator-only, then joint) is
  not reproduced: there is no config field for it, and training is joint from step 0 with the α weighting.
  GLCIC's Poisson-blending post-processing is not applied either (neither is any to the other models).
  GntIpt's and GMCNN's optional reconstruction-only pretraining is not reproduced either.
- Optimisers: the trainer's Adam (``optim.*``); GLCIC used Adadelta (see configs/table1/gl.yaml).
- ``complete`` is deterministic: ``samples`` > 1 (or ``noise`` S×…) returns S identical copies
  S×N×3×H×W, so best-of-K and sampling code paths work; the noise is ignored.

This module knows nothing of files, devices, trainers or the command line.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from .config import Config, ModelConfig
from .layers import channels_at, make_norm, sn
from .losses import composite

CE_BOTTLENECK_KERNEL = 7  # depthwise kernel of CE's bottleneck: full reach on latents up to 4×4
GL_DILATIONS = (2, 4, 8, 16)  # Iizuka et al., Table 1; also DeepFill v1's and GMCNN's dilations


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


# ------------------------------------------------------------------------- shared by GntIpt and GMCNN


def tf_init(module: nn.Module) -> None:
    """TensorFlow's default initialisation, as both originals (``tf.layers``): Glorot-uniform conv / dense
    weights, zero biases."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def gen_conv(
    cin: int, cout: int, k: int = 3, stride: int = 1, dilation: int = 1, act: str = "elu"
) -> nn.Module:
    """The originals' ``gen_conv``: a k×k conv with "SAME" zero padding, then ELU (``relu`` / ``none``)."""
    conv = nn.Conv2d(cin, cout, k, stride, dilation * (k - 1) // 2, dilation=dilation)
    if act == "none":
        return conv
    return nn.Sequential(conv, nn.ELU() if act == "elu" else nn.ReLU())


class Upsample(nn.Module):
    """Resize to ``scale``× with ``mode`` (bilinear and bicubic with ``align_corners``, as the originals)."""

    def __init__(self, scale: int = 2, mode: str = "nearest") -> None:
        super().__init__()
        self.scale, self.mode = scale, mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = (x.shape[-2] * self.scale, x.shape[-1] * self.scale)
        if self.mode == "nearest":
            return F.interpolate(x, size=size, mode="nearest")
        return F.interpolate(x, size=size, mode=self.mode, align_corners=True)


def gen_deconv(cin: int, cout: int) -> nn.Module:
    """DeepFill's ``gen_deconv``: nearest-neighbour 2× upsampling, then a 3×3 ``gen_conv``."""
    return nn.Sequential(Upsample(2), gen_conv(cin, cout, 3))


def five_channel_input(image: torch.Tensor, hole: torch.Tensor) -> torch.Tensor:
    """The originals' generator input: masked image (hole = 0), a plane of ones, the mask. N×5×H×W."""
    return torch.cat([image * (1 - hole), torch.ones_like(hole), hole], dim=1)


def _check_cnum(cfg: ModelConfig, n_down: int, name: str) -> None:
    if cfg.n_down != n_down:
        raise ValueError(
            f"model.n_down={cfg.n_down}: {name}'s fixed layout needs model.n_down={n_down} "
            f"(sides multiples of {2 ** (n_down + 1)})"
        )
    if cfg.ngf < 2:
        raise ValueError(f"model.ngf={cfg.ngf}: {name} needs ngf >= 2 (its last layers have ngf/2 channels)")


# -------------------------------------------------------------------------- GntIpt (DeepFill v1)

CA_RATE = 2  # contextual attention matches on 2×-downscaled features (rate=2 in the original)
CA_SOFTMAX_SCALE = 10.0


def contextual_attention(
    f: torch.Tensor,
    b: torch.Tensor,
    hole: torch.Tensor,
    ksize: int = 3,
    rate: int = CA_RATE,
    fuse_k: int = 3,
    softmax_scale: float = CA_SOFTMAX_SCALE,
    fuse: bool = True,
) -> torch.Tensor:
    """DeepFill v1's contextual attention: rebuild foreground features ``f`` from background patches of ``b``.

    f, b: N×C×H×W features (the same map in the generator), H and W multiples of ``rate`` (even); hole
    N×1×H'×W' (1 = hole) at any multiple of the feature size. Matching runs on ``rate``×-downscaled
    (nearest) features: every ``ksize``² patch of b whose cells are all known is a candidate, scored by
    its cosine similarity with f's patch (b's patch normalised; f's not, as the original); the scores
    are propagated along both image axes with a ``fuse_k``² identity kernel (attention propagation),
    softmax'ed with ``softmax_scale`` over the candidates, and the matching full-resolution
    (2·rate)² patches of b are pasted with those weights (a transposed conv, / 4 for their overlap).
    Returns N×C×H×W. A sample without a known cell gets zeros.
    """
    if f.shape != b.shape:
        raise ValueError(f"foreground and background must have the same shape, got {f.shape} and {b.shape}")
    if rate % 2:
        raise ValueError(f"rate must be even, got {rate}")
    n, c, height, width = b.shape
    h, w = height // rate, width // rate
    if h * rate != height or w * rate != width:
        raise ValueError(f"feature size {height}×{width} must be a multiple of rate {rate}")
    k_raw, cells = 2 * rate, h * w
    # full-resolution patches for pasting: "SAME" padding of a 2r×2r, stride-r window is r/2 per side
    raw = F.unfold(b, k_raw, stride=rate, padding=rate // 2)  # N×(C·k_raw²)×cells
    raw = raw.view(n, c, k_raw, k_raw, cells).permute(0, 4, 1, 2, 3)  # N×cells×C×k×k
    fs = F.interpolate(f, size=(h, w), mode="nearest")
    bs = F.interpolate(b, size=(h, w), mode="nearest")
    patches = F.unfold(bs, ksize, padding=ksize // 2).view(n, c, ksize, ksize, cells).permute(0, 4, 1, 2, 3)
    norms = patches.flatten(2).norm(dim=2).clamp_min(1e-4)  # N×cells
    patches = patches / norms[..., None, None, None]
    cell_hole = F.adaptive_max_pool2d(hole.to(b.dtype), (h, w))  # a cell with any hole pixel is hole
    valid = (F.unfold(cell_hole, ksize, padding=ksize // 2).mean(dim=1) == 0).to(b.dtype)  # N×cells
    eye = torch.eye(fuse_k, dtype=b.dtype, device=b.device).view(1, 1, fuse_k, fuse_k)
    out = []
    for i in range(n):
        y = F.conv2d(fs[i : i + 1], patches[i], padding=ksize // 2)  # 1×cells(background)×h×w(foreground)
        if fuse:  # propagate along x in row-major order, then along y in column-major order
            y = F.conv2d(y.reshape(1, 1, cells, cells), eye, padding=fuse_k // 2)
            y = y.view(1, h, w, h, w).permute(0, 2, 1, 4, 3).reshape(1, 1, cells, cells)
            y = F.conv2d(y, eye, padding=fuse_k // 2)
            y = y.view(1, w, h, w, h).permute(0, 2, 1, 4, 3).reshape(1, cells, h, w)
        mm = valid[i].view(1, cells, 1, 1)
        y = F.softmax(y * mm * softmax_scale, dim=1) * mm  # as the original: masked scores are 0, not −inf
        out.append(F.conv_transpose2d(y, raw[i], stride=rate, padding=rate // 2) / 4.0)
    return torch.cat(out, dim=0)


def _dilated(prefix: str, ch: int, k: int, extra: bool = False) -> list[tuple[str, nn.Module]]:
    rates = (*GL_DILATIONS, 32) if extra else GL_DILATIONS
    return [(f"{prefix}{7 + i}_atrous", gen_conv(ch, ch, k, 1, d)) for i, d in enumerate(rates)]


class GntIptRefinement(nn.Module):
    """DeepFill v1's second stage: a dilated-conv ("hallucination") branch and a contextual-attention
    branch on the pasted coarse result, concatenated and decoded. N×5×H×W (+ hole) → N×3×H×W."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv_branch = nn.Sequential(
            OrderedDict(
                [
                    ("xconv1", gen_conv(5, c, 5)),
                    ("xconv2_downsample", gen_conv(c, c, 3, 2)),
                    ("xconv3", gen_conv(c, 2 * c)),
                    ("xconv4_downsample", gen_conv(2 * c, 2 * c, 3, 2)),
                    ("xconv5", gen_conv(2 * c, 4 * c)),
                    ("xconv6", gen_conv(4 * c, 4 * c)),
                    *_dilated("xconv", 4 * c, 3),
                ]
            )
        )
        self.attention_in = nn.Sequential(
            OrderedDict(
                [
                    ("pmconv1", gen_conv(5, c, 5)),
                    ("pmconv2_downsample", gen_conv(c, c, 3, 2)),
                    ("pmconv3", gen_conv(c, 2 * c)),
                    ("pmconv4_downsample", gen_conv(2 * c, 4 * c, 3, 2)),
                    ("pmconv5", gen_conv(4 * c, 4 * c)),
                    ("pmconv6", gen_conv(4 * c, 4 * c, act="relu")),
                ]
            )
        )
        self.attention_out = nn.Sequential(
            OrderedDict([("pmconv9", gen_conv(4 * c, 4 * c)), ("pmconv10", gen_conv(4 * c, 4 * c))])
        )
        self.decoder = nn.Sequential(
            OrderedDict(
                [
                    ("allconv11", gen_conv(8 * c, 4 * c)),
                    ("allconv12", gen_conv(4 * c, 4 * c)),
                    ("allconv13_upsample", gen_deconv(4 * c, 2 * c)),
                    ("allconv14", gen_conv(2 * c, 2 * c)),
                    ("allconv15_upsample", gen_deconv(2 * c, c)),
                    ("allconv16", gen_conv(c, c // 2)),
                    ("allconv17", gen_conv(c // 2, 3, act="none")),
                ]
            )
        )

    def forward(self, x: torch.Tensor, hole: torch.Tensor) -> torch.Tensor:
        hallucinated = self.conv_branch(x)
        pm = self.attention_in(x)
        pm = self.attention_out(contextual_attention(pm, pm, hole))
        return self.decoder(torch.cat([hallucinated, pm], dim=1))


class GntIpt(_DeterministicInpainter):
    """DeepFill v1 (Yu et al., CVPR 2018): coarse network → paste into the image → refinement network.

    Widths as the released code with cnum = ``model.ngf`` (32 there). Coarse: conv 5×5 (c), two 3×3
    stride-2 levels (2c, 4c), two convs, dilated 3×3 convs (rates 2, 4, 8, 16), two convs, two
    nearest-2×-upsample + conv levels (2c, c), conv (c/2), conv to 3, clipped to [-1, 1]. Refinement:
    :class:`GntIptRefinement`. ELU after every conv but the last of each stage (ReLU before the
    attention), no normalisation. Sides must be multiples of 8 (``model.n_down`` = 2): the attention
    matches at 1/8 resolution.

    ``forward(image, hole)`` → the refined raw output N×3×H×W; ``forward(image, hole, stages=True)`` →
    (coarse, refined), both raw (the trainer's losses need both).
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        _check_cnum(cfg, 2, "gntipt")
        self.cfg = cfg
        c = cfg.ngf
        self.coarse = nn.Sequential(
            OrderedDict(
                [
                    ("conv1", gen_conv(5, c, 5)),
                    ("conv2_downsample", gen_conv(c, 2 * c, 3, 2)),
                    ("conv3", gen_conv(2 * c, 2 * c)),
                    ("conv4_downsample", gen_conv(2 * c, 4 * c, 3, 2)),
                    ("conv5", gen_conv(4 * c, 4 * c)),
                    ("conv6", gen_conv(4 * c, 4 * c)),
                    *_dilated("conv", 4 * c, 3),
                    ("conv11", gen_conv(4 * c, 4 * c)),
                    ("conv12", gen_conv(4 * c, 4 * c)),
                    ("conv13_upsample", gen_deconv(4 * c, 2 * c)),
                    ("conv14", gen_conv(2 * c, 2 * c)),
                    ("conv15_upsample", gen_deconv(2 * c, c)),
                    ("conv16", gen_conv(c, c // 2)),
                    ("conv17", gen_conv(c // 2, 3, act="none")),
                ]
            )
        )
        self.refine = GntIptRefinement(c)
        tf_init(self)

    def check_input(self, image: torch.Tensor, hole: torch.Tensor) -> None:
        """Raise ValueError unless image is N×3×H×W and hole N×1×H×W with H, W multiples of the stride."""
        _check_input(image, hole, self.cfg.stride)

    def forward(
        self, image: torch.Tensor, hole: torch.Tensor, stages: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        self.check_input(image, hole)
        coarse = self.coarse(five_channel_input(image, hole)).clamp(-1, 1)
        pasted = coarse * hole + image * (1 - hole)
        fine = self.refine(five_channel_input(pasted, hole), hole).clamp(-1, 1)
        return (coarse, fine) if stages else fine


# -------------------------------------------------------------------------------------------- GMCNN


class GMCNN(_DeterministicInpainter):
    """Wang et al.'s generative multi-column network (the released TensorFlow generator).

    Three columns on the 5-channel input, cnum = ``model.ngf`` (32 there), each: conv (c), stride-2 conv
    (2c), conv, stride-2 conv (4c), two convs, dilated convs (rates 2, 4, 8, 16, and 32 when c > 32, as
    the original), two convs, at 1/4 resolution. Column 1: 7×7 convs, bilinear 4× upsampling (4c).
    Column 2: 5×5 convs, nearest 2× + conv 3×3 (2c) + conv 5×5 (2c), bilinear 2× (2c). Column 3: a 5×5
    first conv then 3×3 convs, nearest 2× + two convs (2c), nearest 2× + conv (c) + conv (c/2). The
    columns are concatenated (6.5c channels), then conv 3×3 (c/2) and conv 3×3 to 3, clipped to [-1, 1].
    ELU after every conv but the last, no normalisation. Sides must be multiples of 4 (``model.n_down`` = 1).
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        _check_cnum(cfg, 1, "gmcnn")
        self.cfg = cfg
        c = cfg.ngf
        extra = c > 32

        def trunk(k: int, first_k: int) -> list[tuple[str, nn.Module]]:
            return [
                ("conv1", gen_conv(5, c, first_k)),
                ("conv2_downsample", gen_conv(c, 2 * c, k, 2)),
                ("conv3", gen_conv(2 * c, 2 * c, k)),
                ("conv4_downsample", gen_conv(2 * c, 4 * c, k, 2)),
                ("conv5", gen_conv(4 * c, 4 * c, k)),
                ("conv6", gen_conv(4 * c, 4 * c, k)),
                *_dilated("conv", 4 * c, k, extra),
                ("conv11", gen_conv(4 * c, 4 * c, k)),
                ("conv12", gen_conv(4 * c, 4 * c, k)),
            ]

        self.column1 = nn.Sequential(OrderedDict([*trunk(7, 7), ("up", Upsample(4, "bilinear"))]))
        self.column2 = nn.Sequential(
            OrderedDict(
                [
                    *trunk(5, 5),
                    ("conv13_upsample", nn.Sequential(Upsample(2), gen_conv(4 * c, 2 * c, 3))),
                    ("conv14", gen_conv(2 * c, 2 * c, 5)),
                    ("up", Upsample(2, "bilinear")),
                ]
            )
        )
        self.column3 = nn.Sequential(
            OrderedDict(
                [
                    *trunk(3, 5),
                    ("conv13_upsample", nn.Sequential(Upsample(2), gen_conv(4 * c, 2 * c, 3))),
                    ("conv14", gen_conv(2 * c, 2 * c, 3)),
                    ("conv15_upsample", nn.Sequential(Upsample(2), gen_conv(2 * c, c, 3))),
                    ("conv16", gen_conv(c, c // 2, 3)),
                ]
            )
        )
        merged = 4 * c + 2 * c + c // 2
        self.merge = nn.Sequential(
            OrderedDict(
                [("conv17", gen_conv(merged, c // 2, 3)), ("conv18", gen_conv(c // 2, 3, act="none"))]
            )
        )
        tf_init(self)

    def check_input(self, image: torch.Tensor, hole: torch.Tensor) -> None:
        """Raise ValueError unless image is N×3×H×W and hole N×1×H×W with H, W multiples of the stride."""
        _check_input(image, hole, self.cfg.stride)

    def forward(self, image: torch.Tensor, hole: torch.Tensor) -> torch.Tensor:
        self.check_input(image, hole)
        x = five_channel_input(image, hole)
        merged = torch.cat([self.column1(x), self.column2(x), self.column3(x)], dim=1)
        return self.merge(merged).clamp(-1, 1)


# ------------------------------------------------------------------- global and local WGAN critics


class ConvCritic(nn.Module):
    """5×5 stride-2 convs ("SAME"), LeakyReLU 0.2, flatten, dense → 1 (the originals' WGAN critics).

    ``widths``: output channels per conv. Built for ``size``×``size`` inputs (the dense layer fixes it).
    N×3×size×size → N×1 (no activation: a WGAN critic).
    """

    def __init__(self, widths: tuple[int, ...], size: int, use_sn: bool = False) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin, side = 3, size
        for cout in widths:
            conv = nn.Conv2d(cin, cout, 5, 2, 2)
            tf_init(conv)
            layers += [sn(conv, use_sn), nn.LeakyReLU(0.2)]
            cin, side = cout, math.ceil(side / 2)
        self.convs = nn.Sequential(*layers)
        dense = nn.Linear(cin * side * side, 1)
        tf_init(dense)
        self.dense = sn(dense, use_sn)
        self.size = size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != (self.size, self.size):
            raise ValueError(f"this critic is built for {self.size}² inputs, got {tuple(x.shape)}")
        return self.dense(self.convs(x).flatten(1))


class GlobalLocalCritics(nn.Module):
    """Two separate WGAN critics: ``global_critic`` on the whole image, ``local_critic`` on the
    (size/2)² window centred on the hole's bounding box (:func:`crop_around_hole`).

    ``forward(x, hole)``: x N×3×size×size, hole N×1×size×size → (global N×1, local N×1).
    """

    def __init__(
        self, global_widths: tuple[int, ...], local_widths: tuple[int, ...], size: int, use_sn: bool
    ) -> None:
        super().__init__()
        self.size, self.local_size = size, size // 2
        self.global_critic = ConvCritic(global_widths, size, use_sn)
        self.local_critic = ConvCritic(local_widths, self.local_size, use_sn)

    def crop(self, x: torch.Tensor, hole: torch.Tensor) -> torch.Tensor:
        """The local critic's window of x (N×C×size×size) around each hole."""
        return crop_around_hole(x, hole, self.local_size, self.local_size)

    def forward(self, x: torch.Tensor, hole: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if x.shape[-2:] != (self.size, self.size):
            raise ValueError(f"these critics are built for {self.size}² inputs, got {tuple(x.shape)}")
        return self.global_critic(x), self.local_critic(self.crop(x, hole))


def gntipt_critics(cfg: ModelConfig, size: int) -> GlobalLocalCritics:
    """DeepFill v1's critics, cnum = ``disc_channels`` (64): global 4 convs (c, 2c, 4c, 4c), local 4 convs
    (c, 2c, 4c, 8c), each → dense → 1. ``disc_max_channels`` is not used (fixed multipliers)."""
    c = cfg.disc_channels
    return GlobalLocalCritics((c, 2 * c, 4 * c, 4 * c), (c, 2 * c, 4 * c, 8 * c), size, cfg.spectral_norm)


def gmcnn_critics(cfg: ModelConfig, size: int) -> GlobalLocalCritics:
    """GMCNN's TF critics, cnum = ``disc_channels`` (64): 6 convs each (c, 2c, 4c, 8c, 4c, 2c) → dense → 1."""
    c = cfg.disc_channels
    widths = (c, 2 * c, 4 * c, 8 * c, 4 * c, 2 * c)
    return GlobalLocalCritics(widths, widths, size, cfg.spectral_norm)


# -------------------------------------------------------------------------------------- registries

GMCNN_MRF_ALPHA = 0.05  # mrf_alpha of the released GMCNN code: the ID-MRF weight


def gmcnn_mrf_weight(cfg: Config) -> float:
    """GMCNN's ID-MRF weight, ``loss.lambda_mrf`` (the original code's is 0.05, ``GMCNN_MRF_ALPHA``)."""
    return float(cfg.loss.lambda_mrf)


DISPLAY_NAMES = {
    "dualpath": "dual-path (ours)",
    "ce": "Context Encoders",
    "gl": "GLCIC",
    "gntipt": "GntIpt (DeepFill v1)",
    "gmcnn": "GMCNN",
}


def display_name(cfg: Config) -> str:
    """The model's name for reports: "GMCNN without ID-MRF" when GMCNN trains with an ID-MRF weight of 0."""
    if cfg.model.family == "gmcnn" and gmcnn_mrf_weight(cfg) == 0:
        return "GMCNN without ID-MRF"
    return DISPLAY_NAMES.get(cfg.model.family, cfg.model.family)


BASELINE_GENERATORS: dict[str, type[nn.Module]] = {
    "ce": ContextEncoder,
    "gl": GLCompletionNet,
    "gntipt": GntIpt,
    "gmcnn": GMCNN,
}


def build_baseline_generator(cfg: ModelConfig) -> nn.Module:
    """The generator of a baseline family (ce, gl, gntipt, gmcnn) from the model config alone."""
    try:
        return BASELINE_GENERATORS[cfg.family](cfg)
    except KeyError:
        valid = ", ".join(BASELINE_GENERATORS)
        raise ValueError(f"no baseline generator for family {cfg.family!r}; valid: {valid}") from None
