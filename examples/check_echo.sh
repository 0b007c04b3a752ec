#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Runs echo_server on a free port, drives it with echo_client (every byte verified), then stops
# it with SIGTERM and checks that it exits cleanly.
#   check_echo.sh ECHO_SERVER ECHO_CLIENT [CLIENT ARGS...]
set -euo pipefail
server=$1 client=$2
shift 2
log=$(mktemp)
trap 'kill "$pid" 2>/dev/null || true; rm -f "$log"' EXIT
"$server" --port 0 >"$log" 2>&1 &
pid=$!
port=
for _ in $(seq 100); do
    port=$(sed -n 's/.*listening on 127.0.0.1:\([0-9]*\).*/\1/p' "$log")
    [ -n "$port" ] && break
    sleep 0.05
done
[ -n "$port" ] || { echo "echo_server did not start:"; cat "$log"; exit 1; }
"$client" --port "$port" "$@"
kill -TERM "$pid"
wait "$pid"
status=$?
[ "$status" -eq 0 ] || { echo "echo_server exited with $status"; cat "$log"; exit 1; }
echo "echo_server stopped cleanly"
