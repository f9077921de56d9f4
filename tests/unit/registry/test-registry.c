/* Unit tests for the registry's store, deploys and builds: a real data
 * directory in /tmp, a real SQLite database, real compiler runs, and a libuv
 * loop driven until each deploy's callback has run. */
#include "registry/registry-internal.h"
#include "test.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>

/* ---- fixtures ----------------------------------------------------------------- */

typedef struct tenv {
    uv_loop_t loop;
    char dir[64];
    char sdk[64]; /* include/ and lib/libmxufn.a (empty archive) */
    mxu_registry_config cfg;
    mxu_registry *reg;
} tenv;

static void env_reopen(tenv *t)
{
    mxu_err err = {0};
    if (mxu_registry_open(&t->loop, &t->cfg, &t->reg, &err) < 0)
        MXU_TEST_FAIL_("open: %s", err.msg);
}

static void env_init(tenv *t)
{
    memset(t, 0, sizeof(*t));
    CHECK_EQ_INT(uv_loop_init(&t->loop), 0);
    snprintf(t->dir, sizeof(t->dir), "/tmp/mxu-test-reg-XXXXXX");
    CHECK(mkdtemp(t->dir) != NULL);
    snprintf(t->sdk, sizeof(t->sdk), "/tmp/mxu-test-sdk-XXXXXX");
    CHECK(mkdtemp(t->sdk) != NULL);
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "mkdir -p %s/include %s/lib && cd %s/lib && ar rcs libmxufn.a",
             t->sdk, t->sdk, t->sdk);
    CHECK_EQ_INT(system(cmd), 0);
    static char inc[96], lib[96];
    snprintf(inc, sizeof(inc), "%s/include", t->sdk);
    snprintf(lib, sizeof(lib), "%s/lib", t->sdk);
    t->cfg.data_dir = t->dir;
    t->cfg.sdk_include_dir = inc;
    t->cfg.sdk_lib_dir = lib;
    t->cfg.cc = "cc";
    env_reopen(t);
}

static void env_close_registry(tenv *t)
{
    mxu_registry_close(t->reg);
    t->reg = NULL;
    /* Detached work items finish here; then the loop must be empty. */
    uv_run(&t->loop, UV_RUN_DEFAULT);
}

static void env_fini(tenv *t)
{
    if (t->reg)
        env_close_registry(t);
    CHECK_EQ_INT(uv_loop_close(&t->loop), 0);
    mxu_rm_rf(t->dir, NULL);
    mxu_rm_rf(t->sdk, NULL);
}

/* What a deploy callback reported, copied out of the callback. */
typedef struct dres {
    int calls;
    int rc;
    mxu_err err;
    uint32_t version;
    bool unchanged;
    char digest[MXU_DIGEST_HEX_LEN + 1];
    char *log;
    int order; /* for FIFO checks */
} dres;

static int deploy_seq;

static void deploy_cb(void *ud, const mxu_deploy_result *r)
{
    dres *d = ud;
    d->calls++;
    d->rc = r->rc;
    d->err = r->err;
    d->unchanged = r->unchanged;
    d->order = ++deploy_seq;
    CHECK(r->build_log != NULL);
    free(d->log);
    d->log = mxu_strdup(r->build_log);
    if (r->rc == 0) {
        CHECK(r->version != NULL);
        d->version = r->version->version;
        snprintf(d->digest, sizeof(d->digest), "%s", r->version->digest);
    } else {
        CHECK(r->version == NULL);
    }
}

static void run_until(tenv *t, dres *d, int calls)
{
    while (d->calls < calls)
        CHECK(uv_run(&t->loop, UV_RUN_ONCE) != 0 || d->calls >= calls);
}

/* Deploy and wait; returns the callback's rc (fails the test on a sync error). */
static const char *deploy_tenant = "default"; /* whose functions deploy_wait makes */

static int deploy_wait(tenv *t, const char *yaml, const mxu_deploy_file *files, size_t n, dres *d)
{
    mxu_err err = {0};
    free(d->log);
    memset(d, 0, sizeof(*d));
    if (mxu_registry_deploy(t->reg, deploy_tenant, "fn/mxu.yaml", yaml, strlen(yaml), files, n,
                            deploy_cb, d, &err) < 0)
        MXU_TEST_FAIL_("deploy refused: %s", err.msg);
    run_until(t, d, 1);
    CHECK_EQ_INT(d->calls, 1);
    return d->rc;
}

static const char hello_yaml[] = "name: hello\nruntime: exec\ncommand: ./run.sh\n";
static const char run_sh[] = "#!/bin/sh\necho hi\n";

/* An exec bundle whose digest depends on `data`. */
static uint32_t deploy_hello(tenv *t, const char *name, const char *data)
{
    char yaml[128];
    snprintf(yaml, sizeof(yaml), "name: %s\nruntime: exec\ncommand: ./run.sh\n", name);
    mxu_deploy_file files[] = {
        {"run.sh", 0755, run_sh, strlen(run_sh)},
        {"data/value.txt", 0644, data, strlen(data)},
    };
    dres d = {0};
    if (deploy_wait(t, yaml, files, 2, &d) != 0)
        MXU_TEST_FAIL_("deploy failed: %s", d.err.msg);
    CHECK(!d.unchanged);
    free(d.log);
    return d.version;
}

static int count_entries(const char *dir, const char *prefix)
{
    DIR *d = opendir(dir);
    CHECK(d != NULL);
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if (prefix == NULL || strncmp(de->d_name, prefix, strlen(prefix)) == 0)
            n++;
    }
    closedir(d);
    return n;
}

static bool exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

static char *read_text(const char *path)
{
    mxu_buf b = {0};
    mxu_err err;
    if (mxu_read_file(path, 1 << 20, &b, &err) < 0)
        MXU_TEST_FAIL_("%s", err.msg);
    return mxu_buf_steal(&b, NULL);
}

static uint32_t resolve_num(tenv *t, const char *name, const char *ref)
{
    mxu_err err = {0};
    mxu_fn_version *v = mxu_registry_resolve(t->reg, "default", name, ref, &err);
    if (v == NULL)
        MXU_TEST_FAIL_("resolve %s@%s: %s", name, ref ? ref : "(null)", err.msg);
    return v->version;
}

static void expect_resolve_fails(tenv *t, const char *name, const char *ref, const char *sub)
{
    mxu_err err = {0};
    CHECK(mxu_registry_resolve(t->reg, "default", name, ref, &err) == NULL);
    CHECK_EQ_INT(err.code, ENOENT);
    CHECK_CONTAINS(err.msg, sub);
}

/* ---- listener ------------------------------------------------------------------- */

typedef struct evlog {
    char text[1024];
} evlog;

static void listener(void *ud, enum mxu_registry_event ev, mxu_fn_version *v)
{
    evlog *l = ud;
    static const char *const names[] = {"added", "removed", "aliases"};
    size_t n = strlen(l->text);
    snprintf(l->text + n, sizeof(l->text) - n, "%s %s@%u;", names[ev], v->function, v->version);
}

/* ---- tests ------------------------------------------------------------------------ */

