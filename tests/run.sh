#!/usr/bin/env bash
# run.sh BUILD - run every test program in BUILD/tests and the shell tests in
# tests/*.test.sh; print one line per test and end with "N passed, N failed".
# A test program exits 0 (pass), 77 (skipped: it prints why) or anything else (fail).
set -u
BUILD=${1:-build}
cd "$(dirname "$0")/.."
pass=0 fail=0 skip=0 failed=()
run_one() {
    local name=$1; shift
    local log; log=$(mktemp)
    local t0=${EPOCHREALTIME/./}
    "$@" >"$log" 2>&1
    local rc=$?
    local t1=${EPOCHREALTIME/./}; local dt=$(( (t1 - t0) / 100000 )); dt="$((dt / 10)).$((dt % 10))"
    if [ $rc -eq 0 ]; then
        pass=$((pass + 1)); printf 'PASS %-34s %6ss\n' "$name" "$dt"
    elif [ $rc -eq 77 ]; then
        skip=$((skip + 1)); printf 'SKIP %-34s %s\n' "$name" "$(tail -n 1 "$log")"
    else
        fail=$((fail + 1)); failed+=("$name"); printf 'FAIL %-34s %6ss (exit %d)\n' "$name" "$dt" "$rc"
        tail -n 40 "$log" | sed 's/^/    | /'
    fi
    rm -f "$log"
}
for t in "$BUILD"/tests/test_*; do
    [ -x "$t" ] || continue
    run_one "$(basename "$t")" "$t"
done
for t in tests/*.test.sh; do
    [ -f "$t" ] || continue
    run_one "$(basename "$t" .test.sh)" bash "$t" "$BUILD"
done
[ ${#failed[@]} -eq 0 ] || echo "failed: ${failed[*]}"
if [ $skip -gt 0 ]; then echo "$pass passed, $fail failed, $skip skipped"; else echo "$pass passed, $fail failed"; fi
[ $fail -eq 0 ]
