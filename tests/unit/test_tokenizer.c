/*
 * test_tokenizer.c - tokenizers against the reference tokenizers on real text.
 *
 * Fixtures (tests/fixtures/tokens, made by tests/reference/corpus.py and
 * gen_tokens.py): corpus.txt holds ~2,700 escaped lines of real text (man
 * pages in French/Japanese/Chinese/..., changelogs, gettext catalogs in
 * Arabic/Hebrew/Hindi/Thai/..., emoji); smollm2.ids holds llama.cpp's ids for
 * the SmolLM2 GGUF, minilm.ids the HF tokenizers ids for all-MiniLM-L6-v2
 * (with [CLS]/[SEP]), minilm.dec HF's decode of every 4th minilm line.
 */
#include "testutil.h"

#include <pthread.h>
#include <unistd.h>

#include "core/json.h"
#include "llm/internal.h"
#include "llm/tok_impl.h" /* test_pre_types swaps the pre-tokenizer of a loaded tokenizer */

#define FIX "tests/fixtures/tokens/"
#define MAX_IDS 8192

typedef struct fixture {
    int n;
    char **text;
    size_t *len;
    int32_t **ids;
    int *n_ids;
} fixture;

/* unescape \\ \n \t \r in place; returns the new length */
static size_t unescape(char *s, size_t n)
{
    size_t w = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\\' && i + 1 < n) {
            char c = s[++i];
            s[w++] = c == 'n' ? '\n' : c == 't' ? '\t' : c == 'r' ? '\r' : c == '\\' ? '\\' : c;
        } else {
            s[w++] = s[i];
        }
    }
    return w;
}

/* read_lines: split a file into lines (the buffer is kept in *data) */
static int read_lines(const char *path, char **data, char ***lines, size_t **lens)
{
    size_t len;
    doc_err err = {0};
    if (file_read_all(path, 64u << 20, data, &len, &err)) {
        print_error("%s\n", err.msg);
        return -1;
    }
    int n = 0;
    for (size_t i = 0; i < len; i++) n += (*data)[i] == '\n';
    *lines = calloc((size_t)n + 1, sizeof **lines);
    *lens = calloc((size_t)n + 1, sizeof **lens);
    char *p = *data;
    for (int i = 0; i < n; i++) {
        char *e = strchr(p, '\n');
        *e = 0;
        (*lines)[i] = p;
        (*lens)[i] = (size_t)(e - p);
        p = e + 1;
    }
    return n;
}

static char *corpus_data, *ids_data[2];

/* load_fixture: corpus lines 0, stride, 2*stride, ... with their ids; with
 * stride 0 the ids file names its lines ("N: ids", N 1-based) */
static void load_fixture(fixture *f, const char *ids_file, int slot, int stride)
{
    char **lines, **idl;
    size_t *lens, *idlens;
    int nc = read_lines(FIX "corpus.txt", &corpus_data, &lines, &lens);
    assert_true(nc > 2000);
    int m = read_lines(ids_file, &ids_data[slot], &idl, &idlens);
    assert_true(m > 0);
    for (int i = 0; i < nc; i++) lens[i] = unescape(lines[i], lens[i]);
    f->n = stride ? (nc + stride - 1) / stride : m;
    assert_int_equal(m, f->n);
    f->text = calloc((size_t)f->n, sizeof *f->text);
    f->len = calloc((size_t)f->n, sizeof *f->len);
    f->ids = calloc((size_t)f->n, sizeof *f->ids);
    f->n_ids = calloc((size_t)f->n, sizeof *f->n_ids);
    for (int i = 0; i < f->n; i++) {
        char *p = idl[i], *end;
        int line = i * stride;
        if (!stride) {
            line = (int)strtol(p, &end, 10) - 1;
            assert_true(line >= 0 && line < nc && *end == ':');
            p = end + 1;
        }
        f->text[i] = lines[line];
        f->len[i] = lens[line];
        f->ids[i] = malloc(sizeof(int32_t) * (idlens[i] / 2 + 2));
        while (*p) {
            long v = strtol(p, &end, 10);
            if (end == p) break;
            f->ids[i][f->n_ids[i]++] = (int32_t)v;
            p = end;
        }
    }
    free(lines);
    free(lens);
    free(idl);
    free(idlens);
}

