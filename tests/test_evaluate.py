"""Evaluation protocol and evaluator: outputs, determinism, resume, best-of-K, baselines, CLI hooks."""

from __future__ import annotations

import argparse
import csv
import json
import math
import statistics
from pathlib import Path

import pytest
import torch

from dualinpaint import baselines as baselines_module
from dualinpaint import evaluate as ev
from dualinpaint.checkpoint import load_model, save_weights
from dualinpaint.config import load_config
from dualinpaint.data import ImageDataset
from dualinpaint.generator import DualPathInpainter
from dualinpaint.images import open_image, pil_to_tensor
from dualinpaint.masks import load_mask_set
from dualinpaint.metrics import NOT_AVAILABLE, detail_ratio, l1, psnr

from .conftest import make_photos

SIZE = 64
N_IMAGES = 3
COUNT = 2  # masks per stroke bucket
BEST_OF = 3
METHODS = ("tiny", f"tiny best-of-{BEST_OF}", "telea", "ns")


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def metric_table(path: Path) -> list[tuple]:
    """Everything in results.csv except the timing column."""
    return [tuple(v for k, v in row.items() if k != "seconds") for row in read_csv(path / ev.RESULTS_CSV)]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def setup(one_thread, tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("evaluate")
    make_photos(root / "photos", N_IMAGES, size=(60, 72), seed=1)
    protocol = ev.make_eval_masks(root / "masks", size=SIZE, count=COUNT, seed=0)
    cfg = load_config("tiny").with_overrides([f"data.size={SIZE}", "data.load_size=68"])
    torch.manual_seed(0)
    save_weights(root / "tiny", DualPathInpainter(cfg.model), cfg, 0)
    kwargs = dict(
        models=[root / "tiny"], baselines=["telea", "ns"], size=SIZE, best_of=BEST_OF, progress=False
    )
    results = ev.evaluate(root / "photos", root / "masks", root / "run1", **kwargs)
    return {"root": root, "protocol": protocol, "kwargs": kwargs, "results": results}


def test_make_eval_masks(tmp_path, setup):
    protocol = setup["protocol"]
    names = [b["name"] for b in protocol["buckets"]]
    assert names == ["center"] + [f"stroke_{a}-{b}" for a, b in ev_bins()]
    saved = json.loads((setup["root"] / "masks" / ev.PROTOCOL_NAME).read_text())
    assert saved == json.loads(json.dumps(protocol))
    for bucket in protocol["buckets"]:
        masks, manifest = load_mask_set(setup["root"] / "masks" / bucket["folder"])
        assert len(masks) == (1 if bucket["kind"] == "center" else COUNT)
        for entry in manifest["files"]:
            assert bucket["min_ratio"] <= entry["hole_ratio"] <= bucket["max_ratio"]
    assert protocol["buckets"][0]["min_ratio"] == pytest.approx(0.25)
    again = ev.make_eval_masks(tmp_path / "again", size=SIZE, count=COUNT, seed=0)
    assert [b["manifest_sha256"] for b in again["buckets"]] == [
        b["manifest_sha256"] for b in protocol["buckets"]
    ]


def ev_bins() -> list[tuple[str, str]]:
    return [(f"{round(lo * 100):02d}", f"{round(hi * 100):02d}") for lo, hi in ev.STROKE_BINS]


def test_outputs_and_report(setup):
    run = setup["root"] / "run1"
    for name in (ev.RESULTS_CSV, ev.RESULTS_JSON, ev.REPORT_MD, ev.GRID_PNG, ev.CACHE_NAME):
        assert (run / name).is_file(), name
    rows = read_csv(run / ev.RESULTS_CSV)
    buckets = [b["name"] for b in setup["protocol"]["buckets"]]
    assert len(rows) == len(buckets) * len(METHODS) * N_IMAGES
    assert {r["method"] for r in rows} == set(METHODS)
    assert all(r["lpips"] == NOT_AVAILABLE for r in rows)

    report = (run / ev.REPORT_MD).read_text()
    sections = report.split("\n## ")[1:]
    assert [s.split(":")[0] for s in sections] == buckets
    for section in sections:
        table = [line for line in section.splitlines() if line.startswith("| ")]
        assert table[0].startswith("| method | PSNR")
        assert [line.split(" | ")[0][2:] for line in table[1:]] == list(METHODS)
        assert all(NOT_AVAILABLE in line for line in table[1:])
    assert "deterministic" in report and "Oracle selection" in report and "uint8" in report

    saved = json.loads((run / ev.RESULTS_JSON).read_text())
    assert saved["software"]["torch"] and saved["software"]["dualinpaint"]
    assert saved["protocol"]["data"]["images"] == N_IMAGES
    assert saved["protocol"]["masks"]["protocol_sha256"]
    assert len(saved["rows"]) == len(rows) and len(saved["aggregates"]) == len(buckets) * len(METHODS)
    assert saved["args"]["best_of"] == BEST_OF and isinstance(saved["command"], list)

    grid = open_image(run / ev.GRID_PNG)
    assert grid.size == ((len(METHODS) + 2) * SIZE, 14 + len(buckets) * SIZE)


def test_best_of_rows_are_separate_and_minimal(setup):
    rows = setup["results"]["rows"]
    best = [r for r in rows if r["method"] == f"tiny best-of-{BEST_OF}"]
    det = [r for r in rows if r["method"] == "tiny"]
    assert best and len(best) == len(det)
    assert all("sample_l1" not in r and r["chosen_sample"] is None for r in det)
    for r in best:
        assert len(r["sample_l1"]) == BEST_OF
        assert r["l1"] == r["sample_l1"][r["chosen_sample"]]
        assert all(r["l1"] <= s for s in r["sample_l1"])
    assert best[0]["method_id"] != det[0]["method_id"]


def test_metrics_match_the_saved_quantised_output(setup):
    root = setup["root"]
    rows = read_csv(root / "run1" / ev.RESULTS_CSV)
    row = next(
        r for r in rows if r["bucket"] == "center" and r["method"] == "tiny" and r["image_index"] == "0"
    )
    output = pil_to_tensor(open_image(ev._output_path(root / "run1", "center", "tiny", 0, row["image"])))
    target = ImageDataset(root / "photos", SIZE, train=False)[0]["image"][None]
    masks, _ = load_mask_set(root / "masks" / "center")
    mask = masks[int(row["mask_index"])][None]
    assert float(row["psnr"]) == psnr(output, target).item()
    assert float(row["hole_psnr"]) == psnr(output, target, mask).item()
    assert float(row["hole_l1"]) == l1(output, target, mask).item()
    assert torch.equal(output[(mask == 0).expand_as(output)], target[(mask == 0).expand_as(target)])


def test_baseline_beats_zero_fill(setup):
    root = setup["root"]
    rows = setup["results"]["rows"]
    dataset = ImageDataset(root / "photos", SIZE, train=False)
    for bucket in ("center", "stroke_20-30"):
        masks, _ = load_mask_set(root / "masks" / bucket)
        zero = []
        for i in range(N_IMAGES):
            image, mask = dataset[i]["image"][None], masks[i % len(masks)][None]
            zero.append(psnr(image * (1 - mask), image, mask).item())
        telea = [r["hole_psnr"] for r in rows if r["bucket"] == bucket and r["method"] == "telea"]
        assert sum(telea) / len(telea) > sum(zero) / len(zero)


def test_resume_and_determinism(setup, monkeypatch):
    root, kwargs = setup["root"], setup["kwargs"]
    calls = {"telea": 0, "model": 0}
    telea = baselines_module.BASELINES["telea"]
    complete = DualPathInpainter.complete
    fail_after = [5]

    def counting_telea(image, mask):
        calls["telea"] += 1
        if calls["telea"] > fail_after[0]:
            raise RuntimeError("interrupted")
        return telea(image, mask)

    def counting_complete(self, *args, **kw):
        calls["model"] += 1
        return complete(self, *args, **kw)

    monkeypatch.setitem(baselines_module.BASELINES, "telea", counting_telea)
    monkeypatch.setattr(DualPathInpainter, "complete", counting_complete)

    with pytest.raises(RuntimeError, match="interrupted"):
        ev.evaluate(root / "photos", root / "masks", root / "run2", **kwargs)
    done = len((root / "run2" / ev.CACHE_NAME).read_bytes().splitlines())
    assert 0 < done < len(setup["results"]["rows"])
    first = dict(calls)

    fail_after[0] = 10**9
    calls.update(telea=0, model=0)
    resumed = ev.evaluate(root / "photos", root / "masks", root / "run2", **kwargs)
    n_buckets = len(setup["protocol"]["buckets"])
    total_telea = n_buckets * N_IMAGES
    assert calls["telea"] == total_telea - (first["telea"] - 1)  # the failing call did not finish
    assert calls["model"] == 2 * total_telea - first["model"]  # deterministic + best-of per entry
    assert resumed["cached"] == done and resumed["computed"] == len(resumed["rows"]) - done
    assert metric_table(root / "run2") == metric_table(root / "run1")  # a fresh run gives the same table

    calls.update(telea=0, model=0)
    again = ev.evaluate(root / "photos", root / "masks", root / "run1", **kwargs)
    assert calls == {"telea": 0, "model": 0} and again["computed"] == 0
    assert metric_table(root / "run1") == metric_table(root / "run2")


def test_torn_cache_line_is_ignored(setup, tmp_path):
    root = setup["root"]
    out = tmp_path / "torn"
    args = dict(baselines=["telea"], size=SIZE, limit=1, progress=False)
    ev.evaluate(root / "photos", root / "masks" / "center", out, **args)
    cache = out / ev.CACHE_NAME
    cache.write_bytes(cache.read_bytes() + b'{"key": "v1|bro')
    result = ev.evaluate(root / "photos", root / "masks" / "center", out, **args)
    assert result["computed"] == 0 and result["cached"] == 1
    assert len(cache.read_bytes().splitlines()) == 2


def test_bad_arguments(setup):
    root = setup["root"]
    photos, masks = root / "photos", root / "masks"
    with pytest.raises(ValueError, match="unknown baseline 'lama'"):
        ev.evaluate(photos, masks, root / "bad", baselines=["telea", "lama"], size=SIZE, progress=False)
    with pytest.raises(ValueError, match="nothing to evaluate"):
        ev.evaluate(photos, masks, root / "bad", size=SIZE, progress=False)
    with pytest.raises(ValueError, match="evaluation size is 128"):
        ev.evaluate(photos, masks, root / "bad", baselines=["telea"], size=128, progress=False)
    with pytest.raises(ValueError, match="neither an evaluation protocol"):
        ev.evaluate(photos, photos, root / "bad", baselines=["telea"], size=SIZE, progress=False)
    with pytest.raises(ValueError, match="best_of needs"):
        ev.evaluate(photos, masks, root / "bad", baselines=["telea"], size=SIZE, best_of=2, progress=False)


def test_tampered_manifest_is_refused(setup, tmp_path):
    import shutil

    copy = tmp_path / "masks"
    shutil.copytree(setup["root"] / "masks", copy)
    manifest = copy / "center" / "manifest.json"
    manifest.write_text(manifest.read_text().replace('"seed": 0', '"seed": 0 '))
    with pytest.raises(ValueError, match="does not match the sha256"):
        ev.load_protocol(copy)


def test_cli_hooks(setup, tmp_path, capsys):
    root = setup["root"]
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    ev.add_evaluate_arguments(sub.add_parser("evaluate"))
    ev.add_eval_masks_arguments(sub.add_parser("eval-masks"))

    args = parser.parse_args(["eval-masks", "--out", str(tmp_path / "m"), "--size", "32", "--count", "1"])
    assert ev.eval_masks_command(args) == 0
    assert (tmp_path / "m" / ev.PROTOCOL_NAME).is_file()

    argv = ["evaluate", "--data", str(root / "photos"), "--masks", str(tmp_path / "m" / "stroke_10-20")]
    argv += [
        "--baselines",
        "telea,ns",
        "--out",
        str(tmp_path / "r"),
        "--size",
        "32",
        "--limit",
        "2",
        "--quiet",
        "--threads",
        "1",
    ]
    args = parser.parse_args(argv)
    assert args.model == [] and args.best_of == 0 and args.threads == 1
    assert ev.evaluate_command(args) == 0
    out = capsys.readouterr().out
    assert "## stroke_10-20" in out and "| telea |" in out and "| ns |" in out
    rows = read_csv(tmp_path / "r" / ev.RESULTS_CSV)
    assert len(rows) == 4 and {r["bucket"] for r in rows} == {"stroke_10-20"}


# ---------------------------------------------------------------------------------------------------------
# Detail ratio and network contribution
# ---------------------------------------------------------------------------------------------------------

FILL_LIMIT = 2  # images of the prefill-model run


@pytest.fixture(scope="module")
def prefill_run(setup) -> dict:
    """A tiny model with a biharmonic prefill (weights perturbed, so its residual is not zero) beside the
    no-prefill tiny model and the mlbiharmonic baseline, on the first FILL_LIMIT images."""
    root = setup["root"]
    overrides = [
        f"data.size={SIZE}",
        "data.load_size=68",
        "model.prefill=biharmonic",
        "model.prefill_iters=8",
    ]
    cfg = load_config("tiny").with_overrides(overrides)
    torch.manual_seed(1)
    net = DualPathInpainter(cfg.model)
    with torch.no_grad():
        for param in net.parameters():
            param.add_(0.05 * torch.randn_like(param))
    save_weights(root / "tinyfill", net, cfg, 0)
    kwargs = dict(
        models=[root / "tinyfill", root / "tiny"],
        baselines=["mlbiharmonic"],
        size=SIZE,
        limit=FILL_LIMIT,
        progress=False,
    )
    results = ev.evaluate(root / "photos", root / "masks", root / "fill", **kwargs)
    return {"root": root, "cfg": cfg, "kwargs": kwargs, "results": results}


def test_detail_columns_are_pooled_per_bucket(setup):
    root, results = setup["root"], setup["results"]
    rows = results["rows"]
    assert all(r["detail_count"] > 0 and r["detail_ref_sum"] > 0 for r in rows if r["bucket"] == "center")
    for agg in results["aggregates"]:
        sel = [r for r in rows if r["bucket"] == agg["bucket"] and r["method"] == agg["method"]]
        sel = [r for r in sel if r["detail_count"] > 0]
        fill, real = math.fsum(r["detail_sum"] for r in sel), math.fsum(r["detail_ref_sum"] for r in sel)
        assert agg["detail_sum"] == fill and agg["detail_ref_sum"] == real
        assert agg["detail_ratio"] == (fill / real if real > 0 else pytest.approx(math.nan, nan_ok=True))
        for r in sel:
            assert r["detail_ratio"] == r["detail_sum"] / r["detail_ref_sum"]

    # a row's detail is the metric of the saved (quantised) output; CSV and JSON carry the same numbers
    csv_rows = read_csv(root / "run1" / ev.RESULTS_CSV)
    row = next(
        r for r in csv_rows if r["bucket"] == "center" and r["method"] == "telea" and r["image_index"] == "0"
    )
    output = pil_to_tensor(open_image(ev._output_path(root / "run1", "center", "telea", 0, row["image"])))
    target = ImageDataset(root / "photos", SIZE, train=False)[0]["image"][None]
    mask = load_mask_set(root / "masks" / "center")[0][0][None]
    assert float(row["detail_ratio"]) == detail_ratio(output, target, mask).item()
    saved = json.loads((root / "run1" / ev.RESULTS_JSON).read_text())
    assert [float(r["detail_sum"]) for r in csv_rows] == [r["detail_sum"] for r in saved["rows"]]
    assert all("detail_ratio" in a for a in saved["aggregates"])

    report = (root / "run1" / ev.REPORT_MD).read_text()
    assert "| method | PSNR ↑ | SSIM ↑ | hole PSNR ↑ | L1 (%) ↓ | detail (→1) |" in report
    centre = next(a for a in results["aggregates"] if a["bucket"] == "center" and a["method"] == "telea")
    assert f"| {centre['detail_ratio']:.3f} | {NOT_AVAILABLE} |" in report
    # the tiny model has no prefill: no contribution, and the report says so in every bucket
    assert saved["contributions"] == []
    assert report.count("Network contribution of `tiny`: none (model.prefill = none") == 7


def test_network_contribution_is_model_minus_own_fill(prefill_run):
    root, cfg, results = prefill_run["root"], prefill_run["cfg"], prefill_run["results"]
    labels = [m["label"] for m in results["methods"]]
    assert labels == ["tinyfill", "tinyfill own fill", "tiny", "mlbiharmonic"]
    assert results["methods"][0]["own_fill"] == "tinyfill own fill"
    fill_info = results["methods"][1]["info"]
    assert (fill_info["function"], fill_info["iters"], fill_info["levels"]) == ("biharmonic_fill", 8, 4)

    # the own-fill row is net.prefill composited into the image, scored like any output
    net = DualPathInpainter(cfg.model)
    dataset = ImageDataset(root / "photos", SIZE, train=False)
    for r in results["rows"]:
        if r["method"] != "tinyfill own fill" or r["bucket"] not in ("center", "stroke_30-40"):
            continue
        image = dataset[r["image_index"]]["image"][None]
        mask = load_mask_set(root / "masks" / r["bucket"])[0][r["mask_index"]][None]
        masked = image * (1 - mask)
        with torch.inference_mode():
            fill = net.prefill(masked, mask) * mask + masked * (1 - mask)
        expected = ev.score(fill, image, mask)
        assert {k: r[k] for k in expected} == pytest.approx(expected, rel=0, abs=0, nan_ok=True)

    contribs = results["contributions"]
    buckets = [b["name"] for b in results["protocol"]["masks"]["buckets"]]
    assert [c["bucket"] for c in contribs] == buckets
    assert all(c["model"] == "tinyfill" and c["own_fill"] == "tinyfill own fill" for c in contribs)
    for c in contribs:
        sel = {
            m: [r for r in results["rows"] if r["bucket"] == c["bucket"] and r["method"] == m] for m in labels
        }
        model, fill = sel["tinyfill"], sel["tinyfill own fill"]
        for col in ("psnr", "hole_psnr"):
            diff = sum(r[col] for r in model) / FILL_LIMIT - sum(r[col] for r in fill) / FILL_LIMIT
            assert c[col] == pytest.approx(diff, abs=1e-9)
        pooled = [
            sum(r["detail_sum"] for r in rows) / sum(r["detail_ref_sum"] for r in rows)
            for rows in (model, fill)
        ]
        assert c["detail_ratio"] == pytest.approx(pooled[0] - pooled[1], abs=1e-12)
        assert c["model_detail_ratio"] - c["fill_detail_ratio"] == c["detail_ratio"]
        # paired by image and mask: the standard error of the per-fill differences (stdlib reference)
        fills = {(r["image_index"], r["mask_index"]): r for r in fill}
        for col in ("psnr", "hole_psnr"):
            diffs = [r[col] - fills[(r["image_index"], r["mask_index"])][col] for r in model]
            assert c[col] == pytest.approx(statistics.fmean(diffs), abs=1e-9)
            assert c[f"{col}_se"] == pytest.approx(statistics.stdev(diffs) / math.sqrt(len(diffs)), rel=1e-9)
            assert c[f"{col}_se"] > 0
        diffs = [r["psnr"] - fills[(r["image_index"], r["mask_index"])]["psnr"] for r in model]
        assert (c["paired"], c["wins"], c["losses"]) == (
            FILL_LIMIT, sum(d > 0 for d in diffs), sum(d < 0 for d in diffs)
        )  # fmt: skip
    assert any(abs(c["hole_psnr"]) > 0.01 for c in contribs)  # the perturbed residual really acts

    report = (root / "fill" / ev.REPORT_MD).read_text()
    sections = report.split("\n## ")[1:]
    assert len(sections) == len(buckets)
    for section, c in zip(sections, contribs, strict=True):
        line = next(x for x in section.splitlines() if x.startswith("Network contribution of `tinyfill`"))
        assert (
            f"PSNR {c['psnr']:+.2f} ± {c['psnr_se']:.2f} dB, hole PSNR {c['hole_psnr']:+.2f} ± "
            f"{c['hole_psnr_se']:.2f} dB" in line
        )
        assert (
            f"detail {c['detail_ratio']:+.3f} ({c['fill_detail_ratio']:.3f} → "
            f"{c['model_detail_ratio']:.3f}); above its own fill on {c['wins']} of {FILL_LIMIT} fills, "
            f"below on {c['losses']}." in line
        )
        assert "Network contribution of `tiny`: none" in section
    assert "`tinyfill own fill`: `tinyfill`'s own smooth fill" in report

    # the second model against the first, paired on the same fills
    comps = results["comparisons"]
    assert [(c["bucket"], c["model"], c["reference"]) for c in comps] == [
        (b, "tiny", "tinyfill") for b in buckets
    ]
    for section, c in zip(sections, comps, strict=True):
        sel = {
            m: {
                r["image_index"]: r
                for r in results["rows"]
                if r["bucket"] == c["bucket"] and r["method"] == m
            }
            for m in ("tiny", "tinyfill")
        }
        diffs = [sel["tiny"][i]["psnr"] - sel["tinyfill"][i]["psnr"] for i in range(FILL_LIMIT)]
        assert c["psnr"] == pytest.approx(statistics.fmean(diffs), abs=1e-9)
        assert c["psnr_se"] == pytest.approx(statistics.stdev(diffs) / math.sqrt(FILL_LIMIT), rel=1e-9)
        assert (c["wins"], c["losses"]) == (sum(d > 0 for d in diffs), sum(d < 0 for d in diffs))
        assert c["reference_psnr"] == c["model_psnr"] - c["psnr"]
        assert (
            f"`tiny` against `tinyfill` (the same fills): PSNR {c['psnr']:+.3f} ± {c['psnr_se']:.3f} dB, "
            f"detail {c['detail_ratio']:+.3f}; above it on {c['wins']} of {FILL_LIMIT} fills" in section
        )
    assert "compared with the first on the same fills" in report


def test_cache_entries_without_detail_are_recomputed(prefill_run, tmp_path):
    root, kwargs = prefill_run["root"], prefill_run["kwargs"]
    old = tmp_path / "old"
    old.mkdir()
    lines = []
    for line in (root / "fill" / ev.CACHE_NAME).read_text().splitlines():
        item = json.loads(line)
        assert item["key"].startswith(f"v{ev.CACHE_VERSION}|")
        item["key"] = "v1|" + item["key"].split("|", 1)[1]  # what the version-1 evaluator wrote
        item["row"] = {k: v for k, v in item["row"].items() if not k.startswith("detail")}
        lines.append(json.dumps(item))
    (old / ev.CACHE_NAME).write_text("\n".join(lines) + "\n")
    again = ev.evaluate(root / "photos", root / "masks", old, **kwargs)
    assert again["cached"] == 0 and again["computed"] == len(again["rows"])
    assert metric_table(old) == metric_table(root / "fill")


def test_published_numbers_sit_beside_ours_and_a_bad_file_changes_nothing(setup, tmp_path):
    import shutil

    root = setup["root"]
    run = tmp_path / "run"
    shutil.copytree(root / "run1", run)  # resumed from its cache: nothing recomputed
    table = tmp_path / "paper.csv"
    table.write_text(
        "# the paper's Table I\nmethod,masks,psnr,ssim,source\nCE,centre,21.5,0.81,Table I\nGL,random,,0.5,\n"
    )
    results = ev.evaluate(root / "photos", root / "masks", run, published=table, **setup["kwargs"])
    assert results["computed"] == 0
    report = (run / ev.REPORT_MD).read_text()
    assert "not re-run" in report
    assert (
        "| CE | centre | 21.50 | 0.8100 | Table I |" in report and "| GL | random | – | 0.5000 |  |" in report
    )
    assert report.index("Published numbers") < report.index("\n## center")
    assert json.loads((run / ev.RESULTS_JSON).read_text())["published"]["rows"][0]["method"] == "CE"
    assert "(dual-path (ours))" in report  # the model line names the family

    before = (run / ev.REPORT_MD).read_bytes()
    for text, fragment in (
        ("method,psnr\nCE,20\n", "missing ['masks', 'ssim']"),
        ("method,masks,psnr,ssim\nCE,centre,high,0.8\n", "line 2: psnr 'high' is not a number"),
        ("method,masks,psnr,ssim\n", "no rows"),
    ):
        table.write_text(text)
        with pytest.raises(ValueError, match=fragment.replace("[", r"\[").replace("]", r"\]")):
            ev.evaluate(root / "photos", root / "masks", run, published=table, **setup["kwargs"])
    assert (run / ev.REPORT_MD).read_bytes() == before


def _extra_row(prefill_run, out, label: str, **kw):
    """Evaluate ``tinyfill`` on one image with an extra row (``adapt=`` or ``texture=``): the labels and
    own-fill pairs must say so; returns (net, masked image, mask, image, that row in the centre bucket)."""
    root = prefill_run["root"]
    results = ev.evaluate(
        root / "photos", root / "masks", out, models=[root / "tinyfill"], size=SIZE, limit=1, progress=False,
        **kw,
    )  # fmt: skip
    assert [m["label"] for m in results["methods"]] == ["tinyfill", label, "tinyfill own fill"]
    pairs = {(c["model"], c["own_fill"]) for c in results["contributions"]}
    assert pairs == {("tinyfill", "tinyfill own fill"), (label, "tinyfill own fill")}
    row = next(r for r in results["rows"] if r["method"] == label and r["bucket"] == "center")
    image = ImageDataset(root / "photos", SIZE, train=False)[0]["image"][None]
    mask = load_mask_set(root / "masks" / "center")[0][row["mask_index"]][None]
    return load_model(root / "tinyfill")[0], image * (1 - mask), mask, image, row


def test_texture_rows_are_the_fill_with_texture_and_their_own_contribution(
    prefill_run, tmp_path, monkeypatch
):
    from dualinpaint.texture import transfer_texture

    calls = []
    complete = DualPathInpainter.complete
    monkeypatch.setattr(DualPathInpainter, "complete", lambda *a, **k: calls.append(1) or complete(*a, **k))
    label = "tinyfill texture-1.5"
    net, masked, mask, image, row = _extra_row(prefill_run, tmp_path / "tex", label, texture=1.5)
    buckets = len(ev.load_protocol(prefill_run["root"] / "masks")[0])
    assert len(calls) == buckets  # one fill per photo and mask: the texture row starts from the headline's
    with torch.inference_mode():
        expected = ev.score(transfer_texture(net.complete(masked, mask), mask, strength=1.5), image, mask)
    assert {k: row[k] for k in expected} == pytest.approx(expected, rel=0, abs=0, nan_ok=True)
    root = prefill_run["root"]
    for bad in (-1.0, float("inf")):
        with pytest.raises(ValueError, match=rf"texture={bad!r} must be a number >= 0"):
            ev.evaluate(
                root / "photos", root / "masks", tmp_path / "bad", models=[root / "tinyfill"], texture=bad
            )
    assert not (tmp_path / "bad").exists()


def test_adapt_rows_are_the_adapted_fill_with_their_own_contribution(prefill_run, tmp_path):
    from dualinpaint.adapt import adapt

    net, masked, mask, image, row = _extra_row(prefill_run, tmp_path / "adapt", "tinyfill adapted-2", adapt=2)
    seed = ev._sample_seed(0, row["image_sha256"], row["mask_sha256"])
    with torch.inference_mode():
        expected = ev.score(adapt(net, masked, mask, steps=2, seed=seed).complete(masked, mask), image, mask)
    assert {k: row[k] for k in expected} == pytest.approx(expected, rel=0, abs=0, nan_ok=True)
    root = prefill_run["root"]
    with pytest.raises(ValueError, match="adapt must be an int"):
        ev.evaluate(root / "photos", root / "masks", tmp_path / "bad", models=[root / "tinyfill"], adapt=-1)
    assert not (tmp_path / "bad").exists()


def test_mask_assignment_gives_each_image_distinct_masks():
    assert ev.mask_assignment(100, 20, 1) == [[i] for i in range(20)]  # the one-mask protocol
    five = ev.mask_assignment(100, 20, 5)
    assert [ms[0] for ms in five] == list(range(20))  # the first fill is the one-mask protocol's
    assert sorted(m for ms in five for m in ms) == list(range(100))  # every mask once
    assert ev.mask_assignment(100, 20, 9) == five  # at most 100 // 20 per image
    assert ev.mask_assignment(1, 20, 5) == [[0]] * 20  # the centre bucket's single mask: one fill
    assert ev.mask_assignment(3, 5, 2) == [[0], [1], [2], [0], [1]]  # fewer masks than images


def test_masks_per_image_adds_fills_keeps_the_first_and_groups_the_spread(prefill_run, tmp_path):
    root = prefill_run["root"]
    ev.make_eval_masks(tmp_path / "masks", size=SIZE, count=2 * FILL_LIMIT, seed=0)
    kwargs = dict(models=[root / "tinyfill"], size=SIZE, limit=FILL_LIMIT, progress=False)
    one = ev.evaluate(root / "photos", tmp_path / "masks", tmp_path / "out", **kwargs)
    two = ev.evaluate(root / "photos", tmp_path / "masks", tmp_path / "out", masks_per_image=2, **kwargs)
    two_table = metric_table(tmp_path / "out")
    strokes = len(ev.STROKE_BINS)
    assert two["computed"] == strokes * FILL_LIMIT * 2  # the second masks only, for both methods
    assert two["protocol"]["masks_per_image"] == 2 and two["args"]["masks_per_image"] == 2

    def key(r: dict) -> tuple:
        return r["bucket"], r["method"], r["image_index"], r["mask_index"]

    first = {key(r): r for r in one["rows"]}
    assert sum(key(r) in first for r in two["rows"]) == len(first)
    assert all(r == first[key(r)] for r in two["rows"] if key(r) in first)
    for agg in two["aggregates"]:
        sel = [r for r in two["rows"] if r["bucket"] == agg["bucket"] and r["method"] == agg["method"]]
        count = 2 * FILL_LIMIT if agg["bucket"] != "center" else FILL_LIMIT
        assert agg["images"] == len(sel) == count
        assert agg["psnr"] == pytest.approx(statistics.fmean(r["psnr"] for r in sel), abs=1e-9)
        for i in range(FILL_LIMIT):
            masks = [r["mask_index"] for r in sel if r["image_index"] == i]
            assert masks == ([0] if agg["bucket"] == "center" else [i, i + FILL_LIMIT])

    # the spread is over images: each image's mean difference first
    psnr = {key(r): r["psnr"] for r in two["rows"]}
    for c in two["contributions"]:
        per_image = []
        for i in range(FILL_LIMIT):
            masks = [0] if c["bucket"] == "center" else [i, i + FILL_LIMIT]
            diffs = [
                psnr[(c["bucket"], "tinyfill", i, m)] - psnr[(c["bucket"], "tinyfill own fill", i, m)]
                for m in masks
            ]
            per_image.append(statistics.fmean(diffs))
        assert c["psnr_se"] == pytest.approx(statistics.stdev(per_image) / math.sqrt(FILL_LIMIT), rel=1e-9)
        assert c["paired"] == (FILL_LIMIT if c["bucket"] == "center" else 2 * FILL_LIMIT)
    report = (tmp_path / "out" / ev.REPORT_MD).read_text()
    assert f"and up to 1 more, masks (*i* + *j*·{FILL_LIMIT}) mod (masks in the bucket)" in report
    assert "| LPIPS ↓ | FID ↓ | fills | s/image |" in report

    # more than the bucket holds without repeats: as many as it does, and a warning that names the
    # stroke buckets (not the centre's single mask)
    with pytest.warns(UserWarning, match=r"masks_per_image=3: .*: stroke_01-10 2, stroke_10-20 2") as seen:
        three = ev.evaluate(
            root / "photos", tmp_path / "masks", tmp_path / "out", masks_per_image=3, **kwargs
        )
    assert three["computed"] == 0 and metric_table(tmp_path / "out") == two_table
    assert "center" not in str(seen[0].message)

    parser = argparse.ArgumentParser()
    ev.add_evaluate_arguments(parser)
    args = parser.parse_args(["--data", "d", "--masks", "m", "--out", "o", "--masks-per-image", "5"])
    assert args.masks_per_image == 5
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match=rf"masks_per_image must be an int >= 1, got {bad!r}"):
            ev.evaluate(root / "photos", tmp_path / "masks", tmp_path / "bad", masks_per_image=bad, **kwargs)
    assert not (tmp_path / "bad").exists()


