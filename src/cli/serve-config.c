/*
 * `mxu serve` settings. Every setting has one key, used alike in the config
 * file (`memory: 8Gi`) and on the command line (`--memory 8Gi`), so the file
 * format needs no separate documentation beyond `mxu serve --help`.
 */
#include "serve-config.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <yaml.h>

static char *default_data_dir(void)
{
    const char *env = getenv("MXU_DATA");
    if (env && *env)
        return mxu_strdup(env);
    if (geteuid() == 0)
        return mxu_strdup("/var/lib/mxu");
    const char *xdg = getenv("XDG_DATA_HOME");
    if (xdg && *xdg)
        return mxu_asprintf("%s/mxu", xdg);
    const char *home = getenv("HOME");
    return mxu_asprintf("%s/.local/share/mxu", home && *home ? home : ".");
}

void mxu_serve_config_defaults(mxu_serve_config *c)
{
    memset(c, 0, sizeof(*c));
    c->listen = mxu_strdup("127.0.0.1:8080");
    c->data_dir = default_data_dir();
    c->max_body = 6u << 20;
    c->max_deploy_body = 96u << 20;
    c->max_header = 32u << 10;
    c->queue_max = 1000;
    c->queue_timeout_ms = 30000;
    c->drain_timeout_ms = 10000;
    c->idle_timeout_ms = 60000;
    c->read_timeout_ms = 30000;
    c->log_level = mxu_strdup("info");
}

void mxu_serve_config_free(mxu_serve_config *c)
{
    free(c->listen);
    free(c->data_dir);
    free(c->log_level);
    free(c->executor);
    for (size_t i = 0; i < c->ndeploy; i++)
        free(c->deploy[i]);
    free(c->deploy);
    for (size_t i = 0; i < c->nres; i++) {
        free(c->res_uris[i]);
        free(c->res_locations[i]);
    }
    free(c->res_uris);
    free(c->res_locations);
    free(c->prices_json);
    memset(c, 0, sizeof(*c));
}

static int set_str(char **dst, const char *v)
{
    free(*dst);
    *dst = mxu_strdup(v);
    return 0;
}

