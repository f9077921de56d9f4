/*
 * fuzz-catalog.h — what the catalogue fuzzer's files share: the blocks'
 * entry points under their renamed symbols (fuzz/meson.build compiles each
 * block with -Dmxu_handle=catalog_NAME_handle -Dmxu_init=catalog_NAME_init),
 * and the harness of fuzz/fuzz-catalog-sdk.c that plays the node for them.
 */
#ifndef FUZZ_CATALOG_H
#define FUZZ_CATALOG_H

#include <mxu/fn.h>

#include <stddef.h>
#include <stdint.h>

/* ---- the blocks --------------------------------------------------------------- */

#define CATALOG_BLOCK(name)                                  \
    int catalog_##name##_handle(mxu_req *req, mxu_res *res); \
    int catalog_##name##_init(void);
CATALOG_BLOCK(json_pick)
CATALOG_BLOCK(json_validate)
CATALOG_BLOCK(template)
CATALOG_BLOCK(hash)
CATALOG_BLOCK(compress)
CATALOG_BLOCK(csv)
CATALOG_BLOCK(base64)
CATALOG_BLOCK(kv_counter)
CATALOG_BLOCK(queue_publish)
#undef CATALOG_BLOCK

/* template and json-validate keep what mxu_init() parsed in file-level
 * statics, once per instance; the fuzzer starts a new instance per input, so
 * fuzz-catalog-template.c / fuzz-catalog-validate.c include their sources and
 * add these, which forget it (as an instance's exit would). */
void catalog_template_reset(void);
void catalog_json_validate_reset(void);

/* ---- the harness: one instance, its requests, its resources ------------------------
 * The request and response calls of <mxu/fn.h> are the SDK's own (sdk/fn-api.c
 * and sdk/fn-resource.c are linked in); the harness supplies what the SDK's
 * runtime and the node would: the instance's configuration, the request, the
 * RESULT it turns the response into, and the answers to resource operations. */

/* Start an instance: forget the configuration (and every kv key and queued
 * message), then add entries with fc_config(). */
void fc_reset(void);
/* Add configuration entry NAME=VALUE; both strings must live until the next
 * fc_reset() (like the INIT frame they stand for). */
void fc_config(const char *name, const char *value);
/* Run a block's mxu_init() as the runtime does, before any request. */
int fc_init(int (*init)(void));

/* One request, as an INVOKE frame would bring it. */
typedef struct fc_request {
    const char *path;  /* "/" when NULL */
    const char *query; /* raw, percent-encoded; "" when NULL */
    const char *const *hdr_names;
    const char *const *hdr_values;
    size_t nhdrs;
    const void *body;
    size_t len;
} fc_request;

/* The RESULT the runtime would send, copied out of the SDK's buffers. */
typedef struct fc_answer {
    int status;
    char *ctype;         /* the Content-Type header's value, or NULL */
    unsigned char *body; /* followed by a NUL, not counted */
    size_t len;
} fc_answer;

/* Invoke `handle` once; fills `*a` (free with fc_answer_free). */
void fc_invoke(int (*handle)(mxu_req *, mxu_res *), const fc_request *r, fc_answer *a);
void fc_answer_free(fc_answer *a);

/* The in-memory node behind the blocks' descriptors: `counters` is a kv
 * store (read-write), `queue` a queue (publish); every other name is
 * DENIED, as an undeclared descriptor is. Keys are 1..512 bytes, values at
 * most 1 MiB, messages at most 256 KiB (the manifests' defaults). */

/* Answer the next `count` resource operations with `status` (an
 * mxu_res_status, e.g. MXU_RES_UNAVAILABLE), as a failing backend would. */
void fc_node_fail(uint32_t status, unsigned count);
/* The next `count` KV_CAS operations lose a race: just before each, another
 * instance adds 1 to the key (as kv-counter does: decimal text; a key that
 * does not parse is left alone), so the CAS answers CONFLICT. */
void fc_node_race(unsigned count);
/* Set key `key` of the kv store (before a request). */
void fc_kv_set(const char *key, const void *val, size_t len);
/* Look a kv key up: 0 and the value (NUL-terminated), or -1 when absent. */
int fc_kv_get(const char *key, const char **val, size_t *len);
/* The messages published so far and the last one. */
size_t fc_queue_count(void);
const void *fc_queue_last(size_t *len);

#endif
