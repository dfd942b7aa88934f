#!/usr/bin/env bash
# Install Avalanche 0.6.0 into ./.venv-avalanche, beside (never inside) owlearn's own .venv, for the
# side-by-side timing comparison of benchmarks/b4_avalanche.py. Usage: scripts/setup_avalanche.sh
#
# PyTorch goes in first and pinned: avalanche-lib asks for an unpinned torch, which on PyPI is the
# multi-GB CUDA build. With torch==2.13.0 (the CPU build where pip finds one: the PyTorch CPU index
# or a local wheel folder) already installed, pip keeps it, and torchvision 0.28.0 is the release
# built against torch 2.13.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
venv=.venv-avalanche
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
pip=("$venv/bin/python" -m pip install --quiet --disable-pip-version-check)

cpu_index=https://download.pytorch.org/whl/cpu
index=()
if command -v curl >/dev/null 2>&1 && curl -fsS --max-time 5 -o /dev/null "$cpu_index/"; then
  index=(--extra-index-url "$cpu_index")
fi
if ! "$venv/bin/python" -c 'import torch' 2>/dev/null; then
  "${pip[@]}" torch==2.13.0 "${index[@]}"  # without the CPU index: pip's configuration (local wheels) decides
fi
# From the CPU index this is the CPU build; without it, PyPI's CUDA build, whose compiled detection ops
# cannot load against CPU torch: benchmarks/_avalanche_compat.py then skips their registration (B4 uses
# only torchvision's pure-Python transforms).
"${pip[@]}" torchvision==0.28.0 "${index[@]}"
"${pip[@]}" avalanche-lib==0.6.0
# owlearn itself (no dependencies beyond what Avalanche brings) so the comparison script reads the
# same Fashion-MNIST tensors through owlearn's loader
"${pip[@]}" --no-deps -e .
"${pip[@]}" safetensors rich typer
(cd benchmarks && "../$venv/bin/python" - <<'PY'
from _avalanche_compat import allow_cuda_torchvision_on_cpu_torch
allow_cuda_torchvision_on_cpu_torch()
import avalanche, torch, torchvision
print(f"Avalanche {avalanche.__version__} with torch {torch.__version__}, torchvision {torchvision.__version__}")
PY
)
