/*
 * Manifests: mxu.yaml → a validated mxu_manifest, and the manifest to and from
 * JSON (how versions are stored and shown by the API).
 *
 * A manifest is written by a person, so every error names the file, the line
 * and the field, says what was expected and, where it can, how to fix it:
 *   "hello/mxu.yaml:4: memory: '12X' is not a size (write e.g. 128Mi, ...)".
 * Nothing is guessed: unknown fields, duplicate keys, wrong types and fields
 * that don't apply to the runtime are errors, never silently ignored, because
 * a typo that is ignored becomes a production default nobody chose.
 *
 * Divisions of this file:
 *   - messages: error formatting, quoting of values, "did you mean"
 *   - checks shared by YAML and JSON: one value at a time (paths, names,
 *     resource URIs) and the whole manifest (ranges, runtime rules)
 *   - YAML: libyaml's document API; line numbers come from node marks
 *   - JSON: to_json / from_json, and freeing
 */
#include "registry-internal.h"

#include "policy/policy.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <yaml.h>

#define KiB (1024ull)
#define MiB (1024ull * 1024)
#define GiB (1024ull * 1024 * 1024)

/* Defaults and ranges (documented in registry.h). */
#define MEMORY_DEFAULT     (128 * MiB)
#define MEMORY_MIN         (16 * MiB)
#define MEMORY_MAX         (64 * GiB)
#define TIMEOUT_DEFAULT    30000ull
#define TIMEOUT_MAX        (15 * 60 * 1000ull)
#define CONCURRENCY_MAX    1000u
#define INSTANCES_DEFAULT  10u
#define INSTANCES_MAX      1000u
#define KEEP_ALIVE_DEFAULT (10 * 60 * 1000ull)
#define KEEP_ALIVE_MAX     (24 * 60 * 60 * 1000ull)

/* Bounds on list and map sizes: far above any real manifest, low enough that
 * a hostile one can't make checks quadratic in anything large. */
#define MAX_SOURCES     MXU_BUNDLE_MAX_FILES
#define MAX_CFLAGS      256
#define MAX_LIBS        64
#define MAX_COMMAND     256
#define MAX_ENV         1000
#define MAX_RESOURCES   256
#define MAX_DESCRIPTION 4096

enum field_id {
    F_NAME,
    F_DESCRIPTION,
    F_RUNTIME,
    F_EXECUTOR,
    F_SOURCES,
    F_BUILD,
    F_COMMAND,
    F_MEMORY,
    F_TIMEOUT,
    F_CONCURRENCY,
    F_MIN_INSTANCES,
    F_MAX_INSTANCES,
    F_KEEP_ALIVE,
    F_ENV,
    F_RESOURCES,
    F_PUBLIC,
    F_RATE,
    F_BURST,
    F_MAX_CONCURRENCY,
    F_KIND,
    F_INPUT,
    F_OUTPUT,
    F_STEPS,
    F_ON_ERROR,
    F_COUNT
};

static const char *const field_names[F_COUNT] = {
    "name",       "description", "runtime",         "executor",
    "sources",    "build",       "command",         "memory",
    "timeout",    "concurrency", "min_instances",   "max_instances",
    "keep_alive", "env",         "resources",       "public",
    "rate",       "burst",       "max_concurrency", "kind",
    "input",      "output",      "steps",           "on_error",
};

/* Where each top-level field was: its value's line in YAML, -1 when present
 * but without a line (JSON), 0 when absent. */
typedef struct field_lines {
    int line[F_COUNT];
    int root; /* line of the document's first field, for "missing" errors */
} field_lines;

/* ---- checks on single values (shared by YAML and JSON) --------------------- */

/* Each returns NULL if the value is fine, or the reason it isn't, worded to
 * follow the quoted value: "'../x.c' must stay inside the function folder". */

const char *reg_path_problem(const char *s)
{
    size_t n = strlen(s);
    if (n == 0)
        return "is empty";
    if (n > MXU_BUNDLE_MAX_PATH)
        return "is too long";
    if (s[0] == '/')
        return "must be a path relative to the function folder, not an absolute one";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f || c == '\\')
            return "contains a control character or a backslash";
    }
    /* Every component must be a real name: no "", ".", "..". */
    const char *p = s;
    for (;;) {
        const char *slash = strchr(p, '/');
        size_t cl = slash ? (size_t)(slash - p) : strlen(p);
        if (cl == 0)
            return "has an empty path component ('//' or a trailing '/')";
        if ((cl == 1 && p[0] == '.') || (cl == 2 && p[0] == '.' && p[1] == '.'))
            return "must not contain '.' or '..' components (files stay inside the function "
                   "folder)";
        if (cl > 255)
            return "has a path component longer than 255 bytes";
        if (!slash)
            break;
        p = slash + 1;
    }
    if (strncmp(s, MXU_BUNDLE_RESERVED_DIR, strlen(MXU_BUNDLE_RESERVED_DIR)) == 0 &&
        (s[4] == '/' || s[4] == '\0'))
        return "is inside .mxu/, which is reserved for build output";
    return NULL;
}

/* A source is a path that can't be mistaken for a compiler flag. */
static const char *check_source(const char *s)
{
    if (s[0] == '-')
        return "starts with '-', which the compiler would read as a flag";
    return reg_path_problem(s);
}

static const char *check_cflag(const char *s)
{
    if (s[0] != '-')
        return "is not a compiler flag (flags start with '-'; list source files under sources:)";
    if (s[1] == 'o')
        return "sets the output file, which mxu chooses itself";
    return NULL;
}

static const char *check_lib(const char *s)
{
    if (s[0] == '\0' || s[0] == '-')
        return "is not a library name (write m for -lm)";
    for (const char *p = s; *p; p++) {
        char c = *p;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-' || c == '+' || c == '.'))
            return "is not a library name (write m for -lm)";
    }
    return NULL;
}

static const char *check_env_name(const char *s)
{
    if (!((s[0] >= 'A' && s[0] <= 'Z') || (s[0] >= 'a' && s[0] <= 'z') || s[0] == '_'))
        return "is not a variable name (letters, digits and '_', not starting with a digit)";
    size_t n = 0;
    for (const char *p = s; *p; p++, n++) {
        char c = *p;
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '_'))
            return "is not a variable name (letters, digits and '_', not starting with a digit)";
    }
    if (n > 255)
        return "is too long for a variable name";
    if (strncmp(s, "MXU_", 4) == 0)
        return "is reserved: names starting with MXU_ are set by the platform";
    return NULL;
}

static const char *check_command0(const char *s)
{
    if (s[0] == '\0')
        return "is empty";
    if (s[0] == '/')
        return NULL; /* a program installed on the node; checked at deploy */
    if (s[0] == '.' && s[1] == '/')
        s += 2;
    const char *why = reg_path_problem(s);
    return why;
}

static const char *const access_kv[] = {"read", "write", "read-write"};
static const char *const access_queue[] = {"publish", "consume", "publish-consume"};
static const char *const access_svc[] = {"invoke"};
static const char *const kinds[] = {"kv", "blob", "queue", "svc"};

static bool in_list(const char *s, const char *const *list, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(s, list[i]) == 0)
            return true;
    }
    return false;
}

/* Fill d->kind/target/access from uri and access (NULL = not given). On error
 * returns -1 with `why` filled and `which` set to "uri" or "access". */
/* An optional "TENANT/" before a resource's name: *target is moved past it.
 * -1 with the reason in why if the tenant name is not one. */
