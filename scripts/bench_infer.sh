#!/bin/sh
# Inference benchmark: R50-FPN at 800x1333 (COCO test size), batch 1, THREADS threads (default 2):
# minidet (build/bin/tool_bench_model --infer: transform-free forward + proposals + RoI heads +
# postprocess) and torchvision 0.14 CPU (scripts/bench_torchvision.py --mode infer: model.eval()
# forward, which also normalises and resizes; at this size the resize is the identity) one after the
# other, for each CPU setting in KERNELS (default "default Haswell avx2", as scripts/bench_train.sh:
# OpenBLAS's own kernel; its AVX2 kernel on both sides; an AVX2-only machine). Random weights in
# both (the time does not depend on the values; identical detections for identical weights are tested
# in tests/test_model and checked on real images with scripts/check_detections.py). Prints the medians
# over ITERS iterations after WARMUP warm-up iterations on each side (default 3: torch's first
# iterations are slower while its allocator and oneDNN primitive cache fill), CPU time next to wall
# time, and the ratio torchvision / minidet (> 1: minidet is faster). torchvision runs in
# channels-last memory format, PyTorch's own CPU advice for CNNs (about 14 % faster here at this
# size, docs/BENCHMARKS.md); TV_CHANNELS_LAST=0 turns it off.
# Needs /usr/bin/python3 with torchvision (make deps-dev) for the peer figure.
set -eu
THREADS=${THREADS:-2}
ITERS=${ITERS:-3}
WARMUP=${WARMUP:-3}
TV_CHANNELS_LAST=${TV_CHANNELS_LAST:-1}
H=${H:-800}
W=${W:-1333}
KERNELS=${KERNELS:-default Haswell avx2}
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
[ -x build/bin/tool_bench_model ] || { echo "bench_infer: build/bin/tool_bench_model missing (make)"; exit 1; }
. "$(dirname "$0")/lib_bench.sh"
have_tv=0
/usr/bin/python3 -c 'import torchvision' 2>/dev/null && have_tv=1
log=$(mktemp)
trap 'rm -f "$log"' EXIT
for k in $KERNELS; do
    echo "--- kernel setting '$k' ($(date -u +%H:%M:%S) UTC, load average $(cut -d' ' -f1-3 /proc/loadavg))"
    with_kernel "$k" build/bin/tool_bench_model --depth 50 --batch 1 --h "$H" --w "$W" --iters $((ITERS + WARMUP)) --threads "$THREADS" --infer > "$log"
    head -n 1 "$log"
    md=$(grep '^iter' "$log" | tail -n +$((WARMUP + 1)) | sed 's/.*inference \([0-9.]*\) s.*/\1/' | median)
    mc=$(grep '^iter' "$log" | tail -n +$((WARMUP + 1)) | sed 's/.*cpu \([0-9.]*\) s.*/\1/' | median)
    rss=$(grep '^iter' "$log" | tail -1 | sed 's/.*peak RSS \([0-9]*\) MiB.*/\1/')
    echo "minidet inference ${H}x${W}: ${md} s/image wall, ${mc} s CPU (medians), peak RSS ${rss} MiB"
    if [ "$have_tv" -eq 1 ]; then
        tv=$(with_kernel "$k" /usr/bin/python3 scripts/bench_torchvision.py --mode infer --threads "$THREADS" --height "$H" --width "$W" \
            --batch 1 --warmup "$WARMUP" --iters "$ITERS" \
            $([ "$TV_CHANNELS_LAST" = 1 ] && echo --channels-last) 2>/dev/null)
        echo "torchvision: $tv"
        tvs=$(echo "$tv" | sed 's/.*"s_per_image": \([0-9.]*\).*/\1/')
        tvc=$(echo "$tv" | sed 's/.*"cpu_s_per_iter_median": \([0-9.]*\).*/\1/')
        awk -v a="$tvs" -v b="$md" -v c="$tvc" -v d="$mc" -v k="$k" \
            'BEGIN { printf "inference, kernel '\''%s'\'': torchvision/minidet %.2fx wall, %.2fx CPU time (target > 1x)\n", k, a / b, c / d }'
    else
        echo "torchvision: not installed (make deps-dev) — no peer figure this run"
    fi
done
