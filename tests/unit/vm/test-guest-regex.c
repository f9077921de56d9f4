/*
 * The guest C library's regular expressions (sdk/guest/guest-regex.c),
 * checked on the host against glibc's regcomp/regexec: the same error code
 * for a pattern, and for every subject the same answer (match or not) and
 * the same overall match offsets (leftmost-longest), over a table of tricky
 * cases and random patterns and subjects over a small alphabet. The file is
 * included with MXU_GUEST_HOST_TEST, so its functions are guest_regcomp etc.
 *
 * Deliberate differences, not compared: back-references (glibc's ERE takes
 * `\1`; the guest refuses them with REG_ESUBREG), programs past the guest's
 * size bound (REG_ESPACE where glibc compiles), subexpression offsets where
 * POSIX's rules and the guest's (greedy, first alternative first, within
 * the POSIX overall match) part (only a table of cases where both agree is
 * compared), and anchors next to a newline without REG_NEWLINE: glibc's DFA
 * lets `^` match after a newline the pattern consumed (`.^y` finds "\ny"
 * in "x\ny") and `$` before a newline the pattern goes on to consume
 * (`x$.` finds "x\n"), where POSIX, glibc's own start and end checks and
 * the guest do not, and it gives other answers no reading of the pattern
 * explains (`([ab](x|$|y){2}[ab])?`-like patterns matching 7 bytes where
 * none can): random patterns have anchors only at their ends, and no
 * newline in the subject without REG_NEWLINE; word assertions inside a repetition,
 * where glibc's DFA loses them (`(\b\w)+` matches all of "abc" in glibc;
 * the guest finds "a"): random patterns have no `\b`.
 */
#include "test.h"

#define MXU_GUEST_HOST_TEST 1
#include "../../../sdk/guest/guest-regex.c"

#include <stdio.h>
#include <time.h>

static uint64_t rng_state = 0x2545f4914f6cdd1dull;
static uint64_t rnd(void)
{
    return mxu_test_xorshift(&rng_state);
}

static long compared; /* pattern x subject x flags cases checked */

/* Compile `pat` with both; their codes must agree. Then every subject must
 * give the same answer with nmatch 0 (REG_NOSUB's path) and the same
 * pmatch[0] with nmatch 1. Returns the failures. */
static int compare(const char *pat, int cflags, const char *const *subj, size_t nsubj, int eflags)
{
    regex_t want, got;
    int rw = regcomp(&want, pat, cflags), rg = guest_regcomp(&got, pat, cflags);
    if (rw != rg) {
        fprintf(stderr, "regcomp(\"%s\", %#x): glibc %d, guest %d\n", pat, cflags, rw, rg);
        if (!rw)
            regfree(&want);
        if (!rg)
            guest_regfree(&got);
        return 1;
    }
    if (rw)
        return 0;
    int bad = 0;
    if (want.re_nsub != got.re_nsub) {
        fprintf(stderr, "\"%s\": re_nsub glibc %zu, guest %zu\n", pat, want.re_nsub, got.re_nsub);
        bad++;
    }
    for (size_t i = 0; i < nsubj && bad < 5; i++) {
        regmatch_t mw = {-1, -1}, mg = {-1, -1};
        int ew = regexec(&want, subj[i], 0, NULL, eflags);
        int eg = guest_regexec(&got, subj[i], 0, NULL, eflags);
        int lw = regexec(&want, subj[i], 1, &mw, eflags);
        int lg = guest_regexec(&got, subj[i], 1, &mg, eflags);
        compared++;
        if (ew != eg || lw != lg || (lw == 0 && (mw.rm_so != mg.rm_so || mw.rm_eo != mg.rm_eo))) {
            fprintf(stderr,
                    "regexec(\"%s\" %#x, \"%s\" %#x): glibc %d %d [%d,%d), guest %d %d [%d,%d)\n",
                    pat, cflags, subj[i], eflags, ew, lw, mw.rm_so, mw.rm_eo, eg, lg, mg.rm_so,
                    mg.rm_eo);
            bad++;
        }
    }
    regfree(&want);
    guest_regfree(&got);
    return bad;
}

static const char *const table_subjects[] = {
    "",          "a",    "b",           "ab",          "ba",         "aab",
    "abab",      "abc",  "aaaa",        "xyz",         "a.b",        "a-b",
    "A",         "AbC",  "foo bar",     "foo_bar baz", "\n",         "a\nb",
    "ab\nab",    "x\n",  "o-123",       "o-12x",       "2026-11-30", "user@example.com",
    "[x]",       "a{2}", "a|b",         "(a)",         "^$",         "tab\there",
    "x\\y",      ")",    "aaaaaaaaaab", "abcabcabc",   "  lead",     "trail  ",
    "ABCdef123", "0x1F", "--",          "]",
};

