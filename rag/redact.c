/*
 * redact.c - redaction of PII and secrets (rag.h, "redaction").
 *
 * Design: one table row per recogniser {category bit, name, scanner}.  A
 * scanner looks at one start position of the input and returns the length of
 * the match that begins there (0: none).  rag_redact tries every enabled
 * scanner at every ASCII position, takes the longest match at the earliest
 * position (ties: table order), writes "[REDACTED:<name>]" and resumes after
 * the match.  No regular expressions.
 *
 * Linear time: every scanner is a forward scan with a constant cap on how far
 * it reads (emails 64+1+253 bytes, JWT segments 4 KiB, generic values 512
 * bytes, ...) plus, for the generic and AWS-secret labels, a look-behind of a
 * few dozen bytes.  The one unbounded scan, a private-key block running to its
 * END line or to the end of the input, is only made after the BEGIN line
 * matched; its match is then the longest at that position and rag_redact
 * skips everything it read.  So rag_redact is O(len x recognisers x cap).
 *
 * UTF-8: scanners only start on, consume and stop after ASCII bytes (a byte
 * >= 0x80 ends every run), so a match never splits a multi-byte character and
 * non-ASCII text is copied byte for byte.  The one exception is a private-key
 * block, which is replaced whole (its ends are ASCII or the end of input).
 */
#include "rag/rag.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* ---- character classes (ASCII only; c < 0 means "outside the input") ---- */

