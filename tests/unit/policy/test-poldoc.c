/* Unit tests for policy documents and link rules (src/policy/policy-doc.c,
 * policy-links.c): parsing, the canonical form and its round trip,
 * validation errors with their line and field, tenants' documents kept
 * inside their tenant, the evaluation order (deny beats allow, defaults),
 * the compiled lookup (exact names, name globs, tenant globs; 10,000 rules),
 * versions kept across a reopen, and the line diff. */
#include "policy/policy-internal.h"
#include "test.h"

#include <errno.h>

typedef struct penv {
    char dir[64];
    mxu_policy *p;
} penv;

static void penv_init(penv *e)
{
    memset(e, 0, sizeof(*e));
    snprintf(e->dir, sizeof(e->dir), "/tmp/mxu-test-poldoc-XXXXXX");
    CHECK(mkdtemp(e->dir) != NULL);
    mxu_err err = {0};
    mxu_policy_config cfg = {.data_dir = e->dir, .auth = true};
    if (mxu_policy_open(&cfg, &e->p, &err) < 0)
        MXU_TEST_FAIL_("open: %s", err.msg);
}

static void penv_fini(penv *e)
{
    mxu_policy_close(e->p);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", e->dir);
    CHECK_EQ_INT(system(cmd), 0);
}

static mxu_poldoc *parse_ok(const char *text, const char *tenant)
{
    mxu_poldoc *d = NULL;
    mxu_err err = {0};
    if (mxu_poldoc_parse(text, strlen(text), "p.yaml", tenant, &d, &err) < 0)
        MXU_TEST_FAIL_("parse: %s", err.msg);
    return d;
}

static void parse_bad(const char *text, const char *tenant, const char *want)
{
    mxu_poldoc *d = NULL;
    mxu_err err = {0};
    if (mxu_poldoc_parse(text, strlen(text), "p.yaml", tenant, &d, &err) == 0)
        MXU_TEST_FAIL_("parsed, wanted an error with \"%s\":\n%s", want, text);
    CHECK_EQ_INT(err.code, EINVAL);
    CHECK_CONTAINS(err.msg, want);
}

static void apply(penv *e, const char *tenant, const char *text)
{
    mxu_err err = {0};
    if (mxu_policy_doc_apply(e->p, tenant, text, strlen(text), "p.yaml", "test", NULL, &err) < 0)
        MXU_TEST_FAIL_("apply: %s", err.msg);
}

static const char DOC[] = "rules:\n"
                          "  - deny: client->function\n"
                          "    from: {tenant: acme, role: invoker}\n"
                          "    to: admin-*\n"
                          "  - allow: unit->unit\n"
                          "    from: acme/orders\n"
                          "    to: resize\n"
                          "  - deny: unit->resource\n"
                          "    from: payments\n"
                          "    to: kv:orders\n"
                          "    ops: [put]\n"
                          "    note: \"say \\\"why\\\"\"\n";

static void test_parse_and_canonical(void)
{
    mxu_poldoc *d = parse_ok(DOC, NULL);
    CHECK_EQ_INT(mxu_poldoc_nrules(d), 3);
    CHECK_STR(d->rules[0].c_tenant, "acme");
    CHECK_STR(d->rules[0].c_role, "invoker");
    CHECK_STR(d->rules[0].to_tenant, "default"); /* implied in the node's document */
    CHECK_STR(d->rules[1].from_tenant, "acme");
    CHECK_STR(d->rules[1].from_name, "orders");
    CHECK_STR(d->rules[2].res_kind, "kv");
    CHECK_EQ_INT(d->rules[2].ops, 1u << 1); /* put */
    CHECK_STR(d->rules[2].text, "deny unit->resource payments -> kv:orders put");
    CHECK_STR(d->rules[1].text, "allow unit->unit acme/orders -> resize");
    CHECK_EQ_INT(d->rules[2].line, 8);
    char *c = mxu_poldoc_canonical(d);
    CHECK_STR(c, "# mxu policy, canonical form: node\n"
                 "rules:\n"
                 "  - {deny: client->function, from: {tenant: \"acme\", role: \"invoker\"}, "
                 "to: \"admin-*\"}\n"
                 "  - {allow: unit->unit, from: \"acme/orders\", to: \"resize\"}\n"
                 "  - {deny: unit->resource, from: \"payments\", to: \"kv:orders\", ops: [put], "
                 "note: \"say \\\"why\\\"\"}\n");
    /* the canonical form parses back to itself */
    mxu_poldoc *d2 = parse_ok(c, NULL);
    char *c2 = mxu_poldoc_canonical(d2);
    CHECK_STR(c2, c);
    free(c);
    free(c2);
    mxu_poldoc_free(d);
    mxu_poldoc_free(d2);
    /* an empty document; ops "*" and every op are the same rule */
    d = parse_ok("rules: []\n", "acme");
    CHECK_EQ_INT(mxu_poldoc_nrules(d), 0);
    c = mxu_poldoc_canonical(d);
    CHECK_STR(c, "# mxu policy, canonical form: tenant acme\nrules: []\n");
    free(c);
    mxu_poldoc_free(d);
    d = parse_ok("rules:\n- {deny: unit->resource, from: x, to: \"queue:q\", ops: \"*\"}\n"
                 "- {deny: unit->resource, from: x, to: \"queue:q\", ops: [ack, publish, "
                 "consume]}\n",
                 NULL);
    CHECK_EQ_INT(d->rules[0].ops, 7);
    CHECK_EQ_INT(d->rules[1].ops, 7);
    CHECK_STR(d->rules[1].text, "deny unit->resource x -> queue:q");
    mxu_poldoc_free(d);
}

