#!/usr/bin/env bash
# The whole GPU visit in one command (about 500 s of work), or its CPU rehearsal (under a minute):
#
#   scripts/device_run.sh [--data DIR] OUTDIR             # on the GPU machine, from anywhere
#   scripts/device_run.sh --rehearse [--data DIR] OUTDIR  # the same steps on the CPU, tiny sizes
#
# Runs from the repository root with PYTHONPATH=src and `python -m dualinpaint` (nothing installed,
# nothing downloaded). Steps, each under its own `timeout` so that a slow one cannot eat the training time:
#   1. the GPU tests: pytest -m gpu tests/test_gpu.py           -> OUTDIR/tests.log  (a failure is logged)
#   2. speed on the device: `python -m dualinpaint bench --device cuda`: inference of the shipped model at
#      512 and 1024, training samples/s of the recipe at 256² and the run's batch, fp32 and
#      bf16 + channels_last (bench writes its --json row by row) -> OUTDIR/bench.json
#      then the photo preset's smooth fill per batch (no bench row times it alone: the helper's own
#      timing, added to the same file under "prefill")
#   3. train the photo-psnr preset (issue 15's best recipe; RECIPE=PRESET to change it) at 256² crops in
#      bf16 + channels_last until the time left (--time-limit): fine-tuned from INIT where one is given
#      (by default the git-ignored runs/device-init when it exists: carry it; else the packaged default
#      model, its critics fresh and trained alone for D_WARMUP steps first), else from scratch;
#      checkpointed about every minute (the rehearsal: the same preset at 64², 6 steps); a background loop turns the run's
#      latest state.pt into OUTDIR files every CONVERT_EVERY seconds. A corpus with fewer than 4 × BATCH
#      training photos is listed several times over (each listing gets its own crops and masks), so that
#      a batch larger than the corpus works. A run that fails before its first checkpoint is tried once
#      more at the last visit's batch (40) in the time left
#   4. a final conversion and a summary (stdout and the end of OUTDIR/run.log).
# OUTDIR holds at most 8 plain files, none over 16 MB, each replaced atomically as the run goes:
#   model.safetensors  the EMA generator, fp16, with the config in its metadata: `--model OUTDIR`,
#                      `--init OUTDIR/model.safetensors`
#   train.safetensors  net.* (the trained generator), d_rec.* and d_gen.* (the critics), fp16, same metadata
#   config.yaml  log.jsonl  samples.png (the latest sample grid)  bench.json  tests.log  run.log
# The photo corpus travels beside the repository in a git-ignored folder: --data DIR or CORPUS=DIR, default
# data/debian-photos (train.flist, val.flist, images/; a plain folder of images works too).
# Knobs (environment): BUDGET (s, 500), BATCH (160), WORKERS (6), CONVERT_EVERY (60), PYTHON (python3),
# RECIPE (photo-psnr), INIT (a run folder with state.pt, whose generator, EMA and critics are loaded, or a
# .safetensors file / model folder (generator and EMA); default runs/device-init if present, else the
# packaged default model where its networks are RECIPE's (a fresh machine has no runs/device-init);
# "none" = from scratch). The INIT's parameter shapes must match RECIPE's networks. D_WARMUP (50):
# critic-only steps at the start when INIT has no critics (optim.d_warmup).
# Always exits 0 once its arguments are accepted; 2 for wrong arguments.

set -u
set -o pipefail

usage() {
    [ $# -gt 0 ] && echo "device_run.sh: $*" >&2
    echo "usage: scripts/device_run.sh [--rehearse] [--data DIR] OUTDIR" >&2
    exit 2
}

REHEARSE=0
DATA_ARG="${CORPUS:-}"
OUTDIR=""
while [ $# -gt 0 ]; do
    case "$1" in
        --rehearse) REHEARSE=1 ;;
        --data) [ $# -ge 2 ] || usage "--data needs a folder"; DATA_ARG=$2; shift ;;
        --data=*) DATA_ARG=${1#--data=} ;;
        -h | --help) awk 'NR == 1 { next } /^#/ { sub(/^# ?/, ""); print; next } { exit }' "$0"; exit 0 ;;
        -*) usage "unknown option $1" ;;
        *) [ -z "$OUTDIR" ] || usage "one OUTDIR only (got $OUTDIR and $1)"; OUTDIR=$1 ;;
    esac
    shift
