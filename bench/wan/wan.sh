#!/usr/bin/env bash
# WAN emulation for benchmarks: registry side and client side in their own
# network namespaces, joined by a router namespace that limits the rate (tc tbf)
# and adds delay (NFQUEUE delay line, see delayline.c and README.md).
#
#   lzwan-reg  reg0 10.77.1.2/24 ──veth── rt-reg 10.77.1.1/24  lzwan-rt
#   lzwan-cli  cli0 10.77.2.2/24 ──veth── rt-cli 10.77.2.1/24  (forwarding,
#                                              tbf egress both ways, delay line)
#
#   bench/wan/wan.sh up RATE RTT     e.g. up 100mbit 20ms | up 1gbit 10ms | up 1gbit 0ms
#   bench/wan/wan.sh down
#   bench/wan/wan.sh status
#   bench/wan/wan.sh exec-reg CMD... run CMD in lzwan-reg (= ip netns exec lzwan-reg CMD...)
#   bench/wan/wan.sh exec-cli CMD... run CMD in lzwan-cli
#   bench/wan/wan.sh exec-rt  CMD... run CMD in lzwan-rt
#   bench/wan/wan.sh env             print the profile (shell syntax: WAN_REG_ADDR=...)
#
# RTT is split evenly: every forwarded packet is held RTT/2, in both
# directions, so a round trip (request + answer) takes RTT. RATE applies to
# each direction separately. State (PIDs, logs, the built delay line, the
# profile) lives in /run/lazyfs-wan/. Run as root.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
STATE=${WAN_STATE:-/run/lazyfs-wan}
NS_REG=lzwan-reg NS_RT=lzwan-rt NS_CLI=lzwan-cli
REG_ADDR=10.77.1.2 RT_REG_ADDR=10.77.1.1
CLI_ADDR=10.77.2.2 RT_CLI_ADDR=10.77.2.1
QUEUE_NUM=${WAN_QUEUE_NUM:-7701}   # NFQUEUE number (per router netns)
QUEUE_MAXLEN=65536

die() { echo "wan: $*" >&2; exit 1; }
need_root() { [ "$(id -u)" -eq 0 ] || die "run as root"; }

# "100mbit" / "1gbit" / "500kbit" / "10Mbit" / "12500000" (bit/s) -> bit/s
parse_rate() {
  local r=${1,,} n unit
  [[ $r =~ ^([0-9]+(\.[0-9]+)?)([kmg]?)(bit|bps)?$ ]] || die "bad rate '$1' (e.g. 100mbit, 1gbit)"
  n=${BASH_REMATCH[1]} unit=${BASH_REMATCH[3]}
  [ "${BASH_REMATCH[4]}" = bps ] && die "rate '$1': use bit units (100mbit), not bytes"
  case $unit in k) m=1000 ;; m) m=1000000 ;; g) m=1000000000 ;; *) m=1 ;; esac
  awk -v n="$n" -v m="$m" 'BEGIN { printf "%d", n * m }'
}
# "20ms" / "20" (ms) / "1.5ms" / "500us" / "0" -> microseconds
parse_rtt() {
  local t=${1,,}
  [[ $t =~ ^([0-9]+(\.[0-9]+)?)(ms|us|s)?$ ]] || die "bad RTT '$1' (e.g. 20ms)"
  case ${BASH_REMATCH[3]} in us) m=1 ;; s) m=1000000 ;; *) m=1000 ;; esac
  awk -v n="${BASH_REMATCH[1]}" -v m="$m" 'BEGIN { printf "%d", n * m }'
}

build_delayline() {
  mkdir -p "$STATE"
  if [ ! -x "$STATE/delayline" ] || [ "$HERE/delayline.c" -nt "$STATE/delayline" ]; then
    command -v gcc >/dev/null || die "gcc missing: run bench/wan/install-deps.sh"
    gcc -O2 -Wall -o "$STATE/delayline.tmp" "$HERE/delayline.c"
    mv "$STATE/delayline.tmp" "$STATE/delayline"
  fi
}

