#!/usr/bin/env python
"""Warm start for a resize-conv decoder from a model trained with the paper's transposed convolutions.

    python scripts/convert_upsample.py --model runs/photo --out runs/photo-resize-init
    dualinpaint train --config photo --set model.upsample=resize --init runs/photo-resize-init ...

Every weight but the decoders' ×2 layers is copied; each transposed conv becomes the closest resize-conv
(``generator.convert_upsample``). The result is a starting point, not a model to ship: what the fit
drops (the phase-dependent part, the checkerboard) must be re-learned, so it is printed with the hole
PSNR of both networks on a fixed test pattern to show how far apart they start. The output folder gets
``model.safetensors`` + ``model.json`` (each written to a temporary file, then renamed).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import torch

from dualinpaint.checkpoint import load_model, save_weights
from dualinpaint.generator import convert_upsample


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="packaged name, run folder or .safetensors")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    args = parser.parse_args()
    try:
        net, cfg, meta = load_model(args.model)
        resized = convert_upsample(net).eval()
    except (ValueError, FileNotFoundError) as err:  # CheckpointError is a ValueError
        print(f"convert_upsample: error: {err}", file=sys.stderr)
        return 2
    cfg = dataclasses.replace(cfg, model=resized.cfg)
    args.out.mkdir(parents=True, exist_ok=True)
    path = save_weights(args.out, resized, cfg, int(meta.get("step", 0)))
    torch.manual_seed(0)  # a smooth random test pattern with a centre hole: how far apart the two start
    image = torch.nn.functional.interpolate(torch.rand(1, 3, 16, 16) * 2 - 1, size=128, mode="bicubic")
    image = image.clamp(-1, 1)
    hole = torch.zeros(1, 1, 128, 128)
    hole[..., 32:96, 32:96] = 1
    with torch.no_grad():
        diff = (net.complete(image, hole) - resized.complete(image, hole)).abs().sum() / (3 * hole.sum())
    print(f"wrote {path} (upsample {resized.cfg.upsample}); mean |difference| in the hole on a test")
    print(f"pattern: {diff.item() * 127.5:.2f} grey levels: fine-tune before use (--init {args.out})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
