#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Raw-socket checks of a running http_server (started by check_http.sh with 1.5 s header and
# idle timeouts and the root check_http.sh makes): malformed and oversize requests, path
# traversal, pipelining, a slowloris client, an idle client.
#   check_http_raw.py PORT CONFINEMENT
import socket
import sys
import time

PORT = int(sys.argv[1])
MODE = sys.argv[2]
HEADER_TIMEOUT = 1.5
IDLE_TIMEOUT = 1.5


def fail(message):
    print(f"FAIL ({MODE}): {message}")
    sys.exit(1)


def ok(message):
    print(f"ok ({MODE}): {message}")


def connect():
    s = socket.create_connection(("127.0.0.1", PORT))
    s.settimeout(10)
    return s


def read_all(s):
    """Everything until the server closes the connection."""
    data = b""
    while True:
        try:
            chunk = s.recv(65536)
        except ConnectionResetError:
            fail(f"connection reset after {data[:80]!r}")
        if not chunk:
            return data
        data += chunk


def exchange(raw):
    """Sends raw bytes, half-closes, returns everything the server answered."""
    s = connect()
    s.sendall(raw)
    s.shutdown(socket.SHUT_WR)
    data = read_all(s)
    s.close()
    return data


def status_of(response):
    if not response.startswith(b"HTTP/1.1 "):
        fail(f"not an HTTP response: {response[:80]!r}")
    return int(response[9:12])


def responses(data):
    """Splits a byte stream of responses (each with Content-Length) into (status, headers, body)."""
    out = []
    while data:
        head, sep, rest = data.partition(b"\r\n\r\n")
        if not sep:
            fail(f"truncated response: {data[:80]!r}")
        lines = head.split(b"\r\n")
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get(b"content-length", b"0"))
        out.append((int(lines[0][9:12]), headers, rest[:length]))
        data = rest[length:]
    return out


def expect(raw, want, what):
    got = status_of(exchange(raw))
    if got != want:
        fail(f"{what}: status {got}, expected {want}")
    ok(f"{what}: {want}")


def get(target, extra=b""):
    return b"GET " + target + b" HTTP/1.1\r\nHost: t\r\n" + extra + b"Connection: close\r\n\r\n"


