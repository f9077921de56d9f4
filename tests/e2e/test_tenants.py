"""Function and resource names scoped per tenant (docs/policy.md, "Tenants"):
the same name in two tenants, each invoking its own; what another tenant may
not see or touch; /t/TENANT/fn/ for public and private functions; svc calls
resolved in the caller's tenant and cross-tenant ones refused; kv:orders of
two tenants kept apart; usage, logs and instances per tenant; the resource
map per tenant; deleting a tenant that owns functions; and a data directory
of the previous mxu (schema 1, no tenants) starting with its functions."""
import json
import os
import shutil
import sqlite3
import tempfile

from harness import FUNCTIONS, Node, check, eq, make_function

EXEC = """name: {name}
runtime: exec
command: ./run.sh
memory: 32Mi
{extra}"""


def say(text):
    """An exec function answering `text` and logging it to stderr."""
    return {"run.sh": (f"#!/bin/sh\necho '{text}' >&2\necho '{text}'\n", 0o755)}


def deploy(n, tmp, name, text, key=None, public=False, sub=""):
    d = make_function(os.path.join(tmp, sub or "x"), name,
                      EXEC.format(name=name, extra="public: true\n" if public else ""), say(text))
    p = n.cli("deploy", d, "--json", key=key)
    eq(p.returncode, 0, p.stderr)
    return json.loads(p.stdout)


def key_of(n, tenant, role):
    r = n.post("/v1/keys", body={"role": role, "tenant": tenant})
    eq(r.status, 201, r.body)
    return r.json()["key"]


def denied(r, *words):
    eq(r.status, 403, f"wanted 403: {r.body!r}")
    msg = r.json()["error"]["message"]
    for w in words:
        check(w in msg, f"{w!r} not in {msg!r}")


def two_tenants(n):
    eq(n.post("/v1/tenants", body={"name": "acme"}).status, 201)
    return {role: key_of(n, "acme", role) for role in ("admin", "deployer", "invoker", "viewer")}


def test_same_name_in_two_tenants():
    with Node() as n, tempfile.TemporaryDirectory() as tmp:
        acme = two_tenants(n)
        eq(deploy(n, tmp, "hello", "default hello", sub="d")["version"], 1)
        r = deploy(n, tmp, "hello", "acme hello", key=acme["deployer"], sub="a")
        eq((r["tenant"], r["version"]), ("acme", 1))
        deploy(n, tmp, "only-default", "od", sub="d")
        # each invokes its own
        eq(n.get("/fn/hello").text, "default hello\n")
        eq(n.get("/fn/hello", key=acme["invoker"]).text, "acme hello\n")
        eq(n.get("/t/acme/fn/hello").text, "acme hello\n")  # the node admin crosses
        eq(n.get("/t/default/fn/hello").text, "default hello\n")
        # listings are per tenant
        eq([f["name"] for f in n.get("/v1/functions", key=acme["viewer"]).json()["functions"]],
           ["hello"])
        eq(n.get("/v1/functions/hello", key=acme["viewer"]).json()["tenant"], "acme")
        eq(sorted(f["name"] for f in n.get("/v1/functions").json()["functions"]),
           ["hello", "only-default"])
        eq([f["tenant"] for f in n.get("/v1/functions?tenant=acme").json()["functions"]], ["acme"])
        # a second deploy to acme moves acme's hello only
        eq(deploy(n, tmp, "hello", "acme hello 2", key=acme["admin"], sub="a2")["version"], 2)
        eq(n.get("/v1/functions/hello").json()["latest"], 1)
        eq(n.get("/fn/hello", key=acme["invoker"]).text, "acme hello 2\n")
        # the CLI lists the key's tenant's functions
        p = n.cli("ls", key=acme["viewer"], check_rc=0)
        check(b"hello" in p.stdout and b"only-default" not in p.stdout, p.stdout)


