#!/bin/sh
# Data-loading stall benchmark (issue 9: "data loading never stalls the step"). Real COCO
# images (JPEG, resized to 800/1333 as in training) from COCO_DIR, the first argument or $COCO:
# a COCO 2017 copy in the layout scripts/get_coco.sh writes (annotations/instances_train2017.json,
# train2017/); at least 100 training images (docs/BENCHMARKS.md used a 208-image excerpt):
#   1. the loader alone: build/bin/tool_data_bench with the training workers (default 2);
#   2. the trainer: ./train configs/r18_giou.cfg at a quarter width with FPN 64 (a cheap step at this
#      image size, so the hardest case for the loader) for ITERS steps with log_every = 1, summing
#      metrics.jsonl's data_wait_s (time the step waited for its batch) against the step time.
# Stall share = waited / step time (target: ~0). Without COCO_DIR it says what it needs and gives
# no figure (exit 0, so `make bench` goes on).
#   usage: sh scripts/bench_data.sh [COCO_DIR]      (or COCO=COCO_DIR make bench)
set -eu
COCO=${1:-${COCO:-data/coco}}
ITERS=${ITERS:-10}
WORKERS=${WORKERS:-2}
THREADS=${THREADS:-2}
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
if [ ! -f "$COCO/annotations/instances_train2017.json" ]; then
    echo "bench_data: no COCO data at $COCO (needs $COCO/annotations/instances_train2017.json and $COCO/train2017/);"
    echo "  give a COCO 2017 directory: sh scripts/bench_data.sh COCO_DIR, or COCO=COCO_DIR make bench;"
    echo "  sh scripts/get_coco.sh downloads COCO 2017 into data/coco. No figure this run."
    exit 0
fi
[ -x build/bin/tool_data_bench ] && [ -x ./train ] || { echo "bench_data: build first (make)"; exit 1; }
build/bin/tool_data_bench "$COCO/annotations/instances_train2017.json" "$COCO/train2017" --workers "$WORKERS" --batch 2 \
    --images 100 --min-size 800 --max-size 1333 2>&1 | tail -n 2
out=$(mktemp -d)
./train configs/r18_giou.cfg run.output_dir="$out" run.name=bench run.threads="$THREADS" run.log_every=1 \
    data.train_ann="$COCO/annotations/instances_train2017.json" data.train_images="$COCO/train2017" data.val_ann= \
    data.workers="$WORKERS" model.weights= model.width_mult=0.25 model.fpn_channels=64 model.representation_size=256 model.trainable_layers=5 model.norm=bn \
    solver.max_iter="$ITERS" solver.checkpoint_every=0 > "$out/log" 2>&1 || { tail -n 3 "$out/log"; rm -rf "$out"; exit 1; }
# the first step also waits for the loader to start: report it apart
awk -F'[,:}]' '/"type":"train"/ {
        for (i = 1; i <= NF; i++) { if ($i ~ /"sec_per_iter"/) s = $(i+1); if ($i ~ /"data_wait_s"/) w = $(i+1); if ($i ~ /"iter"/ && !it) it = $(i+1) }
        n++; if (n == 1) { w1 = w; s1 = s } else { W += w; S += s }
        it = 0 }
    END { printf "train (R18 x0.25, FPN 64, 800/1333, batch 2, %d workers): first step waited %.3f s of %.3f s; steps 2..%d waited %.4f s of %.2f s = %.2f%% stall\n", '"$WORKERS"', w1, s1, n, W, S, (S > 0 ? 100 * W / S : 0) }' \
    "$out/bench/metrics.jsonl"
rm -rf "$out"
