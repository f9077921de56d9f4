/*
 * Client plumbing shared by every verb of src/cli.
 *
 * Divisions, in order:
 *   help and usage   — the --help page and the exit-2 usage error;
 *   option parsing   — a stateless getopt_long (see cli-internal.h);
 *   pure helpers     — invocation targets, -H headers, URL escaping,
 *                      printable log text, table cells;
 *   tables           — aligned columns;
 *   HTTP             — one libcurl easy handle per verb run, reset between
 *                      requests so its connection is reused (`logs -f` polls
 *                      over one socket); transport failures become sentences
 *                      that say which node and what to do;
 *   management API   — JSON in and out, node errors to messages.
 */
#include "cli-internal.h"
#include "policy/policy.h"

#include <ctype.h>
#include <errno.h>
#include <string.h>
#include <strings.h>

/* ---- help and usage -------------------------------------------------------- */

void cli_print_help(const cli_verb_help *h, FILE *out)
{
    fprintf(out, "usage: mxu %s\n\n%s\n", h->usage, h->description);
    fprintf(out, "\noptions:\n%s%s", h->options ? h->options : "", CLI_COMMON_OPTIONS_HELP);
    if (h->example)
        fprintf(out, "\nexample:\n%s", h->example);
}

int cli_usage_error(const cli_verb_help *h, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    fprintf(stderr, "mxu: %s\nusage: mxu %s\nTry 'mxu %s --help' for more.\n", msg, h->usage,
            h->name);
    return CLI_EXIT_USAGE;
}

/* ---- option parsing -------------------------------------------------------- */

void cli_parser_init(cli_parser *p, int argc, char **argv, const cli_option *opts, size_t nopts)
{
    memset(p, 0, sizeof(*p));
    p->argc = argc;
    p->argv = argv;
    p->opts = opts;
    p->nopts = nopts;
    p->i = 1;
}

static const cli_option *find_short(const cli_parser *p, char c)
{
    for (size_t i = 0; i < p->nopts; i++)
        if (p->opts[i].short_name == c)
            return &p->opts[i];
    return NULL;
}

static const cli_option *find_long(const cli_parser *p, const char *name, size_t n)
{
    for (size_t i = 0; i < p->nopts; i++) {
        const char *l = p->opts[i].long_name;
        if (l && strlen(l) == n && memcmp(l, name, n) == 0)
            return &p->opts[i];
    }
    return NULL;
}

int cli_parser_next(cli_parser *p, const char **arg, mxu_err *err)
{
    *arg = NULL;
    if (p->rest) {
        /* Inside a group of short options, "-iv" or "-dVALUE". */
        char c = *p->rest++;
        const cli_option *o = find_short(p, c);
        if (o == NULL) {
            p->rest = NULL;
            return mxu_err_set(err, EINVAL, "unknown option '-%c'", c);
        }
        if (o->has_arg) {
            if (*p->rest) {
                *arg = p->rest;
            } else if (p->i < p->argc) {
                *arg = p->argv[p->i++];
            } else {
                p->rest = NULL;
                return mxu_err_set(err, EINVAL, "option '-%c' needs a value", c);
            }
            p->rest = NULL;
        } else if (*p->rest == '\0') {
            p->rest = NULL;
        }
        return o->id;
    }
    if (p->i >= p->argc)
        return CLI_OPT_END;
    const char *a = p->argv[p->i++];
    /* "-" alone is a positional by convention (stdin). */
    if (p->no_more_options || a[0] != '-' || a[1] == '\0') {
        *arg = a;
        return CLI_OPT_POSITIONAL;
    }
    if (a[1] != '-') {
        p->rest = a + 1;
        return cli_parser_next(p, arg, err);
    }
    if (a[2] == '\0') {
        p->no_more_options = true;
        return cli_parser_next(p, arg, err);
    }
    const char *name = a + 2;
    const char *eq = strchr(name, '=');
    size_t n = eq ? (size_t)(eq - name) : strlen(name);
    const cli_option *o = find_long(p, name, n);
    if (o == NULL)
        return mxu_err_set(err, EINVAL, "unknown option '--%.*s'", (int)MXU_MIN(n, 100), name);
    if (o->has_arg) {
        if (eq)
            *arg = eq + 1;
        else if (p->i < p->argc)
            *arg = p->argv[p->i++];
        else
            return mxu_err_set(err, EINVAL, "option '--%s' needs a value", o->long_name);
    } else if (eq) {
        return mxu_err_set(err, EINVAL, "option '--%s' takes no value", o->long_name);
    }
    return o->id;
}

