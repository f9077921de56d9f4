/*
 * frame — encoder and decoder of the channel protocol (docs/protocol.md),
 * linked into both sides of the channel: the host (src/unit) and every
 * instance (sdk/, libmxufn.a), and later into the freestanding micro-VM guest.
 *
 * Three layers, in file order:
 *   1. the 16-byte frame header;
 *   2. the field writer (sizing pass with cap = 0, then a filling pass) and
 *      the field reader (a sticky `bad` bit instead of per-call checks);
 *   3. one encoder and one decoder per message.
 *
 * The decoders are the host's first line of defence against a hostile
 * instance, so they trust nothing: every length is checked against the bytes
 * that are actually left, header counts are checked against the smallest
 * size their pairs could occupy before anything loops over them, the whole
 * header list is walked once (so mxu_wire_next_header() cannot fail later),
 * and a payload with trailing bytes is rejected. The encoding is canonical
 * (no optional fields, no padding), so any payload a decoder accepts
 * re-encodes to the same bytes; fuzz/fuzz-frame.c checks exactly that.
 *
 * Freestanding on purpose: no libc beyond what the compiler provides, no
 * allocation, integers assembled byte by byte so the code is independent of
 * the host's endianness and alignment rules.
 */
#include "unit/frame.h"

/* The compiler lowers these to inline moves or to a memcpy/memset call that
 * every environment we run in (libc, or the guest runtime) provides; using the
 * builtins keeps this file free of <string.h>. */
#define frame_memcpy __builtin_memcpy

/* ---- little-endian integers ------------------------------------------------ */

static void put_le32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static void put_le64(uint8_t *p, uint64_t v)
{
    put_le32(p, (uint32_t)v);
    put_le32(p + 4, (uint32_t)(v >> 32));
}

static uint32_t get_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get_le64(const uint8_t *p)
{
    return (uint64_t)get_le32(p) | (uint64_t)get_le32(p + 4) << 32;
}

/* ---- frame header ---------------------------------------------------------- */

void mxu_frame_hdr_encode(const mxu_frame_hdr *h, uint8_t out[MXU_FRAME_HEADER_SIZE])
{
    put_le32(out, h->len);
    out[4] = h->type;
    out[5] = h->flags;
    out[6] = (uint8_t)h->reserved;
    out[7] = (uint8_t)(h->reserved >> 8);
    put_le64(out + 8, h->id);
}

int mxu_frame_hdr_decode(const uint8_t in[MXU_FRAME_HEADER_SIZE], mxu_frame_hdr *h)
{
    h->len = get_le32(in);
    h->type = in[4];
    h->flags = in[5];
    h->reserved = (uint16_t)(in[6] | in[7] << 8);
    h->id = get_le64(in + 8);
    if (h->len > MXU_FRAME_MAX_PAYLOAD || h->type < 1 || h->type > 31 || h->flags != 0 ||
        h->reserved != 0)
        return -1;
    return 0;
}

/* ---- writer ----------------------------------------------------------------
 * `len` counts every byte asked for, whether written or not, so that the
 * sizing pass and the filling pass agree. A request that cannot be encoded at
 * all (a C string longer than a u32 length can say) saturates `len` at
 * SIZE_MAX: encoders then return SIZE_MAX, which no buffer can satisfy and
 * which is far above MXU_FRAME_MAX_PAYLOAD, so callers that check either
 * bound refuse it. */

void mxu_wire_w_init(mxu_wire_w *w, void *buf, size_t cap)
{
    w->buf = buf;
    w->cap = buf ? cap : 0;
    w->len = 0;
    w->overflow = 0;
}

/* Reserve n bytes: returns where to write them, or NULL when they do not fit
 * (and then only counts them). */
static uint8_t *w_take(mxu_wire_w *w, size_t n)
{
    if (w->len > SIZE_MAX - n) {
        w->len = SIZE_MAX;
        w->overflow = 1;
        return NULL;
    }
    size_t at = w->len;
    w->len += n;
    if (w->overflow || w->len > w->cap) {
        w->overflow = 1;
        return NULL;
    }
    return w->buf + at;
}

