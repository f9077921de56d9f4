/*
 * The YAML layer every manifest kind shares (functions here, services in
 * registry-service.c): libyaml's document API, scalars checked and converted
 * one field at a time, and errors that name the file, the line and the field,
 * say what was expected and, where they can, how to fix it.
 */
#include "registry-internal.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* ---- messages ------------------------------------------------------------ */

/* Drop a trailing partial UTF-8 sequence left by truncation, so a message
 * always stays valid UTF-8 (the API puts it into JSON). */
static void utf8_trim(char *s)
{
    size_t n = strlen(s);
    size_t i = n;
    while (i > 0 && ((unsigned char)s[i - 1] & 0xC0) == 0x80 && n - i < 3)
        i--;
    if (i > 0 && ((unsigned char)s[i - 1] & 0x80)) {
        unsigned c = (unsigned char)s[i - 1];
        size_t need = (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
        if (need != n - i + 1)
            s[i - 1] = '\0';
    }
}

void reg_text_clean(char *s)
{
    size_t len = strlen(s);
    for (size_t i = 0; i < len;) {
        unsigned char c = (unsigned char)s[i];
        size_t n = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : 4;
        if (c < 0x20 || c == 0x7f || (c >= 0x80 && (i + n > len || !mxu_utf8_valid(s + i, n)))) {
            s[i++] = '?';
            continue;
        }
        i += n;
    }
}

/* "FILE:LINE: FIELD: message"; the line is left out when not known (JSON),
 * the field when there is none (empty document). Always returns -1. */
int reg_fail(const char *file, int line, const char *field, mxu_err *err, const char *fmt, ...)
{
    char msg[800];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    utf8_trim(msg);
    char where[160];
    if (line > 0)
        snprintf(where, sizeof(where), "%s:%d", file, line);
    else
        snprintf(where, sizeof(where), "%s", file);
    utf8_trim(where);
    if (field)
        mxu_err_set(err, EINVAL, "%s: %s: %s", where, field, msg);
    else
        mxu_err_set(err, EINVAL, "%s: %s", where, msg);
    if (err) {
        utf8_trim(err->msg);
        reg_text_clean(err->msg); /* values with newlines would break the line */
    }
    return -1;
}

/* A value for a message: at most ~60 bytes (cut on a character boundary),
 * control characters shown as '?', so messages stay one short line. */
const char *reg_quote(const char *s, size_t len, char *buf, size_t buflen)
{
    size_t o = 0, max = MXU_MIN(buflen - 4, (size_t)60);
    size_t i = 0;
    for (; i < len && o < max; i++) {
        unsigned char c = (unsigned char)s[i];
        buf[o++] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
    }
    if (i < len) {
        buf[o] = '\0';
        utf8_trim(buf);
        o = strlen(buf);
        memcpy(buf + o, "...", 3);
        o += 3;
    }
    buf[o] = '\0';
    utf8_trim(buf);
    return buf;
}

/* Optimal string alignment distance (Levenshtein plus transpositions), for
 * "did you mean": 'memroy' is one step from 'memory'. */
static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 32 || lb > 32)
        return 99;
    size_t d[33][33];
    for (size_t i = 0; i <= la; i++)
        d[i][0] = i;
    for (size_t j = 0; j <= lb; j++)
        d[0][j] = j;
    for (size_t i = 1; i <= la; i++) {
        for (size_t j = 1; j <= lb; j++) {
            size_t cost = a[i - 1] != b[j - 1];
            size_t v = MXU_MIN(d[i - 1][j] + 1, d[i][j - 1] + 1);
            v = MXU_MIN(v, d[i - 1][j - 1] + cost);
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1])
                v = MXU_MIN(v, d[i - 2][j - 2] + 1);
            d[i][j] = v;
        }
    }
    return d[la][lb];
}

/* " (did you mean 'memory'?)" or "" into buf. */
const char *reg_suggest(const char *word, const char *const *known, size_t n, char *buf,
                        size_t buflen)
{
    size_t best = 3, bi = n;
    for (size_t i = 0; i < n; i++) {
        size_t d = edit_distance(word, known[i]);
        if (d < best && d < strlen(known[i])) {
            best = d;
            bi = i;
        }
    }
    if (bi == n)
        buf[0] = '\0';
    else
        snprintf(buf, buflen, " (did you mean '%s'?)", known[bi]);
    return buf;
}

int reg_node_line(const yaml_node_t *n)
{
    return (int)n->start_mark.line + 1;
}