done
[ -n "$OUTDIR" ] || usage "OUTDIR is missing"
for knob in BUDGET BATCH WORKERS CONVERT_EVERY D_WARMUP; do  # whole numbers; BUDGET BATCH CONVERT_EVERY ≥ 1
    value=${!knob-}
    [ -z "$value" ] || [[ "$value" =~ ^[0-9]+$ ]] || usage "$knob must be a whole number (got '$value')"
    [ -z "$value" ] || [ "$knob" = WORKERS ] || [ "$knob" = D_WARMUP ] || [ "$value" -gt 0 ] ||
        usage "$knob must be at least 1"
done

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RECIPE=${RECIPE:-photo-psnr}  # the GPU run's preset
INIT=${INIT-}  # what the run fine-tunes from; empty: runs/device-init, else the packaged default, else none
INIT_AUTO=0  # 1: prepare takes the packaged default model when its networks are RECIPE's
if [ -z "$INIT" ] && [ -d "$ROOT/runs/device-init" ]; then
    INIT="$ROOT/runs/device-init"
elif [ -z "$INIT" ]; then
    INIT_AUTO=1
elif [ "$INIT" = none ]; then
    INIT=""
elif [ -n "$INIT" ]; then
    [ -e "$INIT" ] || usage "no INIT weights at $INIT"
    INIT="$(cd "$(dirname "$INIT")" && pwd)/$(basename "$INIT")"
fi
if [ -n "$DATA_ARG" ]; then
    [ -d "$DATA_ARG" ] || usage "no corpus folder $DATA_ARG"
    DATA_DIR=$(cd "$DATA_ARG" && pwd)
elif [ "$REHEARSE" = 0 ]; then
    DATA_DIR="$ROOT/data/debian-photos"
    [ -d "$DATA_DIR" ] || usage "no corpus at $DATA_DIR: copy it there (git-ignored) or pass --data DIR"
else
    DATA_DIR=""  # the rehearsal makes a tiny corpus
fi
mkdir -p "$OUTDIR" 2>/dev/null || usage "cannot create $OUTDIR"
OUTDIR=$(cd "$OUTDIR" && pwd)
PY=${PYTHON:-python3}
command -v "$PY" >/dev/null 2>&1 || PY=python
command -v "$PY" >/dev/null 2>&1 || usage "no python3 or python on PATH (set PYTHON)"

cd "$ROOT" || exit 2
export PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
WORK=$(mktemp -d "${TMPDIR:-/tmp}/device_run.XXXXXX")
HELPER="$WORK/helper.py"
LOG="$OUTDIR/run.log"
RUN="$WORK/run"
STEPS="$WORK/steps.tsv"
CONV_PID=""
: >"$STEPS"
export DEVICE_RUN_TMP="$WORK/tmp"
mkdir -p "$DEVICE_RUN_TMP"