static int is_dig(int c) { return c >= '0' && c <= '9'; }
static int is_upper(int c) { return c >= 'A' && c <= 'Z'; }
static int is_lower(int c) { return c >= 'a' && c <= 'z'; }
static int is_alpha(int c) { return is_upper(c) || is_lower(c); }
static int is_alnum(int c) { return is_alpha(c) || is_dig(c); }
static int is_hex(int c) { return is_dig(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }
static int is_b64url(int c) { return is_alnum(c) || c == '-' || c == '_'; }
static int is_word(int c) { return is_alnum(c) || c == '_'; }

/* at: the byte at j, or -1 past the end */
static int at(const char *s, size_t n, size_t j) { return j < n ? (unsigned char)s[j] : -1; }
/* before: the byte before i, or -1 at the start */
static int before(const char *s, size_t i) { return i ? (unsigned char)s[i - 1] : -1; }

/* digits_at: exactly k digits at j (and not more when exact) */
static int digits_at(const char *s, size_t n, size_t j, size_t k)
{
    for (size_t q = 0; q < k; q++)
        if (!is_dig(at(s, n, j + q))) return 0;
    return 1;
}

static int starts(const char *s, size_t n, size_t j, const char *w)
{
    size_t m = strlen(w);
    return j <= n && n - j >= m && memcmp(s + j, w, m) == 0;
}

/*
 * label_before: does text just before i read "<label><sep>", where sep is
 * optional spaces/quotes around exactly one ':' or '=' (at most 8 bytes) and
 * the label (case-insensitive) is one of labels[] and not the tail of a longer
 * alphanumeric word ("db_password" counts, "mypassword" does not)?
 */
static int label_before(const char *s, size_t i, const char *const *labels, size_t n_labels)
{
    size_t j = i;
    int assign = 0, steps = 0;
    while (j > 0 && steps < 8) {
        int c = (unsigned char)s[j - 1];
        if (c == ' ' || c == '\t' || c == '"' || c == '\'') {
            j--, steps++;
        } else if ((c == ':' || c == '=') && !assign) {
            assign = 1;
            j--, steps++;
        } else {
            break;
        }
    }
    if (!assign) return 0;
    for (size_t k = 0; k < n_labels; k++) {
        size_t m = strlen(labels[k]);
        if (j >= m && strncasecmp(s + j - m, labels[k], m) == 0 && !is_alnum(before(s, j - m)))
            return 1;
    }
    return 0;
}

/* ---- email -------------------------------------------------------------- */

static int is_local(int c)
{
    return is_alnum(c) || c == '.' || c == '_' || c == '%' || c == '+' || c == '-';
}

/* local@domain.tld: local 1-64 bytes of [A-Za-z0-9._%+-] (no leading, trailing
 * or doubled dot), domain of 2+ labels, the last all letters and 2+ long. */
static size_t scan_email(const char *s, size_t n, size_t i)
{
    int p = before(s, i);
    if (is_local(p) || p == '@' || !(is_alnum(s[i]) || s[i] == '_')) return 0;
    size_t j = i;
    while (j < n && j - i <= 64 && is_local((unsigned char)s[j])) {
        if (s[j] == '.' && s[j - 1] == '.') return 0;
        j++;
    }
    if (j - i > 64 || at(s, n, j) != '@' || s[j - 1] == '.') return 0;
    size_t d0 = ++j, end = 0;
    int labels = 0;
    for (;;) {
        size_t l0 = j;
        int alpha = 1;
        while (j < n && j - d0 <= 253 && (is_alnum((unsigned char)s[j]) || s[j] == '-')) {
            if (!is_alpha((unsigned char)s[j])) alpha = 0;
            j++;
        }
        size_t l = j - l0;
        if (l == 0 || l > 63 || j - d0 > 253 || s[l0] == '-' || s[j - 1] == '-') break;
        if (++labels >= 2 && alpha && l >= 2) end = j;
        if (at(s, n, j) == '.' && is_alnum(at(s, n, j + 1))) {
            j++;
            continue;
        }
        break;
    }
    if (!end || at(s, n, end) == '@') return 0;
    return end - i;
}

/* ---- phone -------------------------------------------------------------- */

/* +CC and 7-15 digits in all, single separators [ -.] between groups, groups
 * in parentheses allowed: "+44 (0)20 7946 0958", "+1-555-123-4567". */
static size_t phone_intl(const char *s, size_t n, size_t i)
{
    size_t j = i + 1, end = 0;
    int digits = 0, last_sep = 1;
    if (!is_dig(at(s, n, j))) return 0;
    /* "+2024-01-15" is a date with a sign, not a phone */
    if (digits_at(s, n, j, 4) && at(s, n, j + 4) == '-' && digits_at(s, n, j + 5, 2) &&
        at(s, n, j + 7) == '-' && digits_at(s, n, j + 8, 2))
        return 0;
    while (j < n && j - i < 48) {
        int c = (unsigned char)s[j];
        if (is_dig(c)) {
            if (++digits > 15) return 0;
            end = ++j;
            last_sep = 0;
        } else if (c == '(') {
            size_t k = j + 1;
            while (is_dig(at(s, n, k)) && k - j <= 5) k++;
            if (k == j + 1 || k - j > 5 || at(s, n, k) != ')') break;
            digits += (int)(k - j - 1);
            if (digits > 15) return 0;
            end = j = k + 1;
            last_sep = 0;
        } else if ((c == ' ' || c == '-' || c == '.') && !last_sep &&
                   (is_dig(at(s, n, j + 1)) || at(s, n, j + 1) == '(')) {
            j++;
            last_sep = 1;
        } else {
            break;
        }
    }
    if (digits < 7 || is_word(at(s, n, end))) return 0;
    return end - i;
}

/* North American: "(555) 123-4567", "555-123-4567", "555.123.4567",
 * "555 123 4567", optionally after "1-" / "1 " / "1.". */
static size_t phone_na(const char *s, size_t n, size_t i)
{
    size_t j = i;
    int sep1;
    if (s[j] == '(') {
        if (!digits_at(s, n, j + 1, 3) || at(s, n, j + 4) != ')') return 0;
        j += 5;
        if (at(s, n, j) == ' ') j++;
        sep1 = 0;
    } else {
        if (!digits_at(s, n, j, 3)) return 0;
        sep1 = at(s, n, j + 3);
        if (sep1 != '-' && sep1 != '.' && sep1 != ' ') return 0;
        j += 4;
    }
    if (!digits_at(s, n, j, 3)) return 0;
    int sep2 = at(s, n, j + 3);
    if (sep2 != '-' && sep2 != '.' && sep2 != ' ') return 0;
    if (sep1 && sep2 != sep1) return 0;
    j += 4;
    if (!digits_at(s, n, j, 4)) return 0;
    j += 4;
    int c = at(s, n, j);
    if (is_word(c) || ((c == '-' || c == '.') && is_dig(at(s, n, j + 1)))) return 0;
    return j - i;
}

static size_t scan_phone(const char *s, size_t n, size_t i)
{
    int c = (unsigned char)s[i], p = before(s, i);
    if (c == '+') return is_alnum(p) || p == '+' ? 0 : phone_intl(s, n, i);
    if (!is_dig(c) && c != '(') return 0;
    if (is_word(p) || p == '.' || p == '-' || p == '+' || p == '/') return 0;
    size_t m = phone_na(s, n, i);
    if (!m && c == '1') {
        int sep = at(s, n, i + 1);
        if ((sep == '-' || sep == ' ' || sep == '.') && (m = phone_na(s, n, i + 2))) m += 2;
    }
    return m;
}

/* ---- payment card ------------------------------------------------------- */

/* known issuer prefixes: numbers starting lo..hi (as `digits`-digit prefixes)
 * with a length in min..max */
static const struct iin {
    unsigned lo, hi;
    int digits, min, max;
} iins[] = {
    {4, 4, 1, 13, 19},          /* Visa */
    {51, 55, 2, 16, 16},        /* Mastercard */
    {2221, 2720, 4, 16, 16},    /* Mastercard 2-series */
    {34, 34, 2, 15, 15},        /* Amex */
    {37, 37, 2, 15, 15},
    {6011, 6011, 4, 16, 19},    /* Discover */
    {644, 649, 3, 16, 19},
    {65, 65, 2, 16, 19},
    {300, 305, 3, 14, 19},      /* Diners Club */
    {36, 36, 2, 14, 19},
    {38, 39, 2, 16, 19},
    {3528, 3589, 4, 16, 19},    /* JCB */
    {62, 62, 2, 16, 19},        /* UnionPay */
    {50, 50, 2, 13, 19},        /* Maestro */
    {56, 58, 2, 13, 19},
    {6304, 6304, 4, 13, 19},
    {6759, 6759, 4, 13, 19},
    {6761, 6763, 4, 13, 19},
};

static int card_valid(const int *d, int nd)
{
    int sum = 0;
    for (int k = 0; k < nd; k++) {
        int v = d[nd - 1 - k];
        if (k & 1) v = v * 2 > 9 ? v * 2 - 9 : v * 2;
        sum += v;
    }
    if (sum % 10) return 0;
    for (size_t r = 0; r < sizeof iins / sizeof iins[0]; r++) {
        unsigned pre = 0;
        for (int k = 0; k < iins[r].digits; k++) pre = pre * 10 + (unsigned)d[k];
        if (pre >= iins[r].lo && pre <= iins[r].hi && nd >= iins[r].min && nd <= iins[r].max)
            return 1;
    }
    return 0;
}

/* 13-19 digits in groups of 3+ separated by single spaces or single dashes
 * (one kind per number); the longest Luhn-valid prefix of groups with a known
 * issuer wins.  A run of more than 19 digits is never a card. */
static size_t scan_card(const char *s, size_t n, size_t i)
{
    int p = before(s, i);
    if (!is_dig((unsigned char)s[i]) || is_word(p) || p == '.' || p == '-' || p == '+') return 0;
    int d[20], nd = 0, sep = 0;
    size_t j = i, best = 0;
    for (;;) {
        size_t g0 = j;
        int nd0 = nd;
        while (j < n && is_dig((unsigned char)s[j]) && nd < 20) d[nd++] = s[j++] - '0';
        if (nd > 19) return nd0 == 0 ? 0 : best;
        if (j - g0 < 3) break;
        int c = at(s, n, j);
        if (nd >= 13 && !is_word(c) && card_valid(d, nd)) best = j - i;
        if ((c == ' ' || c == '-') && (sep == 0 || sep == c) && is_dig(at(s, n, j + 1))) {
            sep = c;
            j++;
            continue;
        }
        break;
    }
    return best;
}

/* ---- IBAN --------------------------------------------------------------- */

static const struct {
    char cc[3];
    int len;
} iban_lengths[] = {
    {"AD", 24}, {"AE", 23}, {"AL", 28}, {"AT", 20}, {"AZ", 28}, {"BA", 20}, {"BE", 16},
    {"BG", 22}, {"BH", 22}, {"BR", 29}, {"CH", 21}, {"CR", 22}, {"CY", 28}, {"CZ", 24},
    {"DE", 22}, {"DK", 18}, {"DO", 28}, {"EE", 20}, {"ES", 24}, {"FI", 18}, {"FO", 18},
    {"FR", 27}, {"GB", 22}, {"GE", 22}, {"GI", 23}, {"GL", 18}, {"GR", 27}, {"GT", 28},
    {"HR", 21}, {"HU", 28}, {"IE", 22}, {"IL", 23}, {"IS", 26}, {"IT", 27}, {"JO", 30},
    {"KW", 30}, {"KZ", 20}, {"LB", 28}, {"LI", 21}, {"LT", 20}, {"LU", 20}, {"LV", 21},
    {"MC", 27}, {"MD", 24}, {"ME", 22}, {"MK", 19}, {"MR", 27}, {"MT", 31}, {"MU", 30},
    {"NL", 18}, {"NO", 15}, {"PK", 24}, {"PL", 28}, {"PS", 29}, {"PT", 25}, {"QA", 29},
    {"RO", 24}, {"RS", 22}, {"SA", 24}, {"SE", 24}, {"SI", 19}, {"SK", 24}, {"SM", 27},
    {"TN", 24}, {"TR", 26}, {"UA", 29}, {"VG", 24}, {"XK", 20},
};

/* CC + 2 check digits + BBAN, compact or spaced in groups of 4, exactly the
 * country's length (countries not in the table are not matched), mod 97 == 1. */
static size_t scan_iban(const char *s, size_t n, size_t i)
{
    if (!is_upper(at(s, n, i)) || !is_upper(at(s, n, i + 1)) || !is_dig(at(s, n, i + 2)) ||
        !is_dig(at(s, n, i + 3)) || is_alnum(before(s, i)))
        return 0;
    int want = 0;
    for (size_t r = 0; r < sizeof iban_lengths / sizeof iban_lengths[0]; r++)
        if (s[i] == iban_lengths[r].cc[0] && s[i + 1] == iban_lengths[r].cc[1])
            want = iban_lengths[r].len;
    if (!want) return 0;
    char v[34];
    int nv = 0, spaced = -1;
    size_t j = i;
    while (nv < want) {
        if (nv && nv % 4 == 0) {
            int sp = at(s, n, j) == ' ';
            if (spaced < 0) spaced = sp;
            if (sp != spaced) return 0;
            j += (size_t)sp;
        }
        int c = at(s, n, j);
        if (!is_upper(c) && !is_dig(c)) return 0;
        v[nv++] = (char)c;
        j++;
    }
    if (is_alnum(at(s, n, j))) return 0;
    unsigned mod = 0;
    for (int k = 0; k < nv; k++) {
        int c = v[(k + 4) % nv];
        if (is_dig(c)) mod = (mod * 10 + (unsigned)(c - '0')) % 97;
        else mod = (mod * 100 + (unsigned)(c - 'A' + 10)) % 97;
    }
    return mod == 1 ? j - i : 0;
}

/* ---- US SSN ------------------------------------------------------------- */

/* AAA-GG-SSSS or AAA GG SSSS; area not 000, 666 or 9xx, group not 00,
 * serial not 0000. */
static size_t scan_ssn(const char *s, size_t n, size_t i)
{
    int p = before(s, i);
    if (is_word(p) || p == '-' || p == '.' || p == '/' || p == '+') return 0;
    if (!digits_at(s, n, i, 3)) return 0;
    int sep = at(s, n, i + 3);
    if ((sep != '-' && sep != ' ') || !digits_at(s, n, i + 4, 2) || at(s, n, i + 6) != sep ||
        !digits_at(s, n, i + 7, 4))
        return 0;
    int c = at(s, n, i + 11);
    if (is_word(c) || ((c == '-' || c == '.') && is_dig(at(s, n, i + 12)))) return 0;
    int area = (s[i] - '0') * 100 + (s[i + 1] - '0') * 10 + (s[i + 2] - '0');
    int group = (s[i + 4] - '0') * 10 + (s[i + 5] - '0');
    if (area == 0 || area == 666 || area >= 900 || group == 0 || !memcmp(s + i + 7, "0000", 4))
        return 0;
    return 11;
}

/* ---- IP addresses ------------------------------------------------------- */

/* ipv4_end: four octets 0-255 ("0" or no leading zero) from j; the index
 * after the last octet, or 0. */
static size_t ipv4_end(const char *s, size_t n, size_t j)
{
    for (int o = 0; o < 4; o++) {
        if (o) {
            if (at(s, n, j) != '.') return 0;
            j++;
        }
        if (!is_dig(at(s, n, j))) return 0;
        if (s[j] == '0') {
            j++;
        } else {
            int v = 0, k = 0;
            while (k < 3 && is_dig(at(s, n, j))) v = v * 10 + (s[j++] - '0'), k++;
            if (v > 255) return 0;
        }
        if (is_dig(at(s, n, j))) return 0;
    }
    return j;
}

/* the address ends cleanly at e: not inside a longer word or dotted number,
 * and for IPv6 not before a second "::" ("1.2.3.4:8080" is a v4 with a port) */
static int ip_tail_ok(const char *s, size_t n, size_t e, int v6)
{
    int c = at(s, n, e);
    return !is_word(c) && !(c == '.' && is_dig(at(s, n, e + 1))) &&
           !(v6 && c == ':' && (at(s, n, e + 1) == ':' || is_hex(at(s, n, e + 1))));
}

static size_t scan_ipv6(const char *s, size_t n, size_t i)
{
    size_t j = i;
    int groups = 0, dc = 0, digit = 0;
    if (s[j] == ':') {
        if (at(s, n, j + 1) != ':') return 0;
        dc = 1;
        j += 2;
    }
    for (;;) {
        size_t g = j;
        int dec = 1;
        while (j < n && is_hex((unsigned char)s[j]) && j - g < 5) {
            if (is_dig((unsigned char)s[j])) digit = 1;
            else dec = 0;
            j++;
        }
        if (j == g) break;
        if (j - g > 4) return 0;
        if (at(s, n, j) == '.') { /* embedded IPv4 takes the last 32 bits */
            size_t e = dec ? ipv4_end(s, n, g) : 0;
            if (!e || groups > 6) return 0;
            groups += 2;
            j = e;
            break;
        }
        if (++groups > 8) return 0;
        if (at(s, n, j) == ':' && at(s, n, j + 1) == ':' && !dc) {
            dc = 1;
            j += 2;
            continue;
        }
        if (at(s, n, j) == ':' && is_hex(at(s, n, j + 1))) {
            j++;
            continue;
        }
        break;
    }
    if (groups == 0 || !digit || (dc ? groups > 7 : groups != 8)) return 0;
    return ip_tail_ok(s, n, j, 1) ? j - i : 0;
}

static size_t scan_ip(const char *s, size_t n, size_t i)
{
    int c = (unsigned char)s[i], p = before(s, i);
    if (is_word(p) || p == '.' || p == ':') return 0;
    size_t v4 = 0, v6 = 0;
    if (is_dig(c)) {
        size_t e = ipv4_end(s, n, i);
        if (e && ip_tail_ok(s, n, e, 0)) v4 = e - i;
    }
    if (is_hex(c) || c == ':') v6 = scan_ipv6(s, n, i);
    return v6 > v4 ? v6 : v4;
}

/* ---- tokens ------------------------------------------------------------- */

/* run: how many bytes from j satisfy ok(), reading at most cap + 1 */
static size_t run(const char *s, size_t n, size_t j, int (*ok)(int), size_t cap)
{
    size_t k = j;
    while (k < n && k - j <= cap && ok((unsigned char)s[k])) k++;
    return k - j;
}

static int is_upper_dig(int c) { return is_upper(c) || is_dig(c); }
static int is_aws_secret(int c) { return is_alnum(c) || c == '/' || c == '+'; }
static int is_glpat(int c) { return is_b64url(c); }
static int is_slack(int c) { return is_alnum(c) || c == '-'; }
static int is_hook(int c) { return is_alnum(c) || c == '/' || c == '_'; }

/* prefix + exactly len bytes of ok() (len_max > len: a range), then a byte
 * that ok() rejects */
static size_t fixed_token(const char *s, size_t n, size_t i, const char *prefix, int (*ok)(int),
                          size_t len_min, size_t len_max)
{
    if (!starts(s, n, i, prefix)) return 0;
    size_t m = strlen(prefix), r = run(s, n, i + m, ok, len_max);
    return r >= len_min && r <= len_max ? m + r : 0;
}

static const char *const aws_secret_labels[] = {"aws_secret_access_key", "secret_access_key",
                                                "aws_secret_key", "secretaccesskey"};

/* JWT: three base64url segments of 10+ (header, payload) and 16+ (signature)
 * bytes, the header starting "eyJ" ('{"' encoded); each at most 4 KiB. */
static size_t jwt(const char *s, size_t n, size_t i)
{
    if (!starts(s, n, i, "eyJ")) return 0;
    size_t j = i;
    static const size_t min_len[3] = {10, 10, 16};
    for (int seg = 0; seg < 3; seg++) {
        size_t r = run(s, n, j, is_glpat, 4096);
        if (r < min_len[seg] || r > 4096) return 0;
        j += r;
        if (seg < 2) {
            if (at(s, n, j) != '.') return 0;
            j++;
        }
    }
    return at(s, n, j) == '.' ? 0 : j - i;
}

static size_t scan_token(const char *s, size_t n, size_t i)
{
    int c = (unsigned char)s[i], p = before(s, i);
    size_t m = 0;
    if (label_before(s, i, aws_secret_labels, sizeof aws_secret_labels / sizeof aws_secret_labels[0])) {
        size_t r = run(s, n, i, is_aws_secret, 40);
        if (r == 40 && at(s, n, i + 40) != '=') return 40;
    }
    if (is_b64url(p) || p == '.' || p == '/') return 0;
    switch (c) {
    case 'A':
        if ((m = fixed_token(s, n, i, "AKIA", is_upper_dig, 16, 16))) return m;
        return fixed_token(s, n, i, "ASIA", is_upper_dig, 16, 16);
    case 'g':
        if (starts(s, n, i, "gh") && strchr("pousr", at(s, n, i + 2)) && at(s, n, i + 2) > 0 &&
            at(s, n, i + 3) == '_') {
            size_t r = run(s, n, i + 4, is_alnum, 36);
            if (r == 36 && !is_word(at(s, n, i + 40))) return 40;
            return 0;
        }
        if ((m = fixed_token(s, n, i, "github_pat_", is_word, 82, 82))) return m;
        return fixed_token(s, n, i, "glpat-", is_glpat, 20, 20);
    case 'x': /* Slack: xoxb- xoxp- xoxa- xoxr- xoxs- */
        if (starts(s, n, i, "xox") && at(s, n, i + 3) > 0 && strchr("bpars", at(s, n, i + 3)) &&
            at(s, n, i + 4) == '-') {
            size_t r = run(s, n, i + 5, is_slack, 255);
            return r >= 10 && r <= 255 ? 5 + r : 0;
        }
        return 0;
    case 'h':
        if ((m = fixed_token(s, n, i, "https://hooks.slack.com/services/", is_hook, 20, 200))) return m;
        return fixed_token(s, n, i, "hooks.slack.com/services/", is_hook, 20, 200);
    case 'e':
        return jwt(s, n, i);
    default:
        return 0;
    }
}

/* ---- private keys ------------------------------------------------------- */

static const char *const key_kinds[] = {"", "RSA ", "EC ", "OPENSSH ", "DSA ", "ENCRYPTED "};

/* "-----BEGIN <kind>PRIVATE KEY-----" through the matching END line, or to
 * the end of the input when there is none. */
static size_t scan_privkey(const char *s, size_t n, size_t i)
{
    if (!starts(s, n, i, "-----BEGIN ")) return 0;
    size_t j = i + 11;
    for (size_t k = 0; k < sizeof key_kinds / sizeof key_kinds[0]; k++) {
        size_t m = strlen(key_kinds[k]);
        if (!starts(s, n, j, key_kinds[k]) || !starts(s, n, j + m, "PRIVATE KEY-----")) continue;
        size_t body = j + m + 16;
        char end[64];
        int el = snprintf(end, sizeof end, "-----END %sPRIVATE KEY-----", key_kinds[k]);
        const char *e = memmem(s + body, n - body, end, (size_t)el);
        return e ? (size_t)(e - s) + (size_t)el - i : n - i;
    }
    return 0;
}

/* ---- generic secrets ---------------------------------------------------- */

static const char *const secret_labels[] = {
    "password", "passwd", "secret", "api_key", "apikey", "api-key", "token",
    "access_token", "client_secret", "secret_key", "private_key", "auth_token",
};

static int value_byte(int c)
{
    return c > ' ' && c < 0x7f && !strchr("\"'`,;&<>", c);
}

/* The value after a secret label: 8-512 bytes without spaces, quotes or
 * ,;&<>, at least 3.0 bits/byte of Shannon entropy and at least two of
 * lower / upper / digit / other (so prose like "see the admin guide" or
 * "authentication" stays). */
static size_t scan_generic(const char *s, size_t n, size_t i)
{
    if (!value_byte((unsigned char)s[i]) ||
        !label_before(s, i, secret_labels, sizeof secret_labels / sizeof secret_labels[0]))
        return 0;
    size_t r = run(s, n, i, value_byte, 512);
    if (r > 512) return 0;
    while (r && s[i + r - 1] == '.') r--;
    if (r < 8) return 0;
    int count[128] = {0}, classes = 0, lo = 0, up = 0, dg = 0, ot = 0;
    for (size_t k = 0; k < r; k++) {
        int c = (unsigned char)s[i + k];
        count[c]++;
        lo |= is_lower(c), up |= is_upper(c), dg |= is_dig(c), ot |= !is_alnum(c);
    }
    classes = lo + up + dg + ot;
    double h = 0;
    for (int c = 0; c < 128; c++)
        if (count[c]) {
            double q = (double)count[c] / (double)r;
            h -= q * log2(q);
        }
    return classes >= 2 && h >= 3.0 ? r : 0;
}

/* ---- the table and the driver ------------------------------------------- */

static const struct recogniser {
    unsigned category;
    const char *name;
    size_t (*scan)(const char *s, size_t n, size_t i);
} recognisers[] = {
    {RAG_PII_EMAIL, "email", scan_email},
    {RAG_PII_PHONE, "phone", scan_phone},
    {RAG_PII_CARD, "card", scan_card},
    {RAG_PII_IBAN, "iban", scan_iban},
    {RAG_PII_SSN, "ssn", scan_ssn},
    {RAG_PII_IP, "ip", scan_ip},
    {RAG_SECRET_TOKEN, "token", scan_token},
    {RAG_SECRET_PRIVKEY, "privkey", scan_privkey},
    {RAG_SECRET_GENERIC, "generic", scan_generic},
};
#define N_RECOGNISERS (sizeof recognisers / sizeof recognisers[0])

const char *rag_redact_name(unsigned category)
{
    for (size_t r = 0; r < N_RECOGNISERS; r++)
        if (recognisers[r].category == category) return recognisers[r].name;
    return NULL;
}

int rag_redact_parse(const char *list, unsigned *out, doc_err *err)
{
    if (!out) return doc_errf(err, DOC_EINVAL, "redact categories: no output");
    *out = 0;
    if (!list) return DOC_OK;
    unsigned bits = 0;
    const char *p = list;
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == ',') p++;
        const char *w = p;
        while (*p && *p != ',') p++;
        size_t len = (size_t)(p - w);
        while (len && (w[len - 1] == ' ' || w[len - 1] == '\t')) len--;
        if (!len) continue;
        unsigned bit = 0;
        if (len == 3 && !strncasecmp(w, "all", 3)) bit = RAG_REDACT_ALL;
        for (size_t r = 0; r < N_RECOGNISERS && !bit; r++)
            if (strlen(recognisers[r].name) == len && !strncasecmp(w, recognisers[r].name, len))
                bit = recognisers[r].category;
        if (!bit)
            return doc_errf(err, DOC_EINVAL, "unknown redaction category '%.*s'",
                            len > 64 ? 64 : (int)len, w);
        bits |= bit;
    }
    *out = bits;
    return DOC_OK;
}

