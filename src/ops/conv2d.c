/* conv2d.c — 2-D convolution as im2col + one sgemm per image (see include/minidet/ops.h).
 *
 * Forward, per image n:   out_n (OC x OHOW) = W (OC x CKK) @ col_n (CKK x OHOW) [+ bias]
 * Backward, per image n:  dW   += dout_n (OC x OHOW) @ col_n^T           (beta = 1)
 *                         col   = W^T (CKK x OC) @ dout_n, din_n += col2im(col)
 * with CKK = C*KH*KW. A 1x1, stride-1, pad-0 convolution needs no im2col: the
 * input plane itself is the column matrix (C x HW), and scratch is not used.
 * im2col is parallel over the CKK rows (each row written by one thread) and
 * col2im over input channels (each channel's plane accumulated by one thread),
 * so neither races. BLAS threads itself. */
#include <string.h>
#include "minidet/gemm.h"
#include "minidet/ops.h"

int md_conv2d_init(md_conv2d_params *p, int N, int C, int H, int W, int OC, int KH, int KW, int stride, int pad, int dilation) {
    memset(p, 0, sizeof *p);
    if (N < 1 || C < 1 || H < 1 || W < 1 || OC < 1 || KH < 1 || KW < 1 || stride < 1 || pad < 0 || dilation < 1) return 0;
    long eh = (long)H + 2L * pad - (long)dilation * (KH - 1) - 1;
    long ew = (long)W + 2L * pad - (long)dilation * (KW - 1) - 1;
    if (eh < 0 || ew < 0) return 0;
    p->N = N, p->C = C, p->H = H, p->W = W;
    p->OC = OC, p->KH = KH, p->KW = KW;
    p->stride = stride, p->pad = pad, p->dilation = dilation;
    p->OH = (int)(eh / stride + 1);
    p->OW = (int)(ew / stride + 1);
    return 1;
}

static int is_pointwise(const md_conv2d_params *p) {
    return p->KH == 1 && p->KW == 1 && p->stride == 1 && p->pad == 0;
}

size_t md_conv2d_scratch_floats(const md_conv2d_params *p) {
    if (is_pointwise(p)) return 0;
    return (size_t)p->C * p->KH * p->KW * (size_t)p->OH * p->OW;
}

/* First ow in [0, OW) whose input column iw = ow*stride + off is >= 0, and one past the last with iw < W. */
static void valid_range(int off, int stride, int W, int OW, int *lo, int *hi) {
    int a = off >= 0 ? 0 : (-off + stride - 1) / stride;
    int b = W - off <= 0 ? 0 : (W - off + stride - 1) / stride;
    if (a > OW) a = OW;
    if (b > OW) b = OW;
    if (b < a) b = a;
    *lo = a;
    *hi = b;
}

/* col (CKK x OH*OW) <- patches of one image plane stack in (C x H x W). Every element is written. */
static void im2col(float *col, const float *in, const md_conv2d_params *p) {
    const int C = p->C, H = p->H, W = p->W, KH = p->KH, KW = p->KW, OH = p->OH, OW = p->OW;
    const int s = p->stride, pad = p->pad, d = p->dilation;
    const int rows = C * KH * KW;
    const size_t ohow = (size_t)OH * OW;
#pragma omp parallel for schedule(static) if (rows * ohow > 32768)
    for (int r = 0; r < rows; r++) {
        const int c = r / (KH * KW), kh = (r / KW) % KH, kw = r % KW;
        const float *plane = in + (size_t)c * H * W;
        float *dst = col + (size_t)r * ohow;
        const int woff = kw * d - pad;
        int lo, hi;
        valid_range(woff, s, W, OW, &lo, &hi);
        for (int oh = 0; oh < OH; oh++, dst += OW) {
            const int ih = oh * s - pad + kh * d;
            if (ih < 0 || ih >= H) {
                memset(dst, 0, (size_t)OW * sizeof(float));
                continue;
            }
            const float *src = plane + (size_t)ih * W + woff;
            for (int ow = 0; ow < lo; ow++) dst[ow] = 0.0f;
            if (s == 1) {
                memcpy(dst + lo, src + lo, (size_t)(hi - lo) * sizeof(float));
            } else {
                for (int ow = lo; ow < hi; ow++) dst[ow] = src[(size_t)ow * s];
            }
            for (int ow = hi; ow < OW; ow++) dst[ow] = 0.0f;
        }
    }
}

