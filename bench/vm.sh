#!/bin/sh
# bench/vm.sh — the vm executor (docs/vm.md) beside process and sandbox, in
# one run on this machine, one node:
#
#   1. cold start: the first invoke after scale to zero, end to end over HTTP
#      (bench/src/coldstart.c: X-Mxu-Cold counted, p50/p99 over COLD_RUNS) of
#      the no-op function `cold` under process, sandbox (when the node can
#      run it) and vm, in interleaved rounds;
#   2. warm throughput of the no-op function under process, vm and sandbox
#      (when the node can run it) (wrk -t1 -c32 and -c1, REPEATS rounds
#      interleaved, the ratio to process per round, median), and the CPU
#      time per request of the node and of the instance;
#   3. memory per idle VM: PSS and RSS of an idle instance's mxu-vmm helper
#      and of an idle spare, minus the guest's RAM (its one mapping, found in
#      /proc/PID/smaps by size), against issue 7's target of <= 1 MiB.
#
# Standalone (sh bench/vm.sh) or from bench/run.sh. Writes $RES/vm.md (the
# summary) and raw files under $RES/raw/; prints the summary. Waits for a
# quiet machine before each measurement (bench/lib.sh).
# Env: BENCH_DIR (/tmp/mxu-bench), MXU_BIN (build/mxu), COLD_RUNS (300),
#   REPEATS (3), DURATION (10s), SERVER_CPU (0), CLIENT_CPU (1),
#   BENCH_PORT (18200: uses +20), BENCH_QUICK=1 (40 runs, 1 x 3 s).
# Needs: /dev/kvm that can run guests (else it says so and exits 0), wrk,
#   python3, curl, taskset, setsid, cc.
set -u

BENCH=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$BENCH/.." && pwd)
BENCH_DIR=${BENCH_DIR:-/tmp/mxu-bench}
MXU_BIN=${MXU_BIN:-$REPO/build/mxu}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
QUIET_MIN=${QUIET_MIN:-90}
QUIET_WAIT=${QUIET_WAIT:-60}
OTHERS_MAX=${OTHERS_MAX:-5}
RETRIES=${RETRIES:-2}
if [ "${BENCH_QUICK:-0}" = 1 ]; then
    COLD_RUNS=${COLD_RUNS:-40} REPEATS=${REPEATS:-1} DURATION=${DURATION:-3s}
else
    COLD_RUNS=${COLD_RUNS:-300} REPEATS=${REPEATS:-3} DURATION=${DURATION:-10s}
fi
WARMUP=${WARMUP:-2s}
PORT=$((${BENCH_PORT:-18200} + 20))
if [ -z "${RES:-}" ]; then
    RES="$BENCH_DIR/results/vm-$(date +%Y%m%d-%H%M%S)"
fi
LOGS="$RES/logs" PIDS="$RES/pids"
mkdir -p "$RES/raw" "$LOGS" "$PIDS"
. "$BENCH/lib.sh"
trap 'stop_all_bg' EXIT
trap 'exit 130' INT TERM # stop, don't carry on without servers

for c in wrk python3 curl taskset setsid cc; do
    command -v "$c" >/dev/null 2>&1 || { echo "bench/vm: missing $c (scripts/deps.sh --bench)" >&2; exit 1; }
done
[ -x "$MXU_BIN" ] || { echo "bench/vm: $MXU_BIN not found: run make" >&2; exit 1; }

W="$BENCH_DIR/vm"
mkdir -p "$W/bin"
cc -O2 -o "$W/bin/coldstart" "$BENCH/src/coldstart.c" || exit 1

# ---------------------------------------------------------------- the node
F="$W/functions"
rm -rf "$F"
mkdir -p "$F"
for f in cold noop; do
    for x in vm sandbox; do
        cp -r "$BENCH/functions/$f" "$F/$f-$x"
        sed -i "s/^name: .*/name: $f-$x/" "$F/$f-$x/mxu.yaml"
        printf 'executor: %s\n' "$x" >>"$F/$f-$x/mxu.yaml"
    done
    cp -r "$BENCH/functions/$f" "$F/$f"
done
DATA="$W/data"
rm -rf "$DATA"
# --auth off and --metering off: this script measures the executors, not
# authentication or usage records (bench/run.sh and metering.sh do).
start_bg mxu-vm "$MXU_BIN" serve --auth off --metering off --listen "127.0.0.1:$PORT" \
    --data "$DATA" --log-level warn --deploy "$F/cold" --deploy "$F/noop"
wait_http "http://127.0.0.1:$PORT/v1/health" 120 || exit 1
EXECUTORS=$(curl -sS "http://127.0.0.1:$PORT/v1/health" |
    python3 -c 'import json,sys; print(" ".join(json.load(sys.stdin).get("executors", [])))')
