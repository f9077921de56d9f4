/* Settings of `mxu serve`, from defaults, an optional YAML file and flags. */
#ifndef MXU_SERVE_CONFIG_H
#define MXU_SERVE_CONFIG_H

#include "core/core.h"

typedef struct mxu_serve_config {
    char *listen; /* "127.0.0.1:8080" */
    char *data_dir;
    uint64_t memory_budget;   /* 0 = 80 % of RAM */
    uint64_t max_body;        /* invocation bodies */
    uint64_t max_deploy_body; /* deploy requests */
    uint64_t max_header;
    uint32_t queue_max;
    uint32_t trace_runs; /* service runs whose traces are kept per tenant; 0 = 10,000 */
    uint64_t queue_timeout_ms;
    uint64_t drain_timeout_ms;
    uint64_t idle_timeout_ms;
    uint64_t read_timeout_ms;
    char *log_level;
    /* The executor of manifests that name none; NULL = process. */
    char *executor;
    /* `auth: off`: no API keys asked for, everyone is the node admin (for
     * benchmarks that compare with and without; the node warns loudly). */
    bool auth_off;
    char **deploy; /* folders to deploy at start */
    /* `resources:` of the config file: where resources live, applied (and
     * persisted in the map) at start: "kv:orders" → "redis://..." */
    char **res_uris, **res_locations;
    size_t nres;
    size_t ndeploy;
    /* `metering: off` / --metering off: no usage records (benchmarks). */
    bool metering_off;
    /* `prices:` of the config file as JSON text (docs/metering.md), or NULL:
     * the stored table (or the built-in one) stays. */
    char *prices_json;
} mxu_serve_config;

void mxu_serve_config_defaults(mxu_serve_config *c);
/* Read a YAML config file over the current values. Errors name file:line: key. */
int mxu_serve_config_load(mxu_serve_config *c, const char *path, mxu_err *err);
/* Apply one setting by key ("listen", "memory", ...), as from the file or a flag. */
int mxu_serve_config_set(mxu_serve_config *c, const char *key, const char *value, mxu_err *err);
void mxu_serve_config_free(mxu_serve_config *c);

#endif
