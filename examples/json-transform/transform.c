/*
 * json-transform — reads a JSON object from the request body and answers
 * with the same object, every string value upper-cased (ASCII letters; keys
 * and escape sequences untouched) and a "count" field holding the number of
 * top-level fields (an input "count" field is replaced). Invalid input gets a
 * 400 with {"error": ..., "offset": N}.
 *
 *     curl -d '{"name": "ada", "tags": ["x"]}' .../fn/json-transform
 *     {"name":"ADA","tags":["X"],"count":2}
 *
 * A small recursive-descent validator, written here so the example needs no
 * library: it checks the full JSON grammar (RFC 8259) except that it does
 * not validate UTF-8, and it limits nesting depth. Output is built in the
 * invocation's arena (mxu_alloc) and sent with one mxu_res_set_body().
 */
#include <mxu/fn.h>

#include <stdio.h>
#include <string.h>

#define MAX_DEPTH 64

typedef struct parser {
    const char *start, *p, *end;
    char *out; /* room for the input's length plus the count field */
    size_t len;
    const char *err;
} parser;

static void emit(parser *ps, char c)
{
    ps->out[ps->len++] = c;
}

static int fail(parser *ps, const char *msg)
{
    if (!ps->err)
        ps->err = msg;
    return -1;
}

static void skip_ws(parser *ps)
{
    while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r'))
        ps->p++;
}

static int is_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* A string, copied; letters upper-cased when `upper` (escapes never are, so
 * "\n" stays a newline and "\u00e9" stays valid). */
static int string(parser *ps, int upper)
{
    if (ps->p >= ps->end || *ps->p != '"')
        return fail(ps, "expected a string");
    emit(ps, *ps->p++);
    while (ps->p < ps->end) {
        unsigned char c = (unsigned char)*ps->p++;
        if (c == '"') {
            emit(ps, '"');
            return 0;
        }
        if (c < 0x20)
            return fail(ps, "control character in a string");
        if (c == '\\') {
            if (ps->p >= ps->end)
                break;
            char e = *ps->p++;
            emit(ps, '\\');
            emit(ps, e);
            if (e == 'u') {
                for (int i = 0; i < 4; i++) {
                    if (ps->p >= ps->end || !is_hex(*ps->p))
                        return fail(ps, "bad \\u escape");
                    emit(ps, *ps->p++);
                }
            } else if (!strchr("\"\\/bfnrt", e) || e == '\0') {
                return fail(ps, "bad escape");
            }
            continue;
        }
        emit(ps, (char)(upper && c >= 'a' && c <= 'z' ? c - 'a' + 'A' : c));
    }
    return fail(ps, "unterminated string");
}

static int digits(parser *ps)
{
    const char *from = ps->p;
    while (ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9')
        emit(ps, *ps->p++);
    return ps->p > from ? 0 : fail(ps, "expected a digit");
}

static int number(parser *ps)
{
    if (*ps->p == '-')
        emit(ps, *ps->p++);
    if (ps->p < ps->end && *ps->p == '0')
        emit(ps, *ps->p++);
    else if (digits(ps) < 0)
        return -1;
    if (ps->p < ps->end && *ps->p == '.') {
        emit(ps, *ps->p++);
        if (digits(ps) < 0)
            return -1;
    }
    if (ps->p < ps->end && (*ps->p == 'e' || *ps->p == 'E')) {
        emit(ps, *ps->p++);
        if (ps->p < ps->end && (*ps->p == '+' || *ps->p == '-'))
            emit(ps, *ps->p++);
        if (digits(ps) < 0)
            return -1;
    }
    return 0;
}

static int literal(parser *ps, const char *word)
{
    size_t n = strlen(word);
    if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, word, n) != 0)
        return fail(ps, "unexpected token");
    memcpy(ps->out + ps->len, word, n);
    ps->len += n;
    ps->p += n;
    return 0;
}

static int value(parser *ps, int depth);

