#!/bin/sh
# bench/metering.sh — warm-invoke throughput with metering on and off, in the
# same run (issue 5: target on >= 0.9x off). Two nodes of the same binary,
# one with --metering off, serve bench/functions/noop; wrk runs against each
# in turn, interleaved for $ROUNDS rounds, at 32 and at 256 connections.
# Server on CPU $SERVER_CPU, wrk on CPU $CLIENT_CPU; every process is
# stopped by the PID recorded here; each wrk run is bounded by timeout.
# First, when it was built beside MXU_BIN, bench/src/meter-cost.c: the meter's
# own CPU per record on the loop and writer threads, from thread CPU clocks
# (precise where the throughput ratio is noisy).
#
# Other work on the machine skews one side of a pair: each run waits for a
# quiet machine (bench/lib.sh wait_quiet), and a run during which others used
# more than $OTHERS_MAX % of the CPUs is run again (at most $RETRIES times;
# the per-run list marks a run still disturbed with '!').
#
# Env: MXU_BIN (build/mxu), BENCH_PORT (18300; uses 2 ports), DURATION (5s),
#   ROUNDS (3), CONNS ("32 256"), SERVER_CPU (0), CLIENT_CPU (1),
#   QUIET_MIN (85 % idle), QUIET_WAIT (120 s), OTHERS_MAX (5 %), RETRIES (3).
# Prints one line per row: "metering-<on|off> c<N>: <req/s median>", then
# the ratios, and the writer's batch stats (/v1/health "metering").
set -u
BENCH=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$BENCH/.." && pwd)
MXU_BIN=${MXU_BIN:-$REPO/build/mxu}
PORT=${BENCH_PORT:-18300}
DURATION=${DURATION:-5s}
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-32 256}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
QUIET_MIN=${QUIET_MIN:-85}
QUIET_WAIT=${QUIET_WAIT:-120}
OTHERS_MAX=${OTHERS_MAX:-5}
RETRIES=${RETRIES:-3}
for c in wrk taskset curl timeout python3; do
    command -v "$c" >/dev/null 2>&1 || { echo "bench/metering.sh: needs $c" >&2; exit 1; }
done
TMP=$(mktemp -d /tmp/mxu-bench-metering.XXXXXX)
# bench/lib.sh: wait_quiet, cpu_mark, cpu_foreign. Its $PIDS is a directory
# of servers started in their own session; ours run in this script's session,
# which cpu_foreign counts as ours already, so it stays empty.
RES=$TMP
PIDS=$TMP/pids
mkdir -p "$PIDS"
# shellcheck source=bench/lib.sh
. "$BENCH/lib.sh"
NODE_PIDS=""
cleanup() {
    for p in $NODE_PIDS; do kill "$p" 2>/dev/null; done
    sleep 0.5
    rm -rf "$TMP"
}
# INT and TERM end the script too (a trap alone would clean up and go on).
trap cleanup EXIT
trap 'exit 1' INT TERM

COST=$(dirname "$MXU_BIN")/bench/src/bench-meter-cost
if [ -x "$COST" ]; then
    echo "-- the meter alone (bench/src/meter-cost.c, 300000 records, 20 per loop turn)"
    mkdir -p "$TMP/cost"
    timeout 300 taskset -c "$SERVER_CPU" "$COST" "$TMP/cost" 300000 20 || echo "meter-cost failed"
fi

# --auth off on both: this compares metering on and off, with nothing else
# different (authentication's own cost is bench/run.sh's).
start_node() { # name port metering
    mkdir -p "$TMP/$1"
    taskset -c "$SERVER_CPU" "$MXU_BIN" serve --auth off --listen "127.0.0.1:$2" --data "$TMP/$1" \
        --metering "$3" --deploy "$BENCH/functions/noop" >"$TMP/$1.log" 2>&1 &
    NODE_PIDS="$NODE_PIDS $!"
    i=0
    until curl -sf "http://127.0.0.1:$2/fn/noop" >/dev/null 2>&1; do
        i=$((i + 1))
        [ $i -gt 100 ] && { echo "node $1 did not come up: $(tail -5 "$TMP/$1.log")" >&2; exit 1; }
        sleep 0.1
    done
}
start_node on "$PORT" on
start_node off $((PORT + 1)) off

rps() { # port conns duration
    timeout 120 taskset -c "$CLIENT_CPU" wrk -t1 -c"$2" -d"$3" "http://127.0.0.1:$1/fn/noop" 2>/dev/null |
        awk '/^Requests\/sec/ {print $2}'
}
for c in $CONNS; do
    rps "$PORT" "$c" 1s >/dev/null
    rps $((PORT + 1)) "$c" 1s >/dev/null
    r=1
    while [ $r -le "$ROUNDS" ]; do
        measured rps "$PORT" "$c" "$DURATION" >>"$TMP/on-$c"
        measured rps $((PORT + 1)) "$c" "$DURATION" >>"$TMP/off-$c"
        r=$((r + 1))
    done
done
# shellcheck disable=SC2086 # CONNS is a list of numbers
onoff_summary metering "$TMP" $CONNS
echo "writer: $(curl -s "http://127.0.0.1:$PORT/v1/health" | python3 -c 'import json,sys; print(json.load(sys.stdin)["metering"])')"
