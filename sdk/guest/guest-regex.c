/*
 * The guest C library's POSIX regular expressions: regcomp, regexec,
 * regfree and regerror for extended expressions (REG_EXTENDED) as glibc
 * reads them in the C locale, byte by byte. json-validate's `pattern`
 * keyword is its user; the pattern comes from a setting and the subject
 * from a request body, so both are hostile:
 *
 *   - matching is a Pike VM (Thompson's NFA simulation, one thread per
 *     program counter): time is O(subject x program), never exponential,
 *     whatever the pattern (no backtracking);
 *   - the compiled program is bounded (RX_MAX_PROG instructions, counted
 *     before anything is emitted: `(a{1000}){1000}` is REG_ESPACE, not a
 *     million instructions) and so is the nesting of groups (the parser
 *     recurses);
 *   - back-references (`\1`, which glibc's ERE accepts) are refused with
 *     REG_ESUBREG: no linear-time matcher can do them.
 *
 * Divisions: the parser (pattern -> tree of nodes, glibc's error codes),
 * the compiler (tree -> instructions, {m,n} by copying), the matcher (two
 * passes: the leftmost-longest overall match as POSIX and glibc give it,
 * then, only when the caller asks for subexpressions, their offsets within
 * that match with Perl-like preferences: greedy, the first alternative
 * first; glibc follows POSIX's subexpression rules, which can differ), and
 * regerror.
 *
 * The state lives in glibc's regex_t: the compiled program at `buffer`
 * (glibc's `re_dfa_t *`; here a struct rx_prog *), its size in
 * `allocated`/`used`, the group count in `re_nsub`.
 *
 * tests/unit/vm/test-guest-regex.c includes this file with
 * MXU_GUEST_HOST_TEST defined (guest_regcomp, ...) and compares it with
 * glibc's on thousands of patterns and subjects.
 */
#include <regex.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifdef MXU_GUEST_HOST_TEST
#define GUEST(name) guest_##name
int guest_regcomp(regex_t *preg, const char *pattern, int cflags);
int guest_regexec(const regex_t *preg, const char *string, size_t nmatch,
                  regmatch_t pmatch[_Restrict_arr_ _REGEX_NELTS(nmatch)], int eflags);
void guest_regfree(regex_t *preg);
size_t guest_regerror(int errcode, const regex_t *preg, char *errbuf, size_t errbuf_size);
#else
#define GUEST(name) name
#endif

/* Bounds on what a hostile pattern may cost: instructions in the program
 * (the matcher's time and memory per subject byte grow with it), and the
 * depth of nested groups (the parser's recursion). */
#define RX_MAX_PROG  20000
#define RX_MAX_DEPTH 200

/* glibc's RE_DUP_MAX (<regex.h> defines it only under _GNU_SOURCE): a
 * larger count in an interval is REG_ESIZE. */
#define RX_DUP_MAX 0x7fff

/* ---- character classes (C locale) ------------------------------------------------ */

static bool rx_isupper(int c)
{
    return c >= 'A' && c <= 'Z';
}
static bool rx_islower(int c)
{
    return c >= 'a' && c <= 'z';
}
static bool rx_isdigit(int c)
{
    return c >= '0' && c <= '9';
}
static bool rx_isalpha(int c)
{
    return rx_isupper(c) || rx_islower(c);
}
static bool rx_isalnum(int c)
{
    return rx_isalpha(c) || rx_isdigit(c);
}
static bool rx_isword(int c)
{
    return rx_isalnum(c) || c == '_';
}
static bool rx_isgraph(int c)
{
    return c > 32 && c < 127;
}
static int rx_toupper(int c)
{
    return rx_islower(c) ? c - 32 : c;
}

static bool rx_inclass(int k, int c)
{
    switch (k) {
    case 0: /* alnum */
        return rx_isalnum(c);
    case 1: /* alpha */
        return rx_isalpha(c);
    case 2: /* blank */
        return c == ' ' || c == '\t';
    case 3: /* cntrl */
        return c < 32 || c == 127;
    case 4: /* digit */
        return rx_isdigit(c);
    case 5: /* graph */
        return rx_isgraph(c);
    case 6: /* lower */
        return rx_islower(c);
    case 7: /* print */
        return c >= 32 && c < 127;
    case 8: /* punct */
        return rx_isgraph(c) && !rx_isalnum(c);
    case 9: /* space */
        return c == ' ' || (c >= '\t' && c <= '\r');
    case 10: /* upper */
        return rx_isupper(c);
    case 11: /* xdigit */
        return rx_isdigit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
    }
    return false;
}

static const char *const rx_class_names[] = {"alnum", "alpha", "blank", "cntrl", "digit", "graph",
                                             "lower", "print", "punct", "space", "upper", "xdigit"};

/* ---- the program ------------------------------------------------------------------ */

enum {
    I_CHAR,   /* x: the byte */
    I_SET,    /* x: index of a 256-bit set */
    I_ANY,    /* any byte */
    I_SPLIT,  /* go to x and to y; x is preferred */
    I_JMP,    /* go to x */
    I_SAVE,   /* subexpression offset slot x := here */
    I_ASSERT, /* x: an A_* condition on the context */
    I_MATCH,
};

