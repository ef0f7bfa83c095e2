#!/usr/bin/env bash
# The GPU campaign of issue 6 in one command, for a session lent a GPU machine (see
# /work/.library/device/README.md): the device tool runs it in the repository root, with
# nothing installed from the network (the machine's image has CuPy, torch, numpy, pandas).
#
#   run(command="bash benchmarks/gpu_campaign.sh", timeout_s=600)
#
# Everything it writes goes under $OUT (at most 8 files come back): the GPU tests' log,
# one results CSV per problem family, and a fitted calibration to copy into
# simulator/data/gpu_calibration.csv and commit with the CSVs under benchmarks/results/.
# QUICK=1 runs one small shape per family (a smoke test of the whole chain).
set -uo pipefail
OUT=${OUT:-benchmarks/results/gpu-$(date +%F)}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
log="$OUT/campaign.log"
{
  echo "== $(date -Is) $(nvidia-smi --query-gpu=name,driver_version,clocks.sm --format=csv,noheader)"
  # einsim itself, editable, offline, without touching the image's packages
  $PY -m pip install -q --no-deps --no-index --no-build-isolation -e . || exit 1
  $PY -c "import cupy, einsim; print('cupy', cupy.__version__, 'cuda', cupy.cuda.runtime.runtimeGetVersion())"
  echo "== GPU kernels against the numpy tile executor"
  $PY -m pytest -q -m gpu tests/gpu_validate -x -p no:cacheprovider 2>&1 | tail -15
} 2>&1 | tee "$log"

if [ "${QUICK:-0}" = 1 ]; then
  LONG="B=1,H=8,E=128,F=128,M=2048,P=2048"; SHORT=$LONG; REPEATS=5
else
  # 16K x 128 is the headline point (>= 35% of dense bf16 peak for the best mapping)
  LONG="B=4,H=16,E=128,F=128,M=4096,P=4096;B=1,H=16,E=128,F=128,M=16384,P=16384;B=16,H=16,E=64,F=64,M=1024,P=1024"
  SHORT="B=4,H=16,E=128,F=128,M=4096,P=4096;B=1,H=16,E=128,F=128,M=16384,P=16384"
  REPEATS=20
fi
run() {  # name, variant, shapes, extra args...
  local name=$1 variant=$2 shapes=$3; shift 3
  echo "== validate-gpu $name" | tee -a "$log"
  $PY -m einsim.cli validate-gpu --variant "$variant" --shapes "$shapes" --mappings grid \
    --repeats "$REPEATS" -o "$OUT/$name.csv" "$@" 2>>"$log" | tee -a "$log"
}
run full fusemax "$LONG"
run causal causal "$LONG"
run window sliding_window "$SHORT" --param W=1024
echo "== fit the calibration" | tee -a "$log"
$PY benchmarks/fit_gpu_calibration.py "$OUT"/full.csv "$OUT"/causal.csv "$OUT"/window.csv \
  -o "$OUT/gpu_calibration.csv" 2>&1 | tee -a "$log"
ls -l "$OUT" | tee -a "$log"
