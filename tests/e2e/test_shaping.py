"""Traffic shaping and quotas (docs/policy.md): token-bucket rate limits of a
function, a key, a tenant and a link, measured under paced load; concurrency
caps; Retry-After; priority classes shed in order from a saturated queue;
monthly quotas that stop exactly at the limit under concurrent load and are
raised live; every rejection in the meter's records."""
import asyncio
import json
import os
import shutil
import tempfile
import threading
import time

from harness import FUNCTIONS, Node, check, eq, make_function

FAST = """name: {name}
runtime: c
sources: [fast.c]
memory: 32Mi
concurrency: {conc}
max_instances: {maxi}
{extra}"""
FAST_C = """#include <mxu/fn.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ?sleep=MS sleeps first; answers "ok". */
int mxu_handle(mxu_req *req, mxu_res *res)
{
    const char *q = mxu_req_query(req);
    const char *s = q ? strstr(q, "sleep=") : NULL;
    if (s) {
        long ms = atol(s + 6);
        struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
    mxu_res_printf(res, "ok");
    return 0;
}
"""


def deploy_fast(n, tmp, name, extra="", conc=4, maxi=4):
    d = make_function(tmp, name, FAST.format(name=name, extra=extra, conc=conc, maxi=maxi),
                      {"fast.c": FAST_C})
    n.cli("deploy", d, "--json", check_rc=0)


def pin(n):
    """The node on CPU 0 and this process (the load generator) on CPU 1, so
    the two do not take turns on one CPU. No-op on a one-CPU machine."""
    if os.cpu_count() and os.cpu_count() >= 2:
        for tid in os.listdir(f"/proc/{n.proc.pid}/task"):
            try:
                os.sched_setaffinity(int(tid), {0})
            except OSError:
                pass
        os.sched_setaffinity(0, {1})


def unpin():
    os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))


async def _paced(port, path, rate, seconds, headers, conns):
    """Offer `rate` requests per second for `seconds`, each sent at its
    scheduled time (t0 + i/rate) on one of `conns` keep-alive connections.
    Returns [(sent_at, status, retry_after)], and the span of send times."""
    total = int(rate * seconds)
    nxt = [0]
    out = []
    hdr = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    req = (f"GET {path} HTTP/1.1\r\nHost: x\r\n{hdr}\r\n").encode()
    loop = asyncio.get_running_loop()
    t0 = loop.time() + 0.2

    async def worker():
        r, w = await asyncio.open_connection("127.0.0.1", port)
        try:
            while True:
                i = nxt[0]
                if i >= total:
                    return
                nxt[0] += 1
                at = t0 + i / rate
                delay = at - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                sent = loop.time()
                w.write(req)
                await w.drain()
                head = await r.readuntil(b"\r\n\r\n")
                lines = head.decode().split("\r\n")
                status = int(lines[0].split()[1])
                h = {}
                for ln in lines[1:]:
                    if ":" in ln:
                        k, v = ln.split(":", 1)
                        h[k.strip().lower()] = v.strip()
                body = await r.readexactly(int(h.get("content-length", "0")))
                out.append((sent - t0, status, h.get("retry-after"), body))
        finally:
            w.close()

    await asyncio.wait_for(asyncio.gather(*[worker() for _ in range(conns)]), seconds + 30)
    return out


def paced(n, path, rate, seconds, key=None, conns=48, extra=None):
    headers = dict(n.auth_headers(key))
    headers.update(extra or {})
    return asyncio.run(_paced(n.port, path, rate, seconds, headers, conns))


def usage(n, fn):
    j = n.get(f"/v1/usage?function={fn}&limit=10000").json()
    return j["records"]