case " $EXECUTORS " in
*" vm "*) ;;
*)
    echo "bench/vm: SKIP: the node cannot run vm guests here ($(grep -m1 'vm:' "$LOGS/mxu-vm.log"))" |
        tee "$RES/vm.md"
    exit 0
    ;;
esac
COLD="cold cold-vm"
WARM="noop noop-vm"
MXU_URL="http://127.0.0.1:$PORT" "$MXU_BIN" deploy "$F/cold-vm" >/dev/null &&
    MXU_URL="http://127.0.0.1:$PORT" "$MXU_BIN" deploy "$F/noop-vm" >/dev/null || exit 1
case " $EXECUTORS " in
*" sandbox "*)
    MXU_URL="http://127.0.0.1:$PORT" "$MXU_BIN" deploy "$F/cold-sandbox" >/dev/null && COLD="$COLD cold-sandbox"
    MXU_URL="http://127.0.0.1:$PORT" "$MXU_BIN" deploy "$F/noop-sandbox" >/dev/null && WARM="$WARM noop-sandbox"
    ;;
esac
"$MXU_BIN" version >"$RES/raw/vm-mxu-version.txt" 2>&1 || true
(cd "$REPO" && git rev-parse --short HEAD) >"$RES/raw/vm-commit.txt" 2>/dev/null || true
grep -m1 -i 'model name' /proc/cpuinfo >"$RES/raw/vm-cpu.txt" 2>/dev/null || true
for f in $COLD $WARM; do # the first (cold) start of each, and spares made
    curl -fsS -o /dev/null "http://127.0.0.1:$PORT/fn/$f" || log "first invoke of $f failed"
done

# ---------------------------------------------------------------- 1: cold
# Two rounds per function, interleaved, so a busy spell hits all of them.
half=$(((COLD_RUNS + 1) / 2))
for round in 1 2; do
    for f in $COLD; do
        wait_quiet
        log "cold start round $round: $half runs of /fn/$f (idle $LAST_IDLE %)"
        cpu_mark
        taskset -c "$CLIENT_CPU" timeout 900 "$W/bin/coldstart" 127.0.0.1 "$PORT" "$f" "$half" \
            "$RES/raw/vm-cold-$f-r$round.tsv" >"$RES/raw/vm-cold-$f-r$round.txt" 2>&1 ||
            log "coldstart $f failed"
        # Others' share of the CPUs during the round: a tail of scattered
        # 1-5 ms runs came in whole rounds, for old and new helpers alike,
        # with no fork by the node; this says whether the round was shared.
        cpu_foreign >"$RES/raw/vm-cold-$f-r$round.others"
        log "$(head -1 "$RES/raw/vm-cold-$f-r$round.txt") others $(cat "$RES/raw/vm-cold-$f-r$round.others") % CPU"
    done
done

# ---------------------------------------------------------------- 2: warm
# Where the time goes: CPU time on the node's CPU per request, of the node
# and of the function's instances (the vm helper runs the guest, so its time
# is the guest's too), from the kernel's per-thread run time (schedstat, ns)
# over each recorded run. At one connection the two executors differ only in
# the instance's share; docs/vm.md explains the vm's (KVM_RUN's own cost).
inst_pids() {
    curl -sS "http://127.0.0.1:$PORT/v1/functions/$1/instances" |
        python3 -c 'import json,sys; print(" ".join(str(i["pid"]) for i in json.load(sys.stdin).get("instances", [])))'
}
run_ns() {
    for _p in "$@"; do cat /proc/"$_p"/task/*/schedstat 2>/dev/null; done | awk '{ s += $1 } END { printf "%.0f\n", s }'
}
warm_run() { # NAME CONNS ROUND
    _pids=$(inst_pids "$1")
    _node=$(cat "$PIDS/mxu-vm")
    _i0=$(run_ns $_pids) _n0=$(run_ns "$_node")
    run_wrk "vm-$1" "http://127.0.0.1:$PORT/fn/$1" "$2" "$3"
    _i1=$(run_ns $_pids) _n1=$(run_ns "$_node")
    # Requests of every attempt (a disturbed attempt was kept aside and redone).
    _req=$(cat "$RES/raw/wrk-vm-$1-c$2-r$3".*txt 2>/dev/null | sed -n 's/^BENCH_WRK requests=\([0-9]*\).*/\1/p' |
        awk '{ s += $1 } END { print s + 0 }')
    echo "requests=$_req instance_ns=$((_i1 - _i0)) node_ns=$((_n1 - _n0)) pids=$(echo $_pids | tr ' ' ',')" \
        >"$RES/raw/cpu-vm-$1-c$2-r$3.txt"
}
for c in 32 1; do
    for f in $WARM; do
        run_wrk "vm-$f" "http://127.0.0.1:$PORT/fn/$f" "$c" 0
    done