def test_other_tenant_cannot_touch():
    with Node() as n, tempfile.TemporaryDirectory() as tmp:
        acme = two_tenants(n)
        deploy(n, tmp, "secret", "default secret")
        eq(n.request("PUT", "/v1/functions/secret/aliases/prod", body={"version": 1}).status, 200)
        for role, k in acme.items():
            # see: not there
            if role != "invoker":
                eq(n.get("/v1/functions/secret", key=k).status, 404, role)
                eq(n.get("/v1/functions/secret/logs", key=k).status, 404, role)
                denied(n.get("/v1/functions/secret?tenant=default", key=k),
                       "may not act on tenant default")
            # invoke: not there, and not by name
            r = n.get("/fn/secret", key=k)
            eq(r.status, 403 if role == "viewer" else 404, (role, r.body))
            denied(n.get("/t/default/fn/secret", key=k), "may not act on tenant default",
                   "cross-tenant")
            # alias, delete: not there in acme, refused in default
            if role in ("admin", "deployer"):
                eq(n.request("PUT", "/v1/functions/secret/aliases/prod", body={"version": 1},
                             key=k).status, 404)
                eq(n.request("DELETE", "/v1/functions/secret", key=k).status, 404)
            denied(n.request("PUT", "/v1/functions/secret/aliases/x?tenant=default",
                             body={"version": 1}, key=k), "may not act on tenant default")
            denied(n.request("DELETE", "/v1/functions/secret?tenant=default", key=k),
                   "may not act on tenant default")
            denied(n.request("DELETE", "/v1/functions/secret/versions/1?tenant=default", key=k),
                   "may not act on tenant default")
        # deploy over: a deploy of the same name lands in acme, default's is untouched
        r = deploy(n, tmp, "secret", "acme's own", key=acme["deployer"], sub="a")
        eq((r["tenant"], r["version"]), ("acme", 1))
        p = n.cli("deploy", os.path.join(tmp, "a", "secret"), "--json",
                  key=acme["deployer"])
        eq(p.returncode, 0)
        r = n.post("/v1/functions?tenant=default", body={"manifest": "name: x\n"},
                   key=acme["deployer"])
        denied(r, "may not act on tenant default")
        eq(n.get("/fn/secret").text, "default secret\n")
        eq(n.get("/v1/functions/secret").json()["aliases"], {"latest": 1, "prod": 1})
        # the node admin deploys into acme with ?tenant=, and into no such tenant not at all
        body = {"manifest": EXEC.format(name="byadmin", extra=""),
                "files": [{"path": "run.sh", "mode": 0o755,
                           "data": "IyEvYmluL3NoCmVjaG8gYWRtaW4K"}]}
        eq(n.post("/v1/functions?tenant=acme", body=body).status, 201)
        eq(n.get("/fn/byadmin", key=acme["invoker"]).text, "admin\n")
        eq(n.get("/fn/byadmin").status, 404)
        eq(n.post("/v1/functions?tenant=nobody", body=body).status, 404)
        # acme's deletes touch acme's
        eq(n.request("DELETE", "/v1/functions/secret", key=acme["deployer"]).status, 200)
        eq(n.get("/fn/secret").text, "default secret\n")


def test_tenant_paths_public_and_private():
    with Node() as n, tempfile.TemporaryDirectory() as tmp:
        acme = two_tenants(n)
        deploy(n, tmp, "pub", "acme pub", key=acme["deployer"], public=True)
        deploy(n, tmp, "priv", "acme priv", key=acme["deployer"], sub="p")
        deploy(n, tmp, "pub", "default pub", public=True, sub="d")
        # without a key: /fn/ is tenant default, /t/T/fn/ tenant T, public only
        eq(n.get("/fn/pub", auth=False).text, "default pub\n")
        eq(n.get("/t/acme/fn/pub", auth=False).text, "acme pub\n")
        eq(n.get("/t/acme/fn/priv", auth=False).status, 401)
        eq(n.get("/t/acme/fn/nothing", auth=False).status, 401)
        eq(n.get("/t/nobody/fn/pub", auth=False).status, 401)
        # a key of another tenant: public yes, private 403 naming the rule
        inv = key_of(n, "default", "invoker")
        eq(n.get("/t/acme/fn/pub", key=inv).text, "acme pub\n")
        denied(n.get("/t/acme/fn/priv", key=inv), "may not act on tenant acme", "cross-tenant")
        # the node admin anywhere; acme's own keys on their own path
        eq(n.get("/t/acme/fn/priv").text, "acme priv\n")
        eq(n.get("/t/acme/fn/priv", key=acme["invoker"]).text, "acme priv\n")
        eq(n.get("/fn/priv", key=acme["invoker"]).text, "acme priv\n")


