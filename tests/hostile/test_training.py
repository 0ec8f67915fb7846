"""Training under faults, through ``dualinpaint train``: SIGKILL at random moments then ``--resume`` (slow),
a full disk while a checkpoint is written, unreadable files in the data folder, a loss that turns NaN.
Whatever happens, every checkpoint on disk is complete and readable, and nothing good is thrown away."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from dualinpaint import checkpoint as ckpt
from dualinpaint.train import Trainer

from ..conftest import make_photos
from .conftest import DiskFull, assert_no_traceback, assert_one_line_error, run_cli

FAST = [
    "--set",
    "train.log_every=1",
    "--set",
    "train.sample_every=1000",
    "--set",
    "train.val_every=1000",
    "--set",
    "data.num_workers=0",
]


def train_cli(capsys, *argv):
    return run_cli(capsys, "train", *argv, "--quiet")


def new_run(capsys, data: Path, run: Path, steps: int, *extra: str):
    return train_cli(
        capsys, "--config", "tiny", "--data", data, "--out", run, "--steps", steps, *FAST, *extra
    )


def checkpoint_files(run: Path) -> dict[str, bytes]:
    names = (ckpt.STATE_NAME, ckpt.WEIGHTS_NAME, ckpt.META_NAME, "run.json", "config.yaml")
    return {n: (run / n).read_bytes() for n in names}


def temporaries(run: Path) -> list[str]:
    return sorted(p.name for p in run.iterdir() if p.name.endswith(".tmp"))


def assert_checkpoint_readable(run: Path) -> tuple[int, int]:
    """Every checkpoint file present loads; returns (state step, weights step)."""
    state = ckpt.load_state(run)
    _, cfg, meta = ckpt.read_weights(run)
    assert json.loads((run / ckpt.META_NAME).read_text())["config"] == cfg.to_dict()
    return int(state["step"]), int(meta["step"])


@pytest.fixture
def photos(tmp_path):
    return make_photos(tmp_path / "photos", 8)[0].parent


# ------------------------------------------------------------------------------------------- disk full


@pytest.fixture
def full_disk_on(monkeypatch):
    """``full_disk_on(name)``: writing checkpoint file ``name`` gets half its bytes out, then ENOSPC."""

    def arm(name: str) -> None:
        real_write = ckpt.atomic_write_bytes
        real_fdopen = os.fdopen

        def flaky(path, data):
            if Path(path).name != name:
                return real_write(path, data)
            os.fdopen = lambda fd, mode="r", *a, **k: DiskFull(real_fdopen(fd, mode, *a, **k))
            try:
                return real_write(path, data)
            finally:
                os.fdopen = real_fdopen

        monkeypatch.setattr(ckpt, "atomic_write_bytes", flaky)

    return arm


@pytest.mark.parametrize("name", [ckpt.STATE_NAME, ckpt.WEIGHTS_NAME, ckpt.META_NAME, "run.json"])
def test_disk_full_while_writing_a_checkpoint(tmp_path, capsys, photos, full_disk_on, name):
    """Outcome: clean one-line error (exit 2); the failed file keeps its previous version, every file on
    disk is complete and readable, no temporary is left, and --resume continues from there."""
    run = tmp_path / "run"
    code, _, err = new_run(capsys, photos, run, 2, "--set", "train.ckpt_every=2")
    assert code == 0, err
    before = checkpoint_files(run)
    (run / f".{ckpt.STATE_NAME}.k1ll3d.tmp").write_bytes(b"half of a state.pt from a killed process")
    full_disk_on(name)
    code, _, err = train_cli(capsys, "--out", run, "--resume", "--steps", 4)
    assert code == 2
    assert_one_line_error(err, "No space left on device", f"the previous {name} is kept")
    after = checkpoint_files(run)
    assert after[name] == before[name]
    assert temporaries(run) == []
    state_step, weights_step = assert_checkpoint_readable(run)
    assert weights_step <= state_step and state_step in (2, 4)


def test_disk_full_on_the_very_first_checkpoint(tmp_path, capsys, photos, full_disk_on):
    """Outcome: clean one-line error; no state.pt at all rather than a broken one."""
    full_disk_on(ckpt.STATE_NAME)
    run = tmp_path / "run"
    code, _, err = new_run(capsys, photos, run, 1)
    assert code == 2
    assert_one_line_error(err, "No space left on device")
    assert not (run / ckpt.STATE_NAME).exists() and temporaries(run) == []
    code, _, err = train_cli(capsys, "--out", run, "--resume")
    assert code == 2
    assert_one_line_error(err, "nothing to resume")


# ---------------------------------------------------------------------------------------- bad data


def test_data_folder_with_unreadable_files(tmp_path, capsys, photos, recwarn):
    """Outcome: warning + result: each bad file is reported once and skipped; training completes."""
    bad = {
        "empty.png": b"",
        "notes.jpg": b"shopping list",
        "cut.png": (photos / "img_000.png").read_bytes()[:90],
    }
    for name, data in bad.items():
        (photos / name).write_bytes(data)
    (photos / "folder.png").mkdir()  # a folder with an image's name
    run = tmp_path / "run"
    code, out, err = new_run(capsys, photos, run, 3, "--set", "data.batch_size=3")
    assert code == 0, err
    assert_no_traceback(err)
    assert "step 3:" in out
    reported = [str(w.message) for w in recwarn if "skipping unreadable image" in str(w.message)]
    for name in bad:
        assert sum(name in m for m in reported) == 1, (name, reported)
    assert assert_checkpoint_readable(run) == (3, 3)


def test_data_folder_with_nothing_readable(tmp_path, capsys, recwarn):
    """Outcome: clean one-line error naming the source (warnings aside)."""
    data = tmp_path / "junk"
    data.mkdir()
    for i in range(6):
        (data / f"x{i}.png").write_bytes(b"")
    code, _, err = new_run(capsys, data, tmp_path / "run", 1, "--set", "data.batch_size=2")
    assert code == 2
    assert_one_line_error(err, "none of the 6 images")
    assert len([w for w in recwarn if "skipping unreadable image" in str(w.message)]) == 6  # one per file


@pytest.mark.slow
def test_real_process_warns_one_line_per_unreadable_file(tmp_path, photos):
    """Outcome as a user sees it (no pytest capture, a DataLoader worker process): one
    ``dualinpaint: warning:`` line per bad file, no Python source lines."""
    (photos / "empty.png").write_bytes(b"")
    (photos / "notes.png").write_bytes(b"not a picture")
    cmd = [sys.executable, "-m", "dualinpaint", "train", "--config", "tiny", "--data", str(photos)]
    cmd += ["--out", str(tmp_path / "run"), "--steps", "2", "--quiet", *FAST, "--set", "data.num_workers=1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180, env=env)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 2 and all(
        line.startswith("dualinpaint: warning: skipping unreadable") for line in lines
    )
    assert sum("empty.png" in line for line in lines) == 1 and sum("notes.png" in line for line in lines) == 1


# ------------------------------------------------------------------------------------------ divergence


@pytest.mark.parametrize("where, value", [("generator", float("nan")), ("critic", float("inf"))])
def test_non_finite_loss_stops_and_keeps_the_last_good_state(
    tmp_path, capsys, photos, monkeypatch, where, value
):
    """Outcome: clean one-line error (exit 1); the last good checkpoint is byte-identical."""
    run = tmp_path / "run"
    code, _, err = new_run(capsys, photos, run, 2, "--set", "train.ckpt_every=2")
    assert code == 0, err
    good = checkpoint_files(run)
    if where == "generator":
        original = Trainer.g_terms

        def poisoned(self, image, hole, out):
            terms = original(self, image, hole, out)
            if self.step >= 3:
                terms["app_g"] = terms["app_g"] * value
            return terms

        monkeypatch.setattr(Trainer, "g_terms", poisoned)
    else:
        import dualinpaint.train as train_module

        original_loss = train_module.critic_loss

        def poisoned_loss(mode, real, fake):
            return original_loss(mode, real, fake) * value

        monkeypatch.setattr(train_module, "critic_loss", poisoned_loss)
    code, _, err = train_cli(capsys, "--out", run, "--resume", "--steps", 10)
    assert code == 1
    assert_one_line_error(err, f"the {where} loss became", "last good checkpoint was kept")
    after = checkpoint_files(run)
    for name in (ckpt.STATE_NAME, ckpt.WEIGHTS_NAME, ckpt.META_NAME):
        assert after[name] == good[name], name
    assert temporaries(run) == []


# -------------------------------------------------------------------------------------------- SIGKILL

KILL_STEPS = 14
PAUSE_S = 0.1  # added to each step of the killed runs (a sleep: the computation is unchanged)

# `dualinpaint train …` with every training step PAUSE_S longer: however fast the machine, a step lasts
# long enough for the test to see it begin (its log line) and kill the run inside it
SLOWED_CLI = f"""
import sys, time
from dualinpaint.cli import main
from dualinpaint.train import Trainer
step = Trainer.train_step
def slowed(self, stream):
    time.sleep({PAUSE_S})
    return step(self, stream)
