/* Unit tests for src/policy: the key text and its hash, scopes, names, the
 * role matrix, and the store (a real state.db in /tmp): keys verify, revoke
 * at once, expire, survive a reopen; the credentials file. */
#include "policy/policy-internal.h"
#include "test.h"

#include <errno.h>
#include <sodium.h>
#include <sys/stat.h>

/* ---- fixtures ---- */

typedef struct penv {
    char dir[64];
    mxu_policy *p;
} penv;

static void penv_open(penv *e)
{
    mxu_err err = {0};
    mxu_policy_config cfg = {.data_dir = e->dir, .auth = true};
    if (mxu_policy_open(&cfg, &e->p, &err) < 0)
        MXU_TEST_FAIL_("open: %s", err.msg);
}

static void penv_init(penv *e)
{
    memset(e, 0, sizeof(*e));
    snprintf(e->dir, sizeof(e->dir), "/tmp/mxu-test-pol-XXXXXX");
    CHECK(mkdtemp(e->dir) != NULL);
    penv_open(e);
}

static void penv_fini(penv *e)
{
    mxu_policy_close(e->p);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", e->dir);
    CHECK_EQ_INT(system(cmd), 0);
}

static char *make_key(penv *e, const char *tenant, enum mxu_role role, const char *scope,
                      uint64_t expires_ms)
{
    mxu_err err = {0};
    char *text = NULL;
    mxu_key_spec spec = {.tenant = tenant, .role = role, .scope = scope, .expires_ms = expires_ms};
    if (mxu_policy_key_create(e->p, &spec, &text, NULL, &err) < 0)
        MXU_TEST_FAIL_("key create: %s", err.msg);
    return text;
}

static int auth(penv *e, const char *key, const mxu_principal **who, mxu_err *err)
{
    char hdr[256];
    snprintf(hdr, sizeof(hdr), "Bearer %s", key);
    return mxu_policy_authenticate(e->p, hdr, who, err);
}

/* ---- pure parts ---- */

static void test_key_parse(void)
{
    char id[MXU_KEY_ID_HEX + 1];
    unsigned char secret[32];
    mxu_err err = {0};
    char good[MXU_KEY_TEXT_LEN + 1];
    snprintf(good, sizeof(good), "mxu_0123456789abcdef_%064d", 7);
    CHECK_EQ_INT(mxu_key_parse(good, id, secret, &err), 0);
    CHECK_STR(id, "0123456789abcdef");
    CHECK_EQ_INT(secret[31], 0x07);
    static const char *const bad[] = {
        "",
        "mxu_",
        "Bearer",
        "mxk_0123456789abcdef_0000000000000000000000000000000000000000000000000000000000000000",
        "mxu_0123456789abcdeF_0000000000000000000000000000000000000000000000000000000000000000",
        "mxu_0123456789abcdef-0000000000000000000000000000000000000000000000000000000000000000",
        "mxu_0123456789abcdef_000000000000000000000000000000000000000000000000000000000000000g",
        "mxu_0123456789abcdef_00000000000000000000000000000000000000000000000000000000000000",
        "mxu_0123456789abcdef_00000000000000000000000000000000000000000000000000000000000000000",
    };
    for (size_t i = 0; i < MXU_ARRAY_LEN(bad); i++) {
        err.code = 0;
        CHECK_EQ_INT(mxu_key_parse(bad[i], id, secret, &err), -1);
        CHECK_EQ_INT(err.code, EINVAL);
        CHECK_CONTAINS(err.msg, "mxu_<16 hex digits>_<64 hex digits>");
    }
    CHECK_EQ_INT(mxu_key_parse(NULL, id, secret, &err), -1);
}

static void test_key_hash(void)
{
    unsigned char s1[32] = {1}, s2[32] = {2}, h1[32], h2[32], h3[32];
    mxu_key_hash("0123456789abcdef", s1, h1);
    mxu_key_hash("0123456789abcdef", s1, h2);
    CHECK(memcmp(h1, h2, 32) == 0);
    mxu_key_hash("0123456789abcdef", s2, h3);
    CHECK(memcmp(h1, h3, 32) != 0);
    /* the id is part of what is hashed */
    mxu_key_hash("fedcba9876543210", s1, h3);
    CHECK(memcmp(h1, h3, 32) != 0);
}

