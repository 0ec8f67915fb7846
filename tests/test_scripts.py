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


def test_plot_curves_reads_a_step_range_smooths_and_writes_a_png(tmp_path: Path) -> None:
    import importlib.util
    import json

    from PIL import Image

    spec = importlib.util.spec_from_file_location("plot_curves", ROOT / "scripts" / "plot_curves.py")
    plot_curves = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(plot_curves)
    run = tmp_path / "run"
    run.mkdir()
    rows = [{"step": s, "val/gain_hole_db": v} for s, v in [(100, 0.1), (200, 0.3), (300, 0.2), (400, 0.6)]]
    rows.insert(2, {"step": 200, "g/total": 1.0})  # other rows are skipped
    (run / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert plot_curves.read_curves(run, "val/gain_hole_db", from_step=200) == [
        (200, 0.3),
        (300, 0.2),
        (400, 0.6),
    ]
    assert plot_curves.read_curves(run, "val/gain_hole_db", to_step=300) == [
        (100, 0.1),
        (200, 0.3),
        (300, 0.2),
    ]
    smooth = plot_curves.read_curves(run, "val/gain_hole_db", from_step=200, smooth=2)
    assert [s for s, _ in smooth] == [200, 300, 400]
    assert [round(v, 6) for _, v in smooth] == [0.3, 0.25, 0.4]
    out = tmp_path / "curves.png"
    cmd = [sys.executable, str(ROOT / "scripts" / "plot_curves.py"), f"{run}=A", "--out", str(out)]
    result = subprocess.run(
        [*cmd, "--from-step", "200", "--to-step", "300", "--smooth", "2"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert Image.open(out).size[0] == plot_curves.W
