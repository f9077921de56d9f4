"""
Attacks from inside the sandbox, one small function each: `exec` scripts
(Python, which the sandbox can run from the host's read-only /usr) and C
functions built against the SDK. Each function reports what it managed; the
test asserts the attack failed. The runner (run.py) checks after every test
that the node still serves.

One node serves the whole module, with `--executor sandbox` as its default:
none of these manifests names an executor.
"""
import json
import os
import shutil
import socket
import tempfile
import threading

from harness import Node, check, eq, make_function

TMP = None


class Ctx:
    node = None
    canary = "canary"


PY = "#!/usr/bin/python3\n"

# Python prelude for the syscall attacks: errno-returning syscall().
PRELUDE = PY + """import ctypes, errno, os, sys
libc = ctypes.CDLL(None, use_errno=True)
def sc(nr, *args):
    rc = libc.syscall(ctypes.c_long(nr), *[ctypes.c_long(a) if isinstance(a, int) else a for a in args])
    return rc, ctypes.get_errno()
def report(results):
    bad = [f"{n}={rc}" for n, (rc, e) in results.items() if rc >= 0]
    print("ESCAPED " + " ".join(bad) if bad else "BLOCKED " +
          " ".join(f"{n}:{errno.errorcode.get(e, e)}" for n, (rc, e) in results.items()))
"""

