/*
 * libFuzzer target for the catalogue blocks (catalog/): each input picks a
 * block and its settings, and the rest is the request.
 *
 *   byte 0      the block (mod 9)
 *   bytes 1-4   settings, as a little-endian number read in mixed radix: each
 *               choice takes `n` values (choose()); which setting, which
 *               value, configuration or query parameter, injected failures,
 *               round trips
 *   then        the block's strings (json-pick's FIELDS, json-validate's
 *               SCHEMA, template's TEMPLATE, a delimiter, a key...), each up
 *               to a NUL, and a raw query fragment when chosen
 *   the rest    the request body (at most 64 KiB)
 *
 * The block runs against the SDK's own request and response code with an
 * in-memory node (fuzz-catalog-sdk.c), one instance per input: its
 * configuration, mxu_init(), one request (two for round trips).
 *
 * Beyond crashes, leaks and undefined behaviour, it aborts when:
 *   - a status is outside 100..599;
 *   - an answer of 400 or more is not application/json of the shape
 *     {"error": {"code": "...", "message": "..."}};
 *   - a success of json-pick, json-validate, csv-to-json, kv-counter,
 *     queue-publish or hash's JSON output is not JSON (of the promised shape);
 *   - json-validate's 200 is not the body it was given ({"valid":true} with
 *     OUTPUT=result);
 *   - base64 encode → decode, compress → decompress, or a hash digest →
 *     verify does not give back the input;
 *   - compress's or template's output passes MAX_OUTPUT, or a compress
 *     round trip answers 413 for an input within it;
 *   - kv-counter's answer is not the stored value plus the increments of
 *     racing writers plus `by`; queue-publish's message is not the body.
 */
#include "fuzz-catalog.h"

#include "unit/frame.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define BODY_MAX (64u << 10)

/* ---- one input ------------------------------------------------------------------- */

typedef struct fz {
    const char *block;
    uint32_t flags;         /* what choose() has not used yet */
    const uint8_t *p, *end; /* the strings, then the body */
    char *strings[16];      /* owned; freed after the input */
    size_t nstrings;
    char *query;
    size_t qlen, qcap;
} fz;

/* A choice among n values, from the settings bytes. */
static unsigned choose(fz *z, unsigned n)
{
    unsigned v = z->flags % n;
    z->flags /= n;
    return v;
}

static char *keep(fz *z, char *s)
{
    if (!s || z->nstrings == sizeof(z->strings) / sizeof(z->strings[0]))
        abort();
    z->strings[z->nstrings++] = s;
    return s;
}

/* The next string of the input: its bytes up to a NUL (or the end). */
static const char *take(fz *z)
{
    const uint8_t *nul = memchr(z->p, '\0', (size_t)(z->end - z->p));
    size_t n = nul ? (size_t)(nul - z->p) : (size_t)(z->end - z->p);
    char *s = keep(z, strndup((const char *)z->p, n));
    z->p += n + (nul != NULL);
    return s;
}

static void q_append(fz *z, const char *s, size_t n)
{
    if (z->qlen + n + 1 > z->qcap) {
        size_t cap = (z->qlen + n + 1) * 2;
        char *q = realloc(z->query, cap);
        if (!q)
            abort();
        z->query = q;
        z->qcap = cap;
    }
    memcpy(z->query + z->qlen, s, n);
    z->qlen += n;
    z->query[z->qlen] = '\0';
}

/* Add name=value to the query, the value percent-encoded as a client would
 * (every byte but the unreserved ones). */
static void q_param(fz *z, const char *name, const char *value)
{
    if (z->qlen)
        q_append(z, "&", 1);
    q_append(z, name, strlen(name));
    q_append(z, "=", 1);
    for (const unsigned char *v = (const unsigned char *)value; *v; v++) {
        if ((*v >= 'a' && *v <= 'z') || (*v >= 'A' && *v <= 'Z') || (*v >= '0' && *v <= '9') ||
            strchr("-._~", *v)) {
            q_append(z, (const char *)v, 1);
        } else {
            char esc[4];
            snprintf(esc, sizeof(esc), "%%%02X", *v);
            q_append(z, esc, 3);
        }
    }
}

enum where { UNSET, CONFIG, QUERY };

/* A setting, from the block's configuration or its query (or neither). */
static void setting(fz *z, enum where w, const char *qname, const char *env, const char *value)
{
    if (!value || w == UNSET)
        return;
    if (w == QUERY && qname)
        q_param(z, qname, value);
    else if (env)
        fc_config(env, value);
}

