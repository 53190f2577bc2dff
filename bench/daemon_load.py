#!/usr/bin/env python3
"""daemon_load.py - the load generator of bench/daemon.sh.

    daemon_load.py SOCKET PID QUESTIONS.jsonl OUT.json

Talks HTTP/1.1 to a running docentd over its Unix socket, one persistent
connection per client thread:

  search  POST /v1/search {"query", "k"} with SEARCH_CLIENTS concurrent
          clients (default "1 8 32"), each level for SEARCH_SECONDS (10) or
          until SEARCH_REQUESTS requests in all (0: no cap); queries are the
          questions of QUESTIONS.jsonl, each client starting at its own offset.
  ask     POST /v1/ask {"question", "stream": true} with Accept:
          text/event-stream, ASK_CLIENTS concurrent clients (default "1 4 16"),
          each asking ASK_PER_CLIENT answerable questions (default "4 2 1":
          one value per level, or one value for all).  The levels ask the same
          questions from the start of the list, so their answer lengths match.  Time to first token is client-side:
          from sending the request to the end of the first `token` event; the
          daemon's own timings.first_text / timings.total from the `done`
          event are kept next to it.
  mixed   (BENCH_MIXED=1, the default) one search client running while
          MIXED_ASK_CLIENTS (2) clients stream answers: what a search costs
          while the generator is busy.

Every reply is checked (status 200, the JSON shape, the SSE event order
sources, token..., citations, done); the first failure stops the run with
exit status 1 and a message naming the request.  VmRSS / VmHWM of PID are
sampled after each phase.  Prints a table and writes every figure to OUT.json.
"""
import http.client
import json
import math
import os
import socket
import sys
import threading
import time


class UnixHTTPConnection(http.client.HTTPConnection):
    """HTTPConnection over a Unix socket (the host name is only for Host:)."""

    def __init__(self, path, timeout):
        super().__init__("docentd", timeout=timeout)
        self.sock_path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self.sock_path)
        self.sock = s


class BenchError(Exception):
    pass


def env_int(name, default):
    v = os.environ.get(name, "")
    return int(v) if v.strip() else default


def env_list(name, default):
    v = os.environ.get(name, "")
    return [int(x) for x in (v.split() if v.strip() else default.split())]


def pct(xs, p):
    """nearest-rank percentile (p99 of fewer than 100 samples is the maximum)"""
    if not xs:
        return float("nan")
    s = sorted(xs)
    return s[max(0, math.ceil(p / 100 * len(s)) - 1)]


def proc_mem(pid):
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("VmRSS", "VmHWM"):
                    out[k] = int(v.split()[0]) / 1024.0  # MiB
    except OSError as e:
        raise BenchError(f"daemon pid {pid}: {e} (did it die?)")
    return out


class Client:
    """one persistent connection; reconnects (and counts it) when the daemon
    closed an idle keep-alive connection between two requests"""

    def __init__(self, sock, timeout=900):
        self.sock, self.timeout = sock, timeout
        self.conn = UnixHTTPConnection(sock, timeout)
        self.reconnects = 0

    def post(self, path, body, headers=None):
        h = {"Content-Type": "application/json"}
        h.update(headers or {})
        data = json.dumps(body).encode()
        for attempt in (0, 1):
            try:
                t0 = time.perf_counter()
                self.conn.request("POST", path, data, h)
                return t0, self.conn.getresponse()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                if attempt:
                    raise
                self.conn.close()
                self.conn = UnixHTTPConnection(self.sock, self.timeout)
                self.reconnects += 1

    def get(self, path):
        self.conn.request("GET", path)
        r = self.conn.getresponse()
        body = r.read()
        if r.status != 200:
            raise BenchError(f"GET {path}: HTTP {r.status}: {body[:300]!r}")
        return json.loads(body)

    def close(self):
        self.conn.close()


def search_once(cl, query, k):
    t0, r = cl.post("/v1/search", {"query": query, "k": k})
    body = r.read()
    t1 = time.perf_counter()
    if r.status != 200:
        raise BenchError(f"search {query!r}: HTTP {r.status}: {body[:300]!r}")
    d = json.loads(body)
    if not isinstance(d.get("results"), list) or not d["results"]:
        raise BenchError(f"search {query!r}: no results: {body[:300]!r}")
    return t1 - t0


