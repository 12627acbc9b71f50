#!/usr/bin/env bash
# Sets up (scripts/setup.sh) and runs every test: lint, format, unit, interop and the web console's end-to-end
# tests. Interop and end-to-end tests need root: they create network namespaces and start real peers
# (wireguard-go, wg-quick) inside them; the console is driven in Debian's Chromium through playwright-core.
# Run as another user, it starts again through sudo.
set -euo pipefail
self=$(cd "$(dirname "$0")" && pwd)/$(basename "$0")
cd "$(dirname "$0")/.."
. scripts/root.sh
become_root "$self" "$@"
bash scripts/setup.sh
# Test-only Debian packages: the browser the console's tests drive (never downloaded by a test tool), and the
# PostgreSQL server the PostgreSQL store's tests start in a temporary directory (test/interop/postgres-harness.ts).
TEST_APT_PACKAGES=(chromium postgresql)
missing=()
for package in "${TEST_APT_PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'ok installed'; then missing+=("$package"); fi
done
if [ ${#missing[@]} -gt 0 ]; then
  env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
npm run --silent lint
tests=(dist/test/unit/ dist/test/interop/)
if [ -d dist/test/e2e ]; then tests+=(dist/test/e2e/); fi
node --test --test-reporter=spec "${tests[@]}"
