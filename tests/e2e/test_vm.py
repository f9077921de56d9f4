"""
The vm executor end to end (docs/vm.md): functions built as KVM guest images
at deploy and run by an mxu-vmm helper per instance. Skipped, never passed,
where /dev/kvm cannot run guests (the node says why at start).
"""
import os
import re
import shutil
import subprocess
import tempfile
import time

from harness import EXAMPLES, MXU, Node, Skip, TestFailure, check, eq, make_function

PROBE = r"""
#include <mxu/fn.h>
#include <stdlib.h>
#include <string.h>

int mxu_handle(mxu_req *req, mxu_res *res)
{
    const char *path = mxu_req_path(req);
    if (strcmp(path, "/crash") == 0)
        *(volatile int *)0x10 = 1;              /* NULL page: supervisor only */
    if (strcmp(path, "/code") == 0)
        *(volatile int *)(void *)mxu_handle = 1; /* its own code: read-only */
    if (strcmp(path, "/beyond") == 0)
        *(volatile int *)(0x7f000000ul) = 1;    /* past its memory */
    if (strcmp(path, "/loop") == 0)
        for (;;)
            __asm__ volatile("");
    if (strcmp(path, "/kv") == 0) {
        size_t n = 0;
        const void *v = NULL;
        int rc = mxu_kv_get(req, "db", "k", &v, &n, NULL);
        mxu_res_printf(res, "kv rc %d: %s", rc, mxu_last_error(req));
        return 0;
    }
    if (strncmp(path, "/spin", 5) == 0) { /* a slow invocation: ?m= million rounds of a loop */
        const char *m = mxu_req_query_param(req, "m");
        unsigned long n = (m ? strtoul(m, NULL, 10) : 1) * 1000000ul;
        for (volatile unsigned long i = 0; i < n; i++)
            ;
        if (strcmp(path, "/spincrash") == 0)
            *(volatile int *)0x10 = 1;
        mxu_res_printf(res, "spun");
        return 0;
    }
    if (strcmp(path, "/count") == 0) { /* guest state: survives only in its own VM */
        static int calls;
        mxu_res_printf(res, "calls %d", ++calls);
        return 0;
    }
    mxu_log(MXU_INFO, "vm probe %s", path);
    char *big = malloc(3 << 20); /* the heap works, past the first pages */
    memset(big, 'x', 3 << 20);
    mxu_res_status(res, 201);
    mxu_res_header(res, "X-Vm", "yes");
    size_t blen = 0;
    const char *body = mxu_req_body(req, &blen);
    mxu_res_printf(res, "%s %s %s q=%s body=%.*s big=%c\n", mxu_req_method(req), path,
                   mxu_req_header(req, "X-Test") ? mxu_req_header(req, "X-Test") : "-",
                   mxu_req_query(req), (int)blen, body, big[(3 << 20) - 1]);
    free(big);
    return 0;
}
"""

MANIFEST = """name: {name}
runtime: c
sources: [probe.c]
executor: vm
memory: {memory}
timeout: {timeout}
max_instances: 2
keep_alive: {keep_alive}
resources:
  db: {{uri: "kv:vmtest", access: read-write}}
"""


def vm_node(*args, env=None):
    """A node that can run vm units, or Skip with the reason it gives."""
    n = Node(*args, env=env)
    if "vm" not in n.get("/v1/health").json().get("executors", []):
        time.sleep(0.2)
        why = [line for line in n.stdout_lines if b"vm:" in line]
        n.stop()
        raise Skip("the vm executor is unavailable here: " +
                   (why[0].decode().strip() if why else "see the node's output"))
    return n


def deploy_probe(n, tmp, name="vmprobe", timeout="3s", keep_alive="60s", memory="32Mi"):
    d = make_function(tmp, name, MANIFEST.format(name=name, timeout=timeout,
                                                 keep_alive=keep_alive, memory=memory),
                      {"probe.c": PROBE})
    return n.deploy(d)


