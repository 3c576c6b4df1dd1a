/* data_parallel.h — what the trainer does differently with several ranks (dist.h under md_train).
 *
 * The scheme is PyTorch DDP's: every rank holds the whole model and optimizer, takes its shard of each
 * global batch (data.h shard_rank / shard_count), and the gradients are summed over the ranks before
 * the optimizer step, so every rank applies the same update and the weights stay identical. The losses
 * are normalised by the global sample counts (targets.h sum_over_ranks), which makes the summed
 * gradient the one-process gradient of the whole batch (up to float summation order).
 *
 * md_dp_init hooks the detector's backward pass (md_detector.on_grad_final): each trainable tensor's
 * gradient joins its bucket as soon as it is final, and a complete bucket starts its non-blocking sum
 * at once (md_dist_buckets), so the communication runs while the lower layers' gradients are computed.
 * md_dp_step_end waits for the rest and reports the exposed (not hidden) seconds.
 *
 * Trainable BatchNorm ([model] norm = bn) normalises with each rank's own batch statistics (DDP without
 * SyncBatchNorm); md_dp_average_bn averages the running statistics over the ranks, which the trainer
 * does before every checkpoint and evaluation. With one rank every function here is a no-op. */
#ifndef MINIDET_DATA_PARALLEL_H
#define MINIDET_DATA_PARALLEL_H
#include "minidet/checkpoint.h"
#include "minidet/dist.h"
#include "minidet/model.h"
#include "minidet/optim.h"

typedef struct {
    int rank, size;
    md_detector *det;
    md_dist_buckets *buckets;
    int *tensor_of_param; /* det->num_params: index among the trainable tensors, or -1 */
    int armed;            /* 1 during the backward pass whose gradients are final (the last micro-batch) */
    double exposed_s;     /* the last step's wait for the gradient sum */
} md_dp;

/* Buckets of about bucket_floats over det's trainable gradients (one contiguous block in parameter
   order); hooks det's backward pass when size > 1. */
md_status md_dp_init(md_dp *d, md_detector *det, size_t bucket_floats);
void md_dp_free(md_dp *d);
/* Before a step's micro-batches: every gradient pending again. */
void md_dp_step_begin(md_dp *d);
/* Arms the hook for the backward pass that finishes the step's gradients (the last micro-batch). */
void md_dp_arm(md_dp *d, int armed);
/* Sums what the backward pass has not started, waits for every bucket; d->exposed_s = the wait. */
md_status md_dp_step_end(md_dp *d);
/* Rank 0's tensors (every parameter and buffer), momentum and training state to every rank. */
md_status md_dp_broadcast_state(md_dp *d, md_sgd *opt, md_train_state *st);
/* running_mean / running_var of every BatchNorm averaged over the ranks. */
md_status md_dp_average_bn(md_dp *d);

#endif
