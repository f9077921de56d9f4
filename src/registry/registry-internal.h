/*
 * What the files of src/registry share and nobody else sees:
 *
 *   registry-manifest.c  mxu.yaml → mxu_manifest (libyaml), and to/from JSON
 *   registry-store.c     the SQLite store, the in-memory model (uthash), resolve,
 *                        aliases, deletion, JSON for the API, open and close
 *   registry-bundle.c    checking deploy files, the bundle digest, writing a
 *                        bundle folder durably, sweeping leftovers on open
 *   registry-build.c     compiling runtime c bundles (off the loop thread)
 *   registry-deploy.c    the deploy FIFO: hash → compare → write + build → commit
 *
 * Threads: everything runs on the loop thread except the two work items of a
 * deploy (hashing; writing + building), which only touch their own job struct.
 */
#ifndef MXU_REGISTRY_INTERNAL_H
#define MXU_REGISTRY_INTERNAL_H

#include "registry.h"

#include <sqlite3.h>
#include <uthash.h>
#include <yaml.h>

/* Bounds on what one deploy may carry: enough for any real function, small
 * enough that a deploy can't fill the node's disk or memory by accident. */
#define MXU_BUNDLE_MAX_FILES     1000
#define MXU_BUNDLE_MAX_BYTES     (64u * 1024 * 1024)
#define MXU_BUNDLE_MAX_PATH      1024
#define MXU_BUILD_LOG_MAX        (64u * 1024)
#define MXU_BUILD_TIMEOUT_MS     120000
#define MXU_DIGEST_HEX_LEN       64
#define MXU_MANIFEST_MAX_BYTES   (1024u * 1024)
#define MXU_BUNDLE_RESERVED_DIR  ".mxu"
#define MXU_BUNDLE_INSTANCE_PATH ".mxu/instance"

/* A user alias (never "latest", which is derived: the newest version). */
typedef struct reg_alias {
    char *name; /* hash key */
    mxu_fn_version *version;
    UT_hash_handle hh;
} reg_alias;

/* The model's key of a function: "TENANT/NAME" ('/' is in neither). */
#define REG_KEY_MAX 128

typedef struct reg_function {
    char *key;    /* hash key: "tenant/name" */
    char *tenant; /* points into key */
    char *name;   /* points into key */
    uint64_t created_ms;
    mxu_fn_version **versions; /* ascending by number; the last one is latest */
    size_t nversions, cap;
    reg_alias *aliases; /* uthash head */
    UT_hash_handle hh;
} reg_function;

typedef struct reg_deploy_job reg_deploy_job;

struct mxu_registry {
    uv_loop_t *loop;
    char *data_dir;    /* absolute */
    char *bundles_dir; /* data_dir/bundles */
    char *sdk_include_dir;
    char *sdk_lib_dir;
    char *cc;
    uint64_t build_timeout_ms;
    char *default_executor; /* "process" unless the node says otherwise */
    char *vm_unavailable;   /* NULL = vm units can run here */
    sqlite3 *db;
    reg_function *functions; /* uthash head, by "tenant/name" */
    /* Deploys run one at a time in arrival order: `running` is the one whose
     * work is under way, `queue_head`..`queue_tail` wait behind it. */
    reg_deploy_job *running;
    reg_deploy_job *queue_head, *queue_tail;
    void (*listener)(void *ud, enum mxu_registry_event ev, mxu_fn_version *v);
    void *listener_ud;
};

/* ---- the YAML layer of manifests (registry-yaml.c) ---- */

#define REG_YAML_MAX_STRING 4096 /* longest scalar but a description */

/* What every YAML helper needs: the document, the file name for messages and
 * where the error goes. */
typedef struct reg_yaml {
    yaml_document_t *doc;
    const char *file;
    mxu_err *err;
} reg_yaml;

/* "FILE:LINE: FIELD: message"; the line is left out when not known (<= 0),
 * the field when NULL. The message is cut to valid UTF-8 and one line.
 * Always returns -1. */
int reg_fail(const char *file, int line, const char *field, mxu_err *err, const char *fmt, ...)
    MXU_PRINTF(5, 6);
/* A value for a message: at most ~60 bytes (cut on a character boundary),
 * control characters shown as '?'. Q/QN need a `char qbuf[80]` in scope. */