static int skip_tenant(const char *uri, const char **target, const char *example, char *why,
                       size_t whylen)
{
    char qbuf[80];
    const char *slash = strchr(*target, '/');
    if (slash == NULL)
        return 0;
    char tname[40];
    size_t tl = (size_t)(slash - *target);
    bool ok = tl < sizeof(tname);
    if (ok) {
        memcpy(tname, *target, tl);
        tname[tl] = '\0';
        ok = mxu_tenant_name_valid(tname);
    }
    if (!ok) {
        snprintf(why, whylen,
                 "'%s': before '/' comes a tenant name (lowercase letters, digits and '-', "
                 "starting with a letter, at most 32), e.g. %s",
                 Q(uri), example);
        return -1;
    }
    *target = slash + 1;
    return 0;
}

static int resource_fill(mxu_resource_decl *d, const char *uri, const char *access, char *why,
                         size_t whylen, const char **which)
{
    char qbuf[80], qbuf2[80];
    *which = "uri";
    const char *colon = strchr(uri, ':');
    if (colon == NULL) {
        snprintf(why, whylen, "'%s' is not a resource URI (write kind:name, e.g. kv:orders)",
                 Q(uri));
        return -1;
    }
    char kind[16];
    size_t kl = (size_t)(colon - uri);
    if (kl >= sizeof(kind) || (memcpy(kind, uri, kl), kind[kl] = '\0', !in_list(kind, kinds, 4))) {
        snprintf(why, whylen, "'%s': unknown resource kind (kinds are kv, blob, queue and svc)",
                 Q(uri));
        return -1;
    }
    const char *target = colon + 1;
    if (strcmp(kind, "svc") == 0) {
        /* name, name@3 or name@alias, each optionally tenant/ first: another
         * tenant's function (refused at call time unless a policy rule
         * allows it or it is public; see sched-svc.c). */
        if (skip_tenant(uri, &target, "svc:acme/resize@prod", why, whylen) < 0)
            return -1;
        const char *at = strchr(target, '@');
        char fname[64];
        size_t fl = at ? (size_t)(at - target) : strlen(target);
        bool ok = fl < sizeof(fname);
        if (ok) {
            memcpy(fname, target, fl);
            fname[fl] = '\0';
            ok = mxu_name_valid(fname);
        }
        if (ok && at) {
            uint64_t num;
            const char *ref = at + 1;
            if (ref[0] >= '0' && ref[0] <= '9')
                ok = mxu_parse_u64(ref, &num) == 0 && num >= 1 && num <= UINT32_MAX;
            else
                ok = mxu_name_valid(ref);
        }
        if (!ok) {
            snprintf(why, whylen,
                     "'%s': the target must be a function name, name@version or name@alias, "
                     "optionally after TENANT/ (e.g. svc:resize@prod, svc:acme/resize@prod)",
                     Q(uri));
            return -1;
        }
    } else {
        /* kind:name, or kind:TENANT/name: another tenant's resource (refused
         * at call time unless a rule of the node's policy allows it). */
        if (skip_tenant(uri, &target, "kv:acme/orders", why, whylen) < 0)
            return -1;
        if (!mxu_name_valid(target)) {
            snprintf(why, whylen,
                     "'%s': '%s' is not a valid name (lowercase letters, digits, '-' and '_', "
                     "starting with a letter)",
                     Q(uri), reg_quote(target, strlen(target), qbuf2, sizeof(qbuf2)));
            return -1;
        }
    }
    const char *const *allowed = access_kv;
    size_t nallowed = MXU_ARRAY_LEN(access_kv);
    const char *hint = "read, write or read-write";
    if (strcmp(kind, "queue") == 0) {
        allowed = access_queue, nallowed = MXU_ARRAY_LEN(access_queue);
        hint = "publish, consume or publish-consume";
    } else if (strcmp(kind, "svc") == 0) {
        allowed = access_svc, nallowed = MXU_ARRAY_LEN(access_svc);
        hint = "invoke";
    }
    *which = "access";
    if (access == NULL) {
        if (strcmp(kind, "svc") != 0) {
            snprintf(why, whylen, "is required for %s resources (%s)", kind, hint);
            return -1;
        }
        access = "invoke";
    } else if (!in_list(access, allowed, nallowed)) {
        snprintf(why, whylen, "'%s' is not an access mode for %s resources (use %s)", Q(access),
                 kind, hint);
        return -1;
    }
    d->uri = mxu_strdup(uri);
    d->kind = mxu_strdup(kind);
    d->target = mxu_strdup(colon + 1);
    d->access = mxu_strdup(access);
    d->max_value = strcmp(kind, "kv") == 0      ? MiB
                   : strcmp(kind, "queue") == 0 ? 256 * 1024
                   : strcmp(kind, "blob") == 0  ? 1024 * MiB
                                                : 6 * MiB;
    return 0;
}

/* ---- checks on the whole manifest ------------------------------------------- */

static int check_u64_range(const char *file, int line, const char *field, mxu_err *err, uint64_t v,
                           uint64_t min, uint64_t max, bool is_size, bool is_ms)
{
    if (v >= min && v <= max)
        return 0;
    char a[32], b[32];
    bool low = v < min;
    uint64_t lim = low ? min : max;
    if (is_size) {
        mxu_format_size(v, a, sizeof(a));
        mxu_format_size(lim, b, sizeof(b));
    } else if (is_ms) {
        mxu_format_duration_ms(v, a, sizeof(a));
        mxu_format_duration_ms(lim, b, sizeof(b));
    } else {
        snprintf(a, sizeof(a), "%llu", (unsigned long long)v);
        snprintf(b, sizeof(b), "%llu", (unsigned long long)lim);
    }
    return reg_fail(file, line, field, err, "%s is %s the %s of %s", a, low ? "below" : "above",
                    low ? "minimum" : "maximum", b);
}

/* A service runs no code of its own: the fields about code and instances
 * do not apply, and it must have steps. */
static int service_validate(const mxu_manifest *m, const field_lines *fl, const char *file,
                            mxu_err *err)
{
    static const enum field_id function_only[] = {
        F_RUNTIME, F_EXECUTOR,    F_SOURCES,       F_BUILD,         F_COMMAND,
        F_MEMORY,  F_CONCURRENCY, F_MIN_INSTANCES, F_MAX_INSTANCES, F_KEEP_ALIVE,
        F_ENV,     F_RESOURCES,   F_INPUT,         F_OUTPUT,
    };
    for (size_t i = 0; i < MXU_ARRAY_LEN(function_only); i++) {
        enum field_id id = function_only[i];
        if (fl->line[id])
            return reg_fail(file, fl->line[id], field_names[id], err,
                            "does not apply to a service: it runs no code of its own (its "
                            "steps' functions have their own %s)",
                            field_names[id]);
    }
    if (!fl->line[F_STEPS])
        return reg_fail(file, fl->root, "steps", err,
                        "required field is missing: a service is a list of steps, e.g. steps: "
                        "[validate, price]");
    return check_u64_range(file, fl->line[F_TIMEOUT], "timeout", err, m->timeout_ms, 1, TIMEOUT_MAX,
                           false, true);
}

/* Everything that depends on more than one value, or that JSON and YAML must
 * both enforce. `fl` says where each field was, for the message. */
