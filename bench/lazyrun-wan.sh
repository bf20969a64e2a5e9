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
# the variants; "around": only the read-around ones, read_around auto and 1M,
# beside the default, off), LZB_PULLS=1 (0: skip the full pulls), LZB_WARM=1 (0: skip
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
. bench/lib/wan-runs.sh
trap cleanup_wan_run EXIT
trap 'exit 130' INT TERM

write_config ra128k 128K; write_config ra512k 512K; write_config ra1m 1M
write_config around-auto 128K record auto; write_config around1m 128K record 1M


write_chroot_run

start_tsv
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
  profile_up "$prof"
  # every configuration once per run, interleaved, so that load drifts hit all alike
  for run in $(seq "$RUNS"); do
    lazy_cold "$P" lazy-rec "$run" ra128k lazy record
    lazy_cold "$P" lazy-none "$run" ra128k lazy none
    if [ "$VARIANTS" != 0 ] && [ "$SECONDS" -lt "$DEADLINE" ]; then
      lazy_cold "$P" around-auto-none "$run" around-auto lazy none
      lazy_cold "$P" around1m-none "$run" around1m lazy none
    fi
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
  meta_profiles_and_load
  cat <<'JSON'
"order": ["lazy-rec", "lazy-none", "pull-skopeo", "pull-curl",
          "around-auto-none", "around1m-none",
          "c256-rec", "c256-none", "c1m-rec", "c1m-none", "ra512-none", "ra1m-none", "ra1m-rec",
          "lazy-warm-cold", "local-overlay-cold", "lazy-warm-hot", "lazy-warm-nopf-hot", "local-overlay-hot"],
"groups": {"lazy-rec": "cold", "lazy-none": "cold", "pull-skopeo": "cold", "pull-curl": "cold",
           "c256-rec": "variant", "c256-none": "variant", "c1m-rec": "variant", "c1m-none": "variant",
           "ra512-none": "variant", "ra1m-none": "variant", "ra1m-rec": "variant",
           "around-auto-none": "variant", "around1m-none": "variant",
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
           "around-auto-none": "lazyrun, 512K chunks, read_around auto, --prefetch none",
           "around1m-none": "lazyrun, 512K chunks, read_around 1M, --prefetch none",
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
  echo "Phases: variants $VARIANTS (1 all, around: read-around only, 0 none), full pulls $([ "$PULLS" = 1 ] && echo on || echo off), warm $([ "$WARM" = 1 ] && echo on || echo off) (LZB_VARIANTS/LZB_PULLS/LZB_WARM)."
  echo "Runs: $RUNS per cell, interleaved. Cold = fresh lazyfsd (started before the timer: a host daemon), empty cache, page cache dropped."
  echo "Binaries: $BIN ($("$BIN/lazyctl" --version)); machine: $(nproc) cores, $(uname -r); other work was running on it (see load)."
  for prof in $PROFILES; do P="${prof%%:*}/${prof#*:}"; echo "Ping over $P: min/avg/max/mdev ${PING[$P]:-?}."; done
  echo
  for cs in 512K 256K 1M; do
    [ -f "$WORK/convert-$cs.log" ] && echo "- $cs: $(grep -h '^converted' "$WORK/convert-$cs.log" | sed 's/ -> .*:lazy[^ ]* in / in /'); $(grep -h '^recorded' "$WORK/record-$cs.log" | sed 's/; stored as.*//')"
  done
  echo
  python3 "$HELPER" report "$TSV" "$WORK/meta.json"
  report_rows_and_failures
  echo
  sed 's/\x1b\[[0-9;]*m//g' "$WORK/lazyfsd.log" >"$WORK/lazyfsd.plain.log"
  echo "lazyfsd/lazyrun stderr: $(grep -c ' ERROR ' "$WORK/lazyfsd.plain.log" || true) ERROR and $(grep -c ' WARN ' "$WORK/lazyfsd.plain.log" || true) WARN lines; most frequent (timestamps cut):"
  grep -E ' (ERROR|WARN) ' "$WORK/lazyfsd.plain.log" | cut -d' ' -f2- | cut -c1-200 | sort | uniq -c | sort -rn | head -10 | sed 's/^/    /' || true
} >"$OUT"
report_saved "$OUT"
