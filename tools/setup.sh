#!/usr/bin/env bash
# Set up kdlang on a fresh Debian machine (as root): Debian packages, a virtualenv at .venv,
# and kdlang with its test dependencies. Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v dot >/dev/null 2>&1 || need_apt+=(graphviz)
[ -d /usr/share/datasets/fashion-mnist ] || need_apt+=(dataset-fashion-mnist)
if [ ${#need_apt[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# pip, without the "Location ... is ignored" notice it prints per package for a configured local
# index that lacks it (one line each, screens of them); its errors and exit status pass through
pip_quiet() {
  .venv/bin/python -m pip "$@" 2>&1 | { grep -v "^WARNING: Location '.*' is ignored" || true; }
}

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
if ! .venv/bin/python -c "import kdlang, torch, torchvision, lark, networkx, attrs, graphviz, pytest, hypothesis, mypy, importlinter, safetensors, onnx, onnxscript, onnxruntime, timm, matplotlib, pygls, lsprotocol, tensorboard, mlflow, ray, submitit, material, lightning, pygments, shtab" 2>/dev/null; then
  pip_quiet install -q --upgrade pip
  # torch/torchvision pinned to the pair this machine serves from local disk (see README)
  pip_quiet install -q "torch==2.14.1" "torchvision==0.29.1"
  PYTHONWARNINGS=ignore pip_quiet install -q -e '.[dev]'  # quiet: setuptools' editable-install notice
fi
