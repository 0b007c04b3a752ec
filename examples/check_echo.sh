#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Runs echo_server on a free port, drives it with echo_client (every byte verified), then stops
# it with SIGTERM and checks that it exits cleanly.
#   check_echo.sh ECHO_SERVER ECHO_CLIENT [CLIENT ARGS...]
# ECHO_SERVER_ARGS (environment) adds arguments to the server's command line.
set -euo pipefail
server=$1 client=$2
shift 2
log=$(mktemp)
trap 'kill "$pid" 2>/dev/null || true; rm -f "$log"' EXIT
# shellcheck disable=SC2086 # ECHO_SERVER_ARGS is a list of words
"$server" --port 0 ${ECHO_SERVER_ARGS:-} >"$log" 2>&1 &
pid=$!
port=
for _ in $(seq 100); do
    port=$(sed -n 's/.*listening on 127.0.0.1:\([0-9]*\).*/\1/p' "$log")
    [ -n "$port" ] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
done
if [ -z "$port" ]; then
    # A kernel without a feature the server was asked for: skipped, not failed.
    if grep -q "ENOTSUP\|needs Linux" "$log"; then
        echo "skipped: $(cat "$log")"
        exit 77
    fi
    echo "echo_server did not start:"
    cat "$log"
    exit 1
fi
"$client" --port "$port" "$@"
kill -TERM "$pid"
wait "$pid"
status=$?
[ "$status" -eq 0 ] || { echo "echo_server exited with $status"; cat "$log"; exit 1; }
echo "echo_server stopped cleanly"
