#!/bin/sh
# bench/resources.sh — resource descriptors (issue 3) measured as a function
# sees them, in one run on this machine, side by side:
#
#   1. kv get, embedded backend: N mxu_kv_get() in one invocation of
#      bench/functions/res-bench, each timed in the function (clock_gettime),
#      p50/p99 per get. Beside it, for context: the bare RES_OP round trip
#      (an op the node refuses before any backend: SDK + channel + node
#      dispatch) and the SDK's round trip against the unit tests' fake host
#      (build/tests/unit/test-sdk, when it is built: SDK + kernel only).
#   2. kv get, Redis backend: the same loop on kv:bench-redis, re-bound with
#      `mxu resource set` to a redis-server this script starts, beside
#      bench/src/redis-get.c: synchronous hiredis GET of a value of the same
#      size against the same server (and HMGET, the command mxu's driver
#      sends), from the CPU the function runs on. Redis runs once on the
#      node's CPU ($SERVER_CPU) and once on the other ($CLIENT_CPU) in every
#      round (taskset -p of its PID): cross-CPU wake-ups cost a lot in a VM.
#   3. svc: N mxu_svc_call() of a no-op function (bench/functions/svc-noop)
#      in one invocation, per call; the same calls of the svc chain
#      (bench/functions/svc-chain: K hops per call, K the largest of
#      CHAIN_HOPS), per call / K; and the chain over HTTP:
#      GET /fn/svc-chain?hops=K (K svc hops) at one connection (wrk -c1),
#      minus hops=0 (the same request without a svc call), divided by K.
#   4. (BENCH_PERF=1) per-op context switches and syscalls on the node's CPU
#      (perf stat) and where that CPU's time goes (perf record) during long
#      loops of 1-3.
#
# The node, its instances and redis-server are started by this script on
# 127.0.0.1, pinned to CPU $SERVER_CPU (redis also moved to $CLIENT_CPU, see
# 2), and stopped by the PIDs recorded; curl, wrk and the test-sdk client run
# on $CLIENT_CPU, redis-get on $SERVER_CPU (where the function runs). The
# in-function rows are interleaved round by round ($ROUNDS rounds); a ratio is
# taken inside each round and the median over rounds reported. Before each
# row the script waits for a quiet machine, and redoes a row during which
# other processes used more than $OTHERS_MAX % of the CPUs (bench/lib.sh).
#
# Standalone (sh bench/resources.sh) or from bench/run.sh (RES set: results
# go to $RES/resources/). Writes summary.md there, raw files under raw/.
# Env: BENCH_DIR (/tmp/mxu-bench), MXU_BIN (build/mxu), BENCH_QUICK=1 (smoke:
#   1 round, 2000 calls, wrk 1 x 3 s, no perf), ROUNDS (5), CALLS (20000 per
#   row and round), WARM_CALLS (1000), VALUE_SIZE (128 bytes), CHAIN_HOPS
#   ("1 2 4"), CHAIN_REPEATS (5) and CHAIN_DURATION (5s): the wrk rows (short
#   runs, many rounds: the HTTP path drifts within minutes), BENCH_PERF (1),
#   SERVER_CPU (0), CLIENT_CPU (1), BENCH_PORT (18200: uses +20 and +21),
#   QUIET_MIN (90), QUIET_WAIT (120), OTHERS_MAX (5), RETRIES (2), MXU_COMMIT
#   (noted in host.txt: the commit MXU_BIN was built from, when it is not the
#   repository's HEAD).
# Needs: build/mxu, redis-server, libhiredis-dev (scripts/deps.sh), cc, wrk,
#   curl, python3, taskset, setsid, ss, timeout; perf for 4.
set -u

BENCH=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$BENCH/.." && pwd)
BENCH_DIR=${BENCH_DIR:-/tmp/mxu-bench}
MXU_BIN=${MXU_BIN:-$REPO/build/mxu}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
QUIET_MIN=${QUIET_MIN:-90}
QUIET_WAIT=${QUIET_WAIT:-120}
OTHERS_MAX=${OTHERS_MAX:-5}
RETRIES=${RETRIES:-2}
VALUE_SIZE=${VALUE_SIZE:-128}
CHAIN_HOPS=${CHAIN_HOPS:-1 2 4}
WARM_CALLS=${WARM_CALLS:-1000}
if [ "${BENCH_QUICK:-0}" = 1 ]; then
    ROUNDS=${ROUNDS:-1} CALLS=${CALLS:-2000} REPEATS=${CHAIN_REPEATS:-1} DURATION=${CHAIN_DURATION:-3s}
    WARMUP=${WARMUP:-1s} PERF=${BENCH_PERF:-0}