static void test_names_and_scopes(void)
{
    CHECK(mxu_tenant_name_valid("default"));
    CHECK(mxu_tenant_name_valid("acme-2"));
    CHECK(mxu_tenant_name_valid("a"));
    CHECK(mxu_tenant_name_valid("abcdefghijklmnopqrstuvwxyz012345")); /* 32 */
    CHECK(!mxu_tenant_name_valid("abcdefghijklmnopqrstuvwxyz0123456"));
    CHECK(!mxu_tenant_name_valid(""));
    CHECK(!mxu_tenant_name_valid("1abc"));
    CHECK(!mxu_tenant_name_valid("Acme"));
    CHECK(!mxu_tenant_name_valid("ac_me"));
    CHECK(!mxu_tenant_name_valid("acme-"));
    CHECK(!mxu_tenant_name_valid("a.b"));
    CHECK(!mxu_tenant_name_valid(NULL));

    CHECK(mxu_scope_valid("*"));
    CHECK(mxu_scope_valid("web-*"));
    CHECK(mxu_scope_valid("api-[ab]?"));
    CHECK(!mxu_scope_valid(""));
    CHECK(!mxu_scope_valid("a/b"));
    CHECK(!mxu_scope_valid("A*"));
    CHECK(!mxu_scope_valid(NULL));
    CHECK(mxu_scope_match("*", "hello"));
    CHECK(mxu_scope_match("web-*", "web-front"));
    CHECK(!mxu_scope_match("web-*", "api"));
    CHECK(!mxu_scope_match("web-*", "xweb-a"));
    CHECK(mxu_scope_match("api-[ab]", "api-a"));
    CHECK(!mxu_scope_match("api-[ab]", "api-c"));
    CHECK(mxu_scope_match("hello", "hello"));
    CHECK(!mxu_scope_match("hello", "hello2"));

    enum mxu_role r;
    mxu_err err = {0};
    CHECK_EQ_INT(mxu_role_parse("deployer", &r, &err), 0);
    CHECK_EQ_INT(r, MXU_ROLE_DEPLOYER);
    CHECK_STR(mxu_role_name(MXU_ROLE_VIEWER), "viewer");
    CHECK_EQ_INT(mxu_role_parse("root", &r, &err), -1);
    CHECK_CONTAINS(err.msg, "admin, deployer, invoker or viewer");

    uint64_t ms;
    CHECK_EQ_INT(mxu_expiry_parse("30d", &ms, &err), 0);
    CHECK_EQ_U64(ms, 30ull * 86400000);
    CHECK_EQ_INT(mxu_expiry_parse("2s", &ms, &err), 0);
    CHECK_EQ_U64(ms, 2000);
    CHECK_EQ_INT(mxu_expiry_parse("12h", &ms, &err), 0);
    CHECK_EQ_INT(mxu_expiry_parse("0d", &ms, &err), -1);
    CHECK_EQ_INT(mxu_expiry_parse("0s", &ms, &err), -1);
    CHECK_EQ_INT(mxu_expiry_parse("d", &ms, &err), -1);
    CHECK_EQ_INT(mxu_expiry_parse("soon", &ms, &err), -1);
}

/* ---- the role matrix ---- */

