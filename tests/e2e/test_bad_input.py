"""Bad input gets a clear error and changes nothing."""
import json
import os
import tempfile

from harness import FUNCTIONS, Node, check, eq, make_function

PROBE = open(os.path.join(FUNCTIONS, "probe", "probe.c")).read()


def test_malformed_manifest_names_file_line_and_field():
    with tempfile.TemporaryDirectory() as tmp, Node() as n:
        d = make_function(tmp, "bad", "name: bad\nruntime: c\nsources: [probe.c]\nmemory: 12X\n",
                          {"probe.c": PROBE})
        p = n.cli("deploy", d)
        eq(p.returncode, 1)
        err = p.stderr.decode()
        check(os.path.join(d, "mxu.yaml") + ":4" in err, err)
        check("memory" in err, err)
        eq(n.get("/v1/functions").json()["functions"], [], "nothing deployed")
        # Through the API, the code says what kind of error it is.
        r = n.post("/v1/functions", body={"manifest": "name: x\nruntime: cobol\n",
                                          "manifest_path": "x/mxu.yaml", "files": []})
        eq(r.status, 400)
        eq(r.json()["error"]["code"], "invalid_manifest")
        check("x/mxu.yaml:2" in r.json()["error"]["message"], r.text)
        r = n.post("/v1/functions", body={"manifest": "name: [\n", "files": []})
        eq(r.status, 400)


def test_failed_build_reports_compiler_errors_and_changes_nothing():
    with tempfile.TemporaryDirectory() as tmp, Node() as n:
        d = make_function(tmp, "broken", "name: broken\nruntime: c\nsources: [b.c]\n",
                          {"b.c": "#include <mxu/fn.h>\nint mxu_handle(mxu_req *r, mxu_res *s)"
                                  " { return undeclared_thing; }\n"})
        p = n.cli("deploy", d)
        eq(p.returncode, 1)
        check(b"undeclared_thing" in p.stderr, p.stderr)
        eq(n.get("/fn/broken").status, 404)
        # A good version, then a broken one: the good one stays latest.
        make_function(tmp, "broken", "name: broken\nruntime: c\nsources: [b.c]\n",
                      {"b.c": PROBE})
        eq(n.deploy(d), 1)
        make_function(tmp, "broken", "name: broken\nruntime: c\nsources: [b.c]\n",
                      {"b.c": "this is not C\n"})
        r = json.loads(n.cli("deploy", d, "--json").stdout or b"{}")
        eq(n.get("/fn/broken").status, 200)
        eq(n.get("/v1/functions/broken").json()["aliases"], {"latest": 1})


def test_malformed_http_gets_400():
    with Node() as n:
        out = n.raw(b"THIS IS NOT HTTP\r\n\r\n")
        check(out.startswith(b"HTTP/1.1 400"), out)
        out = n.raw(b"GET /fn/x HTTP/1.1\r\nHost: a\r\nContent-Length: zz\r\n\r\n")
        check(out.startswith(b"HTTP/1.1 400"), out)
        # The node is still serving.
        eq(n.get("/v1/health").status, 200)


def test_oversized_body_gets_413():
    with Node("--max-body", "1Mi") as n:
        n.deploy("echo")
        r = n.post("/fn/echo", body=b"x" * (1024 * 1024 + 1))
        eq(r.status, 413)
        r = n.post("/fn/echo", body=b"x" * (1024 * 1024))
        eq(r.status, 200)
        eq(len(r.body), 1024 * 1024)
        # Deploys may be larger than invocations (the /v1/ limit is separate).
        import base64
        r = n.post("/v1/functions", body={
            "manifest": "name: bigfiles\nruntime: exec\ncommand: /bin/cat\n",
            "files": [{"path": "data.bin", "mode": 420,
                       "data": base64.b64encode(b"y" * (3 << 20)).decode()}]})
        eq(r.status, 201)


