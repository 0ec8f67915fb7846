from __future__ import annotations

import pytest
import torch
from torch import nn

from dualinpaint import losses


def test_gradient_penalty_on_linear_critic_equals_norm_minus_one_squared() -> None:
    torch.manual_seed(0)
    critic = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 1, bias=True))
    real, fake = torch.randn(5, 3, 4, 4), torch.randn(5, 3, 4, 4)
    w = critic[1].weight.detach()
    expected = (w.norm() - 1) ** 2
    gp = losses.gradient_penalty(critic, real, fake)
    torch.testing.assert_close(gp, expected)
    # the penalty is differentiable w.r.t. the critic (double backward)
    gp.backward()
    torch.testing.assert_close(critic[1].weight.grad, 2 * (w.norm() - 1) * w / w.norm())


def test_gradient_penalty_is_zero_for_unit_norm_critic() -> None:
    critic = nn.Sequential(nn.Flatten(), nn.Linear(12, 1))
    with torch.no_grad():
        critic[1].weight.copy_(torch.ones(1, 12) / 12**0.5)
    gp = losses.gradient_penalty(critic, torch.randn(3, 3, 2, 2), torch.randn(3, 3, 2, 2))
    assert gp.item() == pytest.approx(0.0, abs=1e-10)


def test_wgan_signs() -> None:
    real, fake = torch.full((4, 1, 3, 3), 2.0), torch.full((4, 1, 3, 3), -1.0)
    # the critic loss falls as the critic separates real (high) from fake (low)
    assert losses.critic_loss("wgangp", real, fake).item() == pytest.approx(-3.0)
    assert losses.critic_loss("wgangp", fake, real).item() == pytest.approx(3.0)
    # the generator loss falls as the critic scores its fakes higher
    assert losses.generator_adv_loss("wgangp", real).item() < losses.generator_adv_loss("wgangp", fake).item()
    assert losses.generator_adv_loss("wgangp", fake).item() == pytest.approx(1.0)


def test_lsgan_and_hinge_values() -> None:
    one, zero = torch.ones(2, 1, 2, 2), torch.zeros(2, 1, 2, 2)
    assert losses.critic_loss("lsgan", one, zero).item() == 0.0
    assert losses.critic_loss("lsgan", zero, one).item() == pytest.approx(2.0)
    assert losses.generator_adv_loss("lsgan", one).item() == 0.0
    assert losses.critic_loss("hinge", one, -one).item() == 0.0
    assert losses.critic_loss("hinge", zero, zero).item() == pytest.approx(2.0)
    with pytest.raises(ValueError, match="unknown gan mode"):
        losses.critic_loss("wgan-gp", one, zero)


def test_kl_of_identical_gaussians_is_zero_and_known_value() -> None:
    mu, sigma = torch.randn(2, 4, 3, 3), torch.rand(2, 4, 3, 3) + 0.1
    assert losses.kl_normal(mu, sigma, mu, sigma).item() == pytest.approx(0.0, abs=1e-7)
    ref = torch.distributions.kl_divergence(
        torch.distributions.Normal(mu, sigma), torch.distributions.Normal(mu * 0.5, sigma * 2)
    ).mean()
    torch.testing.assert_close(losses.kl_normal(mu, sigma, mu * 0.5, sigma * 2), ref)


def test_multiscale_l1_visible_region_only() -> None:
    target = torch.zeros(1, 3, 8, 8)
    hole = torch.zeros(1, 1, 8, 8)
    hole[..., :4, :] = 1
    pred = [torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 8, 8)]
    pred[1][..., :4, :] = 5.0  # error only inside the hole
    assert losses.multiscale_l1(pred, target, weight=1 - hole).item() == pytest.approx(0.0)
    assert losses.multiscale_l1(pred, target).item() == pytest.approx(2.5)  # mean over all pixels


def test_scale_pyramid_shapes() -> None:
    pyr = losses.scale_pyramid(torch.randn(2, 3, 32, 48), 3)
    assert [tuple(p.shape[-2:]) for p in pyr] == [(8, 12), (16, 24), (32, 48)]


def test_feature_match_detaches_real() -> None:
    fake = torch.randn(2, 1, 3, 3, requires_grad=True)
    real = torch.randn(2, 1, 3, 3, requires_grad=True)
    losses.feature_match_l2(fake, real).backward()
    assert fake.grad is not None and real.grad is None


