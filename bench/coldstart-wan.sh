#!/usr/bin/env bash
# Cold starts of several workloads (not a test): each through `lazyrun`,
# cold, over an emulated WAN (bench/wan), per link profile (100 Mbit / 20 ms
# RTT, 1 Gbit / 10 ms RTT), side by side in one run with the full pull:
#   workloads on the r-base-like image: R's sessionInfo(), R loading
#   packages, a C compile with gcc, shell tools (perl, find, sed); on a
#   Python image (python3 + numpy + scipy): importing scipy.stats;
#   each (a) with no record (--prefetch none: what users meet most), (b) with
#   the record of another command as the image's prefetch record, (c) with its
#   own record; and, with LZB_CONDITIONS naming them, (c') its own record on
#   the image laid out by that record (`lazyctl relayout`), (b') another
#   command's record on the image laid out by that one (what `lazyctl convert
#   --record` of the image's own command gives every other command);
#   full pull: skopeo copy + umoci raw unpack + the first workload of each
#   image in a chroot.
# Fresh lazyfsd (empty cache) before each timed step, page cache dropped.
# Reports time to the first output line, to the exit, bytes fetched, range
# requests. Run as root.
#
#   bench/coldstart-wan.sh [RUNS]     default 3; results in bench/results/coldstart-wan-<date>.md
#
# Environment: LZB_PROFILES="100mbit:20ms 1gbit:10ms", LZB_WORKLOADS (names,
# default all), LZB_CONDITIONS="none other own" (which of (a) (b) (c) to run;
# also own-laid (c'), other-laid (b')),
# LZB_PULLS=1 (0: no full pulls), LZB_READ_AROUND (lazyfsd's read_around;
# default lazyfsd's), LZB_CONFIG (more lazyfsd config lines, e.g.
# "prefetch_nearby = false"), LZB_KEEP=1 (keep the work dir),
# LAZYFS_BIN (binaries; default: target/release, built).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
RUNS=${1:-3}
[[ $RUNS =~ ^[1-9][0-9]?$ ]] || { echo "usage: $0 [RUNS 1-99]" >&2; exit 2; }
PROFILES=${LZB_PROFILES:-"100mbit:20ms 1gbit:10ms"}
PULLS=${LZB_PULLS:-1}
BIN=${LAZYFS_BIN:-$ROOT/target/release}
REG=10.77.1.2:5000
NS_CLI=/run/netns/lzwan-cli NS_RT=/run/netns/lzwan-rt
WAN=$ROOT/bench/wan/wan.sh
HELPER=$ROOT/bench/lazyrun-wan.py
RESULTS=$ROOT/bench/results
STEP_TIMEOUT=300   # seconds, any one timed command

# name -> image repository, command (sh -c), the workload whose record is
# "another command's" for it, and a label.
declare -A REPO=([r-session]=r-base [r-pkgs]=r-base [cc]=r-base [shell]=r-base [py-scipy]=python [py-hello]=python)
declare -A RUN_CMD=(
  [r-session]="Rscript -e 'sessionInfo()'"
  [r-pkgs]="Rscript -e 'suppressMessages({library(Matrix); library(MASS); library(survival)}); cat(\"Boston rows:\", nrow(Boston), \"\\n\")'"
  [cc]="printf '#include <stdio.h>\\nint main(void) { puts(\"compiled\"); return 0; }\\n' >/tmp/a.c && gcc -O2 -o /tmp/a /tmp/a.c && /tmp/a"
  [shell]="perl -e 'print \"perl \$]\\n\"' && find /usr/lib/R/library -name DESCRIPTION | wc -l && sed --version | head -1"
  [py-scipy]="python3 -c 'import numpy, scipy.stats; print(numpy.__version__, scipy.stats.norm.cdf(0))'"
  [py-hello]="python3 -c 'print(1)'"
)
# What the first output line of each starts with (a regex): else the run failed.
declare -A EXPECT=([r-session]="R version" [r-pkgs]="Boston rows: 506" [cc]="compiled" [shell]="perl 5"
  [py-scipy]="[0-9]+[.][0-9]+[.][0-9]+ 0[.]5")