bool reg_node_is_null(const yaml_node_t *n)
{
    if (n->type != YAML_SCALAR_NODE)
        return false;
    if (n->tag && strcmp((const char *)n->tag, YAML_NULL_TAG) == 0)
        return true;
    if (n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return false;
    const char *v = (const char *)n->data.scalar.value;
    return n->data.scalar.length == 0 || strcmp(v, "~") == 0 || strcmp(v, "null") == 0 ||
           strcmp(v, "Null") == 0 || strcmp(v, "NULL") == 0;
}

const char *reg_node_what(const yaml_node_t *n)
{
    if (n->type == YAML_SEQUENCE_NODE)
        return "a list";
    if (n->type == YAML_MAPPING_NODE)
        return "a mapping";
    if (reg_node_is_null(n))
        return "nothing";
    return "a string";
}

yaml_node_t *reg_node_get(reg_yaml *p, int id)
{
    return yaml_document_get_node(p->doc, id);
}

/* A scalar as a new C string. Null, lists, mappings and embedded NULs are
 * errors naming `field`. */
int reg_y_string(reg_yaml *p, yaml_node_t *n, const char *field, char **out)
{
    if (n->type != YAML_SCALAR_NODE || reg_node_is_null(n)) {
        if (reg_node_is_null(n))
            return reg_fail(p->file, reg_node_line(n), field, p->err,
                            "has no value (write \"\" for an empty string)");
        return reg_fail(p->file, reg_node_line(n), field, p->err, "expected a string, got %s",
                        reg_node_what(n));
    }
    const char *v = (const char *)n->data.scalar.value;
    size_t len = n->data.scalar.length;
    if (memchr(v, '\0', len))
        return reg_fail(p->file, reg_node_line(n), field, p->err, "contains a NUL character");
    if (len > REG_YAML_MAX_STRING && strcmp(field, "description") != 0)
        return reg_fail(p->file, reg_node_line(n), field, p->err, "is longer than %d bytes",
                        REG_YAML_MAX_STRING);
    *out = mxu_strndup(v, len);
    return 0;
}

/* A whole number: a plain (unquoted) scalar of decimal digits. */
int reg_y_uint(reg_yaml *p, yaml_node_t *n, const char *field, uint64_t max, uint64_t *out)
{
    char qbuf[80];
    if (n->type != YAML_SCALAR_NODE || reg_node_is_null(n))
        return reg_fail(p->file, reg_node_line(n), field, p->err, "expected a whole number, got %s",
                        reg_node_what(n));
    const char *v = (const char *)n->data.scalar.value;
    size_t len = n->data.scalar.length;
    bool tagged_int = n->tag && strcmp((const char *)n->tag, YAML_INT_TAG) == 0;
    if (n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE && !tagged_int)
        return reg_fail(p->file, reg_node_line(n), field, p->err,
                        "expected a whole number, got the string '%s' (remove the quotes)",
                        QN(v, len));
    if (len > 0 && v[0] == '-')
        return reg_fail(p->file, reg_node_line(n), field, p->err, "must not be negative (got %s)",
                        QN(v, len));
    uint64_t num;
    if (memchr(v, '\0', len) || mxu_parse_u64(v, &num) < 0)
        return reg_fail(p->file, reg_node_line(n), field, p->err,
                        "expected a whole number, got '%s'", QN(v, len));
    if (num > max)
        return reg_fail(p->file, reg_node_line(n), field, p->err,
                        "%llu is above the maximum of %llu", (unsigned long long)num,
                        (unsigned long long)max);
    *out = num;
    return 0;
}

/* true or false, plain (unquoted): a quoted "true" is a string, and a
 * manifest that makes a function public should say so unambiguously. */
int reg_y_bool(reg_yaml *p, yaml_node_t *n, const char *field, bool *out)
{
    char qbuf[80];
    if (n->type != YAML_SCALAR_NODE || reg_node_is_null(n))
        return reg_fail(p->file, reg_node_line(n), field, p->err, "expected true or false, got %s",
                        reg_node_what(n));
    const char *v = (const char *)n->data.scalar.value;
    size_t len = n->data.scalar.length;
    bool plain = n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
    if (plain && len == 4 && memcmp(v, "true", 4) == 0)
        *out = true;
    else if (plain && len == 5 && memcmp(v, "false", 5) == 0)
        *out = false;
    else
        return reg_fail(p->file, reg_node_line(n), field, p->err,
                        "expected true or false, got '%s'%s", QN(v, len),
                        plain ? "" : " (remove the quotes)");
    return 0;
}

int reg_y_duration(reg_yaml *p, yaml_node_t *n, const char *field, uint64_t *out)
{
    _cleanup_free_ char *s = NULL;
    if (n->type != YAML_SCALAR_NODE)
        return reg_fail(p->file, reg_node_line(n), field, p->err,
                        "expected a duration like 30s, got %s", reg_node_what(n));
    if (reg_y_string(p, n, field, &s) < 0)
        return -1;
    mxu_err e;
    uint64_t v;
    if (mxu_parse_duration_ms(s, &v, &e) < 0)
        return reg_fail(p->file, reg_node_line(n), field, p->err, "%s", e.msg);
    *out = v;
    return 0;
}

/* A list of strings, each passed through `check` (may be NULL). */
int reg_y_string_list(reg_yaml *p, yaml_node_t *n, const char *field, size_t max,
                      const char *(*check)(const char *), char ***out, size_t *nout)
{
    char qbuf[80];
    if (n->type != YAML_SEQUENCE_NODE)
        return reg_fail(p->file, reg_node_line(n), field, p->err, "expected a list, got %s",
                        reg_node_what(n));
    size_t count = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
    if (count > max)
        return reg_fail(p->file, reg_node_line(n), field, p->err,
                        "has %zu entries; at most %zu allowed", count, max);
    char **v = mxu_calloc(count ? count : 1, sizeof(char *));
    size_t got = 0;
    for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top;
         it++) {
        yaml_node_t *item = reg_node_get(p, *it);
        const char *why;
        if (reg_y_string(p, item, field, &v[got]) < 0)
            goto fail;
        got++;
        if (check && (why = check(v[got - 1])) != NULL) {
            reg_fail(p->file, reg_node_line(item), field, p->err, "'%s' %s", Q(v[got - 1]), why);
            goto fail;
        }
    }
    *out = v;
    *nout = got;
    return 0;
fail:
    reg_strv_free(v, got);
    return -1;
}

