#!/usr/bin/env bash
# Reproduce Table I end to end: the paper's model and the four learned baselines it compares against
# (Context Encoders, GLCIC, GntIpt = DeepFill v1, GMCNN) trained by the same trainer on the same Places2
# 5000-image 8:2 split with the same number of training samples, then evaluated on fixed masks beside the
# classical baselines. The full run is meant for a GPU machine; --small is a CPU-sized version.
#
#   scripts/reproduce_table1.sh [--small] [--dry-run] PLACES2_DIR OUT
#
# PLACES2_DIR  Places2 images: a folder (searched recursively) or a file list. A folder that holds its own
#              train.flist and val.flist (such as `dualinpaint data debian-photos` builds) keeps that
#              split (photos held out whole) instead of drawing 5000 images 8:2.
# OUT          working folder: OUT/split, OUT/runs/{paper,ce,gl,gntipt,gmcnn}, OUT/masks, OUT/report
# --small      every row on 128² crops with halved widths, SAMPLES = 10000 training samples per model and a
#              128² mask protocol (the centre hole is 64²): 2.75 CPU-hours for the five rows (one
#              thread each, two at a time on a 2-core AMD EPYC: 0.32 s per sample for the paper's
#              model, 0.07 CE, 0.22 GL, 0.15 GntIpt, 0.22 GMCNN; the run in README.md)
# --dry-run    print the commands instead of running them
#
# Budget: every critic round draws a fresh batch, so a model samples batch_size × n_critic images per
# generator step. Each model gets SAMPLES / (batch_size × n_critic) steps: GntIpt and GMCNN (n_critic 5,
# as their released code) take a fifth of the generator steps of the others. Without SAMPLES or STEPS the
# presets' train.steps are used, which give every model 4 M samples (500000 × 8, or 100000 × 8 × 5).
#
# Environment (all optional):
#   SAMPLES=N        training samples per model (see Budget; default 32000 with --small)
#   STEPS=N          generator steps for every model instead (does not equalise samples across n_critic)
#   NPROC=N          processes per run via torchrun -m dualinpaint (default 1; e.g. the number of GPUs)
#   JOBS=N           train N models at once, each as its own process (default 1; on a CPU with N cores,
#                    set OMP_NUM_THREADS=1 beside it)
#   MODELS="..."     which presets to train and evaluate (default "paper ce gl gntipt gmcnn")
#   VGG19_WEIGHTS=F  torchvision-format VGG19 state dict (.pth / .safetensors) for GMCNN's ID-MRF loss;
#                    without it GMCNN trains without ID-MRF ("GMCNN without ID-MRF" in the report).
#                    Both need the config fields loss.vgg19_weights and loss.lambda_mrf.
#   CONFIG_DIR=D     folder of the presets (default: src/dualinpaint/configs/table1 of this checkout)
#   DUALINPAINT=C    the command to run (default "dualinpaint")
#   PUBLISHED=F      a CSV of published numbers (columns method,masks,psnr,ssim[,source]; see
#                    `dualinpaint evaluate --published`), e.g. the paper's Table I: the report prints it
#                    beside ours, labelled as not re-run. None ships with this repository: the paper's
#                    numbers could not be checked offline, and none are quoted from memory.
#
# A run whose folder already holds a training state is resumed (exactly), so the script can be re-run after
# an interruption; an existing split and mask protocol are reused.
set -euo pipefail

usage() {
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0" >&2
    echo "usage: $(basename "$0") [--small] [--dry-run] PLACES2_DIR OUT" >&2
    exit 2
}

SMALL=0
DRY=0
positional=()
for arg in "$@"; do
    case "$arg" in
        -h | --help) usage ;;
        --small) SMALL=1 ;;
        --dry-run) DRY=1 ;;
        -*) echo "error: unknown option $arg" >&2; usage ;;
        *) positional+=("$arg") ;;
    esac