def test_rate_limit_accuracy_and_retry_after():
    tmp = tempfile.mkdtemp()
    try:
        with Node() as n:
            deploy_fast(n, tmp, "limited", "rate: 100/s\nburst: 20\n")
            eq(n.get("/fn/limited").status, 200)
            time.sleep(0.5)  # the warm-up call's token is back
            pin(n)
            try:
                res = paced(n, "/fn/limited", 1000, 3.0)
            finally:
                unpin()
            ok = [x for x in res if x[1] == 200]
            rej = [x for x in res if x[1] == 429]
            eq(len(ok) + len(rej), len(res), "only 200 and 429")
            span = max(x[0] for x in res) - min(x[0] for x in res)
            expected = 100 * span + 20
            print(f"rate limit: offered {len(res)} in {span:.3f}s, accepted {len(ok)}, "
                  f"expected {expected:.1f} ({100 * (len(ok) - expected) / expected:+.2f}%)")
            check(abs(len(ok) - expected) <= 0.05 * expected,
                  f"accepted {len(ok)}, expected {expected:.1f} within 5%")
            # Retry-After: whole seconds until a token is back (10 ms here: 1)
            check(all(x[2] == "1" for x in rej), f"Retry-After {set(x[2] for x in rej)}")
            err = json.loads(rej[0][3])["error"]
            eq(err["code"], "rate_limited")
            eq(err["message"], "rate limit of function limited: 100/s, burst 20")
            # every rejection is a usage record, status rejected, http 429
            recs = usage(n, "limited")
            r429 = [r for r in recs if r["http_status"] == 429]
            eq(len(r429), len(rej), "rejections metered")
            check(all(r["status"] == "rejected" and r["code"] == "rate_limited" for r in r429))
            # a slow rate: Retry-After counts the seconds until the next token
            deploy_fast(n, tmp, "slow-rate", "rate: 6/m\nburst: 1\n")
            eq(n.get("/fn/slow-rate").status, 200)
            r = n.get("/fn/slow-rate")
            eq(r.status, 429)
            ra = int(r.headers["retry-after"])
            check(8 <= ra <= 10, f"Retry-After {ra} for 6/m")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def test_manifest_limits_are_validated():
    tmp = tempfile.mkdtemp()
    try:
        with Node() as n:
            for extra, want in (("rate: 100\n", "mxu.yaml:7: rate: '100' is not a rate"),
                                ("rate: 10/s\nburst: 0\n", "mxu.yaml:8: burst"),
                                ("burst: 5\n", "mxu.yaml:7: burst: a burst needs a rate"),
                                ("max_concurrency: -1\n", "mxu.yaml:7: max_concurrency")):
                d = make_function(tmp, "bad", FAST.format(name="bad", extra=extra, conc=1, maxi=1),
                                  {"fast.c": FAST_C})
                p = n.cli("deploy", d)
                check(p.returncode != 0, f"{extra!r} deployed")
                check(want in p.stderr.decode(), f"{extra!r}: {p.stderr.decode()!r}")
            d = make_function(tmp, "badlink", FAST.format(
                name="badlink", extra="resources:\n  db: {uri: \"kv:x\", access: read, rate: 5/s}\n",
                conc=1, maxi=1),
                {"fast.c": FAST_C})
            p = n.cli("deploy", d)
            check("resources.db.rate: only svc descriptors" in p.stderr.decode(), p.stderr.decode())
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def concurrent(n, path, count, key=None, headers=None, timeout=30):
    out = [None] * count
    hs = dict(headers or {})

    def one(i):
        out[i] = n.request("GET", path, key=key, headers=hs, timeout=timeout)

    ts = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return out


