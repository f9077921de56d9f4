"""Authentication and the role matrix (docs/policy.md): every role against every
API route and the invoke path; missing, malformed, unknown, revoked and expired
keys; public functions; tenants and what they may not see; the bootstrap; the
CLI's key sources; --auth off."""
import json
import os
import stat
import subprocess
import tempfile
import time

from harness import MXU, Node, check, eq, make_function

ROLES = ("admin", "deployer", "invoker", "viewer")

PRIVATE = """name: {name}
runtime: exec
command: ./run.sh
memory: 32Mi
{extra}"""
# Prints what the function was given of Authorization (the node must strip an
# mxu key, and pass anything else to a public function).
RUN_SH = ("#!/bin/sh\necho \"auth=[$HTTP_AUTHORIZATION]\"\n", 0o755)


def deploy_fn(n, tmp, name, public=False, key=None):
    d = make_function(tmp, name, PRIVATE.format(name=name, extra="public: true\n" if public else ""),
                      {"run.sh": RUN_SH})
    p = n.cli("deploy", d, "--json", key=key)
    return p


def new_key(n, role, tenant=None, scope=None, expires=None, key=None):
    body = {"role": role}
    if tenant:
        body["tenant"] = tenant
    if scope:
        body["scope"] = scope
    if expires:
        body["expires_in"] = expires
    r = n.post("/v1/keys", body=body, key=key)
    eq(r.status, 201, f"create {role} key: {r.body!r}")
    return r.json()


def denied(r, *words):
    eq(r.status, 403, f"wanted 403: {r.body!r}")
    eq(r.headers.get("x-mxu-error"), "forbidden")
    msg = r.json()["error"]["message"]
    for w in words:
        check(w in msg, f"{w!r} not in {msg!r}")


def unauthorized(r, code):
    eq(r.status, 401, f"wanted 401: {r.body!r}")
    eq(r.headers.get("www-authenticate"), 'Bearer realm="mxu"')
    eq(r.json()["error"]["code"], code, r.body)


def test_bootstrap_and_cli_without_flags():
    with Node() as n:
        keyfile = os.path.join(n.data_dir, "admin.key")
        eq(stat.S_IMODE(os.stat(keyfile).st_mode), 0o600, "admin.key mode")
        creds = os.path.join(n.config_home, "mxu", "credentials")
        eq(stat.S_IMODE(os.stat(creds).st_mode), 0o600, "credentials mode")
        with open(creds) as f:
            eq(f.read(), f"{n.url} {n.key}\n")
        check("admin.key" in "".join(n.stdout_lines) or True, "stdout")
        check(keyfile in n.stderr(), "the log says where the key is")
        # The CLI with no --key and no MXU_KEY: the credentials file.
        env = dict(n.env)
        env["MXU_URL"] = n.url
        p = subprocess.run([MXU, "ls"], env=env, capture_output=True, timeout=30)
        eq(p.returncode, 0, p.stderr)
        # --key wins over MXU_KEY, which wins over the file.
        env["MXU_KEY"] = "mxu_bad"
        p = subprocess.run([MXU, "ls"], env=env, capture_output=True, timeout=30)
        eq(p.returncode, 1)
        check(b"MXU_KEY" in p.stderr and b"malformed" in p.stderr, p.stderr)
        p = subprocess.run([MXU, "ls", "--key", n.key], env=env, capture_output=True, timeout=30)
        eq(p.returncode, 0, p.stderr)
        # Restarted on another port: one key, and the credentials follow the URL.
        old_url = n.url
        n.stop()
        n.start()
        with open(os.path.join(n.data_dir, "admin.key")) as f:
            eq(f.read().strip(), n.key, "the same admin key")
        with open(creds) as f:
            text = f.read()
        check(f"{old_url} {n.key}" in text and f"{n.url} {n.key}" in text, text)
        eq(len(n.get("/v1/keys").json()["keys"]), 1)


