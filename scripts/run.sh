#!/usr/bin/env bash
# Sets up Weft (scripts/setup.sh) and runs it on its embedded defaults.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec node dist/src/cli/main.js demo "$@"