enum { A_BOL, A_EOL, A_WORDB, A_NWORDB, A_WORDBEG, A_WORDEND, A_BUFBEG, A_BUFEND };

typedef struct rx_inst {
    uint8_t op;
    int32_t x, y;
} rx_inst;

typedef struct rx_set {
    uint8_t bits[32];
} rx_set;

struct rx_prog {
    int n, nsets, cflags;
    size_t nsub;
    rx_inst *code;
    rx_set *sets;
};

static bool set_has(const rx_set *s, int c)
{
    return s->bits[c >> 3] & (1u << (c & 7));
}
static void set_add(rx_set *s, int c)
{
    s->bits[c >> 3] |= (uint8_t)(1u << (c & 7));
}

/* ---- the parser ------------------------------------------------------------------- */

enum { N_EMPTY, N_CHAR, N_SET, N_ANY, N_ASSERT, N_CAT, N_ALT, N_GROUP, N_REP };

/* A tree node. CAT and ALT hold a list of children (a is the first, each
 * child's `next` the one after it), so that a long pattern is a wide tree,
 * not a deep one: the compiler recurses only as deep as groups and
 * repetitions nest (`depth`, at most RX_MAX_DEPTH). */
typedef struct rx_node {
    uint8_t kind;
    int a;     /* first child (CAT, ALT), the child (GROUP, REP) */
    int next;  /* the next child of the parent CAT or ALT, or -1 */
    int v;     /* byte (CHAR), set (SET), condition (ASSERT), group (GROUP), min (REP) */
    int max;   /* REP: -1 for no bound */
    int depth; /* 1 + the children's */
} rx_node;

typedef struct rx_parser {
    const unsigned char *p;
    int cflags;
    int err;
    int depth;
    size_t nsub;
    rx_node *nodes;
    int nnodes, capnodes;
    rx_set *sets;
    int nsets, capsets;
} rx_parser;

static int node_new(rx_parser *ps, int kind, int a, int v)
{
    if (ps->nnodes == ps->capnodes) {
        int cap = ps->capnodes ? ps->capnodes * 2 : 64;
        rx_node *n = realloc(ps->nodes, (size_t)cap * sizeof *n);
        if (!n) {
            ps->err = REG_ESPACE;
            return -1;
        }
        ps->nodes = n;
        ps->capnodes = cap;
    }
    rx_node *n = &ps->nodes[ps->nnodes];
    n->kind = (uint8_t)kind;
    n->a = a;
    n->next = -1;
    n->v = v;
    n->max = 0;
    n->depth = 1;
    if (kind == N_GROUP || kind == N_REP) {
        n->depth = ps->nodes[a].depth + 1;
        if (n->depth > RX_MAX_DEPTH) {
            ps->err = REG_ESPACE;
            return -1;
        }
    }
    return ps->nnodes++;
}

static int set_new(rx_parser *ps)
{
    if (ps->nsets == ps->capsets) {
        int cap = ps->capsets ? ps->capsets * 2 : 8;
        rx_set *s = realloc(ps->sets, (size_t)cap * sizeof *s);
        if (!s) {
            ps->err = REG_ESPACE;
            return -1;
        }
        ps->sets = s;
        ps->capsets = cap;
    }
    memset(&ps->sets[ps->nsets], 0, sizeof(rx_set));
    return ps->nsets++;
}

/* A set node for `k` (0..11) or its complement (`\w` and `\W`, `\s`, `\S`). */
static int class_node(rx_parser *ps, int k, bool neg, bool underscore)
{
    int s = set_new(ps);
    if (s < 0)
        return -1;
    for (int c = 1; c < 256; c++)
        if ((rx_inclass(k, c) || (underscore && c == '_')) != neg)
            set_add(&ps->sets[s], c);
    return node_new(ps, N_SET, 0, s);
}

/* REG_ICASE as glibc does it: pattern and subject are compared in upper
 * case. A set `s` of (upper-cased) pattern bytes becomes the set of subject
 * bytes whose upper case is in it. */
static void icase_fold(rx_set *s)
{
    for (int c = 'a'; c <= 'z'; c++)
        if (set_has(s, rx_toupper(c)))
            set_add(s, c);
        else
            s->bits[c >> 3] &= (uint8_t) ~(1u << (c & 7));
}

/* A literal byte. Under REG_ICASE an unescaped letter matches both cases;
 * an escaped one is not upper-cased by glibc, so `\d` matches no subject
 * byte (they are all compared upper-cased) and `\D` matches d and D. */
static int char_node(rx_parser *ps, int c, bool escaped)
{
    if ((ps->cflags & REG_ICASE) && rx_isalpha(c)) {
        int s = set_new(ps);
        if (s < 0)
            return -1;
        set_add(&ps->sets[s], escaped ? c : rx_toupper(c));
        icase_fold(&ps->sets[s]);
        return node_new(ps, N_SET, 0, s);
    }
    return node_new(ps, N_CHAR, 0, c);
}

