#!/usr/bin/env bash
# Install everything nm-obs-dataset needs on Debian 12+ / Ubuntu 24.04+ (idempotent):
# system packages (OBS Studio, Xvfb, xdotool, FFmpeg; Chromium for the viewer test when
# the distribution has a real package), the Python package with its test extra in ./.venv,
# and (optional) the CPU build of PyTorch for the torch adapter's tests.
#
# Environment:
#   PYTHON               interpreter for the venv (default python3; needs >= 3.10)
#   NM_TORCH_WHEEL_DIR   folder with a local torch-*cpu*.whl (default /opt/wheels)
#   NM_TORCH             "skip" = never install torch; "index" = skip the local wheel
#   NM_TORCH_INDEX       CPU wheel index (default https://download.pytorch.org/whl/cpu)
#   NM_TORCH_TIMEOUT     seconds allowed for the index download (default 600)
# Only the base packages and the Python package can fail the setup; the browser and
# torch are optional: without them their tests skip with a reason.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
apt_updated=0
apt_install() {   # apt_install PKG...: quiet install; returns apt-get's status
  if [ "$apt_updated" -eq 0 ]; then
    $SUDO apt-get update -qq || return 1
    apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "$@" \
    >/dev/null 2>&1
}

PKGS=(obs-studio xvfb xdotool ffmpeg x11-utils xauth python3-venv xxhash)
missing=()
for p in "${PKGS[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing system packages: ${missing[*]}"
  apt_install "${missing[@]}" || {
    echo "setup: error: apt-get could not install: ${missing[*]}" >&2; exit 1; }
fi

# Browser for the HTML viewer test (optional). Debian ships a real `chromium`; Ubuntu has
# only `chromium-browser`, a stub that installs the snap (no snapd in most containers).
browser_ok() {
  local b
  for b in chromium chromium-browser; do
    command -v "$b" >/dev/null 2>&1 && timeout 20 "$b" --headless --no-sandbox --version \
      >/dev/null 2>&1 && return 0
  done
  return 1
}
if ! browser_ok; then
  for p in chromium chromium-browser; do
    echo "setup: trying the browser package $p"
    apt_install "$p" && browser_ok && break
  done
  browser_ok || echo "setup: warning: no working chromium (neither the chromium nor the" \
    "chromium-browser package gave one): the browser tests will skip"
fi

PY=${PYTHON:-python3}
if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
  echo "setup: error: $PY is not Python >= 3.10 (set PYTHON=/path/to/python3.10+)" >&2
  exit 1
fi
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
.venv/bin/python -m pip install -q -e '.[test]'

# PyTorch, CPU build (optional: the torch adapter's tests skip without it). A plain
# `pip install torch` on Linux pulls several GB of CUDA packages, so: a local CPU wheel
# if there is one, else the official CPU index within NM_TORCH_TIMEOUT seconds, else skip.
install_torch() {
  local dir=${NM_TORCH_WHEEL_DIR:-/opt/wheels}
  local index=${NM_TORCH_INDEX:-https://download.pytorch.org/whl/cpu}
  local limit=${NM_TORCH_TIMEOUT:-600}
  local wheel why
  wheel=$(ls "$dir"/torch-*cpu*.whl 2>/dev/null | head -1 || true)
  if [ -z "$wheel" ]; then
    why="no local CPU wheel in $dir"
  elif [ "${NM_TORCH:-}" = "index" ]; then
    why="local wheel not used (NM_TORCH=index)"
  else
    .venv/bin/python -m pip install -q "$wheel" && return 0
    why="the local wheel $wheel did not install"
  fi
  # a quick reachability check first, so an offline machine does not wait for pip's retries
  if ! .venv/bin/python - "$index" <<'EOF' >/dev/null 2>&1
import sys, urllib.request
urllib.request.urlopen(sys.argv[1].rstrip("/") + "/torch/", timeout=15).read(1)
EOF
  then
    echo "setup: torch not installed: $why and $index is not reachable;" \
      "the torch tests will skip"
    return 0
  fi
  echo "setup: installing the CPU build of torch from $index (at most ${limit}s; $why)"
  if timeout "$limit" .venv/bin/python -m pip install -q --retries 2 --timeout 60 \
      --index-url "$index" torch; then
    return 0
  fi
  echo "setup: torch not installed (the download from $index failed or took over" \
    "${limit}s); the torch tests will skip"
}
if [ "${NM_TORCH:-}" = "skip" ]; then
  echo "setup: NM_TORCH=skip: torch not installed; the torch tests will skip"
elif ! .venv/bin/python -c "import torch" >/dev/null 2>&1; then
  install_torch || echo "setup: torch not installed; the torch tests will skip"
fi
echo "setup: ok (.venv ready; commands: .venv/bin/nm-companion, nm-align, nm-validate, nm-preview)"
