"""texture.transfer_texture: texture copied from the known region into a smooth fill, inside the hole only."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dualinpaint.metrics import detail_ratio
from dualinpaint.texture import push_pull, transfer_texture


def _scene(size: int = 96, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A photo-like image (a smooth gradient plus fine random texture), a centre hole, and the image with
    the hole smoothed (what a PSNR-trained fill gives: the gradient without the texture)."""
    g = torch.Generator().manual_seed(seed)
    ramp = torch.linspace(-0.6, 0.6, size)
    smooth = (ramp[None, :] + 0.3 * ramp[:, None]).expand(3, size, size)[None].clone()
    grain = F.avg_pool2d(torch.randn(1, 3, size + 1, size + 1, generator=g), 2, 1) * 0.15
    photo = (smooth + grain).clamp(-1, 1)
    mask = torch.zeros(1, 1, size, size)
    mask[..., size // 4 : 3 * size // 4, size // 4 : 3 * size // 4] = 1
    filled = photo * (1 - mask) + smooth * mask
    return photo, mask, filled


def test_adds_detail_inside_the_hole_and_nothing_outside() -> None:
    photo, mask, filled = _scene()
    out = transfer_texture(filled, mask)
    assert out.shape == filled.shape and out.dtype == filled.dtype
    assert torch.equal(out * (1 - mask), filled * (1 - mask))  # known pixels are untouched
    loud = filled * 1.5  # out of range outside the hole: still untouched there (only the hole is clamped)
    assert torch.equal(transfer_texture(loud, mask) * (1 - mask), loud * (1 - mask))
    before = float(detail_ratio(filled, photo, mask))
    after = float(detail_ratio(out, photo, mask))
    assert before < 0.4 and after > before + 0.2 and after < 1.6, (before, after)
    # the structure (low frequencies) stays the fill's: the added texture averages out
    low = F.avg_pool2d(out - filled, 8)
    assert float(low.abs().max()) < 0.05


def test_strength_zero_no_hole_or_nothing_known_return_the_input() -> None:
    _, mask, filled = _scene()
    assert transfer_texture(filled, mask, strength=0.0) is filled
    assert transfer_texture(filled, torch.zeros_like(mask)) is filled
    everything = torch.ones_like(mask)
    assert torch.equal(transfer_texture(filled, everything), filled)  # nowhere to copy from


def test_a_smooth_surrounding_gets_no_texture() -> None:
    """Texture is brought to the energy of the hole's surroundings: a flat sky stays flat."""
    _, mask, _ = _scene()
    flat = torch.full((1, 3, 96, 96), 0.2)
    far = torch.randn(1, 3, 10, 96, generator=torch.Generator().manual_seed(1))
    flat[..., :10, :] = 0.2 * far  # texture far from the hole
    out = transfer_texture(flat, mask)
    inner = mask.bool().expand_as(out)
    assert float((out - flat)[inner].abs().mean()) < 0.01


def test_deterministic_without_a_generator_and_seeded_with_one() -> None:
    _, mask, filled = _scene()
    assert torch.equal(transfer_texture(filled, mask), transfer_texture(filled, mask))
    a = transfer_texture(filled, mask, generator=torch.Generator().manual_seed(1))
    b = transfer_texture(filled, mask, generator=torch.Generator().manual_seed(1))
    c = transfer_texture(filled, mask, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b)
    assert float((a - c).abs()[mask.bool().expand_as(a)].mean()) > 0.02  # another seed, other texture


def test_batch_equals_images_one_by_one() -> None:
    p0, m0, f0 = _scene(seed=0)
    _, _, f1 = _scene(seed=3)
    m1 = torch.zeros_like(m0)
    m1[..., 10:40, 50:90] = 1
    batch = transfer_texture(torch.cat([f0, f1]), torch.cat([m0, m1]))
    # float32 sums over the batch's common box (wider than one image's own): rounding, up to ~2e-5
    assert torch.allclose(batch[:1], transfer_texture(f0, m0), atol=1e-4)
    assert torch.allclose(batch[1:], transfer_texture(f1, m1), atol=1e-4)


def test_odd_sizes_and_bf16() -> None:
    _, mask, filled = _scene(size=90)
    out = transfer_texture(filled[..., :77, :], mask[..., :77, :])
    assert out.shape == (1, 3, 77, 90)
    half = transfer_texture(filled.bfloat16(), mask)
    assert half.dtype == torch.bfloat16
    # odd cells (the default cell is 3 px at 200², and one given explicitly): the grid still lines up
    photo, mask, filled = _scene(size=200)
    for cell in (None, 5):
        out = transfer_texture(filled, mask, cell=cell)
        assert torch.equal(out * (1 - mask), filled * (1 - mask))
        assert float(detail_ratio(out, photo, mask)) > float(detail_ratio(filled, photo, mask)) + 0.2


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"strength": -1.0}, "texture=-1.0 must be a number >= 0"),
        ({"strength": float("nan")}, "texture=nan must be a number >= 0"),
        ({"strength": True}, "texture=True must be a number >= 0"),
    ],
)
def test_bad_strength_is_a_one_line_error(kwargs: dict, fragment: str) -> None:
    _, mask, filled = _scene()
    with pytest.raises(ValueError, match=fragment):
        transfer_texture(filled, mask, **kwargs)
    with pytest.raises(ValueError, match="N×1×H×W"):
        transfer_texture(filled, mask[0])
    with pytest.raises(ValueError, match="cell must be an int >= 2"):
        transfer_texture(filled, mask, cell=1)


