"""``dualinpaint bench`` on the tiny preset with tiny sizes and one run: keys, files, errors (not speed)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dualinpaint import bench, fastpath
from dualinpaint.cli import main

from .test_fast_path import BF16_MAX_ABS, BF16_RAN

pytestmark = pytest.mark.usefixtures("one_thread")


def test_summarise_and_parse_sizes() -> None:
    s = bench.summarise([3.0, 1.0, 2.0, 10.0])
    assert (s["median_s"], s["min_s"], s["max_s"], s["runs"]) == (2.5, 1.0, 10.0, 4)
    assert s["q1_s"] == pytest.approx(1.75) and s["q3_s"] == pytest.approx(4.75)
    assert bench.parse_sizes("256, 512") == [256, 512]
    for bad in ("", "a,b", "0", "-32"):
        with pytest.raises(ValueError, match="--sizes"):
            bench.parse_sizes(bad)


def test_run_bench_tiny_inference_and_training() -> None:
    report = bench.run_bench(
        config="tiny",
        sizes=[32, 48],
        runs=1,
        warmup=0,
        train=True,
        train_config="tiny",
        train_sizes=[32],
        batch=2,
        threads=1,
        precision="fp32",  # fp32 against fp32 at fp32 tolerances, with or without native bf16
    )
    m = report["machine"]
    assert m["threads"] == 1 and isinstance(m["bf16_supported"], bool) and m["physical_cores"] >= 1
    assert m["cpu"] and m["torch"] == torch.__version__
    rows = report["inference"]
    # one baseline and one fast-path row per size (sizes are multiples of the stride 16)
    assert [r["size"] for r in rows] == [32, 32, 48, 48]
    assert rows[0]["variant"] == "fp32 baseline"
    assert rows[1]["variant"] == "fast path (frozen, channels_last, inference_mode, fp32)"
    assert report["settings"]["precision"] == "fp32"
    for r in rows:
        assert {"median_s", "min_s", "max_s", "q1_s", "q3_s", "speedup", "max_abs_diff"} <= set(r)
        assert r["min_s"] <= r["median_s"] <= r["max_s"] and r["runs"] == 1
        assert r["max_abs_diff"] < 1e-4
    train = report["train"]
    assert [(r["size"], r["batch"]) for r in train] == [(32, 2), (32, 2)]
    assert train[0]["variant"] == "fp32 channels-first" and train[1]["variant"] == "channels_last (fp32)"
    assert train[0]["gan_mode"] == "wgangp" and all(r["samples_per_s"] > 0 for r in train)
    md = bench.to_markdown(report)
    assert "native bf16: " in md and "| 32² | fp32 baseline |" in md and "samples/s" in md


@pytest.mark.parametrize("forced", ["0", "1"])
def test_auto_precision_follows_the_bf16_detection(forced: str, monkeypatch) -> None:
    """Both branches on any CPU (``DUALINPAINT_BF16``): the fast path row in bf16 is within the bf16
    tolerance of fp32 (test_fast_path.py), in fp32 within float rounding."""
    net, _, _ = bench.load_network(None, "tiny")
    monkeypatch.setenv(fastpath.BF16_ENV, forced)
    base, fast = bench.bench_inference(net, [32], runs=1, warmup=0)
    assert base["max_abs_diff"] == 0.0
    if forced == "1":
        assert fast["variant"].endswith(", bf16)") and BF16_RAN < fast["max_abs_diff"] < BF16_MAX_ABS
    else:
        assert fast["variant"].endswith(", fp32)") and fast["max_abs_diff"] < 1e-4


def test_texture_row_times_the_fast_path_plus_texture(capsys: pytest.CaptureFixture) -> None:
    from dualinpaint.cli import main as cli_main

    args = ["bench", "--config", "tiny", "--sizes", "48", "--runs", "1", "--warmup", "0", "--threads", "1"]
    assert cli_main([*args, "--texture", "1.5"]) == 0
    printed = capsys.readouterr().out
    assert "| 48² | fast path + texture 1.5 |" in printed
    assert "differs from the fp32 fill by design" in printed
    report = bench.run_bench(config="tiny", sizes=[48], runs=1, warmup=0, threads=1, texture=1.0)
    rows = report["inference"]
    assert [r["variant"] for r in rows][-1] == "fast path + texture 1"
    assert rows[-1]["median_s"] > 0 and rows[-1]["texture"] == 1.0 and report["settings"]["texture"] == 1.0
    with pytest.raises(ValueError, match="--texture -1"):
        bench.run_bench(config="tiny", sizes=[48], runs=1, warmup=0, texture=-1)


def test_bench_command_writes_json_and_markdown(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    pytest.importorskip("onnxruntime")
    out_json, out_md = tmp_path / "r" / "bench.json", tmp_path / "bench.md"
    args = ["bench", "--config", "tiny", "--sizes", "32", "--runs", "1", "--warmup", "0", "--onnx"]
    assert main([*args, "--threads", "1", "--json", str(out_json), "--markdown", str(out_md)]) == 0
    printed = capsys.readouterr().out
    assert "Machine:" in printed and "physical cores" in printed and "onnxruntime" in printed
    report = json.loads(out_json.read_text())
    assert set(report) == {"machine", "model", "settings", "inference", "photo", "train"}
    variants = [r["variant"] for r in report["inference"]]
    assert variants[0] == "fp32 baseline" and variants[-1] == "onnxruntime"
    assert report["inference"][-1]["export_s"] > 0 and report["inference"][-1]["max_abs_diff"] < 1e-4
    assert out_md.read_text().startswith("Machine: ")
    assert not list(tmp_path.glob("r/.*.tmp"))  # atomic write left no temporary file


def test_photo_case_runs_in_a_fresh_process() -> None:
    rows = bench.bench_photo(None, "tiny", runs=1, warmup=0, threads=1, size=(400, 300), texture=1.0)
    row, textured = rows  # the plain torch run, then the same with --texture
    assert row["image"] == [400, 300] and row["runtime"] == "torch" and row["texture"] == 0.0
    assert textured["runtime"] == "torch" and textured["texture"] == 1.0
    assert 0.07 < row["hole_fraction"] < 0.13
    assert set(row["stages_median_s"]) == {"decode", "fill", "encode"}
    assert row["peak_rss_mb"] >= row["rss_after_load_mb"] > 50  # torch alone is more than 50 MB
    md = bench.to_markdown({**bench.run_bench(config="tiny", sizes=[32], runs=1, warmup=0), "photo": rows})
    assert "| torch + texture 1 |" in md


def test_make_photo_hole_is_ten_percent(tmp_path: Path) -> None:
    photo, mask = bench.make_photo(tmp_path, (800, 600))
    assert Image.open(photo).size == (800, 600) and Image.open(photo).format == "JPEG"
    assert np.mean(np.asarray(Image.open(mask)) > 127) == pytest.approx(0.10, abs=0.005)


def test_user_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch) -> None:
    import dualinpaint.checkpoint as checkpoint

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(checkpoint, "packaged_models", lambda: [])
    assert main(["bench", "--sizes", "32"]) == 2
    err = capsys.readouterr().err
    assert "--config photo" in err and err.count("\n") == 1
    assert main(["bench", "--config", "tiny", "--sizes", "x"]) == 2
    assert "--sizes" in capsys.readouterr().err
    assert main(["bench", "--config", "tiny", "--model", "default"]) == 2
    assert "not both" in capsys.readouterr().err
    assert main(["bench", "--config", "tiny", "--runs", "0"]) == 2
    assert "--runs 0" in capsys.readouterr().err


@pytest.mark.slow
def test_full_size_photo_case() -> None:
    (row,) = bench.bench_photo(None, "photo", runs=1, warmup=0, threads=None)
    assert row["image"] == [4000, 3000] and row["peak_rss_mb"] < 4096


@pytest.mark.slow  # 1.5 GiB of ballast, ~4 s
def test_peak_memory_of_a_child_is_its_own_not_the_parents() -> None:
    """Linux carries a parent's ru_maxrss into a forked-and-exec'd child; the photo case's peak must not."""
    import subprocess
    import sys

    ballast = b"\x01" * (1536 << 20)  # 1.5 GiB, resident in this (the parent) process
    code = "from dualinpaint import bench; print(bench._peak_rss_mb())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert len(ballast) and 0 < float(out.stdout) < 1024, out.stdout


