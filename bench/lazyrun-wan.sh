#!/usr/bin/env bash
# Headline benchmark (not a test): `Rscript -e 'sessionInfo()'` in a container
# of the r-base-like image over an emulated WAN (bench/wan), side by side in
# one run, per link profile (100 Mbit / 20 ms RTT, 1 Gbit / 10 ms RTT):
#   - lazyrun, cold (fresh lazyfsd, empty cache, page cache dropped), with the
#     image's prefetch record and with --prefetch none: time to the first
#     output line, total time, bytes fetched, range requests;
#   - full pull: skopeo copy + umoci raw unpack, then the command in a chroot;
#     and curl blob | pigz -dc | tar -x, then the chroot (time from the start
#     of the pull to the first output line);
#   - variants: chunk size 256K / 1M (separate tags), read_ahead 512K / 1M;
#   - warm: image in lazyfsd's cache, a new container, vs the same command in
#     a native overlay (lowerdir = the unpacked image) + chroot.
# The registry (Debian docker-registry) runs in lzwan-reg; lazyfsd, lazyrun,
# skopeo and curl run in lzwan-cli's network namespace but in the host's mount
# namespace (nsenter --net), so FUSE and overlay mounts see each other.
# Run as root. Uses the binaries in $LAZYFS_BIN (default target/release, built
# with cargo there).
#
#   bench/lazyrun-wan.sh [RUNS]       default 3; results in bench/results/lazyrun-wan-<date>.md
#
# Environment: LZB_PROFILES="100mbit:20ms 1gbit:10ms", LZB_VARIANTS=1 (0: skip
# the variants), LZB_PULLS=1 (0: skip the full pulls), LZB_WARM=1 (0: skip
# the warm phase), LZB_MAX_SECONDS=3600 (variants/warm are skipped once past
# it), LZB_KEEP=1 (keep the work dir with logs). All lazy configurations and
# the pulls run once per run in turn (interleaved), per profile.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
RUNS=${1:-3}
[[ $RUNS =~ ^[1-9][0-9]?$ ]] || { echo "usage: $0 [RUNS 1-99]" >&2; exit 2; }
PROFILES=${LZB_PROFILES:-"100mbit:20ms 1gbit:10ms"}
VARIANTS=${LZB_VARIANTS:-1}
PULLS=${LZB_PULLS:-1}
WARM=${LZB_WARM:-1}
DEADLINE=$((SECONDS + ${LZB_MAX_SECONDS:-3600}))
BIN=${LAZYFS_BIN:-$ROOT/target/release}
REG=10.77.1.2:5000
NS_CLI=/run/netns/lzwan-cli NS_RT=/run/netns/lzwan-rt
WAN=$ROOT/bench/wan/wan.sh
HELPER=$ROOT/bench/lazyrun-wan.py
RESULTS=$ROOT/bench/results
CMD=(Rscript -e 'sessionInfo()')
STEP_TIMEOUT=300   # seconds, any one timed command

[ "$(id -u)" -eq 0 ] || { echo "run as root" >&2; exit 1; }
scripts/install-deps
bench/wan/install-deps.sh
for t in skopeo umoci pigz docker-registry curl jq nsenter unshare python3 tc; do
  command -v "$t" >/dev/null || { echo "missing $t" >&2; exit 1; }
done
. scripts/build-image.sh
. scripts/rust-toolchain.sh
IMAGE_OCI=$(rbase_image)
[ -n "${LAZYFS_BIN:-}" ] || build_release lazyctl lazyfsd lazyrun
mkdir -p "$RESULTS"

WORK=$(mktemp -d /var/tmp/lazyrun-wan.XXXXXX)
REG_PID= DAEMON_PID=
log() { echo "[$(date +%H:%M:%S) +${SECONDS}s] $*" >&2; }

