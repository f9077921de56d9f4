/*
 * The pure parts of policy: tenant names, roles, scope globs, the text of a
 * key and its stored hash, expiry durations, and the CLI's credentials file.
 * Nothing here touches the database; tests/unit/policy runs it all directly.
 *
 * Why a fast hash (BLAKE2b) and not a password hash (argon2): a key's secret
 * is 32 bytes from randombytes_buf, not something a person chose. Guessing
 * 2^256 possibilities is hopeless however fast each guess is, so a slow hash
 * would buy nothing against a stolen database and would cost every request
 * tens of milliseconds. A password hash is for low-entropy secrets.
 */
#include "policy-internal.h"

#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

/* ---- names, roles, scopes ------------------------------------------------ */

bool mxu_tenant_name_valid(const char *s)
{
    if (s == NULL || !(s[0] >= 'a' && s[0] <= 'z'))
        return false;
    size_t n = 0;
    for (; s[n]; n++) {
        char c = s[n];
        if (n >= 32 || !((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
            return false;
    }
    return s[n - 1] != '-';
}

static const char *const role_names[] = {"admin", "deployer", "invoker", "viewer"};

const char *mxu_role_name(enum mxu_role r)
{
    return (size_t)r < MXU_ARRAY_LEN(role_names) ? role_names[r] : "?";
}

int mxu_role_parse(const char *s, enum mxu_role *out, mxu_err *err)
{
    for (size_t i = 0; s && i < MXU_ARRAY_LEN(role_names); i++) {
        if (strcmp(s, role_names[i]) == 0) {
            *out = (enum mxu_role)i;
            return 0;
        }
    }
    return mxu_err_set(err, EINVAL, "'%.40s' is not a role (admin, deployer, invoker or viewer)",
                       s ? s : "");
}

bool mxu_scope_valid(const char *s)
{
    if (s == NULL || s[0] == '\0' || strlen(s) > 64)
        return false;
    for (; *s; s++) {
        char c = *s;
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || strchr("-_*?[]!", c)))
            return false;
    }
    return true;
}

bool mxu_scope_match(const char *scope, const char *function)
{
    /* No FNM_PATHNAME or FNM_PERIOD: function names hold neither '/' nor '.'. */
    return scope && function && fnmatch(scope, function, 0) == 0;
}

/* ---- key text ---------------------------------------------------------------- */

void pol_hex(const unsigned char *bin, size_t n, char *out)
{
    sodium_bin2hex(out, n * 2 + 1, bin, n);
}

static bool lower_hex(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    }
    return true;
}

int mxu_key_parse(const char *text, char *id, unsigned char secret[32], mxu_err *err)
{
    static const char shape[] = "an mxu key is mxu_<16 hex digits>_<64 hex digits>";
    if (text == NULL || strncmp(text, "mxu_", 4) != 0)
        return mxu_err_set(err, EINVAL, "the key does not start with 'mxu_' (%s)", shape);
    size_t n = strlen(text);
    if (n != MXU_KEY_TEXT_LEN)
        return mxu_err_set(err, EINVAL, "the key has %zu characters, not %d (%s)", n,
                           MXU_KEY_TEXT_LEN, shape);
    const char *idp = text + 4, *sep = idp + MXU_KEY_ID_HEX, *sp = sep + 1;
    if (*sep != '_' || !lower_hex(idp, MXU_KEY_ID_HEX) || !lower_hex(sp, MXU_KEY_SECRET_HEX))
        return mxu_err_set(err, EINVAL, "the key is not well-formed (%s)", shape);
    memcpy(id, idp, MXU_KEY_ID_HEX);
    id[MXU_KEY_ID_HEX] = '\0';
    size_t got = 0;
    if (sodium_hex2bin(secret, 32, sp, MXU_KEY_SECRET_HEX, NULL, &got, NULL) != 0 || got != 32)
        return mxu_err_set(err, EINVAL, "the key is not well-formed (%s)", shape);
    return 0;
}

void mxu_key_hash(const char *id, const unsigned char secret[32], unsigned char hash[32])
{
    /* The id goes in too: two keys with the same secret (never happens with
     * random secrets, but costs nothing to rule out) hash differently. */
    crypto_generichash_state st;
    crypto_generichash_init(&st, NULL, 0, 32);
    crypto_generichash_update(&st, (const unsigned char *)"mxu-key-v1", 10);
    crypto_generichash_update(&st, (const unsigned char *)id, strlen(id));
    crypto_generichash_update(&st, secret, 32);
    crypto_generichash_final(&st, hash, 32);
}

