/* conv2d_im2col.c — 2-D convolution as im2col + sgemm, the general path (see conv2d_internal.h).
 *
 * Forward, per image n:   out_n (OC x OHOW) = W (OC x CKK) @ col_n (CKK x OHOW) [+ bias]
 * Backward, per image n:  dW   += dout_n (OC x OHOW) @ col_n^T           (beta = 1)
 *                         col   = W^T (CKK x OC) @ dout_n, din_n += col2im(col)
 * with CKK = C*KH*KW. The column matrix is built and consumed in chunks of whole output rows
 * (p->chunk_rows, by default enough for >= MD_CONV_MIN_COLS GEMM columns and about 16 MB), each chunk one
 * GEMM writing/reading a column block of out/dout (ldc = OHOW): the scratch stays cache-sized instead of
 * CKK x OHOW (177 MB at FPN P2 for 480x640). im2col is parallel over the CKK rows (each row written by one
 * thread) and col2im over input channels (each channel's plane accumulated by one thread), so neither
 * races; BLAS threads the GEMMs itself. */
#include <string.h>
#include "minidet/gemm.h"
#include "conv2d_internal.h"

/* Column-matrix floats per chunk at most (16 MB): the chunk stays in the last-level cache between im2col and GEMM. */
#define MD_CONV_CHUNK_FLOATS ((size_t)4 << 20)
/* GEMM columns per chunk at least: narrower GEMMs run below OpenBLAS's packed-kernel speed. */
#define MD_CONV_MIN_COLS 1024

/* Output rows per chunk: enough rows for >= MD_CONV_MIN_COLS GEMM columns, and more while the chunk's column
 * matrix stays within MD_CONV_CHUNK_FLOATS; never more than OH. */
int md_conv2d_im2col_default_chunk_rows(const md_conv2d_params *p) {
    const size_t ckk = (size_t)p->C * p->KH * p->KW, row = ckk * (size_t)p->OW;
    size_t r = MD_CONV_CHUNK_FLOATS / row, rmin = ((size_t)MD_CONV_MIN_COLS + p->OW - 1) / p->OW;
    if (r < rmin) r = rmin;
    if (r < 1) r = 1;
    return r > (size_t)p->OH ? p->OH : (int)r;
}

static int chunk_rows(const md_conv2d_params *p) {
    return p->chunk_rows >= 1 && p->chunk_rows < p->OH ? p->chunk_rows : p->OH;
}

size_t md_conv2d_im2col_scratch_floats(const md_conv2d_params *p) {
    return (size_t)p->C * p->KH * p->KW * (size_t)chunk_rows(p) * p->OW;
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

/* col (CKK x ncol, ncol = (oh1-oh0)*OW) <- patches of output rows [oh0, oh1) of one image plane
 * stack in (C x H x W). Every element is written. */
static void im2col(float *col, const float *in, const md_conv2d_params *p, int oh0, int oh1) {
    const int C = p->C, H = p->H, W = p->W, KH = p->KH, KW = p->KW, OW = p->OW;
    const int s = p->stride, pad = p->pad, d = p->dilation;
    const int rows = C * KH * KW;
    const size_t ncol = (size_t)(oh1 - oh0) * OW;
#pragma omp parallel for schedule(static) if (rows * ncol > MD_CONV_PAR_MIN_ELEMS)
    for (int r = 0; r < rows; r++) {
        const int c = r / (KH * KW), kh = (r / KW) % KH, kw = r % KW;
        const float *plane = in + (size_t)c * H * W;
        float *dst = col + (size_t)r * ncol;
        const int woff = kw * d - pad;
        int lo, hi;
        valid_range(woff, s, W, OW, &lo, &hi);
        for (int oh = oh0; oh < oh1; oh++, dst += OW) {
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

/* din (C x H x W) += scatter of col (CKK x ncol) holding output rows [oh0, oh1); parallel over channels. */
static void col2im_add(float *din, const float *col, const md_conv2d_params *p, int oh0, int oh1) {
    const int C = p->C, H = p->H, W = p->W, KH = p->KH, KW = p->KW, OW = p->OW;
    const int s = p->stride, pad = p->pad, d = p->dilation;
    const size_t ncol = (size_t)(oh1 - oh0) * OW;
#pragma omp parallel for schedule(static) if ((size_t)C * KH * KW * ncol > MD_CONV_PAR_MIN_ELEMS)
    for (int c = 0; c < C; c++) {
        float *plane = din + (size_t)c * H * W;
        for (int kh = 0; kh < KH; kh++) {
            for (int kw = 0; kw < KW; kw++) {
                const float *src = col + ((size_t)(c * KH + kh) * KW + kw) * ncol;
                const int woff = kw * d - pad;
                int lo, hi;
                valid_range(woff, s, W, OW, &lo, &hi);
                for (int oh = oh0; oh < oh1; oh++, src += OW) {
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


void md_conv2d_im2col_forward(float *out, const float *in, const float *weight, const float *bias, const md_conv2d_params *p,
                              float *scratch) {
    const int OC = p->OC, K = p->C * p->KH * p->KW, OW = p->OW, rows = chunk_rows(p);
    const size_t ohow = (size_t)p->OH * OW, in_sz = (size_t)p->C * p->H * p->W, out_sz = (size_t)OC * ohow;
    for (int n = 0; n < p->N; n++) {
        float *o = out + (size_t)n * out_sz;
        const float *x = in + (size_t)n * in_sz;
        if (bias) md_conv2d_fill_bias(o, bias, OC, ohow);
        for (int oh0 = 0; oh0 < p->OH; oh0 += rows) {
            const int oh1 = oh0 + rows < p->OH ? oh0 + rows : p->OH, ncol = (oh1 - oh0) * OW;
            im2col(scratch, x, p, oh0, oh1);
            md_sgemm(0, 0, OC, ncol, K, 1.0f, weight, K, scratch, ncol, bias ? 1.0f : 0.0f, o + (size_t)oh0 * OW, (int)ohow);
        }
    }
}

void md_conv2d_im2col_backward(float *din, float *dweight, const float *dout, const float *in, const float *weight,
                               const md_conv2d_params *p, float *scratch) {
    const int OC = p->OC, K = p->C * p->KH * p->KW, OW = p->OW, rows = chunk_rows(p);
    const size_t ohow = (size_t)p->OH * OW, in_sz = (size_t)p->C * p->H * p->W, out_sz = (size_t)OC * ohow;
    for (int n = 0; n < p->N; n++) {
        const float *g = dout + (size_t)n * out_sz;
        const float *x = in + (size_t)n * in_sz;
        float *dx = din ? din + (size_t)n * in_sz : NULL;
        for (int oh0 = 0; oh0 < p->OH; oh0 += rows) {
            const int oh1 = oh0 + rows < p->OH ? oh0 + rows : p->OH, ncol = (oh1 - oh0) * OW;
            const float *gc = g + (size_t)oh0 * OW;
            if (dweight) {
                im2col(scratch, x, p, oh0, oh1);
                md_sgemm(0, 1, OC, K, ncol, 1.0f, gc, (int)ohow, scratch, ncol, 1.0f, dweight, K);
            }
            if (dx) {
                md_sgemm(1, 0, K, ncol, OC, 1.0f, weight, K, gc, (int)ohow, 0.0f, scratch, ncol);
                col2im_add(dx, scratch, p, oh0, oh1);
            }
        }
    }
}
