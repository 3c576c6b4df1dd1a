#!/bin/sh
# The embedded default job (`make demo`): compare the five box-regression losses
# on the synthetic shapes dataset.
#   1. generate data/shapes/{train,val} with build/bin/tool_make_shapes (deterministic);
#   2. stage 0, shared: train configs/shapes_pretrain.cfg into runs/shapes_pretrain/ — backbone,
#      FPN, RPN and RoI classifier trained with NO RoI box loss (the stand-in for ImageNet
#      weights in the paper setting, so no loss is favoured);
#   3. stage 1: train configs/shapes_{smooth_l1,iou,giou,diou,ciou}.cfg — identical except the
#      RoI-head box loss (same seed, initial weights, data order and schedule), each starting
#      from stage 0 with a fresh box regressor — side by side (DEMO_JOBS at a time, default all
#      five), into runs/shapes_<loss>/;
#   4. ./eval runs/shapes_<loss>... : one comparison table, plus runs/compare.md, runs/index.html
#      and the plots (runs/compare_*.png / .svg).
# Environment: DEMO_LOSSES="giou diou" trains a subset; DEMO_THREADS=N sets run.threads of stage 0
# (default 0 = all cores); DEMO_JOBS=J stage-1 runs at a time (default: all of them), each with
# max(1, cores / J) threads (small models scale poorly across threads: on 2 cores five 1-thread
# runs side by side train ~1.7x more images per second in total than one 2-thread run after
# another); DEMO_REUSE_PRETRAIN=1 keeps an existing runs/shapes_pretrain/last.safetensors;
# DEMO_PRETRAIN_ARGS / DEMO_ARGS: extra section.key=value overrides for stage 0 / stage 1
# (e.g. DEMO_ARGS="solver.max_iter=2000 solver.steps=1200,1800").
# Any failure stops the demo with a non-zero status and says what is missing; nothing is faked.
set -eu
# Idle OpenMP threads sleep instead of spinning: on a busy machine spinning threads made steps
# up to 10x slower (measured: 0.5 -> 4.7 s/iter with 2 threads at load average 6).
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}

LOSSES=$(echo ${DEMO_LOSSES:-"smooth_l1 iou giou diou ciou"})
THREADS=${DEMO_THREADS:-0}
DATA=data/shapes
# dataset parameters (keep in sync with configs/shapes_*.cfg: data paths, image size)
N_TRAIN=4000
N_VAL=200
SIZE=128x128
SEED=7
SHAPE_OPTS="--obj-size 10-0.6 --bar-thick 3-6"

say() { echo "demo: $*"; }
fail() { echo "demo: FAILED: $*" >&2; exit 1; }
now() { date +%s; }
ncores() { getconf _NPROCESSORS_ONLN 2>/dev/null || nproc 2>/dev/null || echo 1; }

t_start=$(now)
for p in ./train ./eval build/bin/tool_make_shapes; do
    [ -x "$p" ] || fail "$p is missing: build first (make)"
done
for l in pretrain $LOSSES; do
    [ -f "configs/shapes_$l.cfg" ] || fail "configs/shapes_$l.cfg is missing"
done

# 1. data (regenerated only when the parameters changed; the generator is deterministic)
stamp="train $N_TRAIN val $N_VAL size $SIZE seed $SEED $SHAPE_OPTS"
if [ "$(cat "$DATA/.params" 2>/dev/null || true)" != "$stamp" ]; then
    say "generating the shapes dataset ($stamp) into $DATA/"
    rm -rf "$DATA/train" "$DATA/val" "$DATA/.params"
    # shellcheck disable=SC2086
    build/bin/tool_make_shapes "$DATA/train" --num $N_TRAIN --size $SIZE --seed $SEED --split train $SHAPE_OPTS ||
        fail "tool_make_shapes (train split)"
    # shellcheck disable=SC2086
    build/bin/tool_make_shapes "$DATA/val" --num $N_VAL --size $SIZE --seed $SEED --split val $SHAPE_OPTS ||
        fail "tool_make_shapes (val split)"
    echo "$stamp" > "$DATA/.params"
else
    say "reusing the shapes dataset in $DATA/ ($stamp)"
fi
mkdir -p runs