# --- malformed and oversize requests --------------------------------------------------------
expect(b"GARBAGE\r\n\r\n", 400, "a request line without target and version")
expect(b"GET / HTTP/9.9\r\nHost: t\r\n\r\n", 505, "an unknown HTTP major version")
expect(b"GET / HTTP/1.x\r\nHost: t\r\n\r\n", 400, "a malformed HTTP version")
expect(b"GET / HTTP/1.1\r\n\r\n", 400, "HTTP/1.1 without Host")
expect(b"GET / HTTP/1.1\r\nHost: t\r\nBad Header: x\r\n\r\n", 400, "a space in a field name")
expect(b"GET / HTTP/1.1\r\nHost: t\r\nX: a\r\n folded\r\n\r\n", 400, "obs-fold")
expect(b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03", 400, "a TLS ClientHello")
expect(b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: t\r\n\r\n", 414, "a 5000-byte target")
expect(get(b"/", b"X-Big: " + b"v" * 9000 + b"\r\n"), 431, "a 9000-byte header field")
expect(get(b"/", b"".join(b"X-%d: v\r\n" % i for i in range(150))), 431, "150 header lines")
expect(b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 405,
       "a POST with a chunked body")
expect(b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n", 501,
       "a gzip-coded request body")
expect(b"GET / HTTP/2.0\r\nHost: t\r\n\r\n", 505, "HTTP/2.0 in an HTTP/1 request line")
# A chunked body is not read: the answer is sent and the connection closed, so the "request"
# inside the body is never answered.
answered = responses(exchange(b"GET /digits.txt HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                              b"1f\r\nGET /digits.txt HTTP/1.1\r\nHost: t\r\n\r\n\r\n0\r\n\r\n"))
if [status for status, _, _ in answered] != [200] or answered[0][1].get(b"connection") != b"close":
    fail(f"a GET with a chunked body: {[(status, headers) for status, headers, _ in answered]}")
ok("a GET with a chunked body: 200, Connection: close, the body not taken as a request")
# Likewise a body announced by Content-Length: answered, then the connection is closed, so the
# request inside the body is never answered.
inner = b"GET /digits.txt HTTP/1.1\r\nHost: t\r\n\r\n"
answered = responses(exchange(b"GET /digits.txt HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n"
                              % len(inner) + inner))
if [status for status, _, _ in answered] != [200] or answered[0][1].get(b"connection") != b"close":
    fail(f"a GET with a Content-Length body: {[(status, headers) for status, headers, _ in answered]}")
ok("a GET with a Content-Length body: 200, Connection: close, the body not taken as a request")
# HTTP/1.2 is answered as HTTP/1.1 (RFC 9110 2.5).
expect(b"GET /digits.txt HTTP/1.2\r\nHost: t\r\nConnection: close\r\n\r\n", 200, "HTTP/1.2")

# Every 400 ends the connection: a request pipelined after the malformed one is not answered.
for first, what in [(b"GET /%zz HTTP/1.1\r\nHost: t\r\n\r\n", "a bad percent escape"),
                    (b"GET * HTTP/1.1\r\nHost: t\r\n\r\n", "the asterisk target"),
                    (b"GET ftp://t/a HTTP/1.1\r\nHost: t\r\n\r\n", "an ftp:// target"),
                    (b"GET / HTTP/1.1\r\nHost: a b/c@@\r\n\r\n", "an invalid Host")]:
    answered = responses(exchange(first + b"GET /digits.txt HTTP/1.1\r\nHost: t\r\n\r\n"))
    if [status for status, _, _ in answered] != [400]:
        fail(f"{what}, then a GET: answered {[status for status, _, _ in answered]}, expected [400]")
    if answered[0][1].get(b"connection") != b"close":
        fail(f"{what}: the 400 does not say Connection: close")
    ok(f"{what}: 400, Connection: close, nothing after it answered")

# A huge head the client keeps sending: the 431 must still arrive (no reset destroys it).
s = connect()
s.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nX: ")
try:
    for _ in range(8):
        s.sendall(b"v" * 8192)
except (BrokenPipeError, ConnectionResetError):
    pass
try:
    data = s.recv(65536)
except ConnectionResetError:
    fail("a reset instead of 431 for a head that keeps coming")
s.close()
if status_of(data) != 431:
    fail(f"head that keeps coming: {data[:60]!r}")
ok("a head that keeps coming: 431")

# --- traversal: every variant is a 404 that says nothing about the outside ----------------
for target in [b"/../etc/passwd", b"/%2e%2e/%2e%2e/etc/passwd", b"/%2E%2E/%2E%2E/etc/passwd",
               b"/a/%2f../..", b"/dir/..%2f..%2f..%2fetc%2fpasswd", b"/..%5c..%5cetc%5cpasswd",
               b"/etc_link/passwd", b"/etc_link/", b"/passwd_link", b"/%00", b"/digits.txt%00.html",
               b"http://t/../etc/passwd"]:
    response = exchange(get(target))
    if status_of(response) != 404 or b"root:" in response:
        fail(f"traversal {target!r} answered {response[:200]!r}")
ok("traversal variants (dot-dot, encoded, symlinks out, NUL) are all 404")
if status_of(exchange(get(b"/inside_link.txt"))) != 200:
    fail("a symlink inside the root is refused")
ok("a symlink that stays inside the root is served")

# --- pipelining: several requests in one send, answered in order -------------------------
s = connect()
s.sendall(b"GET /digits.txt HTTP/1.1\r\nHost: t\r\n\r\n"
          b"HEAD /index.html HTTP/1.1\r\nHost: t\r\n\r\n"
          b"GET /missing HTTP/1.1\r\nHost: t\r\n\r\n"
          b"GET /digits.txt HTTP/1.1\r\nHost: t\r\nRange: bytes=10-12\r\n\r\n"
          b"GET /dir/ HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
data = read_all(s)
s.close()
# The HEAD answer has a Content-Length but no body: split it by hand.
first, _, rest = data.partition(b"\r\n\r\n")
first_body, rest = rest[:20], rest[20:]
head_answer, _, rest = rest.partition(b"\r\n\r\n")
got = [(status_of(first + b"\r\n"), first_body), (status_of(head_answer), b"")]
got += [(status, body) for status, _, body in responses(rest)]
want = [(200, b"0123456789abcdefghij"), (200, b""), (404, b"404 Not Found\n"), (206, b"abc"),
        (200, b"inside dir\n")]
if got != want:
    fail(f"pipelined answers {got}, expected {want}")
ok("five pipelined requests in one send are answered in order")

# The same, one byte per send: heads split anywhere still parse.
s = connect()
for byte in b"GET /digits.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n":
    s.send(bytes([byte]))
if responses(read_all(s))[0][2] != b"0123456789abcdefghij":
    fail("a head sent a byte at a time")
s.close()
ok("a head sent one byte per send")

# --- ranges the server ignores, and HTTP/1.0 keep-alive ----------------------------------
def head_of(response):
    head = response.partition(b"\r\n\r\n")[0].split(b"\r\n")
    return {n.strip().lower(): v.strip() for n, _, v in (l.partition(b":") for l in head[1:])}


# A Range on HEAD is ignored: 200 with the whole length (RFC 9110 allows it).
answer = exchange(b"HEAD /digits.txt HTTP/1.1\r\nHost: t\r\nRange: bytes=0-3\r\n"
                  b"Connection: close\r\n\r\n")
if status_of(answer) != 200 or head_of(answer).get(b"content-length") != b"20":
    fail(f"HEAD with Range: {answer[:120]!r}")
ok("a Range on HEAD is ignored: 200, the whole length")

# A Range with If-Range is ignored too (the server sends no validators to compare).
[(status, headers, body)] = responses(exchange(get(b"/digits.txt",
                                                   b"Range: bytes=0-3\r\nIf-Range: \"x\"\r\n")))
if status != 200 or body != b"0123456789abcdefghij":
    fail(f"Range with If-Range: {status} {body!r}")
ok("a Range with If-Range is ignored: 200, the whole file")

# An HTTP/1.0 client that asks for keep-alive gets it, and the connection serves a second
# request.
s = connect()
for n in (1, 2):
    s.sendall(b"GET /digits.txt HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    data = b""
    while b"\r\n\r\n" not in data or len(data.partition(b"\r\n\r\n")[2]) < 20:
        chunk = s.recv(65536)
        if not chunk:
            fail(f"HTTP/1.0 keep-alive: closed after {n - 1} answer(s): {data[:120]!r}")
        data += chunk
    if status_of(data) != 200 or head_of(data).get(b"connection", b"").lower() != b"keep-alive":
        fail(f"HTTP/1.0 keep-alive, request {n}: {data[:160]!r}")
s.close()
ok("an HTTP/1.0 client that asked for keep-alive gets Connection: keep-alive and a second answer")

# --- timeouts ------------------------------------------------------------------------------
# slowloris: one header byte per 0.25 s never completes a head; the header timeout ends it.
s = connect()
started = time.monotonic()
closed_after = None
try:
    for byte in b"GET / HTTP/1.1\r\nHost: t\r\n" + b"X-Slow: " + b"z" * 100:
        s.send(bytes([byte]))
        time.sleep(0.25)
        if time.monotonic() - started > HEADER_TIMEOUT + 5:
            break
except (BrokenPipeError, ConnectionResetError):
    closed_after = time.monotonic() - started
s.settimeout(5)
try:
    data = s.recv(65536)
except (ConnectionResetError, socket.timeout):
    data = b""
if closed_after is None:
    closed_after = time.monotonic() - started
s.close()
if closed_after > HEADER_TIMEOUT + 3.0:  # + the 1 s drain, + slack for a loaded machine
    fail(f"slowloris still connected after {closed_after:.1f} s")
if data and status_of(data) != 408:
    fail(f"slowloris answered {data[:60]!r}")
ok(f"slowloris (a byte per 0.25 s) disconnected after {closed_after:.1f} s (408)")

# idle: connects and sends nothing; closed after the idle timeout, without an answer.
s = connect()
started = time.monotonic()
data = s.recv(100)
elapsed = time.monotonic() - started
s.close()
if data != b"" or not IDLE_TIMEOUT - 0.2 <= elapsed <= IDLE_TIMEOUT + 2.0:
    fail(f"idle connection: {data!r} after {elapsed:.1f} s")
ok(f"an idle connection is closed after {elapsed:.1f} s")

# idle between requests of a keep-alive connection: the same.
s = connect()
s.sendall(b"GET /digits.txt HTTP/1.1\r\nHost: t\r\n\r\n")
started = time.monotonic()
data = read_all(s)
elapsed = time.monotonic() - started
s.close()
if not data.endswith(b"0123456789abcdefghij") or elapsed > IDLE_TIMEOUT + 2.0:
    fail(f"keep-alive idle: {data[-30:]!r} after {elapsed:.1f} s")
ok(f"a keep-alive connection idle after its answer is closed after {elapsed:.1f} s")
print(f"all raw checks passed ({MODE})")