declare -A OTHER=([r-session]=cc [r-pkgs]=r-session [cc]=r-session [shell]=r-session [py-scipy]=py-hello)
declare -A LABEL=([r-session]="R sessionInfo()" [r-pkgs]="R, library(Matrix, MASS, survival)"
  [cc]="gcc -O2 of hello.c, then run it" [shell]="perl, find, sed" [py-scipy]="python3: import numpy, scipy.stats")
WORKLOADS=(${LZB_WORKLOADS:-r-session r-pkgs cc shell py-scipy})
CONDITIONS=(${LZB_CONDITIONS:-none other own})
for c in "${CONDITIONS[@]}"; do [[ $c =~ ^(none|other|own|own-laid|other-laid)$ ]] || { echo "unknown condition $c" >&2; exit 2; }; done
for w in "${WORKLOADS[@]}"; do [ -n "${OTHER[$w]:-}" ] || { echo "unknown workload $w" >&2; exit 2; }; done
# The first workload of each image runs after its full pull.
declare -A PULL_WORKLOAD=([r-base]=r-session [python]=py-scipy)

[ "$(id -u)" -eq 0 ] || { echo "run as root" >&2; exit 1; }
scripts/install-deps
bench/wan/install-deps.sh
for t in skopeo umoci docker-registry curl jq nsenter unshare python3 tc; do
  command -v "$t" >/dev/null || { echo "missing $t" >&2; exit 1; }
done
. scripts/build-image.sh
. scripts/rust-toolchain.sh
declare -A IMAGE_OCI=([r-base]=$(rbase_image) [python]=$(python_image))
[ -n "${LAZYFS_BIN:-}" ] || build_release lazyctl lazyfsd lazyrun
mkdir -p "$RESULTS"

WORK=$(mktemp -d /var/tmp/coldstart-wan.XXXXXX)
REG_PID= DAEMON_PID=
. bench/lib/wan-runs.sh
trap cleanup_wan_run EXIT
trap 'exit 130' INT TERM
write_config rec 128K record "${LZB_READ_AROUND:-}"
if [ -n "${LZB_CONFIG:-}" ]; then   # top-level keys: before the [registry] table
  printf '%s\n' "$LZB_CONFIG" | cat - "$WORK/rec.toml" >"$WORK/rec.toml.new"
  mv "$WORK/rec.toml.new" "$WORK/rec.toml"
fi

write_chroot_run

manifest_of() {   # REPO TAG: the manifest's digest
  in_cli curl -fsSI -H 'Accept: application/vnd.oci.image.manifest.v1+json' "http://$REG/v2/$1/manifests/$2" |
    awk -F': ' 'tolower($1) == "docker-content-digest" {print $2}' | tr -d '\r'
}
retag() {   # REPO FROM TO: tags the manifest FROM as TO too (registry API)
  local type
  in_cli curl -fsS -D "$WORK/headers" -o "$WORK/manifest" \
    -H 'Accept: application/vnd.oci.image.manifest.v1+json' "http://$REG/v2/$1/manifests/$2"
  type=$(awk -F': ' 'tolower($1) == "content-type" {print $2}' "$WORK/headers" | tr -d '\r')
  in_cli curl -fsS -X PUT -H "Content-Type: $type" --data-binary @"$WORK/manifest" \
    "http://$REG/v2/$1/manifests/$3" >/dev/null
}

