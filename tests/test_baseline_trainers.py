"""Trainers of GntIpt (DeepFill v1) and GMCNN: losses, VGG19 loading, ID-MRF, training steps, overfit."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from dualinpaint.baseline_models import display_name
from dualinpaint.baseline_trainers import (
    GMCNNTrainer,
    GntIptTrainer,
    NoCritic,
    confidence_weights,
    masked_gradient_penalty,
    spatial_discount,
)
from dualinpaint.config import Config, LossConfig, load_config
from dualinpaint.train import make_trainer
from dualinpaint.vgg import VGG19Features, id_mrf_loss, load_vgg19, mrf_loss

from .conftest import make_photos
from .test_baseline_models import SMALL, TABLE1, centre_hole
from .test_train import stream_for

pytestmark = pytest.mark.usefixtures("one_thread")


def small(family: str, *extra: str) -> Config:
    return load_config(TABLE1 / f"{family}.yaml", [*SMALL, *extra])


def with_loss(cfg: Config, **fields: object) -> Config:
    """``cfg`` with loss fields set, also ones config.py does not define yet (lambda_mrf, vgg19_weights)."""
    known = {f.name for f in dataclasses.fields(LossConfig)}
    loss = dataclasses.replace(cfg.loss, **{k: v for k, v in fields.items() if k in known})
    for k, v in fields.items():
        if k not in known:
            object.__setattr__(loss, k, v)
    return dataclasses.replace(cfg, loss=loss)


class _Payload:
    """An arbitrary pickled object: ``weights_only`` loading must refuse it."""


@pytest.fixture(scope="module")
def vgg_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A VGG19-shaped torchvision state dict, random weights (features up to conv4_2, one classifier key)."""
    torch.manual_seed(0)
    state = {f"features.{k}": v.clone() for k, v in VGG19Features().features.state_dict().items()}
    state["classifier.6.bias"] = torch.zeros(1000)  # ignored
    path = tmp_path_factory.mktemp("vgg") / "vgg19.pth"
    torch.save(state, path)
    return path


# ------------------------------------------------------------------------------------ pure losses


def test_spatial_discount_is_deepfills_mask_on_a_box_and_a_distance_elsewhere() -> None:
    gamma, (h, w) = 0.9, (7, 10)
    hole = torch.zeros(1, 1, 16, 20)
    hole[..., 3 : 3 + h, 5 : 5 + w] = 1
    weight = spatial_discount(hole, gamma)
    box = torch.tensor(
        [[gamma ** min(i, h - 1 - i, j, w - 1 - j) for j in range(w)] for i in range(h)], dtype=torch.float32
    )
    assert torch.allclose(weight[0, 0, 3 : 3 + h, 5 : 5 + w], box)
    assert weight.sum() == weight[..., 3 : 3 + h, 5 : 5 + w].sum()  # 0 outside the hole
    ell = torch.zeros(1, 1, 12, 12)
    ell[..., 0:8, 0:3] = 1  # an L touching the image border: the border is not context
    ell[..., 5:8, 0:8] = 1
    d = spatial_discount(ell, 0.5)
    assert d[0, 0, 0, 0] == 0.5**2 and d[0, 0, 6, 6] == 0.5 and d[0, 0, 6, 7] == d[0, 0, 4, 2] == 1.0
    assert spatial_discount(torch.ones(1, 1, 4, 4), 0.5).min() > 0  # no known pixel: still finite


def test_confidence_weights_follow_gmcnns_gaussian_propagation() -> None:
    from scipy.stats import norm

    size, sigma = 64, 1 / 40  # the released gauss_kernel, 2-D, with scipy as there
    interval = (2 * sigma + 1.0) / size
    x = np.linspace(-sigma - interval / 2, sigma + interval / 2, size + 1)
    k1 = np.diff(norm.cdf(x))
    kernel = np.sqrt(np.outer(k1, k1))
    kernel = torch.tensor(kernel / kernel.sum(), dtype=torch.float32).view(1, 1, size, size)
    hole = torch.zeros(1, 1, 80, 80)
    hole[..., 20:60, 24:56] = 1
    known, current = 1 - hole, 1 - hole
    for _ in range(7):  # priority_loss_mask, "SAME" padding of an even kernel: 31 before, 32 after
        conf = torch.nn.functional.conv2d(torch.nn.functional.pad(current, (31, 32, 31, 32)), kernel) * hole
        current = conf + known
    ours = confidence_weights(hole)
    assert torch.allclose(ours, conf, atol=1e-4)  # float32 sums of 64² terms
    assert ours[hole == 0].abs().max() == 0 and ours[hole == 1].min() > 0 and ours.max() <= 1
    big = torch.zeros(1, 1, 256, 256)
    big[..., 64:192, 64:192] = 1  # the originals' setting: a 128² hole at 256²
    row = confidence_weights(big)[0, 0, 128, 64:124]  # falls from the rim (0.84) towards the centre (0.48)
    assert (row[1:] <= row[:-1] + 1e-7).all() and row[0] > 1.6 * row[-1]


