#!/usr/bin/env bash
# Reproduce Table I end to end: the paper's model and the two learned baselines it compares against
# (Context Encoders, GLCIC) trained by the same trainer on the same Places2 5000-image 8:2 split, then
# evaluated on fixed masks beside the classical baselines. Meant for a GPU machine.
#
#   scripts/reproduce_table1.sh PLACES2_DIR OUT
#
# PLACES2_DIR  Places2 images: a folder (searched recursively) or a file list
# OUT          working folder: OUT/split, OUT/runs/{paper,ce,gl}, OUT/masks, OUT/report
#
# Environment (all optional):
#   STEPS=N        generator steps per model (default: train.steps of each preset, 500000)
#   NPROC=N        processes per run via torchrun -m dualinpaint (default 1; e.g. the number of GPUs)
#   MODELS="..."   which presets to train and evaluate (default "paper ce gl")
#   CONFIG_DIR=D   folder of the presets (default: src/dualinpaint/configs/table1 of this checkout)
#   DUALINPAINT=C  the command to run (default "dualinpaint")
#
# A run whose folder already holds a training state is resumed (exactly), so the script can be re-run after
# an interruption; an existing split and mask protocol are reused.
set -euo pipefail

usage() {
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0" >&2
    echo "usage: $(basename "$0") PLACES2_DIR OUT" >&2
    exit 2
}

[[ $# -eq 2 ]] || usage
case "$1" in -h | --help) usage ;; esac
PLACES2_DIR=$1
OUT=$2
[[ -e "$PLACES2_DIR" ]] || { echo "error: no such folder or file list: $PLACES2_DIR" >&2; exit 2; }

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CONFIG_DIR=${CONFIG_DIR:-$REPO/src/dualinpaint/configs/table1}
STEPS=${STEPS:-}
NPROC=${NPROC:-1}
MODELS=${MODELS:-paper ce gl}
DUALINPAINT=${DUALINPAINT:-dualinpaint}
read -r -a CMD <<<"$DUALINPAINT"

mkdir -p "$OUT"

echo "== split: 5000 images, 8:2 (seed 0) -> $OUT/split"
if [[ -s "$OUT/split/train.flist" && -s "$OUT/split/val.flist" ]]; then
    echo "   (reusing the existing split)"
else
    "${CMD[@]}" data split --data "$PLACES2_DIR" --count 5000 --val-fraction 0.2 --seed 0 --out "$OUT/split"
fi

train_one() {
    local name=$1 run="$OUT/runs/$1"
    local args=(train --out "$run")
    if [[ -f "$run/state.pt" ]]; then
        echo "== train $name: resuming $run"
        args+=(--resume)
    else
        local config="$CONFIG_DIR/$name.yaml"
        [[ -f "$config" ]] || { echo "error: no preset $config" >&2; exit 2; }
        echo "== train $name: $config -> $run"
        args+=(--config "$config" --data "$OUT/split/train.flist" --val "$OUT/split/val.flist")
    fi
    if [[ -n "$STEPS" ]]; then
        args+=(--steps "$STEPS")
    fi
    if [[ "$NPROC" -gt 1 ]]; then
        torchrun --standalone --nproc_per_node="$NPROC" -m dualinpaint "${args[@]}"
    else
        "${CMD[@]}" "${args[@]}"
    fi
}

model_args=()
for name in $MODELS; do
    train_one "$name"
    model_args+=(--model "$OUT/runs/$name")
done

echo "== evaluation masks -> $OUT/masks"
if [[ -f "$OUT/masks/protocol.json" ]]; then
    echo "   (reusing the existing mask protocol)"
else
    "${CMD[@]}" eval-masks --out "$OUT/masks" --size 256
fi

echo "== evaluate -> $OUT/report"
"${CMD[@]}" evaluate --data "$OUT/split/val.flist" --masks "$OUT/masks" "${model_args[@]}" \
    --baselines telea,ns,biharmonic,patchmatch --out "$OUT/report"
echo "== done: $OUT/report/report.md"
