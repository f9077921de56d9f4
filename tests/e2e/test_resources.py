"""Resource descriptors: kv, blob, queue and svc through the SDK, enforcement,
the resource map, Redis backends, re-binding and moves under load."""
import json
import os
import threading
import time

from harness import Node, Redis, check, eq


def deployed(n):
    n.deploy("store")
    n.deploy("probe")
    return n


def test_kv_embedded_basics_and_revisions():
    with Node() as n:
        deployed(n)
        eq(n.post("/fn/store/kv/put?k=a", body="one").text, "1")
        eq(n.post("/fn/store/kv/put?k=a", body="two").text, "2")
        r = n.get("/fn/store/kv/get?k=a")
        eq(r.body, b"two")
        eq(r.headers["x-revision"], "2")
        # compare-and-set: stale revision loses, the right one wins, 0 = create only
        eq(n.post("/fn/store/kv/cas?k=a&rev=1", body="x").status, 409)
        eq(n.post("/fn/store/kv/cas?k=a&rev=2", body="three").text, "3")
        eq(n.post("/fn/store/kv/cas?k=new&rev=0", body="n").status, 200)
        eq(n.post("/fn/store/kv/cas?k=new&rev=0", body="n").status, 409)
        eq(n.get("/fn/store/kv/del?k=a").status, 200)
        eq(n.get("/fn/store/kv/get?k=a").status, 404)
        for i in range(70):
            n.post(f"/fn/store/kv/put?k=list/{i:03d}", body="v")
        r = n.get("/fn/store/kv/list?prefix=list/&limit=50")
        keys = r.text.split()
        eq(len(keys), 50)
        eq(keys[0], "list/000")
        r2 = n.get("/fn/store/kv/list?prefix=list/&cursor=" + r.headers["x-next"])
        eq(len(r2.text.split()), 20)
        eq(r2.headers["x-next"], "")


def test_access_limits_and_denials():
    with Node() as n:
        deployed(n)
        r = n.post("/fn/store/kv/put?k=a&d=ro", body="x")
        eq(r.status, 403)
        check("declared 'read'" in r.text, r.text)
        eq(n.get("/fn/store/kv/get?k=a&d=ro").status, 404)  # reads are fine
        r = n.get("/fn/store/kv/get?d=nowhere")
        eq(r.status, 403)
        check("no descriptor 'nowhere'" in r.text, r.text)
        # denials are logged as such
        recs = n.get("/v1/functions/store/logs").json()["records"]
        check(any("policy denial" in x["text"] for x in recs), recs)
        # sizes
        eq(n.post("/fn/store/kv/put?k=a&d=small", body="x" * (16 * 1024)).status, 200)
        r = n.post("/fn/store/kv/put?k=a&d=small", body="x" * (16 * 1024 + 1))
        eq(r.status, 413)
        r = n.post("/fn/store/kv/put?d=db&k=" + "k" * 600, body="x")
        check(r.status in (400, 413), r)
        # operations per second: a budget of 5
        codes = [n.get("/fn/store/kv/get?d=limited&k=z").status for _ in range(12)]
        check(429 in codes, codes)
        # the function got errors, never crashed: same instance throughout
        eq(len(n.instances("store")), 1)


def test_blob_and_queue_embedded():
    with Node() as n:
        deployed(n)
        big = os.urandom(5 * 1024 * 1024 + 123)
        eq(n.post("/fn/store/blob/put?k=img/a.bin", body=big).status, 200)
        eq(n.get("/fn/store/blob/stat?k=img/a.bin").text, str(len(big)))
        eq(n.get("/fn/store/blob/get?k=img/a.bin").body, big)
        eq(n.get("/fn/store/blob/get?k=nothing").status, 404)
        # 64 MiB streamed from inside the function, chunk by chunk
        r = n.get("/fn/store/blob/big?k=huge&mb=64", timeout=60)
        eq(r.status, 200)
        last = chr(ord("a") + (64 * 4 - 1) % 26)
        eq(r.text, f"{64 << 20} {last * 4}")
        eq(n.get("/fn/store/blob/del?k=img/a.bin").status, 200)
        eq(n.get("/fn/store/blob/stat?k=img/a.bin").status, 404)
        ids = [n.post("/fn/store/q/pub", body=f"job{i}").text for i in range(3)]
        eq(len(set(ids)), 3)
        r = n.get("/fn/store/q/take?lease=200")
        eq(r.body, b"job0")
        eq(r.headers["x-attempts"], "1")
        # not acked: after its lease it comes back, attempts + 1
        eq(n.get("/fn/store/q/take").body, b"job1")
        time.sleep(0.3)
        r = n.get("/fn/store/q/take")
        eq(r.body, b"job0")
        eq(r.headers["x-attempts"], "2")
        eq(n.get("/fn/store/q/ack?r=" + r.headers["x-receipt"]).status, 200)
        eq(n.get("/fn/store/q/ack?r=" + r.headers["x-receipt"]).status, 404)