static void test_deploy_and_resolve(void)
{
    tenv t;
    env_init(&t);
    CHECK_EQ_INT(deploy_hello(&t, "hello", "one"), 1);
    CHECK_EQ_INT(resolve_num(&t, "hello", NULL), 1);
    CHECK_EQ_INT(resolve_num(&t, "hello", ""), 1);
    CHECK_EQ_INT(resolve_num(&t, "hello", "latest"), 1);
    CHECK_EQ_INT(resolve_num(&t, "hello", "1"), 1);

    mxu_err err = {0};
    mxu_fn_version *v = mxu_registry_resolve(t.reg, "default", "hello", NULL, &err);
    CHECK_STR(v->function, "hello");
    CHECK(reg_digest_valid(v->digest));
    char want[256];
    snprintf(want, sizeof(want), "%s/bundles/%s", t.reg->data_dir, v->digest);
    CHECK_STR(v->bundle_dir, want);
    snprintf(want, sizeof(want), "%s/run.sh", v->bundle_dir);
    CHECK_STR(v->exe_path, want);
    CHECK(v->created_ms > 0 && v->created_ms <= mxu_wall_ms());
    CHECK_STR(v->manifest->command[0], "./run.sh");
    /* files on disk, with their modes */
    struct stat st;
    CHECK_EQ_INT(stat(v->exe_path, &st), 0);
    CHECK_EQ_INT(st.st_mode & 0777, 0755);
    snprintf(want, sizeof(want), "%s/data/value.txt", v->bundle_dir);
    CHECK_EQ_INT(stat(want, &st), 0);
    CHECK_EQ_INT(st.st_mode & 0777, 0644);
    char *text = read_text(want);
    CHECK_STR(text, "one");
    free(text);
    CHECK_EQ_INT(count_entries(t.reg->bundles_dir, NULL), 1);

    CHECK_EQ_INT(deploy_hello(&t, "hello", "two"), 2);
    CHECK_EQ_INT(resolve_num(&t, "hello", NULL), 2);
    CHECK_EQ_INT(resolve_num(&t, "hello", "1"), 1);
    CHECK_EQ_INT(resolve_num(&t, "hello", "2"), 2);
    CHECK_EQ_INT(count_entries(t.reg->bundles_dir, NULL), 2);

    expect_resolve_fails(&t, "nope", NULL, "no function 'nope'");
    expect_resolve_fails(&t, "hello", "9", "function 'hello' has no version 9");
    expect_resolve_fails(&t, "hello", "99999999999999999999", "has no version");
    expect_resolve_fails(&t, "hello", "prod", "function 'hello' has no alias 'prod'");
    env_fini(&t);
}

static void test_unchanged_redeploy(void)
{
    tenv t;
    env_init(&t);
    evlog ev = {{0}};
    mxu_registry_set_listener(t.reg, listener, &ev);
    mxu_deploy_file files[] = {
        {"run.sh", 0755, run_sh, strlen(run_sh)},
        {"a.txt", 0644, "a", 1},
    };
    mxu_deploy_file reversed[] = {files[1], files[0]};
    dres d = {0};
    CHECK_EQ_INT(deploy_wait(&t, hello_yaml, files, 2, &d), 0);
    CHECK_EQ_INT(d.version, 1);
    CHECK(!d.unchanged);
    char digest[65];
    memcpy(digest, d.digest, sizeof(digest));
    /* same files in another order: the same bundle */
    CHECK_EQ_INT(deploy_wait(&t, hello_yaml, reversed, 2, &d), 0);
    CHECK(d.unchanged);
    CHECK_EQ_INT(d.version, 1);
    CHECK_STR(d.digest, digest);
    CHECK_STR(ev.text, "added hello@1;");
    /* a different mode is a different bundle */
    files[1].mode = 0600;
    CHECK_EQ_INT(deploy_wait(&t, hello_yaml, files, 2, &d), 0);
    CHECK(!d.unchanged);
    CHECK_EQ_INT(d.version, 2);
    /* so is a different manifest text, even if it means the same */
    CHECK_EQ_INT(
        deploy_wait(&t, "name: hello\nruntime: exec\ncommand: ./run.sh # same\n", files, 2, &d), 0);
    CHECK_EQ_INT(d.version, 3);
    CHECK_STR(ev.text, "added hello@1;added hello@2;added hello@3;");
    free(d.log);
    env_fini(&t);
}

static void test_aliases(void)
{
    tenv t;
    env_init(&t);
    deploy_hello(&t, "hello", "1");
    deploy_hello(&t, "hello", "2");
    deploy_hello(&t, "hello", "3");
    evlog ev = {{0}};
    mxu_registry_set_listener(t.reg, listener, &ev);
    mxu_err err = {0};
    CHECK_EQ_INT(mxu_registry_set_alias(t.reg, "default", "hello", "prod", 1, &err), 0);
    CHECK_EQ_INT(resolve_num(&t, "hello", "prod"), 1);
    CHECK_EQ_INT(mxu_registry_set_alias(t.reg, "default", "hello", "prod", 2, &err), 0); /* move */
    CHECK_EQ_INT(resolve_num(&t, "hello", "prod"), 2);
    CHECK_EQ_INT(mxu_registry_set_alias(t.reg, "default", "hello", "prod", 2, &err), 0); /* no-op */
    CHECK_EQ_INT(mxu_registry_set_alias(t.reg, "default", "hello", "canary", 3, &err), 0);
    CHECK_STR(ev.text, "aliases hello@1;aliases hello@2;aliases hello@3;");

    CHECK_EQ_INT(mxu_registry_set_alias(t.reg, "default", "hello", "latest", 1, &err), -1);
    CHECK_EQ_INT(err.code, EINVAL);
    CHECK_CONTAINS(err.msg, "latest");
    CHECK_EQ_INT(mxu_registry_delete_alias(t.reg, "default", "hello", "latest", &err), -1);
    CHECK_EQ_INT(err.code, EINVAL);
    CHECK_EQ_INT(mxu_registry_set_alias(t.reg, "default", "hello", "Prod!", 1, &err), -1);
    CHECK_EQ_INT(err.code, EINVAL);
    CHECK_EQ_INT(mxu_registry_set_alias(t.reg, "default", "hello", "7", 1, &err), -1);
    CHECK_EQ_INT(err.code, EINVAL);
    CHECK_EQ_INT(mxu_registry_set_alias(t.reg, "default", "hello", "beta", 9, &err), -1);
    CHECK_EQ_INT(err.code, ENOENT);
    CHECK_CONTAINS(err.msg, "no version 9");
    CHECK_EQ_INT(mxu_registry_set_alias(t.reg, "default", "nope", "beta", 1, &err), -1);
    CHECK_EQ_INT(err.code, ENOENT);
    CHECK_EQ_INT(mxu_registry_delete_alias(t.reg, "default", "hello", "beta", &err), -1);
    CHECK_EQ_INT(err.code, ENOENT);

    CHECK_EQ_INT(mxu_registry_delete_alias(t.reg, "default", "hello", "prod", &err), 0);
    expect_resolve_fails(&t, "hello", "prod", "no alias 'prod'");
    CHECK_EQ_INT(resolve_num(&t, "hello", "canary"), 3);

    json_t *j = mxu_registry_function_json(t.reg, "default", "hello", &err);
    CHECK(j != NULL);
    char *s = json_dumps(json_object_get(j, "aliases"), JSON_COMPACT);
    CHECK_STR(s, "{\"latest\":3,\"canary\":3}");
    free(s);
    json_decref(j);
    env_fini(&t);
}

static void test_delete_version(void)
{
    tenv t;
    env_init(&t);
    deploy_hello(&t, "hello", "1");
    deploy_hello(&t, "hello", "2");
    deploy_hello(&t, "hello", "3");
    mxu_err err = {0};
    _cleanup_free_ char *dir1 =
        mxu_strdup(mxu_registry_resolve(t.reg, "default", "hello", "1", &err)->bundle_dir);
    CHECK_EQ_INT(mxu_registry_set_alias(t.reg, "default", "hello", "prod", 2, &err), 0);
    evlog ev = {{0}};
    mxu_registry_set_listener(t.reg, listener, &ev);

    CHECK_EQ_INT(mxu_registry_delete_version(t.reg, "default", "hello", 2, &err), -1);
    CHECK_EQ_INT(err.code, EBUSY);
    CHECK_CONTAINS(err.msg, "alias 'prod'");
    CHECK_EQ_INT(resolve_num(&t, "hello", "2"), 2);
    CHECK_EQ_INT(mxu_registry_delete_version(t.reg, "default", "hello", 7, &err), -1);
    CHECK_EQ_INT(err.code, ENOENT);

    /* deleting latest moves latest back */
    CHECK_EQ_INT(mxu_registry_delete_version(t.reg, "default", "hello", 3, &err), 0);
    CHECK_EQ_INT(resolve_num(&t, "hello", NULL), 2);
    expect_resolve_fails(&t, "hello", "3", "no version 3");
    CHECK_STR(ev.text, "removed hello@3;aliases hello@2;");

    /* an old version: its bundle folder goes too */
    CHECK(exists(dir1));
    CHECK_EQ_INT(mxu_registry_delete_version(t.reg, "default", "hello", 1, &err), 0);
    CHECK(!exists(dir1));
    CHECK_EQ_INT(count_entries(t.reg->bundles_dir, NULL), 1);

    /* numbers are never reused */
    CHECK_EQ_INT(deploy_hello(&t, "hello", "4"), 4);

    /* the last version: the function goes, but its numbering stays */
    CHECK_EQ_INT(mxu_registry_delete_alias(t.reg, "default", "hello", "prod", &err), 0);
    CHECK_EQ_INT(mxu_registry_delete_version(t.reg, "default", "hello", 2, &err), 0);
    CHECK_EQ_INT(mxu_registry_delete_version(t.reg, "default", "hello", 4, &err), 0);
    expect_resolve_fails(&t, "hello", NULL, "no function 'hello'");
    CHECK_EQ_INT(count_entries(t.reg->bundles_dir, NULL), 0);
    CHECK_EQ_INT(deploy_hello(&t, "hello", "5"), 5);
    env_fini(&t);
}

