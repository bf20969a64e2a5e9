#!/usr/bin/env bash
# containerd benchmark (not a test): `Rscript -e 'sessionInfo()'` in a
# container of the r-base-like image, started through containerd 1.6 + runc
# over an emulated WAN (bench/wan), side by side in one run, per link profile
# (100 Mbit / 20 ms RTT, 1 Gbit / 10 ms RTT), cold, interleaved:
#   - lazy: `lazyctl pull --containerd` + `ctr run --snapshotter lazyfs`
#     (containerd-lazy-grpc, lazyfsd with an empty cache);
#   - overlayfs: `ctr image pull` + `ctr run` with containerd's own overlayfs
#     snapshotter (every layer downloaded and unpacked).
# Time from the start of the pull to the first output line, and to the exit.
# The lazy side runs twice: lazyfsd with `prefetch = "none"` (the case users
# meet most: nobody recorded the command) and with `prefetch = "record"` (the
# image's prefetch record of this command, the best case).
# containerd, the snapshotter and lazyfsd start fresh (empty roots and cache)
# before each timed step, as host daemons would already run; the page cache
# is dropped. lazyfsd, lazyctl and ctr run in lzwan-cli's network namespace
# (the registry is behind the emulated link); containerd and the snapshotter
# only talk over unix sockets. Run as root.
#
#   bench/containerd-wan.sh [RUNS]    default 3; results in bench/results/containerd-wan-<date>.md
#
# Environment: LZB_PROFILES="100mbit:20ms 1gbit:10ms", LZB_KEEP=1 (keep the
# work dir with logs), LAZYFS_BIN (binaries; default: target/release, built).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
RUNS=${1:-3}
[[ $RUNS =~ ^[1-9][0-9]?$ ]] || { echo "usage: $0 [RUNS 1-99]" >&2; exit 2; }
PROFILES=${LZB_PROFILES:-"100mbit:20ms 1gbit:10ms"}
BIN=${LAZYFS_BIN:-$ROOT/target/release}
REG=10.77.1.2:5000
NS_CLI=/run/netns/lzwan-cli NS_RT=/run/netns/lzwan-rt
WAN=$ROOT/bench/wan/wan.sh
HELPER=$ROOT/bench/lazyrun-wan.py
RESULTS=$ROOT/bench/results
STEP_TIMEOUT=300   # seconds, any one timed command

[ "$(id -u)" -eq 0 ] || { echo "run as root" >&2; exit 1; }
scripts/install-deps
bench/wan/install-deps.sh
for t in skopeo containerd ctr runc docker-registry curl jq nsenter python3 tc; do
  command -v "$t" >/dev/null || { echo "missing $t" >&2; exit 1; }
done
. scripts/build-image.sh
. scripts/rust-toolchain.sh
IMAGE_OCI=$(rbase_image)
[ -n "${LAZYFS_BIN:-}" ] || build_release lazyctl lazyfsd containerd-lazy-grpc
mkdir -p "$RESULTS"

WORK=$(mktemp -d /var/tmp/containerd-wan.XXXXXX)
REG_PID= DAEMON_PID= CTD_PID= SN_PID=
. bench/lib/wan-runs.sh

CTD=$WORK/containerd SN=$WORK/snapshotter
stop_containerd() {
  stop_pid "$CTD_PID" containerd; CTD_PID=
  stop_pid "$SN_PID" containerd-lazy; SN_PID=   # comm is cut at 15 characters
  for m in $(awk -v w="$WORK" 'index($2, w) == 1 && $2 != w"/mnt" {print $2}' /proc/mounts | sort -r); do umount -l "$m"; done
  rm -rf "$CTD" "$SN"
}
trap 'set +e; stop_containerd; cleanup_wan_run' EXIT
trap 'exit 130' INT TERM
write_config rec 128K record; write_config none 128K none

# A fresh containerd (own root, state and socket) with the lazyfs proxy
# plugin, and a fresh snapshotter.
start_containerd() {   # LAZYFSD-CONFIG
  stop_containerd
  mkdir -p "$CTD" "$SN"
  "$BIN/containerd-lazy-grpc" --address "$SN/sn.sock" --root "$SN/root" --config "$WORK/$1.toml" \
    2>>"$WORK/snapshotter.log" &
  SN_PID=$!
  cat >"$CTD/config.toml" <<TOML
version = 2
root = "$CTD/root"
state = "$CTD/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$CTD/containerd.sock"
[ttrpc]
  address = "$CTD/containerd.sock.ttrpc"
[proxy_plugins.lazyfs]
  type = "snapshot"
  address = "$SN/sn.sock"
TOML
  containerd --config "$CTD/config.toml" >>"$WORK/containerd.log" 2>&1 &
  CTD_PID=$!
  for _ in $(seq 300); do
    [ -S "$SN/sn.sock" ] && ctr --address "$CTD/containerd.sock" version >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "containerd or the snapshotter did not start" >&2; tail -20 "$WORK/containerd.log" "$WORK/snapshotter.log" >&2; exit 1
}