int cli_common_option(const cli_verb_help *h, int id, const char *arg, const mxu_err *err,
                      const char **url, const char **key, bool *json)
{
    switch (id) {
    case CLI_OPT_ERROR:
        return cli_usage_error(h, "%s", err->msg);
    case CLI_OPT_HELP:
        cli_print_help(h, stdout);
        return 0;
    case CLI_OPT_URL:
        *url = arg;
        return CLI_OPT_TAKEN;
    case CLI_OPT_KEY:
        *key = arg;
        return CLI_OPT_TAKEN;
    case CLI_OPT_JSON:
        if (json == NULL)
            break;
        *json = true;
        return CLI_OPT_TAKEN;
    }
    return CLI_OPT_VERB;
}

int cli_parse_simple(const cli_verb_help *h, int argc, char **argv, const cli_option *flags,
                     size_t nflags, int minpos, int maxpos, cli_simple_args *out)
{
    /* Room for every option a verb can have (one per value slot): a verb
     * with more is a programming error, not options to drop quietly. */
    cli_option opts[4 + MXU_ARRAY_LEN(out->values)] = {CLI_OPT_COMMON,
                                                       {"json", 0, false, CLI_OPT_JSON}};
    size_t nopts = 4;
    if (nflags > MXU_ARRAY_LEN(out->values)) {
        fprintf(stderr, "mxu: internal error: %s has %zu options, at most %zu fit\n", h->name,
                nflags, MXU_ARRAY_LEN(out->values));
        abort();
    }
    for (size_t i = 0; i < nflags; i++)
        opts[nopts++] = flags[i];
    memset(out, 0, sizeof(*out));
    cli_parser p;
    cli_parser_init(&p, argc, argv, opts, nopts);
    const char *arg;
    mxu_err err;
    for (int id; (id = cli_parser_next(&p, &arg, &err)) != CLI_OPT_END;) {
        int rc = cli_common_option(h, id, arg, &err, &out->url, &out->key, &out->json);
        if (rc >= 0)
            return rc;
        if (rc == CLI_OPT_TAKEN)
            continue;
        if (id == CLI_OPT_POSITIONAL) {
            if (out->npos >= maxpos || out->npos >= (int)MXU_ARRAY_LEN(out->pos))
                return cli_usage_error(h, "unexpected argument '%s'", arg);
            out->pos[out->npos++] = arg;
        } else if (id >= CLI_OPT_FIRST_VERB && id < CLI_OPT_FIRST_VERB + 32) {
            int k = id - CLI_OPT_FIRST_VERB;
            out->flags |= 1u << k;
            if (k < (int)MXU_ARRAY_LEN(out->values))
                out->values[k] = arg;
        }
    }
    if (out->npos < minpos)
        return cli_usage_error(h, "missing argument%s", minpos - out->npos > 1 ? "s" : "");
    return -1;
}

int cli_client_open(cli_client *c, const char *url, const char *key)
{
    mxu_err err;
    if (cli_client_init(c, url, key, &err) < 0) {
        fprintf(stderr, "mxu: %s\n", err.msg);
        return -1;
    }
    return 0;
}

/* ---- pure helpers ---------------------------------------------------------- */

static bool all_digits(const char *s)
{
    if (*s == '\0')
        return false;
    for (; *s; s++)
        if (*s < '0' || *s > '9')
            return false;
    return true;
}

int cli_target_parse(const char *s, cli_target *out, mxu_err *err)
{
    memset(out, 0, sizeof(*out));
    size_t n = strcspn(s, "@/?");
    _cleanup_free_ char *name = mxu_strndup(s, n);
    if (n == 0)
        return mxu_err_set(err, EINVAL, "'%.200s' does not start with a function name", s);
    if (!mxu_name_valid(name))
        return mxu_err_set(err, EINVAL,
                           "'%.200s' is not a function name (lowercase letters, digits, '-' and "
                           "'_', starting with a letter)",
                           name);
    const char *p = s + n;
    _cleanup_free_ char *ref = NULL;
    if (*p == '@') {
        p++;
        size_t rn = strcspn(p, "/?");
        ref = mxu_strndup(p, rn);
        if (rn == 0)
            return mxu_err_set(err, EINVAL,
                               "nothing after '@' in '%.200s' (write %s@3 for version 3 or "
                               "%s@prod for an alias)",
                               s, name, name);
        if (!all_digits(ref) && !mxu_name_valid(ref))
            return mxu_err_set(err, EINVAL,
                               "'%.200s' is neither a version number nor an alias name", ref);
        p += rn;
    }
    out->name = steal_pointer(&name);
    out->ref = steal_pointer(&ref);
    out->path = mxu_strdup(p);
    return 0;
}

