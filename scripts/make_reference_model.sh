#!/usr/bin/env bash
# Trains the bundled reference PGN network (pgnface/assets/pgn_reference.pt) from
# nothing but the package: the built-in synthetic model's single faces and
# multi-frame clips, rendered on the fly. About 40 minutes on one CPU core
# (70 images/s); the log lands in runs/reference/log.jsonl.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
$PY -m pgnface.cli train --out runs/reference --steps 5000 --batch-size 32 --quiet \
  net.backbone=resnet18 net.width=0.5 data.size=120 data.clip_weight=0.25 threads=1 \
  checkpoint_every=500 log_every=50
mkdir -p pgnface/assets
cp runs/reference/model.pt pgnface/assets/pgn_reference.pt
echo "wrote pgnface/assets/pgn_reference.pt"