def test_data_survives_restart():
    n = Node()
    try:
        deployed(n)
        n.post("/fn/store/kv/put?k=keep", body="kept")
        n.post("/fn/store/blob/put?k=f", body="blob")
        n.post("/fn/store/q/pub", body="queued")
        n.kill9()
        n.start()
        eq(n.get("/fn/store/kv/get?k=keep").body, b"kept")
        eq(n.get("/fn/store/blob/get?k=f").body, b"blob")
        eq(n.get("/fn/store/q/take").body, b"queued")
        n.stop()
    finally:
        if n.proc:
            n.proc.kill()


def test_svc_calls_deadline_and_depth():
    with Node() as n:
        deployed(n)
        r = n.get("/fn/store/svc?path=/a/b%3Fx%3D1")
        eq(r.status, 200)
        j = r.json()
        eq(j["path"], "/a/b")
        eq(j["query"], "x=1")
        # the caller's remaining deadline travels: the callee sees less than its own 2 s
        r = n.get("/fn/store/svc?path=/%3Fsleep%3D10")
        check(r.json()["deadline_ms"] <= 2000, r.text)
        # a callee crash comes back as an error the caller can act on
        r = n.get("/fn/store/svc?path=/%3Fcrash%3D1")
        eq(r.status, 502)
        check("function_crashed" in r.text, r.text)
        # a callee past its timeout (probe: 2 s)
        r = n.get("/fn/store/svc?path=/%3Fspin%3D1", timeout=30)
        check(r.status in (502, 504), r)
        # a cycle of calls stops at the depth limit
        r = n.get("/fn/store/recurse", timeout=30)
        eq(r.status, 502)
        check("call depth limit" in r.text, r.text)
        eq(n.get("/v1/health").status, 200)


def test_redis_backend_same_function_unchanged():
    with Redis() as redis, Node() as n:
        deployed(n)
        r = n.request("PUT", "/v1/resources/kv:orders", body={"backend": redis.url})
        eq(r.status, 200)
        eq(n.post("/fn/store/kv/put?k=r", body="in redis").text, "1")
        eq(n.get("/fn/store/kv/get?k=r").body, b"in redis")
        check(b"in redis" in redis.command("HGET", "mxu:{default/kv/orders}:k:r", "v"),
              "the value is really in Redis")
        res = {x["resource"]: x for x in n.get("/v1/resources").json()["resources"]}
        eq(res["kv:orders"]["backend"], redis.url)
        # queue on Redis streams
        eq(n.request("PUT", "/v1/resources/queue:jobs", body={"backend": redis.url}).status, 200)
        n.post("/fn/store/q/pub", body="rj")
        eq(n.get("/fn/store/q/take").body, b"rj")
        # the mapping survives a restart
        n.stop()
        n.start()
        eq(n.get("/fn/store/kv/get?k=r").body, b"in redis")


def test_redis_down_gives_unavailable_and_recovers():
    with Redis() as redis, Node() as n:
        deployed(n)
        n.request("PUT", "/v1/resources/kv:orders", body={"backend": redis.url})
        eq(n.post("/fn/store/kv/put?k=x", body="1").status, 200)
        port = redis.port
        redis.stop()
        t0 = time.time()
        r = n.get("/fn/store/kv/get?k=x")
        eq(r.status, 503)
        check("unavailable" in r.text.lower(), r.text)
        check(time.time() - t0 < 3, "fails fast")
        eq(n.get("/v1/health").status, 200)
        redis.port = port
        redis.start()
        deadline = time.time() + 10
        while time.time() < deadline:
            r = n.post("/fn/store/kv/put?k=x", body="back")
            if r.status == 200:
                break
            time.sleep(0.2)
        eq(r.status, 200)
        eq(n.get("/fn/store/kv/get?k=x").body, b"back")


