#!/usr/bin/env bash
# Set up owlearn in ./.venv. Usage: scripts/setup.sh [--test] [--serve]
#   --test   also the test tools and the Debian packages the tests use (Fashion-MNIST, chromium)
#   --serve  also the web service (FastAPI, uvicorn)
# PyTorch: the CPU build where no NVIDIA GPU is found (a few hundred MB instead of several GB);
# the CUDA build from PyPI where one is. Set OWLEARN_TORCH="torch==X.Y.Z" to choose another build.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
extras=()
with_test=0
for arg in "$@"; do
  case "$arg" in
    --test) with_test=1; extras+=(test serve) ;;
    --serve) extras+=(serve) ;;
    -h|--help) sed -n '2,6p' "$0"; exit 0 ;;
    *) echo "setup.sh: unknown option $arg (see --help)" >&2; exit 2 ;;
  esac
done

"$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || { echo "owlearn needs Python 3.11 or newer; set PYTHON=/path/to/python3.11" >&2; exit 1; }
[ -x .venv/bin/python ] || "$python" -m venv .venv
pip=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)

torch_spec=${OWLEARN_TORCH:-torch==2.13.0}
if ! .venv/bin/python -c 'import torch' 2>/dev/null; then
  cpu_index=https://download.pytorch.org/whl/cpu
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    echo "NVIDIA GPU found: installing the CUDA build of PyTorch"
    "${pip[@]}" "$torch_spec"
  elif command -v curl >/dev/null 2>&1 && curl -fsS --max-time 5 -o /dev/null "$cpu_index/"; then
    echo "No NVIDIA GPU: installing the CPU build of PyTorch"
    "${pip[@]}" "$torch_spec" --extra-index-url "$cpu_index"
  else
    # no PyTorch index reachable: pip's own configuration (a local wheel folder, a mirror) decides
    echo "No NVIDIA GPU and no PyTorch index reachable: installing $torch_spec as pip is configured"
    "${pip[@]}" "$torch_spec"
  fi
fi

if [ ${#extras[@]} -gt 0 ]; then
  spec=".[$(IFS=,; echo "${extras[*]}")]"
else
  spec="."
fi
"${pip[@]}" -e "$spec"

if [ "$with_test" = 1 ]; then
  # the tests read the real Fashion-MNIST files Debian packages, and drive Debian's chromium
  missing=()
  [ -d /usr/share/datasets/fashion-mnist ] || missing+=(dataset-fashion-mnist)
  [ -x /usr/bin/chromium ] || missing+=(chromium)
  if [ ${#missing[@]} -gt 0 ] && command -v apt-get >/dev/null 2>&1; then
    sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
    echo "Installing Debian packages for the tests: ${missing[*]}"
    $sudo apt-get update -qq && $sudo apt-get install -y -qq "${missing[@]}" >/dev/null \
      || echo "warning: could not install ${missing[*]}; the tests that need them will be skipped" >&2
  fi
fi
echo "owlearn is set up in .venv ($(.venv/bin/python -c 'import torch; print("torch", torch.__version__)'))"