# 2. stage 0: the shared pre-training
pre=runs/shapes_pretrain
if [ "${DEMO_REUSE_PRETRAIN:-0}" = 1 ] && [ -f "$pre/last.safetensors" ]; then
    say "stage 0: reusing $pre/last.safetensors (DEMO_REUSE_PRETRAIN=1)"
else
    rm -rf "$pre"
    say "stage 0: shared pre-training, no RoI box loss ($pre, configs/shapes_pretrain.cfg); log: $pre.log"
    t0=$(now)
    if ! ./train configs/shapes_pretrain.cfg run.threads=$THREADS ${DEMO_PRETRAIN_ARGS:-} > "$pre.log" 2>&1; then
        tail -n 5 "$pre.log" >&2
        fail "./train configs/shapes_pretrain.cfg exited with an error (full log: $pre.log)"
    fi
    [ -f "$pre/last.safetensors" ] || fail "$pre/last.safetensors was not written by ./train"
    say "stage 0 done in $(( $(now) - t0 )) s ($(grep 'final eval' "$pre.log" | sed 's/.*: AP/AP/'), boxes = proposals: no box regression yet)"
fi

# 3. stage 1: one run per loss, JOBS at a time
n=$(echo $LOSSES | wc -w)
JOBS=${DEMO_JOBS:-$n}
[ "$JOBS" -ge 1 ] 2>/dev/null || fail "DEMO_JOBS=$JOBS is not a positive number"
cores=$(ncores)
T1=$((cores / JOBS))
[ "$T1" -ge 1 ] || T1=1
say "stage 1: $n runs (one per loss), $JOBS at a time with $T1 thread(s) each ($cores cores)"
t1=$(now)
dirs=""
for l in $LOSSES; do
    run=runs/shapes_$l
    rm -rf "$run"
    dirs="$dirs $run"
done
# start a run in the background; its exit status goes to RUN.status
start_run() {
    ( if ./train "configs/shapes_$1.cfg" run.threads=$T1 ${DEMO_ARGS:-} > "runs/shapes_$1.log" 2>&1; then echo 0; else echo 1; fi ) \
        > "runs/shapes_$1.status" &
}
progress() {
    line=""
    for l in $LOSSES; do
        it=$(grep -o '^iter [0-9]*/[0-9]*' "runs/shapes_$l.log" 2>/dev/null | tail -n 1 | sed 's/iter //')
        [ -f "runs/shapes_$l/eval.json" ] && it="done"
        line="$line $l ${it:--}"
    done
    say "  $(( $(now) - t1 )) s:$line"
}
queue=$LOSSES
for l in $LOSSES; do rm -f "runs/shapes_$l.status"; done
last=$(now)
while :; do
    # count the finished runs (a status file holds the exit status once ./train returned)
    done_n=0
    for l in $LOSSES; do [ -s "runs/shapes_$l.status" ] && done_n=$((done_n + 1)); done
    [ "$done_n" -lt "$n" ] || break
    running=$(( n - $(echo $queue | wc -w) - done_n ))
    # start queued runs while fewer than JOBS are going
    while [ -n "$queue" ] && [ "$running" -lt "$JOBS" ]; do
        l=${queue%% *}
        start_run "$l"
        running=$((running + 1))
        if [ "$l" = "$queue" ]; then queue=""; else queue=${queue#* }; fi
    done
    sleep 5
    if [ $(( $(now) - last )) -ge 60 ]; then progress; last=$(now); fi
done
wait
for l in $LOSSES; do
    run=runs/shapes_$l
    if [ "$(cat "$run.status")" != 0 ]; then
        tail -n 5 "$run.log" >&2
        fail "./train configs/shapes_$l.cfg exited with an error (full log: $run.log)"
    fi
    rm -f "$run.status"
    [ -f "$run/eval.json" ] || fail "$run/eval.json was not written by ./train (the final evaluation on the val split)"
done
say "stage 1 done in $(( $(now) - t1 )) s"

# 4. the comparison
echo
./eval $dirs || fail "./eval$dirs"
echo
say "total time $(( $(now) - t_start )) s (data + stage 0 + stage 1 + evaluation); open runs/index.html for the plots"