# shellcheck disable=SC2317,SC2329  # called from the EXIT trap (older, newer shellcheck)
cleanup() {
    if [ -n "$CONV_PID" ]; then kill "$CONV_PID" 2>/dev/null; wait "$CONV_PID" 2>/dev/null; fi
    [ "${KEEP_WORK:-0}" = 1 ] || rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 0' INT TERM

if [ "$REHEARSE" = 1 ]; then  # CPU, tiny sizes, a few steps (bench rows: the tiny preset)
    MODE=rehearsal
    BUDGET=${BUDGET:-90}
    T_PREPARE=60 T_TESTS=60 T_BENCH=60 T_PREFILL=30 T_FINAL=60 FINAL_RESERVE=10 TRAIN_STARTUP=20 MIN_TRAIN=10
    # batch 12 > the rehearsal corpus's 9 training photos: the listing-several-times path is rehearsed too
    BATCH=${BATCH:-12} WORKERS=${WORKERS:-1} CONVERT_EVERY=${CONVERT_EVERY:-2} D_WARMUP=${D_WARMUP:-2}
    FALLBACK_BATCH=4 FALLBACK_WORKERS=1 FALLBACK_CKPT_EVERY=2
    # 64²: the recipe's network needs 2×2 at its bottleneck; 8 validation crops keep its steps short
    SIZE=64 STEPS_ARG=(--steps 6 --set train.val_images=8) CKPT_EVERY=2
    # shellcheck disable=SC2054  # the commas are inside option values
    BENCH_ARGS=(--sizes 32,64 --train-config tiny --train-sizes 32 --runs 1 --warmup 1)
    PREFILL_ARGS=(--size 32 --runs 1 --warmup 1)
else
    MODE=gpu
    BUDGET=${BUDGET:-500}
    # The 2026-11-30 visit (budget 480): prepare 11 s, tests 50, bench 32, prefill 11, training 289 s for a
    # 276 s time limit, final 3, so 84 s were left over. Reserves are tighter now; worst case (every step
    # at its limit, training at MIN_TRAIN): 60 + 90 + 60 + 20 + (60 + 30) + 25 + 15 = 360 s, plus kill
    # graces; a normal run ends near BUDGET, inside the 540 s a call may take.
    T_PREPARE=60 T_TESTS=90 T_BENCH=60 T_PREFILL=20 T_FINAL=25 FINAL_RESERVE=25 TRAIN_STARTUP=30 MIN_TRAIN=60
    # Batch 160: the recipe's network is small (1.2 M generator parameters) and a step's time on an
    # H200 is mostly fixed cost (kernel launches; the biharmonic smooth fill is solved for the whole
    # batch at once there, generator._solve_in_boxes). Measured on the 2026-11-30 visit at batch 40, bf16
    # + channels_last: photo-psnr 164 samples/s at 256² (4.9 GB) but only 223 at 128², a quarter of the
    # pixels; the smooth fill alone 0.125 s per batch. So a larger batch should buy samples/s nearly for
    # free; this visit's bench row (at BATCH) and the run's perf/samples_per_s measure it. 160 crops at
    # 256² in bf16 need about 20 GB. The corpus's 81 training photos are listed 8 times over (prepare).
    # Data loading: 7.6 ms per 256² crop and mask on one core of the build machine, so 6 workers feed
    # about 800 crops/s. Not more: each worker keeps 2 batches of 168 MB in shared memory (2 GB in
    # all; the last visit's 8 workers at batch 40 held 0.7 GB, and the machine's /dev/shm was never
    # measured).
    BATCH=${BATCH:-160} WORKERS=${WORKERS:-6} CONVERT_EVERY=${CONVERT_EVERY:-60}
    # weights without critics (the packaged default): 50 critic-only steps first (50 × 160 crops; the
    # critics see the loaded generator's fills before their verdict reaches it), a few per cent of the run
    D_WARMUP=${D_WARMUP:-50}
    # the last visit's batch, workers and checkpoint interval (164 samples/s: about one a minute)
    FALLBACK_BATCH=40 FALLBACK_WORKERS=8 FALLBACK_CKPT_EVERY=120
    SIZE=256 STEPS_ARG=() CKPT_EVERY=""
    # shellcheck disable=SC2054  # the commas are inside option values
    # the recipe first: ckpt-every reads its bf16 row at 256²; a bench cut by its timeout keeps the rows
    # it did
    # (the 2026-11-30 visit benched photo and paper, 128² and 256² inference, at batch 40)
    BENCH_ARGS=(--sizes 512,1024 --train-config "$RECIPE" --train-sizes 256 --runs 3 --warmup 1)
    PREFILL_ARGS=(--size 256 --runs 3 --warmup 1)
fi

note() { echo "[device_run $(date +%H:%M:%S) +${SECONDS}s] $*" | tee -a "$LOG"; }

# run_step NAME SECONDS LOGFILE CMD...: CMD under `timeout` (TERM, then KILL 10 s later); never fails
run_step() {
    local name=$1 budget=$2 log=$3 t0=$SECONDS rc
    shift 3
    note "$name: start (budget ${budget} s)"
    timeout -k 10 "$budget" "$@" >>"$log" 2>&1
    rc=$?
    printf '%s\t%s\t%s\t%s\n' "$name" "$rc" "$((SECONDS - t0))" "$budget" >>"$STEPS"
    case $rc in
        0) note "$name: ok ($((SECONDS - t0)) s)" ;;
        124 | 137) note "$name: STOPPED at its time budget (rc $rc, $((SECONDS - t0)) s)" ;;
        *) note "$name: FAILED (rc $rc, $((SECONDS - t0)) s; see $(basename "$log"))" ;;
    esac
    return 0
}

cat >"$HELPER" <<'PY'
"""device_run.sh's helper: prepare, bench, ckpt-every, convert, summary (run with PYTHONPATH=src)."""

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path

NOTE = (
    "inference and train rows: `python -m dualinpaint bench --device DEVICE` (inputs, network and trainer "
    "on the device, bf16 autocast on its type, torch.cuda.synchronize around each timed call, peak_gpu_mb "
    "per row, the GPU in machine). prefill rows: device_run.sh's own timing of the photo preset's smooth "
    "fill alone (bench has no such row), synchronised and measured the same way (bench.measure)."
)
MAX_BYTES = 15 * 2**20  # OUTDIR files stay under the 16 MB a returned file may have