def test_move_under_load_loses_nothing():
    with Redis() as redis, Node() as n:
        deployed(n)
        for i in range(300):
            n.post(f"/fn/store/kv/put?k=pre{i}", body=f"v{i}")
        errors, counts = [], {"n": 0}
        stop = threading.Event()

        def load():
            while not stop.is_set():
                r = n.get("/fn/store/kv/incr?k=counter")
                if r.status != 200:
                    errors.append(r)
                else:
                    counts["n"] += 1
        threads = [threading.Thread(target=load) for _ in range(3)]
        for t in threads:
            t.start()
        time.sleep(0.5)
        p = n.cli("resource", "move", "kv:orders", "--to", redis.url, check_rc=0)
        check(b"moved kv:orders" in p.stdout, p.stdout)
        time.sleep(0.5)
        stop.set()
        for t in threads:
            t.join()
        eq(errors, [], "no failed invocation during the move")
        # every increment landed exactly once, on the new backend
        eq(n.get("/fn/store/kv/get?k=counter").text, str(counts["n"]))
        eq(n.get("/fn/store/kv/get?k=pre299").body, b"v299")
        res = {x["resource"]: x for x in n.get("/v1/resources").json()["resources"]}
        eq(res["kv:orders"]["backend"], redis.url)
        check(b"v0" in redis.command("HGET", "mxu:{default/kv/orders}:k:pre0", "v"), "copied")


def test_rebind_without_restart():
    with Redis() as redis, Node() as n:
        deployed(n)
        n.post("/fn/store/kv/put?k=where", body="embedded")
        pid = n.get("/fn/store/kv/get?k=where") and n.instances("store")[0]["pid"]
        p = n.cli("resource", "set", "kv:orders", redis.url, check_rc=0)
        check(b"no data was copied" in p.stdout, p.stdout)
        eq(n.get("/fn/store/kv/get?k=where").status, 404)  # a fresh backend
        n.post("/fn/store/kv/put?k=where", body="redis")
        eq(n.instances("store")[0]["pid"], pid, "same instance: no restart")
        n.cli("resource", "reset", "kv:orders", check_rc=0)
        eq(n.get("/fn/store/kv/get?k=where").body, b"embedded")
        p = n.cli("resource", "ls", check_rc=0)
        check(b"kv:orders" in p.stdout, p.stdout)
        r = n.request("PUT", "/v1/resources/kv:orders", body={"backend": "ftp://nope"})
        eq(r.status, 400)
        eq(n.get("/fn/store/kv/get?k=where").body, b"embedded", "a bad location changes nothing")


def test_config_file_resource_map():
    import tempfile
    with Redis() as redis, tempfile.TemporaryDirectory() as tmp:
        cfg = os.path.join(tmp, "node.yaml")
        with open(cfg, "w") as f:
            f.write(f"resources:\n  kv:orders: {redis.url}\n")
        with Node("--config", cfg) as n:
            deployed(n)
            n.post("/fn/store/kv/put?k=c", body="via config")
            check(b"via config" in redis.command("HGET", "mxu:{default/kv/orders}:k:c", "v"),
                  "the config file's mapping is used")
        with open(cfg, "w") as f:
            f.write("resources:\n  kv:orders: gopher://x\n")
        import subprocess
        from harness import MXU
        p = subprocess.run([MXU, "serve", "--config", cfg, "--data", tmp, "--listen",
                            "127.0.0.1:0"], capture_output=True, timeout=20)
        check(p.returncode != 0 and b"kv:orders" in p.stderr, p.stderr)


def test_rebind_and_outage_under_load():
    with Redis() as redis, Node() as n:
        deployed(n)
        bad, stop = [], threading.Event()
        statuses = []

        def load():
            i = 0
            while not stop.is_set():
                r = n.post(f"/fn/store/kv/put?k=l{i % 50}", body="x")
                statuses.append(r.status)
                if r.status not in (200, 503):
                    bad.append(r)
                i += 1
        threads = [threading.Thread(target=load) for _ in range(2)]
        for t in threads:
            t.start()
        time.sleep(0.3)
        n.cli("resource", "set", "kv:orders", redis.url, check_rc=0)
        time.sleep(0.3)
        before = len(statuses)
        check(503 not in statuses, "no failed invocation across the re-bind")
        port = redis.port
        redis.stop()  # Redis dies mid-load
        time.sleep(0.5)
        eq(n.get("/v1/health").status, 200)
        redis.port = port
        redis.start()
        time.sleep(1.5)
        stop.set()
        for t in threads:
            t.join()
        eq(bad, [], "only successes or 'backend unavailable'")
        check(503 in statuses[before:], "the outage was seen as unavailable")
        eq(statuses[-1], 200, "service resumed when Redis returned")


