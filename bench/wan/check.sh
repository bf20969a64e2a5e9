#!/usr/bin/env bash
# Verifies the WAN emulation (bench/wan/wan.sh) for the benchmark profiles:
# brings each profile up, measures RTT (ping cli -> reg) and bulk TCP
# throughput (python3 -m http.server in lzwan-reg serving a 200 MB file, curl in
# lzwan-cli), prints a table, saves it to bench/results/wan-check-<date>.md and
# brings the link down. Run as root on an otherwise idle machine.
#
#   bench/wan/check.sh [RUNS]     default 3 transfers per profile
#   PROFILES="100mbit:20ms 1gbit:10ms 1gbit:0ms" SIZE_MB=200 bench/wan/check.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
WAN=bench/wan/wan.sh
RUNS=${1:-3}
# 1gbit:0ms is a reference: same rate, no delay line, to show what the delay line costs
PROFILES=${PROFILES:-"100mbit:20ms 1gbit:10ms 1gbit:0ms"}
SIZE_MB=${SIZE_MB:-200}
PING_COUNT=${PING_COUNT:-20}
RESULTS=bench/results
mkdir -p "$RESULTS"
OUT=$RESULTS/wan-check-$(date +%Y%m%d-%H%M).md

[ "$(id -u)" -eq 0 ] || { echo "check: run as root" >&2; exit 1; }
bench/wan/install-deps.sh

WORK=$(mktemp -d /var/tmp/lazyfs-wan-check.XXXXXX)
HTTP_PID=
cleanup() {
  if [ -n "$HTTP_PID" ] && [ -d "/proc/$HTTP_PID" ]; then kill "$HTTP_PID" 2>/dev/null || true; fi
  $WAN down || true
  rm -rf "$WORK"
}
trap cleanup EXIT
head -c "${SIZE_MB}M" /dev/urandom >"$WORK/blob"

