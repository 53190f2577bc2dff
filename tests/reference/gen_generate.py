#!/usr/bin/env python3
"""gen_generate.py - llama.cpp reference decoding for test_generate_parity.c.

Runs models/smollm2-135m-instruct-q4_1.gguf in llama.cpp (through
llama-cpp-python's low-level eval; n_threads 2, n_ctx 2048, logits_all) on a
fixed set of prompts: questions about real Debian documentation, some rendered
with the chat template the GGUF carries (tokenizer.chat_template, via Jinja2),
some as raw text, a few with a documentation excerpt as context (excerpts are
taken from tests/fixtures/embed/passages.txt, so nothing outside the repository
is needed).  For each prompt it feeds the prompt in one eval, then takes the
argmax of the last logits and feeds it back, 64 times, never stopping at EOS.

Writes to tests/fixtures/generate/:

  prompts.txt     records "@@ <index> <nbytes> <kind> <label>\n<text>\n" with
                  kind chat|raw; text is the exact string that was tokenized
  reference.txt   per prompt four lines:
                    prompt <i> <n> <ids...>   tokens fed (special=True, BOS as
                                              the GGUF says: add_bos_token=false)
                    gen <i> 64 <ids...>       greedy tokens
                    margin <i> 64 <m...>      top1 - top2 logit at each step
                    top <i> 64 8 <id val>...  the 8 best ids and logits of
                                              each step, best first
  logits.bin      for LOGIT_PROMPTS, little-endian:
                    header: "DLG1", u32 n_records, u32 n_vocab, u32 topk, u32 n_pos
                    per record: u32 prompt index,
                      f32 lo[n_pos], f32 hi[n_pos]   min/max logit per position
                      i32 ids[n_pos][topk]           top-k ids, best first
                      f32 val[n_pos][topk]           their logits
                      f16 full[n_vocab]              all logits at position 0
                  position p = the logits that chose gen token p (position 0 is
                  the prompt's last token).

With --check-f32 (or --check-only, which skips regeneration) it also loads the
same GGUF into transformers (weights dequantised to f32) and prints how far
llama.cpp's stored logits are from an exact f32 evaluation and from one with
8-bit-rounded matmul inputs; test_generate_parity.c's tolerances rest on those
figures (needs gguf and accelerate).

Usage: python3 tests/reference/gen_generate.py [--check-f32 | --check-only]
"""
import argparse
import os
import struct
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIX = os.path.join(ROOT, "tests", "fixtures", "generate")
GGUF = os.path.join(ROOT, "models", "smollm2-135m-instruct-q4_1.gguf")
PASSAGES = os.path.join(ROOT, "tests", "fixtures", "embed", "passages.txt")
N_GEN = 64
TOPK = 32
TOP_ALL = 8
LOGIT_PROMPTS = (0, 7, 15)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen_embed import read_passages  # noqa: E402

# (kind, system or None, question, context passage source or None)
# kind "chat": rendered with the GGUF chat template (a system message when
# given, else the template's default); "raw": plain text completion.
PROMPTS = [
    ("chat", None, "What does the SQLite PRAGMA journal_mode=WAL do?", None),
    ("chat", None, "How do I decompress a .bz2 file and keep the original?", None),
    ("raw", None, "Question: In bc, what does the variable scale control?\nAnswer:", None),
    ("chat", "You answer questions about Debian documentation. Be brief.",
     "Where does Debian put the mail spool, /var/mail or /var/spool/mail?",
     "/usr/share/doc/base-files/README.FHS#p6"),
    ("raw", None, "The SQLite write-ahead log", None),
    ("chat", None, "Explain what an FTS5 segment b-tree is.",
     "/usr/share/doc/sqlite3/fts5.html#p574"),
    ("chat", "You are a concise technical assistant.",
     "Why does SQLite record the number of pages in the rollback journal header?",
     "/usr/share/doc/sqlite3/atomiccommit.html#p177"),
    ("raw", None, "Context:\n{ctx}\n\nQuestion: What is a pending lock used for?\nAnswer:",
     "/usr/share/doc/sqlite3/atomiccommit.html#p110"),
    ("chat", None, "hi", None),
    ("chat", None, "How many simultaneous writers does SQLite allow, and how many readers?",
     "/usr/share/doc/sqlite3/whentouse.html#p69"),
    ("raw", None, "bc is an arbitrary precision calculator language. To define a function in bc you write", None),
    ("chat", None, "What is the application_id pragma for?",
     "/usr/share/doc/sqlite3/pragma.html#p141"),
    ("chat", "Answer using only the context. If the answer is not there, say so.",
     "Which index does SQLite choose when two indexes could serve the query?",
     "/usr/share/doc/sqlite3/queryplanner.html#p88"),
    ("raw", None, "$ apt-get install sqlite3-doc\nReading package lists... Done\n", None),
    ("chat", None, "What is the difference between a shared lock and an exclusive lock in SQLite?", None),
    ("raw", None, "Context:\n{ctx}\n\nSummary of the context in one sentence:",
     "/usr/share/doc/sqlite3/wal.html#p107"),
    ("chat", None, "In bc, what is an auto_list?", "/usr/share/doc/bc/bc.html#p191"),
    ("chat", None, "Was ist ein Journal in SQLite? Antworte auf Deutsch.", None),
    ("raw", None, "SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name;\n-- This query", None),
    ("chat", "You are a helpful AI assistant named SmolLM, trained by Hugging Face",
     "Summarise this changelog entry.",
     "/usr/share/doc/libjq1/changelog.Debian.gz#jq (1.6-1)"),
    ("chat", None, "What type affinity does a column declared NUMERIC get?",
     "/usr/share/doc/sqlite3/datatype3.html#p142"),
    ("raw", None, "Q: What does the cscope tool do?\nA:", None),
]


