#!/bin/sh
# bench/services.sh — what one step of a service costs (issue 6, "Services":
# target p50 <= 25 us per step), measured in the same run as one HTTP
# keep-alive hop through nginx, for scale.
#
# One mxu node serves bench/functions/noop and two services generated here:
# chain1 (steps: [noop]) and chain10 (ten noop steps, ids noop, noop-2, ...).
# One nginx (one worker) serves `return 200 "ok"` on port A, and on port B
# `proxy_pass` to A through an upstream keepalive pool (HTTP/1.1, Connection
# ""), so that B's request costs A's plus one keep-alive hop. bench/src/latency.c
# times requests one at a time on one keep-alive connection per target
# (latency, not throughput), raw nearest-rank percentiles. A round is
# $WARM_REQUESTS untimed requests per target, then $REQUESTS timed ones per
# target, the targets interleaved in blocks of $BLOCK (each block after 10
# untimed requests), the order rotated by block and round; $ROUNDS rounds:
# drift on the machine hits every target alike. Per target: p50/p90/p99 of
# every sample, and the median of the rounds' p50s. Then, with p50s:
#
#   per-step overhead = (p50(chain10) - p50(chain1)) / 9   what a step adds
#                       beyond the function it calls (the engine's work: the
#                       step's invocation, its input/output handed on, its
#                       usage record), the number the target names;
#   step full cost    = (p50(chain10) - p50(noop)) / 10    a step including
#                       the no-op function's own invocation;
#   nginx hop         = p50(B) - p50(A)                    one proxied keep-
#                       alive request through nginx;
#
# each computed inside every round and reported as the median over rounds
# [min-max], beside the same difference of the pooled p50s.
#
# The node (its instances) and nginx run pinned to CPU $SERVER_CPU, started
# in their own sessions and stopped by the PIDs recorded (bench/lib.sh); the
# client runs on CPU $CLIENT_CPU. Authentication and metering stay on, as
# shipped: every request carries the node's admin key (nginx ignores it).
# The rounds run under flock $BENCH_LOCK, so that two benchmarks on this
# machine do not measure each other; each round waits for a quiet machine
# and is redone while other processes used more than $OTHERS_MAX % of the
# CPUs during it (at most $RETRIES times; "!" marks a round still disturbed).
# BENCH_PERF=1: afterwards, where CPU $SERVER_CPU's time goes while the client
# runs chain10 (perf record) and the context switches per request (perf stat).
#
# Standalone (sh bench/services.sh) or from bench/run.sh (RES set: results go
# to $RES/services/; run.sh passes BENCH_LOCK= since it holds the machine).
# Writes summary.md there, raw samples under raw/.
# Env: BENCH_DIR (/tmp/mxu-bench), MXU_BIN (build/mxu), MXU_COMMIT (noted
#   in host.txt: the commit MXU_BIN was built from, when it is not the
#   repository's HEAD), BENCH_QUICK=1 (smoke: 3 rounds x 500, no perf),
#   ROUNDS (15), REQUESTS (2000 per target and round), WARM_REQUESTS (300),
#   BLOCK (100), STEPS (10: the long chain), BENCH_PERF (1), BENCH_LOCK
#   (/tmp/mxu-bench.lock; empty: no lock), LOCK_WAIT (1800 s), SERVER_CPU (0),
#   CLIENT_CPU (1), BENCH_PORT (18200: uses +30, +31, +32), QUIET_MIN (90),
#   QUIET_WAIT (120), OTHERS_MAX (5), RETRIES (2).
# Needs: build/mxu, nginx (scripts/deps.sh --bench), cc, curl, python3,
#   taskset, setsid, ss, timeout, flock; perf for the profile.
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
STEPS=${STEPS:-10}
BLOCK=${BLOCK:-100}
BENCH_LOCK=${BENCH_LOCK-/tmp/mxu-bench.lock}
LOCK_WAIT=${LOCK_WAIT:-1800}
if [ "${BENCH_QUICK:-0}" = 1 ]; then
    ROUNDS=${ROUNDS:-3} REQUESTS=${REQUESTS:-500} WARM_REQUESTS=${WARM_REQUESTS:-100} PERF=${BENCH_PERF:-0}
else
    ROUNDS=${ROUNDS:-15} REQUESTS=${REQUESTS:-2000} WARM_REQUESTS=${WARM_REQUESTS:-300} PERF=${BENCH_PERF:-1}
fi
P_MXU=$((${BENCH_PORT:-18200} + 30)) P_A=$((${BENCH_PORT:-18200} + 31)) P_B=$((${BENCH_PORT:-18200} + 32))

