# bench/lib.sh — helpers for bench/run.sh (sourced, POSIX sh).
#
#   start_bg NAME CMD...   start a server pinned to $SERVER_CPU in its own
#                          session (its PID is its process group), output to
#                          $LOGS/NAME.log, PID in $PIDS/NAME
#   stop_bg NAME           SIGTERM that process group, SIGKILL after 10 s
#   stop_all_bg            stop every server this run started (EXIT trap)
#   reap_stale NAME WORD   stop a server left by an interrupted run, but only
#                          if its PID still runs a command containing WORD
#   port_free PORT, wait_http URL SECONDS
#   wait_quiet             wait (up to $QUIET_WAIT s) until the machine is
#                          >= $QUIET_MIN % idle; leaves the figure in $LAST_IDLE
#   cpu_mark, cpu_foreign  share of the CPUs others used in between
#   measured CMD...        CMD's number, redone while others disturbed it
#   onoff_summary LABEL DIR CONNS...  medians and ratio of DIR/on-C, DIR/off-C
#   run_wrk NAME URL CONNS RUN   one wrk run pinned to $CLIENT_CPU; appends a
#                          row to $RES/wrk.tsv, keeps wrk's text in $RES/raw/
#
# Servers are only ever stopped by the PID this script recorded; nothing is
# killed by name.

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

start_bg() {
    _name=$1
    shift
    # No job control in a script: the background child is not a group leader,
    # so setsid does not fork and $! is the server's PID and PGID.
    taskset -c "$SERVER_CPU" setsid "$@" >"$LOGS/$_name.log" 2>&1 </dev/null &
    echo $! >"$PIDS/$_name"
    log "started $_name (pid $!)"
}

stop_bg() {
    [ -f "$PIDS/$1" ] || return 0
    _pid=$(cat "$PIDS/$1")
    if [ -n "$_pid" ] && kill -0 "$_pid" 2>/dev/null; then
        kill -s TERM -- "-$_pid" 2>/dev/null || kill -s TERM "$_pid" 2>/dev/null
        _i=0
        while [ $_i -lt 100 ] && kill -0 "$_pid" 2>/dev/null; do
            sleep 0.1
            _i=$((_i + 1))
        done
        kill -s KILL -- "-$_pid" 2>/dev/null || true
    fi
    wait "$_pid" 2>/dev/null || true
    rm -f "$PIDS/$1"
    log "stopped $1 (pid $_pid)"
}