static void test_validation_errors(void)
{
    parse_bad("rules:\n  - deny: client->unit\n    from: x\n    to: y\n", NULL,
              "p.yaml:2: rules[1].deny: 'client->unit' is not a link kind");
    parse_bad("rules:\n  - allow: unit->unit\n    from: x\n    to: \"a[b\"\n", NULL,
              "p.yaml:4: rules[1].to: 'a[b': the name has a '[' that is never closed");
    parse_bad("rules:\n  - deny: unit->resource\n    from: x\n    to: blob:b\n    ops: [get]\n",
              NULL,
              "p.yaml:5: rules[1].ops: 'get' is not an operation on blob resources (read, "
              "write, stat, list, delete)");
    parse_bad("rules:\n  - deny: unit->unit\n    from: x\n    to: y\n    bogus: 1\n", NULL,
              "p.yaml:5: rules[1]: unknown field 'bogus'");
    parse_bad("version: 2\nrules: []\n", NULL, "p.yaml:1: unknown field 'version'");
    parse_bad("rules:\n  - deny: unit->unit\n    allow: unit->unit\n    from: x\n    to: y\n", NULL,
              "exactly one of allow: or deny:");
    parse_bad("rules:\n  - deny: unit->unit\n    from: x\n    to: kv:y\n", NULL,
              "rules[1].to: 'kv:y': unit->unit rules name a function");
    parse_bad("rules:\n  - deny: unit->resource\n    from: x\n    to: svc:y\n", NULL,
              "unknown resource kind 'svc'");
    parse_bad("rules:\n  - deny: unit->unit\n    from: x\n    to: y\n    ops: [get]\n", NULL,
              "rules[1].ops: only unit->resource rules have operations");
    parse_bad("rules:\n  - deny: client->function\n    from: {role: boss}\n    to: y\n", NULL,
              "p.yaml:3: rules[1].from.role: 'boss' is not a role");
    parse_bad("rules:\n  - deny: client->function\n    from: {key: xyz}\n    to: y\n", NULL,
              "rules[1].from.key: 'xyz' has a character");
    parse_bad("rules:\n  - deny: unit->unit\n    from: \"x]\"\n    to: y\n", NULL,
              "without its '['");
    parse_bad("rules:\n  - deny: unit->unit\n    from: x\n", NULL, "rules[1].to: is required");
    parse_bad("rules: {a: b}\n", NULL, "p.yaml:1: rules: expected a list of rules");
    parse_bad("", NULL, "p.yaml:1: the document is empty");
    parse_bad("rules: []\n---\nrules: []\n", NULL, "one YAML document");
    parse_bad("rules: [\n", NULL, "p.yaml:2:");
    parse_bad("rules:\n  - \xff\n", NULL, "p.yaml:2: the file is not valid UTF-8");
    /* a tenant's document stays inside the tenant */
    parse_bad("rules:\n  - allow: unit->unit\n    from: store\n    to: other/probe\n", "acme",
              "p.yaml:4: rules[1].to: 'other/probe' names tenant other: rules of tenant acme's "
              "document stay inside tenant acme");
    parse_bad("rules:\n  - deny: unit->resource\n    from: \"*/x\"\n    to: kv:y\n", "acme",
              "rules[1].from: '*/x' names tenant *");
    parse_bad("rules:\n  - allow: client->function\n    from: {tenant: beta}\n    to: y\n", "acme",
              "rules[1].from.tenant: 'beta'");
    mxu_poldoc *d = parse_ok("rules:\n  - deny: unit->unit\n    from: acme/x\n    to: y\n", "acme");
    CHECK_STR(d->rules[0].to_tenant, "acme");
    mxu_poldoc_free(d);
}

