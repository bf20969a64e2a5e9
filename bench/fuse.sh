#!/usr/bin/env bash
# lazyfsd benchmark (not a test). On the r-base-like image (see convert.sh),
# side by side in one run:
#   - cold: bytes fetched and range requests to read a file set (R's startup libraries)
#   - cached sequential read of the big files: lazyfs overlay vs the unpacked tree on local disk
#   - random 4 KiB reads over the same files
#   - stat walk of every entry: lazyfs overlay vs local disk
#   - lazyfsd resident memory with the image attached
# Page caches are dropped before each timed step. Run as root.
#
#   bench/fuse.sh [RUNS]        default 3; results in bench/results/
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/registry.sh
. scripts/build-image.sh
RUNS=${1:-3}
RESULTS=bench/results
mkdir -p "$RESULTS"

scripts/install-deps
cargo build --release --quiet --bin lazyctl --bin lazyfsd
BIN=$PWD/target/release

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
IMAGE_CACHE=/var/cache/lazyfs/rbase-oci
if [ ! -f "$IMAGE_CACHE/index.json" ]; then
  build_debian_image "/var/cache/lazyfs/debootstrap-$DEBIAN_SUITE" "$IMAGE_CACHE" latest \
    r-base-core r-base-dev r-recommended littler ed less locales vim-tiny wget ca-certificates
fi
"$BIN/lazyctl" convert "oci:$IMAGE_CACHE:latest" "$REGISTRY/r-base:lazy" --insecure "$REGISTRY" >/dev/null
umoci raw unpack --image "$IMAGE_CACHE:latest" "$WORK/native" 2>/dev/null

cat >"$WORK/config.toml" <<TOML
cache_dir = "$WORK/cache"
mountpoint = "$WORK/mnt"
socket = "$WORK/lazyfsd.sock"
quota = "20G"
[registry]
insecure = ["$REGISTRY"]
TOML
"$BIN/lazyfsd" --config "$WORK/config.toml" --notify-stdout >"$WORK/ready" 2>"$WORK/lazyfsd.log" &
DAEMON_PID=$!
for _ in $(seq 300); do grep -q READY "$WORK/ready" 2>/dev/null && break; sleep 0.1; done
grep -q READY "$WORK/ready" || { echo "lazyfsd did not start"; cat "$WORK/lazyfsd.log"; exit 1; }
SOCK=$WORK/lazyfsd.sock
mapfile -t LAYERS < <("$BIN/lazyctl" attach --socket "$SOCK" --prefetch none "$REGISTRY/r-base:lazy")
[ ${#LAYERS[@]} -gt 0 ] || { echo "attach failed"; exit 1; }
LOWER=""
for ((i=${#LAYERS[@]}-1; i>=0; i--)); do LOWER+="${LAYERS[$i]//:/\\:}:"; done
mkdir -p "$WORK/upper" "$WORK/work" "$WORK/merged"
mount -t overlay overlay -o "lowerdir=${LOWER%:},upperdir=$WORK/upper,workdir=$WORK/work" "$WORK/merged"
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
stat_walk() { drop; local t0; t0=$(now); find "$1" -printf '' ; elapsed "$t0" "$(now)"; }

declare -A T
for run in $(seq "$RUNS"); do
  T[seq_native]+="$(seq_read "$WORK/native") "; T[seq_lazy]+="$(seq_read "$WORK/merged") "
  T[rand_native]+="$(rand_read "$WORK/native") "; T[rand_lazy]+="$(rand_read "$WORK/merged") "
  T[walk_native]+="$(stat_walk "$WORK/native") "; T[walk_lazy]+="$(stat_walk "$WORK/merged") "
done
m() { echo "${T[$1]}" | tr ' ' '\n' | grep . | median; }
RSS_KB=$(awk '/VmRSS/ {print $2}' "/proc/$DAEMON_PID/status")
ENTRIES=$(find "$WORK/native" | wc -l)
MIB=$((BIG_BYTES / 1048576))

{
  echo "# lazyfsd benchmark — $(date -u +%Y-%m-%dT%H:%MZ)"
  echo
  echo "Image: r-base-like (bench/convert.sh), $ENTRIES entries, 512K chunks, local docker-registry on 127.0.0.1 (no WAN emulation yet)."
  echo "lazyfs side: overlay of the lazy layers (lazyfsd FUSE lower dirs); native side: umoci-unpacked tree on the same disk."
  echo "Page caches dropped before every timed step; chunk cache warm for the cached steps; $RUNS runs, median. FUSE passthrough: off (experimental option fails with EIO on this kernel)."
  echo
  echo "| what | native | lazyfs | lazyfs / native |"
  echo "|---|---|---|---|"
  printf "| sequential read, %d big files, %d MiB (MiB/s) | %.0f | %.0f | %.2f |\n" "${#BIG[@]}" "$MIB" \
    "$(echo "$MIB / $(m seq_native)" | bc -l)" "$(echo "$MIB / $(m seq_lazy)" | bc -l)" "$(echo "$(m seq_native) / $(m seq_lazy)" | bc -l)"
  printf "| 20000 random 4 KiB reads (s) | %.2f | %.2f | %.2f× time |\n" "$(m rand_native)" "$(m rand_lazy)" "$(echo "$(m rand_lazy) / $(m rand_native)" | bc -l)"
  printf "| stat walk of %d entries (s) | %.2f | %.2f | %.2f× time |\n" "$ENTRIES" "$(m walk_native)" "$(m walk_lazy)" "$(echo "$(m walk_lazy) / $(m walk_native)" | bc -l)"
  echo
  echo "Cold read of R's startup libraries (${STARTUP[*]}): $((STARTUP_BYTES / 1024)) KiB of files → $((COLD_BYTES / 1024)) KiB fetched in $COLD_REQS range requests."
  echo
  echo "lazyfsd resident memory with the image attached, after the runs: $((RSS_KB / 1024)) MiB (VmRSS)."
} | tee "$RESULTS/fuse-$(date -u +%Y%m%d-%H%M).md"