static void free_fixture(fixture *f)
{
    for (int i = 0; i < f->n; i++) free(f->ids[i]);
    free(f->ids);
    free(f->n_ids);
    free(f->text);
    free(f->len);
    free(corpus_data);
    corpus_data = NULL;
    for (int i = 0; i < 2; i++) {
        free(ids_data[i]);
        ids_data[i] = NULL;
    }
}

static void print_ids(const char *label, const int32_t *ids, int n)
{
    printf("    %s (%d):", label, n);
    for (int i = 0; i < n && i < 80; i++) printf(" %d", ids[i]);
    printf(n > 80 ? " ...\n" : "\n");
}

/* check_fixture: every line id-for-id; prints the first 5 mismatches */
static int check_fixture(const char *name, const llm_tokenizer *t, const fixture *f,
                         int add_special, int parse_special)
{
    static int32_t ids[MAX_IDS];
    int match = 0, shown = 0;
    for (int i = 0; i < f->n; i++) {
        int n = 0;
        doc_err err = {0};
        int rc = tok_encode(t, f->text[i], f->len[i], add_special, parse_special, ids, MAX_IDS, &n,
                            &err);
        int ok = rc == DOC_OK && n == f->n_ids[i] &&
                 !memcmp(ids, f->ids[i], sizeof(int32_t) * (size_t)n);
        if (ok) {
            match++;
        } else if (shown++ < 5) {
            printf("%s mismatch at corpus line %d (rc %d %s): \"%.*s\"\n", name, i + 1, rc,
                   err.msg, (int)f->len[i], f->text[i]);
            print_ids("reference", f->ids[i], f->n_ids[i]);
            print_ids("docent   ", ids, n);
        }
    }
    printf("%s: %d / %d lines match the reference exactly\n", name, match, f->n);
    return match;
}

static llm_tokenizer *open_smollm2(gguf_file **g)
{
    char path[512];
    test_model_path(path, sizeof path, TEST_GGUF);
    doc_err err = {0};
    llm_tokenizer *t = NULL;
    assert_int_equal(gguf_open(path, g, &err), DOC_OK);
    int rc = tok_from_gguf(*g, &t, &err);
    if (rc) print_error("%s\n", err.msg);
    assert_int_equal(rc, DOC_OK);
    return t;
}

static llm_tokenizer *open_minilm(const char *dir_override)
{
    char path[512];
    test_model_path(path, sizeof path, TEST_EMBEDDER);
    doc_err err = {0};
    llm_tokenizer *t = NULL;
    int rc = tok_from_hf_dir(dir_override ? dir_override : path, &t, &err);
    if (rc) print_error("%s\n", err.msg);
    assert_int_equal(rc, DOC_OK);
    return t;
}

/* ---- SmolLM2 (byte-level BPE, GGUF, llama.cpp reference) -------------- */

static void test_smollm2_fixtures(void **state)
{
    (void)state;
    gguf_file *g = NULL;
    llm_tokenizer *t = open_smollm2(&g);
    assert_int_equal(tok_kind(t), TOK_BPE);
    assert_int_equal(tok_n_vocab(t), 49152);
    fixture f = {0};
    load_fixture(&f, FIX "smollm2.ids", 0, 1);
    int match = check_fixture("smollm2", t, &f, 0, 0);
    assert_int_equal(match, f.n);

    /* round trip: decode(encode(x)) == x on every line */
    static int32_t ids[MAX_IDS];
    int rt = 0;
    buf b;
    buf_init(&b, 0);
    for (int i = 0; i < f.n; i++) {
        int n;
        assert_int_equal(tok_encode(t, f.text[i], f.len[i], 0, 0, ids, MAX_IDS, &n, NULL), DOC_OK);
        buf_reset(&b);
        assert_int_equal(tok_decode(t, ids, n, &b), DOC_OK);
        if (b.len == f.len[i] && !memcmp(b.data, f.text[i], b.len))
            rt++;
        else if (rt + 5 > i)
            printf("round trip differs at line %d: \"%.*s\" -> \"%s\"\n", i + 1, (int)f.len[i],
                   f.text[i], b.data);
    }
    printf("smollm2 round trip: %d / %d lines\n", rt, f.n);
    assert_int_equal(rt, f.n);
    buf_free(&b);
    free_fixture(&f);
    tok_free(&t);
    gguf_close(&g);
}

