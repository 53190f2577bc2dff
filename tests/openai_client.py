#!/usr/bin/env python3
"""openai_client.py SOCKET | http://HOST:PORT KEY - docentd's OpenAI-compatible
routes through the real `openai` client library, over the Unix socket (httpx's
transport) or over TCP with an API key.
Prints "ok: ..." lines; exits 1 at the first failed check."""
import sys

import openai

try:
    import httpx
except ImportError:  # newer openai releases ship it as httpx2
    import httpx2 as httpx


def check(cond, what):
    print(("ok: " if cond else "FAIL: ") + what, flush=True)
    if not cond:
        sys.exit(1)


where = sys.argv[1]
if where.startswith("http://"):  # TCP with an API key
    client = openai.OpenAI(api_key=sys.argv[2], base_url=where + "/v1", max_retries=0)
else:  # the Unix socket
    client = openai.OpenAI(api_key="unused", base_url="http://docent/v1", max_retries=0,
                           http_client=httpx.Client(transport=httpx.HTTPTransport(uds=where)))
ids = [m.id for m in client.models.list().data]
check(ids[0] == "docent" and "docent-generator" in ids and len(ids) == 3, f"models.list: {ids}")

r = client.chat.completions.create(model="docent", max_tokens=48, messages=[
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "What does AUTOINCREMENT do in SQLite?"}])
c = r.choices[0]
cites = (r.model_extra or {}).get("citations")
check(c.message.role == "assistant" and c.message.content and c.finish_reason in ("stop", "length")
      and r.usage.completion_tokens > 0 and r.usage.prompt_tokens > 0 and isinstance(cites, list),
      f"chat.completions (JSON): {len(c.message.content)} chars, {len(cites or [])} citations, "
      f"finish {c.finish_reason}")
if cites:
    check("Sources:" in c.message.content and all(x["uri"] in c.message.content for x in cites),
          "the cited sources are listed in the content")

parts, finish, last_extra = [], None, {}
for ch in client.chat.completions.create(model="docent", stream=True, max_tokens=48, messages=[
        {"role": "user", "content": "What is write-ahead logging?"},
        {"role": "assistant", "content": "WAL appends changes to a separate log file [1]."},
        {"role": "user", "content": "What are its advantages?"}]):
    if ch.choices and ch.choices[0].delta.content:
        parts.append(ch.choices[0].delta.content)
    if ch.choices and ch.choices[0].finish_reason:
        finish, last_extra = ch.choices[0].finish_reason, ch.model_extra or {}
check(len(parts) >= 3 and finish in ("stop", "length") and isinstance(last_extra.get("citations"), list),
      f"chat.completions (stream, follow-up): {len(parts)} content chunks, finish {finish}")

e = client.embeddings.create(model=ids[1], input=["hello world", "a second text"])
check(len(e.data) == 2 and len(e.data[0].embedding) == 384 and e.usage.prompt_tokens > 0,
      "embeddings: 2 vectors of 384")
norm = sum(v * v for v in e.data[0].embedding) ** 0.5
check(abs(norm - 1) < 1e-3, f"embeddings are unit vectors ({norm:.4f})")

try:
    client.chat.completions.create(model="gpt-4", messages=[{"role": "user", "content": "x"}])
    check(False, "an unknown model is refused")
except openai.NotFoundError:
    check(True, "an unknown model is refused (404)")
try:
    client.chat.completions.create(model="docent", messages=[{"role": "assistant", "content": "x"}])
    check(False, "a conversation not ending with the user is refused")
except openai.BadRequestError:
    check(True, "a conversation not ending with the user is refused (400)")

# "docent-generator": the generator alone, for admins (the socket's caller here
# is root or the daemon's own user; the TCP key is not an admin)
msgs = [{"role": "user", "content": "Say hello in one word."}]
if where.startswith("http://"):
    try:
        client.chat.completions.create(model="docent-generator", max_tokens=8, messages=msgs)
        check(False, "docent-generator is refused to a key that is not an admin's")
    except openai.PermissionDeniedError:
        check(True, "docent-generator is refused to a key that is not an admin's (403)")
else:
    r = client.chat.completions.create(model="docent-generator", max_tokens=8, messages=msgs)
    check(r.choices[0].message.content is not None and r.usage.completion_tokens > 0
          and "Sources:" not in r.choices[0].message.content,
          f"docent-generator (admin): a plain completion ({r.usage.completion_tokens} tokens)")
    parts = [c.choices[0].delta.content for c in client.chat.completions.create(
        model="docent-generator", max_tokens=8, stream=True, messages=msgs)
        if c.choices and c.choices[0].delta.content]
    check(len(parts) >= 1, f"docent-generator streamed: {len(parts)} chunks")
