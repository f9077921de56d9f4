#!/bin/sh
# bench/sandbox.sh — the sandbox executor measured beside the isolation tools
# of ../shared/peers/40-isolation.sh, in one run on this machine:
#
#   1. cold start: the first invoke after scale to zero, end to end over HTTP
#      (bench/src/coldstart.c: X-Mxu-Cold counted, p50/p99 over COLD_RUNS),
#      of the no-op function under `executor: sandbox` and under `process`,
#      dynamic and static builds;
#   2. the same static `true` (musl, as the peers used) started by bwrap
#      --unshare-all, `crun run` and `runc run` of a read-only OCI bundle
#      (hyperfine -N, HF_RUNS runs; crun inside a private mount namespace
#      without /sys/fs/cgroup/unified on hybrid hosts, as the peers did);
#   3. warm throughput of the no-op function, sandbox vs process
#      (wrk -t1 -c32 and -c1, REPEATS rounds interleaved; the ratio per round,
#      median reported).
#
# Standalone (sh bench/sandbox.sh) or from bench/run.sh. Writes
# $RES/sandbox.md (summary) and raw files under $RES/raw/; prints the summary.
# Env: BENCH_DIR (/tmp/mxu-bench), MXU_BIN (build/mxu), COLD_RUNS (300),
#   HF_RUNS (200), REPEATS (3), DURATION (10s), SERVER_CPU (0), CLIENT_CPU (1),
#   BENCH_PORT (18200: uses +10), BENCH_QUICK=1 (40 runs, 1 x 3 s).
# Needs: bubblewrap crun runc hyperfine wrk (scripts/deps.sh --bench),
#   musl-gcc or cc, python3, curl, taskset, setsid, unshare; root (crun, runc
#   and the sandbox's cgroups).
set -u

BENCH=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$BENCH/.." && pwd)
BENCH_DIR=${BENCH_DIR:-/tmp/mxu-bench}
MXU_BIN=${MXU_BIN:-$REPO/build/mxu}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
QUIET_MIN=${QUIET_MIN:-90}
QUIET_WAIT=${QUIET_WAIT:-60}
if [ "${BENCH_QUICK:-0}" = 1 ]; then
    COLD_RUNS=${COLD_RUNS:-40} HF_RUNS=${HF_RUNS:-40} REPEATS=${REPEATS:-1} DURATION=${DURATION:-3s}
else
    COLD_RUNS=${COLD_RUNS:-300} HF_RUNS=${HF_RUNS:-200} REPEATS=${REPEATS:-3} DURATION=${DURATION:-10s}
fi
WARMUP=${WARMUP:-2s}
PORT=$((${BENCH_PORT:-18200} + 10))
if [ -z "${RES:-}" ]; then
    RES="$BENCH_DIR/results/sandbox-$(date +%Y%m%d-%H%M%S)"
fi
LOGS="$RES/logs" PIDS="$RES/pids"
mkdir -p "$RES/raw" "$LOGS" "$PIDS"
. "$BENCH/lib.sh"
trap 'stop_all_bg' EXIT
trap 'exit 130' INT TERM # stop, don't carry on without servers

for c in bwrap crun runc hyperfine wrk python3 curl taskset setsid unshare; do
    command -v "$c" >/dev/null 2>&1 || { echo "bench/sandbox: missing $c (scripts/deps.sh --bench)" >&2; exit 1; }
done
[ -x "$MXU_BIN" ] || { echo "bench/sandbox: $MXU_BIN not found: run make" >&2; exit 1; }

# ---------------------------------------------------------------- helpers
W="$BENCH_DIR/sandbox"
mkdir -p "$W/bin"
CC_STATIC="cc -static"
command -v musl-gcc >/dev/null 2>&1 && CC_STATIC="musl-gcc -static -Os -s"
printf 'int main(void){return 0;}\n' >"$W/true.c"
$CC_STATIC -o "$W/bin/true" "$W/true.c" || exit 1
cc -O2 -o "$W/bin/coldstart" "$BENCH/src/coldstart.c" || exit 1

