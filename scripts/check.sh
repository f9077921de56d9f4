#!/bin/sh
# The whole test suite, as `make check` and CI run it:
#   1. source checks (banned calls, formatting)
#   2. a -Werror build, its unit tests, end-to-end tests, the hostile suite,
#      the sandbox tests in a cgroup v2 guest (tests/vm/cgroup2.sh), and the
#      vm executor's e2e and hostile tests again with MXU_VM_RESET=cow
#   3. the same suite again on an ASan + UBSan build (a leak or UB report fails)
#   4. every fuzz target for a short while (FUZZ_SECONDS, default 15)
# Every step prints PASS/FAIL lines; the last line is "N passed, N failed".
#
#   scripts/check.sh            everything
#   QUICK=1 scripts/check.sh    skip the sanitizer pass and fuzzing
set -u
cd "$(dirname "$0")/.."
ROOT=$(pwd)
LOG=${CHECK_LOG:-$ROOT/build-check.log}
: > "$LOG"
FUZZ_SECONDS=${FUZZ_SECONDS:-15}

say() { printf '%s\n' "$*" | tee -a "$LOG"; }
# Run a step, keep its full output in the log, show its PASS/FAIL lines.
step() {
    name=$1
    shift
    echo "== $name" >>"$LOG"
    out=$("$@" 2>&1)
    rc=$?
    printf '%s\n' "$out" >>"$LOG"
    printf '%s\n' "$out" | grep -E '^(PASS|FAIL) ' | sed -E "s#^(PASS|FAIL) #\\1 $PREFIX#" | tee -a "$LOG.lines"
    if [ $rc -ne 0 ] && ! printf '%s\n' "$out" | grep -q '^FAIL '; then
        # It failed without saying which test: count the step itself.
        echo "FAIL $PREFIX$name (exit $rc; see $LOG)" | tee -a "$LOG.lines"
    fi
    return 0
}

build() {
    dir=$1
    shift
    if [ ! -f "$dir/build.ninja" ]; then
        meson setup "$dir" "$@" >/dev/null || { echo "FAIL meson setup $dir"; return 1; }
    fi
    if ninja -C "$dir"; then
        echo "PASS build"
    else
        echo "FAIL build"
        return 1
    fi
}

unit_tests() {
    dir=$1
    rc=0
    for t in "$dir"/tests/unit/test-*; do
        [ -f "$t" ] && [ -x "$t" ] || continue
        "$t" || rc=1
    done
    return $rc
}

e2e() {
    MXU_BUILD="$ROOT/$1" python3 tests/e2e/run.py
}

# Attacks from inside the sandbox executor (tests/hostile/run.py).
hostile() {
    MXU_BUILD="$ROOT/$1" python3 tests/hostile/run.py
}

# The vm executor's e2e and hostile tests again with the other way to reset
# a recycled guest (copy-on-write; the default is the dirty log, docs/vm.md
# "Pristine images"), so both stay tested end to end.
vm_cow_e2e() {
    MXU_VM_RESET=cow MXU_BUILD="$ROOT/$1" python3 tests/e2e/run.py vm
}
vm_cow_hostile() {
    MXU_VM_RESET=cow MXU_BUILD="$ROOT/$1" python3 tests/hostile/run.py vm
}

# The sandbox's tests again in a guest whose only hierarchy is cgroup v2
# (this machine has v1 controllers): tests/vm/cgroup2.sh.
cgroup2() {
    sh tests/vm/cgroup2.sh "$1"
}

rm -f "$LOG.lines"
PREFIX=""
step lint scripts/lint.sh
step build build build
if [ -x build/mxu ]; then
    step unit unit_tests build
    step e2e e2e build
    step hostile hostile build
    step cgroup2 cgroup2 build
    PREFIX="cow/"
    step e2e-cow vm_cow_e2e build
    step hostile-cow vm_cow_hostile build
    PREFIX=""
fi

if [ -z "${QUICK:-}" ]; then
    PREFIX="asan/"
    export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:detect_stack_use_after_return=0"
    export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
    export LSAN_OPTIONS="suppressions=$ROOT/scripts/lsan.supp"
    step build build build-asan -Db_sanitize=address,undefined -Db_lundef=false -Dbuildtype=debug
    if [ -x build-asan/mxu ]; then
        step unit unit_tests build-asan
        step e2e e2e build-asan
        step hostile hostile build-asan
    fi
    unset ASAN_OPTIONS UBSAN_OPTIONS LSAN_OPTIONS
    PREFIX=""
    step fuzz sh scripts/fuzz.sh "$FUZZ_SECONDS"
fi

passed=$(grep -c '^PASS ' "$LOG.lines" 2>/dev/null || true)
failed=$(grep -c '^FAIL ' "$LOG.lines" 2>/dev/null || true)
echo "full output: $LOG"
echo "${passed:-0} passed, ${failed:-0} failed"
[ "${failed:-0}" -eq 0 ]
