/*
 * `mxu logs NAME [-f] [-n N]`: a function's log records, one per line:
 *
 *   2026-11-30T05:18:01.123Z  v3  0000018c2f3e0001  hello from the function
 *   2026-11-30T05:18:31.200Z  v3  0000018c2f3e0002  [mxu] timed out after 30 s
 *
 * Records come from GET /v1/functions/NAME/logs, oldest first; `-f` follows
 * by passing the `next` cursor back every 500 ms until Ctrl-C, which is the
 * normal way to stop and so exits 0. A function's text is hostile input to a
 * terminal: control bytes are shown escaped (cli_append_printable).
 */
#include "cli-internal.h"

#include <errno.h>
#include <string.h>
#include <time.h>

#define FOLLOW_INTERVAL_MS 500
/* The node's page size when no limit is given (docs/api.md). */
#define NODE_DEFAULT_LIMIT 1000

enum { OPT_JSON = CLI_OPT_JSON, OPT_FOLLOW = CLI_OPT_FIRST_VERB, OPT_LIMIT };

static const cli_option logs_opts[] = {
    CLI_OPT_COMMON,
    {"json", 0, false, OPT_JSON},
    {"follow", 'f', false, OPT_FOLLOW},
    {"lines", 'n', true, OPT_LIMIT},
};

const cli_verb_help cli_help_logs = {
    .name = "logs",
    .usage = "logs NAME [-f] [-n N] [--json] [--url URL]",
    .summary = "print a function's logs, or follow them",
    .description =
        "Print the most recent log records of function NAME, oldest first, one per line:\n"
        "time, version, invocation id, and the text. Text the node itself wrote about an\n"
        "invocation is marked [mxu], text from the SDK's mxu_log() [log]. Control\n"
        "characters in the text are shown escaped (\\n, \\x1b).",
    .options = "  -f, --follow   keep printing new records as they come (Ctrl-C to stop)\n"
               "  -n, --lines N  print the N most recent records (default 1000)\n"
               "  --json         print the node's JSON answer; with -f, one JSON record\n"
               "                 per line\n",
    .example = "  mxu logs hello -n 20\n"
               "  mxu logs hello -f\n",
};

void cli_log_line(json_t *rec, mxu_buf *out)
{
    const char *time = cli_json_str(rec, "time", "-");
    long long version = cli_json_int(rec, "version", -1);
    const char *inv = cli_json_str(rec, "invocation", NULL);
    const char *stream = cli_json_str(rec, "stream", "stderr");
    mxu_buf_puts(out, time);
    if (version >= 0)
        mxu_buf_printf(out, "  v%lld  ", version);
    else
        mxu_buf_puts(out, "  v-  ");
    mxu_buf_puts(out, inv && inv[0] ? inv : "-");
    mxu_buf_puts(out, "  ");
    if (strcmp(stream, "stderr") != 0) {
        mxu_buf_puts(out, "[");
        cli_append_printable(out, stream);
        mxu_buf_puts(out, "] ");
    }
    cli_append_printable(out, cli_json_str(rec, "text", ""));
    mxu_buf_puts(out, "\n");
}

static volatile sig_atomic_t interrupted;

static void on_sigint(int sig)
{
    MXU_UNUSED(sig);
    interrupted = 1;
}

typedef struct logs_args {
    const char *url, *key, *name;
    bool json, follow;
    uint64_t limit; /* 0 = the node's default */
} logs_args;

static int logs_parse(int argc, char **argv, logs_args *a)
{
    const cli_verb_help *h = &cli_help_logs;
    const char *arg;
    mxu_err err;
    cli_parser p;
    cli_parser_init(&p, argc, argv, logs_opts, MXU_ARRAY_LEN(logs_opts));
    for (int id; (id = cli_parser_next(&p, &arg, &err)) != CLI_OPT_END;) {
        int rc = cli_common_option(h, id, arg, &err, &a->url, &a->key, &a->json);
        if (rc >= 0)
            return rc;
        if (rc == CLI_OPT_TAKEN)
            continue;
        switch (id) {
        case OPT_FOLLOW:
            a->follow = true;
            break;
        case OPT_LIMIT:
            if (mxu_parse_u64(arg, &a->limit) < 0 || a->limit == 0 || a->limit > 1000000)
                return cli_usage_error(h, "-n takes a number of records (1 or more), not '%s'",
                                       arg);
            break;
        case CLI_OPT_POSITIONAL:
            if (a->name)
                return cli_usage_error(h, "logs takes one function (got '%s' and '%s')", a->name,
                                       arg);
            a->name = arg;
            break;
        }
    }
    if (a->name == NULL)
        return cli_usage_error(h, "which function?");
    return -1;
}

/* Take the `next` cursor of an answer, if it has one. */
static void take_cursor(json_t *reply, char **cursor)
{
    json_t *next = json_object_get(reply, "next");
    if (json_is_integer(next)) {
        free(*cursor);
        *cursor = mxu_asprintf("%lld", (long long)json_integer_value(next));
    } else if (json_is_string(next)) {
        free(*cursor);
        *cursor = mxu_strdup(json_string_value(next));
    }
}

