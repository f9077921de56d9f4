/*
 * `mxu usage` and `mxu bill` (docs/metering.md): usage records and their
 * aggregates, and a tenant's bill for a month, as a table, JSON or CSV.
 * Amounts come from the node as exact decimal strings and are printed as
 * they are: the CLI does no arithmetic on money.
 */
#include "cli-internal.h"

#include <string.h>

enum { OPT_TENANT = CLI_OPT_FIRST_VERB, OPT_FUNCTION, OPT_SINCE, OPT_MONTH, OPT_CSV, OPT_LIMIT };

static const cli_option meter_opts[] = {
    {"csv", 0, false, OPT_CSV},          {"tenant", 0, true, OPT_TENANT},
    {"function", 0, true, OPT_FUNCTION}, {"since", 0, true, OPT_SINCE},
    {"month", 0, true, OPT_MONTH},       {"limit", 'n', true, OPT_LIMIT},
};

const cli_verb_help cli_help_usage = {
    .name = "usage",
    .usage = "usage [--tenant T] [--function F] [--since WHEN] [-n N] [--json | --csv]",
    .summary = "list usage records and their totals",
    .description = "Print the newest usage records (one per invocation, whatever its outcome),\n"
                   "then totals per tenant and function over the same filters. --csv prints\n"
                   "every field of the records, for a spreadsheet or a billing system.",
    .options = "  --tenant T     only this tenant's records\n"
               "  --function F   only this function's records\n"
               "  --since WHEN   only records since then: a duration back from now (1h,\n"
               "                 30m), a date (2026-11-30), or ISO-8601 UTC\n"
               "  -n, --limit N  at most N records (default 20; with --csv/--json 1000)\n"
               "  --json         the node's JSON (records, next, aggregates)\n"
               "  --csv          the records as CSV with a header line\n",
    .example = "  mxu usage --function hello --since 1h\n"
               "  mxu usage --tenant default --csv > usage.csv\n",
};

const cli_verb_help cli_help_bill = {
    .name = "bill",
    .usage = "bill --tenant T --month YYYY-MM [--json | --csv]",
    .summary = "print a tenant's bill for a month",
    .description = "Price a tenant's usage in a month (UTC) at the node's price table: requests,\n"
                   "compute (GB-seconds of configured memory) and data out, each line rounded\n"
                   "once, half-up, to 1e-12 of the currency. Rejected invocations are not billed.",
    .options = "  --tenant T     the tenant\n"
               "  --month M      the month, YYYY-MM\n"
               "  --json         the node's JSON\n"
               "  --csv          item,quantity,unit,unit_price,price_unit,amount lines\n",
    .example = "  mxu bill --tenant default --month 2026-11\n",
};

typedef struct meter_args {
    const char *url, *key, *tenant, *function, *since, *month;
    bool json, csv;
    unsigned long limit;
} meter_args;

static int parse(const cli_verb_help *h, int argc, char **argv, meter_args *a)
{
    memset(a, 0, sizeof(*a));
    cli_simple_args s;
    int rc = cli_parse_simple(h, argc, argv, meter_opts, MXU_ARRAY_LEN(meter_opts), 0, 0, &s);
    if (rc >= 0)
        return rc;
#define METER_OPT(id) s.values[(id)-CLI_OPT_FIRST_VERB]
    a->url = s.url;
    a->key = s.key;
    a->json = s.json;
    a->csv = s.flags & (1u << (OPT_CSV - CLI_OPT_FIRST_VERB));
    a->tenant = METER_OPT(OPT_TENANT);
    a->function = METER_OPT(OPT_FUNCTION);
    a->since = METER_OPT(OPT_SINCE);
    a->month = METER_OPT(OPT_MONTH);
    const char *limit = METER_OPT(OPT_LIMIT);
#undef METER_OPT
    if (limit) {
        uint64_t n;
        if (mxu_parse_u64(limit, &n) < 0 || n == 0 || n > 10000)
            return cli_usage_error(h, "--limit: a number from 1 to 10000");
        a->limit = (unsigned long)n;
    }
    if (a->json && a->csv)
        return cli_usage_error(h, "--json and --csv are exclusive");
    return -1;
}

static void query_param(mxu_buf *q, const char *key, const char *value)
{
    if (value == NULL)
        return;
    mxu_buf_printf(q, "%s%s=", q->len ? "&" : "?", key);
    cli_url_escape(q, value, "");
}

/* --since: "1h" means an hour ago; anything else goes to the node as is. */
static void since_param(mxu_buf *q, const char *since)
{
    uint64_t ms;
    size_t n = since ? strlen(since) : 0;
    if (n && since[n - 1] >= 'a' && since[n - 1] <= 'z' &&
        mxu_parse_duration_ms(since, &ms, NULL) == 0) {
        char v[32];
        uint64_t now = mxu_wall_ms();
        snprintf(v, sizeof(v), "%llu", (unsigned long long)(now > ms ? now - ms : 0));
        query_param(q, "since", v);
        return;
    }
    query_param(q, "since", since);
}

