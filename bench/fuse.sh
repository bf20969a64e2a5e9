#!/usr/bin/env bash
# lazyfsd benchmark (not a test). On the r-base-like image (see convert.sh),
# side by side in one run:
#   - cold: bytes fetched and range requests to read a file set (R's startup libraries)
#   - cached sequential read of the big files: lazyfs overlay vs the unpacked tree on local disk
#   - random 4 KiB reads over the same files
#   - walks of every entry, names only and with an lstat of each: lazyfs
#     overlay vs local disk (bench/walk-layers.sh breaks them down)
#   - lazyfsd resident memory with the image attached
#   - with passthrough: the whole-file copies made for it (count, MiB, time)
# Page caches are dropped before each timed step. Run as root.
#
#   bench/fuse.sh [RUNS]        default 3; results in bench/results/
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/registry.sh
. scripts/build-image.sh
. bench/lazyfsd.sh
RUNS=${1:-3}
RESULTS=bench/results
mkdir -p "$RESULTS"

scripts/install-deps
. scripts/rust-toolchain.sh
# $LAZYFS_BIN: other binaries to measure (e.g. an older build), else target/release.
[ -n "${LAZYFS_BIN:-}" ] || build_release lazyctl lazyfsd
BIN=${LAZYFS_BIN:-$PWD/target/release}

WORK=$(mktemp -d /var/tmp/lazyfs-fuse-bench.XXXXXX)
DAEMON_PID=
cleanup() {
  umount -l "$WORK/merged" 2>/dev/null || true
  [ -n "$DAEMON_PID" ] && kill "$DAEMON_PID" 2>/dev/null && wait "$DAEMON_PID" 2>/dev/null || true
  umount -l "$WORK/mnt" 2>/dev/null || true
  stop_registry
  rm -rf "$WORK"
}
trap cleanup EXIT
start_registry "$WORK/registry"
IMAGE_CACHE=$(rbase_image)
"$BIN/lazyctl" convert "oci:$IMAGE_CACHE:latest" "$REGISTRY/r-base:lazy" --insecure "$REGISTRY" >/dev/null
umoci raw unpack --image "$IMAGE_CACHE:latest" "$WORK/native" 2>/dev/null

