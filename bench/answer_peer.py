#!/usr/bin/env python3
"""answer_peer.py - the Python RAG stack bench/answer.sh measures docent against.

The same work as one `docent ask`, done the usual Python way:
sentence-transformers embeds the question (the same all-MiniLM-L6-v2
directory), FAISS (faiss-cpu, IndexFlatIP) searches the chunk vectors docent
stored (read from its SQLite file, so both sides search the same chunks), the
prompt is built from docent's own templates (prompts/*.txt) with the top-k
chunks fitted to the same token budget, and llama.cpp (llama-cpp-python,
2 threads) generates from the same GGUF with the same sampling: greedy,
repeat penalty 1.1, at most 256 tokens, streamed.

Usage: answer_peer.py DB EMBEDDER GGUF PROMPTS QUESTIONS.txt
Prints one JSON line per question: first_text, total, embed, retrieve,
prompt_tokens, completion_tokens (models are loaded before the clock starts,
as docent's in-process timings also exclude loading).
"""
import json
import sqlite3
import sys
import time

import faiss
import numpy as np
import torch
from llama_cpp import Llama
from sentence_transformers import SentenceTransformer

K, BUDGET, ANSWER_TOKENS, THREADS = 5, 1024, 256, 2


def main():
    db, emb_dir, gguf, prompts, questions = sys.argv[1:6]
    torch.set_num_threads(THREADS)
    con = sqlite3.connect(db)
    rows = con.execute(
        "SELECT c.id, c.text, c.heading, d.title, c.embedding FROM chunks c "
        "JOIN documents d ON d.id = c.doc_id ORDER BY c.id").fetchall()
    vecs = np.stack([np.frombuffer(r[4], dtype=np.float16).astype(np.float32) for r in rows])
    index = faiss.IndexFlatIP(vecs.shape[1])
    index.add(vecs)
    st = SentenceTransformer(emb_dir, device="cpu")
    llm = Llama(model_path=gguf, n_ctx=4096, n_threads=THREADS, n_batch=512, verbose=False)
    tmpl = {n: open(f"{prompts}/{n}.txt").read().rstrip("\n") for n in ("system", "source", "user")}

    def render(t, **v):
        for k, x in v.items():
            t = t.replace("{{" + k + "}}", x)
        return t

    system = render(tmpl["system"], date=time.strftime("%Y-%m-%d"))
    for q in open(questions):
        q = q.strip()
        if not q:
            continue
        t0 = time.perf_counter()
        qv = st.encode([q], normalize_embeddings=True)
        t1 = time.perf_counter()
        _, ids = index.search(np.asarray(qv, dtype=np.float32), K)
        t2 = time.perf_counter()
        base = len(llm.tokenize(render(tmpl["user"], sources="", question=q).encode())) + \
            len(llm.tokenize(system.encode())) + 16
        left, blocks = BUDGET - base, []
        for i in ids[0]:
            _, text, heading, title, _ = rows[i]
            b = render(tmpl["source"], n=str(len(blocks) + 1), title=title, heading=heading,
                       uri="", page="", text=text) + "\n\n"
            n = len(llm.tokenize(b.encode(), add_bos=False))
            if n <= left:
                blocks.append(b)
                left -= n
        user = render(tmpl["user"], sources="".join(blocks).rstrip("\n"), question=q)
        first, n_out, text = None, 0, []
        for chunk in llm.create_chat_completion(
                messages=[{"role": "system", "content": system}, {"role": "user", "content": user}],
                temperature=0.0, top_k=1, repeat_penalty=1.1, max_tokens=ANSWER_TOKENS, stream=True):
            delta = chunk["choices"][0]["delta"].get("content")
            if delta:
                if first is None:
                    first = time.perf_counter() - t0
                n_out += 1
                text.append(delta)
        total = time.perf_counter() - t0
        n_prompt = len(llm.tokenize(("".join([system, user])).encode()))
        print(json.dumps({"question": q, "first_text": first if first is not None else total,
                          "total": total, "embed": t1 - t0, "retrieve": t2 - t1,
                          "prompt_tokens": n_prompt, "completion_tokens": n_out,
                          "sources": len(blocks)}), flush=True)


if __name__ == "__main__":
    main()
