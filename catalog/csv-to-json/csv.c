/*
 * csv-to-json — a catalogue block (docs/catalog.md): reads CSV as RFC 4180
 * describes it (fields separated by DELIMITER, records by CRLF or LF; a field
 * in double quotes may hold delimiters, line breaks and "" for a quote) and
 * answers a JSON array: of objects keyed by the header row (HEADER=true), or
 * of arrays of strings.
 *
 * Lenient where RFC 4180 is and common files need it: LF alone ends a record,
 * the last record may lack a line break, a UTF-8 byte-order mark is skipped,
 * blank lines are skipped, and a quote in the middle of an unquoted field is
 * a literal quote. Strict where silence would corrupt data: text after a
 * closing quote, a quote never closed, a record with another number of fields
 * than the header, duplicate header names and bytes that are not UTF-8 are
 * errors naming the line.
 *
 * The output is written field by field into one buffer (each string encoded
 * by jansson, which also checks its UTF-8), not built as a jansson tree: a
 * tree for a few MiB of CSV would take ten times that in memory.
 */
#include <mxu/fn.h>

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_FIELDS 4096

static const char *setting(mxu_req *req, const char *query, const char *env, const char *dflt)
{
    const char *v = mxu_req_query_param(req, query);
    if (!v || !*v)
        v = mxu_config(env);
    return v && *v ? v : dflt;
}

/* One field: a slice of the body when it needed no unquoting, else a copy in
 * the arena. */
typedef struct field {
    const char *s;
    size_t len;
} field;

typedef struct reader {
    const char *p, *end;
    char delim;
    size_t line;     /* where the reader is, 1-based */
    size_t rec_line; /* where the last record read began */
    mxu_req *req;
    const char *err;
} reader;

/* Read one record into f[]; returns the number of fields, 0 at the end of
 * input, -1 on an error (r->err). */
static int read_record(reader *r, field *f)
{
    /* skip blank lines */
    while (r->p < r->end && (*r->p == '\n' || *r->p == '\r')) {
        if (*r->p == '\n')
            r->line++;
        r->p++;
    }
    if (r->p >= r->end)
        return 0;
    r->rec_line = r->line;
    int n = 0;
    for (;;) {
        if (n == MAX_FIELDS) {
            r->err = "more than 4096 fields in a record";
            return -1;
        }
        if (r->p < r->end && *r->p == '"') {
            /* quoted: find the closing quote, unescaping "" into a copy */
            const char *start = ++r->p;
            size_t quotes = 0;
            const char *q = start;
            for (;;) {
                q = memchr(q, '"', (size_t)(r->end - q));
                if (!q) {
                    r->err = "a quoted field is never closed";
                    return -1;
                }
                if (q + 1 < r->end && q[1] == '"') {
                    quotes++;
                    q += 2;
                    continue;
                }
                break;
            }
            size_t raw = (size_t)(q - start);
            for (const char *c = start; c < q; c++)
                r->line += *c == '\n';
            if (quotes) {
                char *copy = mxu_alloc(r->req, raw - quotes + 1);
                if (!copy) {
                    r->err = "out of memory";
                    return -1;
                }
                size_t o = 0;
                for (const char *c = start; c < q; c++) {
                    copy[o++] = *c;
                    if (*c == '"')
                        c++;
                }
                f[n++] = (field){copy, o};
            } else {
                f[n++] = (field){start, raw};
            }
            r->p = q + 1;
            if (r->p < r->end && *r->p != r->delim && *r->p != '\n' && *r->p != '\r') {
                r->err = "text after a closing quote (a quote inside a field must be doubled)";
                return -1;
            }
        } else {
            const char *start = r->p;
            while (r->p < r->end && *r->p != r->delim && *r->p != '\n' && *r->p != '\r')
                r->p++;
            f[n++] = (field){start, (size_t)(r->p - start)};
        }
        if (r->p < r->end && *r->p == r->delim) {
            r->p++;
            continue;
        }
        /* end of record: CRLF, LF, a lone CR, or the end of input */
        if (r->p < r->end && *r->p == '\r')
            r->p++;
        if (r->p < r->end && *r->p == '\n')
            r->p++;
        r->line++;
        return n;
    }
}

/* Append one field as a JSON value. Returns -1 when it is not UTF-8. */
static int emit_field(mxu_res *res, const field *f, int infer)
{
    if (infer) {
        if (f->len == 0)
            return mxu_res_write(res, "null", 4), 0;
        if ((f->len == 4 && memcmp(f->s, "true", 4) == 0) ||
            (f->len == 5 && memcmp(f->s, "false", 5) == 0))
            return mxu_res_write(res, f->s, f->len), 0;
        /* A number only when it reads back as exactly this JSON number:
         * "007" or "1e999" or "0x10" stay strings, and so does an integer
         * outside 64 bits, which jansson (so json-pick, json-validate and
         * template after this block) refuses as "too big". */
        if (f->len < 64) {
            json_error_t je;
            json_t *num = json_loadb(f->s, f->len, JSON_DECODE_ANY, &je);
            int is_num = num && json_is_number(num) &&
                         !(f->len > 1 && f->s[0] == '0' && f->s[1] >= '0' && f->s[1] <= '9');
            int plain = f->s[0] != ' ' && f->s[f->len - 1] != ' ';
            json_decref(num);
            if (is_num && plain)
                return mxu_res_write(res, f->s, f->len), 0;
        }
    }
    json_t *s = json_stringn(f->s, f->len);
    if (!s)
        return -1;
    char buf[256];
    size_t need = json_dumpb(s, buf, sizeof(buf), JSON_ENCODE_ANY);
    if (need <= sizeof(buf)) {
        mxu_res_write(res, buf, need);
    } else {
        char *big = malloc(need);
        if (big) {
            json_dumpb(s, big, need, JSON_ENCODE_ANY);
            mxu_res_write(res, big, need);
            free(big);
        }
    }
    json_decref(s);
    return 0;
}

