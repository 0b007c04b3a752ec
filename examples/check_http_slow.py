#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# A client that keeps reading a large file, slowly, is never cut off by --send-timeout-ms, which
# bounds each wait for room in the socket, not a whole response. Run in a network namespace of
# its own (unshare -n), where the TCP send buffer can be capped at 64 KiB so that the server
# waits for room many times: check_http_slow.py HTTP_SERVER ROOT METHOD
import fcntl
import os
import socket
import struct
import sys
import time

sys.dont_write_bytecode = True  # nothing written into the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import server_process  # noqa: E402

server, root, method = sys.argv[1], sys.argv[2], sys.argv[3]
RATE = 60_000      # bytes per second read by the client
SECONDS = 4.0      # against a 1 s send timeout: a 256 KiB step takes 4.4 s at this rate


def loopback_up():
    s = socket.socket()
    request = struct.pack("16sH22x", b"lo", 0)
    flags = struct.unpack("16sH22x", fcntl.ioctl(s, 0x8913, request))[1]  # SIOCGIFFLAGS
    fcntl.ioctl(s, 0x8914, struct.pack("16sH22x", b"lo", flags | 1))     # SIOCSIFFLAGS, IFF_UP
    s.close()


loopback_up()
with open("/proc/sys/net/ipv4/tcp_wmem", "w") as f:
    f.write("4096 16384 65536")

proc, port = server_process.start([server, "--port", "0", "--root", root, "--large-file",
                                     method, "--send-timeout-ms", "1000"], "check_http_slow")

s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
s.connect(("127.0.0.1", port))
s.settimeout(5)
s.sendall(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
total = 0
start = time.time()
end = None
while time.time() - start < SECONDS:
    try:
        data = s.recv(4096)
    except OSError as e:
        end = repr(e)
        break
    if not data:
        end = "the server closed the connection"
        break
    total += len(data)
    time.sleep(len(data) / RATE)
s.close()
proc.terminate()
proc.wait(10)
if end is not None:
    print(f"check_http_slow: --large-file {method}: a client reading {RATE} B/s was cut off "
          f"after {total} bytes, {time.time() - start:.1f} s: {end}")
    sys.exit(1)
print(f"check_http_slow: --large-file {method}: {total} bytes in {SECONDS} s, still going")