def render_chat(template, system, user):
    import jinja2
    env = jinja2.Environment(loader=jinja2.BaseLoader(), keep_trailing_newline=True)
    msgs = ([{"role": "system", "content": system}] if system else []) + \
           [{"role": "user", "content": user}]
    return env.from_string(template).render(messages=msgs, add_generation_prompt=True)


def build_prompts(template):
    ctx = {src: text for src, text in read_passages(PASSAGES)}
    out = []
    for i, (kind, system, q, src) in enumerate(PROMPTS):
        c = ctx[src] if src else None
        if kind == "chat":
            user = q if c is None else "Context:\n%s\n\nQuestion: %s" % (c, q)
            text = render_chat(template, system, user)
        else:
            text = q.format(ctx=c) if c is not None else q
        label = "%s%s" % (q.splitlines()[0][:40].replace(" ", "_") or "prompt",
                          "" if src is None else "+ctx")
        out.append((kind, label, text))
    return out


def top2_margin(row):
    a = np.partition(row, -2)[-2:]
    return float(a[1] - a[0])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--check-f32", action="store_true")
    ap.add_argument("--check-only", action="store_true",
                    help="skip generation; run the f32 check on the stored fixture")
    args = ap.parse_args()
    if args.check_only:
        check_f32()
        return

    from llama_cpp import Llama
    llm = Llama(GGUF, n_threads=2, n_threads_batch=2, n_ctx=2048, logits_all=True,
                verbose=False, seed=0)
    md = llm.metadata
    add_bos = md.get("tokenizer.ggml.add_bos_token", "true") == "true"
    prompts = build_prompts(md["tokenizer.chat_template"])
    n_vocab = llm.n_vocab()

    os.makedirs(FIX, exist_ok=True)
    records, ref_lines, logit_recs = [], [], []
    for i, (kind, label, text) in enumerate(prompts):
        ids = llm.tokenize(text.encode("utf-8"), add_bos=add_bos, special=True)
        llm.reset()
        llm.eval(ids)
        gen, margins, rows, tops = [], [], [], []
        for _ in range(N_GEN):
            row = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32)
            tok = int(np.argmax(row))
            gen.append(tok)
            margins.append(top2_margin(row))
            best = np.argsort(-row, kind="stable")[:TOP_ALL]
            tops.append(" ".join("%d %.5f" % (int(t), float(row[t])) for t in best))
            if i in LOGIT_PROMPTS:
                rows.append(row)
            llm.eval([tok])
        b = text.encode("utf-8")
        records.append(("@@ %d %d %s %s\n" % (i, len(b), kind, label)).encode("utf-8") + b + b"\n")
        ref_lines.append("prompt %d %d %s" % (i, len(ids), " ".join(map(str, ids))))
        ref_lines.append("gen %d %d %s" % (i, N_GEN, " ".join(map(str, gen))))
        ref_lines.append("margin %d %d %s" % (i, N_GEN, " ".join("%.5g" % m for m in margins)))
        ref_lines.append("top %d %d %d %s" % (i, N_GEN, TOP_ALL, " ".join(tops)))
        if rows:
            logit_recs.append((i, np.stack(rows)))
        print("prompt %2d (%s, %3d tokens): min margin %.4f: %r" % (
            i, kind, len(ids), min(margins),
            llm.detokenize(gen).decode("utf-8", "replace")[:60]))

    with open(os.path.join(FIX, "prompts.txt"), "wb") as f:
        f.write(b"".join(records))
    with open(os.path.join(FIX, "reference.txt"), "w") as f:
        f.write("# llama.cpp (llama-cpp-python) greedy decoding of %s, n_threads 2, n_ctx 2048\n"
                % os.path.basename(GGUF))
        f.write("\n".join(ref_lines) + "\n")
    with open(os.path.join(FIX, "logits.bin"), "wb") as f:
        f.write(b"DLG1" + struct.pack("<4I", len(logit_recs), n_vocab, TOPK, N_GEN))
        for idx, L in logit_recs:
            f.write(struct.pack("<I", idx))
            L.min(axis=1).astype("<f4").tofile(f)
            L.max(axis=1).astype("<f4").tofile(f)
            top = np.argsort(-L, axis=1, kind="stable")[:, :TOPK]
            top.astype("<i4").tofile(f)
            np.take_along_axis(L, top, axis=1).astype("<f4").tofile(f)
            L[0].astype("<f2").tofile(f)

    if args.check_f32:
        check_f32()


