from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dualinpaint.config import load_config
from dualinpaint.generator import (
    DualPathInpainter,
    _biharmonic_cg,
    _biharmonic_solve,
    _laplacian,
    biharmonic_fill,
    convert_upsample,
    harmonic_fill,
)


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


@pytest.mark.parametrize("preset", ["paper", "picnet", "tiny", "photo"])
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


def test_mask_input_tells_a_hole_from_black_pixels() -> None:
    """Without the mask channel, zero-valued visible pixels and a hole look alike to E2; with it not."""
    image = torch.rand(1, 3, 64, 64) * 2 - 1
    image[..., 16:32, 16:32] = 0  # visible pixels whose value equals a zeroed hole's
    hole_a, hole_b = torch.zeros(1, 1, 64, 64), torch.zeros(1, 1, 64, 64)
    hole_b[..., 16:32, 16:32] = 1
    for mask_input in (False, True):
        torch.manual_seed(0)
        cfg = small("photo").with_overrides([f"model.mask_input={str(mask_input).lower()}"])
        net = DualPathInpainter(cfg.model).eval()
        with torch.no_grad():
            mu_a, _ = net.encode_masked(image, hole_a)
            mu_b, _ = net.encode_masked(image, hole_b)
        assert torch.allclose(mu_a.mu, mu_b.mu) is not mask_input


def test_decoder_skips_carry_visible_detail_to_the_output() -> None:
    """With skips, the fill next to a visible pixel depends on it through the full-resolution skip alone."""
    torch.manual_seed(0)
    cfg = small("photo").with_overrides(["model.attention=false", "model.prefill=none"])
    net = DualPathInpainter(cfg.model).eval()
    assert len(net.gen_g.skip_proj) == cfg.model.n_down + 1
    image = torch.rand(1, 3, 64, 64) * 2 - 1
    hole = torch.zeros(1, 1, 64, 64)
    hole[..., 20:44, 20:44] = 1
    feats = net.encode_masked(image, hole)[1]
    z = torch.zeros(1, *net.latent_shape(64, 64))
    poked = image.clone()
    poked[..., 19, 30] = -poked[..., 19, 30]  # a visible pixel touching the hole
    # same encoder features, only the image passed to the decoder differs: the change reaches the
    # hole's edge only through the full-resolution skip
    with torch.no_grad():
        a = net.decode(z, feats, hole, image)
        b = net.decode(z, feats, hole, poked)
    assert not torch.allclose(a[..., 20, 29:32], b[..., 20, 29:32])
    torch.testing.assert_close(a[..., 30:, :], b[..., 30:, :])  # local: far rows are untouched


def test_harmonic_fill_keeps_known_pixels_and_solves_laplace() -> None:
    """Known pixels never change; a constant stays constant; a linear ramp (harmonic) is recovered."""
    hole = torch.zeros(1, 1, 32, 32)
    hole[..., 8:20, 10:26] = 1
    image = torch.rand(1, 3, 32, 32) * 2 - 1
    out = harmonic_fill(image * (1 - hole), hole, 5, 5)
    vis = (hole == 0).expand_as(image)
    assert torch.equal(out[vis], image[vis])
    const = torch.full((1, 3, 32, 32), 0.3)
    torch.testing.assert_close(harmonic_fill(const * (1 - hole), hole, 0, 5), const)
    ramp = torch.linspace(-1, 1, 32).view(1, 1, 1, 32).expand(1, 3, 32, 32)
    rough = (harmonic_fill(ramp * (1 - hole), hole, 0, 5) - ramp).abs().max()
    solved = (harmonic_fill(ramp * (1 - hole), hole, 2000, 5) - ramp).abs().max()
    assert solved < 1e-3 < rough