def test_masked_gradient_penalty_of_a_linear_critic() -> None:
    torch.manual_seed(0)
    w = torch.randn(1, 3, 4, 4)
    real, fake = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    mask = torch.zeros(2, 1, 4, 4)
    mask[0, :, :2] = 1
    mask[1] = 1
    gp = masked_gradient_penalty(
        lambda x: (x * w).sum(dim=(1, 2, 3)), real, fake, torch.rand(2, 1, 1, 1), mask
    )
    slopes = (w.square() * mask).sum(dim=(1, 2, 3)).sqrt()
    assert torch.allclose(gp, (slopes - 1).square().mean())


# ---------------------------------------------------------------------------------- VGG19, ID-MRF


def test_vgg19_loads_from_a_torchvision_state_dict(vgg_file: Path, tmp_path: Path) -> None:
    net = load_vgg19(vgg_file)
    state = torch.load(vgg_file, weights_only=True)
    assert torch.equal(net.features[21].weight, state["features.21.weight"])
    assert not any(p.requires_grad for p in net.parameters()) and not net.training
    feats = net(torch.rand(2, 3, 32, 32) * 2 - 1)
    assert feats["relu3_2"].shape == (2, 256, 8, 8) and feats["relu4_2"].shape == (2, 512, 4, 4)
    st = tmp_path / "vgg19.safetensors"  # safetensors: the same weights
    save_file({k: v.contiguous() for k, v in state.items()}, st)
    assert torch.equal(load_vgg19(st).features[0].bias, state["features.0.bias"])


def test_vgg19_loading_errors_are_one_line(vgg_file: Path, tmp_path: Path) -> None:
    state = torch.load(vgg_file, weights_only=True)
    bad = dict(state, **{"features.12.weight": torch.zeros(3, 3, 3, 3)})
    torch.save(bad, tmp_path / "bad.pth")
    torch.save({k: v for k, v in state.items() if k != "features.19.bias"}, tmp_path / "missing.pth")
    torch.save({"model": _Payload()}, tmp_path / "code.pth")  # a pickled object, not weights only
    cases = {
        "bad.pth": "features.12.weight has shape",
        "missing.pth": "missing features.19.bias",
        "code.pth": "unreadable",
        "absent.pth": "no such file",
    }
    for name, message in cases.items():
        with pytest.raises(ValueError, match=message) as err:
            load_vgg19(tmp_path / name)
        assert "\n" not in str(err.value)


def test_mrf_loss_prefers_matching_features_and_gives_gradients(vgg_file: Path) -> None:
    torch.manual_seed(0)
    target = torch.randn(2, 16, 6, 6)
    same = mrf_loss(target, target)
    noise = torch.randn(2, 16, 6, 6, requires_grad=True)
    other = mrf_loss(noise, target)
    assert same.shape == () and other > same >= 0
    other.backward()
    assert torch.isfinite(noise.grad).all() and noise.grad.abs().sum() > 0
    shuffled = target.flatten(2)[..., torch.randperm(36)].view_as(target)  # the same set of vectors
    assert torch.allclose(mrf_loss(shuffled, target), same, atol=1e-5)
    vgg = load_vgg19(vgg_file)
    gen = (torch.rand(2, 3, 16, 16) * 2 - 1).requires_grad_(True)
    loss = id_mrf_loss(vgg, gen, torch.rand(2, 3, 16, 16) * 2 - 1)
    assert loss.shape == () and torch.isfinite(loss) and loss > 0
    loss.backward()
    assert gen.grad.abs().sum() > 0 and all(p.grad is None for p in vgg.parameters())


# -------------------------------------------------------------------------------------- trainers


def test_gmcnn_trainer_needs_vgg_weights_unless_id_mrf_is_off(vgg_file: Path) -> None:
    cfg = small("gmcnn")
    with pytest.raises(ValueError, match="loss.vgg19_weights") as err:
        make_trainer(cfg)
    assert "\n" not in str(err.value)
    off = with_loss(cfg, lambda_mrf=0.0)
    trainer = make_trainer(off)
    assert trainer.vgg is None and trainer.display_name == display_name(off) == "GMCNN without ID-MRF"
    with_vgg = make_trainer(with_loss(cfg, vgg19_weights=str(vgg_file)))  # the future config field
    assert isinstance(with_vgg.vgg, VGG19Features) and with_vgg.display_name == "GMCNN"
    assert GMCNNTrainer(cfg, vgg_weights=vgg_file).vgg is not None


