#!/usr/bin/env bash
# Conversion benchmark (not a test). Builds an r-base-like image (~1 GB
# unpacked) from Debian packages the way Docker Hub's r-base Dockerfile does
# (debootstrap, then apt-get install r-base r-base-dev r-recommended littler),
# pushes it to a local docker-registry and, in the same run, times:
#   full pull:  skopeo copy docker://… oci:…  +  umoci raw unpack
#   lazyctl convert (registry → registry), for each chunk size
# and reports sizes, metadata share per layer and dedup. Run as root.
#
#   bench/convert.sh [RUNS]        default 3 runs each; results in bench/results/
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/registry.sh
. scripts/build-image.sh
RUNS=${1:-3}
CHUNK_SIZES=${CHUNK_SIZES:-"256K 512K 1M"}
RESULTS=bench/results
mkdir -p "$RESULTS"

scripts/install-deps
. scripts/rust-toolchain.sh
build_release lazyctl
LAZYCTL=$PWD/target/release/lazyctl

WORK=$(mktemp -d /var/tmp/lazyfs-bench.XXXXXX)
trap 'stop_registry; rm -rf "$WORK"' EXIT
start_registry "$WORK/registry"
IMAGE_CACHE=$(rbase_image)
skopeo copy --quiet --dest-tls-verify=false "oci:$IMAGE_CACHE:latest" "docker://$REGISTRY/r-base:latest"
SRC=$REGISTRY/r-base:latest

now() { date +%s.%N; }
elapsed() { echo "$2 - $1" | bc -l; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
minmax() { sort -n | awk 'NR==1{min=$1} {max=$1} END {printf "%.2f–%.2f", min, max}'; }

declare -A T
for run in $(seq "$RUNS"); do
  rm -rf "$WORK/pull" "$WORK/rootfs"
  sync; echo 3 >/proc/sys/vm/drop_caches
  t0=$(now)
  skopeo copy --quiet --src-tls-verify=false "docker://$SRC" "oci:$WORK/pull:latest"
  umoci raw unpack --image "$WORK/pull:latest" "$WORK/rootfs" 2>/dev/null
  T[pull]+="$(elapsed "$t0" "$(now)") "
  for cs in $CHUNK_SIZES; do
    sync; echo 3 >/proc/sys/vm/drop_caches
    t0=$(now)
    "$LAZYCTL" convert --insecure "$REGISTRY" --chunk-size "$cs" "$SRC" "$REGISTRY/r-base-lazy-${cs,,}-$run:latest" >/dev/null
    T[$cs]+="$(elapsed "$t0" "$(now)") "
  done
done
UNPACKED=$(du -sb --apparent-size "$WORK/rootfs" | cut -f1)

{
  echo "# Conversion benchmark — $(date -u +%Y-%m-%dT%H:%MZ)"
  echo
  echo "Image: r-base-like, Debian $DEBIAN_SUITE (debootstrap minbase + r-base-core r-base-dev r-recommended littler …)"
  echo "Unpacked size: $((UNPACKED / 1048576)) MiB. Machine: $(nproc) cores. Registry: local docker-registry on 127.0.0.1. Runs: $RUNS, page cache dropped before each."
  echo
  echo "| what | median s | min–max s | vs full pull |"
  echo "|---|---|---|---|"
  pull_median=$(echo "${T[pull]}" | tr ' ' '\n' | grep . | median)
  echo "| skopeo copy + umoci raw unpack (full pull) | $(printf %.2f "$pull_median") | $(echo "${T[pull]}" | tr ' ' '\n' | grep . | minmax) | 1.00 |"
  for cs in $CHUNK_SIZES; do
    m=$(echo "${T[$cs]}" | tr ' ' '\n' | grep . | median)
    echo "| lazyctl convert --chunk-size $cs | $(printf %.2f "$m") | $(echo "${T[$cs]}" | tr ' ' '\n' | grep . | minmax) | $(printf %.2f "$(echo "$m / $pull_median" | bc -l)") |"
  done
  echo
  for cs in $CHUNK_SIZES; do
    echo "## lazyctl inspect (chunk size $cs)"
    echo
    echo '```'
    "$LAZYCTL" inspect --insecure "$REGISTRY" "$REGISTRY/r-base-lazy-${cs,,}-1:latest"
    echo '```'
    echo
  done
  echo "Source image layers (compressed):"
  echo
  echo '```'
  skopeo inspect --raw --tls-verify=false "docker://$SRC" \
    | python3 -c 'import json,sys; m=json.load(sys.stdin); [print(l["digest"][:19], l["size"]) for l in m["layers"]]; print("total", sum(l["size"] for l in m["layers"]))'
  echo '```'
} | tee "$RESULTS/convert-$(date -u +%Y%m%d-%H%M).md"