static void test_delete_function(void)
{
    tenv t;
    env_init(&t);
    deploy_hello(&t, "hello", "1");
    deploy_hello(&t, "hello", "2");
    deploy_hello(&t, "other", "1");
    mxu_err err = {0};
    CHECK_EQ_INT(mxu_registry_set_alias(t.reg, "default", "hello", "prod", 1, &err), 0);
    evlog ev = {{0}};
    mxu_registry_set_listener(t.reg, listener, &ev);
    CHECK_EQ_INT(mxu_registry_delete_function(t.reg, "default", "hello", &err), 0);
    CHECK_STR(ev.text, "removed hello@1;removed hello@2;");
    expect_resolve_fails(&t, "hello", "prod", "no function 'hello'");
    CHECK(mxu_registry_function_json(t.reg, "default", "hello", &err) == NULL);
    CHECK_EQ_INT(err.code, ENOENT);
    CHECK_EQ_INT(mxu_registry_delete_function(t.reg, "default", "hello", &err), -1);
    CHECK_EQ_INT(err.code, ENOENT);
    /* "other" has the same files as hello@1 but another manifest: its own bundle */
    CHECK_EQ_INT(count_entries(t.reg->bundles_dir, NULL), 1);
    CHECK_EQ_INT(resolve_num(&t, "other", NULL), 1);
    /* re-created: numbering goes on, also after a restart */
    env_close_registry(&t);
    env_reopen(&t);
    expect_resolve_fails(&t, "hello", NULL, "no function 'hello'");
    CHECK_EQ_INT(deploy_hello(&t, "hello", "x"), 3);
    json_t *j = mxu_registry_function_json(t.reg, "default", "hello", &err);
    CHECK_EQ_INT(json_array_size(json_object_get(j, "versions")), 1);
    json_decref(j);
    env_fini(&t);
}

static void test_reopen_keeps_everything(void)
{
    tenv t;
    env_init(&t);
    deploy_hello(&t, "hello", "1");
    deploy_hello(&t, "hello", "2");
    deploy_hello(&t, "hello", "3");
    deploy_hello(&t, "beta", "1");
    mxu_err err = {0};
    CHECK_EQ_INT(mxu_registry_set_alias(t.reg, "default", "hello", "prod", 2, &err), 0);
    CHECK_EQ_INT(mxu_registry_delete_version(t.reg, "default", "hello", 1, &err), 0);
    const char *envy = "name: envy\nruntime: exec\ncommand: /bin/true\nenv:\n  ZED: 1\n  ALPHA: 2\n"
                       "  MID: \"three\"\nresources:\n  zz: {uri: \"kv:z\", access: read}\n"
                       "  aa: {uri: \"svc:x@prod\"}\n";
    dres d = {0};
    CHECK_EQ_INT(deploy_wait(&t, envy, NULL, 0, &d), 0);
    free(d.log);
    json_t *before = mxu_registry_list_json(t.reg, NULL);
    json_t *hello_before = mxu_registry_function_json(t.reg, "default", "hello", &err);
    env_close_registry(&t);

    env_reopen(&t);
    json_t *after = mxu_registry_list_json(t.reg, NULL);
    json_t *hello_after = mxu_registry_function_json(t.reg, "default", "hello", &err);
    CHECK(json_equal(before, after));
    CHECK(json_equal(hello_before, hello_after));
    CHECK_EQ_INT(resolve_num(&t, "hello", "prod"), 2);
    CHECK_EQ_INT(resolve_num(&t, "hello", NULL), 3);
    expect_resolve_fails(&t, "hello", "1", "no version 1");
    mxu_fn_version *v = mxu_registry_resolve(t.reg, "default", "hello", "3", &err);
    CHECK(exists(v->exe_path));
    /* env and resources keep the manifest's order through the database */
    v = mxu_registry_resolve(t.reg, "default", "envy", NULL, &err);
    CHECK_EQ_INT(v->manifest->nenv, 3);
    CHECK_STR(v->manifest->env_names[0], "ZED");
    CHECK_STR(v->manifest->env_names[1], "ALPHA");
    CHECK_STR(v->manifest->env_values[2], "three");
    CHECK_STR(v->manifest->resources[0].name, "zz");
    CHECK_STR(v->manifest->resources[1].access, "invoke");
    CHECK_STR(v->exe_path, "/bin/true");
    CHECK_EQ_INT(deploy_hello(&t, "hello", "4"), 4);
    json_decref(before);
    json_decref(after);
    json_decref(hello_before);
    json_decref(hello_after);
    env_fini(&t);
}

static void test_open_sweeps_leftovers(void)
{
    tenv t;
    env_init(&t);
    deploy_hello(&t, "hello", "1");
    mxu_err err = {0};
    _cleanup_free_ char *kept =
        mxu_strdup(mxu_registry_resolve(t.reg, "default", "hello", NULL, &err)->bundle_dir);
    _cleanup_free_ char *bundles = mxu_strdup(t.reg->bundles_dir);
    env_close_registry(&t);

    /* what crashes leave: a deploy in progress, a bundle renamed but never
     * committed; and something nobody should touch */
    char path[512];
    snprintf(path, sizeof(path), "%s/.tmp-abc123/sub", bundles);
    CHECK_EQ_INT(mxu_mkdir_p(path, 0755, &err), 0);
    snprintf(path, sizeof(path), "%s/.tmp-abc123/sub/f", bundles);
    CHECK_EQ_INT(mxu_write_file_atomic(path, "x", 1, 0644, &err), 0);
    snprintf(path, sizeof(path), "%s/%064d", bundles, 7);
    CHECK_EQ_INT(mxu_mkdir_p(path, 0755, &err), 0);
    snprintf(path, sizeof(path), "%s/%064d/.mxu", bundles, 7);
    CHECK_EQ_INT(mxu_mkdir_p(path, 0755, &err), 0);
    snprintf(path, sizeof(path), "%s/README", bundles);
    CHECK_EQ_INT(mxu_write_file_atomic(path, "x", 1, 0644, &err), 0);
    CHECK_EQ_INT(count_entries(bundles, NULL), 4);

    env_reopen(&t);
    CHECK_EQ_INT(count_entries(bundles, ".tmp-"), 0);
    snprintf(path, sizeof(path), "%s/%064d", bundles, 7);
    CHECK(!exists(path));
    CHECK(exists(kept));
    snprintf(path, sizeof(path), "%s/README", bundles);
    CHECK(exists(path));
    CHECK_EQ_INT(count_entries(bundles, NULL), 2);
    CHECK_EQ_INT(resolve_num(&t, "hello", NULL), 1);
    env_fini(&t);
}

static const char c_main[] = "#include <math.h>\n"
                             "#include \"util.h\"\n"
                             "int main(void) { volatile double x = 4.0; "
                             "return (int)sqrt(x) - TWO + X; }\n";