static void test_smollm2_specials(void **state)
{
    (void)state;
    gguf_file *g = NULL;
    llm_tokenizer *t = open_smollm2(&g);
    const char *s = "<|im_start|>user\nhi<|im_end|>";
    int32_t ids[64];
    int n;
    /* llama.cpp: tokenize(special=True) */
    const int32_t with[] = {1, 4093, 198, 6004, 2};
    assert_int_equal(tok_encode(t, s, strlen(s), 0, 1, ids, 64, &n, NULL), DOC_OK);
    assert_int_equal(n, 5);
    assert_memory_equal(ids, with, sizeof with);
    /* llama.cpp: tokenize(special=False): the markers are plain text */
    const int32_t without[] = {44, 108, 306, 79, 3738, 108, 46, 4093, 198, 6004,
                               44, 108, 306, 79, 486, 108, 46};
    assert_int_equal(tok_encode(t, s, strlen(s), 0, 0, ids, 64, &n, NULL), DOC_OK);
    assert_int_equal(n, 17);
    assert_memory_equal(ids, without, sizeof without);

    const tok_special *sp = tok_specials(t);
    assert_int_equal(sp->bos, 1);
    assert_int_equal(sp->eos, 2);
    assert_int_equal(sp->add_bos, 0);
    assert_true(tok_is_special(t, 2));
    assert_false(tok_is_special(t, 4093));
    assert_int_equal(tok_lookup(t, "<|im_end|>"), 2);
    assert_string_equal(tok_text(t, 2), "<|im_end|>");
    assert_null(tok_text(t, 49152));

    /* pieces: byte mapping undone, specials only on request */
    char piece[64];
    int l = tok_piece_bytes(t, 198, 0, piece, sizeof piece);
    assert_int_equal(l, 1);
    assert_int_equal(piece[0], '\n');
    assert_int_equal(tok_piece_bytes(t, 2, 0, piece, sizeof piece), 0);
    l = tok_piece_bytes(t, 2, 1, piece, sizeof piece);
    assert_int_equal(l, 10);
    assert_memory_equal(piece, "<|im_end|>", 10);
    assert_int_equal(tok_piece_bytes(t, -1, 0, piece, sizeof piece), -1);

    /* decode skips control tokens */
    buf b;
    buf_init(&b, 0);
    assert_int_equal(tok_decode(t, with, 5, &b), DOC_OK);
    assert_string_equal(b.data, "user\nhi");
    buf_free(&b);

    /* empty text; the cap */
    assert_int_equal(tok_encode(t, "", 0, 1, 1, ids, 64, &n, NULL), DOC_OK);
    assert_int_equal(n, 0);
    doc_err err = {0};
    assert_int_equal(tok_encode(t, s, strlen(s), 0, 0, ids, 4, &n, &err), DOC_ELIMIT);
    assert_int_equal(n, 17);
    assert_memory_equal(ids, without, 4 * sizeof(int32_t));
    tok_free(&t);
    gguf_close(&g);
}

