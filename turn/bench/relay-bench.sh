#!/usr/bin/env bash
# Relay benchmark: our TURN server vs coturn (Debian `turnserver`), same
# machine, same run, same load, loopback only.
#
# Usage: turn/bench/relay-bench.sh [rates] [rounds] [secs] [clients] [len]
#   rates   offered ChannelData packets/s, space separated (default "20000 50000 100000")
#   rounds  repetitions per rate and server, alternating servers (default 3)
#   secs    sending time per run (default 5)
#   clients allocations, one channel each (default 20)
#   len     payload bytes (default 200)
#
# The load generator (turn/examples/relay_bench.rs) binds a channel from each
# allocation to its own echo peer, so every datagram is relayed twice. It
# reads the server's CPU time (utime+stime, all threads) from /proc over
# exactly the sending window. Needs: cargo, coturn (apt-get install coturn).
set -euo pipefail

RATES=${1:-"20000 50000 100000"}
ROUNDS=${2:-3}
SECS=${3:-5}
CLIENTS=${4:-20}
LEN=${5:-200}

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
command -v turnserver >/dev/null || { echo "turnserver not found: apt-get install -y coturn" >&2; exit 1; }
cargo build --release -q -p switchboard-turn --example turn_serve --example relay_bench
BIN="$ROOT/target/release/examples"

TMP=$(mktemp -d)
OURS_PID=""; COTURN_PID=""
cleanup() {
  [ -n "$OURS_PID" ] && kill "$OURS_PID" 2>/dev/null || true
  [ -n "$COTURN_PID" ] && kill "$COTURN_PID" 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT

free_port() {
  # a port free for both UDP and TCP on 127.0.0.1
  while :; do
    p=$((20000 + RANDOM % 20000))
    if ! ss -Hlun "sport = :$p" | grep -q . && ! ss -Hltn "sport = :$p" | grep -q .; then
      echo "$p"; return
    fi
  done
}

OURS_PORT=$(free_port)
"$BIN/turn_serve" "127.0.0.1:$OURS_PORT" bench:benchpass >"$TMP/ours.log" 2>&1 &
OURS_PID=$!

COTURN_PORT=$(free_port)
# -n: no config file; no TLS/DTLS/CLI; loopback peers allowed as for ours.
turnserver -n --listening-ip=127.0.0.1 --listening-port="$COTURN_PORT" --relay-ip=127.0.0.1 \
  --allow-loopback-peers --lt-cred-mech --user=bench:benchpass --realm=switchboard \
  --no-tls --no-dtls --no-cli --min-port=40000 --max-port=49999 \
  --userdb="$TMP/coturn.db" --pidfile="$TMP/coturn.pid" --log-file="$TMP/coturn.log" \
  >/dev/null 2>&1 &
COTURN_PID=$!
sleep 1
kill -0 "$OURS_PID" && kill -0 "$COTURN_PID"

run_one() { # name port pid rate -> "relayed wall cpu"
  local out
  for attempt in 1 2 3; do
    if out=$("$BIN/relay_bench" "127.0.0.1:$2" bench benchpass "$CLIENTS" "$4" "$SECS" "$LEN" "$3" 2>&1); then
      echo "$out" | sed -E 's/.*relayed=([0-9]+) wall_s=([0-9.]+) .*server_cpu_s=([0-9.]+).*/\1 \2 \3/'
      return
    fi
    sleep 1
  done
  echo "relay_bench failed against $1: $out" >&2
  exit 1
}

echo "# relay benchmark $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores ($(lscpu | sed -n 's/^Model name: *//p'))"
echo "# $CLIENTS allocations, $LEN-byte ChannelData, ${SECS}s per run, $ROUNDS rounds per rate, coturn $(dpkg-query -W -f='${Version}' coturn 2>/dev/null || echo '?')"
echo
echo "| offered pkt/s | server | relayed pkt/s | server CPU (cores) | relayed pkt per CPU-second |"
echo "|---:|---|---:|---:|---:|"
for rate in $RATES; do
  declare -A R=() W=() C=()
  for name in ours coturn; do R[$name]=0; W[$name]=0; C[$name]=0; done
  for ((i = 0; i < ROUNDS; i++)); do
    for name in ours coturn; do
      if [ "$name" = ours ]; then port=$OURS_PORT; pid=$OURS_PID; else port=$COTURN_PORT; pid=$COTURN_PID; fi
      read -r r w c < <(run_one "$name" "$port" "$pid" "$rate")
      R[$name]=$((R[$name] + r))
      W[$name]=$(awk -v a="${W[$name]}" -v b="$w" 'BEGIN{print a+b}')
      C[$name]=$(awk -v a="${C[$name]}" -v b="$c" 'BEGIN{print a+b}')
    done
  done
  for name in ours coturn; do
    awk -v rate="$rate" -v n="$name" -v r="${R[$name]}" -v w="${W[$name]}" -v c="${C[$name]}" \
      'BEGIN{printf "| %d | %s | %.0f | %.2f | %.0f |\n", rate, n, r/w, c/w, r/c}'
  done
  awk -v ro="${R[ours]}" -v wo="${W[ours]}" -v co="${C[ours]}" -v rc="${R[coturn]}" -v wc="${W[coturn]}" -v cc="${C[coturn]}" -v rate="$rate" \
    'BEGIN{printf "| %d | **ratio ours/coturn** | **%.2f** | | **%.2f** |\n", rate, (ro/wo)/(rc/wc), (ro/co)/(rc/cc)}'
done
