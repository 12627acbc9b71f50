#!/usr/bin/env bash
# Installs what Weft needs on a Debian machine (as root, or with sudo available) and builds it.
# Safe to run again: every step is idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    echo "scripts/setup.sh: installing Debian packages needs root, and sudo is not installed: run it as root" >&2
    exit 1
  fi
}

# Debian packages: the real WireGuard peer and tools the tests drive, strongSwan (the IPsec peer, with
# kernel-libipsec from the extra plugins, AES-GCM and the ECP groups from the standard ones), what the data
# plane uses (nftables for NAT, libsodium for ChaCha20-Poly1305), conntrack (a NAT-T test flushes the NAT's
# mappings), and the compiler better-sqlite3 is built with (its prebuilt binaries are not fetched; the OpenVPN
# data-channel interop test also compiles a small OpenSSL shim with it).
APT_PACKAGES=(wireguard-go wireguard-tools iproute2 iputils-ping tcpdump ca-certificates iperf3 openvpn openssl procps libc-bin
  nftables conntrack libsodium23 curl python3 make g++
  charon-systemd strongswan-swanctl libcharon-extra-plugins libstrongswan-extra-plugins libstrongswan-standard-plugins
  util-linux)
missing=()
for p in "${APT_PACKAGES[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p"); done
if ! command -v node >/dev/null 2>&1; then missing+=(nodejs npm); fi
if [ "${#missing[@]}" -gt 0 ]; then
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

node_major=$(node -p 'process.versions.node.split(".")[0]')
node_minor=$(node -p 'process.versions.node.split(".")[1]')
if [ "$node_major" -lt 20 ] || { [ "$node_major" -eq 20 ] && [ "$node_minor" -lt 19 ]; }; then
  echo "weft needs Node.js 20.19 or newer; this machine has $(node --version)." >&2
  exit 1
fi

# npm packages exactly as package-lock.json pins them; skipped when node_modules already matches it.
# Native addons build against the headers Debian's nodejs ships, never against a download.
if [ -f /usr/include/node/node.h ]; then export npm_config_nodedir=/usr; fi
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi
npm run --silent build
