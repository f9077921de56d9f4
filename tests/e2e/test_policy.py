"""Policy documents and link rules (docs/policy.md, "Policy documents"):
apply, list, show and diff, every apply a kept version; bad documents give
file:line:field errors and change nothing; who may apply what; client ->
function deny and cross-tenant allow; unit -> unit deny within a tenant,
cross-tenant denied by default and allowed by a rule; unit -> resource
narrowing a manifest's access, cross-tenant resources denied by default and
allowed by a rule; every denial names its rule and is in the logs and, for
invocations, in the usage records."""
import json
import os
import shutil
import tempfile
import time

from harness import FUNCTIONS, Node, check, eq, make_function

EXEC = """name: {name}
runtime: exec
command: ./run.sh
memory: 32Mi
"""


def say(n, tmp, name, text, key=None):
    d = make_function(os.path.join(tmp, name + (key or "")[:12]), name, EXEC.format(name=name),
                      {"run.sh": (f"#!/bin/sh\necho '{text}'\n", 0o755)})
    p = n.cli("deploy", d, "--json", key=key)
    eq(p.returncode, 0, p.stderr)


def key_of(n, tenant, role):
    r = n.post("/v1/keys", body={"role": role, "tenant": tenant})
    eq(r.status, 201, r.body)
    return r.json()["key"]


def write(tmp, name, text):
    path = os.path.join(tmp, name)
    with open(path, "w") as f:
        f.write(text)
    return path


def apply(n, tmp, text, key=None, tenant=None, rc=0):
    args = ["policy", "apply", write(tmp, "policy.yaml", text)]
    if tenant:
        args += ["--tenant", tenant]
    return n.cli(*args, key=key, check_rc=rc)


def forbidden(r, *words):
    eq(r.status, 403, f"wanted 403: {r.body!r}")
    for w in words:
        check(w in r.text, f"{w!r} not in {r.text!r}")


def store_copy(tmp, extra, sub):
    d = os.path.join(tmp, sub, "store")
    shutil.copytree(os.path.join(FUNCTIONS, "store"), d)
    with open(os.path.join(d, "mxu.yaml"), "a") as f:
        f.write(extra)
    return d


def logs_text(n, fn, key=None):
    recs = n.get(f"/v1/functions/{fn}/logs", key=key).json()["records"]
    return "\n".join(r["text"] for r in recs)


def usage(n, fn, tenant="default"):
    return n.get(f"/v1/usage?function={fn}&tenant={tenant}&limit=1000").json()["records"]


V1 = """# the first version
rules:
  - deny: client->function
    from: {role: invoker}
    to: "admin-*"
"""
V2 = V1 + """  - deny: unit->resource
    from: store
    to: kv:orders
    ops: [put, delete]
    note: read-only here
"""


