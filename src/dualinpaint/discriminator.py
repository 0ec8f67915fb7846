"""Critics D1 (reconstruction path) and D2 (generation path).

Both return an unbounded patch map N×1×h×w (no sigmoid): the WGAN-GP critic value, or the logits of the
LSGAN / hinge losses.

PatchGAN (``disc_type='patch'``): five 4×4 convs with padding 1, spectral norm, LeakyReLU between them.
The paper states a 70×70 receptive field *and* strides (1, 1, 1, 2, 2); those strides give only 19×19.
pix2pix's order (2, 2, 2, 1, 1) gives 70×70, so that is the default; the strides stay in the config
(``model.disc_strides``) for anyone who wants the paper's literal layout.

ResDis (``disc_type='resdis'``): PICNet's residual critic (start block, downsampling ResBlocks, optional
self-attention, a 3×3 unpadded head).
"""

from __future__ import annotations

import torch
from torch import nn

from .config import ModelConfig
from .layers import ResBlock, ResBlockStart, ShortLongAttention, channels_at, sn


def receptive_field(strides: tuple[int, ...], kernel: int = 4) -> int:
    """Receptive field in pixels of a stack of convs with the given strides and one kernel size."""
    rf, jump = 1, 1
    for s in strides:
        rf += (kernel - 1) * jump
        jump *= s
    return rf


class PatchDiscriminator(nn.Module):
    """Five 4×4 convs; channels ``disc_channels``·2^i capped at ``disc_max_channels``; last conv → 1.

    No biases (as PICNet's PatchDis): without normalisation layers they add little, and the last one would
    cancel out of the WGAN critic loss entirely.

    N×3×H×W → N×1×h×w (h = 30 at 256² with the default strides).
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = 3
        for i, stride in enumerate(cfg.disc_strides):
            last = i == len(cfg.disc_strides) - 1
            cout = 1 if last else channels_at(i, cfg.disc_channels, cfg.disc_max_channels)
            layers.append(sn(nn.Conv2d(cin, cout, 4, stride, 1, bias=False), cfg.spectral_norm))
            if not last:
                layers.append(nn.LeakyReLU(cfg.leak))
            cin = cout
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The hidden activations (after each LeakyReLU), coarse-ward; feature matching reads them."""
        feats = []
        for layer in self.body:
            x = layer(x)
            if isinstance(layer, nn.LeakyReLU):
                feats.append(x)
        return feats


class ResDiscriminator(nn.Module):
    """PICNet's ResDis: start block, ``disc_layers`` down ResBlocks, a ResBlock, LeakyReLU, 3×3 conv → 1.

    Self-attention (short-term only) runs after the second down block when ``disc_attention``. The head
    conv has no bias (it would cancel out of the WGAN critic loss); PICNet's has one.
    N×3×H×W → N×1×(H/2^(L+1) − 2)×(W/2^(L+1) − 2).
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        ch = [channels_at(k, cfg.disc_channels, cfg.disc_max_channels) for k in range(cfg.disc_layers + 1)]
        kw = dict(norm="none", leak=cfg.leak, use_sn=cfg.spectral_norm, skip=cfg.skip)
        self.start = ResBlockStart(3, ch[0], leak=cfg.leak, use_sn=cfg.spectral_norm)
        self.down = nn.ModuleList(
            ResBlock(ch[k], ch[k + 1], ch[k], down=True, **kw) for k in range(cfg.disc_layers)
        )
        self.attn_after = 1 if cfg.disc_layers > 1 else 0
        self.attention = None
        if cfg.disc_attention:
            c_attn = ch[self.attn_after + 1]
            self.attention = ShortLongAttention(c_attn, use_sn=cfg.spectral_norm, long_term=False)
        self.block = ResBlock(ch[-1], ch[-1], ch[-1], **kw)
        head = nn.Conv2d(ch[-1], 1, 3, bias=False)
        self.head = nn.Sequential(nn.LeakyReLU(cfg.leak), sn(head, cfg.spectral_norm))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.start(x)
        for i, block in enumerate(self.down):
            out = block(out)
            if self.attention is not None and i == self.attn_after:
                out = self.attention(out)
        return self.head(self.block(out))


def build_discriminator(cfg: ModelConfig) -> nn.Module:
    """One critic of the configured type (the trainer builds two: D1 and D2)."""
    if cfg.disc_type == "patch":
        return PatchDiscriminator(cfg)
    if cfg.disc_type == "resdis":
        return ResDiscriminator(cfg)
    raise ValueError(f"unknown disc_type {cfg.disc_type!r}; valid: patch, resdis")
