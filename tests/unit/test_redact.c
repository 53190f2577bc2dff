/* test_redact.c - rag/redact.c: each recogniser's positives and negatives,
 * toggles, spans, UTF-8, output cap, and linear time on adversarial input. */
#include "testutil.h"

#include <time.h>
#include <unistd.h>

#include "rag/rag.h"

/* red: redact in with cats; returns a malloc'd string (caller frees) */
static char *red(const char *in, unsigned cats)
{
    buf b;
    buf_init(&b, 0);
    int n = -1;
    assert_int_equal(rag_redact(in, strlen(in), cats, &b, NULL, 0, &n), DOC_OK);
    assert_true(n >= 0);
    char *s = buf_steal(&b, NULL);
    if (!s) s = strdup("");
    return s;
}

/* expect: redacting in (all categories) gives want */
#define expect(in, want)                                                                           \
    do {                                                                                           \
        char *got_ = red(in, RAG_REDACT_ALL);                                                      \
        if (strcmp(got_, want)) print_error("input: %s\n", in);                                    \
        assert_string_equal(got_, want);                                                           \
        free(got_);                                                                                \
    } while (0)
/* keep: in is left untouched */
#define keep(in) expect(in, in)

static void test_email(void **state)
{
    (void)state;
    expect("mail jane.doe+tag@example.co.uk now", "mail [REDACTED:email] now");
    expect("<a_b@mail-srv.example.org>.", "<[REDACTED:email]>.");
    expect("x@y.io", "[REDACTED:email]");
    keep("a@b");
    keep("ping @handle on chat");
    keep("user@localhost");
    keep("user@host.c1");
    keep("a..b@example.com");
    keep(".a@example.com is odd");
    keep("name@-bad.com");
}

static void test_phone(void **state)
{
    (void)state;
    expect("call (555) 123-4567 today", "call [REDACTED:phone] today");
    expect("555-123-4567", "[REDACTED:phone]");
    expect("555.123.4567", "[REDACTED:phone]");
    expect("1-555-123-4567", "[REDACTED:phone]");
    expect("+44 20 7946 0958", "[REDACTED:phone]");
    expect("+44 (0)20 7946 0958.", "[REDACTED:phone].");
    expect("+1 (555) 123-4567", "[REDACTED:phone]");
    expect("tel:+33.1.23.45.67.89", "tel:[REDACTED:phone]");
    keep("at 2024-01-15 12:30:45 the job ran");
    keep("12:30:45");
    keep("released 2024-01-15, see v1.2.3");
    keep("order 12345678901234567890 shipped");
    keep("order 1234567890123456789 shipped");
    keep("ref 9555-123-45678 x");
    keep("id 1555-123-4567-8");
    keep("+1234");
    keep("+12345678901234567");
    keep("tz 2024-01-15T12:30:45+01:00");
    keep("price $1,234.56 or 555.12");
}

static void test_card(void **state)
{
    (void)state;
    expect("card 4111 1111 1111 1111 ok", "card [REDACTED:card] ok");
    expect("4111-1111-1111-1111", "[REDACTED:card]");
    expect("4111111111111111", "[REDACTED:card]");
    expect("mc 5555555555554444, amex 3782 822463 10005", "mc [REDACTED:card], amex [REDACTED:card]");
    expect("disc 6011111111111117.", "disc [REDACTED:card].");
    expect("mc2 2223003122003222", "mc2 [REDACTED:card]");
    keep("card 4111 1111 1111 1112 ok");         /* Luhn fails */
    keep("order 1234567890123456");              /* no known issuer, Luhn fails */
    keep("order 7992739871300000");              /* unknown issuer */
    keep("run 41111111111111110000");            /* inside a longer digit run */
    keep("4111 1111-1111 1111");                 /* mixed separators */
    keep("x4111111111111111");                   /* glued to a word */
}

static void test_iban(void **state)
{
    (void)state;
    expect("pay GB82 WEST 1234 5698 7654 32 now", "pay [REDACTED:iban] now");
    expect("GB82WEST12345698765432", "[REDACTED:iban]");
    expect("DE89 3704 0044 0532 0130 00", "[REDACTED:iban]");
    expect("FR14 2004 1010 0505 0001 3M02 606", "[REDACTED:iban]");
    expect("NL91ABNA0417164300;", "[REDACTED:iban];");
    expect("BE68539007547034", "[REDACTED:iban]");
    keep("pay GB82 WEST 1234 5698 7654 33 now"); /* checksum */
    keep("GB82WEST1234569876543");               /* too short for GB */
    keep("GB82WEST123456987654321");             /* too long for GB */
    keep("GB82 WEST12 345698765432");            /* ragged grouping */
    keep("ZZ82WEST12345698765432");              /* unknown country */
}