def test_oversized_headers_get_431():
    with Node() as n:
        out = n.raw(b"GET /v1/health HTTP/1.1\r\nHost: a\r\nX-Big: " + b"y" * 40000 + b"\r\n\r\n")
        check(out.startswith(b"HTTP/1.1 431"), out[:100])


def test_unknown_function_and_paths():
    with Node() as n:
        r = n.get("/fn/nothing")
        eq(r.status, 404)
        eq(r.json()["error"]["code"], "function_not_found")
        eq(r.headers.get("x-mxu-error"), "function_not_found")
        check("nothing" in r.json()["error"]["message"], r.text)
        eq(n.get("/v2/whatever").status, 404)
        eq(n.get("/v1/nope").json()["error"]["code"], "not_found")
        r = n.request("PATCH", "/v1/functions")
        eq(r.status, 405)
        check("allow" in r.headers, r.headers)
        p = n.cli("invoke", "nothing")
        check(p.returncode != 0, "invoke of unknown function fails")
        check(b"function_not_found" in p.stderr or b"no function" in p.stderr, p.stderr)


def test_non_utf8_and_invalid_names():
    with Node() as n:
        for path in (b"/fn/caf\xc3\xa9", b"/fn/\xff\xfe", b"/fn/UPPER", b"/fn/a%2Fb",
                     b"/v1/functions/\xff"):
            out = n.raw(b"GET " + path + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                        b"Authorization: Bearer " + n.key.encode() + b"\r\n\r\n")
            check(out.startswith(b"HTTP/1.1 400"), (path, out[:200]))
            check(b"invalid_name" in out, out)
        r = n.post("/v1/functions", body={"manifest": "name: Bad-Name\nruntime: exec\n"
                                                      "command: /bin/cat\n", "files": []})
        eq(r.status, 400)
        r = n.post("/v1/functions", body=b'{"manifest": "name: \xff\\n"}')
        eq(r.status, 400)


def test_bad_deploy_requests():
    with Node() as n:
        eq(n.post("/v1/functions", body="not json").status, 400)
        eq(n.post("/v1/functions", body={"files": []}).status, 400)
        r = n.post("/v1/functions", body={
            "manifest": "name: sneaky\nruntime: exec\ncommand: ./x.sh\n",
            "files": [{"path": "../../etc/evil", "mode": 493, "data": "eA=="}]})
        eq(r.status, 400)
        eq(r.json()["error"]["code"], "invalid_bundle")
        r = n.post("/v1/functions", body={
            "manifest": "name: sneaky\nruntime: exec\ncommand: ./x.sh\n",
            "files": [{"path": "x.sh", "mode": 493, "data": "!!not base64!!"}]})
        eq(r.status, 400)
        eq(n.get("/v1/functions").json()["functions"], [])


def test_function_cannot_inject_headers_or_break_framing():
    with Node() as n:
        n.deploy("probe")
        r = n.get("/fn/probe?header=X-Evil:a%0d%0aSet-Cookie:%20stolen=1")
        eq(r.status, 200)
        check("set-cookie" not in r.headers, r.headers)
        check("x-evil" not in r.headers, r.headers)
        eq(r.headers.get("x-probe"), "yes")
        r = n.get("/fn/probe?status=101")
        eq(r.status, 502)
        eq(r.json()["error"]["code"], "bad_response")


def test_gigantic_output_is_refused_and_node_survives():
    import tempfile as tf
    with tf.TemporaryDirectory() as tmp, Node() as n:
        n.deploy("probe")
        r = n.get("/fn/probe?big=%d" % (7 << 20))
        eq(r.status, 502)
        eq(r.json()["error"]["code"], "bad_response")
        eq(n.get("/fn/probe?big=1000").body, b"x" * 1000)
        make_function(tmp, "flood", "name: flood\nruntime: exec\ncommand: /usr/bin/yes\n", {})
        n.deploy(os.path.join(tmp, "flood"))
        r = n.get("/fn/flood")
        eq(r.status, 502)
        eq(r.json()["error"]["code"], "bad_response")
        eq(n.get("/v1/health").status, 200)