def test_apply_list_show_diff():
    with Node() as n, tempfile.TemporaryDirectory() as tmp:
        # nothing applied: version 0, no rules
        j = n.get("/v1/policy").json()
        eq((j["version"], j["rules"]), (0, 0))
        p = apply(n, tmp, V1)
        check(b"applied policy v1: 1 rules" in p.stdout, p.stdout)
        check(b"+  - {deny: client->function" in p.stdout, p.stdout)
        p = apply(n, tmp, V2)
        check(b"applied policy v2: 2 rules" in p.stdout, p.stdout)
        # ls, show, diff (CLI and API)
        p = n.cli("policy", "ls", check_rc=0)
        lines = p.stdout.decode().splitlines()
        eq(len(lines), 3, p.stdout)
        check(lines[2].split()[0] == "2" and lines[2].rstrip().endswith("yes"), lines)
        vers = n.get("/v1/policies").json()["versions"]
        eq([(v["version"], v["rules"], v["active"]) for v in vers], [(1, 1, False), (2, 2, True)])
        p = n.cli("policy", "show", check_rc=0)
        check(b'- {deny: unit->resource, from: "store", to: "kv:orders", ops: [put, delete], '
              b'note: "read-only here"}' in p.stdout, p.stdout)
        p = n.cli("policy", "show", "1", check_rc=0)
        check(b"unit->resource" not in p.stdout, p.stdout)
        j = n.get("/v1/policies/1").json()
        eq((j["version"], j["rules"], j["document"]), (1, 1, V1))
        p = n.cli("policy", "diff", "1", "2", check_rc=0)
        out = p.stdout.decode()
        check(out.startswith("--- policy v1\n+++ policy v2\n@@ "), out)
        check("\n+  - {deny: unit->resource" in out and "\n-" not in out.split("@@", 2)[2], out)
        eq(n.get("/v1/policies/2/diff/1").json()["diff"].count("\n-  - {deny: unit->resource"), 1)
        eq(n.get("/v1/policies/1/diff/1").json()["diff"], "")
        eq(n.get("/v1/policies/9").status, 404)
        # the canonical form applies back to the same rules
        canon = n.get("/v1/policy").json()["canonical"]
        r = n.request("PUT", "/v1/policy", body=canon.encode())
        eq(r.status, 201, r.body)
        eq(r.json()["diff"], "")
        eq(r.json()["version"], 3)
        # POST /v1/policies with JSON
        r = n.post("/v1/policies", body={"document": "rules: []\n", "file": "empty.yaml"})
        eq((r.status, r.json()["version"], r.json()["rules"]), (201, 4, 0))
        # kept across a restart, the latest in force
        n.stop()
        n.start()
        eq(n.get("/v1/policy").json()["version"], 4)
        eq(len(n.get("/v1/policies").json()["versions"]), 4)


BAD = [
    ("rules:\n  - deny: client->unit\n    from: \"*\"\n    to: x\n", ":2: rules[1].deny:",
     "'client->unit' is not a link kind"),
    ("rules:\n  - allow: unit->unit\n    from: store\n    to: \"pro[be\"\n", ":4: rules[1].to:",
     "never closed"),
    ("rules:\n  - deny: unit->resource\n    from: store\n    to: kv:orders\n    ops: [push]\n",
     ":5: rules[1].ops:", "'push' is not an operation on kv resources (get, put, delete, list, cas)"),
    ("rules:\n  - deny: unit->unit\n    from: store\n    to: probe\n    whom: x\n",
     ":5: rules[1]:", "unknown field 'whom'"),
    ("rule: []\n", ":1:", "did you mean 'rules'"),
    ("rules:\n  - deny: unit->resource\n    from: Store\n    to: kv:orders\n",
     ":3: rules[1].from:", "not in a name or a glob"),
    ("rules:\n  - deny: unit->unit\n    to: probe\n", ":2: rules[1].from:", "is required"),
    ("rules: [\n", ":2:", ""),
]


def test_bad_documents_change_nothing():
    with Node() as n, tempfile.TemporaryDirectory() as tmp:
        apply(n, tmp, V1)
        before = n.get("/v1/policy").json()
        for text, where, what in BAD:
            p = apply(n, tmp, text, rc=1)
            err = p.stderr.decode()
            check("policy.yaml" + where in err and what in err, (text, err))
            r = n.request("PUT", "/v1/policy", body=text.encode())
            eq((r.status, r.json()["error"]["code"]), (400, "invalid_policy"), r.body)
        eq(n.get("/v1/policy").json(), before)
        eq(len(n.get("/v1/policies").json()["versions"]), 1)