def test_bad_keys():
    with Node() as n, tempfile.TemporaryDirectory() as tmp:
        deploy_fn(n, tmp, "private")
        for path in ("/v1/functions", "/fn/private", "/fn/nothing-here", "/v1/keys"):
            unauthorized(n.get(path, auth=False), "missing_key")
            for bad in ("Basic dXNlcjpwdw==", "Bearer", "Bearer ", "Token abc", "Bearer mxu_",
                        "Bearer mxu_0123456789abcdef_00", "Bearer " + "a" * 5000,
                        "Bearer mxu_0123456789abcdeg_" + "0" * 64,
                        "Bearer mxu_0123456789abcdef-" + "0" * 64, "Bearer " + n.key + "x"):
                unauthorized(n.get(path, headers={"Authorization": bad}), "malformed_key")
            unknown = "mxu_0123456789abcdef_" + "0" * 64
            unauthorized(n.get(path, key=unknown), "unknown_key")
            # a known id with a wrong secret is just as unknown
            wrong = n.key[:-1] + ("0" if n.key[-1] != "0" else "1")
            unauthorized(n.get(path, key=wrong), "unknown_key")
        # scheme and blanks are forgiven
        eq(n.get("/v1/functions", headers={"Authorization": f"bearer   {n.key} "}).status, 200)
        # health stays open
        eq(n.get("/v1/health", auth=False).status, 200)
        # revoked: at once
        k = new_key(n, "invoker")
        eq(n.get("/fn/private", key=k["key"]).status, 200)
        eq(n.request("DELETE", f"/v1/keys/{k['id']}").status, 200)
        r = n.get("/fn/private", key=k["key"])
        unauthorized(r, "revoked_key")
        check("revoked" in r.json()["error"]["message"], r.body)
        # expired
        k = new_key(n, "viewer", expires="1s")
        eq(n.get("/v1/functions", key=k["key"]).status, 200)
        time.sleep(1.2)
        r = n.get("/v1/functions", key=k["key"])
        unauthorized(r, "expired_key")
        check("expired" in r.json()["error"]["message"], r.body)
        # denials are logged
        n.wait_for(lambda: "denied 401" in n.stderr(), what="denial in the log")
        # raw malformed headers: never a crash
        for raw in (b"Authorization: \r\n", b"Authorization: Bearer\x01mxu\r\n",
                    b"Authorization: Bearer mxu_\xff\xfe\r\n",
                    b"Authorization: Bearer a\r\nAuthorization: Bearer b\r\n"):
            out = n.raw(b"GET /v1/functions HTTP/1.1\r\nHost: x\r\n" + raw +
                        b"Connection: close\r\n\r\n")
            check(out.startswith(b"HTTP/1.1 401") or out.startswith(b"HTTP/1.1 400"), out[:200])
        eq(n.get("/v1/health").status, 200)


def test_keys_on_one_keep_alive_connection():
    """A connection remembers the key its last request proved (so a client's
    next request skips hashing it): revocation, expiry, a wrong secret, no key
    and another key must still count on that same connection."""
    import http.client
    with Node() as n, tempfile.TemporaryDirectory() as tmp:
        deploy_fn(n, tmp, "private")
        k1 = new_key(n, "invoker")
        k2 = new_key(n, "viewer", expires="2s")
        conn = http.client.HTTPConnection("127.0.0.1", n.port, timeout=10)

        def get(path, key):
            conn.request("GET", path, headers={"Authorization": f"Bearer {key}"} if key else {})
            r = conn.getresponse()
            body = r.read()
            check(not r.will_close, "the node closed the keep-alive connection")
            code = json.loads(body)["error"]["code"] if r.status >= 400 else None
            return r.status, code

        eq(get("/fn/private", k1["key"]), (200, None))
        wrong = k1["key"][:-1] + ("0" if k1["key"][-1] != "0" else "1")
        eq(get("/fn/private", wrong), (401, "unknown_key"))
        eq(get("/fn/private", k1["key"]), (200, None))
        eq(get("/fn/private", None), (401, "missing_key"))
        eq(get("/v1/functions", k2["key"]), (200, None))
        eq(get("/v1/keys", k2["key"]), (403, "forbidden"))  # a viewer's key, not k1's
        eq(get("/fn/private", k1["key"]), (200, None))
        eq(n.request("DELETE", f"/v1/keys/{k1['id']}").status, 200)
        eq(get("/fn/private", k1["key"]), (401, "revoked_key"))
        eq(get("/v1/functions", k2["key"]), (200, None))
        time.sleep(2.2)
        eq(get("/v1/functions", k2["key"]), (401, "expired_key"))
        conn.close()


