# Sourced by run.sh and test.sh, which need root (network namespaces, TUN devices, nftables, apt-get).
# `become_root SCRIPT ARGS...`: as root, returns; as another user, runs SCRIPT again through sudo (keeping
# the WEFT_* variables, which sudo would drop); with neither, says what to do and exits 1.
become_root() {
  if [ "$(id -u)" -eq 0 ]; then return 0; fi
  local script=$1 name v
  shift
  name=scripts/$(basename "$script")
  if command -v sudo >/dev/null 2>&1; then
    local keep=()
    for v in $(compgen -e); do
      case $v in WEFT_*) keep+=("$v=${!v}") ;; esac
    done
    echo "$name: needs root; running it again through sudo" >&2
    exec sudo -- env "${keep[@]}" bash "$script" "$@"
  fi
  echo "$name: needs root (network interfaces, nftables, Debian packages), and sudo is not installed:" >&2
  echo "  run it as root, e.g. \`su -c $name\`, or install sudo and give this user the right to use it" >&2
  exit 1
}