Trainer.train_step = slowed
sys.exit(main(sys.argv[1:]))
"""


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(run / ckpt.WEIGHTS_NAME)


def _logged(run: Path) -> int:
    try:
        return (run / "log.jsonl").read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


@pytest.mark.slow
def test_sigkill_at_random_moments_then_resume(tmp_path, capsys, photos):
    """10 trials: a tiny run checkpointing every step is SIGKILLed at a random moment of a step chosen at
    random (10 different steps, on a fast machine as on a slow one: the test waits for that step's log
    line, then kills within the next ``PAUSE_S``, while the checkpoint is written or the next step runs);
    every checkpoint on disk is readable, ``--resume`` continues from the last complete one (the next
    logged step follows it), and the final weights equal an uninterrupted run's."""
    settings = ["--set", "train.ckpt_every=1", "--set", "data.batch_size=2"]
    reference = tmp_path / "reference"
    code, _, err = new_run(capsys, photos, reference, KILL_STEPS, *settings)
    assert code == 0, err
    expected = _weights(reference)
    rng = random.Random(8)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    killed_at = []
    for trial, target in enumerate(rng.sample(range(1, KILL_STEPS), 10)):
        run = tmp_path / f"trial{trial}"
        cmd = [sys.executable, "-c", SLOWED_CLI, "train", "--config", "tiny", "--data", str(photos)]
        cmd += ["--out", str(run), "--steps", str(KILL_STEPS), "--quiet", *FAST, *settings]
        proc = subprocess.Popen(
            cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, start_new_session=True
        )
        deadline = time.time() + 120
        while _logged(run) < target or not (run / ckpt.STATE_NAME).exists():
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.time() < deadline, f"the training never reached step {target}"
            time.sleep(0.005)
        time.sleep(rng.uniform(0.0, PAUSE_S))
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        proc.stderr.close()
        state_step, weights_step = assert_checkpoint_readable(run)  # nothing on disk is half-written
        # step `target` was logged, so the checkpoint of the step before it was complete
        assert max(1, target - 1) <= state_step <= KILL_STEPS and weights_step in (state_step, state_step - 1)
        killed_at.append(state_step)
        logged = len((run / "log.jsonl").read_text().splitlines())
        code, _, err = train_cli(capsys, "--out", run, "--resume")
        assert code == 0, err
        assert_no_traceback(err)
        rows = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
        if state_step < KILL_STEPS:
            assert rows[logged]["step"] == state_step + 1  # continued right after the last checkpoint
        assert rows[-1]["step"] == KILL_STEPS
        assert temporaries(run) == []
        got = _weights(run)
        assert got.keys() == expected.keys()
        for k in expected:
            assert torch.equal(got[k], expected[k]), (trial, state_step, k)
    # the kills landed at different moments (not all before the first step or after the last)
    assert len(set(killed_at)) >= 3, killed_at
    print(f"killed at steps {killed_at}")