def test_multiscale_l2_squares_the_difference() -> None:
    target = torch.zeros(1, 3, 8, 8)
    pred = torch.full((1, 3, 8, 8), 0.5)
    torch.testing.assert_close(losses.multiscale_l1([pred], target, norm="l2"), torch.tensor(0.25))
    torch.testing.assert_close(losses.multiscale_l1([pred], target), torch.tensor(0.5))
    with pytest.raises(ValueError, match="unknown norm"):
        losses.multiscale_l1([pred], target, norm="l3")


def test_random_features_are_fixed_by_the_seed_and_not_trained() -> None:
    from dualinpaint.layers import RandomFeatures

    a, b, c = RandomFeatures(seed=1), RandomFeatures(seed=1), RandomFeatures(seed=2)
    assert list(a.parameters()) == [] and a.state_dict() == {}  # nothing to train, nothing saved
    x = torch.randn(1, 3, 16, 16)
    fa, fb, fc = a(x), b(x), c(x)
    assert [f.shape for f in fa] == [(1, 32, 16, 16), (1, 64, 8, 8), (1, 128, 4, 4)]
    assert all(torch.equal(p, q) for p, q in zip(fa, fb, strict=True))
    assert not torch.allclose(fa[0], fc[0])


def test_texture_loss_sees_texture_inside_the_hole_only() -> None:
    from dualinpaint.layers import RandomFeatures

    torch.manual_seed(0)
    net = RandomFeatures()
    real = torch.rand(2, 3, 32, 32) * 2 - 1
    hole = torch.zeros(2, 1, 32, 32)
    hole[..., 8:24, 8:24] = 1
    same = losses.texture_loss(net(real), net(real), hole)
    assert same == 0
    flat = real * (1 - hole) + real.mean((2, 3), keepdim=True) * hole  # a smooth (constant) fill
    textured = real * (1 - hole) + real.roll(5, dims=3) * hole  # other pixels, the same texture
    assert losses.texture_loss(net(textured), net(real), hole) < losses.texture_loss(
        net(flat), net(real), hole
    )
    # a change outside the hole (beyond the features' reach) costs nothing
    outside = real.clone()
    outside[..., :2, :] = -1
    assert losses.texture_loss(net(outside), net(real), hole) == 0
    fake = flat.clone().requires_grad_(True)
    losses.texture_loss(net(fake), net(real), hole).backward()
    assert fake.grad[..., 8:24, 8:24].abs().sum() > 0


def test_masked_gram_is_the_weighted_second_moment() -> None:
    feat = torch.randn(1, 4, 3, 3)
    weight = torch.zeros(1, 1, 3, 3)
    weight[..., 1, 1] = 1
    f = feat[0, :, 1, 1]
    torch.testing.assert_close(losses.masked_gram(feat, weight)[0], torch.outer(f, f))


def test_feature_matching_sums_layer_means_and_detaches_real() -> None:
    fake = [torch.ones(1, 2, 4, 4, requires_grad=True), torch.zeros(1, 1, 2, 2, requires_grad=True)]
    real = [torch.zeros(1, 2, 4, 4, requires_grad=True), torch.full((1, 1, 2, 2), 0.5, requires_grad=True)]
    loss = losses.feature_matching(fake, real)
    torch.testing.assert_close(loss, torch.tensor(1.5))
    loss.backward()
    assert real[0].grad is None and fake[0].grad is not None


def test_per_sample_hole_weight_counts_every_hole_equally_and_keeps_the_total() -> None:
    hole = torch.zeros(3, 1, 8, 8)
    hole[0, :, :, :1] = 1  # a thin stroke: 8 pixels
    hole[1, :, :4] = 1  # a large hole: 32 pixels
    weight = losses.per_sample_hole_weight(hole)  # sample 2 has no hole
    assert torch.equal(weight[2], torch.zeros(1, 8, 8)) and torch.equal(weight > 0, hole > 0)
    assert torch.allclose(weight.sum(), hole.sum())  # the loss weight keeps its meaning
    per_sample = weight.sum(dim=(1, 2, 3))
    assert torch.allclose(per_sample[0], per_sample[1])  # equal shares, against 8 : 32 by area
    # in a loss: a unit error inside the thin stroke now costs as much as inside the large hole
    target, pred = torch.zeros(3, 3, 8, 8), torch.zeros(3, 3, 8, 8)
    thin, large = pred.clone(), pred.clone()
    thin[0] += 1
    large[1] += 1
    by_area = [losses.multiscale_l1([p], target, weight=hole).item() for p in (thin, large)]
    equal = [losses.multiscale_l1([p], target, weight=weight).item() for p in (thin, large)]
    assert by_area[1] == 4 * by_area[0] and equal[0] == pytest.approx(equal[1])