# ------------------------------------------------------------------------------------------------ device


def test_explicit_cpu_device_and_rows_reported_as_they_come() -> None:
    snapshots = []
    report = bench.run_bench(
        config="tiny",
        sizes=[32],
        runs=1,
        warmup=0,
        train=True,
        train_config="tiny,tiny",  # several presets, one after the other
        train_sizes=[32],
        batch=2,
        threads=1,
        precision="fp32",
        device="cpu",
        on_update=lambda r: snapshots.append((len(r["inference"]), len(r["train"]))),
    )
    assert report["machine"]["device"] == report["settings"]["device"] == "cpu"
    assert report["settings"]["notes"] == [] and "gpu" not in report["machine"]
    assert len(report["inference"]) == 2 and len(report["train"]) == 4
    assert snapshots == [(1, 0), (2, 0), (2, 1), (2, 2), (2, 3), (2, 4)]  # once per row, in order
    assert not any("peak_gpu_mb" in r for r in report["inference"] + report["train"])  # CPU: no GPU column
    assert "peak GPU" not in bench.to_markdown(report)


def test_measure_synchronises_around_each_timed_call() -> None:
    calls = []
    s = bench.measure(lambda: calls.append("fn"), runs=2, warmup=1, sync=lambda: calls.append("sync"))
    assert calls == ["fn", "sync", "fn", "sync", "sync", "fn", "sync"] and s["runs"] == 2


