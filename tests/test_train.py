from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from dualinpaint import checkpoint as ckpt
from dualinpaint.config import Config, load_config
from dualinpaint.data import ImageDataset
from dualinpaint.distributed import DistInfo
from dualinpaint.masks import MaskSampler
from dualinpaint.train import (
    BatchStream,
    InpaintingData,
    Trainer,
    TrainingDiverged,
    epoch_batches,
    make_trainer,
    train,
)

from .conftest import make_photos


def fast_tiny(tiny_cfg: Config, *extra: str) -> Config:
    return tiny_cfg.with_overrides(
        ["train.log_every=1", "train.sample_every=1000", "train.val_every=1000", *extra]
    )


def stream_for(
    cfg: Config, folder: Path, dist: DistInfo | None = None, batch: int | None = None
) -> BatchStream:
    images = ImageDataset(folder, cfg.data.size, cfg.data.load_size, train=True, seed=cfg.train.seed)
    data = InpaintingData(images, MaskSampler(cfg.masks.mix, cfg.data.size, cfg.data.size), cfg.train.seed)
    return BatchStream(data, batch or cfg.data.batch_size, cfg.train.seed, dist or DistInfo(), 0)


PHOTO_SMALL = [
    "model.ngf=8",
    "model.max_channels=16",
    "model.z_channels=8",
    "model.disc_channels=8",
    "model.disc_max_channels=16",
    "data.size=64",
    "data.load_size=68",
    "data.batch_size=2",
]
TEXTURE_TERMS = ["loss.hole_norm=l2", "loss.lambda_texture=5", "loss.lambda_fm=2"]


@pytest.mark.parametrize("preset", ["tiny", "picnet-small", "photo-small", "photo-texture", "photo-resize"])
def test_every_parameter_receives_a_gradient(tiny_cfg: Config, photo_dir: Path, preset: str) -> None:
    cfg = tiny_cfg
    if preset.startswith("photo"):  # the shipped preset's structure: mask input, decoder skips, hinge
        extra = TEXTURE_TERMS if preset == "photo-texture" else []  # + texture and feature matching
        if preset == "photo-resize":  # resize-conv decoders, every sample's hole weighted equally
            extra = ["model.upsample=resize", "loss.hole_weighting=per_sample", "loss.lambda_psnr=0.2"]
            extra += ["loss.lambda_freq=50"]
        cfg = load_config("photo").with_overrides([*PHOTO_SMALL, *extra])
    if preset == "picnet-small":  # PICNet's structure: shared trunk/G, ResDis with attention, LSGAN
        cfg = load_config("picnet").with_overrides(
            [
                "model.ngf=8",
                "model.max_channels=16",
                "model.z_channels=8",
                "model.disc_channels=8",
                "model.disc_max_channels=16",
                "model.disc_layers=3",
                "data.size=64",
                "data.load_size=68",
                "data.batch_size=2",
            ]
        )
    trainer = Trainer(cfg)
    stream = stream_for(cfg, photo_dir)
    trainer.train_step(stream)  # one update so the attention gates (initialised at 0) are non-zero
    batch, pos = stream.next()
    image, hole = trainer._prepare(batch)
    out = trainer.forward(image, hole, pos, 0)
    trainer.net.zero_grad()
    trainer.g_total(trainer.g_terms(image, hole, out), len(out.gen)).backward()
    for name, p in trainer.net.named_parameters():
        assert p.grad is not None, f"no gradient for {name}"
        assert p.grad.abs().sum() > 0, f"zero gradient for {name}"
    trainer.d_rec.zero_grad()
    trainer.d_gen.zero_grad()
    trainer.opt_d.zero_grad(set_to_none=True)
    # the critic step's own backward: run it, then inspect the gradients it left behind
    trainer.opt_d.step = lambda *a, **k: None  # keep the gradients for inspection
    trainer.d_step(image, hole, trainer.forward(image, hole, pos, 0), pos, 0)
    for tag, d in (("D1", trainer.d_rec), ("D2", trainer.d_gen)):
        for name, p in d.named_parameters():
            if cfg.model.disc_attention and "attention.query" in name:
                continue  # multiplied by γ, which only moves after D's first update
            assert p.grad is not None and p.grad.abs().sum() > 0, f"no gradient for {tag}.{name}"