static const char c_util[] = "#define TWO 2\n";

static void test_c_build(void)
{
    tenv t;
    env_init(&t);
    const char *yaml = "name: calc\nruntime: c\nsources: [src/main.c]\n"
                       "build: {cflags: [-DX=0, -Isrc], libs: [m]}\nconcurrency: 4\n";
    mxu_deploy_file files[] = {
        {"src/main.c", 0644, c_main, strlen(c_main)},
        {"src/util.h", 0644, c_util, strlen(c_util)},
    };
    dres d = {0};
    if (deploy_wait(&t, yaml, files, 2, &d) != 0)
        MXU_TEST_FAIL_("build failed: %s\n%s", d.err.msg, d.log);
    mxu_err err = {0};
    mxu_fn_version *v = mxu_registry_resolve(t.reg, "default", "calc", NULL, &err);
    char want[256];
    snprintf(want, sizeof(want), "%s/.mxu/instance", v->bundle_dir);
    CHECK_STR(v->exe_path, want);
    struct stat st;
    CHECK_EQ_INT(stat(v->exe_path, &st), 0);
    CHECK(st.st_mode & 0100);
    /* the program the compiler made runs, and computed sqrt(4) - 2 + 0 */
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "'%s'", v->exe_path);
    int rc = system(cmd);
    CHECK(WIFEXITED(rc));
    CHECK_EQ_INT(WEXITSTATUS(rc), 0);
    CHECK_EQ_INT(count_entries(t.reg->bundles_dir, ".tmp-"), 0);

    /* the same source with X=3: exit status 3, proving flags reach cc */
    const char *yaml3 = "name: calc\nruntime: c\nsources: [src/main.c]\n"
                        "build: {cflags: [-DX=3, -Isrc], libs: [m]}\n";
    CHECK_EQ_INT(deploy_wait(&t, yaml3, files, 2, &d), 0);
    CHECK_EQ_INT(d.version, 2);
    v = mxu_registry_resolve(t.reg, "default", "calc", NULL, &err);
    snprintf(cmd, sizeof(cmd), "'%s'", v->exe_path);
    rc = system(cmd);
    CHECK(WIFEXITED(rc));
    CHECK_EQ_INT(WEXITSTATUS(rc), 3);
    free(d.log);
    env_fini(&t);
}

static void test_build_failure_changes_nothing(void)
{
    tenv t;
    env_init(&t);
    const char *yaml = "name: calc\nruntime: c\nsources: [main.c]\n";
    const char *good = "int main(void) { return 0; }\n";
    const char *bad = "int main(void) { return undeclared_thing; }\n";
    mxu_deploy_file files[] = {{"main.c", 0644, good, strlen(good)}};
    dres d = {0};
    CHECK_EQ_INT(deploy_wait(&t, yaml, files, 1, &d), 0);
    CHECK_EQ_INT(d.version, 1);
    json_t *before = mxu_registry_list_json(t.reg, NULL);
    int nbundles = count_entries(t.reg->bundles_dir, NULL);

    files[0].data = bad;
    files[0].len = strlen(bad);
    CHECK_EQ_INT(deploy_wait(&t, yaml, files, 1, &d), -1);
    CHECK_EQ_INT(d.err.code, ENOEXEC);
    CHECK_CONTAINS(d.err.msg, "build failed");
    CHECK_CONTAINS(d.err.msg, "undeclared_thing");
    CHECK_CONTAINS(d.log, "main.c");
    CHECK_CONTAINS(d.log, "error");
    CHECK_CONTAINS(d.log, "undeclared_thing");

    json_t *after = mxu_registry_list_json(t.reg, NULL);
    CHECK(json_equal(before, after));
    CHECK_EQ_INT(count_entries(t.reg->bundles_dir, NULL), nbundles);
    CHECK_EQ_INT(count_entries(t.reg->bundles_dir, ".tmp-"), 0);
    /* and not in the database either */
    env_close_registry(&t);
    env_reopen(&t);
    json_t *reopened = mxu_registry_list_json(t.reg, NULL);
    CHECK(json_equal(before, reopened));
    /* the next good deploy gets number 2: the failed one used none */
    /* a link error: the message quotes the linker's complaint */
    const char *unresolved = "int nowhere(void);\nint main(void) { return nowhere(); }\n";
    files[0].data = unresolved;
    files[0].len = strlen(unresolved);
    CHECK_EQ_INT(deploy_wait(&t, yaml, files, 1, &d), -1);
    CHECK_EQ_INT(d.err.code, ENOEXEC);
    CHECK_CONTAINS(d.err.msg, "undefined reference");
    CHECK_CONTAINS(d.err.msg, "nowhere");
    files[0].data = "int main(void) { return 1 - 1; }\n";
    files[0].len = strlen(files[0].data);
    CHECK_EQ_INT(deploy_wait(&t, yaml, files, 1, &d), 0);
    CHECK_EQ_INT(d.version, 2);
    json_decref(before);
    json_decref(after);
    json_decref(reopened);
    free(d.log);
    env_fini(&t);
}

static void test_build_timeout(void)
{
    tenv t;
    env_init(&t);
    /* a "compiler" that hangs, and its child too (killed with the group) */
    char cc[128];
    snprintf(cc, sizeof(cc), "%s/slow-cc", t.sdk);
    const char *script = "#!/bin/sh\necho starting\nsleep 30 &\nsleep 30\n";
    mxu_err err = {0};
    CHECK_EQ_INT(mxu_write_file_atomic(cc, script, strlen(script), 0755, &err), 0);
    env_close_registry(&t);
    t.cfg.cc = cc;
    t.cfg.build_timeout_ms = 300;
    env_reopen(&t);
    const char *yaml = "name: calc\nruntime: c\nsources: [main.c]\n";
    mxu_deploy_file files[] = {{"main.c", 0644, "x", 1}};
    dres d = {0};
    uint64_t start = mxu_now_ns();
    CHECK_EQ_INT(deploy_wait(&t, yaml, files, 1, &d), -1);
    uint64_t took_ms = (mxu_now_ns() - start) / 1000000;
    CHECK(took_ms >= 300 && took_ms < 5000);
    CHECK_EQ_INT(d.err.code, ENOEXEC);
    CHECK_CONTAINS(d.err.msg, "took longer than 300 ms");
    CHECK_CONTAINS(d.log, "starting");
    CHECK_EQ_INT(count_entries(t.reg->bundles_dir, NULL), 0);

    /* a compiler that isn't there */
    env_close_registry(&t);
    t.cfg.cc = "/nonexistent/cc";
    env_reopen(&t);
    CHECK_EQ_INT(deploy_wait(&t, yaml, files, 1, &d), -1);
    CHECK_EQ_INT(d.err.code, ENOEXEC);
    CHECK_CONTAINS(d.err.msg, "cannot run the C compiler '/nonexistent/cc'");
    free(d.log);
    env_fini(&t);
}

/* Deploys queued back to back run in order, and "unchanged" is decided when
 * a deploy runs, after the one before it committed. */