/* An object; at depth 0 also counts the fields and appends "count". */
static int object(parser *ps, int depth)
{
    emit(ps, *ps->p++); /* '{' */
    size_t fields = 0;
    skip_ws(ps);
    if (ps->p < ps->end && *ps->p == '}') {
        ps->p++;
    } else {
        for (;;) {
            size_t rewind = ps->len; /* to drop an input "count" at the top */
            if (fields > 0)
                emit(ps, ',');
            skip_ws(ps);
            const char *key = ps->p;
            if (string(ps, 0) < 0)
                return -1;
            int is_count = depth == 0 && ps->p - key == 7 && memcmp(key, "\"count\"", 7) == 0;
            skip_ws(ps);
            if (ps->p >= ps->end || *ps->p != ':')
                return fail(ps, "expected ':'");
            emit(ps, *ps->p++);
            skip_ws(ps);
            if (value(ps, depth + 1) < 0)
                return -1;
            if (is_count)
                ps->len = rewind;
            else
                fields++;
            skip_ws(ps);
            if (ps->p < ps->end && *ps->p == ',') {
                ps->p++;
                continue;
            }
            if (ps->p < ps->end && *ps->p == '}') {
                ps->p++;
                break;
            }
            return fail(ps, "expected ',' or '}'");
        }
    }
    if (depth == 0) {
        char count[40];
        int n = snprintf(count, sizeof(count), "%s\"count\":%zu", fields ? "," : "", fields);
        memcpy(ps->out + ps->len, count, (size_t)n);
        ps->len += (size_t)n;
    }
    emit(ps, '}');
    return 0;
}

static int array(parser *ps, int depth)
{
    emit(ps, *ps->p++); /* '[' */
    skip_ws(ps);
    if (ps->p < ps->end && *ps->p == ']') {
        emit(ps, *ps->p++);
        return 0;
    }
    for (;;) {
        skip_ws(ps);
        if (value(ps, depth + 1) < 0)
            return -1;
        skip_ws(ps);
        if (ps->p < ps->end && *ps->p == ',') {
            emit(ps, *ps->p++);
            continue;
        }
        if (ps->p < ps->end && *ps->p == ']') {
            emit(ps, *ps->p++);
            return 0;
        }
        return fail(ps, "expected ',' or ']'");
    }
}

static int value(parser *ps, int depth)
{
    if (depth > MAX_DEPTH)
        return fail(ps, "nested too deeply");
    if (ps->p >= ps->end)
        return fail(ps, "unexpected end of input");
    switch (*ps->p) {
    case '{':
        return object(ps, depth);
    case '[':
        return array(ps, depth);
    case '"':
        return string(ps, 1);
    case 't':
        return literal(ps, "true");
    case 'f':
        return literal(ps, "false");
    case 'n':
        return literal(ps, "null");
    default:
        if (*ps->p == '-' || (*ps->p >= '0' && *ps->p <= '9'))
            return number(ps);
        return fail(ps, "unexpected character");
    }
}

static int bad_request(mxu_res *res, const parser *ps)
{
    mxu_res_status(res, 400);
    mxu_res_header(res, "Content-Type", "application/json");
    /* The messages above contain no characters that need escaping. */
    mxu_res_printf(res, "{\"error\":\"%s\",\"offset\":%zu}\n", ps->err,
                   (size_t)(ps->p - ps->start));
    return 0;
}

int mxu_handle(mxu_req *req, mxu_res *res)
{
    size_t len;
    const char *body = mxu_req_body(req, &len);
    parser ps = {.start = body, .p = body, .end = body + len};
    /* Output never outgrows the input (whitespace goes, nothing is added but
     * the count field and a newline). */
    ps.out = mxu_alloc(req, len + 64);
    if (!ps.out) {
        mxu_log(MXU_ERROR, "no memory for a %zu-byte document", len);
        return 1;
    }
    skip_ws(&ps);
    if (ps.p >= ps.end || *ps.p != '{') {
        ps.err = "expected a JSON object";
        return bad_request(res, &ps);
    }
    if (object(&ps, 0) < 0)
        return bad_request(res, &ps);
    skip_ws(&ps);
    if (ps.p != ps.end) {
        ps.err = "trailing characters after the object";
        return bad_request(res, &ps);
    }
    emit(&ps, '\n');
    mxu_res_header(res, "Content-Type", "application/json");
    mxu_res_set_body(res, ps.out, ps.len);
    return 0;
}