static void test_invalid_utf8(void **state)
{
    (void)state;
    gguf_file *g = NULL;
    llm_tokenizer *t = open_smollm2(&g);
    llm_tokenizer *w = open_minilm(NULL);
    static const struct {
        const char *s;
        size_t len;
        const char *at;
    } bad[] = {
        {"ab\xff" "cd", 5, "byte 2"},
        {"caf\xc3", 4, "byte 3"},         /* truncated */
        {"x\xc0\xaf", 3, "byte 1"},       /* overlong '/' */
        {"\xed\xa0\x80z", 4, "byte 0"},   /* surrogate */
        {"ok \xf4\x90\x80\x80", 7, "byte 3"}, /* past U+10FFFF */
    };
    int32_t ids[16];
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        for (int k = 0; k < 2; k++) {
            int n = -1;
            doc_err err = {0};
            assert_int_equal(tok_encode(k ? w : t, bad[i].s, bad[i].len, 0, 0, ids, 16, &n, &err),
                             DOC_EINVAL);
            assert_non_null(strstr(err.msg, "invalid UTF-8"));
            assert_non_null(strstr(err.msg, bad[i].at));
        }
    }
    tok_free(&w);
    tok_free(&t);
    gguf_close(&g);
}

/* ---- MiniLM (WordPiece, HF tokenizers reference) --------------------- */

static void test_minilm_fixtures(void **state)
{
    (void)state;
    llm_tokenizer *t = open_minilm(NULL);
    assert_int_equal(tok_kind(t), TOK_WORDPIECE);
    assert_int_equal(tok_n_vocab(t), 30522);
    fixture f = {0};
    load_fixture(&f, FIX "minilm.ids", 1, 1);
    int match = check_fixture("minilm", t, &f, 1, 1);
    assert_int_equal(match, f.n);

    /* decode against HF's decode(skip_special_tokens=True) for every 4th line */
    char *dec_data;
    char **dec;
    size_t *dlen;
    int nd = read_lines(FIX "minilm.dec", &dec_data, &dec, &dlen);
    assert_int_equal(nd, (f.n + 3) / 4);
    buf b;
    buf_init(&b, 0);
    int ok = 0;
    for (int k = 0; k < nd; k++) {
        int i = k * 4;
        dlen[k] = unescape(dec[k], dlen[k]);
        buf_reset(&b);
        assert_int_equal(tok_decode(t, f.ids[i], f.n_ids[i], &b), DOC_OK);
        if (b.len == dlen[k] && !memcmp(b.data, dec[k], b.len))
            ok++;
        else if (k - ok < 5)
            printf("decode differs at line %d:\n    reference \"%.*s\"\n    docent    \"%s\"\n",
                   i + 1, (int)dlen[k], dec[k], b.data);
    }
    printf("minilm decode: %d / %d lines match\n", ok, nd);
    assert_int_equal(ok, nd);
    buf_free(&b);
    free(dec_data);
    free(dec);
    free(dlen);

    const tok_special *sp = tok_specials(t);
    assert_int_equal(sp->cls, 101);
    assert_int_equal(sp->sep, 102);
    assert_int_equal(sp->unk, 100);
    int32_t ids[8];
    int n;
    assert_int_equal(tok_encode(t, "", 0, 1, 0, ids, 8, &n, NULL), DOC_OK);
    assert_int_equal(n, 2);
    assert_int_equal(ids[0], 101);
    assert_int_equal(ids[1], 102);
    free_fixture(&f);
    tok_free(&t);
}

/* vocab.txt + tokenizer_config.json alone give the same ids */
static void test_minilm_vocab_txt(void **state)
{
    (void)state;
    char src[512], dir[] = "/tmp/docent-tok-XXXXXX", a[600], b[600];
    test_model_path(src, sizeof src, TEST_EMBEDDER);
    assert_non_null(mkdtemp(dir));
    char *abs = realpath(src, NULL);
    assert_non_null(abs);
    static const char *files[] = {"vocab.txt", "tokenizer_config.json"};
    for (int i = 0; i < 2; i++) {
        snprintf(a, sizeof a, "%s/%s", abs, files[i]);
        snprintf(b, sizeof b, "%s/%s", dir, files[i]);
        assert_int_equal(symlink(a, b), 0);
    }
    llm_tokenizer *t = open_minilm(dir);
    assert_int_equal(tok_kind(t), TOK_WORDPIECE);
    fixture f = {0};
    load_fixture(&f, FIX "minilm.ids", 1, 1);
    int match = check_fixture("minilm vocab.txt", t, &f, 1, 1);
    assert_int_equal(match, f.n);
    free_fixture(&f);
    tok_free(&t);
    for (int i = 0; i < 2; i++) {
        snprintf(b, sizeof b, "%s/%s", dir, files[i]);
        unlink(b);
    }
    rmdir(dir);
    free(abs);
}