static void test_role_matrix(void)
{
    penv e;
    penv_init(&e);
    mxu_err err = {0};
    CHECK_EQ_INT(mxu_policy_tenant_create(e.p, "acme", &err), 0);
    enum mxu_action acts[] = {MXU_ACT_INVOKE, MXU_ACT_FN_READ,   MXU_ACT_FN_WRITE,
                              MXU_ACT_KEYS,   MXU_ACT_NODE_READ, MXU_ACT_NODE_ADMIN};
    /* rows: admin, deployer, invoker, viewer of acme; columns as acts[],
     * on acme's function "web-a" (within every scope below) */
    static const int acme[4][6] = {
        {1, 1, 1, 1, 0, 0},
        {1, 1, 1, 0, 0, 0},
        {1, 0, 0, 0, 0, 0},
        {0, 1, 0, 0, 0, 0},
    };
    /* the same roles in tenant default: only the admin is the node's */
    static const int dflt[4][6] = {
        {1, 1, 1, 1, 1, 1},
        {1, 1, 1, 0, 0, 0},
        {1, 0, 0, 0, 0, 0},
        {0, 1, 0, 0, 1, 0},
    };
    for (int r = 0; r < 4; r++) {
        for (int t = 0; t < 2; t++) {
            const char *tenant = t ? MXU_TENANT_DEFAULT : "acme";
            _cleanup_free_ char *k = make_key(&e, tenant, (enum mxu_role)r, "web-*", 0);
            const mxu_principal *who;
            CHECK_EQ_INT(auth(&e, k, &who, &err), 0);
            for (int a = 0; a < 6; a++) {
                bool fn_act = acts[a] <= MXU_ACT_FN_WRITE;
                int got = mxu_policy_check(who, acts[a], tenant, fn_act ? "web-a" : NULL, &err);
                int want = (t ? dflt : acme)[r][a];
                if ((got == 0) != want)
                    MXU_TEST_FAIL_("role %s of %s, action %d: got %d, want %d (%s)",
                                   mxu_role_name((enum mxu_role)r), tenant, a, got, want, err.msg);
                if (got < 0) {
                    CHECK_EQ_INT(err.code, EACCES);
                    CHECK_CONTAINS(err.msg, mxu_role_name((enum mxu_role)r));
                }
            }
            /* out of scope: denied for everyone but the node admin (whose
             * key here has a scope too, but the node admin is not scoped) */
            int got = mxu_policy_check(who, MXU_ACT_FN_READ, tenant, "api", &err);
            if (r == MXU_ROLE_ADMIN && t == 1) {
                CHECK_EQ_INT(got, 0);
            } else {
                CHECK_EQ_INT(got, -1);
                if (r != MXU_ROLE_INVOKER)
                    CHECK_CONTAINS(err.msg, "outside the scope 'web-*'");
            }
        }
    }
    /* the message names the rule */
    _cleanup_free_ char *inv = make_key(&e, "acme", MXU_ROLE_INVOKER, "*", 0);
    const mxu_principal *who;
    CHECK_EQ_INT(auth(&e, inv, &who, &err), 0);
    CHECK_EQ_INT(mxu_policy_check(who, MXU_ACT_FN_WRITE, "acme", "x", &err), -1);
    CHECK_CONTAINS(err.msg, "role invoker of tenant acme may not deploy functions");
    /* cross-tenant: only the node admin */
    _cleanup_free_ char *adm = make_key(&e, "acme", MXU_ROLE_ADMIN, "*", 0);
    CHECK_EQ_INT(auth(&e, adm, &who, &err), 0);
    CHECK_EQ_INT(mxu_policy_check(who, MXU_ACT_INVOKE, MXU_TENANT_DEFAULT, "x", &err), -1);
    CHECK_CONTAINS(err.msg, "may not act on tenant default");
    CHECK_EQ_INT(mxu_policy_check(NULL, MXU_ACT_INVOKE, "acme", "x", &err), -1);
    penv_fini(&e);
}

/* ---- the store ---- */

