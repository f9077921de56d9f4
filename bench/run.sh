#!/bin/sh
# bench/run.sh — `make bench`: mxu measured side by side with nginx and peer
# platforms, in one run, on this machine (method of ../shared/peers/RESULTS.md):
#
#   1. warm invoke of a no-op C function over HTTP keep-alive (wrk, 32 and 1
#      connections) beside nginx `return 200 "ok"` (the HTTP ceiling), Knative's
#      faas-js-runtime and Google's functions-framework (npm, pinned versions);
#   2. cold start: the first invoke after scale to zero, end to end over HTTP
#      (bench/src/coldstart.c), beside hyperfine's fork+exec of a static `true`;
#   3. the exec runtime beside nginx + fcgiwrap running the equivalent CGI program;
#   4. (as root) bench/sandbox.sh: the sandbox executor beside bwrap, crun and runc;
#   5. bench/vm.sh: the vm executor beside process and sandbox (cold start,
#      warm throughput, memory per idle VM; says SKIP where /dev/kvm cannot).
#   6. bench/resources.sh, bench/metering.sh (their own nodes);
#   7. bench/services.sh: a service's per-step overhead (chains of no-op
#      steps, 1 connection) beside one nginx keep-alive proxy hop.
#
# Every server listens on 127.0.0.1, runs pinned to CPU $SERVER_CPU (0) and is
# stopped by the PID this script recorded; wrk and the timing client run on
# CPU $CLIENT_CPU (1). Each wrk row gets one warm-up run, then $REPEATS runs
# of $DURATION, the rows interleaved round by round so that drift on this
# shared machine hits every row alike. Prints a summary (absolute figures and
# ratios against each anchor) and keeps everything raw under
# $BENCH_DIR/results/<timestamp>/ (latest: $BENCH_DIR/latest).
#
# Env: BENCH_DIR (/tmp/mxu-bench), MXU_BIN (build/mxu: the node to measure,
#   e.g. another build for a before/after comparison), BENCH_QUICK=1 (smoke mode: 1 run x 3 s,
#   40 cold starts, no perf), PEERS (../shared/peers from the repo),
#   BENCH_PORT (18200; uses 18200-18204), BENCH_PERF (1; 0 skips the perf
#   profile), SERVER_CPU (0), CLIENT_CPU (1), QUIET_MIN (90), QUIET_WAIT (180),
#   OTHERS_MAX (5: a wrk run during which other processes used more than this
#   % of the CPUs is redone, up to RETRIES (2) times), NPM_FAASJS_VER (3.0.2),
#   NPM_GCF_VER (5.0.5).
# Needs: build/mxu (make), wrk nginx fcgiwrap hyperfine (scripts/deps.sh
#   --bench), cc, python3, curl, taskset, setsid, ss, timeout; for the Node
#   peers node + npm (network for the first npm install) and the peers'
#   loopback shim $PEERS/src/node/bind-loopback.cjs; perf for the profile;
#   musl-gcc (Debian musl-tools) if possible for the static helpers, as the
#   peers used: glibc's static start-up runs cpuid, which is slow in a VM.
set -u

BENCH=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$BENCH/.." && pwd)
PEERS=${PEERS:-$REPO/../shared/peers}
BENCH_DIR=${BENCH_DIR:-/tmp/mxu-bench}
MXU_BIN=${MXU_BIN:-$REPO/build/mxu}
QUICK=${BENCH_QUICK:-0}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
QUIET_MIN=${QUIET_MIN:-90}
OTHERS_MAX=${OTHERS_MAX:-5}
RETRIES=${RETRIES:-2}
CONNS="32 1"
if [ "$QUICK" = 1 ]; then
    DURATION=3s REPEATS=1 WARMUP=1s COLD_RUNS=40 HF_RUNS=40 QUIET_WAIT=${QUIET_WAIT:-20}
    PERF=${BENCH_PERF:-0}
else
    DURATION=10s REPEATS=3 WARMUP=2s COLD_RUNS=300 HF_RUNS=200 QUIET_WAIT=${QUIET_WAIT:-180}
    PERF=${BENCH_PERF:-1}
fi
FAASJS_VER=${NPM_FAASJS_VER:-3.0.2} # the versions pinned by ../shared/peers/00-install.sh
GCF_VER=${NPM_GCF_VER:-5.0.5}
PORT=${BENCH_PORT:-18200}
P_MXU=$PORT P_NGINX=$((PORT + 1)) P_CGI=$((PORT + 2)) P_FAASJS=$((PORT + 3)) P_GCF=$((PORT + 4))

