#!/usr/bin/env python3
"""gen_chat.py - reference renderings of chat templates, from llama.cpp.

For each template family docent implements (chatml, llama3, llama2, gemma) and a
few conversations, render with llama.cpp's own llama_chat_apply_template (through
llama-cpp-python's low-level binding) and write tests/fixtures/chat/<family>.txt.
Also renders the default model's own Jinja template (SmolLM2, from its GGUF) with
jinja2, to check the inserted default system prompt.

Format of each fixture: records separated by a line "=====", each record:
  a JSON line {"msgs": [...], "add_assistant": bool}
  the expected rendering (the rest of the record, verbatim).
Usage: python3 tests/reference/gen_chat.py   (from the repository root)
"""
import ctypes, json, os, sys

import llama_cpp

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "tests", "fixtures", "chat")
GGUF = os.path.join(ROOT, "models", "smollm2-135m-instruct-q4_1.gguf")

CONVS = [
    ([("user", "What is SQLite?")], True),
    ([("system", "Answer briefly."), ("user", "How do I vacuum a database?")], True),
    ([("system", "You answer from the sources."), ("user", "First question?"),
      ("assistant", "First answer."), ("user", "Second question, with ünïcödé and 中文?")], True),
    ([("user", "Hi"), ("assistant", "Hello! How can I help?")], False),
]
# docent family name -> llama.cpp built-in template name
FAMILIES = {"chatml": "chatml", "llama3": "llama3", "llama2": "llama2-sys", "gemma": "gemma"}


def render_llamacpp(name, msgs, add_ass):
    arr = (llama_cpp.llama_chat_message * len(msgs))()
    keep = []
    for i, (r, c) in enumerate(msgs):
        rb, cb = r.encode(), c.encode()
        keep += [rb, cb]
        arr[i].role, arr[i].content = rb, cb
    buf = ctypes.create_string_buffer(1 << 16)
    n = llama_cpp.llama_chat_apply_template(name.encode(), arr, len(msgs), add_ass, buf, len(buf))
    if n < 0:
        raise RuntimeError("llama.cpp does not know template %s" % name)
    return buf.raw[:n].decode()


def write(path, records):
    with open(path, "w", encoding="utf-8") as f:
        for i, (msgs, add, text) in enumerate(records):
            if i:
                f.write("\n=====\n")
            f.write(json.dumps({"msgs": [{"role": r, "content": c} for r, c in msgs],
                                "add_assistant": add}, ensure_ascii=False) + "\n")
            f.write(text)
    print("wrote", path)


def main():
    os.makedirs(OUT, exist_ok=True)
    for fam, name in FAMILIES.items():
        write(os.path.join(OUT, fam + ".txt"),
              [(m, a, render_llamacpp(name, m, a)) for m, a in CONVS])
    # the default model's own template, rendered by jinja2 as transformers does
    import gguf, jinja2
    r = gguf.GGUFReader(GGUF)
    tmpl = r.fields["tokenizer.chat_template"].contents()
    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True)
    t = env.from_string(tmpl)
    recs = []
    for m, a in CONVS:
        text = t.render(messages=[{"role": r_, "content": c} for r_, c in m],
                        add_generation_prompt=a, bos_token="", eos_token="")
        recs.append((m, a, text))
    write(os.path.join(OUT, "smollm2.txt"), recs)


if __name__ == "__main__":
    sys.exit(main())
