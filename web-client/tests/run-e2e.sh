#!/usr/bin/env bash
# Starts the Switchboard server, runs the browser end-to-end tests against it (e2e.mjs, ui.mjs,
# simulcast.mjs, whip.mjs (WHIP and WHEP), ...; each only if the one before passed), stops the server and exits with the
# first failing test's status. Meant to run in a loopback-only network namespace:
#
#   /work/shared/bin/loopback-only bash web-client/tests/run-e2e.sh      (from the repo root)
#
# Needs, installed beforehand (outside the namespace): chromium (apt-get install -y chromium),
# firefox-esr (for firefox.mjs),
# the test's node modules ((cd web-client/tests && npm ci)), the server (cargo build -p switchboard).
#
# Env: SWITCHBOARD_BIN (default target/debug/switchboard, relative to the repo root),
# SWITCHBOARD_URL (default http://127.0.0.1:8080; the server is told to listen there),
# SWITCHBOARD_RTC_ADDR (default 127.0.0.1:50000), RUST_LOG (default info),
# CHROMIUM_PATH (default /usr/bin/chromium), FIREFOX_PATH (default /usr/bin/firefox-esr), E2E_TESTS (default "e2e ui speaking-chat calls firefox simulcast svc svc-av1 drop red whip relay reconnect blackout restart cluster": which of
# tests/*.mjs to run, in order). Server log: web-client/tests/test-results/server.log.
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
bin="${SWITCHBOARD_BIN:-target/debug/switchboard}"
case "$bin" in /*) ;; *) bin="$root/$bin" ;; esac
export SWITCHBOARD_URL="${SWITCHBOARD_URL:-http://127.0.0.1:8080}"
http_addr="${SWITCHBOARD_URL#http://}"
http_addr="${http_addr%%/*}"
rtc_addr="${SWITCHBOARD_RTC_ADDR:-127.0.0.1:50000}"
results="$here/test-results"
server_log="$results/server.log"

[ -x "$bin" ] || { echo "run-e2e: no server binary at $bin (build it: cargo build -p switchboard)" >&2; exit 2; }
[ -x "${CHROMIUM_PATH:-/usr/bin/chromium}" ] || { echo "run-e2e: no chromium (apt-get install -y chromium)" >&2; exit 2; }
[ -x "${FIREFOX_PATH:-/usr/bin/firefox-esr}" ] || case " ${E2E_TESTS:-firefox} " in *" firefox "*)
  echo "run-e2e: no firefox-esr (apt-get install -y firefox-esr, or scripts/install-test-deps)" >&2; exit 2 ;; esac
if ! node "$here/modules-installed.cjs"; then
  # Inside loopback-only there is no registry: install first, outside it.
  (cd "$here" && PUPPETEER_SKIP_DOWNLOAD=1 npm ci --no-audit --no-fund) || {
    echo "run-e2e: npm ci failed; run (cd web-client/tests && npm ci) outside the loopback-only namespace first" >&2
    exit 2
  }
fi
http_ok() {
  if command -v curl >/dev/null; then
    curl -fsS -o /dev/null --max-time 1 "$1" 2>/dev/null
  else
    node -e 'fetch(process.argv[1]).then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))' "$1"
  fi
}
if ip -o link show 2>/dev/null | grep -qv ' lo:'; then
  echo "run-e2e: warning: other interfaces than lo are visible; run inside /work/shared/bin/loopback-only" >&2
fi

rm -rf "$results"  # no stale evidence from an earlier run
mkdir -p "$results"
# --turn-allow-loopback-peers: relay.mjs relays through our TURN to the SFU, which here is on
# 127.0.0.1 (refused by default, as it must be in production).
RUST_LOG="${RUST_LOG:-info}" "$bin" serve --http-addr "$http_addr" --rtc-addr "$rtc_addr" \
  --turn-allow-loopback-peers >"$server_log" 2>&1 &
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
  if http_ok "$SWITCHBOARD_URL/"; then up=1; break; fi
  sleep 0.1
done
[ "$up" = 1 ] || { echo "run-e2e: the server did not answer $SWITCHBOARD_URL/ within 20 s; its log:" >&2; cat "$server_log" >&2; exit 1; }

# The tests, in order; each runs only if the one before passed (E2E_TESTS picks some).
rc=0
passed=0
failed=0
export SWITCHBOARD_BIN="$bin"  # restart.mjs and cluster.mjs run servers of their own
export SWITCHBOARD_SERVER_PID="$server_pid" SWITCHBOARD_RTC_ADDR="$rtc_addr"  # blackout.mjs
for test in ${E2E_TESTS:-e2e ui speaking-chat calls firefox simulcast svc svc-av1 drop red whip relay reconnect blackout restart cluster}; do
  start=$(date +%s)
  test_log="$(mktemp)"
  (cd "$here" && node "$test.mjs") 2>&1 | tee "$test_log"
  rc=${PIPESTATUS[0]}
  echo "run-e2e: $test.mjs exited $rc after $(( $(date +%s) - start )) s"
  if [ "$rc" -eq 0 ]; then passed=$((passed + 1)); rm -f "$test_log"; else failed=$((failed + 1)); break; fi
done
if [ "$rc" -ne 0 ]; then
  echo "----- last 80 lines of the server log ($server_log) -----"
  tail -n 80 "$server_log"
  # CI keeps only the end of the output: the failing test's own last lines go last.
  echo "----- last 60 lines of $test.mjs (full output above) -----"
  tail -n 60 "$test_log"
  rm -f "$test_log"
fi
echo "browser: $passed passed, $failed failed"
exit "$rc"