static void test_ssn(void **state)
{
    (void)state;
    expect("ssn 123-45-6789.", "ssn [REDACTED:ssn].");
    expect("ssn 123 45 6789", "ssn [REDACTED:ssn]");
    keep("000-12-3456");
    keep("666-12-3456");
    keep("900-12-3456");
    keep("999-12-3456");
    keep("123-00-4567");
    keep("123-45-0000");
    keep("123456789");
    keep("123-45 6789");
    keep("1123-45-6789");
    keep("123-45-67890");
}

static void test_ip(void **state)
{
    (void)state;
    expect("host 192.168.1.10:8080", "host [REDACTED:ip]:8080");
    expect("0.0.0.0 and 255.255.255.255.", "[REDACTED:ip] and [REDACTED:ip].");
    expect("1.2.3.4", "[REDACTED:ip]");
    keep("1.2.3.4.5");
    keep("256.1.1.1");
    keep("01.2.3.4");
    keep("version 1.2.3 and 10.0.0");
    keep("v1.2.3.4");
    expect("2001:0db8:85a3:0000:0000:8a2e:0370:7334", "[REDACTED:ip]");
    expect("[2001:db8::1]:443", "[[REDACTED:ip]]:443");
    expect("lo ::1 and fe80::1ff:fe23:4567:890a%eth0", "lo [REDACTED:ip] and [REDACTED:ip]%eth0");
    expect("::ffff:192.0.2.128", "[REDACTED:ip]");
    expect("64:ff9b::192.0.2.33", "[REDACTED:ip]");
    keep("at 12:30 or 12:30:45");
    keep("std::vector<int> and a::b");
    keep("::");
    keep("::::");
    keep("1:2:3:4:5:6:7");          /* 7 groups, no :: */
    keep("1::2::3");
    keep("00:1a:2b:3c:4d:5e");      /* MAC */
    keep("12345::1");
}

static void test_token(void **state)
{
    (void)state;
    expect("key AKIAIOSFODNN7EXAMPLE end", "key [REDACTED:token] end");
    expect("ASIAIOSFODNN7EXAMPLE", "[REDACTED:token]");
    keep("AKIAIOSFODNN7EXAMPL");
    keep("AKIAIOSFODNN7EXAMPLEX");
    expect("aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
           "aws_secret_access_key = [REDACTED:token]");
    keep("value wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY");
    expect("ghp_abcdefghijklmnopqrstuvwxyz0123456789", "[REDACTED:token]");
    expect("t=gho_ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789;", "t=[REDACTED:token];");
    keep("ghp_abcdefghijklmnopqrstuvwxyz012345678");
    keep("ghp_abcdefghijklmnopqrstuvwxyz01234567890");
    keep("ghx_abcdefghijklmnopqrstuvwxyz0123456789");
    char pat[128] = "github_pat_";
    for (int k = 0; k < 82; k++) pat[11 + k] = "abcdefghij_ABCDEFGHIJ0123456789"[k % 31];
    pat[93] = 0;
    expect(pat, "[REDACTED:token]");
    pat[92] = 0;
    keep(pat);
    expect("glpat-abcdefghij0123456789", "[REDACTED:token]");
    keep("glpat-abcdefghij012345678");
    expect("xoxb-1234567890-abcdefghij", "[REDACTED:token]");
    keep("xoxb-123");
    expect("hook https://hooks.slack.com/services/T000/B000/XXXXXXXXXXXXXXXX",
           "hook [REDACTED:token]");
    expect("Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0."
           "dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U done",
           "Bearer [REDACTED:token] done");
    keep("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0");
    keep("eyJ.eyJ.eyJ");
}

static void test_privkey(void **state)
{
    (void)state;
    expect("before\n-----BEGIN RSA PRIVATE KEY-----\nMIIEow\nAbC==\n-----END RSA PRIVATE KEY-----\nafter",
           "before\n[REDACTED:privkey]\nafter");
    expect("-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbn\n-----END OPENSSH PRIVATE KEY-----",
           "[REDACTED:privkey]");
    expect("x -----BEGIN PRIVATE KEY-----\nMIIE truncated", "x [REDACTED:privkey]");
    keep("-----BEGIN PUBLIC KEY-----\nMIIB\n-----END PUBLIC KEY-----");
    keep("-----BEGIN CERTIFICATE-----");
}

