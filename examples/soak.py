#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Soak test of the example servers (docs/reliability.md, "Soak").

Runs echo_server and http_server on loopback for SECONDS under hundreds of client connections
that connect, send, read, reset (RST) and vanish at random, plus one wrk run against the HTTP
server during the warm-up (a tenth of the run, at least the wrk run and 3 s), sampling each server's descriptor count and resident memory every second. At the end
it prints the figures and checks: no descriptor leaked (the count returns to its level before
any client), resident memory within 5% of its level after warm-up, every completed exchange
verified byte for byte, and each server still answering.

    soak.py --echo-server PATH --http-server PATH [--seconds N] [--connections N] [--seed N]
            [--wrk PATH]
"""

import argparse
import asyncio
import os
import random
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time


def start(cmd):
    """Starts a server that prints 'listening on 127.0.0.1:PORT'; returns (process, port)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    line = proc.stdout.readline()
    m = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
    if not m:
        proc.kill()
        raise SystemExit(f"soak: {cmd[0]} did not start: {line!r}")
    return proc, int(m.group(1))


def wrk_duration(seconds):
    return max(1, min(10, seconds // 6))


def warm_up(seconds):
    """Seconds before the memory baseline: a tenth of the run, and at least the wrk run."""
    return min(seconds - 1, max(seconds // 10, wrk_duration(seconds) + 3))


def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def abort_connection(writer):
    """Closes with RST: SO_LINGER on, timeout 0."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class tally:
    def __init__(self):
        self.verified = 0       # exchanges completed and checked byte for byte
        self.mismatched = 0     # exchanges completed with wrong bytes: a failure
        self.resets = 0         # connections the client reset on purpose
        self.vanished = 0       # connections the client dropped mid-exchange on purpose
        self.refused = 0        # connects that failed (counted, tolerated: the backlog may fill)
        self.broken = 0         # exchanges the server broke off (a failure)
        self.bytes = 0


async def client_loop(port, t, stop, exchanges):
    """Connects again and again until `stop`; `exchanges(reader, writer)` runs one connection's
    exchanges and returns True if it left the connection open for a normal close."""
    while not stop.is_set():
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            t.refused += 1
            await asyncio.sleep(0.01)
            continue
        try:
            if await exchanges(reader, writer):
                writer.close()
        except ConnectionError:
            t.broken += 1
        finally:
            if not writer.is_closing():
                writer.close()


def settle(t, ok, size):
    """Counts a completed exchange; returns whether the connection may go on."""
    if ok:
        t.verified += 1
        t.bytes += size
    else:
        t.mismatched += 1
    return ok


async def echo_client(port, rng, t, stop):
    async def exchanges(reader, writer):
        for _ in range(rng.randint(1, 20)):
            size = rng.choice([1, 7, 100, 1500, 4096, 16384, 65536])
            payload = rng.randbytes(size)
            fate = rng.random()
            writer.write(payload)
            if fate < 0.05:            # reset with the echo in flight
                abort_connection(writer)
                t.resets += 1
                return False
            if fate < 0.10:            # vanish: close without reading the echo
                writer.close()
                t.vanished += 1
                return False
            await writer.drain()
            try:
                echoed = await asyncio.wait_for(reader.readexactly(size), 30)
            except (asyncio.IncompleteReadError, ConnectionError, asyncio.TimeoutError):
                t.broken += 1
                return False
            if not settle(t, echoed == payload, size):
                return False
        return True

    await client_loop(port, t, stop, exchanges)


async def http_client(port, files, rng, t, stop):
    names = list(files)

    async def exchanges(reader, writer):
        for _ in range(rng.randint(1, 10)):
            name = rng.choice(names)
            fate = rng.random()
            request = f"GET /{name} HTTP/1.1\r\nHost: soak\r\n\r\n".encode()
            if fate < 0.05:            # reset halfway through the request head
                writer.write(request[: rng.randint(1, len(request) - 1)])
                await writer.drain()
                abort_connection(writer)
                t.resets += 1
                return False
            writer.write(request)
            if fate < 0.10:            # vanish before the response
                writer.close()
                t.vanished += 1
                return False
            await writer.drain()
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
                m = re.search(rb"[Cc]ontent-[Ll]ength: *(\d+)", head)
                body = await asyncio.wait_for(reader.readexactly(int(m.group(1))), 30) if m else b""
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError,
                    asyncio.TimeoutError):
                t.broken += 1
                return False
            ok = head.startswith(b"HTTP/1.1 200") and body == files[name]
            if not settle(t, ok, len(body)):
                return False
        return True

    await client_loop(port, t, stop, exchanges)


def still_answers_echo(port):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"still there?")
        got = b""
        while len(got) < 12:
            chunk = s.recv(64)
            if not chunk:
                break
            got += chunk
        return got == b"still there?"


def still_answers_http(port, name, body):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(f"GET /{name} HTTP/1.1\r\nHost: soak\r\nConnection: close\r\n\r\n".encode())
        got = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
        return got.startswith(b"HTTP/1.1 200") and got.endswith(body)


async def soak(args, servers, files):
    rng = random.Random(args.seed)
    stop = asyncio.Event()
    echo_t, http_t = tally(), tally()
    half = args.connections // 2
    tasks = [asyncio.create_task(echo_client(servers["echo"][1], random.Random(rng.random()),
                                             echo_t, stop)) for _ in range(half)]
    tasks += [asyncio.create_task(http_client(servers["http"][1], files,
                                              random.Random(rng.random()), http_t, stop))
              for _ in range(args.connections - half)]
    samples = {name: [] for name in servers}
    # wrk runs during the warm-up, so that the level memory is measured against already
    # includes its peak of connections.
    wrk_at = 0
    wrk_seconds = wrk_duration(args.seconds)
    wrk_proc = None
    wrk_out = ""
    started = time.monotonic()
    for second in range(args.seconds):
        await asyncio.sleep(max(0.0, started + second + 1 - time.monotonic()))
        for name, (proc, _) in servers.items():
            samples[name].append((fd_count(proc.pid), rss_kib(proc.pid)))
        if second == wrk_at and args.wrk:
            wrk_proc = await asyncio.create_subprocess_exec(
                args.wrk, "-t1", "-c64", f"-d{wrk_seconds}s",
                f"http://127.0.0.1:{servers['http'][1]}/{sorted(files)[0]}",
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        if args.progress:
            print(f"soak: {second + 1:4d}s echo fds {samples['echo'][-1][0]} rss "
                  f"{samples['echo'][-1][1]} KiB, http fds {samples['http'][-1][0]} rss "
                  f"{samples['http'][-1][1]} KiB, verified {echo_t.verified}+{http_t.verified}",
                  flush=True)
    stop.set()
    await asyncio.wait_for(asyncio.gather(*tasks), 60)
    if wrk_proc is not None:
        wrk_out = (await wrk_proc.communicate())[0].decode()
    return echo_t, http_t, samples, wrk_out


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--echo-server", required=True)
    p.add_argument("--http-server", required=True)
    p.add_argument("--seconds", type=int, default=120)
    p.add_argument("--connections", type=int, default=400)
    p.add_argument("--seed", type=int, default=20261205)
    p.add_argument("--wrk", default=shutil.which("wrk"))
    p.add_argument("--progress", action="store_true")
    args = p.parse_args()
    if args.seconds < 10:
        raise SystemExit("soak: --seconds must be at least 10 (the warm-up comes first)")

    root = tempfile.mkdtemp(prefix="coil-soak-")
    rng = random.Random(args.seed)
    files = {}
    for name, size in [("empty", 0), ("small.txt", 100), ("page.html", 4096),
                       ("medium.bin", 65536), ("large.bin", 1 << 20)]:
        files[name] = rng.randbytes(size)
        with open(os.path.join(root, name), "wb") as f:
            f.write(files[name])

    servers = {"echo": start([args.echo_server, "--port", "0"]),
               "http": start([args.http_server, "--port", "0", "--root", root])}
    idle_fds = {name: fd_count(proc.pid) for name, (proc, _) in servers.items()}
    print(f"soak: {args.seconds} s, {args.connections} connections, seed {args.seed}; "
          f"echo on :{servers['echo'][1]}, http on :{servers['http'][1]}", flush=True)
    failures = []
    try:
        echo_t, http_t, samples, wrk_out = asyncio.run(soak(args, servers, files))
        time.sleep(2)  # let the servers close what the clients dropped last
        warm = warm_up(args.seconds)
        for name, (proc, port) in servers.items():
            t = echo_t if name == "echo" else http_t
            fds = [s[0] for s in samples[name]]
            rss = [s[1] for s in samples[name]]
            final_fds, final_rss = fd_count(proc.pid), rss_kib(proc.pid)
            base = rss[warm - 1]
            growth = (final_rss - base) / base * 100 if base else 0.0
            print(f"soak: {name}: {t.verified} exchanges verified ({t.bytes} bytes), "
                  f"{t.mismatched} mismatched, {t.broken} broken off by the server, "
                  f"{t.resets} resets and {t.vanished} vanished by the client, "
                  f"{t.refused} connects refused")
            print(f"soak: {name}: fds idle {idle_fds[name]}, max {max(fds)}, final {final_fds}; "
                  f"RSS after warm-up ({warm} s) {base} KiB, max {max(rss)} KiB, final "
                  f"{final_rss} KiB ({growth:+.1f}%)")
            if final_fds != idle_fds[name]:
                failures.append(f"{name}: {final_fds - idle_fds[name]} descriptors leaked")
            if final_rss > base * 1.05:
                failures.append(f"{name}: resident memory grew {growth:.1f}% after warm-up")
            if t.mismatched:
                failures.append(f"{name}: {t.mismatched} exchanges returned wrong bytes")
            if t.broken:
                failures.append(f"{name}: the server broke off {t.broken} exchanges")
            if t.verified == 0:
                failures.append(f"{name}: no exchange completed")
        if not still_answers_echo(servers["echo"][1]):
            failures.append("echo: not answering at the end")
        if not still_answers_http(servers["http"][1], "page.html", files["page.html"]):
            failures.append("http: not answering at the end")
        if wrk_out:
            lines = [l.strip() for l in wrk_out.splitlines()
                     if "Requests/sec" in l or "requests in" in l or "Non-2xx" in l
                     or "Socket errors" in l]
            print("soak: wrk: " + "; ".join(lines))
            if "Non-2xx" in wrk_out:
                failures.append("http: wrk saw non-2xx responses")
    finally:
        for proc, _ in servers.values():
            proc.send_signal(signal.SIGTERM)
        for name, (proc, _) in servers.items():
            try:
                code = proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                code = "killed"
            if code != 0:
                failures.append(f"{name}: exited with {code} after SIGTERM")
        shutil.rmtree(root, ignore_errors=True)
    for f in failures:
        print(f"soak: FAIL: {f}")
    print(f"soak: {'passed' if not failures else 'FAILED'}")
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
