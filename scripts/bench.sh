#!/bin/sh
# Benchmarks (figures, not tests). Each benchmark prints its own figure and,
# where a peer exists, the peer's figure from the same run and the ratio.
set -e
for b in scripts/bench_*.sh; do
    [ -e "$b" ] || continue
    echo "=== $b"
    sh "$b"
done