def test_who_may_apply():
    with Node() as n, tempfile.TemporaryDirectory() as tmp:
        eq(n.post("/v1/tenants", body={"name": "acme"}).status, 201)
        admin, inv = key_of(n, "acme", "admin"), key_of(n, "acme", "invoker")
        # a tenant's admin: its own tenant's document
        p = apply(n, tmp, "rules:\n  - deny: unit->unit\n    from: store\n    to: probe\n",
                  key=admin)
        check(b"applied policy v1 (tenant acme): 1 rules" in p.stdout, p.stdout)
        eq(n.get("/v1/policy", key=admin).json()["tenant"], "acme")
        eq(n.get("/v1/policy").json()["version"], 0)  # the node's is another
        eq(n.get("/v1/policy?tenant=acme").json()["version"], 1)
        # ... whose rules stay inside it
        p = apply(n, tmp, "rules:\n  - allow: unit->unit\n    from: store\n    to: default/x\n",
                  key=admin, rc=1)
        check(b"policy.yaml:4: rules[1].to: 'default/x' names tenant default" in p.stderr,
              p.stderr)
        p = apply(n, tmp, "rules:\n  - allow: client->function\n    from: {tenant: other}\n"
                  "    to: x\n", key=admin, rc=1)
        check(b"rules[1].from.tenant" in p.stderr, p.stderr)
        # not the node's document, not another tenant's, not as an invoker
        forbidden(n.request("PUT", "/v1/policy?tenant=default", body="rules: []\n", key=admin),
                  "only an admin of tenant default")
        forbidden(n.request("PUT", "/v1/policy", body="rules: []\n", key=inv), "role invoker")
        forbidden(n.get("/v1/policies", key=inv), "role invoker")
        eq(n.post("/v1/tenants", body={"name": "beta"}).status, 201)
        forbidden(n.get("/v1/policies?tenant=beta", key=admin), "may not act on tenant beta")
        # the node admin: any tenant's
        p = apply(n, tmp, "rules: []\n", tenant="acme")
        check(b"applied policy v2 (tenant acme)" in p.stdout, p.stdout)


def test_client_to_function():
    with Node() as n, tempfile.TemporaryDirectory() as tmp:
        eq(n.post("/v1/tenants", body={"name": "acme"}).status, 201)
        say(n, tmp, "admin-tool", "admin tool")
        say(n, tmp, "hello", "hello")
        inv, dep = key_of(n, "default", "invoker"), key_of(n, "default", "deployer")
        acme_inv = key_of(n, "acme", "invoker")
        apply(n, tmp, V1)
        # deny: invoker keys may not invoke admin-*; others may
        r = n.get("/fn/admin-tool", key=inv)
        forbidden(r, "policy v1 rule 1 (deny client->function {role: invoker} -> admin-*)")
        eq(r.json()["error"]["code"], "forbidden")
        eq(n.get("/fn/hello", key=inv).text, "hello\n")
        eq(n.get("/fn/admin-tool", key=dep).text, "admin tool\n")
        # logged (node and function) and metered as rejected
        check("policy v1 rule 1" in logs_text(n, "admin-tool"), "in the function's log")
        check("policy denial: policy v1 rule 1" in n.stderr(), "in the node's log")
        recs = [x for x in usage(n, "admin-tool") if x["status"] == "rejected"]
        eq([(x["http_status"], x["code"]) for x in recs], [(403, "forbidden")])
        # cross-tenant: denied by default, allowed by a rule of the node's policy
        forbidden(n.get("/t/default/fn/hello", key=acme_inv), "may not act on tenant default")
        apply(n, tmp, V1 + "  - allow: client->function\n    from: {tenant: acme}\n"
              "    to: hello\n")
        eq(n.get("/t/default/fn/hello", key=acme_inv).text, "hello\n")
        # (rule 1 denies invokers of every tenant; admin-tool is not opened anyway)
        forbidden(n.get("/t/default/fn/admin-tool", key=acme_inv), "policy v2 rule 1")
        forbidden(n.get("/t/default/fn/admin-tool", key=key_of(n, "acme", "deployer")),
                  "may not act on tenant default")
        # a deny of a matching key beats the allow
        apply(n, tmp, "rules:\n  - allow: client->function\n    from: {tenant: acme}\n"
              "    to: hello\n  - deny: client->function\n    from: {tenant: \"a*\"}\n"
              "    to: \"*/hel?o\"\n")
        forbidden(n.get("/t/default/fn/hello", key=acme_inv),
                  "policy v3 rule 2 (deny client->function {tenant: a*} -> */hel?o)")


