# Shared by the WAN benchmarks (lazyrun-wan.sh, containerd-wan.sh,
# podman-wan.sh): the emulated link and its registry, lazyfsd, and the one
# timed step, and the report's tail. Sourced;
# the caller sets WORK, REG, NS_CLI, NS_RT, WAN, HELPER, BIN, STEP_TIMEOUT,
# and REG_PID= DAEMON_PID=, and calls start_tsv before measuring.

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
cleanup_wan_run() {   # at exit: lazyfsd, mounts under WORK, the registry, the link, WORK
  set +e
  stop_daemon
  for m in $(awk -v w="$WORK" 'index($2, w) == 1 {print $2}' /proc/mounts | sort -r); do umount -l "$m"; done
  stop_registry
  "$WAN" down >/dev/null 2>&1
  if [ "${LZB_KEEP:-0}" = 1 ]; then log "work dir kept: $WORK"; else rm -rf "$WORK"; fi
}

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
write_config() {   # NAME READ_AHEAD [PREFETCH, default record] [READ_AROUND, default lazyfsd's]
  cat >"$WORK/$1.toml" <<TOML
cache_dir = "$WORK/cache"
mountpoint = "$WORK/mnt"
socket = "$WORK/lazyfsd.sock"
log_file = "$WORK/lazyfsd-daemon.log"
quota = "20G"
read_ahead = "$2"
prefetch = "${3:-record}"
${4:+read_around = \"$4\"}
[registry]
insecure = ["$REG"]
[run]
default_registry = "$REG"
containers_dir = "$WORK/containers"
TOML
}

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

# One timed step; appends a row to results.tsv.
# measure PROFILE CONFIG RUN -- CMD...
start_tsv() {   # the results table, header only
  TSV=$WORK/results.tsv
  printf 'profile\tconfig\trun\tfirst\ttotal\trc\tok\tfetched_bytes\trequests\tchunks\treg206\twire_bytes\tbusy\treq_ms\n' >"$TSV"
}
measure() {
  local profile=$1 config=$2 run=$3; shift 4
  local s0="" s1="" w0 w1 r0 r1 c0 c1 out=$WORK/step.json fb=- rq=- ch=- ms=- busy
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
    # Mean time of one range request (lazyfsd's side: sent to verified bytes).
    ms=$(jq -rn --argjson a "$s0" --argjson b "$s1" \
      'if $b.requests > $a.requests then (($b.fetch_micros // 0) - ($a.fetch_micros // 0)) / ($b.requests - $a.requests) / 1000 | . * 10 | round / 10 else "-" end')
  fi
  busy=$(awk -v a="$c0" -v b="$c1" 'BEGIN { split(a, x, " "); split(b, y, " "); db = y[1] - x[1]; di = y[2] - x[2]; printf "%.0f", (db + di) ? 100 * db / (db + di) : 0 }')
  local ok; ok=$(jq -r 'if .ok then 1 else 0 end' "$out")
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$profile" "$config" "$run" \
    "$(jq -r .first "$out")" "$(jq -r .total "$out")" "$(jq -r .rc "$out")" "$ok" \
    "$fb" "$rq" "$ch" "$((r1 - r0))" "$((w1 - w0))" "$busy" "$ms" >>"$TSV"
  if [ "$ok" != 1 ]; then
    { echo "### $profile $config run $run: rc $(jq -r .rc "$out")"; echo '```'; echo "$*";
      jq -r '"first line: " + (.first_line // "") + "\n" + (.stderr_tail // "")' "$out"; echo '```'; } >>"$WORK/failures.md"
  fi
  log "$profile $config #$run: first $(jq -r .first "$out") s, total $(jq -r .total "$out") s, rc $(jq -r .rc "$out"), fetched $fb B, $rq requests, busy $busy%"
}


meta_profiles_and_load() {   # the "profiles" and "load" entries of the report's meta.json
  local first=1 prof P
  echo '{"profiles": ['
  for prof in $PROFILES; do P="${prof%%:*}/${prof#*:}"; [ $first = 1 ] || echo ','; first=0; echo "\"$P\""; done
  echo '], "load": {'
  first=1; for prof in $PROFILES; do P="${prof%%:*}/${prof#*:}"; [ $first = 1 ] || echo ','; first=0
    echo "\"$P\": {\"before\": \"${LOAD_BEFORE[$P]:-?}\", \"after\": \"${LOAD_AFTER[$P]:-?}\"}"; done
  echo '},'
}

report_rows_and_failures() {   # the report's per-run rows, then its failures, if any
  echo "### Per-run rows"
  echo
  echo '```'
  column -t -s $'\t' "$TSV"
  echo '```'
  if [ -s "$WORK/failures.md" ]; then echo; echo "## Failures"; echo; cat "$WORK/failures.md"; fi
}

# For the one-image benchmarks (containerd-wan, podman-wan): the original
# image as r-base:orig, the lazy one as r-base:lazy with the prefetch record
# of `Rscript -e 'sessionInfo()'` (taken with the "rec" config on an empty
# cache and a dropped page cache); sets COMPRESSED (the original's layer bytes).
push_convert_record() {
  log "pushing the original image and converting it"
  in_cli skopeo copy -q --dest-tls-verify=false "oci:$IMAGE_OCI:latest" "docker://$REG/r-base:orig" >&2
  in_cli "$BIN/lazyctl" convert "oci:$IMAGE_OCI:latest" "$REG/r-base:lazy" --insecure "$REG" \
    >"$WORK/convert.log" 2>&1 || { cat "$WORK/convert.log" >&2; exit 1; }
  start_daemon rec; drop_caches
  in_cli "$BIN/lazyctl" record --config "$WORK/rec.toml" --insecure "$REG" "$REG/r-base:lazy" -- Rscript -e 'sessionInfo()' \
    >"$WORK/record.log" 2>&1 || { tail -20 "$WORK/record.log" >&2; exit 1; }
  stop_daemon
  log "$(grep -h '^converted' "$WORK/convert.log"); $(grep -h '^recorded' "$WORK/record.log")"
  COMPRESSED=$(jq -r '.manifests[0].digest' "$IMAGE_OCI/index.json" | cut -d: -f2)
  COMPRESSED=$(jq '[.layers[].size] | add' "$IMAGE_OCI/blobs/sha256/$COMPRESSED")
}

# One link profile (RATE:RTT): the link up, its ping and the load noted in
# the caller's PING and LOAD_BEFORE (declare -A); sets P (RATE/RTT).
profile_up() {
  local rate=${1%%:*} rtt=${1#*:}
  P="$rate/$rtt"
  wan_up "$rate" "$rtt"
  PING[$P]=$(in_cli ping -q -c 10 -i 0.2 10.77.1.2 | awk -F' = ' '/rtt/ {print $2}')
  LOAD_BEFORE[$P]=$(loadavg)
  log "profile $P (ping min/avg/max/mdev ${PING[$P]}), load ${LOAD_BEFORE[$P]}"
}

# The rest of a one-image benchmark's report, after its own header lines:
# binaries, pings, the tables (from meta.json), per-run rows, failures.
report_tables() {
  local prof p
  echo "Binaries: $BIN ($("$BIN/lazyctl" --version)); machine: $(nproc) cores, $(uname -r)."
  for prof in $PROFILES; do p="${prof%%:*}/${prof#*:}"; echo "Ping over $p: min/avg/max/mdev ${PING[$p]:-?}."; done
  echo
  python3 "$HELPER" report "$TSV" "$WORK/meta.json"
  report_rows_and_failures
}

report_saved() {   # REPORT.md: the TSV saved beside it, the report shown
  cp "$TSV" "${1%.md}.tsv"
  cat "$1"
  log "results: $1"
}

# Per link profile, RUNS times in turn (interleaved, so that load drifts hit
# all alike): the caller's `lazy_cold PROFILE RUN none|rec` and
# `plain_cold PROFILE RUN`; the load after each profile in LOAD_AFTER.
run_lazy_and_plain() {
  local prof run
  for prof in $PROFILES; do
    profile_up "$prof"
    for run in $(seq "$RUNS"); do
      lazy_cold "$P" "$run" none
      lazy_cold "$P" "$run" rec
      plain_cold "$P" "$run"
    done
    LOAD_AFTER[$P]=$(loadavg)
  done
}

# $WORK/chroot-run ROOT [COMMAND]: the runner of the full-pull and local
# sides: COMMAND (sh -c; default R's sessionInfo()) chrooted into ROOT, in
# private mount and PID namespaces, with /dev and /proc, PATH only.
write_chroot_run() {
  cat >"$WORK/chroot-run" <<'SH'
#!/bin/sh
exec unshare --mount --pid --fork --propagation private sh -c '
  mount --rbind /dev "$1/dev" && mount -t proc proc "$1/proc" &&
  exec chroot "$1" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
    sh -c "$2"' sh "$1" "${2:-Rscript -e 'sessionInfo()'}"
SH
  chmod +x "$WORK/chroot-run"
}