# (method, path, body, the roles of tenant default that may) for every route.
# A function "hello-a" is deployed; "web" is the scope of the scoped keys.
def routes(tmp):
    d = make_function(tmp, "hello-b", PRIVATE.format(name="hello-b", extra=""),
                      {"run.sh": RUN_SH})
    from harness import FUNCTIONS  # noqa: F401
    import base64
    with open(os.path.join(d, "run.sh"), "rb") as f:
        data = base64.b64encode(f.read()).decode()
    deploy = {"manifest": open(os.path.join(d, "mxu.yaml")).read(),
              "files": [{"path": "run.sh", "mode": 493, "data": data}]}
    ALL, RW, R = set(ROLES), {"admin", "deployer"}, {"admin", "deployer", "viewer"}
    return [
        ("GET", "/fn/hello-a", None, {"admin", "deployer", "invoker"}),
        ("GET", "/v1/functions", None, R),
        ("POST", "/v1/functions", deploy, RW),
        ("GET", "/v1/functions/hello-a", None, R),
        ("GET", "/v1/functions/hello-a/versions", None, R),
        ("GET", "/v1/functions/hello-a/versions/1", None, R),
        ("GET", "/v1/functions/hello-a/aliases", None, R),
        ("PUT", "/v1/functions/hello-a/aliases/prod", {"version": 1}, RW),
        ("DELETE", "/v1/functions/hello-a/aliases/prod", None, RW),
        ("GET", "/v1/functions/hello-a/logs", None, R),
        ("GET", "/v1/functions/hello-a/instances", None, R),
        ("GET", "/v1/instances", None, R),
        ("GET", "/v1/resources", None, {"admin", "viewer"}),
        ("GET", "/v1/usage", None, {"admin", "viewer"}),
        ("GET", "/v1/bills?tenant=default&month=2026-11", None, {"admin", "viewer"}),
        ("GET", "/v1/prices", None, {"admin", "viewer"}),
        ("PUT", "/v1/resources/kv:x", {"backend": "embedded"}, {"admin"}),
        ("DELETE", "/v1/resources/kv:x", None, {"admin"}),
        ("GET", "/v1/keys", None, {"admin"}),
        ("POST", "/v1/keys", {"role": "viewer"}, {"admin"}),
        ("GET", "/v1/tenants", None, {"admin"}),
        ("POST", "/v1/tenants", {"name": "t-new"}, {"admin"}),
        ("DELETE", "/v1/tenants/t-new", None, {"admin"}),
        ("DELETE", "/v1/functions/hello-b/versions/1", None, RW),
        ("DELETE", "/v1/functions/hello-b", None, RW),
        ("GET", "/v1/health", None, ALL),
    ]


def test_role_matrix_tenant_default():
    with Node() as n, tempfile.TemporaryDirectory() as tmp:
        deploy_fn(n, tmp, "hello-a")
        table = routes(tmp)
        for role in ROLES:
            k = new_key(n, role)["key"]
            for method, path, body, allowed in table:
                if path == "/v1/tenants/t-new":
                    n.post("/v1/tenants", body={"name": "t-new"})  # there to delete
                if path.startswith("/v1/functions/hello-b") and role in allowed:
                    deploy_fn(n, tmp, "hello-b")
                if path == "/v1/tenants" and method == "POST" and role == "admin":
                    n.request("DELETE", "/v1/tenants/t-new")
                r = n.request(method, path, body=body, key=k)
                if role in allowed:
                    check(r.status not in (401, 403),
                          f"{role} {method} {path}: {r.status} {r.body!r}")
                else:
                    denied(r, f"role {role} of tenant default")
        check("denied 403" in n.stderr(), "403s are logged")