/* din (C x H x W) += scatter of col (CKK x OH*OW); parallel over channels. */
static void col2im_add(float *din, const float *col, const md_conv2d_params *p) {
    const int C = p->C, H = p->H, W = p->W, KH = p->KH, KW = p->KW, OH = p->OH, OW = p->OW;
    const int s = p->stride, pad = p->pad, d = p->dilation;
    const size_t ohow = (size_t)OH * OW;
#pragma omp parallel for schedule(static) if ((size_t)C * KH * KW * ohow > 32768)
    for (int c = 0; c < C; c++) {
        float *plane = din + (size_t)c * H * W;
        for (int kh = 0; kh < KH; kh++) {
            for (int kw = 0; kw < KW; kw++) {
                const float *src = col + ((size_t)(c * KH + kh) * KW + kw) * ohow;
                const int woff = kw * d - pad;
                int lo, hi;
                valid_range(woff, s, W, OW, &lo, &hi);
                for (int oh = 0; oh < OH; oh++, src += OW) {
                    const int ih = oh * s - pad + kh * d;
                    if (ih < 0 || ih >= H) continue;
                    float *dst = plane + (size_t)ih * W + woff;
                    if (s == 1) {
#pragma omp simd
                        for (int ow = lo; ow < hi; ow++) dst[ow] += src[ow];
                    } else {
                        for (int ow = lo; ow < hi; ow++) dst[(size_t)ow * s] += src[ow];
                    }
                }
            }
        }
    }
}

void md_conv2d_forward(float *out, const float *in, const float *weight, const float *bias, const md_conv2d_params *p, float *scratch) {
    const int OC = p->OC, K = p->C * p->KH * p->KW;
    const size_t ohow = (size_t)p->OH * p->OW, in_sz = (size_t)p->C * p->H * p->W, out_sz = (size_t)OC * ohow;
    const int pointwise = is_pointwise(p);
    for (int n = 0; n < p->N; n++) {
        float *o = out + (size_t)n * out_sz;
        const float *x = in + (size_t)n * in_sz;
        /* OpenBLAS zero-fills C itself for beta = 0, so pre-filling with the bias and using beta = 1 costs no extra pass. */
        if (bias) {
#pragma omp parallel for schedule(static) if (out_sz > 32768)
            for (int oc = 0; oc < OC; oc++) {
                float *row = o + (size_t)oc * ohow;
                const float b = bias[oc];
                for (size_t i = 0; i < ohow; i++) row[i] = b;
            }
        }
        const float *colm = x;
        if (!pointwise) {
            im2col(scratch, x, p);
            colm = scratch;
        }
        md_sgemm(0, 0, OC, (int)ohow, K, 1.0f, weight, K, colm, (int)ohow, bias ? 1.0f : 0.0f, o, (int)ohow);
    }
}

void md_conv2d_backward(float *din, float *dweight, float *dbias, const float *dout, const float *in, const float *weight,
                        const md_conv2d_params *p, float *scratch) {
    const int OC = p->OC, K = p->C * p->KH * p->KW;
    const size_t ohow = (size_t)p->OH * p->OW, in_sz = (size_t)p->C * p->H * p->W, out_sz = (size_t)OC * ohow;
    const int pointwise = is_pointwise(p);
    if (dbias) {
        for (int n = 0; n < p->N; n++) {
            const float *g = dout + (size_t)n * out_sz;
#pragma omp parallel for schedule(static) if (out_sz > 32768)
            for (int oc = 0; oc < OC; oc++) {
                const float *row = g + (size_t)oc * ohow;
                double acc = 0.0;
                for (size_t i = 0; i < ohow; i++) acc += row[i];
                dbias[oc] += (float)acc;
            }
        }
    }
    if (!dweight && !din) return;
    for (int n = 0; n < p->N; n++) {
        const float *g = dout + (size_t)n * out_sz;
        const float *x = in + (size_t)n * in_sz;
        if (dweight) {
            const float *colm = x;
            if (!pointwise) {
                im2col(scratch, x, p);
                colm = scratch;
            }
            md_sgemm(0, 1, OC, K, (int)ohow, 1.0f, g, (int)ohow, colm, (int)ohow, 1.0f, dweight, K);
        }
        if (din) {
            float *dx = din + (size_t)n * in_sz;
            if (pointwise) {
                md_sgemm(1, 0, K, (int)ohow, OC, 1.0f, weight, K, g, (int)ohow, 1.0f, dx, (int)ohow);
            } else {
                md_sgemm(1, 0, K, (int)ohow, OC, 1.0f, weight, K, g, (int)ohow, 0.0f, scratch, (int)ohow);
                col2im_add(dx, scratch, p);
            }
        }
    }
}