if [ -n "${RES:-}" ]; then
    RES=$RES/services
else
    RES=$BENCH_DIR/results/services-$(date +%Y%m%d-%H%M%S)
fi
LOGS=$RES/logs PIDS=$RES/pids W=$BENCH_DIR/services
mkdir -p "$RES/raw" "$LOGS" "$PIDS" "$W/bin"
# shellcheck source=bench/lib.sh
. "$BENCH/lib.sh"
trap 'stop_all_bg' EXIT
trap 'exit 130' INT TERM

for c in nginx cc curl python3 taskset setsid ss timeout flock awk; do
    command -v "$c" >/dev/null 2>&1 || {
        echo "bench/services: missing $c (scripts/deps.sh --bench installs nginx)" >&2
        exit 1
    }
done
[ -x "$MXU_BIN" ] || {
    echo "bench/services: $MXU_BIN not found: run make" >&2
    exit 1
}
[ "$(nproc)" -ge 2 ] || {
    echo "bench/services: needs 2 CPUs" >&2
    exit 1
}
[ "$STEPS" -ge 2 ] || {
    echo "bench/services: STEPS must be at least 2" >&2
    exit 1
}
for p in $P_MXU $P_A $P_B; do
    port_free "$p" || {
        echo "bench/services: port $p is in use (set BENCH_PORT)" >&2
        exit 1
    }
done
log "results: $RES"

# ---------------------------------------------------------------- machine
{
    echo "date: $(date -Is)"
    echo "mode: $ROUNDS rounds x $REQUESTS timed requests per target (+ $WARM_REQUESTS untimed) in blocks of $BLOCK, 1 keep-alive connection each; chain of $STEPS"
    echo "cpu: $(awk -F': ' '/model name/{m=$2} END{print m}' /proc/cpuinfo), nproc $(nproc)$(grep -q -w hypervisor /proc/cpuinfo && echo ', virtual machine')"
    echo "kernel: $(uname -srm)"
    echo "cpuidle: $(cat /sys/devices/system/cpu/cpuidle/current_driver 2>/dev/null || echo unknown)"
    echo "uptime before: $(uptime)"
    echo "mxu: $MXU_BIN ($("$MXU_BIN" --version 2>/dev/null | head -1), built $(date -r "$MXU_BIN" -Is)), ${MXU_COMMIT:+built from $MXU_COMMIT; }$(if git -C "$REPO" rev-parse --short HEAD >/dev/null 2>&1; then
        echo "repo at git $(git -C "$REPO" rev-parse --short HEAD)$(git -C "$REPO" diff --quiet HEAD -- src sdk include || echo ' + uncommitted changes in src/sdk/include')"
    else echo "$REPO is not a git checkout"; fi)"
    echo "nginx: $(nginx -v 2>&1)"
    echo "cc: $(cc --version | head -1)"
} >"$RES/host.txt"
cat "$RES/host.txt" >&2

# ---------------------------------------------------------------- programs
cc -std=gnu11 -O2 -Wall -o "$W/bin/latency" "$BENCH/src/latency.c" || exit 1
F=$W/functions
rm -rf "$F" && mkdir -p "$F/chain1" "$F/chain$STEPS"
cp -R "$BENCH/functions/noop" "$F/noop"
service() { # NAME STEPS: a service of STEPS calls of noop (ids assigned: noop, noop-2, ...)
    {
        echo "# generated by bench/services.sh: $2 no-op steps in sequence"
        echo "kind: service"
        echo "name: $1"
        printf 'steps: ['
        _i=1
        while [ "$_i" -le "$2" ]; do
            [ "$_i" -gt 1 ] && printf ', '
            printf 'noop'
            _i=$((_i + 1))
        done
        echo ']'
    } >"$F/$1/mxu.yaml"
}
service chain1 1
service "chain$STEPS" "$STEPS"

# ---------------------------------------------------------------- servers
# The node: a fresh data directory; the CLI's credentials go under the
# bench's XDG_CONFIG_HOME, not the user's.
rm -rf "$W/data"
export XDG_CONFIG_HOME="$W/config"
start_bg svc-mxu "$MXU_BIN" serve --listen "127.0.0.1:$P_MXU" --data "$W/data" --log-level warn \
    --deploy "$F/noop"
node_key "$W/data" || exit 1
wait_http "http://127.0.0.1:$P_MXU/fn/noop" 120 || {
    tail -20 "$LOGS/svc-mxu.log" >&2
    exit 1
}
export MXU_URL="http://127.0.0.1:$P_MXU"
for s in chain1 "chain$STEPS"; do
    timeout 60 "$MXU_BIN" deploy "$F/$s" >"$RES/raw/deploy-$s.txt" 2>&1 ||
        log "mxu deploy $s failed: $(cat "$RES/raw/deploy-$s.txt")"