. "$BENCH/lib.sh"

# ---------------------------------------------------------------- checks
missing=""
for c in wrk nginx fcgiwrap hyperfine cc python3 curl taskset setsid ss timeout awk; do
    command -v "$c" >/dev/null 2>&1 || missing="$missing $c"
done
if [ -n "$missing" ]; then
    echo "bench: missing:$missing (make bench installs wrk nginx fcgiwrap hyperfine via scripts/deps.sh --bench)" >&2
    exit 1
fi
if [ ! -x "$MXU_BIN" ]; then
    echo "bench: $MXU_BIN not found: run make first (make bench does)" >&2
    exit 1
fi
if [ "$(nproc)" -lt 2 ]; then
    echo "bench: needs 2 CPUs (server on CPU $SERVER_CPU, load on CPU $CLIENT_CPU)" >&2
    exit 1
fi

mkdir -p "$BENCH_DIR"
BENCH_DIR=$(cd "$BENCH_DIR" && pwd)
BIN=$BENCH_DIR/bin LOGS=$BENCH_DIR/logs PIDS=$BENCH_DIR/pids FN=$BENCH_DIR/fn NPM=$BENCH_DIR/npm
RES=$BENCH_DIR/results/$(date +%Y%m%d-%H%M%S)
mkdir -p "$BIN" "$LOGS" "$PIDS" "$RES/raw"
ln -sfn "$RES" "$BENCH_DIR/latest"
trap 'stop_all_bg' EXIT
trap 'exit 130' INT TERM
log "results: $RES"

for n in mxu nginx fcgiwrap faasjs gcf; do reap_stale "$n" "$n"; done
for p in $P_MXU $P_NGINX $P_CGI $P_FAASJS $P_GCF; do
    port_free "$p" || {
        echo "bench: port $p is in use (set BENCH_PORT to use another range)" >&2
        exit 1
    }
done

# ---------------------------------------------------------------- machine
{
    echo "date: $(date -Is)"
    echo "mode: $([ "$QUICK" = 1 ] && echo "quick (BENCH_QUICK=1)" || echo full): $REPEATS x $DURATION per row and conns, warm-up $WARMUP, $COLD_RUNS cold starts, hyperfine $HF_RUNS runs"
    echo "cpu: $(awk -F': ' '/model name/{m=$2} /cpu family/{f=$2} /^model\t/{n=$2} /cpu MHz/{h=$2} END{printf "%s (family %s, model %s, %.0f MHz)", m, f, n, h}' /proc/cpuinfo), nproc $(nproc)$(grep -q -w hypervisor /proc/cpuinfo && echo ', virtual machine')"
    echo "os: $(. /etc/os-release 2>/dev/null && echo "$PRETTY_NAME") $(cat /etc/debian_version 2>/dev/null)"
    echo "memory: $(awk '/MemTotal/{printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
    echo "kernel: $(uname -srm)"
    echo "uptime before: $(uptime)"
    echo "mxu: $MXU_BIN ($("$MXU_BIN" --version 2>/dev/null | head -1), built $(date -r "$MXU_BIN" -Is)), repo at git $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null)$(git -C "$REPO" diff --quiet HEAD -- src sdk include 2>/dev/null || echo ' + uncommitted changes in src/sdk/include')"
} >"$RES/host.txt"
{
    echo "nginx: $(nginx -v 2>&1)"
    echo "wrk: $(wrk -v 2>&1 | head -1)"
    echo "hyperfine: $(hyperfine --version)"
    echo "fcgiwrap: $(dpkg-query -W -f='${Version}' fcgiwrap 2>/dev/null || echo unknown)"
    echo "cc: $(cc --version | head -1)"
} >"$RES/versions.txt"
cat "$RES/host.txt" >&2
echo "--- top before the run" >"$RES/top-before.txt"
top -bn1 | head -15 >>"$RES/top-before.txt"

# ---------------------------------------------------------------- programs
# Static helpers: musl if there, else glibc static; the CGI program and the
# exec program are built the same way, so the comparison is like for like.
if command -v musl-gcc >/dev/null 2>&1; then SCC=musl-gcc; else SCC=cc; fi
echo "static helpers: $SCC -static -Os -s" >>"$RES/versions.txt"
build_static() { # SRC OUT
    $SCC -static -Os -s -o "$2" "$1" || {
        echo "bench: cannot build $1 static with $SCC" >&2
        exit 1
    }
}
build_static "$BENCH/src/true.c" "$BIN/true"
build_static "$BENCH/src/cgi-ok.c" "$BIN/cgi-ok"
cc -O2 -o "$BIN/coldstart" "$BENCH/src/coldstart.c" || exit 1
rm -rf "$FN" && mkdir -p "$FN" && cp -R "$BENCH/functions/." "$FN/"
build_static "$FN/exec-ok/ok.c" "$FN/exec-ok/ok" && rm -f "$FN/exec-ok/ok.c"