/* the other tokenizer.ggml.pre regex sets: SmolLM2's vocabulary with the
 * pre-tokenizer swapped, against llama.cpp run on a copy of the GGUF whose
 * only change is tokenizer.ggml.pre (on the corpus lines where the types
 * disagree) */
static void test_pre_types(void **state)
{
    (void)state;
    static const char *pres[] = {"gpt-2", "llama-bpe", "qwen2", "default"};
    gguf_file *g = NULL;
    llm_tokenizer *t = open_smollm2(&g);
    for (size_t k = 0; k < sizeof pres / sizeof pres[0]; k++) {
        char file[256], label[64];
        snprintf(file, sizeof file, FIX "pre-%s.ids", pres[k]);
        snprintf(label, sizeof label, "pre %s", pres[k]);
        doc_err err = {0};
        tok_bpe_free(t);
        t->ignore_merges = 0;
        assert_int_equal(tok_bpe_setup(t, pres[k], &err), DOC_OK);
        fixture f = {0};
        load_fixture(&f, file, 0, 0);
        int match = check_fixture(label, t, &f, 0, 0);
        assert_int_equal(match, f.n);
        free_fixture(&f);
    }
    tok_free(&t);
    gguf_close(&g);
}

/* ---- HF tokenizer.json BPE ------------------------------------------- */

/* write_hf_bpe: dir/tokenizer.json with SmolLM2's vocabulary and merges from
 * the GGUF and the given pre_tokenizer (SmolLM2's own tokenizer.json is not
 * available offline; gen_tokens.py's comment says how HF tokenizers with the
 * first pre_tokenizer below agrees with llama.cpp on the corpus) */
static void write_hf_bpe(const gguf_file *g, const llm_tokenizer *t, const char *dir,
                         json_t *pre_tokenizer)
{
    json_t *vocab = json_object(), *merges = json_array(), *added = json_array();
    for (int id = 0; id < tok_n_vocab(t); id++) {
        json_object_set_new(vocab, tok_text(t, id), json_integer(id));
        if (tok_is_special(t, id))
            json_array_append_new(added, json_pack("{s:i, s:s, s:b, s:b}", "id", id, "content",
                                                   tok_text(t, id), "special", 1, "normalized", 0));
    }
    const gguf_kv *m = gguf_get(g, "tokenizer.ggml.merges");
    assert_non_null(m);
    for (uint64_t i = 0; i < m->n; i++) json_array_append_new(merges, json_string(m->strs[i]));
    json_t *root = json_pack("{s:s, s:o, s:n, s:o, s:{s:s}, s:{s:s}, s:{s:s, s:o, s:o}}", "version",
                             "1.0", "added_tokens", added, "normalizer", "pre_tokenizer",
                             pre_tokenizer, "post_processor", "type", "ByteLevel", "decoder",
                             "type", "ByteLevel", "model", "type", "BPE", "vocab", vocab, "merges",
                             merges);
    assert_non_null(root);
    char path[600];
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    assert_int_equal(json_dump_file(root, path, JSON_COMPACT), 0);
    json_decref(root);
}