/* One element of a bracket expression at ps->p (after any `[`): a byte,
 * `[.c.]`, `[=c=]` (both a single byte in the C locale) or `[:name:]`.
 * Returns the byte, or -2 - k for class k, or -1 with ps->err set. */
static int bracket_elem(rx_parser *ps)
{
    const unsigned char *p = ps->p;
    if (p[0] == '[' && (p[1] == '.' || p[1] == '=' || p[1] == ':')) {
        unsigned char delim = p[1];
        const unsigned char *s = p + 2, *e = s;
        while (*e && !(e[0] == delim && e[1] == ']'))
            e++;
        if (!*e) {
            ps->err = REG_EBRACK;
            return -1;
        }
        size_t len = (size_t)(e - s);
        ps->p = e + 2;
        if (delim == ':') {
            for (int k = 0; k < 12; k++)
                if (strlen(rx_class_names[k]) == len && memcmp(rx_class_names[k], s, len) == 0) {
                    /* glibc: under REG_ICASE, upper and lower are alpha */
                    if ((ps->cflags & REG_ICASE) && (k == 6 || k == 10))
                        k = 1;
                    return -2 - k;
                }
            ps->err = REG_ECTYPE;
            return -1;
        }
        if (len != 1) {
            ps->err = REG_ECOLLATE;
            return -1;
        }
        return (ps->cflags & REG_ICASE) ? rx_toupper(s[0]) : s[0];
    }
    if (!*p) {
        ps->err = REG_EBRACK;
        return -1;
    }
    ps->p = p + 1;
    return (ps->cflags & REG_ICASE) ? rx_toupper(p[0]) : p[0];
}

/* A bracket expression; ps->p is past the `[`. */
static int parse_bracket(rx_parser *ps)
{
    int s = set_new(ps);
    if (s < 0)
        return -1;
    bool neg = false;
    if (*ps->p == '^') {
        neg = true;
        ps->p++;
    }
    if (!*ps->p) {
        ps->err = REG_BADPAT; /* glibc's answer for `[` or `[^` at the end */
        return -1;
    }
    rx_set set;
    memset(&set, 0, sizeof set);
    bool first = true;
    for (;;) {
        if (!*ps->p) {
            ps->err = REG_EBRACK;
            return -1;
        }
        if (*ps->p == ']' && !first) {
            ps->p++;
            break;
        }
        first = false;
        int lo = bracket_elem(ps);
        if (lo == -1)
            return -1;
        if (ps->p[0] == '-' && ps->p[1] && ps->p[1] != ']') {
            /* a range: neither end may be a class; glibc checks the end's syntax first */
            ps->p++;
            int hi = bracket_elem(ps);
            if (hi == -1)
                return -1;
            if (lo < -1 || hi < -1 || hi < lo) {
                ps->err = REG_ERANGE;
                return -1;
            }
            for (int c = lo; c <= hi; c++)
                set_add(&set, c);
            /* `[a-c-e]`: a range cannot start where one ended */
            if (ps->p[0] == '-' && ps->p[1] && ps->p[1] != ']') {
                ps->err = REG_ERANGE;
                return -1;
            }
        } else if (lo < -1) {
            for (int c = 1; c < 256; c++)
                if (rx_inclass(-2 - lo, c))
                    set_add(&set, c);
        } else {
            set_add(&set, lo);
        }
    }
    if (ps->cflags & REG_ICASE)
        icase_fold(&set);
    rx_set *out = &ps->sets[s];
    for (int c = 1; c < 256; c++)
        if (set_has(&set, c) != neg && !(neg && c == '\n' && (ps->cflags & REG_NEWLINE)))
            set_add(out, c);
    return node_new(ps, N_SET, 0, s);
}

/* A count in an interval, as glibc's fetch_number reads it: tokens up to
 * `}` or `,` (left in *stop, 0 at the end of the pattern); -1 if there were
 * none, -2 if one was not a digit or the pattern ended, RX_DUP_MAX + 1 for
 * anything larger than RX_DUP_MAX. */
static int parse_count(rx_parser *ps, int *stop)
{
    int n = -1;
    for (;;) {
        int c = *ps->p;
        if (!c) {
            *stop = 0;
            return -2;
        }
        ps->p++;
        /* glibc stops at an escaped `\,` too (it looks at the token's
         * byte), but not at `\}` */
        bool esc = c == '\\' && *ps->p;
        if (esc)
            c = *ps->p++;
        if ((c == '}' && !esc) || c == ',') {
            *stop = c;
            return n;
        }
        if (esc || !rx_isdigit(c) || n == -2)
            n = -2;
        else
            n = n < 0 ? c - '0' : n * 10 + c - '0' > RX_DUP_MAX ? RX_DUP_MAX + 1 : n * 10 + c - '0';
    }
}

/* `{m}`, `{m,}`, `{,n}`, `{m,n}`; ps->p is past the `{`. The error codes
 * are glibc's (parse_dup_op): running off the end is REG_EBRACE, any other
 * malformation REG_BADBR, a count past RX_DUP_MAX REG_ESIZE. */
