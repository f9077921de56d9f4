"""
Spare sandboxes and the node's memory budget (docs/isolation.md, "Cold
starts: spare sandboxes"): what spares hold is shown as memory_standby and
charged to the budget; when an instance needs the room, spares are shed
before idle instances are stopped; spares are made only as far as the budget
has room for them. Skipped where the sandbox cannot run.
"""
import os
import time
import shutil
import tempfile

from harness import EXAMPLES, Node, Skip, check, eq


def sandbox_node(*args):
    n = Node(*args)
    if "sandbox" not in n.get("/v1/health").json().get("executors", []):
        n.stop()
        raise Skip("the sandbox executor is unavailable here")
    return n


def hello_copy(tmp, name, executor):
    """examples/hello as `name`, 16 MiB, warm for a minute, under `executor`."""
    d = os.path.join(tmp, name)
    shutil.copytree(os.path.join(EXAMPLES, "hello"), d)
    with open(os.path.join(d, "mxu.yaml")) as f:
        text = f.read()
    text = text.replace("name: hello", f"name: {name}").replace("memory: 64Mi", "memory: 16Mi")
    text = text.replace("keep_alive: 5m", "keep_alive: 60s")
    with open(os.path.join(d, "mxu.yaml"), "w") as f:
        f.write(text + f"executor: {executor}\n")
    return d


def capacity(n):
    return n.get("/v1/health").json()["capacity"]


def test_spare_sandboxes_are_charged_to_the_memory_budget():
    tmp = tempfile.mkdtemp()
    try:
        sbx = hello_copy(tmp, "sbx", "sandbox")
        sbx2 = hello_copy(tmp, "sbx2", "sandbox")
        proc = hello_copy(tmp, "proc", "process")
        # Room to spare: what one spare is charged.
        with sandbox_node() as n:
            n.deploy(sbx)
            eq(n.get("/fn/sbx?name=a").status, 200)
            n.wait_for(lambda: capacity(n)["memory_standby"] > 0, what="spares charged")
            n.wait_for(lambda: capacity(n)["memory_standby"] % 2 == 0, what="two spares")
            cap = capacity(n)
            charge = cap["memory_standby"] // 2
            check(charge > 0, f"{cap}")
            eq(cap["memory_free"], cap["memory_budget"] - cap["memory_reserved"] - 2 * charge)
        # A budget for two 16 MiB instances and one and a half spares.
        budget = (32 << 20) + charge * 3 // 2
        with sandbox_node("--memory", str(budget)) as n:
            for d in (sbx, sbx2, proc):
                n.deploy(d)
            eq(n.get("/fn/sbx?name=a").status, 200)
            pid = n.instances("sbx")[0]["pid"]
            # (a) its spare taken, the unit is refilled: two spares.
            n.wait_for(lambda: capacity(n)["memory_standby"] == 2 * charge, what="two spares")
            eq(capacity(n)["memory_reserved"], 16 << 20)
            # (b) proc needs 16 MiB: one spare is shed, sbx's idle instance stays.
            r = n.get("/fn/proc?name=b")
            eq(r.status, 200, r.text)
            cap = capacity(n)
            eq(cap["memory_reserved"], 32 << 20)
            eq(cap["memory_standby"], charge, "one spare shed")
            eq([i["pid"] for i in n.instances("sbx")], [pid], "the warm sandbox kept")
            # (c) sbx2's first use finds no room for its spares; to start it
            # the node sheds the last spare and stops the least recently used
            # idle instance (sbx). Once the dust settles, the spares made
            # after sbx2 started are as many as fit: one.
            r = n.get("/fn/sbx2?name=c")
            eq(r.status, 200, r.text)
            n.wait_for(lambda: not n.instances("sbx"), what="sbx stopped for sbx2")
            n.wait_for(lambda: capacity(n)["memory_standby"] == charge, what="one spare again")
            time.sleep(0.3)  # a refill that would overfill has had its time
            cap = capacity(n)
            eq(cap["memory_standby"], charge, "not refilled past the budget")
            check(cap["memory_reserved"] + cap["memory_standby"] <= budget, f"within: {cap}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)



def test_shedding_its_own_spares_admits_nothing_over_the_budget():
    # The spare a spawn would take over is not in standby (its memory
    # becomes the instance's, which the reservation covers), so shedding it
    # frees nothing admission counted. Two 16 MiB functions, sbx with two
    # spares, on a budget half a spare short of both instances and one
    # spare: sbx's start is one and a half charges over; shedding both of
    # its spares "frees" two, but only one of them was counted. The idle
    # process instance must be stopped for it, never both run over budget.
    tmp = tempfile.mkdtemp()
    try:
        sbx = hello_copy(tmp, "sbx", "sandbox")
        proc = hello_copy(tmp, "proc", "process")
        with open(os.path.join(sbx, "mxu.yaml")) as f:
            text = f.read()
        with open(os.path.join(sbx, "mxu.yaml"), "w") as f:
            f.write(text.replace("keep_alive: 60s", "keep_alive: 1s"))
        with sandbox_node() as n:
            n.deploy(sbx)
            eq(n.get("/fn/sbx?name=a").status, 200)
            n.wait_for(lambda: capacity(n)["memory_standby"] > 0, what="spares charged")
            n.wait_for(lambda: capacity(n)["memory_standby"] % 2 == 0, what="two spares")
            charge = capacity(n)["memory_standby"] // 2
        budget = (32 << 20) - charge // 2
        with sandbox_node("--memory", str(budget)) as n:
            n.deploy(sbx)
            n.deploy(proc)
            eq(n.get("/fn/sbx?name=a").status, 200)
            n.wait_for(lambda: not n.instances("sbx"), what="sbx idle past keep_alive")
            n.wait_for(lambda: capacity(n)["memory_standby"] == 2 * charge, what="two spares")
            eq(n.get("/fn/proc?name=b").status, 200)
            eq(capacity(n)["memory_reserved"], 16 << 20)
            r = n.get("/fn/sbx?name=c")
            eq(r.status, 200, r.text)
            cap = capacity(n)
            check(cap["memory_reserved"] + cap["memory_standby"] <= budget, f"over: {cap}")
            n.wait_for(lambda: not n.instances("proc"), what="proc stopped for sbx")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