@pytest.mark.parametrize(
    ("option", "term", "fn"),
    [("lambda_psnr", "psnr_g", "hole_log_mse"), ("lambda_freq", "freq", "focal_frequency_loss")],
)
def test_hole_terms_of_the_generation_paths_final_image_enter_the_objective(
    photo_dir: Path, option: str, term: str, fn: str
) -> None:
    from dualinpaint import losses

    for weight in (0.0, 0.3):
        cfg = load_config("photo").with_overrides([*PHOTO_SMALL, f"loss.{option}={weight}"])
        trainer = Trainer(cfg)
        batch, pos = stream_for(cfg, photo_dir).next()
        image, hole = trainer._prepare(batch)
        out = trainer.forward(image, hole, pos, 0)
        terms = trainer.g_terms(image, hole, out)
        expect = getattr(losses, fn)(out.gen[-1], image, hole) if weight else torch.zeros(())
        torch.testing.assert_close(terms[term], expect)
        without = dict(terms, **{term: torch.zeros(())})
        n = len(out.gen)
        torch.testing.assert_close(trainer.g_total(terms, n) - trainer.g_total(without, n), weight * expect)


@pytest.mark.slow
def test_tiny_overfit_both_paths_l1_falls(tmp_path: Path, tiny_cfg: Config) -> None:
    """4 images, the tiny config, CPU: the reconstruction path's L1 and the generation path's L1 (known
    region; PICNet has no hole term) each drop by at least 50 %."""
    make_photos(tmp_path / "four", 4, seed=3)
    cfg = fast_tiny(tiny_cfg, "data.flip=false", "data.load_size=32")
    train(cfg, tmp_path / "four", tmp_path / "run", steps=100, progress=False)
    rows = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    for term in ("g/app_rec", "g/app_g"):
        l1 = [r[term] for r in rows if term in r]
        first, last = sum(l1[:5]) / 5, sum(l1[-5:]) / 5
        assert last <= 0.5 * first, (term, first, last)


@pytest.mark.slow
def test_overfit_generation_path_hole_loss_falls(tmp_path: Path, photo_dir: Path) -> None:
    """The shipped preset's structure with its hole term (L2) and the texture terms: the generation
    path's hole loss falls on 4 photos, so the network learns more than its smooth fill there."""
    cfg = load_config("photo").with_overrides(
        [
            *PHOTO_SMALL,
            *TEXTURE_TERMS,
            "data.size=32",
            "data.load_size=32",
            "data.min_scale=0",
            "data.flip=false",
            "data.batch_size=4",
            "data.num_workers=0",
            "model.n_down=3",
            "masks.mix={center: 1.0}",
            "optim.lr_g=0.002",
            "optim.ema=0",
            "train.channels_last=false",
            "train.bf16=false",
            "train.log_every=1",
            "train.sample_every=1000",
            "train.val_every=1000",
        ]
    )
    trainer = Trainer(cfg)
    stream = stream_for(cfg, photo_dir)
    hole_terms = [trainer.train_step(stream).values["g/hole_g"] for _ in range(60)]
    first, last = sum(hole_terms[:5]) / 5, sum(hole_terms[-5:]) / 5
    assert last <= 0.5 * first, (first, last)


