#!/usr/bin/env bash
# An HTC site (not a test): 3 worker nodes × N concurrent jobs start the
# r-base-like image cold (`Rscript -e 'sessionInfo()'` through lazyrun, no
# prefetch record), each node with its own lazyfsd and empty cache, all of
# them through one site proxy (squid) in front of the image's HTTP store
# (`lazyctl publish`, served by nginx) across an emulated WAN (bench/wan,
# 100 Mbit / 20 ms RTT). In the same run: one full pull (skopeo copy +
# umoci raw unpack) over the same link, for the baseline. Reports bytes
# from the origin (nginx's log) against 3N full pulls, job times (p50,
# p99, max), node cache sizes, squid hits. Run as root.
#
#   bench/site.sh [JOBS_PER_NODE]   default 10; results in bench/results/site-<date>.md
#
# Topology (nodes reach the origin only through squid: no forwarding at the site):
#   lzwan-reg: origin — nginx 10.77.1.2:8080 (the store), docker-registry :5000
#     ── router, 100 Mbit / 20 ms (bench/wan) ──
#   lzwan-cli: the site — squid :3128 (memory cache)
#     ── veth 10.78.K.1 / 10.78.K.2 (LAN, unshaped) ──
#   lzsite-nK (K = 1..3): a worker node — lazyfsd, lazyrun jobs
# Environment: LZB_PROFILE (default 100mbit:20ms), LZB_KEEP=1 (keep the
# work dir), LAZYFS_BIN (binaries; default target/release, built).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
JOBS=${1:-10}
[[ $JOBS =~ ^[1-9][0-9]?$ ]] || { echo "usage: $0 [JOBS_PER_NODE 1-99]" >&2; exit 2; }
NODES=3
PROFILE=${LZB_PROFILE:-100mbit:20ms}
BIN=${LAZYFS_BIN:-$ROOT/target/release}
REG=10.77.1.2:5000 ORIGIN=10.77.1.2:8080
NS_CLI=/run/netns/lzwan-cli NS_RT=/run/netns/lzwan-rt
WAN=$ROOT/bench/wan/wan.sh
HELPER=$ROOT/bench/lazyrun-wan.py
RESULTS=$ROOT/bench/results
JOB_CMD="Rscript -e 'sessionInfo()'"
STEP_TIMEOUT=600

[ "$(id -u)" -eq 0 ] || { echo "run as root" >&2; exit 1; }
scripts/install-deps
bench/wan/install-deps.sh
for t in skopeo umoci docker-registry curl jq nsenter python3 tc nginx squid; do
  command -v "$t" >/dev/null || { echo "missing $t" >&2; exit 1; }
done
. scripts/build-image.sh
. scripts/rust-toolchain.sh
RBASE=$(rbase_image)
[ -n "${LAZYFS_BIN:-}" ] || build_release lazyctl lazyfsd lazyrun
mkdir -p "$RESULTS"

WORK=$(mktemp -d /var/tmp/site-bench.XXXXXX)
chmod 755 "$WORK"
REG_PID= DAEMON_PID= NGINX_PID= SQUID_PID=
declare -A NODE_PID=()
. bench/lib/wan-runs.sh

cleanup_site() {
  set +e
  for k in "${!NODE_PID[@]}"; do stop_pid "${NODE_PID[$k]}" lazyfsd; done
  stop_pid "$SQUID_PID" squid
  stop_pid "$NGINX_PID" nginx
  for k in $(seq $NODES); do ip netns del "lzsite-n$k" 2>/dev/null; done
  cleanup_wan_run
}
trap cleanup_site EXIT
trap 'exit 130' INT TERM

log "work dir $WORK; binaries $BIN ($("$BIN/lazyctl" --version)); $NODES nodes x $JOBS jobs"
wan_up 1gbit 0ms
log "pushing the original image and converting it"
in_cli skopeo copy -q --dest-tls-verify=false "oci:$RBASE:latest" "docker://$REG/r-base:orig" >&2
in_cli "$BIN/lazyctl" convert --insecure "$REG" "oci:$RBASE:latest" "$REG/r-base:lazy" >"$WORK/convert.log" 2>&1 ||
  { cat "$WORK/convert.log" >&2; exit 1; }
in_cli "$BIN/lazyctl" publish --insecure "$REG" "$REG/r-base:lazy" "$WORK/store" --as r-base:latest >"$WORK/publish.log" 2>&1 ||
  { cat "$WORK/publish.log" >&2; exit 1; }
log "$(tail -1 "$WORK/publish.log")"
pull_bytes=$(in_cli curl -fsS -H 'Accept: application/vnd.oci.image.manifest.v1+json' "http://$REG/v2/r-base/manifests/orig" |
  jq '[.config.size] + [.layers[].size] | add')

declare -A PING LOAD_BEFORE LOAD_AFTER
profile_up "$PROFILE"