static void test_generic(void **state)
{
    (void)state;
    expect("password: Xk9#mQ2vL7pz", "password: [REDACTED:generic]");
    expect("DB_PASSWORD=\"s3cR3t-Tq8zW!\"", "DB_PASSWORD=\"[REDACTED:generic]\"");
    expect("{\"client_secret\": \"Zq81kLm0PxY7vB2n\"}", "{\"client_secret\": \"[REDACTED:generic]\"}");
    expect("api_key='a8F3kQ9zL2mN7xV1'", "api_key='[REDACTED:generic]'");
    expect("token=Hx72kPq9Lm3Z&next=1", "token=[REDACTED:generic]&next=1");
    keep("password: see the admin guide");
    keep("password: hunter22");
    keep("password: changeme");
    keep("password: ********");
    keep("the token: authentication happens later");
    keep("password: Ab1");
    keep("mypassword=Xk9#mQ2vL7pz");
    keep("Xk9#mQ2vL7pz");
}

static void test_toggles(void **state)
{
    (void)state;
    const char *in = "a@example.com 4111 1111 1111 1111 10.0.0.1";
    char *s = red(in, RAG_PII_CARD);
    assert_string_equal(s, "a@example.com [REDACTED:card] 10.0.0.1");
    free(s);
    s = red(in, RAG_PII_EMAIL | RAG_PII_IP);
    assert_string_equal(s, "[REDACTED:email] 4111 1111 1111 1111 [REDACTED:ip]");
    free(s);
    s = red(in, 0);
    assert_string_equal(s, in);
    free(s);
}

static void test_spans(void **state)
{
    (void)state;
    const char *in = "x@example.com, 123-45-6789 and 4111111111111111";
    rag_redaction sp[2];
    int n = 0;
    buf b;
    buf_init(&b, 0);
    assert_int_equal(rag_redact(in, strlen(in), RAG_REDACT_ALL, &b, sp, 2, &n), DOC_OK);
    assert_int_equal(n, 3);
    assert_int_equal(sp[0].category, RAG_PII_EMAIL);
    assert_int_equal(sp[0].off, 0);
    assert_int_equal(sp[0].len, 13);
    assert_int_equal(sp[1].category, RAG_PII_SSN);
    assert_int_equal(sp[1].off, 15);
    assert_int_equal(sp[1].len, 11);
    buf_free(&b);
}

static void test_utf8(void **state)
{
    (void)state;
    expect("Grüße an jurgen@example.de — 电话 555-123-4567 ✓ ü",
           "Grüße an [REDACTED:email] — 电话 [REDACTED:phone] ✓ ü");
    /* non-ASCII local parts are not recognised as a whole; the ASCII tail
     * after a non-ASCII letter is (partial, but never a split character) */
    expect("名前：é@例え.jp, mail: jürgen@example.de", "名前：é@例え.jp, mail: jü[REDACTED:email]");
    expect("€4111111111111111€", "€[REDACTED:card]€");
    char *s = red("日本 a@b.cd 日本", RAG_REDACT_ALL);
    assert_true(utf8_valid(s, strlen(s)));
    assert_string_equal(s, "日本 [REDACTED:email] 日本");
    free(s);
}

static void test_cap(void **state)
{
    (void)state;
    const char *in = "mail x@example.com please";
    buf b;
    buf_init(&b, 12);
    int n = -1;
    assert_int_equal(rag_redact(in, strlen(in), RAG_REDACT_ALL, &b, NULL, 0, &n), DOC_ELIMIT);
    buf_free(&b);
    buf_init(&b, 100);
    assert_int_equal(rag_redact(in, strlen(in), RAG_REDACT_ALL, &b, NULL, 0, &n), DOC_OK);
    assert_string_equal(b.data, "mail [REDACTED:email] please");
    buf_free(&b);
}

static void test_parse(void **state)
{
    (void)state;
    unsigned bits = 99;
    doc_err e = {0};
    assert_int_equal(rag_redact_parse("", &bits, &e), DOC_OK);
    assert_int_equal(bits, 0);
    assert_int_equal(rag_redact_parse("email, card", &bits, &e), DOC_OK);
    assert_int_equal(bits, RAG_PII_EMAIL | RAG_PII_CARD);
    assert_int_equal(rag_redact_parse("all", &bits, &e), DOC_OK);
    assert_int_equal(bits, RAG_REDACT_ALL);
    assert_int_equal(rag_redact_parse("email,phone,card,iban,ssn,ip,token,privkey,generic", &bits, &e),
                     DOC_OK);
    assert_int_equal(bits, RAG_REDACT_ALL);
    assert_int_equal(rag_redact_parse("email,passport", &bits, &e), DOC_EINVAL);
    assert_non_null(strstr(e.msg, "passport"));
    for (unsigned b = 1; b < RAG_REDACT_ALL; b <<= 1) {
        const char *name = rag_redact_name(b);
        assert_non_null(name);
        assert_int_equal(rag_redact_parse(name, &bits, &e), DOC_OK);
        assert_int_equal(bits, b);
    }
    assert_null(rag_redact_name(1u << 20));
}