def test_validation_reports_what_the_network_adds(photo_dir: Path) -> None:
    """val/gain_hole_db is 0 for an untrained residual (the fill is the smooth fill) and moves once the
    residual layer is non-zero; detail and sample difference are reported."""
    from dualinpaint.train import _validation_set, validate

    cfg = load_config("photo").with_overrides([*PHOTO_SMALL, "train.val_images=3", "data.size=64"])
    trainer = Trainer(cfg)
    images, holes = _validation_set(cfg, photo_dir)
    assert images.shape[0] == 3  # fewer photos than val_images: photos repeat with other masks
    before = validate(trainer.net, images, holes)
    assert before["val/gain_hole_db"] == 0
    assert before["val/detail"] == pytest.approx(before["val/detail_fill"])
    last = trainer.net.gen_g.outputs[str(cfg.model.n_down)].body[2]
    with torch.no_grad():
        last.weight.normal_(0, 0.2)
    after = validate(trainer.net, images, holes)
    assert after["val/gain_hole_db"] != 0 and after["val/detail"] != before["val/detail"]
    assert after["val/sample_diff"] >= 0

    # the smooth fill is computed once per batch and handed to both fills: the same numbers as when
    # each fill computes its own
    net, calls = trainer.net, []
    prefill = net.prefill
    net.prefill = lambda *a: calls.append(1) or prefill(*a)
    try:
        assert validate(net, images, holes, batch_size=2) == validate(net, images, holes, batch_size=2)
        assert len(calls) == 2 * 2  # two batches, twice
        calls.clear()
        net.eval()  # in training mode every forward moves spectral norm's power iteration
        with torch.no_grad():
            base = prefill(images, holes)
            g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
            assert torch.equal(net.complete(images, holes, base=base), net.complete(images, holes))
            assert torch.equal(
                net.complete(images, holes, samples=2, generator=g1, base=base),
                net.complete(images, holes, samples=2, generator=g2),
            )
        assert len(calls) == 2  # only the fills given no base computed one
    finally:
        del net.prefill


def test_feature_matching_needs_patch_critics(tiny_cfg: Config) -> None:
    cfg = tiny_cfg.with_overrides(["model.disc_type=resdis", "loss.lambda_fm=1"])
    with pytest.raises(ValueError, match="lambda_fm needs patch critics"):
        Trainer(cfg)


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(run / ckpt.WEIGHTS_NAME)


def test_resume_is_exact(tmp_path: Path, tiny_cfg: Config, photo_dir: Path) -> None:
    """2N steps in one go == N steps, stop, --resume, N more steps (bit-identical on CPU)."""
    cfg = fast_tiny(tiny_cfg, "train.ckpt_every=3", "data.batch_size=3")  # 8 images: epochs of 2 batches
    train(cfg, photo_dir, tmp_path / "full", steps=6, progress=False)
    train(cfg, photo_dir, tmp_path / "half", steps=3, progress=False)
    state = ckpt.load_state(tmp_path / "half")
    assert state["step"] == 3 and state["position"] == {"epoch": 1, "batch": 1}
    train(None, None, tmp_path / "half", steps=6, resume=True, progress=False)
    full, half = _weights(tmp_path / "full"), _weights(tmp_path / "half")
    assert full.keys() == half.keys()
    for k in full:
        assert torch.equal(full[k], half[k]), k
    s_full, s_half = ckpt.load_state(tmp_path / "full"), ckpt.load_state(tmp_path / "half")
    for k in s_full["d_gen"]:
        assert torch.equal(s_full["d_gen"][k], s_half["d_gen"][k]), k


def test_init_starts_a_new_run_from_other_weights(tmp_path: Path, tiny_cfg: Config, photo_dir: Path) -> None:
    """--init: step 0 with the source's generator, EMA and critics (a run) or generator and EMA (weights);
    a parameter-free option may differ; shapes that differ, or --init with --resume, are one-line errors."""
    cfg = fast_tiny(
        tiny_cfg, "train.ckpt_every=2", "model.prefill=harmonic", "model.prefill_iters=2", "optim.ema=0.9"
    )
    train(cfg, photo_dir, tmp_path / "src", steps=2, progress=False)
    src = ckpt.load_state(tmp_path / "src")
    other = cfg.with_overrides(["model.prefill=biharmonic"])
    trainer = Trainer(other)
    assert trainer.init_from(tmp_path / "src") == "generator, EMA and critics"
    pairs = ((trainer.net, "net"), (trainer.d_rec, "d_rec"), (trainer.d_gen, "d_gen"), (trainer.ema, "ema"))
    for module, key in pairs:
        got = ckpt.clean_state_dict(module)
        assert all(torch.equal(got[k], src[key][k]) for k in src[key]), key
    fresh = Trainer(other)
    assert fresh.init_from(tmp_path / "src" / ckpt.WEIGHTS_NAME) == "generator and EMA (critics start fresh)"
    weights = _weights(tmp_path / "src")
    assert all(torch.equal(ckpt.clean_state_dict(fresh.net)[k], weights[k]) for k in weights)
    key = "body.0.parametrizations.weight.original"
    assert not torch.equal(ckpt.clean_state_dict(fresh.d_gen)[key], src["d_gen"][key])  # critics start fresh

    train(other, photo_dir, tmp_path / "ft", steps=1, init=tmp_path / "src", progress=False)
    info = json.loads((tmp_path / "ft" / "run.json").read_text())
    assert info["init"] == str(tmp_path / "src") and ckpt.load_state(tmp_path / "ft")["step"] == 1
    train(None, None, tmp_path / "ft", steps=2, resume=True, progress=False)
    assert json.loads((tmp_path / "ft" / "run.json").read_text())["init"] == str(tmp_path / "src")

    wider = cfg.with_overrides([f"model.ngf={cfg.model.ngf * 2}"])
    with pytest.raises(ckpt.CheckpointError, match="do not match"):
        Trainer(wider).init_from(tmp_path / "src")
    with pytest.raises(ValueError, match="use one"):
        train(cfg, photo_dir, tmp_path / "ft", init=tmp_path / "src", resume=True, progress=False)


