#!/bin/sh
# Data-parallel benchmark (issue 17), after `make MPI=1`:
# 1. R50-FPN training steps at 480x640, global batch 2 (random init, synthetic 640x480 shapes):
#    one process x THREADS threads vs THREADS ranks x 1 thread (mpirun, --bind-to core), ROUNDS
#    interleaved rounds of ITERS iterations each; prints the median seconds per iteration (after the
#    first two) and the exposed gradient-sum seconds per iteration (metrics.jsonl comm_exposed_s).
# 2. build/mpi/bin/tool_bench_allreduce (the real R50-FPN gradient, 25 MB buckets) on 2, 4 and 8 ranks.
# Figures, not tests: the 2-core VM is shared, so its speed drifts between runs.
set -eu
THREADS=${THREADS:-2}
ITERS=${ITERS:-6}
ROUNDS=${ROUNDS:-2}
B=build/mpi/bin
OUT=build/bench_mpi
[ -x $B/train ] || { echo "bench_mpi: skipped, $B/train missing (make MPI=1)"; exit 0; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_WAIT_POLICY=passive
mkdir -p $OUT
[ -f $OUT/data/annotations.json ] || $B/tool_make_shapes $OUT/data --num 16 --seed 3 --size 640x480 --jpeg > /dev/null
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
ov="data.train_ann=$OUT/data/annotations.json data.train_images=$OUT/data/images data.val_ann= model.weights= model.num_classes=5
    model.min_size=480 model.max_size=640 solver.ims_per_batch=2 solver.max_iter=$ITERS solver.checkpoint_every=0 run.log_every=1
    run.output_dir=$OUT/runs data.workers=1"
report() { # run name -> "s/iter comm-s/iter" medians over iterations 3..
    tail -n +3 $OUT/runs/$1/metrics.jsonl | grep '"train"' > $OUT/m.txt
    s=$(sed 's/.*"sec_per_iter":\([0-9.e-]*\).*/\1/' $OUT/m.txt | median)
    c=$(sed 's/.*"comm_exposed_s":\([0-9.e-]*\).*/\1/' $OUT/m.txt | median)
    echo "$s $c"
}
r=1
while [ "$r" -le "$ROUNDS" ]; do
    echo "--- round $r ($(date -u +%H:%M:%S) UTC, load average $(cut -d' ' -f1-3 /proc/loadavg))"
    rm -rf $OUT/runs
    $B/train configs/r50_giou.cfg run.name=p1 run.threads=$THREADS $ov --quiet
    set -- $(report p1)
    echo "1 process x $THREADS threads: $1 s/iter"
    mpirun --oversubscribe --bind-to core -np "$THREADS" $B/train configs/r50_giou.cfg run.name=rN run.threads=1 $ov --quiet
    set -- $(report rN)
    awk -v s="$1" -v c="$2" -v n="$THREADS" 'BEGIN { printf "%d ranks x 1 thread: %s s/iter, exposed gradient sum %s s/iter (%.1f %%)\n", n, s, c, 100 * c / s }'
    r=$((r + 1))
done
for np in 2 4 8; do
    echo "--- MPI_Allreduce of the R50-FPN gradient, $np ranks on this machine"
    mpirun --oversubscribe -np $np $B/tool_bench_allreduce --reps 5
done
