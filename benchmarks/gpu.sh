#!/usr/bin/env bash
# Every GPU measurement of the throughput benchmarks, in one run on one CUDA machine.
#
# Usage (repository root; stitchsafe and its dependencies importable, monai too for (d)):
#
#     bash benchmarks/gpu.sh OUTDIR
#
# Writes into OUTDIR: the device and torch version (device.txt), the GPU tests' output
# (tests.txt), and one JSON file plus the printed table per throughput run. Each run gets
# a time limit, so one slow run cannot use up a short lease of a GPU machine; a run that
# hits its limit leaves a note in its .txt and the others still run.
set -uo pipefail
out=${1:?usage: bash benchmarks/gpu.sh OUTDIR}
mkdir -p "$out"
py=${PYTHON:-python3}

{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
    "$py" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)'
    nproc
} > "$out/device.txt" 2>&1

# The tests that are skipped without CUDA (marked `gpu`).
timeout 180 "$py" -m pytest -q -p no:cacheprovider -m gpu tests > "$out/tests.txt" 2>&1

run() {  # run NAME LIMIT_S ARGS...: one throughput run, its table in NAME.txt
    local name=$1 limit=$2
    shift 2
    timeout "$limit" "$py" benchmarks/throughput.py --device cuda --json-out "$out/$name.json" \
        "$@" > "$out/$name.txt" 2>&1 || echo "exit $? (124: over ${limit} s)" >> "$out/$name.txt"
}

# The reference network on a 320^3 volume: fp32 (exact) with MONAI at both
# overlaps, then bf16 autocast with float16 embeddings (the fast setting), then labels
# with and without embeddings.
run reference-fp32 180 --model reference --shape 320,320,320
run reference-bf16 150 --model reference --shape 320,320,320 --precision bf16 \
    --embeddings-dtype float16 --no-monai
run reference-labels 150 --model reference --shape 160,320,320 --labels --no-monai
ls -l "$out"
