#!/usr/bin/env bash
# Debian packages the sensor and the test suite need. Idempotent; installs only what is missing.
#   libpcap0.8  - compiling BPF capture filters (sensor live capture, via ctypes)
#   iproute2    - `ip netns` for network tests in namespaces the tests create
#   tshark      - a peer decoder the tests compare against
#   postgresql  - PostgreSQL 15 binaries (initdb, postgres): the store tests start a throwaway
#                 cluster of their own to prove the store on PostgreSQL as well as SQLite
#   nftables    - `nft`: the sensor's nftables enforcement backend, tested in namespaces
#   nginx       - a static web server: the tests serve a publish directory with it to a sensor
#                 in static mode (pointer + content-addressed objects, ETag/304)
#   bind9, bind9-utils - BIND: `named-checkzone` checks RPZ exports; a throwaway named
#                 on loopback resolves through one
#   unbound     - `unbound-checkconf` checks local-zone exports; a throwaway unbound serves them
#   dnsmasq     - `dnsmasq --test` checks dnsmasq exports; install-into reloads a real one
#   ipset       - `ipset restore` of ipset exports, inside network namespaces the tests create
#   dnsutils    - `dig`, to ask the throwaway resolvers in tests
set -euo pipefail

PACKAGES=(libpcap0.8 iproute2 tshark postgresql nftables nginx bind9 bind9-utils unbound dnsmasq ipset dnsutils)

missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "install-system-deps: need root to install: ${missing[*]}" >&2
    echo "run: sudo apt-get install -y ${missing[*]}" >&2
    exit 1
fi
echo "install-system-deps: installing ${missing[*]}"
# Never let a package start a daemon (resolvers would fight for port 53; the postgresql
# package would start a system cluster the tests never use).
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy"
    chmod 755 "$policy"
    created_policy=1
fi
trap '[ "$created_policy" = 1 ] && rm -f "$policy"' EXIT
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
