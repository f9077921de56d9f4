"""The catalogue (catalog/, docs/catalog.md): `mxu catalog ls` and `mxu catalog
deploy` (with --as, --env, --bind), and every block deployed through it and
driven over HTTP: outputs, errors as JSON with a status the caller can act on,
a kv counter under concurrency, messages a consumer really receives, and the
blocks under the sandbox and vm executors."""
import base64
import concurrent.futures
import gzip
import hashlib
import hmac
import json
import os
import shutil
import tempfile
import zlib

from harness import ROOT, Node, Skip, check, eq, make_function

CATALOG = os.path.join(ROOT, "catalog")
BLOCKS = ["base64", "compress", "csv-to-json", "hash", "json-pick", "json-validate",
          "kv-counter", "queue-publish", "template"]


def deploy(n, name, *args, rc=0):
    """`mxu catalog deploy NAME ARGS...` against the node; returns the process."""
    return n.cli("catalog", "deploy", name, "--dir", CATALOG, *args, check_rc=rc)


def same(got, want, what):
    """eq for big bodies: says where they differ instead of printing both."""
    if got != want:
        at = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got),
                                                                                 len(want)))
        raise AssertionError(f"{what}: {len(got)} bytes, wanted {len(want)}; first difference "
                             f"at {at}: {got[at:at + 80]!r}")


def error_of(r, status, code):
    """The block answered `status` with {"error": {"code": code, "message": ...}}."""
    eq(r.status, status, f"status of {r!r}")
    eq(r.headers.get("content-type"), "application/json", "error content type")
    e = r.json()["error"]
    eq(e["code"], code, "error code")
    check(isinstance(e["message"], str) and e["message"], r)
    return r.json()


def test_ls_lists_every_block_with_its_resources():
    with Node() as n:
        p = n.cli("catalog", "ls", "--dir", CATALOG, check_rc=0)
        out = p.stdout.decode()
        for b in BLOCKS:
            check(f"\n{b} " in out, f"{b} missing from:\n{out}")
        check("counters=kv:counters" in out and "queue=queue:events" in out, out)
        j = json.loads(n.cli("catalog", "ls", "--json", "--dir", CATALOG, check_rc=0).stdout)
        names = [b["name"] for b in j["blocks"]]
        eq(names, sorted(names), "sorted")
        check(set(BLOCKS) <= set(names), names)
        for b in j["blocks"]:
            check(b["description"], f"{b['name']} has no description")
            check(os.path.isfile(os.path.join(b["path"], "README.md")),
                  f"{b['name']} has no README.md")
        # the env override finds the same catalogue; a wrong one fails clearly
        env_ls = n.cli("catalog", "ls", check_rc=0)
        check(b"json-pick" in env_ls.stdout, env_ls)
        bad = n.cli("catalog", "ls", "--dir", "/nonexistent/catalog", check_rc=1)
        check(b"/nonexistent/catalog" in bad.stderr, bad.stderr)


def test_deploy_errors_are_clear():
    with Node() as n:
        p = deploy(n, "json-pik", rc=1)
        check(b"did you mean 'json-pick'" in p.stderr, p.stderr)
        p = deploy(n, "kv-counter", "--bind", "nope=kv:x", rc=1)
        check(b"no resource descriptor 'nope'" in p.stderr and b"counters" in p.stderr, p.stderr)
        p = deploy(n, "hash", "--env", "NOEQUALS", rc=2)
        check(b"KEY=VALUE" in p.stderr, p.stderr)
        p = n.cli("catalog", "frobnicate")
        eq(p.returncode, 2, "unknown subcommand")
        # an invalid name given with --as is the node's manifest error, as is
        p = deploy(n, "base64", "--as", "Bad Name", rc=1)
        check(b"name" in p.stderr, p.stderr)
        # nothing was deployed by the failures
        eq(n.get("/v1/functions").json()["functions"], [], "functions after failed deploys")


