#!/usr/bin/env bash
# Sets up Weft (scripts/setup.sh) and runs the people VPN gateway on its embedded defaults, in the foreground:
# the SQLite store in /var/lib/weft (created on first run, printing the admin password and an API token once),
# interface weft0, UDP port 51820, members in 10.66.0.0/24, NAT egress through the default route's interface,
# the REST API on 127.0.0.1:8780. Stop it with Ctrl-C.
# Needs root: run as another user, it starts again through sudo.
#   WEFT_DATA=DIR             another data directory
#   WEFT_ENDPOINT=HOST[:PORT] what members dial (default: this machine's first address; port 51820); given on
#                             a later run, it replaces the stored endpoint (and says so)
#   WEFT_CONF=FILE.conf       instead, run a plain WireGuard interface from a wg-quick style file (`weft up`)
set -euo pipefail
self=$(cd "$(dirname "$0")" && pwd)/$(basename "$0")
cd "$(dirname "$0")/.."
. scripts/root.sh
become_root "$self" "$@"
bash scripts/setup.sh
weft=(node "$PWD/dist/src/cli/main.js")
if [ -n "${WEFT_CONF:-}" ]; then exec "${weft[@]}" up --foreground "$WEFT_CONF"; fi
data=${WEFT_DATA:-/var/lib/weft}
# HOST -> HOST:51820; HOST:PORT and [IPv6]:PORT as given; a bare IPv6 address gets brackets.
with_port() {
  case $1 in
    \[*\]:*) echo "$1" ;;
    \[*\]) echo "$1:51820" ;;
    *:*:*) echo "[$1]:51820" ;;
    *:*) echo "$1" ;;
    *) echo "$1:51820" ;;
  esac
}
if [ ! -e "$data/weft.db" ]; then
  endpoint=${WEFT_ENDPOINT:-$(hostname -I 2>/dev/null | awk '{print $1}')}
  # Members' traffic to the internet leaves through the default route's interface, source-NATed.
  uplink=$(ip -o route show default 2>/dev/null | awk '{for (i = 1; i < NF; i++) if ($i == "dev") {print $(i + 1); exit}}' || true)
  nat=()
  if [ -n "$uplink" ]; then
    nat=(--nat-egress "$uplink")
    echo "NAT egress through $uplink (the default route's interface)"
  else
    echo "no default route found: NAT egress stays off (full-tunnel members get no internet until it is set)"
  fi
  "${weft[@]}" server init --data "$data" --endpoint "$(with_port "${endpoint:-127.0.0.1}")" --subnet 10.66.0.0/24 "${nat[@]}"
elif [ -n "${WEFT_ENDPOINT:-}" ]; then
  # The store exists: WEFT_ENDPOINT replaces its endpoint (printing old and new), rather than being ignored.
  "${weft[@]}" server endpoint --data "$data" "$(with_port "$WEFT_ENDPOINT")"
fi
echo "starting the gateway; in another terminal: export WEFT_DATA=$data; ${weft[*]} member add alice; ${weft[*]} member config alice"
exec "${weft[@]}" server run --data "$data"