void cli_target_free(cli_target *t)
{
    free(t->name);
    free(t->ref);
    free(t->path);
    memset(t, 0, sizeof(*t));
}

/* RFC 9110 token characters, what a header name may be made of. */
static bool is_tchar(unsigned char c)
{
    return isalnum(c) || (c && strchr("!#$%&'*+-.^_`|~", c));
}

int cli_header_parse(const char *s, char **name, char **value, mxu_err *err)
{
    const char *colon = strchr(s, ':');
    if (colon == NULL)
        return mxu_err_set(err, EINVAL, "header '%.200s' has no ':' (write -H 'Name: value')", s);
    if (colon == s)
        return mxu_err_set(err, EINVAL, "header '%.200s' has no name", s);
    for (const char *c = s; c < colon; c++)
        if (!is_tchar((unsigned char)*c))
            return mxu_err_set(
                err, EINVAL,
                "header name '%.*s' may only hold letters, digits and !#$%%&'*+-.^_`|~",
                (int)MXU_MIN(colon - s, 200), s);
    const char *v = colon + 1;
    while (*v == ' ' || *v == '\t')
        v++;
    size_t vn = strlen(v);
    while (vn > 0 && (v[vn - 1] == ' ' || v[vn - 1] == '\t'))
        vn--;
    if (strcspn(v, "\r\n") < vn)
        return mxu_err_set(err, EINVAL, "header '%.*s' has a line break in its value",
                           (int)MXU_MIN(colon - s, 200), s);
    size_t nn = (size_t)(colon - s);
    /* curl frames the body itself; a second, different length would make the
     * request unreadable for the node. */
    if ((nn == 14 && strncasecmp(s, "Content-Length", nn) == 0) ||
        (nn == 17 && strncasecmp(s, "Transfer-Encoding", nn) == 0))
        return mxu_err_set(err, EINVAL, "header '%.*s' is set by mxu from the body; leave it out",
                           (int)nn, s);
    *name = mxu_strndup(s, nn);
    *value = mxu_strndup(v, vn);
    return 0;
}

void cli_url_escape(mxu_buf *out, const char *s, const char *keep)
{
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        if (isalnum(*c) || strchr("-._~", *c) || (keep && strchr(keep, *c))) {
            mxu_buf_append(out, c, 1);
        } else {
            char e[3] = {'%', hex[*c >> 4], hex[*c & 15]};
            mxu_buf_append(out, e, 3);
        }
    }
}

/* Length of the UTF-8 sequence starting at s (1..4), or 0 if it is not a
 * valid one. */
static size_t utf8_seq_len(const unsigned char *s, size_t avail)
{
    size_t n = *s < 0x80             ? 1
               : (*s & 0xE0) == 0xC0 ? 2
               : (*s & 0xF0) == 0xE0 ? 3
               : (*s & 0xF8) == 0xF0 ? 4
                                     : 0;
    if (n == 0 || n > avail || !mxu_utf8_valid((const char *)s, n))
        return 0;
    return n;
}

void cli_append_printable(mxu_buf *out, const char *s)
{
    size_t len = strlen(s);
    if (len > 0 && s[len - 1] == '\n')
        len--;
    if (len > 0 && s[len - 1] == '\r')
        len--;
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < len) {
        unsigned char c = p[i];
        if (c == '\n') {
            mxu_buf_puts(out, "\\n");
            i++;
        } else if (c == '\r') {
            mxu_buf_puts(out, "\\r");
            i++;
        } else if (c == '\t' || (c >= 0x20 && c < 0x7f)) {
            mxu_buf_append(out, &c, 1);
            i++;
        } else if (c < 0x80) {
            mxu_buf_printf(out, "\\x%02x", c);
            i++;
        } else {
            size_t n = utf8_seq_len(p + i, len - i);
            /* C1 controls (U+0080..U+009F, encoded C2 80..C2 9F) include CSI:
             * escape them like the C0 ones. */
            if (n == 0 || (n == 2 && c == 0xC2 && p[i + 1] < 0xA0)) {
                mxu_buf_printf(out, "\\x%02x", c);
                i++;
            } else {
                mxu_buf_append(out, p + i, n);
                i += n;
            }
        }
    }
    if (out->data == NULL)
        mxu_buf_append(out, "", 0); /* so that an empty text is still a string */
}

