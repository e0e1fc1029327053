#!/usr/bin/env bash
# Installs the Debian packages the test suite needs, only those missing.
# Runs only as root (CI); without root it lists what is missing and goes on,
# and the tests that need them skip with a message.
set -euo pipefail
want=(iproute2 strace curl keepalived redis-server clang llvm libbpf-dev bpftool systemd)
case "${1:-}" in
  bench) want+=(haproxy nginx-light wrk) ;;
esac
missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "install-deps: not root; missing packages (their tests will skip): ${missing[*]}" >&2
  exit 0
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq -o DPkg::Lock::Timeout=600 --no-install-recommends "${missing[@]}" >/dev/null
# Debian starts services on install; tests start their own instances.
for s in keepalived redis-server haproxy nginx; do
  systemctl stop "$s" 2>/dev/null || service "$s" stop 2>/dev/null || true
done
