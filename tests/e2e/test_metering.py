"""Metering (docs/metering.md): a usage record per invocation, whatever its
outcome; records survive kill -9 for every answered invocation; bills equal
the sum of the records at the price table, computed here with integers."""
import json
import os
import tempfile
import threading
import time
from fractions import Fraction

from harness import FUNCTIONS, Node, check, eq, make_function

PROBE = open(os.path.join(FUNCTIONS, "probe", "probe.c")).read()


def probe_fn(tmp, name, **fields):
    m = {"name": name, "runtime": "c", "sources": "[probe.c]"}
    m.update({k: str(v) for k, v in fields.items()})
    text = "".join(f"{k}: {v}\n" for k, v in m.items())
    return make_function(tmp, name, text, {"probe.c": PROBE})


def usage(n, **q):
    qs = "&".join(f"{k}={v}" for k, v in q.items())
    r = n.get("/v1/usage" + ("?" + qs if qs else ""))
    eq(r.status, 200, r.text)
    return r.json()


def all_records(n, **q):
    out, before = [], None
    while True:
        args = dict(q, limit=1000)
        if before:
            args["before"] = before
        page = usage(n, **args)
        out += page["records"]
        before = page["next"]
        if not before:
            return out


def record_of(n, inv_id):
    for r in all_records(n):
        if r["invocation"] == inv_id:
            return r
    raise AssertionError(f"no usage record for invocation {inv_id}")


def request_bytes(body, headers):
    """What the node counts as a request's size: body plus 'name: value\\r\\n' per header."""
    return len(body) + sum(len(k) + len(v) + 4 for k, v in headers)


def test_records_of_every_outcome():
    with tempfile.TemporaryDirectory() as tmp, Node("--queue-max", "1") as n:
        n.deploy(probe_fn(tmp, "m", timeout="500ms", max_instances=1, concurrency=1,
                          memory="64Mi"))
        ok = n.post("/fn/m?sleep=20", body="hello")
        eq(ok.status, 200)
        inv = ok.headers["x-mxu-invocation-id"]
        r = record_of(n, inv)
        eq(r["status"], "ok")
        eq(r["http_status"], 200)
        eq(r["function"], "m")
        eq(r["version"], 1)
        eq(r["tenant"], "default")
        eq(r["executor"], "process")
        eq(r["memory"], 64 << 20)
        eq(r["cold"], True)
        eq(r["code"], "")
        check(r["billed_ms"] >= 20, r)
        check(r["wall_us"] >= 20000 and r["wall_us"] >= (r["billed_ms"] - 1) * 1000, r)
        check(r["peak_memory"] > 0, r)
        check(abs(r["start_ms"] - time.time() * 1000) < 60000, r)
        eq(r["bytes_out"], len(ok.body) + sum(len(k) + len(v) + 4 for k, v in ok.headers.items()
                                              if k not in ("content-length", "date",
                                                           "connection")))
        check(r["bytes_in"] >= 5, r)

        w = n.get("/fn/m")
        check(record_of(n, w.headers["x-mxu-invocation-id"])["cold"] is False, "warm")

        err = n.get("/fn/m?exit=3")
        eq(err.status, 502)
        r = record_of(n, err.headers["x-mxu-invocation-id"])
        eq((r["status"], r["http_status"], r["code"]), ("crashed", 502, "function_crashed"))
        check(r["billed_ms"] >= 0 and r["executor"] == "process", r)

        crash = n.get("/fn/m?crash=1")
        eq(crash.status, 502)
        r = record_of(n, crash.headers["x-mxu-invocation-id"])
        eq((r["status"], r["http_status"]), ("crashed", 502))

        slow = n.get("/fn/m?spin=1")
        eq(slow.status, 504)
        r = record_of(n, slow.headers["x-mxu-invocation-id"])
        eq((r["status"], r["http_status"], r["code"]), ("timeout", 504, "function_timeout"))
        check(r["billed_ms"] >= 500, r)
        check(r["cpu_us"] >= 200000, f"a spinning function used CPU: {r}")

        # 429: one running (max_instances 1, concurrency 1), one queued, the
        # next rejected; each state seen on the node before the next request.
        def state():
            queued = sum(v["queued"] for v in n.get("/v1/functions/m").json()["stats"].values())
            return sum(i["in_flight"] for i in n.instances("m")), queued
        hold = [threading.Thread(target=lambda: n.get("/fn/m?sleep=1500")) for _ in range(2)]
        hold[0].start()
        n.wait_for(lambda: state() == (1, 0), what="one invocation running")
        hold[1].start()
        n.wait_for(lambda: state() == (1, 1), what="one running, one queued")
        rej = n.get("/fn/m")
        for t in hold:
            t.join()
        eq(rej.status, 429)
        r = record_of(n, rej.headers["x-mxu-invocation-id"])
        eq((r["status"], r["http_status"], r["code"]), ("rejected", 429, "queue_full"))
        eq(r["billed_ms"], 0)

        nf = n.get("/fn/nosuch")
        eq(nf.status, 404)
        r = record_of(n, nf.headers["x-mxu-invocation-id"])
        eq((r["status"], r["http_status"], r["function"], r["version"]),
           ("rejected", 404, "nosuch", 0))

        # Filters and aggregates.
        eq({x["function"] for x in all_records(n, function="m")}, {"m"})
        agg = usage(n, aggregate=1, function="m")["aggregates"]
        eq(len(agg), 1)
        check(agg[0]["requests"] >= 7 and agg[0]["rejected"] >= 1, agg)
        future = int(time.time() * 1000) + 3600_000
        eq(usage(n, since=future)["records"], [])


