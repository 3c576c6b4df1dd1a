#!/bin/sh
# The embedded default job (`make demo`): compare the five box-regression losses
# on the synthetic shapes dataset, several seeds per loss.
#   1. generate data/shapes/{train,val} with build/bin/tool_make_shapes (deterministic);
#   2. stage 0, shared: train configs/shapes_pretrain.cfg into runs/stage0/shapes_pretrain/ — backbone,
#      FPN, RPN and RoI classifier trained with NO RoI box loss (the stand-in for ImageNet
#      weights in the paper setting, so no loss is favoured);
#   3. stage 1: train configs/shapes_{smooth_l1,iou,giou,diou,ciou}.cfg — identical except the
#      RoI-head box loss — DEMO_SEEDS times each with run.seed = 1..S (the seed draws the fresh box
#      regressor's weights and the data order; the runs of one seed share them across losses), each
#      starting from stage 0, into runs/shapes_<loss>_s<seed>/ (each run's log: its train.log);
#   4. ./eval runs/shapes_* : one comparison, plus runs/compare.md, runs/index.html and the plots
#      (runs/compare_*.png / .svg): the seeds of a loss form a group (its configs differ only in
#      run.name and run.seed) with mean +- sd, a 95 % paired-bootstrap interval of its AP difference
#      to smooth_l1 and a verdict, and TIDE's error breakdown. Stage 0 lives under runs/stage0/ and
#      every log inside its run directory, so that pattern matches exactly the stage-1 runs.
# Environment: DEMO_SEEDS=S stage-1 runs per loss (default 3, which keeps the whole demo within its
# 15-minute budget on 2 cores: one seed gives no spread, and the losses differ by about as much as
# runs that differ only in float rounding); DEMO_LOSSES="giou diou" trains a subset;
# DEMO_THREADS=N sets run.threads of stage 0 (default 0 = all cores); DEMO_JOBS=J stage-1 runs at
# a time (default: all of them), each with max(1, cores / J) threads: small models scale poorly
# across threads (on 2 cores five 1-thread runs side by side train ~1.7x more images per second in
# total than one 2-thread run after another), all at once the runs finish together instead of
# leaving a core idle behind the last ones, and a run holds only ~50 MB, so fifteen fit anywhere;
# DEMO_REUSE_PRETRAIN=1 keeps an existing stage 0 if it finished (its checkpoint holds
# the iteration and the schedule) and resumes it with ./train --resume if it did not;
# DEMO_PRETRAIN_ARGS / DEMO_ARGS: extra section.key=value overrides for stage 0 / stage 1
# (e.g. DEMO_ARGS="solver.max_iter=2000 solver.steps=1200,1800"). DEMO_RUNS / DEMO_DATA (default
# runs, data/shapes) and DEMO_N_TRAIN / DEMO_N_VAL move and shrink everything, DEMO_BIN runs
# other builds of train, eval and tool_make_shapes (tests/test_demo.c).
# Progress: stage 0 and stage 1 print where each run is every DEMO_PROGRESS_EVERY s (default 60).
# Ctrl-C / SIGTERM: every ./train saves its checkpoint, the demo exits 130 / 143.
# Any failure stops the demo with a non-zero status and says what is missing; nothing is faked.
set -eu
# Idle OpenMP threads sleep instead of spinning: on a busy machine spinning threads made steps
# up to 10x slower (measured: 0.5 -> 4.7 s/iter with 2 threads at load average 6).
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}

LOSSES=$(echo ${DEMO_LOSSES:-"smooth_l1 iou giou diou ciou"})
SEEDS=${DEMO_SEEDS:-3}
THREADS=${DEMO_THREADS:-0}
DATA=${DEMO_DATA:-data/shapes}
RUNS=${DEMO_RUNS:-runs}
# dataset parameters (keep in sync with configs/shapes_*.cfg: image size)
N_TRAIN=${DEMO_N_TRAIN:-4000}
N_VAL=${DEMO_N_VAL:-200}
EVERY=${DEMO_PROGRESS_EVERY:-60}
SIZE=128x128
SEED=7
SHAPE_OPTS="--obj-size 10-0.6 --bar-thick 3-6"

say() { echo "demo: $*"; }
fail() { echo "demo: FAILED: $*" >&2; exit 1; }
now() { date +%s; }
ncores() { getconf _NPROCESSORS_ONLN 2>/dev/null || nproc 2>/dev/null || echo 1; }

BIN=${DEMO_BIN:-.}
TOOLS=${DEMO_BIN:-build/bin}
t_start=$(now)
[ "$SEEDS" -ge 1 ] 2>/dev/null || fail "DEMO_SEEDS=$SEEDS is not a positive number"
for p in $BIN/train $BIN/eval $TOOLS/tool_make_shapes; do
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
    $TOOLS/tool_make_shapes "$DATA/train" --num $N_TRAIN --size $SIZE --seed $SEED --split train $SHAPE_OPTS ||
        fail "tool_make_shapes (train split)"
    # shellcheck disable=SC2086
    $TOOLS/tool_make_shapes "$DATA/val" --num $N_VAL --size $SIZE --seed $SEED --split val $SHAPE_OPTS ||
        fail "tool_make_shapes (val split)"
    echo "$stamp" > "$DATA/.params"