static void test_fifo(void)
{
    tenv t;
    env_init(&t);
    mxu_deploy_file a[] = {{"run.sh", 0755, run_sh, strlen(run_sh)}, {"v", 0644, "a", 1}};
    mxu_deploy_file b[] = {{"run.sh", 0755, run_sh, strlen(run_sh)}, {"v", 0644, "b", 1}};
    dres d[4] = {{0}};
    mxu_err err = {0};
    const mxu_deploy_file *sets[4] = {a, a, b, a};
    for (int i = 0; i < 4; i++)
        CHECK_EQ_INT(mxu_registry_deploy(t.reg, "default", "mxu.yaml", hello_yaml,
                                         strlen(hello_yaml), sets[i], 2, deploy_cb, &d[i], &err),
                     0);
    /* nothing runs before the loop does */
    for (int i = 0; i < 4; i++)
        CHECK_EQ_INT(d[i].calls, 0);
    run_until(&t, &d[3], 1);
    for (int i = 0; i < 4; i++) {
        CHECK_EQ_INT(d[i].calls, 1);
        CHECK_EQ_INT(d[i].rc, 0);
        free(d[i].log);
    }
    CHECK(d[0].order < d[1].order && d[1].order < d[2].order && d[2].order < d[3].order);
    CHECK_EQ_INT(d[0].version, 1);
    CHECK(!d[0].unchanged);
    CHECK_EQ_INT(d[1].version, 1);
    CHECK(d[1].unchanged);
    CHECK_EQ_INT(d[2].version, 2);
    CHECK(!d[2].unchanged);
    /* a again: not latest, so a new version, sharing version 1's bundle */
    CHECK_EQ_INT(d[3].version, 3);
    CHECK(!d[3].unchanged);
    CHECK_STR(d[3].digest, d[0].digest);
    CHECK_EQ_INT(count_entries(t.reg->bundles_dir, NULL), 2);
    /* the shared bundle stays while version 3 uses it */
    mxu_fn_version *v1 = mxu_registry_resolve(t.reg, "default", "hello", "1", &err);
    _cleanup_free_ char *dir = mxu_strdup(v1->bundle_dir);
    CHECK_EQ_INT(mxu_registry_delete_version(t.reg, "default", "hello", 1, &err), 0);
    CHECK(exists(dir));
    CHECK_EQ_INT(mxu_registry_delete_version(t.reg, "default", "hello", 3, &err), 0);
    CHECK(!exists(dir));
    env_fini(&t);
}

static void expect_deploy_refused(tenv *t, const char *yaml, const mxu_deploy_file *files, size_t n,
                                  const char *sub)
{
    dres d = {0};
    mxu_err err = {0};
    CHECK_EQ_INT(mxu_registry_deploy(t->reg, "default", "fn/mxu.yaml", yaml, strlen(yaml), files, n,
                                     deploy_cb, &d, &err),
                 -1);
    CHECK_EQ_INT(err.code, EINVAL);
    CHECK_CONTAINS(err.msg, sub);
    uv_run(&t->loop, UV_RUN_NOWAIT);
    CHECK_EQ_INT(d.calls, 0); /* the callback never runs */
}

static void test_deploy_refused_at_once(void)
{
    tenv t;
    env_init(&t);
    mxu_deploy_file f[3] = {{"run.sh", 0755, run_sh, strlen(run_sh)}};
    expect_deploy_refused(&t, "name: hello\nruntime: exec\n", f, 1,
                          "fn/mxu.yaml:1: command: required");
    f[1] = (mxu_deploy_file){"/etc/passwd", 0644, "x", 1};
    expect_deploy_refused(&t, hello_yaml, f, 2,
                          "file '/etc/passwd': the path must be a path "
                          "relative");
    f[1] = (mxu_deploy_file){"a/../../x", 0644, "x", 1};
    expect_deploy_refused(&t, hello_yaml, f, 2, "'.' or '..'");
    f[1] = (mxu_deploy_file){"run.sh", 0644, "x", 1};
    expect_deploy_refused(&t, hello_yaml, f, 2, "file 'run.sh' is listed twice");
    f[1] = (mxu_deploy_file){"lib", 0644, "x", 1};
    f[2] = (mxu_deploy_file){"lib/x.so", 0644, "x", 1};
    expect_deploy_refused(&t, hello_yaml, f, 3, "file 'lib' is also the folder of 'lib/x.so'");
    f[1] = (mxu_deploy_file){".mxu/instance", 0755, "x", 1};
    expect_deploy_refused(&t, hello_yaml, f, 2, "reserved for build output");
    f[1] = (mxu_deploy_file){"x", 04755, "x", 1};
    expect_deploy_refused(&t, hello_yaml, f, 2, "more than permission bits");
    f[1] = (mxu_deploy_file){"big", 0644, "x", MXU_BUNDLE_MAX_BYTES}; /* never read */
    expect_deploy_refused(&t, hello_yaml, f, 2, "may total at most 64 MiB");

    mxu_deploy_file *many = calloc(MXU_BUNDLE_MAX_FILES + 1, sizeof(*many));
    expect_deploy_refused(&t, hello_yaml, many, MXU_BUNDLE_MAX_FILES + 1, "at most 1000 files");
    free(many);

    /* the program of an exec function */
    expect_deploy_refused(&t, hello_yaml, NULL, 0, "'./run.sh' is not among the deployed files");
    f[0].mode = 0644;
    expect_deploy_refused(&t, hello_yaml, f, 1, "'./run.sh' is not executable (mode 0644)");
    expect_deploy_refused(&t, "name: a\nruntime: exec\ncommand: /nonexistent/python\n", NULL, 0,
                          "'/nonexistent/python' does not exist on this node");
    expect_deploy_refused(&t, "name: a\nruntime: exec\ncommand: /etc/passwd\n", NULL, 0,
                          "is not an executable file");
    expect_deploy_refused(&t, "name: a\nruntime: c\nsources: [main.c]\n", f, 1,
                          "sources: 'main.c' is not among the deployed files");

    /* an absolute program installed on the node is fine, with no files at all */
    dres d = {0};
    CHECK_EQ_INT(
        deploy_wait(&t, "name: sh\nruntime: exec\ncommand: /bin/sh -c 'echo'\n", NULL, 0, &d), 0);
    mxu_err err = {0};
    CHECK_STR(mxu_registry_resolve(t.reg, "default", "sh", NULL, &err)->exe_path, "/bin/sh");
    free(d.log);
    env_fini(&t);
}

/* If the database refuses the commit, memory stays as it was, the caller is
 * told, and the bundle folder made for it is removed. */
static void test_commit_failure(void)
{
    tenv t;
    env_init(&t);
    deploy_hello(&t, "hello", "1");
    json_t *before = mxu_registry_list_json(t.reg, NULL);
    CHECK_EQ_INT(sqlite3_exec(t.reg->db, "PRAGMA query_only=ON", NULL, NULL, NULL), SQLITE_OK);
    mxu_deploy_file files[] = {{"run.sh", 0755, run_sh, strlen(run_sh)}, {"v", 0644, "2", 1}};
    dres d = {0};
    CHECK_EQ_INT(deploy_wait(&t, hello_yaml, files, 2, &d), -1);
    CHECK_EQ_INT(d.err.code, EIO);
    CHECK_CONTAINS(d.err.msg, "cannot store the new version of 'hello'");
    json_t *after = mxu_registry_list_json(t.reg, NULL);
    CHECK(json_equal(before, after));
    CHECK_EQ_INT(count_entries(t.reg->bundles_dir, NULL), 1);
    mxu_err err = {0};
    CHECK_EQ_INT(mxu_registry_set_alias(t.reg, "default", "hello", "prod", 1, &err), -1);
    expect_resolve_fails(&t, "hello", "prod", "no alias");
    CHECK_EQ_INT(mxu_registry_delete_function(t.reg, "default", "hello", &err), -1);
    CHECK_EQ_INT(resolve_num(&t, "hello", NULL), 1);

    CHECK_EQ_INT(sqlite3_exec(t.reg->db, "PRAGMA query_only=OFF", NULL, NULL, NULL), SQLITE_OK);
    CHECK_EQ_INT(deploy_wait(&t, hello_yaml, files, 2, &d), 0);
    CHECK_EQ_INT(d.version, 2);
    json_decref(before);
    json_decref(after);
    free(d.log);
    env_fini(&t);
}

static void test_close_cancels_pending(void)
{
    tenv t;
    env_init(&t);
    mxu_deploy_file a[] = {{"run.sh", 0755, run_sh, strlen(run_sh)}};
    dres d[3] = {{0}};
    mxu_err err = {0};
    for (int i = 0; i < 3; i++)
        CHECK_EQ_INT(mxu_registry_deploy(t.reg, "default", "mxu.yaml", hello_yaml,
                                         strlen(hello_yaml), a, 1, deploy_cb, &d[i], &err),
                     0);
    mxu_registry_close(t.reg);
    t.reg = NULL;
    for (int i = 0; i < 3; i++) {
        CHECK_EQ_INT(d[i].calls, 1);
        CHECK_EQ_INT(d[i].rc, -1);
        CHECK_EQ_INT(d[i].err.code, ECANCELED);
        free(d[i].log);
    }
    uv_run(&t.loop, UV_RUN_DEFAULT);
    for (int i = 0; i < 3; i++)
        CHECK_EQ_INT(d[i].calls, 1); /* exactly once */
    env_fini(&t);
}