# Is PID (from a pid file) alive and really the program we started?
pid_alive() {
  local pidfile=$1 comm=$2 pid
  [ -f "$pidfile" ] || return 1
  pid=$(cat "$pidfile")
  [ -n "$pid" ] && [ -r "/proc/$pid/comm" ] && [ "$(cat "/proc/$pid/comm")" = "$comm" ]
}

stop_pidfile() {
  local pidfile=$1 comm=$2 pid i
  if pid_alive "$pidfile" "$comm"; then
    pid=$(cat "$pidfile")
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 50); do
      [ -d "/proc/$pid" ] || break
      sleep 0.1
    done
    [ -d "/proc/$pid" ] && kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
}

cmd_down() {
  need_root
  stop_pidfile "$STATE/delayline.pid" delayline
  local ns pids
  for ns in $NS_CLI $NS_RT $NS_REG; do
    if ip netns list | awk '{print $1}' | grep -qx "$ns"; then
      # processes someone else started in the namespace keep it (and its
      # veth) alive after the name is gone: say so, do not kill them
      pids=$(ip netns pids "$ns" 2>/dev/null | tr '\n' ' ')
      [ -z "$pids" ] || echo "wan: warning: processes still in $ns: $pids(stop them yourself)" >&2
      ip netns delete "$ns"
    fi
  done
  rm -f "$STATE/profile"
}

# tbf parameters for RATE (bit/s) and RTT (us):
#   burst = 1 ms at line rate (min 8 KiB): what may leave back to back at veth speed;
#   limit = one bandwidth-delay product (min 64 KiB) + burst: the bottleneck
#           buffer, enough for one TCP flow to keep the link busy.
tbf_args() {
  local rate=$1 rtt_us=$2 bytes_per_s burst bdp limit
  bytes_per_s=$((rate / 8))
  burst=$((bytes_per_s / 1000)); [ "$burst" -lt 8192 ] && burst=8192
  bdp=$((bytes_per_s * rtt_us / 1000000)); [ "$bdp" -lt 65536 ] && bdp=65536
  limit=$((bdp + burst))
  echo "rate ${rate}bit burst $burst limit $limit"
}