def test_laplacian_is_symmetric() -> None:
    """⟨Δx, y⟩ = ⟨x, Δy⟩ with the replicated border, so the CG operator Δ² is symmetric."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 9, 13, generator=g, dtype=torch.float64)
    y = torch.randn(2, 3, 9, 13, generator=g, dtype=torch.float64)
    lhs, rhs = (_laplacian(x) * y).sum(), (x * _laplacian(y)).sum()
    torch.testing.assert_close(lhs, rhs, rtol=1e-12, atol=1e-12)


def test_biharmonic_fill_keeps_known_pixels_and_continues_gradients() -> None:
    """Known pixels never change; a constant stays constant; a quadratic (biharmonic, not harmonic)
    is recovered, which the harmonic fill cannot do; images of a batch do not affect each other."""
    hole = torch.zeros(2, 1, 32, 32)
    hole[..., 8:20, 10:26] = 1
    hole[1, :, 2:5, 3:30] = 1
    image = torch.rand(2, 3, 32, 32) * 2 - 1
    out = biharmonic_fill(image * (1 - hole), hole, 5, 3)
    vis = (hole == 0).expand_as(image)
    assert torch.equal(out[vis], image[vis])
    alone = biharmonic_fill(image[:1] * (1 - hole[:1]), hole[:1], 50, 3)  # image 1's hole box is larger
    assert torch.equal(biharmonic_fill(image * (1 - hole), hole, 50, 3)[:1], alone)  # batch-independent
    const = torch.full((2, 3, 32, 32), 0.3)
    torch.testing.assert_close(biharmonic_fill(const * (1 - hole), hole, 5, 3), const)
    frame = torch.ones(1, 1, 32, 32)
    frame[..., 2:-2, 2:-2] = 0
    huge = 1 - frame  # 77 % hole: no cell of the 4×4 level is half known
    torch.testing.assert_close(biharmonic_fill(const[:1] * frame, huge, 5, 3), const[:1])
    u = torch.linspace(-1, 1, 32)
    bowl = (0.5 * u.view(1, 1, 32, 1) ** 2 + 0.4 * u.view(1, 1, 1, 32) - 0.3).expand(2, 3, 32, 32)
    inner = hole.clone()
    inner[..., 2:5, :] = 0  # the border rows/columns see the replicated pad: keep the hole off them
    err = (biharmonic_fill(bowl * (1 - inner), inner, 200, 3) - bowl).abs().max()
    harm = (harmonic_fill(bowl * (1 - inner), inner, 2000, 3) - bowl).abs().max()
    assert err < 1e-3 < harm


def test_biharmonic_solve_on_the_hole_box_equals_the_whole_image() -> None:
    """Solving on the free pixels' box (+2 px) is the same arithmetic as on the whole image: equal in
    float64 to rounding, for holes inside the image and touching its border, in a batch."""
    g = torch.Generator().manual_seed(5)
    x = torch.rand(2, 3, 48, 64, generator=g, dtype=torch.float64) * 2 - 1
    free = torch.zeros(2, 1, 48, 64, dtype=torch.float64)
    free[0, :, 10:20, 30:41] = 1
    free[1, :, 0:8, 55:64] = 1  # the image's corner
    for iters in (1, 5):
        for i in range(2):
            got = _biharmonic_solve(x[i : i + 1], free[i : i + 1], iters)
            torch.testing.assert_close(got, _biharmonic_cg(x[i : i + 1], free[i : i + 1], iters))
    torch.testing.assert_close(_biharmonic_solve(x, free * 0, 5), x)  # nothing free: unchanged


def test_biharmonic_fill_off_the_cpu_solves_the_batch_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """An accelerator solves the whole batch in one CG (no per-image loop of small kernels): the same
    equations, so the same fill to rounding (on the CPU, with the device check patched)."""
    from dualinpaint import generator

    g = torch.Generator().manual_seed(1)
    image = torch.rand(2, 3, 64, 96, generator=g) * 2 - 1
    hole = torch.zeros(2, 1, 64, 96)
    hole[0, :, 16:48, 24:72] = 1
    hole[1, :, 40:64, 0:30] = 1
    x, free = image * (1 - hole), hole
    assert generator._solve_in_boxes(x)  # the CPU loops over images
    boxed = biharmonic_fill(x, free, 50, 4)
    monkeypatch.setattr(generator, "_solve_in_boxes", lambda t: False)
    batched = biharmonic_fill(x, free, 50, 4)
    torch.testing.assert_close(batched, boxed, rtol=0, atol=1e-3)
    assert torch.equal(_biharmonic_solve(x, free, 7), _biharmonic_cg(x, free, 7))


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")  # the export path
def test_conjugate_gradients_stop_once_converged_with_the_same_result(monkeypatch) -> None:
    """Eager CG leaves the loop once every residual is below its floor; TorchScript (what the ONNX
    export runs) takes every step. The remaining steps have step size 0, so both give the same bits."""
    from dualinpaint import generator

    torch.manual_seed(0)
    x = torch.rand(2, 3, 12, 10) * 2 - 1
    free = torch.zeros(2, 1, 12, 10)
    free[0, :, 3:7, 2:6] = 1
    free[1, :, 5:9, 4:8] = 1
    calls, laplacian = [], generator._laplacian
    monkeypatch.setattr(generator, "_laplacian", lambda t: calls.append(1) or laplacian(t))
    eager = generator._biharmonic_cg(x, free, 200)
    monkeypatch.undo()
    assert len(calls) < 2 * 50  # 16 unknowns per image: converged long before 200 steps
    every_step = torch.jit.script(generator._biharmonic_cg)(x, free, 200)
    assert torch.equal(eager, every_step) and (eager - x).abs().max() > 0.01


def test_biharmonic_fill_matches_scikit_image() -> None:
    """Converged, the fill is scikit-image's ``inpaint_biharmonic`` (the same discrete equation)."""
    restoration = pytest.importorskip("skimage.restoration")
    g = torch.Generator().manual_seed(3)
    image = F.avg_pool2d(torch.rand(1, 3, 64, 64, generator=g), 3, 1, 1)[..., 16:48, 16:48] * 2 - 1
    hole = torch.zeros(1, 1, 32, 32)
    hole[..., 4:9, 3:29] = 1  # a thin stroke and a blob touching the image border
    hole[..., 18:30, 20:32] = 1
    ours = biharmonic_fill(image * (1 - hole), hole, 400, 2)
    ref = restoration.inpaint_biharmonic(
        image[0].permute(1, 2, 0).double().numpy(), hole[0, 0].bool().numpy(), channel_axis=-1
    )
    torch.testing.assert_close(ours[0].permute(1, 2, 0).double(), torch.from_numpy(ref), atol=2e-3, rtol=0)


