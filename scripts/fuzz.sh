#!/bin/sh
# Build the libFuzzer targets (clang, ASan + UBSan) and run each for N seconds.
#   scripts/fuzz.sh [SECONDS] [TARGET]     default 60 s, every target
# Corpora grow in build-fuzz/corpus-<target>; seeds come from fuzz/corpus/<target>.
set -u
cd "$(dirname "$0")/.."
secs=${1:-60}
only=${2:-}
dir=build-fuzz
if [ ! -f "$dir/build.ninja" ]; then
    CC=clang meson setup "$dir" -Dfuzz=true -Db_sanitize=address,undefined -Db_lundef=false \
        -Dc_args=-fsanitize=fuzzer-no-link >/dev/null || { echo "FAIL fuzz/setup"; exit 1; }
fi
ninja -C "$dir" >/dev/null || { echo "FAIL fuzz/build"; exit 1; }
rc=0
for t in "$dir"/fuzz/fuzz-*; do
    [ -f "$t" ] && [ -x "$t" ] || continue
    name=$(basename "$t")
    [ -n "$only" ] && [ "$name" != "$only" ] && continue
    mkdir -p "$dir/corpus-$name"
    seeds=""
    [ -d "fuzz/corpus/$name" ] && seeds="fuzz/corpus/$name"
    # shellcheck disable=SC2086
    if "$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        "$dir/corpus-$name" $seeds >"$dir/$name.log" 2>&1; then
        runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$dir/$name.log" | grep -o '[0-9]*$')
        echo "PASS fuzz/$name (${secs}s, ${runs:-?} inputs)"
    else
        echo "FAIL fuzz/$name: see $dir/$name.log"
        grep -A20 -E 'ERROR|SUMMARY' "$dir/$name.log" | head -40
        rc=1
    fi
done
exit $rc
