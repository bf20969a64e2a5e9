#!/usr/bin/env bash
# Where the time of a directory walk goes (benchmark, not a test). On the
# r-base-like image, chunk cache warm, page caches dropped before each walk,
# interleaved runs, side by side:
#   - native: the umoci-unpacked tree on local disk
#   - native overlay: overlayfs with that tree as its one lower dir (how
#     lazyrun-wan.sh runs the fully pulled image)
#   - overlay over the image's two lazy layers (what lazyrun mounts)
#   - overlay over one lazy layer holding the same tree flattened (what a
#     merged per-image view served by lazyfsd would give overlayfs)
#   - the flattened lazy layer's FUSE directory itself, no overlay
#   - composefs-style: an EROFS image of the tree's metadata (files empty,
#     with overlay metacopy + redirect xattrs; bench/walk/erofs-meta-tree.py)
#     as the lower dir and lazyfsd's mount as a data-only lower dir, so that
#     metadata never reaches FUSE (Linux >= 6.5)
# and the FUSE requests one walk sends, and the time inside them (the
# fuse:fuse_request_send/end tracepoints, if perf can record them; a walk
# under perf is itself slower). Run as root.
#
#   bench/walk-layers.sh [RUNS]     default 7; results in bench/results/
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/registry.sh
. scripts/build-image.sh
. bench/lazyfsd.sh
RUNS=${1:-7}
RESULTS=bench/results
mkdir -p "$RESULTS"

scripts/install-deps
command -v perf >/dev/null || apt-get install -y -qq linux-perf >/dev/null || true
command -v mkfs.erofs >/dev/null || apt-get install -y -qq erofs-utils >/dev/null
. scripts/rust-toolchain.sh
build_release lazyctl lazyfsd
BIN=$PWD/target/release
IMAGE=$(rbase_image)
FLAT=$LAZYFS_DEMO_CACHE/rbase-flat-oci

WORK=$(mktemp -d /var/tmp/lazyfs-walk-bench.XXXXXX)
DAEMON_PID=
cleanup() {
  for m in two one native-ov cfs cfs-meta; do umount -l "$WORK/$m" 2>/dev/null || true; done
  [ -n "$DAEMON_PID" ] && kill "$DAEMON_PID" 2>/dev/null && wait "$DAEMON_PID" 2>/dev/null || true
  umount -l "$WORK/mnt" 2>/dev/null || true
  stop_registry
  rm -rf "$WORK"
}
trap cleanup EXIT

# The same tree as one layer: unpack, copy into a fresh image, repack.
if [ ! -f "$FLAT/index.json" ]; then
  umoci unpack --image "$IMAGE:latest" "$WORK/full" >/dev/null
  rm -rf "$FLAT.partial"
  umoci init --layout "$FLAT.partial"
  umoci new --image "$FLAT.partial:latest"
  umoci unpack --image "$FLAT.partial:latest" "$WORK/flat" >/dev/null
  cp -a "$WORK/full/rootfs/." "$WORK/flat/rootfs/"
  umoci repack --image "$FLAT.partial:latest" "$WORK/flat" >/dev/null
  mv "$FLAT.partial" "$FLAT"
  rm -rf "$WORK/full" "$WORK/flat"
fi

start_registry "$WORK/registry"
"$BIN/lazyctl" convert "oci:$IMAGE:latest" "$REGISTRY/two:lazy" --insecure "$REGISTRY" >/dev/null
"$BIN/lazyctl" convert "oci:$FLAT:latest" "$REGISTRY/one:lazy" --insecure "$REGISTRY" >/dev/null
umoci raw unpack --image "$IMAGE:latest" "$WORK/native" 2>/dev/null

start_lazyfsd

mkdir -p "$WORK/native-ov" "$WORK/native-ov.upper" "$WORK/native-ov.work"
mount -t overlay overlay -o "lowerdir=$WORK/native,upperdir=$WORK/native-ov.upper,workdir=$WORK/native-ov.work" "$WORK/native-ov"
overlay_of two:lazy "$WORK/two" >/dev/null
FUSE_DIR=$(overlay_of one:lazy "$WORK/one")

