# Sourced by the FUSE benchmarks; needs BIN, WORK and REGISTRY.
#
# start_lazyfsd [TOML-LINES]: writes $WORK/config.toml (cache $WORK/cache,
# mount $WORK/mnt, socket $WORK/lazyfsd.sock, 20G quota, no prefetch, the
# registry as insecure, plus TOML-LINES) and starts lazyfsd; returns once it
# is ready, with DAEMON_PID set. The cache dir outlives restarts.
start_lazyfsd() {
  cat >"$WORK/config.toml" <<TOML
cache_dir = "$WORK/cache"
mountpoint = "$WORK/mnt"
socket = "$WORK/lazyfsd.sock"
quota = "20G"
prefetch = "none"
${1:-}
[registry]
insecure = ["$REGISTRY"]
TOML
  rm -f "$WORK/ready"
  "$BIN/lazyfsd" --config "$WORK/config.toml" --notify-stdout >"$WORK/ready" 2>>"$WORK/lazyfsd.log" &
  DAEMON_PID=$!
  for _ in $(seq 300); do grep -q READY "$WORK/ready" 2>/dev/null && break; sleep 0.1; done
  grep -q READY "$WORK/ready" || { echo "lazyfsd did not start" >&2; cat "$WORK/lazyfsd.log" >&2; exit 1; }
}

# overlay_of IMAGE DIR: attaches IMAGE (a reference in $REGISTRY) and mounts
# an overlay of its layers at DIR, with fresh DIR.upper and DIR.work; prints
# the top layer's directory.
overlay_of() {
  local image=$1 dir=$2 lower="" layers
  mapfile -t layers < <("$BIN/lazyctl" attach --socket "$WORK/lazyfsd.sock" --prefetch none "$REGISTRY/$image")
  [ ${#layers[@]} -gt 0 ] || { echo "attaching $image failed" >&2; exit 1; }
  for ((i=${#layers[@]}-1; i>=0; i--)); do lower+="${layers[$i]//:/\\:}:"; done
  rm -rf "$dir.upper" "$dir.work"
  mkdir -p "$dir" "$dir.upper" "$dir.work"
  mount -t overlay overlay -o "lowerdir=${lower%:},upperdir=$dir.upper,workdir=$dir.work" "$dir"
  echo "${layers[-1]}"
}
