#!/usr/bin/env python3
"""gen_tokens.py - reference token ids for tests/unit/test_tokenizer.c.

Reads tests/fixtures/tokens/corpus.txt (made by corpus.py; one escaped case
per line) and writes, one line of space-separated ids per case:

  smollm2.ids  llama.cpp's tokenizer (llama-cpp-python, vocab_only) on
               models/smollm2-135m-instruct-q4_1.gguf:
               tokenize(text, add_bos=False, special=False)
  minilm.ids   HF `tokenizers` on models/all-minilm-l6-v2/tokenizer.json,
               encode(text).ids with the special tokens ([CLS] ... [SEP]) as
               sentence-transformers uses them; padding and truncation (128 in
               that file) are switched off, docent's tokenizer never pads.
  minilm.dec   decode(ids, skip_special_tokens=True) of every 4th minilm line
               (escaped like corpus.txt)

  pre-<name>.ids  llama.cpp's ids with SmolLM2's vocabulary but
               tokenizer.ggml.pre = gpt-2, llama-bpe, qwen2, default (a
               metadata-only copy of the GGUF in a temp dir), to check the
               other pre-tokenizer regex sets; only lines where the types
               disagree (see gen_pre), as "N: ids" with N the 1-based corpus
               line
  spm-bpe.gguf a small SentencePiece BPE model (vocab 3000, byte fallback,
               identity normalization, spaces kept, digits split, as Llama 2's
               model is configured) trained with the `sentencepiece` library on
               the corpus itself, exported as a GGUF "llama" tokenizer
               (tokens, scores, token types, special ids) with GGUFWriter
  spm.ids      sentencepiece's own encode(text) for every 2nd line (no BOS)

Needs: pip install llama-cpp-python tokenizers gguf sentencepiece
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
FIX = os.path.join(ROOT, "tests", "fixtures", "tokens")


def unescape(s):
    out, i = [], 0
    while i < len(s):
        c = s[i]
        if c == "\\" and i + 1 < len(s):
            n = s[i + 1]
            out.append({"n": "\n", "t": "\t", "r": "\r", "\\": "\\"}.get(n, "\\" + n))
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def load_corpus():
    with open(os.path.join(FIX, "corpus.txt"), encoding="utf-8") as f:
        lines = f.read().split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [unescape(l) for l in lines]


def write_ids(name, rows):
    with open(os.path.join(FIX, name), "w") as f:
        for r in rows:
            f.write(" ".join(map(str, r)) + "\n")


def gen_spm(cases):
    import io
    import sentencepiece as spm
    from gguf import GGUFWriter

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(cases), model_writer=model, model_type="bpe", vocab_size=3000,
        byte_fallback=True, normalization_rule_name="identity", remove_extra_whitespaces=False,
        add_dummy_prefix=True, split_digits=True, allow_whitespace_only_pieces=True,
        character_coverage=0.9995, num_threads=1, minloglevel=2)
    sp = spm.SentencePieceProcessor(model_proto=model.getvalue())

    path = os.path.join(FIX, "spm-bpe.gguf")
    w = GGUFWriter(path, "llama")
    w.add_tokenizer_model("llama")
    n = sp.get_piece_size()
    types = []
    for i in range(n):
        types.append(3 if sp.is_control(i) else 2 if sp.is_unknown(i) else 6 if sp.is_byte(i)
                     else 5 if sp.is_unused(i) else 1)
    w.add_token_list([sp.id_to_piece(i) for i in range(n)])
    w.add_token_scores([sp.get_score(i) for i in range(n)])
    w.add_token_types(types)
    w.add_bos_token_id(sp.bos_id())
    w.add_eos_token_id(sp.eos_id())
    w.add_unk_token_id(sp.unk_id())
    w.add_add_space_prefix(True)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

    ids = [sp.encode(c) for c in cases[::2]]
    write_ids("spm.ids", ids)
    # sentencepiece's decode gives back every line exactly (checked here, so the
    # C test can check decode(encode(x)) == x against the corpus itself)
    assert all(sp.decode(r) == c for r, c in zip(ids, cases[::2]))
    return ids


PRE_TYPES = ("gpt-2", "llama-bpe", "qwen2", "default")


def gen_pre(cases, gguf_path, smol):
    """ids for the lines where smollm/gpt-2/llama-bpe/qwen2 disagree and the
    first 100 where default and gpt-2 do; each output line is "N: ids" with N
    the 1-based corpus line"""
    import tempfile
    from gguf import GGUFReader, GGUFWriter, GGUFValueType
    from llama_cpp import Llama

    r = GGUFReader(gguf_path)
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for pre in PRE_TYPES:
            path = os.path.join(tmp, f"{pre}.gguf")
            w = GGUFWriter(path, "llama")
            for k, f in r.fields.items():
                if k.startswith("GGUF.") or k == "general.architecture":
                    continue
                val = pre if k == "tokenizer.ggml.pre" else f.contents()
                vt = f.types[0]
                st = f.types[-1] if vt == GGUFValueType.ARRAY else None
                w.add_key_value(k, val, vt, sub_type=st)
            w.write_header_to_file()
            w.write_kv_data_to_file()
            w.write_tensors_to_file()
            w.close()
            llm = Llama(model_path=path, vocab_only=True, verbose=False)
            out[pre] = [llm.tokenize(c.encode("utf-8"), add_bos=False, special=False) for c in cases]
            del llm
    others = [p for p in PRE_TYPES if p != "default"]
    pick = [i for i in range(len(cases))
            if len({tuple(out[p][i]) for p in others} | {tuple(smol[i])}) > 1]
    pick += [i for i in range(len(cases)) if out["default"][i] != out["gpt-2"][i]][:100]
    pick = sorted(set(pick))
    for pre in PRE_TYPES:
        with open(os.path.join(FIX, f"pre-{pre}.ids"), "w") as f:
            for i in pick:
                f.write(f"{i + 1}: " + " ".join(map(str, out[pre][i])) + "\n")
    return len(pick)


def main():
    cases = load_corpus()

    from llama_cpp import Llama
    gguf = os.path.join(ROOT, "models", "smollm2-135m-instruct-q4_1.gguf")
    llm = Llama(model_path=gguf, vocab_only=True, verbose=False)
    smol = [llm.tokenize(c.encode("utf-8"), add_bos=False, special=False) for c in cases]
    write_ids("smollm2.ids", smol)
    n_pre = gen_pre(cases, gguf, smol)

    from tokenizers import Tokenizer
    tk = Tokenizer.from_file(os.path.join(ROOT, "models", "all-minilm-l6-v2", "tokenizer.json"))
    tk.no_padding()
    tk.no_truncation()
    mini = [tk.encode(c).ids for c in cases]
    write_ids("minilm.ids", mini)
    with open(os.path.join(FIX, "minilm.dec"), "w", encoding="utf-8") as f:
        for ids in mini[::4]:
            d = tk.decode(ids, skip_special_tokens=True)
            f.write(d.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t")
                    .replace("\r", "\\r") + "\n")

    spm_ids = gen_spm(cases)

    print(f"{len(cases)} cases; {n_pre} pre-tokenizer lines; spm {sum(map(len, spm_ids))} ids; smollm2 {sum(map(len, smol))} ids, minilm {sum(map(len, mini))} ids",
          file=sys.stderr)


if __name__ == "__main__":
    main()