@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_cuda_without_cuda_is_a_one_line_error(
    device: str, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out_json = tmp_path / "bench.json"
    args = ["bench", "--config", "tiny", "--sizes", "32", "--device", device, "--json", str(out_json)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "CUDA is not available" in err and repr(device) in err and err.count("\n") == 1
    assert not out_json.exists()
    net, _, _ = bench.load_network(None, "tiny")
    with pytest.raises(ValueError, match="CUDA is not available"):
        bench.bench_inference(net, [32], runs=1, warmup=0, device=device)
    with pytest.raises(ValueError, match="CUDA is not available"):
        bench.bench_train("tiny", [32], 2, runs=1, warmup=0, device=device)


def test_json_is_written_row_by_row(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A run that stops part-way (here: an unknown training preset after the inference rows) leaves the
    rows it finished in --json."""
    out_json = tmp_path / "bench.json"
    args = ["bench", "--config", "tiny", "--sizes", "32", "--runs", "1", "--warmup", "0", "--threads", "1"]
    assert main([*args, "--train", "--train-config", "nosuch", "--json", str(out_json)]) == 2
    assert "nosuch" in capsys.readouterr().err
    report = json.loads(out_json.read_text())
    assert [r["variant"] for r in report["inference"]][0] == "fp32 baseline" and len(report["inference"]) == 2
    assert report["train"] == [] and report["settings"]["device"] == "cpu"


def test_markdown_of_a_cuda_report() -> None:
    """The GPU's name, notes and peak GPU memory in the tables (a made-up report: no GPU needed)."""
    timing = {"median_s": 0.01, "min_s": 0.01, "max_s": 0.02, "speedup": 1.0}
    report = {
        "machine": {
            "cpu": "Some CPU",
            "physical_cores": 16,
            "logical_cpus": 32,
            "torch": "2.11.0",
            "onnxruntime": None,
            "threads": 16,
            "device": "cuda:0",
            "bf16_supported": True,
            "gpu": "NVIDIA H200",
            "gpu_memory_gb": 139.8,
            "gpu_capability": "9.0",
            "cuda": "12.8",
        },
        "model": {"source": "default", "family": "dualpath", "parameters": 1000, "ngf": 8},
        "settings": {"runs": 3, "warmup": 1, "notes": ["ONNX Runtime runs on the CPU only"]},
        "inference": [
            {"size": 256, "variant": "fp32 baseline", **timing, "max_abs_diff": 0.0, "peak_gpu_mb": 123.4},
            {"size": 256, "variant": "onnxruntime", "skipped": "ONNX Runtime runs on the CPU only"},
        ],
        "photo": [],
        "train": [
            {
                "preset": "photo",
                "gan_mode": "hinge",
                "size": 128,
                "batch": 40,
                "variant": "channels_last + bf16",
                **timing,
                "samples_per_s": 4000.0,
                "first_step_s": 2.0,
                "peak_gpu_mb": 2048.0,
            }
        ],
    }
    md = bench.to_markdown(report)
    assert "device cuda:0: NVIDIA H200 (139.8 GB, compute 9.0, CUDA 12.8), native bf16: yes" in md
    assert "Note: ONNX Runtime runs on the CPU only." in md
    assert "peak GPU 123 MB" in md and "| peak GPU MB |" in md and "| 2048 |" in md
