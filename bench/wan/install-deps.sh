#!/usr/bin/env bash
# Installs what the WAN emulation (bench/wan/) needs on Debian 12. Run as root.
# apt-get update runs only when a package is missing.
set -euo pipefail

PACKAGES=(
  iproute2          # ip netns, tc (tbf)
  iptables          # FORWARD -j NFQUEUE in the router namespace
  gcc libc6-dev linux-libc-dev   # builds delayline.c (raw netlink, no libraries)
  iputils-ping      # RTT check
  curl python3      # throughput check (http.server in lzwan-reg, curl in lzwan-cli)
  procps            # pgrep/ps in status
  jq                # lazyrun-wan.sh reads lazyctl's JSON
)

if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: run as root (apt-get install)" >&2
  exit 1
fi
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