static int manifest_validate(const mxu_manifest *m, const field_lines *fl, const char *file,
                             mxu_err *err)
{
    char qbuf[80];
    const int *L = fl->line;
    if (!L[F_NAME])
        return reg_fail(file, fl->root, "name", err,
                        "required field is missing (the function's name, e.g. name: hello)");
    if (!mxu_name_valid(m->name))
        return reg_fail(
            file, L[F_NAME], "name", err,
            "'%s' is not a valid name (lowercase letters, digits, '-' and '_', starting "
            "with a letter, at most 63 characters)",
            Q(m->name));
    if (strlen(m->description) > MAX_DESCRIPTION)
        return reg_fail(file, L[F_DESCRIPTION], "description", err, "is longer than %d bytes",
                        MAX_DESCRIPTION);
    if (m->service)
        return service_validate(m, fl, file, err);
    if (L[F_STEPS] || L[F_ON_ERROR])
        return reg_fail(file, L[F_STEPS] ? L[F_STEPS] : L[F_ON_ERROR],
                        L[F_STEPS] ? "steps" : "on_error", err,
                        "only a service has steps (add kind: service)");
    if (!L[F_RUNTIME])
        return reg_fail(file, fl->root, "runtime", err, "required field is missing (c or exec)");
    /* "" = not given: the node's default executor (mxu serve --executor). */
    if (strcmp(m->executor, "process") != 0 && strcmp(m->executor, "sandbox") != 0 &&
        strcmp(m->executor, "vm") != 0 && m->executor[0] != '\0')
        return reg_fail(file, L[F_EXECUTOR], "executor", err,
                        "'%s' is not an executor (process, sandbox or vm)", Q(m->executor));
    if (strcmp(m->executor, "vm") == 0 && m->runtime != MXU_RUNTIME_C)
        return reg_fail(file, L[F_EXECUTOR], "executor", err,
                        "vm runs runtime c functions only: a guest has no operating system to run "
                        "a command in (docs/vm.md)");
    if (strcmp(m->executor, "vm") == 0 && m->nlibs) {
        char bad[256];
        if (reg_vm_libs_refused(m, bad, sizeof(bad)) > 0)
            return reg_fail(file, L[F_BUILD], "build", err,
                            "libs: a vm guest cannot link %s: it links only the guest SDK and "
                            "the libraries " REG_VM_LIBS_TEXT " (docs/vm.md)",
                            bad);
    }

    if (m->runtime == MXU_RUNTIME_C) {
        if (L[F_COMMAND])
            return reg_fail(file, L[F_COMMAND], "command", err,
                            "only for runtime exec; a c function is built from its sources into "
                            "its own program");
        if (!L[F_SOURCES])
            return reg_fail(file, fl->root, "sources", err,
                            "required for runtime c (the .c files to build, e.g. sources: "
                            "[main.c])");
        if (m->nsources == 0)
            return reg_fail(file, L[F_SOURCES], "sources", err,
                            "is empty; list the .c files to build");
    } else {
        if (L[F_SOURCES])
            return reg_fail(file, L[F_SOURCES], "sources", err,
                            "only for runtime c; an exec function runs its command as it is");
        if (L[F_BUILD])
            return reg_fail(file, L[F_BUILD], "build", err,
                            "only for runtime c; an exec function is not built");
        if (!L[F_COMMAND])
            return reg_fail(file, fl->root, "command", err,
                            "required for runtime exec (the program to run, e.g. command: "
                            "./handler)");
        if (m->ncommand == 0)
            return reg_fail(file, L[F_COMMAND], "command", err,
                            "is empty; give the program to run, e.g. ./handler");
        if (m->concurrency != 1)
            return reg_fail(file, L[F_CONCURRENCY], "concurrency", err,
                            "must be 1 for runtime exec: each invocation runs its own process, "
                            "which handles exactly one request (scale out with max_instances)");
    }
    if (check_u64_range(file, L[F_MEMORY], "memory", err, m->memory_bytes, MEMORY_MIN, MEMORY_MAX,
                        true, false) < 0 ||
        check_u64_range(file, L[F_TIMEOUT], "timeout", err, m->timeout_ms, 1, TIMEOUT_MAX, false,
                        true) < 0 ||
        check_u64_range(file, L[F_CONCURRENCY], "concurrency", err, m->concurrency, 1,
                        CONCURRENCY_MAX, false, false) < 0 ||
        check_u64_range(file, L[F_MAX_INSTANCES], "max_instances", err, m->max_instances, 1,
                        INSTANCES_MAX, false, false) < 0 ||
        check_u64_range(file, L[F_MIN_INSTANCES], "min_instances", err, m->min_instances, 0,
                        INSTANCES_MAX, false, false) < 0 ||
        check_u64_range(file, L[F_KEEP_ALIVE], "keep_alive", err, m->keep_alive_ms, 0,
                        KEEP_ALIVE_MAX, false, true) < 0)
        return -1;
    if (L[F_BURST] && m->rate == 0)
        return reg_fail(file, L[F_BURST], "burst", err,
                        "a burst needs a rate (e.g. rate: 100/s with burst: 20)");
    if (check_u64_range(file, L[F_BURST], "burst", err, L[F_BURST] ? m->burst : 1, 1, 1000000000,
                        false, false) < 0 ||
        check_u64_range(file, L[F_MAX_CONCURRENCY], "max_concurrency", err,
                        L[F_MAX_CONCURRENCY] ? m->max_concurrency : 1, 1, 1000000, false,
                        false) < 0)
        return -1;
    if (m->min_instances > m->max_instances)
        return reg_fail(file, L[F_MIN_INSTANCES] ? L[F_MIN_INSTANCES] : L[F_MAX_INSTANCES],
                        "min_instances", err, "%u is more than max_instances (%u)",
                        m->min_instances, m->max_instances);
    return 0;
}

static mxu_manifest *manifest_new(void)
{
    mxu_manifest *m = mxu_calloc(1, sizeof(*m));
    m->runtime = MXU_RUNTIME_EXEC;
    m->memory_bytes = MEMORY_DEFAULT;
    m->timeout_ms = TIMEOUT_DEFAULT;
    m->concurrency = 1;
    m->min_instances = 0;
    m->max_instances = INSTANCES_DEFAULT;
    m->keep_alive_ms = KEEP_ALIVE_DEFAULT;
    return m;
}

/* After parsing, fields nobody gave get their defaults. */
static void manifest_fill_defaults(mxu_manifest *m)
{
    if (m->description == NULL)
        m->description = mxu_strdup("");
    if (m->executor == NULL)
        m->executor = mxu_strdup(""); /* the node's default */
    if (m->name == NULL)
        m->name = mxu_strdup("");
}

void mxu_manifest_free(mxu_manifest *m)
{
    if (m == NULL)
        return;
    free(m->name);
    free(m->description);
    free(m->executor);
    reg_strv_free(m->sources, m->nsources);
    reg_strv_free(m->cflags, m->ncflags);
    reg_strv_free(m->libs, m->nlibs);
    reg_strv_free(m->command, m->ncommand);
    reg_strv_free(m->env_names, m->nenv);
    reg_strv_free(m->env_values, m->nenv);
    for (size_t i = 0; i < m->nresources; i++) {
        mxu_resource_decl *d = &m->resources[i];
        free(d->name);
        free(d->uri);
        free(d->kind);
        free(d->target);
        free(d->access);
    }
    free(m->resources);
    reg_service_free(m->service);
    free(m->source);
    free(m);
}

static void manifest_freep(mxu_manifest **m)
{
    mxu_manifest_free(*m);
}
#define _cleanup_manifest_ __attribute__((cleanup(manifest_freep)))

/* ---- YAML ------------------------------------------------------------------- */

typedef struct yparse {
    reg_yaml y; /* the document, the file name and the error: what the shared helpers need */
    mxu_manifest *m;
    field_lines fl;
    bool is_service; /* kind: service */
} yparse;

static bool all_digits(const char *s)
{
    if (*s == '\0')
        return false;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return false;
    }
    return true;
}

