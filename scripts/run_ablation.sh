#!/usr/bin/env bash
# The PGN ablation (experiments/ablation/README.md): four networks with the same data, seed
# and budget, differing only in how the pose is obtained (solved from the
# landmarks: pgn, or regressed) and whether the multi-frame losses are on.
# Labelled synthetic single faces (75% of steps) plus *unlabelled* synthetic
# clips (25%), where only the self-supervised and multi-frame losses apply.
# About 11 minutes per network on one CPU core; then every network is scored
# on the same held-out synthetic test set (pgnface eval synthetic).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
OUT=${OUT:-runs/ablation}
STEPS=${STEPS:-1500}
COMMON=(--steps "$STEPS" --batch-size 32 --quiet net.backbone=resnet18 net.width=0.5 data.size=120
        data.clip_weight=0.25 data.single_weight=0.75 data.clip_labels=false threads=1
        checkpoint_every=500 log_every=50)
NO_MULTI=(loss.identity=0 loss.geometric=0 loss.photometric_cross=0)
train() {  # name, extra overrides...
  local name=$1; shift
  if [ -f "$OUT/$name/model.pt" ]; then echo "$name: done already"; return; fi
  local resume=()
  [ -f "$OUT/$name/checkpoint.pt" ] && resume=(--resume)
  echo "training $name"
  $PY -m pgnface.cli train --out "$OUT/$name" "${resume[@]}" "${COMMON[@]}" "$@"
}
train pgn_multiframe net.pose_mode=pgn
train regress_multiframe net.pose_mode=regress
train pgn_single net.pose_mode=pgn "${NO_MULTI[@]}"
train regress_single net.pose_mode=regress "${NO_MULTI[@]}"
if [ "${SKIP_EVAL:-0}" = 1 ]; then exit 0; fi
$PY -m pgnface.cli eval synthetic -o "$OUT/eval" \
  --checkpoint "$OUT/pgn_multiframe/model.pt" --checkpoint "$OUT/regress_multiframe/model.pt" \
  --checkpoint "$OUT/pgn_single/model.pt" --checkpoint "$OUT/regress_single/model.pt"
