#!/usr/bin/env python3
"""pack_minilm.py - carry all-MiniLM-L6-v2 to the GPU machine in ~23 MB.

The f32 checkpoint (~90 MB) is too big for the device tool's 64 MiB working
tree together with the binaries, and even f16 (~45 MB) leaves too little room.
So every 2-D float tensor is stored as int8 with one f32 scale per row
(symmetric, round to nearest), 1-D tensors as f16, and the GPU machine rebuilds
an f16 safetensors directory from that.  docent and sentence-transformers then
both load the very same rebuilt weights, so the parity check compares the two
engines on identical (real, slightly rounded) weights.

  pack_minilm.py pack   SRC_DIR  PACK_DIR   (here: models/all-minilm-l6-v2)
  pack_minilm.py unpack PACK_DIR OUT_DIR    (on the GPU machine)
"""
import json
import os
import shutil
import sys

import numpy as np
from safetensors.numpy import load_file, save_file

SIDE = ["config.json", "config_sentence_transformers.json", "modules.json",
        "sentence_bert_config.json", "special_tokens_map.json", "tokenizer.json",
        "tokenizer_config.json", "vocab.txt", "1_Pooling/config.json"]


def copy_side(src, dst):
    for f in SIDE:
        s = os.path.join(src, f)
        if os.path.exists(s):
            os.makedirs(os.path.dirname(os.path.join(dst, f)), exist_ok=True)
            shutil.copyfile(s, os.path.join(dst, f))


def pack(src, dst):
    t = load_file(os.path.join(src, "model.safetensors"))
    out, kinds = {}, {}
    for name, a in t.items():
        if a.dtype.kind == "f" and a.ndim == 2:
            a = a.astype(np.float32)
            s = np.abs(a).max(axis=1) / 127.0
            s[s == 0] = 1.0
            out[name + ".q"] = np.clip(np.rint(a / s[:, None]), -127, 127).astype(np.int8)
            out[name + ".s"] = s.astype(np.float32)
            kinds[name] = "q8"
        elif a.dtype.kind == "f":
            out[name] = a.astype(np.float16)
            kinds[name] = "f16"
        else:
            out[name] = a
            kinds[name] = "raw"
    os.makedirs(dst, exist_ok=True)
    save_file(out, os.path.join(dst, "weights.safetensors"), metadata={"kinds": json.dumps(kinds)})
    copy_side(src, dst)


def unpack(src, dst):
    from safetensors import safe_open
    with safe_open(os.path.join(src, "weights.safetensors"), "np") as f:
        kinds = json.loads(f.metadata()["kinds"])
    t = load_file(os.path.join(src, "weights.safetensors"))
    out = {}
    for name, k in kinds.items():
        if k == "q8":
            out[name] = (t[name + ".q"].astype(np.float32) * t[name + ".s"][:, None]).astype(np.float16)
        else:
            out[name] = t[name]
    os.makedirs(dst, exist_ok=True)
    save_file(out, os.path.join(dst, "model.safetensors"), metadata={"format": "pt"})
    copy_side(src, dst)


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] not in ("pack", "unpack"):
        sys.exit(__doc__)
    (pack if sys.argv[1] == "pack" else unpack)(sys.argv[2], sys.argv[3])