static int y_size(yparse *p, yaml_node_t *n, const char *field, uint64_t *out)
{
    char qbuf[80];
    _cleanup_free_ char *s = NULL;
    if (n->type != YAML_SCALAR_NODE)
        return reg_fail(p->y.file, reg_node_line(n), field, p->y.err,
                        "expected a size like 128Mi, got %s", reg_node_what(n));
    if (reg_y_string(&p->y, n, field, &s) < 0)
        return -1;
    uint64_t v;
    if (all_digits(s)) {
        /* A bare number is bytes. "memory: 128" is almost always meant as
         * MiB, and 128 bytes would never work, so small ones are refused. */
        if (mxu_parse_u64(s, &v) < 0)
            return reg_fail(p->y.file, reg_node_line(n), field, p->y.err, "'%s' is too large",
                            Q(s));
        if (v < MiB)
            return reg_fail(p->y.file, reg_node_line(n), field, p->y.err,
                            "a bare number is read as bytes, and %s bytes is surely not meant; "
                            "write a unit, e.g. %sMi",
                            s, s);
        *out = v;
        return 0;
    }
    mxu_err e;
    if (mxu_parse_size(s, &v, &e) < 0)
        return reg_fail(p->y.file, reg_node_line(n), field, p->y.err, "%s", e.msg);
    *out = v;
    return 0;
}

static int y_build(yparse *p, yaml_node_t *n)
{
    static const char *const keys[] = {"cflags", "libs"};
    char qbuf[80], hint[64];
    if (n->type != YAML_MAPPING_NODE)
        return reg_fail(p->y.file, reg_node_line(n), "build", p->y.err,
                        "expected a mapping (cflags: [...], libs: [...]), got %s",
                        reg_node_what(n));
    for (yaml_node_pair_t *pair = n->data.mapping.pairs.start; pair < n->data.mapping.pairs.top;
         pair++) {
        const char *key;
        yaml_node_t *val;
        if (reg_y_map_pair(&p->y, n, pair, "build", &key, &val) < 0)
            return -1;
        if (strcmp(key, "cflags") == 0) {
            if (reg_y_string_list(&p->y, val, "build.cflags", MAX_CFLAGS, check_cflag,
                                  &p->m->cflags, &p->m->ncflags) < 0)
                return -1;
        } else if (strcmp(key, "libs") == 0) {
            if (reg_y_string_list(&p->y, val, "build.libs", MAX_LIBS, check_lib, &p->m->libs,
                                  &p->m->nlibs) < 0)
                return -1;
        } else {
            return reg_fail(p->y.file, reg_node_line(reg_node_get(&p->y, pair->key)), "build",
                            p->y.err, "unknown field '%s'%s (build has cflags and libs)", Q(key),
                            reg_suggest(key, keys, 2, hint, sizeof(hint)));
        }
    }
    return 0;
}

static int y_command(yparse *p, yaml_node_t *n)
{
    char qbuf[80];
    mxu_manifest *m = p->m;
    if (n->type == YAML_SEQUENCE_NODE) {
        if (reg_y_string_list(&p->y, n, "command", MAX_COMMAND, NULL, &m->command, &m->ncommand) <
            0)
            return -1;
    } else {
        _cleanup_free_ char *s = NULL;
        if (reg_y_string(&p->y, n, "command", &s) < 0)
            return -1;
        /* "./run --fast" → ["./run", "--fast"]: split on spaces, no quoting
         * rules; write a list when an argument contains a space. */
        m->command = mxu_calloc(MAX_COMMAND, sizeof(char *));
        for (char *tok = s; *tok;) {
            while (*tok == ' ' || *tok == '\t')
                tok++;
            if (*tok == '\0')
                break;
            char *end = tok;
            while (*end && *end != ' ' && *end != '\t')
                end++;
            if (m->ncommand == MAX_COMMAND)
                return reg_fail(p->y.file, reg_node_line(n), "command", p->y.err,
                                "has more than %d arguments", MAX_COMMAND);
            m->command[m->ncommand++] = mxu_strndup(tok, (size_t)(end - tok));
            tok = end;
        }
    }
    const char *why;
    if (m->ncommand > 0 && (why = check_command0(m->command[0])) != NULL)
        return reg_fail(p->y.file, reg_node_line(n), "command", p->y.err, "'%s' %s",
                        Q(m->command[0]), why);
    return 0;
}

static int y_env(yparse *p, yaml_node_t *n)
{
    char qbuf[80], field[300];
    mxu_manifest *m = p->m;
    if (n->type != YAML_MAPPING_NODE)
        return reg_fail(p->y.file, reg_node_line(n), "env", p->y.err,
                        "expected a mapping of NAME: value, got %s", reg_node_what(n));
    size_t count = reg_map_count(n);
    if (count > MAX_ENV)
        return reg_fail(p->y.file, reg_node_line(n), "env", p->y.err,
                        "has %zu variables; at most %d allowed", count, MAX_ENV);
    m->env_names = mxu_calloc(count ? count : 1, sizeof(char *));
    m->env_values = mxu_calloc(count ? count : 1, sizeof(char *));
    for (yaml_node_pair_t *pair = n->data.mapping.pairs.start; pair < n->data.mapping.pairs.top;
         pair++) {
        const char *key;
        yaml_node_t *val;
        if (reg_y_map_pair(&p->y, n, pair, "env", &key, &val) < 0)
            return -1;
        const char *why = check_env_name(key);
        if (why)
            return reg_fail(p->y.file, reg_node_line(reg_node_get(&p->y, pair->key)), "env",
                            p->y.err, "'%s' %s", Q(key), why);
        snprintf(field, sizeof(field), "env.%s", key);
        if (val->type != YAML_SCALAR_NODE)
            return reg_fail(p->y.file, reg_node_line(val), field, p->y.err,
                            "expected a string value, got %s", reg_node_what(val));
        char *value;
        if (reg_y_string(&p->y, val, field, &value) < 0)
            return -1;
        m->env_names[m->nenv] = mxu_strdup(key);
        m->env_values[m->nenv] = value;
        m->nenv++;
    }
    return 0;
}

