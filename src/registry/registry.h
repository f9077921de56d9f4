/*
 * registry — what a node knows about deployed functions: manifests, immutable
 * numbered versions, aliases, and the bundles (files + build output) behind
 * them. State lives in one SQLite database (WAL) in the node's data directory
 * and is mirrored in memory, so that resolving `name@ref` on the invocation
 * path never touches the database. Every mutation is committed (durably)
 * before the in-memory model changes and before the caller is told it
 * succeeded, so whatever a client was told survives kill -9.
 *
 * Data directory layout (owned by this subsystem):
 *   state.db                 SQLite database
 *   bundles/<digest>/        one folder per distinct bundle, content-addressed
 *   bundles/<digest>/.mxu/   build output (`instance` for runtime c)
 *   bundles/.tmp-*           deploys in progress (removed on open)
 */
#ifndef MXU_REGISTRY_H
#define MXU_REGISTRY_H

#include "core/core.h"

#include <jansson.h>
#include <uv.h>

/* ---- manifests (mxu.yaml) -------------------------------------------------- */

enum mxu_runtime {
    MXU_RUNTIME_C,    /* C sources built against the SDK into a warm instance */
    MXU_RUNTIME_EXEC, /* any executable, one process per invocation (CGI model) */
};

/* One entry of `resources:`: local name → logical URI with an access mode. */
typedef struct mxu_resource_decl {
    char *name;              /* local name the function uses, e.g. "orders" */
    char *uri;               /* "kv:orders", "svc:resize@prod" */
    char *kind;              /* "kv" | "blob" | "queue" | "svc" */
    char *target;            /* the part after "kind:" */
    char *access;            /* kv/blob: read | write | read-write; queue: publish | consume |
                                publish-consume; svc: invoke */
    uint64_t max_value;      /* largest value / message / object / svc body in bytes;
                                default kv 1 MiB, queue 256 KiB, blob 1 GiB, svc 6 MiB */
    uint32_t ops_per_second; /* operations budget of this descriptor per unit; 0 = none */
    /* svc only: the link's traffic shaping (docs/policy.md): `rate` calls per
     * rate_period_ms (0 = none), `burst` (0 = one second's worth), calls in
     * flight at once (0 = no cap). Per caller function, across its versions. */
    uint64_t rate, rate_period_ms;
    uint32_t burst, max_concurrency;
} mxu_resource_decl;

/* ---- services (`kind: service`, docs/services.md) ----------------------------
 *
 * A service runs no code of its own: it is a graph of steps, each a call to a
 * function or another service of the same tenant, linked under rules. It is
 * deployed, versioned, aliased and invoked (/fn/NAME) like a function; the
 * registry parses and checks it (src/registry/registry-service.c), the
 * compose engine (src/compose/) runs it. Every struct below is read-only
 * once parsed, like the manifest that holds it. */

/* What a function's body is, for the checks a service's edges get at deploy:
 * `input:` and `output:` of a function manifest (default any). */
enum mxu_ctype {
    MXU_CT_ANY = 0, /* not declared: anything goes */
    MXU_CT_JSON,    /* application/json */
    MXU_CT_TEXT,    /* text (json is text too) */
    MXU_CT_BINARY,  /* bytes */
};
const char *mxu_ctype_name(enum mxu_ctype t); /* "any", "json", "text", "binary" */

/* A reference to a function or service of the service's own tenant. */
typedef struct mxu_fnref {
    char *name; /* "resize" */
    char *ref;  /* "" (latest), a version number "3", or an alias "prod" */
    char *text; /* as written: "resize@prod" */
    int line;   /* in the manifest, for messages */
} mxu_fnref;

/* One way a call step can go. Header routes are tried first, in file order;
 * if none matches, one of the weighted routes is drawn by weight. */
typedef struct mxu_route {
    mxu_fnref to;
    uint32_t weight; /* weighted route: its share (1..10000) among weighted
                        routes; 0 for a header route */
    char *header;    /* header route: request header name (lowercase); NULL: weighted */
    char *equals;    /* header route: the value that selects this route (exact match) */
} mxu_route;