start_tsv
log "work dir $WORK; binaries $BIN ($("$BIN/lazyctl" --version)); workloads ${WORKLOADS[*]}"
wan_up 1gbit 0ms
declare -A RECORD_TAG
for repo in r-base python; do
  log "$repo: pushing the original image and converting it"
  in_cli skopeo copy -q --dest-tls-verify=false "oci:${IMAGE_OCI[$repo]}:latest" "docker://$REG/$repo:orig" >&2
  in_cli "$BIN/lazyctl" convert "oci:${IMAGE_OCI[$repo]}:latest" "$REG/$repo:lazy" --insecure "$REG" \
    >"$WORK/convert-$repo.log" 2>&1 || { cat "$WORK/convert-$repo.log" >&2; exit 1; }
  log "$(grep -h '^converted' "$WORK/convert-$repo.log")"
  digest=$(manifest_of "$repo" lazy)
  RECORD_TAG[$repo]="${digest/:/-}.lazyfs-prefetch"
done
# Every workload's record (and each one's "other" record), taken on an empty
# cache and a dropped page cache, kept as tag rec-<workload>.
declare -A NEEDED=()
if [[ " ${CONDITIONS[*]} " == *" o"* ]]; then   # other or own: records needed
  for w in "${WORKLOADS[@]}"; do NEEDED[$w]=1; NEEDED[${OTHER[$w]}]=1; done
fi
for w in "${!NEEDED[@]}"; do
  repo=${REPO[$w]}
  start_daemon rec; drop_caches
  in_cli "$BIN/lazyctl" record --config "$WORK/rec.toml" --insecure "$REG" "$REG/$repo:lazy" -- sh -c "${RUN_CMD[$w]}" \
    >"$WORK/record-$w.log" 2>&1 || { tail -20 "$WORK/record-$w.log" >&2; exit 1; }
  stop_daemon
  retag "$repo" "${RECORD_TAG[$repo]}" "rec-$w"
  log "$w: $(grep -h '^recorded' "$WORK/record-$w.log")"
done
# Images laid out by a workload's record, tagged laid-<workload>; relayout
# stores the record for the new manifest, so it is their prefetch record.
declare -A LAID=()
for w in "${WORKLOADS[@]}"; do
  [[ " ${CONDITIONS[*]} " == *" own-laid "* ]] && LAID[$w]=1
  [[ " ${CONDITIONS[*]} " == *" other-laid "* ]] && LAID[${OTHER[$w]}]=1
done
for w in "${!LAID[@]}"; do
  repo=${REPO[$w]}
  retag "$repo" lazy "laid-$w"
  retag "$repo" "rec-$w" "${RECORD_TAG[$repo]}"
  in_cli "$BIN/lazyctl" relayout --insecure "$REG" "$REG/$repo:laid-$w" \
    >"$WORK/relayout-$w.log" 2>&1 || { cat "$WORK/relayout-$w.log" >&2; exit 1; }
  log "$w: $(grep -h '^laid out' "$WORK/relayout-$w.log")"
done

lazy_cold() {   # PROFILE RUN WORKLOAD none|other|own|own-laid|other-laid
  local repo=${REPO[$3]} prefetch=record tag=lazy
  case $4 in
    none) prefetch=none ;;
    other) retag "$repo" "rec-${OTHER[$3]}" "${RECORD_TAG[$repo]}" ;;
    own) retag "$repo" "rec-$3" "${RECORD_TAG[$repo]}" ;;
    own-laid) tag=laid-$3 ;;
    other-laid) tag=laid-${OTHER[$3]} ;;
  esac
  start_daemon rec; drop_caches
  export EXPECT_FIRST=${EXPECT[$3]}
  measure "$1" "$3-$4" "$2" -- nsenter --net="$NS_CLI" "$BIN/lazyrun" --config "$WORK/rec.toml" --rm \
    --prefetch "$prefetch" "$REG/$repo:$tag" sh -c "${RUN_CMD[$3]}"
  stop_daemon
}
pull_cold() {   # PROFILE RUN REPO
  local w=${PULL_WORKLOAD[$3]}
  rm -rf "$WORK/pull"; mkdir -p "$WORK/pull"; drop_caches
  export EXPECT_FIRST=${EXPECT[$w]}
  measure "$1" "$w-pull" "$2" -- nsenter --net="$NS_CLI" sh -c '
    skopeo copy -q --src-tls-verify=false "docker://$1/$2:orig" "oci:$3/oci:orig" >/dev/null &&
    umoci raw unpack --image "$3/oci:orig" "$3/root" >/dev/null 2>&1 && exec "$4" "$3/root" "$5"' \
    sh "$REG" "$3" "$WORK/pull" "$WORK/chroot-run" "${RUN_CMD[$w]}"
  rm -rf "$WORK/pull"
}

