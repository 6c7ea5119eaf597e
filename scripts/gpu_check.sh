#!/usr/bin/env bash
# GPU validation in one go, for a machine with an NVIDIA GPU and a CUDA build
# of torch already installed (no internet needed):
#   1. builds pgnface with CUDA (pip install --no-build-isolation -e .), for the
#      visible GPU's architecture only,
#   2. runs every test that runs on CUDA (those with "cuda" in their id or
#      marker; the emulator's tests are for machines without a GPU), each
#      pgnface op, its checks and its backward under
#      torch.cuda.set_sync_debug_mode("error") (PGNFACE_SYNC_DEBUG, see
#      tests/conftest.py): an op that synchronises the host raises,
#   3. runs compute-sanitizer (memcheck, racecheck, synccheck) over the CUDA
#      cases of the op tests,
#   4. runs the GPU benchmarks (rasterize against nvdiffrast / PyTorch3D when
#      importable, synthesize, procrustes, synthetic, the training step in
#      float32 and with --amp),
# and writes everything under bench/results/<device>_<date>/ (or $1).
# Budget: under 10 minutes on an H100/H200-class machine (the caps below add up
# to 580 s). Each step has a time
# cap in seconds (scaled by $STEP_TIME_SCALE, default 1); a step past its cap
# is stopped and reported as failed. Exits non-zero if any step failed; later
# steps still run.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
SCALE=${STEP_TIME_SCALE:-1}

device=$($PY -c "import torch; print(torch.cuda.get_device_name(0))" 2>/dev/null) || {
  echo "no CUDA device visible to torch"; exit 1; }
arch=$($PY -c "import torch; print('%d.%d' % torch.cuda.get_device_capability(0))")
slug=$(echo "$device" | tr -c 'A-Za-z0-9.\n' '_' | sed 's/__*/_/g; s/_$//')
out=${1:-bench/results/${slug}_$(date +%Y-%m-%d)}
mkdir -p "$out"
failed=()
start=$SECONDS
step() {  # step NAME CAP_SECONDS COMMAND...: runs COMMAND, tees its output to $out/NAME.txt
  local name=$1 cap=$(( $2 * SCALE )); shift 2
  local t0=$SECONDS
  echo "=== $name (cap ${cap}s): $*"
  if ! timeout --kill-after=10 "$cap" "$@" 2>&1 | tee "$out/$name.txt"; then failed+=("$name"); fi
  echo "=== $name took $(( SECONDS - t0 ))s" | tee -a "$out/timings.txt"
}

{
  echo "device: $device (sm $arch)"
  $PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null
  date -u
} | tee "$out/environment.txt"

step build 150 env MAX_JOBS=${MAX_JOBS:-16} TORCH_CUDA_ARCH_LIST="$arch" FORCE_CUDA=1 \
  $PY -m pip install --no-build-isolation --no-deps -e .
step tests 120 env PGNFACE_SYNC_DEBUG=error \
  $PY -m pytest tests -q -rs -m "not cuda_emu" -k cuda -p no:cacheprovider
OP_TESTS=(tests/test_rasterize.py tests/test_synthesize.py tests/test_svd3x3.py tests/test_similarity_align.py)
if command -v compute-sanitizer >/dev/null; then
  for tool in memcheck racecheck synccheck; do
    step "sanitizer_$tool" 45 compute-sanitizer --tool "$tool" --error-exitcode 1 \
      $PY -m pytest "${OP_TESTS[@]}" -q -x -k cuda -p no:cacheprovider
  done
else
  echo "compute-sanitizer not found: sanitizer runs skipped" | tee "$out/sanitizer_skipped.txt"
fi
step bench_rasterize 50 $PY -m bench.rasterize --device cuda --json "$out/bench_rasterize.json"
for name in synthesize procrustes synthetic; do
  step "bench_$name" 25 $PY -m "bench.$name" --device cuda --quick --json "$out/bench_$name.json"
done
step bench_train_step 25 $PY -m bench.train_step --device cuda --json "$out/bench_train_step.json"
step bench_train_step_amp 25 $PY -m bench.train_step --device cuda --amp --json "$out/bench_train_step_amp.json"

echo "total $(( SECONDS - start ))s" | tee -a "$out/timings.txt"
if [ ${#failed[@]} -gt 0 ]; then
  echo "FAILED steps: ${failed[*]} (logs in $out)"; exit 1
fi
echo "all steps passed; results in $out"
