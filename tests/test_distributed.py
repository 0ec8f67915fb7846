"""Two gloo processes on CPU compute the same gradients as one process with the doubled batch."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from dualinpaint.config import Config, load_config
from dualinpaint.distributed import DistInfo, init_distributed, shutdown_distributed
from dualinpaint.train import Trainer

from .test_train import stream_for


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def one_step_gradients(cfg: Config, folder: Path, dist: DistInfo, batch: int) -> dict[str, torch.Tensor]:
    """Run the critic step and the generator step with no-op optimisers; return the averaged gradients."""
    trainer = Trainer(cfg, dist=dist)
    trainer.opt_d.step = lambda *a, **k: None
    trainer.opt_g.step = lambda *a, **k: None
    stream = stream_for(cfg, folder, dist, batch=batch)
    batch_, pos = stream.next()
    image, hole = trainer._prepare(batch_)
    out = trainer.forward(image, hole, pos, 0)
    trainer.d_step(image, hole, out, pos, 0)
    grads = {f"d_rec.{k}": p.grad.clone() for k, p in trainer.d_rec.named_parameters()}
    grads |= {f"d_gen.{k}": p.grad.clone() for k, p in trainer.d_gen.named_parameters()}
    trainer.g_step(image, hole, out)
    grads |= {f"net.{k}": p.grad.clone() for k, p in trainer.net.named_parameters()}
    return grads


def _worker(rank: int, world: int, port: int, cfg: Config, folder: str, out: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
    )
    torch.set_num_threads(1)
    info = DistInfo(rank, rank, world)
    init_distributed(info)
    try:
        grads = one_step_gradients(cfg, Path(folder), info, cfg.data.batch_size)
        torch.save(grads, Path(out) / f"grads_{rank}.pt")
    finally:
        shutdown_distributed()


@pytest.mark.slow
def test_two_process_gradients_match_one_process_doubled_batch(tmp_path: Path, photo_dir: Path) -> None:
    cfg = load_config("tiny").with_overrides(["data.batch_size=2"])
    mp.spawn(_worker, args=(2, _free_port(), cfg, str(photo_dir), str(tmp_path)), nprocs=2, join=True)
    g0 = torch.load(tmp_path / "grads_0.pt")
    g1 = torch.load(tmp_path / "grads_1.pt")
    single = one_step_gradients(cfg, photo_dir, DistInfo(), batch=4)
    assert g0.keys() == single.keys()
    for k in single:
        torch.testing.assert_close(g0[k], g1[k], rtol=0, atol=0)  # every rank holds the same average
        torch.testing.assert_close(g0[k], single[k], rtol=2e-3, atol=1e-6, msg=k)


@pytest.mark.slow
def test_torchrun_cli_two_processes_rank0_writes(tmp_path: Path) -> None:
    """`torchrun --nproc_per_node=2 -m dualinpaint train` runs (gloo on CPU) and only rank 0 writes."""
    import importlib.util
    import subprocess
    import sys

    from .conftest import make_photos

    # the command below is `python -m torch.distributed.run` (what the `torchrun` script runs), so what it
    # needs is that module and gloo in this interpreter, not a `torchrun` on PATH
    if not (torch.distributed.is_available() and torch.distributed.is_gloo_available()):
        pytest.skip("this PyTorch build has no torch.distributed with gloo")
    if importlib.util.find_spec("torch.distributed.run") is None:  # pragma: no cover - torch >= 1.10 has it
        pytest.skip("torch.distributed.run is missing from this PyTorch")
    make_photos(tmp_path / "p", 8)
    run = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        "--master_port",
        str(_free_port()),
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
        "2",
        "--quiet",
        "--set",
        "data.batch_size=2",
        "--set",
        "train.log_every=1",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.count("weights in") == 1  # one summary line: rank 0 alone reports
    assert json.loads((run / "run.json").read_text())["world_size"] == 2
    from dualinpaint import checkpoint as ckpt

    assert ckpt.load_state(run)["step"] == 2
    assert len((run / "log.jsonl").read_text().splitlines()) == 2