declare -A LOAD_BEFORE LOAD_AFTER PING
for prof in $PROFILES; do
  profile_up "$prof"
  for run in $(seq "$RUNS"); do
    for w in "${WORKLOADS[@]}"; do
      for c in "${CONDITIONS[@]}"; do lazy_cold "$P" "$run" "$w" "$c"; done
    done
    if [ "$PULLS" = 1 ]; then
      for repo in r-base python; do
        [[ " ${WORKLOADS[*]} " == *" ${PULL_WORKLOAD[$repo]} "* ]] && pull_cold "$P" "$run" "$repo"
      done
    fi
  done
  LOAD_AFTER[$P]=$(loadavg)
done

{
  meta_profiles_and_load
  order=() groups=() baselines=()
  for w in "${WORKLOADS[@]}"; do
    for c in "${CONDITIONS[@]}" pull; do
      order+=("\"$w-$c\"")
      groups+=("\"$w-$c\": \"cold\"")
      baselines+=("\"$w-$c\": \"${PULL_WORKLOAD[${REPO[$w]}]}-pull\"")
    done
  done
  (IFS=,; echo "\"order\": [${order[*]}], \"groups\": {${groups[*]}}, \"baselines\": {${baselines[*]}},")
  echo '"baseline_label": "full pull of the image + its first workload", "labels": {'
  first=1
  for w in "${WORKLOADS[@]}"; do
    [ $first = 1 ] || echo ','; first=0
    echo "\"$w-none\": \"**${LABEL[$w]}**, (a) no record\","
    echo "\"$w-other\": \"${LABEL[$w]}, (b) record of: ${LABEL[${OTHER[$w]}]:-${OTHER[$w]}}\","
    echo "\"$w-own\": \"${LABEL[$w]}, (c) its own record\","
    echo "\"$w-own-laid\": \"${LABEL[$w]}, (c') its own record, image laid out by it\","
    echo "\"$w-other-laid\": \"${LABEL[$w]}, (b') record of: ${LABEL[${OTHER[$w]}]:-${OTHER[$w]}}, image laid out by it\","
    echo "\"$w-pull\": \"${LABEL[$w]}: full pull (skopeo + umoci) + chroot\""
  done
  echo '}}'
} >"$WORK/meta.json"

OUT=$RESULTS/coldstart-wan-$(date -u +%Y%m%d-%H%M).md
{
  echo "# Cold starts of several workloads over an emulated WAN — $(date -u +%Y-%m-%dT%H:%MZ)"
  echo
  echo "Each workload through \`lazyrun\`, cold (fresh lazyfsd with an empty cache, page cache dropped), (a) with no"
  echo "record (\`--prefetch none\`), (b) with another command's record as the image's prefetch record, (c) with its own;"
  echo "(b') and (c') the same on an image laid out by that record (\`lazyctl relayout\`)."
  echo "The full pull (skopeo copy + umoci raw unpack + chroot) runs the first workload of each image; the ratio"
  echo "column compares every row of an image with it. Runs: $RUNS per cell, interleaved."
  echo "lazyfsd: read_around = ${LZB_READ_AROUND:-default (off)}${LZB_CONFIG:+; also: $(echo $LZB_CONFIG)}."
  for w in "${WORKLOADS[@]}"; do echo "- \`$w\` (${REPO[$w]}): \`${RUN_CMD[$w]}\`"; done
  for repo in r-base python; do echo "- $repo: $(grep -h '^converted' "$WORK/convert-$repo.log")"; done
  report_tables
} >"$OUT"
report_saved "$OUT"