void cli_append_time_short(mxu_buf *out, const char *iso)
{
    const char *dot = strchr(iso, '.');
    if (dot == NULL) {
        mxu_buf_puts(out, iso);
        return;
    }
    mxu_buf_append(out, iso, (size_t)(dot - iso));
    const char *after = dot + 1;
    while (*after >= '0' && *after <= '9')
        after++;
    mxu_buf_puts(out, after);
}

/* ---- tables ---------------------------------------------------------------- */

void cli_table_init(cli_table *t, size_t ncols, const char *const *headers)
{
    memset(t, 0, sizeof(*t));
    t->ncols = ncols;
    cli_table_add(t, headers);
}

void cli_table_add(cli_table *t, const char *const *cells)
{
    if (t->nrows == t->cap) {
        t->cap = t->cap ? t->cap * 2 : 8;
        t->cells = mxu_realloc(t->cells, t->cap * t->ncols * sizeof(char *));
    }
    for (size_t c = 0; c < t->ncols; c++) {
        const char *v = cells[c] && cells[c][0] ? cells[c] : "-";
        t->cells[t->nrows * t->ncols + c] = mxu_strdup(v);
    }
    t->nrows++;
}

/* Display width: one column per code point, which is right for the names,
 * numbers and ASCII times tables hold. */
static size_t text_width(const char *s)
{
    size_t w = 0;
    for (; *s; s++)
        if (((unsigned char)*s & 0xC0) != 0x80)
            w++;
    return w;
}

void cli_table_render(const cli_table *t, mxu_buf *out)
{
    size_t *width = mxu_calloc(t->ncols ? t->ncols : 1, sizeof(size_t));
    for (size_t r = 0; r < t->nrows; r++)
        for (size_t c = 0; c < t->ncols; c++)
            width[c] = MXU_MAX(width[c], text_width(t->cells[r * t->ncols + c]));
    for (size_t r = 0; r < t->nrows; r++) {
        for (size_t c = 0; c < t->ncols; c++) {
            const char *cell = t->cells[r * t->ncols + c];
            mxu_buf_puts(out, cell);
            if (c + 1 < t->ncols)
                mxu_buf_printf(out, "%*s", (int)(width[c] - text_width(cell) + 2), "");
        }
        mxu_buf_puts(out, "\n");
    }
    free(width);
}

void cli_table_print(const cli_table *t, FILE *out)
{
    _cleanup_buf_ mxu_buf b = {0};
    cli_table_render(t, &b);
    fwrite(b.data ? b.data : "", 1, b.len, out);
}

void cli_table_free(cli_table *t)
{
    for (size_t i = 0; i < t->nrows * t->ncols; i++)
        free(t->cells[i]);
    free(t->cells);
    memset(t, 0, sizeof(*t));
}

/* ---- HTTP ------------------------------------------------------------------ */

/* The API key, from --key, else MXU_KEY, else the credentials file. */
static void client_key(cli_client *c, const char *key)
{
    const char *env = getenv("MXU_KEY");
    if (key && key[0]) {
        c->key = mxu_strdup(key);
        c->key_source = mxu_strdup("--key");
    } else if (env && env[0]) {
        c->key = mxu_strdup(env);
        c->key_source = mxu_strdup("MXU_KEY");
    } else {
        _cleanup_free_ char *path = mxu_credentials_path();
        c->key = mxu_credentials_lookup(path, c->base_url);
        if (c->key)
            c->key_source = mxu_asprintf("%s", path);
    }
}

