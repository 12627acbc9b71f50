#!/usr/bin/env bash
# Sets up (scripts/setup.sh) and runs every test: lint, format, unit and interop. Interop tests need root:
# they create network namespaces and start real peers (wireguard-go) inside them.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
npm run --silent lint
node --test --test-reporter=spec dist/test/unit/ dist/test/interop/