static void test_hf_bpe(void **state)
{
    (void)state;
    gguf_file *g = NULL;
    llm_tokenizer *gt = open_smollm2(&g);
    char dir[] = "/tmp/docent-tok-XXXXXX", path[600];
    assert_non_null(mkdtemp(dir));
    fixture f = {0};
    load_fixture(&f, FIX "smollm2.ids", 0, 1);
    /* SmolLM2 / StarCoder: Digits(individual) then ByteLevel's GPT-2 regex;
     * the same through an explicit Split regex and a regex-less ByteLevel */
    json_t *pres[2] = {
        json_pack("{s:s, s:[{s:s, s:b}, {s:s, s:b, s:b}]}", "type", "Sequence", "pretokenizers",
                  "type", "Digits", "individual_digits", 1, "type", "ByteLevel",
                  "add_prefix_space", 0, "use_regex", 1),
        json_pack("{s:s, s:[{s:s, s:{s:s}, s:s, s:b}, {s:s, s:{s:s}, s:s, s:b}, {s:s, s:b, s:b}]}",
                  "type", "Sequence", "pretokenizers", "type", "Split", "pattern", "Regex",
                  "\\p{N}", "behavior", "Isolated", "invert", 0, "type", "Split", "pattern",
                  "Regex",
                  "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+",
                  "behavior", "Isolated", "invert", 0, "type", "ByteLevel", "add_prefix_space", 0,
                  "use_regex", 0),
    };
    for (int k = 0; k < 2; k++) {
        assert_non_null(pres[k]);
        write_hf_bpe(g, gt, dir, pres[k]);
        llm_tokenizer *t = NULL;
        doc_err err = {0};
        int rc = tok_from_hf_dir(dir, &t, &err);
        if (rc) print_error("%s\n", err.msg);
        assert_int_equal(rc, DOC_OK);
        assert_int_equal(tok_kind(t), TOK_BPE);
        int match = check_fixture(k ? "smollm2 tokenizer.json (Split)" : "smollm2 tokenizer.json",
                                  t, &f, 0, 0);
        assert_int_equal(match, f.n);
        int32_t ids[16];
        int n;
        const char *s = "<|im_start|>user";
        assert_int_equal(tok_encode(t, s, strlen(s), 0, 1, ids, 16, &n, NULL), DOC_OK);
        assert_int_equal(n, 2);
        assert_int_equal(ids[0], 1);
        tok_free(&t);
    }
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    unlink(path);
    rmdir(dir);
    free_fixture(&f);
    tok_free(&gt);
    gguf_close(&g);
}

/* ---- SentencePiece BPE (GGUF "llama", sentencepiece reference) ------ */

static void test_spm_fixtures(void **state)
{
    (void)state;
    gguf_file *g = NULL;
    llm_tokenizer *t = NULL;
    doc_err err = {0};
    int rc = gguf_open(FIX "spm-bpe.gguf", &g, &err);
    if (!rc) rc = tok_from_gguf(g, &t, &err);
    if (rc) print_error("%s\n", err.msg);
    assert_int_equal(rc, DOC_OK);
    assert_int_equal(tok_kind(t), TOK_SPM);
    fixture f = {0};
    load_fixture(&f, FIX "spm.ids", 0, 2);
    int match = check_fixture("spm", t, &f, 0, 0);

    /* decode gives the text back, as sentencepiece's decode does */
    static int32_t ids[MAX_IDS];
    buf b;
    buf_init(&b, 0);
    int rt = 0;
    for (int i = 0; i < f.n; i++) {
        int n;
        assert_int_equal(tok_encode(t, f.text[i], f.len[i], 0, 0, ids, MAX_IDS, &n, NULL), DOC_OK);
        buf_reset(&b);
        assert_int_equal(tok_decode(t, ids, n, &b), DOC_OK);
        if (b.len == f.len[i] && !memcmp(b.data, f.text[i], b.len))
            rt++;
        else if (i - rt < 5)
            printf("spm round trip differs at line %d: \"%.*s\" -> \"%s\"\n", 2 * i + 1,
                   (int)f.len[i], f.text[i], b.data);
    }
    printf("spm round trip: %d / %d lines\n", rt, f.n);
    assert_int_equal(match, f.n);
    assert_int_equal(rt, f.n);

    /* add_special puts BOS in front (add_bos defaults on for "llama") */
    const tok_special *sp = tok_specials(t);
    assert_true(sp->add_bos);
    int n;
    assert_int_equal(tok_encode(t, "hi", 2, 1, 0, ids, 16, &n, NULL), DOC_OK);
    assert_true(n >= 2);
    assert_int_equal(ids[0], sp->bos);
    buf_free(&b);
    free_fixture(&f);
    tok_free(&t);
    gguf_close(&g);
}