/* Patterns with something to get wrong: brackets, classes, intervals,
 * anchors mid-pattern, empty alternatives and groups, nested repetition,
 * GNU escapes, literal specials. */
static const char *const table_patterns[] = {
    "",
    "a",
    "a*",
    "a+",
    "a?",
    "a*b",
    "(a|ab)(c|bcd)?",
    "a|b|",
    "|a",
    "()",
    "(|a)",
    "(a*)*",
    "(a*)+",
    "(a|b)*c",
    "x*",
    "^",
    "$",
    "^$",
    "^a",
    "a$",
    "a^b",
    "a$b",
    "^*a|b",
    "(^a|b$)",
    "(a$)|(^b)",
    ".",
    "..",
    "a.b",
    ".*",
    "[ab]",
    "[^ab]",
    "[a-c]",
    "[]a]",
    "[^]a]",
    "[a-]",
    "[-a]",
    "[]-a]",
    "[--z]",
    "[a\\]",
    "[.]",
    "[[:alpha:]]+",
    "[[:digit:][:upper:]]",
    "[^[:space:]]+",
    "[[:punct:]]",
    "[[:alnum:]_-]+",
    "[[:xdigit:]]{2}",
    "[[:blank:]]",
    "[[:cntrl:]]",
    "[[:graph:]]+",
    "[[:print:]]+",
    "[[:lower:]]+",
    "[[.a.]]",
    "[[=a=]b]",
    "[[.-.]a]",
    "a{2}",
    "a{2,}",
    "a{,2}",
    "a{1,3}",
    "a{0}",
    "a{0,0}",
    "(ab){2}",
    "(a|b){2,3}c",
    "a{1}{2}",
    "a**",
    "a+*",
    "a{2}*",
    "(a?){3}",
    "(a*){2,}b",
    "a)",
    "\\.",
    "\\*",
    "\\{",
    "\\(",
    "\\)",
    "\\|",
    "\\^",
    "\\$",
    "\\[",
    "\\\\",
    "\\d",
    "\\w+",
    "\\W",
    "\\s",
    "\\S+",
    "\\bfoo\\b",
    "\\Bo",
    "\\<b",
    "r\\>",
    "\\`a",
    "b\\'",
    "^o-[0-9]+$",
    "^[a-z0-9._-]+@[a-z]+\\.com$",
    "^[0-9]{4}-[0-9]{2}-[0-9]{2}$",
    "(foo|foobar)baz",
    "(a|aa)*b",
    "(aa|a)*b",
    "(a+)+b",
    "((a)|b)+",
    "(x|xy)(z|yz)?",
    "[a-c]+|[b-d]+",
    "abc|ab|a",
    "a|ab|abc",
    "(ab|a)(bc|c)?",
    "^(tab\t)",
    "0x[0-9A-F]+",
    "-",
    "--+",
    "\\]",
    "]",
};

static void test_table_matches_glibc(void)
{
    static const int cflags[] = {REG_EXTENDED, REG_EXTENDED | REG_ICASE, REG_EXTENDED | REG_NEWLINE,
                                 REG_EXTENDED | REG_ICASE | REG_NEWLINE};
    static const int eflags[] = {0, REG_NOTBOL, REG_NOTEOL, REG_NOTBOL | REG_NOTEOL};
    size_t np = sizeof table_patterns / sizeof *table_patterns;
    size_t ns = sizeof table_subjects / sizeof *table_subjects;
    int bad = 0;
    for (size_t p = 0; p < np; p++)
        for (size_t c = 0; c < 4; c++)
            for (size_t e = 0; e < 4; e++)
                bad += compare(table_patterns[p], cflags[c], table_subjects, ns, eflags[e]);
    fprintf(stderr, "  %ld pattern x subject cases compared\n", compared);
    CHECK_EQ_INT(bad, 0);
}

