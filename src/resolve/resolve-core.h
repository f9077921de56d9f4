/* Shared by the resolver's own files (resolve.c, resolve-move.c). */
#ifndef MXU_RESOLVE_CORE_H
#define MXU_RESOLVE_CORE_H

#include "resolve/resolve.h"

#include <sqlite3.h>
#include <uthash.h>

typedef struct mxu_move mxu_move;

struct mxu_binding {
    mxu_resolver *r; /* NULL once the resolver closed */
    char *key;       /* "default/kv/orders" */
    char *tenant;
    char *uri; /* "kv:orders" */
    char kind[16];
    char name[64];
    mxu_backend *backend; /* current; the binding holds a reference */
    mxu_backend *move_to; /* during a move: the destination (a reference) */
    mxu_move *move;       /* during a move */
    int refs;
    UT_hash_handle hh;
};

struct mxu_resolver {
    uv_loop_t *loop;
    char *data_dir;
    sqlite3 *db;
    mxu_binding *bindings; /* by key */
};

mxu_backend *mxu_resolver_open_backend(mxu_resolver *r, const char *kind, const char *resource,
                                       const char *location, mxu_err *err);
void mxu_backend_unref(mxu_backend *be);

/* Not an operation functions can send: kv import for moves (n1 = revision). */
#define MXU_RES_KV_IMPORT 255

/* Run one call on one backend, holding a reference until its callback ran. */
void mxu_backend_call(mxu_backend *be, const mxu_res_call *c, mxu_res_cb cb, void *ud);
void mxu_binding_switch(mxu_binding *b, mxu_backend *be);
/* Store where a resource lives (NULL: back to the default). */
int mxu_resolver_map_put(mxu_resolver *r, const char *tenant, const char *kind, const char *name,
                         const char *location, mxu_err *err);

/* resolve-move.c */
void mxu_move_call(mxu_binding *b, const mxu_res_call *c, mxu_res_cb cb, void *ud);
json_t *mxu_move_json(mxu_binding *b);

#endif
