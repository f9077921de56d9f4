"""Each invocation's stderr is kept as its log."""
import json
import subprocess
import time

from harness import MXU, Node, check, eq


def test_stderr_and_sdk_logs_are_kept_per_invocation():
    with Node() as n:
        n.deploy("probe")
        r = n.get("/fn/probe?stderr=first-line")
        inv1 = r.headers["x-mxu-invocation-id"]
        r = n.get("/fn/probe?stderr=second-line")
        inv2 = r.headers["x-mxu-invocation-id"]
        recs = n.get("/v1/functions/probe/logs").json()["records"]
        by_inv = {}
        for rec in recs:
            by_inv.setdefault(rec["invocation"], []).append(rec["text"])
        check(any("first-line" in t for t in by_inv.get(inv1, [])), recs)
        check(any("second-line" in t for t in by_inv.get(inv2, [])), recs)
        check(not any("second-line" in t for t in by_inv.get(inv1, [])), "logs do not mix")
        p = n.cli("logs", "probe", check_rc=0)
        check(b"first-line" in p.stdout and b"second-line" in p.stdout, p.stdout)


def test_timeout_and_crash_are_logged():
    with Node() as n:
        n.deploy("probe")
        r = n.get("/fn/probe?crash=1")
        inv = r.headers["x-mxu-invocation-id"]
        recs = n.get("/v1/functions/probe/logs").json()["records"]
        check(any(rec["invocation"] == inv and "function_crashed" in rec["text"]
                  for rec in recs), recs)


def test_logs_follow():
    with Node() as n:
        n.deploy("probe")
        n.get("/fn/probe?stderr=before")
        env = dict(n.env, MXU_URL=n.url)
        p = subprocess.Popen([MXU, "logs", "probe", "-f"], stdout=subprocess.PIPE, env=env)
        try:
            time.sleep(0.8)
            n.get("/fn/probe?stderr=after-follow")
            deadline = time.time() + 5
            out = b""
            import select
            while time.time() < deadline and b"after-follow" not in out:
                rl, _, _ = select.select([p.stdout], [], [], 0.2)
                if rl:
                    out += p.stdout.read1(65536)
            check(b"before" in out and b"after-follow" in out, out)
        finally:
            p.terminate()
            p.wait()


def test_logs_limit_gives_newest_and_cursor_pages_forward():
    with Node() as n:
        n.deploy("probe")
        for i in range(5):
            n.get(f"/fn/probe?stderr=line-{i}")
        recs = n.get("/v1/functions/probe/logs?limit=2").json()["records"]
        eq(sorted(r["text"] for r in recs), ["[info] logged line-4", "line-4"], "newest two")
        first = n.get("/v1/functions/probe/logs").json()
        n.get("/fn/probe?stderr=after-cursor")
        more = n.get(f"/v1/functions/probe/logs?after={first['next']}").json()["records"]
        check(any("after-cursor" in r["text"] for r in more), more)
        check(not any("line-4" in r["text"] for r in more), "only what came after the cursor")