static const char *const csv_cols[] = {
    "invocation", "tenant",      "function", "version",   "executor",
    "start",      "start_ms",    "wall_us",  "billed_ms", "memory",
    "cpu_us",     "peak_memory", "bytes_in", "bytes_out", "cold",
    "status",     "http_status", "code",     "caller",    "caller_function",
};

/* One CSV cell (RFC 4180). */
static void csv_cell(mxu_buf *out, json_t *v)
{
    if (json_is_integer(v)) {
        mxu_buf_printf(out, "%lld", (long long)json_integer_value(v));
    } else if (json_is_boolean(v)) {
        mxu_buf_puts(out, json_is_true(v) ? "cold" : "warm");
    } else if (json_is_string(v)) {
        const char *s = json_string_value(v);
        if (strpbrk(s, ",\"\r\n") == NULL) {
            mxu_buf_puts(out, s);
            return;
        }
        mxu_buf_puts(out, "\"");
        for (; *s; s++) {
            if (*s == '"')
                mxu_buf_puts(out, "\"");
            mxu_buf_append(out, s, 1);
        }
        mxu_buf_puts(out, "\"");
    }
}

static void print_usage_table(json_t *j)
{
    static const char *const head[] = {"INVOCATION", "FUNCTION", "STATUS",    "HTTP",
                                       "START",      "WALL_US",  "BILLED_MS", "CPU_US",
                                       "IN",         "OUT",      "COLD"};
    cli_table t;
    cli_table_init(&t, MXU_ARRAY_LEN(head), head);
    size_t i;
    json_t *r;
    json_array_foreach(json_object_get(j, "records"), i, r)
    {
        char fn[160], http[16], wall[24], billed[24], cpu[24], in[24], out[24];
        _cleanup_buf_ mxu_buf start = {0};
        snprintf(fn, sizeof(fn), "%s@%lld", cli_json_str(r, "function", "?"),
                 cli_json_int(r, "version", 0));
        snprintf(http, sizeof(http), "%lld", cli_json_int(r, "http_status", 0));
        snprintf(wall, sizeof(wall), "%lld", cli_json_int(r, "wall_us", 0));
        snprintf(billed, sizeof(billed), "%lld", cli_json_int(r, "billed_ms", 0));
        snprintf(cpu, sizeof(cpu), "%lld", cli_json_int(r, "cpu_us", 0));
        snprintf(in, sizeof(in), "%lld", cli_json_int(r, "bytes_in", 0));
        snprintf(out, sizeof(out), "%lld", cli_json_int(r, "bytes_out", 0));
        cli_append_time_short(&start, cli_json_str(r, "start", ""));
        const char *cells[] = {cli_json_str(r, "invocation", "?"),
                               fn,
                               cli_json_str(r, "status", "?"),
                               http,
                               start.data ? start.data : "-",
                               wall,
                               billed,
                               cpu,
                               in,
                               out,
                               json_is_true(json_object_get(r, "cold")) ? "cold" : "warm"};
        cli_table_add(&t, cells);
    }
    cli_table_print(&t, stdout);
    cli_table_free(&t);

    static const char *const ahead[] = {"TENANT",   "FUNCTION", "REQUESTS",  "OK",     "ERRORS",
                                        "REJECTED", "COLD",     "BILLED_MS", "CPU_US", "OUT"};
    cli_table_init(&t, MXU_ARRAY_LEN(ahead), ahead);
    json_array_foreach(json_object_get(j, "aggregates"), i, r)
    {
        static const char *const keys[] = {"requests", "ok",        "errors", "rejected",
                                           "cold",     "billed_ms", "cpu_us", "bytes_out"};
        char num[MXU_ARRAY_LEN(keys)][24];
        for (size_t k = 0; k < MXU_ARRAY_LEN(keys); k++)
            snprintf(num[k], sizeof(num[k]), "%lld", cli_json_int(r, keys[k], 0));
        const char *cells[] = {cli_json_str(r, "tenant", "?"),
                               cli_json_str(r, "function", "?"),
                               num[0],
                               num[1],
                               num[2],
                               num[3],
                               num[4],
                               num[5],
                               num[6],
                               num[7]};
        cli_table_add(&t, cells);
    }
    printf("\ntotals over the same filters (all records, not only those above):\n");
    cli_table_print(&t, stdout);
    cli_table_free(&t);
}