done

# nginx: A answers, B proxies to A over a keep-alive upstream pool.
NG=$W/nginx
mkdir -p "$NG/tmp" "$NG/logs"
cat >"$NG/nginx.conf" <<EOF
# generated by bench/services.sh
worker_processes 1;
daemon off;
pid $NG/nginx.pid;
error_log $NG/logs/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  keepalive_requests 100000000;
  keepalive_timeout 75s;
  client_body_temp_path $NG/tmp/body;
  proxy_temp_path $NG/tmp/proxy;
  fastcgi_temp_path $NG/tmp/fastcgi;
  uwsgi_temp_path $NG/tmp/uwsgi;
  scgi_temp_path $NG/tmp/scgi;
  upstream svc_a {
    server 127.0.0.1:$P_A;
    keepalive 16;
  }
  server {
    listen 127.0.0.1:$P_A;
    location / { default_type text/plain; return 200 "ok"; }
  }
  server {
    listen 127.0.0.1:$P_B;
    location / {
      proxy_pass http://svc_a;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
    }
  }
}
EOF
nginx -t -p "$NG" -c "$NG/nginx.conf" >"$LOGS/nginx-t.log" 2>&1 || {
    cat "$LOGS/nginx-t.log" >&2
    exit 1
}
start_bg svc-nginx nginx -p "$NG" -c "$NG/nginx.conf"
wait_http "http://127.0.0.1:$P_B/" 10 || exit 1

# ---------------------------------------------------------------- targets
# name, port, path; a target that does not answer 200 "ok" is left out.
TARGETS=""
SKIPPED=$RES/skipped.txt
: >"$SKIPPED"
target() { # NAME PORT PATH
    _body=$(curl -sS -m 10 ${AUTH_HDR:+-H "$AUTH_HDR"} -D "$RES/raw/headers-$1.txt" "http://127.0.0.1:$2$3" 2>&1)
    if [ "$_body" != ok ]; then
        log "$1 answered '$_body' instead of 'ok': left out"
        echo "$1: answered '$(echo "$_body" | head -c 300)' instead of 'ok'" >>"$SKIPPED"
        return 0
    fi
    TARGETS="$TARGETS $1=$2$3"
}
target nginx "$P_A" /
target nginx-proxy "$P_B" /
target noop "$P_MXU" /fn/noop
target chain1 "$P_MXU" /fn/chain1
target "chain$STEPS" "$P_MXU" "/fn/chain$STEPS"
ss -Htlnp | grep -E ":($P_MXU|$P_A|$P_B) " >"$RES/listeners.txt"

# ---------------------------------------------------------------- rounds
if [ -n "$BENCH_LOCK" ]; then
    exec 9>>"$BENCH_LOCK"
    log "waiting for $BENCH_LOCK (up to $LOCK_WAIT s)"
    flock -w "$LOCK_WAIT" 9 || {
        echo "bench/services: $BENCH_LOCK still held after $LOCK_WAIT s: another benchmark is running" >&2
        exit 1
    }
fi
ROUNDS_TSV=$RES/rounds.tsv
echo "round	tries	idle_before	others_cpu_pct	disturbed" >"$ROUNDS_TSV"
client() { # ROUND REQUESTS WARMUP OUT
    # shellcheck disable=SC2086 # TARGETS is a list of NAME=PORT/PATH
    timeout 600 taskset -c "$CLIENT_CPU" "$W/bin/latency" "$1" "$2" "$3" "$BLOCK" "$4" "$AUTH_HDR" $TARGETS
}
log "warm-up round"
client 0 "$REQUESTS" "$WARM_REQUESTS" "$RES/raw/warmup.tsv" >"$RES/raw/warmup.txt" 2>&1
r=1
while [ $r -le "$ROUNDS" ]; do
    try=0
    while :; do
        wait_quiet
        cpu_mark
        rm -f "$RES/raw/round-$r.tsv"
        client "$r" "$REQUESTS" "$WARM_REQUESTS" "$RES/raw/round-$r.tsv" >"$RES/raw/round-$r.txt" 2>&1
        rc=$?
        other=$(cpu_foreign)
        [ $rc = 0 ] || log "round $r: the client said $rc: $(grep -v '^LAT' "$RES/raw/round-$r.txt" | tail -2)"
        if awk -v o="$other" -v m="$OTHERS_MAX" 'BEGIN { exit !(o <= m) }'; then
            dist=0
            break
        fi
        if [ $try -ge "$RETRIES" ]; then
            dist=1
            break
        fi
        try=$((try + 1))
        log "round $r: others used $other % of the CPUs, running it again"
    done
    printf '%s\t%s\t%s\t%s\t%s\n' "$r" "$((try + 1))" "$LAST_IDLE" "$other" "$dist" >>"$ROUNDS_TSV"
    log "round $r: $(awk '/^LAT/ { for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
        printf "%s %s  ", v["name"], v["p50_us"] }' "$RES/raw/round-$r.txt")(others $other %)"
    r=$((r + 1))