def test_signed_figures_never_print_minus_zero():
    assert ev._fmt(-0.0001, 3, sign=True) == "+0.000"  # a difference that rounds to nothing
    assert ev._fmt(-0.01, 3, sign=True) == "-0.010" and ev._fmt(0.004, 2, sign=True) == "+0.00"
    assert ev._fmt(math.nan, 2, sign=True) == "–"


def test_checkpoints_of_one_config_share_their_own_fill(prefill_run, tmp_path):
    """The own-fill row depends on the fill's settings, not on the weights: a second checkpoint evaluated
    into the same folder computes only its own rows, and its own fill is the first one's."""
    root, cfg = prefill_run["root"], prefill_run["cfg"]
    net = load_model(root / "tinyfill")[0]
    with torch.no_grad():
        for param in net.parameters():
            param.mul_(0.9)
    save_weights(tmp_path / "other", net, cfg, 1)
    photos, masks, out = root / "photos", root / "masks", tmp_path / "out"
    kwargs = dict(size=SIZE, limit=1, progress=False)
    first = ev.evaluate(photos, masks, out, models=[root / "tinyfill"], **kwargs)
    both = ev.evaluate(photos, masks, out, models=[root / "tinyfill", tmp_path / "other"], **kwargs)
    buckets = len(first["protocol"]["masks"]["buckets"])
    assert both["computed"] == buckets  # the other checkpoint's deterministic rows only
    fills = [
        [r["psnr"] for r in both["rows"] if r["method"] == f"{m} own fill"] for m in ("tinyfill", "other")
    ]
    assert fills[0] == fills[1] and len(fills[0]) == buckets
    ids = {m["label"]: m["method_id"] for m in both["methods"]}
    assert ids["tinyfill own fill"] == ids["other own fill"] != ids["tinyfill"]
    assert ids["tinyfill own fill"] == "prefill:biharmonic_fill:iters=8:levels=4:float32"