def check_json_pick(n):
    """The block's behaviour on node `n`, whatever its executor."""
    deploy(n, "json-pick", "--as", "pick", "--env",
           "FIELDS=id=/order/id,/customer/email,/contact/phone=/customer/phone")
    doc = {"order": {"id": 7, "x": 1}, "customer": {"email": "a@b", "phone": "1"}}
    r = n.post("/fn/pick", body=doc)
    eq(r.status, 200)
    eq(r.headers["content-type"], "application/json")
    eq(r.json(), {"id": 7, "email": "a@b", "contact": {"phone": "1"}})
    # missing fields are omitted by default; ?missing=error lists them
    eq(n.post("/fn/pick", body={"order": {"id": 1}}).json(), {"id": 1})
    j = error_of(n.post("/fn/pick?missing=error", body={"order": {"id": 1}}), 422,
                 "missing_fields")
    eq(j["missing"], ["/customer/email", "/customer/phone"])
    eq(n.post("/fn/pick?missing=null", body={}).json(),
       {"id": None, "email": None, "contact": {"phone": None}})
    # ?fields= overrides; JSON form for odd names; pointer escapes and indexes
    r = n.post("/fn/pick?fields=" + "%7B%22a%2Cb%22%3A%22%2Fx~1y%2F1%22%7D",
               body={"x/y": [0, "second"]})
    eq(r.json(), {"a,b": "second"})
    eq(n.post("/fn/pick?fields=/items&each=true", body=[{"items": 1}, {"items": 2}]).json(),
       [{"items": 1}, {"items": 2}])
    # an output inside an object picked from the body: the body is not written
    # into (once a cycle, answered 500 and leaked; /p read what /x/y put there)
    eq(n.post("/fn/pick?fields=/x=/o,/x/y/z=/o,/p=/o/y", body={"o": {}}).json(),
       {"x": {"y": {"z": {}}}})
    error_of(n.post("/fn/pick", body="{not json"), 400, "invalid_json")
    error_of(n.post("/fn/pick?fields=nopointer", body={}), 400, "invalid_fields")
    error_of(n.post("/fn/pick?each=true", body={}), 422, "not_an_array")
    # unconfigured, the block says what to set
    deploy(n, "json-pick")
    j = error_of(n.post("/fn/json-pick", body={}), 500, "not_configured")
    check("FIELDS" in j["error"]["message"], j)


def test_json_pick():
    with Node() as n:
        check_json_pick(n)


ORDER_SCHEMA = {
    "type": "object", "required": ["id", "items"], "additionalProperties": False,
    "properties": {
        "id": {"type": "string", "pattern": "^o-[0-9]+$"},
        "email": {"type": "string", "maxLength": 5},
        "status": {"enum": ["new", "paid"]},
        "items": {"type": "array", "minItems": 1, "items": {
            "type": "object", "required": ["qty"],
            "properties": {"qty": {"type": "integer", "minimum": 1, "maximum": 100}}}},
    },
}


PATTERN_SCHEMA = {
    "type": "object",
    "properties": {
        "email": {"type": "string", "pattern": "^[a-z0-9._-]+@[a-z0-9-]+(\\.[a-z]{2,})+$"},
        "sku": {"type": "string", "pattern": "^[[:upper:]]{2,3}-[[:digit:]]{4}$"},
        "tag": {"type": "string", "pattern": "(foo|bar)+"},
        "code": {"type": "string", "pattern": "^(a|aa)*c$"},
    },
}


