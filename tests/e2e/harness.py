"""
End-to-end test support: start a real `mxu serve` on a free port with a
temporary data directory, drive it over HTTP and through the CLI, stop it.

Like Redis' tests/support/server.tcl: the real binary, a generated
configuration, and waiting until it answers. Nothing is mocked.
"""
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("MXU_BUILD", os.path.join(ROOT, "build"))
MXU = os.path.join(BUILD, "mxu")
FUNCTIONS = os.path.join(ROOT, "tests", "e2e", "functions")
EXAMPLES = os.path.join(ROOT, "examples")
SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                   "SUMMARY: UndefinedBehaviorSanitizer")


class TestFailure(AssertionError):
    pass


class Skip(Exception):
    """Raised by a test that cannot run here (say, no usable /dev/kvm): run.py
    prints SKIP with the reason; it counts as neither passed nor failed."""


def check(cond, msg="check failed"):
    if not cond:
        raise TestFailure(msg)


def eq(a, b, what=""):
    if a != b:
        raise TestFailure(f"{what}: {a!r} != {b!r}" if what else f"{a!r} != {b!r}")


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = {k.lower(): v for k, v in headers}
        self.body = body

    def json(self):
        return json.loads(self.body)

    @property
    def text(self):
        return self.body.decode("utf-8", "replace")

    def __repr__(self):
        return f"<Response {self.status} {self.body[:200]!r}>"