static bool parse_interval(rx_parser *ps, int *min, int *max)
{
    int stop, lo = parse_count(ps, &stop), hi = -2;
    if (lo == -1) {
        if (stop != ',') {
            ps->err = REG_BADBR; /* `{}` */
            return false;
        }
        lo = 0;
    }
    if (lo != -2)
        hi = stop == '}' ? lo : parse_count(ps, &stop);
    if (lo == -2 || hi == -2) {
        ps->err = stop ? REG_BADBR : REG_EBRACE;
        return false;
    }
    if ((hi != -1 && lo > hi) || stop != '}') {
        ps->err = REG_BADBR;
        return false;
    }
    if ((hi == -1 ? lo : hi) > RX_DUP_MAX) {
        ps->err = REG_ESIZE;
        return false;
    }
    *min = lo;
    *max = hi;
    return true;
}

static int parse_alt(rx_parser *ps);

/* An atom and the repetitions after it; -2 when the branch ends here. */
static int parse_piece(rx_parser *ps)
{
    const unsigned char *p = ps->p;
    int n;
    bool repeatable = true;
    switch (*p) {
    case 0:
    case '|':
        return -2;
    case ')':
        if (ps->depth > 0)
            return -2;
        ps->p++;
        n = char_node(ps, ')', false); /* an unmatched `)` is a literal, as in glibc */
        break;
    case '*':
    case '+':
    case '?':
    case '{':
        ps->err = REG_BADRPT;
        return -1;
    case '^':
    case '$':
        ps->p++;
        n = node_new(ps, N_ASSERT, 0, *p == '^' ? A_BOL : A_EOL);
        repeatable = false;
        break;
    case '.':
        ps->p++;
        if (ps->cflags & REG_NEWLINE) {
            n = set_new(ps);
            if (n < 0)
                return -1;
            for (int c = 1; c < 256; c++)
                if (c != '\n')
                    set_add(&ps->sets[n], c);
            n = node_new(ps, N_SET, 0, n);
        } else {
            n = node_new(ps, N_ANY, 0, 0);
        }
        break;
    case '[':
        ps->p++;
        n = parse_bracket(ps);
        break;
    case '(': {
        if (ps->depth >= RX_MAX_DEPTH) {
            ps->err = REG_ESPACE;
            return -1;
        }
        ps->p++;
        int idx = (int)++ps->nsub;
        ps->depth++;
        int inner = parse_alt(ps);
        ps->depth--;
        if (inner < 0)
            return -1;
        if (*ps->p != ')') {
            ps->err = REG_EPAREN;
            return -1;
        }
        ps->p++;
        n = node_new(ps, N_GROUP, inner, idx);
        break;
    }
    case '\\': {
        int c = p[1];
        if (!c) {
            ps->err = REG_EESCAPE;
            return -1;
        }
        ps->p += 2;
        if (c >= '1' && c <= '9') {
            /* a back-reference: glibc accepts it, a linear matcher cannot */
            ps->err = REG_ESUBREG;
            return -1;
        }
        int a = -1;
        switch (c) {
        case 'w':
        case 'W':
            n = class_node(ps, 0, c == 'W', true);
            break;
        case 's':
        case 'S':
            n = class_node(ps, 9, c == 'S', false);
            break;
        case 'b':
            a = A_WORDB;
            break;
        case 'B':
            a = A_NWORDB;
            break;
        case '<':
            a = A_WORDBEG;
            break;
        case '>':
            a = A_WORDEND;
            break;
        case '`':
            a = A_BUFBEG;
            break;
        case '\'':
            a = A_BUFEND;
            break;
        default:
            n = char_node(ps, c, true);
            break;
        }
        if (a >= 0) {
            n = node_new(ps, N_ASSERT, 0, a);
            repeatable = false;
        }
        break;
    }
    default:
        ps->p++;
        n = char_node(ps, *p, false);
        break;
    }
    if (n < 0)
        return -1;
    for (;;) {
        int min, max;
        if (!repeatable && (*ps->p == '*' || *ps->p == '+' || *ps->p == '?' || *ps->p == '{')) {
            ps->err = REG_BADRPT; /* an anchor cannot be repeated */
            return -1;
        }
        switch (*ps->p) {
        case '*':
            min = 0, max = -1;
            ps->p++;
            break;
        case '+':
            min = 1, max = -1;
            ps->p++;
            break;
        case '?':
            min = 0, max = 1;
            ps->p++;
            break;
        case '{':
            ps->p++;
            if (!parse_interval(ps, &min, &max))
                return -1;
            break;
        default:
            return n;
        }
        n = node_new(ps, N_REP, n, min);
        if (n < 0)
            return -1;
        ps->nodes[n].max = max;
    }
}

/* A branch: the pieces up to `|`, `)` or the end, as a CAT list (one piece
 * stands for itself; none is EMPTY). */
