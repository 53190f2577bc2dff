#!/usr/bin/env python3
"""remote_faults.py - a small OpenAI-compatible server that misbehaves on
purpose, for tests/unit/test_remote.c (faults a real serving engine cannot be
made to produce on demand).

Listens on 127.0.0.1, port 0 (the kernel picks); prints the port on the first
line of stdout.  The fault is the first path segment: {base} is
http://127.0.0.1:PORT/MODE/v1.  Modes:

  ok         models [fake-chat, fake-embed]; chat streams "Hello world. [1]"
             in pieces then [DONE]; embeddings of dimension 8 (only for
             model fake-embed, else 404 model_not_found)
  r429       the first two requests 429 (Retry-After: 0), then as ok
  r500       always 500; the body echoes the Authorization header (the
             client must mask the key in its message)
  badjson    chat: an SSE event that is not JSON; embeddings: "{oops"
  cut        chat: two pieces, then the connection closes (no finish, no [DONE])
  hang       chat: one piece, then waits forever (the test kills the server)
  slow       waits 3 s before any byte
  auth       401 unless "Authorization: Bearer sekrit"
  nomodel    404 {"error": {"message": "The model ... does not exist"}}
  count      embeddings: one vector more than asked
  dim        embeddings: dimension 8 for one input, else the second vector 7
  bigdim     embeddings: dimension 70000
  busy       chat: each answer takes 0.3 s (for the concurrency cap)
  plain      chat: a non-streamed JSON completion even when stream is asked
  long       chat: 200 pieces of "word " (for cancellation)

GET /stats/MODE answers {"requests": N, "max_inflight": K} for that mode.
"""
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOCK = threading.Lock()
STATS = {}  # mode -> {"requests", "inflight", "max_inflight"}


def stat(mode):
    return STATS.setdefault(mode, {"requests": 0, "inflight": 0, "max_inflight": 0})


class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def send_json(self, code, obj, extra=None):
        body = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def sse_start(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True

    def event(self, obj):
        data = obj if isinstance(obj, str) else json.dumps(obj)
        self.wfile.write(("data: " + data + "\n\n").encode())
        self.wfile.flush()

    def piece(self, text, finish=None):
        self.event({"object": "chat.completion.chunk", "model": "fake-chat",
                    "choices": [{"index": 0, "delta": {"content": text} if text else {},
                                 "finish_reason": finish}]})

    def route(self, method):
        parts = self.path.split("/")
        if len(parts) >= 3 and parts[1] == "stats":
            with LOCK:
                s = dict(stat(parts[2]))
            return self.send_json(200, s)
        mode = parts[1] if len(parts) > 1 else ""
        what = "/".join(parts[3:]) if len(parts) > 3 else ""
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        with LOCK:
            s = stat(mode)
            s["requests"] += 1
            s["inflight"] += 1
            s["max_inflight"] = max(s["max_inflight"], s["inflight"])
            nreq = s["requests"]
        try:
            self.serve(mode, what, method, body, nreq)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client hung up (cancellation): expected
        finally:
            with LOCK:
                stat(mode)["inflight"] -= 1

    def serve(self, mode, what, method, body, nreq):
        req = {}
        if body:
            try:
                req = json.loads(body)
            except ValueError:
                return self.send_json(400, {"error": {"message": "bad json"}})
        if mode == "slow":
            time.sleep(3)
        if mode == "r429" and nreq <= 2:
            return self.send_json(429, {"error": {"message": "slow down"}}, {"Retry-After": "0"})
        if mode == "r500":
            return self.send_json(500, {"error": {"message": "boom, you sent "
                                                  + self.headers.get("Authorization", "")}})
        if mode == "auth" and self.headers.get("Authorization") != "Bearer sekrit":
            return self.send_json(401, {"error": {"message": "invalid api key"}})
        if mode == "nomodel":
            return self.send_json(404, {"error": {"message": "The model `%s` does not exist"
                                                  % req.get("model", "?"), "code": "model_not_found"}})
        if what == "models":
            return self.send_json(200, {"object": "list", "data": [
                {"id": "fake-chat", "object": "model"}, {"id": "fake-embed", "object": "model"}]})
        if what == "embeddings":
            return self.embeddings(mode, req)
        if what == "chat/completions":
            return self.chat(mode, req)
        return self.send_json(404, {"error": {"message": "no route " + self.path}})

    def embeddings(self, mode, req):
        if mode == "badjson":
            return self.send_json(200, b"{oops")
        if req.get("model") != "fake-embed":
            return self.send_json(404, {"error": {"message": "model %s not found" % req.get("model")}})
        inputs = req.get("input")
        if isinstance(inputs, str):
            inputs = [inputs]
        data = []
        for i, t in enumerate(inputs):
            dim = 8
            if mode == "dim" and len(inputs) > 1 and i == 1:
                dim = 7
            if mode == "bigdim":
                dim = 70000
            v = [float((len(t) * (j + 1) + ord(t[0] if t else "a") * j) % 13 + 1) for j in range(dim)]
            data.append({"object": "embedding", "index": i, "embedding": v})
        if mode == "count":
            data.append(dict(data[-1], index=len(data)))
        self.send_json(200, {"object": "list", "model": "fake-embed", "data": data,
                             "usage": {"prompt_tokens": 1, "total_tokens": 1}})

    def chat(self, mode, req):
        if mode == "plain":
            return self.send_json(200, {"object": "chat.completion", "choices": [
                {"index": 0, "message": {"role": "assistant", "content": "Plain answer. [1]"},
                 "finish_reason": "stop"}], "usage": {"prompt_tokens": 11, "completion_tokens": 4}})
        self.sse_start()
        if mode == "badjson":
            self.piece("Hel")
            self.event("{this is not json")
            return
        if mode == "cut":
            self.piece("Hello ")
            self.piece("wor")
            return  # the handler returns: the connection closes
        if mode == "hang":
            self.piece("Hello ")
            time.sleep(3600)
            return
        if mode == "long":
            for _ in range(200):
                self.piece("word ")
                time.sleep(0.002)
            self.piece("", "length")
            self.event("[DONE]")
            return
        if mode == "busy":
            time.sleep(0.3)
        for p in ["Hello", " world", ". [1]"]:
            self.piece(p)
        self.piece("", "stop")
        if (req.get("stream_options") or {}).get("include_usage"):
            self.event({"object": "chat.completion.chunk", "choices": [],
                        "usage": {"prompt_tokens": 17, "completion_tokens": 5, "total_tokens": 22}})
        self.event("[DONE]")

    def do_GET(self):
        self.route("GET")

    def do_POST(self):
        self.route("POST")


def main():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    srv.daemon_threads = True
    if len(sys.argv) == 4 and sys.argv[1] == "--tls":  # --tls CERT KEY: HTTPS with that pair
        import ssl
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(sys.argv[2], sys.argv[3])
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    print(srv.server_address[1], flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