# The OCI bundle of 40-isolation.sh: crun's default spec, /true, read-only root.
B="$W/bundle"
ROOTFS="$W/rootfs"
rm -rf "$B" "$ROOTFS"
mkdir -p "$B/rootfs" "$ROOTFS"
cp "$W/bin/true" "$B/rootfs/true"
cp "$W/bin/true" "$ROOTFS/true"
(cd "$B" && crun spec) || exit 1
python3 - "$B/config.json" <<'EOF'
import json, sys
p = sys.argv[1]
c = json.load(open(p))
c["process"]["args"] = ["/true"]
c["process"]["terminal"] = False
c["root"]["readonly"] = True
json.dump(c, open(p, "w"), indent=1)
EOF
cp "$B/config.json" "$RES/raw/oci-config.json"

# hyperfine NAME CMD [inside a private mount ns without the v2 mount]
hf() {
    _name=$1 _cmd=$2 _v1ns=${3:-0}
    wait_quiet
    log "hyperfine: $_name ($HF_RUNS runs, idle $LAST_IDLE %)"
    if [ "$_v1ns" = 1 ] && mountpoint -q /sys/fs/cgroup/unified 2>/dev/null &&
        [ -n "$(cat /sys/fs/cgroup/unified/cgroup.controllers 2>/dev/null)" ]; then
        unshare -m --propagation private sh -c 'umount /sys/fs/cgroup/unified && exec "$@"' _ \
            hyperfine -N --warmup 5 --runs "$HF_RUNS" --export-json "$RES/raw/sbx-hf-$_name.json" "$_cmd" \
            >"$RES/raw/sbx-hf-$_name.txt" 2>&1
    else
        hyperfine -N --warmup 5 --runs "$HF_RUNS" --export-json "$RES/raw/sbx-hf-$_name.json" "$_cmd" \
            >"$RES/raw/sbx-hf-$_name.txt" 2>&1
    fi || log "hyperfine $_name failed: $(tail -3 "$RES/raw/sbx-hf-$_name.txt")"
}

# ---------------------------------------------------------------- 2: peers
crun delete -f mxu-bench-crun >/dev/null 2>&1 || true
runc delete -f mxu-bench-runc >/dev/null 2>&1 || true
hf fork-exec-static "$W/bin/true"
hf bwrap-unshare-all "bwrap --ro-bind $ROOTFS / --unshare-all --die-with-parent /true"
hf crun-run "crun run --bundle $B mxu-bench-crun" 1
hf runc-run "runc run --bundle $B mxu-bench-runc"

# ---------------------------------------------------------------- 1, 3: mxu
F="$W/functions"
rm -rf "$F"
mkdir -p "$F"
for f in cold cold-static noop; do
    cp -r "$BENCH/functions/$f" "$F/$f"
    cp -r "$BENCH/functions/$f" "$F/$f-sandbox"
    sed -i "s/^name: .*/name: $f-sandbox/" "$F/$f-sandbox/mxu.yaml"
    printf 'executor: sandbox\n' >>"$F/$f-sandbox/mxu.yaml"
done
DATA="$W/data"
rm -rf "$DATA"
# --auth off: this script measures isolation / resource calls, not
# authentication (bench/run.sh keeps it on); no credentials are written.
start_bg mxu-sandbox "$MXU_BIN" serve --auth off --listen "127.0.0.1:$PORT" --data "$DATA" --log-level warn \
    --deploy "$F/cold" --deploy "$F/cold-sandbox" --deploy "$F/cold-static" \
    --deploy "$F/cold-static-sandbox" --deploy "$F/noop" --deploy "$F/noop-sandbox"
wait_http "http://127.0.0.1:$PORT/fn/noop-sandbox" 120 || exit 1
"$MXU_BIN" version >"$RES/raw/sbx-mxu-version.txt" 2>&1 || true
(cd "$REPO" && git rev-parse --short HEAD) >"$RES/raw/sbx-commit.txt" 2>/dev/null || true

for f in cold cold-sandbox cold-static cold-static-sandbox; do
    wait_quiet
    log "cold start: $COLD_RUNS runs of /fn/$f (idle $LAST_IDLE %)"
    taskset -c "$CLIENT_CPU" timeout 900 "$W/bin/coldstart" 127.0.0.1 "$PORT" "$f" "$COLD_RUNS" \
        "$RES/raw/sbx-cold-$f.tsv" >"$RES/raw/sbx-cold-$f.txt" 2>&1 || log "coldstart $f failed"
    log "$(head -1 "$RES/raw/sbx-cold-$f.txt")"
done

# Warm throughput, interleaved rounds.
for c in 32 1; do
    for f in noop noop-sandbox; do
        timeout 40 taskset -c "$CLIENT_CPU" wrk -t1 -c"$c" -d"$WARMUP" -s "$BENCH/wrk-report.lua" \
            "http://127.0.0.1:$PORT/fn/$f" >"$RES/raw/sbx-warmup-$f-c$c.txt" 2>&1
    done
