"""Services (docs/services.md): `kind: service` manifests run by the compose
engine — payloads between steps, header and weighted routes (a 90/10 canary
within 3% over 10,000 runs), retries with backoff, circuit breakers,
fallbacks, on_error handlers, parallel joins, switches, deadlines, W3C trace
context, traces, policy denials on links and usage records per step.

Every callee is tests/e2e/functions/step deployed under a name with an env
that says what it does; its invocation counts come from /v1/functions."""
import http.client
import json
import os
import signal
import tempfile
import threading
import time

from harness import FUNCTIONS, Node, check, eq, make_function

STEP = open(os.path.join(FUNCTIONS, "step", "step.c")).read()
TP = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def fn(n, tmp, name, resources="", **env):
    """Deploy the step function as `name` with this env; returns its version."""
    m = (f"name: {name}\nruntime: c\nsources: [step.c]\nmemory: 32Mi\ntimeout: 5s\n"
         "max_instances: 1\nkeep_alive: 10m\n")
    if resources:
        m += "resources:\n" + resources
    if env:
        m += "env:\n" + "".join(f"  {k}: '{v}'\n" for k, v in env.items())
    return n.deploy(make_function(tmp, name, m, {"step.c": STEP}))


def svc(n, tmp, name, text):
    """Deploy a service (its manifest after kind and name)."""
    return n.deploy(make_function(tmp, "svc-" + name,
                                  f"kind: service\nname: {name}\n" + text, {}))


def calls(n, name, version=None):
    """How many times a function was invoked (all versions, or one)."""
    stats = n.get(f"/v1/functions/{name}").json()["stats"]
    if version is not None:
        return stats.get(str(version), {}).get("invocations", 0)
    return sum(s["invocations"] for s in stats.values())


def trace(n, r):
    t = n.get("/v1/traces/" + r.headers["x-mxu-trace"])
    eq(t.status, 200, t.text)
    runs = t.json()["runs"]
    return runs[-1]


def step_of(run, sid):
    for s in run["steps"]:
        if s["id"] == sid:
            return s
    raise AssertionError(f"no step {sid} in {run}")


def test_chain_payloads_and_trace_context():
    with tempfile.TemporaryDirectory() as tmp, Node() as n:
        fn(n, tmp, "first", MODE="headers", TAG="1")
        fn(n, tmp, "a", MODE="append", TAG="A")
        fn(n, tmp, "b", MODE="append", TAG="B")
        fn(n, tmp, "h", MODE="headers", TAG="H")
        svc(n, tmp, "front", "steps:\n  - first\n")
        svc(n, tmp, "chain", "public: true\nsteps:\n  - a\n  - b\n  - h\n")
        # The first step gets the service's request whole.
        r = n.request("PUT", "/fn/front/sub/path?x=1", body=b"{}",
                      headers={"Content-Type": "application/json", "X-Thing": "yes"})
        eq(r.status, 200, r.text)
        j = r.json()
        eq((j["method"], j["path"], j["query"]), ("PUT", "/sub/path", "x=1"))
        eq(j["headers"]["x-thing"], "yes")
        eq(j["headers"]["content-type"], "application/json")
        check("authorization" not in j["headers"], "the mxu key is the node's")
        # Later steps get POST with the previous answer and its Content-Type,
        # and the request's other headers; the chain runs in order.
        r = n.post("/fn/chain?q=1", body="x", headers={"X-Thing": "yes", "traceparent": TP},
                   auth=False)
        eq(r.status, 200, r.text)
        j = r.json()
        eq((j["method"], j["path"], j["query"]), ("POST", "/", ""))
        eq(j["headers"]["content-type"], "text/plain")
        eq(j["headers"]["x-thing"], "yes")
        # traceparent: the client's trace id goes on, each call has its own parent id
        tid = TP.split("-")[1]
        step_tp = j["headers"]["traceparent"].split("-")
        eq(step_tp[1], tid)
        check(step_tp[2] != TP.split("-")[2], "a step's call has a parent id of its own")
        eq(r.headers["x-mxu-trace"], tid)
        eq(r.headers["traceparent"].split("-")[1], tid)
        run = trace(n, r)
        eq([s["id"] for s in run["steps"]], ["a", "b", "h"])
        eq(step_of(run, "a")["function"], "a@1")
        # The payload: A then B appended to "x" reached h as its body.
        r2 = n.post("/fn/chain", body="x", auth=False,
                    headers={"traceparent": "00-zz-not-valid"})
        eq(r2.status, 200)
        check(r2.headers["x-mxu-trace"] != tid and len(r2.headers["x-mxu-trace"]) == 32,
              "an invalid traceparent starts a new trace")
        eq(calls(n, "a"), 2)