def test_resume_with_overrides_branches_the_run_and_says_what_changed(
    tmp_path: Path, tiny_cfg: Config, photo_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--resume --set: the stored config with the overrides (printed, kept in later checkpoints and
    config.yaml), the optimisers and step carried on; model.* changes are refused and change nothing."""
    cfg = fast_tiny(tiny_cfg, "train.ckpt_every=2")
    train(cfg, photo_dir, tmp_path / "run", steps=2, progress=False)
    before = (tmp_path / "run" / "state.pt").read_bytes()
    with pytest.raises(ValueError, match="network cannot change on resume"):
        train(None, None, tmp_path / "run", steps=3, resume=True, progress=False, overrides=["model.ngf=16"])
    assert (tmp_path / "run" / "state.pt").read_bytes() == before
    capsys.readouterr()
    train(
        None, None, tmp_path / "run", steps=3, resume=True, progress=False, overrides=["loss.lambda_kl=0.5"]
    )
    assert "loss.lambda_kl" in capsys.readouterr().out
    state = ckpt.load_state(tmp_path / "run")
    assert state["step"] == 3 and state["config"]["loss"]["lambda_kl"] == 0.5
    assert "lambda_kl: 0.5" in (tmp_path / "run" / "config.yaml").read_text()
    train(None, None, tmp_path / "run", steps=4, resume=True, progress=False)  # the changed config stays
    assert ckpt.load_state(tmp_path / "run")["config"]["loss"]["lambda_kl"] == 0.5
    assert "changed config" not in capsys.readouterr().out  # nothing changed this time: nothing said


def test_resume_with_optim_overrides_reaches_the_optimisers(
    tmp_path: Path, tiny_cfg: Config, photo_dir: Path
) -> None:
    """--resume --set optim.lr_g/lr_d/beta2: Adam's saved state holds the old values; the new ones must
    be the ones the continued run steps with (and saves), its moments carried on."""
    cfg = fast_tiny(tiny_cfg, "train.ckpt_every=2")
    train(cfg, photo_dir, tmp_path / "run", steps=2, progress=False)
    old = ckpt.load_state(tmp_path / "run")
    assert old["opt_g"]["param_groups"][0]["lr"] == cfg.optim.lr_g != 3e-5
    sets = ["optim.lr_g=3e-5", "optim.lr_d=2e-5", "optim.beta2=0.95"]
    train(None, None, tmp_path / "run", steps=3, resume=True, progress=False, overrides=sets)
    state = ckpt.load_state(tmp_path / "run")
    for name, lr in (("opt_g", 3e-5), ("opt_d", 2e-5)):
        for group in state[name]["param_groups"]:
            assert group["lr"] == lr and tuple(group["betas"]) == (cfg.optim.beta1, 0.95)
    moments = state["opt_g"]["state"][0]["step"], old["opt_g"]["state"][0]["step"]
    assert float(moments[0]) == float(moments[1]) + 1  # Adam's moments continued, not restarted


def test_interrupted_checkpoint_write_keeps_previous(
    tmp_path: Path, tiny_cfg: Config, photo_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = fast_tiny(tiny_cfg, "train.ckpt_every=2")
    run = tmp_path / "run"
    train(cfg, photo_dir, run, steps=2, progress=False)
    before = (run / ckpt.STATE_NAME).read_bytes()

    import os

    real_fdopen = os.fdopen

    class Torn:
        """A file object that writes half of what it is given, then fails (disk full / killed)."""

        def __init__(self, f):
            self.f = f

        def write(self, data):
            self.f.write(data[: len(data) // 2])
            raise OSError(28, "No space left on device")

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()
            return False

    monkeypatch.setattr(os, "fdopen", lambda fd, mode="r", *a, **k: Torn(real_fdopen(fd, mode, *a, **k)))
    with pytest.raises(OSError, match="No space left"):
        train(None, None, run, steps=4, resume=True, progress=False)
    monkeypatch.undo()
    assert (run / ckpt.STATE_NAME).read_bytes() == before
    assert ckpt.load_state(run)["step"] == 2
    assert not [p for p in run.iterdir() if p.name.endswith(".tmp")]  # no temporary leftovers


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(
    tmp_path: Path, tiny_cfg: Config, photo_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = fast_tiny(tiny_cfg, "train.ckpt_every=2")
    run = tmp_path / "run"
    train(cfg, photo_dir, run, steps=2, progress=False)
    good = _weights(run)
    original = Trainer.g_terms

    def poisoned(self, image, hole, out):
        terms = original(self, image, hole, out)
        if self.step >= 3:
            terms["app_g"] = terms["app_g"] * float("nan")
        return terms

    monkeypatch.setattr(Trainer, "g_terms", poisoned)
    with pytest.raises(TrainingDiverged, match="generator loss became nan at step 4"):
        train(None, None, run, steps=10, resume=True, progress=False)
    assert ckpt.load_state(run)["step"] == 2
    for k, v in _weights(run).items():
        assert torch.equal(v, good[k])


def test_run_directory_contents(tmp_path: Path, tiny_cfg: Config, photo_dir: Path) -> None:
    cfg = fast_tiny(tiny_cfg, "train.sample_every=2", "train.val_every=2", "train.ckpt_every=2")
    run = tmp_path / "run"
    summary = train(cfg, photo_dir, run, val=photo_dir, steps=2, progress=False)
    assert summary.step == 2
    assert load_config(run / "config.yaml") == cfg
    assert (run / "samples" / "step_0000002.png").is_file()
    assert list((run / "tb").iterdir())
    rows = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    keys = set().union(*rows)
    for k in (
        "g/kl_rec",
        "g/kl_g",
        "g/app_rec",
        "g/app_g",
        "g/ad_g",
        "g/ad_rec",
        "d/gp1",
        "d/gp2",
        "d/d2_real_minus_fake",
        "val/psnr",
        "val/ssim",
        "val/psnr_hole",
        "perf/samples_per_s",
    ):
        assert k in keys, k
    tensors, stored, meta = ckpt.read_weights(run)
    assert stored == cfg and meta["step"] == 2


def test_global_batches_split_contiguously_across_ranks(photo_dir: Path, tiny_cfg: Config) -> None:
    cfg = tiny_cfg.with_overrides(["data.batch_size=2"])
    one = stream_for(cfg, photo_dir, batch=4)
    r0 = stream_for(cfg, photo_dir, DistInfo(0, 0, 2))
    r1 = stream_for(cfg, photo_dir, DistInfo(1, 1, 2))
    for _ in range(3):
        b, pos = one.next()
        b0, p0 = r0.next()
        b1, p1 = r1.next()
        assert torch.equal(b["image"], torch.cat([b0["image"], b1["image"]]))
        assert torch.equal(b["hole"], torch.cat([b0["hole"], b1["hole"]]))
        assert pos == p0 + p1
    assert epoch_batches(8, 4, 0, 0) == epoch_batches(8, 4, 0, 0) != epoch_batches(8, 4, 0, 1)


def test_too_little_data_is_a_clear_error(tmp_path: Path, tiny_cfg: Config) -> None:
    make_photos(tmp_path / "two", 2)
    with pytest.raises(ValueError, match="fewer than one global batch"):
        train(tiny_cfg, tmp_path / "two", tmp_path / "run", steps=1, progress=False)


def test_ema_warms_up_instead_of_keeping_the_initial_weights(tiny_cfg: Config, photo_dir: Path) -> None:
    cfg = tiny_cfg.with_overrides(["optim.ema=0.999"])
    trainer = Trainer(cfg)
    init = [p.detach().clone() for p in trainer.ema.parameters()]
    stream = stream_for(cfg, photo_dir)
    for _ in range(3):
        trainer.train_step(stream)
    to_net = to_init = 0.0
    for e, p, p0 in zip(trainer.ema.parameters(), trainer.net.parameters(), init, strict=True):
        to_net += float((e - p).detach().pow(2).sum())
        to_init += float((e - p0).pow(2).sum())
    # after 3 steps the EMA sits near the trained weights, not at the random initialisation
    assert to_net < 0.25 * to_init


def test_critic_warmup_leaves_the_generator_alone_then_hands_over(tiny_cfg: Config, photo_dir: Path) -> None:
    """optim.d_warmup=2: steps 1-2 change the critics only (generator and EMA weights bit-identical),
    step 3 updates the generator as usual; the step counter counts warm-up steps."""
    cfg = tiny_cfg.with_overrides(["optim.ema=0.9", "optim.d_warmup=2"])
    trainer = Trainer(cfg)

    def weights(module: torch.nn.Module) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in module.named_parameters()}

    net0, ema0, d0 = weights(trainer.net), weights(trainer.ema), weights(trainer.d_gen)
    stream = stream_for(cfg, photo_dir)
    for step in (1, 2):
        values = trainer.train_step(stream).values
        assert trainer.step == step and "d/total" in values and not any(k.startswith("g/") for k in values)
    assert all(torch.equal(v, net0[k]) for k, v in weights(trainer.net).items())
    assert all(torch.equal(v, ema0[k]) for k, v in weights(trainer.ema).items())
    assert any(not torch.equal(v, d0[k]) for k, v in weights(trainer.d_gen).items())
    assert "g/total" in trainer.train_step(stream).values
    assert any(not torch.equal(v, net0[k]) for k, v in weights(trainer.net).items())
    assert any(not torch.equal(v, ema0[k]) for k, v in weights(trainer.ema).items())


@pytest.mark.slow
def test_ctrl_c_to_the_process_group_saves_and_resumes(tmp_path: Path) -> None:
    """SIGINT to the whole group (what Ctrl-C does, DataLoader workers included): save, exit 130, resume."""
    import os
    import signal
    import subprocess
    import sys
    import time

    make_photos(tmp_path / "p", 8)
    run = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "dualinpaint",
        "train",
        "--config",
        "tiny",
        "--data",
        str(tmp_path / "p"),
        "--out",
        str(run),
        "--steps",
        "100000",
        "--quiet",
        "--set",
        "data.num_workers=1",
        "--set",
        "train.ckpt_every=100000",
        "--set",
        "train.log_every=1",
    ]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    deadline = time.time() + 120
    while not ((run / "log.jsonl").exists() and len((run / "log.jsonl").read_text().splitlines()) >= 3):
        assert proc.poll() is None, proc.stderr.read()
        assert time.time() < deadline
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted at step" in err and "Traceback" not in err
    step = ckpt.load_state(run)["step"]
    assert step >= 3 and json.loads((run / "model.json").read_text())["step"] == step
    train(None, None, run, steps=step + 1, resume=True, progress=False)
    assert ckpt.load_state(run)["step"] == step + 1


@pytest.mark.slow
def test_compiled_generator_trains_like_the_eager_one(
    tiny_cfg: Config, photo_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``train.compile``: same first-step losses and updated weights as eager (float rounding apart);
    the checkpointed modules stay the plain ones. The graphs are captured (dynamo + AOT autograd) but
    not lowered to C++ (backend ``aot_eager``): inductor's C++ build of even the tiny net takes ~3 min
    on 2 cores; ``dualinpaint bench --train --compile`` runs the real thing."""
    real_compile, calls = torch.compile, []

    def compile_aot_eager(model: torch.nn.Module, **kw: object) -> object:
        compiled = real_compile(model, backend="aot_eager", **kw)

        def run(*args: object) -> object:
            calls.append(len(args))
            return compiled(*args)

        return run

    monkeypatch.setattr(torch, "compile", compile_aot_eager)
    cfg = tiny_cfg
    eager, compiled = Trainer(cfg), Trainer(cfg.with_overrides(["train.compile=true"]))
    assert compiled.net_forward is not compiled.net and eager.net_forward is eager.net
    a = eager.train_step(stream_for(cfg, photo_dir)).values
    b = compiled.train_step(stream_for(cfg, photo_dir)).values
    assert calls and a.keys() == b.keys()  # the compiled forward ran
    for key in a:
        assert b[key] == pytest.approx(a[key], rel=1e-3, abs=1e-5), key
    # Adam's first step moves each weight by ±lr (the sign of its gradient): a gradient at rounding
    # level may flip sign, so a weight may differ by 2·lr, not more
    for (name, p), q in zip(eager.net.named_parameters(), compiled.net.parameters(), strict=True):
        torch.testing.assert_close(q, p, rtol=0, atol=2.01 * cfg.optim.lr_g, msg=name)
    assert not any("_orig_mod" in k for k in compiled.state_dict({"epoch": 0, "batch": 0})["net"])


def test_compile_without_a_cpp_compiler_is_a_clear_error(tiny_cfg: Config, monkeypatch) -> None:
    import shutil

    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setenv("CXX", "no-such-c++")
    with pytest.raises(
        ValueError, match=re.escape("needs the C++ compiler 'no-such-c++': install it or set CXX")
    ):
        Trainer(tiny_cfg.with_overrides(["train.compile=true"]))


def test_d2_scores_real_images_once_as_if_duplicated(tiny_cfg: Config, photo_dir: Path) -> None:
    """``d2_fake: both``: D2 scores the real batch once and repeats the scores; the critic loss equals
    scoring the duplicated real batch against [raw fakes, fused fakes]."""
    import copy

    from dualinpaint.losses import critic_loss

    assert tiny_cfg.loss.d2_fake == "both"
    trainer = Trainer(tiny_cfg)
    batch, pos = stream_for(tiny_cfg, photo_dir).next()
    image, hole = trainer._prepare(batch)
    out = trainer.forward(image, hole, pos, 0)
    d2 = copy.deepcopy(trainer.d_gen)  # the same spectral-norm state: one call on real, one on fakes
    fakes = trainer._d2_fakes(out.gen[-1].detach(), image, hole)
    with torch.no_grad():
        want = critic_loss(tiny_cfg.loss.gan_mode, d2(torch.cat([image, image])), d2(fakes))
    got = trainer.d_step(image, hole, out, pos, 0)["d/d2"]
    assert got == pytest.approx(float(want), rel=1e-5, abs=1e-7)


def test_time_limit_stops_after_the_crossing_step_and_saves(
    tmp_path: Path, tiny_cfg: Config, photo_dir: Path
) -> None:
    cfg = fast_tiny(tiny_cfg, "train.ckpt_every=1000")
    summary = train(cfg, photo_dir, tmp_path / "run", steps=50, progress=False, time_limit=1e-6)
    assert summary.timed_out and not summary.interrupted
    assert summary.step == 1  # the first step already crosses the deadline
    assert ckpt.load_state(tmp_path / "run")["step"] == 1  # saved although ckpt_every is 1000
    assert (tmp_path / "run" / ckpt.WEIGHTS_NAME).exists()
    again = train(None, None, tmp_path / "run", resume=True, progress=False, steps=3)
    assert again.step == 3 and not again.timed_out
    with pytest.raises(ValueError, match="time-limit"):
        train(cfg, photo_dir, tmp_path / "run2", steps=5, progress=False, time_limit=0)


def test_dual_path_loss_options_are_refused_by_other_families(tiny_cfg: Config) -> None:
    for option in ("lambda_texture", "lambda_freq"):
        cfg = load_config("table1/gl").with_overrides([f"loss.{option}=1"])
        with pytest.raises(ValueError, match=f"{option} is a dual-path option"):
            make_trainer(cfg)


def test_no_validation_images_still_trains(tmp_path: Path, tiny_cfg: Config, photo_dir: Path) -> None:
    cfg = fast_tiny(tiny_cfg, "train.val_images=0", "train.sample_every=1")
    summary = train(cfg, photo_dir, tmp_path / "run", val=photo_dir, steps=1, progress=False)
    assert summary.step == 1 and (tmp_path / "run" / "samples" / "step_0000001.png").exists()