done
r=1
while [ $r -le "$REPEATS" ]; do
    for c in 32 1; do
        for f in noop noop-sandbox; do
            wait_quiet
            out="$RES/raw/sbx-wrk-$f-c$c-r$r.txt"
            timeout 60 taskset -c "$CLIENT_CPU" wrk -t1 -c"$c" -d"$DURATION" --latency \
                -s "$BENCH/wrk-report.lua" "http://127.0.0.1:$PORT/fn/$f" >"$out" 2>&1
            log "wrk $f c=$c round $r: $(grep -o 'Requests/sec: *[0-9.]*' "$out")"
        done
    done
    r=$((r + 1))
done
stop_bg mxu-sandbox

# ---------------------------------------------------------------- summary
python3 - "$RES" "$COLD_RUNS" "$HF_RUNS" >"$RES/sandbox.md" <<'EOF'
import glob, json, os, re, statistics, sys
res, cold_runs, hf_runs = sys.argv[1], sys.argv[2], sys.argv[3]
raw = os.path.join(res, "raw")
def cold(name):
    try:
        line = open(os.path.join(raw, f"sbx-cold-{name}.txt")).readline()
        return dict(kv.split("=") for kv in line.split()[1:])
    except (OSError, ValueError):
        return None
def hf(name):
    try:
        j = json.load(open(os.path.join(raw, f"sbx-hf-{name}.json")))["results"][0]
        t = sorted(x * 1e6 for x in j["times"])
        return {"p50": statistics.median(t), "p99": t[min(len(t) - 1, int(len(t) * 0.99))],
                "mean": j["mean"] * 1e6, "n": len(t)}
    except (OSError, KeyError, IndexError, ValueError):
        return None
def rps(f, c, r):
    try:
        return float(re.search(r"Requests/sec:\s*([0-9.]+)",
                               open(os.path.join(raw, f"sbx-wrk-{f}-c{c}-r{r}.txt")).read()).group(1))
    except (OSError, AttributeError):
        return None
print("| what | p50 | p99 | runs | cold |")
print("|---|---:|---:|---:|---:|")
rows = {}
for f in ["cold-sandbox", "cold-static-sandbox", "cold", "cold-static"]:
    c = cold(f)
    if c:
        rows[f] = int(c["p50_us"])
        print(f"| mxu `{f}` (end to end over HTTP) | {int(c['p50_us']) / 1000:.2f} ms | "
              f"{int(c['p99_us']) / 1000:.2f} ms | {c['runs']} | {c['cold']} |")
for n in ["fork-exec-static", "bwrap-unshare-all", "crun-run", "runc-run"]:
    h = hf(n)
    if h:
        rows[n] = h["p50"]
        print(f"| `{n}` of a static `true` (hyperfine) | {h['p50'] / 1000:.2f} ms | "
              f"{h['p99'] / 1000:.2f} ms | {h['n']} | |")
print()
best = min((rows[k] for k in ("cold-sandbox", "cold-static-sandbox") if k in rows), default=None)
for peer in ["crun-run", "runc-run", "bwrap-unshare-all"]:
    if best and peer in rows:
        print(f"- sandbox cold start (best build, p50) vs `{peer}`: **{rows[peer] / best:.1f}x faster**")
if "cold-static-sandbox" in rows:
    print(f"- static sandbox cold start p50 {rows['cold-static-sandbox'] / 1000:.2f} ms "
          f"(target <= 5 ms: {'met' if rows['cold-static-sandbox'] <= 5000 else 'NOT met'})")
for c in (32, 1):
    ratios, a, b = [], [], []
    r = 1
    while rps("noop", c, r) is not None:
        p, s = rps("noop", c, r), rps("noop-sandbox", c, r)
        if p and s:
            ratios.append(s / p)
            a.append(p)
            b.append(s)
        r += 1
    if ratios:
        print(f"- warm no-op, {c} connection(s): sandbox {statistics.median(b):.0f} req/s, process "
              f"{statistics.median(a):.0f} req/s: **{statistics.median(ratios):.2f}x** "
              f"(rounds: {', '.join(f'{x:.2f}' for x in ratios)})")
EOF
cat "$RES/sandbox.md"
echo "raw results: $RES"