/* A raw fragment of the query, to exercise the SDK's decoding too ("%zz",
 * "a&&=b", "%00"...), when chosen; before the block's own parameters, so
 * the first-one-wins rule gives it the say when it names one of them. */
static void raw_query(fz *z)
{
    if (choose(z, 4) == 0)
        q_append(z, take(z), strlen(z->strings[z->nstrings - 1]));
}

static fc_request request(fz *z)
{
    size_t n = (size_t)(z->end - z->p);
    return (fc_request){.query = z->query, .body = z->p, .len = n > BODY_MAX ? BODY_MAX : n};
}

/* ---- oracles ---------------------------------------------------------------------- */

static void __attribute__((noreturn)) die(fz *z, const char *what, const fc_answer *a)
{
    fprintf(stderr, "fuzz-catalog: %s: %s\n", z->block, what);
    if (a)
        fprintf(stderr, "  status %d, Content-Type %s, body (%zu bytes): %.*s\n", a->status,
                a->ctype ? a->ctype : "(none)", a->len, a->len > 2000 ? 2000 : (int)a->len,
                (const char *)a->body);
    abort();
}

/* Parse an answer as JSON, the way the blocks after it in a service would
 * (jansson; NUL bytes allowed in string values, never in keys). */
static json_t *load(const fc_answer *a)
{
    return json_loadb((const char *)a->body, a->len, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
}

static int is_json_type(const fc_answer *a)
{
    return a->ctype && strncmp(a->ctype, "application/json", 16) == 0;
}

/* What holds for every answer of every block. */
static void check_answer(fz *z, const fc_answer *a)
{
    if (a->status < 100 || a->status > 599)
        die(z, "status out of range", a);
    if (a->status < 400)
        return;
    if (!is_json_type(a))
        die(z, "an error that is not application/json", a);
    json_t *j = load(a);
    json_t *e = json_object_get(j, "error");
    if (!json_is_object(e) || !json_is_string(json_object_get(e, "code")) ||
        !json_is_string(json_object_get(e, "message")))
        die(z, "an error that is not {\"error\": {\"code\", \"message\"}}", a);
    json_decref(j);
}

/* A success that must be JSON: returns it (the caller decrefs). */
static json_t *check_json(fz *z, const fc_answer *a)
{
    if (!is_json_type(a))
        die(z, "a JSON answer without Content-Type application/json", a);
    json_t *j = load(a);
    if (!j)
        die(z, "a JSON answer that is not JSON", a);
    return j;
}

static int same_bytes(const fc_answer *a, const void *p, size_t n)
{
    return a->len == n && (n == 0 || memcmp(a->body, p, n) == 0);
}

/* One invocation of a block as a cold instance would take it: its init,
 * the request the input makes, the answer's general checks. Returns the
 * request, for checks of the answer against it. */
static fc_request invoke_block(fz *z, int (*init)(void), int (*handle)(mxu_req *, mxu_res *),
                               fc_answer *a)
{
    fc_init(init);
    fc_request r = request(z);
    fc_invoke(handle, &r, a);
    check_answer(z, a);
    return r;
}

/* ---- the blocks --------------------------------------------------------------------- */

static void run_json_pick(fz *z)
{
    static const char *const missing[] = {NULL, "omit", "null", "error", "fail"};
    static const char *const each[] = {NULL, "true", "1", "false", "yes"};
    const char *fields = take(z);
    enum where wf = choose(z, 2) ? QUERY : CONFIG;
    enum where wm = choose(z, 2) ? QUERY : CONFIG;
    enum where we = choose(z, 2) ? QUERY : CONFIG;
    const char *m = missing[choose(z, 5)], *e = each[choose(z, 5)];
    raw_query(z);
    setting(z, wf, "fields", "FIELDS", fields);
    setting(z, wm, "missing", "MISSING", m);
    setting(z, we, "each", "EACH", e);
    fc_answer a;
    invoke_block(z, NULL, catalog_json_pick_handle, &a);
    if (a.status == 200) {
        json_t *j = check_json(z, &a);
        if (!json_is_object(j) && !json_is_array(j))
            die(z, "a pick that is neither an object nor an array", &a);
        json_decref(j);
    }
    fc_answer_free(&a);
}

static void run_json_validate(fz *z)
{
    const char *schema = take(z);
    int result = choose(z, 2);
    fc_config("SCHEMA", schema);
    if (result)
        fc_config("OUTPUT", "result");
    fc_answer a;
    fc_request r = invoke_block(z, catalog_json_validate_init, catalog_json_validate_handle, &a);
    if (a.status == 200) {
        json_decref(check_json(z, &a));
        if (result ? !same_bytes(&a, "{\"valid\":true}\n", 15) : !same_bytes(&a, r.body, r.len))
            die(z, "a valid body not answered as it came (or {\"valid\":true})", &a);
    } else if (a.status == 422) {
        json_t *j = load(&a);
        json_t *v = json_object_get(j, "violations");
        if (!json_is_array(v) || json_array_size(v) == 0)
            die(z, "a 422 without violations", &a);
        json_decref(j);
    }
    fc_answer_free(&a);
    catalog_json_validate_reset();
}

static void run_template(fz *z)
{
    static const char *const escape[] = {NULL, "html", "none"};
    static const char *const strict[] = {NULL, "true", "1", "false"};
    static const char *const ctype[] = {NULL, "text/markdown", "text/html\x01"};
    /* Never the default (8Mi): a bomb of nested sections stops early. */
    static const char *const max_output[] = {"64Ki", "1Ki", "100", "x"};
    static const size_t max_bytes[] = {64 << 10, 1 << 10, 100, 0};
    const char *tpl = take(z);
    fc_config("TEMPLATE", tpl);
    setting(z, CONFIG, NULL, "ESCAPE", escape[choose(z, 3)]);
    setting(z, CONFIG, NULL, "STRICT", strict[choose(z, 4)]);
    setting(z, CONFIG, NULL, "CONTENT_TYPE", ctype[choose(z, 3)]);
    unsigned mx = choose(z, 4);
    fc_config("MAX_OUTPUT", max_output[mx]);
    fc_answer a;
    invoke_block(z, catalog_template_init, catalog_template_handle, &a);
    if (a.status == 200 && a.len > max_bytes[mx])
        die(z, "a rendering over MAX_OUTPUT", &a);
    fc_answer_free(&a);
    catalog_template_reset();
}

static void run_hash(fz *z)
{
    static const char *const alg[] = {NULL, "sha256", "sha512", "blake2b", "md5"};
    static const char *const enc[] = {NULL, "hex", "base64", "base64url", "base32"};
    static const char *const mode[] = {NULL, "digest", "verify", "sign"};
    static const char *const output[] = {NULL, "text", "json", "header", "xml"};
    static const char *const header[] = {NULL, "X-Sig", "Bad Header"};
    const char *key = take(z), *sig = take(z);
    const char *a_ = alg[choose(z, 5)], *e = enc[choose(z, 5)];
    const char *hdr = header[choose(z, 3)];
    int roundtrip = choose(z, 3) == 0;
    enum where w = roundtrip || choose(z, 2) ? CONFIG : QUERY;
    const char *m = roundtrip ? "digest" : mode[choose(z, 4)];
    const char *o = roundtrip ? NULL : output[choose(z, 5)];
    unsigned sig_at = roundtrip ? 0 : choose(z, 3); /* none, query, header */
    if (!roundtrip)
        raw_query(z);
    setting(z, w, "alg", "ALGORITHM", a_);
    setting(z, w, "enc", "ENCODING", e);
    setting(z, w, "output", "OUTPUT", o);
    setting(z, CONFIG, NULL, "MODE", m);
    setting(z, CONFIG, NULL, "HEADER", hdr);
    if (*key)
        fc_config("KEY", key);
    if (sig_at == 1)
        q_param(z, "signature", sig);
    const char *names[2] = {"Content-Type", hdr ? hdr : "X-Signature"};
    const char *values[2] = {"application/x-fuzz", sig};
    fc_init(catalog_hash_init);
    fc_request r = request(z);
    r.hdr_names = names;
    r.hdr_values = values;
    r.nhdrs = sig_at == 2 ? 2 : 1;
    fc_answer a;
    fc_invoke(catalog_hash_handle, &r, &a);
    check_answer(z, &a);
    if (a.status == 200 && a.ctype && strcmp(a.ctype, "application/json") == 0)
        json_decref(check_json(z, &a));
    if (roundtrip && a.status == 200) {
        /* An instance with the same settings and MODE=verify must accept
         * the digest this one gave, and pass the body on. */
        if (a.len < 2 || a.body[a.len - 1] != '\n')
            die(z, "a text digest that is not one line", &a);
        a.body[a.len - 1] = '\0';
        fc_reset();
        setting(z, CONFIG, NULL, "ALGORITHM", a_);
        setting(z, CONFIG, NULL, "ENCODING", e);
        setting(z, CONFIG, NULL, "HEADER", hdr);
        if (*key)
            fc_config("KEY", key);
        fc_config("MODE", "verify");
        q_param(z, "signature", (const char *)a.body);
        fc_init(catalog_hash_init);
        r.query = z->query;
        fc_answer v;
        fc_invoke(catalog_hash_handle, &r, &v);
        check_answer(z, &v);
        if (v.status != 200 || !same_bytes(&v, r.body, r.len))
            die(z, "verifying the digest it gave failed", &v);
        fc_answer_free(&v);
    }
    fc_answer_free(&a);
}

static void run_compress(fz *z)
{
    static const char *const op[] = {NULL, "compress", "decompress", "zip"};
    static const char *const format[] = {NULL, "gzip", "zlib", "deflate", "auto", "lz4"};
    static const char *const level[] = {NULL, "1", "6", "9", "0", "12"};
    /* Low: a bomb inflates to these at most, quickly; "8Gi" and "x" are
     * malformed (500 not_configured). */
    static const char *const max_output[] = {"64Ki", "1Ki", "256Ki", "100", "8Gi", "x"};
    static const size_t max_bytes[] = {64 << 10, 1 << 10, 256 << 10, 100, 0, 0};
    unsigned roundtrip = choose(z, 3); /* no; through the same format; through auto */
    const char *o = roundtrip ? "compress" : op[choose(z, 4)];
    const char *f = format[choose(z, 6)];
    const char *l = level[choose(z, 6)];
    unsigned mx = choose(z, 6);
    enum where w = roundtrip || choose(z, 2) ? CONFIG : QUERY;
    int ctype = choose(z, 2);
    if (!roundtrip)
        raw_query(z);
    setting(z, w, "op", "MODE", o);
    setting(z, w, "format", "FORMAT", f);
    setting(z, w, "level", "LEVEL", l);
    fc_config("MAX_OUTPUT", max_output[mx]);
    if (ctype)
        fc_config("CONTENT_TYPE", "text/plain");
    fc_answer a;
    fc_request r = invoke_block(z, NULL, catalog_compress_handle, &a);
    if (a.status == 200 && a.len > max_bytes[mx])
        die(z, "output over MAX_OUTPUT", &a);
    if (roundtrip && a.status == 200) {
        /* A new instance decompresses what this one compressed. */
        const char *fmt = f ? f : "gzip";
        fc_reset();
        fc_config("MODE", "decompress");
        fc_config("FORMAT", roundtrip == 2 && strcmp(fmt, "deflate") != 0 ? "auto" : fmt);
        fc_config("MAX_OUTPUT", max_output[mx]);
        fc_init(NULL);
        fc_request r2 = {.body = a.body, .len = a.len};
        fc_answer d;
        fc_invoke(catalog_compress_handle, &r2, &d);
        check_answer(z, &d);
        if (d.status == 413 ? r.len <= max_bytes[mx]
                            : !(d.status == 200 && same_bytes(&d, r.body, r.len)))
            die(z, "decompressing what it compressed did not give the input back", &d);
        fc_answer_free(&d);
    }
    fc_answer_free(&a);
}

static void run_csv(fz *z)
{
    static const char *const header[] = {NULL, "true", "false", "1", "0", "yes"};
    static const char *const types[] = {NULL, "string", "infer", "auto"};
    const char *delim = take(z);
    const char *h = header[choose(z, 6)];
    const char *t = types[choose(z, 4)];
    unsigned d = choose(z, 4);
    const char *dv = d == 0 ? NULL : d == 1 ? delim : d == 2 ? "tab" : ";";
    enum where w = choose(z, 2) ? QUERY : CONFIG;
    raw_query(z);
    setting(z, w, "header", "HEADER", h);
    setting(z, w, "types", "TYPES", t);
    setting(z, w, "delimiter", "DELIMITER", dv);
    fc_answer a;
    invoke_block(z, NULL, catalog_csv_handle, &a);
    if (a.status == 200) {
        json_t *j = check_json(z, &a);
        if (!json_is_array(j))
            die(z, "a success that is not a JSON array", &a);
        size_t i;
        json_t *rec;
        json_array_foreach(j, i, rec) if (!json_is_object(rec) && !json_is_array(rec))
            die(z, "a record that is neither an object nor an array", &a);
        json_decref(j);
    }
    fc_answer_free(&a);
}

/* Wrap base64 text at 76 columns with CRLF, as MIME does. */
static char *mime_wrap(const unsigned char *s, size_t n, size_t *out_len)
{
    char *w = malloc(n + n / 76 * 2 + 1);
    if (!w)
        abort();
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (i && i % 76 == 0) {
            w[o++] = '\r';
            w[o++] = '\n';
        }
        w[o++] = (char)s[i];
    }
    *out_len = o;
    return w;
}