stop_all_bg() {
    for _f in "$PIDS"/*; do
        [ -f "$_f" ] && stop_bg "$(basename "$_f")"
    done
    return 0
}

reap_stale() {
    [ -f "$PIDS/$1" ] || return 0
    _pid=$(cat "$PIDS/$1")
    if [ -n "$_pid" ] && tr '\0' ' ' <"/proc/$_pid/cmdline" 2>/dev/null | grep -q -- "$2"; then
        log "stopping $1 left by an earlier run (pid $_pid)"
        kill -s TERM -- "-$_pid" 2>/dev/null || kill -s TERM "$_pid" 2>/dev/null
        sleep 2
        kill -s KILL -- "-$_pid" 2>/dev/null || true
    fi
    rm -f "$PIDS/$1"
}

port_free() { ! ss -Htln "sport = :$1" | grep -q .; }

# The API key every request to an mxu node sends (docs/policy.md): set by
# node_key from the node's admin.key; empty for a node run with --auth off.
AUTH_HDR=""
# node_key DATA_DIR: wait for the node's admin.key, then send it (curl, wrk,
# coldstart and the mxu CLI through MXU_KEY).
node_key() {
    _end=$(($(date +%s) + 60))
    while [ ! -s "$1/admin.key" ] && [ "$(date +%s)" -lt $_end ]; do sleep 0.1; done
    MXU_KEY=$(cat "$1/admin.key") || return 1
    export MXU_KEY
    AUTH_HDR="Authorization: Bearer $MXU_KEY"
}

wait_http() {
    _end=$(($(date +%s) + $2))
    while [ "$(date +%s)" -lt $_end ]; do
        curl -fsS -m 2 -o /dev/null ${AUTH_HDR:+-H "$AUTH_HDR"} "$1" 2>/dev/null && return 0
        sleep 0.2
    done
    log "no 2xx from $1 within $2 s"
    return 1
}

# Idle percentage of all CPUs over one second (/proc/stat: idle + iowait).
idle_pct() {
    _a=$(awk '/^cpu /{print $2+$3+$4+$5+$6+$7+$8+$9, $5+$6}' /proc/stat)
    sleep 1
    _b=$(awk '/^cpu /{print $2+$3+$4+$5+$6+$7+$8+$9, $5+$6}' /proc/stat)
    echo "$_a $_b" | awk '{d = $3 - $1; if (d <= 0) d = 1; printf "%d\n", ($4 - $2) * 100 / d}'
}

LAST_IDLE=NA
wait_quiet() {
    _end=$(($(date +%s) + QUIET_WAIT))
    while :; do
        LAST_IDLE=$(idle_pct)
        [ "$LAST_IDLE" -ge "$QUIET_MIN" ] && return 0
        if [ "$(date +%s)" -ge $_end ]; then
            log "machine still busy (idle $LAST_IDLE %) after $QUIET_WAIT s: measuring anyway"
            echo "$(date -Is) busy: idle $LAST_IDLE % before a run; top: $(top -bn1 | sed -n '8,10p' | tr -s ' ' | tr '\n' ';')" >>"$RES/busy.txt"
            return 0
        fi
        log "machine busy (idle $LAST_IDLE %), waiting"
        sleep 5
    done
}

# CPU time used by others during a run: cpu_mark before, cpu_foreign after
# prints the share of both CPUs' time (/proc/stat) that went to steal and to
# processes that are not ours. Ours: every process in the session of a server
# we started (an mxu node's instances and fcgiwrap's CGI children included)
# and in this script's session (wrk, the timing client). Others' time is
# summed over their processes, children they reaped included (cutime/cstime),
# so short-lived processes count through the parent that waited for them.
cpu_sample() {
    _sids="$(cat "$PIDS"/* 2>/dev/null | tr '\n' ' ') $(awk '{sub(/^.*\) /, ""); print $4}' /proc/$$/stat)"
    # shellcheck disable=SC2046
    cat /proc/[0-9]*/stat 2>/dev/null | awk -v sids=" $_sids " '
        { s = $0; sub(/^.*\) /, "", s); split(s, a, " ")
          if (index(sids, " " a[4] " ") == 0) t += a[12] + a[13] + a[14] + a[15] }
        END { while ((getline l < "/proc/stat") > 0) if (l ~ /^cpu /) { split(l, c, " "); break }
              print c[9] + 0, c[2]+c[3]+c[4]+c[5]+c[6]+c[7]+c[8]+c[9], t + 0 }'
}
cpu_mark() { _mark=$(cpu_sample); }
cpu_foreign() {
    echo "$_mark $(cpu_sample)" | awk '{ total = $5 - $2; if (total <= 0) total = 1
        other = ($4 - $1) + ($6 - $3); if (other < 0) other = 0; printf "%.1f\n", other * 100 / total }'
}

# measured CMD ARGS...: one recorded run of CMD (which prints a number, e.g.
# req/s), redone after wait_quiet while others used more than $OTHERS_MAX %
# of the CPUs during it; prints the number, with "!" after it if it was still
# disturbed after $RETRIES tries.
measured() {
    _try=0
    while :; do
        wait_quiet
        cpu_mark
        _r=$("$@")
        _other=$(cpu_foreign)
        if awk -v o="$_other" -v m="$OTHERS_MAX" 'BEGIN { exit !(o <= m) }'; then
            echo "$_r"
            return
        fi
        if [ $_try -ge "$RETRIES" ]; then
            echo "$_r!"
            return
        fi
        _try=$((_try + 1))
        log "$*: others used $_other % of the CPUs ($_r), running it again"
    done
}