static void print_records(const logs_args *a, json_t *records)
{
    size_t i;
    json_t *rec;
    _cleanup_buf_ mxu_buf out = {0};
    json_array_foreach(records, i, rec)
    {
        if (a->json) {
            char *text = json_dumps(rec, JSON_COMPACT);
            if (text)
                mxu_buf_printf(&out, "%s\n", text);
            free(text);
        } else {
            cli_log_line(rec, &out);
        }
    }
    if (out.len)
        fwrite(out.data, 1, out.len, stdout);
    fflush(stdout);
}

static int fetch(cli_client *c, const logs_args *a, const char *cursor, uint64_t limit,
                 cli_reply *r, mxu_err *err)
{
    _cleanup_buf_ mxu_buf path = {0};
    mxu_buf_puts(&path, "/v1/functions/");
    cli_path_segment(&path, a->name);
    mxu_buf_puts(&path, "/logs");
    char sep = '?';
    if (cursor) {
        mxu_buf_puts(&path, "?after=");
        cli_url_escape(&path, cursor, NULL);
        sep = '&';
    }
    if (limit)
        mxu_buf_printf(&path, "%climit=%llu", sep, (unsigned long long)limit);
    return cli_api(c, "GET", path.data, NULL, r, err);
}

/* The newest `want` records. The node answers a request without `after`
 * with the oldest records of its recent window, a page at a time, so page
 * through to the end keeping the last `want`. On failure *fail holds the
 * node's answer. */
static int fetch_last(cli_client *c, const logs_args *a, uint64_t want, json_t **records,
                      char **cursor, cli_reply *fail, mxu_err *err)
{
    uint64_t page = MXU_MAX(want, NODE_DEFAULT_LIMIT);
    json_t *keep = json_array();
    memset(fail, 0, sizeof(*fail));
    /* Bounded: a node that keeps writing faster than we read must not keep
     * us here forever. */
    for (int round = 0; round < 1000; round++) {
        cli_reply r;
        if (fetch(c, a, *cursor, page, &r, err) < 0) {
            *fail = r;
            json_decref(keep);
            return -1;
        }
        json_t *got = json_object_get(r.json, "records");
        json_array_extend(keep, json_is_array(got) ? got : json_array());
        size_t n = json_array_size(keep);
        if (n > want) {
            json_t *tail = json_array();
            for (size_t i = n - want; i < n; i++)
                json_array_append(tail, json_array_get(keep, i));
            json_decref(keep);
            keep = tail;
        }
        _cleanup_free_ char *before = *cursor ? mxu_strdup(*cursor) : NULL;
        take_cursor(r.json, cursor);
        bool more = json_array_size(got) >= page && *cursor &&
                    (before == NULL || strcmp(before, *cursor) != 0);
        cli_reply_free(&r);
        if (!more)
            break;
    }
    *records = keep;
    return 0;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
    /* A signal cuts the sleep short: that is how Ctrl-C is noticed at once. */
    nanosleep(&ts, NULL);
}

static int follow(cli_client *c, const logs_args *a, char **cursor)
{
    struct sigaction sa = {0}, old_int;
    sa.sa_handler = on_sigint; /* no SA_RESTART: interrupt the sleep */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int);
    interrupted = 0;
    c->cancel = &interrupted; /* a hung request ends on Ctrl-C too */
    int status = 0;
    size_t got = 0;
    while (!interrupted) {
        /* A full page means more is waiting: fetch it without pausing. */
        if (got < NODE_DEFAULT_LIMIT)
            sleep_ms(FOLLOW_INTERVAL_MS);
        if (interrupted)
            break;
        cli_reply r;
        mxu_err err;
        if (fetch(c, a, *cursor, 0, &r, &err) < 0) {
            if (!interrupted)
                status = cli_fail(&r, &err, false);
            cli_reply_free(&r);
            break;
        }
        json_t *records = json_object_get(r.json, "records");
        print_records(a, records);
        got = json_array_size(records);
        take_cursor(r.json, cursor);
        cli_reply_free(&r);
    }
    sigaction(SIGINT, &old_int, NULL);
    c->cancel = NULL;
    return status;
}

int mxu_cmd_logs(int argc, char **argv)
{
    logs_args a = {0};
    int rc = logs_parse(argc, argv, &a);
    if (rc >= 0)
        return rc;
    cli_client c;
    if (cli_client_open(&c, a.url, a.key) < 0)
        return CLI_EXIT_USAGE;
    _cleanup_free_ char *cursor = NULL;
    json_t *records = NULL;
    cli_reply fail;
    mxu_err err;
    int status = 0;
    if (fetch_last(&c, &a, a.limit ? a.limit : NODE_DEFAULT_LIMIT, &records, &cursor, &fail, &err) <
        0) {
        status = cli_fail(&fail, &err, a.json && !a.follow);
        cli_reply_free(&fail);
    } else if (a.json && !a.follow) {
        /* The node's shape, holding the records shown. */
        json_t *o = json_object();
        json_object_set(o, "records", records);
        uint64_t next;
        if (cursor && mxu_parse_u64(cursor, &next) == 0)
            json_object_set_new(o, "next", json_integer((json_int_t)next));
        else if (cursor)
            json_object_set_new(o, "next", json_string(cursor));
        char *text = json_dumps(o, JSON_COMPACT);
        printf("%s\n", text ? text : "{}");
        free(text);
        json_decref(o);
    } else {
        print_records(&a, records);
        if (a.follow)
            status = follow(&c, &a, &cursor);
    }
    json_decref(records);
    cli_client_close(&c);
    return status;
}