/* A deleted version still in use keeps its bundle until the next open. */
static void test_deleted_in_use_keeps_bundle(void)
{
    tenv t;
    env_init(&t);
    deploy_hello(&t, "hello", "1");
    deploy_hello(&t, "hello", "2");
    mxu_err err = {0};
    mxu_fn_version *v1 =
        mxu_fn_version_ref(mxu_registry_resolve(t.reg, "default", "hello", "1", &err));
    CHECK_EQ_INT(mxu_registry_delete_version(t.reg, "default", "hello", 1, &err), 0);
    CHECK(exists(v1->exe_path)); /* a running instance may still need it */
    CHECK_EQ_INT(v1->version, 1);
    _cleanup_free_ char *dir = mxu_strdup(v1->bundle_dir);
    mxu_fn_version_unref(v1);
    env_close_registry(&t);
    env_reopen(&t);
    CHECK(!exists(dir));
    CHECK_EQ_INT(count_entries(t.reg->bundles_dir, NULL), 1);
    env_fini(&t);
}

/* A database from a newer mxu is refused, not misread; so is a damaged one. */
static void test_open_refuses_bad_database(void)
{
    tenv t;
    env_init(&t);
    deploy_hello(&t, "hello", "1");
    _cleanup_free_ char *db = mxu_path_join(t.reg->data_dir, "state.db");
    env_close_registry(&t);

    sqlite3 *h;
    CHECK_EQ_INT(sqlite3_open(db, &h), SQLITE_OK);
    CHECK_EQ_INT(sqlite3_exec(h, "PRAGMA user_version=99", NULL, NULL, NULL), SQLITE_OK);
    mxu_err err = {0};
    mxu_registry *reg = NULL;
    CHECK_EQ_INT(mxu_registry_open(&t.loop, &t.cfg, &reg, &err), -1);
    CHECK(reg == NULL);
    CHECK_EQ_INT(err.code, EPROTO);
    CHECK_CONTAINS(err.msg, "schema 99");

    CHECK_EQ_INT(sqlite3_exec(h, "PRAGMA user_version=2; UPDATE versions SET manifest='{\"x\":1}'",
                              NULL, NULL, NULL),
                 SQLITE_OK);
    sqlite3_close(h);
    CHECK_EQ_INT(mxu_registry_open(&t.loop, &t.cfg, &reg, &err), -1);
    CHECK_CONTAINS(err.msg, "manifest of hello@1");
    CHECK_CONTAINS(err.msg, "unknown field 'x'");
    env_fini(&t);
}

/* Two tenants, each with its own `hello`: same name, separate versions,
 * aliases, deletion and listings; and it all survives a reopen. */
static void test_tenants_scope_names(void)
{
    tenv t;
    env_init(&t);
    mxu_err err = {0};
    CHECK_EQ_INT(deploy_hello(&t, "hello", "default 1"), 1);
    CHECK_EQ_INT(deploy_hello(&t, "hello", "default 2"), 2);
    deploy_tenant = "acme";
    CHECK_EQ_INT(deploy_hello(&t, "hello", "acme 1"), 1); /* its own numbering */
    CHECK_EQ_INT(deploy_hello(&t, "only-acme", "x"), 1);
    deploy_tenant = "default";

    mxu_fn_version *d = mxu_registry_resolve(t.reg, "default", "hello", NULL, &err);
    mxu_fn_version *a = mxu_registry_resolve(t.reg, "acme", "hello", NULL, &err);
    CHECK(d != NULL && a != NULL && d != a);
    CHECK_STR(mxu_fn_version_tenant(d), "default");
    CHECK_STR(mxu_fn_version_tenant(a), "acme");
    CHECK_EQ_INT(d->version, 2);
    CHECK_EQ_INT(a->version, 1);
    CHECK(strcmp(d->digest, a->digest) != 0);
    /* another tenant's name is not there */
    CHECK(mxu_registry_resolve(t.reg, "default", "only-acme", NULL, &err) == NULL);
    CHECK_EQ_INT(err.code, ENOENT);
    CHECK(mxu_registry_resolve(t.reg, "other", "hello", NULL, &err) == NULL);
    CHECK_CONTAINS(err.msg, "no function 'hello' in tenant other");
    CHECK(mxu_registry_function_json(t.reg, "default", "only-acme", &err) == NULL);
    CHECK_EQ_INT(mxu_registry_set_alias(t.reg, "default", "only-acme", "prod", 1, &err), -1);
    CHECK_EQ_INT(mxu_registry_delete_function(t.reg, "default", "only-acme", &err), -1);
    CHECK_EQ_INT(mxu_registry_delete_version(t.reg, "other", "hello", 1, &err), -1);

    /* aliases are per tenant */
    CHECK_EQ_INT(mxu_registry_set_alias(t.reg, "acme", "hello", "prod", 1, &err), 0);
    CHECK(mxu_registry_resolve(t.reg, "default", "hello", "prod", &err) == NULL);
    CHECK(mxu_registry_resolve(t.reg, "acme", "hello", "prod", &err) == a);

    /* listings */
    json_t *l = mxu_registry_list_json(t.reg, "acme");
    CHECK_EQ_INT(json_array_size(l), 2);
    CHECK_STR(json_string_value(json_object_get(json_array_get(l, 0), "name")), "hello");
    CHECK_STR(json_string_value(json_object_get(json_array_get(l, 0), "tenant")), "acme");
    json_decref(l);
    l = mxu_registry_list_json(t.reg, "default");
    CHECK_EQ_INT(json_array_size(l), 1);
    json_decref(l);
    l = mxu_registry_list_json(t.reg, NULL); /* acme's first, then default's */
    CHECK_EQ_INT(json_array_size(l), 3);
    CHECK_STR(json_string_value(json_object_get(json_array_get(l, 2), "tenant")), "default");
    json_decref(l);
    CHECK_EQ_INT(mxu_registry_count(t.reg, "acme"), 2);
    CHECK_EQ_INT(mxu_registry_count(t.reg, "default"), 1);
    CHECK_EQ_INT(mxu_registry_count(t.reg, "nobody"), 0);

    /* survives a reopen */
    env_close_registry(&t);
    env_reopen(&t);
    a = mxu_registry_resolve(t.reg, "acme", "hello", "prod", &err);
    CHECK(a != NULL);
    CHECK_STR(a->tenant, "acme");
    CHECK_EQ_INT(mxu_registry_resolve(t.reg, "default", "hello", NULL, &err)->version, 2);

    /* deleting acme's hello leaves default's; numbering goes on per tenant */
    CHECK_EQ_INT(mxu_registry_delete_alias(t.reg, "acme", "hello", "prod", &err), 0);
    CHECK_EQ_INT(mxu_registry_delete_function(t.reg, "acme", "hello", &err), 0);
    CHECK(mxu_registry_resolve(t.reg, "acme", "hello", NULL, &err) == NULL);
    CHECK(mxu_registry_resolve(t.reg, "default", "hello", NULL, &err) != NULL);
    deploy_tenant = "acme";
    CHECK_EQ_INT(deploy_hello(&t, "hello", "acme again"), 2);
    deploy_tenant = "default";
    CHECK_EQ_INT(deploy_hello(&t, "hello", "default 3"), 3);

    /* a bad tenant name is refused at once */
    CHECK_EQ_INT(mxu_registry_deploy(t.reg, "Bad/x", "mxu.yaml", hello_yaml, strlen(hello_yaml),
                                     NULL, 0, deploy_cb, NULL, &err),
                 -1);
    CHECK_EQ_INT(err.code, EINVAL);
    env_fini(&t);
}