/* Iterate a mapping's pairs with checks every mapping in a manifest shares:
 * keys are non-empty strings and appear once. Returns the key as C string
 * via `key` (borrowed from the document). */
int reg_y_map_pair(reg_yaml *p, yaml_node_t *map, yaml_node_pair_t *pair, const char *field,
                   const char **key, yaml_node_t **val)
{
    char qbuf[80];
    yaml_node_t *k = reg_node_get(p, pair->key);
    *val = reg_node_get(p, pair->value);
    if (k->type != YAML_SCALAR_NODE || reg_node_is_null(k))
        return reg_fail(p->file, reg_node_line(k), field, p->err, "keys must be strings, got %s",
                        reg_node_what(k));
    const char *ks = (const char *)k->data.scalar.value;
    size_t kl = k->data.scalar.length;
    if (memchr(ks, '\0', kl))
        return reg_fail(p->file, reg_node_line(k), field, p->err, "a key contains a NUL character");
    for (yaml_node_pair_t *q = map->data.mapping.pairs.start; q < pair; q++) {
        yaml_node_t *k2 = reg_node_get(p, q->key);
        if (k2->type == YAML_SCALAR_NODE && k2->data.scalar.length == kl &&
            memcmp(k2->data.scalar.value, ks, kl) == 0) {
            if (field)
                return reg_fail(p->file, reg_node_line(k), field, p->err,
                                "duplicate key '%s' (first on line %d)", QN(ks, kl),
                                reg_node_line(k2));
            return reg_fail(p->file, reg_node_line(k), ks, p->err,
                            "duplicate key (first on line %d)", reg_node_line(k2));
        }
    }
    *key = ks;
    return 0;
}

size_t reg_map_count(const yaml_node_t *n)
{
    return (size_t)(n->data.mapping.pairs.top - n->data.mapping.pairs.start);
}

/* `rate: 100/s` (core's mxu_parse_rate says what is accepted). */
int reg_y_rate(reg_yaml *p, yaml_node_t *n, const char *field, uint64_t *rate, uint64_t *period)
{
    _cleanup_free_ char *s = NULL;
    if (reg_y_string(p, n, field, &s) < 0)
        return -1;
    mxu_err perr;
    if (mxu_parse_rate(s, rate, period, &perr) < 0)
        return reg_fail(p->file, reg_node_line(n), field, p->err, "%s", perr.msg);
    return 0;
}

/* libyaml's own errors: "FILE:LINE:COL: problem (context at line N)". */
int reg_yaml_syntax_error(const yaml_parser_t *parser, const char *text, size_t len,
                          const char *file, mxu_err *err)
{
    size_t line = 1, col = 1;
    if (parser->error == YAML_READER_ERROR) {
        /* Reader errors carry a byte offset, not a mark. */
        for (size_t i = 0; i < parser->problem_offset && i < len; i++) {
            if (text[i] == '\n')
                line++, col = 1;
            else
                col++;
        }
    } else {
        line = parser->problem_mark.line + 1;
        col = parser->problem_mark.column + 1;
    }
    const char *problem = parser->problem ? parser->problem : "cannot parse YAML";
    if (parser->error == YAML_MEMORY_ERROR)
        problem = "out of memory";
    if (parser->context && parser->error != YAML_READER_ERROR)
        mxu_err_set(err, EINVAL, "%s:%zu:%zu: %s (%s at line %zu)", file, line, col, problem,
                    parser->context, (size_t)parser->context_mark.line + 1);
    else
        mxu_err_set(err, EINVAL, "%s:%zu:%zu: %s", file, line, col, problem);
    if (err)
        reg_text_clean(err->msg);
    return -1;
}

void reg_strv_free(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}