# ---------------------------------------------------------------- Node peers
SKIPPED=$RES/skipped.txt
: >"$SKIPPED"
SHIM=$PEERS/src/node/bind-loopback.cjs
NODE_OK=1
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    NODE_OK=0
    echo "faas-js-runtime, functions-framework: node and npm are not installed" >>"$SKIPPED"
elif [ ! -f "$SHIM" ]; then
    NODE_OK=0
    echo "faas-js-runtime, functions-framework: need the peers' loopback shim $SHIM (it makes node listen on 127.0.0.1 only; faas-js-runtime binds '::' otherwise); set PEERS to ../shared/peers" >>"$SKIPPED"
else
    have_ver() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["version"])' "$NPM/node_modules/$1/package.json" 2>/dev/null; }
    if [ "$(have_ver faas-js-runtime)" != "$FAASJS_VER" ] || [ "$(have_ver @google-cloud/functions-framework)" != "$GCF_VER" ]; then
        log "npm: installing faas-js-runtime@$FAASJS_VER @google-cloud/functions-framework@$GCF_VER into $NPM"
        mkdir -p "$NPM"
        [ -f "$NPM/package.json" ] || echo '{"name":"mxu-bench-peers","version":"1.0.0","private":true}' >"$NPM/package.json"
        (cd "$NPM" && timeout 600 npm install --no-audit --no-fund --save-exact \
            "faas-js-runtime@$FAASJS_VER" "@google-cloud/functions-framework@$GCF_VER") >"$LOGS/npm-install.log" 2>&1 || {
            NODE_OK=0
            echo "faas-js-runtime, functions-framework: npm install failed (see $LOGS/npm-install.log)" >>"$SKIPPED"
        }
    fi
    if [ $NODE_OK = 1 ]; then
        echo "node: $(node -v)" >>"$RES/versions.txt"
        echo "npm faas-js-runtime: $(have_ver faas-js-runtime)" >>"$RES/versions.txt"
        echo "npm @google-cloud/functions-framework: $(have_ver @google-cloud/functions-framework)" >>"$RES/versions.txt"
    fi
fi

# ---------------------------------------------------------------- servers
TARGETS=$RES/targets.tsv # name, url, what (read by summary.py)
: >"$TARGETS"
target() { # NAME URL DESCRIPTION: check it answers "ok", then add it to the load rounds
    _body=$(curl -sS -m 5 ${AUTH_HDR:+-H "$AUTH_HDR"} -D "$RES/raw/headers-$1.txt" "$2" 2>&1)
    if [ "$_body" != ok ]; then
        log "$1 answered '$_body' instead of 'ok': left out"
        echo "$1: answered '$_body' instead of 'ok'" >>"$SKIPPED"
        return 0
    fi
    printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$TARGETS"
}

# mxu: one node with every benchmark function, a fresh data directory.
# Authentication stays on, as shipped: every request (wrk, curl, coldstart)
# sends the node's admin key, so the numbers include checking it. The node
# writes CLI credentials under $XDG_CONFIG_HOME: the bench's, not the user's.
rm -rf "$BENCH_DIR/data"
export XDG_CONFIG_HOME="$BENCH_DIR/config"
start_bg mxu "$MXU_BIN" serve --listen "127.0.0.1:$P_MXU" --data "$BENCH_DIR/data" \
    --log-level warn --deploy "$FN/noop" --deploy "$FN/noop-conc1" --deploy "$FN/exec-ok" \
    --deploy "$FN/cold" --deploy "$FN/cold-static"
node_key "$BENCH_DIR/data" || exit 1
wait_http "http://127.0.0.1:$P_MXU/fn/noop" 120 || {
    tail -20 "$LOGS/mxu.log" >&2
    exit 1
}
wait_http "http://127.0.0.1:$P_MXU/fn/cold-static" 120 || exit 1

