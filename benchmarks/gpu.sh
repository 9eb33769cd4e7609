#!/usr/bin/env bash
# Every GPU measurement of the throughput benchmarks, in one run on one CUDA machine.
#
# Usage (repository root; stitchsafe and its dependencies importable, monai too for (d)):
#
#     bash benchmarks/gpu.sh OUTDIR [ARCHIVE.tgz]
#
# Writes into OUTDIR: the device and torch version (device.txt), the GPU tests' output
# (tests.txt), and one JSON file plus the printed table per run. Each run gets a time
# limit, so one slow run cannot use up a short lease of a GPU machine; a run that hits its
# limit leaves a note in its .txt and the others still run. With ARCHIVE, OUTDIR is packed
# into it after every step (what a killed script leaves behind is still a whole archive).
# The runs go most wanted first; with every limit reached they take 12 minutes.
set -uo pipefail
out=${1:?usage: bash benchmarks/gpu.sh OUTDIR [ARCHIVE.tgz]}
archive=${2:-}
mkdir -p "$out"
py=${PYTHON:-python3}

pack() {
    if [ -n "$archive" ]; then tar czf "$archive.part" -C "$out" . && mv "$archive.part" "$archive"; fi
}

{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
    "$py" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)'
    "$py" -c 'import zarr, dask, numpy; print("zarr", zarr.__version__, "dask", dask.__version__, "numpy", numpy.__version__)'
    echo "cpus $(nproc)"
} > "$out/device.txt" 2>&1
pack

# The tests that are skipped without CUDA (marked `gpu`); only their files are collected.
timeout 90 "$py" -m pytest -q -p no:cacheprovider -m gpu $(grep -rl "mark.gpu" tests) \
    > "$out/tests.txt" 2>&1 || echo "exit $?" >> "$out/tests.txt"
pack

# GPU_SH_SMOKE=1: every step on the CPU, with the small network on tiny volumes, in a
# minute or two (tests/test_gpu_script.py runs it so, to keep this script working).
if [ "${GPU_SH_SMOKE:-0}" = 1 ]; then
    device=cpu net=small seconds=0.5 big=24,64,64 mid=24,48,48 labels=24,48,48 tiles=16,32,32
    cpu_a=16,128,128 cpu_b=16,128,128 monai=--no-monai
else
    device=cuda net=reference seconds=5 big=320,320,320 mid=192,192,192 labels=96,192,192
    tiles=160,160,160 cpu_a=64,512,512 cpu_b=64,512,512 monai=
fi

run() {  # run NAME LIMIT_S ARGS...: one throughput run, its table in NAME.txt
    local name=$1 limit=$2
    shift 2
    timeout "$limit" "$py" benchmarks/throughput.py --device "$device" --model "$net" \
        --seconds "$seconds" --json-out "$out/$name.json" "$@" > "$out/$name.txt" 2>&1 \
        || echo "exit $? (124: over ${limit} s)" >> "$out/$name.txt"
    pack
}

# Where predict's time goes on the GPU (every thread sampled): the reference network on a
# 320^3 volume in bf16 with float16 embeddings, twice in one process (the second without
# one-off costs), then with 160^3 tiles (eight tiles, so reads, forwards and writes overlap).
profile() {  # profile NAME LIMIT_S ARGS...
    local name=$1 limit=$2
    shift 2
    timeout "$limit" "$py" benchmarks/stage_profile.py --model "$net" --device "$device" \
        --shape "$big" --precision bf16 --embeddings-dtype float16 \
        --json-out "$out/$name.json" "$@" > "$out/$name.txt" 2>&1 \
        || echo "exit $? (124: over ${limit} s)" >> "$out/$name.txt"
    pack
}
profile profile-bf16 120 --runs 2
profile profile-bf16-tiles 75 --runs 1 --tile-shape "$tiles"

# The reference network: bf16 autocast with float16 embeddings (the fast setting) on a
# 320^3 volume; fp32 (exact; no TF32) with MONAI at both overlaps on 192^3 (at 320^3 it
# ran past 150 s on an H200); labels with and without embeddings on 96x192x192 (at
# 160x320x320, past 120 s).
run reference-bf16 90 --shape "$big" --precision bf16 --embeddings-dtype float16 --no-monai
run reference-fp32 120 --shape "$mid" $monai
run reference-labels 90 --shape "$labels" --labels --no-monai

# predict end to end on this machine's CPU cores alone (the GPU hidden), against its
# compute and I/O limits, with realistically chunked inputs (read_amplification.py (b));
# (a) on a smaller volume than its default, to keep the lease short.
CUDA_VISIBLE_DEVICES= timeout 120 "$py" benchmarks/read_amplification.py --shape "$cpu_a" \
    --predict-shape "$cpu_b" --seconds "$seconds" --json-out "$out/cpu-e2e.json" \
    > "$out/cpu-e2e.txt" 2>&1 || echo "exit $? (124: over 120 s)" >> "$out/cpu-e2e.txt"
pack
ls -l "$out"
