#!/usr/bin/env python3
"""make_tiny_gguf.py SRC DST [LAYERS] - a small quantized llama GGUF for the
GPU check, cut from the default generator (SmolLM2-135M-Instruct Q4_1).

The device machine cannot take the 100 MB model (a call carries 64 MiB), so
this keeps SRC's metadata and tokenizer and its first LAYERS layers (2) with
their weights, and stores the tied embedding / output matrix as Q4_0: about
20 MB.  Layer 0 keeps SRC's Q4_1; layer 1's attention matrices are requantized
to Q8_0, so the three types the CUDA backend can keep as blocks (Q4_0, Q4_1,
Q8_0) all run.  The logits mean little (two layers of thirty), but they are
the same function on every backend, which is what test_cuda compares.
Uses the `gguf` package (reader, writer, quantizers).
"""
import sys

import numpy as np
import gguf

src, dst = sys.argv[1], sys.argv[2]
layers = int(sys.argv[3]) if len(sys.argv) > 3 else 2
r = gguf.GGUFReader(src)
arch = r.fields["general.architecture"].contents()
w = gguf.GGUFWriter(dst, arch)
T = gguf.GGUFValueType
for key, f in r.fields.items():
    if key.startswith("GGUF.") or key == "general.architecture":
        continue
    val = f.contents()
    if key == f"{arch}.block_count":
        val = layers
    vtype = T(f.types[0])
    sub = T(f.types[1]) if vtype == T.ARRAY else None
    w.add_key_value(key, val, vtype, sub_type=sub)

Q = gguf.GGMLQuantizationType


def requant(t, qtype):
    f32 = gguf.quants.dequantize(t.data, t.tensor_type).reshape(-1, int(t.shape[0]))
    return gguf.quants.quantize(f32, qtype), qtype


for t in r.tensors:
    if t.name.startswith("blk."):
        if int(t.name.split(".")[1]) >= layers:
            continue
    data, qtype = t.data, t.tensor_type
    if t.name == "token_embd.weight":
        data, qtype = requant(t, Q.Q4_0)
    elif t.name.startswith("blk.1.attn_") and t.tensor_type == Q.Q4_1:
        data, qtype = requant(t, Q.Q8_0)
    # quantized data are (rows, bytes per row) uint8 arrays: the writer reads that shape
    w.add_tensor(t.name, np.ascontiguousarray(data), raw_dtype=qtype)
w.write_header_to_file()
w.write_kv_data_to_file()
w.write_tensors_to_file()
w.close()