int mxu_handle(mxu_req *req, mxu_res *res)
{
    const char *hdr = setting(req, "header", "HEADER", "true");
    int header = strcmp(hdr, "true") == 0 || strcmp(hdr, "1") == 0;
    if (!header && strcmp(hdr, "false") != 0 && strcmp(hdr, "0") != 0)
        return mxu_res_error(res, 400, "invalid_setting", "header must be true or false");
    const char *d = setting(req, "delimiter", "DELIMITER", ",");
    char delim = strcmp(d, "tab") == 0 ? '\t' : d[0];
    if ((strlen(d) != 1 && strcmp(d, "tab") != 0) || delim == '"' || delim == '\n' || delim == '\r')
        return mxu_res_error(res, 400, "invalid_setting",
                             "delimiter must be one character (or tab), not a "
                             "quote or line break");
    const char *types = setting(req, "types", "TYPES", "string");
    int infer = strcmp(types, "infer") == 0;
    if (!infer && strcmp(types, "string") != 0)
        return mxu_res_error(res, 400, "invalid_setting", "types must be string or infer");

    size_t len;
    const char *body = mxu_req_body(req, &len);
    reader r = {.p = body, .end = body + len, .delim = delim, .line = 1, .req = req};
    if (len >= 3 && memcmp(body, "\xEF\xBB\xBF", 3) == 0)
        r.p += 3;
    field *f = mxu_alloc(req, MAX_FIELDS * sizeof(*f));
    field *names = header ? mxu_alloc(req, MAX_FIELDS * sizeof(*names)) : NULL;
    if (!f || (header && !names))
        return mxu_res_error(res, 500, "no_memory", "out of memory");
    int nnames = 0;
    if (header) {
        nnames = read_record(&r, names);
        size_t line = r.rec_line;
        if (nnames < 0)
            return mxu_res_error(res, 400, "invalid_csv", "line %zu: %s", r.line, r.err);
        if (nnames == 0)
            return mxu_res_error(res, 400, "invalid_csv", "no header row: the body is empty");
        /* A NUL in a name would be a "\u0000" key: valid JSON, but one
         * jansson (and so the catalogue blocks after this one) refuses. */
        for (int i = 0; i < nnames; i++)
            if (memchr(names[i].s, '\0', names[i].len))
                return mxu_res_error(res, 422, "invalid_header",
                                     "line %zu: header field %d holds a NUL byte", line, i + 1);
        for (int i = 0; i < nnames; i++)
            for (int j = 0; j < i; j++)
                if (names[i].len == names[j].len &&
                    memcmp(names[i].s, names[j].s, names[i].len) == 0)
                    return mxu_res_error(res, 422, "duplicate_header",
                                         "line %zu: header fields %d and %d have the same name",
                                         line, j + 1, i + 1);
    }
    mxu_res_header(res, "Content-Type", "application/json");
    mxu_res_write(res, "[", 1);
    size_t records = 0;
    for (;;) {
        int n = read_record(&r, f);
        size_t line = r.rec_line;
        if (n < 0)
            return mxu_res_error(res, 400, "invalid_csv", "line %zu: %s", r.line, r.err);
        if (n == 0)
            break;
        if (header && n != nnames)
            return mxu_res_error(res, 422, "field_count",
                                 "line %zu has %d field%s, the header has %d", line, n,
                                 n == 1 ? "" : "s", nnames);
        mxu_res_write(res, records ? ",\n" : "\n", records ? 2 : 1);
        mxu_res_write(res, header ? "{" : "[", 1);
        for (int i = 0; i < n; i++) {
            if (i)
                mxu_res_write(res, ",", 1);
            if (header) {
                if (emit_field(res, &names[i], 0) < 0)
                    return mxu_res_error(res, 400, "invalid_utf8", "the header is not UTF-8");
                mxu_res_write(res, ":", 1);
            }
            if (emit_field(res, &f[i], infer) < 0)
                return mxu_res_error(res, 400, "invalid_utf8", "line %zu, field %d is not UTF-8",
                                     line, i + 1);
        }
        mxu_res_write(res, header ? "}" : "]", 1);
        records++;
    }
    mxu_res_write(res, records ? "\n]\n" : "]\n", records ? 3 : 2);
    return 0;
}