void mxu_wire_put_u32(mxu_wire_w *w, uint32_t v)
{
    uint8_t *p = w_take(w, 4);
    if (p)
        put_le32(p, v);
}

void mxu_wire_put_u64(mxu_wire_w *w, uint64_t v)
{
    uint8_t *p = w_take(w, 8);
    if (p)
        put_le64(p, v);
}

void mxu_wire_put_bytes(mxu_wire_w *w, const void *p, uint32_t n)
{
    mxu_wire_put_u32(w, n);
    uint8_t *dst = w_take(w, n);
    if (dst && n > 0)
        frame_memcpy(dst, p, n);
}

void mxu_wire_put_str(mxu_wire_w *w, const char *s)
{
    size_t n = 0;
    if (s)
        while (s[n] != '\0')
            n++;
    if (n > UINT32_MAX) {
        w->len = SIZE_MAX;
        w->overflow = 1;
        return;
    }
    mxu_wire_put_bytes(w, s, (uint32_t)n);
}

/* ---- reader ---------------------------------------------------------------- */

void mxu_wire_r_init(mxu_wire_r *r, const void *payload, size_t len)
{
    r->p = payload;
    r->end = r->p ? r->p + len : r->p;
    r->bad = 0;
}

static size_t r_left(const mxu_wire_r *r)
{
    return (size_t)(r->end - r->p);
}

uint32_t mxu_wire_get_u32(mxu_wire_r *r)
{
    if (r->bad || r_left(r) < 4) {
        r->bad = 1;
        return 0;
    }
    uint32_t v = get_le32(r->p);
    r->p += 4;
    return v;
}

uint64_t mxu_wire_get_u64(mxu_wire_r *r)
{
    if (r->bad || r_left(r) < 8) {
        r->bad = 1;
        return 0;
    }
    uint64_t v = get_le64(r->p);
    r->p += 8;
    return v;
}

mxu_slice mxu_wire_get_bytes(mxu_wire_r *r)
{
    mxu_slice s = {"", 0};
    uint32_t n = mxu_wire_get_u32(r);
    if (r->bad)
        return s;
    if (n > r_left(r)) {
        r->bad = 1;
        return s;
    }
    s.ptr = (const char *)r->p;
    s.len = n;
    r->p += n;
    return s;
}

int mxu_wire_r_done(const mxu_wire_r *r)
{
    return !r->bad && r->p == r->end;
}

/* ---- field validation ------------------------------------------------------
 * What the peer is allowed to put in each text field. The rules exist so that
 * nothing decoded here can smuggle a line break into an HTTP head, and so that
 * the SDK can hand fields to C code as NUL-terminated strings. */

/* RFC 9110 tchar: the bytes of a method or a header name. */
static int is_tchar(uint8_t c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return 1;
    switch (c) {
    case '!':
    case '#':
    case '$':
    case '%':
    case '&':
    case '\'':
    case '*':
    case '+':
    case '-':
    case '.':
    case '^':
    case '_':
    case '`':
    case '|':
    case '~':
        return 1;
    default:
        return 0;
    }
}

static int valid_token(mxu_slice s)
{
    if (s.len == 0)
        return 0;
    for (uint32_t i = 0; i < s.len; i++)
        if (!is_tchar((uint8_t)s.ptr[i]))
            return 0;
    return 1;
}

/* No NUL, CR or LF: safe as a C string and inside one HTTP line. */
static int valid_line(mxu_slice s)
{
    for (uint32_t i = 0; i < s.len; i++) {
        uint8_t c = (uint8_t)s.ptr[i];
        if (c == 0 || c == '\r' || c == '\n')
            return 0;
    }
    return 1;
}

/* An HTTP field value (RFC 9110 field-value): visible ASCII, obs-text, SP
 * and HTAB; no other control byte, so in particular no CR, LF or NUL. */