stop_pid() {   # PID COMM: TERM, wait ≤ 15 s, then KILL; only if it is still COMM
  local pid=$1 comm=$2 i
  [ -n "$pid" ] && [ -r "/proc/$pid/comm" ] || return 0
  if [ "$(cat "/proc/$pid/comm")" != "$comm" ]; then log "warning: PID $pid is $(cat "/proc/$pid/comm"), not $comm: not stopped"; return 0; fi
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 150); do [ -d "/proc/$pid" ] || break; sleep 0.1; done
  if [ -d "/proc/$pid" ]; then log "warning: $comm ($pid) ignored SIGTERM for 15 s; SIGKILL"; kill -KILL "$pid" 2>/dev/null || true; fi
  wait "$pid" 2>/dev/null || true
}
stop_daemon() {
  stop_pid "$DAEMON_PID" lazyfsd; DAEMON_PID=
  if mountpoint -q "$WORK/mnt" 2>/dev/null; then
    log "warning: $WORK/mnt still mounted after lazyfsd stopped"; echo "mnt-left-mounted" >>"$WORK/oddities"
    umount -l "$WORK/mnt" || true
  fi
}
stop_registry() { stop_pid "$REG_PID" docker-registry; REG_PID=; }
cleanup() {
  set +e
  stop_daemon
  for m in $(awk -v w="$WORK" 'index($2, w) == 1 {print $2}' /proc/mounts | sort -r); do umount -l "$m"; done
  stop_registry
  "$WAN" down >/dev/null 2>&1
  if [ "${LZB_KEEP:-0}" = 1 ]; then log "work dir kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

in_cli() { nsenter --net="$NS_CLI" "$@"; }
drop_caches() { sync; echo 3 >/proc/sys/vm/drop_caches; }
wire_bytes() { nsenter --net="$NS_RT" tc -s qdisc show dev rt-cli | awk '/Sent/ {print $2; exit}'; }
reg_206() { grep -c '"GET [^"]*/blobs/[^"]*" 206 ' "$WORK/registry/registry.log" || true; }
cpu_ticks() { awk '/^cpu / {print $2+$3+$4+$6+$7+$8, $5}' /proc/stat; }   # busy idle
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

start_registry() {
  mkdir -p "$WORK/registry/storage"
  cat >"$WORK/registry/config.yml" <<YML
version: 0.1
log: { level: warn, accesslog: { disabled: false } }
storage:
  filesystem: { rootdirectory: $WORK/registry/storage }
  delete: { enabled: true }
http: { addr: $REG }
YML
  ip netns exec lzwan-reg docker-registry serve "$WORK/registry/config.yml" >>"$WORK/registry/registry.log" 2>&1 &
  REG_PID=$!
  for _ in $(seq 100); do
    in_cli curl -fsS "http://$REG/v2/" >/dev/null 2>&1 && return 0
    kill -0 "$REG_PID" 2>/dev/null || break
    sleep 0.1
  done
  echo "docker-registry did not start; see $WORK/registry/registry.log" >&2; tail -5 "$WORK/registry/registry.log" >&2
  exit 1
}
wan_up() {   # RATE RTT
  stop_daemon; stop_registry
  "$WAN" up "$1" "$2" >&2
  start_registry
}

# lazyfsd configs: default (read_ahead 128K) and the read-ahead variants.
write_config() {   # NAME READ_AHEAD
  cat >"$WORK/$1.toml" <<TOML
cache_dir = "$WORK/cache"
mountpoint = "$WORK/mnt"
socket = "$WORK/lazyfsd.sock"
log_file = "$WORK/lazyfsd-daemon.log"
quota = "20G"
read_ahead = "$2"
prefetch = "record"
[registry]
insecure = ["$REG"]
[run]
default_registry = "$REG"
containers_dir = "$WORK/containers"
TOML
}
write_config ra128k 128K; write_config ra512k 512K; write_config ra1m 1M

start_daemon() {   # CONFIG-NAME; fresh: empty cache
  stop_daemon
  rm -rf "$WORK/cache" "$WORK/containers"; mkdir -p "$WORK/mnt"
  echo "=== lazyfsd --config $1 ($(date +%T))" >>"$WORK/lazyfsd.log"
  : >"$WORK/ready"
  # nsenter (not the in_cli function) so that $! is nsenter, which execs lazyfsd
  nsenter --net="$NS_CLI" "$BIN/lazyfsd" --config "$WORK/$1.toml" --notify-stdout >"$WORK/ready" 2>>"$WORK/lazyfsd.log" &
  DAEMON_PID=$!
  for _ in $(seq 150); do grep -q READY "$WORK/ready" 2>/dev/null && return 0; kill -0 "$DAEMON_PID" 2>/dev/null || break; sleep 0.1; done
  echo "lazyfsd did not start" >&2; tail -20 "$WORK/lazyfsd.log" >&2; exit 1
}
stats() { "$BIN/lazyctl" cache stats --json --socket "$WORK/lazyfsd.sock"; }

# chroot runner for the full-pull and local-overlay sides: private mount and
# PID namespaces, /dev and /proc, the image's environment (PATH only).
cat >"$WORK/chroot-run" <<'SH'
#!/bin/sh
exec unshare --mount --pid --fork --propagation private sh -c '
  mount --rbind /dev "$1/dev" && mount -t proc proc "$1/proc" &&
  exec chroot "$1" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
    Rscript -e "sessionInfo()"' sh "$1"
SH
chmod +x "$WORK/chroot-run"

# One timed step; appends a row to results.tsv.
# measure PROFILE CONFIG RUN -- CMD...
TSV=$WORK/results.tsv
printf 'profile\tconfig\trun\tfirst\ttotal\trc\tok\tfetched_bytes\trequests\tchunks\treg206\twire_bytes\tbusy\n' >"$TSV"
measure() {
  local profile=$1 config=$2 run=$3; shift 4
  local s0="" s1="" w0 w1 r0 r1 c0 c1 out=$WORK/step.json fb=- rq=- ch=- busy
  [ -n "$DAEMON_PID" ] && s0=$(stats)
  w0=$(wire_bytes); r0=$(reg_206); c0=$(cpu_ticks)
  timeout -k 10 "$STEP_TIMEOUT" python3 "$HELPER" time "$out" -- "$@" || true
  [ -s "$out" ] || echo '{"first": "", "total": "", "rc": 124, "ok": false}' >"$out"
  c1=$(cpu_ticks); w1=$(wire_bytes); r1=$(reg_206)
  if [ -n "$DAEMON_PID" ]; then
    s1=$(stats)
    fb=$(( $(jq .fetched_bytes <<<"$s1") - $(jq .fetched_bytes <<<"$s0") ))
    rq=$(( $(jq .requests <<<"$s1") - $(jq .requests <<<"$s0") ))
    ch=$(( $(jq .fetched_chunks <<<"$s1") - $(jq .fetched_chunks <<<"$s0") ))
  fi
  busy=$(awk -v a="$c0" -v b="$c1" 'BEGIN { split(a, x, " "); split(b, y, " "); db = y[1] - x[1]; di = y[2] - x[2]; printf "%.0f", (db + di) ? 100 * db / (db + di) : 0 }')
  local ok; ok=$(jq -r 'if .ok then 1 else 0 end' "$out")
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$profile" "$config" "$run" \
    "$(jq -r .first "$out")" "$(jq -r .total "$out")" "$(jq -r .rc "$out")" "$ok" \
    "$fb" "$rq" "$ch" "$((r1 - r0))" "$((w1 - w0))" "$busy" >>"$TSV"
  if [ "$ok" != 1 ]; then
    { echo "### $profile $config run $run: rc $(jq -r .rc "$out")"; echo '```'; echo "$*";
      jq -r '"first line: " + (.first_line // "") + "\n" + (.stderr_tail // "")' "$out"; echo '```'; } >>"$WORK/failures.md"
  fi
  log "$profile $config #$run: first $(jq -r .first "$out") s, total $(jq -r .total "$out") s, rc $(jq -r .rc "$out"), fetched $fb B, $rq requests, busy $busy%"
}

# --- setup, on a fast link (1 Gbit, no delay) -------------------------------
log "work dir $WORK; binaries $BIN ($("$BIN/lazyctl" --version))"
wan_up 1gbit 0ms
log "pushing the original image and converting (512K = :lazy, 256K, 1M)"
in_cli skopeo copy -q --dest-tls-verify=false "oci:$IMAGE_OCI:latest" "docker://$REG/r-base:orig" >&2
declare -A TAG=([512K]=lazy [256K]=lazy-256k [1M]=lazy-1m)
for cs in 512K 256K 1M; do
  [ "$VARIANTS" = 1 ] || [ "$cs" = 512K ] || continue
  in_cli "$BIN/lazyctl" convert --chunk-size "$cs" "oci:$IMAGE_OCI:latest" "$REG/r-base:${TAG[$cs]}" \
    --insecure "$REG" >"$WORK/convert-$cs.log" 2>&1 || { cat "$WORK/convert-$cs.log" >&2; exit 1; }
  # Prefetch record, on an empty cache and a dropped page cache: a record
  # taken while the files are in the page cache sees no reads (0 chunks).
  start_daemon ra128k; drop_caches
  in_cli "$BIN/lazyctl" record --config "$WORK/ra128k.toml" --insecure "$REG" "$REG/r-base:${TAG[$cs]}" -- "${CMD[@]}" \
    >"$WORK/record-$cs.log" 2>&1 || { tail -20 "$WORK/record-$cs.log" >&2; exit 1; }
  log "$cs: $(grep -h '^converted' "$WORK/convert-$cs.log"); $(grep -h '^recorded' "$WORK/record-$cs.log")"
  stop_daemon
done
log "unpacking the image locally (native side of the warm comparison)"
umoci raw unpack --image "$IMAGE_OCI:latest" "$WORK/native" >/dev/null 2>&1
UNPACKED_MIB=$(( $(du -sb "$WORK/native" | cut -f1) / 1048576 ))
COMPRESSED=$(jq -r '.manifests[0].digest' "$IMAGE_OCI/index.json" | cut -d: -f2)
COMPRESSED=$(jq '[.layers[].size] | add' "$IMAGE_OCI/blobs/sha256/$COMPRESSED")
LAZY_MIB=$(grep -ho '[0-9.]* MiB -> [0-9.]* MiB' "$WORK/convert-512K.log" | tail -1)

# --- the runs, per profile -----------------------------------------------------
lazy_cold() {   # PROFILE CONFIG RUN CFG TAG PREFETCH
  start_daemon "$4"; drop_caches
  measure "$1" "$2" "$3" -- nsenter --net="$NS_CLI" "$BIN/lazyrun" --config "$WORK/$4.toml" --rm --prefetch "$6" "r-base:$5" "${CMD[@]}"
  stop_daemon
}
pull_skopeo() {   # PROFILE RUN
  rm -rf "$WORK/pull"; mkdir -p "$WORK/pull"; drop_caches
  measure "$1" pull-skopeo "$2" -- nsenter --net="$NS_CLI" sh -c '
    skopeo copy -q --src-tls-verify=false "docker://$1/r-base:orig" "oci:$2/oci:orig" >/dev/null &&
    umoci raw unpack --image "$2/oci:orig" "$2/root" >/dev/null 2>&1 && exec "$3" "$2/root"' sh "$REG" "$WORK/pull" "$WORK/chroot-run"
  rm -rf "$WORK/pull"
}
pull_curl() {   # PROFILE RUN
  rm -rf "$WORK/pull"; mkdir -p "$WORK/pull/root"; drop_caches
  measure "$1" pull-curl "$2" -- nsenter --net="$NS_CLI" bash -c '
    set -eo pipefail
    m=$(curl -fsS -H "Accept: application/vnd.oci.image.manifest.v1+json" "http://$1/v2/r-base/manifests/orig")
    for d in $(jq -r ".layers[].digest" <<<"$m"); do
      curl -fsS "http://$1/v2/r-base/blobs/$d" | pigz -dc | tar -x -C "$2/root"
    done
    exec "$3" "$2/root"' sh "$REG" "$WORK/pull" "$WORK/chroot-run"
  rm -rf "$WORK/pull"
}
local_overlay() {   # PROFILE CONFIG RUN
  local o=$WORK/ovl
  umount "$o/merged" 2>/dev/null || true; rm -rf "$o"; mkdir -p "$o/upper" "$o/work" "$o/merged"
  measure "$1" "$2" "$3" -- sh -c 'mount -t overlay overlay -o "lowerdir=$1,upperdir=$2/upper,workdir=$2/work" "$2/merged" && exec "$3" "$2/merged"' \
    sh "$WORK/native" "$o" "$WORK/chroot-run"
  umount "$o/merged" || true
}
lazy_warm() {   # PROFILE CONFIG RUN PREFETCH (daemon running, cache warm)
  measure "$1" "$2" "$3" -- nsenter --net="$NS_CLI" "$BIN/lazyrun" --config "$WORK/ra128k.toml" --rm --prefetch "$4" r-base:lazy "${CMD[@]}"
}

declare -A LOAD_BEFORE LOAD_AFTER PING
for prof in $PROFILES; do
  rate=${prof%%:*} rtt=${prof#*:}; P="$rate/$rtt"
  wan_up "$rate" "$rtt"
  PING[$P]=$(in_cli ping -q -c 10 -i 0.2 10.77.1.2 | awk -F' = ' '/rtt/ {print $2}')
  LOAD_BEFORE[$P]=$(loadavg)
  log "profile $P (ping min/avg/max/mdev ${PING[$P]}), load ${LOAD_BEFORE[$P]}"
  # every configuration once per run, interleaved, so that load drifts hit all alike
  for run in $(seq "$RUNS"); do
    lazy_cold "$P" lazy-rec "$run" ra128k lazy record
    lazy_cold "$P" lazy-none "$run" ra128k lazy none
    if [ "$VARIANTS" = 1 ] && [ "$SECONDS" -lt "$DEADLINE" ]; then
      lazy_cold "$P" c256-rec "$run" ra128k lazy-256k record
      lazy_cold "$P" c256-none "$run" ra128k lazy-256k none
      lazy_cold "$P" c1m-rec "$run" ra128k lazy-1m record
      lazy_cold "$P" c1m-none "$run" ra128k lazy-1m none
      lazy_cold "$P" ra512-none "$run" ra512k lazy none
      lazy_cold "$P" ra1m-none "$run" ra1m lazy none
      lazy_cold "$P" ra1m-rec "$run" ra1m lazy record
    fi
    if [ "$PULLS" = 1 ]; then
      pull_skopeo "$P" "$run"
      pull_curl "$P" "$run"
    fi
  done
  if [ "$WARM" = 1 ] && [ "$SECONDS" -lt "$DEADLINE" ]; then
    # warm: one untimed cold run fills the cache, then new containers
    start_daemon ra128k
    in_cli "$BIN/lazyrun" --config "$WORK/ra128k.toml" --rm r-base:lazy "${CMD[@]}" >/dev/null 2>>"$WORK/lazyfsd.log" || log "warning: warm-up lazyrun failed"
    # Each side's hot run follows its own cold run: a drop for the other
    # side in between would make the "hot" run cold again.
    for run in $(seq "$RUNS"); do
      drop_caches; lazy_warm "$P" lazy-warm-cold "$run" record
      lazy_warm "$P" lazy-warm-hot "$run" record
      lazy_warm "$P" lazy-warm-nopf-hot "$run" none
      drop_caches; local_overlay "$P" local-overlay-cold "$run"
      local_overlay "$P" local-overlay-hot "$run"
    done
    stop_daemon
  fi
  LOAD_AFTER[$P]=$(loadavg)
done

# --- report ----------------------------------------------------------------------
{
  echo '{"profiles": ['
  first=1; for prof in $PROFILES; do P="${prof%%:*}/${prof#*:}"; [ $first = 1 ] || echo ','; first=0; echo "\"$P\""; done
  echo '], "load": {'
  first=1; for prof in $PROFILES; do P="${prof%%:*}/${prof#*:}"; [ $first = 1 ] || echo ','; first=0
    echo "\"$P\": {\"before\": \"${LOAD_BEFORE[$P]:-?}\", \"after\": \"${LOAD_AFTER[$P]:-?}\"}"; done
  cat <<'JSON'
},
"order": ["lazy-rec", "lazy-none", "pull-skopeo", "pull-curl",
          "c256-rec", "c256-none", "c1m-rec", "c1m-none", "ra512-none", "ra1m-none", "ra1m-rec",
          "lazy-warm-cold", "local-overlay-cold", "lazy-warm-hot", "lazy-warm-nopf-hot", "local-overlay-hot"],
"groups": {"lazy-rec": "cold", "lazy-none": "cold", "pull-skopeo": "cold", "pull-curl": "cold",
           "c256-rec": "variant", "c256-none": "variant", "c1m-rec": "variant", "c1m-none": "variant",
           "ra512-none": "variant", "ra1m-none": "variant", "ra1m-rec": "variant",
           "lazy-warm-cold": "warm", "local-overlay-cold": "warm", "lazy-warm-hot": "warm",
           "lazy-warm-nopf-hot": "warm", "local-overlay-hot": "warm"},
"labels": {"lazy-rec": "**lazyrun, 512K chunks, prefetch record** (default)",
           "lazy-none": "lazyrun, 512K chunks, --prefetch none",
           "pull-skopeo": "full pull: skopeo copy + umoci raw unpack + chroot",
           "pull-curl": "full pull: curl blob \\| pigz -dc \\| tar -x + chroot",
           "c256-rec": "lazyrun, 256K chunks, prefetch record",
           "c256-none": "lazyrun, 256K chunks, --prefetch none",
           "c1m-rec": "lazyrun, 1M chunks, prefetch record",
           "c1m-none": "lazyrun, 1M chunks, --prefetch none",
           "ra512-none": "lazyrun, 512K chunks, read_ahead 512K, --prefetch none",
           "ra1m-none": "lazyrun, 512K chunks, read_ahead 1M, --prefetch none",
           "ra1m-rec": "lazyrun, 512K chunks, read_ahead 1M, prefetch record",
           "lazy-warm-cold": "lazyrun, warm lazyfsd cache, page cache dropped",
           "local-overlay-cold": "native overlay + chroot, page cache dropped",
           "lazy-warm-hot": "lazyrun, warm lazyfsd cache, page cache hot",
           "lazy-warm-nopf-hot": "lazyrun, warm cache, page cache hot, --prefetch none",
           "local-overlay-hot": "native overlay + chroot, page cache hot"}}
JSON
} >"$WORK/meta.json"

