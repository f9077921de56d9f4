#!/usr/bin/env python3
"""
Run the end-to-end tests: every test_* function in tests/e2e/test_*.py, each
with a time limit, printing "PASS e2e/<module>/<test>" or
"FAIL e2e/<module>/<test>: reason" (scripts/check.sh counts these lines).

  tests/e2e/run.py                 all tests
  tests/e2e/run.py invoke          tests whose name contains "invoke"
  MXU_BUILD=build-asan tests/e2e/run.py   against another build
"""
import importlib
import os
import signal
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
TEST_TIMEOUT = int(os.environ.get("MXU_E2E_TIMEOUT", "120"))


class Timeout(Exception):
    pass


def on_alarm(signum, frame):
    raise Timeout(f"test took longer than {TEST_TIMEOUT}s")


def main():
    pattern = sys.argv[1] if len(sys.argv) > 1 else ""
    signal.signal(signal.SIGALRM, on_alarm)
    from harness import Skip
    failed = passed = skipped = 0
    for fname in sorted(os.listdir(HERE)):
        if not (fname.startswith("test_") and fname.endswith(".py")):
            continue
        mod = importlib.import_module(fname[:-3])
        for name in sorted(n for n in dir(mod) if n.startswith("test_")):
            full = f"e2e/{fname[5:-3]}/{name[5:]}"
            if pattern and pattern not in full:
                continue
            start = time.time()
            signal.alarm(TEST_TIMEOUT)
            try:
                getattr(mod, name)()
                signal.alarm(0)
                print(f"PASS {full} ({time.time() - start:.1f}s)", flush=True)
                passed += 1
            except Skip as e:
                signal.alarm(0)
                print(f"SKIP {full}: {e}", flush=True)
                skipped += 1
            except BaseException as e:  # noqa: B902 - report everything, keep going
                signal.alarm(0)
                if isinstance(e, KeyboardInterrupt):
                    raise
                failed += 1
                reason = str(e).splitlines()[0] if str(e) else type(e).__name__
                print(f"FAIL {full}: {reason}", flush=True)
                traceback.print_exc(file=sys.stdout)
    print(f"e2e: {passed} passed, {failed} failed, {skipped} skipped", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
