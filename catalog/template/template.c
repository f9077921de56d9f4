/*
 * template — a catalogue block (docs/catalog.md): renders TEMPLATE with the
 * JSON request body as its data, in a subset of mustache:
 *
 *   {{a.b.0}}          the value at that path, HTML-escaped (ESCAPE=none: as is)
 *   {{{a}}} {{& a}}    the value, never escaped
 *   {{#a}}..{{/a}}     a section: once per element when a is a non-empty array,
 *                      once with a as the context when an object, once when
 *                      otherwise truthy; skipped for false, null, "", [], absent
 *   {{^a}}..{{/a}}     inverted: rendered only when a would skip its section
 *   {{.}}              the current context (inside a section over an array)
 *   {{! comment}}
 *
 * Names are looked up from the innermost section's context outwards, as in
 * mustache. Strings render as their text, numbers and booleans as JSON,
 * null and absent values as nothing (STRICT=true: absent is a 422), objects
 * and arrays as compact JSON.
 *
 * The template is parsed once, in mxu_init(), into a flat list of tokens with
 * each section's end resolved; a template that does not parse leaves the
 * instance running and every request answers 500 with the reason.
 *
 * The body decides how often sections repeat, and nested sections multiply
 * (a name is looked up outwards, so {{#a}}{{#a}}..{{/a}}{{/a}} over one
 * array of n elements renders n*n times): rendering stops at MAX_OUTPUT
 * bytes, or as many steps (tokens and section passes, so that a loop that
 * writes nothing is bounded too), and answers 413.
 */
#include <mxu/fn.h>

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_TOKENS         4096
#define MAX_NESTING        32
#define DEFAULT_MAX_OUTPUT (8u << 20)
#define HARD_MAX_OUTPUT    (60u << 20) /* under MXU_FN_BODY_MAX */

enum tok_kind { T_TEXT, T_VAR, T_RAW, T_SECTION, T_INVERTED, T_END };

typedef struct token {
    enum tok_kind kind;
    const char *s; /* text, or the name */
    size_t len;
    size_t end; /* T_SECTION / T_INVERTED: index of its T_END */
    int line;
} token;

static token toks[MAX_TOKENS];
static size_t ntoks;
static char problem[512]; /* why the template cannot be used, or "" */
static int escape_html = 1, strict;
static const char *content_type;
static size_t max_output = DEFAULT_MAX_OUTPUT;

static int add_token(enum tok_kind kind, const char *s, size_t len, int line)
{
    if (ntoks == MAX_TOKENS) {
        snprintf(problem, sizeof(problem), "TEMPLATE has more than %d parts", MAX_TOKENS);
        return -1;
    }
    toks[ntoks++] = (token){.kind = kind, .s = s, .len = len, .line = line};
    return 0;
}

static int line_of(const char *start, const char *p)
{
    int line = 1;
    for (; start < p; start++)
        line += *start == '\n';
    return line;
}

/* Tokenize `tpl` (which stays alive: it is mxu_config()'s string). */
static int parse(const char *tpl)
{
    size_t open[MAX_NESTING];
    int depth = 0;
    const char *p = tpl;
    while (*p) {
        const char *tag = strstr(p, "{{");
        if (!tag) {
            if (add_token(T_TEXT, p, strlen(p), 0) < 0)
                return -1;
            break;
        }
        if (tag > p && add_token(T_TEXT, p, (size_t)(tag - p), 0) < 0)
            return -1;
        int line = line_of(tpl, tag);
        int triple = tag[2] == '{';
        const char *inner = tag + (triple ? 3 : 2);
        const char *close = strstr(inner, triple ? "}}}" : "}}");
        if (!close) {
            snprintf(problem, sizeof(problem), "TEMPLATE line %d: '{{' is never closed", line);
            return -1;
        }
        p = close + (triple ? 3 : 2);
        char sigil = triple ? '&' : *inner;
        if (!triple && strchr("#^/&!", sigil))
            inner++;
        else if (!triple)
            sigil = 0;
        while (inner < close && (*inner == ' ' || *inner == '\t'))
            inner++;
        const char *end = close;
        while (end > inner && (end[-1] == ' ' || end[-1] == '\t'))
            end--;
        size_t len = (size_t)(end - inner);
        if (sigil == '!')
            continue;
        if (len == 0) {
            snprintf(problem, sizeof(problem), "TEMPLATE line %d: an empty tag", line);
            return -1;
        }
        enum tok_kind kind = sigil == '#'   ? T_SECTION
                             : sigil == '^' ? T_INVERTED
                             : sigil == '/' ? T_END
                             : sigil == '&' ? T_RAW
                                            : T_VAR;
        if (kind == T_END) {
            if (depth == 0) {
                snprintf(problem, sizeof(problem), "TEMPLATE line %d: {{/%.*s}} closes nothing",
                         line, (int)len, inner);
                return -1;
            }
            token *o = &toks[open[depth - 1]];
            if (o->len != len || memcmp(o->s, inner, len) != 0) {
                snprintf(problem, sizeof(problem),
                         "TEMPLATE line %d: {{/%.*s}} closes {{#%.*s}} of line %d", line, (int)len,
                         inner, (int)o->len, o->s, o->line);
                return -1;
            }
            o->end = ntoks;
            depth--;
        }
        if (add_token(kind, inner, len, line) < 0)
            return -1;
        if (kind == T_SECTION || kind == T_INVERTED) {
            if (depth == MAX_NESTING) {
                snprintf(problem, sizeof(problem),
                         "TEMPLATE line %d: sections nested deeper than %d", line, MAX_NESTING);
                return -1;
            }
            open[depth++] = ntoks - 1;
        }
    }
    if (depth) {
        token *o = &toks[open[depth - 1]];
        snprintf(problem, sizeof(problem), "TEMPLATE line %d: {{#%.*s}} is never closed", o->line,
                 (int)o->len, o->s);
        return -1;
    }
    return 0;
}