OUT=$RESULTS/lazyrun-wan-$(date -u +%Y%m%d-%H%M).md
{
  echo "# lazyrun over an emulated WAN — $(date -u +%Y-%m-%dT%H:%MZ)"
  echo
  echo "Command: \`Rscript -e 'sessionInfo()'\` in a container of the r-base-like image (Debian bookworm, R $(grep -ho 'R version [0-9.]*' "$WORK/record-512K.log" | head -1 | cut -d' ' -f3)):"
  echo "2 layers, $((COMPRESSED / 1048576)) MiB compressed ($COMPRESSED B), $UNPACKED_MIB MiB unpacked; lazy image (512K chunks): $LAZY_MIB."
  echo "Registry: Debian docker-registry in lzwan-reg behind bench/wan (tbf + NFQUEUE delay line); clients in lzwan-cli."
  echo "Phases: variants $([ "$VARIANTS" = 1 ] && echo on || echo off), full pulls $([ "$PULLS" = 1 ] && echo on || echo off), warm $([ "$WARM" = 1 ] && echo on || echo off) (LZB_VARIANTS/LZB_PULLS/LZB_WARM)."
  echo "Runs: $RUNS per cell, interleaved. Cold = fresh lazyfsd (started before the timer: a host daemon), empty cache, page cache dropped."
  echo "Binaries: $BIN ($("$BIN/lazyctl" --version)); machine: $(nproc) cores, $(uname -r); other work was running on it (see load)."
  for prof in $PROFILES; do P="${prof%%:*}/${prof#*:}"; echo "Ping over $P: min/avg/max/mdev ${PING[$P]:-?}."; done
  echo
  for cs in 512K 256K 1M; do
    [ -f "$WORK/convert-$cs.log" ] && echo "- $cs: $(grep -h '^converted' "$WORK/convert-$cs.log" | sed 's/ -> .*:lazy[^ ]* in / in /'); $(grep -h '^recorded' "$WORK/record-$cs.log" | sed 's/; stored as.*//')"
  done
  echo
  python3 "$HELPER" report "$TSV" "$WORK/meta.json"
  echo "### Per-run rows"
  echo
  echo '```'
  column -t -s $'\t' "$TSV"
  echo '```'
  if [ -s "$WORK/failures.md" ]; then echo; echo "## Failures"; echo; cat "$WORK/failures.md"; fi
  echo
  sed 's/\x1b\[[0-9;]*m//g' "$WORK/lazyfsd.log" >"$WORK/lazyfsd.plain.log"
  echo "lazyfsd/lazyrun stderr: $(grep -c ' ERROR ' "$WORK/lazyfsd.plain.log" || true) ERROR and $(grep -c ' WARN ' "$WORK/lazyfsd.plain.log" || true) WARN lines; most frequent (timestamps cut):"
  grep -E ' (ERROR|WARN) ' "$WORK/lazyfsd.plain.log" | cut -d' ' -f2- | cut -c1-200 | sort | uniq -c | sort -rn | head -10 | sed 's/^/    /' || true
} >"$OUT"
cp "$TSV" "${OUT%.md}.tsv"
cat "$OUT"
log "results: $OUT"
