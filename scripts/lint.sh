#!/bin/sh
# Source checks, in the spirit of curl's checksrc: banned calls and formatting.
# Prints one PASS/FAIL line per check (scripts/check.sh counts them).
set -u
cd "$(dirname "$0")/.."
status=0

files=$(git ls-files '*.c' '*.h' 2>/dev/null || find src sdk include tests fuzz examples catalog -name '*.[ch]')

# Calls that overflow buffers or keep hidden state. snprintf, memcpy and
# mxu_buf do everything these do, with a length.
banned='\b(sprintf|vsprintf|strcpy|stpcpy|strcat|strncat|strncpy|gets|strtok|tmpnam|mktemp)[[:space:]]*\('
hits=$(grep -nE "$banned" $files 2>/dev/null | grep -v 'lint: allow')
if [ -n "$hits" ]; then
    echo "FAIL lint/banned-functions:"
    echo "$hits" | sed 's/^/  /'
    status=1
else
    echo "PASS lint/banned-functions"
fi

if command -v clang-format >/dev/null 2>&1; then
    bad=""
    for f in $files; do
        if ! clang-format --dry-run --Werror "$f" >/dev/null 2>&1; then
            bad="$bad $f"
        fi
    done
    if [ -n "$bad" ]; then
        echo "FAIL lint/clang-format: not formatted (run 'make format'):$bad"
        status=1
    else
        echo "PASS lint/clang-format"
    fi
fi
exit $status