def _trainer(family: str, vgg_file: Path, *extra: str) -> GntIptTrainer | GMCNNTrainer:
    cfg = small(family, *extra)
    return GMCNNTrainer(cfg, vgg_weights=vgg_file) if family == "gmcnn" else make_trainer(cfg)


@pytest.mark.parametrize("family", ["gntipt", "gmcnn"])
def test_one_step_and_gradients_reach_every_parameter(family: str, vgg_file: Path, photo_dir: Path) -> None:
    # 64²: GntIpt attends over 8×8 cells at 1/8 (at 32² a centre hole leaves no known 3×3 cell patch)
    trainer = _trainer(family, vgg_file, "optim.n_critic=2", "data.size=64", "data.load_size=68")
    assert isinstance(trainer, GntIptTrainer if family == "gntipt" else GMCNNTrainer)
    assert isinstance(trainer.d_rec, NoCritic)
    stream = stream_for(trainer.cfg, photo_dir)
    values = trainer.train_step(stream).values  # one full step: 2 critic updates, 1 generator update
    terms = {"g/rec", "g/ae", "g/adv"} | ({"g/mrf"} if family == "gmcnn" else set())
    assert terms | {"g/total", "d/global", "d/local", "d/gp", "d/total"} <= set(values)
    assert all(math.isfinite(v) for v in values.values())
    assert values["d/gp"] > 0 and values["g/rec"] > 0 and values["g/ae"] > 0
    assert family == "gntipt" or values["g/mrf"] > 0
    batch, pos = stream.next()
    image, hole = trainer._prepare(batch)
    out = trainer.forward(image, hole, pos, 0)
    assert (out.coarse is not None) == (family == "gntipt")
    terms = trainer.g_terms(image, hole, out)
    for name, term in terms.items():  # every loss term alone reaches the generator
        trainer.net.zero_grad()
        term.backward(retain_graph=True)
        grads = [p.grad for p in trainer.net.parameters() if p.grad is not None]
        assert grads and sum(g.abs().sum() for g in grads) > 0, name
    trainer.net.zero_grad()
    trainer.g_total(terms).backward()
    for name, p in trainer.net.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"no gradient for G.{name}"
    trainer.opt_d.zero_grad(set_to_none=True)
    trainer.opt_d.step = lambda *a, **k: None  # keep the critic step's gradients for inspection
    trainer.d_step(image, hole, trainer.forward(image, hole, pos, 0), pos, 0)
    for name, p in trainer.d_gen.named_parameters():
        if name.endswith("dense.bias"):  # a WGAN critic's loss and penalty ignore its output offset
            assert p.grad is not None and p.grad.abs().max() < 1e-6
            continue
        assert p.grad is not None and p.grad.abs().sum() > 0, f"no gradient for D.{name}"


@pytest.mark.parametrize("family", ["gntipt", "gmcnn"])
def test_short_overfit_lowers_the_hole_loss(family: str, vgg_file: Path, tmp_path: Path) -> None:
    """4 images in one batch, centre holes, 1 critic step per generator step, 12 steps: the hole loss of
    a fixed batch (measured before and after, not the noisy per-step values) falls by at least 25 %."""
    make_photos(tmp_path / "four", 4, seed=3)
    fixed = ["data.flip=false", "data.load_size=32", "data.batch_size=4", "masks.mix={center: 1}"]
    trainer = _trainer(family, vgg_file, *fixed, "optim.n_critic=1", "optim.lr_g=0.0003")
    stream = stream_for(trainer.cfg, tmp_path / "four")
    batch, pos = stream.next()
    image, hole = trainer._prepare(batch)

    def hole_loss() -> float:
        with torch.no_grad():
            return trainer.g_terms(image, hole, trainer.forward(image, hole, pos, 0))["rec"].item()

    before = hole_loss()
    for _ in range(12):
        trainer.train_step(stream)
    assert hole_loss() <= 0.75 * before


def test_gntipt_trains_saves_and_loads_through_the_shared_loop(tmp_path: Path, photo_dir: Path) -> None:
    from dualinpaint import checkpoint as ckpt
    from dualinpaint.train import train

    cfg = small("gntipt", "optim.n_critic=1", "train.val_every=2", "train.sample_every=2")
    summary = train(cfg, photo_dir, tmp_path / "run", val=photo_dir, steps=2, progress=False)
    assert summary.step == 2 and (tmp_path / "run" / "samples" / "step_0000002.png").is_file()
    net, stored, _ = ckpt.load_model(tmp_path / "run")
    image, hole = torch.rand(1, 3, 32, 32) * 2 - 1, centre_hole(1, 32, 32)
    with torch.no_grad():
        assert net.complete(image, hole).shape == (1, 3, 32, 32) and stored == cfg
