from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from dualinpaint.cli import main

from .conftest import make_photos


def test_model_info_reports_picnet_reference_counts(capsys: pytest.CaptureFixture) -> None:
    assert main(["model-info", "--config", "picnet"]) == 0
    out = capsys.readouterr().out
    assert "5,978,240" in out  # E + G, picnet.md §6
    assert "2,374,016" in out  # G
    line = next(ln for ln in out.splitlines() if ln.startswith("inference, one fill"))
    assert float(line.split()[-1]) == pytest.approx(10.5, abs=0.1)  # picnet.md: 5.25 GMAC ≈ 10.5 GFLOP


def test_train_and_resume_from_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    make_photos(tmp_path / "p", 6)
    run = tmp_path / "run"
    args = [
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
        "train.log_every=1",
    ]
    assert main(args) == 0
    assert "step 2" in capsys.readouterr().out
    assert main(["train", "--out", str(run), "--resume", "--steps", "3", "--quiet"]) == 0
    assert json.loads((run / "model.json").read_text())["step"] == 3
    resume_set = [
        "train",
        "--out",
        str(run),
        "--resume",
        "--steps",
        "4",
        "--quiet",
        "--set",
        "loss.lambda_g=0.2",
    ]
    assert main(resume_set) == 0  # --set with --resume: applied to the run's config, and said
    assert "loss.lambda_g 1.0 → 0.2" in capsys.readouterr().out
    assert json.loads((run / "model.json").read_text())["config"]["loss"]["lambda_g"] == 0.2
    ft = tmp_path / "ft"
    assert (
        main(
            [*args[:5], "--out", str(ft), "--steps", "1", "--quiet", "--init", str(run / "model.safetensors")]
        )
        == 0
    )
    assert json.loads((ft / "run.json").read_text())["init"] == str(run / "model.safetensors")


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["model-info", "--config", "nope"], "no config file 'nope'"),
        (["model-info", "--config", "tiny", "--set", "model.ngf=-1"], "model.ngf=-1 must be > 0"),
        (["train", "--config", "tiny", "--out", "x"], "train needs --data"),
        (["train", "--out", "/nonexistent/run", "--resume"], "no training state"),
        (["train", "--config", "tiny", "--data", ".", "--out", "x", "--init", "nope"], "no model 'nope'"),
    ],
)
def test_user_errors_are_one_line(argv: list[str], fragment: str, capsys: pytest.CaptureFixture) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("dualinpaint: error:") and fragment in err and "\n" not in err


def test_masks_make_writes_a_reproducible_set(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    for name in ("a", "b"):
        assert (
            main(
                [
                    "masks",
                    "make",
                    "--kind",
                    "stroke",
                    "--count",
                    "3",
                    "--size",
                    "64",
                    "--seed",
                    "7",
                    "--out",
                    str(tmp_path / name),
                ]
            )
            == 0
        )
    a = json.loads((tmp_path / "a" / "manifest.json").read_text())
    b = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert a["files"] == b["files"] and len(a["files"]) == 3
    assert "wrote 3 stroke masks" in capsys.readouterr().out


def test_data_split_draws_a_reproducible_subset(tmp_path: Path) -> None:
    make_photos(tmp_path / "p", 10)
    for name in ("s1", "s2"):
        assert (
            main(
                [
                    "data",
                    "split",
                    "--data",
                    str(tmp_path / "p"),
                    "--count",
                    "5",
                    "--val-fraction",
                    "0.2",
                    "--out",
                    str(tmp_path / name),
                ]
            )
            == 0
        )
    t1 = (tmp_path / "s1" / "train.flist").read_text()
    assert t1 == (tmp_path / "s2" / "train.flist").read_text()
    assert len(t1.split()) == 4 and len((tmp_path / "s1" / "val.flist").read_text().split()) == 1


def test_python_dash_m_entry_point() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "dualinpaint", "--version"], capture_output=True, text=True, check=True
    )
    assert out.stdout.startswith("dualinpaint ")