done
[[ ${#positional[@]} -eq 2 ]] || usage
PLACES2_DIR=${positional[0]}
OUT=${positional[1]}
[[ -e "$PLACES2_DIR" ]] || { echo "error: no such folder or file list: $PLACES2_DIR" >&2; exit 2; }

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CONFIG_DIR=${CONFIG_DIR:-$REPO/src/dualinpaint/configs/table1}
STEPS=${STEPS:-}
SAMPLES=${SAMPLES:-}
NPROC=${NPROC:-1}
JOBS=${JOBS:-1}
MODELS=${MODELS:-paper ce gl gntipt gmcnn}
VGG19_WEIGHTS=${VGG19_WEIGHTS:-}
DUALINPAINT=${DUALINPAINT:-dualinpaint}
PUBLISHED=${PUBLISHED:-}
read -r -a CMD <<<"$DUALINPAINT"
EVAL_SIZE=256
if [[ $SMALL -eq 1 ]]; then
    SAMPLES=${SAMPLES:-10000}
    EVAL_SIZE=128
fi

run() {  # run a command, or print it with --dry-run
    if [[ $DRY -eq 1 ]]; then
        printf '%q ' "$@"
        echo
    else
        "$@"
    fi
}

# --small: 128² crops and halved widths per family (CE: n_down 3 keeps an 8×8 latent at 128²)
small_sets() {
    local common=(data.size=128 data.load_size=136 train.val_images=16 train.log_every=25
        train.sample_every=500 train.val_every=250 train.ckpt_every=250)
    local family=()
    case "$1" in
        paper) family=(model.ngf=16 model.max_channels=64 model.z_channels=64 model.disc_channels=32
            model.disc_max_channels=256) ;;
        ce) family=(model.n_down=3 model.ngf=32 model.max_channels=256 model.z_channels=256
            model.disc_channels=32 model.disc_max_channels=256) ;;
        gl) family=(model.ngf=32 model.max_channels=128 model.disc_channels=32 model.disc_max_channels=256) ;;
        gntipt | gmcnn) family=(model.ngf=16 model.disc_channels=32) ;;
    esac
    echo "${common[@]}" "${family[@]}"
}

# the value of a top-level "  key: value" line of a flat preset
preset_value() {
    awk -v key="$2" '$1 == key ":" { print $2; exit }' "$1"
}

# --set overrides of a new run of preset $1
overrides() {
    local name=$1 sets=()
    if [[ $SMALL -eq 1 ]]; then
        read -r -a sets <<<"$(small_sets "$name")"
    fi
    if [[ $name == gmcnn ]]; then
        if [[ -n "$VGG19_WEIGHTS" ]]; then
            sets+=("loss.vgg19_weights=$VGG19_WEIGHTS")
        else
            sets+=(loss.lambda_mrf=0)
        fi
    fi
    for s in "${sets[@]}"; do
        printf -- '--set\n%s\n' "$s"
    done
}

# generator steps of preset $1: STEPS, else SAMPLES / (batch_size × n_critic), else the preset's
steps_for() {
    local config=$1
    if [[ -n "$STEPS" ]]; then
        echo "$STEPS"
    elif [[ -n "$SAMPLES" ]]; then
        local batch critic
        batch=$(preset_value "$config" batch_size)
        critic=$(preset_value "$config" n_critic)
        echo $(((SAMPLES + batch * critic - 1) / (batch * critic)))
    fi
}

if [[ $DRY -eq 0 ]]; then
    mkdir -p "$OUT"
fi

for name in $MODELS; do
    [[ -f "$CONFIG_DIR/$name.yaml" ]] || { echo "error: no preset $CONFIG_DIR/$name.yaml" >&2; exit 2; }
done
if [[ " $MODELS " == *" gmcnn "* && -z "$VGG19_WEIGHTS" ]]; then
    echo "note: VGG19_WEIGHTS is not set: GMCNN trains without its ID-MRF loss (\"GMCNN without ID-MRF\")" >&2
fi