# composefs-style: metadata from an EROFS image, data from the two lazy
# layers as a data-only lower dir.
mapfile -t TWO < <("$BIN/lazyctl" attach --socket "$WORK/lazyfsd.sock" --prefetch none "$REGISTRY/two:lazy")
TOP_FIRST=(); for ((i=${#TWO[@]}-1; i>=0; i--)); do TOP_FIRST+=("$(basename "${TWO[$i]}")"); done
mkdir "$WORK/meta"
t0=$(date +%s.%N)
META_FILES=$(python3 bench/walk/erofs-meta-tree.py "$WORK/native" "$WORK/meta" "$WORK/mnt" "${TOP_FIRST[@]}")
META_TREE_SECS=$(echo "$(date +%s.%N) - $t0" | bc -l)
t0=$(date +%s.%N)
mkfs.erofs --quiet -zlz4hc "$WORK/meta.erofs" "$WORK/meta" >/dev/null
MKFS_SECS=$(echo "$(date +%s.%N) - $t0" | bc -l)
mkdir -p "$WORK/cfs-meta" "$WORK/cfs" "$WORK/cfs.upper" "$WORK/cfs.work"
mount -t erofs -o loop,ro "$WORK/meta.erofs" "$WORK/cfs-meta"
mount -t overlay overlay -o "lowerdir=$WORK/cfs-meta::$WORK/mnt,upperdir=$WORK/cfs.upper,workdir=$WORK/cfs.work,metacopy=on,redirect_dir=on" "$WORK/cfs"
for f in usr/lib/R/lib/libR.so usr/bin/bash etc/passwd; do
  cmp -s "$WORK/cfs/$f" "$WORK/native/$f" || { echo "composefs-style overlay reads $f wrong" >&2; exit 1; }
done

declare -A ROOT=([native]="$WORK/native" [native_ov]="$WORK/native-ov" [two]="$WORK/two" [one]="$WORK/one" [fuse]="$FUSE_DIR" [cfs]="$WORK/cfs")
SETUPS=(native native_ov two one fuse cfs)
declare -A NAME=([native]="native (local disk)" [native_ov]="native overlay (1 local lower)" [two]="overlay, 2 lazy layers (lazyrun today)" \
  [one]="overlay, 1 lazy layer (merged view)" [fuse]="lazy layer dir, no overlay" \
  [cfs]="overlay, EROFS metadata + lazy layers data-only (composefs-style)")
listing() { (cd "$1" && find . | sort | md5sum); }
for s in native_ov two one fuse cfs; do
  [ "$(listing "${ROOT[$s]}")" = "$(listing "${ROOT[native]}")" ] || { echo "$s lists a different tree" >&2; exit 1; }
done

drop() { sync; echo 3 >/proc/sys/vm/drop_caches; }
# Two walks: names only (find needs no stat: d_type tells it directories),
# and a stat walk (find -printf %s: an lstat of every entry).
declare -A FORMAT=([list]="" [stat]="%s\n")
declare -A WALK_NAME=([list]="Listing walk (find DIR: names only)" [stat]="Stat walk (find DIR -printf %s: an lstat of every entry)")
walk() { drop; local t0; t0=$(date +%s.%N); find "$2" -printf "${FORMAT[$1]}" >/dev/null; echo "$(date +%s.%N) - $t0" | bc -l; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
declare -A T
for _ in $(seq "$RUNS"); do
  for k in list stat; do
    for s in "${SETUPS[@]}"; do T[$k/$s]+="$(walk "$k" "${ROOT[$s]}") "; done
  done
done
m() { echo "${T[$1]}" | tr ' ' '\n' | grep . | median; }
range() { echo "${T[$1]}" | tr ' ' '\n' | grep . | sort -n | sed -n '1p;$p' | xargs printf '%.2f–%.2f'; }

# FUSE requests per walk, by opcode, and the time spent inside them
# (send to end, summed).
requests() {
  perf list 2>/dev/null | grep 'fuse:fuse_request_send' >/dev/null || { echo "(perf cannot record fuse:fuse_request_send here)"; return; }
  drop
  perf record -q -o "$WORK/perf.data" -e fuse:fuse_request_send -e fuse:fuse_request_end -a -- \
    sh -c 'find "$1" -printf "$2" >/dev/null' - "$2" "${FORMAT[$1]}" 2>/dev/null
  perf script -i "$WORK/perf.data" -F time,event,trace 2>/dev/null | python3 -c '
import collections, re, sys
sent, count, inside = {}, collections.Counter(), 0.0
for line in sys.stdin:
    m = re.match(r"\s*([\d.]+):\s+fuse:fuse_request_(send|end): connection \d+ req (\d+)(?: opcode \d+ \((\w+)\))?", line)
    if not m:
        continue
    t, kind, req, op = float(m[1]), m[2], m[3], m[4]
    if kind == "send":
        sent[req] = t
        count[op] += 1
    elif req in sent:
        inside += t - sent.pop(req)
ops = ", ".join(f"{n} {op[5:]}" for op, n in sorted(count.items())) or "none"
print(f"{ops}; {inside:.3f} s inside requests")'
}

{
  echo "# Directory walks by layering — $(date -u +%Y-%m-%dT%H:%MZ)"
  echo
  echo "Image: r-base-like, $(find "$WORK/native" | wc -l) entries, $(find "$WORK/native" -type d | wc -l) directories; chunk cache warm; page caches dropped before every walk; $RUNS interleaved runs, median (min–max). Every setup lists the same tree (checked). The FUSE requests are counted in one more walk under perf."
  echo
  echo "composefs-style setup: metadata tree of $META_FILES files built in $(printf %.1f "$META_TREE_SECS") s (Python), EROFS image $(du -h "$WORK/meta.erofs" | cut -f1) in $(printf %.1f "$MKFS_SECS") s (mkfs.erofs, file data as lz4hc zeros); some files read back through it checked."
  for k in list stat; do
    echo
    echo "${WALK_NAME[$k]}:"
    echo
    echo "| setup | walk (s) | / native | / native overlay | FUSE requests in one walk |"
    echo "|---|---|---|---|---|"
    for s in "${SETUPS[@]}"; do
      reqs="—"; [ "${s#native}" = "$s" ] && reqs=$(requests "$k" "${ROOT[$s]}")
      printf "| %s | %.2f (%s) | %.2f× | %.2f× | %s |\n" "${NAME[$s]}" "$(m "$k/$s")" "$(range "$k/$s")" \
        "$(echo "$(m "$k/$s") / $(m "$k/native")" | bc -l)" "$(echo "$(m "$k/$s") / $(m "$k/native_ov")" | bc -l)" "$reqs"
    done
  done
} | tee "$RESULTS/walk-layers-$(date -u +%Y%m%d-%H%M).md"
