"""
The sandbox as a whole: the syscall prober (tests/unit/exec/sandbox-probe.c,
after bubblewrap's try-syscall.c) run as a function; a noisy neighbour that
must not hurt a quiet function's latency; and a node killed with -9 while
sandboxes run, which must leave no process, mount or cgroup behind once its
successor has started.
"""
import os
import re
import shutil
import signal
import tempfile
import threading
import time

from harness import BUILD, Node, check, eq, make_function, pid_alive

TMP = None
PROBER = os.path.join(BUILD, "tests", "unit", "exec", "sandbox-probe")

QUIET = """
#include <mxu/fn.h>
int mxu_handle(mxu_req *req, mxu_res *res)
{
    (void)req;
    mxu_res_set_body(res, "ok", 2);
    return 0;
}
"""

# Burns every CPU it can get (4 processes) and touches 200 MiB for ~1.5 s.
NOISY = r"""
#include <mxu/fn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}
static void spin(double s)
{
    double end = now() + s;
    while (now() < end)
        ;
}
int mxu_handle(mxu_req *req, mxu_res *res)
{
    (void)req;
    for (int i = 0; i < 3; i++)
        if (fork() == 0) {
            spin(1.5);
            _exit(0);
        }
    char *p = malloc(200u << 20);
    if (p)
        memset(p, 1, 200u << 20);
    spin(1.5);
    while (wait(NULL) > 0)
        ;
    free(p);
    mxu_res_printf(res, "noisy done\n");
    return 0;
}
"""


class Ctx:
    node = None
    canary = "quiet"


def setup():
    global TMP
    TMP = tempfile.mkdtemp(prefix="mxu-hostile-iso-")
    ctx = Ctx()
    # Half a CPU per instance: on a 2-CPU machine the noisy neighbour leaves
    # the node, the quiet function and the client more than one CPU.
    ctx.node = Node("--executor", "sandbox", env={"MXU_SANDBOX_CPUS": "0.5"})
    ctx.node.deploy(make_function(TMP, "quiet", "name: quiet\nruntime: c\nsources: [q.c]\n"
                                  "memory: 32Mi\nconcurrency: 1\nmax_instances: 1\nkeep_alive: 5m\n",
                                  {"q.c": QUIET}))
    ctx.node.deploy(make_function(TMP, "noisy", "name: noisy\nruntime: c\nsources: [n.c]\n"
                                  "memory: 512Mi\ntimeout: 20s\nconcurrency: 1\n"
                                  "max_instances: 1\nkeep_alive: 5m\n", {"n.c": NOISY}))
    d = os.path.join(TMP, "prober")
    os.makedirs(d)
    shutil.copy(PROBER, os.path.join(d, "sandbox-probe"))
    os.chmod(os.path.join(d, "sandbox-probe"), 0o755)
    with open(os.path.join(d, "mxu.yaml"), "w") as f:
        f.write("name: prober\nruntime: exec\ncommand: [./sandbox-probe, syscalls]\n")
    ctx.node.deploy(d)
    return ctx


def teardown(ctx):
    if ctx and ctx.node:
        ctx.node.stop()
        shutil.rmtree(ctx.node.data_dir, ignore_errors=True)
    shutil.rmtree(TMP, ignore_errors=True)


def test_syscall_prober(ctx):
    r = ctx.node.get("/fn/prober")
    eq(r.status, 200, r.text[:300])
    lines = r.text.splitlines()
    print("  " + " ".join(l.split()[1] for l in lines if l.endswith(" blocked")))
    allowed = [l for l in lines if l.endswith(" allowed")]
    check(not allowed, f"allowed inside the sandbox: {allowed}")
    check(len([l for l in lines if l.startswith("syscall ")]) >= 30, r.text[:300])
    for control in ("open-tmp", "fork", "socket-inet"):
        check(f"control {control} ok" in lines, f"{control} broken: {r.text}")


def p99(samples):
    s = sorted(samples)
    return s[min(len(s) - 1, int(len(s) * 0.99))]


def quiet_latencies(node, n):
    import http.client
    conn = http.client.HTTPConnection("127.0.0.1", node.port, timeout=10)
    out = []
    for _ in range(n):
        t = time.perf_counter()
        conn.request("GET", "/fn/quiet", headers=node.auth_headers())
        r = conn.getresponse()
        r.read()
        out.append(time.perf_counter() - t)
        check(r.status == 200, f"quiet answered {r.status}")
    conn.close()
    return out


def throttled_periods(node_id):
    """Sum of nr_throttled over the node's instance cgroups (cpu.stat, v1 or v2)."""
    total = 0
    for d in cgroup_dirs(node_id):
        try:
            with open(os.path.join(d, "cpu.stat")) as f:
                for line in f:
                    k, v = line.split()
                    if k == "nr_throttled":
                        total += int(v)
        except OSError:
            pass
    return total


def scheduler_tick():
    """One timer tick of this kernel (CONFIG_HZ), in seconds; 4 ms if unknown."""
    import gzip
    import platform
    for path, opener in (("/proc/config.gz", gzip.open),
                         (f"/boot/config-{platform.release()}", open)):
        try:
            with opener(path, "rt") as f:
                for line in f:
                    if line.startswith("CONFIG_HZ="):
                        return 1.0 / int(line.split("=")[1])
        except (OSError, ValueError):
            pass
    return 0.004