def test_chain_body_order():
    with tempfile.TemporaryDirectory() as tmp, Node() as n:
        for t in "abc":
            fn(n, tmp, t, MODE="append", TAG=t.upper())
        svc(n, tmp, "abc", "steps: [c, a, b, a]\n")
        r = n.post("/fn/abc", body="<")
        eq((r.status, r.text), (200, "<CABA"))
        run = trace(n, r)
        eq([s["id"] for s in run["steps"]], ["c", "a", "b", "a-2"])


def test_header_and_weighted_routes():
    with tempfile.TemporaryDirectory() as tmp, Node() as n:
        fn(n, tmp, "pricing", TAG="v1")
        fn(n, tmp, "pricing", TAG="v2")
        fn(n, tmp, "pricing", TAG="v3")
        n.cli("alias", "pricing", "beta", "3", check_rc=0)
        svc(n, tmp, "shop", """steps:
  - id: price
    routes:
      - {header: x-beta, equals: "1", call: pricing@beta}
      - {call: pricing@1, weight: 1}
""")
        r = n.post("/fn/shop", headers={"X-Beta": "1"})
        eq((r.status, r.json()["tag"]), (200, "v3"), r.text)
        s = step_of(trace(n, r), "price")
        eq((s["route"], s["why"], s["function"]), ("pricing@beta", "header x-beta=1", "pricing@3"))
        # another value of the header: the weighted routes
        r = n.post("/fn/shop", headers={"X-Beta": "2"})
        eq(r.json()["tag"], "v1")
        s = step_of(trace(n, r), "price")
        eq(s["function"], "pricing@1")
        eq(s["why"], "only weighted route")


def test_canary_split_90_10_over_10000_runs():
    with tempfile.TemporaryDirectory() as tmp, Node() as n:
        fn(n, tmp, "pricing", TAG="v1")
        fn(n, tmp, "pricing", TAG="v2")
        svc(n, tmp, "canary", """public: true
steps:
  - id: price
    routes:
      - {call: pricing@1, weight: 90}
      - {call: pricing@2, weight: 10}
""")
        host, port = n.url.split("//")[1].split(":")
        counts = {"v1": 0, "v2": 0}
        lock = threading.Lock()
        errors = []

        def client(k):
            c = http.client.HTTPConnection(host, int(port), timeout=30)
            mine = {"v1": 0, "v2": 0}
            try:
                for _ in range(k):
                    c.request("POST", "/fn/canary", body=b"")
                    r = c.getresponse()
                    body = r.read()
                    if r.status != 200:
                        errors.append((r.status, body))
                        return
                    mine[json.loads(body)["tag"]] += 1
            finally:
                c.close()
            with lock:
                for key, v in mine.items():
                    counts[key] += v

        threads = [threading.Thread(target=client, args=(1250,)) for _ in range(8)]
        t0 = time.time()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        check(not errors, f"errors: {errors[:3]}")
        total = counts["v1"] + counts["v2"]
        eq(total, 10000)
        share = counts["v2"] / total
        check(0.07 <= share <= 0.13, f"v2 got {share:.3%} of 10,000 runs, wanted 10% +- 3%")
        # the functions' own counts agree
        eq(calls(n, "pricing", 2), counts["v2"])
        print(f"  10,000 runs in {time.time() - t0:.1f}s, v2 share {share:.2%}")


def test_retries_recover_with_backoff():
    with tempfile.TemporaryDirectory() as tmp, Node() as n:
        fn(n, tmp, "flaky", FAIL_FIRST=2, TAG="ok")
        svc(n, tmp, "retry", """steps:
  - call: flaky
    retries: 2
    backoff: 100ms
""")
        t0 = time.time()
        r = n.post("/fn/retry")
        took = time.time() - t0
        eq((r.status, r.json()["tag"]), (200, "ok"), r.text)
        # backoff 100 ms, then 200 ms: at least 300 ms in all
        check(took >= 0.3, f"two retries with backoff 100ms took only {took:.3f}s")
        s = step_of(trace(n, r), "flaky")
        eq((s["attempts"], s["retries"], s["status"]), (3, 2, 200))
        eq([c["status"] for c in s["calls"]], [500, 500, 200])
        # the second call started >= 100 ms after the first ended, the third >= 200 ms
        c = s["calls"]
        check(c[1]["start_us"] - (c[0]["start_us"] + c[0]["duration_us"]) >= 100000, c)
        check(c[2]["start_us"] - (c[1]["start_us"] + c[1]["duration_us"]) >= 200000, c)
        eq(calls(n, "flaky"), 3)


