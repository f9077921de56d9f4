/*
 * `mxu key` — API keys (docs/policy.md):
 *
 *   mxu key create --tenant T --role R [--scope GLOB] [--expires 30d] [--note TEXT]
 *   mxu key ls [--tenant T]
 *   mxu key revoke ID
 *
 * `create` prints the key once, on stdout alone, so that
 * `KEY=$(mxu key create ...)` works; the node keeps only its hash.
 */
#include "cli-internal.h"

#include <string.h>
#include <unistd.h>

const cli_verb_help cli_help_key = {
    .name = "key",
    .usage = "key create --role ROLE [--tenant T] [--scope GLOB] [--expires DUR] [--note TEXT]"
             " | ls [--tenant T] | revoke ID  [--json] [--url URL] [--key KEY]",
    .summary = "make, list or revoke API keys",
    .description =
        "Every API call and invocation carries an API key (docs/policy.md). A key has a\n"
        "tenant, a role and a scope (a glob over function names):\n"
        "  admin     everything in its tenant (an admin of tenant default runs the node)\n"
        "  deployer  deploy, delete, alias, invoke and read functions in its scope\n"
        "  invoker   invoke functions in its scope\n"
        "  viewer    read functions in its scope: versions, aliases, logs, instances\n"
        "  create  make a key; it is printed once and cannot be shown again\n"
        "  ls      list keys (never their secrets)\n"
        "  revoke  revoke a key by its id; it stops working at once",
    .options = "  --tenant T      the key's tenant (default: your key's)\n"
               "  --role ROLE     admin, deployer, invoker or viewer\n"
               "  --scope GLOB    functions the key may touch (default *), e.g. 'web-*'\n"
               "  --expires DUR   lifetime: 30d, 12h, 90s (default: never)\n"
               "  --note TEXT     a reminder shown by ls\n"
               "  --rate R        the key's rate limit: 100/s, 6000/m, 50/h\n"
               "  --burst N       requests at once within the rate\n"
               "  --concurrency N its invocations running at once\n"
               "  --priority P    critical, default or batch (its queue class)\n"
               "  --json          print the node's JSON answer\n",
    .example = "  mxu key create --tenant acme --role deployer --scope 'web-*' --expires 30d\n"
               "  mxu_3f2a9c1e0b7d4a65_9d1c...\n",
};

enum {
    OPT_TENANT = CLI_OPT_FIRST_VERB,
    OPT_ROLE,
    OPT_SCOPE,
    OPT_EXPIRES,
    OPT_NOTE,
    OPT_RATE,
    OPT_BURST,
    OPT_CONC,
    OPT_PRIO
};

static const cli_option key_opts[] = {
    {"tenant", 0, true, OPT_TENANT}, {"role", 0, true, OPT_ROLE},
    {"scope", 0, true, OPT_SCOPE},   {"expires", 0, true, OPT_EXPIRES},
    {"note", 0, true, OPT_NOTE},     {"rate", 0, true, OPT_RATE},
    {"burst", 0, true, OPT_BURST},   {"concurrency", 0, true, OPT_CONC},
    {"priority", 0, true, OPT_PRIO},
};

typedef struct key_args {
    cli_simple_args s;
    const char *tenant, *role, *scope, *expires, *note;
    const char *rate, *burst, *conc, *prio;
    const char **pos;
    int npos;
} key_args;

static int key_parse(int argc, char **argv, key_args *a)
{
    const cli_verb_help *h = &cli_help_key;
    int rc = cli_parse_simple(h, argc, argv, key_opts, MXU_ARRAY_LEN(key_opts), 0, 2, &a->s);
    if (rc >= 0)
        return rc;
#define KEY_OPT(id) a->s.values[(id)-CLI_OPT_FIRST_VERB]
    a->tenant = KEY_OPT(OPT_TENANT);
    a->role = KEY_OPT(OPT_ROLE);
    a->scope = KEY_OPT(OPT_SCOPE);
    a->expires = KEY_OPT(OPT_EXPIRES);
    a->note = KEY_OPT(OPT_NOTE);
    a->rate = KEY_OPT(OPT_RATE);
    a->burst = KEY_OPT(OPT_BURST);
    a->conc = KEY_OPT(OPT_CONC);
    a->prio = KEY_OPT(OPT_PRIO);
#undef KEY_OPT
    a->pos = a->s.pos;
    a->npos = a->s.npos;
    if (a->npos == 0)
        return cli_usage_error(h, "say create, ls or revoke");
    const char *sub = a->pos[0];
    if (strcmp(sub, "create") == 0) {
        if (a->npos != 1)
            return cli_usage_error(h, "create takes options only");
        if (a->role == NULL)
            return cli_usage_error(h, "create needs --role (admin, deployer, invoker or viewer)");
    } else if (strcmp(sub, "ls") == 0) {
        if (a->npos != 1)
            return cli_usage_error(h, "ls takes no arguments");
    } else if (strcmp(sub, "revoke") == 0) {
        if (a->npos != 2)
            return cli_usage_error(h, "revoke takes one key id (see mxu key ls)");
    } else {
        return cli_usage_error(h, "'%s' is not create, ls or revoke", sub);
    }
    return -1;
}