int mxu_expiry_parse(const char *s, uint64_t *ms, mxu_err *err)
{
    size_t n = s ? strlen(s) : 0;
    if (n > 1 && s[n - 1] == 'd') {
        char num[24];
        uint64_t days;
        if (n - 1 < sizeof(num)) {
            memcpy(num, s, n - 1);
            num[n - 1] = '\0';
            if (mxu_parse_u64(num, &days) == 0 && days > 0 && days <= 36500) {
                *ms = days * 86400000ull;
                return 0;
            }
        }
        return mxu_err_set(err, EINVAL, "'%.40s' is not an expiry (write e.g. 30d, 12h, 90s)", s);
    }
    if (mxu_parse_duration_ms(s, ms, NULL) < 0 || *ms == 0)
        return mxu_err_set(err, EINVAL, "'%.40s' is not an expiry (write e.g. 30d, 12h, 90s)",
                           s ? s : "");
    return 0;
}

/* ---- the CLI credentials file ---------------------------------------------------- */

char *mxu_credentials_path(void)
{
    const char *xdg = getenv("XDG_CONFIG_HOME");
    if (xdg && xdg[0] == '/')
        return mxu_asprintf("%s/mxu/credentials", xdg);
    const char *home = getenv("HOME");
    if (home && home[0] == '/')
        return mxu_asprintf("%s/.config/mxu/credentials", home);
    return NULL;
}

/* The URL without trailing slashes, as lines are compared. */
static size_t url_len(const char *url)
{
    size_t n = strlen(url);
    while (n > 0 && url[n - 1] == '/')
        n--;
    return n;
}

/* Is `line` ("URL KEY") the line of this url? Then *key points at its key. */
static bool line_for(const char *line, size_t len, const char *url, const char **key,
                     size_t *keylen)
{
    const char *sp = memchr(line, ' ', len);
    if (sp == NULL)
        return false;
    size_t ul = (size_t)(sp - line);
    while (ul > 0 && line[ul - 1] == '/')
        ul--;
    size_t want = url_len(url);
    if (ul != want || strncmp(line, url, want) != 0)
        return false;
    *key = sp + 1;
    *keylen = len - (size_t)(sp + 1 - line);
    while (*keylen > 0 && ((*key)[*keylen - 1] == '\r' || (*key)[*keylen - 1] == ' '))
        (*keylen)--;
    return true;
}

char *mxu_credentials_lookup(const char *path, const char *url)
{
    _cleanup_buf_ mxu_buf b = {0};
    if (path == NULL || url == NULL || mxu_read_file(path, 1 << 20, &b, NULL) < 0 || b.len == 0)
        return NULL;
    for (size_t i = 0; i < b.len;) {
        const char *nl = memchr(b.data + i, '\n', b.len - i);
        size_t len = nl ? (size_t)(nl - (b.data + i)) : b.len - i;
        const char *key;
        size_t keylen;
        if (len > 0 && b.data[i] != '#' && line_for(b.data + i, len, url, &key, &keylen) &&
            keylen > 0)
            return mxu_strndup(key, keylen);
        i += len + 1;
    }
    return NULL;
}

int mxu_credentials_store(const char *path, const char *url, const char *key, mxu_err *err)
{
    _cleanup_buf_ mxu_buf old = {0};
    _cleanup_buf_ mxu_buf out = {0};
    _cleanup_free_ char *dir = mxu_strdup(path);
    char *slash = strrchr(dir, '/');
    if (slash && slash != dir) {
        *slash = '\0';
        if (mxu_mkdir_p(dir, 0700, err) < 0)
            return -1;
    }
    if (mxu_read_file(path, 1 << 20, &old, NULL) == 0) {
        for (size_t i = 0; i < old.len;) {
            const char *nl = memchr(old.data + i, '\n', old.len - i);
            size_t len = nl ? (size_t)(nl - (old.data + i)) : old.len - i;
            const char *k;
            size_t kl;
            if (len > 0 && !line_for(old.data + i, len, url, &k, &kl)) {
                mxu_buf_append(&out, old.data + i, len);
                mxu_buf_puts(&out, "\n");
            }
            i += len + 1;
        }
    }
    mxu_buf_printf(&out, "%.*s %s\n", (int)url_len(url), url, key);
    return mxu_write_file_atomic(path, out.data, out.len, 0600, err);
}