def test_retries_exhausted_and_retry_on():
    with tempfile.TemporaryDirectory() as tmp, Node() as n:
        fn(n, tmp, "bad", MODE="fail", TAG="bad")
        fn(n, tmp, "busy", MODE="status", STATUS=429, TAG="slow down")
        svc(n, tmp, "r1", "steps:\n  - {call: bad, retries: 2, backoff: 1ms}\n")
        svc(n, tmp, "r2", "steps:\n  - {call: bad, retries: 2, backoff: 1ms, retry_on: [429]}\n")
        svc(n, tmp, "r3", "steps:\n  - {call: busy, retries: 1, backoff: 1ms, retry_on: [429]}\n")
        svc(n, tmp, "r4", "steps:\n  - {call: busy, retries: 1, backoff: 1ms}\n")
        r = n.post("/fn/r1")
        eq(r.status, 502, r.text)
        e = r.json()["error"]
        eq((e["code"], e["step"], e["status"]), ("step_failed", "bad", 500))
        eq(r.headers["x-mxu-error"], "step_failed")
        eq(calls(n, "bad"), 3)
        r = n.post("/fn/r2")  # a 500 is not retried when only 429 is
        eq(r.status, 502)
        eq(calls(n, "bad"), 4)
        r = n.post("/fn/r3")  # 429 retried, then the step fails
        eq(r.status, 502)
        eq(calls(n, "busy"), 2)
        r = n.post("/fn/r4")  # 429 not retried: a 4xx answer ends the run with it
        eq((r.status, r.text), (429, "slow down"))
        eq(calls(n, "busy"), 3)


def test_breaker_opens_half_opens_and_closes():
    with tempfile.TemporaryDirectory() as tmp, Node() as n:
        fn(n, tmp, "dep", MODE="fail", TAG="down")
        fn(n, tmp, "dep", TAG="up")
        n.cli("alias", "dep", "live", "1", check_rc=0)
        svc(n, tmp, "guarded", """steps:
  - call: dep@live
    breaker: {failures: 3, open_for: 1s}
""")
        for _ in range(3):
            eq(n.post("/fn/guarded").status, 502)
        eq(calls(n, "dep", 1), 3)
        # open: fails at once, the function is not called
        for _ in range(5):
            r = n.post("/fn/guarded")
            eq(r.status, 503, r.text)
            eq(r.json()["error"]["code"], "circuit_open")
        eq(calls(n, "dep", 1), 3)
        s = step_of(trace(n, r), "dep")
        eq((s["why"], s["calls"]), ("breaker open", []))
        # after open_for, one trial: it fails, the breaker opens again
        time.sleep(1.1)
        eq(n.post("/fn/guarded").status, 502)
        eq(calls(n, "dep", 1), 4)
        eq(n.post("/fn/guarded").status, 503)
        eq(calls(n, "dep", 1), 4)
        # the callee recovers; after open_for the trial succeeds and closes it
        n.cli("alias", "dep", "live", "2", check_rc=0)
        eq(n.post("/fn/guarded").status, 503)  # still open
        time.sleep(1.1)
        r = n.post("/fn/guarded")
        eq((r.status, r.json()["tag"]), (200, "up"), r.text)
        check("trial" in step_of(trace(n, r), "dep")["why"], "the trial call is in the trace")
        for _ in range(3):
            eq(n.post("/fn/guarded").status, 200)
        eq(calls(n, "dep", 2), 4)


def test_breaker_open_goes_to_fallback():
    with tempfile.TemporaryDirectory() as tmp, Node() as n:
        fn(n, tmp, "dep", MODE="fail", TAG="down")
        fn(n, tmp, "spare", TAG="spare")
        svc(n, tmp, "guarded", """steps:
  - call: dep
    breaker: {failures: 2, open_for: 30s}
    fallback: spare
""")
        for _ in range(2):
            r = n.post("/fn/guarded")
            eq((r.status, r.json()["tag"]), (200, "spare"))
        r = n.post("/fn/guarded")
        eq((r.status, r.json()["tag"]), (200, "spare"))
        eq(calls(n, "dep"), 2)
        s = step_of(trace(n, r), "dep")
        eq((s["why"], s["function"]), ("fallback: breaker open", "spare@1"))