else
    ROUNDS=${ROUNDS:-5} CALLS=${CALLS:-20000} REPEATS=${CHAIN_REPEATS:-5} DURATION=${CHAIN_DURATION:-5s}
    WARMUP=${WARMUP:-2s} PERF=${BENCH_PERF:-1}
fi
PERF_SECONDS=4
P_MXU=$((${BENCH_PORT:-18200} + 20)) P_REDIS=$((${BENCH_PORT:-18200} + 21))
URL=http://127.0.0.1:$P_MXU

if [ -n "${RES:-}" ]; then
    RES=$RES/resources
else
    RES=$BENCH_DIR/results/resources-$(date +%Y%m%d-%H%M%S)
fi
LOGS=$RES/logs PIDS=$RES/pids W=$BENCH_DIR/resources
mkdir -p "$RES/raw" "$LOGS" "$PIDS" "$W/bin"
. "$BENCH/lib.sh"
trap 'stop_all_bg' EXIT
trap 'exit 130' INT TERM

for c in redis-server cc wrk curl python3 taskset setsid ss timeout awk; do
    command -v "$c" >/dev/null 2>&1 || {
        echo "bench/resources: missing $c (scripts/deps.sh installs redis-server and libhiredis-dev)" >&2
        exit 1
    }
done
[ -x "$MXU_BIN" ] || {
    echo "bench/resources: $MXU_BIN not found: run make" >&2
    exit 1
}
[ "$(nproc)" -ge 2 ] || {
    echo "bench/resources: needs 2 CPUs" >&2
    exit 1
}
for p in $P_MXU $P_REDIS; do
    port_free "$p" || {
        echo "bench/resources: port $p is in use (set BENCH_PORT)" >&2
        exit 1
    }
done
log "results: $RES"

# ---------------------------------------------------------------- machine
{
    echo "date: $(date -Is)"
    echo "mode: $ROUNDS rounds x $CALLS calls per in-function row (+ $WARM_CALLS untimed), value $VALUE_SIZE bytes; chain hops 0 $CHAIN_HOPS: $REPEATS x $DURATION wrk -c1"
    echo "cpu: $(awk -F': ' '/model name/{m=$2} END{print m}' /proc/cpuinfo), nproc $(nproc)$(grep -q -w hypervisor /proc/cpuinfo && echo ', virtual machine')"
    echo "kernel: $(uname -srm)"
    echo "uptime before: $(uptime)"
    echo "mxu: $MXU_BIN ($("$MXU_BIN" --version 2>/dev/null | head -1), built $(date -r "$MXU_BIN" -Is)), ${MXU_COMMIT:+built from $MXU_COMMIT; }repo at git $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null)$(git -C "$REPO" diff --quiet HEAD -- src sdk include 2>/dev/null || echo ' + uncommitted changes in src/sdk/include')"
    echo "redis: $(redis-server --version)"
    echo "hiredis: $(dpkg-query -W -f='${Version}' libhiredis-dev 2>/dev/null || echo unknown)"
    echo "cc: $(cc --version | head -1)"
} >"$RES/host.txt"
cat "$RES/host.txt" >&2

# ---------------------------------------------------------------- programs
cc -std=gnu11 -O2 -Wall -o "$W/bin/redis-get" "$BENCH/src/redis-get.c" -lhiredis || {
    echo "bench/resources: cannot build bench/src/redis-get.c (needs libhiredis-dev)" >&2
    exit 1
}
F=$W/functions
rm -rf "$F" && mkdir -p "$F"
for f in svc-noop res-bench svc-chain; do cp -R "$BENCH/functions/$f" "$F/$f"; done

# ---------------------------------------------------------------- servers
rm -rf "$W/data" "$W/redis" && mkdir -p "$W/redis"
# --auth off: this script measures isolation / resource calls, not
# authentication (bench/run.sh keeps it on); no credentials are written.
start_bg res-mxu "$MXU_BIN" serve --auth off --listen "127.0.0.1:$P_MXU" --data "$W/data" --log-level warn \
    --deploy "$F/svc-noop" --deploy "$F/res-bench" --deploy "$F/svc-chain"
