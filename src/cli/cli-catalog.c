/*
 * `mxu catalog` — the building blocks mxu ships (catalog/, docs/catalog.md):
 * list them, and deploy one by name, optionally under another name, with
 * settings (`env:`) added and resource descriptors pointed elsewhere.
 *
 *   mxu catalog ls
 *   mxu catalog deploy json-validate --as order-check --env SCHEMA='{...}'
 *   mxu catalog deploy queue-publish --bind queue=queue:orders
 *
 * The catalogue is a folder of function folders, found at --dir, else
 * $MXU_CATALOG_DIR, else the catalog/ of the source tree the binary was built
 * from (mxu-config.h, like the SDK's include dir). A deploy is `mxu deploy` of
 * the block's folder (cli_deploy_bundle), with the manifest rewritten first
 * when an option asks for it: parsed into a libyaml document, the nodes
 * changed, and emitted again, so that quoting stays YAML's business and
 * never string pasting. The node validates the result like any manifest.
 */
#include "cli-internal.h"
#include "mxu-config.h"

#include <dirent.h>
#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <yaml.h>

enum { OPT_DIR = CLI_OPT_FIRST_VERB, OPT_AS, OPT_ENV, OPT_BIND, OPT_JSON = CLI_OPT_JSON };

static const cli_option catalog_opts[] = {
    CLI_OPT_COMMON,          {"json", 0, false, OPT_JSON}, {"dir", 0, true, OPT_DIR},
    {"as", 0, true, OPT_AS}, {"env", 'e', true, OPT_ENV},  {"bind", 0, true, OPT_BIND},
};

const cli_verb_help cli_help_catalog = {
    .name = "catalog",
    .usage = "catalog ls | deploy NAME [--as NEWNAME] [--env KEY=VALUE]... "
             "[--bind LOCAL=URI]...  [--dir DIR] [--json] [--url URL]",
    .summary = "list the building blocks mxu ships, deploy one by name",
    .description =
        "The catalogue is a folder of ready-made functions (docs/catalog.md):\n"
        "  ls      each block's name, the resources it needs and what it does\n"
        "  deploy  deploy block NAME, like `mxu deploy` of its folder; with --as it is\n"
        "          deployed under another name (deploy it twice, configured twice),\n"
        "          --env adds or replaces a setting of its manifest's env:, --bind points\n"
        "          one of its resource descriptors at another resource (the block keeps\n"
        "          using its local name)",
    .options = "  --as NAME        deploy under this function name\n"
               "  -e, --env K=V    set env K of the manifest (repeatable)\n"
               "  --bind L=URI     re-point resource descriptor L, e.g. queue=queue:orders\n"
               "                   (repeatable)\n"
               "  --dir DIR        the catalogue folder (default: $MXU_CATALOG_DIR, else\n"
               "                   " MXU_CATALOG_DEFAULT_DIR ")\n"
               "  --json           ls: the list as JSON; deploy: the node's JSON answer\n",
    .example = "  mxu catalog deploy json-pick --as order-fields --env FIELDS=/id,/total\n"
               "  deployed order-fields@1 (built in 390 ms)\n"
               "  invoke: curl http://127.0.0.1:8080/fn/order-fields\n",
};

/* ---- reading the catalogue ------------------------------------------------- */

typedef struct catalog_resource {
    char *local, *uri, *access;
} catalog_resource;

typedef struct catalog_block {
    char *name; /* the folder's name: what `deploy NAME` takes */
    char *dir;
    char *description;
    catalog_resource *res;
    size_t nres;
} catalog_block;

typedef struct catalog {
    char *dir;
    catalog_block *blocks; /* sorted by name */
    size_t n;
} catalog;

static void catalog_free(catalog *c)
{
    for (size_t i = 0; i < c->n; i++) {
        catalog_block *b = &c->blocks[i];
        for (size_t j = 0; j < b->nres; j++) {
            free(b->res[j].local);
            free(b->res[j].uri);
            free(b->res[j].access);
        }
        free(b->res);
        free(b->name);
        free(b->dir);
        free(b->description);
    }
    free(c->blocks);
    free(c->dir);
    memset(c, 0, sizeof(*c));
}

static const char *scalar(yaml_node_t *n)
{
    return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

/* The value node of `key` in mapping `map`, or NULL; with *pair_out the pair. */
static yaml_node_t *map_get(yaml_document_t *doc, yaml_node_t *map, const char *key,
                            yaml_node_pair_t **pair_out)
{
    if (!map || map->type != YAML_MAPPING_NODE)
        return NULL;
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        const char *k = scalar(yaml_document_get_node(doc, p->key));
        if (k && strcmp(k, key) == 0) {
            if (pair_out)
                *pair_out = p;
            return yaml_document_get_node(doc, p->value);
        }
    }
    return NULL;
}