# The origin: nginx serving the store from $WORK (objects cacheable for a
# year, tags for a minute, as dist/nginx-lazyfs-store.conf).
mkdir -p "$WORK/nginx"
cat >"$WORK/nginx/nginx.conf" <<CONF
user root;
worker_processes 2;
daemon off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 1024; }
http {
  log_format bytes '\$request_uri \$status \$body_bytes_sent';
  access_log $WORK/nginx/access.log bytes;
  client_body_temp_path $WORK/nginx; proxy_temp_path $WORK/nginx; fastcgi_temp_path $WORK/nginx;
  uwsgi_temp_path $WORK/nginx; scgi_temp_path $WORK/nginx;
  default_type application/octet-stream;
  server {
    listen $ORIGIN;
    root $WORK;
    location /store/data/ { add_header Cache-Control "public, max-age=31536000, immutable"; }
    location /store/pieces/ { add_header Cache-Control "public, max-age=31536000, immutable"; }
    location /store/tags/ { add_header Cache-Control "public, max-age=60"; }
  }
}
CONF
# nsenter (not a shell function) so that $! is nsenter, which execs nginx.
nsenter --net=/run/netns/lzwan-reg nginx -c "$WORK/nginx/nginx.conf" &
NGINX_PID=$!

# The site proxy: squid, memory cache, collapsed forwarding (concurrent
# misses of one object go to the origin once).
mkdir -p "$WORK/squid" && chmod 777 "$WORK/squid"
cat >"$WORK/squid/squid.conf" <<CONF
http_port 3128
acl nodes src 10.78.0.0/16
http_access allow nodes
http_access deny all
cache_mem 4096 MB
maximum_object_size_in_memory 64 MB
maximum_object_size 64 MB
collapsed_forwarding on
pid_filename $WORK/squid/squid.pid
access_log stdio:$WORK/squid/access.log
cache_log $WORK/squid/cache.log
cache_store_log none
shutdown_lifetime 0 seconds
coredump_dir $WORK/squid
visible_hostname lazyfs-site-proxy
CONF
nsenter --net="$NS_CLI" squid -N -f "$WORK/squid/squid.conf" &
SQUID_PID=$!

# The worker nodes: a namespace each, a LAN link to the site, a lazyfsd.
for k in $(seq $NODES); do
  ns=lzsite-n$k
  ip netns add "$ns"
  ip link add "site-n$k" netns lzwan-cli type veth peer name eth0 netns "$ns"
  ip -n lzwan-cli addr add "10.78.$k.1/24" dev "site-n$k"; ip -n lzwan-cli link set "site-n$k" up
  ip -n "$ns" addr add "10.78.$k.2/24" dev eth0; ip -n "$ns" link set eth0 up; ip -n "$ns" link set lo up
  mkdir -p "$WORK/n$k/mnt"
  cat >"$WORK/n$k.toml" <<TOML
cache_dir = "$WORK/n$k/cache"
mountpoint = "$WORK/n$k/mnt"
socket = "$WORK/n$k/lazyfsd.sock"
log_file = "$WORK/n$k/lazyfsd-daemon.log"
quota = "20G"
[proxy]
servers = ["http://10.78.$k.1:3128"]
[stores."cas.site"]
urls = ["http://$ORIGIN/store"]
[run]
default_registry = "cas.site"
containers_dir = "$WORK/n$k/containers"
TOML
  nsenter --net="/run/netns/$ns" "$BIN/lazyfsd" --config "$WORK/n$k.toml" --notify-stdout \
    >"$WORK/n$k/ready" 2>>"$WORK/n$k/lazyfsd.log" &
  NODE_PID[$k]=$!
done
for k in $(seq $NODES); do
  for _ in $(seq 150); do grep -q READY "$WORK/n$k/ready" 2>/dev/null && break; sleep 0.1; done
  grep -q READY "$WORK/n$k/ready" || { echo "lazyfsd of node $k did not start" >&2; tail "$WORK/n$k/lazyfsd.log" >&2; exit 1; }
  nsenter --net="/run/netns/lzsite-n$k" curl -fsS -o /dev/null --proxy "http://10.78.$k.1:3128" \
    "http://$ORIGIN/store/lazyfs-store" || { echo "node $k cannot reach the store through squid" >&2; exit 1; }
  if nsenter --net="/run/netns/lzsite-n$k" curl -fsS -m 3 -o /dev/null "http://$ORIGIN/store/lazyfs-store" 2>/dev/null; then
    echo "node $k reaches the origin without the proxy: the topology is wrong" >&2; exit 1
  fi
done
: >"$WORK/nginx/access.log"
: >"$WORK/squid/access.log"

# The baseline: one full pull and unpack over the same link, alone.
write_chroot_run
drop_caches
export EXPECT_FIRST="R version"
mkdir -p "$WORK/pull"
log "full pull (one node, alone on the link)"
timeout "$STEP_TIMEOUT" python3 "$HELPER" time "$WORK/pull.json" -- nsenter --net="$NS_CLI" sh -c '
  skopeo copy -q --src-tls-verify=false "docker://$1/r-base:orig" "oci:$2/oci:orig" >/dev/null &&
  umoci raw unpack --image "$2/oci:orig" "$2/root" >/dev/null 2>&1 && exec "$3" "$2/root" "$4"' \
  sh "$REG" "$WORK/pull" "$WORK/chroot-run" "$JOB_CMD"