# CPU ticks (utime+stime) of a process; busy/total ticks of the whole machine
proc_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
sys_ticks() { awk '/^cpu /{print $2+$3+$4+$7+$8+$9, $2+$3+$4+$5+$6+$7+$8+$9}' /proc/stat; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
to_bps() { # 100mbit -> bit/s
  awk -v r="${1,,}" 'BEGIN { n = r + 0; if (r ~ /g/) n *= 1e9; else if (r ~ /m/) n *= 1e6; else if (r ~ /k/) n *= 1e3; printf "%d", n }'
}

ROWS=()
NOTES=()
for prof in $PROFILES; do
  rate=${prof%%:*} rtt=${prof##*:}
  rate_bps=$(to_bps "$rate")
  rtt_ms=$(awk -v t="${rtt%ms}" 'BEGIN { print t + 0 }')
  echo "== $rate, RTT $rtt" >&2
  WAN_DELAYLINE_STATS=1 $WAN up "$rate" "$rtt" >&2
  # shellcheck disable=SC1090
  . <($WAN env)
  DL_PID=$(cat /run/lazyfs-wan/delayline.pid 2>/dev/null || echo 0)
  cc=$($WAN exec-reg sysctl -n net.ipv4.tcp_congestion_control)

  # RTT (one warm-up echo first so ARP resolution is not in the sample)
  $WAN exec-cli ping -c 1 -W 2 "$WAN_REG_ADDR" >/dev/null
  read -r b0 t0 < <(sys_ticks)
  ping_out=$($WAN exec-cli ping -c "$PING_COUNT" -i 0.2 "$WAN_REG_ADDR")
  read -r b1 t1 < <(sys_ticks)
  ping_busy=$(awk -v b=$((b1 - b0)) -v t=$((t1 - t0)) 'BEGIN { printf "%.0f", t ? 100 * b / t : 0 }')
  read -r rmin ravg rmax < <(echo "$ping_out" | sed -n 's|.*= \([0-9.]*\)/\([0-9.]*\)/\([0-9.]*\)/.*|\1 \2 \3|p')
  rmed=$(echo "$ping_out" | sed -n 's/.* time=\([0-9.]*\) ms.*/\1/p' | median)
  loss=$(echo "$ping_out" | sed -n 's/.* \([0-9.]*%\) packet loss.*/\1/p')

  # throughput
  ( cd "$WORK" && exec ip netns exec "$WAN_NS_REG" python3 -m http.server --bind "$WAN_REG_ADDR" 8080 ) \
    >"$WORK/http.log" 2>&1 &
  HTTP_PID=$!
  for _ in $(seq 50); do
    $WAN exec-cli curl -s -o /dev/null "http://$WAN_REG_ADDR:8080/" && break
    sleep 0.2
  done
  speeds=() dl_cpu=() sys_busy=()
  for i in $(seq "$RUNS"); do
    p0=$(proc_ticks "$DL_PID"); read -r b0 t0 < <(sys_ticks)
    res=$($WAN exec-cli curl -sS -o /dev/null -w '%{speed_download} %{time_total} %{size_download}' \
      "http://$WAN_REG_ADDR:8080/blob")
    p1=$(proc_ticks "$DL_PID"); read -r b1 t1 < <(sys_ticks)
    read -r speed secs size <<<"$res"
    [ "$size" -eq $((SIZE_MB * 1024 * 1024)) ] || { echo "check: short transfer ($size bytes)" >&2; exit 1; }
    mbit=$(awk -v s="$speed" 'BEGIN { printf "%.1f", s * 8 / 1e6 }')
    speeds+=("$mbit")
    dl_cpu+=("$(awk -v d=$((p1 - p0)) -v s="$secs" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.0f", 100 * d / hz / s }')")
    sys_busy+=("$(awk -v b=$((b1 - b0)) -v t=$((t1 - t0)) 'BEGIN { printf "%.0f", t ? 100 * b / t : 0 }')")
    echo "   run $i: $mbit Mbit/s in ${secs}s (delayline ${dl_cpu[-1]}% of a core, machine ${sys_busy[-1]}% busy)" >&2
  done
  kill "$HTTP_PID" 2>/dev/null || true; wait "$HTTP_PID" 2>/dev/null || true; HTTP_PID=

  # drops: nfqueue (queue full / netlink) and tbf (bottleneck buffer, i.e. TCP's congestion signal)
  nfq=$($WAN exec-rt cat /proc/net/netfilter/nfnetlink_queue 2>/dev/null | awk '{print $6 + $7}' | head -1)
  tbf_drops=$($WAN exec-rt tc -s qdisc show dev rt-cli | sed -n 's/.*(dropped \([0-9]*\),.*/\1/p')
  # the delay line's worst release lateness (due -> verdict), from its 1 s stats
  sleep 1.1
  late=n/a
  if [ "$WAN_ONE_WAY_DELAY_US" -gt 0 ]; then
    late=$(sed -n 's/.*verdicts=\([0-9]*\) .*max_late=\([0-9-]*\)us late_1ms=\([0-9]*\).*/\2 (\3 of \1 >1 ms)/p' \
      /run/lazyfs-wan/delayline.log | tail -1)
  fi
  med=$(printf '%s\n' "${speeds[@]}" | median)
  pct=$(awk -v m="$med" -v r="$rate_bps" 'BEGIN { printf "%.0f", 100 * m * 1e6 / r }')
  rtt_err=$(awk -v a="$ravg" -v t="$rtt_ms" 'BEGIN { printf "%+.1f", t ? 100 * (a - t) / t : 0 }')
  med_err=$(awk -v a="$rmed" -v t="$rtt_ms" 'BEGIN { printf "%+.1f", t ? 100 * (a - t) / t : 0 }')
  verdict=ok
  [ "$rtt_ms" = 0 ] && verdict="reference (no delay line)"
  # judged on the median: single late samples come from CPU contention (see README)
  awk -v e="$med_err" 'BEGIN { exit !(e > 10 || e < -10) }' && verdict="RTT median off by ${med_err}%"
  awk -v e="$rtt_err" 'BEGIN { exit !(e > 10 || e < -10) }' && verdict="$verdict; RTT avg off by ${rtt_err}%"
  if [ "$rate_bps" -le 100000000 ] && [ "$pct" -lt 85 ]; then verdict="$verdict; throughput < 85%"; fi
  verdict=${verdict#ok; }
  ROWS+=("| $rate / $rtt | $rmin / $rmed / $ravg / $rmax | $med_err% / $rtt_err% (loss $loss, machine $ping_busy% busy) | $med ($(IFS=,; echo "${speeds[*]}")) | $pct% | $(IFS=,; echo "${dl_cpu[*]}") | $(IFS=,; echo "${sys_busy[*]}") | ${late:-n/a} | ${nfq:-n/a} / $tbf_drops | $cc | $verdict |")
  $WAN down
done

{
  echo "# WAN emulation check — $(date -u +%Y-%m-%dT%H:%MZ)"
  echo
  echo "Host: $(nproc) cores, kernel $(uname -r), load average at the end: $(cut -d' ' -f1-3 /proc/loadavg). Link: bench/wan/wan.sh (tbf rate on the router's egress,"
  echo "NFQUEUE delay line holding every forwarded packet RTT/2 in each direction)."
  echo "RTT: \`ping -c $PING_COUNT -i 0.2\` lzwan-cli → lzwan-reg after one warm-up echo."
  echo "Throughput: $RUNS × ${SIZE_MB} MiB over HTTP (python3 -m http.server in lzwan-reg, curl in lzwan-cli),"
  echo "goodput as curl's speed_download (HTTP payload only; the rate counts Ethernet frames, so the"
  echo "ceiling for 1500-byte MTU TCP is 1448/1514 = 95.6% of the rate). CPU: delay line's own"
  echo "user+sys time as % of one core, and the whole machine's busy % (both cores, everything"
  echo "running, not only this check). Delay line max late: worst lateness of a release (verdict sent"
  echo "after the packet's due time) over the whole profile, ping and transfers; if RTT outliers are"
  echo "much larger, they come from elsewhere (softirq/vCPU scheduling under load). Drops: nfqueue"
  echo "(must be 0) / tbf on the download direction."
  echo
  echo "| profile | RTT min / median / avg / max ms | RTT error median / avg | throughput Mbit/s: median (runs) | of rate | delayline CPU % | machine busy % | delayline max late µs (batches >1 ms late of all) | drops nfq / tbf | TCP cc | verdict |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|"
  printf '%s\n' "${ROWS[@]}"
  for n in "${NOTES[@]}"; do echo; echo "$n"; done
} | tee "$OUT"
echo "check: saved $OUT" >&2
