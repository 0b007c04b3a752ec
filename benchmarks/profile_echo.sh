#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# profile_echo.sh: per-request costs of one of bench_echo's servers, for comparing coil's
# echo_server with the raw liburing one.
#
#   benchmarks/profile_echo.sh MODE SERVER [CONNECTIONS] [MESSAGES] [SIZE]
#
# MODE: perf       system calls, io_uring SQEs/CQEs/task-work runs, context switches and CPU
#                  time of the server, each divided by the requests (perf stat tracepoints;
#                  they work in a VM without hardware counters)
#       callgrind  user-space instructions per request (callgrind counts a second batch of
#                  the same size as the first, so start-up and warm-up are left out)
#       enter      what each io_uring_enter asked for (strace), counted by kind
#       split      where the server's CPU time goes: the share of each binary (kernel, libcoil,
#                  the server, liburing) and the kernel's top functions (perf record,
#                  cpu-clock sampling: works without hardware counters)
# SERVER: coil, liburing, epoll or asio (build-release/benchmarks/echo_peer_coil, _uring,
# _epoll, _asio).
# The load is examples/echo_client (closed loop, CONNECTIONS x MESSAGES of SIZE bytes, every
# byte checked); the server runs on CPU 0 and the client on CPU 1, as in bench_echo.
# Environment: BUILD_DIR (default build-release).
set -euo pipefail

mode=${1:?usage: profile_echo.sh perf|callgrind|enter|split SERVER [CONNECTIONS] [MESSAGES] [SIZE]}
server=${2:?which server: coil, liburing, epoll or asio}
connections=${3:-50}
messages=${4:-4000}
size=${5:-64}
build=${BUILD_DIR:-build-release}
program=echo_peer_$server
[ "$server" = liburing ] && program=echo_peer_uring
bin=$build/benchmarks/$program
client=$build/examples/echo_client
[ -x "$bin" ] || { echo "profile_echo: no $bin (ninja -C $build benchmarks/$program)" >&2; exit 2; }
[ -x "$client" ] || { echo "profile_echo: no $client (ninja -C $build examples/echo_client)" >&2; exit 2; }
requests=$((connections * messages))
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

start_server() { # prefix...
    "$@" "$bin" --port 0 >"$work/port" 2>"$work/server.err" &
    server_pid=$!
    for _ in $(seq 100); do
        grep -q 'listening on' "$work/port" 2>/dev/null && break
        sleep 0.1
    done
    port=$(grep -o '[0-9]*$' "$work/port" | tail -1)
    [ -n "$port" ] || { echo "profile_echo: $bin did not start" >&2; cat "$work/server.err" >&2; exit 1; }
}

load() {
    taskset -c 1 "$client" --port "$port" --connections "$connections" --messages "$messages" \
        --size "$size" | sed -n 1,2p
}

# Runs the load while the tracer `$@` (attached to the server) records, then stops the tracer
# and the server.
traced_load() {
    "$@" >/dev/null 2>&1 &
    local tracer=$!
    sleep 0.3
    load
    sleep 0.2
    kill -INT "$tracer"; wait "$tracer" || true
    kill -TERM "$server_pid"; wait "$server_pid" 2>/dev/null || true
}

per_request() {
    awk -v n="$requests" '/^ *[0-9]/ { gsub(",", "", $1); printf "  %-40s %14s  %10.4f per request\n", $2, $1, $1 / n }'
}

case $mode in
perf)
    start_server taskset -c 0
    traced_load perf stat -x, -o "$work/perf" -p "$server_pid" -e task-clock,context-switches \
        -e raw_syscalls:sys_enter,syscalls:sys_enter_io_uring_enter \
        -e io_uring:io_uring_submit_req,io_uring:io_uring_complete \
        -e io_uring:io_uring_local_work_run,io_uring:io_uring_task_work_run,io_uring:io_uring_poll_arm
    echo "$server, $connections connections x $messages messages of $size B = $requests requests:"
    # -x, gives "value,unit,event,...": task-clock is in milliseconds.
    awk -F, -v n="$requests" '$1 ~ /^[0-9.]+$/ {
        if ($3 == "task-clock") printf "  %-40s %14.1f  %10.3f us per request\n", "task-clock (ms)", $1, $1 * 1000 / n;
        else printf "  %-40s %14d  %10.4f per request\n", $3, $1, $1 / n }' "$work/perf"
    ;;
callgrind)
    start_server taskset -c 0 valgrind --tool=callgrind --callgrind-out-file="$work/cg"
    vpid=$(pgrep -P "$server_pid" -n || echo "$server_pid")
    load >/dev/null                       # warm-up batch, not counted
    callgrind_control -d warm "$vpid" >/dev/null
    load
    callgrind_control -d measured "$vpid" >/dev/null
    kill -KILL "$vpid" "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    profile=$(grep -l 'Trigger: dump measured' "$work"/cg* | head -1)
    total=$(callgrind_annotate "$profile" | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1; exit }')
    echo "$server, $requests requests: $total user-space instructions, $((total / requests)) per request"
    echo "top functions (inclusive; the loop itself is 100 % and left out):"
    callgrind_annotate --inclusive=yes "$profile" | grep -E '^ *[0-9,]+ \(' | grep -v '(100.0%)' | sed -n 1,15p | cut -c1-160
    ;;
enter)
    start_server taskset -c 0
    traced_load strace -f -e trace=io_uring_enter -p "$server_pid" -o "$work/enter"
    echo "$server: io_uring_enter(fd, to_submit, min_complete, flags, ...) by kind, under strace:"
    grep -o 'io_uring_enter([^)]*)' "$work/enter" |
        sed -E 's/io_uring_enter\([0-9]+, [1-9][0-9]*,/io_uring_enter(fd, N>0,/; s/io_uring_enter\([0-9]+, 0,/io_uring_enter(fd, 0,/' |
        sort | uniq -c | sort -rn
    ;;
split)
    start_server taskset -c 0
    traced_load perf record -q -e cpu-clock -F 4999 -p "$server_pid" -o "$work/samples"
    echo "$server, $connections connections x $messages messages of $size B: share of the server's CPU samples"
    echo "by binary:"
    perf report -i "$work/samples" --no-children --sort dso --stdio 2>/dev/null |
        grep -E '^ +[0-9.]+%' | sed -n 1,6p
    perf report -i "$work/samples" --no-children --sort symbol --stdio 2>/dev/null |
        awk '$2 == "[k]" && $3 ~ /^_*io_/ { gsub("%", "", $1); s += $1 }
             END { printf "io_uring functions in the kernel (io_*, self time): %.2f%%\n", s }'
    echo "top functions:"
    perf report -i "$work/samples" --no-children --sort dso,symbol --stdio 2>/dev/null |
        grep -E '^ +[0-9.]+%' | sed -n 1,12p | cut -c1-110
    ;;
*)
    echo "profile_echo: MODE is perf, callgrind, enter or split" >&2
    exit 2
    ;;
esac