/* What a failed attempt is, for retries (`retry_on:`); a failure is also what
 * counts for the circuit breaker and what sends a call to its fallback. */
enum {
    MXU_RETRY_ERROR = 1, /* no answer: timeout, crash, no instance, exec failure */
    MXU_RETRY_5XX = 2,   /* the function answered 500..599 */
    MXU_RETRY_429 = 4,   /* the callee was rate limited or its queue full (429) */
};

/* The rules on the edge into a call step. */
typedef struct mxu_edge {
    mxu_route *routes; /* at least one; `call: X` alone is one weighted route */
    size_t nroutes;
    uint64_t timeout_ms;       /* per attempt; 0 = the callee's own timeout */
    uint32_t retries;          /* attempts after the first (0..10) */
    uint64_t backoff_ms;       /* wait before the first retry (default 50 ms); doubles */
    uint64_t backoff_max_ms;   /* up to this (default 2 s) */
    unsigned retry_on;         /* MXU_RETRY_* bits; default ERROR | 5XX */
    uint32_t breaker_failures; /* consecutive failed calls that open the breaker; 0 = none */
    uint64_t breaker_open_ms;  /* open this long (default 30 s), then one trial call */
    mxu_fnref *fallback;       /* called with the same input when the call failed after its
                                  retries or its breaker is open; NULL = none */
    /* Shaping of the link, across runs of every version of the service
     * (docs/policy.md): rate per period (0 = none), burst, in flight (0 = no cap). */
    uint64_t rate, rate_period_ms;
    uint32_t burst, max_concurrency;
} mxu_edge;

enum mxu_step_kind {
    MXU_STEP_CALL,     /* call a function or service (`call:` or `routes:`) */
    MXU_STEP_PARALLEL, /* run every branch on the same input, join their outputs */
    MXU_STEP_SWITCH,   /* pick one list of steps by a JSON field, a header or a status */
    MXU_STEP_GROUP,    /* a nested sequence (`steps:`), e.g. one branch of a parallel */
};
enum mxu_switch_on {
    MXU_SWITCH_JSON,   /* a field of the input (a JSON pointer, "/customer/tier") */
    MXU_SWITCH_HEADER, /* a header of the service's request */
    MXU_SWITCH_STATUS, /* the previous step's status */
};
enum mxu_join {
    MXU_JOIN_ARRAY,  /* [out0, out1, ...] in branch order */
    MXU_JOIN_OBJECT, /* {"branch-id": out, ...} in branch order */
};

typedef struct mxu_step mxu_step;
typedef struct mxu_steps {
    mxu_step *v;
    size_t n;
} mxu_steps;

/* One case of a switch: the values that select it, and what then runs. */
typedef struct mxu_case {
    char **equals; /* JSON / header: values compared with the selector as text (a
                      JSON string without quotes; numbers, true/false/null as written) */
    size_t nequals;
    /* status: ranges (404 is 404..404, 4xx is 400..499) */
    uint16_t (*status)[2];
    size_t nstatus;
    mxu_steps steps; /* may be empty: the input passes through */
    int line;
} mxu_case;

struct mxu_step {
    enum mxu_step_kind kind;
    char *id;       /* unique in the service (nested steps too): traces and breakers use it */
    int line;       /* in the manifest */
    uint32_t index; /* 0..nsteps-1 over every step of the service, depth first */
    /* MXU_STEP_CALL */
    mxu_edge call;
    /* MXU_STEP_PARALLEL: each branch is a step (a call, or a group for a chain) */
    mxu_steps branches;
    enum mxu_join join;
    /* MXU_STEP_SWITCH */
    enum mxu_switch_on on;
    char *on_arg; /* JSON pointer or lowercase header name; NULL for status */
    mxu_case *cases;
    size_t ncases;
    bool has_default; /* `default:` given; otherwise an unmatched input passes through */
    mxu_steps otherwise;
    /* MXU_STEP_GROUP */
    mxu_steps steps;
    /* Deploy-time types (from the manifests the refs named at deploy). */
    enum mxu_ctype in, out;
};