static int valid_field_value(mxu_slice s)
{
    for (uint32_t i = 0; i < s.len; i++) {
        uint8_t c = (uint8_t)s.ptr[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return 0;
    }
    return 1;
}

/* No NUL: safe as a C string. */
static int valid_cstr(mxu_slice s)
{
    for (uint32_t i = 0; i < s.len; i++)
        if (s.ptr[i] == '\0')
            return 0;
    return 1;
}

/* A configuration name: what an environment variable name may be, loosely. */
static int valid_config_name(mxu_slice s)
{
    if (s.len == 0 || !valid_cstr(s))
        return 0;
    for (uint32_t i = 0; i < s.len; i++)
        if (s.ptr[i] == '=')
            return 0;
    return 1;
}

enum list_kind { LIST_HTTP_HEADERS, LIST_CONFIG };

/* Read a header list: count, then count pairs. Walks every pair once to
 * validate it, leaves `out` positioned at the first pair and `r` after the
 * last one. */
static void get_header_list(mxu_wire_r *r, mxu_header_list *out, enum list_kind kind)
{
    out->count = mxu_wire_get_u32(r);
    out->pairs.p = r->p;
    out->pairs.end = r->end;
    out->pairs.bad = r->bad;
    if (r->bad)
        return;
    /* Every pair takes at least two u32 lengths: refuse a count the remaining
     * bytes cannot hold before looping over it. */
    if (out->count > r_left(r) / 8) {
        r->bad = 1;
        return;
    }
    for (uint32_t i = 0; i < out->count; i++) {
        mxu_slice name = mxu_wire_get_bytes(r);
        mxu_slice value = mxu_wire_get_bytes(r);
        if (r->bad)
            return;
        int ok = kind == LIST_HTTP_HEADERS ? valid_token(name) && valid_field_value(value)
                                           : valid_config_name(name) && valid_cstr(value);
        if (!ok) {
            r->bad = 1;
            return;
        }
    }
    /* The iterator only needs to see the pairs, not what follows them. */
    out->pairs.end = r->p;
}

int mxu_wire_next_header(mxu_header_list *it, mxu_slice *name, mxu_slice *value)
{
    if (it->count == 0 || it->pairs.bad)
        return 0;
    *name = mxu_wire_get_bytes(&it->pairs);
    *value = mxu_wire_get_bytes(&it->pairs);
    if (it->pairs.bad)
        return 0;
    it->count--;
    return 1;
}

static void put_slice(mxu_wire_w *w, mxu_slice s)
{
    mxu_wire_put_bytes(w, s.ptr, s.len);
}

static void put_slice_pairs(mxu_wire_w *w, const mxu_slice *names, const mxu_slice *values,
                            uint32_t n)
{
    mxu_wire_put_u32(w, n);
    for (uint32_t i = 0; i < n; i++) {
        put_slice(w, names[i]);
        put_slice(w, values[i]);
    }
}

/* ---- messages -------------------------------------------------------------- */

size_t mxu_hello_encode(void *buf, size_t cap, const char *sdk)
{
    mxu_wire_w w;
    mxu_wire_w_init(&w, buf, cap);
    mxu_wire_put_u32(&w, MXU_PROTO_VERSION);
    mxu_wire_put_str(&w, sdk);
    return w.len;
}

int mxu_hello_decode(const void *payload, size_t len, mxu_hello_msg *m)
{
    mxu_wire_r r;
    mxu_wire_r_init(&r, payload, len);
    m->proto_version = mxu_wire_get_u32(&r);
    m->sdk = mxu_wire_get_bytes(&r);
    if (!mxu_wire_r_done(&r) || m->proto_version == 0 || !valid_line(m->sdk))
        return -1;
    return 0;
}

size_t mxu_init_encode(void *buf, size_t cap, const char *function, uint32_t version,
                       uint32_t concurrency, const char *const *cfg_names,
                       const char *const *cfg_values, uint32_t ncfg)
{
    mxu_wire_w w;
    mxu_wire_w_init(&w, buf, cap);
    mxu_wire_put_u32(&w, MXU_PROTO_VERSION);
    mxu_wire_put_str(&w, function);
    mxu_wire_put_u32(&w, version);
    mxu_wire_put_u32(&w, concurrency);
    mxu_wire_put_u32(&w, ncfg);
    for (uint32_t i = 0; i < ncfg; i++) {
        mxu_wire_put_str(&w, cfg_names[i]);
        mxu_wire_put_str(&w, cfg_values[i]);
    }
    return w.len;
}

int mxu_init_decode(const void *payload, size_t len, mxu_init_msg *m)
{
    mxu_wire_r r;
    mxu_wire_r_init(&r, payload, len);
    m->proto_version = mxu_wire_get_u32(&r);
    m->function = mxu_wire_get_bytes(&r);
    m->version = mxu_wire_get_u32(&r);
    m->concurrency = mxu_wire_get_u32(&r);
    get_header_list(&r, &m->config, LIST_CONFIG);
    if (!mxu_wire_r_done(&r) || m->proto_version == 0 || m->function.len == 0 ||
        !valid_line(m->function) || m->concurrency == 0)
        return -1;
    return 0;
}

size_t mxu_invoke_encode(void *buf, size_t cap, uint64_t deadline_ms, mxu_slice method,
                         mxu_slice path, mxu_slice query, const mxu_slice *hdr_names,
                         const mxu_slice *hdr_values, uint32_t nhdr, mxu_slice body)
{
    mxu_wire_w w;
    mxu_wire_w_init(&w, buf, cap);
    mxu_wire_put_u64(&w, deadline_ms);
    put_slice(&w, method);
    put_slice(&w, path);
    put_slice(&w, query);
    put_slice_pairs(&w, hdr_names, hdr_values, nhdr);
    put_slice(&w, body);
    return w.len;
}

int mxu_invoke_decode(const void *payload, size_t len, mxu_invoke_msg *m)
{
    mxu_wire_r r;
    mxu_wire_r_init(&r, payload, len);
    m->deadline_ms = mxu_wire_get_u64(&r);
    m->method = mxu_wire_get_bytes(&r);
    m->path = mxu_wire_get_bytes(&r);
    m->query = mxu_wire_get_bytes(&r);
    get_header_list(&r, &m->headers, LIST_HTTP_HEADERS);
    m->body = mxu_wire_get_bytes(&r);
    if (!mxu_wire_r_done(&r) || !valid_token(m->method) || m->path.len == 0 ||
        m->path.ptr[0] != '/' || !valid_line(m->path) || !valid_line(m->query))
        return -1;
    return 0;
}

size_t mxu_result_encode(void *buf, size_t cap, uint32_t status, const mxu_slice *hdr_names,
                         const mxu_slice *hdr_values, uint32_t nhdr, mxu_slice body)
{
    mxu_wire_w w;
    mxu_wire_w_init(&w, buf, cap);
    mxu_wire_put_u32(&w, status);
    put_slice_pairs(&w, hdr_names, hdr_values, nhdr);
    put_slice(&w, body);
    return w.len;
}

int mxu_result_decode(const void *payload, size_t len, mxu_result_msg *m)
{
    mxu_wire_r r;
    mxu_wire_r_init(&r, payload, len);
    m->status = mxu_wire_get_u32(&r);
    get_header_list(&r, &m->headers, LIST_HTTP_HEADERS);
    m->body = mxu_wire_get_bytes(&r);
    if (!mxu_wire_r_done(&r) || m->status < 100 || m->status > 599)
        return -1;
    return 0;
}

size_t mxu_log_encode(void *buf, size_t cap, uint32_t level, mxu_slice text)
{
    mxu_wire_w w;
    mxu_wire_w_init(&w, buf, cap);
    mxu_wire_put_u32(&w, level);
    put_slice(&w, text);
    return w.len;
}

int mxu_log_decode(const void *payload, size_t len, mxu_log_msg *m)
{
    mxu_wire_r r;
    mxu_wire_r_init(&r, payload, len);
    m->level = mxu_wire_get_u32(&r);
    m->text = mxu_wire_get_bytes(&r);
    if (!mxu_wire_r_done(&r) || m->level > 3)
        return -1;
    return 0;
}

/* ---- descriptor operations ---------------------------------------------------
 * One generic shape for every op (see the table in frame.h), so that one
 * decoder and one fuzz target cover them all. What a given op must carry
 * (how many args, which numbers) is checked by the side that acts on it: the
 * host per op before calling a driver, the SDK per op when it reads a reply.
 * Here only the framing is checked, which is what keeps the readers safe. */

/* A descriptor name as the manifest allows it is far shorter; 63 bytes is the
 * wire's bound, so that a host can keep names in fixed 64-byte buffers. */
#define RES_NAME_MAX 63u

static void put_slices(mxu_wire_w *w, const mxu_slice *s, uint32_t n)
{
    mxu_wire_put_u32(w, n);
    for (uint32_t i = 0; i < n; i++)
        put_slice(w, s[i]);
}

/* Read a u32 count and that many byte runs into out[]. The count is bounded
 * by the array before anything loops over it; on a bad count *n is 0. */
static void get_slices(mxu_wire_r *r, mxu_slice *out, uint32_t *n)
{
    uint32_t count = mxu_wire_get_u32(r);
    if (r->bad || count > MXU_RES_MAX_ARGS) {
        r->bad = 1;
        *n = 0;
        return;
    }
    for (uint32_t i = 0; i < count; i++)
        out[i] = mxu_wire_get_bytes(r);
    *n = r->bad ? 0 : count;
}

size_t mxu_res_op_encode(void *buf, size_t cap, uint32_t call_id, mxu_slice name, uint32_t op,
                         uint64_t n1, uint64_t n2, const mxu_slice *args, uint32_t nargs)
{
    /* More runs than any decoder accepts cannot be encoded: answer like any
     * other unencodable request (see the writer), so a caller that checks the
     * size against the buffer or MXU_FRAME_MAX_PAYLOAD refuses it. */
    if (nargs > MXU_RES_MAX_ARGS)
        return SIZE_MAX;
    mxu_wire_w w;
    mxu_wire_w_init(&w, buf, cap);
    mxu_wire_put_u32(&w, call_id);
    put_slice(&w, name);
    mxu_wire_put_u32(&w, op);
    mxu_wire_put_u64(&w, n1);
    mxu_wire_put_u64(&w, n2);
    put_slices(&w, args, nargs);
    return w.len;
}

int mxu_res_op_decode(const void *payload, size_t len, mxu_res_op_msg *m)
{
    mxu_wire_r r;
    mxu_wire_r_init(&r, payload, len);
    m->call_id = mxu_wire_get_u32(&r);
    m->name = mxu_wire_get_bytes(&r);
    m->op = mxu_wire_get_u32(&r);
    m->n1 = mxu_wire_get_u64(&r);
    m->n2 = mxu_wire_get_u64(&r);
    get_slices(&r, m->args, &m->nargs);
    if (!mxu_wire_r_done(&r) || m->name.len == 0 || m->name.len > RES_NAME_MAX) {
        m->nargs = 0; /* a caller that ignores the result still loops over nothing */
        return -1;
    }
    return 0;
}

size_t mxu_res_reply_encode(void *buf, size_t cap, uint32_t call_id, uint32_t status,
                            mxu_slice message, uint64_t n1, uint64_t n2, const mxu_slice *vals,
                            uint32_t nvals)
{
    if (nvals > MXU_RES_MAX_ARGS)
        return SIZE_MAX;
    mxu_wire_w w;
    mxu_wire_w_init(&w, buf, cap);
    mxu_wire_put_u32(&w, call_id);
    mxu_wire_put_u32(&w, status);
    put_slice(&w, message);
    mxu_wire_put_u64(&w, n1);
    mxu_wire_put_u64(&w, n2);
    put_slices(&w, vals, nvals);
    return w.len;
}

/* The status is not range-checked: a newer host may know outcomes this code
 * does not, and the SDK reads an unknown one as UNAVAILABLE rather than
 * killing the instance over it (docs/protocol.md). */
int mxu_res_reply_decode(const void *payload, size_t len, mxu_res_reply_msg *m)
{
    mxu_wire_r r;
    mxu_wire_r_init(&r, payload, len);
    m->call_id = mxu_wire_get_u32(&r);
    m->status = mxu_wire_get_u32(&r);
    m->message = mxu_wire_get_bytes(&r);
    m->n1 = mxu_wire_get_u64(&r);
    m->n2 = mxu_wire_get_u64(&r);
    get_slices(&r, m->vals, &m->nvals);
    if (!mxu_wire_r_done(&r)) {
        m->nvals = 0;
        return -1;
    }
    return 0;
}
