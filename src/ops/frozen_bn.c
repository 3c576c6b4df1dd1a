/* frozen_bn.c — frozen BatchNorm as a per-channel affine map (torchvision FrozenBatchNorm2d),
 * and its folding into the preceding convolution (see include/minidet/ops.h). */
#include <math.h>
#include "minidet/ops.h"

void md_frozen_bn_params(float *scale, float *shift, const float *weight, const float *bias, const float *running_mean,
                         const float *running_var, int C, float eps) {
    for (int c = 0; c < C; c++) {
        /* same float32 order as torchvision: scale = w * rsqrt(var + eps); shift = b - mean * scale */
        const float s = weight[c] * (1.0f / sqrtf(running_var[c] + eps));
        scale[c] = s;
        shift[c] = bias[c] - running_mean[c] * s;
    }
}

/* in/out: N x C x HW; out may alias in. */
void md_frozen_bn_forward(float *out, const float *in, const float *scale, const float *shift, int N, int C, int HW) {
    const int planes = N * C;
#pragma omp parallel for schedule(static) if ((size_t)planes * HW > 65536)
    for (int i = 0; i < planes; i++) {
        const float s = scale[i % C], b = shift[i % C];
        const float *x = in + (size_t)i * HW;
        float *y = out + (size_t)i * HW;
#pragma omp simd
        for (int j = 0; j < HW; j++) y[j] = x[j] * s + b;
    }
}

/* din += dout * scale[c]; dout, din: N x C x HW. */
void md_frozen_bn_backward(float *din, const float *dout, const float *scale, int N, int C, int HW) {
    if (!din) return;
    const int planes = N * C;
#pragma omp parallel for schedule(static) if ((size_t)planes * HW > 65536)
    for (int i = 0; i < planes; i++) {
        const float s = scale[i % C];
        const float *g = dout + (size_t)i * HW;
        float *dx = din + (size_t)i * HW;
#pragma omp simd
        for (int j = 0; j < HW; j++) dx[j] += g[j] * s;
    }
}

/* weight: OC x K (K = C*KH*KW), bias_inout: OC. */
void md_frozen_bn_fold(float *weight, float *bias_inout, const float *scale, const float *shift, int OC, int K) {
    for (int oc = 0; oc < OC; oc++) {
        float *w = weight + (size_t)oc * K;
        for (int k = 0; k < K; k++) w[k] *= scale[oc];
        bias_inout[oc] = bias_inout[oc] * scale[oc] + shift[oc];
    }
}
