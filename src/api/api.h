/*
 * api — the node's HTTP surface: invocations under /fn/ and the management
 * API under /v1/ (docs/api.md). Handlers only translate: they parse and
 * validate what comes in, call the registry or the scheduler, and map their
 * errors (errno codes, invocation errors) to HTTP statuses and JSON error
 * bodies. No business logic lives here.
 */
#ifndef MXU_API_H
#define MXU_API_H

#include "compose/compose.h"
#include "http/http.h"
#include "meter/meter.h"
#include "policy/policy.h"
#include "registry/registry.h"
#include "sched/sched.h"

typedef struct mxu_api mxu_api;

typedef struct mxu_api_config {
    mxu_registry *reg;
    mxu_sched *sched;
    mxu_resolver *resolver; /* the resource map (/v1/resources) */
    mxu_policy *policy;     /* tenants, keys, who may do what */
    const char *data_dir;   /* shown by /v1/health */
    const char *listen;     /* "127.0.0.1:8080", shown by /v1/health */
    size_t max_invoke_body; /* 0 = 6 MiB; larger bodies to /fn/ get 413 */
    mxu_meter *meter;       /* usage records; NULL = metering off */
    mxu_compose *compose;   /* runs services; NULL: invoking one is 501 */
} mxu_api_config;

mxu_api *mxu_api_create(const mxu_api_config *cfg);
void mxu_api_destroy(mxu_api *api);

/* The HTTP handler (mxu_http_handler); `ud` is the mxu_api. */
void mxu_api_handle(mxu_http_req *req, void *ud);

/* Deploy from already-read parts, as POST /v1/functions does (used by
 * `mxu serve --deploy`). cb runs once, from the loop, with the outcome. */
int mxu_api_deploy_local(mxu_api *api, const char *manifest_path, const char *manifest,
                         size_t manifest_len, const mxu_deploy_file *files, size_t nfiles,
                         mxu_deploy_cb cb, void *ud, mxu_err *err);

#endif