def test_unit_to_unit():
    with Node() as n, tempfile.TemporaryDirectory() as tmp:
        eq(n.post("/v1/tenants", body={"name": "acme"}).status, 201)
        acme_dep, acme_inv = key_of(n, "acme", "deployer"), key_of(n, "acme", "invoker")
        d = store_copy(tmp, "  other: {uri: \"svc:default/probe\"}\n", "s")
        n.cli("deploy", d, "--json", check_rc=0)
        n.cli("deploy", d, "--json", check_rc=0, key=acme_dep)
        say(n, tmp, "probe", "default probe")
        eq(n.get("/fn/store/svc").text, "default probe\n")
        # same tenant: denied by a rule, naming it; logged; metered
        apply(n, tmp, "rules:\n  - deny: unit->unit\n    from: store\n    to: probe\n")
        r = n.get("/fn/store/svc")
        forbidden(r, "policy v1 rule 1 (deny unit->unit store -> probe)")
        check(r.text.startswith("denied by"), r.text)  # MXU_E_DENIED in the function
        check("policy denial: svc:probe: policy v1 rule 1" in logs_text(n, "store"), "store's log")
        recs = [x for x in usage(n, "probe") if x["status"] == "rejected"]
        eq([(x["http_status"], x["code"]) for x in recs], [(403, "forbidden")])
        check(recs[0]["caller_function"].startswith("store@"), recs[0])
        # cross-tenant: denied without a rule (whether or not the callee exists)
        apply(n, tmp, "rules: []\n")
        r = n.get("/fn/store/svc?to=other", key=acme_inv)
        forbidden(r, "no policy rule allows unit->unit acme/store -> default/probe")
        check("policy denial" in logs_text(n, "store", key=key_of(n, "acme", "admin")), "logged")
        # allowed by a rule of the node's policy
        apply(n, tmp, "rules:\n  - allow: unit->unit\n    from: acme/store\n    to: probe\n")
        eq(n.get("/fn/store/svc?to=other", key=acme_inv).text, "default probe\n")
        # a tenant's document cannot open it, and a deny of the node's wins
        apply(n, tmp, "rules: []\n")
        adm = key_of(n, "acme", "admin")
        apply(n, tmp, "rules:\n  - allow: unit->unit\n    from: store\n    to: \"*\"\n", key=adm)
        forbidden(n.get("/fn/store/svc?to=other", key=acme_inv), "no policy rule allows")


def test_unit_to_resource():
    with Node() as n, tempfile.TemporaryDirectory() as tmp:
        eq(n.post("/v1/tenants", body={"name": "acme"}).status, 201)
        acme_dep, acme_inv = key_of(n, "acme", "deployer"), key_of(n, "acme", "invoker")
        d = store_copy(tmp, "  theirs: {uri: \"kv:default/orders\", access: read-write}\n", "s")
        n.cli("deploy", d, "--json", check_rc=0)
        n.cli("deploy", d, "--json", check_rc=0, key=acme_dep)
        eq(n.post("/fn/store/kv/put?k=a", body="one").status, 200)
        # the manifest says read-write; the policy narrows it: put denied, get allowed
        apply(n, tmp, V2)
        r = n.post("/fn/store/kv/put?k=a", body="two")
        forbidden(r, "db: policy v1 rule 2 (deny unit->resource store -> kv:orders put,delete)")
        eq(n.get("/fn/store/kv/get?k=a").text, "one")
        eq(n.request("POST", "/fn/store/kv/del?k=a").status, 403)
        eq(n.post("/fn/store/kv/cas?k=a&rev=0", body="x").status, 409)  # cas is not denied
        check("policy denial: db: policy v1 rule 2" in logs_text(n, "store"), "store's log")
        check("policy denial: db: policy v1 rule 2" in n.stderr(), "node's log")
        # another tenant's resource: denied by default
        r = n.get("/fn/store/kv/get?k=a&d=theirs", key=acme_inv)
        forbidden(r, "no policy rule allows unit->resource acme/store -> kv:default/orders get")
        # allowed by a rule, for the operations it names
        apply(n, tmp, "rules:\n  - allow: unit->resource\n    from: acme/store\n"
              "    to: kv:orders\n    ops: [get]\n")
        eq(n.get("/fn/store/kv/get?k=a&d=theirs", key=acme_inv).text, "one")
        forbidden(n.post("/fn/store/kv/put?k=a&d=theirs", body="x", key=acme_inv),
                  "no policy rule allows")
        eq(n.get("/fn/store/kv/get?k=a").text, "one")
