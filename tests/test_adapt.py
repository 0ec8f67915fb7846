from __future__ import annotations

import numpy as np
import pytest
import torch

from dualinpaint.adapt import adapt, check_adapt_options, stroke_batch
from dualinpaint.config import load_config
from dualinpaint.generator import DualPathInpainter
from dualinpaint.losses import hole_log_mse

pytestmark = pytest.mark.usefixtures("one_thread")

SIZE = 32


def tiny_net() -> DualPathInpainter:
    torch.manual_seed(0)
    cfg = load_config("tiny").with_overrides(["model.prefill=biharmonic", "model.prefill_iters=4"])
    return DualPathInpainter(cfg.model).eval().requires_grad_(False)


def photo() -> tuple[torch.Tensor, torch.Tensor]:
    """A smooth striped image 1×3×32×32 and a centre hole 1×1×32×32."""
    yy, xx = torch.meshgrid(torch.arange(SIZE), torch.arange(SIZE), indexing="ij")
    image = torch.stack([torch.sin(xx / 3.0), torch.cos(yy / 4.0), torch.sin((xx + yy) / 5.0)])[None] * 0.8
    hole = torch.zeros(1, 1, SIZE, SIZE)
    hole[..., 10:22, 10:22] = 1
    return image, hole


def weights(net: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in net.state_dict().items()}


def test_adapt_tunes_a_copy_and_never_reads_the_hole() -> None:
    net = tiny_net()
    before = weights(net)
    image, hole = photo()
    tuned = adapt(net, image, hole, steps=3, lr=1e-3, seed=1)
    assert tuned is not net and not any(p.requires_grad for p in tuned.parameters())
    for k, v in net.state_dict().items():  # the network passed in is untouched
        assert torch.equal(v, before[k]), k
    changed = [k for k, v in tuned.state_dict().items() if not torch.equal(v, before[k])]
    assert changed, "adaptation changed no weight"
    # other pixels inside the hole: bit-identical weights (the hole is never read)
    other = image.clone()
    other[..., 10:22, 10:22] = torch.rand(1, 3, 12, 12) * 2 - 1
    again = adapt(net, other, hole, steps=3, lr=1e-3, seed=1)
    for k, v in tuned.state_dict().items():
        assert torch.equal(v, again.state_dict()[k]), k
    # the seed draws the strokes: another seed, other weights
    third = adapt(net, image, hole, steps=3, lr=1e-3, seed=2)
    assert any(not torch.equal(v, third.state_dict()[k]) for k, v in tuned.state_dict().items())
    assert adapt(net, image, hole, steps=0) is net


def test_adapt_lowers_the_fill_error_on_the_photos_own_strokes() -> None:
    net = tiny_net()
    image, hole = photo()
    known = 1 - hole
    strokes = stroke_batch(known, 4, np.random.default_rng(123))  # held out: not the training draws
    both = torch.clamp(strokes + hole, 0, 1)
    x = image.expand(4, -1, -1, -1)

    def error(model: torch.nn.Module) -> float:
        with torch.no_grad():
            return hole_log_mse(model.complete(x, both), x, strokes).item()

    tuned = adapt(net, image, hole, steps=40, lr=2e-3, batch=2, seed=0)
    assert error(tuned) < error(net) - 0.3  # at least 0.3 dB better on strokes it did not train on


def test_stroke_batch_stays_inside_the_known_region() -> None:
    known = torch.ones(1, 1, SIZE, SIZE)
    known[..., :, :16] = 0
    strokes = stroke_batch(known, 3, np.random.default_rng(0))
    assert strokes.shape == (3, 1, SIZE, SIZE) and strokes.any()
    assert not (strokes[..., :, :16]).any() and set(strokes.unique().tolist()) <= {0.0, 1.0}


@pytest.mark.parametrize(
    ("steps", "lr", "batch", "message"),
    [
        (-1, 1e-4, 2, "steps"),
        (1.5, 1e-4, 2, "steps"),
        (3, 0.0, 2, "lr"),
        (3, float("nan"), 2, "lr"),
        (3, 1e-4, 0, "batch"),
    ],
)
def test_bad_adapt_options_are_one_line_errors(steps, lr, batch, message) -> None:
    with pytest.raises(ValueError, match=message) as err:
        check_adapt_options(steps, lr, batch)
    assert "\n" not in str(err.value)
    image, hole = photo()
    with pytest.raises(ValueError, match="1×3×H×W"):
        adapt(tiny_net(), image.expand(2, -1, -1, -1), hole, steps=1)