int cli_client_init(cli_client *c, const char *url, const char *key, mxu_err *err)
{
    memset(c, 0, sizeof(*c));
    if (url == NULL || url[0] == '\0') {
        const char *env = getenv("MXU_URL");
        if (env && env[0]) {
            url = env;
            c->url_from_env = true;
        } else {
            url = CLI_DEFAULT_URL;
        }
    }
    if (strncasecmp(url, "http://", 7) != 0 && strncasecmp(url, "https://", 8) != 0)
        return mxu_err_set(err, EINVAL, "'%.200s'%s is not a node URL (write e.g. %s)", url,
                           c->url_from_env ? " (from MXU_URL)" : "", CLI_DEFAULT_URL);
    size_t n = strlen(url);
    while (n > 0 && url[n - 1] == '/')
        n--;
    /* libcurl counts its global init; pair each with a cleanup in close. */
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return mxu_err_set(err, EIO, "cannot initialise libcurl");
    c->curl = curl_easy_init();
    if (c->curl == NULL) {
        curl_global_cleanup();
        return mxu_err_set(err, ENOMEM, "cannot initialise libcurl");
    }
    c->base_url = mxu_strndup(url, n);
    client_key(c, key);
    return 0;
}

void cli_client_close(cli_client *c)
{
    if (c->curl) {
        curl_easy_cleanup(c->curl);
        curl_global_cleanup();
    }
    free(c->base_url);
    if (c->key)
        memset(c->key, 0, strlen(c->key));
    free(c->key);
    free(c->key_source);
    memset(c, 0, sizeof(*c));
}

static size_t on_body(char *data, size_t size, size_t n, void *ud)
{
    mxu_buf_append(ud, data, size * n);
    return size * n;
}

static size_t on_header(char *data, size_t size, size_t n, void *ud)
{
    cli_response *r = ud;
    size_t len = size * n;
    while (len > 0 && (data[len - 1] == '\n' || data[len - 1] == '\r'))
        len--;
    if (len >= 5 && memcmp(data, "HTTP/", 5) == 0) {
        /* A new status line (after a 100 Continue, say): only the last
         * response's headers are the response's. */
        for (size_t i = 0; i < r->nheaders; i++) {
            free(r->headers[i].name);
            free(r->headers[i].value);
        }
        r->nheaders = 0;
        free(r->status_line);
        r->status_line = mxu_strndup(data, len);
        return size * n;
    }
    const char *colon = memchr(data, ':', len);
    if (colon == NULL || colon == data)
        return size * n; /* the blank end line, or a folded line: nothing to keep */
    const char *v = colon + 1, *end = data + len;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    r->headers = mxu_realloc(r->headers, (r->nheaders + 1) * sizeof(*r->headers));
    r->headers[r->nheaders].name = mxu_strndup(data, (size_t)(colon - data));
    r->headers[r->nheaders].value = mxu_strndup(v, (size_t)(end - v));
    r->nheaders++;
    return size * n;
}

static int on_progress(void *ud, curl_off_t a, curl_off_t b, curl_off_t c, curl_off_t d)
{
    MXU_UNUSED(a), MXU_UNUSED(b), MXU_UNUSED(c), MXU_UNUSED(d);
    volatile sig_atomic_t *cancel = ud;
    return *cancel ? 1 : 0;
}

/* "Connection refused" → "connection refused", to sit inside a sentence. */
static void lower_first(char *s)
{
    if (s[0] && isupper((unsigned char)s[0]) && !isupper((unsigned char)s[1]))
        s[0] = (char)tolower((unsigned char)s[0]);
}

static int transport_error(cli_client *c, CURLcode rc, mxu_err *err)
{
    long os_errno = 0;
    curl_easy_getinfo(c->curl, CURLINFO_OS_ERRNO, &os_errno);
    char detail[CURL_ERROR_SIZE + 64];
    snprintf(detail, sizeof(detail), "%s", c->errbuf[0] ? c->errbuf : curl_easy_strerror(rc));
    switch (rc) {
    case CURLE_COULDNT_CONNECT: {
        char why[128];
        snprintf(why, sizeof(why), "%s", os_errno ? strerror((int)os_errno) : "cannot connect");
        lower_first(why);
        return mxu_err_set(err, os_errno ? (int)os_errno : ECONNREFUSED,
                           "cannot reach the node at %s (%s) — is 'mxu serve' running? Set "
                           "MXU_URL to use another node.",
                           c->base_url, why);
    }
    case CURLE_COULDNT_RESOLVE_HOST:
        return mxu_err_set(err, EHOSTUNREACH,
                           "cannot reach the node at %s (the host name does not resolve) — set "
                           "MXU_URL or --url to a node's address.",
                           c->base_url);
    case CURLE_OPERATION_TIMEDOUT:
        return mxu_err_set(err, ETIMEDOUT, "the node at %s did not answer in time (%s)",
                           c->base_url, detail);
    case CURLE_ABORTED_BY_CALLBACK:
        return mxu_err_set(err, EINTR, "interrupted");
    case CURLE_GOT_NOTHING:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_PARTIAL_FILE:
        return mxu_err_set(err, ECONNRESET,
                           "the node at %s closed the connection before answering (%s)",
                           c->base_url, detail);
    default:
        return mxu_err_set(err, EIO, "cannot talk to the node at %s: %s", c->base_url, detail);
    }
}