done
r=1
while [ $r -le "$REPEATS" ]; do
    for c in 32 1; do
        for f in $WARM; do
            warm_run "$f" "$c" "$r"
        done
    done
    r=$((r + 1))
done

# ---------------------------------------------------------------- 3: memory
# An idle instance of noop-vm (warm from the runs above) and an idle spare of
# cold-vm: every mapping of the helper but the guest's RAM is overhead.
NODE_PID=$(cat "$PIDS/mxu-vm")
curl -sS "http://127.0.0.1:$PORT/v1/functions/noop-vm/instances" >"$RES/raw/vm-instances.json"
sleep 2
python3 - "$RES/raw/vm-instances.json" "$NODE_PID" >"$RES/raw/vm-memory.txt" <<'EOF'
import json, os, sys
insts = json.load(open(sys.argv[1]))
insts = insts.get("instances", insts) if isinstance(insts, dict) else insts
node = int(sys.argv[2])
used = {i["pid"] for i in insts}
def helpers():
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            st = open(f"/proc/{d}/stat").read()
            argv = open(f"/proc/{d}/cmdline").read().split("\0")
        except OSError:
            continue
        ppid = int(st[st.rindex(")") + 2:].split()[1])
        if ppid == node and st[st.index("(") + 1:st.rindex(")")] == "mxu-vmm":
            out.append((int(d), argv))
    return out
def smaps(pid, guest):
    """(total rss, total pss, guest rss, guest pss) in KiB: the guest's RAM is
    the one mapping exactly `guest` bytes long."""
    tot = [0, 0, 0, 0]
    cur_guest = False
    for line in open(f"/proc/{pid}/smaps"):
        f = line.split()
        if "-" in f[0] and len(f[0]) > 8 and ":" not in f[0]:
            a, b = (int(x, 16) for x in f[0].split("-"))
            cur_guest = b - a == guest
        elif f[0] == "Rss:":
            tot[0] += int(f[1])
            tot[2] += int(f[1]) if cur_guest else 0
        elif f[0] == "Pss:":
            tot[1] += int(f[1])
            tot[3] += int(f[1]) if cur_guest else 0
    return tot
hs = helpers()
noop_image = {argv[-2] for pid, argv in hs if pid in used and len(argv) > 2}
for pid, argv in hs:
    args = [a for a in argv[1:] if a]  # [--recycle] [--reset KIND] MEMORY IMAGE
    guest = int(args[-2]) if len(args) >= 2 and args[-2].isdigit() else 0  # ... MEMORY IMAGE
    rss, pss, grss, gpss = smaps(pid, guest)
    kind = "instance" if pid in used else "spare"
    # Two vm units run here: noop-vm (the instance's image) and cold-vm.
    unit = "noop-vm" if len(argv) > 2 and argv[-2] in noop_image else "cold-vm"
    print(f"{kind} pid={pid} image={unit} "
          f"guest_mib={guest >> 20} rss_kib={rss} pss_kib={pss} guest_rss_kib={grss} "
          f"guest_pss_kib={gpss} overhead_rss_kib={rss - grss} overhead_pss_kib={pss - gpss}")
EOF
cat "$RES/raw/vm-memory.txt" >&2
stop_bg mxu-vm

# ---------------------------------------------------------------- summary
python3 - "$RES" "$COLD" <<'EOF' >"$RES/vm.md"
import glob, os, re, statistics, sys
res, cold_names = sys.argv[1], sys.argv[2].split()
raw = os.path.join(res, "raw")
commit = open(os.path.join(raw, "vm-commit.txt")).read().strip() if os.path.exists(os.path.join(raw, "vm-commit.txt")) else "?"
print(f"vm executor, commit {commit}")
print()
print("| cold start, end to end over HTTP | p50 | p90 | p99 | runs | cold | over p50 + 1 ms | rounds' p50 | others' CPU per round |")
print("|---|---:|---:|---:|---:|---:|---:|---|---|")
p50s = {}
for f in cold_names:
    us, rounds, cold, others = [], [], 0, []
    for r in (1, 2):
        try:
            rows = [l.split() for l in open(os.path.join(raw, f"vm-cold-{f}-r{r}.tsv"))]
        except OSError:
            continue
        try:
            others.append(open(os.path.join(raw, f"vm-cold-{f}-r{r}.others")).read().strip() + " %")
        except OSError:
            others.append("?")
        rows = [x for x in rows if len(x) >= 4 and x[0].isdigit()]
        vals = sorted(float(x[1]) for x in rows if x[3] == "200")
        cold += sum(1 for x in rows if x[2] == "1")
        if vals:
            rounds.append(statistics.median(vals))
        us += vals
    if not us:
        continue
    us.sort()
    pct = lambda p: us[min(len(us) - 1, max(0, int(round(p * len(us) + 0.5)) - 1))]
    p50s[f] = pct(0.5)
    # The tail, measured against each executor's own median: runs slowed by
    # the machine (not by the executor) show up in every executor's rounds.
    slow = sum(1 for x in us if x > pct(0.5) + 1000)
    print(f"| `{f}` | {pct(0.5) / 1000:.2f} ms | {pct(0.9) / 1000:.2f} ms | {pct(0.99) / 1000:.2f} ms | "
          f"{len(us)} | {cold} | {slow} ({100 * slow / len(us):.1f} %) | "
          f"{', '.join(f'{x / 1000:.2f}' for x in rounds)} | {', '.join(others)} |")