done

# ---------------------------------------------------------------- profile
if [ "$PERF" = 1 ] && command -v perf >/dev/null 2>&1 && echo "$TARGETS" | grep -q "chain$STEPS="; then
    for t in noop "chain$STEPS"; do
        spec=$(echo "$TARGETS" | tr ' ' '\n' | grep "^$t=")
        wait_quiet
        log "perf: CPU $SERVER_CPU during $t"
        # Enough requests for ~6 s; the counters of perf stat give
        # context switches per request.
        n=$(awk -F'\t' -v t="$t" '$1 == t { s += $3; k++ } END { printf "%d", k ? 6e9 / (s / k) : 20000 }' \
            "$RES/raw/round-1.tsv")
        perf stat -e context-switches,cpu-migrations,task-clock -a -C "$SERVER_CPU" -o "$RES/raw/perf-stat-$t.txt" -- \
            taskset -c "$CLIENT_CPU" timeout 120 "$W/bin/latency" 0 "$n" 200 "$n" /dev/null "$AUTH_HDR" "$spec" \
            >"$RES/raw/perf-stat-$t.log" 2>&1
        echo "requests: $((n + 200))" >>"$RES/raw/perf-stat-$t.txt"
        perf record -e cpu-clock -g -a -C "$SERVER_CPU" -o "$RES/raw/perf-$t.data" -- \
            taskset -c "$CLIENT_CPU" timeout 120 "$W/bin/latency" 0 "$n" 200 "$n" /dev/null "$AUTH_HDR" "$spec" \
            >"$RES/raw/perf-$t.log" 2>&1
        perf report -i "$RES/raw/perf-$t.data" --stdio -n --no-children --sort comm -g none >"$RES/perf-$t-comm.txt" 2>/dev/null
        perf report -i "$RES/raw/perf-$t.data" --stdio --no-children --sort comm,dso,sym -g none --percent-limit 0.5 >"$RES/perf-$t-sym.txt" 2>/dev/null
        perf report -i "$RES/raw/perf-$t.data" --stdio --children --sort comm,sym -g none --percent-limit 2 >"$RES/perf-$t-children.txt" 2>/dev/null
    done
fi
[ -n "$BENCH_LOCK" ] && flock -u 9

curl -sS -m 5 -H "$AUTH_HDR" "http://127.0.0.1:$P_MXU/v1/functions/chain$STEPS" >"$RES/raw/mxu-chain$STEPS.json" 2>/dev/null
stop_bg svc-nginx
stop_bg svc-mxu
echo "uptime after: $(uptime)" >>"$RES/host.txt"

# ---------------------------------------------------------------- summary
python3 - "$RES" "$STEPS" >"$RES/summary.md" <<'PY'
import glob, statistics, sys
res, steps = sys.argv[1], int(sys.argv[2])
long = f"chain{steps}"
samples = {}   # name -> round -> [ns]
for f in sorted(glob.glob(f"{res}/raw/round-*.tsv")):
    for line in open(f):
        n, r, ns = line.split("\t")
        samples.setdefault(n, {}).setdefault(int(r), []).append(int(ns))
disturbed = {}
for line in list(open(f"{res}/rounds.tsv"))[1:]:
    r, tries, idle, other, dist = line.rstrip("\n").split("\t")
    disturbed[int(r)] = dist == "1"

