#!/usr/bin/env bash
# Install everything nm-obs-dataset needs on Debian/Ubuntu (idempotent):
# system packages (OBS Studio, Xvfb, xdotool, FFmpeg, Chromium for the viewer test)
# and the Python package with its test extra in ./.venv.
set -euo pipefail
cd "$(dirname "$0")/.."

PKGS=(obs-studio xvfb xdotool ffmpeg x11-utils xauth chromium python3-venv)
missing=()
for p in "${PKGS[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "setup: installing system packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
.venv/bin/python -m pip install -q -e '.[test]'
# PyTorch (optional: the torch adapter's tests skip without it). Only from a local CPU
# wheel, never a multi-GB download: set NM_TORCH_WHEEL_DIR to a folder holding one.
TORCH_DIR=${NM_TORCH_WHEEL_DIR:-/opt/wheels}
if ! .venv/bin/python -c "import torch" >/dev/null 2>&1; then
  if ls "$TORCH_DIR"/torch-*cpu*.whl >/dev/null 2>&1; then
    .venv/bin/python -m pip install -q --find-links "$TORCH_DIR" "$(ls "$TORCH_DIR"/torch-*cpu*.whl | head -1)" \
      || echo "setup: torch not installed (its tests will skip)"
  else
    echo "setup: no local CPU torch wheel in $TORCH_DIR: torch tests will skip"
  fi
fi
echo "setup: ok (.venv ready; commands: .venv/bin/nm-companion, nm-align, nm-validate, nm-preview)"
