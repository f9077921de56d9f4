"""Pools: warm reuse, scale to zero and back, concurrency and queueing,
timeouts, crashes, min_instances, memory admission."""
import os
import tempfile
import threading
import time

from harness import FUNCTIONS, Node, check, eq, make_function, pid_alive

PROBE = open(os.path.join(FUNCTIONS, "probe", "probe.c")).read()


def probe_fn(tmp, name, **fields):
    m = {"name": name, "runtime": "c", "sources": "[probe.c]"}
    m.update({k: str(v) for k, v in fields.items()})
    text = "".join(f"{k}: {v}\n" for k, v in m.items())
    return make_function(tmp, name, text, {"probe.c": PROBE})


def test_warm_instance_is_reused():
    with Node() as n:
        n.deploy("probe")
        first = n.get("/fn/probe")
        eq(first.headers.get("x-mxu-cold"), "1", "first invocation is cold")
        pids = {n.get("/fn/probe").json()["pid"] for _ in range(20)}
        eq(len(pids), 1, "one warm instance serves sequential invocations")
        r = n.get("/fn/probe")
        check("x-mxu-cold" not in r.headers, "warm invocation")
        check(r.json()["served"] >= 21, r.text)


def test_scale_to_zero_and_back():
    with tempfile.TemporaryDirectory() as tmp, Node() as n:
        n.deploy(probe_fn(tmp, "brief", keep_alive="300ms"))
        pid = n.get("/fn/brief").json()["pid"]
        eq(len(n.instances("brief")), 1)
        n.wait_for(lambda: n.instances("brief") == [], timeout=5, what="scale to zero")
        n.wait_for(lambda: not pid_alive(pid), timeout=5, what="instance process exit")
        r = n.get("/fn/brief")
        eq(r.status, 200)
        eq(r.headers.get("x-mxu-cold"), "1")
        check(r.json()["pid"] != pid, "a new instance")


def test_min_instances_kept_warm():
    with tempfile.TemporaryDirectory() as tmp, Node() as n:
        n.deploy(probe_fn(tmp, "warm", min_instances=2, max_instances=3, keep_alive="200ms"))
        n.wait_for(lambda: len([i for i in n.instances("warm") if i["state"] == "ready"]) == 2,
                   timeout=10, what="two warm instances")
        r = n.get("/fn/warm")
        check("x-mxu-cold" not in r.headers, "served by a pre-warmed instance")
        time.sleep(0.6)
        eq(len(n.instances("warm")), 2, "min_instances survive keep_alive")


def test_concurrency_scale_up_and_queue_full():
    with tempfile.TemporaryDirectory() as tmp, Node("--queue-max", "2") as n:
        n.deploy(probe_fn(tmp, "slow", max_instances=2, concurrency=1, timeout="10s"))
        results = []

        def call():
            results.append(n.get("/fn/slow?sleep=700"))
        threads = [threading.Thread(target=call) for _ in range(4)]
        for t in threads:
            t.start()
            time.sleep(0.05)
        # Two running on two instances, two queued: one more is rejected.
        time.sleep(0.2)
        r = n.get("/fn/slow")
        eq(r.status, 429)
        eq(r.json()["error"]["code"], "queue_full")
        eq(r.headers.get("retry-after"), "1")
        for t in threads:
            t.join()
        eq(sorted(x.status for x in results), [200] * 4)
        pids = {x.json()["pid"] for x in results}
        eq(len(pids), 2, "scaled up to max_instances")
        eq(len(n.instances("slow")), 2)