# nginx: the plain `return 200` server and the fcgiwrap front, one worker.
NG=$BENCH_DIR/nginx
mkdir -p "$NG/tmp" "$NG/logs" "$NG/www"
cp "$BIN/cgi-ok" "$NG/www/cgi-ok"
SOCK=$NG/fcgiwrap.sock
rm -f "$SOCK"
cat >"$NG/nginx.conf" <<EOF
# generated by bench/run.sh
$([ "$(id -u)" = 0 ] && echo 'user root root;  # benchmark only: workers reach the fcgiwrap socket')
worker_processes 1;
daemon off;
pid $NG/nginx.pid;
error_log $NG/logs/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 100000000;
  keepalive_timeout 75s;
  client_body_temp_path $NG/tmp/body;
  proxy_temp_path $NG/tmp/proxy;
  fastcgi_temp_path $NG/tmp/fastcgi;
  uwsgi_temp_path $NG/tmp/uwsgi;
  scgi_temp_path $NG/tmp/scgi;
  server {
    listen 127.0.0.1:$P_NGINX;
    location / { default_type text/plain; return 200 "ok"; }
  }
  server {
    listen 127.0.0.1:$P_CGI;
    location / {
      include /etc/nginx/fastcgi_params;
      fastcgi_param SCRIPT_FILENAME $NG/www/cgi-ok;
      fastcgi_pass unix:$SOCK;
    }
  }
}
EOF
nginx -t -p "$NG" -c "$NG/nginx.conf" >"$LOGS/nginx-t.log" 2>&1 || {
    cat "$LOGS/nginx-t.log" >&2
    exit 1
}
start_bg fcgiwrap fcgiwrap -c 4 -s "unix:$SOCK"
i=0
while [ ! -S "$SOCK" ] && [ $i -lt 50 ]; do
    sleep 0.1
    i=$((i + 1))
done
start_bg nginx nginx -p "$NG" -c "$NG/nginx.conf"
wait_http "http://127.0.0.1:$P_NGINX/" 10 || exit 1
wait_http "http://127.0.0.1:$P_CGI/" 10 || echo "nginx + fcgiwrap: no answer on port $P_CGI" >>"$SKIPPED"

if [ $NODE_OK = 1 ]; then
    rm -rf "$BENCH_DIR/node-fn" && cp -R "$BENCH/peers" "$BENCH_DIR/node-fn"
    export NODE_ENV=production
    NM=$NPM/node_modules
    start_bg faasjs node -r "$SHIM" "$NM/faas-js-runtime/bin/cli.js" --port "$P_FAASJS" \
        --log-level warn "$BENCH_DIR/node-fn/faasjs/index.js"
    start_bg gcf node -r "$SHIM" "$NM/@google-cloud/functions-framework/build/src/main.js" \
        --target=noop --source="$BENCH_DIR/node-fn/gcf" --port="$P_GCF" --signature-type=http
    wait_http "http://127.0.0.1:$P_FAASJS/" 60 || echo "faas-js-runtime: did not come up (see $LOGS/faasjs.log)" >>"$SKIPPED"
    wait_http "http://127.0.0.1:$P_GCF/" 60 || echo "functions-framework: did not come up (see $LOGS/gcf.log)" >>"$SKIPPED"
fi
# Nothing but loopback listeners of ours on these ports.
ss -Htlnp | grep -E ":($P_MXU|$P_NGINX|$P_CGI|$P_FAASJS|$P_GCF) " >"$RES/listeners.txt"

target nginx "http://127.0.0.1:$P_NGINX/" 'nginx `return 200 "ok"` (the HTTP ceiling)'
target mxu-noop "http://127.0.0.1:$P_MXU/fn/noop" 'mxu, no-op C function (concurrency 64, max_instances 2)'
if [ $NODE_OK = 1 ]; then
    target faas-js-runtime "http://127.0.0.1:$P_FAASJS/" "Knative faas-js-runtime $FAASJS_VER"
    target functions-framework "http://127.0.0.1:$P_GCF/" "Google functions-framework $GCF_VER"
fi
target mxu-noop-conc1 "http://127.0.0.1:$P_MXU/fn/noop-conc1" 'mxu, same function, concurrency 1, max_instances 4'
target nginx-fcgiwrap "http://127.0.0.1:$P_CGI/" 'nginx + fcgiwrap -c 4, static CGI program (fork+exec per request)'
target mxu-exec "http://127.0.0.1:$P_MXU/fn/exec-ok" 'mxu exec runtime, static program (fork+exec per request, max_instances 4)'

# ---------------------------------------------------------------- 1 + 3: HTTP
log "warm-up: $WARMUP per row and conns"
for c in $CONNS; do
    while IFS='	' read -r name url _; do run_wrk "$name" "$url" "$c" 0; done <"$TARGETS"
