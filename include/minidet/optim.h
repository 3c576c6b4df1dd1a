/* optim.h — SGD with momentum and weight decay, the learning-rate schedule, gradient clipping.
 *
 * md_sgd follows torch.optim.SGD (dampening 0, no Nesterov) exactly, per tensor:
 *   d_p = grad + weight_decay * p          (weight decay only where decay != 0)
 *   buf = d_p                              on the first step
 *   buf = momentum * buf + d_p             afterwards
 *   p  -= lr * buf
 * Which tensors are updated and which get weight decay is given per tensor
 * (the trainer takes it from the detector's parameter registry: frozen layers
 * and frozen-BN buffers are never passed in, BN-affine parameters are not
 * decayed). Momentum buffers are owned by md_sgd and saved in checkpoints as
 * "optimizer.momentum.<name>" so that a resume is exact.
 *
 * md_lr_at() is torchvision's reference schedule: linear warm-up
 * lr * (warmup_factor * (1 - a) + a), a = it / warmup_iters, for it < warmup_iters,
 * times gamma ^ (number of steps <= it) (detectron2 WarmupMultiStepLR). */
#ifndef MINIDET_OPTIM_H
#define MINIDET_OPTIM_H
#include <stddef.h>
#include "minidet/config.h"
#include "minidet/error.h"

/* One optimised tensor (not owned). */
typedef struct {
    const char *name;
    float *data;  /* numel */
    float *grad;  /* numel */
    size_t numel;
    int decay;    /* 1: apply weight decay */
} md_sgd_param;

typedef struct {
    int n;
    md_sgd_param *params;  /* n (copied) */
    float **momentum;      /* n buffers of params[i].numel floats (owned, one allocation) */
    float *momentum_block;
    size_t total;          /* sum of numel */
    double *norm_partial;  /* md_grad_norm's per-block sums of one tensor (the largest tensor's block count) */
    float momentum_coef, weight_decay;
    long long steps;       /* updates done; 0 = buffers not yet initialised */
} md_sgd;

md_status md_sgd_init(md_sgd *s, const md_sgd_param *params, int n, float momentum, float weight_decay);
void md_sgd_free(md_sgd *s);
/* One update with learning rate lr (torch.optim.SGD.step). */
void md_sgd_step(md_sgd *s, float lr);
/* L2 norm of all gradients: double sums over fixed blocks of each tensor (in parallel), added in
 * block order, so the result does not depend on the thread count. */
double md_grad_norm(const md_sgd *s);
/* torch.nn.utils.clip_grad_norm_: if max_norm > 0 and norm > max_norm, scales every grad by
 * max_norm / (norm + 1e-6). Returns the norm before clipping. */
double md_clip_grad_norm(md_sgd *s, float max_norm);
/* Multiplies every gradient by k (gradient accumulation averaging). */
void md_grad_scale(md_sgd *s, float k);

/* Learning rate at iteration it (0-based) under solver settings s. */
float md_lr_at(const md_solver_config *s, long long it);

#endif
