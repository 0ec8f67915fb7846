from __future__ import annotations

import pytest
import torch

from dualinpaint.config import load_config
from dualinpaint.generator import DualPathInpainter


def small(preset: str):
    """A preset with its real structure but few channels, so CPU tests stay fast."""
    cfg = load_config(preset)
    return cfg.with_overrides(
        [
            "model.ngf=8",
            "model.max_channels=16",
            "model.z_channels=8",
            "model.disc_channels=8",
            "model.disc_max_channels=16",
        ]
    )


@pytest.mark.parametrize("preset", ["paper", "picnet", "tiny"])
@pytest.mark.parametrize("size", [(64, 64), (64, 96)])
def test_train_forward_shapes(preset: str, size: tuple[int, int]) -> None:
    cfg = small(preset)
    net = DualPathInpainter(cfg.model)
    h, w = size
    image, hole = torch.rand(2, 3, h, w) * 2 - 1, torch.zeros(2, 1, h, w)
    hole[..., h // 4 : 3 * h // 4, w // 4 : 3 * w // 4] = 1
    out = net(image, hole)
    n = cfg.model.output_scales
    assert len(out.rec) == len(out.gen) == n
    for i, (r, g) in enumerate(zip(out.rec, out.gen, strict=True)):
        scale = 2 ** (n - 1 - i)
        assert r.shape == g.shape == (2, 3, h // scale, w // scale)
        assert torch.isfinite(r).all() and r.abs().max() <= 1
    st = cfg.model.stride
    assert out.prior.mu.shape == out.posterior.mu.shape == (2, cfg.model.z_channels, h // st, w // st)
    assert (out.prior.sigma > 0).all()


def test_paths_see_the_right_pixels() -> None:
    """E2 (generation) sees only visible pixels; E1 (reconstruction) sees only the hole's content."""
    cfg = small("paper")
    net = DualPathInpainter(cfg.model).eval()
    image = torch.rand(1, 3, 64, 64) * 2 - 1
    hole = torch.zeros(1, 1, 64, 64)
    hole[..., 16:48, 16:48] = 1
    changed_inside = image.clone()
    changed_inside[..., 20:40, 20:40] = -image[..., 20:40, 20:40]
    changed_outside = image.clone()
    changed_outside[..., :8, :8] = -image[..., :8, :8]
    with torch.no_grad():
        base = net(image, hole)
        inside = net(changed_inside, hole)
        outside = net(changed_outside, hole)
    torch.testing.assert_close(inside.prior.mu, base.prior.mu)  # prior ignores hole content
    assert not torch.allclose(inside.posterior.mu, base.posterior.mu)  # posterior reads hole content
    torch.testing.assert_close(outside.posterior.mu, base.posterior.mu)  # posterior ignores visible pixels
    assert not torch.allclose(outside.prior.mu, base.prior.mu)


def test_complete_keeps_visible_pixels_and_is_deterministic() -> None:
    cfg = small("picnet")
    net = DualPathInpainter(cfg.model).eval()
    image = torch.rand(2, 3, 64, 64) * 2 - 1
    hole = torch.zeros(2, 1, 64, 64)
    hole[..., 10:30, 20:50] = 1
    with torch.no_grad():
        a, b = net.complete(image, hole), net.complete(image, hole)
    torch.testing.assert_close(a, b, rtol=0, atol=0)  # prior mean: deterministic
    vis = (1 - hole).bool().expand_as(image)
    assert torch.equal(a[vis], image[vis])
    # pixels in the hole are not the input's (the network never sees them)
    assert not torch.allclose(a[~vis], image[~vis])


def test_k_samples_differ_and_are_reproducible() -> None:
    cfg = small("paper")
    net = DualPathInpainter(cfg.model).eval()
    image = torch.rand(1, 3, 64, 64) * 2 - 1
    hole = torch.zeros(1, 1, 64, 64)
    hole[..., 16:48, 16:48] = 1
    with torch.no_grad():
        s1 = net.complete(image, hole, samples=3, generator=torch.Generator().manual_seed(1))
        s2 = net.complete(image, hole, samples=3, generator=torch.Generator().manual_seed(1))
    assert s1.shape == (3, 1, 3, 64, 64)
    torch.testing.assert_close(s1, s2, rtol=0, atol=0)
    for i in range(3):
        for j in range(i + 1, 3):
            assert (s1[i] - s1[j]).abs().max() > 1e-4


def test_bad_input_sizes_are_rejected_with_a_clear_message() -> None:
    net = DualPathInpainter(small("tiny").model)
    with pytest.raises(ValueError, match="multiple of 16"):
        net(torch.zeros(1, 3, 40, 32), torch.zeros(1, 1, 40, 32))
    with pytest.raises(ValueError, match="mask must be N×1×H×W"):
        net(torch.zeros(1, 3, 32, 32), torch.zeros(1, 3, 32, 32))
    with pytest.raises(ValueError, match="image must be N×3×H×W"):
        net(torch.zeros(1, 4, 32, 32), torch.zeros(1, 1, 32, 32))


def test_picnet_parameter_counts_match_reference() -> None:
    """picnet.md §6: E 3,604,224, G 2,374,016 trainable parameters (E+G 5,978,240)."""
    cfg = load_config("picnet")
    net = DualPathInpainter(cfg.model)

    def count(*mods):
        return sum(p.numel() for m in mods for p in m.parameters())

    assert count(net.enc_m, net.prior_head, net.posterior_head) == 3_604_224
    assert count(net.gen_g) == 2_374_016
    assert count(net) == 5_978_240
    assert net.enc_c is None and net.gen_r is None  # shared trunk, shared generator


def test_paper_preset_has_separate_paths_and_seven_block_branches() -> None:
    cfg = load_config("paper")
    net = DualPathInpainter(cfg.model)
    assert net.enc_c is not None and net.gen_r is not None
    assert len(net.prior_head.body) + 1 == 7 and len(net.posterior_head.body) + 1 == 7
    assert all(isinstance(b.shortcut, torch.nn.Identity) for b in net.prior_head.body)
