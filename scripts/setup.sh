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
echo "setup: ok (.venv ready; commands: .venv/bin/nm-companion, nm-align, nm-validate, nm-preview)"