/* Bad patterns: the same error code as glibc's. */
static void test_errors_match_glibc(void)
{
    static const char *const bad_patterns[] = {
        "a{",
        "a{1",
        "a{x}",
        "a{1,2,3}",
        "a{3,1}",
        "{1}",
        "*a",
        "a|*b",
        "(*a)",
        "^*",
        "$*",
        "^+",
        "(+)",
        "a|+",
        "(",
        "((a)",
        "[",
        "[a",
        "[a-",
        "[^",
        "[]",
        "[z-a]",
        "[a-c-e]",
        "[[:foo:]]",
        "[[:ALPHA:]]",
        "[[:alpha:]",
        "[[.ab.]]",
        "[[.hyphen.]]",
        "[[:alpha:]-z]",
        "a{32768}",
        "a{1,32768}",
        "\\",
        "a\\",
        "a{ 1}",
        "a{1 }",
        "a{}",
        "a{,}",
        "\\b*",
        "\\<+",
        "(?:a)",
        "a{99999999999}",
    };
    int bad = 0;
    for (size_t i = 0; i < sizeof bad_patterns / sizeof *bad_patterns; i++) {
        const char *s = "a";
        bad += compare(bad_patterns[i], REG_EXTENDED, &s, 1, 0);
    }
    CHECK_EQ_INT(bad, 0);
    /* the messages are glibc's */
    for (int code = 0; code <= REG_ERPAREN; code++) {
        char w[128], g[128];
        size_t nw = regerror(code, NULL, w, sizeof w), ng = guest_regerror(code, NULL, g, sizeof g);
        CHECK_STR(g, w);
        CHECK_EQ_INT((int)ng, (int)nw);
    }
    char small[8];
    CHECK_EQ_INT((int)guest_regerror(REG_EBRACK, NULL, small, sizeof small), 31);
    CHECK_STR(small, "Unmatch");
}

/* The deliberate differences: back-references and programs too big. */
static void test_refusals(void)
{
    regex_t re;
    CHECK_EQ_INT(guest_regcomp(&re, "(a)\\1", REG_EXTENDED), REG_ESUBREG);
    CHECK_EQ_INT(guest_regcomp(&re, "\\1", REG_EXTENDED), REG_ESUBREG);
    CHECK_EQ_INT(guest_regcomp(&re, "(a{1000}){1000}", REG_EXTENDED), REG_ESPACE);
    CHECK_EQ_INT(guest_regcomp(&re, "((a{100}){100}){100}", REG_EXTENDED), REG_ESPACE);
    CHECK_EQ_INT(guest_regcomp(&re, "[a-z]{1,32767}", REG_EXTENDED), REG_ESPACE);
    CHECK_EQ_INT(guest_regcomp(&re, "a", 0), REG_BADPAT); /* basic expressions */
    /* deep nesting is bounded, not a stack overflow */
    char deep[2100];
    for (int i = 0; i < 1000; i++) {
        deep[i] = '(';
        deep[1000 + i] = ')';
    }
    deep[2000] = 0;
    CHECK_EQ_INT(guest_regcomp(&re, deep, REG_EXTENDED), REG_ESPACE);
    memset(deep, 'a', 2000);
    for (int i = 1; i < 2000; i += 2)
        deep[i] = '*';
    CHECK_EQ_INT(guest_regcomp(&re, deep, REG_EXTENDED), 0); /* a*a*a*...: wide, not deep */
    guest_regfree(&re);
    for (int i = 1; i < 2000; i++)
        deep[i] = '*';
    CHECK_EQ_INT(guest_regcomp(&re, deep, REG_EXTENDED), REG_ESPACE); /* a*****...: deep */
    /* a long literal pattern is fine */
    char *lit = malloc(15001);
    memset(lit, 'x', 15000);
    lit[15000] = 0;
    CHECK_EQ_INT(guest_regcomp(&re, lit, REG_EXTENDED | REG_NOSUB), 0);
    CHECK_EQ_INT(guest_regexec(&re, lit, 0, NULL, 0), 0);
    guest_regfree(&re);
    free(lit);
}

/* A random pattern over a, b, c: atoms, groups, brackets, anchors,
 * alternation and every quantifier, nested up to `depth`. */
