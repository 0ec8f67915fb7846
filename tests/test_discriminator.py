from __future__ import annotations

import pytest
import torch

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