static int parse_concat(rx_parser *ps)
{
    int list = -1, last = -1;
    for (;;) {
        int m = parse_piece(ps);
        if (m == -1)
            return -1;
        if (m == -2)
            break;
        if (last < 0) {
            list = m;
        } else {
            if (list == last) {
                int c = node_new(ps, N_CAT, list, 0);
                if (c < 0)
                    return -1;
                ps->nodes[c].depth = ps->nodes[list].depth;
                list = c;
            }
            ps->nodes[last].next = m;
            if (ps->nodes[m].depth > ps->nodes[list].depth)
                ps->nodes[list].depth = ps->nodes[m].depth;
        }
        last = m;
    }
    return list < 0 ? node_new(ps, N_EMPTY, 0, 0) : list;
}

static int parse_alt(rx_parser *ps)
{
    int first = parse_concat(ps);
    if (first < 0 || *ps->p != '|')
        return first;
    int alt = node_new(ps, N_ALT, first, 0), last = first;
    if (alt < 0)
        return -1;
    while (*ps->p == '|') {
        ps->p++;
        int m = parse_concat(ps);
        if (m < 0)
            return -1;
        ps->nodes[last].next = m;
        if (ps->nodes[m].depth > ps->nodes[alt].depth)
            ps->nodes[alt].depth = ps->nodes[m].depth;
        last = m;
    }
    return alt;
}

/* ---- the compiler ----------------------------------------------------------------- */

/* Instructions node `i` compiles to, saturating past RX_MAX_PROG. */
static long prog_size(const rx_parser *ps, int i)
{
    const rx_node *n = &ps->nodes[i];
    long s, t;
    switch (n->kind) {
    case N_EMPTY:
        return 0;
    case N_CAT:
    case N_ALT:
        s = 0;
        for (int c = n->a; c >= 0 && s <= RX_MAX_PROG; c = ps->nodes[c].next)
            s += prog_size(ps, c) + (n->kind == N_ALT ? 2 : 0);
        break;
    case N_GROUP:
        s = prog_size(ps, n->a) + 2;
        break;
    case N_REP:
        t = prog_size(ps, n->a);
        if (n->max < 0)
            s = n->v == 0 ? t + 2 : (long)n->v * t + 1;
        else
            s = (long)n->v * t + (long)(n->max - n->v) * (t + 1);
        break;
    default:
        return 1;
    }
    return s > RX_MAX_PROG ? RX_MAX_PROG + 1 : s;
}

static void emit(struct rx_prog *pg, int op, int x, int y)
{
    pg->code[pg->n].op = (uint8_t)op;
    pg->code[pg->n].x = x;
    pg->code[pg->n].y = y;
    pg->n++;
}

/* Copy instructions [from, to) to the end, moving their jumps with them. */
static void copy_range(struct rx_prog *pg, int from, int to)
{
    int delta = pg->n - from;
    for (int i = from; i < to; i++) {
        rx_inst in = pg->code[i];
        if (in.op == I_JMP || in.op == I_SPLIT) {
            in.x += delta;
            in.y += delta;
        }
        pg->code[pg->n++] = in;
    }
}

static void compile(const rx_parser *ps, struct rx_prog *pg, int i)
{
    const rx_node *n = &ps->nodes[i];
    int l1, l2;
    switch (n->kind) {
    case N_EMPTY:
        return;
    case N_CHAR:
        emit(pg, I_CHAR, n->v, 0);
        return;
    case N_SET:
        emit(pg, I_SET, n->v, 0);
        return;
    case N_ANY:
        emit(pg, I_ANY, 0, 0);
        return;
    case N_ASSERT:
        emit(pg, I_ASSERT, n->v, 0);
        return;
    case N_CAT:
        for (int c = n->a; c >= 0; c = ps->nodes[c].next)
            compile(ps, pg, c);
        return;
    case N_ALT: {
        /* SPLIT L1, L2; L1: a; JMP end; L2: SPLIT ...; the last without a
         * split; the jumps to the end are chained through x and patched */
        int jumps = -1;
        for (int c = n->a; c >= 0; c = ps->nodes[c].next) {
            l1 = -1;
            if (ps->nodes[c].next >= 0) {
                l1 = pg->n;
                emit(pg, I_SPLIT, l1 + 1, 0);
            }
            compile(ps, pg, c);
            if (l1 >= 0) {
                emit(pg, I_JMP, jumps, 0);
                jumps = pg->n - 1;
                pg->code[l1].y = pg->n;
            }
        }
        while (jumps >= 0) {
            l2 = pg->code[jumps].x;
            pg->code[jumps].x = pg->n;
            jumps = l2;
        }
        return;
    }
    case N_GROUP:
        emit(pg, I_SAVE, 2 * n->v - 2, 0);
        compile(ps, pg, n->a);
        emit(pg, I_SAVE, 2 * n->v - 1, 0);
        return;
    case N_REP:
        break;
    }
    /* x{min,max}: min copies, then either a loop or max - min nested optional
     * copies; the body is compiled once and copied. */
    if (n->max == 0)
        return;
    if (n->max < 0 && n->v == 0) {
        l1 = pg->n;
        emit(pg, I_SPLIT, l1 + 1, 0);
        compile(ps, pg, n->a);
        emit(pg, I_JMP, l1, 0);
        pg->code[l1].y = pg->n;
        return;
    }
    int body = pg->n, end;
    if (n->v > 0) {
        compile(ps, pg, n->a);
        end = pg->n;
        for (int k = 1; k < n->v; k++)
            copy_range(pg, body, end);
        if (n->max < 0) {
            /* the last copy again, as often as it matches */
            emit(pg, I_SPLIT, pg->n - (end - body), pg->n + 1);
            return;
        }
    } else {
        /* compile the body once, behind its first split */
        emit(pg, I_SPLIT, body + 1, 0);
        compile(ps, pg, n->a);
        end = pg->n;
        body++;
    }
    /* The optional copies, each behind a split that skips to the end: the
     * first at body - 1 when min is 0, the others one after another. */
    int len = end - body, opt = n->max - n->v - (n->v == 0), first = pg->n;
    for (int k = 0; k < opt; k++) {
        emit(pg, I_SPLIT, pg->n + 1, 0);
        copy_range(pg, body, end);
    }
    if (n->v == 0)
        pg->code[body - 1].y = pg->n;
    for (int k = 0; k < opt; k++)
        pg->code[first + k * (len + 1)].y = pg->n;
}