@pytest.mark.parametrize("prefill", ["harmonic", "biharmonic"])
def test_prefill_model_starts_from_the_smooth_fill(prefill: str) -> None:
    """With ``prefill`` the residual RGB layer starts at 0: an untrained network's fill is the smooth fill."""
    torch.manual_seed(0)
    cfg = small("photo").with_overrides([f"model.prefill={prefill}"])
    fill = {"harmonic": harmonic_fill, "biharmonic": biharmonic_fill}[prefill]
    net = DualPathInpainter(cfg.model).eval()
    image = torch.rand(2, 3, 64, 64) * 2 - 1
    hole = torch.zeros(2, 1, 64, 64)
    hole[..., 12:40, 20:30] = 1
    with torch.no_grad():
        filled = net.complete(image, hole)
        smooth = fill(image * (1 - hole), hole, cfg.model.prefill_iters, cfg.model.n_down + 1).clamp(-1, 1)
        torch.testing.assert_close(filled, smooth)
        last = net.gen_g.outputs[str(cfg.model.n_down)].body[2]
        assert not hasattr(last, "parametrizations")  # no spectral norm on a zero-initialised conv
        last.weight.normal_(0, 0.1)  # a trained residual layer: the learned residual now shows
        assert not torch.allclose(net.complete(image, hole), smooth)


def test_residual_outside_the_hole_costs_nothing() -> None:
    """The final image is fill + hole·residual: a non-zero residual changes no known pixel of any training
    output, so an L1 on known pixels gives the residual layer no gradient (issue 15: it pinned it at 0)."""
    torch.manual_seed(0)
    cfg = small("photo")
    net = DualPathInpainter(cfg.model)
    last = net.gen_g.outputs[str(cfg.model.n_down)].body[2]
    with torch.no_grad():
        last.weight.normal_(0, 0.2)
        last.bias.fill_(0.3)
    image = torch.rand(2, 3, 64, 64) * 1.6 - 0.8
    hole = torch.zeros(2, 1, 64, 64)
    hole[..., 12:40, 20:44] = 1
    out = net(image, hole)
    known = (1 - hole).bool().expand_as(image)
    for final in (out.rec[-1], out.gen[-1]):
        assert torch.equal(final[known], image[known])  # the smooth fill keeps known pixels exactly
        assert (final[~known] - net.prefill(image, hole)[~known]).abs().max() > 0.05  # residual shows
    known_l1 = ((out.gen[-1] - image).abs() * (1 - hole)).mean() + (
        (out.rec[-1] - image).abs() * (1 - hole)
    ).mean()
    grad = torch.autograd.grad(known_l1, [last.weight, last.bias], allow_unused=True, retain_graph=True)
    assert all(g is None or g.abs().max() == 0 for g in grad)
    hole_l1 = ((out.gen[-1] - image).abs() * hole).mean()
    assert torch.autograd.grad(hole_l1, last.weight)[0].abs().max() > 0


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


def test_convert_upsample_keeps_every_other_weight_and_refuses_nonsense() -> None:
    cfg = small("photo").model
    torch.manual_seed(0)
    net = DualPathInpainter(cfg).eval()
    resize = convert_upsample(net)
    assert resize.cfg.upsample == "resize" and not resize.training
    before, after = net.state_dict(), resize.state_dict()
    new = [k for k in after if k not in before]  # the two up-layers of each decoder: bias, weight, u, v
    assert len(new) == 2 * 4 * (cfg.n_down + 1)
    assert all(".main.5.1." in k or ".shortcut.1." in k for k in new), new
    for key in after.keys() - set(new):
        assert torch.equal(before[key], after[key]), key
    image, hole = torch.rand(1, 3, 64, 64) * 2 - 1, torch.zeros(1, 1, 64, 64)
    hole[..., 16:48, 16:48] = 1
    with torch.no_grad():
        out = resize.complete(image, hole)
    assert out.shape == (1, 3, 64, 64) and torch.equal(out * (1 - hole), image * (1 - hole))
    with pytest.raises(ValueError, match="already"):
        convert_upsample(resize)