static int y_resources(yparse *p, yaml_node_t *n)
{
    static const char *const keys[] = {"uri",  "access", "max_value",      "ops_per_second",
                                       "rate", "burst",  "max_concurrency"};
    char qbuf[80], field[120], hint[64], why[400];
    mxu_manifest *m = p->m;
    if (n->type != YAML_MAPPING_NODE)
        return reg_fail(p->y.file, reg_node_line(n), "resources", p->y.err,
                        "expected a mapping of name: {uri: ..., access: ...}, got %s",
                        reg_node_what(n));
    size_t count = reg_map_count(n);
    if (count > MAX_RESOURCES)
        return reg_fail(p->y.file, reg_node_line(n), "resources", p->y.err,
                        "has %zu entries; at most %d allowed", count, MAX_RESOURCES);
    m->resources = mxu_calloc(count ? count : 1, sizeof(mxu_resource_decl));
    for (yaml_node_pair_t *pair = n->data.mapping.pairs.start; pair < n->data.mapping.pairs.top;
         pair++) {
        const char *key;
        yaml_node_t *val;
        if (reg_y_map_pair(&p->y, n, pair, "resources", &key, &val) < 0)
            return -1;
        int kline = reg_node_line(reg_node_get(&p->y, pair->key));
        if (!mxu_name_valid(key))
            return reg_fail(p->y.file, kline, "resources", p->y.err,
                            "'%s' is not a valid local name (lowercase letters, digits, '-' and "
                            "'_', starting with a letter)",
                            Q(key));
        snprintf(field, sizeof(field), "resources.%s", key);
        if (val->type != YAML_MAPPING_NODE)
            return reg_fail(p->y.file, reg_node_line(val), field, p->y.err,
                            "expected a mapping like {uri: kv:orders, access: read-write}, got %s",
                            reg_node_what(val));
        yaml_node_t *uri_node = NULL, *access_node = NULL, *max_node = NULL, *ops_node = NULL;
        yaml_node_t *rate_node = NULL, *burst_node = NULL, *conc_node = NULL;
        for (yaml_node_pair_t *rp = val->data.mapping.pairs.start; rp < val->data.mapping.pairs.top;
             rp++) {
            const char *rk;
            yaml_node_t *rv;
            if (reg_y_map_pair(&p->y, val, rp, field, &rk, &rv) < 0)
                return -1;
            if (strcmp(rk, "uri") == 0)
                uri_node = rv;
            else if (strcmp(rk, "access") == 0)
                access_node = rv;
            else if (strcmp(rk, "max_value") == 0)
                max_node = rv;
            else if (strcmp(rk, "ops_per_second") == 0)
                ops_node = rv;
            else if (strcmp(rk, "rate") == 0)
                rate_node = rv;
            else if (strcmp(rk, "burst") == 0)
                burst_node = rv;
            else if (strcmp(rk, "max_concurrency") == 0)
                conc_node = rv;
            else
                return reg_fail(
                    p->y.file, reg_node_line(reg_node_get(&p->y, rp->key)), field, p->y.err,
                    "unknown field '%s'%s (a resource has uri, access, max_value, "
                    "ops_per_second, and for svc: rate, burst, max_concurrency)",
                    Q(rk), reg_suggest(rk, keys, MXU_ARRAY_LEN(keys), hint, sizeof(hint)));
        }
        char sub[140];
        if (uri_node == NULL)
            return reg_fail(p->y.file, reg_node_line(val), field, p->y.err,
                            "uri is missing (e.g. uri: kv:orders)");
        _cleanup_free_ char *uri = NULL, *access = NULL;
        snprintf(sub, sizeof(sub), "%s.uri", field);
        if (reg_y_string(&p->y, uri_node, sub, &uri) < 0)
            return -1;
        snprintf(sub, sizeof(sub), "%s.access", field);
        if (access_node && reg_y_string(&p->y, access_node, sub, &access) < 0)
            return -1;
        mxu_resource_decl *d = &m->resources[m->nresources];
        const char *which;
        if (resource_fill(d, uri, access, why, sizeof(why), &which) < 0) {
            yaml_node_t *at = strcmp(which, "uri") == 0 ? uri_node : access_node;
            snprintf(sub, sizeof(sub), "%s.%s", field, which);
            return reg_fail(p->y.file, reg_node_line(at ? at : val), sub, p->y.err, "%s", why);
        }
        d->name = mxu_strdup(key);
        m->nresources++;
        if (max_node) {
            snprintf(sub, sizeof(sub), "%s.max_value", field);
            if (y_size(p, max_node, sub, &d->max_value) < 0)
                return -1;
        }
        if (ops_node) {
            uint64_t ops;
            snprintf(sub, sizeof(sub), "%s.ops_per_second", field);
            if (reg_y_uint(&p->y, ops_node, sub, 1000000, &ops) < 0)
                return -1;
            d->ops_per_second = (uint32_t)ops;
        }
        /* Link limits: an svc descriptor is a link to another unit. */
        yaml_node_t *link_nodes[] = {rate_node, burst_node, conc_node};
        static const char *const link_names[] = {"rate", "burst", "max_concurrency"};
        for (size_t i = 0; i < MXU_ARRAY_LEN(link_nodes); i++) {
            uint64_t v;
            if (link_nodes[i] == NULL)
                continue;
            snprintf(sub, sizeof(sub), "%s.%s", field, link_names[i]);
            if (strcmp(d->kind, "svc") != 0)
                return reg_fail(p->y.file, reg_node_line(link_nodes[i]), sub, p->y.err,
                                "only svc descriptors (links to other functions) take %s; a %s "
                                "resource has ops_per_second",
                                link_names[i], d->kind);
            if (i == 0 && reg_y_rate(&p->y, rate_node, sub, &d->rate, &d->rate_period_ms) < 0)
                return -1;
            if (i > 0) {
                if (reg_y_uint(&p->y, link_nodes[i], sub, i == 1 ? 1000000000 : 1000000, &v) < 0)
                    return -1;
                if (v == 0)
                    return reg_fail(p->y.file, reg_node_line(link_nodes[i]), sub, p->y.err,
                                    "must be at least 1");
                if (i == 1)
                    d->burst = (uint32_t)v;
                else
                    d->max_concurrency = (uint32_t)v;
            }
        }
        if (burst_node && rate_node == NULL) {
            snprintf(sub, sizeof(sub), "%s.burst", field);
            return reg_fail(p->y.file, reg_node_line(burst_node), sub, p->y.err,
                            "a burst needs a rate");
        }
    }
    return 0;
}

static int y_field(yparse *p, enum field_id id, yaml_node_t *n)
{
    mxu_manifest *m = p->m;
    char qbuf[80];
    uint64_t v;
    switch (id) {
    case F_NAME:
        return reg_y_string(&p->y, n, "name", &m->name);
    case F_DESCRIPTION:
        return reg_y_string(&p->y, n, "description", &m->description);
    case F_RUNTIME: {
        _cleanup_free_ char *s = NULL;
        if (reg_y_string(&p->y, n, "runtime", &s) < 0)
            return -1;
        if (strcmp(s, "c") == 0)
            m->runtime = MXU_RUNTIME_C;
        else if (strcmp(s, "exec") == 0)
            m->runtime = MXU_RUNTIME_EXEC;
        else
            return reg_fail(p->y.file, reg_node_line(n), "runtime", p->y.err,
                            "'%s' is not a runtime (c or exec)", Q(s));
        return 0;
    }
    case F_EXECUTOR:
        return reg_y_string(&p->y, n, "executor", &m->executor);
    case F_SOURCES:
        return reg_y_string_list(&p->y, n, "sources", MAX_SOURCES, check_source, &m->sources,
                                 &m->nsources);
    case F_BUILD:
        return y_build(p, n);
    case F_COMMAND:
        return y_command(p, n);
    case F_MEMORY:
        return y_size(p, n, "memory", &m->memory_bytes);
    case F_TIMEOUT:
        return reg_y_duration(&p->y, n, "timeout", &m->timeout_ms);
    case F_KEEP_ALIVE:
        return reg_y_duration(&p->y, n, "keep_alive", &m->keep_alive_ms);
    case F_CONCURRENCY:
        if (reg_y_uint(&p->y, n, "concurrency", UINT32_MAX, &v) < 0)
            return -1;
        m->concurrency = (uint32_t)v;
        return 0;
    case F_MIN_INSTANCES:
        if (reg_y_uint(&p->y, n, "min_instances", UINT32_MAX, &v) < 0)
            return -1;
        m->min_instances = (uint32_t)v;
        return 0;
    case F_MAX_INSTANCES:
        if (reg_y_uint(&p->y, n, "max_instances", UINT32_MAX, &v) < 0)
            return -1;
        m->max_instances = (uint32_t)v;
        return 0;
    case F_ENV:
        return y_env(p, n);
    case F_RESOURCES:
        return y_resources(p, n);
    case F_PUBLIC:
        return reg_y_bool(&p->y, n, "public", &m->is_public);
    case F_RATE:
        return reg_y_rate(&p->y, n, "rate", &m->rate, &m->rate_period_ms);
    case F_BURST:
        if (reg_y_uint(&p->y, n, "burst", UINT32_MAX, &v) < 0)
            return -1;
        m->burst = (uint32_t)v;
        return 0;
    case F_MAX_CONCURRENCY:
        if (reg_y_uint(&p->y, n, "max_concurrency", UINT32_MAX, &v) < 0)
            return -1;
        m->max_concurrency = (uint32_t)v;
        return 0;
    case F_KIND: {
        _cleanup_free_ char *s = NULL;
        if (reg_y_string(&p->y, n, "kind", &s) < 0)
            return -1;
        if (strcmp(s, "service") == 0)
            p->is_service = true;
        else if (strcmp(s, "function") != 0)
            return reg_fail(p->y.file, reg_node_line(n), "kind", p->y.err,
                            "'%s' is not a kind (function, the default, or service)", Q(s));
        return 0;
    }
    case F_INPUT:
    case F_OUTPUT: {
        const char *field = field_names[id];
        _cleanup_free_ char *s = NULL;
        if (reg_y_string(&p->y, n, field, &s) < 0)
            return -1;
        if (reg_ctype_parse(s, id == F_INPUT ? &m->input : &m->output) < 0)
            return reg_fail(p->y.file, reg_node_line(n), field, p->y.err,
                            "'%s' is not a content type (json, text, binary or any)", Q(s));
        return 0;
    }
    case F_STEPS:
        if (m->service == NULL)
            m->service = mxu_calloc(1, sizeof(*m->service));
        return reg_service_steps(&p->y, n, m->service);
    case F_ON_ERROR:
        if (m->service == NULL)
            m->service = mxu_calloc(1, sizeof(*m->service));
        return reg_service_on_error(&p->y, n, m->service);
    case F_COUNT:
        break;
    }
    return -1;
}