def store_copy(tmp, extra):
    d = os.path.join(tmp, "store")
    shutil.copytree(os.path.join(FUNCTIONS, "store"), d)
    with open(os.path.join(d, "mxu.yaml"), "a") as f:
        f.write(extra)
    return d


def test_svc_and_kv_per_tenant():
    with Node() as n, tempfile.TemporaryDirectory() as tmp:
        acme = two_tenants(n)
        extra = ("  other: {uri: \"svc:default/probe\"}\n"
                 "  otherpub: {uri: \"svc:default/pubfn\"}\n"
                 "  own: {uri: \"svc:acme/probe\"}\n")
        d = store_copy(tmp, extra)
        n.cli("deploy", d, "--json", check_rc=0)
        n.cli("deploy", d, "--json", check_rc=0, key=acme["deployer"])
        deploy(n, tmp, "probe", "default probe", sub="d")
        deploy(n, tmp, "probe", "acme probe", key=acme["deployer"], sub="a")
        deploy(n, tmp, "pubfn", "default public", public=True, sub="d")
        # svc:probe is the caller's tenant's probe
        eq(n.get("/fn/store/svc").text, "default probe\n")
        eq(n.get("/fn/store/svc", key=acme["invoker"]).text, "acme probe\n")
        eq(n.get("/fn/store/svc?to=own", key=acme["invoker"]).text, "acme probe\n")
        # another tenant's: refused unless public
        r = n.get("/fn/store/svc?to=other", key=acme["invoker"])
        eq(r.status, 403, r.body)
        check("no policy rule allows unit->unit acme/store -> default/probe" in r.text, r.text)
        eq(n.get("/fn/store/svc?to=otherpub", key=acme["invoker"]).text, "default public\n")
        check("policy denial: svc:default/probe" in n.stderr(), "the refusal is logged")
        # in tenant default, svc:default/probe is its own
        eq(n.get("/fn/store/svc?to=other").text, "default probe\n")
        # kv:orders: one store per tenant
        eq(n.post("/fn/store/kv/put?k=a", body="default value").status, 200)
        eq(n.get("/fn/store/kv/get?k=a", key=acme["invoker"]).status, 404)
        eq(n.post("/fn/store/kv/put?k=a", body="acme value", key=acme["invoker"]).status, 200)
        eq(n.get("/fn/store/kv/get?k=a").text, "default value")
        eq(n.get("/fn/store/kv/get?k=a", key=acme["invoker"]).text, "acme value")
        # the resource map per tenant: acme's admin sees and sets its own
        res = n.get("/v1/resources", key=acme["admin"]).json()["resources"]
        check(res and all(x["tenant"] == "acme" for x in res), res)
        check(any(x["resource"] == "kv:orders" for x in res), res)
        alls = n.get("/v1/resources").json()["resources"]
        eq(sorted({x["tenant"] for x in alls}), ["acme", "default"])
        r = n.request("PUT", "/v1/resources/kv:spare", body={"backend": "embedded"},
                      key=acme["admin"])
        eq((r.status, r.json().get("tenant")), (200, "acme"), r.body)
        denied(n.request("PUT", "/v1/resources/kv:spare?tenant=default",
                         body={"backend": "embedded"}, key=acme["admin"]),
               "may not act on tenant default")
        denied(n.request("PUT", "/v1/resources/kv:spare", body={"backend": "embedded"},
                         key=acme["deployer"]), "role deployer of tenant acme")
        # Any other location is a path or server on the node's side: the
        # node admin's to choose, for a set and for a move alike.
        for method, path, body in (("PUT", "/v1/resources/blob:spare", {"backend": "fs:///tmp"}),
                                   ("POST", "/v1/resources/kv:spare/move",
                                    {"to": "redis://127.0.0.1:1/0"})):
            denied(n.request(method, path, body=body, key=acme["admin"]), "only the node admin")
        check(not any(x["resource"] == "blob:spare" for x in
                      n.get("/v1/resources?tenant=acme").json()["resources"]), "blob:spare was set")
        r = n.request("DELETE", "/v1/resources/kv:spare?tenant=acme")
        eq((r.status, r.json().get("tenant")), (200, "acme"), r.body)
        p = n.cli("resource", "ls", "--tenant", "acme", check_rc=0)
        check(b"kv:orders" in p.stdout and b"acme" in p.stdout, p.stdout)
        # --tenant=T is the same as --tenant T: only acme's map, not default's
        p = n.cli("resource", "ls", "--json", check_rc=0)
        check(any(x["tenant"] == "default" for x in json.loads(p.stdout)["resources"]), p.stdout)
        p = n.cli("resource", "ls", "--tenant=acme", "--json", check_rc=0)
        listed = json.loads(p.stdout)["resources"]
        check(listed and all(x["tenant"] == "acme" for x in listed), p.stdout)
        # manifest validation of the syntax
        bad = store_copy(os.path.join(tmp, "bad"), "  worse: {uri: \"svc:Acme/probe\"}\n")
        p = n.cli("deploy", bad)
        eq(p.returncode, 1)
        check(b"mxu.yaml:" in p.stderr and b"resources.worse.uri" in p.stderr and
              b"tenant name" in p.stderr, p.stderr)