static void run_base64(fz *z)
{
    static const char *const op[] = {NULL, "encode", "decode", "rot13"};
    static const char *const variant[] = {NULL, "standard", "url", "hex"};
    const char *ctype = take(z);
    unsigned roundtrip = choose(z, 3); /* no; yes; yes, MIME-wrapped */
    const char *o = roundtrip ? "encode" : op[choose(z, 4)];
    const char *v = variant[choose(z, 4)];
    enum where w = roundtrip || choose(z, 2) ? CONFIG : QUERY;
    if (!roundtrip)
        raw_query(z);
    setting(z, w, "op", "MODE", o);
    setting(z, w, "variant", "VARIANT", v);
    setting(z, choose(z, 2) ? QUERY : CONFIG, "content_type", "CONTENT_TYPE", ctype);
    fc_answer a;
    fc_request r = invoke_block(z, catalog_base64_init, catalog_base64_handle, &a);
    if (roundtrip && a.status == 200) {
        fc_reset();
        fc_config("MODE", "decode");
        if (v)
            fc_config("VARIANT", v);
        fc_init(catalog_base64_init);
        size_t n = a.len;
        char *text = roundtrip == 2 ? mime_wrap(a.body, a.len, &n) : NULL;
        fc_request r2 = {.body = text ? text : (const char *)a.body, .len = n};
        fc_answer d;
        fc_invoke(catalog_base64_handle, &r2, &d);
        check_answer(z, &d);
        if (d.status != 200 || !same_bytes(&d, r.body, r.len))
            die(z, "decoding what it encoded did not give the input back", &d);
        fc_answer_free(&d);
        free(text);
    }
    fc_answer_free(&a);
}

