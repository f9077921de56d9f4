/*
 * base64 — a catalogue block (docs/catalog.md): encodes the request body as
 * base64 text (RFC 4648, standard or URL-safe alphabet), or decodes it.
 * Decoding ignores line breaks and spaces (MIME-wrapped input), accepts the
 * text with or without '=' padding, and answers 400 for any other byte.
 * Encoding and decoding are libsodium's, a project dependency.
 */
#include <mxu/fn.h>

#include <sodium.h>
#include <string.h>

static const char *setting(mxu_req *req, const char *query, const char *env, const char *dflt)
{
    const char *v = mxu_req_query_param(req, query);
    if (!v || !*v)
        v = mxu_config(env);
    return v && *v ? v : dflt;
}

int mxu_init(void)
{
    return sodium_init() < 0;
}

int mxu_handle(mxu_req *req, mxu_res *res)
{
    const char *op = setting(req, "op", "MODE", "encode");
    const char *variant = setting(req, "variant", "VARIANT", "standard");
    int url = strcmp(variant, "url") == 0;
    if (!url && strcmp(variant, "standard") != 0)
        return mxu_res_error(res, 400, "invalid_setting", "variant must be standard or url");
    size_t len;
    const unsigned char *body = mxu_req_body(req, &len);
    if (strcmp(op, "encode") == 0) {
        int v = url ? sodium_base64_VARIANT_URLSAFE : sodium_base64_VARIANT_ORIGINAL;
        size_t n = sodium_base64_ENCODED_LEN(len, v);
        if (n > MXU_FN_BODY_MAX)
            return mxu_res_error(res, 413, "output_too_large",
                                 "the encoded body would be too large");
        char *out = mxu_alloc(req, n);
        if (!out)
            return mxu_res_error(res, 500, "no_memory", "out of memory");
        sodium_bin2base64(out, n, body, len, v);
        mxu_res_header(res, "Content-Type", "text/plain; charset=us-ascii");
        mxu_res_set_body(res, out, n - 1); /* n counts the NUL */
        return 0;
    }
    if (strcmp(op, "decode") != 0)
        return mxu_res_error(res, 400, "invalid_setting", "op must be encode or decode");
    /* Padding is optional on input: strip it and decode as the no-padding
     * variant, which sodium checks strictly. */
    size_t n = len;
    while (n > 0 && strchr(" \t\r\n", body[n - 1]))
        n--;
    size_t pad = 0;
    while (n > 0 && body[n - 1] == '=' && pad < 2)
        n--, pad++;
    unsigned char *out = mxu_alloc(req, len / 4 * 3 + 3);
    if (!out)
        return mxu_res_error(res, 500, "no_memory", "out of memory");
    size_t got = 0;
    const char *end = NULL;
    int v =
        url ? sodium_base64_VARIANT_URLSAFE_NO_PADDING : sodium_base64_VARIANT_ORIGINAL_NO_PADDING;
    if (sodium_base642bin(out, len / 4 * 3 + 3, (const char *)body, n, " \t\r\n", &got, &end, v) !=
            0 ||
        (end && end != (const char *)body + n))
        return mxu_res_error(res, 400, "invalid_base64",
                             url ? "the body is not base64url text"
                                 : "the body is not base64 text");
    mxu_res_header(res, "Content-Type",
                   setting(req, "content_type", "CONTENT_TYPE", "application/octet-stream"));
    mxu_res_set_body(res, out, got);
    return 0;
}