# lazyfsd with a given passthrough setting and read-ahead, and the overlay
# of the image at $WORK/merged; the cache dir is kept across restarts, so
# after the first start the chunk cache is warm.
start_daemon() {
  start_lazyfsd "passthrough = $1
read_ahead = \"$2\""
  overlay_of r-base:lazy "$WORK/merged" >/dev/null
}
stop_daemon() {
  umount "$WORK/merged"
  kill "$DAEMON_PID"; wait "$DAEMON_PID" 2>/dev/null || true
  DAEMON_PID=
}
SOCK=$WORK/lazyfsd.sock
start_daemon false 128K
stat_json() { "$BIN/lazyctl" cache stats --json --socket "$SOCK"; }
field() { python3 -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }
now() { date +%s.%N; }
elapsed() { echo "$2 - $1" | bc -l; }
drop() { sync; echo 3 >/proc/sys/vm/drop_caches; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

# Cold: R's startup libraries.
STARTUP=()
for f in usr/lib/R/lib/libR.so usr/lib/R/bin/exec/R usr/lib/R/library/base/R/base.rdb usr/lib/R/library/stats/libs/stats.so; do
  [ -f "$WORK/native/$f" ] && [ ! -L "$WORK/native/$f" ] && STARTUP+=("$f")
done
STARTUP_BYTES=0
for f in "${STARTUP[@]}"; do STARTUP_BYTES=$((STARTUP_BYTES + $(stat -c %s "$WORK/native/$f"))); done
before=$(stat_json)
for f in "${STARTUP[@]}"; do cat "$WORK/merged/$f" >/dev/null; done
after=$(stat_json)
COLD_BYTES=$(( $(echo "$after" | field fetched_bytes) - $(echo "$before" | field fetched_bytes) ))
COLD_REQS=$(( $(echo "$after" | field requests) - $(echo "$before" | field requests) ))

# Big files (≥ 1 MiB), read fully once to warm the chunk cache.
mapfile -t BIG < <(cd "$WORK/native" && find . -type f -size +1M | sort)
BIG_BYTES=0
for f in "${BIG[@]}"; do BIG_BYTES=$((BIG_BYTES + $(stat -c %s "$WORK/native/$f"))); cat "$WORK/merged/$f" >/dev/null; done

# Small files (4 KiB – 256 KiB: one chunk each), read whole.
mapfile -t SMALL < <(cd "$WORK/native" && find . -type f -size +4k -size -256k | sort | head -3000)
SMALL_BYTES=0
for f in "${SMALL[@]}"; do SMALL_BYTES=$((SMALL_BYTES + $(stat -c %s "$WORK/native/$f"))); cat "$WORK/merged/$f" >/dev/null; done
small_read() { local root=$1; drop; local t0; t0=$(now); (cd "$root" && cat "${SMALL[@]}" >/dev/null); elapsed "$t0" "$(now)"; }

seq_read() { local root=$1; drop; local t0; t0=$(now); for f in "${BIG[@]}"; do cat "$root/$f" >/dev/null; done; elapsed "$t0" "$(now)"; }
rand_read() {
  drop
  python3 - "$1" "${BIG[@]}" <<'PY'
import os, random, sys, time
root, files = sys.argv[1], sys.argv[2:]
fds = [(os.open(os.path.join(root, f), os.O_RDONLY), os.path.getsize(os.path.join(root, f))) for f in files]
rng = random.Random(7)
t0 = time.time()
for _ in range(20000):
    fd, size = fds[rng.randrange(len(fds))]
    os.pread(fd, 4096, rng.randrange(0, max(1, size - 4096)) & ~4095)
print(time.time() - t0)
PY
}
# find lists names without a stat (d_type tells it directories); with
# -printf %s it lstat()s every entry.
list_walk() { drop; local t0; t0=$(now); find "$1" -printf '' ; elapsed "$t0" "$(now)"; }
stat_walk() { drop; local t0; t0=$(now); find "$1" -printf '%s\n' >/dev/null; elapsed "$t0" "$(now)"; }

# With passthrough, opening a fully cached multi-chunk file queues its
# whole-file copy for passthrough; wait (bounded) for the copies, so that
# the timed reads see a warm host's steady state. The cache dir outlives
# restarts: the first passthrough setup makes them, later ones find them.
make_copies() {
  local t0; t0=$(now)
  for f in "${BIG[@]}"; do : <"$WORK/merged/$f"; done
  for _ in $(seq 1200); do [ "$(stat_json | field assembly_queue)" = 0 ] && break; sleep 0.5; done
  [ -n "${COPY_SECS:-}" ] || COPY_SECS=$(elapsed "$t0" "$(now)")
  COPIES=$(stat_json | field copies)
  COPY_MIB=$(( $(stat_json | field copy_bytes) / 1048576 ))
}

# The lazy side in three setups: through lazyfsd (no passthrough), with
# passthrough (single-chunk files read by the kernel from the cache), and
# with a 1 MiB read-ahead on top.
CONFIGS=("false 128K" "true 128K" "true 1M")
NAMES=("lazyfs" "lazyfs+passthrough" "lazyfs+passthrough, read-ahead 1M")
declare -A T
stop_daemon
for c in "${!CONFIGS[@]}"; do
  start_daemon ${CONFIGS[$c]}
  [ "$c" != 0 ] && make_copies
  for run in $(seq "$RUNS"); do
    [ "$c" = 0 ] && T[seq_native]+="$(seq_read "$WORK/native") "
    T[seq_$c]+="$(seq_read "$WORK/merged") "
    [ "$c" = 0 ] && T[rand_native]+="$(rand_read "$WORK/native") "
    T[rand_$c]+="$(rand_read "$WORK/merged") "
    [ "$c" = 0 ] && T[small_native]+="$(small_read "$WORK/native") "
    T[small_$c]+="$(small_read "$WORK/merged") "
    [ "$c" = 0 ] && T[list_native]+="$(list_walk "$WORK/native") "
    T[list_$c]+="$(list_walk "$WORK/merged") "
    [ "$c" = 0 ] && T[walk_native]+="$(stat_walk "$WORK/native") "
    T[walk_$c]+="$(stat_walk "$WORK/merged") "
  done
  if [ "$c" = 0 ]; then RSS_KB=$(awk '/VmRSS/ {print $2}' "/proc/$DAEMON_PID/status"); fi
  stop_daemon
done
m() { echo "${T[$1]}" | tr ' ' '\n' | grep . | median; }
ENTRIES=$(find "$WORK/native" | wc -l)
MIB=$((BIG_BYTES / 1048576))

{
  echo "# lazyfsd benchmark — $(date -u +%Y-%m-%dT%H:%MZ)"
  echo
  echo "Image: r-base-like (bench/convert.sh), $ENTRIES entries, 512K chunks, local docker-registry on 127.0.0.1 (no WAN emulation yet)."
  echo "Binaries: $BIN (git $(git rev-parse --short HEAD 2>/dev/null || echo unknown) checked out)."
  echo "lazyfs side: overlay of the lazy layers (lazyfsd FUSE lower dirs); native side: umoci-unpacked tree on the same disk."
  echo "Page caches dropped before every timed step; chunk cache warm for the cached steps; $RUNS runs, median. Load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)."
  echo "Without passthrough every read goes through lazyfsd. With passthrough the kernel reads single-chunk files (≤ 512 KiB here) from their chunk file, and multi-chunk files from a whole-file copy the cache makes once all their chunks are cached: $COPIES copies, $COPY_MIB MiB, made in $(printf %.1f "$COPY_SECS") s after their first open (before the timed runs)."
  echo
  echo "| what | setup | native | lazyfs | lazyfs / native |"
  echo "|---|---|---|---|---|"
  for c in "${!CONFIGS[@]}"; do
    printf "| sequential read, %d big files, %d MiB (MiB/s) | %s | %.0f | %.0f | %.2f |\n" "${#BIG[@]}" "$MIB" "${NAMES[$c]}" \
      "$(echo "$MIB / $(m seq_native)" | bc -l)" "$(echo "$MIB / $(m seq_$c)" | bc -l)" "$(echo "$(m seq_native) / $(m seq_$c)" | bc -l)"
  done
  for c in "${!CONFIGS[@]}"; do
    printf "| 20000 random 4 KiB reads (s) | %s | %.2f | %.2f | %.2f× time |\n" "${NAMES[$c]}" "$(m rand_native)" "$(m rand_$c)" "$(echo "$(m rand_$c) / $(m rand_native)" | bc -l)"
  done
  for c in "${!CONFIGS[@]}"; do
    printf "| %d small files whole, %d MiB (s) | %s | %.2f | %.2f | %.2f× time |\n" "${#SMALL[@]}" "$((SMALL_BYTES / 1048576))" "${NAMES[$c]}" "$(m small_native)" "$(m small_$c)" "$(echo "$(m small_$c) / $(m small_native)" | bc -l)"
  done
  for c in "${!CONFIGS[@]}"; do
    printf "| listing walk of %d entries, names only (s) | %s | %.2f | %.2f | %.2f× time |\n" "$ENTRIES" "${NAMES[$c]}" "$(m list_native)" "$(m list_$c)" "$(echo "$(m list_$c) / $(m list_native)" | bc -l)"
  done
  for c in "${!CONFIGS[@]}"; do
    printf "| stat walk of %d entries, lstat each (s) | %s | %.2f | %.2f | %.2f× time |\n" "$ENTRIES" "${NAMES[$c]}" "$(m walk_native)" "$(m walk_$c)" "$(echo "$(m walk_$c) / $(m walk_native)" | bc -l)"
  done
  echo
  echo "Cold read of R's startup libraries (${STARTUP[*]}): $((STARTUP_BYTES / 1024)) KiB of files → $((COLD_BYTES / 1024)) KiB fetched in $COLD_REQS range requests."
  echo
  echo "lazyfsd resident memory with the image attached, after the runs: $((RSS_KB / 1024)) MiB (VmRSS)."
} | tee "$RESULTS/fuse-$(date -u +%Y%m%d-%H%M).md"
