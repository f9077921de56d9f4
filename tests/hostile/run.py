#!/usr/bin/env python3
"""
The hostile suite: functions that attack the sandbox executor, each asserting
that the attack FAILS inside the sandbox and that the node keeps serving.

Every test_*.py here may define setup() -> ctx and teardown(ctx); each
test_* function gets ctx (one node per module: deploying the attack
functions once keeps the suite short). After every test the runner checks
that the node still answers /v1/health and a canary invocation, so an attack
that took the node down fails even if its own assertion passed. Prints
"PASS hostile/<module>/<test>" or "FAIL hostile/<module>/<test>: reason"
(scripts/check.sh counts these lines). A module whose setup() raises Skip
(the vm attacks where /dev/kvm cannot run guests) prints "SKIP ..." for each
of its tests: skipped, never passed.

  tests/hostile/run.py              all
  tests/hostile/run.py fork         tests whose name contains "fork"
  MXU_BUILD=build-asan tests/hostile/run.py
"""
import importlib
import os
import signal
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "e2e"))
TEST_TIMEOUT = int(os.environ.get("MXU_HOSTILE_TIMEOUT", "120"))


class Timeout(Exception):
    pass


def on_alarm(signum, frame):
    raise Timeout(f"took longer than {TEST_TIMEOUT}s")


def node_serving(ctx):
    """None if the module's node still serves, else why not."""
    node = getattr(ctx, "node", None) if ctx is not None else None
    if node is None or node.proc is None:
        return None
    if node.proc.poll() is not None:
        return f"the node exited ({node.proc.returncode})"
    try:
        r = node.get("/v1/health", timeout=10)
        if r.status != 200:
            return f"/v1/health answered {r.status}"
        canary = getattr(ctx, "canary", None)
        if canary:
            r = node.get(f"/fn/{canary}", timeout=10)
            if r.status != 200:
                return f"the canary function answered {r.status}: {r.body[:200]!r}"
    except Exception as e:  # noqa: BLE001
        return f"the node does not answer: {e}"
    return None


def main():
    pattern = sys.argv[1] if len(sys.argv) > 1 else ""
    signal.signal(signal.SIGALRM, on_alarm)
    from harness import Skip
    failed = passed = skipped = 0
    for fname in sorted(os.listdir(HERE)):
        if not (fname.startswith("test_") and fname.endswith(".py")):
            continue
        mod = importlib.import_module(fname[:-3])
        names = sorted(n for n in dir(mod) if n.startswith("test_"))
        wanted = [n for n in names if not pattern or pattern in f"hostile/{fname[5:-3]}/{n[5:]}"]
        if not wanted:
            continue
        ctx = None
        try:
            signal.alarm(TEST_TIMEOUT)
            ctx = mod.setup() if hasattr(mod, "setup") else None
            signal.alarm(0)
        except Skip as e:
            signal.alarm(0)
            for n in wanted:
                print(f"SKIP hostile/{fname[5:-3]}/{n[5:]}: {e}", flush=True)
                skipped += 1
            continue
        except BaseException as e:  # noqa: B902
            signal.alarm(0)
            for n in wanted:
                print(f"FAIL hostile/{fname[5:-3]}/{n[5:]}: setup failed: {e}", flush=True)
                failed += 1
            traceback.print_exc(file=sys.stdout)
            continue
        for name in wanted:
            full = f"hostile/{fname[5:-3]}/{name[5:]}"
            start = time.time()
            signal.alarm(TEST_TIMEOUT)
            try:
                getattr(mod, name)(ctx)
                why = node_serving(ctx)
                if why:
                    raise AssertionError(f"after the attack: {why}")
                signal.alarm(0)
                print(f"PASS {full} ({time.time() - start:.1f}s)", flush=True)
                passed += 1
            except BaseException as e:  # noqa: B902 - report everything, keep going
                signal.alarm(0)
                if isinstance(e, KeyboardInterrupt):
                    raise
                failed += 1
                reason = str(e).splitlines()[0] if str(e) else type(e).__name__
                print(f"FAIL {full}: {reason}", flush=True)
                traceback.print_exc(file=sys.stdout)
        if hasattr(mod, "teardown"):
            try:
                mod.teardown(ctx)
            except BaseException as e:  # noqa: B902
                failed += 1
                print(f"FAIL hostile/{fname[5:-3]}/teardown: {e}", flush=True)
                traceback.print_exc(file=sys.stdout)
    print(f"hostile: {passed} passed, {failed} failed, {skipped} skipped", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