/* ---- the matcher ------------------------------------------------------------------ */

/* What a run looks for. */
enum {
    M_EXISTS,  /* any match (REG_NOSUB): stop at the first */
    M_LONGEST, /* the leftmost-longest match's start and end */
    M_CAPTURE, /* anchored at `from`, ending at `to`: the subexpressions of
                * the most preferred such match */
};

typedef struct rx_list {
    int n;
    int *pc;
    regoff_t *cap; /* ncap per thread: [0] the start, [1 + slot] SAVE slots */
} rx_list;

typedef struct rx_stackent {
    int pc;   /* a state to follow, or -1: */
    int slot; /* restore cap[slot] := val */
    regoff_t val;
} rx_stackent;

typedef struct rx_run {
    const struct rx_prog *pg;
    const unsigned char *s;
    size_t len;
    int eflags;
    int ncap;
    size_t stamp;
    size_t *mark; /* mark[pc] == stamp: pc is on the list being filled */
    rx_stackent *stk;
    regoff_t *work;
} rx_run;

static bool rx_assert(const rx_run *r, int a, size_t pos)
{
    int prev = pos > 0 ? r->s[pos - 1] : -1, next = pos < r->len ? r->s[pos] : -1;
    bool nl = r->pg->cflags & REG_NEWLINE;
    bool wp = prev >= 0 && rx_isword(prev), wn = next >= 0 && rx_isword(next);
    switch (a) {
    case A_BOL:
        return (pos == 0 && !(r->eflags & REG_NOTBOL)) || (nl && prev == '\n');
    case A_EOL:
        return (pos == r->len && !(r->eflags & REG_NOTEOL)) || (nl && next == '\n');
    case A_WORDB:
        return wp != wn;
    case A_NWORDB:
        return wp == wn;
    case A_WORDBEG:
        return !wp && wn;
    case A_WORDEND:
        return wp && !wn;
    case A_BUFBEG:
        return pos == 0;
    case A_BUFEND:
        return pos == r->len;
    }
    return false;
}

/* Add the thread at pc0 with captures `cap` to list l at position pos,
 * following jumps, splits (x first: the list is in order of preference),
 * saves and assertions; each pc once per list. */
static void rx_add(rx_run *r, rx_list *l, int pc0, const regoff_t *cap, size_t pos)
{
    const rx_inst *code = r->pg->code;
    int ncap = r->ncap, sp = 0;
    memcpy(r->work, cap, (size_t)ncap * sizeof(regoff_t));
    r->stk[sp++] = (rx_stackent){pc0, 0, 0};
    while (sp > 0) {
        rx_stackent e = r->stk[--sp];
        if (e.pc < 0) {
            r->work[e.slot] = e.val;
            continue;
        }
        if (r->mark[e.pc] == r->stamp)
            continue;
        r->mark[e.pc] = r->stamp;
        const rx_inst *in = &code[e.pc];
        switch (in->op) {
        case I_JMP:
            r->stk[sp++] = (rx_stackent){in->x, 0, 0};
            break;
        case I_SPLIT:
            r->stk[sp++] = (rx_stackent){in->y, 0, 0};
            r->stk[sp++] = (rx_stackent){in->x, 0, 0};
            break;
        case I_SAVE:
            if (1 + in->x < ncap) {
                r->stk[sp++] = (rx_stackent){-1, 1 + in->x, r->work[1 + in->x]};
                r->work[1 + in->x] = (regoff_t)pos;
            }
            r->stk[sp++] = (rx_stackent){e.pc + 1, 0, 0};
            break;
        case I_ASSERT:
            if (rx_assert(r, in->x, pos))
                r->stk[sp++] = (rx_stackent){e.pc + 1, 0, 0};
            break;
        default:
            l->pc[l->n] = e.pc;
            memcpy(&l->cap[(size_t)l->n * (size_t)ncap], r->work, (size_t)ncap * sizeof(regoff_t));
            l->n++;
            break;
        }
    }
}