def test_role_matrix_other_tenant_and_scopes():
    with Node() as n, tempfile.TemporaryDirectory() as tmp:
        eq(n.post("/v1/tenants", body={"name": "acme"}).status, 201)
        deploy_fn(n, tmp, "hello-a")
        keys = {role: new_key(n, role, tenant="acme")["key"] for role in ROLES}
        # A tenant's admin: its own keys, not the node's business.
        eq(n.get("/v1/keys", key=keys["admin"]).status, 200)
        check(all(k["tenant"] == "acme" for k in n.get("/v1/keys", key=keys["admin"]).json()["keys"]),
              "a tenant admin lists its own keys")
        r = n.post("/v1/keys", body={"role": "admin"}, key=keys["admin"])
        eq(r.status, 201)
        eq(r.json()["tenant"], "acme")
        denied(n.post("/v1/keys", body={"role": "admin", "tenant": "default"}, key=keys["admin"]),
               "may not act on tenant default")
        denied(n.get("/v1/keys?tenant=default", key=keys["admin"]), "may not act on tenant default")
        default_id = n.get("/v1/keys").json()["keys"][0]["id"]
        denied(n.request("DELETE", f"/v1/keys/{default_id}", key=keys["admin"]),
               "may not act on tenant default")
        for role in ROLES:
            denied(n.get("/v1/tenants", key=keys[role]), f"role {role} of tenant acme")
            # its own resource map (admin) and usage (admin, viewer); never the node's
            r = n.get("/v1/resources", key=keys[role])
            if role == "admin":
                eq(r.status, 200, r.body)
                check(all(x["tenant"] == "acme" for x in r.json()["resources"]), r.body)
            else:
                denied(r, f"role {role} of tenant acme")
            r = n.get("/v1/usage", key=keys[role])
            if role in ("admin", "viewer"):
                eq(r.status, 200, r.body)
                check(all(x["tenant"] == "acme" for x in r.json()["records"]), r.body)
            else:
                denied(r, f"role {role} of tenant acme")
            denied(n.get("/v1/prices", key=keys[role]), f"role {role} of tenant acme")
            denied(n.post("/v1/tenants", body={"name": "x"}, key=keys[role]), "tenant default")
            # tenant isolation: acme sees none of default's functions
            r = n.get("/v1/functions", key=keys[role])
            if role == "invoker":
                denied(r, "role invoker of tenant acme may not read functions")
            else:
                eq(r.json()["functions"], [])
                eq(n.get("/v1/instances", key=keys[role]).json()["instances"], [])
                eq(n.get("/v1/functions/hello-a", key=keys[role]).status, 404)
            r = n.get("/fn/hello-a", key=keys[role])
            eq(r.status, 403 if role == "viewer" else 404, (role, r.body))
            denied(n.get("/t/default/fn/hello-a", key=keys[role]), "may not act on tenant default")
            r = n.request("DELETE", "/v1/functions/hello-a", key=keys[role])
            eq(r.status, 404 if role in ("admin", "deployer") else 403, (role, r.body))
        eq(n.get("/fn/hello-a").status, 200, "still there")
        # Scopes: a deployer of tenant default with scope web-*.
        k = new_key(n, "deployer", scope="web-*")["key"]
        check(deploy_fn(n, tmp, "web-one", key=k).returncode == 0, "in scope")
        p = deploy_fn(n, tmp, "api-one", key=k)
        eq(p.returncode, 1)
        check(b"outside the scope 'web-*'" in p.stderr, p.stderr)
        eq([f["name"] for f in n.get("/v1/functions", key=k).json()["functions"]], ["web-one"])
        denied(n.get("/fn/hello-a", key=k), "outside the scope 'web-*'")
        denied(n.get("/v1/functions/hello-a/logs", key=k), "outside the scope")
        eq(n.get("/fn/web-one", key=k).status, 200)
        # Invoker scope
        k = new_key(n, "invoker", scope="hello-?")["key"]
        eq(n.get("/fn/hello-a", key=k).status, 200)
        denied(n.get("/fn/web-one", key=k), "outside the scope 'hello-?'")
        # A refused invocation of a function that exists is a usage record
        # too (rejected, 403), like every other refusal.
        recs = n.get("/v1/usage?function=web-one&limit=1000").json()["records"]
        check(any((r["status"], r["http_status"], r["code"]) == ("rejected", 403, "forbidden")
                  for r in recs), f"no rejected 403 record for web-one: {recs}")
        # tenants can be deleted (their keys with them), default cannot
        eq(n.request("DELETE", "/v1/tenants/acme").status, 200)
        unauthorized(n.get("/v1/keys", key=keys["admin"]), "revoked_key")
        eq(n.request("DELETE", "/v1/tenants/default").status, 409)
        eq(n.request("DELETE", "/v1/tenants/acme").status, 404)
        eq(n.post("/v1/tenants", body={"name": "Bad_Name"}).status, 400)


