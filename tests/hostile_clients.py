#!/usr/bin/env python3
"""hostile_clients.py SOCKET PID - clients that misbehave, against a live docentd:
a slow client (one byte every 0.1 s), a client that asks for a streamed answer and
never reads it, garbage instead of HTTP, and 64 concurrent clients (over the
per-caller limit: the excess gets 429, nobody gets an error or a hang).  Others
must keep being served meanwhile, the daemon's memory must stay bounded and it
must not crash.  Prints "ok: ..." lines; exits 1 at the first failure."""
import json
import socket
import sys
import threading
import time

SOCK, PID = sys.argv[1], int(sys.argv[2])


def check(cond, what):
    print(("ok: " if cond else "FAIL: ") + what, flush=True)
    if not cond:
        sys.exit(1)


def rss_kb():
    for line in open(f"/proc/{PID}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def request(method, path, body=None, timeout=60):
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(timeout)
    s.connect(SOCK)
    data = json.dumps(body).encode() if body is not None else b""
    s.sendall(f"{method} {path} HTTP/1.1\r\nHost: d\r\nConnection: close\r\n"
              f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n".encode() + data)
    out = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        out += chunk
    s.close()
    return int(out.split(b" ", 2)[1]), out


def timed(fn):
    t = time.monotonic()
    r = fn()
    return r, time.monotonic() - t


rss0 = rss_kb()

# 1. slow client: headers one byte every 0.1 s for 3 s
def slow():
    s = socket.socket(socket.AF_UNIX)
    s.connect(SOCK)
    for b in b"POST /v1/search HTTP/1.1\r\nHost: d\r\nContent-Length: 40\r\n":
        s.send(bytes([b]))
        time.sleep(0.1)
    s.close()
th = threading.Thread(target=slow)
th.start()
time.sleep(0.3)
worst = 0
for _ in range(5):
    (st, _), dt = timed(lambda: request("GET", "/healthz"))
    worst = max(worst, dt)
    check(st == 200, "healthz while a slow client trickles")
(st, out), dt = timed(lambda: request("POST", "/v1/search", {"query": "join two tables", "k": 3}))
check(st == 200 and b'"uri"' in out and worst < 2,
      f"others served meanwhile (healthz worst {worst:.2f} s, search {dt:.2f} s)")
th.join()

# 2. a client that asks for a streamed answer and never reads it
lazy = socket.socket(socket.AF_UNIX)
lazy.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
lazy.connect(SOCK)
body = json.dumps({"question": "Explain write-ahead logging in detail.", "stream": True}).encode()
lazy.sendall(b"POST /v1/ask HTTP/1.1\r\nHost: d\r\nContent-Type: application/json\r\n"
             b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
time.sleep(0.5)
lazy.setblocking(False)
try:
    first = lazy.recv(64)  # the reply has started: the answer is being generated
except BlockingIOError:
    first = b""
(st, out), dt = timed(lambda: request("POST", "/v1/search", {"query": "aggregate functions", "k": 3}))
check(first.startswith(b"HTTP/1.1 200") and st == 200 and b'"uri"' in out and dt < 30,
      f"a search while a client never reads its stream (waited {dt:.2f} s for the answer in progress)")
lazy.close()

# 3. garbage instead of HTTP
g = socket.socket(socket.AF_UNIX)
g.settimeout(10)
g.connect(SOCK)
g.sendall(bytes(range(256)) * 4 + b"\r\n\r\n")
try:
    g.recv(4096)
except OSError:
    pass
g.close()
check(request("GET", "/healthz")[0] == 200, "garbage bytes: the daemon answers the next client")

# 4. 64 concurrent clients, all from one uid: over max_per_caller the excess gets 429
codes, errors = [], []
def one():
    try:
        codes.append(request("POST", "/v1/search", {"query": "primary key autoincrement", "k": 5})[0])
    except Exception as e:  # noqa: BLE001 - a hang or reset is what we look for
        errors.append(repr(e))
ts = [threading.Thread(target=one) for _ in range(64)]
t0 = time.monotonic()
for t in ts:
    t.start()
for t in ts:
    t.join()
dt = time.monotonic() - t0
ok200, n429 = codes.count(200), codes.count(429)
check(not errors and ok200 + n429 == 64 and ok200 >= 16 and n429 >= 1,
      f"64 concurrent clients in {dt:.1f} s: {ok200} served, {n429} told 429, {len(errors)} errors")
check(request("GET", "/healthz")[0] == 200, "the daemon is fine afterwards")
rss1 = rss_kb()
check(rss1 - rss0 < 200 * 1024, f"memory bounded: RSS {rss0 // 1024} -> {rss1 // 1024} MiB")
