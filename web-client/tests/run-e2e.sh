#!/usr/bin/env bash
# Starts the Switchboard server, runs the browser end-to-end test against it, stops the server
# and exits with the test's status. Meant to run in a loopback-only network namespace:
#
#   /work/shared/bin/loopback-only bash web-client/tests/run-e2e.sh      (from the repo root)
#
# Env: SWITCHBOARD_BIN (default target/debug/switchboard, relative to the repo root),
# SWITCHBOARD_URL (default http://127.0.0.1:8080), RUST_LOG (default info),
# CHROMIUM_PATH (default /usr/bin/chromium). Server log: web-client/tests/test-results/server.log.
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
bin="${SWITCHBOARD_BIN:-target/debug/switchboard}"
case "$bin" in /*) ;; *) bin="$root/$bin" ;; esac
http_addr=127.0.0.1:8080
rtc_addr=127.0.0.1:50000
export SWITCHBOARD_URL="${SWITCHBOARD_URL:-http://$http_addr}"
results="$here/test-results"
server_log="$results/server.log"

[ -x "$bin" ] || { echo "run-e2e: no server binary at $bin (build it: cargo build -p switchboard)" >&2; exit 2; }
[ -x "${CHROMIUM_PATH:-/usr/bin/chromium}" ] || { echo "run-e2e: no chromium (apt-get install -y chromium)" >&2; exit 2; }
if [ ! -d "$here/node_modules/playwright-core" ]; then
  (cd "$here" && npm ci --no-audit --no-fund) || { echo "run-e2e: npm ci failed" >&2; exit 2; }
fi
if ip -o link show 2>/dev/null | grep -qv ' lo:'; then
  echo "run-e2e: warning: other interfaces than lo are visible; run inside /work/shared/bin/loopback-only" >&2
fi

mkdir -p "$results"
RUST_LOG="${RUST_LOG:-info}" "$bin" serve --http-addr "$http_addr" --rtc-addr "$rtc_addr" >"$server_log" 2>&1 &
server_pid=$!
stop_server() {
  if kill -0 "$server_pid" 2>/dev/null; then
    kill "$server_pid" 2>/dev/null
    wait "$server_pid" 2>/dev/null
  fi
}
trap stop_server EXIT

# Wait (up to 20 s) for the server to answer HTTP.
up=0
for _ in $(seq 1 200); do
  if ! kill -0 "$server_pid" 2>/dev/null; then
    echo "run-e2e: the server exited before answering; its log:" >&2
    cat "$server_log" >&2
    exit 1
  fi
  if curl -fsS -o /dev/null --max-time 1 "$SWITCHBOARD_URL/"; then up=1; break; fi
  sleep 0.1
done
[ "$up" = 1 ] || { echo "run-e2e: the server did not answer $SWITCHBOARD_URL/ within 20 s; its log:" >&2; cat "$server_log" >&2; exit 1; }

start=$(date +%s)
(cd "$here" && node e2e.mjs)
rc=$?
echo "run-e2e: e2e.mjs exited $rc after $(( $(date +%s) - start )) s"
if [ "$rc" -ne 0 ]; then
  echo "----- last 80 lines of the server log ($server_log) -----"
  tail -n 80 "$server_log"
fi
exit "$rc"