/* Loopback never goes through a proxy: a developer's http_proxy must not
 * swallow requests meant for the node on their own machine. */
static char *no_proxy_list(void)
{
    const char *env = getenv("no_proxy");
    if (env == NULL || env[0] == '\0')
        env = getenv("NO_PROXY");
    if (env && strcmp(env, "*") == 0)
        return mxu_strdup("*");
    return mxu_asprintf("%s%slocalhost,127.0.0.1,::1", env ? env : "", env && env[0] ? "," : "");
}

int cli_http(cli_client *c, const cli_request *rq, cli_response *resp, mxu_err *err)
{
    memset(resp, 0, sizeof(*resp));
    CURL *h = c->curl;
    /* Reset clears options but keeps the connection cache: requests of one
     * run share a socket. */
    curl_easy_reset(h);
    c->errbuf[0] = '\0';
    _cleanup_buf_ mxu_buf url = {0};
    mxu_buf_puts(&url, c->base_url);
    mxu_buf_puts(&url, rq->path);
    _cleanup_free_ char *no_proxy = no_proxy_list();

    curl_easy_setopt(h, CURLOPT_URL, url.data);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, c->errbuf);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_NOPROXY, no_proxy);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "mxu/" MXU_VERSION_STRING);
    long connect_ms = rq->connect_timeout_ms > 0  ? rq->connect_timeout_ms
                      : c->connect_timeout_ms > 0 ? c->connect_timeout_ms
                                                  : 10000L;
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, connect_ms);
    /* No overall timeout: a build or a function may legitimately take
     * minutes, and the node enforces its own limits. */
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &resp->body);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, resp);
    volatile sig_atomic_t *cancel = rq->cancel ? rq->cancel : c->cancel;
    if (cancel) {
        curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
        curl_easy_setopt(h, CURLOPT_XFERINFODATA, cancel);
        curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    }

    /* Our own copy of the headers, plus two that undo curl defaults: no
     * "Expect: 100-continue" round trip, and no invented
     * application/x-www-form-urlencoded type on a body the user did not type. */
    struct curl_slist *hdrs = NULL;
    bool has_type = false, has_auth = false;
    for (const struct curl_slist *l = rq->headers; l; l = l->next) {
        hdrs = curl_slist_append(hdrs, l->data);
        if (strncasecmp(l->data, "content-type:", 13) == 0 ||
            strncasecmp(l->data, "content-type;", 13) == 0)
            has_type = true;
        if (strncasecmp(l->data, "authorization:", 14) == 0)
            has_auth = true; /* the user's own (-H) wins */
    }
    _cleanup_free_ char *auth =
        c->key && !has_auth ? mxu_asprintf("Authorization: Bearer %s", c->key) : NULL;
    if (auth)
        hdrs = curl_slist_append(hdrs, auth);
    hdrs = curl_slist_append(hdrs, "Expect:");
    if (rq->body && !has_type)
        hdrs = curl_slist_append(hdrs, "Content-Type:");
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);

    const char *method = rq->method ? rq->method : "GET";
    if (rq->body) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, rq->body);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)rq->body_len);
        if (strcmp(method, "POST") != 0)
            curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    } else if (strcmp(method, "GET") == 0) {
        curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
    } else if (strcmp(method, "HEAD") == 0) {
        curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    } else {
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    }

    CURLcode rc = curl_easy_perform(h);
    curl_slist_free_all(hdrs);
    if (auth)
        memset(auth, 0, strlen(auth));
    if (rc != CURLE_OK) {
        cli_response_free(resp);
        return transport_error(c, rc, err);
    }
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &resp->status);
    if (resp->body.data == NULL)
        mxu_buf_append(&resp->body, "", 0); /* an empty body is still a string */
    return 0;
}