def test_concurrency_cap():
    tmp = tempfile.mkdtemp()
    try:
        with Node() as n:
            deploy_fast(n, tmp, "capped", "max_concurrency: 2\n")
            rs = concurrent(n, "/fn/capped?sleep=800", 6)
            ok = [r for r in rs if r.status == 200]
            rej = [r for r in rs if r.status == 429]
            eq((len(ok), len(rej)), (2, 4))
            for r in rej:
                eq(r.headers["retry-after"], "1")
                eq(r.json()["error"]["code"], "concurrency_limited")
                eq(r.json()["error"]["message"], "concurrency limit of function capped: "
                   "concurrency 2")
            # slots come back when invocations end
            eq([r.status for r in concurrent(n, "/fn/capped", 2)], [200, 200])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def test_hung_up_client_keeps_its_slot_until_the_invocation_ends():
    """A client that hangs up does not free its concurrency slot while its
    invocation still runs (or clients that hang up could run any number at
    once); the slot comes back when the instance is done with it."""
    import socket
    tmp = tempfile.mkdtemp()
    try:
        with Node() as n:
            deploy_fast(n, tmp, "one", "max_concurrency: 1\n")
            eq(n.get("/fn/one").status, 200)  # warm
            s = socket.create_connection(("127.0.0.1", n.port))
            auth = "".join(f"{k}: {v}\r\n" for k, v in n.auth_headers().items())
            s.sendall(f"GET /fn/one?sleep=1500 HTTP/1.1\r\nHost: x\r\n{auth}\r\n".encode())
            t0 = time.monotonic()
            time.sleep(0.3)
            s.close()  # hung up while the function sleeps
            time.sleep(0.2)
            r = n.get("/fn/one")
            eq(r.status, 429, f"the hung-up invocation's slot was given back early: {r.body!r}")
            eq(r.json()["error"]["code"], "concurrency_limited")
            time.sleep(max(0, 1.5 - (time.monotonic() - t0)) + 0.5)
            eq(n.get("/fn/one").status, 200)
            # and its record says the caller went away
            recs = usage(n, "one")
            check(any(x.get("http_status") == 0 for x in recs), f"no record of the hung-up call: {recs}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def test_key_and_tenant_limits():
    tmp = tempfile.mkdtemp()
    try:
        with Node() as n:
            deploy_fast(n, tmp, "free")
            r = n.post("/v1/keys", body={"role": "invoker", "limits": {"rate": "2/s", "burst": 3}})
            eq(r.status, 201, r.text)
            key, kid = r.json()["key"], r.json()["id"]
            eq(r.json()["limits"]["rate"], "2/s")
            st = [n.get("/fn/free", key=key).status for _ in range(5)]
            eq(st[:3], [200, 200, 200])
            eq(st[3], 429)
            r = n.get("/fn/free", key=key)
            eq(r.json()["error"]["message"], f"rate limit of key {kid}: 2/s, burst 3")
            # other keys are not limited by it
            eq(n.get("/fn/free").status, 200)
            # removed live
            r = n.request("PUT", f"/v1/keys/{kid}/limits", body={"rate": None, "burst": None})
            eq(r.status, 200, r.text)
            eq([n.get("/fn/free", key=key).status for _ in range(5)], [200] * 5)
            # a concurrency cap on a key
            n.request("PUT", f"/v1/keys/{kid}/limits", body={"concurrency": 1})
            rs = concurrent(n, "/fn/free?sleep=500", 3, key=key)
            eq(sorted(r.status for r in rs), [200, 429, 429])
            # the tenant: through the CLI, raised live, removed
            p = n.cli("tenant", "limits", "default", "--rate", "5/s", "--burst", "2", check_rc=0)
            check("5/s" in p.stdout.decode(), p.stdout.decode())
            st = [n.get("/fn/free").status for _ in range(4)]
            eq(st[:2], [200, 200])
            check(429 in st, f"{st}")
            r = n.get("/fn/free")
            eq(r.json()["error"]["message"], "rate limit of tenant default: 5/s, burst 2")
            n.cli("tenant", "limits", "default", "--burst", "50", check_rc=0)
            eq([n.get("/fn/free").status for _ in range(10)], [200] * 10)
            n.cli("tenant", "limits", "default", "--rate", "none", "--burst", "none", check_rc=0)
            j = json.loads(n.cli("tenant", "limits", "default", "--json", check_rc=0).stdout)
            eq(j["limits"]["rate"], None)
            # bad input is refused with the field named
            r = n.request("PUT", "/v1/tenants/default/limits", body={"rate": "fast"})
            eq(r.status, 400)
            check("rate:" in r.json()["error"]["message"], r.text)
            # limits survive a restart
            n.request("PUT", f"/v1/keys/{kid}/limits", body={"rate": "1/h", "burst": 1})
            n.stop()
            n.start()
            eq(n.get(f"/v1/keys/{kid}/limits").json()["limits"]["rate"], "1/h")
            eq(n.get("/fn/free", key=key).status, 200)
            r = n.get("/fn/free", key=key)
            eq(r.status, 429)
            check(int(r.headers["retry-after"]) > 3000, r.headers["retry-after"])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def test_link_limit_on_svc():
    tmp = tempfile.mkdtemp()
    try:
        with Node() as n:
            n.deploy("probe")
            d = os.path.join(tmp, "linker")
            shutil.copytree(os.path.join(FUNCTIONS, "store"), d)
            with open(os.path.join(d, "mxu.yaml")) as f:
                m = f.read()
            m = m.replace("name: store", "name: linker")
            m = m.replace('callee: {uri: "svc:probe"}',
                          'callee: {uri: "svc:probe", rate: 2/s, burst: 2}')
            with open(os.path.join(d, "mxu.yaml"), "w") as f:
                f.write(m)
            n.cli("deploy", d, "--json", check_rc=0)
            st = [n.get("/fn/linker/svc?path=/").status for _ in range(4)]
            eq(st[:2], [200, 200])
            eq(st[2:], [429, 429])  # the SDK's MXU_E_RATE_LIMITED, as the function maps it
            r = n.get("/fn/linker/svc?path=/")
            check("rate limit of link linker -> callee: 2/s, burst 2" in r.text, r.text)
            time.sleep(1.1)
            eq(n.get("/fn/linker/svc?path=/").status, 200)
            # the refused calls are the callee's rejected invocations, with their caller
            recs = [x for x in usage(n, "probe") if x["status"] == "rejected"]
            eq(len(recs), 3)
            check(all(x["http_status"] == 429 and x["caller_function"].startswith("linker@")
                      for x in recs), f"{recs}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def test_priority_shedding_order():
    tmp = tempfile.mkdtemp()
    try:
        with Node("--queue-max", "3") as n:
            deploy_fast(n, tmp, "busy", conc=1, maxi=1)
            keys = {}
            for cls in ("critical", "default", "batch"):
                r = n.post("/v1/keys", body={"role": "invoker", "priority": cls})
                eq(r.status, 201, r.text)
                eq(r.json()["priority"], cls)
                keys[cls] = r.json()["key"]
            eq(n.get("/fn/busy").status, 200)  # its one instance is warm
            done = []
            lock = threading.Lock()
            threads = []

            def send(label, cls, sleep_ms, hdr=None):
                def run():
                    r = n.request("GET", f"/fn/busy?sleep={sleep_ms}", key=keys[cls],
                                  headers=hdr or {}, timeout=60)
                    with lock:
                        done.append((label, r.status, r.headers.get("retry-after"),
                                     r.text, time.time()))
                t = threading.Thread(target=run)
                t.start()
                threads.append(t)
                time.sleep(0.15)  # arrival order is the order of sends

            # one instance, one invocation at a time: hold it
            send("hold", "critical", 2000)
            for i in range(3):
                send(f"b{i}", "batch", 100)     # queue: b0 b1 b2 (full)
            send("d0", "default", 100)          # sheds b2: d0 b0 b1
            send("c0", "critical", 100)         # sheds b1: c0 d0 b0
            send("b3", "batch", 100)            # refused: nothing lower
            send("d1", "default", 100)          # sheds b0: c0 d0 d1
            send("d2", "default", 100)          # refused: nothing lower than default
            # X-Mxu-Priority may lower a class, never raise it
            send("d3", "default", 100, {"X-Mxu-Priority": "critical"})  # refused as default
            send("c1", "critical", 100, {"X-Mxu-Priority": "batch"})    # refused as batch
            for t in threads:
                t.join()
            by = {x[0]: x for x in done}
            for shed in ("b2", "b1", "b0"):
                eq(by[shed][1], 429, f"{shed} shed")
                eq(by[shed][2], "1")
                check("shed from the queue" in by[shed][3], by[shed][3])
            for refused in ("b3", "d2", "d3", "c1"):
                eq(by[refused][1], 429, f"{refused} refused")
                check("none of a lower class" in by[refused][3], by[refused][3])
            # the shed order: the newest batch first, batch before default
            shed_times = [by[x][4] for x in ("b2", "b1", "b0")]
            check(shed_times == sorted(shed_times), "shed newest batch first")
            served = sorted((x for x in done if x[1] == 200 and not x[0].startswith("hold")),
                            key=lambda x: x[4])
            eq([x[0] for x in served], ["c0", "d0", "d1"], "critical before default")
            recs = [r for r in usage(n, "busy") if r["http_status"] == 429]
            eq(len(recs), 7, "every shed or refused invocation is metered")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def test_quota_stops_exactly_and_raises_live():
    tmp = tempfile.mkdtemp()
    try:
        with Node() as n:
            deploy_fast(n, tmp, "metered")
            eq(n.get("/fn/metered").status, 200)  # 1 used
            p = n.cli("tenant", "quota", "default", "--invocations", "41", check_rc=0)
            check("1 / 41" in p.stdout.decode(), p.stdout.decode())
            rs = concurrent(n, "/fn/metered?sleep=20", 100)
            ok = [r for r in rs if r.status == 200]
            rej = [r for r in rs if r.status == 429]
            eq(len(ok), 40, "exactly the quota ran")
            eq(len(rej), 60)
            e = rej[0].json()["error"]
            eq(e["code"], "quota_exceeded")
            check("monthly quota of tenant default reached: 41 invocations" in e["message"],
                  e["message"])
            check(int(rej[0].headers["retry-after"]) >= 1)
            # raised live: exactly 10 more
            r = n.request("PUT", "/v1/tenants/default/quotas", body={"invocations": 51})
            eq(r.status, 200, r.text)
            eq(r.json()["usage"]["invocations"], 41)
            rs = concurrent(n, "/fn/metered", 30)
            eq(sum(r.status == 200 for r in rs), 10)
            # counted from usage.db after a restart: still at the quota
            n.stop()
            n.start()
            eq(n.get("/fn/metered").status, 429)
            j = n.get("/v1/tenants/default/quotas").json()
            eq(j["usage"]["invocations"], 51)
            eq(j["quotas"]["invocations"], 51)
            # GB-seconds and bytes out: refused once what completed reaches them
            used_out = j["usage"]["bytes_out"]
            n.cli("tenant", "quota", "default", "--invocations", "none", "--bytes-out",
                  str(used_out + 1), check_rc=0)
            st = [n.get("/fn/metered").status for _ in range(5)]
            check(st[0] == 200 and 429 in st, f"{st}")
            r = n.get("/fn/metered")
            check("bytes out" in r.json()["error"]["message"], r.text)
            n.cli("tenant", "quota", "default", "--bytes-out", "none", check_rc=0)
            eq(n.get("/fn/metered").status, 200)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