echo "== preflight: every model's config and size (a config error stops here, before any training)"
for name in $MODELS; do
    mapfile -t sets < <(overrides "$name")
    run "${CMD[@]}" model-info --config "$CONFIG_DIR/$name.yaml" "${sets[@]}"
done

echo "== split -> $OUT/split"
if [[ -s "$OUT/split/train.flist" && -s "$OUT/split/val.flist" ]]; then
    echo "   (reusing the existing split)"
elif [[ -d "$PLACES2_DIR" && -s "$PLACES2_DIR/train.flist" && -s "$PLACES2_DIR/val.flist" ]]; then
    echo "   (keeping the split of $PLACES2_DIR: its train.flist and val.flist)"
    corpus=$(cd "$PLACES2_DIR" && pwd)
    run mkdir -p "$OUT/split"
    for part in train val; do  # the lists' relative paths are relative to the corpus: make them absolute
        if [[ $DRY -eq 1 ]]; then
            echo "(absolute paths of $corpus/$part.flist) > $OUT/split/$part.flist"
        else
            awk -v root="$corpus/" '/^[[:space:]]*(#|$)/ || /^\// { print; next } { print root $0 }' \
                "$corpus/$part.flist" >"$OUT/split/$part.flist.tmp"
            mv "$OUT/split/$part.flist.tmp" "$OUT/split/$part.flist"
        fi
    done
else
    echo "   (5000 images, 8:2, seed 0)"
    run "${CMD[@]}" data split --data "$PLACES2_DIR" --count 5000 --val-fraction 0.2 --seed 0 --out "$OUT/split"
fi

train_one() {
    local name=$1 run_dir="$OUT/runs/$1" config="$CONFIG_DIR/$1.yaml"
    local args=(train --out "$run_dir")
    if [[ -f "$run_dir/state.pt" ]]; then
        echo "== train $name: resuming $run_dir"
        args+=(--resume)
    else
        echo "== train $name: $config -> $run_dir"
        mapfile -t sets < <(overrides "$name")
        args+=(--config "$config" "${sets[@]}" --data "$OUT/split/train.flist" --val "$OUT/split/val.flist")
    fi
    local steps
    steps=$(steps_for "$config")
    if [[ -n "$steps" ]]; then
        args+=(--steps "$steps")
    fi
    if [[ "$NPROC" -gt 1 ]]; then
        run torchrun --standalone --nproc_per_node="$NPROC" -m dualinpaint "${args[@]}"
    else
        run "${CMD[@]}" "${args[@]}"
    fi
}

model_args=()
pids=()
for name in $MODELS; do
    if [[ "$JOBS" -gt 1 && $DRY -eq 0 ]]; then
        while [[ $(jobs -rp | wc -l) -ge "$JOBS" ]]; do
            wait -n || { echo "error: a training run failed" >&2; exit 1; }
        done
        mkdir -p "$OUT/logs"
        echo "== train $name in the background: log $OUT/logs/$name.log"
        train_one "$name" >"$OUT/logs/$name.log" 2>&1 &
        pids+=($!)
    else
        train_one "$name"
    fi
    model_args+=(--model "$OUT/runs/$name")
done
for pid in "${pids[@]}"; do
    wait "$pid" || { echo "error: a training run failed (see $OUT/logs)" >&2; exit 1; }
done

echo "== evaluation masks (${EVAL_SIZE}²) -> $OUT/masks"
if [[ -f "$OUT/masks/protocol.json" ]]; then
    echo "   (reusing the existing mask protocol)"
else
    run "${CMD[@]}" eval-masks --out "$OUT/masks" --size "$EVAL_SIZE"
fi

echo "== evaluate -> $OUT/report"
published=()
if [[ -n "$PUBLISHED" ]]; then
    published=(--published "$PUBLISHED")
fi
run "${CMD[@]}" evaluate --data "$OUT/split/val.flist" --masks "$OUT/masks" "${model_args[@]}" \
    --baselines telea,ns,biharmonic,patchmatch --size "$EVAL_SIZE" "${published[@]}" --out "$OUT/report"
echo "== done: $OUT/report/report.md"