static mxu_policy_link unit_link(const char *ft, const char *ff, const char *tt, const char *tn)
{
    return (mxu_policy_link){
        .kind = MXU_LINK_UNIT, .from_tenant = ft, .from_fn = ff, .to_tenant = tt, .to_name = tn};
}

static void test_evaluation_order(void)
{
    penv e;
    penv_init(&e);
    mxu_err err = {0};
    mxu_policy_tenant_create(e.p, "acme", &err);
    mxu_policy_tenant_create(e.p, "beta", &err);
    mxu_policy_link l = unit_link("acme", "orders", "default", "resize");
    bool by_rule;
    /* no rules: the default */
    CHECK(!mxu_policy_has_link_rules(e.p, MXU_LINK_UNIT));
    CHECK_EQ_INT(mxu_policy_link_check(e.p, &l, true, &by_rule, &err), 0);
    CHECK(!by_rule);
    CHECK_EQ_INT(mxu_policy_link_check(e.p, &l, false, &by_rule, &err), -1);
    CHECK_EQ_INT(err.code, EACCES);
    CHECK_CONTAINS(err.msg, "no policy rule allows unit->unit acme/orders -> default/resize");
    /* an allow opens it */
    apply(&e, NULL, "rules:\n  - allow: unit->unit\n    from: acme/orders\n    to: resize\n");
    CHECK_EQ_INT(mxu_policy_link_check(e.p, &l, false, &by_rule, &err), 0);
    CHECK(by_rule);
    /* a deny beats it, before or after it in the document */
    apply(&e, NULL,
          "rules:\n  - allow: unit->unit\n    from: acme/orders\n    to: resize\n"
          "  - deny: unit->unit\n    from: \"*/ord*\"\n    to: \"*\"\n");
    CHECK_EQ_INT(mxu_policy_link_check(e.p, &l, true, NULL, &err), -1);
    CHECK_STR(err.msg, "policy v2 rule 2 (deny unit->unit */ord* -> *)");
    /* the first matching deny is the one named */
    apply(&e, NULL,
          "rules:\n  - deny: unit->unit\n    from: \"*/x\"\n    to: \"*/*\"\n"
          "  - deny: unit->unit\n    from: \"acme/*\"\n    to: \"re*\"\n"
          "  - deny: unit->unit\n    from: acme/orders\n    to: resize\n");
    CHECK_EQ_INT(mxu_policy_link_check(e.p, &l, true, NULL, &err), -1);
    CHECK_STR(err.msg, "policy v3 rule 2 (deny unit->unit acme/* -> re*)");
    /* a tenant's allow never opens a cross-tenant link; its deny narrows
     * links inside it; the node's deny beats the tenant's allow */
    apply(&e, NULL, "rules: []\n");
    apply(&e, "acme", "rules:\n  - allow: unit->unit\n    from: \"*\"\n    to: \"*\"\n");
    mxu_policy_link in = unit_link("acme", "orders", "acme", "resize");
    CHECK_EQ_INT(mxu_policy_link_check(e.p, &in, true, &by_rule, &err), 0);
    CHECK(by_rule);
    mxu_policy_link from_beta = unit_link("beta", "orders", "acme", "resize");
    CHECK_EQ_INT(mxu_policy_link_check(e.p, &from_beta, false, &by_rule, &err), -1);
    apply(&e, "acme", "rules:\n  - deny: unit->unit\n    from: orders\n    to: resize\n");
    CHECK_EQ_INT(mxu_policy_link_check(e.p, &in, true, NULL, &err), -1);
    CHECK_STR(err.msg, "policy v2 (tenant acme) rule 1 (deny unit->unit orders -> resize)");
    mxu_policy_link other = unit_link("acme", "billing", "acme", "resize");
    CHECK_EQ_INT(mxu_policy_link_check(e.p, &other, true, NULL, &err), 0);
    /* resources: by kind and operation */
    apply(&e, NULL,
          "rules:\n  - deny: unit->resource\n    from: \"acme/*\"\n    to: kv:acme/orders\n"
          "    ops: [put, delete]\n"
          "  - allow: unit->resource\n    from: acme/orders\n    to: blob:img-*\n"
          "    ops: [read]\n");
    mxu_policy_link r = {.kind = MXU_LINK_RESOURCE,
                         .from_tenant = "acme",
                         .from_fn = "orders",
                         .to_tenant = "acme",
                         .to_name = "orders",
                         .res_kind = "kv",
                         .op = "put"};
    CHECK_EQ_INT(mxu_policy_link_check(e.p, &r, true, NULL, &err), -1);
    CHECK_STR(err.msg, "policy v5 rule 1 (deny unit->resource acme/* -> kv:acme/orders "
                       "put,delete)");
    r.op = "get";
    CHECK_EQ_INT(mxu_policy_link_check(e.p, &r, true, NULL, &err), 0);
    r.res_kind = "blob"; /* blob:orders is another resource */
    r.op = "delete";
    CHECK_EQ_INT(mxu_policy_link_check(e.p, &r, true, NULL, &err), 0);
    mxu_policy_link img = {.kind = MXU_LINK_RESOURCE,
                           .from_tenant = "acme",
                           .from_fn = "orders",
                           .to_tenant = "default",
                           .to_name = "img-1",
                           .res_kind = "blob",
                           .op = "read"};
    CHECK_EQ_INT(mxu_policy_link_check(e.p, &img, false, &by_rule, &err), 0);
    CHECK(by_rule);
    img.op = "write";
    CHECK_EQ_INT(mxu_policy_link_check(e.p, &img, false, NULL, &err), -1);
    CHECK_CONTAINS(err.msg, "no policy rule allows unit->resource acme/orders -> "
                            "blob:default/img-1 write");
    /* clients: by tenant, role and key; a request without a key matches
     * only rules about anyone */
    char *text = NULL;
    mxu_key_spec spec = {.tenant = "acme", .role = MXU_ROLE_INVOKER};
    CHECK_EQ_INT(mxu_policy_key_create(e.p, &spec, &text, NULL, &err), 0);
    char hdr[200];
    snprintf(hdr, sizeof(hdr), "Bearer %s", text);
    free(text);
    const mxu_principal *who;
    CHECK_EQ_INT(mxu_policy_authenticate(e.p, hdr, &who, &err), 0);
    apply(&e, NULL,
          "rules:\n  - deny: client->function\n    from: {tenant: acme, role: invoker}\n"
          "    to: \"*/admin-*\"\n  - deny: client->function\n    from: \"*\"\n    to: secret\n");
    mxu_policy_link c = {
        .kind = MXU_LINK_CLIENT, .who = who, .to_tenant = "acme", .to_name = "admin-x"};
    CHECK_EQ_INT(mxu_policy_link_check(e.p, &c, true, NULL, &err), -1);
    CHECK_CONTAINS(err.msg, "rule 1 (deny client->function {tenant: acme, role: invoker}");
    c.who = NULL;
    CHECK_EQ_INT(mxu_policy_link_check(e.p, &c, true, NULL, &err), 0);
    c.to_tenant = "default";
    c.to_name = "secret";
    CHECK_EQ_INT(mxu_policy_link_check(e.p, &c, true, NULL, &err), -1);
    CHECK_CONTAINS(err.msg, "rule 2 (deny client->function \"*\" -> secret)");
    /* versions survive a reopen, the latest in force; a tenant's go with it */
    mxu_policy_close(e.p);
    mxu_policy_config cfg = {.data_dir = e.dir, .auth = true};
    CHECK_EQ_INT(mxu_policy_open(&cfg, &e.p, &err), 0);
    CHECK_EQ_INT(mxu_policy_link_check(e.p, &c, true, NULL, &err), -1);
    CHECK_CONTAINS(err.msg, "policy v6 rule 2");
    CHECK_EQ_INT(mxu_policy_link_check(e.p, &in, true, NULL, &err), -1);
    json_t *vs = mxu_policy_docs_json(e.p, "acme", false);
    CHECK_EQ_INT(json_array_size(vs), 2);
    json_decref(vs);
    CHECK_EQ_INT(mxu_policy_tenant_delete(e.p, "acme", &err), 0);
    CHECK_EQ_INT(mxu_policy_link_check(e.p, &in, true, NULL, &err), 0);
    vs = mxu_policy_docs_json(e.p, NULL, true);
    CHECK_EQ_INT(json_array_size(vs), 6);
    json_decref(vs);
    /* a bad document changes nothing */
    CHECK_EQ_INT(mxu_policy_doc_apply(e.p, NULL, "rules: [x]\n", 11, "p.yaml", "t", NULL, &err),
                 -1);
    CHECK_CONTAINS(err.msg, "p.yaml:1: rules[1]: a rule is a mapping");
    CHECK_EQ_INT(mxu_policy_link_check(e.p, &c, true, NULL, &err), -1);
    CHECK_CONTAINS(err.msg, "policy v6 rule 2");
    penv_fini(&e);
}