/* "8Mi", "512Ki", "1000000": bytes, or 0 when malformed. */
static size_t parse_size(const char *s)
{
    char *end;
    unsigned long long n = strtoull(s, &end, 10);
    if (end == s || *s == '-')
        return 0;
    if (strcmp(end, "Ki") == 0)
        n = n > HARD_MAX_OUTPUT >> 10 ? HARD_MAX_OUTPUT : n << 10;
    else if (strcmp(end, "Mi") == 0)
        n = n > HARD_MAX_OUTPUT >> 20 ? HARD_MAX_OUTPUT : n << 20;
    else if (*end)
        return 0;
    return n > HARD_MAX_OUTPUT ? HARD_MAX_OUTPUT : (size_t)n;
}

int mxu_init(void)
{
    const char *esc = mxu_config("ESCAPE");
    escape_html = !(esc && strcmp(esc, "none") == 0);
    const char *st = mxu_config("STRICT");
    strict = st && (strcmp(st, "true") == 0 || strcmp(st, "1") == 0);
    content_type = mxu_config("CONTENT_TYPE");
    if (!content_type || !*content_type)
        content_type = escape_html ? "text/html; charset=utf-8" : "text/plain; charset=utf-8";
    const char *tpl = mxu_config("TEMPLATE");
    const char *mo = mxu_config("MAX_OUTPUT");
    max_output = mo && *mo ? parse_size(mo) : DEFAULT_MAX_OUTPUT;
    if (max_output == 0)
        snprintf(problem, sizeof(problem), "MAX_OUTPUT must be a size like 8Mi");
    else if (!tpl || !*tpl)
        snprintf(problem, sizeof(problem),
                 "template has no TEMPLATE: set it (mxu catalog deploy template --env "
                 "TEMPLATE='Hello {{name}}')");
    else if (parse(tpl) < 0)
        ntoks = 0;
    if (problem[0])
        mxu_log(MXU_ERROR, "%s", problem);
    return 0;
}

/* ---- rendering ------------------------------------------------------------- */

typedef struct render {
    mxu_res *res;
    json_t *stack[MAX_NESTING + 1];
    int depth;
    const token *missing;  /* first absent name, for STRICT */
    size_t written, steps; /* against max_output */
    int over;              /* stopped: over max_output (or out of memory) */
} render;

/* Append to the rendering, or stop it for good. */
static void out(render *r, const char *s, size_t n)
{
    if (r->over || n == 0)
        return;
    if (n > max_output - r->written || mxu_res_write(r->res, s, n) < 0) {
        r->over = 1;
        return;
    }
    r->written += n;
}

/* One step of a dotted path inside a value: a key of an object, an index of
 * an array. */
static json_t *step(json_t *v, const char *k, size_t n)
{
    char key[512];
    if (n >= sizeof(key))
        return NULL;
    memcpy(key, k, n);
    key[n] = '\0';
    if (json_is_object(v))
        return json_object_get(v, key);
    if (json_is_array(v) && n > 0 && n < 10 && strspn(key, "0123456789") == n)
        return json_array_get(v, strtoul(key, NULL, 10));
    return NULL;
}