def ask_once(cl, question):
    """one streamed answer: client-side first token / total, the done event"""
    t0, r = cl.post("/v1/ask", {"question": question, "stream": True},
                    {"Accept": "text/event-stream"})
    if r.status != 200:
        raise BenchError(f"ask {question!r}: HTTP {r.status}: {r.read()[:300]!r}")
    ctype = r.getheader("Content-Type", "")
    if not ctype.startswith("text/event-stream"):
        raise BenchError(f"ask {question!r}: Content-Type {ctype!r}, not an event stream")
    events, first, done, name = [], None, None, None
    while True:
        line = r.readline()
        if not line:
            break
        line = line.rstrip(b"\r\n")
        if line.startswith(b"event: "):
            name = line[7:].decode()
            events.append(name)
        elif line.startswith(b"data: "):
            if name == "token" and first is None:
                first = time.perf_counter() - t0
            elif name == "done":
                done = json.loads(line[6:])
            elif name == "error":
                raise BenchError(f"ask {question!r}: error event: {line[6:300].decode()}")
    total = time.perf_counter() - t0
    r.close()
    ok = (len(events) >= 3 and events[0] == "sources" and events[-2:] == ["citations", "done"]
          and set(events[1:-2]) <= {"token"})
    if not ok or done is None:
        raise BenchError(f"ask {question!r}: bad event sequence {events[:3]}...{events[-3:]}")
    return {"first": first, "total": total, "d_first": done["timings"]["first_text"],
            "d_total": done["timings"]["total"], "tokens": done["usage"]["completion_tokens"],
            "not_found": done.get("not_found", False), "refused": done.get("refused", False)}