/* Run the program over [from, to) of the subject. M_EXISTS and M_LONGEST
 * try every start from `from` on; the list is kept in order of start (older
 * threads first, a new start last), so the thread a pc keeps is the one
 * with the earliest start, and once a match is found, later starts are
 * dropped. Returns whether there was a match; out[0..ncap) gets its
 * captures (out[0] its start), *end its end. */
static bool rx_pike(rx_run *r, int mode, size_t from, size_t to, regoff_t *out, size_t *end)
{
    const struct rx_prog *pg = r->pg;
    int ncap = r->ncap;
    size_t n = (size_t)pg->n;
    rx_list lists[2];
    for (int k = 0; k < 2; k++) {
        lists[k].n = 0;
        lists[k].pc = malloc(n * sizeof(int));
        lists[k].cap = malloc(n * (size_t)ncap * sizeof(regoff_t));
    }
    rx_list *cl = &lists[0], *nl = &lists[1];
    bool found = false;
    regoff_t best_s = -1;
    size_t best_e = 0;
    if (!lists[0].pc || !lists[0].cap || !lists[1].pc || !lists[1].cap)
        goto done;
    for (int k = 0; k < ncap; k++)
        r->work[k] = -1;
    regoff_t *seed = malloc((size_t)ncap * sizeof(regoff_t));
    if (!seed)
        goto done;
    for (int k = 0; k < ncap; k++)
        seed[k] = -1;
    r->stamp++;
    seed[0] = (regoff_t)from;
    rx_add(r, cl, 0, seed, from);
    for (size_t pos = from;; pos++) {
        int c = pos < to ? r->s[pos] : -1;
        nl->n = 0;
        r->stamp++;
        for (int t = 0; t < cl->n; t++) {
            const regoff_t *cap = &cl->cap[(size_t)t * (size_t)ncap];
            const rx_inst *in = &pg->code[cl->pc[t]];
            if (found && mode == M_LONGEST && cap[0] > best_s)
                break; /* later threads started later still */
            switch (in->op) {
            case I_MATCH:
                if (mode == M_EXISTS) {
                    found = true;
                    goto freeseed;
                }
                if (mode == M_CAPTURE) {
                    if (pos != to)
                        break;
                    memcpy(out, cap, (size_t)ncap * sizeof(regoff_t));
                    found = true;
                    goto freeseed;
                }
                if (!found || cap[0] < best_s || (cap[0] == best_s && pos > best_e)) {
                    found = true;
                    best_s = cap[0];
                    best_e = pos;
                }
                break;
            case I_CHAR:
                if (c == in->x)
                    rx_add(r, nl, cl->pc[t] + 1, cap, pos + 1);
                break;
            case I_ANY:
                if (c >= 0)
                    rx_add(r, nl, cl->pc[t] + 1, cap, pos + 1);
                break;
            case I_SET:
                if (c >= 0 && set_has(&pg->sets[in->x], c))
                    rx_add(r, nl, cl->pc[t] + 1, cap, pos + 1);
                break;
            }
        }
        if (pos >= to)
            break;
        if (!found && mode != M_CAPTURE) {
            seed[0] = (regoff_t)(pos + 1);
            rx_add(r, nl, 0, seed, pos + 1);
        }
        if (nl->n == 0 && (found || mode == M_CAPTURE))
            break;
        rx_list *tmp = cl;
        cl = nl;
        nl = tmp;
    }
    if (found && mode == M_LONGEST) {
        out[0] = best_s;
        *end = best_e;
    }
freeseed:
    free(seed);
done:
    for (int k = 0; k < 2; k++) {
        free(lists[k].pc);
        free(lists[k].cap);
    }
    return found;
}

/* ---- the interface ---------------------------------------------------------------- */

int GUEST(regcomp)(regex_t *preg, const char *pattern, int cflags)
{
    memset(preg, 0, sizeof *preg);
    if (!(cflags & REG_EXTENDED))
        return REG_BADPAT; /* basic expressions are not implemented */
    rx_parser ps;
    memset(&ps, 0, sizeof ps);
    ps.p = (const unsigned char *)pattern;
    ps.cflags = cflags;
    int root = parse_alt(&ps);
    int err = root < 0 ? (ps.err ? ps.err : REG_ESPACE) : 0;
    long size = err ? 0 : prog_size(&ps, root) + 1;
    if (!err && size > RX_MAX_PROG)
        err = REG_ESPACE;
    struct rx_prog *pg = NULL;
    size_t bytes = 0;
    if (!err) {
        bytes = sizeof *pg + (size_t)size * sizeof(rx_inst) + (size_t)ps.nsets * sizeof(rx_set);
        pg = malloc(bytes);
        if (!pg)
            err = REG_ESPACE;
    }
    if (!err) {
        pg->code = (rx_inst *)(pg + 1);
        pg->sets = (rx_set *)(pg->code + size);
        pg->n = 0;
        pg->nsets = ps.nsets;
        pg->cflags = cflags;
        pg->nsub = ps.nsub;
        if (ps.nsets)
            memcpy(pg->sets, ps.sets, (size_t)ps.nsets * sizeof(rx_set));
        compile(&ps, pg, root);
        emit(pg, I_MATCH, 0, 0);
        preg->__REPB_PREFIX(buffer) = (struct re_dfa_t *)(void *)pg;
        preg->__REPB_PREFIX(allocated) = bytes;
        preg->__REPB_PREFIX(used) = bytes;
        preg->__REPB_PREFIX(no_sub) = !!(cflags & REG_NOSUB);
        preg->re_nsub = ps.nsub;
    }
    free(ps.nodes);
    free(ps.sets);
    return err;
}

