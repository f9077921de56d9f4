/*
 * `mxu invoke NAME[@REF][/sub/path]`: call a function over /fn/ like curl
 * would, with the function's body on stdout byte for byte, so that
 * `mxu invoke thumb -f in.png > out.png` works.
 *
 * The one thing curl cannot do is tell the function's own error responses
 * from the node's: a node error (docs/api.md, Errors) is a JSON body
 * {"error": {"code", "message"}} with one of the documented codes. Those are
 * printed as `mxu: <code>: <message>` on stderr instead of being passed off
 * as the function's output.
 */
#include "cli-internal.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <string.h>
#include <strings.h>

/* Bodies are read whole into memory; the node takes at most 6 MiB by
 * default, so this only guards against piping a disk image by mistake. */
#define INVOKE_MAX_BODY (256u * 1024 * 1024)

enum {
    OPT_JSON = CLI_OPT_JSON,
    OPT_DATA = CLI_OPT_FIRST_VERB,
    OPT_FILE,
    OPT_METHOD,
    OPT_HEADER,
    OPT_INCLUDE,
};

static const cli_option invoke_opts[] = {
    CLI_OPT_COMMON,
    {"json", 0, false, OPT_JSON},
    {"data", 'd', true, OPT_DATA},
    {"file", 'f', true, OPT_FILE},
    {"request", 'X', true, OPT_METHOD},
    {"header", 'H', true, OPT_HEADER},
    {"include", 'i', false, OPT_INCLUDE},
};

const cli_verb_help cli_help_invoke = {
    .name = "invoke",
    .usage = "invoke NAME[@REF][/sub/path] [-d DATA | -f FILE | -f -] [-X METHOD] "
             "[-H 'K: V']... [-i] [--json] [--url URL]",
    .summary = "call a function and print its response",
    .description =
        "Call function NAME through the node, like `curl URL/fn/NAME...`. REF is a version\n"
        "number or an alias (default: latest); /sub/path and ?query are passed on to the\n"
        "function. The request is a POST when there is a body, else a GET (unless -X).\n"
        "\n"
        "The response body goes to stdout exactly as the function sent it. Exit status 1\n"
        "when the status is not 2xx; when the node itself refused or failed the call\n"
        "(no capacity, timeout, crash...) its reason is printed as 'mxu: CODE: message'.",
    .options = "  -d, --data DATA      send DATA as the body\n"
               "  -f, --file FILE      send the contents of FILE ('-' for stdin) as the body\n"
               "  -X, --request METHOD use METHOD (GET, POST, PUT, DELETE, ...)\n"
               "  -H, --header 'K: V'  add a request header (repeatable)\n"
               "  -i, --include        print the status line and headers to stderr first\n"
               "  --json               print {\"status\", \"headers\", \"body\", \"invocation\"}\n"
               "                       (\"body_base64\" instead of \"body\" if not UTF-8)\n",
    .example = "  mxu invoke hello\n"
               "  mxu invoke hello@prod/users/7?full=1 -H 'Accept: application/json'\n"
               "  mxu invoke thumb -f photo.jpg > thumb.jpg\n",
};

/* The codes of docs/api.md's error table that an invocation can meet. */
static const char *const platform_codes[] = {
    "bad_request",       "invalid_name",     "not_found",          "function_not_found",
    "version_not_found", "alias_not_found",  "method_not_allowed", "body_too_large",
    "queue_full",        "function_crashed", "function_failed",    "start_failed",
    "bad_response",      "no_capacity",      "queue_timeout",      "shutting_down",
    "function_timeout",
};

bool cli_platform_error(const cli_response *r, json_t **json, const char **code,
                        const char **message)
{
    *json = NULL;
    *code = *message = NULL;
    if (r->status < 400)
        return false;
    const char *type = cli_response_header(r, "Content-Type");
    if (type == NULL || strncasecmp(type, "application/json", 16) != 0)
        return false;
    json_t *j = json_loadb(r->body.data, r->body.len, 0, NULL);
    json_t *e = json_object_get(j, "error");
    const char *c = cli_json_str(e, "code", NULL), *m = cli_json_str(e, "message", NULL);
    bool known = false;
    for (size_t i = 0; c && m && i < MXU_ARRAY_LEN(platform_codes); i++)
        known = known || strcmp(c, platform_codes[i]) == 0;
    if (!known) {
        json_decref(j);
        return false;
    }
    *json = j;
    *code = c;
    *message = m;
    return true;
}

void cli_invoke_path(const cli_target *t, mxu_buf *out)
{
    mxu_buf_puts(out, "/fn/");
    cli_path_segment(out, t->name);
    if (t->ref) {
        mxu_buf_puts(out, "@");
        cli_path_segment(out, t->ref);
    }
    /* Keep what has a meaning in a path and query ('/', '?', '&', '=', and
     * '%' so an already-encoded path stays as typed); encode the rest
     * (spaces, quotes, '#', non-ASCII). */
    cli_url_escape(out, t->path, "/?&=%:@!$'()*+,;");
}