def pct(v, p):  # nearest rank, v sorted
    k = max(1, min(len(v), int(-(-p * len(v) // 1))))
    return v[k - 1] / 1000.0

order = ["nginx", "nginx-proxy", "noop", "chain1", long]
what = {"nginx": 'nginx `return 200 "ok"` (A)',
        "nginx-proxy": "nginx `proxy_pass` to A, keep-alive upstream (B)",
        "noop": "mxu, `/fn/noop` (the function alone)",
        "chain1": "mxu, `/fn/chain1` (a service of 1 noop step)",
        long: f"mxu, `/fn/{long}` (a service of {steps} noop steps)"}
p50r = {}      # name -> {round: p50}
print("| target | p50 µs | p90 µs | p99 µs | mean µs | p50 median of rounds [min–max] | samples |")
print("|---|---:|---:|---:|---:|---:|---:|")
pooled = {}
for n in order:
    if n not in samples:
        print(f"| {what[n]} | — | — | — | — | not measured (skipped.txt) | 0 |")
        continue
    allv = sorted(x for v in samples[n].values() for x in v)
    pooled[n] = pct(allv, 0.5)
    p50r[n] = {r: pct(sorted(v), 0.5) for r, v in samples[n].items()}
    rs = list(p50r[n].values())
    print(f"| {what[n]} | {pct(allv, .5):.1f} | {pct(allv, .9):.1f} | {pct(allv, .99):.1f} | "
          f"{sum(allv) / len(allv) / 1000:.1f} | {statistics.median(rs):.1f} [{min(rs):.1f}–{max(rs):.1f}] | {len(allv)} |")
print()

def derived(label, a, b, div):
    if a not in p50r or b not in p50r:
        return None
    rounds = sorted(set(p50r[a]) & set(p50r[b]))
    per = [(p50r[a][r] - p50r[b][r]) / div for r in rounds]
    med = statistics.median(per)
    print(f"| {label} | **{med:.1f}** [{min(per):.1f}–{max(per):.1f}] | {(pooled[a] - pooled[b]) / div:.1f} |")
    return med

print("| derived (p50s) | median of rounds [min–max] µs | from pooled p50s µs |")
print("|---|---:|---:|")
step = derived(f"per-step overhead: (p50({long}) − p50(chain1)) / {steps - 1}", long, "chain1", steps - 1)
full = derived(f"step with its function: (p50({long}) − p50(noop)) / {steps}", long, "noop", steps)
derived("service with one step over the function: p50(chain1) − p50(noop)", "chain1", "noop", 1)
hop = derived("nginx keep-alive hop: p50(B) − p50(A)", "nginx-proxy", "nginx", 1)
print()
if step is not None and hop:
    print(f"- per-step overhead / nginx hop: **{step / hop:.2f}×** (step with its function: {full / hop:.2f}×)")
if step is not None:
    print(f"- target per-step overhead p50 ≤ 25 µs: **{'met' if step <= 25 else 'not met'}** ({step:.1f} µs)")
else:
    print(f"- per-step overhead: not measured (chain1 or {long} left out: see skipped.txt)")
# BENCH_PERF: CPU 0 per request (perf stat's context switches; perf record's
# samples not in the idle task, as time) for the targets profiled.
prof = []
for n in ["noop", long]:
    try:
        st = open(f"{res}/raw/perf-stat-{n}.txt").read().split("\n")
        cm = open(f"{res}/perf-{n}-comm.txt").read().split("\n")
    except OSError:
        continue
    num = lambda lines, key: next(float(l.split()[0].replace(",", "")) for l in lines if key in l)
    reqs = num([l.replace("requests:", "") + " requests" for l in st if l.startswith("requests:")], "requests")
    cs = num(st, "context-switches")
    total = num([l.split(":")[1] for l in cm if "Event count" in l], "")
    shares = {l.split()[2]: float(l.split()[0].rstrip("%")) for l in cm if l.strip() and not l.startswith("#")}
    # the node's threads (libuv's pool is "mxu" too), its meter's writer, its instances
    ours = {k: v for k, v in shares.items() if k in ("mxu", "usage-writer", "instance")}
    busy = total * sum(ours.values()) / 100 / reqs / 1000  # event count is ns
    other = 100 - sum(ours.values()) - shares.get("swapper", 0)
    prof.append((n, cs / reqs, busy, ", ".join(f"{k} {v:.0f} %" for k, v in ours.items()), other))
if prof:
    print()
    print("| profiled (CPU 0, one connection) | context switches / request (CPU 0) | node + instances µs / request | CPU 0 by command | others on CPU 0 |")
    print("|---|---:|---:|---|---:|")
    for n, cs, busy, sh, other in prof:
        print(f"| {n} | {cs:.1f} | {busy:.0f} | {sh} | {other:.0f} % |")
    print()
nd = sum(disturbed.values())
print(f"- {len(disturbed)} rounds; {nd} still disturbed after the retries" if nd else f"- {len(disturbed)} rounds, none disturbed (others ≤ OTHERS_MAX % of the CPUs)")
PY
cat "$RES/summary.md"
[ -s "$SKIPPED" ] && { echo; echo "left out:"; cat "$SKIPPED"; }
log "raw results: $RES"