print()
if "cold-vm" in p50s:
    v = p50s["cold-vm"]
    print(f"- vm cold start p50 {v / 1000:.2f} ms (target <= 1 ms: {'met' if v <= 1000 else 'NOT met'})"
          + (f"; process {p50s['cold'] / 1000:.2f} ms" if "cold" in p50s else ""))
def rps(f, c, r):
    try:
        t = open(os.path.join(raw, f"wrk-vm-{f}-c{c}-r{r}.txt")).read()
        return float(re.search(r"Requests/sec:\s*([0-9.]+)", t).group(1))
    except (OSError, AttributeError):
        return None
for c in (32, 1):
    ratios, a, b, sb = [], [], [], []
    r = 1
    while rps("noop", c, r) is not None:
        p, v, sx = rps("noop", c, r), rps("noop-vm", c, r), rps("noop-sandbox", c, r)
        if p and v:
            ratios.append(v / p)
            a.append(p)
            b.append(v)
        if p and sx:
            sb.append(sx / p)
        r += 1
    if ratios:
        m = statistics.median(ratios)
        print(f"- warm no-op, {c} connection(s): vm {statistics.median(b):.0f} req/s, process "
              f"{statistics.median(a):.0f} req/s: **{m:.2f}x** (rounds: "
              f"{', '.join(f'{x:.2f}' for x in ratios)}; target >= 0.7x: {'met' if m >= 0.7 else 'NOT met'})"
              + (f"; sandbox / process {statistics.median(sb):.2f}x (rounds: {', '.join(f'{x:.2f}' for x in sb)})"
                 if sb else ""))
    per = {}
    for f in ("noop", "noop-vm", "noop-sandbox"):
        inst, node = [], []
        r = 1
        while os.path.exists(os.path.join(raw, f"cpu-vm-{f}-c{c}-r{r}.txt")):
            kv = dict(x.split("=", 1) for x in open(os.path.join(raw, f"cpu-vm-{f}-c{c}-r{r}.txt")).read().split())
            n = int(kv["requests"])
            if n:
                inst.append(int(kv["instance_ns"]) / n / 1000)
                node.append(int(kv["node_ns"]) / n / 1000)
            r += 1
        if inst:
            per[f] = (statistics.median(inst), statistics.median(node))
    if "noop" in per and "noop-vm" in per:
        sbx = per.get("noop-sandbox")
        print(f"  CPU per request (median of rounds): vm helper (guest included) {per['noop-vm'][0]:.1f} us, "
              f"process instance {per['noop'][0]:.1f} us"
              + (f", sandbox instance {sbx[0]:.1f} us" if sbx else "")
              + f"; node {per['noop-vm'][1]:.1f} us with vm, {per['noop'][1]:.1f} us with process"
              + (f", {sbx[1]:.1f} us with sandbox" if sbx else ""))
try:
    for line in sorted(open(os.path.join(raw, "vm-memory.txt")))[:3]:
        kv = dict(x.split("=", 1) for x in line.split()[1:])
        o = int(kv["overhead_pss_kib"])
        print(f"- memory of an idle {line.split()[0]} (`{kv['image']}`, {kv['guest_mib']} MiB guest): "
              f"PSS {int(kv['pss_kib'])} KiB, of which guest RAM {kv['guest_pss_kib']} KiB; "
              f"overhead PSS {o} KiB / RSS {kv['overhead_rss_kib']} KiB "
              f"(target <= 1024 KiB: {'met' if o <= 1024 else 'NOT met'})")
except OSError:
    pass
busy = os.path.join(res, "busy.txt")
if os.path.exists(busy):
    print(f"- the machine was busy before {sum(1 for _ in open(busy))} measurement(s) (busy.txt)")
EOF
cat "$RES/vm.md"
echo "raw results: $RES"