start_bg res-redis redis-server --port "$P_REDIS" --bind 127.0.0.1 --save '' --appendonly no \
    --dir "$W/redis" --daemonize no
REDIS_PID=$(cat "$PIDS/res-redis")
wait_http "$URL/fn/svc-chain" 120 || {
    tail -20 "$LOGS/res-mxu.log" >&2
    exit 1
}
"$MXU_BIN" resource set kv:bench-redis "redis://127.0.0.1:$P_REDIS/0" --url "$URL" >"$RES/raw/resource-set.txt" 2>&1 || {
    cat "$RES/raw/resource-set.txt" >&2
    exit 1
}
for d in emb red; do
    out=$(taskset -c "$CLIENT_CPU" curl -sS -m 30 -w ' %{http_code}' "$URL/fn/res-bench/setup?d=$d&k=bench&size=$VALUE_SIZE")
    log "setup $d: $out"
    case "$out" in *" 200") ;; *) exit 1 ;; esac
done
HASH="mxu:{default/kv/bench-redis}:k:bench" # where mxu's Redis kv driver keeps key `bench`
ss -Htlnp | grep -E ":($P_MXU|$P_REDIS) " >"$RES/listeners.txt"

# ---------------------------------------------------------------- rows
ROWS=$RES/rows.tsv # name round idle_before others_cpu_pct file
printf 'name\tround\tidle_before\tothers_cpu_pct\tfile\n' >"$ROWS"

# row NAME ROUND CMD...: run CMD (prints one JSON line) after wait_quiet,
# redone when others used the CPUs meanwhile; records the JSON and the load.
row() {
    _n=$1 _r=$2
    shift 2
    _f=$RES/raw/$_n-r$_r.json
    _t=0
    while :; do
        wait_quiet
        cpu_mark
        "$@" >"$_f" 2>"$RES/raw/$_n-r$_r.err"
        _o=$(cpu_foreign)
        if [ $_t -ge "$RETRIES" ] || awk -v o="$_o" -v m="$OTHERS_MAX" 'BEGIN { exit !(o <= m) }'; then
            break
        fi
        _t=$((_t + 1))
        mv "$_f" "$RES/raw/$_n-r$_r.disturbed-$_t.json"
        log "$_n round $_r: others used $_o % of the CPUs, again"
    done
    printf '%s\t%s\t%s\t%s\t%s\n' "$_n" "$_r" "$LAST_IDLE" "$_o" "$_f" >>"$ROWS"
    log "$_n r$_r: $(sed -n 's/.*"p50_ns":\([0-9]*\).*"p99_ns":\([0-9]*\).*"errors":\([0-9]*\).*/p50 \1 ns, p99 \2 ns, errors \3/p' "$_f") (others $_o %)"
}
fn() { # PATH?QUERY: one invocation of res-bench from the client CPU
    taskset -c "$CLIENT_CPU" curl -sS -f -m 300 "$URL/fn/res-bench/$1"
}
direct() { # MODE KEY: hiredis from the function's CPU
    taskset -c "$SERVER_CPU" timeout 300 "$W/bin/redis-get" 127.0.0.1 "$P_REDIS" "$1" "$2" \
        "$VALUE_SIZE" "$CALLS" "$WARM_CALLS"
}
TEST_SDK=$(dirname "$MXU_BIN")/tests/unit/test-sdk
sdk_rt() { # the SDK against test-sdk's fake host, both on the server CPU
    MXU_RES_BENCH_CALLS=$((CALLS + 1000)) taskset -c "$SERVER_CPU" timeout 120 "$TEST_SDK" \
        test_res_round_trip_cost 2>&1 | sed -n 's/.*round trip: \([0-9.]*\) us.*(\([0-9]*\) calls).*/{"what":"sdk_fake_host","mean_ns":\1e3,"n":\2}/p'
}

