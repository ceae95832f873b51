#!/usr/bin/env bash
# Runs every test suite, each distribution in its own tox env (see tox.ini).
# Usage: scripts/test.sh [tox env,...] [-- pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv-tox
.venv-tox/bin/python -m pip install -q --disable-pip-version-check 'tox>=4.11,<5'
if [ $# -gt 0 ] && [ "$1" != "--" ]; then envs="$1"; shift; else envs=ALL; fi
exec .venv-tox/bin/tox run -e "$envs" "$@"
