#!/usr/bin/env bash
# Install a PyTorch build that fits this machine into the Python environment given as $1 (default: python3).
#
#   REGEDU_TORCH="torch==2.5.1"  scripts/install_torch.sh .venv/bin/python   # your own choice, verbatim
#
# Order of preference:
#   1. $REGEDU_TORCH, if set (any pip arguments, e.g. "torch --index-url <your CUDA index>");
#   2. a torch already installed in that environment (kept as it is);
#   3. with an NVIDIA GPU (nvidia-smi works): the default PyPI build, which ships CUDA;
#   4. without one: a CPU-only build if pip can see one (a "+cpu" wheel on a local wheel folder or index,
#      as on course machines that pre-stage it: small, no CUDA download), else the default PyPI build.
set -euo pipefail
py="${1:-python3}"
range="torch>=2.1"
pip() { "$py" -m pip "$@"; }

if [ -n "${REGEDU_TORCH:-}" ]; then
    echo "[regedu] installing torch as asked by REGEDU_TORCH: $REGEDU_TORCH"
    # shellcheck disable=SC2086
    pip install $REGEDU_TORCH
    exit 0
fi
if "$py" -c "import torch" 2>/dev/null; then
    echo "[regedu] keeping the installed torch $("$py" -c 'import torch; print(torch.__version__)')"
    exit 0
fi
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    echo "[regedu] NVIDIA GPU found: installing the default (CUDA) torch build"
    pip install "$range"
    exit 0
fi
cpu_version=$(pip index versions torch 2>/dev/null | sed -n 's/^Available versions: //p' | tr ',' '\n' \
    | tr -d ' ' | grep '+cpu$' | head -n 1 || true)
if [ -n "$cpu_version" ]; then
    echo "[regedu] no GPU: installing the CPU-only build torch==$cpu_version"
    pip install "torch==$cpu_version"
else
    echo "[regedu] no GPU and no CPU-only build visible to pip: installing the default torch build"
    echo "[regedu] (to save the CUDA download, rerun with REGEDU_TORCH=\"torch --index-url <PyTorch's CPU index>\")"
    pip install "$range"
fi
