/*
 * `mxu deploy DIR`: read a function folder (cli-bundle.c), send it to the
 * node as one JSON request (POST /v1/functions) and say what came of it — a
 * new version, an unchanged one, or why the node refused: an invalid
 * manifest (its message names file:line: field, printed as is so editors can
 * jump to it) or a failed build (with the compiler's output).
 *
 * The request body is written by hand rather than through jansson: file data
 * is base64-encoded straight into the one buffer that is sent, so a 64 MiB
 * folder costs the files plus one encoded copy, not three.
 */
#include "cli-internal.h"

#include <errno.h>
#include <sodium.h>
#include <string.h>

enum { OPT_JSON = CLI_OPT_JSON };

static const cli_option deploy_opts[] = {CLI_OPT_COMMON, {"json", 0, false, OPT_JSON}};

const cli_verb_help cli_help_deploy = {
    .name = "deploy",
    .usage = "deploy DIR [--json] [--url URL]",
    .summary = "upload a function folder as a new version",
    .description =
        "Upload the function in folder DIR to the node. DIR/mxu.yaml is the manifest;\n"
        "every other file below DIR goes with it, keeping its permission bits. Hidden\n"
        "files and folders (names starting with '.') are left out, symlinks are skipped\n"
        "with a warning. A function may have at most 1000 files and 64 MiB.\n"
        "\n"
        "The node builds the function (runtime c) and makes it a new version that\n"
        "`latest` points at; if nothing changed since the latest version, no version\n"
        "is made. Exit status 1 if the node refuses the manifest or the build fails.",
    .options = "  --json         print the node's JSON answer\n",
    .example = "  mxu deploy examples/hello\n"
               "  deployed hello@1 (built in 412 ms)\n"
               "  invoke: curl http://127.0.0.1:8080/fn/hello\n",
};

/* Append `s` as a JSON string. Bytes that are not UTF-8 (possible only in a
 * folder path the user typed) become '?': the path is only shown in
 * messages, and JSON cannot carry them. */
static void append_json_string(mxu_buf *out, const char *s)
{
    _cleanup_free_ char *copy = mxu_strdup(s);
    if (!mxu_utf8_valid(copy, strlen(copy)))
        for (char *c = copy; *c; c++)
            if ((unsigned char)*c >= 0x80)
                *c = '?';
    json_t *j = json_string(copy);
    char *text = json_dumps(j, JSON_ENCODE_ANY);
    mxu_buf_puts(out, text ? text : "\"\"");
    free(text);
    json_decref(j);
}

void cli_deploy_body(const mxu_bundle *b, mxu_buf *out)
{
    mxu_buf_puts(out, "{\"manifest\":");
    append_json_string(out, b->manifest);
    mxu_buf_puts(out, ",\"manifest_path\":");
    append_json_string(out, b->manifest_path);
    mxu_buf_puts(out, ",\"files\":[");
    for (size_t i = 0; i < b->nfiles; i++) {
        const mxu_bundle_file *f = &b->files[i];
        mxu_buf_puts(out, i ? ",{\"path\":" : "{\"path\":");
        append_json_string(out, f->path);
        mxu_buf_printf(out, ",\"mode\":%u,\"data\":\"", (unsigned)f->mode);
        size_t enc = sodium_base64_ENCODED_LEN(f->len, sodium_base64_VARIANT_ORIGINAL);
        mxu_buf_reserve(out, enc);
        sodium_bin2base64(out->data + out->len, enc, f->data, f->len,
                          sodium_base64_VARIANT_ORIGINAL);
        out->len += enc - 1; /* enc counts the NUL */
        mxu_buf_puts(out, "\"}");
    }
    mxu_buf_puts(out, "]}");
}