/* A data directory of the previous mxu (schema 1: no tenants) opens: its
 * functions are tenant default's, with versions, aliases, tombstones and
 * the version counters they had. The old database is written with the old
 * schema's own SQL, as the previous release made it. */
static void test_migrate_schema_1(void)
{
    tenv t;
    env_init(&t);
    CHECK_EQ_INT(deploy_hello(&t, "hello", "1"), 1);
    CHECK_EQ_INT(deploy_hello(&t, "hello", "2"), 2);
    CHECK_EQ_INT(deploy_hello(&t, "gone", "1"), 1);
    mxu_err err = {0};
    CHECK_EQ_INT(mxu_registry_set_alias(t.reg, "default", "hello", "prod", 1, &err), 0);
    CHECK_EQ_INT(mxu_registry_delete_function(t.reg, "default", "gone", &err), 0);
    char *digest1 = mxu_strdup(mxu_registry_resolve(t.reg, "default", "hello", "1", &err)->digest);
    _cleanup_free_ char *db = mxu_path_join(t.reg->data_dir, "state.db");
    env_close_registry(&t);

    /* Rewrite the database as schema 1 had it. */
    sqlite3 *h;
    CHECK_EQ_INT(sqlite3_open(db, &h), SQLITE_OK);
    char *msg = NULL;
    int rc = sqlite3_exec(
        h,
        "BEGIN;"
        "CREATE TABLE f1 AS SELECT name, created_ms, next_version, deleted_ms FROM functions;"
        "CREATE TABLE v1 AS SELECT function, number, manifest, digest, created_ms FROM versions;"
        "CREATE TABLE a1 AS SELECT function, alias, version FROM aliases;"
        "DROP TABLE aliases; DROP TABLE versions; DROP TABLE functions;"
        "CREATE TABLE functions (name TEXT PRIMARY KEY, created_ms INTEGER NOT NULL,"
        "  next_version INTEGER NOT NULL, deleted_ms INTEGER);"
        "CREATE TABLE versions (function TEXT NOT NULL REFERENCES functions(name),"
        "  number INTEGER NOT NULL, manifest TEXT NOT NULL, digest TEXT NOT NULL,"
        "  created_ms INTEGER NOT NULL, PRIMARY KEY (function, number));"
        "CREATE TABLE aliases (function TEXT NOT NULL, alias TEXT NOT NULL,"
        "  version INTEGER NOT NULL, PRIMARY KEY (function, alias),"
        "  FOREIGN KEY (function, version) REFERENCES versions(function, number));"
        "INSERT INTO functions SELECT * FROM f1; INSERT INTO versions SELECT * FROM v1;"
        "INSERT INTO aliases SELECT * FROM a1; DROP TABLE f1; DROP TABLE v1; DROP TABLE a1;"
        "PRAGMA user_version = 1;"
        "COMMIT;",
        NULL, NULL, &msg);
    if (rc != SQLITE_OK)
        MXU_TEST_FAIL_("writing schema 1: %s", msg ? msg : "?");
    sqlite3_close(h);

    env_reopen(&t);
    mxu_fn_version *v = mxu_registry_resolve(t.reg, "default", "hello", "prod", &err);
    CHECK(v != NULL);
    CHECK_STR(v->tenant, "default");
    CHECK_EQ_INT(v->version, 1);
    CHECK_STR(v->digest, digest1);
    CHECK_EQ_INT(mxu_registry_resolve(t.reg, "default", "hello", NULL, &err)->version, 2);
    CHECK(mxu_registry_resolve(t.reg, "default", "gone", NULL, &err) == NULL);
    CHECK(exists(v->exe_path));
    /* counters carried over: the tombstone's too */
    CHECK_EQ_INT(deploy_hello(&t, "hello", "3"), 3);
    CHECK_EQ_INT(deploy_hello(&t, "gone", "again"), 2);
    /* the schema is the new one, and foreign keys hold on it */
    CHECK_EQ_INT(sqlite3_open(db, &h), SQLITE_OK);
    sqlite3_stmt *st = NULL;
    CHECK_EQ_INT(sqlite3_prepare_v2(h, "PRAGMA user_version", -1, &st, NULL), SQLITE_OK);
    CHECK_EQ_INT(sqlite3_step(st), SQLITE_ROW);
    CHECK_EQ_INT(sqlite3_column_int(st, 0), 2);
    sqlite3_finalize(st);
    CHECK_EQ_INT(sqlite3_prepare_v2(h, "PRAGMA foreign_key_check", -1, &st, NULL), SQLITE_OK);
    CHECK_EQ_INT(sqlite3_step(st), SQLITE_DONE);
    sqlite3_finalize(st);
    CHECK_EQ_INT(sqlite3_prepare_v2(h, "SELECT count(*) FROM sqlite_master WHERE name LIKE '%_v1'",
                                    -1, &st, NULL),
                 SQLITE_OK);
    CHECK_EQ_INT(sqlite3_step(st), SQLITE_ROW);
    CHECK_EQ_INT(sqlite3_column_int(st, 0), 0);
    sqlite3_finalize(st);
    sqlite3_close(h);
    /* and a reopen does not migrate again */
    env_close_registry(&t);
    env_reopen(&t);
    CHECK_EQ_INT(mxu_registry_resolve(t.reg, "default", "hello", NULL, &err)->version, 3);
    free(digest1);
    env_fini(&t);
}

static void collect(void *ud, mxu_fn_version *v)
{
    char *s = ud;
    size_t n = strlen(s);
    snprintf(s + n, 256 - n, "%s@%u ", v->function, v->version);
}

static void test_json_and_foreach(void)
{
    tenv t;
    env_init(&t);
    deploy_hello(&t, "zeta", "1");
    deploy_hello(&t, "alpha", "1");
    deploy_hello(&t, "alpha", "2");
    deploy_hello(&t, "alpha", "3");
    mxu_err err = {0};
    CHECK_EQ_INT(mxu_registry_set_alias(t.reg, "default", "alpha", "prod", 1, &err), 0);
    CHECK_EQ_INT(mxu_registry_set_alias(t.reg, "default", "alpha", "beta", 1, &err), 0);

    json_t *list = mxu_registry_list_json(t.reg, NULL);
    CHECK_EQ_INT(json_array_size(list), 2);
    json_t *a = json_array_get(list, 0);
    CHECK_STR(json_string_value(json_object_get(a, "name")), "alpha");
    CHECK_EQ_INT(json_integer_value(json_object_get(a, "versions")), 3);
    CHECK_EQ_INT(json_integer_value(json_object_get(a, "latest")), 3);
    const char *created = json_string_value(json_object_get(a, "created"));
    CHECK(created && strlen(created) == 24 && created[10] == 'T' && created[23] == 'Z');
    char *s = json_dumps(json_object_get(a, "aliases"), JSON_COMPACT);
    CHECK_STR(s, "{\"latest\":3,\"beta\":1,\"prod\":1}");
    free(s);
    CHECK_STR(json_string_value(json_object_get(json_array_get(list, 1), "name")), "zeta");
    json_decref(list);

    json_t *f = mxu_registry_function_json(t.reg, "default", "alpha", &err);
    json_t *vs = json_object_get(f, "versions");
    CHECK_EQ_INT(json_array_size(vs), 3);
    json_t *v2 = json_array_get(vs, 1);
    CHECK_EQ_INT(json_integer_value(json_object_get(v2, "version")), 2);
    CHECK_STR(json_string_value(json_object_get(v2, "function")), "alpha");
    CHECK(reg_digest_valid(json_string_value(json_object_get(v2, "digest"))));
    CHECK_STR(json_string_value(json_object_get(json_object_get(v2, "manifest"), "runtime")),
              "exec");
    json_decref(f);

    char seen[256] = "";
    mxu_registry_foreach_aliased(t.reg, collect, seen);
    CHECK_STR(seen, "alpha@1 alpha@3 zeta@1 ");
    env_fini(&t);
}

/* ---- services ---- */