/* Parse manifest text into *doc; the root must be a mapping. */
static int load_manifest(const char *text, size_t len, const char *path, yaml_document_t *doc,
                         mxu_err *err)
{
    yaml_parser_t parser;
    yaml_parser_initialize(&parser);
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    int ok = yaml_parser_load(&parser, doc);
    if (!ok) {
        mxu_err_set(err, EINVAL, "%s:%zu: %s", path, parser.problem_mark.line + 1,
                    parser.problem ? parser.problem : "does not parse as YAML");
        yaml_parser_delete(&parser);
        return -1;
    }
    yaml_parser_delete(&parser);
    yaml_node_t *root = yaml_document_get_root_node(doc);
    if (!root || root->type != YAML_MAPPING_NODE) {
        yaml_document_delete(doc);
        return mxu_err_set(err, EINVAL, "%s: not a mapping of settings", path);
    }
    return 0;
}

static int read_block(const char *root, const char *name, catalog_block *b, mxu_err *err)
{
    memset(b, 0, sizeof(*b));
    _cleanup_free_ char *path = mxu_asprintf("%s/%s/mxu.yaml", root, name);
    _cleanup_buf_ mxu_buf text = {0};
    if (mxu_read_file(path, MXU_BUNDLE_READ_MAX_MANIFEST, &text, err) < 0)
        return -1;
    yaml_document_t doc;
    if (load_manifest(text.data ? text.data : "", text.len, path, &doc, err) < 0)
        return -1;
    yaml_node_t *top = yaml_document_get_root_node(&doc);
    b->name = mxu_strdup(name);
    b->dir = mxu_asprintf("%s/%s", root, name);
    const char *d = scalar(map_get(&doc, top, "description", NULL));
    b->description = mxu_strdup(d ? d : "");
    yaml_node_t *res = map_get(&doc, top, "resources", NULL);
    if (res && res->type == YAML_MAPPING_NODE) {
        size_t n = (size_t)(res->data.mapping.pairs.top - res->data.mapping.pairs.start);
        b->res = mxu_calloc(n ? n : 1, sizeof(*b->res));
        for (yaml_node_pair_t *p = res->data.mapping.pairs.start; p < res->data.mapping.pairs.top;
             p++) {
            yaml_node_t *v = yaml_document_get_node(&doc, p->value);
            const char *local = scalar(yaml_document_get_node(&doc, p->key));
            const char *uri = scalar(map_get(&doc, v, "uri", NULL));
            const char *access = scalar(map_get(&doc, v, "access", NULL));
            if (!local)
                continue;
            catalog_resource *r = &b->res[b->nres++];
            r->local = mxu_strdup(local);
            r->uri = mxu_strdup(uri ? uri : "?");
            r->access = access ? mxu_strdup(access) : NULL;
        }
    }
    yaml_document_delete(&doc);
    return 0;
}

static int block_cmp(const void *a, const void *b)
{
    return strcmp(((const catalog_block *)a)->name, ((const catalog_block *)b)->name);
}

/* Every folder of `dir` that holds an mxu.yaml is a block. A block whose
 * manifest does not parse is reported and left out, so one broken folder does
 * not hide the others. */
static int catalog_read(const char *dir, catalog *out, mxu_err *err)
{
    memset(out, 0, sizeof(*out));
    DIR *d = opendir(dir);
    if (!d)
        return mxu_err_sys(err, errno,
                           "cannot read the catalogue at %s (set --dir or $MXU_CATALOG_DIR)", dir);
    out->dir = mxu_strdup(dir);
    size_t cap = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.')
            continue;
        _cleanup_free_ char *manifest = mxu_asprintf("%s/%s/mxu.yaml", dir, e->d_name);
        struct stat st;
        if (stat(manifest, &st) < 0 || !S_ISREG(st.st_mode))
            continue;
        if (out->n == cap) {
            cap = cap ? cap * 2 : 16;
            out->blocks = mxu_realloc(out->blocks, cap * sizeof(*out->blocks));
        }
        mxu_err berr;
        if (read_block(dir, e->d_name, &out->blocks[out->n], &berr) < 0) {
            fprintf(stderr, "mxu: warning: skipping catalogue block %s: %s\n", e->d_name, berr.msg);
            continue;
        }
        out->n++;
    }
    closedir(d);
    if (out->n)
        qsort(out->blocks, out->n, sizeof(*out->blocks), block_cmp);
    return 0;
}

