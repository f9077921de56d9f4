#!/bin/sh
# bench/policy.sh — what policy costs per request (issue 5):
#  1. the per-request policy check, timed directly (bench/src/policy-check.c):
#     key + tenant + function limits and the tenant's quota, with 10,000 keys,
#     1,000 tenants, 10,000 functions and 10,000 links in the lookup
#     structures (target p50 <= 2 us), and the link check of svc calls;
#  2. warm-invoke throughput with auth + shaping + quota + metering on, against
#     a node with --auth off --metering off, in the same run, interleaved for
#     $ROUNDS rounds (target on >= 0.9x off). On the "on" node every gate is
#     live: the function has rate and max_concurrency in its manifest, the
#     tenant has limits and a quota, the key has limits (all high enough never
#     to refuse, so each request runs the whole check and is served).
# Server on CPU $SERVER_CPU, wrk and the micro-benchmark on CPU $CLIENT_CPU
# (the micro-benchmark on $SERVER_CPU: it is the server's code); every process
# is stopped by its PID; every run is bounded by timeout.
#
# Each measurement waits for a quiet machine and is redone while other work
# used more than OTHERS_MAX % of the CPUs during it (bench/lib.sh; "!" marks
# a run still disturbed after RETRIES).
# Env: MXU_BUILD (build), BENCH_PORT (18400; 2 ports), DURATION (5s), ROUNDS (3),
#   CONNS ("32 256"), SERVER_CPU (0), CLIENT_CPU (1), RULES (10000), CALLS (1000000),
#   QUIET_MIN (85), QUIET_WAIT (120), OTHERS_MAX (5), RETRIES (3).
set -u
BENCH=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$BENCH/.." && pwd)
BUILD=${MXU_BUILD:-$REPO/build}
MXU_BIN=$BUILD/mxu
PORT=${BENCH_PORT:-18400}
DURATION=${DURATION:-5s}
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-32 256}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
RULES=${RULES:-10000}
CALLS=${CALLS:-1000000}
QUIET_MIN=${QUIET_MIN:-85}
QUIET_WAIT=${QUIET_WAIT:-120}
OTHERS_MAX=${OTHERS_MAX:-5}
RETRIES=${RETRIES:-3}
for c in wrk taskset curl timeout python3 ninja; do
    command -v "$c" >/dev/null 2>&1 || { echo "bench/policy.sh: needs $c" >&2; exit 1; }
done
ninja -C "$BUILD" mxu bench/src/bench-policy-check >/dev/null || exit 1
# state.db on tmpfs when there is one: building 10,000 keys is 30,000 commits.
BASE=/tmp
[ -d /dev/shm ] && BASE=/dev/shm
TMP=$(mktemp -d "$BASE/mxu-bench-policy.XXXXXX")
RES=$TMP
# shellcheck source=bench/lib.sh
. "$BENCH/lib.sh"
PIDS=$TMP/pids # lib.sh: servers' PIDs (none: the nodes are in this session)
mkdir -p "$PIDS"
NODE_PIDS=""
cleanup() {
    for p in $NODE_PIDS; do kill "$p" 2>/dev/null; done
    sleep 0.5
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "== bench/policy.sh at $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null), $(nproc) CPUs"
echo "-- 1. the policy check, $RULES keys/functions/links, $((RULES / 10)) tenants"
mkdir -p "$TMP/micro"
timeout 600 taskset -c "$SERVER_CPU" "$BUILD/bench/src/bench-policy-check" "$TMP/micro" "$RULES" \
    "$CALLS" || echo "policy-check failed"

echo "-- 2. warm invoke: auth + shaping + quota + metering on, vs --auth off --metering off"
mkdir -p "$TMP/fn"
cp "$BENCH/functions/noop/"*.c "$TMP/fn/"
sed -e 's/^name: noop/name: noop/' "$BENCH/functions/noop/mxu.yaml" >"$TMP/fn/mxu.yaml"
printf 'rate: 1000000000/s\nmax_concurrency: 100000\npublic: true\n' >>"$TMP/fn/mxu.yaml"
start_node() { # name port args...
    n=$1
    p=$2
    shift 2
    mkdir -p "$TMP/$n"
    taskset -c "$SERVER_CPU" "$MXU_BIN" serve --listen "127.0.0.1:$p" --data "$TMP/$n" \
        --deploy "$TMP/fn" "$@" >"$TMP/$n.log" 2>&1 &
    NODE_PIDS="$NODE_PIDS $!"
    i=0
    until curl -sf "http://127.0.0.1:$p/v1/health" >/dev/null 2>&1; do
        i=$((i + 1))
        [ $i -gt 100 ] && { echo "node $n did not come up: $(tail -5 "$TMP/$n.log")" >&2; exit 1; }
        sleep 0.1
    done
}
start_node on "$PORT"
start_node off $((PORT + 1)) --auth off --metering off
KEY=$(cat "$TMP/on/admin.key")
KID=$(echo "$KEY" | cut -d_ -f2)
AUTH="Authorization: Bearer $KEY"
put() { curl -sf -X PUT -H "$AUTH" -d "$2" "http://127.0.0.1:$PORT$1" >/dev/null || echo "PUT $1 failed"; }
put /v1/tenants/default/limits '{"rate": "1000000000/s", "burst": 1000000000, "concurrency": 1000000}'
put /v1/tenants/default/quotas '{"invocations": 1000000000000}'
put "/v1/keys/$KID/limits" '{"rate": "1000000000/s", "burst": 1000000000, "concurrency": 1000000}'
curl -sf -H "$AUTH" "http://127.0.0.1:$PORT/fn/noop" >/dev/null || echo "on: invoke failed"
curl -sf "http://127.0.0.1:$((PORT + 1))/fn/noop" >/dev/null || echo "off: invoke failed"

rps() { # port conns duration [header]
    if [ $# -gt 3 ]; then
        timeout 120 taskset -c "$CLIENT_CPU" wrk -t1 -c"$2" -d"$3" -H "$4" "http://127.0.0.1:$1/fn/noop" 2>/dev/null
    else
        timeout 120 taskset -c "$CLIENT_CPU" wrk -t1 -c"$2" -d"$3" "http://127.0.0.1:$1/fn/noop" 2>/dev/null
    fi | awk '/^Requests\/sec/ {print $2} /Non-2xx/ {print "non2xx " $4 > "/dev/stderr"}'
}
for c in $CONNS; do
    rps "$PORT" "$c" 1s "$AUTH" >/dev/null
    rps $((PORT + 1)) "$c" 1s >/dev/null
    r=1
    while [ $r -le "$ROUNDS" ]; do
        measured rps "$PORT" "$c" "$DURATION" "$AUTH" >>"$TMP/on-$c"
        measured rps $((PORT + 1)) "$c" "$DURATION" >>"$TMP/off-$c"
        r=$((r + 1))
    done
done
# shellcheck disable=SC2086 # CONNS is a list of numbers
onoff_summary policy "$TMP" $CONNS
echo "usage: $(curl -s -H "$AUTH" "http://127.0.0.1:$PORT/v1/tenants/default/quotas" | python3 -c 'import json,sys; print(json.load(sys.stdin)["usage"])')"