def test_exec_and_bytes():
    with Node() as n:
        n.deploy("echo")
        body = "x" * 1000
        r = n.post("/fn/echo", body=body, headers={"X-Test": "abc"}, auth=False)  # public
        eq(r.status, 200)
        rec = record_of(n, r.headers["x-mxu-invocation-id"])
        eq(rec["status"], "ok")
        # http.client sends Host, Accept-Encoding, Content-Length and ours.
        sent = [("Host", f"127.0.0.1:{n.port}"), ("Accept-Encoding", "identity"),
                ("Content-Length", "1000"), ("X-Test", "abc")]
        eq(rec["bytes_in"], request_bytes(body, sent))
        check(rec["bytes_out"] >= 1000, rec)
        check(rec["cpu_us"] > 0, rec)


def test_svc_calls_are_metered_with_their_caller():
    with Node() as n:
        n.deploy("probe")
        n.deploy("store")
        r = n.get("/fn/store/svc?path=/a%3Fsleep%3D5")
        eq(r.status, 200)
        outer = r.headers["x-mxu-invocation-id"]
        recs = all_records(n)
        callee = [x for x in recs if x.get("caller") == outer]
        eq(len(callee), 1, "one record for the svc call")
        c = callee[0]
        eq((c["function"], c["status"], c["http_status"]), ("probe", "ok", 200))
        check(c["caller_function"].startswith("store@"), c)
        check(c["billed_ms"] >= 5, c)
        o = record_of(n, outer)
        check("caller" not in o, "a client's invocation has no caller")
        # A failing callee is recorded as such.
        r = n.get("/fn/store/svc?path=/%3Fcrash%3D1")
        outer = r.headers["x-mxu-invocation-id"]
        c = [x for x in all_records(n) if x.get("caller") == outer]
        eq([(x["status"], x["code"]) for x in c], [("crashed", "function_crashed")])


def test_metering_off():
    with Node("--metering", "off") as n:
        n.deploy("hello")
        eq(n.get("/fn/hello").status, 200)
        r = n.get("/v1/usage")
        eq(r.status, 409)
        eq(r.json()["error"]["code"], "metering_off")
        check(not os.path.exists(os.path.join(n.data_dir, "usage.db")), "no usage.db")


def test_kill9_keeps_every_answered_record():
    with tempfile.TemporaryDirectory() as tmp:
        n = Node()
        try:
            n.deploy(probe_fn(tmp, "load", max_instances=4, concurrency=4))
            answered, lock, stop = [], threading.Lock(), threading.Event()

            def worker():
                import http.client
                conn = http.client.HTTPConnection("127.0.0.1", n.port, timeout=5)
                while not stop.is_set():
                    try:
                        conn.request("GET", "/fn/load", headers=n.auth_headers())
                        r = conn.getresponse()
                        r.read()
                        inv = r.getheader("X-Mxu-Invocation-Id")
                    except Exception:
                        return  # the node is gone
                    if inv:
                        with lock:
                            answered.append(inv)
            threads = [threading.Thread(target=worker) for _ in range(16)]
            for t in threads:
                t.start()
            time.sleep(1.5)
            n.kill9()  # mid-load
            stop.set()
            for t in threads:
                t.join(timeout=10)
            check(len(answered) > 100, f"load ran: {len(answered)} answers")
            n.start()
            stored = {r["invocation"] for r in all_records(n)}
            missing = [i for i in answered if i not in stored]
            eq(missing, [], f"{len(missing)} of {len(answered)} answered invocations lost")
        finally:
            n.stop()
            import shutil
            shutil.rmtree(n.data_dir, ignore_errors=True)


