#!/usr/bin/env bash
# Sets up Weft (scripts/setup.sh) and runs the people VPN gateway on its embedded defaults, in the foreground:
# the SQLite store in /var/lib/weft (created on first run, printing the admin password and an API token once),
# interface weft0, UDP port 51820, members in 10.66.0.0/24, the REST API on 127.0.0.1:8780. Stop it with Ctrl-C.
#   WEFT_DATA=DIR        another data directory
#   WEFT_ENDPOINT=HOST   what members dial (default: this machine's first address)
#   WEFT_CONF=FILE.conf  instead, run a plain WireGuard interface from a wg-quick style file (`weft up`)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
weft=(node "$PWD/dist/src/cli/main.js")
if [ -n "${WEFT_CONF:-}" ]; then exec "${weft[@]}" up --foreground "$WEFT_CONF"; fi
data=${WEFT_DATA:-/var/lib/weft}
if [ ! -e "$data/weft.db" ]; then
  endpoint=${WEFT_ENDPOINT:-$(hostname -I 2>/dev/null | awk '{print $1}')}
  "${weft[@]}" server init --data "$data" --endpoint "${endpoint:-127.0.0.1}:51820" --subnet 10.66.0.0/24
fi
echo "starting the gateway; in another terminal: export WEFT_DATA=$data; ${weft[*]} member add alice; ${weft[*]} member config alice"
exec "${weft[@]}" server run --data "$data"