def test_fallback_after_retries():
    with tempfile.TemporaryDirectory() as tmp, Node() as n:
        fn(n, tmp, "bad", MODE="fail")
        fn(n, tmp, "spare", MODE="echo")
        svc(n, tmp, "fb", """steps:
  - call: bad
    retries: 2
    backoff: 1ms
    fallback: spare
""")
        r = n.post("/fn/fb", body="same input", headers={"Content-Type": "text/x-test"})
        eq((r.status, r.text), (200, "same input"))
        eq(r.headers["content-type"], "text/x-test")
        s = step_of(trace(n, r), "bad")
        eq((s["why"], s["function"], s["attempts"]), ("fallback: after 3 failures", "spare@1", 3))
        eq([c.get("fallback", False) for c in s["calls"]], [False, False, False, True])


def test_on_error_handler():
    with tempfile.TemporaryDirectory() as tmp, Node() as n:
        fn(n, tmp, "ok", MODE="append", TAG="!")
        fn(n, tmp, "bad", MODE="fail")
        fn(n, tmp, "oops", MODE="echo")
        fn(n, tmp, "never", MODE="append", TAG="?")
        svc(n, tmp, "h", "on_error: oops\nsteps: [ok, bad, never]\n")
        r = n.post("/fn/h", body="x")
        eq(r.status, 200, r.text)
        j = r.json()
        eq((j["step"], j["status"], j["error"]), ("bad", 502, "step_failed"))
        eq(j["trace_id"], r.headers["x-mxu-trace"])
        eq(calls(n, "never"), 0)
        run = trace(n, r)
        eq([s["id"] for s in run["steps"]], ["ok", "bad", "on_error"])


def test_parallel_join_array_and_object():
    with tempfile.TemporaryDirectory() as tmp, Node() as n:
        fn(n, tmp, "slow", MODE="json", BODY='{"s": 1}', SLEEP_MS=200)
        fn(n, tmp, "fast", MODE="append", TAG="-fast")
        fn(n, tmp, "j2", MODE="json", BODY="[1,2]")
        fn(n, tmp, "x", MODE="append", TAG="x")
        fn(n, tmp, "y", MODE="append", TAG="y")
        svc(n, tmp, "arr", """steps:
  - parallel:
      - slow
      - fast
      - id: chain
        steps: [x, y]
""")
        svc(n, tmp, "obj", """steps:
  - id: all
    parallel: [slow, j2, fast]
    join: object
""")
        t0 = time.time()
        r = n.post("/fn/arr", body="in")
        eq(r.status, 200, r.text)
        eq(r.headers["content-type"], "application/json")
        eq(r.json(), [{"s": 1}, "in-fast", "inxy"])
        check(time.time() - t0 < 1.0, "branches run at once")
        r = n.post("/fn/obj", body="in")
        eq(r.status, 200, r.text)
        keys = [k for k, _ in json.loads(r.text, object_pairs_hook=lambda p: p)]
        eq(keys, ["slow", "j2", "fast"])
        eq(r.json(), {"slow": {"s": 1}, "j2": [1, 2], "fast": "in-fast"})


def test_parallel_branch_failure_cancels_others():
    with tempfile.TemporaryDirectory() as tmp, Node() as n:
        fn(n, tmp, "slow", TAG="slow", SLEEP_MS=1000)
        fn(n, tmp, "bad", MODE="fail")
        fn(n, tmp, "after", TAG="after")
        svc(n, tmp, "par", "steps:\n  - {id: p, parallel: [slow, bad]}\n  - after\n")
        t0 = time.time()
        r = n.post("/fn/par")
        eq(r.status, 502, r.text)
        eq(r.json()["error"]["step"], "bad")
        check(time.time() - t0 < 0.9, "the failing branch answers without waiting for the others")
        eq(calls(n, "after"), 0)