Q="n=$CALLS&warm=$WARM_CALLS"
CHAIN_MAX=$(echo "$CHAIN_HOPS" | tr ' ' '\n' | sort -n | tail -1) # hops of the in-function chain
r=1
while [ $r -le "$ROUNDS" ]; do
    log "round $r of $ROUNDS ($(uptime | sed 's/.*load/load/'))"
    row kv-embedded $r fn "kv?d=emb&k=bench&size=$VALUE_SIZE&$Q"
    row bare-res-op $r fn "bare?d=emb&k=bench&$Q"
    row svc-call $r fn "svc?d=callee&$Q"
    row svc-chain-in-fn $r fn "svc?d=chain&p=%2F%3Fhops%3D$((CHAIN_MAX - 1))&$Q"
    [ -x "$TEST_SDK" ] && row sdk-fake-host $r sdk_rt
    for c in $SERVER_CPU $CLIENT_CPU; do
        taskset -pc "$c" "$REDIS_PID" >/dev/null
        row "kv-redis-cpu$c" $r fn "kv?d=red&k=bench&size=$VALUE_SIZE&$Q"
        row "direct-get-cpu$c" $r direct get bench:direct
        row "direct-hmget-cpu$c" $r direct hmget "$HASH"
    done
    r=$((r + 1))
done

# ---------------------------------------------------------------- chain over HTTP
NAMES="chain-0"
for k in $CHAIN_HOPS; do NAMES="$NAMES chain-$k"; done
for n in $NAMES; do
    body=$(curl -sS -m 10 "$URL/fn/svc-chain?hops=${n#chain-}")
    [ "$body" = ok ] || log "svc-chain ${n#chain-} hops answered '$body'"
    run_wrk "$n" "$URL/fn/svc-chain?hops=${n#chain-}" 1 0
done
r=1
while [ $r -le "$REPEATS" ]; do
    for n in $NAMES; do run_wrk "$n" "$URL/fn/svc-chain?hops=${n#chain-}" 1 $r; done
    r=$((r + 1))
done
curl -sS -m 5 "$URL/v1/functions/svc-chain/instances" >"$RES/raw/svc-chain-instances.json" 2>/dev/null

