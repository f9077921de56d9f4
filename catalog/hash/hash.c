/*
 * hash — a catalogue block (docs/catalog.md): the digest of the request body,
 * or with KEY set its HMAC (sha256, sha512) or keyed BLAKE2b, so that a
 * pipeline can sign what it sends or check what it receives.
 *
 *   MODE=digest, OUTPUT=text    the digest, a line of text
 *   MODE=digest, OUTPUT=json    {"algorithm","encoding","digest","bytes","keyed"}
 *   MODE=digest, OUTPUT=header  the body unchanged (its Content-Type kept),
 *                               the digest in HEADER (default X-Signature)
 *   MODE=verify                 the body unchanged if ?signature= (or the HEADER
 *                               request header) is its digest, else 401
 *
 * The key is configuration only: taking one from the request would let any
 * caller sign anything. Digests come from libsodium (a project dependency);
 * comparisons of signatures take constant time (sodium_memcmp).
 */
#include <mxu/fn.h>

#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int mxu_init(void)
{
    if (sodium_init() < 0) {
        mxu_log(MXU_ERROR, "libsodium did not initialise");
        return 1;
    }
    return 0;
}

static const char *setting(mxu_req *req, const char *query, const char *env, const char *dflt)
{
    const char *v = query ? mxu_req_query_param(req, query) : NULL;
    if (!v || !*v)
        v = mxu_config(env);
    return v && *v ? v : dflt;
}

/* Digest `data` with `alg`, keyed when `key` is not NULL. Returns the digest
 * length, or 0 for an unknown algorithm. */
static size_t digest(const char *alg, const unsigned char *key, size_t klen,
                     const unsigned char *data, size_t len, unsigned char *out)
{
    if (strcmp(alg, "sha256") == 0) {
        if (!key) {
            crypto_hash_sha256(out, data, len);
        } else {
            crypto_auth_hmacsha256_state st;
            crypto_auth_hmacsha256_init(&st, key, klen);
            crypto_auth_hmacsha256_update(&st, data, len);
            crypto_auth_hmacsha256_final(&st, out);
        }
        return 32;
    }
    if (strcmp(alg, "sha512") == 0) {
        if (!key) {
            crypto_hash_sha512(out, data, len);
        } else {
            crypto_auth_hmacsha512_state st;
            crypto_auth_hmacsha512_init(&st, key, klen);
            crypto_auth_hmacsha512_update(&st, data, len);
            crypto_auth_hmacsha512_final(&st, out);
        }
        return 64;
    }
    if (strcmp(alg, "blake2b") == 0) {
        /* BLAKE2b keys are 16..64 bytes: a longer one is hashed down first. */
        unsigned char k[crypto_generichash_KEYBYTES_MAX];
        if (key && klen > sizeof(k)) {
            crypto_generichash(k, sizeof(k), key, klen, NULL, 0);
            key = k, klen = sizeof(k);
        }
        if (key && klen < crypto_generichash_KEYBYTES_MIN)
            return (size_t)-1;
        crypto_generichash(out, 32, data, len, key, key ? klen : 0);
        return 32;
    }
    return 0;
}

int mxu_handle(mxu_req *req, mxu_res *res)
{
    const char *alg = setting(req, "alg", "ALGORITHM", "sha256");
    const char *enc = setting(req, "enc", "ENCODING", "hex");
    const char *mode = setting(req, NULL, "MODE", "digest");
    const char *output = setting(req, "output", "OUTPUT", "text");
    const char *header = setting(req, NULL, "HEADER", "X-Signature");
    const char *key = mxu_config("KEY");
    size_t klen = key ? strlen(key) : 0;
    if (klen == 0)
        key = NULL;

    int variant = strcmp(enc, "hex") == 0         ? -1
                  : strcmp(enc, "base64") == 0    ? sodium_base64_VARIANT_ORIGINAL
                  : strcmp(enc, "base64url") == 0 ? sodium_base64_VARIANT_URLSAFE_NO_PADDING
                                                  : -2;
    if (variant == -2)
        return mxu_res_error(res, 400, "invalid_setting",
                             "encoding must be hex, base64 or base64url");
    int verify = strcmp(mode, "verify") == 0;
    if (!verify && strcmp(mode, "digest") != 0)
        return mxu_res_error(res, 500, "not_configured", "MODE must be digest or verify");
    if (strcmp(output, "text") != 0 && strcmp(output, "json") != 0 && strcmp(output, "header") != 0)
        return mxu_res_error(res, 400, "invalid_setting", "output must be text, json or header");

    size_t len;
    const unsigned char *body = mxu_req_body(req, &len);
    unsigned char d[64];
    size_t dlen = digest(alg, (const unsigned char *)key, klen, body, len, d);
    if (dlen == 0)
        return mxu_res_error(res, 400, "invalid_setting",
                             "algorithm must be sha256, sha512 or blake2b");
    if (dlen == (size_t)-1)
        return mxu_res_error(res, 500, "not_configured", "a blake2b KEY needs at least %d bytes",
                             crypto_generichash_KEYBYTES_MIN);
    char text[sodium_base64_ENCODED_LEN(64, sodium_base64_VARIANT_ORIGINAL) + 130];
    if (variant == -1)
        sodium_bin2hex(text, sizeof(text), d, dlen);
    else
        sodium_bin2base64(text, sizeof(text), d, dlen, variant);

    const char *ctype = mxu_req_header(req, "content-type");
    if (verify) {
        const char *sig = mxu_req_query_param(req, "signature");
        if (!sig || !*sig)
            sig = mxu_req_header(req, header);
        if (!sig || !*sig)
            return mxu_res_error(res, 400, "missing_signature",
                                 "send the signature in ?signature= or the %s header", header);
        /* "sha256=HEX", as GitHub and others send it: compare what follows. */
        const char *eq = strchr(sig, '=');
        if (eq && variant == -1)
            sig = eq + 1;
        /* A hex signature is compared case-insensitively, so decode both. */
        unsigned char got[64];
        size_t glen = 0;
        int ok;
        if (variant == -1)
            ok = sodium_hex2bin(got, sizeof(got), sig, strlen(sig), NULL, &glen, NULL) == 0;
        else
            ok = sodium_base642bin(got, sizeof(got), sig, strlen(sig), NULL, &glen, NULL,
                                   variant) == 0;
        if (!ok || glen != dlen || sodium_memcmp(got, d, dlen) != 0)
            return mxu_res_error(res, 401, "bad_signature",
                                 "the signature does not match the body");
        if (ctype)
            mxu_res_header(res, "Content-Type", ctype);
        mxu_res_set_body(res, body, len);
        return 0;
    }
    if (strcmp(output, "header") == 0) {
        if (mxu_res_header(res, header, text) < 0)
            return mxu_res_error(res, 500, "not_configured", "HEADER is not a valid header name");
        if (ctype)
            mxu_res_header(res, "Content-Type", ctype);
        mxu_res_set_body(res, body, len);
    } else if (strcmp(output, "json") == 0) {
        mxu_res_header(res, "Content-Type", "application/json");
        mxu_res_printf(res,
                       "{\"algorithm\":\"%s%s\",\"encoding\":\"%s\",\"digest\":\"%s\","
                       "\"bytes\":%zu,\"keyed\":%s}\n",
                       key && strcmp(alg, "blake2b") != 0 ? "hmac-" : "", alg, enc, text, len,
                       key ? "true" : "false");
    } else {
        mxu_res_header(res, "Content-Type", "text/plain; charset=utf-8");
        mxu_res_printf(res, "%s\n", text);
    }
    return 0;
}