def test_usage_logs_instances_per_tenant():
    with Node() as n, tempfile.TemporaryDirectory() as tmp:
        acme = two_tenants(n)
        n.deploy("probe")
        deploy(n, tmp, "hello", "default hello", sub="d")
        deploy(n, tmp, "hello", "acme hello", key=acme["deployer"], sub="a")
        d = os.path.join(tmp, "probe-acme")
        shutil.copytree(os.path.join(FUNCTIONS, "probe"), d)
        n.cli("deploy", d, "--json", check_rc=0, key=acme["deployer"])
        eq(n.get("/fn/hello").status, 200)
        for _ in range(3):
            eq(n.get("/fn/hello", key=acme["invoker"]).status, 200)
        eq(n.get("/fn/probe").status, 200)
        eq(n.get("/fn/probe", key=acme["invoker"]).status, 200)
        # logs: each tenant's hello logged its own line
        def texts(key=None):
            recs = n.get("/v1/functions/hello/logs", key=key).json()["records"]
            return [r["text"] for r in recs]
        n.wait_for(lambda: "acme hello" in texts(acme["viewer"]), what="acme's log")
        check("default hello" not in texts(acme["viewer"]), texts(acme["viewer"]))
        check("acme hello" not in texts() and "default hello" in texts(), texts())
        # instances: acme sees its own only; the node admin sees both, with tenants
        mine = n.get("/v1/instances", key=acme["viewer"]).json()["instances"]
        check(mine and all(i["tenant"] == "acme" for i in mine), mine)
        eq(n.get("/v1/functions/probe/instances", key=acme["viewer"]).json()["instances"][0]
           ["tenant"], "acme")
        alli = n.get("/v1/instances").json()["instances"]
        eq(sorted({i["tenant"] for i in alli}), ["acme", "default"])
        stats = n.get("/v1/functions/hello", key=acme["viewer"]).json()["stats"]
        eq(stats["1"]["invocations"], 3)
        # usage: acme's admin and viewer read acme's, forced; never default's
        for role in ("admin", "viewer"):
            recs = n.get("/v1/usage", key=acme[role]).json()["records"]
            check(len(recs) >= 4 and all(r["tenant"] == "acme" for r in recs), recs)
            eq(n.get("/v1/usage?tenant=acme", key=acme[role]).status, 200)
            denied(n.get("/v1/usage?tenant=default", key=acme[role]),
                   "may not act on tenant default")
            r = n.get("/v1/bills?month=2026-11", key=acme[role])
            check(r.status in (200, 400), r.body)  # 400: a month the node refuses
            if r.status == 200:
                eq(r.json()["tenant"], "acme")
            denied(n.get("/v1/bills?tenant=default&month=2026-11", key=acme[role]),
                   "may not act on tenant default")
            denied(n.get("/v1/prices", key=acme[role]), "tenant acme")
        for role in ("deployer", "invoker"):
            denied(n.get("/v1/usage", key=acme[role]), f"role {role} of tenant acme")
        recs = n.get("/v1/usage?limit=1000").json()["records"]
        eq(sorted({r["tenant"] for r in recs}), ["acme", "default"])