/* strtoll of the whole string, as kv-counter reads a number: 0 or -1. */
static int whole_number(const char *s, size_t n, long long *out)
{
    if (n == 0 || n >= 32 || memchr(s, '\0', n))
        return -1;
    char buf[32];
    memcpy(buf, s, n);
    buf[n] = '\0';
    char *end;
    errno = 0;
    *out = strtoll(buf, &end, 10);
    return errno || *end ? -1 : 0;
}

static void run_kv_counter(fz *z)
{
    static const uint32_t fails[] = {0,
                                     MXU_RES_UNAVAILABLE,
                                     MXU_RES_RATE_LIMITED,
                                     MXU_RES_DEADLINE,
                                     MXU_RES_DENIED,
                                     MXU_RES_INVALID,
                                     MXU_RES_NOT_FOUND};
    static const unsigned races[] = {0, 1, 3, 60};
    const char *name = take(z), *op = take(z), *by = take(z), *prefix = take(z);
    const char *initial = take(z);
    unsigned name_at = choose(z, 4); /* none, query, path, NAME */
    int with_op = choose(z, 2), with_by = choose(z, 2), with_prefix = choose(z, 2);
    int with_initial = choose(z, 2);
    uint32_t fail = fails[choose(z, 7)];
    unsigned fail_count = 1 + choose(z, 3);
    unsigned race = races[choose(z, 4)];
    raw_query(z);
    int plain_query = z->qlen == 0;
    if (name_at == 1)
        q_param(z, "name", name);
    if (name_at == 3)
        fc_config("NAME", name);
    if (with_op)
        q_param(z, "op", op);
    if (with_by)
        q_param(z, "by", by);
    if (with_prefix)
        fc_config("PREFIX", prefix);
    char key[513];
    snprintf(key, sizeof(key), "%s%s", with_prefix ? prefix : "", name);
    /* A longer key is no counter's: it must not be cut to one. */
    int too_long = plain_query && with_prefix && strlen(prefix) + strlen(name) > 512;
    if (with_initial && *key)
        fc_kv_set(key, initial, strlen(initial));
    long long before = 0;
    const char *val;
    size_t vlen;
    int had = fc_kv_get(key, &val, &vlen) == 0;
    int numeric = !had || whole_number(val, vlen, &before) == 0;
    if (fail)
        fc_node_fail(fail, fail_count);
    fc_node_race(race);
    fc_init(NULL);
    fc_request r = request(z);
    char *path = NULL;
    if (name_at == 2) {
        path = keep(z, malloc(strlen(name) + 2));
        path[0] = '/';
        memcpy(path + 1, name, strlen(name) + 1);
        r.path = path;
    }
    fc_answer a;
    fc_invoke(catalog_kv_counter_handle, &r, &a);
    check_answer(z, &a);
    if (a.status == 200 && too_long)
        die(z, "a counter answered for a key over 512 bytes", &a);
    if (a.status == 200) {
        json_t *j = check_json(z, &a);
        json_t *v = json_object_get(j, "value");
        if (!json_is_string(json_object_get(j, "name")) || !json_is_integer(v))
            die(z, "an answer that is not {\"name\": \"...\", \"value\": N}", &a);
        /* An increment with a known start, no failures and no query
         * fragment that could have changed `op` or `by`: the arithmetic. */
        long long inc = 1;
        int is_incr = !with_op || !*op || strcmp(op, "incr") == 0;
        if (plain_query && !fail && numeric && is_incr && name_at != 3 &&
            (!with_by || !*by || whole_number(by, strlen(by), &inc) == 0)) {
            long long want;
            if (__builtin_add_overflow(before, (long long)(race < 50 ? race : 50), &want) ||
                __builtin_add_overflow(want, inc, &want) || json_integer_value(v) != want)
                die(z, "an increment that lost or invented a count", &a);
        }
        json_decref(j);
    }
    fc_answer_free(&a);
}