cmd_up() {
  need_root
  [ $# -eq 2 ] || die "usage: wan.sh up RATE RTT   (e.g. up 100mbit 20ms)"
  local rate rtt_us delay_us
  rate=$(parse_rate "$1")
  rtt_us=$(parse_rtt "$2")
  delay_us=$((rtt_us / 2))
  [ "$rate" -ge 8000 ] || die "rate too low"
  command -v tc >/dev/null && command -v iptables >/dev/null || die "iproute2/iptables missing: run bench/wan/install-deps.sh"
  [ "$delay_us" -eq 0 ] || build_delayline

  cmd_down   # our own old namespaces and delay line, if any
  mkdir -p "$STATE"
  rm -f "$STATE/delayline.log"

  local ns
  for ns in $NS_REG $NS_RT $NS_CLI; do
    ip netns add "$ns"
    ip -n "$ns" link set lo up
    ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
  done
  ip link add reg0 netns $NS_REG type veth peer name rt-reg netns $NS_RT
  ip link add cli0 netns $NS_CLI type veth peer name rt-cli netns $NS_RT
  ip -n $NS_REG addr add $REG_ADDR/24 dev reg0
  ip -n $NS_RT addr add $RT_REG_ADDR/24 dev rt-reg
  ip -n $NS_RT addr add $RT_CLI_ADDR/24 dev rt-cli
  ip -n $NS_CLI addr add $CLI_ADDR/24 dev cli0
  ip -n $NS_REG link set reg0 up
  ip -n $NS_RT link set rt-reg up
  ip -n $NS_RT link set rt-cli up
  ip -n $NS_CLI link set cli0 up
  ip -n $NS_REG route add 10.77.2.0/24 via $RT_REG_ADDR
  ip -n $NS_CLI route add 10.77.1.0/24 via $RT_CLI_ADDR
  ip netns exec $NS_RT sysctl -qw net.ipv4.ip_forward=1

  # rate: tbf on the router's egress, one per direction
  #   rt-cli egress = registry -> client (downloads), rt-reg egress = client -> registry
  local targs
  targs=$(tbf_args "$rate" "$rtt_us")
  # shellcheck disable=SC2086
  tc -n $NS_RT qdisc add dev rt-cli root tbf $targs
  # shellcheck disable=SC2086
  tc -n $NS_RT qdisc add dev rt-reg root tbf $targs

  # delay: every forwarded packet (both directions) through the delay line.
  # No --queue-bypass: if the delay line is not running, packets are dropped
  # rather than silently forwarded without delay.
  if [ "$delay_us" -gt 0 ]; then
    nohup ip netns exec $NS_RT "$STATE/delayline" -q $QUEUE_NUM -d $delay_us -m $QUEUE_MAXLEN \
      ${WAN_DELAYLINE_STATS:+-s} ${WAN_DELAYLINE_OPTS:-} >"$STATE/delayline.log" 2>&1 </dev/null &
    echo $! >"$STATE/delayline.pid"
    local i
    for i in $(seq 50); do
      grep -q "bound" "$STATE/delayline.log" 2>/dev/null && break
      sleep 0.1
    done
    grep -q "bound" "$STATE/delayline.log" || { cat "$STATE/delayline.log" >&2; cmd_down; die "delay line did not start"; }
    ip netns exec $NS_RT iptables -w -A FORWARD -j NFQUEUE --queue-num $QUEUE_NUM
  fi

  cat >"$STATE/profile" <<EOP
WAN_RATE=$1
WAN_RATE_BPS=$rate
WAN_RTT=$2
WAN_RTT_US=$rtt_us
WAN_ONE_WAY_DELAY_US=$delay_us
WAN_NS_REG=$NS_REG
WAN_NS_RT=$NS_RT
WAN_NS_CLI=$NS_CLI
WAN_REG_ADDR=$REG_ADDR
WAN_CLI_ADDR=$CLI_ADDR
WAN_REGISTRY=$REG_ADDR:5000
WAN_TBF="$targs"
EOP
  echo "wan: up: $1 ($rate bit/s), RTT $2 ($delay_us us each way); registry side $NS_REG $REG_ADDR, client side $NS_CLI $CLI_ADDR"
}

cmd_status() {
  if [ ! -f "$STATE/profile" ]; then
    echo "wan: down"
    ip netns list | grep -E '^lzwan-' || true
    return 0
  fi
  cat "$STATE/profile"
  if [ "$(sed -n 's/^WAN_ONE_WAY_DELAY_US=//p' "$STATE/profile")" != 0 ]; then
    if pid_alive "$STATE/delayline.pid" delayline; then
      local pid; pid=$(cat "$STATE/delayline.pid")
      echo "delayline: pid $pid, cpu $(ps -o times= -p "$pid" | tr -d ' ')s"
    else
      echo "delayline: NOT RUNNING (forwarded packets are being dropped)"
    fi
    # queue, port id, waiting, copy mode, copy range, queue dropped, user dropped, id sequence
    echo "nfqueue (num portid waiting mode range q-dropped user-dropped last-id): $(ip netns exec $NS_RT cat /proc/net/netfilter/nfnetlink_queue 2>/dev/null | tr -s ' ' | head -1)"
  fi
  tc -n $NS_RT -s qdisc show dev rt-cli
  tc -n $NS_RT -s qdisc show dev rt-reg
}

cmd=${1:-}
[ $# -gt 0 ] && shift
case $cmd in
  up) cmd_up "$@" ;;
  down) cmd_down ;;
  status) cmd_status ;;
  env) [ -f "$STATE/profile" ] && cat "$STATE/profile" || die "down" ;;
  exec-reg) need_root; exec ip netns exec $NS_REG "$@" ;;
  exec-cli) need_root; exec ip netns exec $NS_CLI "$@" ;;
  exec-rt) need_root; exec ip netns exec $NS_RT "$@" ;;
  *) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2 ;;
esac
