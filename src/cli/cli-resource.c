/*
 * `mxu resource` — the node's resource map: where each logical resource
 * (kv:orders, blob:images, queue:jobs) lives, and moving one while functions
 * keep using it.
 *
 *   mxu resource ls
 *   mxu resource set kv:orders redis://127.0.0.1:6379/0     (no copy)
 *   mxu resource reset kv:orders                            (back to embedded)
 *   mxu resource move kv:orders --to redis://127.0.0.1:6379/0
 *   ... --tenant acme                                       (another tenant's map)
 */
#include "cli-internal.h"

#include <string.h>
#include <unistd.h>

static const cli_option resource_flags[] = {{"to", 0, true, CLI_OPT_FIRST_VERB},
                                            {"tenant", 0, true, CLI_OPT_FIRST_VERB + 1}};

const cli_verb_help cli_help_resource = {
    .name = "resource",
    .usage = "resource ls | set URI LOCATION | reset URI | move URI --to LOCATION"
             "  [--tenant T] [--json] [--url URL]",
    .summary = "list, re-bind or move resources (kv:, blob:, queue:)",
    .description =
        "Functions name resources by descriptor (kv:orders); the node's resource map says\n"
        "where each one lives. LOCATION is `embedded` (the node's data directory, the\n"
        "default), `redis://HOST:PORT/DB` (kv and queue) or `fs:///DIR` (blob).\n"
        "  ls     the map, and the resources in use\n"
        "  set    point a resource at LOCATION at once; data is NOT copied\n"
        "  reset  back to the default location; data is NOT copied\n"
        "  move   copy the data to LOCATION, then switch, while functions keep running\n"
        "         (writes made during the copy go to both places; none is lost)\n"
        "The map is per tenant: kv:orders of tenant acme is not default's kv:orders.\n"
        "A tenant's admin manages its own tenant's entries; the node admin any tenant's.",
    .options = "  --to LOCATION  where `move` takes the resource\n"
               "  --tenant T     whose map (default: the key's tenant; ls: all the key may see)\n"
               "  --json         print the node's JSON answer\n",
    .example = "  mxu resource move kv:orders --to redis://127.0.0.1:6379/0\n"
               "  moved kv:orders to redis://127.0.0.1:6379/0 in 0.8 s\n",
};

/* "?tenant=T" or "" */
static void tenant_query(mxu_buf *path, const char *tenant)
{
    if (tenant) {
        mxu_buf_puts(path, "?tenant=");
        cli_path_segment(path, tenant);
    }
}

static int resource_ls(cli_client *c, const char *tenant, bool json)
{
    cli_reply r;
    mxu_err err;
    int status = 0;
    _cleanup_buf_ mxu_buf path = {0};
    mxu_buf_puts(&path, "/v1/resources");
    tenant_query(&path, tenant);
    if (cli_api(c, "GET", path.data, NULL, &r, &err) < 0) {
        status = cli_fail(&r, &err, json);
    } else if (json) {
        cli_print_json_text(&r.raw);
    } else {
        static const char *const heads[] = {"TENANT", "RESOURCE", "BACKEND", "IN USE", "STATE"};
        cli_table t;
        cli_table_init(&t, 5, heads);
        json_t *arr = json_object_get(r.json, "resources");
        size_t i;
        json_t *o;
        json_array_foreach(arr, i, o)
        {
            json_t *moving = json_object_get(o, "moving");
            _cleanup_buf_ mxu_buf state = {0};
            if (moving)
                mxu_buf_printf(&state, "moving to %s (%lld copied)",
                               cli_json_str(moving, "to", "?"), cli_json_int(moving, "copied", 0));
            else
                mxu_buf_puts(&state,
                             json_is_true(json_object_get(o, "default")) ? "default" : "mapped");
            const char *row[] = {cli_json_str(o, "tenant", "?"), cli_json_str(o, "resource", "?"),
                                 cli_json_str(o, "backend", "?"),
                                 json_is_true(json_object_get(o, "bound")) ? "yes" : "no",
                                 state.data};
            cli_table_add(&t, row);
        }
        cli_table_print(&t, stdout);
        cli_table_free(&t);
    }
    cli_reply_free(&r);
    return status;
}

int mxu_cmd_resource(int argc, char **argv)
{
    const cli_verb_help *h = &cli_help_resource;
    cli_simple_args a;
    int rc =
        cli_parse_simple(h, argc, argv, resource_flags, MXU_ARRAY_LEN(resource_flags), 1, 3, &a);
    if (rc >= 0)
        return rc;
    const char *to = a.values[0], *tenant = a.values[1];
    const char *sub = a.pos[0];
    bool ls = strcmp(sub, "ls") == 0, set = strcmp(sub, "set") == 0;
    bool reset = strcmp(sub, "reset") == 0, move = strcmp(sub, "move") == 0;
    int npos = a.npos;
    if (!ls && !set && !reset && !move)
        return cli_usage_error(h, "'%s' is not ls, set, reset or move", sub);
    if (ls && npos != 1)
        return cli_usage_error(h, "ls takes no arguments");
    if ((reset || move) && npos != 2)
        return cli_usage_error(h, "%s takes one resource, e.g. kv:orders", sub);
    if (set && npos != 3)
        return cli_usage_error(h, "set takes a resource and a location");
    if (move && to == NULL)
        return cli_usage_error(h, "move needs --to LOCATION");

    cli_client c;
    if (cli_client_open(&c, a.url, a.key) < 0)
        return CLI_EXIT_USAGE;
    if (ls) {
        rc = resource_ls(&c, tenant, a.json);
        cli_client_close(&c);
        return rc;
    }
    _cleanup_buf_ mxu_buf path = {0};
    mxu_buf_puts(&path, "/v1/resources/");
    cli_path_segment(&path, a.pos[1]);
    json_t *body = NULL;
    const char *method = "PUT";
    if (move) {
        mxu_buf_puts(&path, "/move");
        method = "POST";
        body = json_pack("{ss}", "to", to);
        if (isatty(STDERR_FILENO))
            fprintf(stderr, "moving %s to %s (functions keep running)...\n", a.pos[1], to);
    } else if (set) {
        body = json_pack("{ss}", "backend", a.pos[2]);
    } else {
        method = "DELETE";
    }
    tenant_query(&path, tenant);
    cli_reply r;
    mxu_err err;
    int status = 0;
    if (cli_api(&c, method, path.data, body, &r, &err) < 0)
        status = cli_fail(&r, &err, a.json);
    else if (a.json)
        cli_print_json_text(&r.raw);
    else if (move)
        printf("moved %s to %s in %.1f s\n", a.pos[1], to,
               json_real_value(json_object_get(r.json, "seconds")));
    else if (set)
        printf("%s now lives at %s (no data was copied)\n", a.pos[1], a.pos[2]);
    else
        printf("%s is back at its default location (no data was copied)\n", a.pos[1]);
    json_decref(body);
    cli_reply_free(&r);
    cli_client_close(&c);
    return status;
}
