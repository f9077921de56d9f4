/*
 * Units: a function version bound to what instantiating it needs. Everything
 * here is computed once per unit (argv, environment, limits), not per
 * instance or invocation.
 */
#include "unit/unit.h"

#include <errno.h>
#include <string.h>

struct mxu_unit {
    mxu_fn_version *version;
    char *label;
    const mxu_executor_ops *executor;
    char **argv; /* NULL-terminated */
    char **env;  /* NULL-terminated "K=V" */
    size_t nenv;
    mxu_exec_spec warm;
};

static const char default_path[] = "PATH=/usr/local/bin:/usr/bin:/bin";

int mxu_unit_create(mxu_fn_version *v, const char *node_env, const char *default_executor,
                    mxu_unit **out, mxu_err *err)
{
    const mxu_manifest *m = v->manifest;
    /* A manifest that names no executor ("") runs on the node's default. */
    const char *name = m->executor && m->executor[0] ? m->executor
                       : default_executor            ? default_executor
                                                     : "process";
    const mxu_executor_ops *ops = mxu_executor_find(name);
    if (ops == NULL)
        return mxu_err_set(err, EINVAL, "%s@%u: executor '%s' is not available (have: %s)",
                           v->function, v->version, name, mxu_executor_names());
    mxu_unit *u = mxu_calloc(1, sizeof(*u));
    u->version = mxu_fn_version_ref(v);
    /* Node log lines name units by label: another tenant's carry its name,
     * since two tenants may each have `hello`. */
    u->label = strcmp(v->tenant, "default") == 0
                   ? mxu_asprintf("%s@%u", v->function, v->version)
                   : mxu_asprintf("%s/%s@%u", v->tenant, v->function, v->version);
    u->executor = ops;

    /* argv: runtime c runs the built instance; exec runs the command with
     * command[0] resolved by the registry. */
    size_t argc = m->runtime == MXU_RUNTIME_EXEC ? m->ncommand : 1;
    u->argv = mxu_calloc(argc + 1, sizeof(char *));
    u->argv[0] = mxu_strdup(v->exe_path);
    for (size_t i = 1; i < argc; i++)
        u->argv[i] = mxu_strdup(m->command[i]);

    /* Environment: only what the manifest gives, plus what any program needs
     * to find its tools (PATH, unless the manifest sets it) and who it is. */
    bool has_path = false;
    u->env = mxu_calloc(m->nenv + 5, sizeof(char *));
    for (size_t i = 0; i < m->nenv; i++) {
        u->env[u->nenv++] = mxu_asprintf("%s=%s", m->env_names[i], m->env_values[i]);
        if (strcmp(m->env_names[i], "PATH") == 0)
            has_path = true;
    }
    if (!has_path)
        u->env[u->nenv++] = mxu_strdup(default_path);
    u->env[u->nenv++] = mxu_asprintf("MXU_FUNCTION=%s", v->function);
    u->env[u->nenv++] = mxu_asprintf("MXU_VERSION=%u", v->version);
    u->env[u->nenv++] = mxu_strdup(node_env);

    u->warm = (mxu_exec_spec){
        .label = u->label,
        .argv = (const char *const *)u->argv,
        .envp = (const char *const *)u->env,
        .cwd = v->bundle_dir,
        .memory_bytes = m->memory_bytes,
        .channel = true,
    };
    *out = u;
    return 0;
}

void mxu_unit_free(mxu_unit *u)
{
    if (u == NULL)
        return;
    for (size_t i = 0; u->argv[i]; i++)
        free(u->argv[i]);
    free(u->argv);
    for (size_t i = 0; i < u->nenv; i++)
        free(u->env[i]);
    free(u->env);
    free(u->label);
    mxu_fn_version_unref(u->version);
    free(u);
}

mxu_fn_version *mxu_unit_version(const mxu_unit *u)
{
    return u->version;
}
const mxu_manifest *mxu_unit_manifest(const mxu_unit *u)
{
    return u->version->manifest;
}
const char *mxu_unit_label(const mxu_unit *u)
{
    return u->label;
}
const mxu_executor_ops *mxu_unit_executor(const mxu_unit *u)
{
    return u->executor;
}
const mxu_exec_spec *mxu_unit_warm_spec(const mxu_unit *u)
{
    return &u->warm;
}

void mxu_unit_exec_spec(const mxu_unit *u, const char *const *extra_env,
                        mxu_unit_spec_scratch *scratch)
{
    size_t nextra = 0;
    while (extra_env && extra_env[nextra])
        nextra++;
    scratch->envp = mxu_calloc(u->nenv + nextra + 1, sizeof(char *));
    memcpy(scratch->envp, u->env, u->nenv * sizeof(char *));
    if (nextra)
        memcpy(scratch->envp + u->nenv, extra_env, nextra * sizeof(char *));
    scratch->spec = u->warm;
    scratch->spec.envp = scratch->envp;
    scratch->spec.channel = false;
    scratch->spec.stdio = true;
    /* One process per invocation: its CPU time can be capped by the timeout
     * (rounded up; the wall-clock timer is the precise one). */
    scratch->spec.cpu_limit_s = (u->version->manifest->timeout_ms + 999) / 1000 + 1;
}

void mxu_unit_spec_scratch_free(mxu_unit_spec_scratch *scratch)
{
    free(scratch->envp);
    scratch->envp = NULL;
}