static void gen_pattern(char *p, size_t *n, size_t cap, int depth)
{
    static const char *const atoms[] = {"a",     "b",   "c", ".",           "[ab]", "[^a]",
                                        "[a-c]", "\\w", "x", "[[:alpha:]]", "\\.",  "B"};
    static const char *const quants[] = {"*", "+", "?", "{2}", "{0,2}", "{1,}", "{,1}", "{1,2}"};
    int pieces = 1 + (int)(rnd() % 3);
    for (int i = 0; i < pieces && *n + 16 < cap; i++) {
        const char *a = NULL;
        bool group = depth > 0 && rnd() % 4 == 0;
        if (group) {
            p[(*n)++] = '(';
            gen_pattern(p, n, cap, depth - 1);
            if (rnd() % 3 == 0 && *n + 16 < cap) {
                p[(*n)++] = '|';
                gen_pattern(p, n, cap, depth - 1);
            }
            p[(*n)++] = ')';
        } else {
            a = atoms[rnd() % (sizeof atoms / sizeof *atoms)];
            size_t l = strlen(a);
            memcpy(p + *n, a, l);
            *n += l;
        }
        if (rnd() % 3 == 0) {
            const char *q = quants[rnd() % (sizeof quants / sizeof *quants)];
            size_t l = strlen(q);
            memcpy(p + *n, q, l);
            *n += l;
        }
    }
    if (depth > 0 && rnd() % 5 == 0 && *n + 16 < cap) {
        p[(*n)++] = '|';
        gen_pattern(p, n, cap, depth - 1);
    }
    p[*n] = 0;
}

static void test_random_patterns_match_glibc(void)
{
    static const char alphabet[] = "aabbcc\nAB ";
    char subj[40][12];
    const char *subjp[40];
    int bad = 0, patterns = 0;
    for (int round = 0; round < 4000 && bad == 0; round++) {
        char pat[256];
        size_t n = 0;
        if (rnd() % 3 == 0)
            pat[n++] = '^';
        gen_pattern(pat, &n, sizeof pat - 2, 3);
        if (rnd() % 3 == 0) {
            pat[n++] = '$';
            pat[n] = 0;
        }
        for (int i = 0; i < 40; i++) {
            size_t len = rnd() % 10;
            for (size_t k = 0; k < len; k++)
                subj[i][k] = alphabet[rnd() % (sizeof alphabet - 1)];
            subj[i][len] = 0;
            subjp[i] = subj[i];
        }
        int cflags =
            REG_EXTENDED | (rnd() % 3 == 0 ? REG_ICASE : 0) | (rnd() % 3 == 0 ? REG_NEWLINE : 0);
        if (!(cflags & REG_NEWLINE) && (strchr(pat, '^') || strchr(pat, '$')))
            for (int i = 0; i < 40; i++)
                for (char *q = subj[i]; *q; q++)
                    if (*q == '\n')
                        *q = ' ';
        int eflags = (rnd() % 4 == 0 ? REG_NOTBOL : 0) | (rnd() % 4 == 0 ? REG_NOTEOL : 0);
        bad += compare(pat, cflags, subjp, 40, eflags);
        patterns++;
    }
    fprintf(stderr, "  %d random patterns, %ld pattern x subject cases compared\n", patterns,
            compared);
    CHECK_EQ_INT(bad, 0);
}

/* Random strings of pattern syntax, mostly invalid: the same error codes,
 * and the same matches where both compile. */
static void test_random_syntax_matches_glibc(void)
{
    static const char chars[] = "ab()[]{}*+?|^$.\\-,12:";
    static const char *const subj[] = {"",    "a",   "b",   "ab",  "ba", "a(b)", "[a]",
                                       "{1}", "a-b", "a,b", "1:2", "$^", "aab.b"};
    int bad = 0;
    for (int round = 0; round < 20000 && bad == 0; round++) {
        char pat[12];
        size_t len = 1 + rnd() % 8;
        for (size_t k = 0; k < len; k++)
            pat[k] = chars[rnd() % (sizeof chars - 1)];
        pat[len] = 0;
        /* a back-reference is a deliberate difference */
        bool backref = false;
        for (size_t k = 0; k + 1 < len; k++)
            if (pat[k] == '\\') {
                backref |= pat[k + 1] >= '1' && pat[k + 1] <= '9';
                k++;
            }
        if (backref)
            continue;
        bad += compare(pat, REG_EXTENDED, subj, sizeof subj / sizeof *subj, 0);
    }
    fprintf(stderr, "  %ld pattern x subject cases compared\n", compared);
    CHECK_EQ_INT(bad, 0);
}