def test_concurrency_per_instance():
    with tempfile.TemporaryDirectory() as tmp, Node() as n:
        n.deploy(probe_fn(tmp, "shared", max_instances=1, concurrency=4, timeout="10s"))
        results = []
        threads = [threading.Thread(target=lambda: results.append(n.get("/fn/shared?sleep=200")))
                   for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        eq([x.status for x in results], [200] * 4)
        eq(len({x.json()["pid"] for x in results}), 1, "one instance took all four")


def test_timeout_kills_and_replaces_instance():
    with tempfile.TemporaryDirectory() as tmp, Node() as n:
        n.deploy(probe_fn(tmp, "spinner", timeout="500ms", max_instances=1))
        pid = n.get("/fn/spinner").json()["pid"]
        t0 = time.time()
        r = n.get("/fn/spinner?spin=1")
        took = time.time() - t0
        eq(r.status, 504)
        eq(r.json()["error"]["code"], "function_timeout")
        check(0.45 < took < 3, f"timeout after {took:.2f}s")
        n.wait_for(lambda: not pid_alive(pid), timeout=5, what="killed instance to exit")
        r = n.get("/fn/spinner")
        eq(r.status, 200)
        check(r.json()["pid"] != pid, "replaced")


def test_crash_gives_502_and_instance_is_replaced():
    with Node() as n:
        n.deploy("probe")
        pid = n.get("/fn/probe").json()["pid"]
        r = n.get("/fn/probe?crash=1")
        eq(r.status, 502)
        j = r.json()["error"]
        eq(j["code"], "function_crashed")
        check("SIGSEGV" in j["message"], j["message"])
        r = n.get("/fn/probe")
        eq(r.status, 200)
        check(r.json()["pid"] != pid, "a new instance")
        r = n.get("/fn/probe?exit=7")
        eq(r.status, 502)
        check("exited with status 7" in r.json()["error"]["message"], r.text)
        eq(n.get("/fn/probe").status, 200)


def test_queued_invocations_survive_a_crash():
    """Invocations pipelined behind a crashing one never started: they run elsewhere."""
    with tempfile.TemporaryDirectory() as tmp, Node() as n:
        n.deploy(probe_fn(tmp, "fragile", max_instances=1, concurrency=8, timeout="10s"))
        results = {}

        def call(i, q):
            results[i] = n.get("/fn/fragile?" + q)
        threads = [threading.Thread(target=call, args=(0, "sleep=300&crash=1"))]
        threads += [threading.Thread(target=call, args=(i, "sleep=10")) for i in range(1, 5)]
        threads[0].start()
        time.sleep(0.1)
        for t in threads[1:]:
            t.start()
        for t in threads:
            t.join()
        eq(results[0].status, 502)
        eq([results[i].status for i in range(1, 5)], [200] * 4)


def test_memory_admission():
    with tempfile.TemporaryDirectory() as tmp, Node("--memory", "100Mi",
                                                    "--queue-timeout", "2s") as n:
        n.deploy(probe_fn(tmp, "huge", memory="200Mi"))
        r = n.get("/fn/huge")
        eq(r.status, 503)
        eq(r.json()["error"]["code"], "no_capacity")
        check("200 MiB" in r.json()["error"]["message"], r.text)
        # Two 60 MiB functions do not fit together: the idle one makes room.
        n.deploy(probe_fn(tmp, "left", memory="60Mi"))
        n.deploy(probe_fn(tmp, "right", memory="60Mi"))
        eq(n.get("/fn/left").status, 200)
        eq(n.get("/fn/right").status, 200)
        eq([i["function"] for i in n.instances()], ["right"])
        cap = n.get("/v1/health").json()["capacity"]
        eq(cap["memory_reserved"], 60 << 20)
        # A busy instance cannot be evicted: the other waits, then gets 503.
        t = threading.Thread(target=lambda: n.get("/fn/right?sleep=3000"))
        t.start()
        time.sleep(0.2)
        r = n.get("/fn/left")
        eq(r.status, 503)
        eq(r.json()["error"]["code"], "no_capacity")
        t.join()


def test_memory_limit_applies_to_instance():
    with tempfile.TemporaryDirectory() as tmp, Node() as n:
        n.deploy(probe_fn(tmp, "greedy", memory="64Mi"))
        r = n.get("/fn/greedy?alloc=256")
        eq(r.status, 500)
        check("alloc of 256 MiB failed" in r.text, r.text)
        eq(n.get("/fn/greedy?alloc=8").status, 200)