typedef struct mxu_service {
    mxu_steps steps;     /* the top-level sequence; at least one */
    mxu_fnref *on_error; /* called when the run fails, with a JSON description of the
                            failure; its answer is the service's; NULL = none */
    size_t nsteps;       /* every step, nested ones included (see mxu_step.index) */
    /* A 4xx answer of a step ends the run with that answer, unless the next
     * step is a switch on status; a 5xx or an error fails the step. */
} mxu_service;

/* A parsed, validated manifest with every default filled in. Read-only after
 * parsing: it is a value, shared by everything that looks at a version. */
typedef struct mxu_manifest {
    char *name;
    char *description; /* "" if none */
    /* `kind: service`: the steps; NULL for a function. A service has no
     * runtime, files or instances: of the fields below it uses only
     * timeout_ms (the whole run's), is_public and the shaping fields. */
    mxu_service *service;
    char *source;                 /* a service: its manifest text as deployed (how it is stored) */
    enum mxu_ctype input, output; /* a function's `input:` / `output:` */
    enum mxu_runtime runtime;
    char *executor; /* "process", "sandbox", or "" = the node's default */
    /* runtime c */
    char **sources;
    size_t nsources;
    char **cflags;
    size_t ncflags;
    char **libs; /* "m" → -lm */
    size_t nlibs;
    /* runtime exec: argv; argv[0] relative to the bundle or an absolute path */
    char **command;
    size_t ncommand;
    uint64_t memory_bytes;  /* default 128 MiB; 16 MiB .. 64 GiB */
    uint64_t timeout_ms;    /* default 30 s; 1 ms .. 15 min */
    uint32_t concurrency;   /* default 1; 1 .. 1000; exec: always 1 */
    uint32_t min_instances; /* default 0 */
    uint32_t max_instances; /* default 10; >= 1 and >= min_instances; <= 1000 */
    uint64_t keep_alive_ms; /* idle time before scale-down; default 10 min; 0 .. 24 h */
    char **env_names;       /* manifest `env:`, in file order */
    char **env_values;
    size_t nenv;
    mxu_resource_decl *resources;
    size_t nresources;
    bool is_public; /* `public: true`: invocable without an API key */
    /* Traffic shaping of the function, across its versions (docs/policy.md):
     * `rate: 100/s` (0 = none), `burst` (0 = one second's worth),
     * `max_concurrency` (invocations running at once; 0 = no cap). */
    uint64_t rate, rate_period_ms;
    uint32_t burst, max_concurrency;
} mxu_manifest;

/* Parse and validate YAML text. `filename` is only used in messages. On error
 * the message names the file, line and field:
 *   "examples/hello/mxu.yaml:4: memory: '12X' is not a size (write e.g. 128Mi ...)"
 * and err->code is EINVAL. */
int mxu_manifest_parse(const char *text, size_t len, const char *filename, mxu_manifest **out,
                       mxu_err *err);
void mxu_manifest_free(mxu_manifest *m);
/* The manifest as JSON (every field, defaults filled in); new reference. */
json_t *mxu_manifest_to_json(const mxu_manifest *m);
/* Inverse of mxu_manifest_to_json, for reloading stored versions. */
int mxu_manifest_from_json(json_t *j, mxu_manifest **out, mxu_err *err);

/* ---- versions --------------------------------------------------------------- */

/* One immutable published version. Reference-counted: the registry holds one
 * reference while the version exists; anyone who keeps the pointer across
 * loop turns (a pool, an in-flight invocation) takes their own. */