static void keys_table(json_t *keys)
{
    static const char *const heads[] = {"ID",    "TENANT",  "ROLE", "SCOPE",
                                        "STATE", "EXPIRES", "NOTE"};
    cli_table t;
    cli_table_init(&t, 7, heads);
    size_t i;
    json_t *k;
    json_array_foreach(keys, i, k)
    {
        _cleanup_buf_ mxu_buf exp = {0}, note = {0};
        const char *e = cli_json_str(k, "expires", NULL);
        if (e)
            cli_append_time_short(&exp, e);
        cli_append_printable(&note, cli_json_str(k, "note", ""));
        const char *row[] = {cli_json_str(k, "id", "?"),
                             cli_json_str(k, "tenant", "?"),
                             cli_json_str(k, "role", "?"),
                             cli_json_str(k, "scope", "?"),
                             cli_json_str(k, "state", "?"),
                             exp.data,
                             note.data};
        cli_table_add(&t, row);
    }
    cli_table_print(&t, stdout);
    cli_table_free(&t);
}

int mxu_cmd_key(int argc, char **argv)
{
    key_args a = {0};
    int rc = key_parse(argc, argv, &a);
    if (rc >= 0)
        return rc;
    cli_client c;
    if (cli_client_open(&c, a.s.url, a.s.key) < 0)
        return CLI_EXIT_USAGE;
    const char *sub = a.pos[0];
    _cleanup_buf_ mxu_buf path = {0};
    const char *method = "GET";
    json_t *body = NULL;
    if (strcmp(sub, "create") == 0) {
        method = "POST";
        mxu_buf_puts(&path, "/v1/keys");
        body = json_pack("{s:s}", "role", a.role);
        if (a.tenant)
            json_object_set_new(body, "tenant", json_string(a.tenant));
        if (a.scope)
            json_object_set_new(body, "scope", json_string(a.scope));
        if (a.expires)
            json_object_set_new(body, "expires_in", json_string(a.expires));
        if (a.note)
            json_object_set_new(body, "note", json_string(a.note));
        if (a.rate || a.burst || a.conc) {
            json_t *lim = json_object();
            uint64_t n;
            if (a.rate)
                json_object_set_new(lim, "rate", json_string(a.rate));
            if (a.burst)
                json_object_set_new(lim, "burst",
                                    mxu_parse_u64(a.burst, &n) == 0 ? json_integer((json_int_t)n)
                                                                    : json_string(a.burst));
            if (a.conc)
                json_object_set_new(lim, "concurrency",
                                    mxu_parse_u64(a.conc, &n) == 0 ? json_integer((json_int_t)n)
                                                                   : json_string(a.conc));
            json_object_set_new(body, "limits", lim);
        }
        if (a.prio)
            json_object_set_new(body, "priority", json_string(a.prio));
    } else if (strcmp(sub, "ls") == 0) {
        mxu_buf_puts(&path, "/v1/keys");
        if (a.tenant) {
            mxu_buf_puts(&path, "?tenant=");
            cli_url_escape(&path, a.tenant, NULL);
        }
    } else {
        method = "DELETE";
        mxu_buf_puts(&path, "/v1/keys/");
        cli_path_segment(&path, a.pos[1]);
    }
    cli_reply r;
    mxu_err err;
    int status = 0;
    if (cli_api(&c, method, path.data, body, &r, &err) < 0) {
        status = cli_fail(&r, &err, a.s.json);
    } else if (a.s.json) {
        cli_print_json_text(&r.raw);
    } else if (strcmp(sub, "create") == 0) {
        printf("%s\n", cli_json_str(r.json, "key", ""));
        fflush(stdout);
        fprintf(stderr,
                "key %s: role %s of tenant %s, scope %s%s%s. It is shown only this once: keep "
                "it now.\n",
                cli_json_str(r.json, "id", "?"), cli_json_str(r.json, "role", "?"),
                cli_json_str(r.json, "tenant", "?"), cli_json_str(r.json, "scope", "?"),
                cli_json_str(r.json, "expires", NULL) ? ", expires " : "",
                cli_json_str(r.json, "expires", ""));
    } else if (strcmp(sub, "ls") == 0) {
        keys_table(json_object_get(r.json, "keys"));
    } else {
        printf("revoked %s\n", a.pos[1]);
    }
    json_decref(body);
    cli_reply_free(&r);
    cli_client_close(&c);
    return status;
}