def test_switch_on_json_header_and_status():
    with tempfile.TemporaryDirectory() as tmp, Node() as n:
        fn(n, tmp, "premium", MODE="append", TAG="+premium")
        fn(n, tmp, "basic", MODE="append", TAG="+basic")
        fn(n, tmp, "eu", MODE="append", TAG="+eu")
        fn(n, tmp, "missing", MODE="status", STATUS=404, TAG="nope")
        fn(n, tmp, "notfound", MODE="append", TAG="+handled")
        svc(n, tmp, "tier", """steps:
  - id: tier
    switch: json /customer/tier
    cases:
      - when: gold
        steps: [premium]
      - when: [silver, bronze, 3]
        steps: []
    default: [basic]
""")
        svc(n, tmp, "region", """steps:
  - switch: header x-region
    cases:
      - {when: eu, steps: [eu]}
""")
        svc(n, tmp, "st", """steps:
  - missing
  - switch: status
    cases:
      - {when: [404], steps: [notfound]}
""")
        svc(n, tmp, "st4", "steps: [missing, basic]\n")
        gold = '{"customer": {"tier": "gold"}}'
        eq(n.post("/fn/tier", body=gold).text, gold + "+premium")
        silver = '{"customer": {"tier": "silver"}}'
        eq(n.post("/fn/tier", body=silver).text, silver)  # an empty case passes through
        three = '{"customer": {"tier": 3}}'
        eq(n.post("/fn/tier", body=three).text, three)
        r = n.post("/fn/tier", body="not json")
        eq(r.text, "not json+basic")
        s = step_of(trace(n, r), "tier")
        eq(s["route"], "default")
        eq(n.post("/fn/region", body="x", headers={"X-Region": "eu"}).text, "x+eu")
        eq(n.post("/fn/region", body="x", headers={"X-Region": "us"}).text, "x")
        # what a client sent (not UTF-8, quotes) is in the trace, which stays JSON
        r = n.post("/fn/region", body="x", headers={"X-Region": 'e\xff"u\\'})
        eq(r.text, "x")
        s = step_of(trace(n, r), "switch")
        eq((s["route"], s["why"]), ("pass-through", 'header x-region = e\u00ff"u\\'))
        # a 4xx ends the run, unless the next step is a switch on status
        r = n.post("/fn/st4")
        eq((r.status, r.text), (404, "nope"))
        eq(calls(n, "basic"), 1)
        r = n.post("/fn/st")
        eq((r.status, r.text), (200, "nope+handled"))


def test_deadline_stops_a_long_chain():
    with tempfile.TemporaryDirectory() as tmp, Node() as n:
        fn(n, tmp, "s1", MODE="append", TAG="1", SLEEP_MS=300)
        fn(n, tmp, "s2", MODE="append", TAG="2", SLEEP_MS=300)
        fn(n, tmp, "s3", MODE="append", TAG="3", SLEEP_MS=300)
        fn(n, tmp, "s4", MODE="append", TAG="4")
        svc(n, tmp, "long", "timeout: 500ms\nsteps: [s1, s2, s3, s4]\n")
        t0 = time.time()
        r = n.post("/fn/long")
        took = time.time() - t0
        eq(r.status, 504, r.text)
        eq(r.json()["error"]["code"], "deadline_exceeded")
        eq(r.json()["error"]["step"], "s2")
        check(took < 1.0, f"stopped at the deadline, not after the chain ({took:.2f}s)")
        eq((calls(n, "s3"), calls(n, "s4")), (0, 0))
        # per-attempt timeout: a step slower than its link's timeout fails
        svc(n, tmp, "tight", "steps:\n  - {call: s1, timeout: 100ms}\n")
        r = n.post("/fn/tight")
        eq(r.status, 502, r.text)
        eq(r.json()["error"]["status"], 504)


def test_nested_service():
    with tempfile.TemporaryDirectory() as tmp, Node() as n:
        fn(n, tmp, "a", MODE="append", TAG="A")
        fn(n, tmp, "b", MODE="append", TAG="B")
        svc(n, tmp, "inner", "steps: [a, b]\n")
        svc(n, tmp, "outer", "steps: [b, inner, a]\n")
        r = n.post("/fn/outer", body=">")
        eq((r.status, r.text), (200, ">BABA"))
        run = trace(n, r)
        ids = [s["id"] for s in run["steps"]]
        eq(sorted(ids), sorted(["b", "inner", "inner/a", "inner/b", "a"]))
        eq(step_of(run, "inner")["function"], "inner@1")


def test_policy_denies_a_link():
    with tempfile.TemporaryDirectory() as tmp, Node() as n:
        fn(n, tmp, "ok", TAG="ok")
        fn(n, tmp, "secret", TAG="secret")
        svc(n, tmp, "p", "steps: [ok, secret]\n")
        doc = "rules:\n  - {deny: unit->unit, from: p, to: secret, note: no secrets}\n"
        r = n.request("PUT", "/v1/policy", body=doc.encode())
        eq(r.status, 201, r.text)
        r = n.post("/fn/p")
        eq(r.status, 403, r.text)
        e = r.json()["error"]
        eq((e["code"], e["step"]), ("forbidden", "secret"))
        check("rule 1" in e["message"] and "deny unit->unit" in e["message"], e["message"])
        eq(calls(n, "secret"), 0)
        eq(calls(n, "ok"), 1)


