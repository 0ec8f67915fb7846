#!/usr/bin/env python
"""Before/after sheet of a model on the bundled demo photos: masked input | smooth fill alone | network.

    python scripts/before_after.py --model default --out docs/before-after.png [--samples 2] [--zoom 2]

Each row is one demo photo with its object-removal mask. "smooth fill alone" is the model's own
parameter-free fill (``net.prefill``, composited); "network" is the deterministic fill; ``--samples K``
adds K fills drawn from the prior (seeded). ``--zoom`` enlarges the hole's bounding box of every column
into a second row so texture (or its absence) is visible. Written to a temporary file, then renamed.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from PIL import Image, ImageDraw

from dualinpaint.checkpoint import load_model
from dualinpaint.images import mask_to_tensor, open_image, pil_to_tensor, save_image_atomic, tensor_to_pil

SAMPLES = Path(__file__).resolve().parents[1] / "src" / "dualinpaint" / "assets" / "samples"
NAMES = ("astronaut", "chelsea", "coffee")


def columns(net, image: torch.Tensor, hole: torch.Tensor, samples: int) -> list[tuple[str, torch.Tensor]]:
    """(title, 1×3×H×W image) per column."""
    with torch.no_grad():
        cols = [("input", image * (1 - hole) + hole)]
        base = net.prefill(image, hole) if hasattr(net, "prefill") else None
        if base is not None:  # models without a smooth fill get no such column
            cols.append(("smooth fill alone", base.clamp(-1, 1) * hole + image * (1 - hole)))
        cols.append(("network", net.complete(image, hole).clamp(-1, 1)))
        if samples > 0:
            drawn = net.complete(image, hole, samples=samples, generator=torch.Generator().manual_seed(0))
            drawn = drawn.reshape(samples, *image.shape)  # complete() drops the K axis when K = 1
            cols += [(f"sample {i + 1}", s.clamp(-1, 1)) for i, s in enumerate(drawn)]
    return cols


def hole_box(hole: torch.Tensor, margin: int = 8) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of the hole's bounding box grown by ``margin``, inside the image."""
    ys, xs = hole[0, 0].nonzero(as_tuple=True)
    h, w = hole.shape[-2:]
    return (
        max(int(xs.min()) - margin, 0),
        max(int(ys.min()) - margin, 0),
        min(int(xs.max()) + margin + 1, w),
        min(int(ys.max()) + margin + 1, h),
    )


def sheet(model: str, samples: int, zoom: int) -> Image.Image:
    net, _, _ = load_model(model)
    rows: list[list[Image.Image]] = []
    titles: list[str] = []
    for name in NAMES:
        image = pil_to_tensor(open_image(SAMPLES / f"{name}.jpg"))
        hole = mask_to_tensor(open_image(SAMPLES / f"{name}_mask.png"))
        cols = columns(net, image, hole, samples)
        titles = [t for t, _ in cols]
        rows.append([tensor_to_pil(c[0]) for _, c in cols])
        if zoom > 1:
            box = hole_box(hole)
            size = ((box[2] - box[0]) * zoom, (box[3] - box[1]) * zoom)
            crops = [im.crop(box).resize(size, Image.NEAREST) for im in rows[-1]]
            scale = min(1.0, 256 / max(size))
            rows.append(
                [c.resize((int(c.width * scale), int(c.height * scale)), Image.NEAREST) for c in crops]
            )
    cell = 256
    out = Image.new("RGB", (cell * len(titles), 20 + sum(max(im.height for im in r) for r in rows)), "white")
    d = ImageDraw.Draw(out)
    for j, t in enumerate(titles):
        d.text((j * cell + 4, 4), t, fill="black")
    y = 20
    for r in rows:
        for j, im in enumerate(r):
            out.paste(im, (j * cell, y))
        y += max(im.height for im in r)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--samples", type=int, default=2)
    ap.add_argument("--zoom", type=int, default=2)
    args = ap.parse_args()
    img = sheet(args.model, args.samples, args.zoom)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_image_atomic(img, args.out)  # temporary file, then rename
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
