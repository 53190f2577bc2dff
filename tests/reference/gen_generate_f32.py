#!/usr/bin/env python3
"""gen_generate_f32.py - llama.cpp reference decoding in exact f32, for test_generate_f32.c.

The default GGUF (Q4_1 weights) is dequantised with the gguf package's reference
dequantiser and written as an all-F32 GGUF in a temporary directory; llama.cpp
(llama-cpp-python) then decodes it greedily with an F32 KV cache and no flash
attention, so its arithmetic has no 8-bit activation rounding and no f16 cache.
docent, opened with weights_f32 (the same dequantised values), must then agree
token for token: with quantized activations both engines are chaotic (a 1e-6
perturbation moves logits by ~0.2), in f32 they are not.

Prompts are the ones in tests/fixtures/generate/reference.txt (their token ids
are reused, so this test does not depend on the tokenizer).

Writes tests/fixtures/generate/f32_reference.txt, per prompt:
  prompt <i> <n> <ids...>
  gen <i> 64 <ids...>              greedy tokens
  margin <i> 64 <m...>             top1 - top2 logit at each step
  top <i> 64 4 <id val>...         the 4 best ids and their logits per step
Usage: python3 tests/reference/gen_generate_f32.py   (needs gguf, numpy, llama-cpp-python)
"""
import os, sys, tempfile

import numpy as np
import gguf
from gguf.quants import dequantize
from llama_cpp import Llama

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIX = os.path.join(ROOT, "tests", "fixtures", "generate")
GGUF = os.path.join(ROOT, "models", "smollm2-135m-instruct-q4_1.gguf")
N_GEN, TOP = 64, 4


def write_f32_gguf(src, dst):
    r = gguf.GGUFReader(src)
    w = gguf.GGUFWriter(dst, r.fields["general.architecture"].contents())
    for k, f in r.fields.items():
        if k.startswith("GGUF.") or k == "general.architecture":
            continue
        if f.types[0] == gguf.GGUFValueType.ARRAY:
            w.add_key_value(k, f.contents(), f.types[0], sub_type=f.types[-1])
        else:
            w.add_key_value(k, f.contents(), f.types[0])
    for t in r.tensors:
        a = dequantize(t.data, t.tensor_type).astype(np.float32)
        w.add_tensor(t.name, a.reshape([int(x) for x in reversed(t.shape)]))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def main():
    prompts = []
    with open(os.path.join(FIX, "reference.txt")) as f:
        for line in f:
            p = line.split()
            if p and p[0] == "prompt":
                prompts.append([int(x) for x in p[3:]])
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "f32.gguf")
        write_f32_gguf(GGUF, path)
        llm = Llama(path, n_threads=2, n_threads_batch=2, n_ctx=2048, logits_all=True,
                    type_k=0, type_v=0, flash_attn=False, verbose=False)
        out = ["# llama.cpp (llama-cpp-python %s) greedy decoding of %s dequantised to F32,"
               " F32 KV cache, no flash attention" % (getattr(__import__("llama_cpp"), "__version__", "?"),
                                                      os.path.basename(GGUF))]
        for i, ids in enumerate(prompts):
            llm.reset()
            llm.eval(ids)
            gen, margins, tops = [], [], []
            for _ in range(N_GEN):
                row = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float64)
                order = np.argsort(-row, kind="stable")[:TOP]
                gen.append(int(order[0]))
                margins.append(row[order[0]] - row[order[1]])
                tops.append(" ".join("%d %.6f" % (int(j), row[j]) for j in order))
                llm.eval([gen[-1]])
            out.append("prompt %d %d %s" % (i, len(ids), " ".join(map(str, ids))))
            out.append("gen %d %d %s" % (i, N_GEN, " ".join(map(str, gen))))
            out.append("margin %d %d %s" % (i, N_GEN, " ".join("%.6g" % m for m in margins)))
            out.append("top %d %d %d %s" % (i, N_GEN, TOP, " ".join(tops)))
            print("prompt %d: %d tokens, min margin %.4g" % (i, len(ids), min(margins)), file=sys.stderr)
    with open(os.path.join(FIX, "f32_reference.txt"), "w") as f:
        f.write("\n".join(out) + "\n")
    print("wrote", os.path.join(FIX, "f32_reference.txt"))


if __name__ == "__main__":
    main()