char *cli_manifest_scalar(const char *text, const char *key)
{
    size_t klen = strlen(key);
    for (const char *line = text; line && *line;) {
        const char *eol = strchr(line, '\n');
        size_t len = eol ? (size_t)(eol - line) : strlen(line);
        if (len > klen && strncmp(line, key, klen) == 0 && line[klen] == ':') {
            /* Work on a copy of the value, trimming by index. */
            char *v = mxu_strndup(line + klen + 1, len - klen - 1);
            size_t start = strspn(v, " \t"), end = strlen(v);
            bool quoted = v[start] == '"' || v[start] == '\'';
            if (!quoted)
                end = start + strcspn(v + start, "#");
            while (end > start && strchr(" \t\r", v[end - 1]))
                end--;
            if (quoted && end - start >= 2) {
                char *close = strchr(v + start + 1, v[start]);
                if (close && (size_t)(close - v) < end) {
                    end = (size_t)(close - v);
                    start++;
                }
            }
            char *out = end > start ? mxu_strndup(v + start, end - start) : NULL;
            free(v);
            return out;
        }
        line = eol ? eol + 1 : NULL;
    }
    return NULL;
}

/* A folder name as a fallback function name in the progress line. */
static const char *base_name(const char *dir)
{
    static char buf[256];
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/')
        n--;
    size_t start = n;
    while (start > 0 && dir[start - 1] != '/')
        start--;
    snprintf(buf, sizeof(buf), "%.*s", (int)(n - start), dir + start);
    return buf;
}

static int report_refusal(const cli_reply *r, const mxu_err *err, bool json)
{
    if (json && r->json)
        cli_print_json_text(&r->raw);
    fflush(stdout);
    if (r->code && strcmp(r->code, "invalid_manifest") == 0) {
        /* "examples/hello/mxu.yaml:4: memory: ...": compiler-style, as is. */
        fprintf(stderr, "%s\n", r->message);
    } else if (r->code && strcmp(r->code, "build_failed") == 0) {
        fprintf(stderr, "mxu: %s\n", r->message);
        const char *log = cli_json_str(json_object_get(r->json, "error"), "build_log", NULL);
        if (log == NULL)
            log = cli_json_str(r->json, "build_log", "");
        if (log[0]) {
            fputs(log, stderr);
            if (log[strlen(log) - 1] != '\n')
                fputc('\n', stderr);
        }
    } else {
        fprintf(stderr, "mxu: %s\n", err->msg);
    }
    return CLI_EXIT_FAIL;
}

/* Everything of `mxu deploy` after the folder is read: shared with
 * `mxu catalog deploy` (cli-catalog.c), which may rewrite the manifest first. */
