/* trainer.h — the training loop behind `./train CONFIG [section.key=value ...] [--resume]`.
 *
 * md_train() runs a whole training job described by a resolved md_config:
 * it loads the COCO-format train split (and val split when configured),
 * builds the detector (optionally from converted torchvision weights), and
 * loops: prefetched batch -> forward -> RPN / RoI targets and losses
 * (targets.h) -> backward -> optional clipping -> SGD (optim.h) at the lr of
 * the warm-up + multi-step schedule, with gradient accumulation over
 * [solver] grad_accum micro-batches. It writes runs/<name>/ as
 * docs/FORMATS.md specifies: config.cfg, metrics.jsonl, checkpoints/ and
 * last.safetensors (checkpoint.h), eval.json after the final evaluation.
 *
 * Exactness: with the same thread count, a run resumed from a checkpoint
 * produces the same losses at every later iteration as an uninterrupted run
 * (the sampling stream is keyed by iteration, the loader by epoch/position,
 * and the optimizer state is saved).
 *
 * Memory: one arena holds every activation; it is sized before the first
 * step by a dry run on a batch of the largest possible input size, so the
 * steady-state loop never calls malloc.
 *
 * Stops: SIGINT/SIGTERM finish the current step, save a checkpoint and
 * return MD_ERR_INTERRUPTED (the CLI prints how to resume and exits 128 + the
 * signal, 130 / 143, as a shell's `a && b` and batch schedulers expect); a
 * non-finite loss or gradient stops with MD_ERR_NUMERIC naming the iteration
 * and the image ids, without saving (the last good checkpoint stays).
 *
 * Data-parallel (make MPI=1, `mpirun -np N ./train CONFIG`; data_parallel.h):
 * every rank runs md_train with the same configuration. [solver]
 * ims_per_batch stays the global batch; rank r takes images
 * [r B/N, (r + 1) B/N) of every micro-batch of B images, in the one-process
 * order with the one-process flips, padding and sampling streams, and the
 * gradients are summed across ranks during the backward pass, so N ranks
 * follow the one-process trajectory up to float summation order (bit for bit
 * for a given N). Rank 0 alone writes the run directory (config, progress,
 * metrics.jsonl with the exposed communication time, checkpoints with the
 * world size); its weights and state (initial or resumed, from any rank
 * count) are broadcast at start. Evaluation is sharded by batches and scored
 * once on rank 0. The ranks agree once per micro-batch (after loading) and
 * once per step (non-finite loss, signal), so a bad image, a divergence or a
 * signal on any rank stops every rank at the same step, each error naming its
 * rank; an error in the middle of a step on one rank ends the job
 * (MPI_Abort). */
#ifndef MINIDET_TRAINER_H
#define MINIDET_TRAINER_H
#include "minidet/config.h"
#include "minidet/error.h"

typedef struct {
    int resume;        /* continue from runs/<name>/last.safetensors */
    int progress_tty;  /* -1 = auto (isatty(stderr)), 0 = plain lines, 1 = one updating line */
    int quiet;         /* 1 = no progress output at all */
    int handle_signals;/* 1 = install SIGINT/SIGTERM handlers (the CLI does) */
    long long stop_after; /* > 0: behave as if interrupted after this many iterations (tests) */
} md_train_options;

void md_train_options_default(md_train_options *o);

/* Runs training. run_dir_out (may be NULL, size n) receives runs/<name>. */
md_status md_train(const md_config *cfg, const md_train_options *o, char *run_dir_out, size_t n);
/* The signal (SIGINT, SIGTERM) that stopped the last md_train with handle_signals, 0 if none; with
   several ranks the agreed one, the same on every rank (also those the signal did not reach). */
int md_train_stop_signal(void);

#endif