static void run_queue_publish(fz *z)
{
    static const char *const output[] = {NULL, "ack", "passthrough"};
    static const char *const allow[] = {NULL, "true", "false", "yes"};
    static const uint32_t fails[] = {0,
                                     MXU_RES_UNAVAILABLE,
                                     MXU_RES_TOO_LARGE,
                                     MXU_RES_RATE_LIMITED,
                                     MXU_RES_DEADLINE,
                                     MXU_RES_DENIED};
    const char *o = output[choose(z, 3)];
    setting(z, CONFIG, NULL, "OUTPUT", o);
    setting(z, CONFIG, NULL, "ALLOW_EMPTY", allow[choose(z, 4)]);
    uint32_t fail = fails[choose(z, 6)];
    if (fail)
        fc_node_fail(fail, 1);
    const char *names[1] = {"content-type"}, *values[1] = {"text/csv"};
    fc_init(NULL);
    fc_request r = request(z);
    r.hdr_names = names;
    r.hdr_values = values;
    r.nhdrs = choose(z, 2);
    fc_answer a;
    fc_invoke(catalog_queue_publish_handle, &r, &a);
    check_answer(z, &a);
    if (a.status < 300) {
        size_t mlen;
        const void *msg = fc_queue_last(&mlen);
        if (fc_queue_count() != 1 || mlen != r.len || (r.len && memcmp(msg, r.body, r.len) != 0))
            die(z, "a success whose message is not the body", &a);
        if (a.status == 202) {
            json_t *j = check_json(z, &a);
            if (json_integer_value(json_object_get(j, "bytes")) != (json_int_t)r.len ||
                json_integer_value(json_object_get(j, "id")) < 1)
                die(z, "an ack that is not {\"id\": N, \"bytes\": LEN}", &a);
            json_decref(j);
        } else if (!same_bytes(&a, r.body, r.len)) {
            die(z, "a passthrough that is not the body", &a);
        }
    } else if (fc_queue_count() != 0) {
        die(z, "an error, yet a message was published", &a);
    }
    fc_answer_free(&a);
}

static const struct block {
    const char *name;
    void (*run)(fz *z);
} blocks[] = {
    {"json-pick", run_json_pick},
    {"json-validate", run_json_validate},
    {"template", run_template},
    {"hash", run_hash},
    {"compress", run_compress},
    {"csv-to-json", run_csv},
    {"base64", run_base64},
    {"kv-counter", run_kv_counter},
    {"queue-publish", run_queue_publish},
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 5)
        return 0;
    const struct block *b = &blocks[data[0] % (sizeof(blocks) / sizeof(blocks[0]))];
    fz z = {.block = b->name,
            .flags = (uint32_t)data[1] | (uint32_t)data[2] << 8 | (uint32_t)data[3] << 16 |
                     (uint32_t)data[4] << 24,
            .p = data + 5,
            .end = data + size};
    fc_reset();
    b->run(&z);
    fc_reset();
    for (size_t i = 0; i < z.nstrings; i++)
        free(z.strings[i]);
    free(z.query);
    return 0;
}
