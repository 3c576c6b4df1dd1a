/* pool.c — 2-D max pooling with argmax for the backward pass, and average pooling (see
 * include/minidet/ops.h). Max pool: window visiting order, -inf padding, NaN propagation and
 * the first-maximum tie rule follow PyTorch's CPU kernel (aten/src/ATen/native/cpu/MaxPoolKernel.cpp).
 * Average pool: output size, window clipping and divisor as PyTorch's AvgPoolKernel.cpp. */
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

int md_avgpool2d_out(int H, int k, int stride, int pad, int ceil_mode) {
    if (k < 1 || stride < 1 || pad < 0) return 0;
    int num = H + 2 * pad - k + (ceil_mode ? stride - 1 : 0);
    if (num < 0) return 0;
    int o = num / stride + 1;
    if (ceil_mode && (o - 1) * stride >= H + pad) o--;
    return o;
}

/* The clipped window [*a0, *a1) of output index o along an axis of size n, and its divisor factor. */
static inline int avg_window(int o, int n, int k, int stride, int pad, int include_pad, int *a0, int *a1) {
    int s = o * stride - pad, e = s + k;
    if (e > n + pad) e = n + pad;
    int full = e - s;
    if (s < 0) s = 0;
    if (e > n) e = n;
    *a0 = s;
    *a1 = e;
    return include_pad ? full : (e > s ? e - s : 0);
}

/* in: N x C x H x W -> out: N x C x OH x OW. */
void md_avgpool2d_forward(float *out, const float *in, int N, int C, int H, int W, int k, int stride, int pad,
                          int count_include_pad, int OH, int OW) {
    const int planes = N * C;
#pragma omp parallel for schedule(static) if ((size_t)planes * OH * OW * k * k > 65536)
    for (int pl = 0; pl < planes; pl++) {
        const float *x = in + (size_t)pl * H * W;
        float *y = out + (size_t)pl * OH * OW;
        for (int oh = 0; oh < OH; oh++) {
            int h0, h1, fh = avg_window(oh, H, k, stride, pad, count_include_pad, &h0, &h1);
            for (int ow = 0; ow < OW; ow++) {
                int w0, w1, fw = avg_window(ow, W, k, stride, pad, count_include_pad, &w0, &w1);
                float sum = 0;
                for (int ih = h0; ih < h1; ih++)
                    for (int iw = w0; iw < w1; iw++) sum += x[ih * W + iw];
                int div = fh * fw;
                y[oh * OW + ow] = (h0 < h1 && w0 < w1 && div > 0) ? sum / (float)div : 0.0f;
            }
        }
    }
}

/* dout: N x C x OH x OW -> din += d out / divisor over each window (planes in parallel, no races). */
void md_avgpool2d_backward(float *din, const float *dout, int N, int C, int H, int W, int k, int stride, int pad,
                           int count_include_pad, int OH, int OW) {
    if (!din) return;
    const int planes = N * C;
#pragma omp parallel for schedule(static) if ((size_t)planes * OH * OW * k * k > 65536)
    for (int pl = 0; pl < planes; pl++) {
        float *dx = din + (size_t)pl * H * W;
        const float *g = dout + (size_t)pl * OH * OW;
        for (int oh = 0; oh < OH; oh++) {
            int h0, h1, fh = avg_window(oh, H, k, stride, pad, count_include_pad, &h0, &h1);
            for (int ow = 0; ow < OW; ow++) {
                int w0, w1, fw = avg_window(ow, W, k, stride, pad, count_include_pad, &w0, &w1);
                int div = fh * fw;
                if (h0 >= h1 || w0 >= w1 || div <= 0) continue;
                float v = g[oh * OW + ow] / (float)div;
                for (int ih = h0; ih < h1; ih++)
                    for (int iw = w0; iw < w1; iw++) dx[ih * W + iw] += v;
            }
        }
    }
}
