#!/usr/bin/env python3
"""passages.py - pick the real passages the embedding parity fixture is built from.

The passages come from documentation that Debian installs under /usr/share/doc:
the SQLite manual (package sqlite3-doc, HTML), the bzip2 and bc manuals (HTML),
README files, and Debian changelogs (which carry non-ASCII maintainer names).
They are cut into paragraphs and runs of paragraphs of four length classes, from
a few words to well past the embedder's 256-token limit, so that truncation is
exercised.  Selection is deterministic (fixed file list, seeded shuffle), and
every passage records where it came from.

Output: tests/fixtures/embed/passages.txt, a sequence of records

    @@ <index> <nbytes> <source>\n<nbytes bytes of UTF-8 text>\n

(the text may contain newlines; nbytes says where it ends).  gen_embed.py reads
that file, so the embeddings can be regenerated without the doc packages.

Usage: python3 tests/reference/passages.py [--out FILE]   (needs sqlite3-doc)
"""
import argparse
import glob
import gzip
import html.parser
import os
import random
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_OUT = os.path.join(ROOT, "tests", "fixtures", "embed", "passages.txt")

HTML_SOURCES = [
    "/usr/share/doc/sqlite3/lang_select.html",
    "/usr/share/doc/sqlite3/atomiccommit.html",
    "/usr/share/doc/sqlite3/wal.html",
    "/usr/share/doc/sqlite3/datatype3.html",
    "/usr/share/doc/sqlite3/fts5.html",
    "/usr/share/doc/sqlite3/lockingv3.html",
    "/usr/share/doc/sqlite3/queryplanner.html",
    "/usr/share/doc/sqlite3/json1.html",
    "/usr/share/doc/sqlite3/pragma.html",
    "/usr/share/doc/sqlite3/whentouse.html",
    "/usr/share/doc/bzip2/manual.html",
    "/usr/share/doc/bc/bc.html",
    "/usr/share/doc/base-passwd/users-and-groups.html",
]
TEXT_SOURCES = [
    "/usr/share/doc/base-files/README.FHS",
    "/usr/share/doc/bash/README.gz",
    "/usr/share/doc/apt/README.md.gz",
    "/usr/share/doc/coreutils/README.gz",
    "/usr/share/doc/adduser/README.gz",
    "/usr/share/doc/cscope/README",
]
# Changelogs whose sign-off lines carry non-ASCII names (Dröge, Treviño, ...).
CHANGELOG_GLOB = "/usr/share/doc/*/changelog.Debian.gz"

BLOCK_TAGS = {"p", "div", "h1", "h2", "h3", "h4", "h5", "h6", "li", "pre", "br", "tr",
              "table", "blockquote", "dt", "dd", "ul", "ol", "dl", "hr", "title"}


class HtmlText(html.parser.HTMLParser):
    """Plain text of an HTML page: one paragraph per block element."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.paras, self.cur, self.skip = [], [], 0

    def flush(self):
        text = " ".join("".join(self.cur).split())
        if text:
            self.paras.append(text)
        self.cur = []

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style"):
            self.skip += 1
        elif tag in BLOCK_TAGS:
            self.flush()

    def handle_endtag(self, tag):
        if tag in ("script", "style"):
            self.skip = max(0, self.skip - 1)
        elif tag in BLOCK_TAGS:
            self.flush()

    def handle_data(self, data):
        if not self.skip:
            self.cur.append(data)


def read_text(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8", errors="strict") as f:
        return f.read()


def html_paragraphs(path):
    p = HtmlText()
    p.feed(read_text(path))
    p.close()
    p.flush()
    return p.paras


def text_paragraphs(path):
    """Blank-line separated paragraphs, internal line breaks kept."""
    paras = []
    for block in re.split(r"\n\s*\n", read_text(path)):
        block = "\n".join(line.rstrip() for line in block.strip("\n").splitlines())
        if block.strip():
            paras.append(block)
    return paras


def changelog_entries():
    """Whole changelog entries whose sign-off line has a non-ASCII name."""
    out = []
    for path in sorted(glob.glob(CHANGELOG_GLOB)):
        try:
            text = read_text(path)
        except (UnicodeDecodeError, OSError):
            continue
        for entry in re.split(r"\n(?=\S+ \([^)]*\) [^;]*; urgency=)", text):
            entry = entry.strip()
            sign = [l for l in entry.splitlines() if l.startswith(" -- ")]
            if sign and any(ord(c) > 127 for c in sign[0]):
                out.append((path, entry))
    return out


def words(s):
    return len(s.split())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=DEFAULT_OUT)
    args = ap.parse_args()

    missing = [p for p in HTML_SOURCES + TEXT_SOURCES if not os.path.exists(p)]
    if missing:
        sys.exit("passages.py: missing %s (apt-get install sqlite3-doc bzip2 bc)" % ", ".join(missing))

    docs = []  # (source, [paragraphs])
    for p in HTML_SOURCES:
        docs.append((p, html_paragraphs(p)))
    for p in TEXT_SOURCES:
        docs.append((p, text_paragraphs(p)))

    rng = random.Random(20240611)
    short, medium, long_, xlong = [], [], [], []
    for src, paras in docs:
        for i, para in enumerate(paras):
            n = words(para)
            tag = "%s#p%d" % (src, i)
            if 3 <= n <= 12:
                short.append((tag, para))
            elif 25 <= n <= 120:
                medium.append((tag, para))
            elif 140 <= n <= 190:
                long_.append((tag, para))
        # runs of consecutive paragraphs: 300-700 words, far past 256 tokens
        i = 0
        while i < len(paras):
            j, n = i, 0
            while j < len(paras) and n < 300:
                n += words(paras[j])
                j += 1
            if 300 <= n <= 700:
                xlong.append(("%s#p%d-p%d" % (src, i, j - 1), "\n\n".join(paras[i:j])))
            i = j
    logs = changelog_entries()

    picked = []
    for bucket, k in ((short, 30), (medium, 40), (long_, 16), (xlong, 22)):
        rng.shuffle(bucket)
        picked += bucket[:k]
    rng.shuffle(logs)
    picked += [("%s#%s" % (p, e.split()[0] + " " + e.split()[1]), e) for p, e in logs[:12]]

    seen, records = set(), []
    for src, text in picked:
        if text in seen:
            continue
        seen.add(text)
        records.append((src, text))

    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "wb") as f:
        for i, (src, text) in enumerate(records):
            b = text.encode("utf-8")
            f.write(("@@ %d %d %s\n" % (i, len(b), src)).encode("utf-8"))
            f.write(b + b"\n")
    counts = [words(t) for _, t in records]
    print("passages.py: %d passages (%d-%d words, %d non-ASCII) -> %s" % (
        len(records), min(counts), max(counts),
        sum(any(ord(c) > 127 for c in t) for _, t in records), args.out))


if __name__ == "__main__":
    main()