/* Levenshtein distance, for "did you mean"; names are short. */
static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 64 || lb > 64)
        return SIZE_MAX;
    size_t row[65];
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t best = diag + (a[i - 1] != b[j - 1]);
            best = MXU_MIN(best, up + 1);
            best = MXU_MIN(best, row[j - 1] + 1);
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

/* The block called `name`, or NULL with a message that suggests the nearest
 * name (a typo, or a prefix like "json" of "json-pick"). */
static const catalog_block *catalog_find(const catalog *c, const char *name, mxu_err *err)
{
    const char *best = NULL;
    size_t best_d = SIZE_MAX;
    for (size_t i = 0; i < c->n; i++) {
        if (strcmp(c->blocks[i].name, name) == 0)
            return &c->blocks[i];
        size_t d = edit_distance(name, c->blocks[i].name);
        if (strstr(c->blocks[i].name, name) && *name)
            d = MXU_MIN(d, 2);
        if (d < best_d) {
            best_d = d;
            best = c->blocks[i].name;
        }
    }
    if (best && best_d <= 3)
        mxu_err_set(err, ENOENT,
                    "no block '%s' in the catalogue at %s (did you mean '%s'?); "
                    "`mxu catalog ls` lists them",
                    name, c->dir, best);
    else
        mxu_err_set(err, ENOENT,
                    "no block '%s' in the catalogue at %s; `mxu catalog ls` lists them", name,
                    c->dir);
    return NULL;
}

/* ---- rewriting a manifest -------------------------------------------------- */

typedef struct catalog_changes {
    const char *as;
    const char **env; /* "KEY=VALUE" */
    size_t nenv;
    const char **bind; /* "LOCAL=URI" */
    size_t nbind;
} catalog_changes;

static int add_str(yaml_document_t *doc, const char *s, size_t len, bool quoted)
{
    return yaml_document_add_scalar(doc, NULL, (yaml_char_t *)s, (int)len,
                                    quoted ? YAML_DOUBLE_QUOTED_SCALAR_STYLE
                                           : YAML_ANY_SCALAR_STYLE);
}

/* Set mapping `map_id`'s `key` to a new string scalar (replacing the value
 * of an existing pair, else appending a pair). Returns 0, or -1 when libyaml
 * runs out of memory. */
static int set_pair(yaml_document_t *doc, int map_id, const char *key, const char *val, size_t vlen)
{
    yaml_node_pair_t *pair = NULL;
    map_get(doc, yaml_document_get_node(doc, map_id), key, &pair);
    /* Values are always quoted: "5" in env must stay the string "5". */
    int v = add_str(doc, val, vlen, true);
    if (!v)
        return -1;
    if (pair) {
        /* Adding a node may move the node array: look the pair up again. */
        map_get(doc, yaml_document_get_node(doc, map_id), key, &pair);
        pair->value = v;
        return 0;
    }
    int k = add_str(doc, key, strlen(key), false);
    return k && yaml_document_append_mapping_pair(doc, map_id, k, v) ? 0 : -1;
}

static int node_id(yaml_document_t *doc, yaml_node_t *n)
{
    return (int)(n - doc->nodes.start) + 1;
}

static int emit_handler(void *data, unsigned char *buf, size_t size)
{
    mxu_buf_append(data, buf, size);
    return 1;
}

/* Apply `ch` to manifest `text` (of block `b`) into `out`. Errors name the
 * option: an unknown descriptor lists the block's. */