def test_kill9_before_ingest_keeps_every_answered_record():
    """Answers go out once their record is in the journal; the writer moves the
    journal into usage.db later. With the writer held back for an hour, every
    answered record is only in the journal when the node is killed: a restart
    replays them, each once."""
    with tempfile.TemporaryDirectory() as tmp:
        n = Node(env={"MXU_METER_INGEST_MS": "3600000"})
        try:
            n.deploy(probe_fn(tmp, "j", max_instances=2, concurrency=4))
            answered = []
            for i in range(200):
                r = n.get(f"/fn/j?i={i}" if i % 7 else "/fn/nosuch")
                eq(r.status, 200 if i % 7 else 404)
                answered.append(r.headers["x-mxu-invocation-id"])
            health = n.get("/v1/health").json()["metering"]
            eq(health["committed"], 0, f"nothing ingested before the kill: {health}")
            check(health["journal_bytes"] > 0, health)
            n.kill9()
            n.env.pop("MXU_METER_INGEST_MS")
            n.start()
            stored = [r["invocation"] for r in all_records(n)]
            missing = [i for i in answered if i not in set(stored)]
            eq(missing, [], f"{len(missing)} of {len(answered)} answered invocations lost")
            eq(len(stored), len(set(stored)), "each record once")
            eq(n.get("/v1/health").json()["metering"]["replayed"], len(stored))
            # A read waits for ingestion: a fresh answer is in /v1/usage at once.
            r = n.get("/fn/j")
            check(record_of(n, r.headers["x-mxu-invocation-id"])["status"] == "ok", "fresh record")
        finally:
            n.stop()
            import shutil
            shutil.rmtree(n.data_dir, ignore_errors=True)


def pico(s):
    """An exact decimal string as integer pico-units."""
    whole, _, frac = s.partition(".")
    return int(whole) * 10**12 + int((frac + "0" * 12)[:12])


def half_up(fr):
    return (fr.numerator * 2 + fr.denominator) // (fr.denominator * 2)


def test_bill_equals_sum_of_records():
    prices = {"currency": "EUR", "per_request": "0.0000003", "per_gb_second": "0.0000166667",
              "per_gb_out": "0.123456789012",
              "tenants": {"other": {"per_request": "1"}}}
    with tempfile.TemporaryDirectory() as tmp, Node() as n:
        r = n.request("PUT", "/v1/prices", body=prices)
        eq(r.status, 200, r.text)
        eq(r.json()["per_gb_out"], "0.123456789012")
        bad = n.request("PUT", "/v1/prices", body={"per_request": "0.0000000000001"})
        eq(bad.status, 400)
        check("per_request" in bad.json()["error"]["message"], bad.text)
        bad = n.request("PUT", "/v1/prices", body={"per_request": 0.1})
        eq(bad.status, 400)

        n.deploy(probe_fn(tmp, "a", memory="64Mi"))
        n.deploy(probe_fn(tmp, "b", memory="100M"))
        for i in range(30):
            n.get(f"/fn/a?sleep={i % 4}&big={i * 100}")
            n.get(f"/fn/b?big={i * 37}")
        n.get("/fn/a?crash=1")
        n.get("/fn/nosuch")
        month = time.strftime("%Y-%m", time.gmtime())
        bill = n.get(f"/v1/bills?tenant=default&month={month}")
        eq(bill.status, 200, bill.text)
        bill = bill.json()
        recs = [x for x in all_records(n, tenant="default") if x["status"] != "rejected"
                and time.strftime("%Y-%m", time.gmtime(x["start_ms"] / 1000)) == month]
        p = {k: pico(prices[k]) for k in ("per_request", "per_gb_second", "per_gb_out")}
        req_amt = len(recs) * p["per_request"]
        comp = half_up(Fraction(sum(x["memory"] * x["billed_ms"] for x in recs)
                                * p["per_gb_second"], 2**30 * 1000))
        out = half_up(Fraction(sum(x["bytes_out"] for x in recs) * p["per_gb_out"], 2**30))
        lines = {line["item"]: line for line in bill["lines"]}
        eq(bill["currency"], "EUR")
        eq(int(lines["requests"]["quantity"]), len(recs))
        eq(pico(lines["requests"]["amount"]), req_amt)
        eq(pico(lines["compute"]["amount"]), comp)
        eq(pico(lines["data_out"]["amount"]), out)
        eq(pico(bill["total"]), req_amt + comp + out)

        # Through the CLI too, as JSON and CSV.
        p = n.cli("bill", "--tenant", "default", "--month", month, "--json", check_rc=0)
        eq(json.loads(p.stdout)["total"], bill["total"])
        p = n.cli("bill", "--tenant", "default", "--month", month, "--csv", check_rc=0)
        check(bill["total"] in p.stdout.decode(), p.stdout)
        p = n.cli("usage", "--function", "a", "--csv", check_rc=0)
        rows = p.stdout.decode().strip().split("\n")
        check(rows[0].startswith("invocation,tenant,function"), rows[0])
        eq(len(rows) - 1, 31)
        p = n.cli("usage", "--json", "--tenant", "default", check_rc=0)
        check(len(json.loads(p.stdout)["records"]) >= 62, "records as JSON")
        p = n.cli("usage", check_rc=0)
        check("default" in p.stdout.decode() and "a" in p.stdout.decode(), p.stdout)
        p = n.cli("bill", "--tenant", "default", "--month", "2026-13", check_rc=1)
