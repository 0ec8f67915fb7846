from __future__ import annotations

import torch
from torch import nn

from dualinpaint.layers import (
    ResBlock,
    ResBlockDecoder,
    ResBlockStart,
    ShortLongAttention,
    ToRGB,
    resize_kernel_from_deconv,
    sn,
    upsample2x,
)


def test_spectral_norm_keeps_largest_singular_value_near_one() -> None:
    torch.manual_seed(0)
    plain = nn.Conv2d(8, 16, 3, padding=1)
    with torch.no_grad():
        plain.weight.mul_(5.0)  # largest singular value well above 1 before normalisation
    assert torch.linalg.matrix_norm(plain.weight.reshape(16, -1), ord=2).item() > 2.0
    conv = sn(plain)
    for _ in range(30):  # power iterations run on each training-mode forward
        conv(torch.randn(1, 8, 5, 5))
    conv.eval()
    w = conv.weight.reshape(16, -1)
    assert abs(torch.linalg.matrix_norm(w, ord=2).item() - 1.0) < 1e-3


def test_resblock_shapes_and_identity_skip() -> None:
    x = torch.randn(2, 8, 12, 10)
    assert ResBlock(8, 8, skip="identity")(x).shape == (2, 8, 12, 10)
    assert isinstance(ResBlock(8, 8, skip="identity").shortcut, nn.Identity)
    assert not isinstance(ResBlock(8, 16, skip="identity").shortcut, nn.Identity)  # shapes differ → 1×1 conv
    assert not isinstance(ResBlock(8, 8, skip="conv1x1").shortcut, nn.Identity)
    assert ResBlock(8, 16, down=True)(x).shape == (2, 16, 6, 5)
    assert ResBlockStart(3, 8)(torch.randn(1, 3, 12, 10)).shape == (1, 8, 6, 5)
    assert ResBlockDecoder(8, 4)(x).shape == (2, 4, 24, 20)
    out = ToRGB(8)(x)
    assert out.shape == (2, 3, 12, 10) and out.abs().max() <= 1


def test_attention_starts_as_pass_through_and_copies_visible_encoder_features() -> None:
    torch.manual_seed(0)
    attn = ShortLongAttention(8, long_term=False)
    x = torch.randn(2, 8, 4, 6)
    torch.testing.assert_close(attn(x), x)  # γ = 0 at init
    a = attn.attention_map(x)
    assert a.shape == (2, 24, 24)
    torch.testing.assert_close(a.sum(-1), torch.ones(2, 24))

    full = ShortLongAttention(8)
    pre, hole = torch.randn(2, 8, 4, 6), torch.zeros(2, 1, 4, 6)
    hole[..., 1:3, 2:4] = 1
    with torch.no_grad():
        full.alpha.fill_(1.0)
        full.gamma.fill_(0.5)
    # changing the encoder feature inside the hole only matters through attention, never by copy
    ctx = torch.bmm(pre.flatten(2), full.attention_map(x).transpose(1, 2)).view_as(pre)
    y_e_expected = hole * ctx + (1 - hole) * pre
    captured = {}
    full.merge.register_forward_hook(lambda m, i, o: captured.setdefault("inp", i[0]))
    full(x, pre, hole)
    torch.testing.assert_close(captured["inp"][:, 8:], y_e_expected)


def test_attention_is_size_agnostic_non_square() -> None:
    attn = ShortLongAttention(4)
    assert attn(torch.randn(1, 4, 3, 7), torch.randn(1, 4, 3, 7), torch.zeros(1, 1, 3, 7)).shape == (
        1,
        4,
        3,
        7,
    )


def test_resize_decoder_cannot_print_a_checkerboard_and_deconv_can() -> None:
    """A constant input through a randomly initialised decoder block: resize-conv gives a constant interior,
    the paper's stride-2 transposed conv a period-2 pattern (its phases see 1 and 2 taps per axis)."""
    torch.manual_seed(0)
    flat = torch.ones(1, 8, 8, 8)
    for kind, periodic in (("resize", False), ("deconv", True)):
        block = ResBlockDecoder(8, 4, norm="none", upsample=kind).eval()
        with torch.no_grad():
            out = block(flat)[..., 3:-3, 3:-3]  # away from the zero-padded border
        assert out.shape == (1, 4, 10, 10)
        spread = (out - out.mean((2, 3), keepdim=True)).abs().max().item()
        assert (spread > 1e-3) == periodic, (kind, spread)


def test_resize_kernel_from_deconv_is_exact_when_the_deconv_is_a_resize_conv() -> None:
    """Per axis a resize kernel [0, a, b] equals the deconv kernel [b, a+b, a]: the fit must find it, and
    the two layers then compute the same function, borders included."""
    torch.manual_seed(0)
    a, b = torch.randn(2, 4, 3, 2, dtype=torch.float64)  # (cout, cin, axis)
    k = torch.stack([torch.zeros_like(a), a, b], -1)
    w = torch.stack([b, a + b, a], -1)
    resize_k = k[..., 0, :, None] * k[..., 1, None, :]  # cout×cin×3×3, rows × cols
    deconv_w = (w[..., 0, :, None] * w[..., 1, None, :]).transpose(0, 1)  # cin×cout×3×3
    assert torch.allclose(resize_kernel_from_deconv(deconv_w), resize_k, atol=1e-12)
    deconv = upsample2x(3, 4, "deconv", use_sn=False).double()
    resize = upsample2x(3, 4, "resize", use_sn=False).double()
    with torch.no_grad():
        deconv.weight.copy_(deconv_w)
        resize[1].weight.copy_(resize_kernel_from_deconv(deconv_w))
        resize[1].bias.copy_(deconv.bias)
        x = torch.randn(2, 3, 7, 9, dtype=torch.float64)
        assert torch.allclose(deconv(x), resize(x), atol=1e-12)
        assert resize(x).shape == (2, 4, 14, 18)
