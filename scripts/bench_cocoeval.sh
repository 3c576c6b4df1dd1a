#!/bin/sh
# COCO bbox evaluation on a COCO-val-sized case (docs/DESIGN.md, "Numbers it is held to":
# >= 20x faster than pycocotools).
# Generates build/bench/cocoeval_{gt,dets}.json once (deterministic: tool_gen_cocoeval_bench,
# 5000 images, ~34.7k GT boxes, ~430k detections), then times `./eval --ann --results`
# end to end (JSON loading included) RUNS times and reports the best and the median.
# pycocotools is not installed here and PyPI is not reachable, so its figure is the
# one recorded in docs/ANCHORS.md for the 2-core development VM (51 s), not a rerun.
set -e
BIN=${MD_BIN:-build/bin}
OUT=build/bench
RUNS=${RUNS:-5}
PYCOCO_S=51
[ -x "$BIN/eval" ] && [ -x "$BIN/tool_gen_cocoeval_bench" ] || { echo "bench_cocoeval: build first (make)"; exit 1; }
if [ ! -s "$OUT/cocoeval_dets.json" ] || [ ! -s "$OUT/cocoeval_gt.json" ] || [ "$BIN/tool_gen_cocoeval_bench" -nt "$OUT/cocoeval_dets.json" ]; then
    "$BIN/tool_gen_cocoeval_bench" "$OUT"
fi
echo "cocoeval: $(du -m "$OUT/cocoeval_gt.json" | cut -f1) MB GT, $(du -m "$OUT/cocoeval_dets.json" | cut -f1) MB results; $(nproc) cores; load average $(cut -d' ' -f1-3 /proc/loadavg)"
times=""
i=0
while [ $i -lt "$RUNS" ]; do
    t0=$(date +%s.%N)
    "$BIN/eval" --ann "$OUT/cocoeval_gt.json" --results "$OUT/cocoeval_dets.json" --json "$OUT/cocoeval_out.json" > "$OUT/cocoeval_summary.txt" 2> "$OUT/cocoeval_log.txt"
    t1=$(date +%s.%N)
    times="$times $(echo "$t1 $t0" | awk '{printf "%.3f", $1 - $2}')"
    i=$((i + 1))
done
cat "$OUT/cocoeval_log.txt"
head -1 "$OUT/cocoeval_summary.txt"
echo "$times" | tr ' ' '\n' | grep . | sort -n | awk -v ref=$PYCOCO_S '
    { t[NR] = $1 }
    END {
        best = t[1]; med = t[int((NR + 1) / 2)]
        printf "minidet ./eval: best %.3f s, median %.3f s of %d runs (wall, JSON loading included)\n", best, med, NR
        printf "pycocotools 2.0: %d s (reference figure from docs/ANCHORS.md, 2-core development VM; not rerun: not installed, no PyPI)\n", ref
        printf "speed-up: %.0fx (best), %.0fx (median); target >= 20x\n", ref / best, ref / med
    }'