json_t *cli_invoke_json(const cli_response *r)
{
    json_t *headers = json_object();
    for (size_t i = 0; i < r->nheaders; i++) {
        /* Lower-case names: HTTP names are case-insensitive, JSON keys are not,
         * and a script should find "content-type" whatever the function wrote. */
        _cleanup_free_ char *name = mxu_strdup(r->headers[i].name);
        for (char *c = name; *c; c++)
            *c = (char)tolower((unsigned char)*c);
        const char *v = r->headers[i].value;
        if (!mxu_utf8_valid(name, strlen(name)))
            continue;
        json_t *value = mxu_utf8_valid(v, strlen(v)) ? json_string(v) : json_string("");
        json_t *prev = json_object_get(headers, name);
        if (prev) {
            /* Repeated headers joined as HTTP allows (RFC 9110 5.3). */
            char *joined =
                mxu_asprintf("%s, %s", json_string_value(prev), json_string_value(value));
            json_decref(value);
            value = json_string(joined);
            free(joined);
        }
        json_object_set_new(headers, name, value);
    }
    json_t *o = json_object();
    json_object_set_new(o, "status", json_integer(r->status));
    json_object_set_new(o, "headers", headers);
    if (mxu_utf8_valid(r->body.data, r->body.len)) {
        json_object_set_new(o, "body", json_stringn(r->body.data, r->body.len));
    } else {
        size_t enc = sodium_base64_ENCODED_LEN(r->body.len, sodium_base64_VARIANT_ORIGINAL);
        char *b64 = mxu_malloc(enc);
        sodium_bin2base64(b64, enc, (const unsigned char *)r->body.data, r->body.len,
                          sodium_base64_VARIANT_ORIGINAL);
        json_object_set_new(o, "body_base64", json_string(b64));
        free(b64);
    }
    const char *inv = cli_response_header(r, "X-Mxu-Invocation-Id");
    json_object_set_new(o, "invocation", inv ? json_string(inv) : json_null());
    return o;
}

