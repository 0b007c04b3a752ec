#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# ab_echo.sh: two echo servers (or one server with two sets of options) in alternation, for
# telling a small change in server CPU per request from this machine's drift.
#
#   benchmarks/ab_echo.sh [-n PAIRS] [-c CONNECTIONS] [-m MESSAGES] [-s SIZE] \
#       -- SERVER_A [ARGS...] -- SERVER_B [ARGS...]
#
# Each pair runs A, then B: the server on CPU 0 (`--port 0` is added to its arguments; it
# must print "listening on ... PORT"), examples/echo_client on CPU 1 sending CONNECTIONS x
# MESSAGES closed-loop messages of SIZE bytes, every byte checked. Per run it prints the
# server's CPU time per request (utime + stime from /proc, 10 ms ticks) and the client's
# requests/s; at the end, the median and range of the per-pair ratios B / A. The client is
# epoll-based and does not saturate the server: CPU per request is the figure to read.
# Environment: BUILD_DIR (default build-release) for echo_client.
set -euo pipefail

pairs=10 connections=50 messages=6000 size=4096
while getopts n:c:m:s: flag; do
    case $flag in
    n) pairs=$OPTARG ;;
    c) connections=$OPTARG ;;
    m) messages=$OPTARG ;;
    s) size=$OPTARG ;;
    *) exit 2 ;;
    esac
done
usage="usage: ab_echo.sh [-n PAIRS] [-c CONNECTIONS] [-m MESSAGES] [-s SIZE] -- SERVER_A [ARGS...] -- SERVER_B [ARGS...]"
[ "${*:OPTIND-1:1}" = -- ] || { echo "$usage" >&2; exit 2; } # getopts took the first --
shift $((OPTIND - 1))
a=()
while [ $# -gt 0 ] && [ "$1" != -- ]; do a+=("$1"); shift; done
[ $# -gt 1 ] && [ ${#a[@]} -gt 0 ] || { echo "$usage" >&2; exit 2; }
shift
b=("$@")
client=${BUILD_DIR:-build-release}/examples/echo_client
[ -x "$client" ] || { echo "ab_echo: no $client (ninja -C ${BUILD_DIR:-build-release} examples/echo_client)" >&2; exit 2; }
requests=$((connections * messages))
ticks=$(getconf CLK_TCK)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# One run: prints "CPU_US_PER_REQUEST REQUESTS_PER_SECOND".
run() {
    taskset -c 0 "$@" --port 0 >"$work/port" 2>"$work/err" &
    local pid=$! port="" _
    for _ in $(seq 200); do
        port=$(grep -o 'listening on.*' "$work/port" 2>/dev/null | grep -o '[0-9]*$' || true)
        [ -n "$port" ] && break
        sleep 0.05
    done
    [ -n "$port" ] || { echo "ab_echo: $1 did not start" >&2; cat "$work/err" >&2; kill $pid 2>/dev/null; exit 1; }
    local cpu0 cpu1 t0 t1
    cpu0=$(awk '{ print $14 + $15 }' "/proc/$pid/stat")
    t0=$(date +%s.%N)
    taskset -c 1 "$client" --port "$port" --connections "$connections" --messages "$messages" \
        --size "$size" >/dev/null || { echo "ab_echo: the client failed against $1" >&2; kill $pid; exit 1; }
    t1=$(date +%s.%N)
    cpu1=$(awk '{ print $14 + $15 }' "/proc/$pid/stat")
    kill -TERM $pid
    wait $pid 2>/dev/null || true
    awk -v c=$((cpu1 - cpu0)) -v hz="$ticks" -v n=$requests -v t0="$t0" -v t1="$t1" \
        'BEGIN { printf "%.3f %.0f\n", c * 1e6 / hz / n, n / (t1 - t0) }'
}

echo "A: ${a[*]}"
echo "B: ${b[*]}"
echo "$connections connections x $messages messages of $size B per run; server CPU us/request, client req/s"
for i in $(seq "$pairs"); do
    # A run that fails ends the loop (and, through pipefail, the script) with its message.
    ra=$(run "${a[@]}") || exit 1
    rb=$(run "${b[@]}") || exit 1
    echo "$ra $rb"
done | python3 -c '
import statistics, sys
rows = [line.split() for line in sys.stdin if line.strip()]
if not rows:
    sys.exit(1)
print("pair   A us/req   A req/s   B us/req   B req/s")
for i, (ca, ra, cb, rb) in enumerate(rows, 1):
    print(f"{i:4}   {float(ca):8.3f}  {float(ra):8.0f}   {float(cb):8.3f}  {float(rb):8.0f}")
cpu = [float(r[2]) / float(r[0]) for r in rows if float(r[0]) > 0]
rate = [float(r[3]) / float(r[1]) for r in rows]
if cpu:
    print(f"B/A server CPU per request: median {statistics.median(cpu):.3f} ({min(cpu):.3f}..{max(cpu):.3f})")
print(f"B/A requests/s:             median {statistics.median(rate):.3f} ({min(rate):.3f}..{max(rate):.3f})")
'
