"""``scripts/device_run.sh``: the GPU visit's one command, kept from rotting by its CPU rehearsal.

The rehearsal (``--rehearse``) runs every step of the GPU run on the CPU with the tiny preset: the GPU
tests (skipped here), ``python -m dualinpaint bench --device cpu`` with tiny sizes and the helper's
smooth-fill rows, a short fine-tune with the background conversion, the final copy
and the summary. Its OUTDIR must keep the contract the GPU machine's return path imposes: at most 8
plain files, none over 16 MB, and fp16 weights that load into the networks.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from dualinpaint import checkpoint as ckpt
from dualinpaint.config import load_config
from dualinpaint.train import Trainer

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "device_run.sh"
EXPECTED = {
    "model.safetensors",
    "train.safetensors",
    "config.yaml",
    "log.jsonl",
    "samples.png",
    "bench.json",
    "tests.log",
    "run.log",
}
MAX_FILES, MAX_BYTES = 8, 16 * 2**20
REHEARSAL_STEPS = 6
Rehearsal = tuple[Path, subprocess.CompletedProcess, float]  # OUTDIR, the finished script, wall seconds

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def _env(tmp_path: Path) -> dict[str, str]:
    """The script's environment: its work folder under tmp_path; the interpreter running these tests;
    from scratch even where the checkout has a runs/device-init (INIT=none)."""
    return {
        **os.environ,
        "TMPDIR": str(tmp_path),
        "PYTHON": sys.executable,
        "OMP_NUM_THREADS": "1",
        "INIT": "none",
    }


def _run(args: list[str], tmp_path: Path, timeout: float = 60, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(SCRIPT), *args],
        capture_output=True,
        text=True,
        env={**_env(tmp_path), **env},
        timeout=timeout,
        check=False,
        cwd=tmp_path,
    )


def check_usage_error(out: subprocess.CompletedProcess, message: str, tmp_path: Path) -> None:
    """Exit 2 with ``message`` and the usage line, before any work: no OUTDIR was created."""
    assert out.returncode == 2, out.stderr
    assert message in out.stderr and "usage:" in out.stderr
    assert not (tmp_path / "out").exists()


def test_script_parses() -> None:
    assert subprocess.run(["bash", "-n", str(SCRIPT)], check=False).returncode == 0


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
def test_shellcheck_is_clean() -> None:
    out = subprocess.run(["shellcheck", str(SCRIPT)], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "OUTDIR is missing"),
        (["--bogus", "out"], "unknown option --bogus"),
        (["a", "b"], "one OUTDIR only"),
        (["--data", "no/such/corpus", "out"], "no corpus folder no/such/corpus"),
        (["--data"], "--data needs a folder"),
    ],
)
def test_wrong_arguments_exit_2_before_any_work(tmp_path: Path, args: list[str], message: str) -> None:
    check_usage_error(_run(args, tmp_path, timeout=30), message, tmp_path)


@pytest.mark.parametrize(
    ("knob", "value", "message"),
    [
        ("BATCH", "0", "BATCH must be at least 1"),
        ("BATCH", "lots", "BATCH must be a whole number (got 'lots')"),
        ("WORKERS", "-1", "WORKERS must be a whole number (got '-1')"),
        ("BUDGET", "9.5", "BUDGET must be a whole number (got '9.5')"),
        ("CONVERT_EVERY", "0", "CONVERT_EVERY must be at least 1"),
        ("D_WARMUP", "-5", "D_WARMUP must be a whole number (got '-5')"),
    ],
)
def test_bad_knobs_exit_2_before_any_work(tmp_path: Path, knob: str, value: str, message: str) -> None:
    check_usage_error(_run(["out"], tmp_path, timeout=30, **{knob: value}), message, tmp_path)


def test_missing_init_weights_exit_2_before_any_work(tmp_path: Path) -> None:
    out = _run(["out"], tmp_path, timeout=30, INIT="no/such/run")
    check_usage_error(out, "no INIT weights at no/such/run", tmp_path)


def test_help_exits_0(tmp_path: Path) -> None:
    out = _run(["--help"], tmp_path, timeout=30)
    assert out.returncode == 0 and "--rehearse" in out.stdout


def test_default_corpus_folder_is_git_ignored() -> None:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    probe = subprocess.run(
        ["git", "-C", str(ROOT), "check-ignore", "-q", "data/debian-photos/train.flist"], check=False
    )
    assert probe.returncode == 0, "data/debian-photos must be git-ignored (it travels as an untracked folder)"


# ------------------------------------------------------------------------------------------ rehearsal


def check_outdir_contract(out: Path) -> None:
    entries = list(out.iterdir())
    assert len(entries) <= MAX_FILES, sorted(p.name for p in entries)
    for p in entries:
        assert p.is_file() and not p.is_symlink(), f"{p.name} is not a plain file"
        assert p.stat().st_size <= MAX_BYTES, f"{p.name}: {p.stat().st_size} bytes"


def check_weights(out: Path, step: int | None = None) -> None:
    """fp16 weights that build and load the networks: inference (model) and a fine-tune (train)."""
    weights = load_file(out / "model.safetensors")
    assert {t.dtype for t in weights.values() if t.is_floating_point()} == {torch.float16}
    net, cfg, meta = ckpt.load_model(out)  # OUTDIR works as --model
    assert step is None or meta["step"] == step
    assert next(net.parameters()).dtype == torch.float32  # loaded into the fp32 network
    image, hole = torch.rand(1, 3, 64, 64) * 2 - 1, torch.zeros(1, 1, 64, 64)  # the recipe's smallest size
    hole[..., 16:48, 16:48] = 1
    with torch.no_grad():
        assert torch.isfinite(net.complete(image, hole)).all()
    tensors, cfg2, _ = ckpt.read_weights(out / "train.safetensors")  # the config travels in it too
    assert cfg2 == cfg
    trainer = Trainer(cfg)  # a CPU fine-tune starting from the generator and both critics
    for name in ("net", "d_rec", "d_gen"):
        part = {k[len(name) + 1 :]: v for k, v in tensors.items() if k.startswith(name + ".")}
        assert part and all(v.dtype == torch.float16 for v in part.values() if v.is_floating_point())
        ckpt.load_into(getattr(trainer, name), part, out / "train.safetensors")


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory: pytest.TempPathFactory) -> Rehearsal:
    tmp = tmp_path_factory.mktemp("rehearsal")
    t0 = time.perf_counter()
    proc = _run(["--rehearse", str(tmp / "out")], tmp, timeout=300)
    return tmp / "out", proc, time.perf_counter() - t0


@pytest.mark.slow
def test_rehearsal_keeps_the_outdir_contract(rehearsal: Rehearsal) -> None:
    out, proc, wall = rehearsal
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert wall < 150, f"the rehearsal took {wall:.0f} s"
    check_outdir_contract(out)
    assert {p.name for p in out.iterdir()} == EXPECTED
    assert not list(Path(out.parent).glob("device_run.*")), "the work folder was not removed"
    # the summary names every step, and none failed
    assert "device_run summary (rehearsal)" in proc.stdout
    for step in ("tests", "bench", "prefill", "train", "final"):
        assert f"  {step:<8} ok" in proc.stdout, proc.stdout


@pytest.mark.slow
def test_rehearsal_results_are_usable(rehearsal: Rehearsal) -> None:
    out, proc, _ = rehearsal
    assert proc.returncode == 0, proc.stderr[-3000:]
    check_weights(out, step=REHEARSAL_STEPS)
    rows = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert rows[-1]["step"] == REHEARSAL_STEPS and any("val/psnr" in r for r in rows)
    assert load_config(out / "config.yaml").model == load_config("photo-psnr").model  # the recipe, trained
    bench = json.loads((out / "bench.json").read_text())
    # step 2 is `dualinpaint bench --device cpu` (the GPU run: --device cuda), then the helper's smooth fill
    assert "dualinpaint bench --device" in bench["note"]
    assert bench["settings"]["device"] == bench["machine"]["device"] == "cpu"
    assert {r["size"] for r in bench["inference"]} == {32, 64}
    assert [r["variant"] for r in bench["inference"]][0] == "fp32 baseline"
    assert [(r["preset"], r["size"]) for r in bench["train"]] == [("tiny", 32)] * 2
    assert all(r["samples_per_s"] > 0 and r["batch"] == 12 for r in bench["train"])
    (prefill,) = bench["prefill"]
    assert prefill["preset"] == "photo" and prefill["size"] == 32 and prefill["images_per_s"] > 0
    log = (out / "run.log").read_text()
    assert "| 32² | fp32 baseline |" in log  # bench's own tables, in the run log
    # batch 12 from 9 training photos: each is listed ceil(4·12 / 9) = 6 times, and the batch stays 12
    assert "9 training photos listed 6 times for batch 12" in log
    assert "9 training photos (54 listed)" in log
    assert load_config(out / "config.yaml").data.batch_size == 12
    tests_log = (out / "tests.log").read_text()
    assert "test_gpu.py" in tests_log and " skipped" in tests_log  # collected, skipped without CUDA
    with Image.open(out / "samples.png") as grid:
        assert grid.width > 32 and grid.height >= 32
    assert "device_run summary" in (out / "run.log").read_text()


@pytest.mark.slow
def test_a_run_killed_mid_training_leaves_usable_weights(tmp_path: Path) -> None:
    """The GPU machine's call can end at any moment: the background copy has weights in OUTDIR by then."""
    out = tmp_path / "out"
    proc = subprocess.Popen(
        ["bash", str(SCRIPT), "--rehearse", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**_env(tmp_path), "BUDGET": "200"},
        cwd=tmp_path,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 240
        while not (out / "model.safetensors").exists() and proc.poll() is None:
            assert time.monotonic() < deadline, "no weights appeared in OUTDIR"
            time.sleep(0.2)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # the script, its training run and its copy loop
        proc.wait()
    check_outdir_contract(out)
    check_weights(out)


@pytest.mark.slow
def test_a_training_run_that_fails_is_tried_again_at_the_fallback_batch(tmp_path: Path) -> None:
    """The first run ends without a checkpoint (here: a config the trainer refuses, injected): the
    script trains once more at its fallback batch (the rehearsal's 4) and still returns weights."""
    out = tmp_path / "out"
    proc = _run(["--rehearse", str(out)], tmp_path, timeout=300, DEVICE_RUN_INJECT_TRAIN_FAILURE="1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = (out / "run.log").read_text()
    assert "train: FAILED" in log and "no checkpoint at batch 12; trying once more at batch 4" in log
    assert "  train    FAILED" in proc.stdout and "  retrain  ok" in proc.stdout, proc.stdout
    check_outdir_contract(out)
    check_weights(out, step=REHEARSAL_STEPS)
    assert load_config(out / "config.yaml").data.batch_size == 4


@pytest.mark.slow
def test_rehearsal_fine_tunes_from_init(tmp_path: Path) -> None:
    """INIT=run folder: the run starts from its generator, EMA and critics, not from a fresh network."""
    torch.manual_seed(123)
    trainer = Trainer(load_config("photo-psnr"))
    with torch.no_grad():  # far from any freshly initialised network
        for module in (trainer.net, trainer.ema, trainer.d_rec, trainer.d_gen):
            for p in module.parameters():
                p.mul_(1.5)
    ckpt.save_state(tmp_path / "init", trainer.state_dict({}))
    out = tmp_path / "out"
    proc = _run(["--rehearse", str(out)], tmp_path, timeout=300, INIT=str(tmp_path / "init"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"fine-tuned from {tmp_path / 'init'}" in (out / "run.log").read_text()
    check_weights(out, step=REHEARSAL_STEPS)
    start = {k: v for k, v in ckpt.clean_state_dict(trainer.ema).items() if k.endswith(".original")}
    got = load_file(out / "model.safetensors")
    moved = [float((got[k].float() - v).norm() / v.norm()) for k, v in start.items()]
    assert start and max(moved) < 0.05, max(moved)  # six small steps away (a fresh network: ~0.3)


@pytest.mark.slow
def test_without_init_a_fresh_machine_fine_tunes_the_packaged_default(tmp_path: Path) -> None:
    """No INIT and no runs/device-init (a fresh GPU machine): the run starts from the packaged default
    model, whose networks are the recipe's, with fresh critics trained alone for D_WARMUP steps."""
    if (ROOT / "runs" / "device-init").is_dir():
        pytest.skip("this checkout has a runs/device-init, which the script prefers")
    env = {k: v for k, v in _env(tmp_path).items() if k != "INIT"}
    out = tmp_path / "out"
    proc = subprocess.run(
        ["bash", str(SCRIPT), "--rehearse", str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = (out / "run.log").read_text()
    assert "recipe photo-psnr (fine-tuned from default, 2 critic-only steps first)" in log, log[:2000]
    assert load_config(out / "config.yaml").optim.d_warmup == 2
    check_weights(out, step=REHEARSAL_STEPS)
    shipped, _, _ = ckpt.read_weights(ckpt.resolve_model("default"))
    got = load_file(out / "model.safetensors")
    moved = [
        float((got[k].float() - v).norm() / v.norm()) for k, v in shipped.items() if k.endswith(".original")
    ]
    assert moved and max(moved) < 0.05, max(moved)  # a few steps from the shipped weights, not fresh ones