# `ctr` and `lazyctl pull` for the timed steps, in lzwan-cli's namespace.
cat >"$WORK/lazy-start" <<'SH'
#!/bin/sh
# lazy-start BIN WORK CONFIG IMAGE ID: lazyctl pull --containerd, then ctr run
set -e
"$1/lazyctl" pull --containerd --address "$2/containerd/containerd.sock" --config "$2/$3.toml" "$4" >/dev/null
exec ctr --address "$2/containerd/containerd.sock" run --rm --snapshotter lazyfs "$4" "$5" Rscript -e 'sessionInfo()'
SH
cat >"$WORK/plain-start" <<'SH'
#!/bin/sh
# plain-start WORK IMAGE ID: ctr image pull, then ctr run (overlayfs)
set -e
ctr --address "$1/containerd/containerd.sock" image pull --plain-http "$2" >/dev/null
exec ctr --address "$1/containerd/containerd.sock" run --rm "$2" "$3" Rscript -e 'sessionInfo()'
SH
chmod +x "$WORK/lazy-start" "$WORK/plain-start"

start_tsv
log "work dir $WORK; binaries $BIN ($("$BIN/lazyctl" --version)); $(containerd --version)"
wan_up 1gbit 0ms
push_convert_record

lazy_cold() {   # PROFILE RUN PREFETCH
  start_daemon "$3"; start_containerd "$3"; drop_caches
  measure "$1" "ctd-lazy-$3" "$2" -- nsenter --net="$NS_CLI" "$WORK/lazy-start" "$BIN" "$WORK" "$3" "$REG/r-base:lazy" "lazy-$2"
  stop_containerd; stop_daemon
}
plain_cold() {   # PROFILE RUN
  start_containerd none; drop_caches
  measure "$1" ctd-overlayfs "$2" -- nsenter --net="$NS_CLI" "$WORK/plain-start" "$WORK" "$REG/r-base:orig" "plain-$2"
  stop_containerd
}

declare -A LOAD_BEFORE LOAD_AFTER PING
run_lazy_and_plain

{
  meta_profiles_and_load
  cat <<'JSON'
"order": ["ctd-lazy-none", "ctd-lazy-rec", "ctd-overlayfs"],
"groups": {"ctd-lazy-none": "cold", "ctd-lazy-rec": "cold", "ctd-overlayfs": "cold"},
"baseline": "ctd-overlayfs",
"baseline_label": "ctr image pull + run (overlayfs)",
"labels": {"ctd-lazy-none": "**lazyctl pull --containerd + ctr run --snapshotter lazyfs**, prefetch none (no record: the common case)",
           "ctd-lazy-rec": "lazyctl pull --containerd + ctr run --snapshotter lazyfs, prefetch record (best case)",
           "ctd-overlayfs": "ctr image pull + ctr run (containerd's overlayfs snapshotter)"}}
JSON
} >"$WORK/meta.json"

OUT=$RESULTS/containerd-wan-$(date -u +%Y%m%d-%H%M).md
{
  echo "# containerd over an emulated WAN — $(date -u +%Y-%m-%dT%H:%MZ)"
  echo
  echo "Command: \`Rscript -e 'sessionInfo()'\` in a container of the r-base-like image,"
  echo "$((COMPRESSED / 1048576)) MiB compressed; lazy image: $(grep -ho '[0-9.]* MiB -> [0-9.]* MiB' "$WORK/convert.log" | tail -1)."
  echo "$(containerd --version | cut -d' ' -f3) with runc $(runc --version | head -1 | cut -d' ' -f3); registry: Debian docker-registry behind bench/wan."
  echo "Runs: $RUNS per cell, interleaved; cold = fresh containerd, snapshotter and lazyfsd (started before the timer), empty caches, page cache dropped."
  echo "Times are from the start of the pull to the container's first output line / its exit."
  report_tables
} >"$OUT"
report_saved "$OUT"
