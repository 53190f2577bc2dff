#!/usr/bin/env bash
# layers.test.sh - the include rules of shared/DESIGN.md §2, checked on the source:
#   - a module includes project headers only from itself and the layers below it
#     (core < llm < index < ingest < rag < daemon; cli uses public headers only);
#   - another module's private header (internal.h, model.h, tok_impl.h, cpu/...) is
#     never included from outside its module;
#   - each third-party library is included by its few wrapper files only.
set -u
cd "$(dirname "$0")/.."
fails=0
bad() { echo "FAIL: $*"; fails=$((fails + 1)); }

# allowed project-header prefixes per module
declare -A allow=(
    [core]="core/"
    [llm]="core/ llm/"
    [index]="core/ index/"
    [prompts]="core/ prompts/"
    [ingest]="core/ index/index.h llm/llm.h ingest/"
    [rag]="core/ index/index.h llm/llm.h ingest/ingest.h prompts/ rag/"
    [daemon]="core/ llm/llm.h index/index.h ingest/ingest.h rag/rag.h prompts/prompts.h daemon/"
    [cli]="core/ llm/llm.h index/index.h ingest/ingest.h rag/rag.h prompts/prompts.h cli/"
)
# cli: index/, ingest/ and prompts/ public headers are allowed while ingest, search
# and ask run in-process (issues 3, 4); the daemon (issue 5) moves them behind the wire.
for mod in "${!allow[@]}"; do
    [ -d "$mod" ] || continue
    while IFS= read -r line; do
        file=${line%%:*}
        inc=$(echo "$line" | sed -E 's/.*#include "([^"]+)".*/\1/')
        case "$inc" in */*) ;; *) continue ;; esac # same-directory includes
        ok=0
        for p in ${allow[$mod]}; do
            case "$inc" in "$p"*) ok=1 ;; esac
        done
        [ $ok -eq 1 ] || bad "$file includes \"$inc\" (module $mod may use: ${allow[$mod]})"
    done < <(grep -rn '#include "' "$mod" --include='*.c' --include='*.h' --include='*.cu')
done

# third-party libraries: who may include them
check_lib() {
    local header=$1; shift
    local allowed=" $* "
    while IFS= read -r file; do
        case "$allowed" in *" $file "*) ;; *) bad "$file includes <$header> (only: $*)" ;; esac
    done < <(grep -rlE "#include <$header" --include='*.c' --include='*.h' core llm index ingest rag daemon cli 2>/dev/null)
}
check_lib 'jansson.h' core/json.h
check_lib 'pcre2.h' llm/tok_bpe.c
check_lib 'utf8proc.h' llm/tok_bpe.c llm/tok_wordpiece.c
check_lib 'sqlite3.h' index/store.c index/store_search.c
check_lib 'faiss/' index/vindex.c
check_lib 'libxml/' ingest/extract_html.c ingest/extract_docx.c
check_lib 'md4c.h' ingest/extract_md.c
check_lib 'poppler' ingest/extract_pdf.c
check_lib 'glib' ingest/extract_pdf.c
check_lib 'zip.h' ingest/extract_docx.c
check_lib 'ini.h' core/config.c
check_lib 'xxhash.h' core/hash.c
check_lib 'curl/curl.h' ingest/fetch.c llm/remote.c cli/client.c
check_lib 'microhttpd.h' daemon/server.c
check_lib 'editline/readline.h' cli/answer_cmds.c

[ $fails -eq 0 ] && echo "layers: include rules hold"
exit $((fails > 0))