static int read_all_fd(int fd, const char *what, mxu_buf *out, mxu_err *err)
{
    for (;;) {
        mxu_buf_reserve(out, 65536);
        ssize_t n = read(fd, out->data + out->len, out->cap - out->len - 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return mxu_err_sys(err, errno, "cannot read %s", what);
        if (n == 0)
            return 0;
        out->len += (size_t)n;
        out->data[out->len] = '\0';
        if (out->len > INVOKE_MAX_BODY)
            return mxu_err_set(err, EFBIG, "%s is larger than %u MiB", what, INVOKE_MAX_BODY >> 20);
    }
}

static bool method_valid(const char *m)
{
    if (*m == '\0')
        return false;
    for (; *m; m++)
        if (!isalnum((unsigned char)*m) && !strchr("!#$%&'*+-.^_`|~", *m))
            return false;
    return true;
}

typedef struct invoke_args {
    const char *url, *key, *target, *data, *file, *method;
    bool json, include;
    struct curl_slist *headers; /* "Name: value" lines, owned */
} invoke_args;

/* Parse the command line into `a`. Returns -1 to go on, else the exit status
 * (help printed, or a usage error). */
static int invoke_parse(int argc, char **argv, invoke_args *a)
{
    const cli_verb_help *h = &cli_help_invoke;
    const char *arg;
    mxu_err err;
    cli_parser p;
    cli_parser_init(&p, argc, argv, invoke_opts, MXU_ARRAY_LEN(invoke_opts));
    for (int id; (id = cli_parser_next(&p, &arg, &err)) != CLI_OPT_END;) {
        int rc = cli_common_option(h, id, arg, &err, &a->url, &a->key, &a->json);
        if (rc >= 0)
            return rc;
        if (rc == CLI_OPT_TAKEN)
            continue;
        switch (id) {
        case OPT_INCLUDE:
            a->include = true;
            break;
        case OPT_DATA:
        case OPT_FILE:
            if (a->data || a->file)
                return cli_usage_error(h, "give the body once (-d DATA or -f FILE)");
            *(id == OPT_DATA ? &a->data : &a->file) = arg;
            break;
        case OPT_METHOD:
            if (!method_valid(arg))
                return cli_usage_error(h, "'%s' is not an HTTP method", arg);
            a->method = arg;
            break;
        case OPT_HEADER: {
            _cleanup_free_ char *name = NULL, *value = NULL;
            if (cli_header_parse(arg, &name, &value, &err) < 0)
                return cli_usage_error(h, "%s", err.msg);
            /* "Name;" is curl's way to send a header with an empty value. */
            _cleanup_free_ char *line =
                value[0] ? mxu_asprintf("%s: %s", name, value) : mxu_asprintf("%s;", name);
            a->headers = curl_slist_append(a->headers, line);
            break;
        }
        case CLI_OPT_POSITIONAL:
            if (a->target)
                return cli_usage_error(h, "invoke takes one function (got '%s' and '%s')",
                                       a->target, arg);
            a->target = arg;
            break;
        }
    }
    if (a->target == NULL)
        return cli_usage_error(h, "which function?");
    return -1;
}

/* Print the response as asked and return the exit status. */
static int invoke_output(const invoke_args *a, const cli_target *t, const cli_response *resp)
{
    if (a->include) {
        fprintf(stderr, "%s\n", resp->status_line ? resp->status_line : "");
        for (size_t i = 0; i < resp->nheaders; i++)
            fprintf(stderr, "%s: %s\n", resp->headers[i].name, resp->headers[i].value);
        fputc('\n', stderr);
    }
    json_t *perr;
    const char *code, *message;
    bool platform = cli_platform_error(resp, &perr, &code, &message);
    if (a->json) {
        json_t *o = cli_invoke_json(resp);
        char *text = json_dumps(o, JSON_COMPACT);
        if (text)
            printf("%s\n", text);
        free(text);
        json_decref(o);
    } else if (!platform && resp->body.len) {
        fwrite(resp->body.data, 1, resp->body.len, stdout);
    }
    int status = 0;
    if (fflush(stdout) != 0) {
        fprintf(stderr, "mxu: cannot write the response: %s\n", strerror(errno));
        status = CLI_EXIT_FAIL;
    } else if (platform) {
        const char *retry = cli_response_header(resp, "Retry-After");
        fprintf(stderr, "mxu: %s: %s%s%s%s\n", code, message, retry ? " (retry after " : "",
                retry ? retry : "", retry ? " s)" : "");
        status = CLI_EXIT_FAIL;
    } else if (resp->status < 200 || resp->status >= 300) {
        /* The status line is already on screen with -i, and in the JSON. */
        if (!a->include && !a->json) {
            const char *sp = resp->status_line ? strchr(resp->status_line, ' ') : NULL;
            fprintf(stderr, "mxu: %s answered %s\n", t->name, sp ? sp + 1 : "with an error status");
        }
        status = CLI_EXIT_FAIL;
    }
    json_decref(perr);
    return status;
}

/* The body from -d, -f FILE or -f - (stdin). */
static int invoke_body(const invoke_args *a, mxu_buf *body, mxu_err *err)
{
    if (a->data)
        mxu_buf_puts(body, a->data);
    else if (a->file && strcmp(a->file, "-") == 0)
        return read_all_fd(STDIN_FILENO, "stdin", body, err);
    else if (a->file)
        return mxu_read_file(a->file, INVOKE_MAX_BODY, body, err);
    return 0;
}

static int invoke_run(const invoke_args *a, const cli_target *t)
{
    mxu_err err;
    _cleanup_buf_ mxu_buf body = {0}, path = {0};
    bool has_body = a->data || a->file;
    if (invoke_body(a, &body, &err) < 0) {
        fprintf(stderr, "mxu: %s\n", err.msg);
        return CLI_EXIT_FAIL;
    }
    if (has_body && body.data == NULL)
        mxu_buf_append(&body, "", 0); /* an empty body is still a body: POST, length 0 */

    cli_client c;
    if (cli_client_init(&c, a->url, a->key, &err) < 0) {
        fprintf(stderr, "mxu: %s\n", err.msg);
        return CLI_EXIT_USAGE;
    }
    cli_invoke_path(t, &path);
    cli_request rq = {.method = a->method  ? a->method
                                : has_body ? "POST"
                                           : "GET",
                      .path = path.data,
                      .body = has_body ? body.data : NULL,
                      .body_len = body.len,
                      .headers = a->headers};
    cli_response resp;
    int rc = cli_http(&c, &rq, &resp, &err);
    cli_client_close(&c);
    if (rc < 0) {
        fprintf(stderr, "mxu: %s\n", err.msg);
        return CLI_EXIT_FAIL;
    }
    int status = invoke_output(a, t, &resp);
    cli_response_free(&resp);
    return status;
}

int mxu_cmd_invoke(int argc, char **argv)
{
    invoke_args a = {0};
    int status = invoke_parse(argc, argv, &a);
    if (status < 0) {
        cli_target t;
        mxu_err err;
        if (cli_target_parse(a.target, &t, &err) < 0) {
            status = cli_usage_error(&cli_help_invoke, "%s", err.msg);
        } else {
            status = invoke_run(&a, &t);
            cli_target_free(&t);
        }
    }
    curl_slist_free_all(a.headers);
    return status;
}
