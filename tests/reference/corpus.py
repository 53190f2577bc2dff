#!/usr/bin/env python3
"""corpus.py - collect the real-text corpus for the tokenizer fixtures.

Writes tests/fixtures/tokens/corpus.txt: one test case per line, escaped
(\\ -> \\\\, newline -> \\n, tab -> \\t, CR -> \\r) so a case may hold several
source lines.  The text is real, from files Debian installs:

  - translated manual pages (groff source, markup stripped): manpages-fr,
    manpages-ja, manpages-zh, manpages-de; the ru/pl/es/ko/uk pages come with
    man-db and passwd - accents, CJK, Hangul, Cyrillic
  - debian-reference-ja (Japanese prose)
  - /usr/share/doc/*/changelog.Debian.gz and changelog.gz - maintainer names
    with accents, git/dpkg/mpfr changelogs with emoji
  - gettext catalogs /usr/share/locale/{ar,he,fa,hi,th,vi,ko,el,ru}/LC_MESSAGES/*.mo
    (msgstr texts) - RTL scripts, Devanagari/Thai combining marks, Vietnamese
  - English README / NEWS / copyright files under /usr/share/doc
  - nodejs API docs (emoji in examples) and the emoji name table pip vendors
    (pip/_vendor/rich/_emoji_codes.py)

Install the packages with:
  apt-get install manpages-fr manpages-ja manpages-zh manpages-de debian-reference-ja

Selection is deterministic (sorted paths, fixed random seed), so rerunning on
the same Debian release gives the same corpus.
"""
import glob
import gettext
import gzip
import os
import random
import re
import struct
import sys

OUT = os.path.join(os.path.dirname(__file__), "..", "fixtures", "tokens", "corpus.txt")
MAX_BYTES = 240


def read_text(path):
    try:
        if path.endswith(".gz"):
            with gzip.open(path, "rb") as f:
                data = f.read()
        else:
            with open(path, "rb") as f:
                data = f.read(2_000_000)
        return data.decode("utf-8")
    except (OSError, UnicodeDecodeError, EOFError):
        return None


def groff_lines(text):
    out = []
    for ln in text.split("\n"):
        if ln.startswith(".\\\"") or ln.startswith("'\\\""):
            continue
        if ln.startswith("."):
            ln = re.sub(r"^\.[A-Za-z]+\s*", "", ln)
        ln = re.sub(r"\\f[BIRP]|\\f\(..|\\\*\(..|\\&|\\s[-+]?\d", "", ln)
        ln = ln.replace("\\-", "-").replace("\\e", "\\").replace('"', '"')
        if ln.strip():
            out.append(ln)
    return out


def mo_strings(path):
    try:
        with open(path, "rb") as f:
            cat = gettext.GNUTranslations(f)
    except Exception:
        return []
    out = []
    for k, v in cat._catalog.items():
        if isinstance(v, str) and v and k:
            out.append(v)
    return out


def ok(s):
    b = s.encode("utf-8")
    return 3 <= len(b) <= MAX_BYTES


def pick(rng, lines, n, multi=0.0):
    """n cases from lines; with probability multi a case joins 2-3 consecutive lines."""
    lines = [l for l in lines if ok(l)]
    if not lines:
        return []
    out = []
    for _ in range(n):
        i = rng.randrange(len(lines))
        if rng.random() < multi and i + 2 < len(lines):
            case = "\n".join(lines[i:i + rng.choice((2, 3))])
            if len(case.encode()) > MAX_BYTES:
                case = lines[i]
        else:
            case = lines[i]
        out.append(case)
    return out