typedef struct mxu_fn_version {
    char *tenant;     /* owner; names are unique per tenant */
    char *function;   /* name */
    uint32_t version; /* 1, 2, ... never reused, even after deletion */
    mxu_manifest *manifest;
    char *digest;        /* hex sha256 of the bundle (files, modes, manifest) */
    char *bundle_dir;    /* absolute path of the bundle folder */
    char *exe_path;      /* runtime c: built instance program;
                            runtime exec: absolute path of command[0] */
    uint64_t created_ms; /* wall clock */
    int refs;
} mxu_fn_version;

mxu_fn_version *mxu_fn_version_ref(mxu_fn_version *v);
/* The tenant that owns a version: the one place usage records, resources and
 * policy take it from. */
static inline const char *mxu_fn_version_tenant(const mxu_fn_version *v)
{
    return v->tenant;
}
void mxu_fn_version_unref(mxu_fn_version *v);
json_t *mxu_fn_version_to_json(const mxu_fn_version *v); /* new reference */

/* ---- the registry ------------------------------------------------------------ */

typedef struct mxu_registry mxu_registry;

typedef struct mxu_registry_config {
    const char *data_dir;        /* must exist */
    const char *sdk_include_dir; /* for building runtime c; NULL = compiled-in default */
    const char *sdk_lib_dir;     /* folder holding libmxufn.a; NULL = default */
    const char *cc;              /* compiler; NULL = MXU_C_COMPILER from mxu-config.h
                                    (the compiler mxu itself was built with) */
    uint64_t build_timeout_ms;   /* 0 = 120 s */
    /* The executor of manifests that name none (NULL = process): a runtime c
     * function that will run under vm is built as a guest image. */
    const char *default_executor;
    /* Why this node cannot run vm units (NULL = it can): vm deploys are then
     * refused with it. The caller asks the executors (the registry does not
     * know them). */
    const char *vm_unavailable;
} mxu_registry_config;

/* Open (creating if needed) the state database, load every function, version
 * and alias into memory, and remove leftovers of interrupted deploys and
 * bundle folders no version references. */
int mxu_registry_open(uv_loop_t *loop, const mxu_registry_config *cfg, mxu_registry **out,
                      mxu_err *err);
/* Waits for a running build to finish (its compiler is killed at once), then
 * frees everything. Deploys not yet finished get their callback, with
 * ECANCELED, before this returns. Run the loop once more afterwards: a
 * cancelled work item still gets its (internal) after-work callback. */
void mxu_registry_close(mxu_registry *reg);

/* Function names are scoped per tenant: every call below that names a
 * function takes the tenant that owns it ("default" for what was made before
 * tenants existed), and two tenants may each have their own `hello`. The
 * registry does not check that the tenant exists (policy does); a tenant
 * without functions simply has none. */

/* Resolve `tenant`'s `name` plus a reference: NULL or "" → alias latest;
 * digits → that version; anything else → that alias. Returns a borrowed
 * pointer (valid until the next registry mutation; take a reference to keep
 * it), or NULL with ENOENT and a message saying which of function / version /
 * alias is missing. */
mxu_fn_version *mxu_registry_resolve(mxu_registry *reg, const char *tenant, const char *name,
                                     const char *ref, mxu_err *err);

/* ---- deploy ---- */

typedef struct mxu_deploy_file {
    const char *path; /* relative, '/'-separated, no "..", no leading '/' */
    uint32_t mode;    /* permission bits; 0755 keeps a script executable */
    const void *data;
    size_t len;
} mxu_deploy_file;

/* Result of a deploy. On failure, err says why (EINVAL: bad manifest or
 * files; ENOEXEC: the build failed, with the compiler's output in build_log);
 * nothing was changed. `unchanged` means the bundle equals the latest
 * version's, so no version was made and `version` is that latest one. */
typedef struct mxu_deploy_result {
    int rc; /* 0 or -1 */
    mxu_err err;
    mxu_fn_version *version; /* borrowed, valid during the callback */
    bool unchanged;
    const char *build_log; /* compiler output (may be "" ), valid during the callback */
} mxu_deploy_result;

