#!/usr/bin/env bash
# On a machine with a CUDA GPU: the GPU tests of autokd-torch (tests/torch/test_cuda.py,
# marker `cuda`) and the KD step overhead benchmark on the GPU (issue #14).
# Usage: scripts/gpu_check.sh   (runs in the tox env of autokd-torch; needs a CUDA build of torch there)
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv-tox
.venv-tox/bin/python -m pip install -q --disable-pip-version-check 'tox>=4.11,<5'
.venv-tox/bin/tox run -e torch --notest
py=.tox/torch/bin/python
if ! "$py" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
    echo "gpu_check: torch.cuda.is_available() is False here (the tox env has a CPU build of torch, or there is" >&2
    echo "no GPU): install a CUDA build into .tox/torch, e.g. .tox/torch/bin/pip install torch==2.13.0 --index-url" >&2
    echo "https://download.pytorch.org/whl/cu126, and run again" >&2
    exit 1
fi
"$py" -m pytest tests/torch/test_cuda.py -m cuda -q -rs
"$py" benchmarks/kd_overhead.py --device cuda