def main():
    rng = random.Random(20261128)
    cases = []

    # translated man pages
    for lang, n in (("fr", 260), ("ja", 260), ("zh_CN", 200), ("zh_TW", 60), ("de", 200),
                    ("ru", 120), ("pl", 60), ("es", 60), ("ko", 40), ("uk", 40)):
        files = sorted(glob.glob(f"/usr/share/man/{lang}/man*/*.gz"))
        rng.shuffle(files)
        lines = []
        for p in files[:60]:
            t = read_text(p)
            if t:
                lines += groff_lines(t)
        cases += pick(rng, lines, n, multi=0.15)

    # debian-reference-ja
    lines = []
    for p in sorted(glob.glob("/usr/share/doc/debian-reference-ja/**/*.html", recursive=True))[:20]:
        t = read_text(p)
        if t:
            t = re.sub(r"<[^>]+>", "", t)
            lines += [l.strip() for l in t.split("\n") if l.strip()]
    cases += pick(rng, lines, 120)

    # changelogs: non-ASCII maintainer lines and emoji lines
    nonascii, emoji, plain = [], [], []
    for p in sorted(glob.glob("/usr/share/doc/*/changelog*.gz")):
        t = read_text(p)
        if not t:
            continue
        for l in t.split("\n"):
            if re.search(r"[\U0001F000-\U0001FAFF\u2600-\u27BF]", l):
                emoji.append(l)
            elif re.search(r"[^\x00-\x7f]", l):
                nonascii.append(l)
            elif l.strip():
                plain.append(l)
    cases += pick(rng, nonascii, 200)
    cases += pick(rng, emoji, 60)
    cases += pick(rng, plain, 200, multi=0.3)

    # nodejs docs (emoji in examples)
    for p in sorted(glob.glob("/usr/share/doc/nodejs/api/*.md")):
        t = read_text(p)
        if t:
            cases += pick(rng, [l for l in t.split("\n")
                                if re.search(r"[\U0001F000-\U0001FAFF]", l)], 5)

    # emoji: the name -> emoji table pip vendors (rich), as "name: emoji" phrases, some
    # joined into sentences so emoji sit next to words, digits and ZWJ sequences
    table = {}
    try:
        from pip._vendor.rich._emoji_codes import EMOJI
        table = dict(sorted(EMOJI.items()))
    except Exception:
        pass
    names = list(table)
    for _ in range(120 if names else 0):
        ks = rng.sample(names, rng.choice((1, 2, 3)))
        cases.append(" ".join(f"{k.replace('_', ' ')} {table[k]}" for k in ks) + rng.choice(("", "!", " 42", "?")))

    # gettext catalogs: RTL, combining marks, Vietnamese, Thai, Greek
    for lang, n in (("ar", 120), ("he", 100), ("fa", 60), ("hi", 80), ("th", 60), ("vi", 80),
                    ("el", 60), ("bn", 40), ("ta", 30), ("ka", 20)):
        strs = []
        for p in sorted(glob.glob(f"/usr/share/locale/{lang}/LC_MESSAGES/*.mo")):
            strs += mo_strings(p)
        strs.sort()
        cases += pick(rng, strs, n)

    # English prose and code from docs
    lines = []
    files = sorted(glob.glob("/usr/share/doc/*/README*") + glob.glob("/usr/share/doc/*/NEWS*"))
    for p in files[:200]:
        t = read_text(p)
        if t:
            lines += t.split("\n")
    cases += pick(rng, lines, 260, multi=0.3)

    # a few hand-made edge cases (whitespace runs, digits, contractions)
    cases += ["", " ", "  leading spaces", "trailing spaces   ", "a\n\nb", "tabs\tand\ttabs",
              "1234567890 3.14159 1,000,000", "I'm sure they've said you'd go; it's",
              "IT'S LOUD", "e\u0301t\u00e9 caf\u00e9 nai\u0308ve", "\u00a0nbsp\u00a0here",
              "x\u3000full-width space", "<|im_start|>user", "@@@ !!! ??? ...", "\r\n windows\r\n"]

    seen, final = set(), []
    for c in cases:
        if c not in seen:
            seen.add(c)
            final.append(c)
    with open(OUT, "w", encoding="utf-8") as f:
        for c in final:
            esc = c.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r")
            f.write(esc + "\n")
    print(f"{len(final)} cases, {os.path.getsize(OUT)} bytes -> {OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
