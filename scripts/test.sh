#!/usr/bin/env bash
# Run the whole test suite (installs what is missing first). Real OBS, real X servers.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
