#!/usr/bin/env bash
# Sets up Weft (scripts/setup.sh) and runs a gateway on its embedded defaults, in the foreground:
# interface wg0 from /etc/weft/wg0.conf, created on first run with a new key, UDP port 51820 and the tunnel
# address 10.66.0.1/24. Add peers while it runs with `wg set wg0 peer ...`; stop it with Ctrl-C.
# WEFT_CONF=/path/NAME.conf uses another file (the interface is named after it).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
conf=${WEFT_CONF:-/etc/weft/wg0.conf}
weft=(node "$PWD/dist/src/cli/main.js")
if [ ! -e "$conf" ]; then
  mkdir -p "$(dirname "$conf")"
  chmod 700 "$(dirname "$conf")"
  key=$("${weft[@]}" genkey)
  (umask 077; printf '[Interface]\nPrivateKey = %s\nListenPort = 51820\nAddress = 10.66.0.1/24\n' "$key" > "$conf")
  echo "created $conf (public key $(printf '%s\n' "$key" | "${weft[@]}" pubkey))"
fi
name=$(basename "$conf" .conf)
echo "starting $name; in another terminal: wg show $name; wg set $name peer <KEY> allowed-ips 10.66.0.2/32"
exec "${weft[@]}" up --foreground "$conf"