def test_usage_records_per_step():
    with tempfile.TemporaryDirectory() as tmp, Node() as n:
        fn(n, tmp, "a", MODE="append", TAG="A")
        fn(n, tmp, "b", MODE="append", TAG="B")
        svc(n, tmp, "metered", "steps: [a, b]\n")
        r = n.post("/fn/metered", body="x")
        eq(r.status, 200)
        run_id = r.headers["x-mxu-invocation-id"]
        recs = n.get("/v1/usage?limit=100").json()["records"]
        mine = [x for x in recs if x.get("caller") == run_id]
        eq(sorted(x["function"] for x in mine), ["a", "b"])
        for x in mine:
            eq((x["caller_function"], x["status"], x["http_status"]), ("metered@1", "ok", 200))
        own = [x for x in recs if x["invocation"] == run_id]
        eq(len(own), 1)
        eq((own[0]["function"], own[0]["http_status"]), ("metered", 200))


def test_traces_api_and_cli():
    with tempfile.TemporaryDirectory() as tmp, Node("--trace-runs", "3") as n:
        fn(n, tmp, "a", MODE="append", TAG="A")
        svc(n, tmp, "t", "steps: [a]\n")
        r = n.post("/fn/t", headers={"traceparent": TP})
        tid = r.headers["x-mxu-trace"]
        t = n.get("/v1/traces/" + tid).json()
        eq(t["trace"], tid)
        run = t["runs"][0]
        eq((run["service"], run["version"], run["status"], run["tenant"]), ("t", 1, 200, "default"))
        eq(run["run"], r.headers["x-mxu-invocation-id"])
        s = run["steps"][0]
        for k in ("id", "kind", "route", "why", "function", "start_us", "duration_us",
                  "attempts", "retries", "status"):
            check(k in s, f"{k} in {s}")
        p = n.cli("trace", tid, check_rc=0)
        out = p.stdout.decode()
        check("a@1" in out and "only route" in out, out)
        p = n.cli("trace", tid, "--json", check_rc=0)
        eq(json.loads(p.stdout)["trace"], tid)
        # the recent runs, newest first
        n.post("/fn/t")
        runs = n.get("/v1/traces?service=t&limit=1").json()["runs"]
        eq(len(runs), 1)
        check(runs[0]["trace"] != tid, "newest first")
        all_runs = n.get("/v1/traces").json()["runs"]
        eq([x["trace"] for x in all_runs][-1], tid)
        eq(n.get("/v1/traces?service=nothing").json()["runs"], [])
        out = n.cli("trace", "--service", "t", check_rc=0).stdout.decode()
        check(tid in out and "t@1" in out, out)
        eq(n.get("/v1/traces/" + "0" * 31 + "1").status, 404)
        eq(n.get("/v1/traces/nothex").status, 404)
        eq(n.cli("trace", "0" * 31 + "1").returncode != 0, True)
        # bounded: only the last 3 runs are kept
        for _ in range(2):
            n.post("/fn/t")
        eq(n.get("/v1/traces/" + tid).status, 404)
        # a tenant's key sees its own tenant's traces only
        n.post("/v1/tenants", body=json.dumps({"name": "acme"}).encode())
        k = n.post("/v1/keys", body=json.dumps({"role": "viewer", "tenant": "acme"}).encode())
        acme = k.json()["key"]
        r = n.post("/fn/t")
        eq(n.get("/v1/traces/" + r.headers["x-mxu-trace"], key=acme).status, 404)
        eq(n.get("/v1/traces", key=acme).json()["runs"], [])


def test_function_calls_a_service_through_svc():
    with tempfile.TemporaryDirectory() as tmp, Node() as n:
        fn(n, tmp, "a", MODE="append", TAG="A")
        fn(n, tmp, "b", MODE="append", TAG="B")
        svc(n, tmp, "ab", "steps: [a, b]\n")
        fn(n, tmp, "caller", resources='  next: {uri: "svc:ab"}\n', MODE="svc")
        r = n.post("/fn/caller", body="x")
        eq((r.status, r.text), (200, "xAB"))
        recs = n.get("/v1/usage?function=ab").json()["records"]
        eq(len(recs), 1)
        eq(recs[0]["caller_function"], "caller@1")


