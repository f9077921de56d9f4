/*
 * `mxu tenant` — the node's tenants (docs/policy.md); for the node's admin:
 *
 *   mxu tenant ls
 *   mxu tenant create NAME
 *   mxu tenant rm NAME          (revokes its keys)
 *   mxu tenant limits NAME [--rate 100/s] [--burst 20] [--concurrency 50]
 *   mxu tenant quota NAME [--invocations N] [--gb-seconds N] [--bytes-out 10GiB]
 *
 * limits and quota show what is set (and this month's usage) and change the
 * options given; "none" removes one (e.g. --rate none).
 */
#include "cli-internal.h"

#include <string.h>

const cli_verb_help cli_help_tenant = {
    .name = "tenant",
    .usage = "tenant ls | create NAME | rm NAME | limits NAME [--rate R] [--burst N]\n"
             "       [--concurrency N] | quota NAME [--invocations N] [--gb-seconds N]\n"
             "       [--bytes-out SIZE]  [--json] [--url URL] [--key KEY]",
    .summary = "list, create or delete tenants; their limits and quotas (node admin)",
    .description =
        "Tenants own functions and keys. Tenant `default` exists from the first start\n"
        "and owns what was there before; its admins run the node, and only they may\n"
        "manage tenants.\n"
        "  ls      the tenants, with their number of live keys\n"
        "  create  a new tenant; then give it a key with `mxu key create --tenant NAME`\n"
        "  rm      delete a tenant and revoke its keys (refused while it owns functions)\n"
        "  limits  show or set the tenant's rate (100/s, 6000/m), burst and concurrency\n"
        "  quota   show or set its monthly quotas (UTC months); raising one applies at once\n"
        "A value of none removes a limit or quota.",
    .options = "  --rate R            requests per second/minute/hour: 100/s, 6000/m, 50/h\n"
               "  --burst N           requests allowed at once (default: one second's worth)\n"
               "  --concurrency N     invocations running at once\n"
               "  --invocations N     invocations per month\n"
               "  --gb-seconds N      GB-seconds per month (configured memory x run time)\n"
               "  --bytes-out SIZE    response bytes per month (10GiB, 500M, ...)\n"
               "  --json              print the node's JSON answer\n",
    .example = "  mxu tenant create acme\n"
               "  mxu key create --tenant acme --role admin\n"
               "  mxu tenant limits acme --rate 100/s --burst 20 --concurrency 50\n"
               "  mxu tenant quota acme --invocations 1000000 --gb-seconds 400 --bytes-out 10GiB\n",
};

enum { OPT_RATE = CLI_OPT_FIRST_VERB, OPT_BURST, OPT_CONC, OPT_INV, OPT_GBS, OPT_OUT };

static const cli_option tenant_opts[] = {
    {"rate", 0, true, OPT_RATE},        {"burst", 0, true, OPT_BURST},
    {"concurrency", 0, true, OPT_CONC}, {"invocations", 0, true, OPT_INV},
    {"gb-seconds", 0, true, OPT_GBS},   {"bytes-out", 0, true, OPT_OUT},
};

/* "none" → null; a number → integer; else the text (the node checks it). */
static json_t *opt_value(const char *v, bool number)
{
    uint64_t n;
    if (strcmp(v, "none") == 0)
        return json_null();
    if (number && mxu_parse_u64(v, &n) == 0)
        return json_integer((json_int_t)n);
    return json_string(v);
}

static void print_limits(json_t *j)
{
    json_t *l = json_object_get(j, "limits"), *q = json_object_get(j, "quotas");
    json_t *u = json_object_get(j, "usage");
    printf("tenant %s\n", cli_json_str(j, "tenant", "?"));
    printf("  rate         %s\n", cli_json_str(l, "rate", "none"));
    if (json_object_get(l, "burst_in_force"))
        printf("  burst        %lld\n", cli_json_int(l, "burst_in_force", 0));
    printf("  concurrency  %lld\n", cli_json_int(l, "concurrency", 0));
    printf("quotas for %s (used / quota; 0 = none)\n", cli_json_str(u, "month", "?"));
    printf("  invocations  %lld / %lld\n", cli_json_int(u, "invocations", 0),
           cli_json_int(q, "invocations", 0));
    printf("  gb-seconds   %s / %lld\n", cli_json_str(u, "gb_seconds", "0"),
           cli_json_int(q, "gb_seconds", 0));
    printf("  bytes out    %lld / %lld\n", cli_json_int(u, "bytes_out", 0),
           cli_json_int(q, "bytes_out", 0));
}

