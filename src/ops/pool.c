/* pool.c — 2-D max pooling with argmax for the backward pass (see include/minidet/ops.h).
 * Window visiting order, -inf padding, NaN propagation and the first-maximum tie
 * rule follow PyTorch's CPU kernel (aten/src/ATen/native/cpu/MaxPoolKernel.cpp). */
#include <math.h>
#include "minidet/ops.h"

/* in: N x C x H x W -> out, argmax: N x C x OH x OW (argmax indexes the H*W plane). */
void md_maxpool2d_forward(float *out, int32_t *argmax, const float *in, int N, int C, int H, int W, int k, int stride, int pad,
                          int OH, int OW) {
    const int planes = N * C;
#pragma omp parallel for schedule(static) if ((size_t)planes * OH * OW * k * k > 65536)
    for (int pl = 0; pl < planes; pl++) {
        const float *x = in + (size_t)pl * H * W;
        float *y = out + (size_t)pl * OH * OW;
        int32_t *am = argmax + (size_t)pl * OH * OW;
        for (int oh = 0; oh < OH; oh++) {
            int h0 = oh * stride - pad, h1 = h0 + k;
            if (h1 > H) h1 = H;
            if (h0 < 0) h0 = 0;
            for (int ow = 0; ow < OW; ow++) {
                int w0 = ow * stride - pad, w1 = w0 + k;
                if (w1 > W) w1 = W;
                if (w0 < 0) w0 = 0;
                int32_t best = (int32_t)(h0 * W + w0);
                float m = -INFINITY;
                for (int ih = h0; ih < h1; ih++) {
                    for (int iw = w0; iw < w1; iw++) {
                        const float v = x[ih * W + iw];
                        if (v > m || isnan(v)) {
                            m = v;
                            best = (int32_t)(ih * W + iw);
                        }
                    }
                }
                y[oh * OW + ow] = m;
                am[oh * OW + ow] = best;
            }
        }
    }
}

/* din[argmax] += dout, per plane (planes are independent, so parallel without races). */
void md_maxpool2d_backward(float *din, const float *dout, const int32_t *argmax, int N, int C, int H, int W, int OH, int OW) {
    if (!din) return;
    const int planes = N * C;
#pragma omp parallel for schedule(static) if ((size_t)planes * OH * OW > 65536)
    for (int pl = 0; pl < planes; pl++) {
        float *dx = din + (size_t)pl * H * W;
        const float *g = dout + (size_t)pl * OH * OW;
        const int32_t *am = argmax + (size_t)pl * OH * OW;
        for (int i = 0; i < OH * OW; i++) dx[am[i]] += g[i];
    }
}