def run_threads(n, target):
    """n threads running target(i, barrier); re-raises the first failure"""
    errs = []
    bar = threading.Barrier(n)

    def wrap(i):
        try:
            target(i, bar)
        except Exception as e:  # noqa: BLE001 - reported below
            errs.append(e)
            bar.abort()

    ts = [threading.Thread(target=wrap, args=(i,)) for i in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    real = [e for e in errs if not isinstance(e, threading.BrokenBarrierError)]
    if real or errs:
        e = (real or errs)[0]
        raise e if isinstance(e, BenchError) else BenchError(f"{type(e).__name__}: {e}")


def search_level(sock, queries, n, seconds, cap, k):
    lat, lock, counter = [], threading.Lock(), [0]
    marks = {}
    reconnects = [0]

    def client(i, bar):
        cl = Client(sock)
        mine, j = [], i * 7
        bar.wait()
        if i == 0:
            marks["start"] = time.perf_counter()
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            if cap:
                with lock:
                    if counter[0] >= cap:
                        break
                    counter[0] += 1
            mine.append(search_once(cl, queries[j % len(queries)], k))
            j += 1
        end = time.perf_counter()
        with lock:
            lat.extend(mine)
            marks["end"] = max(marks.get("end", 0), end)
            reconnects[0] += cl.reconnects
        cl.close()

    run_threads(n, client)
    wall = marks["end"] - marks["start"]
    return {"clients": n, "requests": len(lat), "wall_s": wall, "rps": len(lat) / wall,
            "p50_ms": pct(lat, 50) * 1e3, "p99_ms": pct(lat, 99) * 1e3,
            "max_ms": max(lat) * 1e3, "reconnects": reconnects[0]}


def ask_level(sock, questions, n, per_client, offset=0):
    res, lock = [], threading.Lock()
    marks = {}

    def client(i, bar):
        cl = Client(sock)
        qs = [questions[(offset + i * per_client + j) % len(questions)] for j in range(per_client)]
        bar.wait()
        if i == 0:
            marks["start"] = time.perf_counter()
        mine = [ask_once(cl, q) for q in qs]
        with lock:
            res.extend(mine)
            marks["end"] = max(marks.get("end", 0), time.perf_counter())
        cl.close()

    run_threads(n, client)
    firsts = [x["first"] for x in res if x["first"] is not None]
    return {"clients": n, "answers": len(res), "per_client": per_client,
            "wall_s": marks["end"] - marks["start"],
            "ttft_p50": pct(firsts, 50), "ttft_p99": pct(firsts, 99),
            "total_p50": pct([x["total"] for x in res], 50),
            "total_p99": pct([x["total"] for x in res], 99),
            "d_first_p50": pct([x["d_first"] for x in res], 50),
            "d_first_p99": pct([x["d_first"] for x in res], 99),
            "d_total_p50": pct([x["d_total"] for x in res], 50),
            "d_total_p99": pct([x["d_total"] for x in res], 99),
            "tokens_p50": pct([x["tokens"] for x in res], 50),
            "tokens": sorted(x["tokens"] for x in res),
            "no_token": sum(1 for x in res if x["first"] is None),
            "not_found": sum(1 for x in res if x["not_found"]),
            "refused": sum(1 for x in res if x["refused"])}


def mixed(sock, questions, queries, n_ask, k):
    """one search client looping while n_ask clients stream one answer each"""
    stop, lat, out = threading.Event(), [], {}

    def searcher():
        cl = Client(sock)
        j = 0
        try:
            while not stop.is_set():
                lat.append(search_once(cl, queries[j % len(queries)], k))
                j += 1
        except Exception as e:  # noqa: BLE001 - reported by the caller
            out["err"] = e
        cl.close()

    th = threading.Thread(target=searcher)
    th.start()
    try:
        a = ask_level(sock, questions, n_ask, 1, offset=17)
    finally:
        stop.set()
        th.join()
    if "err" in out:
        e = out["err"]
        raise e if isinstance(e, BenchError) else BenchError(f"{type(e).__name__}: {e}")
    if not lat:
        raise BenchError("mixed: no search finished while answers were streamed")
    return {"ask_clients": n_ask, "answers": a["answers"], "searches": len(lat),
            "p50_ms": pct(lat, 50) * 1e3, "p99_ms": pct(lat, 99) * 1e3, "max_ms": max(lat) * 1e3}


def main():
    if len(sys.argv) != 5:
        sys.exit("usage: daemon_load.py SOCKET PID QUESTIONS.jsonl OUT.json")
    sock, pid, qfile, outfile = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    qs = [json.loads(l) for l in open(qfile) if l.strip()]
    queries = [q["question"] for q in qs]
    answerable = [q["question"] for q in qs if q.get("answerable", True)]
    k = env_int("SEARCH_K", 5)
    out = {"mem": {}, "k": k}
    try:
        cl = Client(sock)
        st0 = cl.get("/v1/status")
        # warm-up (not measured): page in the index and both models
        for q in queries[:10]:
            search_once(cl, q, k)
        ask_once(cl, answerable[-1])
        out["mem"]["after_warmup"] = proc_mem(pid)

        out["search"] = []
        for n in env_list("SEARCH_CLIENTS", "1 8 32"):
            r = search_level(sock, queries, n, env_int("SEARCH_SECONDS", 10),
                             env_int("SEARCH_REQUESTS", 0), k)
            out["search"].append(r)
            print(f"  search, {n:2d} clients: {r['requests']} requests, {r['rps']:.1f}/s, "
                  f"p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms", file=sys.stderr, flush=True)
        out["mem"]["after_search"] = proc_mem(pid)

        out["ask"] = []
        levels = env_list("ASK_CLIENTS", "1 4 16")
        pers = env_list("ASK_PER_CLIENT", "4 2 1")
        if len(pers) == 1:
            pers = pers * len(levels)
        if len(pers) != len(levels):
            raise BenchError(f"ASK_PER_CLIENT: {len(pers)} values for {len(levels)} levels of ASK_CLIENTS")
        for n, per in zip(levels, pers):
            r = ask_level(sock, answerable, n, per)
            out["ask"].append(r)
            print(f"  ask, {n:2d} clients: {r['answers']} answers in {r['wall_s']:.1f} s, "
                  f"first token p50 {r['ttft_p50']:.2f} s", file=sys.stderr, flush=True)
        out["mem"]["after_ask"] = proc_mem(pid)

        if env_int("BENCH_MIXED", 1):
            out["mixed"] = mixed(sock, answerable, queries, env_int("MIXED_ASK_CLIENTS", 2), k)
        st1 = cl.get("/v1/status")
        out["mem"]["end"] = proc_mem(pid)
        cl.close()
    except BenchError as e:
        print(f"daemon_load.py: {e}", file=sys.stderr)
        sys.exit(1)
    except (OSError, http.client.HTTPException, ValueError) as e:
        print(f"daemon_load.py: request failed: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
    c0, c1 = st0["counters"], st1["counters"]
    out["counters"] = {"requests": c1["requests"] - c0["requests"], "errors": c1["errors"] - c0["errors"]}
    out["collections"] = st1["collections"]
    json.dump(out, open(outfile, "w"), indent=1)
    if out["counters"]["errors"]:
        print(f"daemon_load.py: the daemon counted {out['counters']['errors']} errors during the run",
              file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