# name -> (manifest extra, {file: content}); runtime exec unless a .c is given.
ATTACKS = {
    "read-host-files": ("", {"a.py": PY + """import os
leaks = []
for p in ["/etc/shadow", "/etc/ssh", "/root", "/home", "/var/lib", "/work", os.environ["NODE_DATA"],
          "/proc/1/root/etc/shadow", "/sys/kernel"]:
    try:
        if os.path.isdir(p):
            os.listdir(p)
        else:
            open(p, "rb").read(1)
        leaks.append(p)
    except OSError:
        pass
print("ESCAPED " + " ".join(leaks) if leaks else "BLOCKED")
"""}),
    "write-outside-tmp": ("", {"a.py": PY + """import os
wrote = []
for d in ["/", "/fn", "/etc", "/usr", "/usr/bin", "/dev", "/proc", "/sbin", "/lib"]:
    try:
        with open(os.path.join(d, "pwned"), "w") as f:
            f.write("x")
        wrote.append(d)
    except OSError:
        pass
for p in ["/etc/passwd", "/fn/a.py"]:
    try:
        open(p, "a").write("x")
        wrote.append(p)
    except OSError:
        pass
ok = open("/tmp/fine", "w").write("x") == 1
print("ESCAPED " + " ".join(wrote) if wrote else ("BLOCKED tmp-ok" if ok else "BROKEN /tmp"))
"""}),
    "fill-tmp": ("memory: 64Mi\n", {"a.py": PY + """import errno
total = 0
chunk = b"x" * (1 << 20)
try:
    with open("/tmp/fill", "wb") as f:
        while total < (1 << 30):
            f.write(chunk)
            f.flush()
            total += 1
    print(f"ESCAPED wrote {total} MiB")
except OSError as e:
    print(f"BLOCKED {errno.errorcode.get(e.errno)} after {total} MiB")
"""}),
    "connect-host": ("", {"a.py": PY + """import os, socket
got = []
for port in [int(os.environ["HOST_PORT"]), int(os.environ["NODE_PORT"])]:
    for host in ["127.0.0.1", "::1"]:
        try:
            s = socket.create_connection((host, port), timeout=2)
            s.sendall(b"escaped")
            got.append(f"{host}:{port}")
        except OSError:
            pass
# (if_nameindex asks over netlink, which it may not use: /proc/net/dev)
ifs = sorted(l.split(":")[0].strip() for l in open("/proc/net/dev").readlines()[2:])
print(("ESCAPED " + " ".join(got)) if got else f"BLOCKED interfaces={','.join(ifs)}")
"""}),
    "raw-sockets": ("", {"a.py": PRELUDE + """import socket
res = {}
for name, fam, typ, proto in [("netlink-route", socket.AF_NETLINK, socket.SOCK_RAW, 0),
                              ("netlink-audit", socket.AF_NETLINK, socket.SOCK_RAW, 9),
                              ("packet", socket.AF_PACKET, socket.SOCK_RAW, 0),
                              ("raw-icmp", socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP),
                              ("raw-ip6", socket.AF_INET6, socket.SOCK_RAW, 58)]:
    try:
        socket.socket(fam, typ, proto).close()
        res[name] = (0, 0)
    except OSError as e:
        res[name] = (-1, e.errno)
report(res)
"""}),
    "signal-ptrace": ("", {"a.py": PRELUDE + """import signal
node = int(os.environ["NODE_PID"])
other = int(os.environ.get("QUERY_STRING", "0") or 0)
res = {}
for name, pid in [("node", node), ("other-instance", other), ("init", 1)]:
    if pid <= 0:
        continue
    try:
        os.kill(pid, 0)
        res["kill-" + name] = (0, 0) if pid != 1 else (-1, 0)  # pid 1 is itself
    except OSError as e:
        res["kill-" + name] = (-1, e.errno)
    res["ptrace-" + name] = sc(101, 16, pid, 0, 0)  # PTRACE_ATTACH
    res["process_vm_readv-" + name] = sc(310, pid, 0, 0, 0, 0, 0)
try:
    os.kill(-1, signal.SIGKILL)  # everything it may signal: nothing but itself
except OSError:
    pass
report(res)
"""}),
    "mount-unshare-setns": ("", {"a.py": PRELUDE + """
res = {}
res["mount"] = sc(165, b"none", b"/tmp", b"tmpfs", 0, 0)
res["umount"] = sc(166, b"/proc", 2)
res["unshare-user"] = sc(272, 0x10000000)
res["unshare-mnt"] = sc(272, 0x00020000)
res["unshare-net"] = sc(272, 0x40000000)
res["clone-newuser"] = sc(56, 0x10000000 | 17, 0, 0, 0, 0)
res["setns"] = sc(308, os.open("/proc/self/ns/net", os.O_RDONLY), 0)
res["pivot_root"] = sc(155, b"/tmp", b"/tmp")
res["chroot"] = sc(161, b"/tmp")
res["fsopen"] = sc(430, b"tmpfs", 0)
if res["clone-newuser"][0] == 0:
    os._exit(0)
report(res)
"""}),
    "kernel-modules": ("", {"a.py": PRELUDE + """
res = {"init_module": sc(175, 0, 0, b""), "finit_module": sc(313, 0, b"", 0),
       "delete_module": sc(176, b"loop", 0), "kexec_load": sc(246, 0, 0, 0, 0),
       "bpf": sc(321, 0, 0, 0), "perf_event_open": sc(298, 0, 0, -1, -1, 0)}
report(res)
"""}),
    "keyctl": ("", {"a.py": PRELUDE + """
res = {"add_key": sc(248, b"user", b"mxu", b"secret", 6, -2),
       "keyctl-read-session": sc(250, 11, -3, 0, 0),  # KEYCTL_READ
       "request_key": sc(249, b"user", b"mxu", 0, 0)}
report(res)
"""}),
    "change-clock": ("", {"a.py": PRELUDE + """
import time
ts = (ctypes.c_long * 2)(int(time.time()) + 3600, 0)
tv = (ctypes.c_long * 2)(int(time.time()) + 3600, 0)
res = {"clock_settime": sc(227, 0, ts), "settimeofday": sc(164, tv, 0),
       "adjtimex-set": sc(159, (ctypes.c_char * 256)(b"\\x01"))}
report(res)
"""}),
    "reboot": ("", {"a.py": PRELUDE + """
# LINUX_REBOOT_CMD_CAD_OFF: harmless even where allowed.
res = {"reboot": sc(169, 0xfee1dead, 672274793, 0, 0), "swapon": sc(167, b"/tmp/x", 0),
       "syslog": sc(103, 3, 0, 0), "iopl": sc(172, 3), "acct": sc(163, 0)}
report(res)
"""}),
    "write-proc-sys": ("", {"a.py": PY + """
wrote = []
for p in ["/proc/sys/kernel/hostname", "/proc/sys/vm/drop_caches", "/proc/sys/net/ipv4/ip_forward",
          "/proc/sysrq-trigger", "/proc/sys/kernel/core_pattern"]:
    try:
        with open(p, "w") as f:
            f.write("1")
        wrote.append(p)
    except OSError:
        pass
print("ESCAPED " + " ".join(wrote) if wrote else "BLOCKED")
"""}),
    "fork-bomb": ("runtime: c\nsources: [a.c]\nkeep_alive: 0s\n", {"a.c": r"""
#include <mxu/fn.h>
#include <unistd.h>
int mxu_handle(mxu_req *req, mxu_res *res)
{
    (void)req;
    int n = 0;
    while (n < 100000) {
        pid_t p = fork();
        if (p < 0)
            break;
        if (p == 0) {
            for (;;)
                pause();
        }
        n++;
    }
    mxu_res_printf(res, "BLOCKED forks=%d\n", n);
    return 0;
}
"""}),
    "memory-bomb": ("runtime: c\nsources: [a.c]\nmemory: 32Mi\n", {"a.c": r"""
#include <mxu/fn.h>
#include <stdlib.h>
#include <string.h>
int mxu_handle(mxu_req *req, mxu_res *res)
{
    (void)req;
    size_t total = 0;
    for (;;) {
        char *p = malloc(1 << 20);
        if (p == NULL)
            break;
        memset(p, 1, 1 << 20);
        total += 1 << 20;
    }
    mxu_res_printf(res, "ESCAPED? allocated %zu MiB and saw malloc fail\n", total >> 20);
    return 0;
}
"""}),
    "cpu-spin": ("runtime: c\nsources: [a.c]\ntimeout: 1s\n", {"a.c": r"""
#include <mxu/fn.h>
int mxu_handle(mxu_req *req, mxu_res *res)
{
    (void)req;
    (void)res;
    for (volatile unsigned long i = 0;; i++)
        ;
    return 0;
}
"""}),
    "gigantic-output": ("runtime: c\nsources: [a.c]\n", {"a.c": r"""
#include <mxu/fn.h>
#include <stdio.h>
#include <string.h>
static char block[1 << 16];
int mxu_handle(mxu_req *req, mxu_res *res)
{
    (void)req;
    memset(block, 'x', sizeof(block));
    for (int i = 0; i < 1024; i++) /* 64 MiB of log */
        fwrite(block, 1, sizeof(block), stderr);
    for (int i = 0; i < 2048; i++) /* and a 128 MiB response */
        if (mxu_res_write(res, block, sizeof(block)) != 0)
            break;
    return 0;
}
"""}),
    # A warm instance that keeps a secret in its /tmp and its memory.
    "keeper": ("runtime: c\nsources: [a.c]\nkeep_alive: 5m\n", {"a.c": r"""
#include <mxu/fn.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
static char secret[64];
int mxu_handle(mxu_req *req, mxu_res *res)
{
    (void)req;
    snprintf(secret, sizeof(secret), "SECRET-%d", (int)getpid());
    FILE *f = fopen("/tmp/secret", "w");
    if (f) {
        fputs(secret, f);
        fclose(f);
    }
    mxu_res_printf(res, "kept %s\n", secret);
    return 0;
}
"""}),
    "snoop": ("", {"a.py": PY + """import os
target = int(os.environ.get("QUERY_STRING") or 0)
found = []
for p in ["/tmp/secret", f"/proc/{target}/mem", f"/proc/{target}/root/tmp/secret",
          f"/proc/{target}/environ"]:
    try:
        with open(p, "rb") as f:
            if b"SECRET" in f.read(1 << 16):
                found.append(p)
            else:
                found.append(p + "(opened)")
    except OSError:
        pass
others = [d for d in os.listdir("/proc") if d.isdigit() and int(d) not in (os.getpid(),)]
print(("ESCAPED " + " ".join(found)) if found or others else "BLOCKED pids-visible=1")
"""}),
    "canary": ("runtime: c\nsources: [a.c]\nkeep_alive: 5m\n", {"a.c": r"""
#include <mxu/fn.h>
int mxu_handle(mxu_req *req, mxu_res *res)
{
    (void)req;
    mxu_res_printf(res, "alive\n");
    return 0;
}
"""}),
}

