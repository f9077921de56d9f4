/*
 * `mxu tenant` — the node's tenants (docs/policy.md); for the node's admin:
 *
 *   mxu tenant ls
 *   mxu tenant create NAME
 *   mxu tenant rm NAME          (revokes its keys)
 */
#include "cli-internal.h"

#include <string.h>

const cli_verb_help cli_help_tenant = {
    .name = "tenant",
    .usage = "tenant ls | create NAME | rm NAME  [--json] [--url URL] [--key KEY]",
    .summary = "list, create or delete tenants (node admin)",
    .description =
        "Tenants own functions and keys. Tenant `default` exists from the first start\n"
        "and owns what was there before; its admins run the node, and only they may\n"
        "manage tenants.\n"
        "  ls      the tenants, with their number of live keys\n"
        "  create  a new tenant; then give it a key with `mxu key create --tenant NAME`\n"
        "  rm      delete a tenant and revoke its keys (refused while it owns functions)",
    .options = "  --json         print the node's JSON answer\n",
    .example = "  mxu tenant create acme\n"
               "  mxu key create --tenant acme --role admin\n",
};

int mxu_cmd_tenant(int argc, char **argv)
{
    const cli_verb_help *h = &cli_help_tenant;
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