static int manifest_rewrite(const catalog_block *b, const char *text, size_t len, const char *path,
                            const catalog_changes *ch, mxu_buf *out, mxu_err *err)
{
    yaml_document_t doc;
    if (load_manifest(text, len, path, &doc, err) < 0)
        return -1;
    int root = node_id(&doc, yaml_document_get_root_node(&doc));
    int rc = -1;
    if (ch->as && set_pair(&doc, root, "name", ch->as, strlen(ch->as)) < 0)
        goto nomem;
    if (ch->nenv) {
        yaml_node_t *env = map_get(&doc, yaml_document_get_node(&doc, root), "env", NULL);
        int env_id;
        if (env && env->type == YAML_MAPPING_NODE) {
            env_id = node_id(&doc, env);
        } else if (!env) {
            env_id = yaml_document_add_mapping(&doc, NULL, YAML_BLOCK_MAPPING_STYLE);
            int k = add_str(&doc, "env", 3, false);
            if (!env_id || !k || !yaml_document_append_mapping_pair(&doc, root, k, env_id))
                goto nomem;
        } else {
            mxu_err_set(err, EINVAL, "%s: env: is not a mapping", path);
            goto out;
        }
        for (size_t i = 0; i < ch->nenv; i++) {
            const char *eq = strchr(ch->env[i], '=');
            _cleanup_free_ char *key = mxu_strndup(ch->env[i], (size_t)(eq - ch->env[i]));
            if (set_pair(&doc, env_id, key, eq + 1, strlen(eq + 1)) < 0)
                goto nomem;
        }
    }
    for (size_t i = 0; i < ch->nbind; i++) {
        const char *eq = strchr(ch->bind[i], '=');
        _cleanup_free_ char *local = mxu_strndup(ch->bind[i], (size_t)(eq - ch->bind[i]));
        yaml_node_t *res = map_get(&doc, yaml_document_get_node(&doc, root), "resources", NULL);
        yaml_node_t *decl = map_get(&doc, res, local, NULL);
        if (!decl || decl->type != YAML_MAPPING_NODE) {
            _cleanup_buf_ mxu_buf have = {0};
            for (size_t j = 0; j < b->nres; j++)
                mxu_buf_printf(&have, "%s%s (%s)", j ? ", " : "", b->res[j].local, b->res[j].uri);
            mxu_err_set(err, EINVAL, "--bind %s: block %s has no resource descriptor '%s'%s%s",
                        ch->bind[i], b->name, local, b->nres ? "; it has " : " (it uses none)",
                        b->nres ? have.data : "");
            goto out;
        }
        if (set_pair(&doc, node_id(&doc, decl), "uri", eq + 1, strlen(eq + 1)) < 0)
            goto nomem;
    }

    yaml_emitter_t em;
    yaml_emitter_initialize(&em);
    yaml_emitter_set_output(&em, emit_handler, out);
    yaml_emitter_set_unicode(&em, 1);
    yaml_emitter_set_width(&em, -1);
    int ok = yaml_emitter_open(&em) && yaml_emitter_dump(&em, &doc) && yaml_emitter_close(&em);
    /* yaml_emitter_dump deletes the document, whether it succeeded or not. */
    yaml_emitter_delete(&em);
    if (!ok)
        return mxu_err_set(err, EINVAL, "%s: cannot write the changed manifest", path);
    return 0;
nomem:
    mxu_err_set(err, ENOMEM, "out of memory rewriting %s", path);
out:
    yaml_document_delete(&doc);
    return rc;
}

/* ---- the verbs ------------------------------------------------------------- */

static int catalog_ls(const catalog *c, bool json)
{
    if (json) {
        json_t *arr = json_array();
        for (size_t i = 0; i < c->n; i++) {
            const catalog_block *b = &c->blocks[i];
            json_t *res = json_array();
            for (size_t j = 0; j < b->nres; j++) {
                json_t *r = json_pack("{ssss}", "name", b->res[j].local, "uri", b->res[j].uri);
                if (b->res[j].access)
                    json_object_set_new(r, "access", json_string(b->res[j].access));
                json_array_append_new(res, r);
            }
            json_array_append_new(arr, json_pack("{sssssssO}", "name", b->name, "description",
                                                 b->description, "path", b->dir, "resources", res));
            json_decref(res);
        }
        json_t *o = json_pack("{sssO}", "dir", c->dir, "blocks", arr);
        char *text = json_dumps(o, JSON_INDENT(2));
        printf("%s\n", text ? text : "{}");
        free(text);
        json_decref(o);
        json_decref(arr);
        return 0;
    }
    static const char *const heads[] = {"NAME", "RESOURCES", "DESCRIPTION"};
    cli_table t;
    cli_table_init(&t, 3, heads);
    for (size_t i = 0; i < c->n; i++) {
        const catalog_block *b = &c->blocks[i];
        _cleanup_buf_ mxu_buf res = {0};
        for (size_t j = 0; j < b->nres; j++)
            mxu_buf_printf(&res, "%s%s=%s", j ? "," : "", b->res[j].local, b->res[j].uri);
        const char *row[] = {b->name, b->nres ? res.data : "-", b->description};
        cli_table_add(&t, row);
    }
    cli_table_print(&t, stdout);
    cli_table_free(&t);
    if (c->n == 0)
        fprintf(stderr, "mxu: no blocks in the catalogue at %s\n", c->dir);
    return 0;
}