else
    say "reusing the shapes dataset in $DATA/ ($stamp)"
fi
mkdir -p "$RUNS"
# where the data and the runs are (the configs' defaults unless DEMO_DATA / DEMO_RUNS move them)
PATHS="data.train_ann=$DATA/train/annotations.json data.train_images=$DATA/train/images
       data.val_ann=$DATA/val/annotations.json data.val_images=$DATA/val/images"
status_dir=$(mktemp -d)
trap 'rm -rf "$status_dir"' EXIT
# Ctrl-C / SIGTERM reach every ./train (each saves its checkpoint and exits 130 / 143); wait for them
interrupted() {
    echo
    say "interrupted: waiting for the runs to save their checkpoints"
    wait
    say "DEMO_REUSE_PRETRAIN=1 make demo resumes stage 0 from its checkpoint (stage 1 starts again)"
    exit "$1"
}
trap 'interrupted 130' INT
trap 'interrupted 143' TERM

# the last "iter N/M" a run's log shows, "done" once its eval.json exists
run_state() {
    it=$(grep -o '^iter [0-9]*/[0-9]*' "$1/train.log" 2>/dev/null | tail -n 1 | sed 's/iter //')
    [ -f "$1/eval.json" ] && it="done"
    echo "${it:--}"
}

# 2. stage 0: the shared pre-training
pre=$RUNS/stage0/shapes_pretrain
resume=""
if [ "${DEMO_REUSE_PRETRAIN:-0}" = 1 ] && [ -f "$pre/last.safetensors" ]; then
    # ./train --resume knows from the checkpoint whether stage 0 finished: then it does nothing
    resume=--resume
    say "stage 0: DEMO_REUSE_PRETRAIN=1: checking $pre/last.safetensors (a finished stage 0 is reused, an unfinished one resumed)"
else
    [ "${DEMO_REUSE_PRETRAIN:-0}" = 1 ] && say "stage 0: DEMO_REUSE_PRETRAIN=1 but $pre has no checkpoint: training it from the start"
    rm -rf "$pre"
    mkdir -p "$pre"
    say "stage 0: shared pre-training, no RoI box loss ($pre, configs/shapes_pretrain.cfg); log: $pre/train.log"
fi
t0=$(now)
skip=$(cat "$pre/train.log" 2>/dev/null | wc -l) # earlier attempts' lines stay in the log
# shellcheck disable=SC2086
( if $BIN/train configs/shapes_pretrain.cfg run.threads=$THREADS run.output_dir=$RUNS/stage0 $PATHS ${DEMO_PRETRAIN_ARGS:-} $resume \
        >> "$pre/train.log" 2>&1; then echo 0; else echo $?; fi ) > "$status_dir/stage0" &
last=$(now)
told=""
while [ ! -s "$status_dir/stage0" ]; do
    sleep 1
    if [ -n "$resume" ] && [ -z "$told" ]; then
        # "resumed from ... at iteration N of M": N = M is a finished stage 0, which ./train leaves as it is
        r=$(tail -n +$((skip + 1)) "$pre/train.log" | grep -o 'resumed from .* at iteration [0-9]* of [0-9]*' | sed 's/.* at iteration //')
        if [ -n "$r" ] && [ "${r% of *}" -ge "${r#* of }" ]; then say "stage 0: reusing $pre: it finished (iteration $r)"; told=1
        elif [ -n "$r" ]; then say "stage 0: $pre stopped at iteration $r: resuming it (log: $pre/train.log)"; told=1; fi
    fi
    if [ $(( $(now) - last )) -ge "$EVERY" ]; then say "  stage 0: $(( $(now) - t0 )) s: iter $(run_state "$pre")"; last=$(now); fi
done
if [ "$(cat "$status_dir/stage0")" != 0 ]; then
    tail -n 5 "$pre/train.log" >&2
    fail "./train configs/shapes_pretrain.cfg exited with status $(cat "$status_dir/stage0") (full log: $pre/train.log)"
fi
[ -f "$pre/last.safetensors" ] || fail "$pre/last.safetensors was not written by ./train"
if [ -z "$resume" ] || ! tail -n +$((skip + 1)) "$pre/train.log" | grep -q 'already finished'; then
    say "stage 0 done in $(( $(now) - t0 )) s ($(grep 'final eval' "$pre/train.log" | tail -n 1 | sed 's/.*: AP/AP/'), boxes = proposals: no box regression yet)"
fi