int mxu_serve_config_set(mxu_serve_config *c, const char *key, const char *v, mxu_err *err)
{
    uint64_t n;
    if (strcmp(key, "listen") == 0) {
        const char *colon = strrchr(v, ':');
        if (colon == NULL || colon == v || mxu_parse_u64(colon + 1, &n) < 0 || n > 65535)
            return mxu_err_set(err, EINVAL,
                               "listen: '%s' is not ADDRESS:PORT (e.g. 127.0.0.1:8080)", v);
        return set_str(&c->listen, v);
    }
    if (strcmp(key, "data") == 0)
        return set_str(&c->data_dir, v);
    if (strcmp(key, "log_level") == 0) {
        if (strcmp(v, "debug") && strcmp(v, "info") && strcmp(v, "warn") && strcmp(v, "error"))
            return mxu_err_set(err, EINVAL, "log_level: '%s' is not debug, info, warn or error", v);
        return set_str(&c->log_level, v);
    }
    if (strcmp(key, "executor") == 0) {
        if (strcmp(v, "process") != 0 && strcmp(v, "sandbox") != 0 && strcmp(v, "vm") != 0)
            return mxu_err_set(err, EINVAL, "executor: '%s' is not process, sandbox or vm", v);
        return set_str(&c->executor, v);
    }
    if (strcmp(key, "metering") == 0) {
        if (strcmp(v, "on") != 0 && strcmp(v, "off") != 0)
            return mxu_err_set(err, EINVAL, "metering: '%s' is not on or off", v);
        c->metering_off = strcmp(v, "off") == 0;
        return 0;
    }
    if (strcmp(key, "auth") == 0) {
        /* YAML 1.1 would read on/off as booleans; libyaml hands us the text. */
        if (strcmp(v, "on") == 0 || strcmp(v, "true") == 0)
            c->auth_off = false;
        else if (strcmp(v, "off") == 0 || strcmp(v, "false") == 0)
            c->auth_off = true;
        else
            return mxu_err_set(err, EINVAL, "auth: '%s' is not on or off", v);
        return 0;
    }
    if (strcmp(key, "deploy") == 0) {
        c->deploy = mxu_realloc(c->deploy, (c->ndeploy + 1) * sizeof(char *));
        c->deploy[c->ndeploy++] = mxu_strdup(v);
        return 0;
    }
    struct {
        const char *key;
        uint64_t *dst;
        int kind; /* 0 size, 1 duration */
    } nums[] = {
        {"memory", &c->memory_budget, 0},
        {"max_body", &c->max_body, 0},
        {"max_deploy_body", &c->max_deploy_body, 0},
        {"max_header", &c->max_header, 0},
        {"queue_timeout", &c->queue_timeout_ms, 1},
        {"drain_timeout", &c->drain_timeout_ms, 1},
        {"idle_timeout", &c->idle_timeout_ms, 1},
        {"read_timeout", &c->read_timeout_ms, 1},
    };
    for (size_t i = 0; i < MXU_ARRAY_LEN(nums); i++) {
        if (strcmp(key, nums[i].key) != 0)
            continue;
        int rc = nums[i].kind == 0 ? mxu_parse_size(v, nums[i].dst, err)
                                   : mxu_parse_duration_ms(v, nums[i].dst, err);
        return rc < 0 ? mxu_err_prefix(err, "%s", key) : 0;
    }
    if (strcmp(key, "queue_max") == 0) {
        if (mxu_parse_u64(v, &n) < 0 || n == 0 || n > 1000000)
            return mxu_err_set(err, EINVAL, "queue_max: '%s' is not a number from 1 to 1000000", v);
        c->queue_max = (uint32_t)n;
        return 0;
    }
    if (strcmp(key, "trace_runs") == 0) {
        if (mxu_parse_u64(v, &n) < 0 || n == 0 || n > 10000000)
            return mxu_err_set(err, EINVAL, "trace_runs: '%s' is not a number from 1 to 10000000",
                               v);
        c->trace_runs = (uint32_t)n;
        return 0;
    }
    return mxu_err_set(err, EINVAL, "unknown setting '%s' (see mxu serve --help)", key);
}

/* A YAML mapping of scalars and mappings as JSON, every scalar a string
 * (YAML's own text: "0.0000166667" stays exactly that). NULL on a sequence. */
static json_t *yaml_to_json(yaml_document_t *doc, yaml_node_t *n, int depth)
{
    if (n->type == YAML_SCALAR_NODE)
        return json_stringn((const char *)n->data.scalar.value, n->data.scalar.length);
    if (n->type != YAML_MAPPING_NODE || depth > 4)
        return NULL;
    json_t *o = json_object();
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(doc, p->key);
        json_t *v = yaml_to_json(doc, yaml_document_get_node(doc, p->value), depth + 1);
        if (k->type != YAML_SCALAR_NODE || v == NULL) {
            json_decref(v);
            json_decref(o);
            return NULL;
        }
        json_object_set_new(o, (const char *)k->data.scalar.value, v);
    }
    return o;
}