def write_atomic(path, data):
    """Replace ``path`` atomically. The temporary file goes to the work folder when that is on the same
    file system, so that a kill mid-write leaves no ninth file in OUTDIR; else beside ``path``."""
    import errno
    import tempfile

    from dualinpaint.images import atomic_write_bytes

    spare = os.environ.get("DEVICE_RUN_TMP")
    if spare:
        fd, tmp = tempfile.mkstemp(dir=spare, prefix=Path(path).name + ".")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
            return
        except OSError as err:
            Path(tmp).unlink(missing_ok=True)
            if err.errno != errno.EXDEV:
                raise
    atomic_write_bytes(path, data)


# ----------------------------------------------------------------------------------------- prepare


def cmd_prepare(a):
    """The rehearsal's corpus if needed; the training config (--recipe, a preset trained from scratch);
    the training list, each photo listed ceil(4·batch / photos) times when there are fewer than
    4 × --batch photos (every listing gets its own crop and mask, and an epoch holds several batches);
    the model the bench times (--bench-model: a name, or "random-tiny" for the rehearsal's small random
    network); the INIT (--init, or with --init-auto the packaged default where its networks are the
    recipe's) and, for weights without critics, --d-warmup critic-only steps in the config; shell
    assignments in prep.env."""
    import numpy as np
    import torch
    from PIL import Image

    from dualinpaint import checkpoint as ckpt
    from dualinpaint.config import config_to_yaml, load_config
    from dualinpaint.data import read_image_list, write_flist

    work = Path(a.work)
    data = Path(a.data) if a.data else None
    if data is None:  # a few random photo-like JPEGs
        data = work / "corpus"
        rng = np.random.default_rng(0)
        yy, xx = np.mgrid[0:48, 0:64].astype(np.float32)
        paths = []
        for i in range(12):
            img = (
                rng.uniform(0, 255, 3)
                + rng.uniform(-3, 3, 3) * xx[..., None]
                + rng.uniform(-3, 3, 3) * yy[..., None]
            )
            img += rng.normal(0, 8, img.shape)
            path = data / "images" / f"photo_{i:02d}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB").save(path, quality=90)
            paths.append(path)
        write_flist(paths[:9], data / "train.flist")
        write_flist(paths[9:], data / "val.flist")
    cfg = load_config(a.recipe)
    init = a.init
    if not init and a.init_auto:  # no runs/device-init: the packaged default, where its networks fit
        _, shipped, _ = ckpt.read_weights(ckpt.resolve_model("default"))
        init = "default" if shipped.model == cfg.model else ""
        print(f"prepare: INIT {init or 'none'} (the packaged default's networks"
              f" {'are' if init else 'are not'} {a.recipe}'s)", flush=True)
    critics = bool(init) and (Path(init) / ckpt.STATE_NAME).is_file()  # as Trainer.init_from decides
    warmup = a.d_warmup if init and not critics else 0
    if warmup:  # weights without critics: the fresh critics learn alone first
        cfg = cfg.with_overrides([f"optim.d_warmup={warmup}"])
    bench_model = a.bench_model
    if bench_model == "random-tiny":
        from dualinpaint.generator import DualPathInpainter

        torch.manual_seed(0)
        tiny = load_config("tiny")
        ckpt.save_weights(work / "bench-model", DualPathInpainter(tiny.model), tiny, 0)
        bench_model = str(work / "bench-model" / "model.safetensors")
    (work / "train.yaml").write_text(config_to_yaml(cfg))
    train = data / "train.flist" if (data / "train.flist").is_file() else data
    val = data / "val.flist" if (data / "val.flist").is_file() else None
    photos = read_image_list(train)
    times = -(-4 * a.batch // len(photos)) if len(photos) < 4 * a.batch else 1
    if times > 1:
        train = work / "train-repeated.flist"
        write_flist([p.resolve() for _ in range(times) for p in photos], train)  # absolute paths
        print(f"prepare: {len(photos)} training photos listed {times} times for batch {a.batch}", flush=True)
    values = {
        "TRAIN_SRC": train,
        "VAL_SRC": val or "",
        "N_PHOTOS": len(photos),
        "N_TRAIN": len(photos) * times,
        "TRAIN_CFG": work / "train.yaml",
        "BENCH_MODEL": bench_model,
        "DEVICE": "cuda" if torch.cuda.is_available() else "cpu",
        "INIT": init,
        "WARMUP": warmup,
    }
    (work / "prep.env").write_text("".join(f"{k}={shlex.quote(str(v))}\n" for k, v in values.items()))


# ------------------------------------------------------------------------------------------- prefill


def cmd_prefill(a):
    """The smooth fill (the photo preset's biharmonic prefill) on its own, per batch of training masks,
    added as "prefill" rows (and a "note") to the bench.json that `dualinpaint bench --json` wrote (a new
    file if it wrote none)."""
    import numpy as np
    import torch

    from dualinpaint import bench as B
    from dualinpaint.config import load_config
    from dualinpaint.generator import DualPathInpainter
    from dualinpaint.masks import MaskSampler

    out = Path(a.json)
    try:
        report = json.loads(out.read_text())
    except (OSError, ValueError):  # bench wrote nothing (failed or stopped before its first row)
        report = {}
    report["note"] = NOTE
    report["prefill"] = []

    def save():
        write_atomic(out, (json.dumps(report, indent=2) + "\n").encode())

    save()
    pcfg = load_config(a.preset, [f"data.size={a.size}"])
    if pcfg.model.prefill == "none":
        print(f"prefill: the {a.preset} preset has no smooth fill", flush=True)
        return 0
    dev = B._Device(a.device)
    pnet = DualPathInpainter(pcfg.model).to(dev.device)
    size, n = a.size, a.batch
    sampler = MaskSampler(pcfg.masks.mix, size, size)
    holes = torch.stack([sampler(np.random.default_rng(i)) for i in range(n)]).to(dev.device)
    image = (torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(0)) * 2 - 1).to(dev.device)

    def prefill(image=image, holes=holes):
        with torch.no_grad():
            return pnet.prefill(image, holes)

    dev.reset_peak()
    where = str(dev.device)
    row = {"preset": a.preset, "size": size, "batch": n, "fill": pcfg.model.prefill, "device": where}
    row.update(B.measure(prefill, a.runs, a.warmup, dev.syncer))
    row["images_per_s"] = n / row["median_s"]
    row.update(dev.peak())
    report["prefill"].append(row)
    save()
    print(f"prefill {a.preset} {size}² ×{n} on {where}: {row['median_s']:.3f} s", flush=True)
    return 0