done
r=1
while [ $r -le "$REPEATS" ]; do
    log "round $r of $REPEATS ($(uptime | sed 's/.*load/load/'))"
    for c in $CONNS; do
        while IFS='	' read -r name url _; do run_wrk "$name" "$url" "$c" "$r"; done <"$TARGETS"
    done
    r=$((r + 1))
done

# ---------------------------------------------------------------- profile
# Where CPU 0's time goes under the 32-connection load: perf (cpu-clock with
# call chains, every task on CPU 0) over 8 s in the middle of one extra,
# unrecorded 10 s wrk run, for mxu and for nginx. The cold-start profile is
# taken below, over extra cold starts.
HAVE_PERF=0
if [ "$PERF" = 1 ] && command -v perf >/dev/null 2>&1; then
    HAVE_PERF=1
elif [ "$PERF" = 1 ]; then
    echo "perf profile: perf is not installed" >>"$SKIPPED"
fi
perf_tables() { # NAME: comm split, flat symbols, symbols with children
    perf report -i "$RES/raw/perf-$1.data" --stdio --header-only 2>/dev/null | grep -E 'sample duration|captured on|cmdline' >"$RES/perf-$1-header.txt"
    perf report -i "$RES/raw/perf-$1.data" --stdio -n --no-children --sort comm -g none >"$RES/perf-$1-comm.txt" 2>/dev/null
    perf report -i "$RES/raw/perf-$1.data" --stdio --no-children --sort comm,dso,sym -g none --percent-limit 0.4 >"$RES/perf-$1-sym.txt" 2>/dev/null
    perf report -i "$RES/raw/perf-$1.data" --stdio --children --sort comm,sym -g none --percent-limit 1 >"$RES/perf-$1-children.txt" 2>/dev/null
}
if [ $HAVE_PERF = 1 ]; then
    for t in mxu-noop nginx; do
        url=$(awk -F'\t' -v n="$t" '$1 == n {print $2}' "$TARGETS")
        [ -n "$url" ] || continue
        wait_quiet
        log "perf: CPU $SERVER_CPU during wrk -c32 on $t"
        timeout 40 taskset -c "$CLIENT_CPU" wrk -t1 -c32 -d10s -s "$BENCH/wrk-report.lua" "$url" >"$RES/raw/perf-wrk-$t.txt" 2>&1 &
        wpid=$!
        sleep 1
        perf record -e cpu-clock -g -a -C "$SERVER_CPU" -o "$RES/raw/perf-$t.data" -- sleep 8 >"$RES/raw/perf-$t.log" 2>&1
        wait $wpid
        perf_tables "$t"
    done
fi

stop_bg gcf
stop_bg faasjs
stop_bg nginx
stop_bg fcgiwrap

# ---------------------------------------------------------------- 2: cold start
# The node's size matters to what starting a process costs it: keep it.
{
    grep -E 'VmRSS|VmPTE|Threads' "/proc/$(cat "$PIDS/mxu")/status"
    echo "mappings: $(wc -l <"/proc/$(cat "$PIDS/mxu")/maps")"
} >"$RES/raw/mxu-node-memory.txt" 2>/dev/null
for f in cold cold-static; do
    wait_quiet
    log "cold start: $COLD_RUNS runs of /fn/$f, each after scale to zero (idle $LAST_IDLE %)"
    cpu_mark
    taskset -c "$CLIENT_CPU" timeout 900 "$BIN/coldstart" 127.0.0.1 "$P_MXU" "$f" "$COLD_RUNS" \
        "$RES/raw/cold-$f.tsv" >"$RES/raw/cold-$f.txt" 2>&1 || log "coldstart $f failed: $(tail -2 "$RES/raw/cold-$f.txt")"
    echo "idle_before=$LAST_IDLE others_cpu_pct=$(cpu_foreign)" >>"$RES/raw/cold-$f.txt"
    log "$(head -1 "$RES/raw/cold-$f.txt")"
done
wait_quiet
log "hyperfine: fork+exec of a static true, $HF_RUNS runs"
cpu_mark
timeout 600 hyperfine -N --warmup 5 --runs "$HF_RUNS" --export-json "$RES/raw/hf-fork-exec-true.json" \
    "$BIN/true" >"$RES/raw/hf-fork-exec-true.txt" 2>&1 || log "hyperfine failed (see $RES/raw/hf-fork-exec-true.txt)"