def noisy_round(node):
    """One measurement: the quiet function's p99 alone, then beside the noisy one."""
    idle = p99(quiet_latencies(node, 400))
    stop = threading.Event()
    noisy_results = []

    def noise():
        while not stop.is_set():
            noisy_results.append(node.get("/fn/noisy", timeout=30).status)

    t = threading.Thread(target=noise, daemon=True)
    # Counted from before the noisy one starts: its first 0.3 s alone span
    # three quota periods of 100 ms, each of which throttles it.
    throttled = throttled_periods(node.node_id)
    t.start()
    time.sleep(0.3)  # let it get going
    busy = p99(quiet_latencies(node, 400))
    throttled = throttled_periods(node.node_id) - throttled
    stop.set()
    t.join(timeout=30)
    check(noisy_results and all(s == 200 for s in noisy_results), f"noisy: {noisy_results}")
    return idle, busy, throttled


def test_noisy_neighbour(ctx):
    with open(os.path.join(ctx.node.data_dir, "node-id")) as f:
        ctx.node.node_id = f.read().strip()
    quiet_latencies(ctx.node, 50)  # warm
    # Under ASan/UBSan the node is 2-3x slower, so its requests are far more
    # exposed to the wait described below: one scheduler tick is allowed
    # there. The build users run gets the plain bound, issue 4's.
    with open(f"/proc/{ctx.node.proc.pid}/maps") as f:
        sanitized = "libasan" in f.read()
    tick = scheduler_tick() if sanitized else 0.0
    # Up to three rounds: this 2-CPU machine is shared, and someone else's
    # burst during one round says nothing about the sandbox. A sandbox that
    # lets the noisy one through fails every round.
    rounds = []
    for _ in range(3):
        idle, busy, throttled = noisy_round(ctx.node)
        rounds.append(f"idle {idle * 1e6:.0f} us / busy {busy * 1e6:.0f} us "
                      f"({throttled} throttled periods)")
        print(f"  quiet p99: {rounds[-1]}")
        # The noisy one was held to its CPU quota (0.5 CPU; it asks for 4).
        check(throttled > 0, f"the noisy instance was never throttled: {rounds[-1]}")
        # The bound: 3x idle (floored at 1 ms), plus one scheduler tick in a
        # sanitizer build. A request whose wakeups land while the
        # neighbour's four tasks hold both CPUs (right after each quota
        # period lets them back on, when they are owed time) can wait for
        # the next tick: 4 ms at HZ=250. ASan rounds here split into ~0.9 ms
        # and 3-5 ms p99 (2026-11-30); a CI failed on 3.1-3.5 ms at 3x.
        if busy <= 3 * max(idle, 0.001) + tick:
            return
    raise AssertionError(f"quiet p99 beside the noisy one above 3x idle (+ {tick * 1e3:.0f} ms) "
                         f"in every round: {rounds}")


def cgroup_dirs(node_id):
    """Every directory called mxu-<node_id> (and what is below) in the v1/v2 hierarchies."""
    out = []
    for root in ("/sys/fs/cgroup",):
        for dirpath, dirnames, _ in os.walk(root):
            if dirpath.count("/") > 12:
                dirnames[:] = []
                continue
            for d in list(dirnames):
                if d == f"mxu-{node_id}":
                    for sub, _, _ in os.walk(os.path.join(dirpath, d)):
                        out.append(sub)
                    dirnames.remove(d)
    return out


def children_of(pid):
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    if int(f.read().split(") ")[1].split()[1]) == pid:
                        out.append(int(d))
            except (OSError, IndexError, ValueError):
                pass
    return out


def test_kill9_leaves_nothing(ctx):
    with tempfile.TemporaryDirectory(prefix="mxu-hostile-k9-") as data:
        node = Node("--executor", "sandbox", data_dir=data)
        try:
            node.deploy(make_function(TMP, "sleepy", "name: sleepy\nruntime: c\nsources: [q.c]\n"
                                      "memory: 32Mi\nconcurrency: 1\nmax_instances: 3\n"
                                      "keep_alive: 5m\n", {"q.c": QUIET}))
            # Three warm instances, plus the zygote and a spare.
            threads = [threading.Thread(target=lambda: node.get("/fn/sleepy")) for _ in range(3)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            node.wait_for(lambda: len(node.instances("sleepy")) >= 1, what="instances")
            with open(os.path.join(data, "node-id")) as f:
                node_id = f.read().strip()
            kids = children_of(node.proc.pid)
            check(len(kids) >= 2, f"children of the node: {kids}")
            before = cgroup_dirs(node_id)
            check(any(re.search(r"/i\d+$", d) for d in before), f"no instance cgroups: {before}")
            print(f"  before kill -9: {len(kids)} children of the node, {len(before)} cgroups")
            node.kill9()
            # Instances, spares and the zygote die with the node.
            deadline = time.time() + 5
            while time.time() < deadline and any(pid_alive(p) for p in kids):
                time.sleep(0.05)
            check(not any(pid_alive(p) for p in kids),
                  f"alive after kill -9: {[p for p in kids if pid_alive(p)]}")
            # No mount of any sandbox is visible on the host, ever.
            with open("/proc/self/mountinfo") as f:
                mounts = f.read()
            check(data not in mounts, "a mount under the data directory")
            # The successor removes the cgroups left behind.
            node = Node("--executor", "sandbox", data_dir=data)
            after = cgroup_dirs(node_id)
            stale = [d for d in before if d in after and re.search(r"/i\d+$", d)]
            check(not stale, f"leftover instance cgroups: {stale}")
            eq(node.get("/fn/sleepy").status, 200)
            node.stop()
            left = cgroup_dirs(node_id)
            check(not left, f"cgroups after a clean stop: {left}")
        finally:
            if node.proc is not None:
                node.proc.send_signal(signal.SIGKILL)
                node.proc.wait()