int cli_deploy_bundle(cli_client *c, mxu_bundle *b, const char *label, bool json)
{
    mxu_err err;
    int status = CLI_EXIT_FAIL;
    for (size_t i = 0; i < b->nwarnings; i++)
        fprintf(stderr, "mxu: warning: %s\n", b->warnings[i]);

    _cleanup_free_ char *name = cli_manifest_scalar(b->manifest, "name");
    _cleanup_free_ char *runtime = cli_manifest_scalar(b->manifest, "runtime");
    _cleanup_free_ char *kind = cli_manifest_scalar(b->manifest, "kind");
    _cleanup_buf_ mxu_buf body = {0};
    cli_deploy_body(b, &body);
    if (isatty(STDERR_FILENO)) {
        char size[32];
        mxu_format_size(b->total_bytes + b->manifest_len, size, sizeof(size));
        fprintf(stderr, "deploying %s (%zu files, %s)...\n", name ? name : label, b->nfiles + 1,
                size);
    }
    mxu_bundle_free(b); /* the body holds everything now */

    struct curl_slist *hdrs = curl_slist_append(NULL, "Content-Type: application/json");
    hdrs = curl_slist_append(hdrs, "Accept: application/json");
    cli_request rq = {.method = "POST",
                      .path = "/v1/functions",
                      .body = body.data,
                      .body_len = body.len,
                      .headers = hdrs};
    cli_response resp;
    uint64_t t0 = mxu_now_ns();
    int rc = cli_http(c, &rq, &resp, &err);
    uint64_t took_ms = (mxu_now_ns() - t0) / 1000000u;
    curl_slist_free_all(hdrs);
    if (rc < 0) {
        fprintf(stderr, "mxu: %s\n", err.msg);
        goto out;
    }

    /* Same interpretation as cli_api, which cannot be used directly because
     * the body is already JSON text. */
    cli_reply r = {.status = resp.status, .raw = resp.body};
    memset(&resp.body, 0, sizeof(resp.body));
    cli_response_free(&resp);
    r.json = json_loadb(r.raw.data, r.raw.len, 0, NULL);
    if (r.status < 200 || r.status >= 300 || !json_is_object(r.json)) {
        json_t *e = json_object_get(r.json, "error");
        r.code = cli_json_str(e, "code", NULL);
        r.message = cli_json_str(e, "message", NULL);
        if (r.message)
            mxu_err_set(&err, EIO, "%s", r.message);
        else
            mxu_err_set(&err, EPROTO, "the node at %s answered the deploy with status %ld%s",
                        c->base_url, r.status, r.json ? "" : " and no JSON");
        report_refusal(&r, &err, json);
        cli_reply_free(&r);
        goto out;
    }
    if (json) {
        cli_print_json_text(&r.raw);
    } else {
        const char *fn = cli_json_str(r.json, "function", name ? name : "?");
        long long version = cli_json_int(r.json, "version", 0);
        const char *log = cli_json_str(r.json, "build_log", "");
        if (log[0]) {
            /* Compiler warnings of a successful build: worth seeing. */
            fputs(log, stderr);
            if (log[strlen(log) - 1] != '\n')
                fputc('\n', stderr);
        }
        if (json_is_true(json_object_get(r.json, "unchanged"))) {
            printf("%s is unchanged (still version %lld)\n", fn, version);
        } else {
            /* docs/api.md does not promise a build time, but the node sends
             * `seconds`; without it the request's time (upload + build) is
             * the best measure. */
            json_t *secs = json_object_get(r.json, "seconds");
            if (json_is_number(secs) && json_number_value(secs) >= 0)
                took_ms = (uint64_t)(json_number_value(secs) * 1000 + 0.5);
            char took[32];
            mxu_format_duration_ms(took_ms, took, sizeof(took));
            bool built = runtime == NULL || strcmp(runtime, "exec") != 0;
            if (kind && strcmp(kind, "service") == 0) /* nothing built: its steps were checked */
                printf("deployed %s@%lld (a service; checked in %s)\n", fn, version, took);
            else
                printf("deployed %s@%lld (%s %s)\n", fn, version, built ? "built in" : "took",
                       took);
        }
        printf("invoke: curl %s/fn/%s\n", c->base_url, fn);
    }
    cli_reply_free(&r);
    status = 0;
out:
    return status;
}

int mxu_cmd_deploy(int argc, char **argv)
{
    const cli_verb_help *h = &cli_help_deploy;
    const char *url = NULL, *key = NULL, *dir = NULL, *arg;
    bool json = false;
    mxu_err err;
    cli_parser p;
    cli_parser_init(&p, argc, argv, deploy_opts, MXU_ARRAY_LEN(deploy_opts));
    for (int id; (id = cli_parser_next(&p, &arg, &err)) != CLI_OPT_END;) {
        int rc = cli_common_option(h, id, arg, &err, &url, &key, &json);
        if (rc >= 0)
            return rc;
        if (rc == CLI_OPT_TAKEN)
            continue;
        switch (id) {
        case CLI_OPT_POSITIONAL:
            if (dir)
                return cli_usage_error(h, "deploy takes one folder (got '%s' and '%s')", dir, arg);
            dir = arg;
            break;
        }
    }
    if (dir == NULL)
        return cli_usage_error(h, "which folder? (the one that holds mxu.yaml)");

    cli_client c;
    if (cli_client_init(&c, url, key, &err) < 0) {
        fprintf(stderr, "mxu: %s\n", err.msg);
        return CLI_EXIT_USAGE;
    }
    mxu_bundle b;
    if (mxu_bundle_read(dir, &b, &err) < 0) {
        fprintf(stderr, "mxu: %s\n", err.msg);
        cli_client_close(&c);
        return CLI_EXIT_FAIL;
    }
    int status = cli_deploy_bundle(&c, &b, base_name(dir), json);
    cli_client_close(&c);
    return status;
}