def check_json_validate(n):
    """The block's behaviour on node `n`, whatever its executor."""
    deploy(n, "json-validate", "--as", "check-order", "--env",
           "SCHEMA=" + json.dumps(ORDER_SCHEMA))
    good = b'{"id": "o-1", "items": [{"qty": 2}], "status": "new"}'
    r = n.post("/fn/check-order", body=good)
    eq(r.status, 200)
    eq(r.body, good, "a valid body passes through byte for byte")
    bad = {"id": "x", "items": [{"qty": 0}, {}, {"qty": 1.5}], "zz": 1, "email": "abcdefg",
           "status": "lost"}
    j = error_of(n.post("/fn/check-order", body=bad), 422, "schema_violation")
    got = {(v["pointer"], v["keyword"]) for v in j["violations"]}
    eq(got, {("/id", "pattern"), ("/items/0/qty", "minimum"), ("/items/1", "required"),
             ("/items/2/qty", "type"), ("/zz", "additionalProperties"),
             ("/email", "maxLength"), ("/status", "enum")})
    j = error_of(n.post("/fn/check-order", body={"items": []}), 422, "schema_violation")
    eq({(v["pointer"], v["keyword"]) for v in j["violations"]},
       {("", "required"), ("/items", "minItems")})
    error_of(n.post("/fn/check-order", body=b"[1,"), 400, "invalid_json")
    # a pointer too long to quote whole is cut between characters, and the
    # violation still counts (it was dropped, and the body passed)
    long = {"id": "o-1", "items": [{"qty": 1}], "\u00e9" * 2100: 1}
    j = error_of(n.post("/fn/check-order", body=long), 422, "schema_violation")
    eq([v["keyword"] for v in j["violations"]], ["additionalProperties"])
    check(j["violations"][0]["pointer"].endswith("\u00e9/..."), j["violations"][0]["pointer"])
    # the pattern keyword: POSIX extended expressions, unanchored unless anchored
    deploy(n, "json-validate", "--as", "patterns", "--env",
           "SCHEMA=" + json.dumps(PATTERN_SCHEMA), "--env", "OUTPUT=result")
    ok = {"email": "ada.l@example.co.uk", "sku": "AB-1234", "tag": "x foobarfoo y",
          "code": "aaaaac"}
    eq(n.post("/fn/patterns", body=ok).json(), {"valid": True})
    for field, value in (("email", "ada@example"), ("email", "Ada@example.com"),
                         ("sku", "ab-1234"), ("sku", "ABCD-1234"), ("sku", "AB-123"),
                         ("tag", "fob"), ("code", "a" * 5000 + "b"), ("code", "ac\n")):
        j = error_of(n.post("/fn/patterns", body={field: value}), 422, "schema_violation")
        eq([(v["pointer"], v["keyword"]) for v in j["violations"]], [("/" + field, "pattern")],
           (field, value))
    eq(n.post("/fn/patterns", body={"code": "a" * 5000 + "c"}).json(), {"valid": True})
    # a pattern that is not an extended expression makes the schema refused
    deploy(n, "json-validate", "--as", "badpat", "--env",
           'SCHEMA={"pattern":"a{2,1}"}')
    j = error_of(n.post("/fn/badpat", body=b'"a"'), 500, "not_configured")
    check("pattern" in j["error"]["message"], j)
    # the result form, and a schema with an unsupported keyword refused by name
    deploy(n, "json-validate", "--as", "v2", "--env", 'SCHEMA={"type":"integer"}',
           "--env", "OUTPUT=result")
    eq(n.post("/fn/v2", body=b"3").json(), {"valid": True})
    error_of(n.post("/fn/v2", body=b"3.5"), 422, "schema_violation")
    deploy(n, "json-validate", "--as", "v3", "--env", 'SCHEMA={"oneOf":[]}')
    j = error_of(n.post("/fn/v3", body=b"{}"), 500, "not_configured")
    check("oneOf" in j["error"]["message"], j)


def test_json_validate():
    with Node() as n:
        check_json_validate(n)


