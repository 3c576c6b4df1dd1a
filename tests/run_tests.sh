#!/bin/sh
# Test programs that run the CLIs find them in $MD_BIN (build/bin or build/san/bin).
# Runs each test program given on the command line from the repository root,
# prints its output, and ends with one line: "tests: N passed, N failed".
passed=0; failed=0; failed_names=""
start=$(date +%s)
for t in "$@"; do
    name=$(basename "$t")
    echo "=== $name"
    t0=$(date +%s)
    if "$t"; then passed=$((passed + 1)); st=ok; else failed=$((failed + 1)); failed_names="$failed_names $name"; st=FAILED; fi
    echo "=== $name: $st ($(( $(date +%s) - t0 )) s)"
done
echo
[ -n "$failed_names" ] && echo "failed:$failed_names"
echo "total time $(( $(date +%s) - start )) s"
echo "tests: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
