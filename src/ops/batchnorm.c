/* batchnorm.c — BatchNorm2d in training mode (batch statistics, running-statistics update) and its
 * backward, as torch.nn.BatchNorm2d.train() (see include/minidet/ops.h). Eval mode is the frozen-BN
 * affine map of frozen_bn.c. Parallel over channels (each channel's sums are private). */
#include <math.h>
#include "minidet/ops.h"

int md_batchnorm_train_forward(float *out, float *mean, float *invstd, float *running_mean, float *running_var,
                               const float *in, const float *gamma, const float *beta, int N, int C, int HW, float eps,
                               float momentum) {
    const size_t M = (size_t)N * (size_t)HW;
    if (M < 2 || C < 1) return 0;
    const size_t plane = (size_t)HW, cstride = (size_t)C * plane;
#pragma omp parallel for schedule(static) if (M * (size_t)C > 16384)
    for (int c = 0; c < C; c++) {
        double s = 0.0;
        for (int n = 0; n < N; n++) {
            const float *x = in + (size_t)n * cstride + (size_t)c * plane;
            for (size_t j = 0; j < plane; j++) s += x[j];
        }
        const double mu = s / (double)M;
        double v = 0.0;
        for (int n = 0; n < N; n++) {
            const float *x = in + (size_t)n * cstride + (size_t)c * plane;
            for (size_t j = 0; j < plane; j++) {
                const double d = (double)x[j] - mu;
                v += d * d;
            }
        }
        const double var = v / (double)M; /* biased: normalisation */
        const float is = (float)(1.0 / sqrt(var + (double)eps));
        const float fm = (float)mu;
        mean[c] = fm;
        invstd[c] = is;
        if (running_mean) running_mean[c] = (1.0f - momentum) * running_mean[c] + momentum * fm;
        if (running_var)
            running_var[c] = (1.0f - momentum) * running_var[c] + momentum * (float)(v / (double)(M - 1));
        const float a = gamma[c] * is, b = beta[c] - fm * a;
        for (int n = 0; n < N; n++) {
            const float *x = in + (size_t)n * cstride + (size_t)c * plane;
            float *y = out + (size_t)n * cstride + (size_t)c * plane;
#pragma omp simd
            for (size_t j = 0; j < plane; j++) y[j] = x[j] * a + b;
        }
    }
    return 1;
}

void md_batchnorm_train_backward(float *din, float *dgamma, float *dbeta, const float *dout, const float *in,
                                 const float *mean, const float *invstd, const float *gamma, int N, int C, int HW) {
    const size_t M = (size_t)N * (size_t)HW;
    if (M < 1 || C < 1) return;
    const size_t plane = (size_t)HW, cstride = (size_t)C * plane;
#pragma omp parallel for schedule(static) if (M * (size_t)C > 16384)
    for (int c = 0; c < C; c++) {
        const double mu = mean[c], is = invstd[c];
        double sg = 0.0, sgx = 0.0; /* sum(dout), sum(dout * xhat) */
        for (int n = 0; n < N; n++) {
            const float *x = in + (size_t)n * cstride + (size_t)c * plane;
            const float *g = dout + (size_t)n * cstride + (size_t)c * plane;
            for (size_t j = 0; j < plane; j++) {
                sg += g[j];
                sgx += (double)g[j] * (((double)x[j] - mu) * is);
            }
        }
        if (dgamma) dgamma[c] += (float)sgx;
        if (dbeta) dbeta[c] += (float)sg;
        if (!din) continue;
        /* din = k * (g - sg/M - xhat * sgx/M), k = gamma * invstd; in double: with tiny M (e.g. 2) the three
         * terms nearly cancel */
        const double k = (double)gamma[c] * is, mg = sg / (double)M, mgx = sgx / (double)M;
        for (int n = 0; n < N; n++) {
            const float *x = in + (size_t)n * cstride + (size_t)c * plane;
            const float *g = dout + (size_t)n * cstride + (size_t)c * plane;
            float *dx = din + (size_t)n * cstride + (size_t)c * plane;
#pragma omp simd
            for (size_t j = 0; j < plane; j++) dx[j] += (float)(k * ((double)g[j] - mg - ((double)x[j] - mu) * is * mgx));
        }
    }
}