static void test_compiled_lookup_many_rules(void)
{
    penv e;
    penv_init(&e);
    mxu_err err = {0};
    /* 10,000 rules: exact targets, name globs and a tenant glob */
    mxu_buf doc = {0};
    mxu_buf_puts(&doc, "rules:\n");
    for (int i = 0; i < 9990; i++)
        mxu_buf_printf(&doc,
                       "- {deny: unit->resource, from: \"fn-%d\", to: \"kv:store-%d\", "
                       "ops: [put]}\n",
                       i, i);
    for (int i = 0; i < 9; i++)
        mxu_buf_printf(&doc, "- {allow: unit->unit, from: \"t%d/*\", to: \"api-%d*\"}\n", i, i);
    mxu_buf_puts(&doc, "- {deny: unit->unit, from: \"*/evil\", to: \"*/*\"}\n");
    CHECK_EQ_INT(mxu_policy_doc_apply(e.p, NULL, doc.data, doc.len, "big.yaml", "t", NULL, &err),
                 0);
    mxu_buf_free(&doc);
    mxu_policy_link r = {.kind = MXU_LINK_RESOURCE,
                         .from_tenant = "default",
                         .from_fn = "fn-4321",
                         .to_tenant = "default",
                         .to_name = "store-4321",
                         .res_kind = "kv",
                         .op = "put"};
    CHECK_EQ_INT(mxu_policy_link_check(e.p, &r, true, NULL, &err), -1);
    CHECK_STR(err.msg, "policy v1 rule 4322 (deny unit->resource fn-4321 -> kv:store-4321 put)");
    r.from_fn = "fn-4320"; /* another caller of the same store */
    CHECK_EQ_INT(mxu_policy_link_check(e.p, &r, true, NULL, &err), 0);
    r.op = "get";
    r.from_fn = "fn-4321";
    CHECK_EQ_INT(mxu_policy_link_check(e.p, &r, true, NULL, &err), 0);
    bool by_rule;
    mxu_policy_link u = unit_link("t3", "x", "default", "api-3-orders");
    CHECK_EQ_INT(mxu_policy_link_check(e.p, &u, false, &by_rule, &err), 0);
    CHECK(by_rule);
    u.to_name = "api-4-orders";
    CHECK_EQ_INT(mxu_policy_link_check(e.p, &u, false, NULL, &err), -1);
    u.from_fn = "evil";
    u.to_name = "api-3-orders";
    CHECK_EQ_INT(mxu_policy_link_check(e.p, &u, false, NULL, &err), -1);
    CHECK_CONTAINS(err.msg, "rule 10000 (deny unit->unit */evil -> */*)");
    penv_fini(&e);
}

