/*
 * The small verbs — `mxu version` and `mxu health` — and the verb list that
 * `mxu --help` prints.
 */
#include "cli-internal.h"

#include <string.h>

/* ---- the verb list ------------------------------------------------------- */

void mxu_cli_usage_all(FILE *out)
{
    /* serve lives elsewhere (cli-serve); its line is written here so that the
     * list is in one place, in the order a newcomer uses the verbs. */
    static const struct {
        const char *name, *summary;
    } serve = {"serve", "run a node"};
    static const cli_verb_help *const verbs[] = {
        &cli_help_deploy, &cli_help_catalog, &cli_help_invoke, &cli_help_ls,       &cli_help_show,
        &cli_help_logs,   &cli_help_alias,   &cli_help_rm,     &cli_help_resource, &cli_help_usage,
        &cli_help_bill,   &cli_help_key,     &cli_help_tenant, &cli_help_policy,   &cli_help_trace,
        &cli_help_health, &cli_help_version,
    };
    /* Only the list: the main prints the usage line around it. */
    fprintf(out, "commands:\n");
    fprintf(out, "  %-8s  %s\n", serve.name, serve.summary);
    for (size_t i = 0; i < MXU_ARRAY_LEN(verbs); i++)
        fprintf(out, "  %-8s  %s\n", verbs[i]->name, verbs[i]->summary);
}

/* ---- version --------------------------------------------------------------- */

const cli_verb_help cli_help_version = {
    .name = "version",
    .usage = "version [--json] [--url URL]",
    .summary = "print the client's version and the node's",
    .description = "Print this program's version and, if a node answers at the URL, the\n"
                   "node's version. An unreachable node is not an error here.",
    .options =
        "  --json         print {\"client\", \"node\", \"url\"} (node null if unreachable)\n",
    .example = "  mxu version\n"
               "  mxu 0.1.0\n"
               "  node 0.1.0 at http://127.0.0.1:8080\n",
};

int mxu_cmd_version(int argc, char **argv)
{
    cli_simple_args a;
    int rc = cli_parse_simple(&cli_help_version, argc, argv, NULL, 0, 0, 0, &a);
    if (rc >= 0)
        return rc;
    cli_client c;
    if (cli_client_open(&c, a.url, a.key) < 0)
        return CLI_EXIT_USAGE;
    /* Asking for a version should not hang on an unroutable address. */
    c.connect_timeout_ms = 3000;
    cli_reply r;
    mxu_err err;
    const char *node = NULL;
    if (cli_api(&c, "GET", "/v1/health", NULL, &r, &err) == 0)
        node = cli_json_str(r.json, "version", NULL);
    if (a.json) {
        json_t *o = json_pack("{sssoss}", "client", MXU_VERSION_STRING, "node",
                              node ? json_string(node) : json_null(), "url", c.base_url);
        char *text = json_dumps(o, JSON_COMPACT);
        printf("%s\n", text ? text : "{}");
        free(text);
        json_decref(o);
    } else {
        printf("mxu %s\n", MXU_VERSION_STRING);
        if (node)
            printf("node %s at %s\n", node, c.base_url);
        else
            fprintf(stderr, "mxu: no node version: %s\n", err.msg);
    }
    cli_reply_free(&r);
    cli_client_close(&c);
    return 0;
}

/* ---- health ---------------------------------------------------------------- */

const cli_verb_help cli_help_health = {
    .name = "health",
    .usage = "health [--json] [--url URL]",
    .summary = "check that the node is up and how much room it has",
    .description = "Ask the node for its health: version, uptime, address, data directory,\n"
                   "executors, and its memory budget (reserved by instances, free). Exit\n"
                   "status 1 if the node does not answer or is not 'ok'.",
    .options = "  --json         print the node's JSON answer\n",
    .example = "  mxu health\n"
               "  MXU_URL=http://10.0.0.5:8080 mxu health --json\n",
};

static void print_health(json_t *h, const char *base_url)
{
    char uptime[32];
    mxu_format_duration_ms((uint64_t)cli_json_int(h, "uptime_s", 0) * 1000, uptime, sizeof(uptime));
    _cleanup_buf_ mxu_buf executors = {0}, capacity = {0};
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(h, "executors"), i, e)
    {
        mxu_buf_printf(&executors, "%s%s", i ? ", " : "",
                       json_is_string(e) ? json_string_value(e) : "?");
    }
    cli_capacity_line(json_object_get(h, "capacity"), &capacity);
    printf("status:    %s\n", cli_json_str(h, "status", "?"));
    printf("version:   %s\n", cli_json_str(h, "version", "?"));
    printf("uptime:    %s\n", uptime);
    printf("listen:    %s\n", cli_json_str(h, "listen", base_url));
    printf("data dir:  %s\n", cli_json_str(h, "data_dir", "?"));
    printf("executors: %s\n", executors.len ? executors.data : "-");
    printf("memory:    %s\n", capacity.data);
}

int mxu_cmd_health(int argc, char **argv)
{
    cli_simple_args a;
    int rc = cli_parse_simple(&cli_help_health, argc, argv, NULL, 0, 0, 0, &a);
    if (rc >= 0)
        return rc;
    cli_client c;
    if (cli_client_open(&c, a.url, a.key) < 0)
        return CLI_EXIT_USAGE;
    cli_reply r;
    mxu_err err;
    int status = 0;
    if (cli_api(&c, "GET", "/v1/health", NULL, &r, &err) < 0) {
        status = cli_fail(&r, &err, a.json);
    } else {
        if (a.json)
            cli_print_json_text(&r.raw);
        else
            print_health(r.json, c.base_url);
        /* A node that answers but is not well (say, shutting down) fails the
         * check, so that `mxu health && ...` means "ready". */
        if (strcmp(cli_json_str(r.json, "status", "?"), "ok") != 0)
            status = CLI_EXIT_FAIL;
    }
    cli_reply_free(&r);
    cli_client_close(&c);
    return status;
}