def check_template(n):
    """The block's behaviour on node `n`, whatever its executor."""
    tpl = ("<p>Order {{id}} for {{customer.name}}</p>{{#items}}<li>{{sku}} x{{qty}}</li>"
           "{{/items}}{{^items}}no items{{/items}}{{{raw}}}{{! a comment }}")
    deploy(n, "template", "--as", "page", "--env", "TEMPLATE=" + tpl)
    r = n.post("/fn/page", body={"id": 7, "customer": {"name": "<Ada & \"co\">"},
                                 "items": [{"sku": "a", "qty": 2}, {"sku": "b", "qty": 1}],
                                 "raw": "<b>"})
    eq(r.status, 200)
    eq(r.headers["content-type"], "text/html; charset=utf-8")
    eq(r.text, "<p>Order 7 for &lt;Ada &amp; &quot;co&quot;&gt;</p>"
               "<li>a x2</li><li>b x1</li><b>")
    eq(n.post("/fn/page", body={"id": 8}).text, "<p>Order 8 for </p>no items")
    error_of(n.post("/fn/page", body=b"{"), 400, "invalid_json")
    deploy(n, "template", "--as", "strict", "--env", "TEMPLATE=Hi {{name}}!",
           "--env", "STRICT=true", "--env", "ESCAPE=none")
    r = n.post("/fn/strict", body={"name": "<x>"})
    eq((r.text, r.headers["content-type"]), ("Hi <x>!", "text/plain; charset=utf-8"))
    error_of(n.post("/fn/strict", body={}), 422, "missing_value")
    deploy(n, "template", "--as", "broken", "--env", "TEMPLATE={{#a}}x{{/b}}")
    error_of(n.post("/fn/broken", body={}), 500, "not_configured")
    # nested sections over one array repeat n^3 times: past MAX_OUTPUT, a 413
    # (it was a 200 cut at 64 MiB, after looping on without writing)
    deploy(n, "template", "--as", "cube", "--env", "TEMPLATE={{#a}}{{#a}}{{#a}}x{{/a}}{{/a}}{{/a}}",
           "--env", "MAX_OUTPUT=2Ki")
    eq(n.post("/fn/cube", body={"a": [1] * 8}).text, "x" * 512)
    error_of(n.post("/fn/cube", body={"a": [1] * 20}), 413, "output_too_large")
    error_of(n.post("/fn/cube", body={"a": [1] * 5000}), 413, "output_too_large")


def test_template():
    with Node() as n:
        check_template(n)


def check_hash_and_hmac(n):
    """The block's behaviour on node `n`, whatever its executor."""
    deploy(n, "hash")
    body = b"the quick brown fox"
    eq(n.post("/fn/hash", body=body).text, hashlib.sha256(body).hexdigest() + "\n")
    eq(n.post("/fn/hash?alg=sha512&enc=base64", body=body).text,
       base64.b64encode(hashlib.sha512(body).digest()).decode() + "\n")
    eq(n.post("/fn/hash?alg=blake2b&output=json", body=body).json(),
       {"algorithm": "blake2b", "encoding": "hex", "bytes": len(body), "keyed": False,
        "digest": hashlib.blake2b(body, digest_size=32).hexdigest()})
    error_of(n.post("/fn/hash?alg=md5", body=body), 400, "invalid_setting")
    # signing with a configured key, as a header on the passed-through body
    deploy(n, "hash", "--as", "sign", "--env", "KEY=s3cret", "--env", "OUTPUT=header")
    r = n.post("/fn/sign", body=body, headers={"Content-Type": "application/json"})
    sig = hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    eq((r.body, r.headers["x-signature"], r.headers["content-type"]),
       (body, sig, "application/json"))
    # a key in the request is not a key: ?key= changes nothing
    eq(n.post("/fn/sign?key=other", body=body).headers["x-signature"], sig)
    deploy(n, "hash", "--as", "verify", "--env", "KEY=s3cret", "--env", "MODE=verify")
    eq(n.post("/fn/verify", body=body, headers={"X-Signature": "sha256=" + sig}).body, body)
    eq(n.post("/fn/verify?signature=" + sig.upper(), body=body).status, 200)
    error_of(n.post("/fn/verify", body=body + b"!", headers={"X-Signature": sig}), 401,
             "bad_signature")
    error_of(n.post("/fn/verify", body=body), 400, "missing_signature")


def test_hash_and_hmac():
    with Node() as n:
        check_hash_and_hmac(n)


