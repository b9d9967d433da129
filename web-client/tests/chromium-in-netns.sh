#!/usr/bin/env bash
# Chromium in a network namespace of its own, joined to its parent's (the test's) by a veth
# pair: `sbshape0` (10.77.0.1/30) stays with the test, `sbshape1` (10.77.0.2/30) is the
# browser's only link. The test shapes `sbshape0`'s egress (tc htb and a drop-tail fifo) to
# give this browser alone a narrow downlink, as a router would: the kernel here has no netem,
# and shaping `lo` would slow every peer. Used as Playwright's executablePath by drop.mjs; the
# pair disappears with the namespace when the browser exits. Needs root.
set -euo pipefail
parent=$PPID
exec unshare --net -- bash -c '
  set -e
  ip link set lo up
  ip link add sbshape0 type veth peer name sbshape1
  ip link set sbshape0 netns "$0"
  nsenter --net=/proc/"$0"/ns/net sh -c "ip addr add 10.77.0.1/30 dev sbshape0 && ip link set sbshape0 up"
  ip addr add 10.77.0.2/30 dev sbshape1
  ip link set sbshape1 up
  exec "${CHROMIUM_PATH:-/usr/bin/chromium}" "$@"
' "$parent" "$@"