const char *reg_quote(const char *s, size_t len, char *buf, size_t buflen);
#define Q(s)     reg_quote((s), strlen(s), qbuf, sizeof(qbuf))
#define QN(s, n) reg_quote((s), (n), qbuf, sizeof(qbuf))
/* " (did you mean 'memory'?)" when `word` is a typo of one of `known`, else "". */
const char *reg_suggest(const char *word, const char *const *known, size_t n, char *buf,
                        size_t buflen);

int reg_node_line(const yaml_node_t *n);
bool reg_node_is_null(const yaml_node_t *n);
const char *reg_node_what(const yaml_node_t *n); /* "a list", "a mapping", ... */
yaml_node_t *reg_node_get(reg_yaml *p, int id);
size_t reg_map_count(const yaml_node_t *n);
/* Scalars, each checked, naming `field` in errors (see registry-yaml.c). */
int reg_y_string(reg_yaml *p, yaml_node_t *n, const char *field, char **out);
int reg_y_uint(reg_yaml *p, yaml_node_t *n, const char *field, uint64_t max, uint64_t *out);
int reg_y_bool(reg_yaml *p, yaml_node_t *n, const char *field, bool *out);
int reg_y_duration(reg_yaml *p, yaml_node_t *n, const char *field, uint64_t *out);
int reg_y_rate(reg_yaml *p, yaml_node_t *n, const char *field, uint64_t *rate, uint64_t *period);
/* A list of strings, each passed through `check` (may be NULL). */
int reg_y_string_list(reg_yaml *p, yaml_node_t *n, const char *field, size_t max,
                      const char *(*check)(const char *), char ***out, size_t *nout);
/* One pair of a mapping with the checks every mapping shares: keys are
 * non-empty strings and appear once. `key` is borrowed from the document. */
int reg_y_map_pair(reg_yaml *p, yaml_node_t *map, yaml_node_pair_t *pair, const char *field,
                   const char **key, yaml_node_t **val);
/* libyaml's own errors: "FILE:LINE:COL: problem (context at line N)". */
int reg_yaml_syntax_error(const yaml_parser_t *parser, const char *text, size_t len,
                          const char *file, mxu_err *err);
void reg_strv_free(char **v, size_t n);

/* ---- manifests (registry-manifest.c) ---- */

/* NULL if `s` is a safe relative path inside a bundle (no "", ".", ".."
 * components, not absolute, not under .mxu/), else why not. */
const char *reg_path_problem(const char *s);
/* Make a message one valid UTF-8 line: control characters and bytes that
 * are not UTF-8 (from a client's path, a cut) become '?'. Messages go into
 * JSON and logs, and quote what clients sent. */
void reg_text_clean(char *s);

/* ---- services (registry-service.c) ---- */

/* "json" → MXU_CT_JSON...; -1 if not a content type. */
int reg_ctype_parse(const char *s, enum mxu_ctype *out);
/* A service manifest's `steps:` into svc (ids given, indexes numbered). */
int reg_service_steps(reg_yaml *y, yaml_node_t *n, mxu_service *svc);
/* Its `on_error:`. */
int reg_service_on_error(reg_yaml *y, yaml_node_t *n, mxu_service *svc);
void reg_service_free(mxu_service *svc);
/* The deploy checks, against what `tenant` has now: every reference exists,
 * no cycle leads back to the service, each step's input fits what reaches it.
 * Fills the steps' in/out types. EINVAL naming `file`, the line and the step. */
int reg_service_check(mxu_registry *reg, const char *tenant, const mxu_manifest *m,
                      const char *file, mxu_err *err);
/* {"steps": [...], "on_error": ...} for the API. */
json_t *reg_service_json(const mxu_service *svc);

/* ---- store (registry-store.c) ---- */

reg_function *reg_function_find(mxu_registry *reg, const char *tenant, const char *name);
mxu_fn_version *reg_function_latest(const reg_function *fn);
/* Is any version (of any function) stored with this bundle digest? */
bool reg_digest_in_use(mxu_registry *reg, const char *digest);
/* Commit a new version of `tenant`'s `manifest->name` whose bundle is
 * bundles/<digest>, then add it to the model and tell the listener. Takes
 * ownership of `manifest` (freed on failure). */
