"""The node itself: persistence across kill -9, graceful SIGTERM, no orphans."""
import os
import signal
import subprocess
import threading
import time

from harness import (MXU, Node, check, eq, node_marker, pid_alive, processes_with_env)


def test_state_survives_kill_9_and_no_orphans():
    n = Node()
    try:
        n.deploy("hello")
        n.deploy("probe")
        n.cli("alias", "probe", "prod", "1", check_rc=0)
        pid = n.get("/fn/probe").json()["pid"]
        marker = node_marker(n.data_dir)
        check(processes_with_env(marker) != [], "instance carries the node marker")
        n.kill9()
        # PDEATHSIG takes the instances down with the node.
        deadline = time.time() + 5
        while time.time() < deadline and pid_alive(pid):
            time.sleep(0.05)
        check(not pid_alive(pid), "instance died with its node")
        eq(processes_with_env(marker), [], "no orphans after kill -9")
        n.start()
        eq(n.get("/fn/hello").text, "hello, world\n")
        eq(n.get("/fn/probe@prod").status, 200)
        eq(sorted(f["name"] for f in n.get("/v1/functions").json()["functions"]),
           ["hello", "probe"])
        n.stop()
    finally:
        if n.proc:
            n.proc.kill()


def test_sigterm_drains_in_flight_invocations():
    with Node("--drain-timeout", "5s") as n:
        n.deploy("probe")
        pid = n.get("/fn/probe").json()["pid"]
        marker = node_marker(n.data_dir)
        result = {}
        t = threading.Thread(target=lambda: result.update(r=n.get("/fn/probe?sleep=800")))
        t.start()
        time.sleep(0.2)
        node_proc = n.proc
        node_proc.send_signal(signal.SIGTERM)
        t.join()
        eq(result["r"].status, 200, "in-flight invocation finished")
        eq(node_proc.wait(timeout=10), 0)
        check(not pid_alive(pid), "instance stopped")
        eq(processes_with_env(marker), [])
        n.proc = node_proc
        n.stop()


def test_sigterm_drain_is_bounded():
    with Node("--drain-timeout", "300ms") as n:
        n.deploy("probe")
        result = {}
        t = threading.Thread(target=lambda: result.update(r=n.get("/fn/probe?sleep=1900")))
        t.start()
        time.sleep(0.2)
        t0 = time.time()
        n.proc.send_signal(signal.SIGTERM)
        eq(n.proc.wait(timeout=10), 0)
        check(time.time() - t0 < 1.8, "did not wait for the whole invocation")
        t.join()
        eq(result["r"].status, 503)
        eq(result["r"].json()["error"]["code"], "shutting_down")


def test_two_nodes_cannot_share_a_data_dir():
    with Node() as n:
        p = subprocess.run([MXU, "serve", "--listen", "127.0.0.1:0", "--data", n.data_dir],
                           capture_output=True, timeout=10)
        check(p.returncode != 0, "second node refused")
        check(b"another mxu node" in p.stderr, p.stderr)


def test_exec_orphans_die_with_node():
    """An exec function that leaves a background child: it is killed with the node."""
    import tempfile
    from harness import make_function
    with tempfile.TemporaryDirectory() as tmp:
        n = Node()
        try:
            make_function(tmp, "forker", "name: forker\nruntime: exec\ncommand: ./f.sh\n",
                          {"f.sh": ("#!/bin/sh\nsetsid sleep 300 >/dev/null 2>&1 &\nsleep 0.3\necho started\n",
                                    0o755)})
            n.deploy(os.path.join(tmp, "forker"))
            eq(n.get("/fn/forker").text, "started\n")
            marker = node_marker(n.data_dir)
            check(processes_with_env(marker) != [], "the escaped child is there")
            n.kill9()
            n.start()  # a new node on the same directory cleans up what was left
            eq(processes_with_env(marker), [], "leftovers killed at start")
            n.stop()
        finally:
            if n.proc:
                n.proc.kill()


def test_config_file_and_flags():
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        cfg = os.path.join(tmp, "node.yaml")
        with open(cfg, "w") as f:
            f.write("# a node for tests\nmemory: 300Mi\nqueue_max: 5\nlog_level: warn\n")
        with Node("--config", cfg) as n:
            eq(n.get("/v1/health").json()["capacity"]["memory_budget"], 300 << 20)
        # Flags win over the file.
        with Node("--config", cfg, "--memory", "200Mi") as n:
            eq(n.get("/v1/health").json()["capacity"]["memory_budget"], 200 << 20)
        with open(cfg, "w") as f:
            f.write("memory: 300Mi\nqueue_timeout: soon\n")
        p = subprocess.run([MXU, "serve", "--config", cfg, "--data", tmp], capture_output=True,
                           timeout=10)
        eq(p.returncode, 2)
        check(f"{cfg}:2".encode() in p.stderr and b"queue_timeout" in p.stderr, p.stderr)
        with open(cfg, "w") as f:
            f.write("memroy: 300Mi\n")
        p = subprocess.run([MXU, "serve", "--config", cfg, "--data", tmp], capture_output=True,
                           timeout=10)
        eq(p.returncode, 2)
        check(b"unknown setting 'memroy'" in p.stderr, p.stderr)
        p = subprocess.run([MXU, "serve", "--help"], capture_output=True, timeout=10)
        eq(p.returncode, 0)
        for opt in (b"--listen", b"--data", b"--config", b"--memory", b"--drain-timeout"):
            check(opt in p.stdout, opt)
