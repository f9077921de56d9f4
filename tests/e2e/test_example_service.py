"""
The example service of the README (examples/order-intake), deployed as its
deploy.sh deploys it — catalogue blocks configured with `mxu catalog deploy`,
then the service — and run: a good order gets a signed receipt naming the
queue message and the count, a bad one the validator's 422 and nothing
filed, and each run's trace shows every step.
"""
import hashlib
import hmac
import json
import os
import subprocess

from harness import MXU, Node, check, eq

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLE = os.path.join(HERE, "..", "..", "examples", "order-intake")
KEY = b"example-receipt-key-0123456789"  # deploy.sh's receipt-sign key


def deploy_example(n):
    env = dict(n.env, MXU_URL=n.url, MXU_KEY=n.key)
    p = subprocess.run(["sh", os.path.join(EXAMPLE, "deploy.sh"), MXU], env=env,
                       capture_output=True, timeout=300)
    eq(p.returncode, 0, f"deploy.sh: {p.stdout.decode()}{p.stderr.decode()}")


def test_order_intake_end_to_end():
    with Node() as n:
        deploy_example(n)
        n.deploy("store")  # reads kv:orders, where order-count keeps its counter
        with open(os.path.join(EXAMPLE, "order.json"), "rb") as f:
            order = f.read()
        for number in (1, 2):
            r = n.post("/fn/order-intake", body=order)  # public: no key
            eq(r.status, 200, r.text)
            eq(r.text, f"Order o-1001 for ada@example.com: 2 x tea; 1 x cup; message {number} "
                       f"on queue orders, order number {number}.\n")
            sig = hmac.new(KEY, r.body, hashlib.sha256).hexdigest()
            eq(r.headers.get("x-signature"), sig, "the receipt is signed by receipt-sign")
        eq(n.get("/fn/store/kv/get?k=taken").text, "2")

        # A bad order: the validator's 422, and nothing filed or counted.
        bad = json.dumps({"id": "1001", "email": "ada", "items": []})
        r = n.post("/fn/order-intake", body=bad)
        eq(r.status, 422, r.text)
        eq(r.json()["error"]["code"], "schema_violation")
        eq(len(r.json()["violations"]), 3)
        eq(n.get("/fn/store/kv/get?k=taken").text, "2")

        # The trace names each step, the parallel's branches included.
        t = n.get(f"/v1/traces/{r.headers['x-mxu-trace']}").json()
        steps = [s["id"] for s in t["runs"][0]["steps"]]
        eq(steps, ["order-check"], "the run ended at the validator")
        eq(t["runs"][0]["status"], 422)
        r = n.post("/fn/order-intake", body=order)
        t = n.get(f"/v1/traces/{r.headers['x-mxu-trace']}").json()
        steps = [s["id"] for s in t["runs"][0]["steps"]]
        for want in ("order-check", "file", "order-fields", "queued", "order-count", "receipt",
                     "receipt-sign"):
            check(want in steps, f"{want} in the trace: {steps}")