static void deploy_exec_typed(tenv *t, const char *name, const char *in, const char *out)
{
    char yaml[200];
    snprintf(yaml, sizeof(yaml),
             "name: %s\nruntime: exec\ncommand: ./run.sh\ninput: %s\noutput: %s\n", name, in, out);
    mxu_deploy_file files[] = {{"run.sh", 0755, run_sh, strlen(run_sh)}};
    dres d = {0};
    if (deploy_wait(t, yaml, files, 1, &d) != 0)
        MXU_TEST_FAIL_("deploy %s failed: %s", name, d.err.msg);
    free(d.log);
    d.log = NULL;
}

/* Deploy a service (only its manifest); returns the callback's rc, d filled. */
static int deploy_service(tenv *t, const char *yaml, dres *d)
{
    mxu_deploy_file files[] = {{"mxu.yaml", 0644, yaml, strlen(yaml)}};
    return deploy_wait(t, yaml, files, 1, d);
}

static void expect_service_refused(tenv *t, const char *yaml, const char *sub)
{
    dres d = {0};
    CHECK_EQ_INT(deploy_service(t, yaml, &d), -1);
    CHECK_EQ_INT(d.err.code, EINVAL);
    CHECK_CONTAINS(d.err.msg, "fn/mxu.yaml:");
    CHECK_CONTAINS(d.err.msg, sub);
    free(d.log);
    d.log = NULL;
}

static void test_service_deploy_checks(void)
{
    tenv t;
    env_init(&t);
    deploy_exec_typed(&t, "parse", "text", "json");
    deploy_exec_typed(&t, "zip", "any", "binary");
    deploy_exec_typed(&t, "pick", "json", "json");
    deploy_exec_typed(&t, "anyfn", "any", "any");

    /* Unknown function, version, alias: refused naming the line and step. */
    expect_service_refused(&t, "kind: service\nname: s\nsteps: [parse, pikc]\n",
                           "fn/mxu.yaml:3: step pikc: 'pikc': ");
    expect_service_refused(&t, "kind: service\nname: s\nsteps:\n  - parse\n  - pick@7\n",
                           "fn/mxu.yaml:5: step pick: 'pick@7': ");
    expect_service_refused(
        &t, "kind: service\nname: s\nsteps:\n  - {call: parse, fallback: nope}\n", "'nope'");
    expect_service_refused(&t, "kind: service\nname: s\non_error: gone\nsteps: [parse]\n",
                           "fn/mxu.yaml:3: on_error: 'gone'");
    /* Types: binary into a json step; a join of binary; a json switch on binary. */
    expect_service_refused(&t, "kind: service\nname: s\nsteps: [zip, pick]\n",
                           "'pick' takes json input, but what reaches it is binary");
    expect_service_refused(&t, "kind: service\nname: s\nsteps:\n  - parallel: [zip, pick]\n",
                           "branch 'zip' outputs binary");
    expect_service_refused(&t,
                           "kind: service\nname: s\nsteps:\n  - zip\n  - switch: json /a\n"
                           "    cases: [{when: x, steps: []}]\n",
                           "switches on a JSON field, but its input is binary");
    /* json is text; any fits everything; a join is json. */
    dres d = {0};
    CHECK_EQ_INT(deploy_service(&t,
                                "kind: service\nname: ok\nsteps:\n  - parse\n  - parse\n"
                                "  - parallel: [pick, anyfn]\n  - pick\n  - zip\n  - anyfn\n",
                                &d),
                 0);
    CHECK_EQ_INT(d.version, 1);
    free(d.log);
    d.log = NULL;
    mxu_fn_version *v = mxu_registry_resolve(t.reg, "default", "ok", NULL, NULL);
    CHECK(v != NULL && v->manifest->service != NULL);
    CHECK_EQ_INT(v->manifest->service->steps.v[2].out, MXU_CT_JSON);
    CHECK_EQ_INT(v->manifest->service->steps.v[4].out, MXU_CT_BINARY);

    /* Cycles: itself; through another service; a service may call a service. */
    expect_service_refused(&t, "kind: service\nname: loop\nsteps: [parse, loop]\n",
                           "a service cannot call itself");
    CHECK_EQ_INT(deploy_service(&t, "kind: service\nname: outer\nsteps: [ok, parse]\n", &d), 0);
    free(d.log);
    d.log = NULL;
    expect_service_refused(&t, "kind: service\nname: ok\nsteps: [outer]\n",
                           "leads back to this service (ok → outer → ok)");
    /* A second version: versioned like a function, latest moves. */
    CHECK_EQ_INT(deploy_service(&t, "kind: service\nname: ok\nsteps: [parse]\n", &d), 0);
    CHECK_EQ_INT(d.version, 2);
    free(d.log);
    d.log = NULL;

    /* Reopened: the service comes back from its stored text. */
    env_close_registry(&t);
    env_reopen(&t);
    v = mxu_registry_resolve(t.reg, "default", "ok", "1", NULL);
    CHECK(v != NULL && v->manifest->service != NULL);
    CHECK_EQ_INT(v->manifest->service->steps.n, 6);
    CHECK_STR(v->manifest->service->steps.v[2].branches.v[1].id, "anyfn");
    v = mxu_registry_resolve(t.reg, "default", "outer", NULL, NULL);
    CHECK(v != NULL && v->manifest->service != NULL);
    env_fini(&t);
}

/* A service of 1,000 steps each calling a service of 1,000 steps each
 * calling one of 1,000 steps: every service is looked into once, not once
 * per path to it (1e9 resolves, the loop stuck for minutes). */
static void test_service_checks_visit_each_service_once(void)
{
    tenv t;
    env_init(&t);
    deploy_exec_typed(&t, "leaf", "any", "any");
    static const char *const names[][2] = {{"c", "leaf"}, {"b", "c"}, {"a", "b"}};
    for (size_t i = 0; i < MXU_ARRAY_LEN(names); i++) {
        mxu_buf y = {0};
        mxu_buf_printf(&y, "kind: service\nname: %s\nsteps:\n", names[i][0]);
        for (int k = 0; k < 1000; k++)
            mxu_buf_printf(&y, "  - %s\n", names[i][1]);
        uint64_t t0 = mxu_now_ns();
        dres d = {0};
        if (deploy_service(&t, y.data, &d) != 0)
            MXU_TEST_FAIL_("deploy %s: %s", names[i][0], d.err.msg);
        uint64_t ms = (mxu_now_ns() - t0) / 1000000;
        if (ms > 5000)
            MXU_TEST_FAIL_("deploying %s took %llu ms", names[i][0], (unsigned long long)ms);
        free(d.log);
        mxu_buf_free(&y);
    }
    /* a cycle deep down is still found: c -> a */
    mxu_buf y = {0};
    mxu_buf_puts(&y, "kind: service\nname: c\nsteps: [leaf, leaf]\n");
    dres d = {0};
    CHECK_EQ_INT(deploy_service(&t, y.data, &d), 0);
    free(d.log);
    mxu_buf_free(&y);
    expect_service_refused(&t, "kind: service\nname: c\nsteps: [leaf, a]\n",
                           "leads back to this service (c → a → b → c)");
    env_fini(&t);
}

MXU_TESTS(TEST(test_service_deploy_checks), TEST(test_service_checks_visit_each_service_once),
          TEST(test_deploy_and_resolve), TEST(test_unchanged_redeploy), TEST(test_aliases),
          TEST(test_delete_version), TEST(test_delete_function), TEST(test_reopen_keeps_everything),
          TEST(test_open_sweeps_leftovers), TEST(test_c_build),
          TEST(test_build_failure_changes_nothing), TEST(test_build_timeout), TEST(test_fifo),
          TEST(test_deploy_refused_at_once), TEST(test_commit_failure),
          TEST(test_close_cancels_pending), TEST(test_deleted_in_use_keeps_bundle),
          TEST(test_open_refuses_bad_database), TEST(test_json_and_foreach),
          TEST(test_tenants_scope_names), TEST(test_migrate_schema_1))