static void test_keys_verify_revoke_expire(void)
{
    penv e;
    penv_init(&e);
    mxu_err err = {0};
    const mxu_principal *who;
    _cleanup_free_ char *k = make_key(&e, MXU_TENANT_DEFAULT, MXU_ROLE_DEPLOYER, "web-*", 0);
    CHECK_EQ_INT((int)strlen(k), MXU_KEY_TEXT_LEN);
    CHECK_EQ_INT(auth(&e, k, &who, &err), 0);
    CHECK_STR(mxu_principal_tenant(who), "default");
    CHECK_STR(mxu_principal_scope(who), "web-*");
    CHECK_EQ_INT(mxu_principal_role(who), MXU_ROLE_DEPLOYER);
    CHECK(!mxu_principal_is_node_admin(who));

    /* missing, malformed, unknown, wrong secret */
    CHECK_EQ_INT(mxu_policy_authenticate(e.p, NULL, &who, &err), -1);
    CHECK_EQ_INT(err.code, ENOKEY);
    CHECK_EQ_INT(mxu_policy_authenticate(e.p, "Basic dXNlcjpwdw==", &who, &err), -1);
    CHECK_EQ_INT(err.code, EINVAL);
    CHECK_EQ_INT(mxu_policy_authenticate(e.p, "Bearer", &who, &err), -1);
    CHECK_EQ_INT(err.code, EINVAL);
    CHECK_EQ_INT(mxu_policy_authenticate(e.p, "Bearer mxu_abc", &who, &err), -1);
    CHECK_EQ_INT(err.code, EINVAL);
    char wrong[MXU_KEY_TEXT_LEN + 1];
    snprintf(wrong, sizeof(wrong), "%s", k);
    wrong[MXU_KEY_TEXT_LEN - 1] = wrong[MXU_KEY_TEXT_LEN - 1] == '0' ? '1' : '0';
    CHECK_EQ_INT(auth(&e, wrong, &who, &err), -1);
    CHECK_EQ_INT(err.code, ENOENT);
    wrong[5] = wrong[5] == '0' ? '1' : '0'; /* another id too */
    CHECK_EQ_INT(auth(&e, wrong, &who, &err), -1);
    CHECK_EQ_INT(err.code, ENOENT);
    /* scheme case-insensitive, blanks tolerated */
    char hdr[200];
    snprintf(hdr, sizeof(hdr), "  bearer   %s  ", k);
    CHECK_EQ_INT(mxu_policy_authenticate(e.p, hdr, &who, &err), 0);
    CHECK(mxu_policy_is_key_header(hdr));
    CHECK(!mxu_policy_is_key_header("Bearer abc"));
    CHECK(!mxu_policy_is_key_header(NULL));

    /* revocation takes effect at once */
    char id[MXU_KEY_ID_HEX + 1];
    memcpy(id, k + 4, MXU_KEY_ID_HEX);
    id[MXU_KEY_ID_HEX] = '\0';
    CHECK_STR(mxu_policy_key_tenant(e.p, id), "default");
    CHECK_EQ_INT(mxu_policy_key_revoke(e.p, id, &err), 0);
    CHECK_EQ_INT(auth(&e, k, &who, &err), -1);
    CHECK_EQ_INT(err.code, EKEYREVOKED);
    CHECK_EQ_INT(mxu_policy_key_revoke(e.p, id, &err), 0); /* twice is fine */
    CHECK_EQ_INT(mxu_policy_key_revoke(e.p, "0000000000000000", &err), -1);
    CHECK_EQ_INT(err.code, ENOENT);

    /* expiry */
    _cleanup_free_ char *old =
        make_key(&e, MXU_TENANT_DEFAULT, MXU_ROLE_VIEWER, NULL, mxu_wall_ms() - 1);
    CHECK_EQ_INT(auth(&e, old, &who, &err), -1);
    CHECK_EQ_INT(err.code, EKEYEXPIRED);
    _cleanup_free_ char *later =
        make_key(&e, MXU_TENANT_DEFAULT, MXU_ROLE_VIEWER, NULL, mxu_wall_ms() + 3600000);
    CHECK_EQ_INT(auth(&e, later, &who, &err), 0);

    /* listings never hold a secret or hash */
    json_t *keys = mxu_policy_keys_json(e.p, NULL);
    CHECK_EQ_INT(json_array_size(keys), 3);
    char *s = json_dumps(keys, 0);
    CHECK(strstr(s, k + 4 + MXU_KEY_ID_HEX + 1) == NULL);
    CHECK_CONTAINS(s, "\"revoked\"");
    CHECK_CONTAINS(s, "\"expired\"");
    free(s);
    json_decref(keys);

    /* everything survives a reopen */
    mxu_policy_close(e.p);
    penv_open(&e);
    CHECK_EQ_INT(auth(&e, k, &who, &err), -1);
    CHECK_EQ_INT(err.code, EKEYREVOKED);
    CHECK_EQ_INT(auth(&e, later, &who, &err), 0);
    CHECK_STR(mxu_principal_role(who) == MXU_ROLE_VIEWER ? "viewer" : "?", "viewer");
    penv_fini(&e);
}

static void test_tenants(void)
{
    penv e;
    penv_init(&e);
    mxu_err err = {0};
    CHECK(mxu_policy_tenant_exists(e.p, "default"));
    CHECK_EQ_INT(mxu_policy_tenant_create(e.p, "acme", &err), 0);
    CHECK_EQ_INT(mxu_policy_tenant_create(e.p, "acme", &err), -1);
    CHECK_EQ_INT(err.code, EEXIST);
    CHECK_EQ_INT(mxu_policy_tenant_create(e.p, "Bad", &err), -1);
    CHECK_EQ_INT(err.code, EINVAL);
    _cleanup_free_ char *k = make_key(&e, "acme", MXU_ROLE_ADMIN, NULL, 0);
    char *none = NULL;
    mxu_key_spec spec = {.tenant = "nope", .role = MXU_ROLE_ADMIN};
    CHECK_EQ_INT(mxu_policy_key_create(e.p, &spec, &none, NULL, &err), -1);
    CHECK_EQ_INT(err.code, ENOENT);
    spec = (mxu_key_spec){.tenant = "acme", .role = MXU_ROLE_ADMIN, .scope = "a/b"};
    CHECK_EQ_INT(mxu_policy_key_create(e.p, &spec, &none, NULL, &err), -1);
    CHECK_EQ_INT(err.code, EINVAL);
    json_t *ts = mxu_policy_tenants_json(e.p);
    CHECK_EQ_INT(json_array_size(ts), 2);
    CHECK_STR(json_string_value(json_object_get(json_array_get(ts, 0), "name")), "acme");
    CHECK_EQ_INT(json_integer_value(json_object_get(json_array_get(ts, 0), "keys")), 1);
    json_decref(ts);
    /* deleting a tenant revokes its keys */
    CHECK_EQ_INT(mxu_policy_tenant_delete(e.p, "default", &err), -1);
    CHECK_EQ_INT(err.code, EPERM);
    CHECK_EQ_INT(mxu_policy_tenant_delete(e.p, "acme", &err), 0);
    const mxu_principal *who;
    CHECK_EQ_INT(auth(&e, k, &who, &err), -1);
    CHECK_EQ_INT(err.code, EKEYREVOKED);
    CHECK_EQ_INT(mxu_policy_tenant_delete(e.p, "acme", &err), -1);
    CHECK_EQ_INT(err.code, ENOENT);
    mxu_policy_close(e.p);
    penv_open(&e);
    CHECK(!mxu_policy_tenant_exists(e.p, "acme"));
    penv_fini(&e);
}