def test_blob_concurrent_writers_of_one_key():
    """Two instances upload multi-MiB objects to one key at the same time,
    round after round: both uploads succeed, every read is exactly one of
    the two (by hash), never a mix, and no temporary file is left behind."""
    import hashlib
    with Node() as n:
        n.deploy("blobw")
        n.wait_for(lambda: len([i for i in n.instances("blobw") if i["state"] == "ready"]) >= 2,
                   timeout=20, what="two warm instances")
        rounds, overlapped, pids = 12, 0, set()
        errors, reads = [], []
        stop = threading.Event()
        written = set()

        def reader():
            # reads while uploads land: a whole object or "changed while read"
            while not stop.is_set():
                r = n.get("/fn/blobw/get?k=same/obj", timeout=60)
                reads.append((r.status, hashlib.sha256(r.body).hexdigest()))

        for rnd in range(rounds):
            # odd rounds: the same size, so only the version tells a
            # replacement apart from the object a reader started on
            a = os.urandom((3 << 20) + 17 + rnd)
            b = os.urandom(len(a) if rnd % 2 else (3 << 20) + 4099 + 3 * rnd)
            written.update({hashlib.sha256(a).hexdigest(), hashlib.sha256(b).hexdigest()})
            out = [None, None]

            def put(i, body):
                out[i] = n.post("/fn/blobw/put?k=same/obj&pace=8", body=body, timeout=60)

            threads = [threading.Thread(target=put, args=(0, a)),
                       threading.Thread(target=put, args=(1, b))]
            if rnd == rounds // 2:
                threads.append(threading.Thread(target=reader))
            for t in threads:
                t.start()
            for t in threads[:2]:
                t.join()
            for r in out:
                if r.status != 200:
                    errors.append(r)
            if errors:
                break
            (pa, sa, ea), (pb, sb, eb) = [tuple(int(x) for x in r.text.split()) for r in out]
            pids.update({pa, pb})
            if sa < eb and sb < ea:
                overlapped += 1
            got = n.get("/fn/blobw/get?k=same/obj", timeout=60)
            eq(got.status, 200)
            h = hashlib.sha256(got.body).hexdigest()
            check(h in (hashlib.sha256(a).hexdigest(), hashlib.sha256(b).hexdigest()),
                  f"round {rnd}: the object ({len(got.body)} bytes) is neither upload")
            # the last to finish wins
            winner = a if ea > eb else b
            if abs(ea - eb) > 50:
                eq(got.body, winner, f"round {rnd}: the later upload wins")
        stop.set()
        eq(errors, [], "no writer got an error")
        check(len(pids) >= 2, f"two instances served the uploads: {pids}")
        check(overlapped >= rounds // 2, f"uploads really ran at once ({overlapped}/{rounds})")
        check(reads, "the reader ran")
        for status, h in reads:
            check(status in (200, 409), f"a read during uploads gave {status}")
            if status == 200:
                check(h in written, "a read during uploads returned a mix")
        blobs = os.path.join(n.data_dir, "resources", "blobs", "default", "blob", "shared")
        left = [f for f in os.listdir(blobs) if f.startswith(".mxu-up-")]
        eq(left, [], "no temporary upload file is left")


def test_blob_second_writer_in_one_invocation_refused():
    with Node() as n:
        n.deploy("blobw")
        r = n.get("/fn/blobw/twice?k=t/one")
        eq(r.status, 200)
        lines = r.text.splitlines()
        steps = {ln.split()[0]: ln for ln in lines}
        check(steps["open"].startswith("open 0"), r.text)
        check(steps["open-again"].startswith("open-again -3"), r.text)  # MXU_E_CONFLICT
        check("already open in this invocation" in steps["message"], r.text)
        check(steps["write-whole"].startswith("write-whole -3 "), r.text)
        check("already open in this invocation" in steps["write-whole"], r.text)
        eq(steps["open-other-key"], "open-other-key 0")
        eq(steps["close"], "close 0")
        eq(steps["write-whole-after"], "write-whole-after 0")
        eq(steps["open-after"], "open-after 0")
        eq(n.get("/fn/blobw/get?k=t/one").body, b"after")
        eq(n.get("/fn/blobw/get?k=t/one.other").body, b"")


def test_blob_abandoned_upload_dropped_when_invocation_ends():
    """An upload left open by an invocation that crashes, or returns without
    closing its writer, is gone with its temporary file as soon as the
    invocation ends (not after the 10-minute idle sweep)."""
    with Node() as n:
        n.deploy("blobw")
        blobs = os.path.join(n.data_dir, "resources", "blobs", "default", "blob", "shared")

        def temps():
            return [f for f in os.listdir(blobs) if f.startswith(".mxu-up-")] \
                if os.path.isdir(blobs) else []
        r = n.post("/fn/blobw/leave?k=left/open", body=os.urandom(3 << 20))
        eq(r.status, 200)
        eq(temps(), [], "dropped when the invocation answered")
        r = n.post("/fn/blobw/leave?k=left/open&crash=1", body=os.urandom(3 << 20))
        check(r.status >= 500, r)
        eq(temps(), [], "dropped when the invocation crashed")
        eq(n.get("/fn/blobw/get?k=left/open").status, 404, "nothing was published")


def test_blob_move_while_uploading():
    """A move of a blob store that starts while a slow upload is half-way
    waits for it instead of failing it; uploads that start during the move
    land too; afterwards every object is whole at the new location."""
    import hashlib
    import tempfile
    with Node() as n, tempfile.TemporaryDirectory() as dst:
        n.deploy("blobw")
        n.post("/fn/blobw/put?k=before", body=b"copied by the move")
        slow = os.urandom(3 << 20)
        out, others = {}, []

        def slow_put():
            out["slow"] = n.post("/fn/blobw/put?k=mv/slow&pace=120", body=slow, timeout=60)

        def other_puts():
            for i in range(6):
                body = os.urandom((1 << 20) + i)
                others.append((i, body, n.post(f"/fn/blobw/put?k=mv/o{i}&pace=20", body=body,
                                                timeout=60)))
        t1 = threading.Thread(target=slow_put)
        t1.start()
        # the writer sends its first 1 MiB chunk once 1.25 MiB are in (~0.6 s)
        time.sleep(0.9)
        t2 = threading.Thread(target=other_puts)
        t2.start()
        moved = {}

        def move():
            moved["p"] = n.cli("resource", "move", "blob:shared", "--to", "fs://" + dst)
        t3 = threading.Thread(target=move)
        t3.start()
        waited = False
        while t3.is_alive():
            for x in n.get("/v1/resources").json()["resources"]:
                if x["resource"] == "blob:shared" and x.get("moving", {}).get("uploads_open"):
                    waited = True
            time.sleep(0.02)
        t3.join()
        p = moved["p"]
        eq(p.returncode, 0, p.stderr)
        check(b"moved blob:shared" in p.stdout, p.stdout)
        check(waited, "the move waited for the upload older than it")
        t1.join()
        t2.join()
        eq(out["slow"].status, 200, out["slow"].text)
        for i, body, r in others:
            eq(r.status, 200, r.text)
            eq(hashlib.sha256(n.get(f"/fn/blobw/get?k=mv/o{i}").body).hexdigest(),
               hashlib.sha256(body).hexdigest())
        res = {x["resource"]: x for x in n.get("/v1/resources").json()["resources"]}
        eq(res["blob:shared"]["backend"], "fs://" + dst)
        got = n.get("/fn/blobw/get?k=mv/slow", timeout=60).body
        eq(hashlib.sha256(got).hexdigest(), hashlib.sha256(slow).hexdigest())
        eq(n.get("/fn/blobw/get?k=before").body, b"copied by the move")
        root = os.path.join(dst, "default", "blob", "shared")
        check(os.path.getsize(os.path.join(root, "mv", "slow")) == len(slow), "on the new store")
        eq([f for f in os.listdir(root) if f.startswith(".mxu-up-")], [])
