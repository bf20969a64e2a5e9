#!/usr/bin/env bash
# Cold read latency of lazyfsd over the emulated WAN (bench/wan), not a test.
# For each link profile: a fresh lazyfsd (empty cache, prefetch none) attaches
# the r-base-like lazy image, then N randomly chosen files of the image are
# read one after another through an overlay of its layers, 4 KiB at offset 0
# (a cold first read: one chunk fetch), page cache dropped first. Reports
# p50/p90/p99/max latency, bytes fetched and range requests.
#
#   bench/fuse-wan.sh [N]      default 300 files; results in bench/results/fuse-wan-<date>.md
#
# Uses release binaries ($LAZYFS_BIN, default target/release, built if absent).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
N=${1:-300}
[[ $N =~ ^[1-9][0-9]{0,3}$ ]] || { echo "usage: $0 [N 1-9999]" >&2; exit 2; }
BIN=${LAZYFS_BIN:-$ROOT/target/release}
REG=10.77.1.2:5000
NS_CLI=/run/netns/lzwan-cli
WAN=$ROOT/bench/wan/wan.sh
[ "$(id -u)" -eq 0 ] || { echo "run as root" >&2; exit 1; }
. scripts/build-image.sh
. scripts/rust-toolchain.sh
scripts/install-deps
IMAGE_OCI=$(rbase_image)
if [ ! -x "$BIN/lazyfsd" ]; then build_release lazyctl lazyfsd; fi
bench/wan/install-deps.sh >/dev/null

WORK=$(mktemp -d /var/tmp/fuse-wan.XXXXXX)
DAEMON_PID= REG_PID=
stop_pid() { [ -n "$1" ] && kill "$1" 2>/dev/null && wait "$1" 2>/dev/null || true; }
cleanup() {
  set +e
  umount "$WORK/merged" 2>/dev/null
  stop_pid "$DAEMON_PID"; umount -l "$WORK/mnt" 2>/dev/null
  stop_pid "$REG_PID"
  "$WAN" down >/dev/null 2>&1
  rm -rf "$WORK"
}
trap cleanup EXIT
in_cli() { nsenter --net="$NS_CLI" "$@"; }

start_registry() {
  mkdir -p "$WORK/registry/storage"
  cat >"$WORK/registry/config.yml" <<YML
version: 0.1
log: { level: warn }
storage: { filesystem: { rootdirectory: $WORK/registry/storage } }
http: { addr: $REG }
YML
  ip netns exec lzwan-reg docker-registry serve "$WORK/registry/config.yml" >>"$WORK/registry/log" 2>&1 &
  REG_PID=$!
  for _ in $(seq 100); do in_cli curl -fsS "http://$REG/v2/" >/dev/null 2>&1 && return; sleep 0.1; done
  echo "docker-registry did not start" >&2; exit 1
}
cat >"$WORK/config.toml" <<TOML
cache_dir = "$WORK/cache"
mountpoint = "$WORK/mnt"
socket = "$WORK/lazyfsd.sock"
prefetch = "none"
[registry]
insecure = ["$REG"]
TOML
start_daemon() {
  rm -rf "$WORK/cache"; mkdir -p "$WORK/mnt"; : >"$WORK/ready"
  nsenter --net="$NS_CLI" "$BIN/lazyfsd" --config "$WORK/config.toml" --notify-stdout >"$WORK/ready" 2>>"$WORK/lazyfsd.log" &
  DAEMON_PID=$!
  for _ in $(seq 150); do grep -q READY "$WORK/ready" 2>/dev/null && return; sleep 0.1; done
  echo "lazyfsd did not start" >&2; tail "$WORK/lazyfsd.log" >&2; exit 1
}
stat_field() { "$BIN/lazyctl" cache stats --json --socket "$WORK/lazyfsd.sock" | python3 -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }

# The image, once, at full speed.
"$WAN" up 1gbit 0ms >/dev/null
start_registry
in_cli "$BIN/lazyctl" convert --insecure "$REG" "oci:$IMAGE_OCI:latest" "$REG/r-base:lazy" >/dev/null
stop_pid "$REG_PID"

ROWS=()
for profile in "100mbit 20ms" "1gbit 10ms"; do
  # shellcheck disable=SC2086
  "$WAN" up $profile >/dev/null
  start_registry
  start_daemon
  mapfile -t LAYERS < <(in_cli "$BIN/lazyctl" attach --socket "$WORK/lazyfsd.sock" --prefetch none "$REG/r-base:lazy")
  LOWER=""
  for ((i=${#LAYERS[@]}-1; i>=0; i--)); do LOWER+="${LAYERS[$i]//:/\\:}:"; done
  rm -rf "$WORK/upper" "$WORK/work"; mkdir -p "$WORK/upper" "$WORK/work" "$WORK/merged"
  mount -t overlay overlay -o "lowerdir=${LOWER%:},upperdir=$WORK/upper,workdir=$WORK/work" "$WORK/merged"
  sync; echo 3 >/proc/sys/vm/drop_caches
  before_bytes=$(stat_field fetched_bytes); before_reqs=$(stat_field requests)
  LAT=$(python3 - "$WORK/merged" "$N" <<'PY'
import os, random, sys, time
root, n = sys.argv[1], int(sys.argv[2])
files = []
for d, _, names in os.walk(root):
    for name in names:
        p = os.path.join(d, name)
        if os.path.isfile(p) and not os.path.islink(p) and os.path.getsize(p) > 0:
            files.append(p)
files.sort()
picked = random.Random(7).sample(files, min(n, len(files)))
lat = []
for p in picked:
    t0 = time.perf_counter()
    fd = os.open(p, os.O_RDONLY)
    os.read(fd, 4096)
    os.close(fd)
    lat.append((time.perf_counter() - t0) * 1000)
lat.sort()
q = lambda f: lat[min(len(lat) - 1, int(f * len(lat)))]
print(f"{len(lat)} {q(0.5):.1f} {q(0.9):.1f} {q(0.99):.1f} {lat[-1]:.1f} {sum(lat)/len(lat):.1f}")
PY
)
  fetched=$(( $(stat_field fetched_bytes) - before_bytes )); reqs=$(( $(stat_field requests) - before_reqs ))
  read -r n p50 p90 p99 max mean <<<"$LAT"
  ROWS+=("| ${profile/ /, } RTT | $n | $p50 | $p90 | $p99 | $max | $mean | $((fetched / 1024)) KiB | $reqs |")
  umount "$WORK/merged"
  stop_pid "$DAEMON_PID"; DAEMON_PID=; stop_pid "$REG_PID"; REG_PID=
done

mkdir -p bench/results
{
  echo "# lazyfsd cold read latency over an emulated WAN — $(date -u +%Y-%m-%dT%H:%MZ)"
  echo
  echo "r-base-like lazy image (512K chunks), registry behind bench/wan; fresh lazyfsd, empty cache, prefetch none;"
  echo "$N files picked at random (seed 7), each opened and read 4 KiB at offset 0 through an overlay of the lazy layers, one after another, page cache dropped first."
  echo "Load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)."
  echo
  echo "| link | reads | p50 ms | p90 ms | p99 ms | max ms | mean ms | fetched | range requests |"
  echo "|---|---|---|---|---|---|---|---|---|"
  printf '%s\n' "${ROWS[@]}"
} | tee "bench/results/fuse-wan-$(date -u +%Y%m%d-%H%M).md"