# ---------------------------------------------------------------- perf
# perf stat counts CPU $SERVER_CPU only (the node and its instances; redis is
# on $CLIENT_CPU then), over one invocation of PERF_CALLS calls; perf record
# samples that CPU for $PERF_SECONDS s in the middle of a longer loop.
if [ "$PERF" = 1 ] && command -v perf >/dev/null 2>&1; then
    taskset -pc "$CLIENT_CPU" "$REDIS_PID" >/dev/null
    PERF_CALLS=$((CALLS * 2))
    for spec in "kv-embedded kv?d=emb&k=bench&size=$VALUE_SIZE" "bare-res-op bare?d=emb&k=bench" \
        "svc-call svc?d=callee" "kv-redis-cpu$CLIENT_CPU kv?d=red&k=bench&size=$VALUE_SIZE"; do
        n=${spec%% *} q=${spec#* }
        wait_quiet
        log "perf: $n"
        timeout 300 perf stat -e context-switches,raw_syscalls:sys_enter -a -C "$SERVER_CPU" \
            -x '	' -o "$RES/raw/perfstat-$n.txt" -- taskset -c "$CLIENT_CPU" \
            curl -sS -m 280 "$URL/fn/res-bench/$q&n=$PERF_CALLS&warm=0" >"$RES/raw/perfstat-$n.json" 2>&1
        # a loop that outlasts the sampling window by about 2 s
        ns=$(sed -n 's/.*"mean_ns":\([0-9]*\).*/\1/p' "$RES/raw/perfstat-$n.json")
        long=$(((PERF_SECONDS + 2) * 1000000000 / ${ns:-100000}))
        taskset -c "$CLIENT_CPU" curl -sS -m 60 "$URL/fn/res-bench/$q&n=$long&warm=0" >"$RES/raw/perf-$n.json" 2>&1 &
        cpid=$!
        sleep 0.5
        perf record -e cpu-clock -g -a -C "$SERVER_CPU" -o "$RES/raw/perf-$n.data" -- sleep "$PERF_SECONDS" \
            >"$RES/raw/perf-$n.log" 2>&1
        wait $cpid
        perf report -i "$RES/raw/perf-$n.data" --stdio -n --no-children --sort comm,dso -g none \
            >"$RES/perf-$n-comm-dso.txt" 2>/dev/null
        perf report -i "$RES/raw/perf-$n.data" --stdio --no-children --sort comm,dso,sym -g none \
            --percent-limit 0.5 >"$RES/perf-$n-sym.txt" 2>/dev/null
        perf report -i "$RES/raw/perf-$n.data" --stdio --children --sort comm,sym -g none \
            --percent-limit 2 >"$RES/perf-$n-children.txt" 2>/dev/null
    done
elif [ "$PERF" = 1 ]; then
    echo "perf is not installed: no profile" >"$RES/no-perf.txt"
fi

curl -sS -m 5 "$URL/v1/resources" >"$RES/raw/resources.json" 2>/dev/null
stop_bg res-mxu
stop_bg res-redis
echo "uptime after: $(uptime)" >>"$RES/host.txt"

# ---------------------------------------------------------------- summary
python3 - "$RES" "$CHAIN_HOPS" "$SERVER_CPU" "$CLIENT_CPU" >"$RES/summary.md" <<'EOF'
import csv, json, os, statistics, sys
res, hops, scpu, ccpu = sys.argv[1], [int(h) for h in sys.argv[2].split()], sys.argv[3], sys.argv[4]
med = statistics.median
rows = {}
for r in csv.DictReader(open(os.path.join(res, "rows.tsv")), delimiter="\t"):
    try:
        j = json.loads(open(r["file"]).read().strip().splitlines()[-1])
    except (OSError, ValueError, IndexError):
        continue
    j["others"] = float(r["others_cpu_pct"] or 0)
    rows.setdefault(r["name"], {})[int(r["round"])] = j
us = lambda ns: f"{ns / 1000:.1f} µs"
what = {
    "kv-embedded": "kv get, embedded backend (in the function, per get)",
    "bare-res-op": "bare RES_OP round trip through the node (refused before any backend)",
    "sdk-fake-host": "RES_OP round trip, SDK against test-sdk's fake host (no node; mean)",
    "svc-call": "svc call of a no-op function (in the function, per call)",
    "svc-chain-in-fn": f"svc call of the chain, {max(hops)} hops (in the function, per call)",
}
for c in (scpu, ccpu):
    where = "on the node's CPU" if c == scpu else "on the other CPU"
    what[f"kv-redis-cpu{c}"] = f"kv get, Redis backend, redis {where} (in the function)"
    what[f"direct-get-cpu{c}"] = f"direct hiredis GET, redis {where}"
    what[f"direct-hmget-cpu{c}"] = f"direct hiredis HMGET (mxu's command), redis {where}"
print("| what | p50 (median of rounds) [min–max] | p99 (median) | mean | rounds | errors | others' CPU (max) |")
print("|---|---:|---:|---:|---:|---:|---:|")
p50 = {}
for name in what:
    rs = rows.get(name)
    if not rs:
        continue
    if name == "sdk-fake-host":
        m = [x["mean_ns"] for x in rs.values()]
        print(f"| {what[name]} | — | — | {us(med(m))} | {len(m)} | — | {max(x['others'] for x in rs.values()):.1f} % |")
        continue
    a = [x["p50_ns"] for x in rs.values()]
    p50[name] = {k: v["p50_ns"] for k, v in rs.items()}
    print(f"| {what[name]} | **{us(med(a))}** [{us(min(a))}–{us(max(a))}] | {us(med([x['p99_ns'] for x in rs.values()]))} "
          f"| {us(med([x['mean_ns'] for x in rs.values()]))} | {len(a)} | {sum(x['errors'] for x in rs.values())} "
          f"| {max(x['others'] for x in rs.values()):.1f} % |")
print()
def ratio(a, b):
    if a not in p50 or b not in p50:
        return None, []
    rr = [p50[a][k] / p50[b][k] for k in p50[a] if k in p50[b]]
    return (med(rr), rr) if rr else (None, [])
targets = []
if "kv-embedded" in p50:
    v = med(p50["kv-embedded"].values())
    targets.append(("kv get p50, embedded, ≤ 20 µs", us(v), v <= 20000))
for c in (scpu, ccpu):
    where = "on the node's CPU" if c == scpu else "on the other CPU"
    m, rr = ratio(f"kv-redis-cpu{c}", f"direct-get-cpu{c}")
    if m is not None:
        print(f"- Redis {where}: mxu kv get / direct GET p50 = **{m:.2f}×** (rounds: {', '.join(f'{x:.2f}' for x in rr)})")
        targets.append((f"Redis-backed get ≤ 1.5× direct GET (p50), redis {where}", f"{m:.2f}×", m <= 1.5))
    m2, rr2 = ratio(f"kv-redis-cpu{c}", f"direct-hmget-cpu{c}")
    if m2 is not None:
        d = med([p50[f"kv-redis-cpu{c}"][k] - p50[f"direct-hmget-cpu{c}"][k] for k in p50[f"kv-redis-cpu{c}"] if k in p50[f"direct-hmget-cpu{c}"]])
        print(f"  - vs direct HMGET (the same command): {m2:.2f}×, mxu adds {us(d)} per get")
if "svc-call" in p50:
    v = med(p50["svc-call"].values())
    targets.append(("svc call per hop p50 ≤ 25 µs (in the function)", us(v), v <= 25000))
if "svc-chain-in-fn" in p50:
    k = max(hops)
    per = [x / k for x in p50["svc-chain-in-fn"].values()]
    print(f"- svc chain of {k} hops called from the function: p50 / {k} = **{us(med(per))}** per hop "
          f"(rounds: {', '.join(f'{x / 1000:.1f}' for x in per)})")
    targets.append((f"svc per hop p50 ≤ 25 µs (chain of {k}, in the function)", us(med(per)), med(per) <= 25000))
# chain over HTTP (wrk -c1): per round, (p50(K) - p50(0)) / K
wrk = {}
try:
    for r in csv.DictReader(open(os.path.join(res, "wrk.tsv")), delimiter="\t"):
        wrk.setdefault(r["name"], {})[int(r["run"])] = r
except OSError:
    pass
if "chain-0" in wrk:
    print()
    print("| chain over HTTP, 1 connection (wrk -c1) | p50 (median) | p99 (median) | req/s (median) | runs |")
    print("|---|---:|---:|---:|---:|")
    for k in [0] + hops:
        rs = wrk.get(f"chain-{k}", {})
        if rs:
            print(f"| GET /fn/svc-chain?hops={k} ({k} svc hops) | {med([int(x['p50_us']) for x in rs.values()])} µs "
                  f"| {med([int(x['p99_us']) for x in rs.values()])} µs | {med([float(x['rps']) for x in rs.values()]):.0f} | {len(rs)} |")
    print()
    for k in hops:
        rs = wrk.get(f"chain-{k}", {})
        per = [(int(rs[i]["p50_us"]) - int(wrk["chain-0"][i]["p50_us"])) / k for i in rs if i in wrk["chain-0"]]
        if per:
            print(f"- per hop, chain of {k}: (p50(hops={k}) − p50(hops=0)) / {k} = **{med(per):.1f} µs** "
                  f"(rounds: {', '.join(f'{x:.1f}' for x in per)})")
            targets.append((f"svc per hop p50 ≤ 25 µs (HTTP chain of {k})", f"{med(per):.1f} µs", med(per) <= 25))
# perf stat: per call on the node's CPU
ps = []
for n in ("kv-embedded", "bare-res-op", "svc-call", f"kv-redis-cpu{ccpu}"):
    try:
        j = json.loads(open(os.path.join(res, "raw", f"perfstat-{n}.json")).read().strip().splitlines()[-1])
        cnt = {}
        for line in open(os.path.join(res, "raw", f"perfstat-{n}.txt")):
            f = line.rstrip("\n").split("\t")
            if len(f) > 2 and f[0] and f[0][0].isdigit():
                cnt[f[2]] = float(f[0])
        ps.append((n, j["n"], cnt))
    except (OSError, ValueError, KeyError, IndexError):
        pass
if ps:
    print()
    print(f"| per call, CPU {scpu} (perf stat: the node and its instances) | context switches | syscalls |")
    print("|---|---:|---:|")
    for n, calls, cnt in ps:
        print(f"| {n} | {cnt.get('context-switches', 0) / calls:.2f} | {cnt.get('raw_syscalls:sys_enter', 0) / calls:.2f} |")
print()
print("| target | measured | met |")
print("|---|---:|:---:|")
for t, v, ok in targets:
    print(f"| {t} | {v} | {'yes' if ok else '**no**'} |")
EOF
cat "$RES/summary.md"
log "raw results: $RES"
