#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Peers that send and never read hold pool buffers while their echoes wait; with
# --send-timeout-ms their connections end and another client is served again.
#   check_echo_hogs.py ECHO_SERVER [SERVER ARGS...]
# Exit 0 when a fresh client's "ping" comes back; 1 when it does not within 15 s.
import os
import socket
import sys
import time

sys.dont_write_bytecode = True  # nothing written into the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import server_process  # noqa: E402

server = sys.argv[1]
HOGS = 8

proc, port = server_process.start([server, "--port", "0"] + sys.argv[2:], "check_echo_hogs")

# Each hog sends until its socket is full and never reads: the server receives into the pool
# until its echo of that data cannot be sent.
hogs = []
for _ in range(HOGS):
    h = socket.socket()
    h.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    h.connect(("127.0.0.1", port))
    h.setblocking(False)
    chunk = b"x" * 65536
    stalled_at = None
    while True:
        try:
            h.send(chunk)
            stalled_at = None
        except BlockingIOError:
            if stalled_at is None:
                stalled_at = time.time()
            elif time.time() - stalled_at > 0.2:
                break  # nothing has moved for a while: the server has stopped reading it
            time.sleep(0.01)
    hogs.append(h)

c = socket.socket()
c.connect(("127.0.0.1", port))
c.settimeout(15)
c.sendall(b"ping")
got = b""
try:
    while len(got) < 4:
        data = c.recv(4 - len(got))
        if not data:
            break
        got += data
except socket.timeout:
    pass
for h in hogs:
    h.close()
c.close()
proc.terminate()
proc.wait(10)
if got != b"ping":
    print(f"check_echo_hogs: a fresh client got {got!r} back, not b'ping', with {HOGS} peers "
          "that never read")
    sys.exit(1)
print(f"check_echo_hogs: served with {HOGS} peers that never read")