def check_compress_and_decompress(n):
    """The block's behaviour on node `n`, whatever its executor."""
    deploy(n, "compress")
    deploy(n, "compress", "--as", "gunzip", "--env", "MODE=decompress",
           "--env", "MAX_OUTPUT=1Mi", "--env", "CONTENT_TYPE=text/plain")
    data = b"hello compressible world " * 1000
    r = n.post("/fn/compress", body=data)
    eq((r.status, r.headers["content-type"]), (200, "application/gzip"))
    same(gzip.decompress(r.body), data, "gzip")
    check(len(r.body) < len(data) // 10, len(r.body))
    r = n.post("/fn/gunzip", body=r.body)
    same(r.body, data, "gunzip")
    eq(r.headers["content-type"], "text/plain")
    # the other formats, both ways
    same(zlib.decompress(n.post("/fn/compress?format=zlib&level=9", body=data).body), data,
         "zlib")
    raw = n.post("/fn/compress?format=deflate", body=data).body
    same(zlib.decompress(raw, -15), data, "deflate")
    same(n.post("/fn/gunzip?format=deflate", body=raw).body, data, "inflate")
    same(n.post("/fn/gunzip", body=zlib.compress(data)).body, data, "auto")  # zlib too
    # hostile input: garbage, truncation, trailing bytes, a bomb
    error_of(n.post("/fn/gunzip", body=b"not gzip at all"), 400, "invalid_data")
    gz = gzip.compress(data)
    error_of(n.post("/fn/gunzip", body=gz[:len(gz) // 2]), 400, "invalid_data")
    error_of(n.post("/fn/gunzip", body=gz + b"junk"), 400, "invalid_data")
    error_of(n.post("/fn/gunzip", body=b""), 400, "invalid_data")
    bomb = gzip.compress(b"\0" * (64 << 20))
    error_of(n.post("/fn/gunzip", body=bomb), 413, "output_too_large")
    error_of(n.post("/fn/compress?level=12", body=data), 400, "invalid_setting")
    # the instance survived all of it
    same(n.post("/fn/gunzip", body=gz).body, data, "after")


def test_compress_and_decompress():
    with Node() as n:
        check_compress_and_decompress(n)


def check_csv_to_json(n):
    """The block's behaviour on node `n`, whatever its executor."""
    deploy(n, "csv-to-json")
    csv = ('\ufeffid,name,note\r\n1,"Smith, Ada","said ""hi""\nthen left"\r\n'
           '2,Bob,\n\n3,Zoë,x').encode()
    r = n.post("/fn/csv-to-json", body=csv)
    eq((r.status, r.headers["content-type"]), (200, "application/json"))
    eq(r.json(), [{"id": "1", "name": "Smith, Ada", "note": 'said "hi"\nthen left'},
                  {"id": "2", "name": "Bob", "note": ""},
                  {"id": "3", "name": "Zoë", "note": "x"}])
    eq(n.post("/fn/csv-to-json?types=infer", body=b"a,b,c,d,e\n1.5,true,,007,-2\n").json(),
       [{"a": 1.5, "b": True, "c": None, "d": "007", "e": -2}])
    # Integers beyond 64 bits stay strings: jansson-based blocks refuse them.
    eq(n.post("/fn/csv-to-json?types=infer",
              body=b"a,b,c\n9223372036854775807,9223372036854775808,-99999999999999999999\n").json(),
       [{"a": 9223372036854775807, "b": "9223372036854775808", "c": "-99999999999999999999"}])
    eq(n.post("/fn/csv-to-json?header=false&delimiter=;", body=b"a;b\n1;2").json(),
       [["a", "b"], ["1", "2"]])
    eq(n.post("/fn/csv-to-json", body=b"a,b\n").json(), [])
    j = error_of(n.post("/fn/csv-to-json", body=b"a,b\n1,2\n\n3\n"), 422, "field_count")
    check("line 4" in j["error"]["message"], j)
    error_of(n.post("/fn/csv-to-json", body=b'a\n"open'), 400, "invalid_csv")
    error_of(n.post("/fn/csv-to-json", body=b'a\n"x"y'), 400, "invalid_csv")
    error_of(n.post("/fn/csv-to-json", body=b"a,a\n1,2"), 422, "duplicate_header")
    error_of(n.post("/fn/csv-to-json", body=b"a,b\x00c\n1,2"), 422, "invalid_header")
    error_of(n.post("/fn/csv-to-json", body=b"a\n\xff\xfe"), 400, "invalid_utf8")
    error_of(n.post("/fn/csv-to-json", body=b""), 400, "invalid_csv")


def test_csv_to_json():
    with Node() as n:
        check_csv_to_json(n)


def check_base64(n):
    """The block's behaviour on node `n`, whatever its executor."""
    deploy(n, "base64")
    deploy(n, "base64", "--as", "unb64", "--env", "MODE=decode")
    data = bytes(range(256)) * 3
    enc = n.post("/fn/base64", body=data)
    eq(enc.text, base64.b64encode(data).decode())
    same(n.post("/fn/unb64", body=enc.body).body, data, "decode")
    eq(n.post("/fn/base64?variant=url", body=b"\xfb\xff").text, "-_8=")
    eq(n.post("/fn/unb64?variant=url", body=b"-_8").body, b"\xfb\xff")
    wrapped = base64.encodebytes(data)  # MIME lines of 76
    same(n.post("/fn/unb64", body=wrapped).body, data, "mime")
    error_of(n.post("/fn/unb64", body=b"not*base64"), 400, "invalid_base64")


def test_base64():
    with Node() as n:
        check_base64(n)


def test_kv_counter_under_concurrency():
    with Node() as n:
        deploy(n, "kv-counter")
        n.deploy("store")  # reads kv:orders, to see what the counter wrote

        def bump(_):
            return n.get("/fn/kv-counter?name=hits").status

        with concurrent.futures.ThreadPoolExecutor(16) as ex:
            codes = list(ex.map(bump, range(200)))
        eq(codes.count(200), 200, f"statuses {set(codes)}")
        eq(n.get("/fn/kv-counter?name=hits&op=get").json(), {"name": "hits", "value": 200})
        check(len(n.instances("kv-counter")) > 1, "the increments ran on several instances")
        eq(n.get("/fn/kv-counter/hits?by=-50").json()["value"], 150)
        eq(n.get("/fn/kv-counter?name=hits&op=reset").json()["value"], 0)
        eq(n.get("/fn/kv-counter?name=hits&op=get").json()["value"], 0)
        error_of(n.get("/fn/kv-counter"), 400, "missing_name")
        error_of(n.get("/fn/kv-counter?name=a%20b"), 400, "invalid_name")
        error_of(n.get("/fn/kv-counter?name=x&by=1.5"), 400, "invalid_setting")
        # re-pointed at another store with a prefix: the value lands where --bind says
        deploy(n, "kv-counter", "--as", "orders-counter", "--bind", "counters=kv:orders",
               "--env", "PREFIX=count:")
        eq(n.get("/fn/orders-counter?name=o&by=9223372036854775807").json()["value"],
           9223372036854775807)
        eq(n.get("/fn/store/kv/get?k=count:o").text, "9223372036854775807")
        error_of(n.get("/fn/orders-counter?name=o"), 422, "overflow")
        n.post("/fn/store/kv/put?k=count:junk", body="abc")
        error_of(n.get("/fn/orders-counter?name=junk"), 409, "not_a_counter")
        # NAME: the counter of a request that names none (a service's step)
        deploy(n, "kv-counter", "--as", "named-counter", "--env", "NAME=orders")
        eq(n.post("/fn/named-counter", body='{"any": "body"}').json(),
           {"name": "orders", "value": 1})
        eq(n.get("/fn/named-counter?name=other").json()["name"], "other")


def test_queue_publish_messages_are_consumable():
    with Node() as n:
        deploy(n, "queue-publish")
        n.deploy("store")  # consumes queue:jobs
        r = n.post("/fn/queue-publish", body=b"event")
        eq(r.status, 202)
        check(r.json()["id"] > 0 and r.json()["bytes"] == 5, r)
        # bound to queue:jobs, a consumer there gets each message once, in order
        deploy(n, "queue-publish", "--as", "jobs", "--bind", "queue=queue:jobs")
        ids = [n.post("/fn/jobs", body=f"job{i}").json()["id"] for i in range(3)]
        eq(len(set(ids)), 3)
        for i in range(3):
            m = n.get("/fn/store/q/take")
            eq(m.body, f"job{i}".encode())
            eq(n.get("/fn/store/q/ack?r=" + m.headers["x-receipt"]).status, 200)
        eq(n.get("/fn/store/q/take").status, 404, "the queue is empty: event went elsewhere")
        # passthrough: the body comes back, the id in a header, the message is there
        deploy(n, "queue-publish", "--as", "tee", "--bind", "queue=queue:jobs",
               "--env", "OUTPUT=passthrough")
        r = n.post("/fn/tee", body=b'{"a":1}', headers={"Content-Type": "application/json"})
        eq((r.status, r.body, r.headers["content-type"]), (200, b'{"a":1}', "application/json"))
        check(int(r.headers["x-message-id"]) > 0, r.headers)
        eq(n.get("/fn/store/q/take").body, b'{"a":1}')
        error_of(n.post("/fn/jobs", body=b""), 400, "empty_body")
        error_of(n.post("/fn/jobs", body=b"x" * (300 * 1024)), 413, "message_too_large")


def test_blocks_under_the_sandbox():
    with Node("--executor", "sandbox") as n:
        if "sandbox" not in n.get("/v1/health").json().get("executors", []):
            raise Skip("the sandbox executor is unavailable here")
        for b in ("json-validate", "compress", "hash", "kv-counter", "csv-to-json"):
            deploy(n, b, *(["--env", 'SCHEMA={"type":"object","required":["a"]}']
                           if b == "json-validate" else []))
        eq(n.post("/fn/json-validate", body={"a": 1}).json(), {"a": 1})
        error_of(n.post("/fn/json-validate", body={}), 422, "schema_violation")
        data = os.urandom(1000) * 20
        same(gzip.decompress(n.post("/fn/compress", body=data).body), data, "sandbox gzip")
        eq(n.post("/fn/hash", body=b"x").text, hashlib.sha256(b"x").hexdigest() + "\n")
        eq(n.post("/fn/csv-to-json", body=b"a\n1").json(), [{"a": "1"}])
        eq([n.get("/fn/kv-counter?name=s").json()["value"] for _ in range(3)], [1, 2, 3])
        inst = n.instances("compress")
        check(inst and all(i["executor"] == "sandbox" for i in inst), inst)


def test_blocks_under_vm():
    """All nine blocks run under vm: kv-counter and queue-publish on the SDK
    alone, json-pick, template, csv-to-json, json-validate (jansson, and the
    guest C library's regcomp/regexec for `pattern`), hash, base64
    (libsodium) and compress (zlib) with Debian's static archives linked into
    the guest (docs/vm.md). Each block's whole behaviour test runs against
    the vm node, so they behave exactly as under process. A library outside
    the guest's list is refused at deploy, by name."""
    from test_vm import vm_node
    n = vm_node("--executor", "vm")
    with n:
        deploy(n, "kv-counter")
        deploy(n, "queue-publish", "--as", "jobs", "--bind", "queue=queue:jobs")
        eq([n.get("/fn/kv-counter?name=v").json()["value"] for _ in range(3)], [1, 2, 3])
        eq(n.post("/fn/jobs", body=b"in a guest").status, 202)
        check_json_pick(n)
        check_template(n)
        check_csv_to_json(n)
        check_hash_and_hmac(n)
        check_base64(n)
        check_compress_and_decompress(n)
        check_json_validate(n)
        # reals through jansson: printed with %.17g and read back, exactly
        deploy(n, "json-pick", "--as", "reals", "--env", "FIELDS=/a,/b,/c,/d")
        doc = b'{"a": 0.1, "b": 1e-300, "c": 2.2250738585072011e-308, "d": 123456.789e3}'
        eq(n.post("/fn/reals", body=doc).json(), json.loads(doc))
        for name in ("kv-counter", "jobs", "pick", "page", "csv-to-json", "hash", "sign",
                     "base64", "compress", "gunzip", "check-order", "patterns"):
            inst = n.instances(name)
            check(inst and all(i["executor"] == "vm" for i in inst), (name, inst))
        tmp = tempfile.mkdtemp()
        try:
            d = make_function(tmp, "uvfn", "name: uvfn\nruntime: c\nsources: [f.c]\n"
                              "build:\n  libs: [jansson, uv]\n",
                              {"f.c": "#include <mxu/fn.h>\nint main(void) { return 0; }\n"})
            p = n.cli("deploy", d, check_rc=1)
            check(b"cannot link build: libs: uv" in p.stderr and b"executor: process or sandbox"
                  in p.stderr, p.stderr)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)