def read_logits():
    """[(prompt index, lo, hi, top ids, top vals, full row 0)] from logits.bin."""
    data = open(os.path.join(FIX, "logits.bin"), "rb").read()
    assert data[:4] == b"DLG1"
    n_rec, n_vocab, topk, n_pos = struct.unpack_from("<4I", data, 4)
    off, out = 20, []
    for _ in range(n_rec):
        (idx,) = struct.unpack_from("<I", data, off)
        off += 4
        lo = np.frombuffer(data, "<f4", n_pos, off); off += 4 * n_pos
        hi = np.frombuffer(data, "<f4", n_pos, off); off += 4 * n_pos
        ids = np.frombuffer(data, "<i4", n_pos * topk, off).reshape(n_pos, topk); off += 4 * n_pos * topk
        val = np.frombuffer(data, "<f4", n_pos * topk, off).reshape(n_pos, topk); off += 4 * n_pos * topk
        full = np.frombuffer(data, "<f2", n_vocab, off).astype(np.float32); off += 2 * n_vocab
        out.append((idx, lo, hi, ids, val, full))
    assert off == len(data)
    return out


def q8_round(x):
    """x with every 32-block rounded as 8-bit activations are: scale amax/127
    kept as f16, values rounded to integers (an emulation, not llama.cpp's code)."""
    import torch
    sh = x.shape
    xb = x.reshape(*sh[:-1], sh[-1] // 32, 32)
    d = xb.abs().amax(-1, keepdim=True) / 127
    q = torch.round(xb * torch.where(d > 0, 1.0 / d, torch.zeros_like(d)))
    return (q * d.half().float()).reshape(sh)


def check_f32():
    """How far llama.cpp's stored logits are from two other evaluations of the
    same (dequantised) weights: exact f32, and f32 with every matmul input
    rounded to 8 bits per 32-block (independent rounding noise of the kind
    llama.cpp and docent add).  Measured as the C test measures: max |diff|
    over the top-k ids of every position and all ids of position 0, over the
    position's logit range; also how often the argmax differs."""
    import torch
    from transformers import AutoModelForCausalLM
    torch.set_num_threads(2)
    model = AutoModelForCausalLM.from_pretrained(os.path.dirname(GGUF),
                                                 gguf_file=os.path.basename(GGUF),
                                                 dtype=torch.float32)
    model.eval()
    ref = {}
    for line in open(os.path.join(FIX, "reference.txt")):
        w = line.split()
        if w and w[0] in ("prompt", "gen"):
            ref[(w[0], int(w[1]))] = [int(x) for x in w[3:]]
    recs = read_logits()
    for mode in ("exact f32", "8-bit activations"):
        hooks = []
        if mode != "exact f32":
            for mod in model.modules():
                if isinstance(mod, torch.nn.Linear):
                    hooks.append(mod.register_forward_pre_hook(lambda m, inp: (q8_round(inp[0]),)))
        worst, means, flips, steps, abs_max = 0.0, [], 0, 0, 0.0
        for idx, lo, hi, ids, val, full in recs:
            seq = ref[("prompt", idx)] + ref[("gen", idx)][:-1]
            with torch.no_grad():
                out = model(torch.tensor([seq])).logits[0].numpy()
            n_p = len(ref[("prompt", idx)])
            mine = out[n_p - 1:n_p - 1 + N_GEN]
            d = np.abs(np.take_along_axis(mine, ids, axis=1) - val)
            err = d.max(axis=1) / (hi - lo)
            err[0] = max(err[0], np.abs(mine[0] - full).max() / (hi[0] - lo[0]))
            worst = max(worst, float(err.max()))
            abs_max = max(abs_max, float(d.max()))
            means.append(float(err.mean()))
            flips += int((mine.argmax(axis=1) != ids[:, 0]).sum())
            steps += N_GEN
        for h in hooks:
            h.remove()
        print("check %-18s vs llama.cpp: max |diff|/range %.4f, mean per prompt %s, "
              "max |diff| %.3f logits, argmax differs at %d/%d steps"
              % (mode, worst, " ".join("%.4f" % m for m in means), abs_max, flips, steps))


if __name__ == "__main__":
    main()