/* Subexpression offsets, where POSIX's rules and the guest's agree. */
static void test_submatches(void)
{
    static const struct {
        const char *pat, *subj;
    } cases[] = {
        {"(a)(b)?", "ab"},
        {"(a)(b)?", "ac"},
        {"x(a|b)*y", "xabay"},
        {"^([a-z]+)@([a-z]+)\\.com$", "user@example.com"},
        {"(o)-([0-9]+)", "id o-123"},
        {"((a)|(b))+", "ab"},
        {"(a+)(b+)", "xaabbb"},
        {"([0-9]{4})-([0-9]{2})", "2026-11"},
        {"(foo)|(bar)", "a bar"},
        {"(a)(c)?(b)", "ab"},
        {"(a*)b", "aaab"},
    };
    int bad = 0;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        regex_t w, g;
        CHECK_EQ_INT(regcomp(&w, cases[i].pat, REG_EXTENDED), 0);
        CHECK_EQ_INT(guest_regcomp(&g, cases[i].pat, REG_EXTENDED), 0);
        regmatch_t mw[6], mg[6];
        int rw = regexec(&w, cases[i].subj, 6, mw, 0),
            rg = guest_regexec(&g, cases[i].subj, 6, mg, 0);
        if (rw != rg)
            bad++;
        for (int k = 0; rw == 0 && k < 6; k++)
            if (mw[k].rm_so != mg[k].rm_so || mw[k].rm_eo != mg[k].rm_eo) {
                fprintf(stderr, "\"%s\" on \"%s\": group %d glibc [%d,%d) guest [%d,%d)\n",
                        cases[i].pat, cases[i].subj, k, mw[k].rm_so, mw[k].rm_eo, mg[k].rm_so,
                        mg[k].rm_eo);
                bad++;
            }
        regfree(&w);
        guest_regfree(&g);
    }
    /* REG_NOSUB: pmatch untouched; REG_STARTEND: a range of the subject */
    regex_t g;
    CHECK_EQ_INT(guest_regcomp(&g, "b+", REG_EXTENDED | REG_NOSUB), 0);
    CHECK_EQ_INT((int)g.re_nsub, 0);
    regmatch_t m[2] = {{7, 7}, {7, 7}};
    CHECK_EQ_INT(guest_regexec(&g, "abbc", 2, m, 0), 0);
    CHECK_EQ_INT(m[0].rm_so, 7);
    guest_regfree(&g);
    CHECK_EQ_INT(guest_regcomp(&g, "^b+", REG_EXTENDED), 0);
    m[0].rm_so = 1;
    m[0].rm_eo = 3;
    CHECK_EQ_INT(guest_regexec(&g, "abbbb", 1, m, REG_STARTEND), REG_NOMATCH); /* ^ is at 0 */
    guest_regfree(&g);
    CHECK_EQ_INT(guest_regcomp(&g, "b+", REG_EXTENDED), 0);
    m[0].rm_so = 1;
    m[0].rm_eo = 3;
    CHECK_EQ_INT(guest_regexec(&g, "abbbb", 1, m, REG_STARTEND), 0);
    CHECK_EQ_INT(m[0].rm_so, 1);
    CHECK_EQ_INT(m[0].rm_eo, 3);
    guest_regfree(&g);
    CHECK_EQ_INT(bad, 0);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Patterns that take exponential time in a backtracking matcher take
 * linear time here: each on 10 000 bytes, well under a second in all. */
static void test_pathological_patterns_are_linear(void)
{
    static const char *const pats[] = {"(a*)*b",  "(a|aa)*c",    "(a+)+b",
                                       "(a|a)*b", "(a*)*(b|c)$", "((a{1,10}){1,10}){1,10}b",
                                       "(.*)*x"};
    size_t n = 10000;
    char *s = malloc(n + 1);
    memset(s, 'a', n);
    s[n] = 0;
    double t0 = now_s();
    for (size_t i = 0; i < sizeof pats / sizeof *pats; i++) {
        regex_t g;
        CHECK_EQ_INT(guest_regcomp(&g, pats[i], REG_EXTENDED), 0);
        regmatch_t m[3];
        CHECK_EQ_INT(guest_regexec(&g, s, 3, m, 0), REG_NOMATCH);
        CHECK_EQ_INT(guest_regexec(&g, s, 0, NULL, 0), REG_NOMATCH);
        guest_regfree(&g);
    }
    double t = now_s() - t0;
    fprintf(stderr, "  %zu pathological patterns x 10 000 bytes: %.3f s\n",
            sizeof pats / sizeof *pats, t);
    CHECK(t < 5.0);
    free(s);
}

MXU_TESTS(TEST(test_table_matches_glibc), TEST(test_errors_match_glibc), TEST(test_refusals),
          TEST(test_random_patterns_match_glibc), TEST(test_random_syntax_matches_glibc),
          TEST(test_submatches), TEST(test_pathological_patterns_are_linear))
