#!/bin/sh
# Inference benchmark (issue 9): R50-FPN at 800x1333 (COCO test size), batch 1, THREADS threads
# (default 2): minidet (build/bin/tool_bench_model --infer: transform-free forward + proposals +
# RoI heads + postprocess) and torchvision 0.14 CPU (scripts/bench_torchvision.py --mode infer:
# model.eval() forward) one after the other in the same run, random weights in both (the time does
# not depend on the values; identical detections for identical weights are tested in tests/test_model
# and checked on real images with scripts/check_detections.py). Prints the medians over ITERS
# iterations after one warm-up and the ratio torchvision / minidet (> 1: minidet is faster).
# Needs /usr/bin/python3 with torchvision (make deps-dev) for the peer figure.
set -eu
THREADS=${THREADS:-2}
ITERS=${ITERS:-3}
H=${H:-800}
W=${W:-1333}
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
[ -x build/bin/tool_bench_model ] || { echo "bench_infer: build/bin/tool_bench_model missing (make)"; exit 1; }
log=$(mktemp)
build/bin/tool_bench_model --depth 50 --batch 1 --h "$H" --w "$W" --iters $((ITERS + 1)) --threads "$THREADS" --infer | tee "$log"
md=$(grep '^iter' "$log" | tail -n +2 | sed 's/.*inference \([0-9.]*\) s.*/\1/' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
rss=$(grep '^iter' "$log" | tail -1 | sed 's/.*peak RSS \([0-9]*\) MiB.*/\1/')
rm -f "$log"
echo "minidet inference ${H}x${W}: ${md} s/image (median), peak RSS ${rss} MiB"
if /usr/bin/python3 -c 'import torchvision' 2>/dev/null; then
    tv=$(/usr/bin/python3 scripts/bench_torchvision.py --mode infer --threads "$THREADS" --height "$H" --width "$W" --batch 1 --iters "$ITERS" 2>/dev/null)
    echo "torchvision: $tv"
    tvs=$(echo "$tv" | sed 's/.*"s_per_image": \([0-9.]*\).*/\1/')
    awk -v a="$tvs" -v b="$md" 'BEGIN { printf "ratio torchvision/minidet (inference): %.2fx wall (target > 1x)\n", a / b }'
else
    echo "torchvision: not installed (make deps-dev) — no peer figure this run"
fi