void cli_response_free(cli_response *r)
{
    for (size_t i = 0; i < r->nheaders; i++) {
        free(r->headers[i].name);
        free(r->headers[i].value);
    }
    free(r->headers);
    free(r->status_line);
    mxu_buf_free(&r->body);
    memset(r, 0, sizeof(*r));
}

const char *cli_response_header(const cli_response *r, const char *name)
{
    for (size_t i = 0; i < r->nheaders; i++)
        if (strcasecmp(r->headers[i].name, name) == 0)
            return r->headers[i].value;
    return NULL;
}

/* ---- management API -------------------------------------------------------- */

void cli_path_segment(mxu_buf *out, const char *segment)
{
    cli_url_escape(out, segment, NULL);
}

int cli_api(cli_client *c, const char *method, const char *path, json_t *body, cli_reply *reply,
            mxu_err *err)
{
    memset(reply, 0, sizeof(*reply));
    _cleanup_free_ char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    struct curl_slist *hdrs = curl_slist_append(NULL, "Accept: application/json");
    if (text)
        hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
    cli_request rq = {.method = method,
                      .path = path,
                      .body = text,
                      .body_len = text ? strlen(text) : 0,
                      .headers = hdrs};
    cli_response resp;
    int rc = cli_http(c, &rq, &resp, err);
    curl_slist_free_all(hdrs);
    if (rc < 0)
        return -1;
    reply->status = resp.status;
    reply->raw = resp.body;
    memset(&resp.body, 0, sizeof(resp.body));
    cli_response_free(&resp);

    json_error_t jerr;
    reply->json = json_loadb(reply->raw.data, reply->raw.len, 0, &jerr);
    if (reply->status >= 200 && reply->status < 300) {
        if (reply->json == NULL)
            return mxu_err_set(err, EPROTO, "the node answered %ld but not with JSON (%s)",
                               reply->status, jerr.text);
        return 0;
    }
    json_t *e = reply->json ? json_object_get(reply->json, "error") : NULL;
    reply->code = cli_json_str(e, "code", NULL);
    reply->message = cli_json_str(e, "message", NULL);
    if (reply->message && reply->status == 401)
        return mxu_err_set(err, EACCES, "%s (%s%s; see docs/policy.md)", reply->message,
                           c->key ? "the key came from "
                                  : "no key: pass --key, set MXU_KEY, or "
                                    "add the node to ",
                           c->key ? c->key_source : "~/.config/mxu/credentials");
    if (reply->message)
        return mxu_err_set(err, EIO, "%s", reply->message);
    /* Not the node's error form: a proxy or another server at that address. */
    _cleanup_buf_ mxu_buf snippet = {0};
    size_t n = strcspn(reply->raw.data, "\n");
    _cleanup_free_ char *first = mxu_strndup(reply->raw.data, MXU_MIN(n, 200));
    cli_append_printable(&snippet, first);
    return mxu_err_set(err, EPROTO, "the node at %s answered %s %s with status %ld%s%s",
                       c->base_url, method, path, reply->status, snippet.len ? ": " : "",
                       snippet.len ? snippet.data : "");
}

void cli_reply_free(cli_reply *r)
{
    json_decref(r->json);
    mxu_buf_free(&r->raw);
    memset(r, 0, sizeof(*r));
}

void cli_print_json_text(const mxu_buf *raw)
{
    if (raw->len == 0)
        return;
    fwrite(raw->data, 1, raw->len, stdout);
    if (raw->data[raw->len - 1] != '\n')
        fputc('\n', stdout);
}

int cli_fail(const cli_reply *r, const mxu_err *err, bool json)
{
    if (json && r && r->json)
        cli_print_json_text(&r->raw);
    fflush(stdout);
    fprintf(stderr, "mxu: %s\n", err->msg);
    return CLI_EXIT_FAIL;
}

const char *cli_json_str(json_t *obj, const char *key, const char *dflt)
{
    json_t *v = obj ? json_object_get(obj, key) : NULL;
    return json_is_string(v) ? json_string_value(v) : dflt;
}

long long cli_json_int(json_t *obj, const char *key, long long dflt)
{
    json_t *v = obj ? json_object_get(obj, key) : NULL;
    if (json_is_integer(v))
        return (long long)json_integer_value(v);
    if (json_is_real(v))
        return (long long)json_real_value(v);
    return dflt;
}