def test_push_pull_keeps_known_values_and_fills_from_them() -> None:
    values = torch.zeros(1, 1, 16, 16)
    values[..., :, :8] = 2.0
    values[..., :, 8:] = 4.0
    known = torch.ones(1, 1, 16, 16)
    known[..., 4:12, 4:12] = 0
    out = push_pull(values * known, known)
    assert torch.equal(out * known, values * known)
    hole = out[known == 0]
    assert float(hole.min()) >= 2.0 - 1e-6 and float(hole.max()) <= 4.0 + 1e-6  # within the known range
    assert float(out[0, 0, 8, 4]) < float(out[0, 0, 8, 11])  # nearer values weigh more


def test_thin_strokes_stay_smooth_and_thick_holes_get_texture_up_to_their_border() -> None:
    """The texture follows the hole's local thickness: a stroke narrower than 4 cells (which a smooth
    fill gets nearly right) gets none at all, even near a large hole; a wider one gets some; a large
    hole gets full texture from one cell inside its border."""
    from dualinpaint import texture

    size = 256  # cells of 4 px
    photo, _, _ = _scene(size=size)
    mask = torch.zeros(1, 1, size, size)
    mask[..., 40:220, 60:74] = 1  # a 14-px stroke: half-width 7 px < 2 cells
    mask[..., 40:220, 90:110] = 1  # a 20-px stroke: half-width 10 px, between 2 and 4 cells
    mask[..., 64:192, 124:252] = 1  # a 128² hole, 14 px from the wider stroke
    smooth = F.avg_pool2d(F.pad(photo, (7, 7, 7, 7), mode="replicate"), 15, 1)
    filled = photo * (1 - mask) + smooth * mask
    out = transfer_texture(filled, mask)
    assert torch.equal(out[..., 40:220, 60:74], filled[..., 40:220, 60:74])
    added = (out - filled)[0].abs().mean(0)
    assert float(added[64:192, 124:252].mean()) > 0.01
    fade = texture._thickness_fade(mask, 4)[0, 0]
    assert float(fade[:, :88].max()) == 0 and float(fade[mask[0, 0] == 0].max()) == 0
    assert 0 < float(fade[20 + 40, 100]) < 1  # the middle of the 20-px stroke, away from the square
    assert float(fade[68:188, 128:248].min()) == 1  # full strength one cell inside the square's border
    assert 0 < float(fade[128, 124]) < 1  # ramping up on the border pixel itself
    # the same holes at 4× the size (cells of 16 px, measured on a shrunk mask): the same share of texture
    big = F.interpolate(mask, scale_factor=4.0, mode="nearest")
    share = float(fade.sum() / mask.sum())
    assert abs(float(texture._thickness_fade(big, 16).sum() / big.sum()) - share) < 0.02, share