int mxu_cmd_usage(int argc, char **argv)
{
    meter_args a;
    int rc = parse(&cli_help_usage, argc, argv, &a);
    if (rc >= 0)
        return rc;
    if (a.month)
        return cli_usage_error(&cli_help_usage, "--month is for 'mxu bill'");
    _cleanup_buf_ mxu_buf path = {0};
    _cleanup_buf_ mxu_buf q = {0};
    char limit[24];
    snprintf(limit, sizeof(limit), "%lu", a.limit ? a.limit : (a.json || a.csv) ? 1000 : 20);
    query_param(&q, "tenant", a.tenant);
    query_param(&q, "function", a.function);
    since_param(&q, a.since);
    query_param(&q, "limit", limit);
    if (!a.csv)
        mxu_buf_puts(&q, "&aggregate=1");
    mxu_buf_printf(&path, "/v1/usage%s", q.data);
    cli_client c;
    if (cli_client_open(&c, a.url, a.key) < 0)
        return CLI_EXIT_USAGE;
    cli_reply r;
    mxu_err err;
    int status = 0;
    if (cli_api(&c, "GET", path.data, NULL, &r, &err) < 0) {
        status = cli_fail(&r, &err, a.json);
    } else if (a.json) {
        cli_print_json_text(&r.raw);
    } else if (a.csv) {
        _cleanup_buf_ mxu_buf out = {0};
        for (size_t k = 0; k < MXU_ARRAY_LEN(csv_cols); k++)
            mxu_buf_printf(&out, "%s%s", k ? "," : "", csv_cols[k]);
        mxu_buf_puts(&out, "\n");
        size_t i;
        json_t *rec;
        json_array_foreach(json_object_get(r.json, "records"), i, rec)
        {
            for (size_t k = 0; k < MXU_ARRAY_LEN(csv_cols); k++) {
                if (k)
                    mxu_buf_puts(&out, ",");
                csv_cell(&out, json_object_get(rec, csv_cols[k]));
            }
            mxu_buf_puts(&out, "\n");
        }
        fwrite(out.data, 1, out.len, stdout);
    } else {
        print_usage_table(r.json);
    }
    cli_reply_free(&r);
    cli_client_close(&c);
    return status;
}

int mxu_cmd_bill(int argc, char **argv)
{
    meter_args a;
    int rc = parse(&cli_help_bill, argc, argv, &a);
    if (rc >= 0)
        return rc;
    if (a.tenant == NULL || a.month == NULL)
        return cli_usage_error(&cli_help_bill, "a bill needs --tenant and --month");
    _cleanup_buf_ mxu_buf path = {0};
    _cleanup_buf_ mxu_buf q = {0};
    query_param(&q, "tenant", a.tenant);
    query_param(&q, "month", a.month);
    mxu_buf_printf(&path, "/v1/bills%s", q.data);
    cli_client c;
    if (cli_client_open(&c, a.url, a.key) < 0)
        return CLI_EXIT_USAGE;
    cli_reply r;
    mxu_err err;
    int status = 0;
    if (cli_api(&c, "GET", path.data, NULL, &r, &err) < 0) {
        status = cli_fail(&r, &err, a.json);
    } else if (a.json) {
        cli_print_json_text(&r.raw);
    } else {
        const char *cur = cli_json_str(r.json, "currency", "");
        _cleanup_buf_ mxu_buf out = {0};
        size_t i;
        json_t *l;
        if (a.csv)
            mxu_buf_puts(&out, "item,quantity,unit,unit_price,price_unit,amount\n");
        else
            printf("bill of %s for %s (%s)\n\n", cli_json_str(r.json, "tenant", "?"),
                   cli_json_str(r.json, "month", "?"), cur);
        static const char *const head[] = {"ITEM", "QUANTITY", "UNIT", "UNIT_PRICE", "AMOUNT"};
        cli_table t;
        cli_table_init(&t, MXU_ARRAY_LEN(head), head);
        json_array_foreach(json_object_get(r.json, "lines"), i, l)
        {
            const char *pu = cli_json_str(l, "price_unit", cli_json_str(l, "unit", ""));
            if (a.csv) {
                mxu_buf_printf(&out, "%s,%s,%s,%s,%s,%s\n", cli_json_str(l, "item", ""),
                               cli_json_str(l, "quantity", ""), cli_json_str(l, "unit", ""),
                               cli_json_str(l, "unit_price", ""), pu,
                               cli_json_str(l, "amount", ""));
                continue;
            }
            char price[96];
            snprintf(price, sizeof(price), "%s/%s", cli_json_str(l, "unit_price", "?"), pu);
            const char *cells[] = {cli_json_str(l, "item", "?"), cli_json_str(l, "quantity", "?"),
                                   cli_json_str(l, "unit", "?"), price,
                                   cli_json_str(l, "amount", "?")};
            cli_table_add(&t, cells);
        }
        if (a.csv) {
            mxu_buf_printf(&out, "total,,,,,%s\n", cli_json_str(r.json, "total", ""));
            fwrite(out.data, 1, out.len, stdout);
        } else {
            const char *cells[] = {"total", "", "", "", cli_json_str(r.json, "total", "?")};
            cli_table_add(&t, cells);
            cli_table_print(&t, stdout);
        }
        cli_table_free(&t);
    }
    cli_reply_free(&r);
    cli_client_close(&c);
    return status;
}
