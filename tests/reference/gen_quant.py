#!/usr/bin/env python3
"""gen_quant.py - reference fixtures for tests/unit/test_quant.c.

For every element type docent loads from model files, write random-but-valid
blocks (random quant bytes, finite random f16 scales) to
tests/fixtures/quant/<type>.bin and the values the `gguf` PyPI package's
reference dequantizer (gguf.quants.dequantize) gives for them to
tests/fixtures/quant/<type>.f32 (little-endian float32).

Also, when models/smollm2-135m-instruct-q4_1.gguf is present, write
tests/fixtures/quant/smollm2_rows.txt: a few dequantized values of real rows
(token_embd.weight is Q8_0, blk.0.ffn_up.weight is Q4_1) as read by
gguf.GGUFReader, so the C reader + dequantizer can be checked on real data.

And tests/fixtures/quant/writer_types.gguf: a small GGUF written by the
package's own GGUFWriter with one (2-row) tensor of every in-file type and kvs
of every value type, plus writer_types.txt with the values gguf.quants gives
for some of its elements, so the reader is checked against an independent
writer on the types the default model lacks.

Usage: python3 tests/reference/gen_quant.py   (needs: pip install gguf numpy)
"""
import os
import sys

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T, GGUFReader
from gguf.quants import dequantize

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
OUT = os.path.join(ROOT, "tests", "fixtures", "quant")

# name -> (type, elements per block, bytes per block, blocks, byte offsets of f16 scale fields)
TYPES = {
    "f32": (T.F32, 1, 4, 256, []),
    "f16": (T.F16, 1, 2, 256, []),
    "bf16": (T.BF16, 1, 2, 256, []),
    "q4_0": (T.Q4_0, 32, 18, 32, [0]),
    "q4_1": (T.Q4_1, 32, 20, 32, [0, 2]),
    "q8_0": (T.Q8_0, 32, 34, 32, [0]),
    "q4_K": (T.Q4_K, 256, 144, 4, [0, 2]),
    "q5_K": (T.Q5_K, 256, 176, 4, [0, 2]),
    "q6_K": (T.Q6_K, 256, 210, 4, [208]),
}


def random_f16(rng, n):
    mag = np.exp(rng.uniform(np.log(1e-4), np.log(2.0), n))
    sign = rng.choice([-1.0, 1.0], n)
    return (mag * sign).astype(np.float16)


def make_blocks(rng, name):
    qt, blk, size, nblocks, scale_offs = TYPES[name]
    if name == "f32":
        return rng.standard_normal(nblocks).astype(np.float32).view(np.uint8)
    if name == "f16":
        return random_f16(rng, nblocks).view(np.uint8)
    if name == "bf16":
        f = rng.standard_normal(nblocks).astype(np.float32) * 3
        return (f.view(np.uint32) >> 16).astype(np.uint16).view(np.uint8)
    raw = rng.integers(0, 256, size=(nblocks, size), dtype=np.uint8)
    for off in scale_offs:
        raw[:, off:off + 2] = random_f16(rng, nblocks).view(np.uint8).reshape(nblocks, 2)
    return raw.reshape(-1)


def write_writer_fixture(rng):
    path = os.path.join(OUT, "writer_types.gguf")
    w = gguf.GGUFWriter(path, "llama")
    w.add_uint8("t.u8", 200)
    w.add_int8("t.i8", -100)
    w.add_uint16("t.u16", 60000)
    w.add_int16("t.i16", -30000)
    w.add_uint32("t.u32", 4000000000)
    w.add_int32("t.i32", -2000000000)
    w.add_float32("t.f32", 0.25)
    w.add_bool("t.bool", True)
    w.add_uint64("t.u64", 1 << 40)
    w.add_int64("t.i64", -(1 << 40))
    w.add_float64("t.f64", -1.5)
    w.add_string("t.str", "h\u00e9llo")
    w.add_array("t.arr_i32", [1, -2, 3])
    w.add_array("t.arr_f32", [0.5, 1.5])
    w.add_array("t.arr_str", ["a", "", "\u00fc"])
    lines = ["# name type ne0 ne1 index value  (gguf.quants.dequantize)"]
    for name, _ in TYPES.items():
        qt, blk, size, _, _ = TYPES[name]
        ne0 = max(blk, 64)
        raw = make_blocks_n(rng, name, 2 * ne0 // blk).reshape(2, -1)
        tname = "w." + name
        if name == "f32":
            w.add_tensor(tname, raw.view(np.float32).reshape(2, ne0))
        elif name == "f16":
            w.add_tensor(tname, raw.view(np.float16).reshape(2, ne0))
        else:
            w.add_tensor(tname, raw, raw_dtype=qt)
        ref = dequantize(raw.reshape(1, -1), qt).reshape(-1) if name not in ("f32", "f16") else \
            raw.reshape(-1).view(np.float32 if name == "f32" else np.float16).astype(np.float32)
        for i in (0, 1, 31, ne0 - 1, ne0, 2 * ne0 - 1):
            lines.append(f"{tname} {int(qt)} {ne0} 2 {i} {float(ref[i]).hex()}")
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with open(os.path.join(OUT, "writer_types.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("writer_types.gguf:", os.path.getsize(path), "bytes")


def make_blocks_n(rng, name, nblocks):
    qt, blk, size, _, offs = TYPES[name]
    saved = TYPES[name]
    TYPES[name] = (qt, blk, size, nblocks, offs)
    try:
        return make_blocks(rng, name)
    finally:
        TYPES[name] = saved


def main():
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(20240611)
    for name, (qt, blk, size, nblocks, _) in TYPES.items():
        raw = make_blocks(rng, name)
        assert raw.size == nblocks * size
        if name == "bf16":  # gguf's dequantize on BF16 wants the raw uint8 bytes too
            ref = dequantize(raw.reshape(1, -1), qt).reshape(-1)
        elif name in ("f32", "f16"):
            ref = raw.view(np.float32 if name == "f32" else np.float16).astype(np.float32)
        else:
            ref = dequantize(raw.reshape(1, -1), qt).reshape(-1)
        ref = ref.astype("<f4")
        assert ref.size == nblocks * blk, (name, ref.size)
        assert np.all(np.isfinite(ref)), name
        raw.tofile(os.path.join(OUT, name + ".bin"))
        ref.tofile(os.path.join(OUT, name + ".f32"))
        print(f"{name}: {nblocks} blocks, {raw.size} + {ref.size * 4} bytes")

    write_writer_fixture(rng)

    model = os.path.join(ROOT, "models", "smollm2-135m-instruct-q4_1.gguf")
    if not os.path.exists(model):
        print("skipping smollm2_rows.txt:", model, "is missing", file=sys.stderr)
        return
    r = GGUFReader(model)
    lines = ["# tensor row col value  (gguf.GGUFReader + gguf.quants.dequantize)"]
    for t in r.tensors:
        if t.name not in ("token_embd.weight", "blk.0.ffn_up.weight", "blk.0.attn_norm.weight"):
            continue
        full = dequantize(t.data, t.tensor_type)
        full = full.reshape(-1, int(t.shape[0]))
        for row in sorted({0, min(1, full.shape[0] - 1), full.shape[0] // 2, full.shape[0] - 1}):
            for col in (0, 1, 17, 31, 32, int(t.shape[0]) - 1):
                lines.append(f"{t.name} {row} {col} {float(full[row, col]).hex()}")
    with open(os.path.join(OUT, "smollm2_rows.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("smollm2_rows.txt:", len(lines) - 1, "values")


if __name__ == "__main__":
    main()