HOST_LISTENER = None


def setup():
    global TMP, HOST_LISTENER
    TMP = tempfile.mkdtemp(prefix="mxu-hostile-")
    ctx = Ctx()
    HOST_LISTENER = socket.socket()
    HOST_LISTENER.bind(("127.0.0.1", 0))
    HOST_LISTENER.listen(8)
    HOST_LISTENER.settimeout(0.2)
    ctx.node = Node("--executor", "sandbox")
    env = {"NODE_DATA": ctx.node.data_dir, "NODE_PID": str(ctx.node.proc.pid),
           "HOST_PORT": str(HOST_LISTENER.getsockname()[1]), "NODE_PORT": str(ctx.node.port)}
    envyaml = "env:\n" + "".join(f"  {k}: '{v}'\n" for k, v in env.items())
    for name, (extra, files) in ATTACKS.items():
        if "runtime: c" in extra:
            manifest = f"name: {name}\n{extra}timeout: 10s\n{envyaml}" if "timeout" not in extra \
                else f"name: {name}\n{extra}{envyaml}"
        else:
            files = {k: (v, 0o755) for k, v in files.items()}
            manifest = f"name: {name}\nruntime: exec\ncommand: ./a.py\ntimeout: 20s\n{extra}{envyaml}"
        d = make_function(TMP, name, manifest, files)
        ctx.node.deploy(d)
    return ctx