static int tenant_shape(const cli_verb_help *h, int argc, char **argv)
{
    cli_simple_args a;
    int rc = cli_parse_simple(h, argc, argv, tenant_opts, MXU_ARRAY_LEN(tenant_opts), 0, 3, &a);
    if (rc >= 0)
        return rc;
    mxu_err err;
    json_t *body = json_object();
    static const char *const names[] = {"rate",        "burst",      "concurrency",
                                        "invocations", "gb_seconds", "bytes_out"};
    for (size_t k = 0; k < MXU_ARRAY_LEN(names); k++)
        if (a.values[k])
            json_object_set_new(body, names[k], opt_value(a.values[k], k != 0));
    if (a.npos != 2) {
        json_decref(body);
        /* a.pos[0] is unset when an option took the word as its value
         * (`mxu tenant --key limits`). */
        return a.npos == 0 ? cli_usage_error(h, "limits or quota takes one tenant name")
                           : cli_usage_error(h, "%s takes one tenant name", a.pos[0]);
    }
    bool limits = strcmp(a.pos[0], "limits") == 0;
    const char *lk[] = {"rate", "burst", "concurrency"};
    size_t nl = 0;
    for (size_t i = 0; i < MXU_ARRAY_LEN(lk); i++)
        nl += json_object_get(body, lk[i]) != NULL;
    if ((limits && nl != json_object_size(body)) || (!limits && nl)) {
        json_decref(body);
        return cli_usage_error(h, "%s",
                               limits ? "limits take --rate, --burst, --concurrency"
                                      : "quota takes --invocations, --gb-seconds, "
                                        "--bytes-out");
    }
    cli_client c;
    if (cli_client_open(&c, a.url, a.key) < 0) {
        json_decref(body);
        return CLI_EXIT_USAGE;
    }
    _cleanup_buf_ mxu_buf path = {0};
    mxu_buf_puts(&path, "/v1/tenants/");
    cli_path_segment(&path, a.pos[1]);
    mxu_buf_puts(&path, limits ? "/limits" : "/quotas");
    bool set = json_object_size(body) > 0;
    cli_reply r;
    int status = 0;
    if (cli_api(&c, set ? "PUT" : "GET", path.data, set ? body : NULL, &r, &err) < 0)
        status = cli_fail(&r, &err, a.json);
    else if (a.json)
        cli_print_json_text(&r.raw);
    else
        print_limits(r.json);
    json_decref(body);
    cli_reply_free(&r);
    cli_client_close(&c);
    return status;
}

int mxu_cmd_tenant(int argc, char **argv)
{
    const cli_verb_help *h = &cli_help_tenant;
    for (int i = 1; i < argc; i++) {
        if (argv[i][0] == '-')
            continue;
        if (strcmp(argv[i], "limits") == 0 || strcmp(argv[i], "quota") == 0)
            return tenant_shape(h, argc, argv);
        break;
    }
    cli_simple_args a;
    int rc = cli_parse_simple(h, argc, argv, NULL, 0, 1, 2, &a);
    if (rc >= 0)
        return rc;
    const char *sub = a.pos[0];
    bool ls = strcmp(sub, "ls") == 0, create = strcmp(sub, "create") == 0;
    bool rm = strcmp(sub, "rm") == 0;
    if (!ls && !create && !rm)
        return cli_usage_error(h, "'%s' is not ls, create or rm", sub);
    if (ls && a.npos != 1)
        return cli_usage_error(h, "ls takes no arguments");
    if ((create || rm) && a.npos != 2)
        return cli_usage_error(h, "%s takes one tenant name", sub);
    cli_client c;
    if (cli_client_open(&c, a.url, a.key) < 0)
        return CLI_EXIT_USAGE;
    _cleanup_buf_ mxu_buf path = {0};
    mxu_buf_puts(&path, "/v1/tenants");
    json_t *body = NULL;
    const char *method = ls ? "GET" : create ? "POST" : "DELETE";
    if (create)
        body = json_pack("{s:s}", "name", a.pos[1]);
    if (rm) {
        mxu_buf_puts(&path, "/");
        cli_path_segment(&path, a.pos[1]);
    }
    cli_reply r;
    mxu_err err;
    int status = 0;
    if (cli_api(&c, method, path.data, body, &r, &err) < 0) {
        status = cli_fail(&r, &err, a.json);
    } else if (a.json) {
        cli_print_json_text(&r.raw);
    } else if (ls) {
        static const char *const heads[] = {"TENANT", "KEYS", "CREATED"};
        cli_table t;
        cli_table_init(&t, 3, heads);
        size_t i;
        json_t *o;
        json_array_foreach(json_object_get(r.json, "tenants"), i, o)
        {
            char keys[24];
            _cleanup_buf_ mxu_buf created = {0};
            snprintf(keys, sizeof(keys), "%lld", cli_json_int(o, "keys", 0));
            cli_append_time_short(&created, cli_json_str(o, "created", ""));
            const char *row[] = {cli_json_str(o, "name", "?"), keys, created.data};
            cli_table_add(&t, row);
        }
        cli_table_print(&t, stdout);
        cli_table_free(&t);
    } else if (create) {
        printf("created tenant %s\n", a.pos[1]);
    } else {
        printf("deleted tenant %s (its keys are revoked)\n", a.pos[1]);
    }
    json_decref(body);
    cli_reply_free(&r);
    cli_client_close(&c);
    return status;
}
