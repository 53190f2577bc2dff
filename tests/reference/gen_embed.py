#!/usr/bin/env python3
"""gen_embed.py - reference embeddings for tests/unit/test_embed_parity.c.

Reads the passages in tests/fixtures/embed/passages.txt (written by
passages.py), embeds them with sentence-transformers on the CPU exactly as the
model's own configuration says (mean pooling, max_seq_length 256, L2
normalisation), and writes

  tests/fixtures/embed/embeddings.f16  n x 384 IEEE half floats, little-endian,
                                       row i = passage i (what the test reads)
  tests/fixtures/embed/meta.txt        one line per passage: index, token count
                                       including [CLS]/[SEP] before truncation,
                                       and whether it was truncated to 256

Half precision changes a unit vector's cosine with itself by < 1e-6, far below
the 1e-4 the test allows, so storing halves does not weaken the check.

Usage: HF_HUB_OFFLINE=1 python3 tests/reference/gen_embed.py
"""
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIX = os.path.join(ROOT, "tests", "fixtures", "embed")
MODEL = os.path.join(ROOT, "models", "all-minilm-l6-v2")


def read_passages(path):
    """[(source, text)] from the @@-record file."""
    data = open(path, "rb").read()
    out, pos = [], 0
    while pos < len(data):
        nl = data.index(b"\n", pos)
        head = data[pos:nl].decode("utf-8").split(" ", 3)
        assert head[0] == "@@" and int(head[1]) == len(out), head
        n = int(head[2])
        text = data[nl + 1:nl + 1 + n].decode("utf-8")
        assert data[nl + 1 + n:nl + 2 + n] == b"\n"
        out.append((head[3], text))
        pos = nl + 2 + n
    return out


def main():
    from sentence_transformers import SentenceTransformer

    passages = read_passages(os.path.join(FIX, "passages.txt"))
    texts = [t for _, t in passages]
    model = SentenceTransformer(MODEL, device="cpu")
    if model.max_seq_length != 256:
        sys.exit("gen_embed.py: expected max_seq_length 256, got %d" % model.max_seq_length)
    emb = model.encode(texts, normalize_embeddings=True, batch_size=32, convert_to_numpy=True)
    emb = np.asarray(emb, dtype=np.float32)
    assert emb.shape == (len(texts), 384), emb.shape

    tok = model.tokenizer
    lens = [len(tok(t, add_special_tokens=True)["input_ids"]) for t in texts]
    half = emb.astype("<f2")
    cos = np.sum(half.astype(np.float32) * emb, axis=1) / np.linalg.norm(half.astype(np.float32), axis=1)
    half.tofile(os.path.join(FIX, "embeddings.f16"))
    with open(os.path.join(FIX, "meta.txt"), "w") as f:
        f.write("# index n_tokens truncated  (all-minilm-l6-v2, max_seq_length 256)\n")
        for i, n in enumerate(lens):
            f.write("%d %d %d\n" % (i, n, int(n > 256)))
    print("gen_embed.py: %d passages, tokens %d..%d, %d truncated at 256; "
          "f16 storage min cosine %.8f" % (len(texts), min(lens), max(lens),
                                           sum(n > 256 for n in lens), cos.min()))


if __name__ == "__main__":
    main()