def teardown(ctx):
    if ctx and ctx.node:
        ctx.node.stop()
        shutil.rmtree(ctx.node.data_dir, ignore_errors=True)
    if HOST_LISTENER:
        HOST_LISTENER.close()
    shutil.rmtree(TMP, ignore_errors=True)


def blocked(ctx, name, query=""):
    r = ctx.node.get(f"/fn/{name}" + (f"?{query}" if query else ""), timeout=60)
    text = r.text
    print(f"  {name}: {text.strip()[:300]}")
    check(r.status == 200, f"{name}: {r.status} {text[:300]}")
    check(text.startswith("BLOCKED"), f"{name}: the attack worked: {text[:500]}")
    return text


def test_executor_is_sandbox(ctx):
    ctx.node.get("/fn/canary")
    inst = ctx.node.instances("canary")
    check(inst and all(i["executor"] == "sandbox" for i in inst), f"instances: {inst}")
    h = ctx.node.get("/v1/health").json()
    check("sandbox" in h["executors"], f"health: {h}")


def test_read_host_files(ctx):
    blocked(ctx, "read-host-files")


def test_write_outside_tmp(ctx):
    text = blocked(ctx, "write-outside-tmp")
    check("tmp-ok" in text, text)


def test_fill_tmp(ctx):
    text = blocked(ctx, "fill-tmp")
    check("ENOSPC" in text, text)
    mib = int(text.split("after ")[1].split()[0])
    check(mib <= 32, f"/tmp took {mib} MiB with a 64 MiB function")


def test_connect_host_loopback(ctx):
    text = blocked(ctx, "connect-host")
    check("interfaces=lo" in text, text)
    try:
        conn, _ = HOST_LISTENER.accept()
        conn.close()
        raise AssertionError("the host's listener got a connection from the sandbox")
    except socket.timeout:
        pass


def test_raw_and_netlink_sockets(ctx):
    blocked(ctx, "raw-sockets")


def test_signal_and_ptrace_others(ctx):
    ctx.node.get("/fn/keeper")
    keeper = [i["pid"] for i in ctx.node.instances("keeper")]
    check(keeper, "no keeper instance")
    blocked(ctx, "signal-ptrace", str(keeper[0]))
    check(ctx.node.proc.poll() is None, "the node died")
    eq(ctx.node.get("/fn/keeper").status, 200, "the other instance still answers")


def test_mount_unshare_setns(ctx):
    blocked(ctx, "mount-unshare-setns")


def test_kernel_modules(ctx):
    blocked(ctx, "kernel-modules")


def test_keyctl(ctx):
    blocked(ctx, "keyctl")


def test_change_clock(ctx):
    blocked(ctx, "change-clock")


def test_reboot(ctx):
    blocked(ctx, "reboot")


def test_write_proc_sys(ctx):
    blocked(ctx, "write-proc-sys")


def test_fork_bomb(ctx):
    text = blocked(ctx, "fork-bomb")
    forks = int(text.split("forks=")[1].split()[0])
    check(forks < 256, f"{forks} forks with a pids limit of 256")


def test_memory_bomb(ctx):
    r = ctx.node.get("/fn/memory-bomb", timeout=60)
    text = r.text
    eq(r.status, 502, f"memory bomb: {text[:300]}")
    check("out of memory (limit 32 MiB)" in text, f"no clear OOM error: {text[:300]}")


def test_cpu_spin_past_timeout(ctx):
    r = ctx.node.get("/fn/cpu-spin", timeout=60)
    eq(r.status, 504, f"cpu spin: {r.text[:300]}")


def test_gigantic_output(ctx):
    r = ctx.node.get("/fn/gigantic-output", timeout=120)
    check(r.status in (200, 502), f"gigantic output: {r.status}")
    check(len(r.body) <= (6 << 20), f"a {len(r.body)}-byte response went out")


def test_other_instance_files_and_memory(ctx):
    r = ctx.node.get("/fn/keeper")
    check(r.text.startswith("kept"), r.text)
    pid = [i["pid"] for i in ctx.node.instances("keeper")][0]
    blocked(ctx, "snoop", str(pid))
    # Concurrent invocations of the keeper run in separate instances that do
    # not see each other's /tmp either: its secret names its own pid 1.
    outs = []

    def call():
        outs.append(ctx.node.get("/fn/keeper").text)

    ts = [threading.Thread(target=call) for _ in range(2)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    check(all(o.startswith("kept SECRET-1") for o in outs), f"keeper answers: {outs}")