def test_hello_vm_over_http():
    tmp = tempfile.mkdtemp()
    try:
        d = os.path.join(tmp, "hello")
        shutil.copytree(os.path.join(EXAMPLES, "hello"), d)
        with open(os.path.join(d, "mxu.yaml"), "a") as f:
            f.write("executor: vm\n")
        with vm_node() as n:
            n.deploy(d)
            r = n.get("/fn/hello?name=vm")
            eq(r.status, 200, "status")
            eq(r.text, "hello, vm\n", "body")
            # warm reuse: the same instance answers again
            pids = {i["pid"] for i in n.instances("hello")}
            for k in range(20):
                eq(n.get(f"/fn/hello?name=n{k}").text, f"hello, n{k}\n")
            eq({i["pid"] for i in n.instances("hello")}, pids, "same instance")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def test_request_and_response_pass_through():
    tmp = tempfile.mkdtemp()
    try:
        with vm_node() as n:
            deploy_probe(n, tmp)
            r = n.post("/fn/vmprobe/a/b?x=1&y=2", body=b"payload",
                       headers={"X-Test": "t1"})
            eq(r.status, 201, "status")
            eq(r.headers.get("x-vm"), "yes", "header")
            eq(r.text, "POST /a/b t1 q=x=1&y=2 body=payload big=x\n", "body")
            # a descriptor operation: RES_OP out and RES_REPLY back over the guest's channel
            eq(n.get("/fn/vmprobe/kv").text, "kv rc -2: no key 'k' in kv:vmtest", "kv get")
            logs = n.cli("logs", "vmprobe").stdout.decode()
            check("vm probe /a/b" in logs, "mxu_log line in the logs: " + logs[-400:])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def test_guest_faults_give_502_and_the_next_invocation_works():
    tmp = tempfile.mkdtemp()
    try:
        with vm_node() as n:
            deploy_probe(n, tmp)
            eq(n.get("/fn/vmprobe/ok").status, 201)
            for path, what in [("/crash", "page fault"), ("/code", "page fault"),
                               ("/beyond", "page fault")]:
                r = n.get("/fn/vmprobe" + path)
                eq(r.status, 502, path)
                check("vm: guest fault: " + what in r.text, f"{path}: {r.text}")
                eq(n.get("/fn/vmprobe/ok").status, 201, "after " + path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def test_guest_loop_is_stopped_at_its_timeout():
    tmp = tempfile.mkdtemp()
    try:
        with vm_node() as n:
            deploy_probe(n, tmp, timeout="1s")
            t = time.time()
            r = n.get("/fn/vmprobe/loop")
            check(r.status in (504, 502), f"status {r.status}")
            check(time.time() - t < 5, "stopped in time")
            eq(n.get("/fn/vmprobe/ok").status, 201)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def helpers(node_pid):
    """PIDs of the node's mxu-vmm children (instances and spares)."""
    out = set()
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                st = f.read()
        except OSError:
            continue
        comm = st[st.index("(") + 1:st.rindex(")")]
        ppid = int(st[st.rindex(")") + 2:].split()[1])
        if ppid == node_pid and comm == "mxu-vmm":
            out.add(int(d))
    return out


def cold_starts(n, k):
    """k cold starts of vmprobe/count, each waited out to scale to zero with
    two spares ready; every one must find a fresh guest. Returns the helper
    pids seen as spares before each."""
    seen = []
    for i in range(k):
        n.wait_for(lambda: not n.instances("vmprobe") and len(helpers(n.proc.pid)) == 2,
                   what="scaled to zero, two spares ready")
        seen.append(helpers(n.proc.pid))
        r = n.get("/fn/vmprobe/count")
        eq(r.text, "calls 1", f"cold start {i}: a fresh guest")
        eq(r.headers.get("x-mxu-cold"), "1", "cold")
    n.wait_for(lambda: not n.instances("vmprobe") and len(helpers(n.proc.pid)) == 2,
               what="scaled to zero, two spares ready")
    return seen


def test_cold_starts_take_spare_vms_each_used_once():
    """Spares without recycling (MXU_VM_RECYCLE=0, docs/vm.md): every cold
    start is a helper booted ahead of time, never one that served before."""
    tmp = tempfile.mkdtemp()
    try:
        with vm_node(env={"MXU_VM_RECYCLE": "0"}) as n:
            deploy_probe(n, tmp, keep_alive="0s")
            eq(n.get("/fn/vmprobe/count").text, "calls 1", "first")
            seen = cold_starts(n, 6)
            for i in range(1, len(seen)):
                check(not (seen[i] & (set().union(*seen[:i]) - seen[i - 1])),
                      "a used spare came back")
            check(len(set().union(*seen)) >= 7, f"a new helper per cold start: {seen}")
            # A spare killed from outside is dropped; cold starts carry on.
            victim = sorted(helpers(n.proc.pid))[0]
            os.kill(victim, 9)
            n.wait_for(lambda: victim not in helpers(n.proc.pid), what="victim reaped")
            for _ in range(3):
                eq(n.get("/fn/vmprobe/count").text, "calls 1", "after a dead spare")
                n.wait_for(lambda: not n.instances("vmprobe"), what="scaled to zero")
            check("a spare VM killed by signal 9" in n.stderr(), "warned about the dead spare")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def recycled_helpers_start_pristine(env):
    tmp = tempfile.mkdtemp()
    try:
        with vm_node(env=env) as n:
            deploy_probe(n, tmp, keep_alive="0s")
            eq(n.get("/fn/vmprobe/count").text, "calls 1", "first")
            seen = cold_starts(n, 8)
            everyone = set().union(*seen)
            # Without recycling this takes 2 + 8 helpers; with it, the two
            # the node started (the refill waits for a taken helper to come
            # back), and one more only if one took over a second to.
            check(len(everyone) <= 3, f"helpers were recycled, not forked anew: {seen}")
            # A fault ends its helper: the next cold starts use others.
            eq(n.get("/fn/vmprobe/crash").status, 502, "fault")
            after = cold_starts(n, 3)
            eq(n.get("/fn/vmprobe/ok").status, 201, "after a fault")
            check(len(set().union(*after) - everyone) >= 1, "the faulted helper was replaced")
            # The helpers run with the reset the node was told to use.
            want = "cow" if env["MXU_VM_RESET"] == "cow" else "dirtylog"
            for pid in helpers(n.proc.pid):
                with open(f"/proc/{pid}/cmdline") as f:
                    argv = f.read().split("\0")
                got = argv[argv.index("--reset") + 1] if "--reset" in argv else None
                eq(got, want, f"helper {pid}'s --reset")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def test_recycled_helpers_start_from_a_pristine_guest():
    """Recycling (the default): a helper whose instance ended cleanly resets
    its guest to the pristine image (by the dirty log, the default) and
    becomes a spare again, so cold starts fork nothing new; each still finds
    a fresh guest (its counter at 1), and a guest that faulted is never
    recycled."""
    recycled_helpers_start_pristine({"MXU_VM_RESET": ""})  # whatever the caller's env


def test_recycled_helpers_reset_by_copy_on_write():
    """The same with MXU_VM_RESET=cow (docs/vm.md, "Pristine images"): the
    helpers map a fresh private view of the image, and every cold start
    still finds the guest's counter at 1. A value that is neither is said,
    and the node carries on with the default."""
    recycled_helpers_start_pristine({"MXU_VM_RESET": "cow"})
    tmp = tempfile.mkdtemp()
    try:
        with vm_node(env={"MXU_VM_RESET": "dirty"}) as n:
            deploy_probe(n, tmp, keep_alive="0s")
            eq(n.get("/fn/vmprobe/count").text, "calls 1", "runs")
            check("MXU_VM_RESET=dirty is neither dirtylog nor cow" in n.stderr(),
                  "the node says what it made of MXU_VM_RESET")
            for pid in helpers(n.proc.pid):
                with open(f"/proc/{pid}/cmdline") as f:
                    argv = f.read().split("\0")
                eq(argv[argv.index("--reset") + 1], "dirtylog", f"helper {pid}'s --reset")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def spin_rounds(n, ms):
    """The ?m= of /spin for an invocation of about `ms` milliseconds here:
    the guest's clock moves only at its hypercalls, so the loop is timed
    from outside (a cold start adds about a millisecond)."""
    best = None
    for _ in range(3):
        t = time.time()
        eq(n.get("/fn/vmprobe/spin?m=100").text, "spun")
        best = min(best or 1e9, time.time() - t)
    return max(1, int(ms / max(best * 1000 / 100, 0.01)))


def test_refill_waits_for_helpers_on_their_way_back():
    """Refill vs recycling (docs/vm.md, "Spares"): a recycling helper whose
    instance is live counts as a spare on its way back, so invocations
    slower than the lazy refill (100 ms) fork no helper: over sequential
    cold starts the node's helpers stay the two it started with. (Before,
    each cold start forked one at 100 ms and ended the helper that came
    back.) A helper that faults is not waited for: the refill replaces it."""
    tmp = tempfile.mkdtemp()
    try:
        with vm_node() as n:
            deploy_probe(n, tmp, keep_alive="0s")
            m = spin_rounds(n, 450)
            seen = set()
            for i in range(5):
                n.wait_for(lambda: not n.instances("vmprobe") and len(helpers(n.proc.pid)) == 2,
                           what="scaled to zero, two spares ready")
                seen |= helpers(n.proc.pid)
                t = time.time()
                eq(n.get(f"/fn/vmprobe/spin?m={m}").text, "spun", f"slow cold start {i}")
                took = time.time() - t
                check(0.15 < took < 0.95, f"the invocation outlasts the lazy refill: {took:.3f} s")
                seen |= helpers(n.proc.pid)
            n.wait_for(lambda: not n.instances("vmprobe") and len(helpers(n.proc.pid)) == 2,
                       what="scaled to zero, two spares ready")
            seen |= helpers(n.proc.pid)
            eq(len(seen), 2, f"no helper forked while the taken one was on its way back: {seen}")
            # A helper that faults after the refill looked (and counted on it)
            # does not come back: the refill replaces it at once, not when
            # the wait for it would have run out (a second after it was
            # taken: some 0.6 s after this fault).
            before = helpers(n.proc.pid)
            eq(n.get(f"/fn/vmprobe/spincrash?m={m}").status, 502, "fault")
            t = time.time()
            n.wait_for(lambda: not n.instances("vmprobe") and len(helpers(n.proc.pid)) == 2,
                       what="the faulted helper replaced")
            check(time.time() - t < 0.45, f"replaced {time.time() - t:.3f} s after the fault")
            after = helpers(n.proc.pid)
            eq(len(after - before), 1, f"one new helper: {before} -> {after}")
            eq(n.get("/fn/vmprobe/count").text, "calls 1", "a cold start after the fault")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def smaps_pss(pid):
    """PSS of a process in bytes (smaps_rollup)."""
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    raise TestFailure(f"no Pss in /proc/{pid}/smaps_rollup")


def capacity(n):
    return n.get("/v1/health").json()["capacity"]


def test_spares_are_charged_to_the_memory_budget():
    """Spares hold memory no instance reserved: it is shown as
    memory_standby, counted by admission, shed (spares before idle instances)
    when an instance needs the room, and never refilled past the budget
    (docs/vm.md, "Spares")."""
    tmp = tempfile.mkdtemp()
    try:
        hello = os.path.join(tmp, "hello")
        shutil.copytree(os.path.join(EXAMPLES, "hello"), hello)
        with open(os.path.join(hello, "mxu.yaml")) as f:
            text = f.read().replace("memory: 64Mi", "memory: 16Mi")
        with open(os.path.join(hello, "mxu.yaml"), "w") as f:
            f.write(text + "executor: process\n")
        # A node with room to spare: what one spare is charged, and that the
        # charge covers what a spare's process holds.
        with vm_node() as n:
            deploy_probe(n, tmp, keep_alive="0s")
            eq(n.get("/fn/vmprobe/count").text, "calls 1")
            n.wait_for(lambda: not n.instances("vmprobe") and len(helpers(n.proc.pid)) == 2,
                       what="scaled to zero, two spares ready")
            cap = capacity(n)
            standby = cap["memory_standby"]
            check(standby > 0 and standby % 2 == 0, f"two spares charged: {cap}")
            charge = standby // 2
            eq(cap["memory_free"], cap["memory_budget"] - cap["memory_reserved"] - standby,
               "free is what neither instances nor spares hold")
            pss = {p: smaps_pss(p) for p in helpers(n.proc.pid)}
            print(f"  charge per spare {charge} bytes; spares' PSS {sorted(pss.values())}")
            check(all(v <= charge for v in pss.values()),
                  f"the charge ({charge}) covers each spare's PSS: {pss}")
        # A node whose budget holds the probe (32 MiB), hello (16 MiB) and
        # one and a half spares.
        budget = (48 << 20) + charge * 3 // 2
        with vm_node("--memory", str(budget)) as n:
            deploy_probe(n, tmp, keep_alive="60s")
            n.deploy(hello)
            eq(n.get("/fn/vmprobe/count").text, "calls 1")
            inst = n.instances("vmprobe")
            eq(len(inst), 1, "the probe stays warm")
            pid = inst[0]["pid"]
            # (a) Its spare taken, the unit is refilled once the taken helper
            # stops counting as on its way back (it serves a warm instance).
            n.wait_for(lambda: len(helpers(n.proc.pid)) == 3, what="two spares next to it")
            cap = capacity(n)
            eq(cap["memory_reserved"], 32 << 20, "reserved")
            eq(cap["memory_standby"], 2 * charge, "standby: two spares")
            # (b) hello needs 16 MiB: it fits only without one of the
            # spares, which is shed; the probe's idle instance stays.
            r = n.get("/fn/hello?name=room")
            eq(r.status, 200, f"admitted: {r.text}")
            cap = capacity(n)
            eq(cap["memory_reserved"], 48 << 20, "both reserved")
            eq(cap["memory_standby"], charge, "one spare shed")
            eq([i["pid"] for i in n.instances("vmprobe")], [pid], "the warm probe kept")
            n.wait_for(lambda: len(helpers(n.proc.pid)) == 2, what="the shed spare gone")
            # The probe's warm instance faults: its memory is free again, and
            # the refill (which does not wait for a helper that faulted)
            # brings the unit back to two spares.
            eq(n.get("/fn/vmprobe/crash").status, 502)
            n.wait_for(lambda: not n.instances("vmprobe") and len(helpers(n.proc.pid)) == 2,
                       what="two spares, no instance")
            eq(capacity(n)["memory_standby"], 2 * charge)
            # (c) A cold start takes one spare; the refill that follows
            # finds room for no second one next to the two instances.
            eq(n.get("/fn/vmprobe/count").text, "calls 1")
            time.sleep(1.5)  # past the wait for the taken helper, and the refill after it
            cap = capacity(n)
            eq(cap["memory_reserved"], 48 << 20, "both reserved")
            eq(cap["memory_standby"], charge, "one spare: the second does not fit")
            check(cap["memory_reserved"] + cap["memory_standby"] <= budget, f"within: {cap}")
            eq(len(helpers(n.proc.pid)), 2, "the instance and one spare")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def test_vm_runtime_exec_refused():
    tmp = tempfile.mkdtemp()
    try:
        with vm_node() as n:
            d = make_function(tmp, "vmexec", "name: vmexec\nruntime: exec\ncommand: [/bin/true]\n"
                              "executor: vm\n", {})
            p = n.cli("deploy", d)
            check(p.returncode != 0, "refused")
            check("vm runs runtime c functions only" in p.stderr.decode(), p.stderr.decode())
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def test_node_without_kvm_says_so_and_refuses_vm_deploys():
    """/dev/kvm replaced by /dev/null in a mount namespace of the node's own."""
    if not shutil.which("unshare") or os.geteuid() != 0:
        raise Skip("needs root and unshare to hide /dev/kvm from a node")
    tmp = tempfile.mkdtemp()
    data = tempfile.mkdtemp(prefix="mxu-e2e-")
    try:
        args = ["unshare", "-m", "sh", "-c",
                "mount --bind /dev/null /dev/kvm && exec \"$0\" \"$@\"", MXU, "serve",
                "--listen", "127.0.0.1:0", "--data", data, "--auth", "off"]
        p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            # the start banner: up to its "vm:" line (the executors line already lacks vm)
            out = b""
            for _ in range(20):
                line = p.stdout.readline()
                if not line:
                    break
                out += line
                if b"vm:" in line:
                    break
            m = re.search(rb"listening on (http://127\.0\.0\.1:\d+)", out)
            check(m, "node started: %r" % out)
            check(b"vm:        unavailable: /dev/kvm" in out, out.decode())
            d = os.path.join(tmp, "hello")
            shutil.copytree(os.path.join(EXAMPLES, "hello"), d)
            with open(os.path.join(d, "mxu.yaml"), "a") as f:
                f.write("executor: vm\n")
            env = dict(os.environ, MXU_URL=m.group(1).decode())
            r = subprocess.run([MXU, "deploy", d], capture_output=True, env=env, timeout=60)
            check(r.returncode != 0, "refused")
            check("executor vm is not available on this node: /dev/kvm" in r.stderr.decode(),
                  r.stderr.decode())
        finally:
            p.terminate()
            p.wait(timeout=30)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(data, ignore_errors=True)
