/*
 * `mxu trace ID`: what each step of a service run did (GET /v1/traces/ID,
 * docs/services.md "Traces"), one table per run:
 *
 *   run 01a22d3472120001  checkout@1  200  2.3 ms  2026-11-30T16:05:41Z
 *   STEP   KIND  FUNCTION   STATUS  START   TOOK    TRIES  WHY
 *   price  call  pricing@2  200     0.9 ms  1.2 ms  1      weight 10/100 (draw 93)
 *
 * then the errors of the steps that had one. WHY is the last column: it
 * holds spaces, the other cells never do.
 */
#include "cli-internal.h"

#include <string.h>

enum { OPT_SERVICE = CLI_OPT_FIRST_VERB, OPT_LIMIT };
static const cli_option trace_opts[] = {
    {"service", 0, true, OPT_SERVICE},
    {"lines", 'n', true, OPT_LIMIT},
};

const cli_verb_help cli_help_trace = {
    .name = "trace",
    .usage = "trace [ID] [--service NAME] [-n N] [--json] [--url URL]",
    .summary = "show what each step of a service run did, or list recent runs",
    .description =
        "Print the trace of service run(s) with trace id ID (the X-Mxu-Trace header of\n"
        "the answer, or the trace id of a W3C traceparent the client sent): per step, the\n"
        "function and version it called, its status, when it started and how long it took\n"
        "(from the start of the run), its attempts, and why that route was taken (the\n"
        "header that matched, the weighted draw, a fallback, an open circuit breaker).\n"
        "Nodes keep the traces of the most recent runs (mxu serve --trace-runs).\n"
        "Without ID, list the most recent runs whose traces are kept, newest first.",
    .options = "  --service NAME list only the runs of service NAME\n"
               "  -n, --lines N  list at most N runs (default 20)\n"
               "  --json         print the node's JSON answer\n",
    .example = "  mxu trace --service checkout -n 5\n"
               "  mxu trace 4bf92f3577b34da6a3ce929d0e0e4736\n",
};

static void us_text(long long us, char *out, size_t outlen)
{
    if (us < 0)
        snprintf(out, outlen, "-");
    else if (us < 1000)
        snprintf(out, outlen, "%lldus", us);
    else if (us < 10000000)
        snprintf(out, outlen, "%.1fms", (double)us / 1000.0);
    else
        snprintf(out, outlen, "%.1fs", (double)us / 1e6);
}

static void print_run(json_t *run)
{
    char took[32];
    us_text(cli_json_int(run, "duration_us", -1), took, sizeof(took));
    mxu_buf start = {0};
    cli_append_time_short(&start, cli_json_str(run, "start", "-"));
    printf("run %s  %s@%lld  %lld  %s  %s\n", cli_json_str(run, "run", "-"),
           cli_json_str(run, "service", "-"), cli_json_int(run, "version", 0),
           cli_json_int(run, "status", 0), took, start.data ? start.data : "-");
    mxu_buf_free(&start);
    static const char *const head[] = {"STEP",  "KIND", "FUNCTION", "STATUS",
                                       "START", "TOOK", "TRIES",    "WHY"};
    cli_table t;
    cli_table_init(&t, MXU_ARRAY_LEN(head), head);
    json_t *steps = json_object_get(run, "steps");
    size_t i;
    json_t *s;
    json_array_foreach(steps, i, s)
    {
        char status[24], st[32], dur[32], tries[24];
        snprintf(status, sizeof(status), "%lld", cli_json_int(s, "status", 0));
        us_text(cli_json_int(s, "start_us", -1), st, sizeof(st));
        us_text(cli_json_int(s, "duration_us", -1), dur, sizeof(dur));
        long long attempts = cli_json_int(s, "attempts", -1);
        if (attempts >= 0)
            snprintf(tries, sizeof(tries), "%lld", attempts);
        else
            snprintf(tries, sizeof(tries), "-");
        mxu_buf why = {0};
        const char *route = cli_json_str(s, "route", NULL);
        const char *w = cli_json_str(s, "why", NULL);
        if (route && strcmp(cli_json_str(s, "kind", ""), "switch") == 0)
            mxu_buf_printf(&why, "%s: ", route);
        cli_append_printable(&why, w ? w : "-");
        const char *cells[] = {cli_json_str(s, "id", "-"),
                               cli_json_str(s, "kind", "-"),
                               cli_json_str(s, "function", "-"),
                               status,
                               st,
                               dur,
                               tries,
                               why.data};
        cli_table_add(&t, cells);
        mxu_buf_free(&why);
    }
    cli_table_print(&t, stdout);
    cli_table_free(&t);
    json_array_foreach(steps, i, s)
    {
        const char *e = cli_json_str(s, "error", NULL);
        if (e == NULL)
            continue;
        mxu_buf line = {0};
        cli_append_printable(&line, e);
        printf("  %s: %s\n", cli_json_str(s, "id", "-"), line.data ? line.data : "");
        mxu_buf_free(&line);
    }
    json_t *err = json_object_get(run, "error");
    if (err) {
        mxu_buf line = {0};
        cli_append_printable(&line, cli_json_str(err, "message", ""));
        printf("failed: %s: %s\n", cli_json_str(err, "code", "-"), line.data ? line.data : "");
        mxu_buf_free(&line);
    }
}