# 3. stage 1: SEEDS runs per loss, JOBS at a time. A run's id is <loss>_s<seed> (its directory
# RUNS/shapes_<id>, its status file status_dir/<id>); seed-major order, so that the first runs to
# finish cover every loss when JOBS < all.
SEED_LIST=$(i=1; while [ "$i" -le "$SEEDS" ]; do echo $i; i=$((i + 1)); done)
IDS=$(for sd in $SEED_LIST; do for l in $LOSSES; do echo "${l}_s$sd"; done; done)
IDS=$(echo $IDS)
loss_of() { echo "${1%_s*}"; }
seed_of() { echo "${1##*_s}"; }
n=$(echo $IDS | wc -w)
JOBS=${DEMO_JOBS:-$n}
[ "$JOBS" -ge 1 ] 2>/dev/null || fail "DEMO_JOBS=$JOBS is not a positive number"
cores=$(ncores)
T1=$((cores / JOBS))
[ "$T1" -ge 1 ] || T1=1
say "stage 1: $n runs ($SEEDS seed(s) per loss, run.seed = 1..$SEEDS), $JOBS at a time with $T1 thread(s) each ($cores cores)"
t1=$(now)
# Runs of these losses from an earlier demo that this one does not make again (more seeds then, or
# the one-seed layout RUNS/shapes_<loss>) would join their loss's group in `./eval RUNS/shapes_*`.
for l in $LOSSES; do
    for old in "$RUNS/shapes_$l" "$RUNS/shapes_${l}_s"*; do
        [ -d "$old" ] || continue
        if [ "$old" != "$RUNS/shapes_$l" ]; then
            case ${old##*_s} in '' | *[!0-9]*) continue ;; esac # not a seed: not the demo's
            [ "${old##*_s}" -gt "$SEEDS" ] || continue         # made again below
        fi
        say "stage 1: removing $old (an earlier demo's run, not part of this comparison)"
        rm -rf "$old"
    done
done
for id in $IDS; do
    rm -rf "$RUNS/shapes_$id"
    mkdir -p "$RUNS/shapes_$id"
done
# the comparison's rows: the seeds of a loss together
dirs=""
for l in $LOSSES; do for sd in $SEED_LIST; do dirs="$dirs $RUNS/shapes_${l}_s$sd"; done; done
# start a run in the background; its exit status goes to status_dir/<id>
start_run() {
    # shellcheck disable=SC2086
    ( if $BIN/train "configs/shapes_$(loss_of "$1").cfg" run.name=shapes_$1 run.seed=$(seed_of "$1") run.threads=$T1 run.output_dir=$RUNS \
            model.weights=$pre/last.safetensors $PATHS ${DEMO_ARGS:-} > "$RUNS/shapes_$1/train.log" 2>&1; then echo 0; else echo $?; fi ) \
        > "$status_dir/$1" &
}
# one line: per loss, the state of each seed's run ("iter N/M", "done" or "-" before it starts)
progress() {
    line=""
    for l in $LOSSES; do
        sep=" "
        line="$line $l"
        for sd in $SEED_LIST; do line="$line$sep$(run_state "$RUNS/shapes_${l}_s$sd")"; sep=","; done
        line="$line;"
    done
    say "  $(( $(now) - t1 )) s:${line%;} (per loss: seed 1..$SEEDS)"
}
queue=$IDS
last=$(now)
while :; do
    # count the finished runs (a status file holds the exit status once ./train returned)
    done_n=0
    for id in $IDS; do [ -s "$status_dir/$id" ] && done_n=$((done_n + 1)); done
    [ "$done_n" -lt "$n" ] || break
    running=$(( n - $(echo $queue | wc -w) - done_n ))
    # start queued runs while fewer than JOBS are going
    while [ -n "$queue" ] && [ "$running" -lt "$JOBS" ]; do
        id=${queue%% *}
        start_run "$id"
        running=$((running + 1))
        if [ "$id" = "$queue" ]; then queue=""; else queue=${queue#* }; fi
    done
    sleep 2
    if [ $(( $(now) - last )) -ge "$EVERY" ]; then progress; last=$(now); fi
done
wait
for id in $IDS; do
    run=$RUNS/shapes_$id
    if [ "$(cat "$status_dir/$id")" != 0 ]; then
        tail -n 5 "$run/train.log" >&2
        fail "./train configs/shapes_$(loss_of "$id").cfg run.seed=$(seed_of "$id") exited with status $(cat "$status_dir/$id") (full log: $run/train.log)"
    fi
    [ -f "$run/eval.json" ] || fail "$run/eval.json was not written by ./train (the final evaluation on the val split)"
done
say "stage 1 done in $(( $(now) - t1 )) s"

# 4. the comparison
echo
$BIN/eval $dirs || fail "./eval$dirs"
echo
say "total time $(( $(now) - t_start )) s (data + stage 0 + stage 1 + evaluation); open $RUNS/index.html for the plots"
