"""Building blocks shared by the encoders, generators and discriminators.

Every block takes and returns float feature maps N×C×H×W. Spectral normalisation uses
``torch.nn.utils.parametrizations.spectral_norm`` (one power iteration per training-mode forward; the
u/v vectors are buffers, so they are saved with the weights but are not trainable parameters).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache, partial

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm


def sn(module: nn.Module, use: bool = True) -> nn.Module:
    """Wrap a conv / linear layer in spectral normalisation when ``use`` is true."""
    return spectral_norm(module) if use else module


def make_norm(kind: str, channels: int) -> nn.Module:
    """``instance`` → InstanceNorm2d(affine, no running stats) as in PICNet; ``none`` → identity."""
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {kind!r}; valid: instance, none")


def pre_activation_pair(
    cin: int,
    hidden: int,
    second: Callable[[], nn.Module],
    norm: str,
    leak: float,
    use_sn: bool,
    *,
    sn_second: bool = True,
) -> nn.Sequential:
    """norm → act → conv3×3 s1 p1 (cin→hidden) → norm → act → ``second()`` (hidden→cout), all convs under
    spectral norm when ``use_sn``: the main path of ``ResBlock`` and ``ResBlockDecoder``. ``second`` is a
    factory so that layers are built (and randomly initialised) in order; ``sn_second=False`` when the
    factory applies spectral norm itself."""
    return nn.Sequential(
        make_norm(norm, cin),
        nn.LeakyReLU(leak),
        sn(nn.Conv2d(cin, hidden, 3, 1, 1), use_sn),
        make_norm(norm, hidden),
        nn.LeakyReLU(leak),
        sn(second(), use_sn and sn_second),
    )


class ResBlock(nn.Module):
    """Pre-activation residual block: [norm]→act→conv3×3→[norm]→act→conv3×3, plus a shortcut.

    The paper's block is "conv3×3 s1 p1, conv3×3, skip"; its second conv is said to have no padding, which
    would shrink the map by 2 px and break the identity skip, so both convs are padded here.
    ``skip='identity'`` uses an identity shortcut when cin == cout (downsampling then applies the same
    average pooling to both paths); otherwise, and with ``skip='conv1x1'`` (PICNet), the shortcut is a
    1×1 conv. ``down`` average-pools both paths by 2 after the convs.

    Shapes: N×cin×H×W → N×cout×H×W (or H/2×W/2 when ``down``).
    """

    def __init__(
        self,
        cin: int,
        cout: int,
        hidden: int | None = None,
        *,
        norm: str = "none",
        leak: float = 0.1,
        down: bool = False,
        skip: str = "conv1x1",
        use_sn: bool = True,
    ) -> None:
        super().__init__()
        hidden = hidden or cout
        conv = partial(nn.Conv2d, hidden, cout, 3, 1, 1)
        self.main = pre_activation_pair(cin, hidden, conv, norm, leak, use_sn)
        identity = skip == "identity" and cin == cout
        self.shortcut = nn.Identity() if identity else sn(nn.Conv2d(cin, cout, 1), use_sn)
        self.down = down

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.main(x) + self.shortcut(x)
        return F.avg_pool2d(out, 2) if self.down else out


class ResBlockStart(nn.Module):
    """First encoder / critic block (PICNet's ``ResBlockEncoderOptimized``), always downsampling by 2.

    main: conv3×3 → act → conv3×3 → avgpool2; shortcut: avgpool2 → conv1×1. N×cin×H×W → N×cout×H/2×W/2.
    """

    def __init__(self, cin: int, cout: int, *, leak: float = 0.1, use_sn: bool = True) -> None:
        super().__init__()
        self.main = nn.Sequential(
            sn(nn.Conv2d(cin, cout, 3, 1, 1), use_sn),
            nn.LeakyReLU(leak),
            sn(nn.Conv2d(cout, cout, 3, 1, 1), use_sn),
            nn.AvgPool2d(2),
        )
        self.shortcut = nn.Sequential(nn.AvgPool2d(2), sn(nn.Conv2d(cin, cout, 1), use_sn))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x) + self.shortcut(x)


def upsample2x(cin: int, cout: int, kind: str = "deconv", *, use_sn: bool = True) -> nn.Module:
    """×2 upsampling layer, N×cin×H×W → N×cout×2H×2W, under spectral norm when ``use_sn``.

    ``deconv``: ConvTranspose2d 3×3 s2 p1 op1 (the paper). Its even and odd output pixels see 1 and 2
    kernel taps per axis, so unless the kernel balances them it prints a period-2 (checkerboard) pattern.
    ``resize``: nearest-neighbour ×2 then conv3×3 s1 p1 (Odena et al., 2016): every output pixel sees
    the same kernel over a 2×2-replicated input, so a constant input gives a constant output.
    """
    if kind == "deconv":
        return sn(nn.ConvTranspose2d(cin, cout, 3, 2, 1, output_padding=1), use_sn)
    if kind == "resize":
        return nn.Sequential(
            nn.Upsample(scale_factor=2, mode="nearest"), sn(nn.Conv2d(cin, cout, 3, 1, 1), use_sn)
        )
    raise ValueError(f"unknown upsample {kind!r}; valid: deconv, resize")


def _upsample_response(kind: str) -> torch.Tensor:
    """The linear map from a 3×3 kernel (9 taps) to the impulse response of one ×2 layer: 36×9.

    The response of a single input pixel on a 3×3 grid covers every output phase the kernel can reach,
    and both layers are equivariant to shifts by one input pixel (two output pixels), so two layers with
    equal impulse responses are the same operator."""
    layer = upsample2x(1, 1, kind, use_sn=False)
    conv = layer if kind == "deconv" else layer[1]
    impulse = torch.zeros(1, 1, 3, 3, dtype=torch.float64)
    impulse[0, 0, 1, 1] = 1
    columns = []
    with torch.no_grad():
        for tap in range(9):
            weight = torch.zeros(9, dtype=torch.float64)
            weight[tap] = 1
            conv.weight = nn.Parameter(weight.view(1, 1, 3, 3))
            conv.bias = None
            columns.append(layer.double()(impulse).flatten())
    return torch.stack(columns, 1)


@lru_cache(maxsize=1)
def _resize_fit() -> torch.Tensor:
    """9×9 least-squares map from a deconv kernel's taps to the closest resize-conv kernel's (float64)."""
    return torch.linalg.lstsq(_upsample_response("resize"), _upsample_response("deconv")).solution


def resize_kernel_from_deconv(weight: torch.Tensor) -> torch.Tensor:
    """The resize-conv kernel (cout×cin×3×3) closest to a deconv kernel (cin×cout×3×3, as ConvTranspose2d
    stores it): least squares over the impulse response, per channel pair. Exact when the deconv is itself
    a resize-conv; otherwise the best phase-balanced approximation (it drops the checkerboard part)."""
    fit = _resize_fit()
    taps = weight.detach().double().transpose(0, 1).reshape(-1, 9)  # (cout·cin)×9, deconv taps
    return (taps @ fit.T).reshape(weight.shape[1], weight.shape[0], 3, 3).to(weight.dtype)


class ResBlockDecoder(nn.Module):
    """Residual decoding block of the paper: exactly doubles the resolution.

    main: norm → act → conv3×3 s1 p1 (cin→hidden) → norm → act → up×2 (hidden→cout);
    shortcut: up×2 (cin→cout). ``upsample2x`` gives up×2: deconv3×3 s2 p1 op1 (the paper) or resize-conv.
    N×cin×H×W → N×cout×2H×2W.
    """

    def __init__(
        self,
        cin: int,
        cout: int,
        hidden: int | None = None,
        *,
        norm: str = "instance",
        leak: float = 0.1,
        use_sn: bool = True,
        upsample: str = "deconv",
    ) -> None:
        super().__init__()
        hidden = hidden or cout
        # the factory wraps the layer in SN itself: pre_activation_pair's own sn() is told not to
        up = partial(upsample2x, hidden, cout, upsample, use_sn=use_sn)
        self.main = pre_activation_pair(cin, hidden, up, norm, leak, use_sn, sn_second=False)
        self.shortcut = upsample2x(cin, cout, upsample, use_sn=use_sn)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x) + self.shortcut(x)


class ToRGB(nn.Module):
    """Output layer: act → reflection pad 1 → conv3×3 (cin→3) → tanh. N×cin×H×W → N×3×H×W in [-1, 1]."""

    def __init__(self, cin: int, *, leak: float = 0.1, use_sn: bool = True) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.LeakyReLU(leak), nn.ReflectionPad2d(1), sn(nn.Conv2d(cin, 3, 3), use_sn), nn.Tanh()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class ShortLongAttention(nn.Module):
    """Short+long term attention (PICNet's ``Auto_Attn``).

    Short term: self-attention on the decoder feature x (query = key = 1×1 conv of x, value = x),
    y_d = γ·(x Aᵀ) + x. Long term (when an encoder feature ``pre`` and a hole mask are given): the same
    attention map A applied to the encoder feature, used only inside the hole,
    y_e = α·hole ⊙ (pre Aᵀ) + (1 − hole) ⊙ pre. γ and α are learned gates initialised to 0, so the layer
    starts as a pass-through. The two are merged by a residual block (2C → C).

    Shapes: x N×C×H×W, pre N×C×H×W, hole N×1×H×W (1 = hole, may be soft) → N×C×H×W.
    """

    def __init__(self, channels: int, *, use_sn: bool = True, long_term: bool = True) -> None:
        super().__init__()
        self.query = nn.Conv2d(channels, max(channels // 4, 1), 1)
        nn.init.orthogonal_(self.query.weight, gain=0.02)  # PICNet's only non-SN conv, orthogonal(0.02)
        self.gamma = nn.Parameter(torch.zeros(1))
        self.long_term = long_term
        if long_term:
            self.alpha = nn.Parameter(torch.zeros(1))
            self.merge = ResBlock(2 * channels, channels, channels, norm="none", leak=0.01, use_sn=use_sn)

    def attention_map(self, x: torch.Tensor) -> torch.Tensor:
        """Softmax attention over positions: N×C×H×W → N×(HW)×(HW), rows sum to 1."""
        q = self.query(x).flatten(2)  # N×C'×HW
        energy = torch.bmm(q.transpose(1, 2), q)  # N×HW×HW
        return torch.softmax(energy, dim=-1)

    def forward(
        self, x: torch.Tensor, pre: torch.Tensor | None = None, hole: torch.Tensor | None = None
    ) -> torch.Tensor:
        n, c, h, w = x.shape
        attn = self.attention_map(x)
        ctx = torch.bmm(x.flatten(2), attn.transpose(1, 2)).view(n, c, h, w)
        y_d = self.gamma * ctx + x
        if not self.long_term or pre is None:
            return y_d
        if hole is None:
            raise ValueError("long-term attention needs the hole mask with the encoder feature")
        ctx_e = torch.bmm(pre.flatten(2), attn.transpose(1, 2)).view(n, c, h, w)
        y_e = self.alpha * hole * ctx_e + (1 - hole) * pre
        return self.merge(torch.cat([y_d, y_e], dim=1))


def channels_at(level: int, base: int, cap: int) -> int:
    """Channel count at encoder level ``level``: base·2^level, capped at ``cap`` (PICNet's rule)."""
    return min(base * 2**level, cap)


class RandomFeatures(nn.Module):
    """A fixed conv net with random weights whose activations carry texture statistics.

    Shallow random-filter CNNs are known to synthesise textures through Gram matrices (Ustyuzhaninov et
    al., ICLR 2017); no pretrained perceptual network can be had offline. Three levels (full, 1/2, 1/4
    resolution), each a 3×3 conv + ReLU; the weights come from ``seed`` alone (He-normal, no biases) and
    are never trained (non-persistent buffers: not parameters, not saved, rebuilt from ``seed``).
    N×3×H×W → list of 3 feature maps.
    """

    def __init__(self, channels: tuple[int, ...] = (32, 64, 128), seed: int = 1234) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        cin = 3
        for i, cout in enumerate(channels):
            w = torch.randn(cout, cin, 3, 3, generator=g) * (2.0 / (cin * 9)) ** 0.5
            self.register_buffer(f"w{i}", w, persistent=False)
            cin = cout
        self.levels = len(channels)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for i in range(self.levels):
            x = F.relu(F.conv2d(x, getattr(self, f"w{i}").to(x.dtype), padding=1, stride=1 if i == 0 else 2))
            feats.append(x)
        return feats
