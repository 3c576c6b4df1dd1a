#!/bin/sh
# Train-step benchmark: minidet's ./train against torchvision 0.14's training loop, like for like.
#   sh scripts/bench_train.sh [COCO_DIR]     (or COCO=COCO_DIR make bench; env: ROUNDS=3 WARMUP=3 ITERS=5
#       THREADS=2 WORKERS=2 MIN_SIZE=480 MAX_SIZE=640 KERNELS="default Haswell avx2", ANN= and IMAGES= for other layouts)
# COCO_DIR holds annotations/instances_train2017.json and train2017/ (the layout scripts/get_coco.sh writes);
# by default the repository's real-COCO sample, tests/data/coco-sample (10 images: later steps repeat them).
# Both sides train R50-FPN (frozen BN, conv1 + layer1 frozen, 81 classes) from the same random initial
# weights (written by torchvision, converted with scripts/convert_torchvision.py) on the same real COCO
# batches: build/bin/tool_data_bench --plan lists the batches ./train draws (images, flips, targets) and
# scripts/bench_torchvision.py feeds exactly those to torchvision. Both resize with min_size / max_size
# (480 / 640 by default, pad to 32), batch 2, THREADS compute threads, WORKERS loader workers (minidet:
# threads of its loader; torchvision: DataLoader worker processes decoding with PIL), data loading
# included on both sides. minidet: ./train configs/r50_smooth_l1.cfg with overrides, log_every = 1, step
# times from metrics.jsonl (sec_per_iter: wall from the end of one step to the end of the next,
# loader wait included; cpu_s_per_iter: process CPU time). torchvision: model(images, targets), sum of
# the losses, backward, SGD with momentum, timed the same way (CPU of the worker processes included), in
# channels-last memory format (PyTorch's own CPU advice for CNNs; 4-7 % less CPU time per step here than
# the default format, docs/BENCHMARKS.md; TV_CHANNELS_LAST=0 turns it off).
# WARMUP steps are dropped, the next ITERS give medians. Each round runs, for each CPU setting in
# KERNELS (scripts/lib_bench.sh's with_kernel: "default" = OpenBLAS's own kernel for this CPU;
# "Haswell" = OpenBLAS's AVX2 kernel on both sides, torch's oneDNN convolutions still on the CPU's
# widest ISA; "avx2" = an AVX2-only machine, Haswell plus oneDNN capped at AVX2), minidet and
# torchvision back to back, the order
# alternating between rounds; the figure is the median of the per-round ratios torchvision / minidet
# (> 1: minidet is faster), by wall and by CPU time. On a machine shared with other jobs the wall time also
# measures their load, so each round prints the load average; CPU time is the steadier figure.
# Needs /usr/bin/python3 with torchvision (make deps-dev) for the peer figure and the shared weights.
set -eu
THREADS=${THREADS:-2}
WARMUP=${WARMUP:-3}
ITERS=${ITERS:-5}
ROUNDS=${ROUNDS:-3}
WORKERS=${WORKERS:-2}
MIN_SIZE=${MIN_SIZE:-480}
MAX_SIZE=${MAX_SIZE:-640}
KERNELS=${KERNELS:-default Haswell avx2}
TV_CHANNELS_LAST=${TV_CHANNELS_LAST:-1}
COCO=${1:-${COCO:-tests/data/coco-sample}}
ANN=${ANN:-$COCO/annotations/instances_train2017.json}
IMAGES=${IMAGES:-$COCO/train2017}
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
if [ ! -f "$ANN" ] || [ ! -d "$IMAGES" ]; then
    echo "bench_train: $ANN or $IMAGES missing (give a COCO directory: sh scripts/bench_train.sh COCO_DIR, or ANN= and IMAGES=); no figure this run"
    exit 0
fi
[ -x ./train ] && [ -x build/bin/tool_data_bench ] && [ -x build/bin/tool_bench_model ] || { echo "bench_train: build first (make)"; exit 1; }
. "$(dirname "$0")/lib_bench.sh"
have_tv=0
/usr/bin/python3 -c 'import torchvision' 2>/dev/null && have_tv=1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
steps=$((WARMUP + ITERS))
build/bin/tool_data_bench "$ANN" "$IMAGES" --batch 2 --plan "$steps" > "$tmp/plan"
weights=
if [ "$have_tv" -eq 1 ]; then
    /usr/bin/python3 scripts/bench_torchvision.py --save-init "$tmp/init.pth"
    /usr/bin/python3 scripts/convert_torchvision.py "$tmp/init.pth" "$tmp/init.safetensors" > /dev/null
    weights=$tmp/init.safetensors
else
    echo "torchvision: not installed (make deps-dev) — no peer figure this run; minidet starts from its own random weights"
