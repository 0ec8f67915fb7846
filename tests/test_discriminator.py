from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dualinpaint.config import load_config
from dualinpaint.discriminator import (
    PatchDiscriminator,
    ResDiscriminator,
    build_discriminator,
    receptive_field,
)


def test_patchgan_default_layout_has_70px_receptive_field_and_paper_literal_19() -> None:
    assert receptive_field((2, 2, 2, 1, 1)) == 70
    assert receptive_field((1, 1, 1, 2, 2)) == 19
    cfg = load_config("paper").model
    assert tuple(cfg.disc_strides) == (2, 2, 2, 1, 1)
    d = PatchDiscriminator(cfg)
    convs = [m for m in d.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 5 and all(c.kernel_size == (4, 4) for c in convs)


def test_patchgan_receptive_field_measured_by_gradient() -> None:
    """One output unit depends on exactly a 70×70 input window (checked through autograd)."""
    cfg = load_config("paper").model.__class__(disc_channels=4, disc_max_channels=8, spectral_norm=False)
    d = PatchDiscriminator(cfg)
    x = torch.randn(1, 3, 160, 160, requires_grad=True)
    out = d(x)
    out[0, 0, out.shape[2] // 2, out.shape[3] // 2].backward()
    rows = (x.grad.abs().sum(dim=(0, 1, 3)) > 0).nonzero()
    assert rows.max() - rows.min() + 1 == 70


@pytest.mark.parametrize(
    ("kind", "size"),
    [("patch", (64, 64)), ("patch", (96, 64)), ("resdis", (128, 128)), ("resdis", (96, 160))],
)
def test_output_shapes_no_sigmoid(kind: str, size: tuple[int, int]) -> None:
    cfg = (
        load_config("picnet")
        .with_overrides([f"model.disc_type={kind}", "model.disc_channels=8", "model.disc_max_channels=16"])
        .model
    )
    d = build_discriminator(cfg)
    h, w = size
    out = d(torch.randn(2, 3, h, w) * 10)
    if kind == "patch":
        assert out.shape == (2, 1, h // 8 - 2, w // 8 - 2)
    else:
        assert isinstance(d, ResDiscriminator)
        assert out.shape == (2, 1, h // 32 - 2, w // 32 - 2)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("spectral_norm", [False, True])
def test_patchgan_output_is_the_plain_conv_stack_unbounded(spectral_norm: bool) -> None:
    """No squashing (sigmoid, tanh, clamp) on the critic's output: it equals a hand-written stack of the
    same convs and LeakyReLUs; without biases it is positively homogeneous, D(a·x) = a·D(x); and it takes
    both signs and values far outside [0, 1]."""
    cfg = load_config("paper").model.__class__(
        disc_channels=4, disc_max_channels=8, spectral_norm=spectral_norm
    )
    torch.manual_seed(0)
    d = PatchDiscriminator(cfg).eval()  # eval: spectral norm's power iteration does not move
    x = torch.randn(2, 3, 64, 64)
    convs = [m for m in d.modules() if isinstance(m, torch.nn.Conv2d)]
    with torch.no_grad():
        out, big = d(x), d(100 * x)
        by_hand = x
        for i, (conv, stride) in enumerate(zip(convs, cfg.disc_strides, strict=True)):
            assert conv.bias is None
            by_hand = F.conv2d(by_hand, conv.weight, None, stride, 1)
            if i < len(convs) - 1:
                by_hand = F.leaky_relu(by_hand, cfg.leak)
    torch.testing.assert_close(out, by_hand, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(big, 100 * out, rtol=1e-4, atol=1e-5)
    assert out.min() < 0 < out.max()
    assert big.abs().max() > 1