int GUEST(regexec)(const regex_t *preg, const char *string, size_t nmatch,
                   regmatch_t pmatch[_Restrict_arr_ _REGEX_NELTS(nmatch)], int eflags)
{
    const struct rx_prog *pg = (const struct rx_prog *)(const void *)preg->__REPB_PREFIX(buffer);
    if (!pg)
        return REG_BADPAT;
    size_t from = 0, len;
    if (eflags & REG_STARTEND) {
        from = (size_t)pmatch[0].rm_so;
        len = (size_t)pmatch[0].rm_eo;
    } else {
        len = strlen(string);
    }
    if (pg->cflags & REG_NOSUB)
        nmatch = 0;
    size_t ngroups = nmatch > 1 ? nmatch - 1 : 0;
    if (ngroups > pg->nsub)
        ngroups = pg->nsub;
    rx_run r;
    r.pg = pg;
    r.s = (const unsigned char *)string;
    r.len = len;
    r.eflags = eflags;
    r.ncap = 1 + 2 * (int)ngroups;
    r.stamp = 0;
    r.mark = calloc((size_t)pg->n, sizeof(size_t));
    r.stk = malloc((2 * (size_t)pg->n + 2) * sizeof(rx_stackent));
    r.work = malloc((size_t)r.ncap * sizeof(regoff_t));
    regoff_t *caps = malloc((size_t)r.ncap * sizeof(regoff_t));
    int rc = REG_ESPACE;
    if (!r.mark || !r.stk || !r.work || !caps)
        goto out;
    size_t end = 0;
    int ncap = r.ncap;
    r.ncap = 1;
    if (!rx_pike(&r, nmatch ? M_LONGEST : M_EXISTS, from, len, caps, &end)) {
        rc = REG_NOMATCH;
        goto out;
    }
    rc = 0;
    if (!nmatch)
        goto out;
    regoff_t start = caps[0];
    if (ngroups) {
        r.ncap = ncap;
        if (!rx_pike(&r, M_CAPTURE, (size_t)start, end, caps, &end))
            for (int k = 0; k < ncap; k++)
                caps[k] = -1; /* cannot happen: the first run found this match */
    }
    pmatch[0].rm_so = start;
    pmatch[0].rm_eo = (regoff_t)end;
    for (size_t k = 1; k < nmatch; k++) {
        bool set = k <= ngroups && caps[2 * k - 1] >= 0 && caps[2 * k] >= 0;
        pmatch[k].rm_so = set ? caps[2 * k - 1] : -1;
        pmatch[k].rm_eo = set ? caps[2 * k] : -1;
    }
out:
    free(r.mark);
    free(r.stk);
    free(r.work);
    free(caps);
    return rc;
}

void GUEST(regfree)(regex_t *preg)
{
    free(preg->__REPB_PREFIX(buffer));
    preg->__REPB_PREFIX(buffer) = NULL;
    preg->__REPB_PREFIX(allocated) = 0;
    preg->__REPB_PREFIX(used) = 0;
}

/* glibc's messages, by code. */
static const char *const rx_messages[] = {
    "Success",
    "No match",
    "Invalid regular expression",
    "Invalid collation character",
    "Invalid character class name",
    "Trailing backslash",
    "Invalid back reference",
    "Unmatched [, [^, [:, [., or [=",
    "Unmatched ( or \\(",
    "Unmatched \\{",
    "Invalid content of \\{\\}",
    "Invalid range end",
    "Memory exhausted",
    "Invalid preceding regular expression",
    "Premature end of regular expression",
    "Regular expression too big",
    "Unmatched ) or \\)",
};

size_t GUEST(regerror)(int errcode, const regex_t *preg, char *errbuf, size_t errbuf_size)
{
    (void)preg;
    const char *msg = errcode >= 0 && errcode < (int)(sizeof rx_messages / sizeof *rx_messages)
                          ? rx_messages[errcode]
                          : "Unknown error";
    size_t n = strlen(msg) + 1;
    if (errbuf_size > 0) {
        size_t k = n < errbuf_size ? n : errbuf_size;
        memcpy(errbuf, msg, k - 1);
        errbuf[k - 1] = 0;
    }
    return n;
}
