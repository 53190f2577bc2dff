#!/usr/bin/env python3
"""reference.py - the reference side of bench/engine.sh.

  reference.py prep OUTDIR
      Writes the benchmark inputs, cut from the real documentation passages in
      tests/fixtures/embed/passages.txt:
        OUTDIR/prompt128.txt, prompt256.txt   raw text of 128 / 256 SmolLM2 tokens
                                              (llama.cpp's tokenizer)
        OUTDIR/chunks128.txt, chunks256.txt   64 lines each, every line 128 / 256
                                              all-minilm-l6-v2 tokens with
                                              [CLS]/[SEP] (the HF tokenizer)
  reference.py llama PROMPTFILE NGEN REPS
      llama.cpp (llama-cpp-python, n_threads 2): prompt eval of the prompt's
      tokens in one batch, then NGEN greedy tokens one at a time, REPS times
      after one warm-up; prints "llama.cpp prompt: N tokens, X tok/s; generate:
      M tokens, Y tok/s" with the medians (wall clock, same as docent's --stats).
  reference.py st CHUNKFILE REPS
      sentence-transformers on the CPU, torch threads 2, batch 32: prints
      "sentence-transformers: N chunks, X chunks/s" (median of REPS after a warm-up).
"""
import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GGUF = os.path.join(ROOT, "models", "smollm2-135m-instruct-q4_1.gguf")
EMBEDDER = os.path.join(ROOT, "models", "all-minilm-l6-v2")
PASSAGES = os.path.join(ROOT, "tests", "fixtures", "embed", "passages.txt")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def doc_words():
    sys.path.insert(0, os.path.join(ROOT, "tests", "reference"))
    from gen_embed import read_passages
    return " ".join(t for _, t in read_passages(PASSAGES)).split()


def prep(outdir):
    from llama_cpp import Llama
    from transformers import AutoTokenizer
    os.makedirs(outdir, exist_ok=True)
    words = doc_words()
    llm = Llama(GGUF, n_ctx=512, vocab_only=True, verbose=False)
    text = " ".join(words[:2000])
    ids = llm.tokenize(text.encode(), add_bos=False, special=False)
    for n in (128, 256):
        with open(os.path.join(outdir, "prompt%d.txt" % n), "wb") as f:
            f.write(llm.detokenize(ids[:n]))

    tok = AutoTokenizer.from_pretrained(EMBEDDER)
    for n in (128, 256):
        lines, pos = [], 0
        while len(lines) < 64:
            # grow a run of words until it fills n tokens, then trim to exactly n
            j = pos + n // 2
            while len(tok(" ".join(words[pos:j]))["input_ids"]) < n:
                j += 8
                if j > len(words):
                    pos, j = 0, n // 2
            ids = tok(" ".join(words[pos:j]))["input_ids"][1:n - 1]
            line = tok.decode(ids)
            if len(tok(line)["input_ids"]) == n and "\n" not in line:
                lines.append(line)
            pos = j
        with open(os.path.join(outdir, "chunks%d.txt" % n), "w") as f:
            f.write("\n".join(lines) + "\n")


def bench_llama(prompt_file, n_gen, reps):
    import numpy as np
    import llama_cpp
    from llama_cpp import Llama
    llm = Llama(GGUF, n_threads=2, n_threads_batch=2, n_ctx=2048, n_batch=512, verbose=False)
    text = open(prompt_file, "rb").read()
    ids = llm.tokenize(text, add_bos=False, special=True)
    nv = llm.n_vocab()

    def once():
        llm.reset()  # the next eval drops the KV cache past position 0
        t0 = time.perf_counter()
        llm.eval(ids)
        t1 = time.perf_counter()
        for _ in range(n_gen):
            row = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm.ctx, -1), shape=(nv,))
            llm.eval([int(row.argmax())])
        t2 = time.perf_counter()
        return len(ids) / (t1 - t0), n_gen / (t2 - t1)

    once()
    runs = [once() for _ in range(reps)]
    print("llama.cpp prompt: %d tokens, %.1f tok/s; generate: %d tokens, %.1f tok/s" % (
        len(ids), statistics.median(r[0] for r in runs), n_gen,
        statistics.median(r[1] for r in runs)))


def bench_st(chunk_file, reps):
    import torch
    from sentence_transformers import SentenceTransformer
    torch.set_num_threads(2)
    lines = [l for l in open(chunk_file).read().split("\n") if l]
    model = SentenceTransformer(EMBEDDER, device="cpu")
    model.encode(lines[:32], batch_size=32, normalize_embeddings=True)
    rates = []
    for _ in range(reps):
        t0 = time.perf_counter()
        model.encode(lines, batch_size=32, normalize_embeddings=True)
        rates.append(len(lines) / (time.perf_counter() - t0))
    print("sentence-transformers: %d chunks, %.1f chunks/s" % (len(lines), statistics.median(rates)))


def main():
    a = sys.argv[1:]
    if a[:1] == ["prep"] and len(a) == 2:
        prep(a[1])
    elif a[:1] == ["llama"] and len(a) == 4:
        bench_llama(a[1], int(a[2]), int(a[3]))
    elif a[:1] == ["st"] and len(a) == 3:
        bench_st(a[1], int(a[2]))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