static int y_root(yparse *p, yaml_node_t *root)
{
    char qbuf[80], hint[64];
    p->fl.root = reg_node_line(root);
    if (root->type != YAML_MAPPING_NODE)
        return reg_fail(p->y.file, reg_node_line(root), NULL, p->y.err,
                        "a manifest is a mapping of fields (name: ..., runtime: ...), not %s",
                        reg_node_what(root));
    for (yaml_node_pair_t *pair = root->data.mapping.pairs.start;
         pair < root->data.mapping.pairs.top; pair++) {
        const char *key;
        yaml_node_t *val;
        if (reg_y_map_pair(&p->y, root, pair, NULL, &key, &val) < 0)
            return -1;
        size_t id = 0;
        while (id < F_COUNT && strcmp(field_names[id], key) != 0)
            id++;
        if (id == F_COUNT)
            return reg_fail(p->y.file, reg_node_line(reg_node_get(&p->y, pair->key)), NULL,
                            p->y.err, "unknown field '%s'%s", Q(key),
                            reg_suggest(key, field_names, F_COUNT, hint, sizeof(hint)));
        p->fl.line[id] = reg_node_line(val);
        if (y_field(p, (enum field_id)id, val) < 0)
            return -1;
    }
    return 0;
}

int mxu_manifest_parse(const char *text, size_t len, const char *filename, mxu_manifest **out,
                       mxu_err *err)
{
    const char *file = filename ? filename : "mxu.yaml";
    if (text == NULL) /* libyaml asserts on a NULL input */
        text = "", len = 0;
    if (len > MXU_MANIFEST_MAX_BYTES)
        return reg_fail(file, 0, NULL, err, "the manifest is larger than %u KiB",
                        MXU_MANIFEST_MAX_BYTES / 1024);
    /* Check the encoding first, line by line, to point at the bad line:
     * libyaml would only say "invalid leading UTF-8 octet" at an offset. */
    for (size_t start = 0, line = 1; start < len; line++) {
        const char *nl = memchr(text + start, '\n', len - start);
        size_t end = nl ? (size_t)(nl - text) : len;
        if (!mxu_utf8_valid(text + start, end - start))
            return reg_fail(file, (int)line, NULL, err,
                            "the file is not valid UTF-8 (save it as UTF-8)");
        start = end + 1;
    }

    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser))
        return mxu_err_set(err, ENOMEM, "%s: cannot initialise the YAML parser", file);
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    yaml_parser_set_encoding(&parser, YAML_UTF8_ENCODING);
    _cleanup_manifest_ mxu_manifest *m = NULL;
    yaml_document_t doc;
    if (!yaml_parser_load(&parser, &doc)) {
        reg_yaml_syntax_error(&parser, text, len, file, err);
        yaml_parser_delete(&parser);
        return -1;
    }
    int rc = -1;
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (root == NULL) {
        reg_fail(file, 1, NULL, err,
                 "the manifest is empty (it needs at least name: and runtime:)");
        goto out;
    }
    /* One document per file: a second one would be silently ignored. */
    yaml_document_t doc2;
    if (!yaml_parser_load(&parser, &doc2)) {
        reg_yaml_syntax_error(&parser, text, len, file, err);
        goto out;
    }
    yaml_node_t *root2 = yaml_document_get_root_node(&doc2);
    int line2 = root2 ? reg_node_line(root2) : 0;
    yaml_document_delete(&doc2);
    if (root2) {
        reg_fail(file, line2, NULL, err,
                 "a manifest is one YAML document; remove the second one (after '---')");
        goto out;
    }

    m = manifest_new();
    yparse p = {.y = {.doc = &doc, .file = file, .err = err}, .m = m};
    if (y_root(&p, root) < 0)
        goto out;
    if (!p.is_service && m->service) {
        /* steps: without kind: service; manifest_validate says so. */
        reg_service_free(m->service);
        m->service = NULL;
    } else if (p.is_service && m->service == NULL) {
        m->service = mxu_calloc(1, sizeof(*m->service)); /* no steps: validate says so */
    }
    if (p.is_service)
        m->source = mxu_strndup(text, len);
    manifest_fill_defaults(m);
    if (manifest_validate(m, &p.fl, file, err) < 0)
        goto out;
    *out = steal_pointer(&m);
    rc = 0;
out:
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    return rc;
}

/* ---- JSON --------------------------------------------------------------------- */

static json_t *strv_json(char **v, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(a, json_string(v[i]));
    return a;
}

#define JFILE "manifest JSON"

/* Shaping fields are written only when set, so versions stored before they
 * existed and versions without limits read the same. */
static void limits_to_json(json_t *j, uint64_t rate, uint64_t period, uint32_t burst, uint32_t conc)
{
    char r[32];
    if (rate) {
        mxu_format_rate(rate, period, r, sizeof(r));
        json_object_set_new(j, "rate", json_string(r));
    }
    if (burst)
        json_object_set_new(j, "burst", json_integer(burst));
    if (conc)
        json_object_set_new(j, "max_concurrency", json_integer(conc));
}

/* The reverse, for one of "rate", "burst", "max_concurrency" (1 if `key` is
 * none of them, 0 done, -1 error). */
static int limits_from_json(const char *key, json_t *v, uint64_t *rate, uint64_t *period,
                            uint32_t *burst, uint32_t *conc, mxu_err *err)
{
    mxu_err perr;
    if (strcmp(key, "rate") == 0) {
        if (!json_is_string(v) || mxu_parse_rate(json_string_value(v), rate, period, &perr) < 0)
            return reg_fail(JFILE, 0, key, err, "expected a rate like \"100/s\"");
        return 0;
    }
    uint32_t *out = strcmp(key, "burst") == 0             ? burst
                    : strcmp(key, "max_concurrency") == 0 ? conc
                                                          : NULL;
    if (out == NULL)
        return 1;
    if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > 1000000000)
        return reg_fail(JFILE, 0, key, err, "expected a whole number from 1 to 1000000000");
    *out = (uint32_t)json_integer_value(v);
    return 0;
}

