#!/usr/bin/env python
"""Learning curves of training runs from their ``log.jsonl``, as one PNG (Pillow only, no matplotlib).

    python scripts/plot_curves.py RUN[=LABEL] ... --out curves.png \
        [--keys val/gain_hole_db,val/detail,val/sample_diff] [--from-step N] [--to-step M] [--smooth K]

One panel per key (x: step, from N to M), one coloured line per run (a moving mean of K validations with
--smooth; a run resumed from another's checkpoint shares its log up to that step). ``val/detail``
panels also draw each run's smooth-fill detail (``val/detail_fill``) dashed. Written to a temporary
file, then renamed.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from PIL import Image, ImageDraw

from dualinpaint.images import save_image_atomic

COLOURS = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189), (255, 127, 14), (23, 190, 207)]
TITLES = {
    "val/gain_hole_db": "hole PSNR gain over the model's own smooth fill (dB)",
    "val/detail": "detail ratio in the hole (1 = photo; dashed: smooth fill)",
    "val/sample_diff": "two prior samples: mean |difference| in the hole (grey levels)",
    "val/psnr_hole": "hole PSNR (dB)",
}
W, H, PAD_L, PAD_R, PAD_T, PAD_B = 560, 300, 64, 16, 30, 36


def read_curves(
    run: Path, key: str, from_step: int = 0, smooth: int = 1, to_step: int | None = None
) -> list[tuple[int, float]]:
    """(step, value) pairs of ``key`` in ``run/log.jsonl`` at steps from ``from_step`` to ``to_step``,
    the last value per step kept; with ``smooth`` > 1 each value is the mean of it and up to
    ``smooth`` − 1 before it."""
    last = float("inf") if to_step is None else to_step
    points: dict[int, float] = {}
    for line in (run / "log.jsonl").read_text().splitlines():
        row = json.loads(line)
        if key in row and from_step <= int(row["step"]) <= last:
            points[int(row["step"])] = float(row[key])
    pairs = sorted(points.items())
    width = max(smooth, 1)
    out = []
    for i, (step, _) in enumerate(pairs):
        window = [v for _, v in pairs[max(0, i - width + 1) : i + 1]]
        out.append((step, sum(window) / len(window)))
    return out


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    step = (hi - lo) / (n - 1) if hi > lo else 1.0
    return [lo + i * step for i in range(n)]


def panel(
    runs: list[tuple[Path, str]], key: str, from_step: int = 0, smooth: int = 1, to_step: int | None = None
) -> Image.Image:
    """One chart of ``key`` for every run, W×H pixels."""
    img = Image.new("RGB", (W, H), "white")
    d = ImageDraw.Draw(img)

    def curve(run: Path, name: str) -> list[tuple[int, float]]:
        return read_curves(run, name, from_step, smooth, to_step)

    series = [(curve(run, key), COLOURS[i % len(COLOURS)], False) for i, (run, _) in enumerate(runs)]
    if key == "val/detail":
        series += [
            (curve(run, "val/detail_fill"), COLOURS[i % len(COLOURS)], True)
            for i, (run, _) in enumerate(runs)
        ]
    pts = [p for s, _, _ in series for p in s]
    d.text((PAD_L, 8), TITLES.get(key, key), fill="black")
    if not pts:
        d.text((PAD_L, H // 2), "no data", fill="black")
        return img
    x0 = from_step
    x1 = max(max(p[0] for p in pts), x0 + 1)
    y0, y1 = min(p[1] for p in pts), max(p[1] for p in pts)
    if key == "val/gain_hole_db":
        y0 = min(y0, 0.0)
    if y1 - y0 < 1e-6:
        y0, y1 = y0 - 0.5, y1 + 0.5
    margin = 0.05 * (y1 - y0)
    y0, y1 = y0 - margin, y1 + margin

    def xy(step: float, value: float) -> tuple[float, float]:
        return (
            PAD_L + (step - x0) / (x1 - x0) * (W - PAD_L - PAD_R),
            H - PAD_B - (value - y0) / (y1 - y0) * (H - PAD_T - PAD_B),
        )

    d.rectangle([PAD_L, PAD_T, W - PAD_R, H - PAD_B], outline=(160, 160, 160))
    for v in _ticks(y0 + margin, y1 - margin):
        _, y = xy(0, v)
        d.line([PAD_L - 4, y, PAD_L, y], fill="black")
        d.text((4, y - 6), f"{v:.3g}", fill="black")
    for s in _ticks(x0, x1):
        x, _ = xy(s, y0)
        d.line([x, H - PAD_B, x, H - PAD_B + 4], fill="black")
        d.text((x - 12, H - PAD_B + 6), f"{int(s)}", fill="black")
    d.text((W // 2 - 12, H - 14), "step", fill="black")
    if y0 < 0 < y1:
        _, yz = xy(0, 0)
        d.line([PAD_L, yz, W - PAD_R, yz], fill=(200, 200, 200))
    for points, colour, dashed in series:
        line = [xy(*p) for p in points]
        if dashed:
            for a, b in list(zip(line, line[1:], strict=False))[::2]:
                d.line([a, b], fill=colour, width=1)
        elif len(line) > 1:
            d.line(line, fill=colour, width=2)
        elif line:
            d.ellipse([line[0][0] - 2, line[0][1] - 2, line[0][0] + 2, line[0][1] + 2], fill=colour)
    return img


def plot(
    runs: list[tuple[Path, str]],
    keys: list[str],
    out: Path,
    from_step: int = 0,
    smooth: int = 1,
    to_step: int | None = None,
) -> None:
    """Panels stacked vertically with a legend on top; written atomically to ``out`` (PNG)."""
    legend_h = 18 * len(runs) + 8
    sheet = Image.new("RGB", (W, legend_h + H * len(keys)), "white")
    d = ImageDraw.Draw(sheet)
    for i, (_, label) in enumerate(runs):
        colour = COLOURS[i % len(COLOURS)]
        d.rectangle([PAD_L, 6 + 18 * i, PAD_L + 20, 16 + 18 * i], fill=colour)
        d.text((PAD_L + 28, 5 + 18 * i), label, fill="black")
    for j, key in enumerate(keys):
        sheet.paste(panel(runs, key, from_step, smooth, to_step), (0, legend_h + H * j))
    out.parent.mkdir(parents=True, exist_ok=True)
    save_image_atomic(sheet, out)  # temporary file, then rename


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", help="run folder, optionally RUN=LABEL")
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--keys", default="val/gain_hole_db,val/detail,val/sample_diff")
    ap.add_argument("--from-step", type=int, default=0, help="draw steps from this one on")
    ap.add_argument("--to-step", type=int, default=None, help="draw steps up to this one")
    ap.add_argument("--smooth", type=int, default=1, help="moving mean over this many validations")
    args = ap.parse_args()
    runs = []
    for item in args.runs:
        path, _, label = item.partition("=")
        if not (Path(path) / "log.jsonl").is_file():
            raise SystemExit(f"plot_curves: {path} has no log.jsonl")
        runs.append((Path(path), label or Path(path).name))
    plot(runs, [k for k in args.keys.split(",") if k], args.out, args.from_step, args.smooth, args.to_step)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
