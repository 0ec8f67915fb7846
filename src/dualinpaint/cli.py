"""Command line: ``dualinpaint <command>``. Each command parses, builds a config or loads a model, and
calls the library; heavy or optional dependencies are imported inside the command that needs them.

    dualinpaint model-info --config paper
    dualinpaint train --config tiny --data DIR --out runs/tiny [--val DIR] [--steps N] [--set k=v]
    dualinpaint train --config photo-psnr --data DIR --out runs/ft --init default   # fine-tune given weights
    torchrun --nproc_per_node=2 -m dualinpaint train --config paper --data DIR --out runs/paper
    dualinpaint masks make --kind stroke --count 100 --size 256 --seed 0 --out masks/stroke
    dualinpaint data debian-photos data/debian-photos
    dualinpaint data split --data DIR --val-fraction 0.2 --count 5000 --out splits/
    dualinpaint export --onnx model.onnx [--model default] [--size 512|dynamic] [--sampling]
    dualinpaint fill IMAGE|DIR --mask MASK|DIR -o OUT [--samples K] [--seed S] [--model default]
    dualinpaint demo
    dualinpaint eval-masks --out masks/ --size 256
    dualinpaint evaluate --data DIR --masks masks/ --model default --baselines telea,ns --out report/
    dualinpaint serve [--host 127.0.0.1] [--port 8080] [--model default] [--runtime onnx]
    dualinpaint bench [--model default | --config photo] [--sizes 256,512,1024] [--train] [--onnx] [--photo]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from . import __version__
from .messages import one_line_warnings

COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {}


def command(name: str) -> Callable:
    def register(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
        COMMANDS[name] = fn
        return fn

    return register


def _config(args: argparse.Namespace):
    from .config import load_config

    return load_config(args.config, args.set or [])


# ------------------------------------------------------------------------------------------------ commands


@command("model-info")
def cmd_model_info(args: argparse.Namespace) -> int:
    from .modelinfo import describe

    cfg = _config(args)
    print(describe(cfg, size=args.size))
    return 0


@command("train")
def cmd_train(args: argparse.Namespace) -> int:
    from .distributed import dist_info_from_env, init_distributed, shutdown_distributed
    from .train import train

    resuming_stored = args.resume and args.config is None  # --set then applies to the run's config
    cfg = None if resuming_stored else _config(args)
    if not args.resume and args.data is None:
        raise ValueError("train needs --data (a folder of images or a file list), or --resume")
    info = dist_info_from_env()
    device = init_distributed(info)
    try:
        summary = train(
            cfg,
            args.data,
            args.out,
            val=args.val,
            steps=args.steps,
            resume=args.resume,
            init=args.init,
            device=str(device),
            dist=info,
            progress=not args.quiet,
            time_limit=args.time_limit,
            overrides=(args.set or []) if resuming_stored else (),
        )
    finally:
        shutdown_distributed()
    if info.is_main and summary.interrupted:
        print(
            f"interrupted at step {summary.step}; checkpoint saved in {summary.out_dir}; "
            f"continue with: dualinpaint train --out {summary.out_dir} --resume",
            file=sys.stderr,
        )
        return 130
    if info.is_main and summary.timed_out:
        print(
            f"time limit reached after step {summary.step}; checkpoint saved in {summary.out_dir}; "
            f"continue with: dualinpaint train --out {summary.out_dir} --resume",
            file=sys.stderr,
        )
    if info.is_main:
        print(
            f"step {summary.step}: {summary.samples_per_second:.2f} samples/s; "
            f"weights in {summary.out_dir / 'model.safetensors'}"
        )
    return 0


@command("masks")
def cmd_masks(args: argparse.Namespace) -> int:
    from .masks import make_mask_set

    manifest = make_mask_set(
        args.kind,
        args.count,
        args.size,
        args.seed,
        args.out,
        min_ratio=args.min_ratio,
        max_ratio=args.max_ratio,
        folder=args.folder,
    )
    ratios = [f["hole_ratio"] for f in manifest["files"]]
    print(
        f"wrote {len(ratios)} {args.kind} masks ({args.size}²) to {args.out}; hole ratio "
        f"{min(ratios):.3f}–{max(ratios):.3f}, mean {sum(ratios) / len(ratios):.3f}"
    )
    return 0


@command("data")
def cmd_data(args: argparse.Namespace) -> int:
    if args.data_command == "debian-photos":
        from .corpus import build_debian_photos

        manifest = build_debian_photos(args.out, val_fraction=args.val_fraction, seed=args.seed)
        files = manifest["files"]
        n_val = sum(f["split"] == "val" for f in files)
        print(f"wrote {len(files)} photos ({len(files) - n_val} train, {n_val} val) to {args.out}")
        return 0
    from pathlib import Path

    from .data import read_image_list, split_list, write_flist

    paths = read_image_list(args.data)
    if args.count:
        if args.count > len(paths):
            raise ValueError(f"--count {args.count} is more than the {len(paths)} images in {args.data}")
        import random

        paths = sorted(random.Random(args.seed).sample(paths, args.count))
    train_paths, val_paths = split_list(paths, args.val_fraction, args.seed)
    out = Path(args.out)
    write_flist([p.resolve() for p in train_paths], out / "train.flist")
    write_flist([p.resolve() for p in val_paths], out / "val.flist")
    print(f"{len(train_paths)} train / {len(val_paths)} val images listed in {out}/train.flist, val.flist")
    return 0


@command("export")
def cmd_export(args: argparse.Namespace) -> int:
    from .checkpoint import load_model
    from .export import export_onnx

    net, _, _ = load_model(args.model)
    size = None if args.size == "dynamic" else int(args.size)
    report = export_onnx(net, args.onnx, size=size, sampling=args.sampling)
    diff = report["max_abs_diff"]
    check = (
        "not checked (onnxruntime missing)" if diff is None else f"max abs difference vs PyTorch {diff:.2e}"
    )
    print(f"wrote {report['path']} ({', '.join(report['inputs'])} → fill, size {report['size']}); {check}")
    return 0


@command("fill")
def cmd_fill(args: argparse.Namespace) -> int:
    from .inference import fill_command

    return fill_command(args)


@command("demo")
def cmd_demo(args: argparse.Namespace) -> int:
    from .inference import demo_command

    return demo_command(args)


@command("evaluate")
def cmd_evaluate(args: argparse.Namespace) -> int:
    from .evaluate import evaluate_command

    return evaluate_command(args)


@command("eval-masks")
def cmd_eval_masks(args: argparse.Namespace) -> int:
    from .evaluate import eval_masks_command

    return eval_masks_command(args)


@command("bench")
def cmd_bench(args: argparse.Namespace) -> int:
    from .bench import bench_command

    return bench_command(args)


@command("serve")
def cmd_serve(args: argparse.Namespace) -> int:
    from .web.app import serve_command

    return serve_command(args)


# ------------------------------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dualinpaint", description="Dual-path GAN image inpainting.")
    p.add_argument("--version", action="version", version=f"dualinpaint {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def with_config(sp: argparse.ArgumentParser, default: str | None = "paper") -> None:
        sp.add_argument(
            "--config", default=default, help="YAML config file or preset name (paper, picnet, tiny, …)"
        )
        sp.add_argument(
            "--set",
            action="append",
            metavar="SECTION.KEY=VALUE",
            help="override one config value (repeatable), e.g. --set loss.lambda_gp=5",
        )

    sp = sub.add_parser("model-info", help="parameter counts per network and GFLOPs per image")
    with_config(sp)
    sp.add_argument(
        "--size", type=int, default=None, help="image side for the FLOP count (default data.size)"
    )

    sp = sub.add_parser("train", help="train or resume a model (torchrun for several processes)")
    with_config(sp, default=None)
    sp.add_argument("--data", help="training images: a folder (recursive) or a file list")
    sp.add_argument("--val", help="validation images for PSNR/SSIM during training")
    sp.add_argument("--out", required=True, help="run folder (checkpoints, logs, samples)")
    sp.add_argument("--steps", type=int, help="total generator steps (default train.steps)")
    sp.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out exactly; with --set (or --config), continue it with changed "
        "loss, optim, data or train values (each change printed; the network cannot change)",
    )
    sp.add_argument(
        "--time-limit",
        type=float,
        metavar="SECONDS",
        help="stop after the step that crosses this many seconds of training, save, exit 0",
    )
    sp.add_argument(
        "--init",
        metavar="MODEL",
        help="start from these weights (fine-tune): a run folder (its critics too), a .safetensors file "
        "or a packaged model name; the parameter shapes must match --config",
    )
    sp.add_argument("--quiet", action="store_true", help="no progress bar")

    sp = sub.add_parser("masks", help="mask sets")
    msub = sp.add_subparsers(dest="masks_command", required=True)
    mk = msub.add_parser("make", help="write a fixed, seeded mask set with a manifest")
    mk.add_argument("--kind", required=True, help="mask kind (center, rect, stroke, lama_thin, …)")
    mk.add_argument("--count", type=int, required=True)
    mk.add_argument("--size", type=int, required=True)
    mk.add_argument("--seed", type=int, default=0)
    mk.add_argument("--out", required=True)
    mk.add_argument("--min-ratio", type=float, help="keep masks whose hole ratio is ≥ this")
    mk.add_argument("--max-ratio", type=float, help="keep masks whose hole ratio is < this")
    mk.add_argument("--folder", help="mask folder for --kind folder")

    sp = sub.add_parser("data", help="data sets")
    dsub = sp.add_subparsers(dest="data_command", required=True)
    dp = dsub.add_parser("debian-photos", help="build the Debian photo corpus (apt-get download)")
    dp.add_argument("out")
    dp.add_argument("--val-fraction", type=float, default=0.2)
    dp.add_argument("--seed", type=int, default=0)
    ds = dsub.add_parser("split", help="draw a reproducible train/val split (e.g. Places2 5000 images 8:2)")
    ds.add_argument("--data", required=True, help="image folder or file list")
    ds.add_argument("--out", required=True, help="folder for train.flist and val.flist")
    ds.add_argument("--val-fraction", type=float, default=0.2)
    ds.add_argument("--count", type=int, default=0, help="draw this many images first (0 = all)")
    ds.add_argument("--seed", type=int, default=0)
    # these modules import numpy and Pillow only at module level; torch loads when a command runs
    from .bench import add_bench_arguments
    from .evaluate import add_eval_masks_arguments, add_evaluate_arguments
    from .inference import add_demo_arguments, add_fill_arguments
    from .web.app import add_serve_arguments

    add_fill_arguments(sub.add_parser("fill", help="fill holes in an image or a folder of images"))
    add_demo_arguments(sub.add_parser("demo", help="inpaint the bundled sample photos into one PNG"))
    add_evaluate_arguments(
        sub.add_parser("evaluate", help="score models and baselines on a fixed mask protocol")
    )
    add_eval_masks_arguments(sub.add_parser("eval-masks", help="write the standard evaluation mask protocol"))
    add_serve_arguments(sub.add_parser("serve", help="web page + REST API (default http://127.0.0.1:8080/)"))
    add_bench_arguments(sub.add_parser("bench", help="time inference (and training) on this machine"))

    sp = sub.add_parser("export", help="export the generation path to ONNX")
    sp.add_argument("--onnx", required=True, help="output .onnx file")
    sp.add_argument("--model", default="default", help="packaged model name, run folder or .safetensors")
    sp.add_argument("--size", default="512", help="square input side, or 'dynamic' for any H×W")
    sp.add_argument("--sampling", action="store_true", help="take a noise input (pluralistic sampling)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; user errors print one line ``dualinpaint: error: …`` and exit 2; a diverged run or a
    system error (disk full, …) prints one line and exits 1. Warnings print as one line each."""
    args = build_parser().parse_args(argv)
    try:
        with one_line_warnings():
            return COMMANDS[args.command](args)
    except KeyboardInterrupt:
        print("dualinpaint: interrupted", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, PermissionError, IsADirectoryError) as err:
        print(f"dualinpaint: error: {err}", file=sys.stderr)
        return 2
    except RuntimeError as err:
        from .train import TrainingDiverged

        if not isinstance(err, TrainingDiverged):
            raise
        print(f"dualinpaint: error: {err}", file=sys.stderr)
        return 1
    except OSError as err:  # disk full, device gone, …: the system's one-line reason, no traceback
        where = f": {err.filename}" if err.filename else ""
        print(f"dualinpaint: error: {err.strerror or err}{where}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
