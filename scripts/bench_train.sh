#!/bin/sh
# Train-step benchmark (issue 9): R50-FPN, 480x640, batch 2, THREADS threads (default 2),
# minidet (build/bin/tool_bench_model: forward + proposals + RoI heads + backward; the
# optimizer step and loss maths are < 1% and not included) and torchvision 0.14 CPU
# (scripts/bench_torchvision.py: full training step incl. losses and SGD) one after the
# other, ROUNDS times (default 3) interleaved: minidet, torchvision, minidet, torchvision, ...
# Each run gives medians over ITERS steps (after one warm-up); each round gives the ratio
# torchvision / minidet (> 1 means minidet is faster) by wall time and by process CPU time
# (user+sys of all threads: on a machine shared with other jobs the wall time also measures
# their load, the CPU time much less so). The speed of the shared VM drifts by 20-30 % over
# minutes, so the figure to quote is the median of the per-round ratios, not a ratio of
# medians taken minutes apart.
# Needs /usr/bin/python3 with torchvision (make deps-dev) for the peer figure.
set -eu
THREADS=${THREADS:-2}
ITERS=${ITERS:-3}
ROUNDS=${ROUNDS:-3}
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
[ -x build/bin/tool_bench_model ] || { echo "bench_train: build/bin/tool_bench_model missing (make)"; exit 1; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
have_tv=0
/usr/bin/python3 -c 'import torchvision' 2>/dev/null && have_tv=1
md_log=$(mktemp)
ratios=$(mktemp)
trap 'rm -f "$md_log" "$ratios"' EXIT
r=1
while [ "$r" -le "$ROUNDS" ]; do
    echo "--- round $r of $ROUNDS ($(date -u +%H:%M:%S) UTC, load average $(cut -d' ' -f1-3 /proc/loadavg))"
    build/bin/tool_bench_model --depth 50 --batch 2 --h 480 --w 640 --iters $((ITERS + 1)) --threads "$THREADS" > "$md_log"
    [ "$r" -eq 1 ] && cat "$md_log"
    md=$(grep '^iter' "$md_log" | tail -n +2 | sed 's/.*(\([0-9.]*\) s\/image).*/\1/' | median)
    md_cpu=$(grep '^iter' "$md_log" | tail -n +2 | sed 's/.*cpu \([0-9.]*\) s.*/\1/' | median)
    md_rss=$(grep '^iter' "$md_log" | tail -1 | sed 's/.*peak RSS \([0-9]*\) MiB.*/\1/')
    echo "minidet:     ${md} s/image (median), CPU ${md_cpu} s/step (median), peak RSS ${md_rss} MiB"
    if [ "$have_tv" -eq 1 ]; then
        tv=$(/usr/bin/python3 scripts/bench_torchvision.py --mode train --threads "$THREADS" --iters "$ITERS" 2>/dev/null)
        echo "torchvision: $tv"
        tvs=$(echo "$tv" | sed 's/.*"s_per_image": \([0-9.]*\).*/\1/')
        tvc=$(echo "$tv" | sed 's/.*"cpu_s_per_iter_median": \([0-9.]*\).*/\1/')
        awk -v a="$tvs" -v b="$md" -v c="$tvc" -v d="$md_cpu" 'BEGIN { printf "round ratio torchvision/minidet: %.2fx wall, %.2fx CPU time\n", a / b, c / d; printf "%.4f %.4f\n", a / b, c / d > "/dev/stderr" }' 2>> "$ratios"
    else
        echo "torchvision: not installed (make deps-dev) — no peer figure this run"
    fi
    r=$((r + 1))
done
if [ "$have_tv" -eq 1 ]; then
    w=$(cut -d' ' -f1 "$ratios" | median)
    c=$(cut -d' ' -f2 "$ratios" | median)
    lo=$(cut -d' ' -f1 "$ratios" | sort -n | head -1)
    hi=$(cut -d' ' -f1 "$ratios" | sort -n | tail -1)
    printf "ratio torchvision/minidet, median of %d rounds: %.2fx wall (rounds %.2f-%.2f), %.2fx CPU time (target >= 2x)\n" "$ROUNDS" "$w" "$lo" "$hi" "$c"
fi