/* ---- linear time -------------------------------------------------------- */

static double cpu_seconds(const char *in, size_t n)
{
    buf b;
    buf_init(&b, 0);
    struct timespec t0, t1;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t0);
    int rc = rag_redact(in, n, RAG_REDACT_ALL, &b, NULL, 0, NULL);
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t1);
    assert_int_equal(rc, DOC_OK);
    buf_free(&b);
    return (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;
}

static char *repeat(const char *unit, size_t n)
{
    char *s = malloc(n + 1);
    assert_non_null(s);
    size_t u = strlen(unit);
    for (size_t k = 0; k < n; k++) s[k] = unit[k % u];
    s[n] = 0;
    return s;
}

static void test_linear(void **state)
{
    (void)state;
    static const char *const units[] = {
        "@@@@", "1-1-1-1-", "a.a.a.a.", "::::", "-----BEGIN ", "eyJ", "0123456789",
        "password=", "a@b.", "1.1.1.1.", "ff:", "-----BEGIN PRIVATE KEY-----\n",
        "x eyJabcdefghijk.", "4111 ", "GB82 ",
    };
    const size_t n = 256 * 1024;
    for (size_t u = 0; u < sizeof units / sizeof units[0]; u++) {
        char *big = repeat(units[u], 4 * n);
        double small_t = 1e9, big_t = 1e9;
        for (int rep = 0; rep < 3; rep++) {
            double a = cpu_seconds(big, n), b = cpu_seconds(big, 4 * n);
            small_t = a < small_t ? a : small_t;
            big_t = b < big_t ? b : big_t;
        }
        free(big);
        /* clock granularity: tiny times are noise, only the ratio of real work matters */
        double ratio = big_t / (small_t > 1e-4 ? small_t : 1e-4);
        print_message("unit %2zu %-18.18s 256K %.4fs 1M %.4fs ratio %.2f\n", u, units[u], small_t, big_t, ratio);
        assert_true(ratio < 8.0);
    }
}

/* the log filter: log lines go through the same redaction, through core's hook */
static void test_log_filter(void **state)
{
    (void)state;
    char path[] = "/tmp/docent-logfilter-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    fflush(stderr);
    int saved = dup(2);
    assert_int_equal(dup2(fd, 2), 2);
    unsigned only_email = RAG_PII_EMAIL;
    log_set_filter(rag_log_filter, &only_email);
    log_write(LOG_ERROR, __FILE__, __LINE__, "mail %s from 10.1.2.3", "jane.doe@example.com");
    log_set_filter(rag_log_filter, NULL); /* every category */
    log_write(LOG_ERROR, __FILE__, __LINE__, "token ghp_%s", "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8");
    log_set_filter(NULL, NULL);
    log_write(LOG_ERROR, __FILE__, __LINE__, "plain jane.doe@example.com");
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    char got[4096] = {0};
    assert_true(pread(fd, got, sizeof got - 1, 0) > 0);
    close(fd);
    unlink(path);
    assert_non_null(strstr(got, "mail [REDACTED:email] from 10.1.2.3")); /* ip was off */
    assert_null(strstr(got, "ghp_A1b2"));
    assert_non_null(strstr(got, "token [REDACTED:token]"));
    assert_non_null(strstr(got, "plain jane.doe@example.com")); /* no filter, no change */
    /* a cap cuts at a character boundary */
    char small[8];
    assert_int_equal(rag_log_filter(NULL, "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9", 8, small, sizeof small), 0);
    assert_string_equal(small, "\xc3\xa9\xc3\xa9\xc3\xa9");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_email),   cmocka_unit_test(test_phone),  cmocka_unit_test(test_card),
        cmocka_unit_test(test_iban),    cmocka_unit_test(test_ssn),    cmocka_unit_test(test_ip),
        cmocka_unit_test(test_token),   cmocka_unit_test(test_privkey), cmocka_unit_test(test_generic),
        cmocka_unit_test(test_toggles), cmocka_unit_test(test_spans),  cmocka_unit_test(test_utf8),
        cmocka_unit_test(test_cap),     cmocka_unit_test(test_parse),  cmocka_unit_test(test_linear),
        cmocka_unit_test(test_log_filter),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