int rag_redact(const char *text, size_t len, unsigned categories, buf *out, rag_redaction *spans,
               int max_spans, int *n_spans)
{
    int rc = DOC_OK, count = 0;
    size_t copied = 0;
    if (n_spans) *n_spans = 0;
    if (!out || (!text && len)) return DOC_EINVAL;
    for (size_t i = 0; i < len;) {
        if ((unsigned char)text[i] >= 0x80) {
            i++;
            continue;
        }
        size_t best = 0;
        const struct recogniser *win = NULL;
        for (size_t r = 0; r < N_RECOGNISERS; r++) {
            if (!(categories & recognisers[r].category)) continue;
            size_t m = recognisers[r].scan(text, len, i);
            if (m > best) best = m, win = &recognisers[r];
        }
        if (!best) {
            i++;
            continue;
        }
        if ((rc = buf_append(out, text + copied, i - copied)) < 0 ||
            (rc = buf_puts(out, "[REDACTED:")) < 0 || (rc = buf_puts(out, win->name)) < 0 ||
            (rc = buf_putc(out, ']')) < 0)
            goto done;
        if (spans && count < max_spans)
            spans[count] = (rag_redaction){.category = win->category, .off = i, .len = best};
        count++;
        i += best;
        copied = i;
    }
    rc = buf_append(out, text + copied, len - copied);
done:
    if (n_spans) *n_spans = count;
    return rc < 0 ? rc : DOC_OK;
}

int rag_log_filter(void *ctx, const char *in, size_t n, char *out, size_t cap)
{
    unsigned cats = ctx ? *(const unsigned *)ctx : RAG_REDACT_ALL;
    buf b;
    buf_init(&b, 0);
    int rc = rag_redact(in, n, cats, &b, NULL, 0, NULL);
    if (rc == DOC_OK) {
        size_t len = b.len < cap - 1 ? b.len : cap - 1;
        while (len > 0 && len < b.len && ((unsigned char)b.data[len] & 0xC0) == 0x80) len--;
        if (len) memcpy(out, b.data, len);
        out[len] = 0;
    }
    buf_free(&b);
    return rc;
}
