"""Table I baselines (Context Encoders, GLCIC, GntIpt, GMCNN): networks, the complete contract, training,
resume, presets, parameter counts; the trainers' losses are tested in test_baseline_trainers.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from dualinpaint import checkpoint as ckpt
from dualinpaint.baseline_models import (
    GMCNN,
    ContextEncoder,
    GLCompletionNet,
    GLDiscriminator,
    GntIpt,
    build_baseline_generator,
    contextual_attention,
    crop_around_hole,
    display_name,
    gmcnn_critics,
    gntipt_critics,
    hole_crop_origins,
)
from dualinpaint.baseline_trainers import CETrainer, GLTrainer, NoCritic
from dualinpaint.config import Config, load_config, replace
from dualinpaint.generator import build_generator
from dualinpaint.modelinfo import describe
from dualinpaint.train import make_trainer, train

from .conftest import make_photos
from .test_train import stream_for

ROOT = Path(__file__).resolve().parents[1]
TABLE1 = ROOT / "src" / "dualinpaint" / "configs" / "table1"
SMALL = [
    "model.ngf=8",
    "model.max_channels=16",
    "model.z_channels=8",
    "model.disc_channels=8",
    "model.disc_max_channels=16",
    "data.size=32",
    "data.load_size=34",
    "data.batch_size=2",
    "data.num_workers=0",
    "train.log_every=1",
    "train.sample_every=1000",
    "train.val_every=1000",
    "train.val_images=2",
]
# CE: stride 8 (4×4 latent at 32²); GL, GMCNN: stride 4; GntIpt: stride 8 (4×4 attention cells at 32²)
FAMILY_SMALL = {"ce": ["model.n_down=2"], "gl": [], "gntipt": [], "gmcnn": []}


pytestmark = pytest.mark.usefixtures("one_thread")


def small(family: str, *extra: str) -> Config:
    """The Table I preset of ``family`` shrunk to 32² and a few channels."""
    return load_config(TABLE1 / f"{family}.yaml", [*SMALL, *FAMILY_SMALL[family], *extra])


def centre_hole(n: int, h: int, w: int) -> torch.Tensor:
    hole = torch.zeros(n, 1, h, w)
    hole[..., h // 4 : 3 * h // 4, w // 4 : 3 * w // 4] = 1
    return hole


@pytest.mark.parametrize("family", ["ce", "gl"])
def test_generator_shapes_and_complete_contract(family: str) -> None:
    cfg = small(family)
    torch.manual_seed(0)
    net = build_generator(cfg.model).eval()
    assert isinstance(net, ContextEncoder if family == "ce" else GLCompletionNet)
    for h, w in ((32, 32), (24, 40)):  # square and non-square, multiples of the stride (8 / 4)
        image = torch.rand(2, 3, h, w) * 2 - 1
        hole = centre_hole(2, h, w)
        hole[1, :, :3, :5] = 1  # a second, corner hole in one sample
        with torch.no_grad():
            raw = net(image, hole)
            fill = net.complete(image, hole)
            many = net.complete(image, hole, samples=3)
            noisy = net.complete(image, hole, noise=torch.randn(2, 2, *net.latent_shape(h, w)))
        assert raw.shape == fill.shape == (2, 3, h, w)
        assert raw.abs().max() <= 1
        visible = (1 - hole).bool().expand_as(image)
        assert torch.equal(fill[visible], image[visible])  # bit-identical outside the hole
        assert not torch.equal(fill[~visible], image[~visible])
        assert many.shape == (3, 2, 3, h, w) and all(torch.equal(m, fill) for m in many)
        assert noisy.shape == (2, 2, 3, h, w) and torch.equal(noisy[1], fill)
    with pytest.raises(ValueError, match="multiple of"):
        net.complete(torch.zeros(1, 3, 30, 32), torch.zeros(1, 1, 30, 32))
    st = cfg.model.stride
    with pytest.raises(ValueError, match="at least"):  # a 1-cell latent: instance norm is undefined
        net.complete(torch.zeros(1, 3, st, 2 * st), torch.zeros(1, 1, st, 2 * st))


def test_gl_local_crop_is_centred_on_the_hole_and_inside_the_image() -> None:
    h, w, ch, cw = 32, 48, 16, 24
    hole = torch.zeros(4, 1, h, w)
    hole[0, :, 10:20, 20:30] = 1  # inside: box centre (15, 25)
    hole[1, :, 0:3, 40:48] = 1  # top-right corner: clamped
    hole[2, :, 5:6, 7:8] = 1
    hole[2, :, 25:27, 30:33] = 1  # two blobs: the bounding box of both, centre (16, 20)
    # sample 3 has no hole: the centred window
    origins = hole_crop_origins(hole, ch, cw)
    assert origins[0] == (15 - ch // 2, 25 - cw // 2)
    assert origins[1] == (0, w - cw)
    assert origins[2] == (16 - ch // 2, 20 - cw // 2)
    assert origins[3] == ((h - ch) // 2, (w - cw) // 2)
    for y, x in origins:
        assert 0 <= y <= h - ch and 0 <= x <= w - cw
    x = torch.randn(4, 3, h, w, requires_grad=True)
    crops = crop_around_hole(x, hole, ch, cw)
    assert crops.shape == (4, 3, ch, cw)
    assert torch.equal(crops[0], x[0, :, 7:23, 13:37])
    crops.sum().backward()  # a slice: the gradient is 1 exactly on the crop
    assert x.grad[0, :, 7:23, 13:37].eq(1).all() and x.grad[0].sum() == 3 * ch * cw
    d = GLDiscriminator(small("gl").model, 32, norm="none")
    img = torch.randn(2, 3, 32, 32, requires_grad=True)
    logits = d(img, centre_hole(2, 32, 32))
    assert logits.shape == (2, 1)
    logits.sum().backward()
    assert img.grad.abs().sum() > 0


@pytest.mark.parametrize("family", ["ce", "gl"])
def test_every_parameter_of_g_and_d_receives_a_gradient(family: str, photo_dir: Path) -> None:
    cfg = small(family)
    trainer = make_trainer(cfg)
    assert isinstance(trainer, CETrainer if family == "ce" else GLTrainer)
    assert isinstance(trainer.d_rec, NoCritic) and not list(trainer.d_rec.parameters())
    stream = stream_for(cfg, photo_dir)
    values = trainer.train_step(stream).values
    assert {"g/total", "g/rec", "g/adv", "d/total", "d/adv", "d/gp"} <= set(values)
    batch, pos = stream.next()
    image, hole = trainer._prepare(batch)
    out = trainer.forward(image, hole, pos, 0)
    trainer.net.zero_grad()
    trainer.g_total(trainer.g_terms(image, hole, out)).backward()
    for name, p in trainer.net.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"no gradient for G.{name}"
    trainer.opt_d.zero_grad(set_to_none=True)
    trainer.opt_d.step = lambda *a, **k: None  # keep the gradients of the critic step for inspection
    trainer.d_step(image, hole, trainer.forward(image, hole, pos, 0), pos, 0)
    for name, p in trainer.d_gen.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"no gradient for D.{name}"


def test_wgangp_critic_step_has_a_penalty(photo_dir: Path) -> None:
    cfg = small("ce", "loss.gan_mode=wgangp")
    trainer = make_trainer(cfg)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in trainer.d_gen.modules())
    values = trainer.train_step(stream_for(cfg, photo_dir)).values
    assert values["d/gp"] > 0 and torch.isfinite(torch.tensor(list(values.values()))).all()


@pytest.mark.parametrize("family", ["ce", "gl"])
def test_short_overfit_lowers_the_reconstruction_loss(tmp_path: Path, family: str) -> None:
    """4 images, one batch of all four, centre holes, 20 steps: the hole L2 drops by at least 40 %."""
    make_photos(tmp_path / "four", 4, seed=3)
    fixed = ["data.flip=false", "data.load_size=32", "data.batch_size=4", "masks.mix={center: 1}"]
    cfg = small(family, *fixed, "optim.lr_g=0.002")
    train(cfg, tmp_path / "four", tmp_path / "run", steps=20, progress=False)
    rows = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    rec = [r["g/rec"] for r in rows if "g/rec" in r]
    first, last = sum(rec[:3]) / 3, sum(rec[-3:]) / 3
    assert last <= 0.6 * first, (first, last)


def test_train_save_load_gives_the_trained_network(tmp_path: Path, photo_dir: Path) -> None:
    cfg = small("gl", "train.sample_every=2", "train.val_every=2")
    run = tmp_path / "run"
    summary = train(cfg, photo_dir, run, val=photo_dir, steps=2, progress=False)
    assert summary.step == 2 and (run / "samples" / "step_0000002.png").is_file()
    keys = set().union(*(json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()))
    assert {"g/total", "g/rec", "g/adv", "d/total", "d/real_minus_fake", "val/psnr"} <= keys
    loaded, stored, meta = ckpt.load_model(run)
    assert stored == cfg and meta["step"] == 2 and isinstance(loaded, GLCompletionNet)
    trained = build_baseline_generator(cfg.model)
    trained.load_state_dict(ckpt.load_state(run)["net"])  # the trainer's network at step 2
    image = torch.rand(2, 3, 32, 40) * 2 - 1
    hole = centre_hole(2, 32, 40)
    with torch.no_grad():
        assert torch.equal(loaded.complete(image, hole), trained.complete(image, hole))


def test_resume_is_exact(tmp_path: Path, photo_dir: Path) -> None:
    """CE, 6 steps in one go == 3 steps, stop, --resume, 3 more (bit-identical, BatchNorm critic included)."""
    cfg = small("ce", "train.ckpt_every=3", "data.batch_size=3")  # 8 images: epochs of 2 batches
    train(cfg, photo_dir, tmp_path / "full", steps=6, progress=False)
    train(cfg, photo_dir, tmp_path / "half", steps=3, progress=False)
    assert ckpt.load_state(tmp_path / "half")["position"] == {"epoch": 1, "batch": 1}
    train(None, None, tmp_path / "half", steps=6, resume=True, progress=False)
    full, half = (load_file(tmp_path / r / ckpt.WEIGHTS_NAME) for r in ("full", "half"))
    assert full.keys() == half.keys()
    for k in full:
        assert torch.equal(full[k], half[k]), k
    s_full, s_half = ckpt.load_state(tmp_path / "full"), ckpt.load_state(tmp_path / "half")
    assert s_full["d_rec"] == {} and any("running_mean" in k for k in s_full["d_gen"])
    for k in s_full["d_gen"]:
        assert torch.equal(s_full["d_gen"][k], s_half["d_gen"][k]), k


def test_table1_presets_are_complete_and_consistent() -> None:
    reference = yaml.safe_load((ROOT / "src" / "dualinpaint" / "configs" / "paper.yaml").read_text())
    cfgs = {}
    for name in ("paper", "ce", "gl", "gntipt", "gmcnn"):
        raw = yaml.safe_load((TABLE1 / f"{name}.yaml").read_text())
        for section, values in reference.items():  # flat and complete: every field of every section
            assert set(raw[section]) == set(values), (name, section)
        cfgs[name] = load_config(TABLE1 / f"{name}.yaml")
        assert cfgs[name].model.family == {"paper": "dualpath"}.get(name, name)
    assert cfgs["paper"] == load_config("paper")
    for name in ("ce", "gl"):  # same data, masks and step budget as the paper's run
        for section in ("data", "masks", "train"):
            assert getattr(cfgs[name], section) == getattr(cfgs["paper"], section), (name, section)
        assert cfgs[name].loss.gan_mode == "vanilla" and cfgs[name].loss.rec_norm == "l2"
    assert (cfgs["ce"].loss.lambda_rec, cfgs["ce"].loss.lambda_g) == (0.999, 0.001)
    assert (cfgs["gl"].loss.lambda_rec, cfgs["gl"].loss.lambda_g) == (1.0, 0.0004)
    assert cfgs["gl"].model.stride == 4 and cfgs["ce"].data.size % cfgs["ce"].model.stride == 0

    def samples(c: Config) -> int:  # every critic round draws a fresh batch
        return c.train.steps * c.data.batch_size * c.optim.n_critic

    for name in ("gntipt", "gmcnn"):  # same data and masks, the same number of training samples
        c = cfgs[name]
        assert (c.data, c.masks) == (cfgs["paper"].data, cfgs["paper"].masks), name
        assert replace(c.train, steps=cfgs["paper"].train.steps) == cfgs["paper"].train, name
        assert samples(c) == samples(cfgs["paper"]), name
        assert (c.loss.gan_mode, c.loss.lambda_gp, c.loss.lambda_g) == ("wgangp", 10.0, 0.001), name
        o = c.optim
        assert (o.lr_g, o.lr_d, o.beta1, o.beta2, o.n_critic) == (1e-4, 1e-4, 0.5, 0.9, 5), name
        assert (c.model.ngf, c.model.disc_channels, c.model.spectral_norm) == (32, 64, False), name
    assert cfgs["gntipt"].loss.lambda_rec == 1.2 and cfgs["gntipt"].model.stride == 8
    assert cfgs["gmcnn"].loss.lambda_rec == 1.4 and cfgs["gmcnn"].model.stride == 4


@pytest.mark.parametrize("family", ["ce", "gl", "gntipt", "gmcnn"])
def test_model_info_describes_the_baselines(family: str) -> None:
    text = describe(small(family))
    assert f"family {family}" in text and "generator" in text and "GFLOPs" in text
    if family in ("gntipt", "gmcnn"):  # no VGG19 file needed to count
        assert "global_critic" in text and "local_critic" in text


def test_reproduce_script_usage() -> None:
    script = ROOT / "scripts" / "reproduce_table1.sh"
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0
    result = subprocess.run(["bash", str(script)], capture_output=True, text=True)
    assert result.returncode == 2 and "usage" in result.stderr.lower()


# ------------------------------------------------------------------------------ import structure


def test_model_code_does_not_load_the_trainer() -> None:
    """generator.py → baseline_models.py must not import train.py (the old import cycle)."""
    code = (
        "import sys; import dualinpaint.baseline_models, dualinpaint.generator; "
        "print(sorted(m for m in sys.modules if m.startswith('dualinpaint.')))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = result.stdout
    assert "dualinpaint.baseline_models" in loaded and "dualinpaint.generator" in loaded
    assert "dualinpaint.train'" not in loaded and "dualinpaint.baseline_trainers" not in loaded, loaded


# ------------------------------------------------------------------------------- GntIpt and GMCNN


@pytest.mark.parametrize(
    ("family", "sizes"), [("gntipt", ((32, 32), (24, 40))), ("gmcnn", ((32, 32), (20, 36)))]
)
def test_gntipt_gmcnn_shapes_and_complete_contract(family: str, sizes: tuple) -> None:
    cfg = small(family)
    torch.manual_seed(0)
    net = build_generator(cfg.model).eval()
    assert isinstance(net, GntIpt if family == "gntipt" else GMCNN)
    for h, w in sizes:
        image = torch.rand(2, 3, h, w) * 2 - 1
        hole = centre_hole(2, h, w)
        hole[1, :, :3, :5] = 1
        with torch.no_grad():
            raw = net(image, hole)
            fill = net.complete(image, hole)
            many = net.complete(image, hole, samples=2)
        assert raw.shape == fill.shape == (2, 3, h, w) and raw.abs().max() <= 1
        visible = (1 - hole).bool().expand_as(image)
        assert torch.equal(fill[visible], image[visible])
        assert many.shape == (2, 2, 3, h, w) and torch.equal(many[1], fill)
        if family == "gntipt":
            with torch.no_grad():
                coarse, fine = net(image, hole, stages=True)
            assert coarse.shape == fine.shape and torch.equal(fine, raw)
    st = cfg.model.stride
    with pytest.raises(ValueError, match="multiple of"):
        net.complete(torch.zeros(1, 3, st + 2, 2 * st), torch.zeros(1, 1, st + 2, 2 * st))
    wrong = {"gntipt": "model.n_down=1", "gmcnn": "model.n_down=2"}[family]
    with pytest.raises(ValueError, match="n_down"):
        build_generator(small(family, wrong).model)


def test_contextual_attention_copies_known_patches_only() -> None:
    torch.manual_seed(0)
    f = torch.randn(2, 4, 16, 16, requires_grad=True)
    hole = torch.zeros(2, 1, 64, 64)
    hole[:, :, 16:40, 24:48] = 1
    out = contextual_attention(f, f, hole)
    assert out.shape == f.shape and torch.isfinite(out).all()
    out.square().sum().backward()
    assert f.grad is not None and f.grad.abs().sum() > 0
    # background inside the hole is never matched nor pasted (without propagation, which, as the
    # original, sums neighbouring candidates' scores before masking)
    b = f.detach().clone()
    b2 = b.clone()
    b2[:, :, 4:10, 6:12] = 100.0  # the hole at the features' 1/4 scale (rows 4..9, cols 6..11)
    same = contextual_attention(b, b, hole, fuse=False)
    changed_bg = contextual_attention(b, b2, hole, fuse=False)
    assert torch.allclose(same, changed_bg, atol=1e-5)
    assert not torch.allclose(contextual_attention(b, b, torch.zeros_like(hole), fuse=False), same)
    # with a very sharp softmax and no hole, every cell picks itself: the interior is rebuilt exactly
    no_hole = torch.zeros(2, 1, 16, 16)
    copy = contextual_attention(b, b, no_hole, softmax_scale=1e4, fuse=False)
    assert torch.allclose(copy[..., 2:-2, 2:-2], b[..., 2:-2, 2:-2], atol=1e-4)
    # no known cell at all: zeros (no NaN)
    assert contextual_attention(b, b, torch.ones(2, 1, 16, 16)).abs().max() == 0


def _conv(cin: int, cout: int, k: int) -> int:
    return cin * cout * k * k + cout


def test_parameter_counts_match_the_released_layer_lists() -> None:
    """cnum 32 / d_cnum 64 at 256²: counts from the released TF code's layer lists, written out here."""
    c, conv = 32, _conv
    four = 4 * c
    # DeepFill v1 (inpaint_model.py, v1.0.0): build_inpaint_net
    coarse = (
        conv(5, c, 5) + conv(c, 2 * c, 3) + conv(2 * c, 2 * c, 3) + conv(2 * c, four, 3)
        + 8 * conv(four, four, 3)  # conv5, conv6, 4 atrous, conv11, conv12
        + conv(four, 2 * c, 3) + conv(2 * c, 2 * c, 3) + conv(2 * c, c, 3)
        + conv(c, c // 2, 3) + conv(c // 2, 3, 3)
    )  # fmt: skip
    hallu = conv(5, c, 5) + conv(c, c, 3) + conv(c, 2 * c, 3) + conv(2 * c, 2 * c, 3) + conv(2 * c, four, 3)
    hallu += 5 * conv(four, four, 3)  # xconv6 + 4 atrous
    attention = conv(5, c, 5) + conv(c, c, 3) + conv(c, 2 * c, 3) + conv(2 * c, four, 3)
    attention += 4 * conv(four, four, 3)  # pmconv5, 6, 9, 10
    merge = conv(2 * four, four, 3) + conv(four, four, 3) + conv(four, 2 * c, 3) + conv(2 * c, 2 * c, 3)
    merge += conv(2 * c, c, 3) + conv(c, c // 2, 3) + conv(c // 2, 3, 3)
    model = load_config(TABLE1 / "gntipt.yaml").model
    net = GntIpt(model)
    assert sum(p.numel() for p in net.coarse.parameters()) == coarse == 1_448_227
    assert sum(p.numel() for p in net.parameters()) == coarse + hallu + attention + merge == 3_601_542
    d = 64
    critics = (
        conv(3, d, 5)
        + conv(d, 2 * d, 5)
        + conv(2 * d, 4 * d, 5)
        + conv(4 * d, 4 * d, 5)
        + 16 * 16 * 4 * d
        + 1
    )
    critics += (
        conv(3, d, 5) + conv(d, 2 * d, 5) + conv(2 * d, 4 * d, 5) + conv(4 * d, 8 * d, 5) + 8 * 8 * 8 * d + 1
    )
    assert sum(p.numel() for p in gntipt_critics(model, 256).parameters()) == critics == 7_072_770

    # GMCNN (tensorflow/net/network.py): build_generator with g_cnum 32 (no dilation-32 layer at 32)
    def trunk(k: int, first: int) -> int:
        return (
            conv(5, c, first) + conv(c, 2 * c, k) + conv(2 * c, 2 * c, k) + conv(2 * c, four, k)
            + 8 * conv(four, four, k)
        )  # fmt: skip

    b1 = trunk(7, 7)
    b2 = trunk(5, 5) + conv(four, 2 * c, 3) + conv(2 * c, 2 * c, 5)
    b3 = trunk(3, 5) + conv(four, 2 * c, 3) + conv(2 * c, 2 * c, 3) + conv(2 * c, c, 3) + conv(c, c // 2, 3)
    head = conv(four + 2 * c + c // 2, c // 2, 3) + conv(c // 2, 3, 3)
    model = load_config(TABLE1 / "gmcnn.yaml").model
    assert sum(p.numel() for p in GMCNN(model).parameters()) == b1 + b2 + b3 + head == 12_429_107
    widths = (d, 2 * d, 4 * d, 8 * d, 4 * d, 2 * d)
    one = sum(conv(a, b, 5) for a, b in zip((3, *widths[:-1]), widths, strict=True))
    critics = 2 * one + (4 * 4 * 2 * d + 1) + (2 * 2 * 2 * d + 1)  # 256² → 4², 128² → 2²
    assert sum(p.numel() for p in gmcnn_critics(model, 256).parameters()) == critics == 16_808_450


def test_display_names() -> None:
    assert display_name(small("gntipt")) == "GntIpt (DeepFill v1)"
    assert display_name(small("gmcnn")) == "GMCNN"  # ID-MRF weight 0.05 unless the config says otherwise
    assert display_name(small("gl")) == "GLCIC"


def test_reproduce_script_small_dry_run_gives_every_model_the_same_samples(tmp_path: Path) -> None:
    script = ROOT / "scripts" / "reproduce_table1.sh"
    result = subprocess.run(
        ["bash", str(script), "--small", "--dry-run", str(tmp_path), str(tmp_path / "out")],
        capture_output=True,
        text=True,
        check=True,
    )
    trains = [line for line in result.stdout.splitlines() if " train --out " in line]
    assert [line.split("/runs/")[1].split()[0] for line in trains] == ["paper", "ce", "gl", "gntipt", "gmcnn"]
    for line in trains:
        steps = int(line.split("--steps ")[1].split()[0])
        config = load_config(line.split("--config ")[1].split()[0])
        assert steps * config.data.batch_size * config.optim.n_critic == 10000, line
        assert "--set data.size=128" in line
    assert "loss.lambda_mrf=0" in trains[-1] and "without ID-MRF" in result.stderr
    assert "eval-masks --out" in result.stdout and "--size 128" in result.stdout.split("eval-masks")[1]
    evaluate = next(line for line in result.stdout.splitlines() if " evaluate --data " in line)
    assert "--size 128" in evaluate and "--published" not in evaluate
    assert "data split" in result.stdout and not (tmp_path / "out").exists()  # nothing written


def test_reproduce_script_keeps_a_corpus_split_and_passes_published_numbers(tmp_path: Path) -> None:
    """A data folder with its own train/val lists (the photo corpus) keeps its split, made absolute."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "train.flist").write_text("images/a.jpg\nimages/b.jpg\n")
    (corpus / "val.flist").write_text("images/c.jpg\n")
    script = ROOT / "scripts" / "reproduce_table1.sh"
    env = {**os.environ, "PUBLISHED": str(tmp_path / "paper.csv"), "MODELS": "ce"}
    dry = subprocess.run(
        ["bash", str(script), "--small", "--dry-run", str(corpus), str(tmp_path / "out")],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    assert "data split" not in dry.stdout and "keeping the split" in dry.stdout
    assert f"--published {tmp_path / 'paper.csv'}" in dry.stdout
    # the real thing, with a stand-in command, stops after writing the split (the stand-in "trains" nothing)
    env["DUALINPAINT"] = "true"
    subprocess.run(
        ["bash", str(script), "--small", str(corpus), str(tmp_path / "out")],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    split = tmp_path / "out" / "split"
    assert (split / "train.flist").read_text().splitlines() == [
        f"{corpus.resolve()}/images/a.jpg",
        f"{corpus.resolve()}/images/b.jpg",
    ]
    assert (split / "val.flist").read_text() == f"{corpus.resolve()}/images/c.jpg\n"


def test_adaptation_is_refused_for_baseline_families() -> None:
    from dualinpaint.inference import Inpainter

    cfg = small("ce")
    with pytest.raises(ValueError, match="needs a dual-path model; this one is 'ce'"):
        Inpainter(build_generator(cfg.model), cfg, adapt_steps=2)