json_t *mxu_manifest_to_json(const mxu_manifest *m)
{
    if (m->service) {
        /* Stored as its text, parsed again on load (one parser); the steps
         * are there for people and tools reading the API. */
        json_t *j =
            json_pack("{s:s, s:s, s:s, s:I, s:b, s:s}", "name", m->name, "description",
                      m->description, "kind", "service", "timeout_ms", (json_int_t)m->timeout_ms,
                      "public", m->is_public, "source", m->source);
        limits_to_json(j, m->rate, m->rate_period_ms, m->burst, m->max_concurrency);
        json_object_update_new(j, reg_service_json(m->service));
        return j;
    }
    json_t *env = json_object();
    for (size_t i = 0; i < m->nenv; i++)
        json_object_set_new(env, m->env_names[i], json_string(m->env_values[i]));
    json_t *res = json_object();
    for (size_t i = 0; i < m->nresources; i++) {
        const mxu_resource_decl *d = &m->resources[i];
        json_t *dj =
            json_pack("{s:s, s:s, s:s, s:s, s:I, s:I}", "uri", d->uri, "kind", d->kind, "target",
                      d->target, "access", d->access, "max_value", (json_int_t)d->max_value,
                      "ops_per_second", (json_int_t)d->ops_per_second);
        limits_to_json(dj, d->rate, d->rate_period_ms, d->burst, d->max_concurrency);
        json_object_set_new(res, d->name, dj);
    }
    json_t *j = json_pack(
        "{s:s, s:s, s:s, s:s, s:o, s:{s:o, s:o}, s:o, s:I, s:I, s:I, s:I, s:I, s:I, s:o, s:o}",
        "name", m->name, "description", m->description, "runtime",
        m->runtime == MXU_RUNTIME_C ? "c" : "exec", "executor", m->executor, "sources",
        strv_json(m->sources, m->nsources), "build", "cflags", strv_json(m->cflags, m->ncflags),
        "libs", strv_json(m->libs, m->nlibs), "command", strv_json(m->command, m->ncommand),
        "memory_bytes", (json_int_t)m->memory_bytes, "timeout_ms", (json_int_t)m->timeout_ms,
        "concurrency", (json_int_t)m->concurrency, "min_instances", (json_int_t)m->min_instances,
        "max_instances", (json_int_t)m->max_instances, "keep_alive_ms",
        (json_int_t)m->keep_alive_ms, "env", env, "resources", res);
    json_object_set_new(j, "public", json_boolean(m->is_public));
    json_object_set_new(j, "kind", json_string("function"));
    json_object_set_new(j, "input", json_string(mxu_ctype_name(m->input)));
    json_object_set_new(j, "output", json_string(mxu_ctype_name(m->output)));
    limits_to_json(j, m->rate, m->rate_period_ms, m->burst, m->max_concurrency);
    return j;
}

static int j_string(json_t *v, const char *field, char **out, mxu_err *err)
{
    if (!json_is_string(v))
        return reg_fail(JFILE, 0, field, err, "expected a string");
    if (strlen(json_string_value(v)) != json_string_length(v))
        return reg_fail(JFILE, 0, field, err, "contains a NUL character");
    *out = mxu_strdup(json_string_value(v));
    return 0;
}

static int j_uint(json_t *v, const char *field, uint64_t max, uint64_t *out, mxu_err *err)
{
    if (!json_is_integer(v) || json_integer_value(v) < 0 || (uint64_t)json_integer_value(v) > max)
        return reg_fail(JFILE, 0, field, err, "expected a whole number from 0 to %llu",
                        (unsigned long long)max);
    *out = (uint64_t)json_integer_value(v);
    return 0;
}

static int j_strv(json_t *v, const char *field, size_t max, const char *(*check)(const char *),
                  char ***out, size_t *nout, mxu_err *err)
{
    char qbuf[80];
    if (!json_is_array(v) || json_array_size(v) > max)
        return reg_fail(JFILE, 0, field, err, "expected a list of at most %zu strings", max);
    size_t n = json_array_size(v);
    *out = mxu_calloc(n ? n : 1, sizeof(char *));
    for (size_t i = 0; i < n; i++) {
        if (j_string(json_array_get(v, i), field, &(*out)[i], err) < 0)
            return -1;
        (*nout)++;
        const char *why = check ? check((*out)[i]) : NULL;
        if (why)
            return reg_fail(JFILE, 0, field, err, "'%s' %s", Q((*out)[i]), why);
    }
    return 0;
}

static int j_env(json_t *v, mxu_manifest *m, mxu_err *err)
{
    char qbuf[80];
    if (!json_is_object(v) || json_object_size(v) > MAX_ENV)
        return reg_fail(JFILE, 0, "env", err, "expected an object of at most %d strings", MAX_ENV);
    size_t n = json_object_size(v);
    m->env_names = mxu_calloc(n ? n : 1, sizeof(char *));
    m->env_values = mxu_calloc(n ? n : 1, sizeof(char *));
    const char *key;
    json_t *val;
    json_object_foreach(v, key, val)
    {
        const char *why = check_env_name(key);
        if (why)
            return reg_fail(JFILE, 0, "env", err, "'%s' %s", Q(key), why);
        if (j_string(val, "env", &m->env_values[m->nenv], err) < 0)
            return -1;
        m->env_names[m->nenv++] = mxu_strdup(key);
    }
    return 0;
}

static int j_resources(json_t *v, mxu_manifest *m, mxu_err *err)
{
    char qbuf[80], why[400];
    if (!json_is_object(v) || json_object_size(v) > MAX_RESOURCES)
        return reg_fail(JFILE, 0, "resources", err, "expected an object of at most %d entries",
                        MAX_RESOURCES);
    size_t n = json_object_size(v);
    m->resources = mxu_calloc(n ? n : 1, sizeof(mxu_resource_decl));
    const char *key;
    json_t *val;
    json_object_foreach(v, key, val)
    {
        if (!mxu_name_valid(key))
            return reg_fail(JFILE, 0, "resources", err, "'%s' is not a valid local name", Q(key));
        json_t *uri = json_object_get(val, "uri");
        json_t *access = json_object_get(val, "access");
        if (!json_is_object(val) || !json_is_string(uri) || !json_is_string(access) ||
            strlen(json_string_value(uri)) != json_string_length(uri) ||
            strlen(json_string_value(access)) != json_string_length(access))
            return reg_fail(JFILE, 0, "resources", err, "'%s' needs string uri and access", Q(key));
        mxu_resource_decl *d = &m->resources[m->nresources];
        const char *which;
        if (resource_fill(d, json_string_value(uri), json_string_value(access), why, sizeof(why),
                          &which) < 0)
            return reg_fail(JFILE, 0, "resources", err, "%s: %s", which, why);
        d->name = mxu_strdup(key);
        m->nresources++;
        /* Limits are optional in stored JSON (versions stored before they existed). */
        json_t *maxv = json_object_get(val, "max_value"),
               *ops = json_object_get(val, "ops_per_second");
        if ((maxv && (!json_is_integer(maxv) || json_integer_value(maxv) <= 0)) ||
            (ops && (!json_is_integer(ops) || json_integer_value(ops) < 0 ||
                     json_integer_value(ops) > 1000000)))
            return reg_fail(JFILE, 0, "resources", err, "'%s' has bad limits", Q(key));
        if (maxv)
            d->max_value = (uint64_t)json_integer_value(maxv);
        if (ops)
            d->ops_per_second = (uint32_t)json_integer_value(ops);
        /* kind and target are derived from uri; if they were stored, they
         * must agree, or the JSON was not written by to_json. */
        size_t nlim = 0;
        static const char *const lk[] = {"rate", "burst", "max_concurrency"};
        for (size_t i = 0; i < MXU_ARRAY_LEN(lk); i++) {
            json_t *lv = json_object_get(val, lk[i]);
            if (lv == NULL)
                continue;
            nlim++;
            if (limits_from_json(lk[i], lv, &d->rate, &d->rate_period_ms, &d->burst,
                                 &d->max_concurrency, err) < 0)
                return -1;
        }
        json_t *kind = json_object_get(val, "kind"), *target = json_object_get(val, "target");
        if ((kind && (!json_is_string(kind) || strcmp(json_string_value(kind), d->kind) != 0)) ||
            (target &&
             (!json_is_string(target) || strcmp(json_string_value(target), d->target) != 0)) ||
            json_object_size(val) !=
                2u + (kind != NULL) + (target != NULL) + (maxv != NULL) + (ops != NULL) + nlim)
            return reg_fail(JFILE, 0, "resources", err, "'%s' has inconsistent or unknown fields",
                            Q(key));
    }
    return 0;
}

