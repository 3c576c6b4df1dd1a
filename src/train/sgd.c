/* sgd.c — torch.optim.SGD, the warm-up + multi-step schedule, gradient clipping (see optim.h). */
#include "minidet/optim.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Floats per partial sum of md_grad_norm: the unit of its parallel work, fixed so that the sum's
 * rounding does not depend on the thread count. */
#define NORM_BLOCK 8192

md_status md_sgd_init(md_sgd *s, const md_sgd_param *params, int n, float momentum, float weight_decay) {
    memset(s, 0, sizeof *s);
    if (n < 0) return md_set_error(MD_ERR_ARG, "sgd: negative parameter count");
    s->params = malloc(sizeof *s->params * (size_t)(n ? n : 1));
    s->momentum = malloc(sizeof *s->momentum * (size_t)(n ? n : 1));
    if (!s->params || !s->momentum) { md_sgd_free(s); return md_set_error(MD_ERR_NOMEM, "sgd: out of memory"); }
    memcpy(s->params, params, sizeof *params * (size_t)n);
    size_t total = 0, blocks = 1;
    for (int i = 0; i < n; i++) {
        total += params[i].numel;
        size_t nb = (params[i].numel + NORM_BLOCK - 1) / NORM_BLOCK;
        if (nb > blocks) blocks = nb;
    }
    s->momentum_block = calloc(total ? total : 1, sizeof(float));
    s->norm_partial = malloc(sizeof *s->norm_partial * blocks);
    if (!s->momentum_block || !s->norm_partial) {
        md_sgd_free(s);
        return md_set_error(MD_ERR_NOMEM, "sgd: cannot allocate %zu momentum floats and %zu partial sums", total, blocks);
    }
    size_t off = 0;
    for (int i = 0; i < n; i++) { s->momentum[i] = s->momentum_block + off; off += params[i].numel; }
    s->n = n;
    s->total = total;
    s->momentum_coef = momentum;
    s->weight_decay = weight_decay;
    return MD_OK;
}

void md_sgd_free(md_sgd *s) {
    free(s->params);
    free(s->momentum);
    free(s->momentum_block);
    free(s->norm_partial);
    memset(s, 0, sizeof *s);
}

void md_sgd_step(md_sgd *s, float lr) {
    const float m = s->momentum_coef;
    const int first = s->steps == 0;
    for (int i = 0; i < s->n; i++) {
        const md_sgd_param *p = &s->params[i];
        const float wd = p->decay ? s->weight_decay : 0.0f;
        float *w = p->data, *buf = s->momentum[i];
        const float *g = p->grad;
        const long long n = (long long)p->numel;
#pragma omp parallel for schedule(static) if (n > 65536)
        for (long long j = 0; j < n; j++) {
            float d = wd != 0.0f ? g[j] + wd * w[j] : g[j]; /* torch: grad.add(p, alpha=wd) */
            float b = (first || m == 0.0f) ? d : m * buf[j] + d;
            buf[j] = b;
            w[j] -= lr * b;
        }
    }
    s->steps++;
}

/* Sum of squares of g[0..n) in double: four interleaved partial sums (independent add chains),
 * combined as (a0 + a1) + (a2 + a3). */
static double sum_squares(const float *g, size_t n) {
    double a[4] = {0, 0, 0, 0};
    size_t j = 0;
    for (; j + 4 <= n; j += 4)
        for (int k = 0; k < 4; k++) a[k] += (double)g[j + k] * g[j + k];
    for (int k = 0; j < n; j++, k++) a[k] += (double)g[j] * g[j];
    return (a[0] + a[1]) + (a[2] + a[3]);
}

double md_grad_norm(const md_sgd *s) {
    double acc = 0;
    double *part = s->norm_partial;
    for (int i = 0; i < s->n; i++) {
        const float *g = s->params[i].grad;
        const size_t n = s->params[i].numel;
        const long long nb = (long long)((n + NORM_BLOCK - 1) / NORM_BLOCK);
#pragma omp parallel for schedule(static) if (nb > 8)
        for (long long b = 0; b < nb; b++) {
            const size_t j0 = (size_t)b * NORM_BLOCK, j1 = j0 + NORM_BLOCK < n ? j0 + NORM_BLOCK : n;
            part[b] = sum_squares(g + j0, j1 - j0);
        }
        double a = 0;
        for (long long b = 0; b < nb; b++) a += part[b];
        acc += a;
    }
    return sqrt(acc);
}

void md_grad_scale(md_sgd *s, float k) {
    for (int i = 0; i < s->n; i++) {
        float *g = s->params[i].grad;
        const long long n = (long long)s->params[i].numel;
#pragma omp parallel for schedule(static) if (n > 65536)
        for (long long j = 0; j < n; j++) g[j] *= k;
    }
}

double md_clip_grad_norm(md_sgd *s, float max_norm) {
    double norm = md_grad_norm(s);
    if (max_norm > 0) {
        double coef = max_norm / (norm + 1e-6);
        if (coef < 1.0) md_grad_scale(s, (float)coef);
    }
    return norm;
}

float md_lr_at(const md_solver_config *s, long long it) {
    double f = 1.0;
    if (it < s->warmup_iters) {
        double a = (double)it / s->warmup_iters;
        f = s->warmup_factor * (1.0 - a) + a;
    }
    for (int i = 0; i < s->num_steps; i++)
        if (it >= s->steps[i]) f *= s->gamma;
    return (float)(s->base_lr * f);
}