def cmd_ckpt_every(a):
    """Steps per checkpoint for about one a minute, from the bench's bf16 training rate of --preset (the
    recipe trained), halved for real data loading."""
    try:
        rows = json.loads(Path(a.bench).read_text())["train"]
        row = next(
            r for r in rows if r["preset"] == a.preset and r["size"] == a.size and "bf16" in r["variant"]
        )
        steps_per_s = row["samples_per_s"] / a.batch
        print(max(5, int(0.5 * steps_per_s * 60)))
    except Exception:  # noqa: BLE001 - no bench row: assume a slow 0.5 step/s
        print(a.fallback)
    return 0


# ----------------------------------------------------------------------------------------- convert


def _half(tensors):
    out = {}
    for k, t in tensors.items():
        t = t.detach().cpu()
        if t.is_floating_point() and (t.numel() == 0 or float(t.abs().max()) < 6e4):
            t = t.half()
        out[k] = t.contiguous()
    return out


def convert_state(run, out):
    """run/state.pt → out/model.safetensors (EMA generator) + out/train.safetensors (net and critics)."""
    import torch
    from safetensors.torch import save as st_save

    from dualinpaint import checkpoint as ckpt
    from dualinpaint.config import Config

    state = torch.load(run / "state.pt", map_location="cpu", weights_only=True)
    cfg = Config.from_dict(state["config"])
    meta = {"format_version": ckpt.FORMAT_VERSION, "step": int(state["step"]), "config": cfg.to_dict()}
    text = json.dumps(meta)
    ema = state.get("ema") or state["net"]
    both = {f"net.{k}": v for k, v in state["net"].items()}
    for name in ("d_rec", "d_gen"):
        both.update({f"{name}.{k}": v for k, v in state[name].items()})
    md = {"dualinpaint": text, "contents": "net.*, d_rec.*, d_gen.*", "dtype": "float16"}
    write_atomic(out / "train.safetensors", st_save(_half(both), metadata=md))
    # second: once model.safetensors is there, train.safetensors is too
    md = {"dualinpaint": text, "weights": "ema" if state.get("ema") else "net", "dtype": "float16"}
    write_atomic(out / "model.safetensors", st_save(_half(ema), metadata=md))
    return int(state["step"])


_SEEN = {}


def _changed(src):
    """True the first time ``src`` is seen and whenever its size or mtime changed since."""
    st = src.stat()
    key = (st.st_size, st.st_mtime_ns)
    if _SEEN.get(src) == key:
        return False
    _SEEN[src] = key
    return True