echo "idle_before=$LAST_IDLE others_cpu_pct=$(cpu_foreign)" >>"$RES/raw/hf-fork-exec-true.txt"

if [ $HAVE_PERF = 1 ]; then
    # 100 extra cold starts under perf (10 kHz): with every sample 0.1 ms,
    # samples / 100 x 0.1 ms is the time per cold start.
    wait_quiet
    log "perf: CPU $SERVER_CPU during 100 extra cold starts"
    perf record -e cpu-clock -F 10000 -g -a -C "$SERVER_CPU" -o "$RES/raw/perf-cold.data" -- \
        taskset -c "$CLIENT_CPU" timeout 300 "$BIN/coldstart" 127.0.0.1 "$P_MXU" cold 100 "$RES/raw/perf-cold-runs.tsv" \
        >"$RES/raw/perf-cold.log" 2>&1
    perf_tables cold
fi

for f in noop noop-conc1 exec-ok cold cold-static; do
    curl -sS -m 5 -H "$AUTH_HDR" "http://127.0.0.1:$P_MXU/v1/functions/$f" >"$RES/raw/mxu-function-$f.json" 2>/dev/null
done
stop_bg mxu
echo "--- top after the run" >"$RES/top-after.txt"
top -bn1 | head -15 >>"$RES/top-after.txt"
echo "uptime after: $(uptime)" >>"$RES/host.txt"

# ---------------------------------------------------------------- sandbox
# The sandbox executor beside bwrap, crun and runc (its own node and port).
if [ "$(id -u)" = 0 ]; then
    RES="$RES" MXU_BIN="$MXU_BIN" COLD_RUNS="$COLD_RUNS" HF_RUNS="$HF_RUNS" REPEATS="$REPEATS" \
        DURATION="$DURATION" sh "$BENCH/sandbox.sh" >"$RES/raw/sandbox.log" 2>&1 ||
        log "bench/sandbox.sh failed (see $RES/raw/sandbox.log)"
fi

# ---------------------------------------------------------------- vm
# The vm executor beside process and sandbox (its own node and port).
RES="$RES" MXU_BIN="$MXU_BIN" COLD_RUNS="$COLD_RUNS" REPEATS="$REPEATS" DURATION="$DURATION" \
    sh "$BENCH/vm.sh" >"$RES/raw/vm.log" 2>&1 ||
    log "bench/vm.sh failed (see $RES/raw/vm.log)"

# ---------------------------------------------------------------- resources
# kv/svc descriptors from inside a function, Redis beside direct hiredis
# (its own node and redis-server; results in $RES/resources/).
RES="$RES" MXU_BIN="$MXU_BIN" BENCH_PERF="$PERF" sh "$BENCH/resources.sh" >"$RES/raw/resources.log" 2>&1 ||
    log "bench/resources.sh failed (see $RES/raw/resources.log)"

# ---------------------------------------------------------------- metering
# Warm invoke with usage records on vs off, same binary, same run (its own
# two nodes; docs/metering.md).
MXU_BIN="$MXU_BIN" DURATION="$DURATION" ROUNDS="$REPEATS" SERVER_CPU="$SERVER_CPU" \
    CLIENT_CPU="$CLIENT_CPU" sh "$BENCH/metering.sh" >"$RES/metering.txt" 2>"$RES/raw/metering.log" ||
    log "bench/metering.sh failed (see $RES/raw/metering.log)"

# ---------------------------------------------------------------- services
# A service's per-step overhead (chain of 10 no-op steps vs 1) beside one
# nginx keep-alive proxy hop, same run (its own node and nginx; results in
# $RES/services/). BENCH_LOCK empty: this run already has the machine.
RES="$RES" MXU_BIN="$MXU_BIN" BENCH_PERF="$PERF" SERVER_CPU="$SERVER_CPU" CLIENT_CPU="$CLIENT_CPU" \
    BENCH_LOCK='' sh "$BENCH/services.sh" >"$RES/raw/services.log" 2>&1 ||
    log "bench/services.sh failed (see $RES/raw/services.log)"

# ---------------------------------------------------------------- summary
python3 "$BENCH/summary.py" "$RES" >"$RES/summary.md" || exit 1
cat "$RES/summary.md"
[ -s "$RES/metering.txt" ] && { echo; echo "metering on vs off:"; cat "$RES/metering.txt"; }
[ -s "$RES/services/summary.md" ] && { echo; echo "services (bench/services.sh):"; cat "$RES/services/summary.md"; }
log "raw results: $RES"
