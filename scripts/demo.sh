#!/usr/bin/env bash
# The main job: an AutoDistillation search that compresses the all-MiniLM-L6-v2 sentence
# encoder on the chatterbot corpus, offline. Sets up .venv on first use.
# Usage: scripts/demo.sh [autokd-minilm options, e.g. --max-trials 2 --output-dir out]
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/autokd-minilm ]; then
  python3 -m venv .venv
  # torch first, pinned: a bare `torch` requirement may pull a multi-GB CUDA build
  .venv/bin/python -m pip install -q --disable-pip-version-check torch==2.13.0
  .venv/bin/python -m pip install -q --disable-pip-version-check \
    -e . -e plugins/autokd-torch -e plugins/autokd-optuna[bo] -e plugins/autokd-latency -e examples/minilm
fi
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
exec .venv/bin/autokd-minilm "$@"