def test_trace_context_goes_on_through_svc_calls():
    """A function invoked with a traceparent passes its trace on to what it
    calls through svc:, under a parent id of the call's own; without one,
    none is made up."""
    with tempfile.TemporaryDirectory() as tmp, Node() as n:
        fn(n, tmp, "h", MODE="headers")
        fn(n, tmp, "caller", resources='  next: {uri: "svc:h"}\n', MODE="svc")
        svc(n, tmp, "front", "steps: [caller]\n")
        tid, parent = TP.split("-")[1], TP.split("-")[2]
        got = n.post("/fn/caller", body="x", headers={"traceparent": TP}).json()["headers"]
        tp = got["traceparent"].split("-")
        eq((tp[0], tp[1], tp[3]), ("00", tid, "01"), got["traceparent"])
        check(tp[2] != parent and tp[2] != "0" * 16, got["traceparent"])
        # through a service's step first: the run's trace reaches h too
        r = n.post("/fn/front", body="x", headers={"traceparent": TP})
        eq(r.status, 200, r.text)
        eq(r.json()["headers"]["traceparent"].split("-")[1], tid)
        eq(r.headers["x-mxu-trace"], tid)
        # no trace context in: none out
        got = n.post("/fn/caller", body="x").json()["headers"]
        check("traceparent" not in got, got)


def test_link_shaping_on_a_step():
    with tempfile.TemporaryDirectory() as tmp, Node() as n:
        fn(n, tmp, "a", TAG="a")
        svc(n, tmp, "shaped", "steps:\n  - {call: a, rate: 2/s, burst: 2}\n")
        eq([n.post("/fn/shaped").status for _ in range(2)], [200, 200])
        r = n.post("/fn/shaped")
        eq(r.status, 502, r.text)
        e = r.json()["error"]
        eq((e["step"], e["status"]), ("a", 429))
        check("rate limit" in e["message"], e["message"])
        eq(calls(n, "a"), 2)
        # a refused call is a rejected record of the callee, with the service as caller
        recs = n.get("/v1/usage?function=a").json()["records"]
        rej = [x for x in recs if x["status"] == "rejected"]
        eq(len(rej), 1)
        eq((rej[0]["caller_function"], rej[0]["http_status"]), ("shaped@1", 429))


def test_client_gone_cancels_the_run():
    with tempfile.TemporaryDirectory() as tmp, Node() as n:
        fn(n, tmp, "slow", TAG="slow", SLEEP_MS=600)
        fn(n, tmp, "after", TAG="after")
        svc(n, tmp, "gone", "public: true\nsteps: [slow, after]\n")
        try:
            n.post("/fn/gone", timeout=0.2, auth=False, headers={"traceparent": TP})
        except Exception:
            pass
        time.sleep(1.0)
        eq(calls(n, "after"), 0)
        # the run's trace says the caller went away (the client's trace id names it)
        run = n.get("/v1/traces/" + TP.split("-")[1]).json()["runs"][-1]
        eq((run["status"], run["error"]["code"]), (499, "client_gone"))
        eq(n.post("/fn/gone").status, 200)


def big_fn(n, tmp, name):
    """A function that needs more memory than the node's budget (--memory
    256Mi): the scheduler refuses each call inside mxu_sched_invoke."""
    m = ("name: %s\nruntime: c\nsources: [step.c]\nmemory: 1Gi\ntimeout: 5s\n" % name)
    return n.deploy(make_function(tmp, name, m, {"step.c": STEP}))


def test_fallback_started_inside_a_refused_call_is_cancelled():
    # The first attempt is refused at once (inside mxu_sched_invoke), its
    # fallback starts from that callback and is queued. When the other branch
    # fails the fallback must be cancelled, not left running for a run that is
    # freed (its answer arrived for freed memory).
    with tempfile.TemporaryDirectory() as tmp, Node("--memory", "256Mi") as n:
        big_fn(n, tmp, "huge")
        fn(n, tmp, "slow", TAG="slow", SLEEP_MS=800)
        fn(n, tmp, "bad", MODE="fail")
        svc(n, tmp, "fbpar", """steps:
  - parallel:
      - {call: huge, fallback: slow}
      - {call: bad, timeout: 2s}
""")
        # the slow fallback's instance is warm, so that it answers while the
        # test waits below
        eq(n.post("/fn/slow").status, 200)
        r = n.post("/fn/fbpar")
        eq(r.status, 502, r.text)
        eq(r.json()["error"]["step"], "bad")
        time.sleep(1.2)  # the fallback's answer, if it was not cancelled
        eq(n.post("/fn/slow").status, 200)