typedef void (*mxu_deploy_cb)(void *ud, const mxu_deploy_result *res);

/* Deploy a function of `tenant` from its manifest text and files. The manifest is parsed
 * and the files checked at once: if that fails, returns -1 and the callback
 * never runs. Otherwise returns 0 and the callback runs later from the loop,
 * exactly once, after the bundle was built (off the loop thread) and, on
 * success, the new version committed and `latest` moved to it. Deploys run
 * one at a time in arrival order. */
int mxu_registry_deploy(mxu_registry *reg, const char *tenant, const char *manifest_filename,
                        const char *manifest_text, size_t manifest_len,
                        const mxu_deploy_file *files, size_t nfiles, mxu_deploy_cb cb, void *ud,
                        mxu_err *err);

/* ---- aliases, deletion ---- */

/* Point `alias` at an existing version (creating or moving the alias).
 * "latest" can't be set by hand (EINVAL); it always follows the newest version. */
int mxu_registry_set_alias(mxu_registry *reg, const char *tenant, const char *name,
                           const char *alias, uint32_t version, mxu_err *err);
int mxu_registry_delete_alias(mxu_registry *reg, const char *tenant, const char *name,
                              const char *alias, mxu_err *err);
/* Delete one version. Refused (EBUSY) while an alias other than latest points
 * at it. If it was latest, latest moves to the newest remaining version; if
 * none remains, the function itself is deleted. Its bundle folder is removed
 * at once if no other version shares it and nobody else holds a reference to
 * the version (a running instance may), else at the next open. */
int mxu_registry_delete_version(mxu_registry *reg, const char *tenant, const char *name,
                                uint32_t version, mxu_err *err);
/* Delete a function with all its versions and aliases. Its version numbers
 * stay used: deployed again, the function goes on from the next number, so a
 * stale `name@3` never names different code. */
int mxu_registry_delete_function(mxu_registry *reg, const char *tenant, const char *name,
                                 mxu_err *err);

/* ---- reading ---- */

/* JSON for the API. Function: {"name", "tenant", "created", "latest",
 * "versions": [...], "aliases": {"latest": 3, "prod": 2}}. NULL + ENOENT if
 * `tenant` has no such function. */
json_t *mxu_registry_function_json(mxu_registry *reg, const char *tenant, const char *name,
                                   mxu_err *err);
/* Array of `tenant`'s function objects (as above, without the full versions
 * list: "versions" is a count), sorted by name; tenant NULL: every tenant's,
 * sorted by tenant, then name. */
json_t *mxu_registry_list_json(mxu_registry *reg, const char *tenant);
/* How many functions `tenant` owns (a tenant is deleted only when none). */
size_t mxu_registry_count(mxu_registry *reg, const char *tenant);

/* Visit every version that at least one alias points at (the versions a node
 * keeps min_instances of), of every tenant, in (tenant, name) order. `cb` must not change the
 * registry. */
void mxu_registry_foreach_aliased(mxu_registry *reg, void (*cb)(void *ud, mxu_fn_version *v),
                                  void *ud);

/* ---- change notification ---- */

enum mxu_registry_event {
    MXU_REG_VERSION_ADDED,   /* after a deploy committed */
    MXU_REG_VERSION_REMOVED, /* a version (or its whole function) was deleted */
    MXU_REG_ALIASES_CHANGED, /* some alias of the function moved or vanished */
};
/* One listener (the scheduler). Called synchronously after each committed
 * change; `v` is valid during the call (take a reference to keep it). A deploy
 * reports only VERSION_ADDED (latest moving with it is implied); deleting the
 * latest version reports VERSION_REMOVED, then ALIASES_CHANGED with the new
 * latest; deleting a function reports VERSION_REMOVED for each version. The
 * listener may read the registry but not change it. */
void mxu_registry_set_listener(mxu_registry *reg,
                               void (*cb)(void *ud, enum mxu_registry_event ev, mxu_fn_version *v),
                               void *ud);

#endif