rm -rf "$WORK/pull"

# The jobs: all at once, on every node.
drop_caches
wire_before=$(wire_bytes)
log "starting $((NODES * JOBS)) jobs"
started=$SECONDS
pids=()
for k in $(seq $NODES); do
  for j in $(seq "$JOBS"); do
    timeout "$STEP_TIMEOUT" python3 "$HELPER" time "$WORK/job-n$k-$j.json" -- nsenter --net="/run/netns/lzsite-n$k" \
      "$BIN/lazyrun" --config "$WORK/n$k.toml" --rm --net none cas.site/r-base:latest sh -c "$JOB_CMD" &
    pids+=($!)
  done
done
for p in "${pids[@]}"; do wait "$p" || true; done
all_done=$((SECONDS - started))
wire=$(( $(wire_bytes) - wire_before ))
LOAD_AFTER[$P]=$(loadavg)
log "all jobs done in ${all_done}s"

for k in $(seq $NODES); do
  "$BIN/lazyctl" cache stats --json --socket "$WORK/n$k/lazyfsd.sock" >"$WORK/n$k/stats.json"
done

stamp=$(date +%Y%m%d-%H%M)
REPORT=$RESULTS/site-$stamp.md
python3 - "$WORK" "$NODES" "$JOBS" "$pull_bytes" "$wire" "$all_done" "$P" "${PING[$P]}" \
  "${LOAD_BEFORE[$P]}" "${LOAD_AFTER[$P]}" "$("$BIN/lazyctl" --version)" "$(tail -1 "$WORK/publish.log")" >"$REPORT" <<'PY'
import collections, glob, json, statistics, sys
work, nodes, jobs, pull_bytes, wire, all_done, prof, ping, load0, load1, version, published = sys.argv[1:]
nodes, jobs, pull_bytes, wire = int(nodes), int(jobs), int(pull_bytes), int(wire)
runs = [json.load(open(p)) for p in sorted(glob.glob(f"{work}/job-n*-*.json"))]
pull = json.load(open(f"{work}/pull.json"))
served = collections.Counter()
origin_bytes = 0
for line in open(f"{work}/nginx/access.log"):
    uri, status, sent = line.split()
    if status == "200":
        served[uri] += 1
    origin_bytes += int(sent)
hits = collections.Counter(l.split()[3].split("/")[0] for l in open(f"{work}/squid/access.log") if len(l.split()) > 3)
def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]
ok = [r for r in runs if r["ok"]]
first = [r["first"] for r in ok]
total = [r["total"] for r in ok]
mb = lambda b: f"{b / 1e6:.1f} MB"
print(f"# HTC site: {nodes} nodes x {jobs} concurrent cold jobs through one site proxy\n")
print(f"`bench/site.sh {jobs}`, {version}; link {prof} (ping min/avg/max/mdev {ping}); load {load0} -> {load1}.")
print(f"Image: the r-base-like image, {mb(pull_bytes)} compressed (what a pull downloads); {published}.")
print(f"Job: `lazyrun --rm cas.site/r-base:latest Rscript -e 'sessionInfo()'`, no prefetch record, every node's cache empty.\n")
print("| | value |\n|---|---|")
print(f"| jobs ok | {len(ok)} of {len(runs)} |")
print(f"| time to first output, p50 / p99 / max | {pct(first, .5):.2f} / {pct(first, .99):.2f} / {max(first):.2f} s |" if first else "| time | — |")
print(f"| time to exit, p50 / p99 / max | {pct(total, .5):.2f} / {pct(total, .99):.2f} / {max(total):.2f} s |" if total else "")
print(f"| all {len(runs)} jobs done | {all_done} s |")
print(f"| one full pull + unpack + run, alone on the link | {pull['total']:.1f} s (first output {pull['first']:.1f} s, ok={pull['ok']}) |")
print(f"| bytes from the origin (nginx) | {mb(origin_bytes)} in {sum(served.values())} responses |")
print(f"| bytes on the WAN link (router, toward the site) | {mb(wire)} |")
print(f"| {len(runs)} full pulls | {mb(len(runs) * pull_bytes)} |")
print(f"| origin bytes / {len(runs)} full pulls | {origin_bytes / max(1, len(runs) * pull_bytes):.4f} (1/{len(runs) * pull_bytes / max(1, origin_bytes):.0f}) |")
print(f"| objects served more than once by the origin | {sum(1 for n in served.values() if n > 1)} of {len(served)} |")
print(f"| squid results | {', '.join(f'{k} {v}' for k, v in hits.most_common())} |")
for k in range(1, nodes + 1):
    s = json.load(open(f"{work}/n{k}/stats.json"))
    print(f"| node {k} cache | {mb(s['cache_bytes'])} in {s['cache_chunks']} chunks; fetched {mb(s['fetched_bytes'])} in {s['requests']} requests |")
failed = [r for r in runs if not r["ok"]]
if failed:
    print(f"\n{len(failed)} jobs failed; first: rc={failed[0]['rc']} {failed[0]['stderr_tail'][-500:]!r}")
PY
cat "$REPORT"
log "report: $REPORT"