def test_breaker_trial_through_a_nested_service_is_abandoned_with_its_run():
    # A breaker's half-open trial that goes to a service: when the run is
    # cancelled (its client went away) the trial must be given back, or the
    # breaker stays half-open with a trial "in flight" forever.
    with tempfile.TemporaryDirectory() as tmp, Node() as n:
        fn(n, tmp, "dep", TAG="dep", FAIL_FIRST=1, SLEEP_MS=500)
        svc(n, tmp, "inner", "steps: [dep]\n")
        svc(n, tmp, "outer", """public: true
steps:
  - call: inner
    breaker: {failures: 1, open_for: 300ms}
""")
        eq(n.post("/fn/outer").status, 502)  # dep's first call fails: open
        time.sleep(0.4)
        try:  # the trial; its client leaves while it runs
            n.post("/fn/outer", timeout=0.2, auth=False)
        except Exception:
            pass
        time.sleep(0.6)
        r = n.post("/fn/outer")
        eq(r.status, 200, r.text)
        eq(r.json()["tag"], "dep")


def test_parallel_join_is_bounded_like_a_response():
    # Three branches echo a 3 MiB body: the join would be 9 MiB, more than a
    # function may answer (6 MiB); the step fails instead of answering it.
    with tempfile.TemporaryDirectory() as tmp, Node() as n:
        fn(n, tmp, "echo", MODE="echo")
        svc(n, tmp, "wide", "steps:\n  - {id: all, parallel: [echo, echo, echo]}\n")
        body = b'"' + b"x" * (3 << 20) + b'"'
        r = n.post("/fn/wide", body=body, headers={"Content-Type": "application/json"})
        eq(r.status, 502, r.text[:200])
        e = r.json()["error"]
        eq(e["step"], "all")
        check("response limit" in e["message"], e["message"])
        # under the bound, a join is made
        r = n.post("/fn/wide", body=b'"small"', headers={"Content-Type": "application/json"})
        eq((r.status, r.json()), (200, ["small"] * 3))


def test_a_run_starts_a_bounded_number_of_steps():
    # 120 steps, each a service of 100 steps: 12,000 calls. A run starts at
    # most 10,000 steps (its trace, tasks and time are bounded with it).
    with tempfile.TemporaryDirectory() as tmp, Node() as n:
        fn(n, tmp, "a", MODE="echo")
        svc(n, tmp, "hundred", "steps: [%s]\n" % ", ".join(["a"] * 100))
        svc(n, tmp, "many", "steps: [%s]\n" % ", ".join(["hundred"] * 120))
        r = n.post("/fn/many", timeout=120)
        eq(r.status, 502, r.text[:300])
        e = r.json()["error"]
        check("the most one run may" in e["message"], e["message"])
        check(calls(n, "a") < 10000, calls(n, "a"))
        run = trace(n, r)
        check(len(run["steps"]) <= 10000, len(run["steps"]))


def test_sigterm_lets_running_services_finish_their_steps():
    """A SIGTERM while a service is between steps (docs/services.md): the
    node takes no new requests but lets the run go on to its last step
    within --drain-timeout, and an svc: call made by an invocation in flight
    (here into a service) goes on too; then it exits 0. Before, the next
    step met the scheduler's shutdown and the run failed with 503."""
    with tempfile.TemporaryDirectory() as tmp, Node("--drain-timeout", "10s") as n:
        for i in (1, 2, 3):
            fn(n, tmp, f"d{i}", MODE="append", TAG=str(i), SLEEP_MS=300)
        svc(n, tmp, "drained", "steps: [d1, d2, d3]\n")
        fn(n, tmp, "e1", MODE="append", TAG="E", SLEEP_MS=300)
        fn(n, tmp, "e2", MODE="append", TAG="F", SLEEP_MS=300)
        svc(n, tmp, "ef", "steps: [e1, e2]\n")
        fn(n, tmp, "caller", resources='  next: {uri: "svc:ef"}\n', MODE="svc", SLEEP_MS=300)
        # Warm every callee, so that the runs below take ~0.9 s each.
        for f in ("d1", "d2", "d3", "e1", "e2", "caller"):
            eq(n.post(f"/fn/{f}", body="w").status, 200, f"warm {f}")
        got = {}
        runs = [threading.Thread(target=lambda: got.update(svc=n.post("/fn/drained", body="x"))),
                threading.Thread(target=lambda: got.update(fn=n.post("/fn/caller", body="y")))]
        for t in runs:
            t.start()
        time.sleep(0.45)  # the service is in d2; the caller waits on e1
        proc = n.proc
        proc.send_signal(signal.SIGTERM)
        for t in runs:
            t.join(timeout=20)
        eq((got["svc"].status, got["svc"].text), (200, "x123"), "the run went on to its last step")
        eq((got["fn"].status, got["fn"].text), (200, "yEF"), "the svc: call went on too")
        eq(proc.wait(timeout=20), 0, "the node exits 0 once the runs are over")
        n.stop()