class Node:
    """A running `mxu serve`. Use as a context manager, or call stop()."""

    def __init__(self, *extra_args, data_dir=None, env=None):
        self.own_dir = data_dir is None
        self.data_dir = data_dir or tempfile.mkdtemp(prefix="mxu-e2e-")
        self.extra_args = list(extra_args)
        self.env = dict(os.environ)
        self.env.pop("MXU_URL", None)
        self.env.pop("MXU_KEY", None)
        # The node writes its admin key into the CLI credentials of the user
        # it runs as: keep that in a folder of the test's, not in ~/.config.
        self.config_home = tempfile.mkdtemp(prefix="mxu-e2e-cfg-")
        self.env["XDG_CONFIG_HOME"] = self.config_home
        self.key = None
        if env:
            self.env.update(env)
        self.proc = None
        self.port = None
        self.stderr_path = os.path.join(tempfile.gettempdir(),
                                        f"mxu-e2e-{os.getpid()}-{id(self)}.stderr")
        self.start()

    def start(self):
        self.stderr_file = open(self.stderr_path, "wb")
        args = [MXU, "serve", "--listen", "127.0.0.1:0", "--data", self.data_dir] + self.extra_args
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=self.stderr_file,
                                     env=self.env)
        deadline = time.time() + 30
        line = b""
        while time.time() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            m = re.search(rb"listening on http://127\.0\.0\.1:(\d+)", line)
            if m:
                self.port = int(m.group(1))
                break
        if self.port is None:
            self.proc.kill()
            self.proc.wait()
            raise TestFailure(f"node did not start: {line!r} {self.stderr()}")
        self.url = f"http://127.0.0.1:{self.port}"
        # Every request and CLI call of the tests is the node's admin unless a
        # test says otherwise (auth=False, or its own Authorization header).
        try:
            with open(os.path.join(self.data_dir, "admin.key")) as f:
                self.key = f.read().strip()
        except OSError:
            self.key = None  # --auth off
        # Keep reading stdout so the node never blocks on a full pipe.
        import threading
        self.stdout_lines = []
        t = threading.Thread(target=self._pump, daemon=True)
        t.start()

    def _pump(self):
        for line in self.proc.stdout:
            self.stdout_lines.append(line.decode("utf-8", "replace"))

    def stderr(self):
        try:
            with open(self.stderr_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
        if self.own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)
        shutil.rmtree(self.config_home, ignore_errors=True)

    # ---- HTTP ----
    def auth_headers(self, key=None):
        """{"Authorization": "Bearer KEY"} for `key` (default: the admin key)."""
        key = key or self.key
        return {"Authorization": f"Bearer {key}"} if key else {}

    def request(self, method, path, body=None, headers=None, timeout=30, auth=True, key=None):
        """auth=False sends no key; key=K sends K instead of the admin key."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        headers = dict(headers or {})
        if auth and not any(h.lower() == "authorization" for h in headers):
            headers.update(self.auth_headers(key))
        try:
            if isinstance(body, str):
                body = body.encode()
            if isinstance(body, (dict, list)):
                body = json.dumps(body).encode()
            conn.request(method, path, body=body, headers=headers)
            r = conn.getresponse()
            return Response(r.status, r.getheaders(), r.read())
        finally:
            conn.close()

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, body=None, **kw):
        return self.request("POST", path, body=body, **kw)

    def raw(self, data, timeout=5):
        """Send raw bytes; return everything the node answers until it closes or times out."""
        s = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        try:
            s.sendall(data)
            out = b""
            while True:
                try:
                    chunk = s.recv(65536)
                except socket.timeout:
                    break
                if not chunk:
                    break
                out += chunk
            return out
        finally:
            s.close()

    # ---- CLI ----
    def cli(self, *args, input=None, check_rc=None, timeout=120, key=None):
        """The CLI as the admin (MXU_KEY), or with `key`; key=False: none."""
        env = dict(self.env)
        env["MXU_URL"] = self.url
        if key is False:
            env["XDG_CONFIG_HOME"] = os.path.join(self.config_home, "none")
        elif key or self.key:
            env["MXU_KEY"] = key or self.key
        p = subprocess.run([MXU] + list(args), input=input, capture_output=True, env=env,
                           timeout=timeout)
        if check_rc is not None and p.returncode != check_rc:
            raise TestFailure(f"mxu {' '.join(args)} exited {p.returncode}, wanted {check_rc}:\n"
                              f"stdout: {p.stdout.decode(errors='replace')}\n"
                              f"stderr: {p.stderr.decode(errors='replace')}")
        return p

    def deploy(self, folder):
        """Deploy a folder (a name under tests/e2e/functions, or a path); return the version."""
        path = folder if os.path.isabs(folder) else os.path.join(FUNCTIONS, folder)
        if not os.path.isdir(path):
            path = os.path.join(EXAMPLES, folder)
        p = self.cli("deploy", path, "--json", check_rc=0)
        return json.loads(p.stdout)["version"]

    def instances(self, fn=None):
        path = f"/v1/functions/{fn}/instances" if fn else "/v1/instances"
        return self.get(path).json()["instances"]

    def wait_for(self, cond, timeout=10, what="condition"):
        deadline = time.time() + timeout
        while time.time() < deadline:
            v = cond()
            if v:
                return v
            time.sleep(0.05)
        raise TestFailure(f"timed out waiting for {what}")

    # ---- stopping ----
    def stop(self, sig=signal.SIGTERM, expect_rc=0, timeout=30):
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise TestFailure("node did not stop within %ds after %s" % (timeout, sig))
        rc = self.proc.returncode
        self.proc = None
        self.stderr_file.close()
        err = self.stderr()
        for mark in SANITIZER_MARKS:
            if mark in err:
                raise TestFailure(f"sanitizer report in node stderr:\n{err[-4000:]}")
        if expect_rc is not None and sig == signal.SIGTERM and rc != expect_rc:
            raise TestFailure(f"node exited {rc} after SIGTERM, wanted {expect_rc}:\n{err[-2000:]}")
        try:
            os.unlink(self.stderr_path)
        except OSError:
            pass
        return rc

    def kill9(self):
        pid = self.proc.pid
        self.proc.kill()
        self.proc.wait()
        self.proc = None
        self.stderr_file.close()
        return pid


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie counts as gone.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"
    except OSError:
        return False


def processes_with_env(marker):
    """PIDs of processes whose environment contains marker (e.g. MXU_NODE=<id>)."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/environ", "rb") as f:
                if marker.encode() in f.read().split(b"\0"):
                    if pid_alive(int(d)):
                        out.append(int(d))
        except OSError:
            pass
    return out


def node_marker(data_dir):
    with open(os.path.join(data_dir, "node-id")) as f:
        return "MXU_NODE=" + f.read().strip()


def make_function(tmp, name, manifest, files):
    """Write a function folder under tmp; files is {path: text or (text, mode)}."""
    d = os.path.join(tmp, name)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "mxu.yaml"), "w") as f:
        f.write(manifest)
    for path, content in files.items():
        mode = 0o644
        if isinstance(content, tuple):
            content, mode = content
        p = os.path.join(d, path)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "w") as f:
            f.write(content)
        os.chmod(p, mode)
    return d


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Redis:
    """A real redis-server on a free loopback port, started and stopped by us."""

    def __init__(self, port=None):
        self.port = port or free_port()
        self.proc = None
        self.start()

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self):
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--daemonize", "no", "--loglevel", "warning"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 10
        while time.time() < deadline:
            if self.ping():
                return
            time.sleep(0.02)
        raise TestFailure("redis-server did not start")

    def ping(self):
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def command(self, *args):
        """One command, RESP-encoded; returns the raw reply bytes."""
        out = b"*%d\r\n" % len(args)
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            out += b"$%d\r\n%s\r\n" % (len(a), a)
        with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
            s.sendall(out)
            return s.recv(65536)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