static void test_diff(void)
{
    char *d = mxu_text_diff("a\nb\nc\n", "a\nb\nc\n", "x", "y");
    CHECK_STR(d, "");
    free(d);
    d = mxu_text_diff("a\nb\nc\nd\ne\nf\ng\nh\ni\nj\n", "a\nb\nc\nd\nE\nf\ng\nh\ni\nj\nk\n",
                      "policy v1", "policy v2");
    CHECK_STR(d, "--- policy v1\n+++ policy v2\n"
                 "@@ -2,9 +2,10 @@\n b\n c\n d\n-e\n+E\n f\n g\n h\n i\n j\n+k\n");
    free(d);
    d = mxu_text_diff("", "x\n", "a", "b");
    CHECK_STR(d, "--- a\n+++ b\n@@ -0,0 +1,1 @@\n+x\n");
    free(d);
    d = mxu_text_diff("1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n11\n12\n",
                      "0\n2\n3\n4\n5\n6\n7\n8\n9\n10\n11\n", "a", "b");
    CHECK_STR(d, "--- a\n+++ b\n@@ -1,4 +1,4 @@\n-1\n+0\n 2\n 3\n 4\n"
                 "@@ -9,4 +9,3 @@\n 9\n 10\n 11\n-12\n");
    free(d);
}

MXU_TESTS(TEST(test_parse_and_canonical), TEST(test_validation_errors), TEST(test_evaluation_order),
          TEST(test_compiled_lookup_many_rules), TEST(test_diff))