int mxu_manifest_from_json(json_t *j, mxu_manifest **out, mxu_err *err)
{
    char qbuf[80];
    if (!json_is_object(j))
        return reg_fail(JFILE, 0, NULL, err, "a manifest must be a JSON object");
    const char *kind = json_string_value(json_object_get(j, "kind"));
    if (kind && strcmp(kind, "service") == 0) {
        const char *src = json_string_value(json_object_get(j, "source"));
        const char *name = json_string_value(json_object_get(j, "name"));
        if (src == NULL)
            return reg_fail(JFILE, 0, "source", err, "a stored service has no source text");
        char file[100];
        snprintf(file, sizeof(file), "%.63s (stored)", name ? name : "service");
        return mxu_manifest_parse(src, strlen(src), file, out, err);
    }
    _cleanup_manifest_ mxu_manifest *m = manifest_new();
    field_lines fl = {.root = 0};
    const char *key;
    json_t *v;
    uint64_t u = 0;
    json_object_foreach(j, key, v)
    {
        int rc = 0;
        if (strcmp(key, "name") == 0) {
            rc = j_string(v, key, &m->name, err);
            fl.line[F_NAME] = -1;
        } else if (strcmp(key, "description") == 0) {
            rc = j_string(v, key, &m->description, err);
        } else if (strcmp(key, "runtime") == 0) {
            const char *s = json_string_value(v);
            if (s && strcmp(s, "c") == 0)
                m->runtime = MXU_RUNTIME_C;
            else if (s && strcmp(s, "exec") == 0)
                m->runtime = MXU_RUNTIME_EXEC;
            else
                return reg_fail(JFILE, 0, key, err, "expected \"c\" or \"exec\"");
            fl.line[F_RUNTIME] = -1;
        } else if (strcmp(key, "executor") == 0) {
            rc = j_string(v, key, &m->executor, err);
        } else if (strcmp(key, "sources") == 0) {
            rc = j_strv(v, key, MAX_SOURCES, check_source, &m->sources, &m->nsources, err);
        } else if (strcmp(key, "build") == 0) {
            json_t *cf = json_object_get(v, "cflags"), *libs = json_object_get(v, "libs");
            if (!json_is_object(v) || !cf || !libs || json_object_size(v) != 2)
                return reg_fail(JFILE, 0, key, err,
                                "expected {\"cflags\": [...], \"libs\": [...]}");
            rc = j_strv(cf, "build.cflags", MAX_CFLAGS, check_cflag, &m->cflags, &m->ncflags, err);
            if (rc == 0)
                rc = j_strv(libs, "build.libs", MAX_LIBS, check_lib, &m->libs, &m->nlibs, err);
        } else if (strcmp(key, "command") == 0) {
            rc = j_strv(v, key, MAX_COMMAND, NULL, &m->command, &m->ncommand, err);
            const char *why = m->ncommand ? check_command0(m->command[0]) : NULL;
            if (rc == 0 && why)
                return reg_fail(JFILE, 0, key, err, "'%s' %s", Q(m->command[0]), why);
        } else if (strcmp(key, "memory_bytes") == 0) {
            rc = j_uint(v, key, UINT64_MAX >> 1, &m->memory_bytes, err);
        } else if (strcmp(key, "timeout_ms") == 0) {
            rc = j_uint(v, key, UINT64_MAX >> 1, &m->timeout_ms, err);
        } else if (strcmp(key, "keep_alive_ms") == 0) {
            rc = j_uint(v, key, UINT64_MAX >> 1, &m->keep_alive_ms, err);
        } else if (strcmp(key, "concurrency") == 0) {
            rc = j_uint(v, key, UINT32_MAX, &u, err);
            m->concurrency = (uint32_t)u;
        } else if (strcmp(key, "min_instances") == 0) {
            rc = j_uint(v, key, UINT32_MAX, &u, err);
            m->min_instances = (uint32_t)u;
        } else if (strcmp(key, "max_instances") == 0) {
            rc = j_uint(v, key, UINT32_MAX, &u, err);
            m->max_instances = (uint32_t)u;
        } else if (strcmp(key, "env") == 0) {
            rc = j_env(v, m, err);
        } else if (strcmp(key, "resources") == 0) {
            rc = j_resources(v, m, err);
        } else if (strcmp(key, "kind") == 0) {
            if (!json_is_string(v) || strcmp(json_string_value(v), "function") != 0)
                return reg_fail(JFILE, 0, key, err, "expected \"function\" or \"service\"");
        } else if (strcmp(key, "input") == 0 || strcmp(key, "output") == 0) {
            const char *t = json_string_value(v);
            if (t == NULL ||
                reg_ctype_parse(t, strcmp(key, "input") == 0 ? &m->input : &m->output) < 0)
                return reg_fail(JFILE, 0, key, err, "expected json, text, binary or any");
        } else if (strcmp(key, "public") == 0) {
            if (!json_is_boolean(v))
                return reg_fail(JFILE, 0, key, err, "expected true or false");
            m->is_public = json_is_true(v);
        } else if ((rc = limits_from_json(key, v, &m->rate, &m->rate_period_ms, &m->burst,
                                          &m->max_concurrency, err)) <= 0) {
            if (rc < 0)
                return -1;
            if (strcmp(key, "burst") == 0)
                fl.line[F_BURST] = -1;
            if (strcmp(key, "max_concurrency") == 0)
                fl.line[F_MAX_CONCURRENCY] = -1;
        } else {
            return reg_fail(JFILE, 0, NULL, err, "unknown field '%s'", Q(key));
        }
        if (rc < 0)
            return -1;
    }
    /* Empty lists stand for "not given" (to_json writes every field). */
    fl.line[F_SOURCES] = m->nsources ? -1 : 0;
    fl.line[F_COMMAND] = m->ncommand ? -1 : 0;
    fl.line[F_BUILD] = (m->ncflags || m->nlibs) ? -1 : 0;
    if (m->runtime == MXU_RUNTIME_C && m->nsources == 0 && json_object_get(j, "sources"))
        fl.line[F_SOURCES] = -1; /* present but empty: "is empty" */
    if (m->runtime == MXU_RUNTIME_EXEC && m->ncommand == 0 && json_object_get(j, "command"))
        fl.line[F_COMMAND] = -1;
    manifest_fill_defaults(m);
    if (manifest_validate(m, &fl, JFILE, err) < 0)
        return -1;
    *out = steal_pointer(&m);
    return 0;
}