def test_hole_log_mse_is_minus_the_evaluators_hole_psnr_and_weighs_samples_in_db() -> None:
    from dualinpaint.metrics import psnr

    torch.manual_seed(0)
    target = torch.rand(3, 3, 16, 16) * 2 - 1
    hole = torch.zeros(3, 1, 16, 16)
    hole[0, :, :, 3:5] = 1  # a thin stroke
    hole[1, :, 4:12, 4:12] = 1  # a square; sample 2 has no hole and is left out
    pred = (target + 0.02 * torch.randn_like(target)).clamp(-1, 1)
    pred[1] = (target[1] + 0.2 * torch.randn_like(target[1])).clamp(-1, 1)
    pred.requires_grad_(True)
    loss = losses.hole_log_mse(pred, target, hole, floor=0.0)
    hole_psnr = psnr(pred.detach()[:2], target[:2], hole[:2])  # the metric, on the samples with holes
    torch.testing.assert_close(
        loss.double(), 10 * torch.log10(torch.tensor(4.0).double()) - hole_psnr.mean(), rtol=0, atol=1e-4
    )
    loss.backward()
    assert pred.grad[2].abs().max() == 0 and pred.grad[:, :, hole[0, 0] == 0][0].abs().max() == 0
    # halving a sample's error gains the same 6 dB whatever its size: the gradient per unit of error
    # is larger where the error is small (the thin stroke), unlike an L1 or L2 mean over the batch
    g_thin = pred.grad[0][hole[0].expand(3, -1, -1) > 0].abs().mean()
    g_large = pred.grad[1][hole[1].expand(3, -1, -1) > 0].abs().mean()
    assert g_thin > 10 * g_large
    empty = losses.hole_log_mse(pred, target, torch.zeros_like(hole))
    assert empty.item() == 0.0


def test_hole_log_mse_counts_the_hole_exactly_for_a_bf16_prediction() -> None:
    torch.manual_seed(0)
    target = torch.rand(1, 3, 64, 64) * 2 - 1
    hole = torch.zeros(1, 1, 64, 64)
    hole[..., 1:, :41] = 1  # 2583 pixels: bf16 cannot hold that count (it rounds to 2576)
    pred = (target + 0.1 * torch.randn_like(target)).bfloat16()  # what autocast hands the trainer
    assert losses.hole_log_mse(pred, target, hole) == losses.hole_log_mse(pred.float(), target, hole)


def test_focal_frequency_loss_is_the_hole_mse_without_focus_and_weighs_the_worst_frequencies() -> None:
    torch.manual_seed(0)
    target = torch.rand(3, 3, 16, 16) * 2 - 1
    hole = torch.zeros(3, 1, 16, 16)
    hole[0, :, 2:14, 2:14] = 1
    hole[1, :, :, 5:7] = 1  # sample 2 has no hole and is left out
    pred = (target + 0.1 * torch.randn_like(target)).requires_grad_(True)
    # alpha = 0: every frequency weighs 1, and by Parseval the loss is each sample's hole MSE
    flat = losses.focal_frequency_loss(pred, target, hole, alpha=0.0)
    mse = [((pred[i] - target[i]) ** 2 * hole[i]).sum() / (3 * hole[i].sum()) for i in (0, 1)]
    torch.testing.assert_close(flat, (mse[0] + mse[1]) / 2)
    focal = losses.focal_frequency_loss(pred, target, hole)
    assert 0 < focal < flat  # weights in [0, 1], below 1 except at each spectrum's peak
    focal.backward()
    assert pred.grad[2].abs().max() == 0  # no hole, no gradient
    assert pred.grad[:, :, hole[0, 0] == 0][0].abs().max() == 0  # known pixels cost nothing
    # an error at one frequency keeps its full weight; the same energy spread over all of them does not
    wave = torch.cos(torch.arange(16.0) * torch.pi / 2).view(1, 1, 1, 16).expand(1, 3, 16, 16)
    noise = torch.randn(1, 3, 16, 16)
    noise = noise * wave.norm() / noise.norm()
    whole = torch.ones(1, 1, 16, 16)
    zero = torch.zeros(1, 3, 16, 16)
    peaked = losses.focal_frequency_loss(0.1 * wave, zero, whole)
    spread = losses.focal_frequency_loss(0.1 * noise, zero, whole)
    torch.testing.assert_close(peaked, losses.focal_frequency_loss(0.1 * wave, zero, whole, alpha=0.0))
    assert spread < 0.75 * peaked  # white noise: about half
    assert losses.focal_frequency_loss(target, target, hole) == 0
    assert losses.focal_frequency_loss(pred, target, torch.zeros_like(hole)).item() == 0.0
