#!/bin/sh
# Runs each libFuzzer harness given on the command line for $FUZZ_SECONDS seconds on its
# committed corpus (tests/fuzz/corpus/<name>/, new finds go to build/fuzz/corpus/<name>/).
# Prints executions per harness; exits non-zero if any harness finds a crash.
set -u
export OMP_NUM_THREADS=1
secs=${FUZZ_SECONDS:-60}
failed=0; passed=0
for bin in "$@"; do
    name=$(basename "$bin" | sed 's/^fuzz_//')
    seed=tests/fuzz/corpus/$name
    work=build/fuzz/corpus/$name
    mkdir -p "$work" build/fuzz/artifacts
    log=build/fuzz/$name.log
    "$bin" -max_total_time="$secs" -rss_limit_mb=2048 -max_len=65536 -timeout=10 \
        -artifact_prefix=build/fuzz/artifacts/"$name"- "$work" "$seed" >"$log" 2>&1
    rc=$?
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$')
    [ -n "$execs" ] || execs=$(grep -oE '#[0-9]+' "$log" | tail -1 | tr -d '#')
    if [ $rc -eq 0 ]; then passed=$((passed + 1)); echo "fuzz $name: ok, ${execs:-?} executions in ${secs}s";
    else failed=$((failed + 1)); echo "fuzz $name: FAILED (exit $rc), see $log"; tail -40 "$log"; fi
done
echo "fuzz: $passed passed, $failed failed"
[ $failed -eq 0 ]
