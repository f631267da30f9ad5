#!/usr/bin/env bash
# The GPU figures in one command (about 5-8 minutes on an H200-class machine), for the day a device is lent:
#   1. training iterations/s and peak GPU memory of the default 3D U-Net plan at 128^3, with AMP and without;
#   2. s/volume and peak GPU memory for a 512x512x300 CT with 42 classes (bench_large_ct.py), with the GPU's
#      utilisation sampled over the inference (NVML via pynvml, else nvidia-smi);
#   3. the nnU-Net race (bench_nnunet_race.py --device cuda), where that benchmark exists.
# Creates or reuses .venv as the Makefile does (PYTHON=... chooses the interpreter that makes it); DEEPMED_PYTHON=...
# runs an existing environment's python instead.
# Without a CUDA GPU it prints one line "no CUDA GPU: ..." and exits 2 (nothing measured, no traceback).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${DEEPMED_PYTHON:-}
if [ -z "$PY" ]; then
    make --no-print-directory venv >/dev/null
    PY=.venv/bin/python
fi
"$PY" -c 'import torch, sys
if not torch.cuda.is_available():
    build = "a CPU-only torch build" if torch.version.cuda is None else f"torch built for CUDA {torch.version.cuda}"
    print(f"no CUDA GPU: torch.cuda.is_available() is False ({build}); nothing to measure")
    sys.exit(2)
print(f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}, CUDA {torch.version.cuda}")' || exit $?
WORK=$(mktemp -d)
SAMPLER=""
cleanup() { [ -n "$SAMPLER" ] && kill "$SAMPLER" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT

echo "== 1. training, default 3D U-Net plan at 128^3 (AMP and without)"
"$PY" benchmarks/bench_gpu_train.py --device cuda --patch 128 --batch 2 --iterations 30

echo "== 2. inference, 512x512x300 CT, 42 classes"
"$PY" benchmarks/gpu_sampler.py sample "$WORK/gpu.csv" --interval-ms 200 &
SAMPLER=$!
"$PY" benchmarks/bench_large_ct.py --device cuda --slices 300 --classes 42 --skip-plain
kill "$SAMPLER" 2>/dev/null; wait "$SAMPLER" 2>/dev/null || true; SAMPLER=""
"$PY" benchmarks/gpu_sampler.py summary "$WORK/gpu.csv"

echo "== 3. nnU-Net race on CUDA"
if [ -f benchmarks/bench_nnunet_race.py ]; then
    "$PY" benchmarks/bench_nnunet_race.py --device cuda --work "$WORK/race"
else
    echo "benchmarks/bench_nnunet_race.py is not in this checkout: the nnU-Net race is skipped"
fi