fi
echo "data: $ANN, $steps batches of 2 ($(cut -d' ' -f4,5 "$tmp/plan" | sort | uniq -c | sort -rn | awk '{printf "%s%dx %sx%s", (NR > 1 ? ", " : ""), $1, $2, $3}') as stored), min_size $MIN_SIZE, max_size $MAX_SIZE; $THREADS threads, $WORKERS loader workers; $WARMUP warm-up steps, $ITERS timed; OMP_WAIT_POLICY=$OMP_WAIT_POLICY; torchvision channels-last: $TV_CHANNELS_LAST"
# field NAME metrics.jsonl: NAME's value on each training line, one a line
field() { awk -F"\"$1\":" '/"type":"train"/ { split($2, a, /[,}]/); print a[1] }' "$2"; }
# one run of each side: prints "wall cpu rss" (medians of the timed steps, peak RSS) into $tmp/<side>
run_md() {
    rm -rf "$tmp/md"
    with_kernel "$1" ./train configs/r50_smooth_l1.cfg run.output_dir="$tmp/md" run.name=b run.threads="$THREADS" run.log_every=1 \
        data.train_ann="$ANN" data.train_images="$IMAGES" data.val_ann= data.workers="$WORKERS" model.weights="$weights" \
        model.min_size="$MIN_SIZE" model.max_size="$MAX_SIZE" solver.max_iter="$steps" solver.checkpoint_every=0 --quiet \
        > "$tmp/md.log" 2>&1 || { echo "minidet: ./train failed:"; tail -n 3 "$tmp/md.log"; exit 1; }
    mf=$tmp/md/b/metrics.jsonl
    sw=$(field sec_per_iter "$mf" | tail -n +$((WARMUP + 1)) | median)
    sc=$(field cpu_s_per_iter "$mf" | tail -n +$((WARMUP + 1)) | median)
    sr=$(field rss_mb "$mf" | sort -n | tail -1)
    echo "$sw $sc $sr" > "$tmp/md.res"
    echo "  minidet     ($1): step ${sw} s wall, ${sc} s CPU (medians), peak RSS ${sr} MiB; all steps: $(field sec_per_iter "$mf" | xargs printf ' %.2f') s wall,$(field cpu_s_per_iter "$mf" | xargs printf ' %.2f') s CPU"
}
run_tv() {
    with_kernel "$1" /usr/bin/python3 scripts/bench_torchvision.py --plan "$tmp/plan" --images "$IMAGES" --weights "$tmp/init.pth" \
        --threads "$THREADS" --workers "$WORKERS" --min-size "$MIN_SIZE" --max-size "$MAX_SIZE" --warmup "$WARMUP" \
        --iters "$ITERS" $([ "$TV_CHANNELS_LAST" = 1 ] && echo --channels-last) > "$tmp/tv.json" 2> "$tmp/tv.log" || { echo "torchvision run failed:"; tail -n 3 "$tmp/tv.log"; exit 1; }
    /usr/bin/python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); print(d["s_per_iter_median"], d["cpu_s_per_iter_median"], d["peak_rss_mb"]); print(" ".join("%.2f" % x for x in d["step_s"]), "s wall,", " ".join("%.2f" % x for x in d["step_cpu_s"]), "s CPU", file=sys.stderr)' \
        "$tmp/tv.json" > "$tmp/tv.res" 2> "$tmp/tv.steps"
    read -r sw sc sr < "$tmp/tv.res"
    echo "  torchvision ($1): step ${sw} s wall, ${sc} s CPU (medians), peak RSS ${sr} MiB (main process); all steps: $(cat "$tmp/tv.steps")"
}
for k in $KERNELS; do
    echo "kernel setting '$k': minidet $(with_kernel "$k" build/bin/tool_bench_model --iters 0 | sed -n 's/.*; BLAS: //p')"
    [ "$have_tv" -eq 1 ] && echo "  torchvision: $(with_kernel "$k" /usr/bin/python3 scripts/bench_torchvision.py --info --threads "$THREADS")"
    : > "$tmp/ratios.$k"
done
r=1
while [ "$r" -le "$ROUNDS" ]; do
    for k in $KERNELS; do
        echo "--- round $r of $ROUNDS, kernel '$k' ($(date -u +%H:%M:%S) UTC, load average $(cut -d' ' -f1-3 /proc/loadavg))"
        if [ "$have_tv" -eq 1 ] && [ $((r % 2)) -eq 0 ]; then order="tv md"; else order="md tv"; fi
        for side in $order; do
            if [ "$side" = md ]; then run_md "$k"
            elif [ "$have_tv" -eq 1 ]; then run_tv "$k"; fi
        done
        if [ "$have_tv" -eq 1 ]; then
            read -r mw mc mr < "$tmp/md.res"
            read -r tw tc tr < "$tmp/tv.res"
            awk -v a="$tw" -v b="$mw" -v c="$tc" -v d="$mc" 'BEGIN { printf "  round ratio torchvision/minidet: %.2fx wall, %.2fx CPU time\n", a / b, c / d }'
            echo "$tw $mw $tc $mc $mr $tr" >> "$tmp/ratios.$k"
        fi
    done
    r=$((r + 1))
done
if [ "$have_tv" -eq 1 ]; then
    for k in $KERNELS; do
        awk '{ print $1 / $2, $3 / $4, $5, $6 }' "$tmp/ratios.$k" > "$tmp/q"
        w=$(cut -d' ' -f1 "$tmp/q" | median); c=$(cut -d' ' -f2 "$tmp/q" | median)
        lo=$(cut -d' ' -f1 "$tmp/q" | sort -n | head -1); hi=$(cut -d' ' -f1 "$tmp/q" | sort -n | tail -1)
        clo=$(cut -d' ' -f2 "$tmp/q" | sort -n | head -1); chi=$(cut -d' ' -f2 "$tmp/q" | sort -n | tail -1)
        mr=$(cut -d' ' -f3 "$tmp/q" | sort -n | tail -1); tr=$(cut -d' ' -f4 "$tmp/q" | sort -n | head -1)
        printf "train step, kernel '%s': torchvision/minidet, median of %d rounds: %.2fx wall (rounds %.2f-%.2f), %.2fx CPU time (rounds %.2f-%.2f); peak RSS minidet %s MiB vs torchvision %s MiB (target: >= 2x, RSS below)\n" \
            "$k" "$ROUNDS" "$w" "$lo" "$hi" "$c" "$clo" "$chi" "$mr" "$tr"
    done
fi
