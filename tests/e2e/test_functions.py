"""Deploying and invoking: the examples, versions, aliases, deletion."""
import json
import os
import tempfile

from harness import EXAMPLES, FUNCTIONS, Node, check, eq, make_function


def test_hello_c_function():
    with Node() as n:
        eq(n.deploy("hello"), 1, "first version")
        r = n.get("/fn/hello")
        eq(r.status, 200)
        eq(r.text, "hello, world\n")
        eq(r.headers["content-type"], "text/plain; charset=utf-8")
        eq(r.headers["x-mxu-version"], "1")
        check(len(r.headers["x-mxu-invocation-id"]) == 16, "invocation id header")
        eq(n.get("/fn/hello?name=mxu").text, "hello, mxu\n")
        # The CLI prints the body exactly.
        p = n.cli("invoke", "hello", check_rc=0)
        eq(p.stdout, b"hello, world\n")


def test_exec_echo_function():
    with Node() as n:
        n.deploy("echo")
        r = n.post("/fn/echo", body=b"any bytes \x00\xff at all")
        eq(r.status, 200)
        eq(r.body, b"any bytes \x00\xff at all")
        p = n.cli("invoke", "echo", "-d", "from the cli", check_rc=0)
        eq(p.stdout, b"from the cli")


def test_exec_gets_cgi_environment_and_nonzero_exit_is_an_error():
    with tempfile.TemporaryDirectory() as tmp, Node() as n:
        make_function(tmp, "envy", "name: envy\nruntime: exec\ncommand: ./envy.sh\n"
                      "env:\n  COLOR: blue\n",
                      {"envy.sh": ("#!/bin/sh\n"
                                   "if [ \"$QUERY_STRING\" = fail=1 ]; then echo oops >&2; exit 3; fi\n"
                                   "echo \"$REQUEST_METHOD $PATH_INFO $QUERY_STRING $COLOR "
                                   "$HTTP_X_TEST $CONTENT_LENGTH\"\n", 0o755)})
        n.deploy(os.path.join(tmp, "envy"))
        r = n.post("/fn/envy/a/b?x=1", body="12345", headers={"X-Test": "t1"})
        eq(r.status, 200)
        eq(r.text, "POST /a/b x=1 blue t1 5\n")
        r = n.get("/fn/envy?fail=1")
        eq(r.status, 502)
        eq(r.json()["error"]["code"], "function_failed")
        check("exited with status 3" in r.json()["error"]["message"], r.text)
        p = n.cli("invoke", "envy?fail=1")
        check(p.returncode != 0, "invoke of a failing function exits non-zero")


def test_json_transform_example():
    with Node() as n:
        n.deploy("json-transform")
        r = n.post("/fn/json-transform", body=json.dumps({"a": "x", "n": 1}))
        eq(r.status, 200)
        out = r.json()
        check(isinstance(out, dict), r.text)
        r = n.post("/fn/json-transform", body="{not json")
        eq(r.status, 400)


def test_request_reaches_function_whole():
    with Node() as n:
        n.deploy("probe")
        r = n.request("PUT", "/fn/probe/some/sub/path?x=1&y=%20", body="abc",
                      headers={"X-Test": "hdr"})
        eq(r.status, 200)
        j = r.json()
        eq(j["method"], "PUT")
        eq(j["path"], "/some/sub/path")
        eq(j["query"], "x=1&y=%20")
        eq(j["body_len"], 3)
        eq(j["x_test"], "hdr")
        eq(j["config"], "first")
        check(0 < j["deadline_ms"] <= 2000, f"deadline {j['deadline_ms']}")
        r = n.get("/fn/probe?status=418&header=X-Thing:thing-value")
        eq(r.status, 418)
        eq(r.headers.get("x-thing"), "thing-value")
        r = n.post("/fn/probe?echo=1", body=b"\x01\x02" * 100000)
        eq(r.body, b"\x01\x02" * 100000)


def test_versions_aliases_and_deletion():
    with tempfile.TemporaryDirectory() as tmp, Node() as n:
        src = open(os.path.join(FUNCTIONS, "probe", "probe.c")).read()
        base = "name: multi\nruntime: c\nsources: [probe.c]\nenv:\n  PROBE_NAME: %s\n"
        d = make_function(tmp, "multi", base % "one", {"probe.c": src})
        eq(n.deploy(d), 1)
        # The same bundle again makes no new version.
        p = n.cli("deploy", d, "--json", check_rc=0)
        eq(json.loads(p.stdout)["unchanged"], True)
        make_function(tmp, "multi", base % "two", {"probe.c": src})
        eq(n.deploy(d), 2)
        make_function(tmp, "multi", base % "three", {"probe.c": src})
        eq(n.deploy(d), 3)
        eq(n.get("/fn/multi").json()["config"], "three")
        eq(n.get("/fn/multi@1").json()["config"], "one")
        eq(n.get("/fn/multi@2").json()["config"], "two")
        n.cli("alias", "multi", "prod", "2", check_rc=0)
        eq(n.get("/fn/multi@prod").json()["config"], "two")
        eq(n.get("/fn/multi@prod").headers["x-mxu-version"], "2")
        n.cli("alias", "multi", "prod", "1", check_rc=0)
        eq(n.get("/fn/multi@prod").json()["config"], "one")
        # An aliased version cannot be deleted; latest moves down when it is.
        r = n.request("DELETE", "/v1/functions/multi/versions/1")
        eq(r.status, 409)
        n.cli("rm", "multi@3", check_rc=0)
        eq(n.get("/fn/multi").json()["config"], "two")
        eq(n.get("/fn/multi@3").status, 404)
        eq(n.get("/fn/multi@3").json()["error"]["code"], "version_not_found")
        eq(n.get("/fn/multi@nope").json()["error"]["code"], "alias_not_found")
        # Version numbers are never reused.
        make_function(tmp, "multi", base % "four", {"probe.c": src})
        eq(n.deploy(d), 4)
        fn = n.get("/v1/functions/multi").json()
        eq(sorted(v["version"] for v in fn["versions"]), [1, 2, 4])
        eq(fn["aliases"], {"latest": 4, "prod": 1})
        p = n.cli("ls", check_rc=0)
        check(b"multi" in p.stdout, p.stdout)
        n.cli("rm", "multi", check_rc=0)
        eq(n.get("/fn/multi").status, 404)
        eq(n.get("/fn/multi").json()["error"]["code"], "function_not_found")
        eq(n.get("/v1/functions").json()["functions"], [])


def test_show_reports_instances_and_capacity():
    with Node("--memory", "1Gi") as n:
        n.deploy("probe")
        n.get("/fn/probe")
        fn = n.get("/v1/functions/probe").json()
        eq(len(fn["instances"]), 1)
        eq(fn["instances"][0]["state"], "ready")
        eq(fn["capacity"]["memory_budget"], 1 << 30)
        eq(fn["capacity"]["memory_reserved"], 64 << 20)
        eq(fn["capacity"]["memory_free"], (1 << 30) - (64 << 20))
        eq(fn["stats"]["1"]["invocations"], 1)
        p = n.cli("show", "probe", check_rc=0)
        check(b"probe" in p.stdout and b"ready" in p.stdout, p.stdout)
        h = n.get("/v1/health").json()
        eq(h["status"], "ok")
        eq(h["capacity"]["instances"], 1)