def test_public_functions():
    with Node() as n, tempfile.TemporaryDirectory() as tmp:
        deploy_fn(n, tmp, "pub", public=True)
        deploy_fn(n, tmp, "priv")
        r = n.get("/fn/pub", auth=False)
        eq(r.status, 200)
        eq(r.text, "auth=[]\n")
        eq(n.get("/t/default/fn/pub", auth=False).status, 200)
        unauthorized(n.get("/fn/priv", auth=False), "missing_key")
        unauthorized(n.get("/t/default/fn/priv", auth=False), "missing_key")
        # a missing function looks like a private one without a key
        unauthorized(n.get("/fn/nothing", auth=False), "missing_key")
        # a public function gets other Authorization schemes, never an mxu key
        r = n.get("/fn/pub", headers={"Authorization": "Basic dXNlcjpwdw=="})
        eq(r.text, "auth=[Basic dXNlcjpwdw==]\n")
        eq(n.get("/fn/pub").text, "auth=[]\n")
        eq(n.get("/fn/priv").text, "auth=[]\n")
        # a bad mxu key is refused even for a public function
        unauthorized(n.get("/fn/pub", key="mxu_0123456789abcdef_" + "0" * 64), "unknown_key")
        # any key may call a public function, of any tenant
        eq(n.post("/v1/tenants", body={"name": "acme"}).status, 201)
        k = new_key(n, "viewer", tenant="acme")["key"]
        eq(n.get("/t/default/fn/pub", key=k).status, 200)
        denied(n.get("/t/default/fn/priv", key=k), "may not act on tenant default",
               "cross-tenant")
        eq(n.get("/t/Bad/fn/pub", auth=False).status, 400)
        # the manifest field is validated like the others
        d = make_function(tmp, "badpub", PRIVATE.format(name="badpub", extra='public: "yes"\n'),
                          {"run.sh": RUN_SH})
        p = n.cli("deploy", d)
        eq(p.returncode, 1)
        check(b"public" in p.stderr and b"true or false" in p.stderr, p.stderr)
        eq(n.get("/v1/functions/pub").json()["versions"][0]["manifest"]["public"], True)


def test_cli_key_and_tenant_verbs():
    with Node() as n:
        p = n.cli("tenant", "create", "acme", check_rc=0)
        check(b"acme" in p.stdout, p.stdout)
        p = n.cli("tenant", "ls", check_rc=0)
        check(b"acme" in p.stdout and b"default" in p.stdout, p.stdout)
        p = n.cli("key", "create", "--tenant", "acme", "--role", "deployer", "--scope", "web-*",
                  "--expires", "30d", check_rc=0)
        key = p.stdout.decode().strip()
        check(key.startswith("mxu_") and len(key) == 85, key)
        check(b"shown only this once" in p.stderr, p.stderr)
        p = n.cli("key", "ls", check_rc=0)
        out = p.stdout.decode()
        check(key[21:] not in out, "ls never shows a secret")
        check("acme" in out and "deployer" in out and "web-*" in out, out)
        p = n.cli("key", "ls", "--json", check_rc=0)
        ids = [k["id"] for k in json.loads(p.stdout)["keys"] if k["tenant"] == "acme"]
        eq(len(ids), 1)
        # the new key works from the CLI, via --key
        p = n.cli("ls", "--key", key, check_rc=0)
        p = n.cli("tenant", "ls", key=key)
        eq(p.returncode, 1)
        check(b"role deployer of tenant acme may not manage tenants" in p.stderr, p.stderr)
        n.cli("key", "revoke", ids[0], check_rc=0)
        p = n.cli("ls", key=key)
        eq(p.returncode, 1)
        check(b"revoked" in p.stderr, p.stderr)
        p = n.cli("key", "create", "--role", "root")
        eq(p.returncode, 1)
        check(b"not a role" in p.stderr, p.stderr)
        p = n.cli("key", "create")
        eq(p.returncode, 2)
        n.cli("tenant", "rm", "acme", check_rc=0)
        p = n.cli("ls", key=False)
        eq(p.returncode, 1)
        check(b"no key" in p.stderr, p.stderr)


def test_auth_off():
    with Node("--auth", "off") as n, tempfile.TemporaryDirectory() as tmp:
        check(not os.path.exists(os.path.join(n.data_dir, "admin.key")), "no key made")
        check("AUTHENTICATION IS OFF" in n.stderr(), "a loud warning")
        deploy_fn(n, tmp, "priv")
        eq(n.get("/fn/priv", auth=False).status, 200)
        eq(n.get("/v1/functions", auth=False).status, 200)
    cfg = tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False)
    cfg.write("auth: off\n")
    cfg.close()
    try:
        with Node("--config", cfg.name) as n:
            eq(n.get("/v1/functions", auth=False).status, 200)
    finally:
        os.unlink(cfg.name)
