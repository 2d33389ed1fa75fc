#!/usr/bin/env bash
# The CPU measurement of the "faster than PyTorch on every x86 machine" issue, prepared for a lent machine with many
# cores (the device machine: an Intel Xeon, 16 CPUs), to run from the repository root in one command of at most
# 10 minutes. Everything it finds goes to $OUT (default: /tmp/minidl_device_out); copy the two records into
# benchmarks/history/ as <UTC date and time>-<cpu>.json (compare_bench.py reads them there):
#
#   lscpu.txt, versions.txt   the CPU (and whether two logical CPUs share a core) and the library versions;
#   zoo.json, zoo.txt         every model of bench_train.py against PyTorch, each pinned to its own 2 CPUs, all at
#                             once (bench_pinned.py), with the convolution autotuner (--autotune), and the same
#                             checkout without it as the baseline: numba / torch, baseline (the rules) / torch and
#                             numba / baseline, and the autotuner's choices;
#   resnets.json, resnets.txt the two ResNets again, two at a time on 4 CPUs (less sharing of the L3 cache and the
#                             memory bandwidth than in the first pass);
#   parts.txt                 where a Winograd layer's time goes on this CPU (bench_winograd_parts.py).
#
# Each step has its own time limit, so the command returns with what it has. Smaller settings for a try here:
#   MODELS="cifar_cnn" RESNETS="resnet20" ROUNDS=1 EXTRA="--batch 4 --warmup 1 --repeats 1" PARTS_REPEATS=1 \
#       bash benchmarks/device_cpu_run.sh
set -u
PYTHON=${PYTHON:-python3}
OUT=${OUT:-/tmp/minidl_device_out}
MODELS=${MODELS:-all}
RESNETS=${RESNETS:-resnet20 resnet56}
ROUNDS=${ROUNDS:-3}
EXTRA=${EXTRA:-}
PARTS_REPEATS=${PARTS_REPEATS:-10}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
mkdir -p "$OUT"

{ lscpu; echo; for f in /sys/devices/system/cpu/cpu[0-3]/topology/thread_siblings_list; do echo "$f: $(cat "$f")"; done; } \
    > "$OUT/lscpu.txt" 2>&1
"$PYTHON" -c "import sys, numpy, numba, torch, minidl; from minidl.backend import _threads
print(sys.version); print('numpy', numpy.__version__, 'numba', numba.__version__, 'torch', torch.__version__)
print('minidl', minidl.__version__, minidl.__file__); minidl.set_backend('numba'); print(_threads.blas_info())" \
    > "$OUT/versions.txt" 2>&1

# shellcheck disable=SC2086  # MODELS, RESNETS and EXTRA are word lists
timeout 330 "$PYTHON" benchmarks/bench_pinned.py --models $MODELS --out "$OUT/zoo.json" \
    --note "all models at once, 2 CPUs each" -- --frameworks numba torch --rounds "$ROUNDS" --channels-last \
    --autotune --baseline . $EXTRA > "$OUT/zoo.txt" 2>&1
echo "zoo: exit $?" >> "$OUT/zoo.txt"

# shellcheck disable=SC2086
timeout 150 taskset -c 0-3 "$PYTHON" benchmarks/bench_pinned.py --models $RESNETS --out "$OUT/resnets.json" \
    --note "two at a time on 4 CPUs" -- --frameworks numba torch --rounds "$ROUNDS" --channels-last $EXTRA \
    > "$OUT/resnets.txt" 2>&1
echo "resnets: exit $?" >> "$OUT/resnets.txt"

timeout 60 "$PYTHON" benchmarks/bench_winograd_parts.py --threads 2 --repeats "$PARTS_REPEATS" > "$OUT/parts.txt" 2>&1
echo "parts: exit $?" >> "$OUT/parts.txt"
ls -l "$OUT"