mxu_fn_version *reg_commit_version(mxu_registry *reg, const char *tenant, mxu_manifest *manifest,
                                   const char *digest, mxu_err *err);
void reg_notify(mxu_registry *reg, enum mxu_registry_event ev, mxu_fn_version *v);

/* ---- bundles (registry-bundle.c) ---- */

/* A deploy's files, copied and sorted by path, so that the digest does not
 * depend on the order the client sent them in. */
typedef struct reg_file {
    char *path;
    uint32_t mode;
    void *data;
    size_t len;
} reg_file;

/* Check paths, modes, count and size, and that the manifest's sources (c) or
 * command[0] (exec) are there. Copies into a sorted array (caller frees with
 * reg_files_free). EINVAL with a message naming the file on failure. */
int reg_files_check(const mxu_manifest *m, const mxu_deploy_file *files, size_t nfiles,
                    reg_file **out, mxu_err *err);
void reg_files_free(reg_file *files, size_t n);
/* Hex sha256 over a domain tag, the manifest text and every (path, mode,
 * data), each length-prefixed so that no two bundles hash alike by shifting
 * bytes between fields. `hex` has room for MXU_DIGEST_HEX_LEN + 1. */
void reg_bundle_digest(const char *manifest_text, size_t manifest_len, const reg_file *files,
                       size_t nfiles, char *hex);
bool reg_digest_valid(const char *s);
/* Write files into a fresh bundles/.tmp-XXXXXX (each file and folder synced);
 * *tmp_out is its path (caller frees). Thread-safe: touches only its args. */
int reg_bundle_write_tmp(const char *bundles_dir, const reg_file *files, size_t nfiles,
                         char **tmp_out, mxu_err *err);
/* Move a finished tmp folder to bundles/<digest> and sync bundles/. If that
 * folder already exists (same content, from another deploy), the tmp folder
 * is removed instead and *reused is set. */
int reg_bundle_install(const char *bundles_dir, const char *tmp, const char *digest, bool *reused,
                       mxu_err *err);
/* Remove bundles/<digest> (rename aside first, so a half-removed folder is
 * never mistaken for a complete one). */
void reg_bundle_remove(const char *bundles_dir, const char *digest);
/* On open: remove bundles/.tmp-* and every digest folder no version uses. */
int reg_bundle_sweep(mxu_registry *reg, mxu_err *err);
/* Where a version's program is: bundle/.mxu/instance (c) or command[0]. */
char *reg_exe_path(const mxu_manifest *m, const char *bundle_dir);

/* ---- builds (registry-build.c) ---- */

typedef struct reg_build_opts {
    const char *cc;
    const char *sdk_include_dir;
    const char *sdk_lib_dir;
    uint64_t timeout_ms;
    bool vm; /* build a guest image for the vm executor (sdk/guest, docs/vm.md) */
    /* Set from another thread to kill the compiler early (registry closing). */
    int *cancel; /* read with __atomic_load_n */
} reg_build_opts;

/* Compile a runtime c bundle in `dir` into dir/.mxu/instance. Blocking: call
 * from a work item. The compiler's stdout+stderr go to `log` (at most
 * MXU_BUILD_LOG_MAX bytes kept). ENOEXEC with a message on failure. */
int reg_build_c(const mxu_manifest *m, const char *dir, const reg_build_opts *opts, mxu_buf *log,
                mxu_err *err);

/* The system libraries a vm guest can link (`build: libs:`; docs/vm.md):
 * those whose Debian static archives link against the guest SDK's C
 * library, and `m`, whose functions the catalogue needs the guest C library
 * provides itself. reg_vm_libs_refused() writes the manifest's other
 * libraries, comma-separated, to buf and returns how many there are; the
 * list allowed is "jansson, z, sodium, m" (REG_VM_LIBS_TEXT). */
#define REG_VM_LIBS_TEXT "jansson, z, sodium, m"
size_t reg_vm_libs_refused(const mxu_manifest *m, char *buf, size_t cap);

/* ---- deploys (registry-deploy.c) ---- */

/* Cancel queued deploys and wait for the running one's thread (registry closing). */
void reg_deploy_shutdown(mxu_registry *reg);

#endif
