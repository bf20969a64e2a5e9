#!/usr/bin/env bash
# Podman benchmark (not a test): `Rscript -e 'sessionInfo()'` in a container
# of the r-base-like image, started by Podman 4.3 (runc) over an emulated WAN
# (bench/wan), side by side in one run, per link profile (100 Mbit / 20 ms
# RTT, 1 Gbit / 10 ms RTT), cold, interleaved:
#   - lazy: `podman pull` + `podman run` of the lazy image, its layers found
#     in lazyfsd's additional layer store (lazyfsd with an empty cache);
#   - plain: `podman pull` + `podman run` of the original image with
#     ordinary storage (every layer downloaded and unpacked).
# Time from the start of the pull to the first output line, and to the exit.
# The lazy side runs twice: lazyfsd with `prefetch = "none"` (the case users
# meet most: nobody recorded the command) and with `prefetch = "record"` (the
# image's prefetch record of this command, the best case).
# Podman's storage is emptied and lazyfsd started fresh before each timed
# step; the page cache is dropped. lazyfsd and podman run in lzwan-cli's
# network namespace (the registry is behind the emulated link). Run as root.
#
#   bench/podman-wan.sh [RUNS]    default 3; results in bench/results/podman-wan-<date>.md
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
for t in skopeo podman runc docker-registry curl jq nsenter python3 tc; do
  command -v "$t" >/dev/null || { echo "missing $t" >&2; exit 1; }
done
. scripts/build-image.sh
. scripts/rust-toolchain.sh
IMAGE_OCI=$(rbase_image)
[ -n "${LAZYFS_BIN:-}" ] || build_release lazyctl lazyfsd
mkdir -p "$RESULTS"

WORK=$(mktemp -d /var/tmp/podman-wan.XXXXXX)
REG_PID= DAEMON_PID=
. bench/lib/wan-runs.sh

PODMAN=$WORK/podman
reset_podman() {   # empty storage: unmount what Podman mounted, remove it all
  for m in $(awk -v p="$PODMAN" 'index($2, p) == 1 {print $2}' /proc/mounts | sort -r); do umount -l "$m"; done
  rm -rf "$PODMAN/root" "$PODMAN/run" "$PODMAN/tmp"
  mkdir -p "$PODMAN/tmp"
}
trap 'set +e; reset_podman; cleanup_wan_run' EXIT
trap 'exit 130' INT TERM

# lazyfsd serves the layer store; `lazyctl podman-setup` writes the lazy
# side's storage.conf (and sets layer_store in both lazyfsd configs).
write_config rec 128K record; write_config none 128K none
mkdir -p "$PODMAN"
printf '[storage]\ngraphroot = "%s"\nrunroot = "%s"\n' "$PODMAN/root" "$PODMAN/run" >"$PODMAN/plain.conf"
cp "$PODMAN/plain.conf" "$PODMAN/lazy.conf"
for c in rec none; do
  "$BIN/lazyctl" podman-setup --storage-conf "$PODMAN/lazy.conf" --config "$WORK/$c.toml" \
    --layer-store "$WORK/store" >/dev/null
done
# Limits settable without CAP_SYS_RESOURCE, runc (crun refuses hybrid
# cgroups), no container network.
nofile=$(ulimit -Hn); nproc=$(ulimit -Hu)
[ "$nofile" = unlimited ] || [ "$nofile" -gt 1024 ] && nofile=1024
[ "$nproc" = unlimited ] || [ "$nproc" -gt 1024 ] && nproc=1024
cat >"$PODMAN/containers.conf" <<TOML
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]
netns = "none"
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
TOML

cat >"$WORK/podman-start" <<'SH'
#!/bin/sh
# podman-start PODMAN-DIR STORAGE-CONF IMAGE: podman pull, then podman run
set -e
export CONTAINERS_STORAGE_CONF="$1/$2" CONTAINERS_CONF="$1/containers.conf"
podman --tmpdir "$1/tmp" pull -q --tls-verify=false "$3" >/dev/null
exec podman --tmpdir "$1/tmp" run --rm "$3" Rscript -e 'sessionInfo()'
SH
chmod +x "$WORK/podman-start"

start_tsv
log "work dir $WORK; binaries $BIN ($("$BIN/lazyctl" --version)); $(podman --version)"
wan_up 1gbit 0ms
push_convert_record

lazy_cold() {   # PROFILE RUN PREFETCH
  reset_podman; start_daemon "$3"; drop_caches
  measure "$1" "podman-lazy-$3" "$2" -- nsenter --net="$NS_CLI" "$WORK/podman-start" "$PODMAN" lazy.conf "$REG/r-base:lazy"
  reset_podman; stop_daemon
}
plain_cold() {   # PROFILE RUN
  reset_podman; drop_caches
  measure "$1" podman-plain "$2" -- nsenter --net="$NS_CLI" "$WORK/podman-start" "$PODMAN" plain.conf "$REG/r-base:orig"
  reset_podman
}

declare -A LOAD_BEFORE LOAD_AFTER PING
run_lazy_and_plain

{
  meta_profiles_and_load
  cat <<'JSON'
"order": ["podman-lazy-none", "podman-lazy-rec", "podman-plain"],
"groups": {"podman-lazy-none": "cold", "podman-lazy-rec": "cold", "podman-plain": "cold"},
"baseline": "podman-plain",
"baseline_label": "podman pull + run (plain image)",
"labels": {"podman-lazy-none": "**podman pull + run, lazy image from lazyfsd's layer store**, prefetch none (no record: the common case)",
           "podman-lazy-rec": "podman pull + run, lazy image from lazyfsd's layer store, prefetch record (best case)",
           "podman-plain": "podman pull + run of the plain image (overlay driver, every layer downloaded)"}}
JSON
} >"$WORK/meta.json"

OUT=$RESULTS/podman-wan-$(date -u +%Y%m%d-%H%M).md
{
  echo "# Podman over an emulated WAN — $(date -u +%Y-%m-%dT%H:%MZ)"
  echo
  echo "Command: \`Rscript -e 'sessionInfo()'\` in a container of the r-base-like image,"
  echo "$((COMPRESSED / 1048576)) MiB compressed; lazy image: $(grep -ho '[0-9.]* MiB -> [0-9.]* MiB' "$WORK/convert.log" | tail -1)."
  echo "$(podman --version) with runc $(runc --version | head -1 | cut -d' ' -f3); registry: Debian docker-registry behind bench/wan."
  echo "Runs: $RUNS per cell, interleaved; cold = empty Podman storage, fresh lazyfsd (started before the timer) with an empty cache, page cache dropped."
  echo "Times are from the start of \`podman pull\` to the container's first output line / its exit."
  report_tables
} >"$OUT"
report_saved "$OUT"