def copy_small(run, out):
    for name in ("config.yaml", "log.jsonl"):
        src = run / name
        if src.is_file() and _changed(src):
            data = src.read_bytes()
            if len(data) > MAX_BYTES:  # keep the head (start of the run) and the tail
                data = data[: MAX_BYTES // 2] + b"\n" + data[-MAX_BYTES // 2 :]
            write_atomic(out / name, data)
    grids = sorted((run / "samples").glob("step_*.png")) if (run / "samples").is_dir() else []
    if grids and _changed(grids[-1]):
        data = grids[-1].read_bytes()
        if len(data) > MAX_BYTES:
            import io

            from PIL import Image

            img = Image.open(grids[-1])
            img.thumbnail((img.width // 2, img.height // 2))
            buf = io.BytesIO()
            img.save(buf, "PNG")
            data = buf.getvalue()
        write_atomic(out / "samples.png", data)


def cmd_convert(a):
    import torch

    torch.set_num_threads(1)
    run, out = Path(a.run), Path(a.out)
    last = None
    while True:
        try:
            copy_small(run, out)
            state = run / "state.pt"
            if state.is_file() and state.stat().st_mtime_ns != last:
                last = state.stat().st_mtime_ns
                step = convert_state(run, out)
                print(f"[convert] step {step} -> {out}", flush=True)
        except Exception as err:  # noqa: BLE001 - a half-finished run: try again next time
            print(f"[convert] {type(err).__name__}: {err}", flush=True)
            if not a.loop:
                return 0
        if not a.loop:
            return 0
        time.sleep(a.loop)


# ----------------------------------------------------------------------------------------- summary


def cmd_summary(a):
    out = Path(a.out)
    lines = [f"== device_run summary ({a.mode}): {a.elapsed} s of a {a.budget} s budget"]
    for row in Path(a.steps).read_text().splitlines():
        name, rc, secs, budget = row.split("\t")
        state = {"0": "ok", "124": "TIMED OUT", "137": "KILLED"}.get(rc, f"FAILED rc={rc}")
        lines.append(f"  {name:<8} {state:<10} {secs:>4} s of {budget} s")
    tests = out / "tests.log"
    if tests.is_file():
        tail = [s for s in tests.read_text(errors="replace").splitlines() if s.strip()]
        words = ("passed", "skipped", "failed", "error")
        closing = next((s for s in reversed(tail) if " in " in s and any(w in s for w in words)), None)
        lines.append(f"  tests: {(closing or (tail[-1] if tail else 'no output')).strip('= ')}")
        lines += [f"    {s}" for s in tail if s.startswith(("FAILED", "ERROR"))][:12]
    bench = out / "bench.json"
    if bench.is_file():
        try:
            b = json.loads(bench.read_text())
            m = b.get("machine")
            if m:
                gpu = f" ({m['gpu']})" if m.get("gpu") else ""
                lines.append(f"  bench on {m['device']}{gpu}, precision {b['settings']['precision']}")

            def gb(r):
                return f", {r['peak_gpu_mb'] / 1024:.2f} GB" if r.get("peak_gpu_mb") is not None else ""

            for r in b.get("inference", []):
                if "skipped" in r:
                    continue
                lines.append(
                    f"  bench inference {r['size']}² {r['variant']}: {r['median_s'] * 1000:.1f} ms{gb(r)}"
                )
            for r in b.get("prefill", []):
                lines.append(
                    f"  bench smooth fill {r['preset']} {r['size']}² ×{r['batch']}: "
                    f"{r['images_per_s']:.1f} images/s"
                )
            for r in b.get("train", []):
                lines.append(
                    f"  bench train {r['preset']} {r['size']}² ×{r['batch']} {r['variant']}: "
                    f"{r['samples_per_s']:.1f} samples/s{gb(r)}"
                )
        except Exception as err:  # noqa: BLE001
            lines.append(f"  bench.json unreadable: {err}")
    log = out / "log.jsonl"
    if log.is_file():
        rows = [json.loads(s) for s in log.read_text().splitlines() if s.strip()]
        perf = [r for r in rows if "perf/samples_per_s" in r]
        val = [r for r in rows if "val/psnr" in r]
        if perf:
            r = perf[-1]
            lines.append(
                f"  train: step {r['step']}, {r['perf/samples_per_s']:.1f} samples/s, "
                f"g/total {r.get('g/total', float('nan')):.3f}, d/total {r.get('d/total', float('nan')):.3f}"
            )
        if val:
            first, last = val[0], val[-1]
            lines.append(
                f"  val/psnr {first['val/psnr']:.2f} dB (step {first['step']}) -> {last['val/psnr']:.2f} dB "
                f"(step {last['step']}); val/psnr_hole {last.get('val/psnr_hole', float('nan')):.2f}"
            )
    weights = out / "model.safetensors"
    if weights.is_file():
        header = json.loads(weights.read_bytes()[8 : 8 + int.from_bytes(weights.read_bytes()[:8], "little")])
        step = json.loads(header["__metadata__"]["dualinpaint"])["step"]
        lines.append(f"  weights: model.safetensors + train.safetensors at step {step} (fp16)")
    else:
        lines.append("  weights: NONE (no checkpoint was written)")
    files = sorted(p for p in out.iterdir() if p.is_file())
    lines.append("  OUTDIR: " + ", ".join(f"{p.name} {p.stat().st_size / 2**20:.1f} MB" for p in files))
    text = "\n".join(lines)
    print(text)
    with (out / "run.log").open("a") as f:
        f.write(text + "\n")
    return 0


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("prepare")
    s.add_argument("--work", required=True)
    s.add_argument("--data", default="")
    s.add_argument("--recipe", required=True)
    s.add_argument("--bench-model", default="default")
    s.add_argument("--batch", type=int, required=True)
    s.add_argument("--init", default="")
    s.add_argument("--init-auto", type=int, default=0)
    s.add_argument("--d-warmup", type=int, default=0)
    s = sub.add_parser("prefill")
    s.add_argument("--device", required=True)
    s.add_argument("--preset", default="photo")
    s.add_argument("--size", type=int, required=True)
    s.add_argument("--batch", type=int, required=True)
    s.add_argument("--runs", type=int, default=3)
    s.add_argument("--warmup", type=int, default=1)
    s.add_argument("--json", required=True)
    s = sub.add_parser("ckpt-every")
    s.add_argument("--bench", required=True)
    s.add_argument("--preset", required=True)
    s.add_argument("--size", type=int, required=True)
    s.add_argument("--batch", type=int, required=True)
    s.add_argument("--fallback", type=int, required=True)
    s = sub.add_parser("convert")
    s.add_argument("run")
    s.add_argument("out")
    s.add_argument("--loop", type=float, default=0)
    s = sub.add_parser("summary")
    for name in ("out", "steps", "mode", "elapsed", "budget"):
        s.add_argument(f"--{name}", required=True)
    a = p.parse_args()
    return {
        "prepare": cmd_prepare,
        "prefill": cmd_prefill,
        "ckpt-every": cmd_ckpt_every,
        "convert": cmd_convert,
        "summary": cmd_summary,
    }[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
PY

: >"$LOG"
note "mode $MODE, budget ${BUDGET} s, OUTDIR $OUTDIR, corpus ${DATA_DIR:-(made for the rehearsal)}, python $PY"
{
    "$PY" -c 'import sys, torch; print("python", sys.version.split()[0], "torch", torch.__version__,
        "cuda", torch.version.cuda, "available", torch.cuda.is_available(),
        torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")'
    command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    echo "cpus: $(nproc --all)"
} >>"$LOG" 2>&1

# ---- 0. prepare: the training config (and the rehearsal's corpus)
PREP_ARGS=(--work "$WORK" --data "$DATA_DIR" --recipe "$RECIPE" --batch "$BATCH" --init "$INIT"
    --init-auto "$INIT_AUTO" --d-warmup "$D_WARMUP")
[ "$REHEARSE" = 1 ] && PREP_ARGS+=(--bench-model random-tiny)
TRAIN_SRC="" VAL_SRC="" N_PHOTOS=0 N_TRAIN=0 TRAIN_CFG="" BENCH_MODEL=default DEVICE=cpu WARMUP=0
if timeout -k 5 "$T_PREPARE" "$PY" "$HELPER" prepare "${PREP_ARGS[@]}" >>"$LOG" 2>&1; then
    # shellcheck disable=SC1091  # written by the helper: TRAIN_SRC, VAL_SRC, N_PHOTOS, N_TRAIN, TRAIN_CFG,
    # BENCH_MODEL, DEVICE, INIT, WARMUP
    . "$WORK/prep.env"
else
    note "prepare FAILED: no training config or corpus (see run.log); training will be skipped"
fi
[ "$REHEARSE" = 1 ] && DEVICE=cpu  # the rehearsal benchmarks the CPU even where a GPU is present
note "recipe $RECIPE (${INIT:+fine-tuned from }${INIT:-from scratch}${INIT:+, $WARMUP critic-only steps first}), ${N_PHOTOS} training photos (${N_TRAIN} listed) from $TRAIN_SRC, batch $BATCH, bench on $DEVICE"

# ---- 1. the GPU tests (collected and skipped without CUDA)
run_step tests "$T_TESTS" "$OUTDIR/tests.log" \
    "$PY" -m pytest -m gpu tests/test_gpu.py -v -rfEsxX -p no:cacheprovider

# ---- 2. speed on this device
# `dualinpaint bench` rewrites --json after every row: a bench stopped at its budget keeps the rows it did
run_step bench "$T_BENCH" "$LOG" \
    "$PY" -m dualinpaint bench --device "$DEVICE" --model "$BENCH_MODEL" --train --batch "$BATCH" \
    --json "$OUTDIR/bench.json" "${BENCH_ARGS[@]}"
find "$OUTDIR" -maxdepth 1 -name '.*.tmp' -type f -delete 2>/dev/null  # a write cut short by the timeout
run_step prefill "$T_PREFILL" "$LOG" \
    "$PY" "$HELPER" prefill --device "$DEVICE" --batch "$BATCH" --json "$OUTDIR/bench.json" "${PREFILL_ARGS[@]}"

# ---- 3. train until the time left runs out, copying results into OUTDIR as they come
# the training time left: the budget less the time spent and the reserves for start-up and the end
train_time_left() { echo $((BUDGET - SECONDS - FINAL_RESERVE - TRAIN_STARTUP)); }

# train_once NAME BATCH WORKERS CKPT_EVERY: one training run into $RUN until the time left runs out
train_once() {
    local name=$1 batch=$2 workers=$3 every=$4 limit
    limit=$(train_time_left)
    [ "$limit" -lt "$MIN_TRAIN" ] && limit=$MIN_TRAIN
    TRAIN_ARGS=(--config "$TRAIN_CFG" --data "$TRAIN_SRC" --out "$RUN" --quiet
        --time-limit "$limit" ${STEPS_ARG[@]+"${STEPS_ARG[@]}"}
        --set "data.size=$SIZE" --set data.load_size=0 --set "data.batch_size=$batch"
        --set "data.num_workers=$workers" --set train.bf16=true --set train.channels_last=true
        --set "train.ckpt_every=$every" --set "train.sample_every=$every"
        --set "train.val_every=$every" --set train.log_every=10)
    [ -n "$VAL_SRC" ] && TRAIN_ARGS+=(--val "$VAL_SRC")
    [ -n "$INIT" ] && TRAIN_ARGS+=(--init "$INIT")
    # fault injection for the tests: the first run gets a config the trainer refuses
    if [ "$name" = train ] && [ "${DEVICE_RUN_INJECT_TRAIN_FAILURE:-0}" = 1 ]; then
        TRAIN_ARGS+=(--set data.batch_size=0)
    fi
    note "$name: batch $batch, $workers workers, --time-limit $limit s, checkpoint every $every steps," \
        "outputs every $CONVERT_EVERY s"
    "$PY" "$HELPER" convert --loop "$CONVERT_EVERY" "$RUN" "$OUTDIR" >>"$LOG" 2>&1 &
    CONV_PID=$!
    run_step "$name" "$((limit + TRAIN_STARTUP))" "$LOG" "$PY" -m dualinpaint train "${TRAIN_ARGS[@]}"
    kill "$CONV_PID" 2>/dev/null
    wait "$CONV_PID" 2>/dev/null
    CONV_PID=""
}

if [ -n "$TRAIN_CFG" ] && [ "$N_TRAIN" -gt 0 ]; then
    if [ -z "$CKPT_EVERY" ]; then
        CKPT_EVERY=$("$PY" "$HELPER" ckpt-every --bench "$OUTDIR/bench.json" --preset "$RECIPE" \
            --size "$SIZE" --batch "$BATCH" --fallback 30 2>>"$LOG" || echo 30)
    fi
    train_once train "$BATCH" "$WORKERS" "$CKPT_EVERY"
    # A run that ended without a checkpoint (it failed: at a batch this machine cannot hold, say, in GPU
    # or shared memory) is tried once more at FALLBACK_BATCH, the batch of the last visit, in the time left.
    if [ ! -f "$RUN/state.pt" ] && [ "$BATCH" -ne "$FALLBACK_BATCH" ] \
        && [ "$(train_time_left)" -ge "$MIN_TRAIN" ]; then
        note "train: no checkpoint at batch $BATCH; trying once more at batch $FALLBACK_BATCH"
        rm -rf "$RUN"
        train_once retrain "$FALLBACK_BATCH" "$FALLBACK_WORKERS" "$FALLBACK_CKPT_EVERY"
    fi
else
    note "train: skipped (no training config or no training images)"
fi

# ---- 4. final copy and summary
run_step final "$T_FINAL" "$LOG" "$PY" "$HELPER" convert "$RUN" "$OUTDIR"
find "$OUTDIR" -maxdepth 1 -name '.*.tmp' -type f -delete 2>/dev/null
timeout -k 5 15 "$PY" "$HELPER" summary --out "$OUTDIR" --steps "$STEPS" --mode "$MODE" \
    --elapsed "$SECONDS" --budget "$BUDGET" || note "summary failed"
exit 0
