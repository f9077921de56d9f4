/*
 * `mxu policy` — policy documents (docs/policy.md "Policy documents"):
 *
 *   mxu policy apply FILE        a new version of the scope's document
 *   mxu policy ls                the scope's versions
 *   mxu policy show [N]          a version's canonical form (default: in force)
 *   mxu policy diff N M          unified diff of two versions' canonical forms
 *
 * The scope is the node's document for the node admin, the key's tenant's
 * for a tenant's admin; --tenant T names a tenant's.
 */
#include "cli-internal.h"
#include "policy/policy.h"

#include <string.h>

const cli_verb_help cli_help_policy = {
    .name = "policy",
    .usage = "policy apply FILE | ls | show [N] | diff N M  [--tenant T] [--json] [--url URL]\n"
             "       [--key KEY]",
    .summary = "apply, list, show and diff policy documents (link rules)",
    .description = "A policy document is YAML: rules over client->function, unit->unit and\n"
                   "unit->resource links, each allow or deny (docs/policy.md). Every apply is a\n"
                   "new numbered version of its scope, kept; the latest is in force at once.\n"
                   "The node admin's documents are the node's (any tenant, cross-tenant rules);\n"
                   "a tenant's admin applies its tenant's (rules inside the tenant only).\n"
                   "  apply  validate FILE (errors name its line and field) and put it in force\n"
                   "  ls     the versions of the scope\n"
                   "  show   version N's canonical form (default: the version in force)\n"
                   "  diff   a unified diff of versions N and M (canonical forms)",
    .options = "  --tenant T     a tenant's document (node admin: any; a tenant's admin: its own)\n"
               "  --json         print the node's JSON answer\n",
    .example = "  mxu policy apply policy.yaml\n"
               "  mxu policy ls\n"
               "  mxu policy diff 2 3\n",
};

enum { OPT_TENANT = CLI_OPT_FIRST_VERB };

static const cli_option policy_opts[] = {{"tenant", 0, true, OPT_TENANT}};

static void add_tenant(mxu_buf *path, const char *tenant)
{
    if (tenant == NULL)
        return;
    mxu_buf_puts(path, "?tenant=");
    cli_url_escape(path, tenant, "");
}

static void print_versions(json_t *versions)
{
    static const char *const heads[] = {"VERSION", "RULES", "CREATED", "BY", "FILE", "ACTIVE"};
    cli_table t;
    cli_table_init(&t, 6, heads);
    size_t i;
    json_t *o;
    json_array_foreach(versions, i, o)
    {
        char ver[24], rules[24];
        _cleanup_buf_ mxu_buf created = {0};
        snprintf(ver, sizeof(ver), "%lld", cli_json_int(o, "version", 0));
        snprintf(rules, sizeof(rules), "%lld", cli_json_int(o, "rules", 0));
        cli_append_time_short(&created, cli_json_str(o, "created", ""));
        const char *by = cli_json_str(o, "by", "");
        const char *row[] = {ver,
                             rules,
                             created.data,
                             by[0] ? by : "-",
                             cli_json_str(o, "file", "-"),
                             json_is_true(json_object_get(o, "active")) ? "yes" : ""};
        cli_table_add(&t, row);
    }
    cli_table_print(&t, stdout);
    cli_table_free(&t);
}

int mxu_cmd_policy(int argc, char **argv)
{
    const cli_verb_help *h = &cli_help_policy;
    cli_simple_args a;
    int rc = cli_parse_simple(h, argc, argv, policy_opts, MXU_ARRAY_LEN(policy_opts), 0, 4, &a);
    if (rc >= 0)
        return rc;
    const char *url = a.url, *key = a.key, *tenant = a.values[0], *const *pos = a.pos;
    int npos = a.npos;
    bool json = a.json;
    mxu_err err;
    if (npos == 0)
        return cli_usage_error(h, "say what to do: apply, ls, show or diff");
    const char *sub = pos[0];
    bool do_apply = strcmp(sub, "apply") == 0, ls = strcmp(sub, "ls") == 0;
    bool show = strcmp(sub, "show") == 0, diff = strcmp(sub, "diff") == 0;
    if (!do_apply && !ls && !show && !diff)
        return cli_usage_error(h, "'%s' is not apply, ls, show or diff", sub);
    if ((do_apply && npos != 2) || (ls && npos != 1) || (show && npos > 2) || (diff && npos != 3))
        return cli_usage_error(h, "%s takes %s", sub,
                               do_apply ? "one file"
                               : ls     ? "no arguments"
                               : show   ? "at most a version number"
                                        : "two version numbers");
    for (int i = 1; i < npos && !do_apply; i++) {
        uint64_t n;
        if (mxu_parse_u64(pos[i], &n) < 0 || n == 0)
            return cli_usage_error(h, "'%s' is not a version number", pos[i]);
    }
    json_t *body = NULL;
    if (do_apply) {
        _cleanup_buf_ mxu_buf text = {0};
        if (mxu_read_file(pos[1], MXU_POLDOC_MAX_BYTES, &text, &err) < 0) {
            fprintf(stderr, "mxu: %s\n", err.msg);
            return CLI_EXIT_FAIL;
        }
        body = json_pack("{s:s%, s:s}", "document", text.data ? text.data : "", text.len, "file",
                         pos[1]);
        if (body == NULL) {
            fprintf(stderr, "mxu: %s is not UTF-8 text\n", pos[1]);
            return CLI_EXIT_FAIL;
        }
    }
    cli_client c;
    if (cli_client_open(&c, url, key) < 0) {
        json_decref(body);
        return CLI_EXIT_USAGE;
    }
    _cleanup_buf_ mxu_buf path = {0};
    if (do_apply || (show && npos == 1)) {
        mxu_buf_puts(&path, "/v1/policy");
    } else {
        mxu_buf_puts(&path, "/v1/policies");
        if (npos >= 2)
            mxu_buf_printf(&path, "/%s", pos[1]);
        if (diff)
            mxu_buf_printf(&path, "/diff/%s", pos[2]);
    }
    add_tenant(&path, tenant);
    cli_reply r;
    int status = 0;
    if (cli_api(&c, do_apply ? "PUT" : "GET", path.data, body, &r, &err) < 0) {
        status = cli_fail(&r, &err, json);
    } else if (json) {
        cli_print_json_text(&r.raw);
    } else if (do_apply) {
        json_t *t = json_object_get(r.json, "tenant");
        printf("applied policy v%lld%s%s%s: %lld rules\n", cli_json_int(r.json, "version", 0),
               json_is_string(t) ? " (tenant " : "", json_is_string(t) ? json_string_value(t) : "",
               json_is_string(t) ? ")" : "", cli_json_int(r.json, "rules", 0));
        fputs(cli_json_str(r.json, "diff", ""), stdout);
    } else if (ls) {
        print_versions(json_object_get(r.json, "versions"));
    } else if (show) {
        fputs(cli_json_str(r.json, "canonical", ""), stdout);
    } else {
        fputs(cli_json_str(r.json, "diff", ""), stdout);
    }
    json_decref(body);
    cli_reply_free(&r);
    cli_client_close(&c);
    return status;
}