static int catalog_deploy(const catalog *c, const char *name, const catalog_changes *ch,
                          const char *url, const char *key, bool json)
{
    mxu_err err;
    const catalog_block *b = catalog_find(c, name, &err);
    if (!b) {
        fprintf(stderr, "mxu: %s\n", err.msg);
        return CLI_EXIT_FAIL;
    }
    cli_client cl;
    if (cli_client_open(&cl, url, key) < 0)
        return CLI_EXIT_USAGE;
    mxu_bundle bundle;
    if (mxu_bundle_read(b->dir, &bundle, &err) < 0) {
        fprintf(stderr, "mxu: %s\n", err.msg);
        cli_client_close(&cl);
        return CLI_EXIT_FAIL;
    }
    if (ch->as || ch->nenv || ch->nbind) {
        mxu_buf text = {0};
        if (manifest_rewrite(b, bundle.manifest, bundle.manifest_len, bundle.manifest_path, ch,
                             &text, &err) < 0) {
            fprintf(stderr, "mxu: %s\n", err.msg);
            mxu_buf_free(&text);
            mxu_bundle_free(&bundle);
            cli_client_close(&cl);
            return CLI_EXIT_FAIL;
        }
        free(bundle.manifest);
        bundle.manifest = mxu_buf_steal(&text, &bundle.manifest_len);
    }
    int status = cli_deploy_bundle(&cl, &bundle, b->name, json);
    cli_client_close(&cl);
    return status;
}

int mxu_cmd_catalog(int argc, char **argv)
{
    const cli_verb_help *h = &cli_help_catalog;
    const char *url = NULL, *key = NULL, *dir = NULL, *arg, *pos[3] = {0};
    int npos = 0;
    bool json = false;
    catalog_changes ch = {0};
    /* Every --env and --bind fits: each takes an argv slot. */
    _cleanup_free_ const char **env = mxu_calloc((size_t)argc + 1, sizeof(*env));
    _cleanup_free_ const char **bind = mxu_calloc((size_t)argc + 1, sizeof(*bind));
    ch.env = env;
    ch.bind = bind;
    mxu_err err;
    cli_parser p;
    cli_parser_init(&p, argc, argv, catalog_opts, MXU_ARRAY_LEN(catalog_opts));
    for (int id; (id = cli_parser_next(&p, &arg, &err)) != CLI_OPT_END;) {
        int rc = cli_common_option(h, id, arg, &err, &url, &key, &json);
        if (rc >= 0)
            return rc;
        if (rc == CLI_OPT_TAKEN)
            continue;
        switch (id) {
        case OPT_DIR:
            dir = arg;
            break;
        case OPT_AS:
            ch.as = arg;
            break;
        case OPT_ENV:
            if (!strchr(arg, '=') || arg[0] == '=')
                return cli_usage_error(h, "--env takes KEY=VALUE (got '%s')", arg);
            env[ch.nenv++] = arg;
            break;
        case OPT_BIND:
            if (!strchr(arg, '=') || arg[0] == '=' || !strchr(arg, '=')[1])
                return cli_usage_error(h,
                                       "--bind takes LOCAL=URI, e.g. queue=queue:orders "
                                       "(got '%s')",
                                       arg);
            bind[ch.nbind++] = arg;
            break;
        case CLI_OPT_POSITIONAL:
            if (npos == (int)MXU_ARRAY_LEN(pos))
                return cli_usage_error(h, "unexpected argument '%s'", arg);
            pos[npos++] = arg;
            break;
        }
    }
    if (npos == 0)
        return cli_usage_error(h, "ls or deploy?");
    bool ls = strcmp(pos[0], "ls") == 0, deploy = strcmp(pos[0], "deploy") == 0;
    if (!ls && !deploy)
        return cli_usage_error(h, "'%s' is not ls or deploy", pos[0]);
    if (ls && npos != 1)
        return cli_usage_error(h, "ls takes no arguments");
    if (deploy && npos != 2)
        return cli_usage_error(h, "deploy takes one block name (see `mxu catalog ls`)");
    if (ls && (ch.as || ch.nenv || ch.nbind))
        return cli_usage_error(h, "--as, --env and --bind go with deploy");

    if (!dir)
        dir = getenv("MXU_CATALOG_DIR");
    if (!dir || !*dir)
        dir = MXU_CATALOG_DEFAULT_DIR;
    catalog c;
    if (catalog_read(dir, &c, &err) < 0) {
        fprintf(stderr, "mxu: %s\n", err.msg);
        return CLI_EXIT_FAIL;
    }
    int status = ls ? catalog_ls(&c, json) : catalog_deploy(&c, pos[1], &ch, url, key, json);
    catalog_free(&c);
    return status;
}