/* ---- speed and threads ------------------------------------------------ */

static void make_big(char **out, size_t *len)
{
    char *data;
    size_t n;
    assert_int_equal(file_read_all(FIX "corpus.txt", 0, &data, &n, NULL), DOC_OK);
    buf b;
    buf_init(&b, 0);
    while (b.len < (1u << 20)) assert_int_equal(buf_append(&b, data, n), DOC_OK);
    free(data);
    *len = b.len;
    *out = buf_steal(&b, NULL);
}

static void test_speed(void **state)
{
    (void)state;
    gguf_file *g = NULL;
    llm_tokenizer *t = open_smollm2(&g);
    llm_tokenizer *w = open_minilm(NULL);
    char *text;
    size_t len;
    make_big(&text, &len);
    int cap = (int)len;
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)cap);
    for (int k = 0; k < 2; k++) {
        int n;
        double t0 = time_now();
        assert_int_equal(tok_encode(k ? w : t, text, len, 0, 0, ids, cap, &n, NULL), DOC_OK);
        double dt = time_now() - t0;
        printf("%s: %zu bytes -> %d tokens in %.3f s (%.1f MB/s)\n", k ? "minilm" : "smollm2",
               len, n, dt, len / dt / 1e6);
        if (!getenv("DOCENT_ASAN")) assert_true(dt < 1.0);
    }
    free(ids);
    free(text);
    tok_free(&w);
    tok_free(&t);
    gguf_close(&g);
}

typedef struct thr_job {
    const llm_tokenizer *t;
    const fixture *f;
    int start, mismatches;
} thr_job;

static void *thr_main(void *arg)
{
    thr_job *j = arg;
    int32_t *ids = malloc(sizeof(int32_t) * MAX_IDS);
    for (int r = 0; r < 2; r++)
        for (int i = j->start; i < j->f->n; i += 2) {
            int n;
            if (tok_encode(j->t, j->f->text[i], j->f->len[i], 0, 0, ids, MAX_IDS, &n, NULL) ||
                n != j->f->n_ids[i] || memcmp(ids, j->f->ids[i], sizeof(int32_t) * (size_t)n))
                j->mismatches++;
        }
    free(ids);
    return NULL;
}

/* one shared tokenizer, encoded from several threads at once */
static void test_threads(void **state)
{
    (void)state;
    gguf_file *g = NULL;
    llm_tokenizer *t = open_smollm2(&g);
    fixture f = {0};
    load_fixture(&f, FIX "smollm2.ids", 0, 1);
    pthread_t th[4];
    thr_job jobs[4];
    for (int i = 0; i < 4; i++) {
        jobs[i] = (thr_job){t, &f, i % 2, 0};
        assert_int_equal(pthread_create(&th[i], NULL, thr_main, &jobs[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(jobs[i].mismatches, 0);
    }
    free_fixture(&f);
    tok_free(&t);
    gguf_close(&g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_smollm2_fixtures), cmocka_unit_test(test_smollm2_specials),
        cmocka_unit_test(test_invalid_utf8),     cmocka_unit_test(test_minilm_fixtures),
        cmocka_unit_test(test_minilm_vocab_txt), cmocka_unit_test(test_speed),
        cmocka_unit_test(test_pre_types),        cmocka_unit_test(test_hf_bpe),           cmocka_unit_test(test_spm_fixtures),     cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