int mxu_serve_config_load(mxu_serve_config *c, const char *path, mxu_err *err)
{
    _cleanup_buf_ mxu_buf text = {0};
    if (mxu_read_file(path, 1 << 20, &text, err) < 0)
        return -1;
    yaml_parser_t parser;
    yaml_document_t doc;
    yaml_parser_initialize(&parser);
    yaml_parser_set_input_string(&parser, (const unsigned char *)text.data, text.len);
    if (!yaml_parser_load(&parser, &doc)) {
        mxu_err_set(err, EINVAL, "%s:%zu:%zu: %s", path, parser.problem_mark.line + 1,
                    parser.problem_mark.column + 1, parser.problem ? parser.problem : "bad YAML");
        yaml_parser_delete(&parser);
        return -1;
    }
    int rc = 0;
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (root == NULL) {
        /* An empty file is an empty configuration. */
    } else if (root->type != YAML_MAPPING_NODE) {
        rc = mxu_err_set(err, EINVAL, "%s:%zu: the configuration must be a mapping of settings",
                         path, root->start_mark.line + 1);
    } else {
        for (yaml_node_pair_t *p = root->data.mapping.pairs.start;
             rc == 0 && p < root->data.mapping.pairs.top; p++) {
            yaml_node_t *k = yaml_document_get_node(&doc, p->key);
            yaml_node_t *v = yaml_document_get_node(&doc, p->value);
            size_t line = k->start_mark.line + 1;
            if (k->type != YAML_SCALAR_NODE) {
                rc = mxu_err_set(err, EINVAL, "%s:%zu: keys must be plain names", path, line);
                break;
            }
            const char *key = (const char *)k->data.scalar.value;
            if (strcmp(key, "deploy") == 0 && v->type == YAML_SEQUENCE_NODE) {
                for (yaml_node_item_t *it = v->data.sequence.items.start;
                     rc == 0 && it < v->data.sequence.items.top; it++) {
                    yaml_node_t *item = yaml_document_get_node(&doc, *it);
                    if (item->type != YAML_SCALAR_NODE)
                        rc = mxu_err_set(err, EINVAL, "%s:%zu: deploy: expected folder names", path,
                                         item->start_mark.line + 1);
                    else
                        rc = mxu_serve_config_set(c, key, (const char *)item->data.scalar.value,
                                                  err);
                }
                continue;
            }
            if (strcmp(key, "resources") == 0 && v->type == YAML_MAPPING_NODE) {
                /* kv:orders: redis://127.0.0.1:6379/0 */
                for (yaml_node_pair_t *rp = v->data.mapping.pairs.start;
                     rc == 0 && rp < v->data.mapping.pairs.top; rp++) {
                    yaml_node_t *rk = yaml_document_get_node(&doc, rp->key);
                    yaml_node_t *rv = yaml_document_get_node(&doc, rp->value);
                    if (rk->type != YAML_SCALAR_NODE || rv->type != YAML_SCALAR_NODE) {
                        rc = mxu_err_set(err, EINVAL,
                                         "%s:%zu: resources: write KIND:NAME: LOCATION, e.g. "
                                         "kv:orders: redis://127.0.0.1:6379/0",
                                         path, rk->start_mark.line + 1);
                        break;
                    }
                    c->res_uris = mxu_realloc(c->res_uris, (c->nres + 1) * sizeof(char *));
                    c->res_locations =
                        mxu_realloc(c->res_locations, (c->nres + 1) * sizeof(char *));
                    c->res_uris[c->nres] = mxu_strdup((const char *)rk->data.scalar.value);
                    c->res_locations[c->nres] = mxu_strdup((const char *)rv->data.scalar.value);
                    c->nres++;
                }
                continue;
            }
            if (strcmp(key, "prices") == 0) {
                /* Checked by the meter at start, with messages naming the field. */
                json_t *j = yaml_to_json(&doc, v, 0);
                if (j == NULL || !json_is_object(j)) {
                    json_decref(j);
                    rc = mxu_err_set(err, EINVAL,
                                     "%s:%zu: prices: expected a mapping of prices, e.g. "
                                     "per_request: \"0.0000002\"",
                                     path, line);
                    break;
                }
                free(c->prices_json);
                c->prices_json = json_dumps(j, JSON_COMPACT);
                json_decref(j);
                continue;
            }
            if (v->type != YAML_SCALAR_NODE) {
                rc = mxu_err_set(err, EINVAL, "%s:%zu: %s: expected a single value", path,
                                 v->start_mark.line + 1, key);
                break;
            }
            if (mxu_serve_config_set(c, key, (const char *)v->data.scalar.value, err) < 0) {
                /* Put the place in front of what was wrong. */
                mxu_err_prefix(err, "%s:%zu", path, v->start_mark.line + 1);
                rc = -1;
            }
        }
    }
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    return rc;
}