static void test_auth_off_and_bootstrap(void)
{
    penv e;
    penv_init(&e);
    mxu_err err = {0};
    /* bootstrap: admin.key 0600, credentials written for the URL */
    char cfg[128], keyfile[128], creds[160];
    snprintf(cfg, sizeof(cfg), "%s/cfg", e.dir);
    setenv("XDG_CONFIG_HOME", cfg, 1);
    CHECK_EQ_INT(mxu_policy_bootstrap(e.p, "http://127.0.0.1:1234", &err), 0);
    snprintf(keyfile, sizeof(keyfile), "%s/admin.key", e.dir);
    struct stat st;
    CHECK_EQ_INT(stat(keyfile, &st), 0);
    CHECK_EQ_INT(st.st_mode & 0777, 0600);
    snprintf(creds, sizeof(creds), "%s/mxu/credentials", cfg);
    CHECK_EQ_INT(stat(creds, &st), 0);
    CHECK_EQ_INT(st.st_mode & 0777, 0600);
    _cleanup_free_ char *path = mxu_credentials_path();
    CHECK_STR(path, creds);
    _cleanup_free_ char *key = mxu_credentials_lookup(creds, "http://127.0.0.1:1234/");
    CHECK(key != NULL);
    const mxu_principal *who;
    CHECK_EQ_INT(auth(&e, key, &who, &err), 0);
    CHECK(mxu_principal_is_node_admin(who));
    /* a second start makes no second key */
    CHECK_EQ_INT(mxu_policy_bootstrap(e.p, "http://127.0.0.1:9999", &err), 0);
    json_t *keys = mxu_policy_keys_json(e.p, NULL);
    CHECK_EQ_INT(json_array_size(keys), 1);
    json_decref(keys);
    _cleanup_free_ char *k2 = mxu_credentials_lookup(creds, "http://127.0.0.1:9999");
    CHECK_STR(k2, key);
    /* other lines are kept, the node's line replaced */
    CHECK_EQ_INT(mxu_credentials_store(creds, "http://other:1", "mxu_x", &err), 0);
    CHECK_EQ_INT(mxu_credentials_store(creds, "http://127.0.0.1:1234", "mxu_y", &err), 0);
    _cleanup_free_ char *o = mxu_credentials_lookup(creds, "http://other:1");
    CHECK_STR(o, "mxu_x");
    _cleanup_free_ char *y = mxu_credentials_lookup(creds, "http://127.0.0.1:1234");
    CHECK_STR(y, "mxu_y");
    _cleanup_free_ char *none = mxu_credentials_lookup(creds, "http://127.0.0.1:12345");
    CHECK(none == NULL);
    mxu_policy_close(e.p);

    /* auth off: everyone is the node admin */
    mxu_policy_config off = {.data_dir = e.dir, .auth = false};
    CHECK_EQ_INT(mxu_policy_open(&off, &e.p, &err), 0);
    CHECK_EQ_INT(mxu_policy_authenticate(e.p, NULL, &who, &err), 0);
    CHECK(mxu_principal_is_node_admin(who));
    CHECK_EQ_INT(mxu_policy_authenticate(e.p, "garbage", &who, &err), 0);
    penv_fini(&e);
}

MXU_TESTS(TEST(test_key_parse), TEST(test_key_hash), TEST(test_names_and_scopes),
          TEST(test_role_matrix), TEST(test_keys_verify_revoke_expire), TEST(test_tenants),
          TEST(test_auth_off_and_bootstrap))
