/* Shared by the api files. */
#ifndef MXU_API_INTERNAL_H
#define MXU_API_INTERNAL_H

#include "api/api.h"

#include <jansson.h>

struct mxu_api {
    mxu_api_config cfg;
    char *data_dir;
    char *listen;
    uint64_t started_ms;
};

/* Answer with JSON (the reference is stolen). */
void api_json(mxu_http_req *req, int status, json_t *body);
/* The same with extra headers (at most 3). */
void api_json_with(mxu_http_req *req, int status, json_t *body, const mxu_http_header *extra,
                   size_t nextra);
/* Answer with {"error":{"code","message"}} plus optional extra fields
 * (stolen, may be NULL). */
void api_error(mxu_http_req *req, int status, const char *code, json_t *extra, const char *fmt, ...)
    MXU_PRINTF(5, 6);
/* Map a registry/core error to status + code and answer. */
void api_error_from(mxu_http_req *req, const mxu_err *err, const char *name, const char *ref);

void api_invoke(mxu_api *api, mxu_http_req *req, const char *target);
void api_v1(mxu_api *api, mxu_http_req *req, const char *path);

#endif
