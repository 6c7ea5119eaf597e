#!/usr/bin/env bash
# GPU validation in one go, for a machine with an NVIDIA GPU and a CUDA build
# of torch already installed (no internet needed):
#   1. builds pgnface with CUDA (pip install --no-build-isolation -e .),
#   2. runs the whole test suite, CUDA tests included,
#   3. runs compute-sanitizer (memcheck, racecheck, synccheck) over the CUDA op tests,
#   4. runs every benchmark in bench/ on the GPU (bench.train_step also with --amp),
# and writes everything under bench/results/<device>_<date>/ (or $1).
# Exits non-zero if any step failed; later steps still run.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}

device=$($PY -c "import torch; print(torch.cuda.get_device_name(0))" 2>/dev/null) || {
  echo "no CUDA device visible to torch"; exit 1; }
slug=$(echo "$device" | tr -c 'A-Za-z0-9.\n' '_' | sed 's/__*/_/g; s/_$//')
out=${1:-bench/results/${slug}_$(date +%Y-%m-%d)}
mkdir -p "$out"
failed=()
step() {  # step NAME COMMAND...: runs COMMAND, tees its output to $out/NAME.txt
  local name=$1; shift
  echo "=== $name: $*"
  if ! "$@" 2>&1 | tee "$out/$name.txt"; then failed+=("$name"); fi
}

{
  echo "device: $device"
  $PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null
  date -u
} | tee "$out/environment.txt"

step build env MAX_JOBS=${MAX_JOBS:-16} FORCE_CUDA=1 $PY -m pip install --no-build-isolation --no-deps -e .
step tests $PY -m pytest tests -q -rs
if command -v compute-sanitizer >/dev/null; then
  for tool in memcheck racecheck synccheck; do
    step "sanitizer_$tool" compute-sanitizer --tool "$tool" --error-exitcode 1 \
      $PY -m pytest tests -q -k cuda -p no:cacheprovider
  done
else
  echo "compute-sanitizer not found: sanitizer runs skipped" | tee "$out/sanitizer_skipped.txt"
fi
for script in bench/*.py; do
  name=$(basename "$script" .py)
  case "$name" in __init__|common) continue ;; esac
  step "bench_$name" $PY -m "bench.$name" --device cuda --json "$out/bench_$name.json"
done
# The training step once more with mixed precision (the loop above ran it in float32).
step bench_train_step_amp $PY -m bench.train_step --device cuda --amp --json "$out/bench_train_step_amp.json"

if [ ${#failed[@]} -gt 0 ]; then
  echo "FAILED steps: ${failed[*]} (logs in $out)"; exit 1
fi
echo "all steps passed; results in $out"