/* The recent runs, one line each. */
static void print_list(json_t *runs)
{
    static const char *const head[] = {"TRACE", "RUN", "SERVICE", "STATUS", "TOOK", "START"};
    cli_table t;
    cli_table_init(&t, MXU_ARRAY_LEN(head), head);
    size_t i;
    json_t *run;
    json_array_foreach(runs, i, run)
    {
        char svc[160], status[24], took[32];
        snprintf(svc, sizeof(svc), "%s@%lld", cli_json_str(run, "service", "-"),
                 cli_json_int(run, "version", 0));
        snprintf(status, sizeof(status), "%lld", cli_json_int(run, "status", 0));
        us_text(cli_json_int(run, "duration_us", -1), took, sizeof(took));
        mxu_buf start = {0};
        cli_append_time_short(&start, cli_json_str(run, "start", "-"));
        const char *cells[] = {
            cli_json_str(run, "trace", "-"), cli_json_str(run, "run", "-"), svc, status, took,
            start.data ? start.data : "-"};
        cli_table_add(&t, cells);
        mxu_buf_free(&start);
    }
    cli_table_print(&t, stdout);
    cli_table_free(&t);
}

int mxu_cmd_trace(int argc, char **argv)
{
    cli_simple_args a;
    int rc = cli_parse_simple(&cli_help_trace, argc, argv, trace_opts, MXU_ARRAY_LEN(trace_opts), 0,
                              1, &a);
    if (rc >= 0)
        return rc;
    const char *service = a.values[OPT_SERVICE - CLI_OPT_FIRST_VERB];
    const char *limit = a.values[OPT_LIMIT - CLI_OPT_FIRST_VERB];
    cli_client c;
    if (cli_client_open(&c, a.url, a.key) < 0)
        return CLI_EXIT_USAGE;
    mxu_buf path = {0};
    mxu_buf_puts(&path, "/v1/traces");
    if (a.npos == 1) {
        mxu_buf_puts(&path, "/");
        cli_path_segment(&path, a.pos[0]);
    } else {
        mxu_buf_puts(&path, "?limit=");
        cli_url_escape(&path, limit ? limit : "20", "");
        if (service) {
            mxu_buf_puts(&path, "&service=");
            cli_url_escape(&path, service, "");
        }
    }
    cli_reply r;
    mxu_err err;
    if (cli_api(&c, "GET", path.data, NULL, &r, &err) < 0) {
        rc = cli_fail(&r, &err, a.json);
    } else if (a.json) {
        cli_print_json_text(&r.raw);
        rc = 0;
    } else if (a.npos == 0) {
        print_list(json_object_get(r.json, "runs"));
        rc = 0;
    } else {
        printf("trace %s\n", cli_json_str(r.json, "trace", a.pos[0]));
        size_t i;
        json_t *run;
        json_array_foreach(json_object_get(r.json, "runs"), i, run)
        {
            if (i)
                printf("\n");
            print_run(run);
        }
        rc = 0;
    }
    mxu_buf_free(&path);
    cli_reply_free(&r);
    cli_client_close(&c);
    return rc;
}