static json_t *lookup(render *r, const token *t)
{
    if (t->len == 1 && t->s[0] == '.')
        return r->stack[r->depth];
    size_t first = strcspn(t->s, ".");
    if (first > t->len)
        first = t->len;
    json_t *v = NULL;
    for (int d = r->depth; d >= 0 && !v; d--)
        v = step(r->stack[d], t->s, first);
    for (size_t at = first; v && at < t->len;) {
        at++; /* the '.' */
        size_t n = 0;
        while (at + n < t->len && t->s[at + n] != '.')
            n++;
        v = step(v, t->s + at, n);
        at += n;
    }
    if (!v && !r->missing)
        r->missing = t;
    return v;
}

static void write_escaped(render *r, const char *s, size_t n)
{
    size_t from = 0;
    for (size_t i = 0; i < n; i++) {
        const char *rep = NULL;
        switch (s[i]) {
        case '&':
            rep = "&amp;";
            break;
        case '<':
            rep = "&lt;";
            break;
        case '>':
            rep = "&gt;";
            break;
        case '"':
            rep = "&quot;";
            break;
        case '\'':
            rep = "&#39;";
            break;
        }
        if (rep) {
            out(r, s + from, i - from);
            out(r, rep, strlen(rep));
            from = i + 1;
        }
    }
    out(r, s + from, n - from);
}

static void write_value(render *r, json_t *v, int escape)
{
    if (!v || json_is_null(v))
        return;
    char *owned = NULL;
    const char *s;
    size_t n;
    if (json_is_string(v)) {
        s = json_string_value(v);
        n = json_string_length(v);
    } else {
        owned = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
        s = owned ? owned : "";
        n = strlen(s);
    }
    if (escape)
        write_escaped(r, s, n);
    else
        out(r, s, n);
    free(owned);
}

static int truthy(json_t *v)
{
    if (!v || json_is_null(v) || json_is_false(v))
        return 0;
    if (json_is_string(v))
        return json_string_length(v) > 0;
    if (json_is_array(v))
        return json_array_size(v) > 0;
    return 1;
}

/* One step of the budget: every token, and every pass of a section even
 * when it holds nothing ({{#a}}{{/a}}). 0, or -1 when it is spent. */
static int spend(render *r)
{
    if (r->over || ++r->steps > max_output) {
        r->over = 1;
        return -1;
    }
    return 0;
}

static void run(render *r, size_t from, size_t to)
{
    if (spend(r) < 0)
        return;
    for (size_t i = from; i < to && spend(r) == 0; i++) {
        const token *t = &toks[i];
        switch (t->kind) {
        case T_TEXT:
            out(r, t->s, t->len);
            break;
        case T_VAR:
        case T_RAW:
            write_value(r, lookup(r, t), t->kind == T_VAR && escape_html);
            break;
        case T_SECTION:
        case T_INVERTED: {
            json_t *v = lookup(r, t);
            /* An absent section name is not a STRICT error: sections are how
             * templates test for optional data. */
            if (!v && r->missing == t)
                r->missing = NULL;
            if (t->kind == T_INVERTED) {
                if (!truthy(v))
                    run(r, i + 1, t->end);
            } else if (truthy(v) && r->depth < MAX_NESTING) {
                if (json_is_array(v)) {
                    size_t k;
                    json_t *el;
                    json_array_foreach(v, k, el)
                    {
                        r->stack[++r->depth] = el;
                        run(r, i + 1, t->end);
                        r->depth--;
                    }
                } else {
                    r->stack[++r->depth] = v;
                    run(r, i + 1, t->end);
                    r->depth--;
                }
            }
            i = t->end; /* past the section's T_END */
            break;
        }
        case T_END:
            break;
        }
    }
}

int mxu_handle(mxu_req *req, mxu_res *res)
{
    if (problem[0])
        return mxu_res_error(res, 500, "not_configured", "%s", problem);
    size_t len;
    const char *body = mxu_req_body(req, &len);
    json_t *doc;
    if (len == 0) {
        doc = json_object(); /* a template with no placeholders needs no data */
    } else {
        json_error_t je;
        doc = json_loadb(body, len, JSON_DECODE_ANY, &je);
        if (!doc)
            return mxu_res_error(res, 400, "invalid_json",
                                 "the body is not JSON: line %d column %d: %s", je.line, je.column,
                                 je.text);
    }
    render r = {.res = res, .stack = {doc}};
    run(&r, 0, ntoks);
    json_decref(doc);
    if (r.over)
        return mxu_res_error(res, 413, "output_too_large",
                             "the rendering is over MAX_OUTPUT (%zu bytes or steps)", max_output);
    if (strict && r.missing) {
        mxu_res_set_body(res, NULL, 0);
        return mxu_res_error(res, 422, "missing_value",
                             "the body has no value for {{%.*s}} (line %d)", (int)r.missing->len,
                             r.missing->s, r.missing->line);
    }
    mxu_res_header(res, "Content-Type", content_type);
    return 0;
}
