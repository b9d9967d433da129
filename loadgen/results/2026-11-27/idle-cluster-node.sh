#!/bin/bash
# Idle cost of a cluster node against a standalone server, 60 s, same run.
B=${SWITCHBOARD_BIN:-target/release/switchboard}
redis-server --port 6399 --bind 127.0.0.1 --save '' --appendonly no --daemonize no >/dev/null &
R=$!
sleep 0.3
pids=()
for i in 1 2 3; do
  RUST_LOG=warn $B serve --http-addr 127.0.0.1:82${i}0 --rtc-addr 127.0.0.1:502${i}0 --turn-addr 127.0.0.1:34${i}0 --redis redis://127.0.0.1:6399 --cluster-secret idle-measurement-secret-0123 --relay-addr 127.0.0.1:72${i}0 2>/dev/null &
  pids+=($!)
done
RUST_LOG=warn $B serve --http-addr 127.0.0.1:8290 --rtc-addr 127.0.0.1:50290 --turn-addr 127.0.0.1:3490 2>/dev/null &
S=$!
sleep 5
python3 - ${pids[0]} $S $R <<'PY'
import sys, time, os
hz = os.sysconf('SC_CLK_TCK')
def cpu(p):
    f = open(f'/proc/{p}/stat').read().rsplit(')',1)[1].split()
    return (int(f[11]) + int(f[12])) / hz
def rss(p):
    for l in open(f'/proc/{p}/status'):
        if l.startswith('VmRSS:'): return int(l.split()[1])
node, alone, redis = map(int, sys.argv[1:])
c0 = {p: cpu(p) for p in (node, alone, redis)}
time.sleep(60)
for name, p in (('cluster node (3 nodes, idle)', node), ('standalone server, idle', alone), ('redis-server (3 nodes)', redis)):
    print(f"{name}: CPU {100*(cpu(p)-c0[p])/60:.2f}% of a core over 60 s, RSS {rss(p)/1024:.1f} MiB")
PY
kill ${pids[@]} $S $R
