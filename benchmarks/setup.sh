#!/usr/bin/env bash
# Benchmark-only dependencies, installed into the project's .venv when missing (kdlang itself never
# imports them): torchdistill 1.1.5, the third arm of benchmarks/step.py. Run tools/setup.sh first.
# Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x .venv/bin/python ]; then
  echo "benchmarks/setup.sh: no .venv here; run tools/setup.sh first" >&2
  exit 1
fi

# pip without its per-package "Location ... is ignored" notices (see tools/setup.sh)
pip_quiet() {
  .venv/bin/python -m pip "$@" 2>&1 | { grep -v "^WARNING: Location '.*' is ignored" || true; }
}

have=$(.venv/bin/python -c "import importlib.metadata as m; print(m.version('torchdistill'))" 2>/dev/null || true)
if [ "$have" != "1.1.5" ]; then
  # torch and torchvision are already the pinned pair; torchdistill adds scipy and Cython
  pip_quiet install -q "torchdistill==1.1.5"
fi
.venv/bin/python -c "import torchdistill; print('torchdistill', torchdistill.__version__)"
