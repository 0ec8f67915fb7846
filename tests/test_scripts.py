"""The helper scripts under scripts/ that are not covered elsewhere: they run and write what they say."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch

from dualinpaint.checkpoint import load_model, save_weights
from dualinpaint.config import load_config
from dualinpaint.generator import DualPathInpainter

ROOT = Path(__file__).resolve().parents[1]


def convert(src: Path, out: Path) -> subprocess.CompletedProcess:
    """Run scripts/convert_upsample.py --model SRC --out OUT."""
    script = ROOT / "scripts" / "convert_upsample.py"
    return subprocess.run(
        [sys.executable, str(script), "--model", str(src), "--out", str(out)], capture_output=True, text=True
    )


def test_convert_upsample_script_writes_a_resize_model_that_loads(tmp_path: Path) -> None:
    cfg = load_config("tiny").with_overrides(["model.prefill=harmonic", "model.prefill_iters=3"])
    torch.manual_seed(0)
    save_weights(tmp_path / "src", DualPathInpainter(cfg.model), cfg, 7)
    result = convert(tmp_path / "src", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    assert "grey levels" in result.stdout and "--init" in result.stdout
    net, out_cfg, meta = load_model(tmp_path / "out")
    assert out_cfg.model.upsample == "resize" and meta["step"] == 7 and out_cfg.loss == cfg.loss
    assert not list((tmp_path / "out").glob("*.tmp*"))
    again = convert(tmp_path / "out", tmp_path / "again")  # already resize-conv: one line, exit status 2
    assert again.returncode == 2 and again.stderr.count("\n") == 1 and "already upsamples" in again.stderr
    assert not (tmp_path / "again").exists()
