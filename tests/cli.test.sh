#!/usr/bin/env bash
# cli.test.sh BUILD - the docent CLI on real models and on bad input.
# Every bad input must give exit status 1 (runtime) or 2 (usage) with a message
# naming the problem; never a signal (>= 128) or a hang (each call has a timeout).
set -u
BUILD=${1:-build}
D=$BUILD/docent
GEN=models/smollm2-135m-instruct-q4_1.gguf
EMB=models/all-minilm-l6-v2
if [ ! -f "$GEN" ] || [ ! -d "$EMB" ]; then echo "skipped: models missing (make models)"; exit 77; fi
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
fails=0
# expect STATUS PATTERN -- CMD...: run CMD, check exit status and that stderr matches PATTERN
expect() {
    local want=$1 pat=$2; shift 3
    timeout 120 "$@" >"$tmp/out" 2>"$tmp/err"
    local rc=$?
    if [ "$rc" -ne "$want" ] || ! grep -qE -- "$pat" "$tmp/err"; then
        echo "FAIL: $* -> exit $rc (want $want), stderr: $(head -c 300 "$tmp/err")"
        fails=$((fails + 1))
    else
        echo "ok: $(echo "$*" | head -c 100) -> $rc"
    fi
}

# happy paths
out=$("$D" tokenize -m "$GEN" "Hello world") || { echo "FAIL: tokenize"; fails=$((fails+1)); }
[ "$out" = "19556 905" ] || { echo "FAIL: tokenize Hello world gave '$out'"; fails=$((fails+1)); }
out=$("$D" embed -m "$EMB" "a b c" | wc -w)
[ "$out" = "384" ] || { echo "FAIL: embed gave $out numbers"; fails=$((fails+1)); }
out=$("$D" generate -m "$GEN" -n 8 "The capital of France is")
echo "generate: $out"
echo "$out" | grep -q "Paris" || { echo "FAIL: expected Paris in '$out'"; fails=$((fails+1)); }

# usage errors (exit 2)
expect 2 "unknown command" -- "$D" frobnicate
expect 2 "-m MODEL is required" -- "$D" generate "hi"
expect 2 "bad value" -- "$D" generate -m "$GEN" --temp abc "hi"
expect 2 "bad value" -- "$D" generate -m "$GEN" --top-p 1.5 "hi"
expect 2 "exactly one PROMPT" -- "$D" generate -m "$GEN"
# runtime errors (exit 1), each naming the problem
expect 1 "no such file" -- "$D" generate -m /nonexistent.gguf "hi"
expect 1 "empty prompt" -- "$D" generate -m "$GEN" ""
expect 1 "invalid UTF-8" -- "$D" tokenize -m "$GEN" "$(printf 'abc\xff\xfe')"
expect 1 "invalid UTF-8" -- "$D" generate -m "$GEN" "$(printf 'caf\xc3')"
long=$(head -c 20000 /dev/zero | tr '\0' 'x' | sed 's/x/word /g')
expect 1 "does not fit in the context of 64" -- "$D" generate -m "$GEN" --ctx 64 "$long"
expect 1 "not an embedding" -- "$D" embed -m "$GEN" "hi"
expect 1 "decoder" -- "$D" generate -m "$EMB" "hi"
expect 1 "unknown chat template" -- "$D" generate -m "$GEN" --chat --template nope "hi"
expect 1 "unknown backend" -- "$D" generate -m "$GEN" --backend tpu "hi"
# corrupted model files
head -c 1000000 "$GEN" > "$tmp/trunc.gguf"
expect 1 "trunc.gguf" -- "$D" tokenize -m "$tmp/trunc.gguf" "hi"
printf 'NOTAGGUF' > "$tmp/bad.gguf"; head -c 4096 /dev/urandom >> "$tmp/bad.gguf"
expect 1 "bad.gguf" -- "$D" tokenize -m "$tmp/bad.gguf" "hi"
mkdir -p "$tmp/hf" && cp "$EMB"/*.json "$EMB"/vocab.txt "$tmp/hf/"
head -c 5000000 "$EMB/model.safetensors" > "$tmp/hf/model.safetensors"
expect 1 "safetensors" -- "$D" embed -m "$tmp/hf" "hi"
sed 's/"hidden_size": 384/"hidden_size": 768/' "$EMB/config.json" > "$tmp/hf/config.json"
cp "$EMB/model.safetensors" "$tmp/hf/model.safetensors"
expect 1 "shape|expected" -- "$D" embed -m "$tmp/hf" "hi"
sed 's/"model_type": "bert"/"model_type": "t5"/' "$EMB/config.json" > "$tmp/hf/config.json"
expect 1 "unsupported architecture" -- "$D" embed -m "$tmp/hf" "hi"

[ $fails -eq 0 ] && echo "cli: all checks passed"
exit $((fails > 0))