def test_delete_tenant_owning_functions():
    with Node() as n, tempfile.TemporaryDirectory() as tmp:
        acme = two_tenants(n)
        deploy(n, tmp, "one", "1", key=acme["deployer"])
        deploy(n, tmp, "two", "2", key=acme["deployer"])
        r = n.request("DELETE", "/v1/tenants/acme")
        eq(r.status, 409, r.body)
        msg = r.json()["error"]["message"]
        check("owns 2 functions" in msg and "one, two" in msg, msg)
        p = n.cli("tenant", "rm", "acme")
        eq(p.returncode, 1)
        check(b"owns 2 functions" in p.stderr, p.stderr)
        eq(n.get("/fn/one", key=acme["invoker"]).status, 200, "nothing was revoked")
        for f in ("one", "two"):
            eq(n.request("DELETE", f"/v1/functions/{f}?tenant=acme").status, 200)
        eq(n.request("DELETE", "/v1/tenants/acme").status, 200)


# The previous release's registry tables (schema 1): no tenant column.
SCHEMA_1 = """
CREATE TABLE functions (name TEXT PRIMARY KEY, created_ms INTEGER NOT NULL,
  next_version INTEGER NOT NULL, deleted_ms INTEGER);
CREATE TABLE versions (function TEXT NOT NULL REFERENCES functions(name),
  number INTEGER NOT NULL, manifest TEXT NOT NULL, digest TEXT NOT NULL,
  created_ms INTEGER NOT NULL, PRIMARY KEY (function, number));
CREATE TABLE aliases (function TEXT NOT NULL, alias TEXT NOT NULL,
  version INTEGER NOT NULL, PRIMARY KEY (function, alias),
  FOREIGN KEY (function, version) REFERENCES versions(function, number));
"""


def test_old_data_dir_keeps_its_functions():
    data = tempfile.mkdtemp(prefix="mxu-e2e-old-")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            n = Node(data_dir=data)
            try:
                deploy(n, tmp, "hello", "v1", sub="1")
                deploy(n, tmp, "hello", "v2", sub="2")
                eq(n.request("PUT", "/v1/functions/hello/aliases/prod",
                             body={"version": 1}).status, 200)
                n.stop()
                # Turn state.db back into what the previous mxu wrote.
                db = sqlite3.connect(os.path.join(data, "state.db"))
                rows = {t: db.execute(f"SELECT {cols} FROM {t}").fetchall() for t, cols in (
                    ("functions", "name, created_ms, next_version, deleted_ms"),
                    ("versions", "function, number, manifest, digest, created_ms"),
                    ("aliases", "function, alias, version"))}
                db.executescript("DROP TABLE aliases; DROP TABLE versions; DROP TABLE functions;" +
                                 SCHEMA_1 + "PRAGMA user_version = 1;")
                for t, rs in rows.items():
                    for r in rs:
                        db.execute(f"INSERT INTO {t} VALUES ({','.join('?' * len(r))})", r)
                db.commit()
                eq(db.execute("PRAGMA user_version").fetchone()[0], 1)
                db.close()
                n.start()
                check("schema 1 -> 2" in n.stderr(), "the migration is logged")
                eq(n.get("/fn/hello").text, "v2\n")
                eq(n.get("/fn/hello@prod").text, "v1\n")
                f = n.get("/v1/functions/hello").json()
                eq((f["tenant"], f["latest"], f["aliases"]), ("default", 2, {"latest": 2, "prod": 1}))
                eq(deploy(n, tmp, "hello", "v3", sub="3")["version"], 3)
                n.stop()
                n.start()  # once migrated, it stays so
                eq(n.get("/fn/hello").text, "v3\n")
            finally:
                n.stop()
                shutil.rmtree(n.config_home, ignore_errors=True)
    finally:
        shutil.rmtree(data, ignore_errors=True)
