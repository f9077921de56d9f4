/*
 * compress — a catalogue block (docs/catalog.md): gzip, zlib or raw deflate
 * compression of the request body, or the reverse, with zlib.
 *
 * Decompression is where untrusted input bites: a few KiB can inflate to
 * gigabytes, so output stops at MAX_OUTPUT (413), the buffer grows by
 * doubling up to that cap, and trailing bytes after the stream, a truncated
 * stream or a bad checksum are 400s rather than partial answers.
 */
#include <mxu/fn.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#define HARD_MAX (60u << 20) /* under MXU_FN_BODY_MAX, with room for the SDK's copy */

static const char *setting(mxu_req *req, const char *query, const char *env, const char *dflt)
{
    const char *v = query ? mxu_req_query_param(req, query) : NULL;
    if (!v || !*v)
        v = mxu_config(env);
    return v && *v ? v : dflt;
}

/* "8Mi", "512Ki", "1000000": bytes, or 0 when malformed. */
static size_t parse_size(const char *s)
{
    char *end;
    unsigned long long n = strtoull(s, &end, 10);
    if (end == s)
        return 0;
    if (strcmp(end, "Ki") == 0)
        n <<= 10;
    else if (strcmp(end, "Mi") == 0)
        n <<= 20;
    else if (*end)
        return 0;
    return n > HARD_MAX ? HARD_MAX : (size_t)n;
}

/* zlib's windowBits for a format: 15 zlib, -15 raw deflate, 31 gzip, 47
 * either (inflate only). */
static int window_bits(const char *format, int inflating)
{
    if (strcmp(format, "gzip") == 0)
        return 15 + 16;
    if (strcmp(format, "zlib") == 0)
        return 15;
    if (strcmp(format, "deflate") == 0)
        return -15;
    if (inflating && strcmp(format, "auto") == 0)
        return 15 + 32;
    return 0;
}

static int do_compress(mxu_req *req, mxu_res *res, const char *format, int level,
                       const unsigned char *in, size_t len, size_t max)
{
    z_stream z = {0};
    if (deflateInit2(&z, level, Z_DEFLATED, window_bits(format, 0), 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return mxu_res_error(res, 500, "zlib_error", "deflateInit2 failed");
    size_t cap = deflateBound(&z, (uLong)len) + 32;
    if (cap > max) {
        /* The bound is pessimistic: try with the cap, fail only if it is hit. */
        cap = max;
    }
    unsigned char *out = mxu_alloc(req, cap ? cap : 1);
    if (!out) {
        deflateEnd(&z);
        return mxu_res_error(res, 500, "no_memory", "no memory for %zu bytes", cap);
    }
    z.next_in = (unsigned char *)in;
    z.avail_in = (uInt)len;
    z.next_out = out;
    z.avail_out = (uInt)cap;
    int rc = deflate(&z, Z_FINISH);
    size_t n = z.total_out;
    deflateEnd(&z);
    if (rc != Z_STREAM_END)
        return mxu_res_error(res, 413, "output_too_large",
                             "the compressed body is over MAX_OUTPUT (%zu bytes)", max);
    static const char *const types[][2] = {{"gzip", "application/gzip"},
                                           {"zlib", "application/zlib"},
                                           {"deflate", "application/octet-stream"}};
    for (size_t i = 0; i < 3; i++)
        if (strcmp(format, types[i][0]) == 0)
            mxu_res_header(res, "Content-Type", types[i][1]);
    mxu_res_set_body(res, out, n);
    return 0;
}

static int do_decompress(mxu_res *res, const char *format, const unsigned char *in, size_t len,
                         size_t max, const char *ctype)
{
    if (len == 0)
        return mxu_res_error(res, 400, "invalid_data", "the body is empty, not a %s stream",
                             format);
    z_stream z = {0};
    if (inflateInit2(&z, window_bits(format, 1)) != Z_OK)
        return mxu_res_error(res, 500, "zlib_error", "inflateInit2 failed");
    /* malloc, not the arena: the buffer is regrown, and the arena never frees. */
    size_t cap = len * 4 < 65536 ? 65536 : len * 4;
    if (cap > max)
        cap = max;
    unsigned char *out = malloc(cap);
    int rc = Z_OK;
    z.next_in = (unsigned char *)in;
    z.avail_in = (uInt)len;
    while (out) {
        z.next_out = out + z.total_out;
        z.avail_out = (uInt)(cap - z.total_out);
        rc = inflate(&z, Z_NO_FLUSH);
        if (rc == Z_STREAM_END || (rc != Z_OK && rc != Z_BUF_ERROR))
            break;
        if (z.avail_out > 0) { /* input ran out before the end of the stream */
            rc = Z_DATA_ERROR;
            z.msg = (char *)"the stream is truncated";
            break;
        }
        if (cap >= max) {
            rc = Z_MEM_ERROR; /* the cap, not memory: reported below */
            break;
        }
        size_t next = cap * 2 > max ? max : cap * 2;
        unsigned char *grown = realloc(out, next);
        if (!grown) {
            free(out);
            out = NULL;
            break;
        }
        out = grown;
        cap = next;
    }
    int status = 0;
    if (!out)
        status = mxu_res_error(res, 500, "no_memory", "out of memory while decompressing");
    else if (rc == Z_MEM_ERROR)
        status = mxu_res_error(res, 413, "output_too_large",
                               "the decompressed body is over MAX_OUTPUT (%zu bytes)", max);
    else if (rc != Z_STREAM_END)
        status = mxu_res_error(res, 400, "invalid_data", "not a valid %s stream: %s", format,
                               z.msg ? z.msg : "corrupt data");
    else if (z.avail_in != 0)
        status = mxu_res_error(res, 400, "invalid_data", "%u bytes follow the end of the %s stream",
                               z.avail_in, format);
    else {
        mxu_res_header(res, "Content-Type", ctype);
        mxu_res_set_body(res, out, z.total_out);
    }
    inflateEnd(&z);
    free(out);
    return status;
}

int mxu_handle(mxu_req *req, mxu_res *res)
{
    const char *mode = setting(req, "op", "MODE", "compress");
    int inflating = strcmp(mode, "decompress") == 0;
    if (!inflating && strcmp(mode, "compress") != 0)
        return mxu_res_error(res, 400, "invalid_setting", "op must be compress or decompress");
    const char *format = setting(req, "format", "FORMAT", inflating ? "auto" : "gzip");
    if (window_bits(format, inflating) == 0)
        return mxu_res_error(res, 400, "invalid_setting", "format must be gzip, zlib or deflate%s",
                             inflating ? " (or auto)" : "");
    const char *lvl = setting(req, "level", "LEVEL", "6");
    int level = (int)strtol(lvl, NULL, 10);
    if (level < 1 || level > 9 || strlen(lvl) != 1)
        return mxu_res_error(res, 400, "invalid_setting", "level must be 1 to 9");
    size_t max = parse_size(setting(req, NULL, "MAX_OUTPUT", "8Mi"));
    if (max == 0)
        return mxu_res_error(res, 500, "not_configured", "MAX_OUTPUT must be a size like 8Mi");
    size_t len;
    const unsigned char *body = mxu_req_body(req, &len);
    if (len > 0xFFFFFFFFu)
        return mxu_res_error(res, 413, "input_too_large", "the body is over 4 GiB");
    if (inflating)
        return do_decompress(res, format, body, len, max,
                             setting(req, NULL, "CONTENT_TYPE", "application/octet-stream"));
    return do_compress(req, res, format, level, body, len, max);
}