# onoff_summary LABEL DIR CONNS...: medians of the req/s in DIR/on-C and
# DIR/off-C (one per line, "!" after a disturbed run) and their ratio; and
# the median of the ratios of each on run to the off run right after it.
onoff_summary() {
    _label=$1
    shift
    python3 - "$_label" "$@" <<'PY'
import statistics, sys
label, tmp, conns = sys.argv[1], sys.argv[2], sys.argv[3:]
w = len(label) + 5
for c in conns:
    ron = [x for x in open(f"{tmp}/on-{c}").read().split() if x]
    roff = [x for x in open(f"{tmp}/off-{c}").read().split() if x]
    on = [float(x.rstrip("!")) for x in ron]
    off = [float(x.rstrip("!")) for x in roff]
    mon, moff = statistics.median(on), statistics.median(off)
    fmt = lambda xs: ", ".join(f"{float(x.rstrip('!')):.0f}" + ("!" if x.endswith("!") else "") for x in xs)
    print(f"{label + '-on':<{w}}c{c}: {mon:9.0f} req/s  (runs: {fmt(ron)})")
    print(f"{label + '-off':<{w}}c{c}: {moff:9.0f} req/s  (runs: {fmt(roff)})")
    print(f"ratio on/off c{c}: {mon / moff:.2f}x  (target >= 0.9x)")
    # Each on run is followed by its off run: the ratio within a pair is
    # free of the slower drifts of the machine between pairs.
    pairs = sorted(a / b for a, b in zip(on, off))
    print(f"{'':<{w}}  paired: median {statistics.median(pairs):.2f}x"
          f"  (pairs: {', '.join(f'{p:.2f}' for p in pairs)})")
PY
}

WRK_HDR='date	name	conns	run	rps	mean_us	p50_us	p90_us	p99_us	max_us	errors	non2xx	requests	idle_before	others_cpu_pct'

# run_wrk NAME URL CONNS RUN  (RUN 0 = warm-up: $WARMUP, not recorded)
# A run during which others used more than $OTHERS_MAX % of the CPUs is
# kept aside (raw/*.disturbed-N.txt) and redone after wait_quiet, at most
# $RETRIES times; the last attempt is recorded whatever happened (and the
# summary flags it).
run_wrk() {
    [ -f "$RES/wrk.tsv" ] || echo "$WRK_HDR" >"$RES/wrk.tsv"
    if [ "$4" = 0 ]; then
        timeout 40 taskset -c "$CLIENT_CPU" wrk -t1 -c"$3" -d"$WARMUP" ${AUTH_HDR:+-H "$AUTH_HDR"} -s "$BENCH/wrk-report.lua" "$2" >"$RES/raw/warmup-$1-c$3.txt" 2>&1
        return 0
    fi
    _out="$RES/raw/wrk-$1-c$3-r$4.txt"
    _try=0
    while :; do
        wait_quiet
        cpu_mark
        {
            echo "# $(date -Is) taskset -c $CLIENT_CPU wrk -t1 -c$3 -d$DURATION --latency -s wrk-report.lua $2 (idle before: $LAST_IDLE %)"
            timeout $((${DURATION%s} + 30)) taskset -c "$CLIENT_CPU" wrk -t1 -c"$3" -d"$DURATION" --latency ${AUTH_HDR:+-H "$AUTH_HDR"} -s "$BENCH/wrk-report.lua" "$2" 2>&1
        } >"$_out"
        _other=$(cpu_foreign)
        echo "# others' CPU during the run: $_other % of both CPUs" >>"$_out"
        if [ $_try -ge "$RETRIES" ] || awk -v o="$_other" -v m="$OTHERS_MAX" 'BEGIN { exit !(o <= m) }'; then
            break
        fi
        _try=$((_try + 1))
        mv "$_out" "${_out%.txt}.disturbed-$_try.txt"
        log "wrk $1 -c$3 run $4: others used $_other % of the CPUs, running it again"
    done
    _line=$(grep '^BENCH_WRK' "$_out" | tail -1)
    if [ -z "$_line" ]; then
        log "wrk $1 -c$3 run $4: no result (see $_out)"
        return 0
    fi
    echo "$_line" | awk -v d="$(date -Is)" -v n="$1" -v c="$3" -v r="$4" -v q="$LAST_IDLE" -v o="$_other" '
        { for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] } }
        END { printf "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", d, n, c, r,
              v["rps"], v["mean_us"], v["p50_us"], v["p90_us"], v["p99_us"], v["max_us"],
              v["errors"], v["non2xx"], v["requests"], q, o }' >>"$RES/wrk.tsv"
    log "wrk $1 -c$3 run $4: $(tail -1 "$RES/wrk.tsv" | awk -F'\t' '{printf "%.0f req/s, p50 %s us, p99 %s us, errors %s, non-2xx %s, others %s %% CPU", $5, $7, $9, $11, $12, $15}')"
}
