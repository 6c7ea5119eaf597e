#!/usr/bin/env bash
# Trains the bundled reference PGN network (pgnface/assets/pgn_reference.pt) in
# four stages, each starting from the previous one's network (see experiments/reference_network/README.md):
#   1. synthetic: the built-in model's single faces and 4-frame clips over
#      procedural backgrounds (5000 steps, about 40 min on one CPU core);
#   2. photo-like synthetic: the same faces over patches of real photos (their
#      faces painted out) with colour/blur/noise/JPEG/occlusion augmentation
#      (1500 steps, about 13 min);
#   3. real self-supervision: half of the steps unlabelled faces of the photos and
#      clips of the video (photometric, landmark-consistency and multi-frame
#      losses), half photo-like synthetic faces (400 steps, about 3 min);
#   4. standard framing: stage 3's mix with the synthetic crops framed like the
#      AFLW2000-3D / 300W-LP landmark-box crop that evaluation and detection use
#      (600 steps, about 5 min);
#   5. hard light: stage 4's mix with the synthetic faces lit much harder
#      (data.synthetic.light_contrast=8: strong directional light, a dark shadow side, an
#      over-exposed lit side) and the video clips' vertex motion checked against
#      optical flow (loss.flow=5), from stage 4's float16 copy (800 steps, about 6 min).
# PHOTOS and VIDEO default to the images/ and video/ folders of the real face data
# ($PGNFACE_SHARED_DATA; never its AFLW2000-3D samples: they are for evaluation only).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
PHOTOS=${PHOTOS:-${PGNFACE_SHARED_DATA:?set PGNFACE_SHARED_DATA, or PHOTOS and VIDEO}/images}
VIDEO=${VIDEO:-${PGNFACE_SHARED_DATA:?set PGNFACE_SHARED_DATA, or PHOTOS and VIDEO}/video}
OUT=${OUT:-runs}
# Every stage also keeps the landmark heatmaps peaked on the labels (loss.heatmap).
# The background photos' faces are painted out after an upright and a tilted search; the
# bundled network's stages 2-5 saw photos searched upright only (see experiments/reference_network/README.md).
# A stage whose model.pt exists is skipped, so a stopped run picks up where it was.
# Options first, then the key=value overrides (argparse takes one run of them).
train() {
  if [ -f "$2/model.pt" ]; then echo "$2: done already"; return; fi
  $PY -m pgnface.cli train --batch-size 32 --quiet "$@" threads=1 data.size=120 loss.heatmap=0.1
}

train --out "$OUT/reference" --steps 5000 net.backbone=resnet18 net.width=0.5 data.clip_weight=0.25 \
  checkpoint_every=500 log_every=50
train --out "$OUT/reference_photo" --steps 1500 --init "$OUT/reference/model.pt" lr=3e-4 \
  data.clip_weight=0.25 data.backgrounds="$PHOTOS" data.augment=0.8 log_every=50 checkpoint_every=250
train --out "$OUT/reference_real" --steps 400 --init "$OUT/reference_photo/model.pt" lr=1e-4 warmup_steps=20 \
  data.single_weight=0.5 data.clip_weight=0 data.backgrounds="$PHOTOS" data.augment=0.8 \
  data.images="$PHOTOS" data.images_weight=0.25 data.video="$VIDEO" data.video_weight=0.25 log_every=10 \
  checkpoint_every=250
# Before/after of the real-data stage: loss terms on fixed real batches, render overlays.
$PY -m pgnface.cli probe --checkpoint "$OUT/reference_photo/model.pt" --checkpoint "$OUT/reference_real/model.pt" \
  --images "$PHOTOS" --video "$VIDEO" -o "$OUT/reference_real/probe"
train --out "$OUT/reference_roi" --steps "${STAGE4_STEPS:-600}" --init "$OUT/reference_real/model.pt" lr=2e-4 \
  warmup_steps=20 data.single_weight=0.5 data.clip_weight=0 data.synthetic.framing=landmarks data.backgrounds="$PHOTOS" \
  data.augment=0.8 data.images="$PHOTOS" data.images_weight=0.25 data.video="$VIDEO" data.video_weight=0.25 \
  log_every=20 checkpoint_every=250
# Stage 5 starts from the float16 copy of stage 4, the copy compact_checkpoint.py writes.
[ -f "$OUT/reference_roi/model_fp16.pt" ] || \
  $PY scripts/compact_checkpoint.py "$OUT/reference_roi/model.pt" "$OUT/reference_roi/model_fp16.pt"
train --out "$OUT/reference_light" --steps 800 --init "$OUT/reference_roi/model_fp16.pt" lr=2e-4 \
  warmup_steps=20 data.single_weight=0.5 data.clip_weight=0 data.synthetic.framing=landmarks data.backgrounds="$PHOTOS" \
  data.augment=0.8 data.images="$PHOTOS" data.images_weight=0.25 data.video="$VIDEO" data.video_weight=0.25 \
  data.synthetic.light_contrast="${LIGHT:-8}" loss.flow=5 log_every=20 checkpoint_every=400
mkdir -p pgnface/assets
$PY scripts/compact_checkpoint.py "$OUT/reference_light/model.pt" pgnface/assets/pgn_reference.pt
