/* conv2d_1x1.c — 1x1 stride-1 pad-0 convolutions as plain GEMMs (see conv2d_internal.h).
 *
 * The input plane stack of image n is itself the column matrix (C x HW), so no scratch is used:
 *   forward:  out_n (OC x HW) = W (OC x C) @ in_n [+ bias]
 *   backward: dW += dout_n @ in_n^T,  din_n += W^T @ dout_n
 * With several threads the GEMMs run single-threaded inside one parallel region (OpenBLAS does not
 * thread inside a region), each work item a block of whole output columns of one image (forward, input
 * gradient) or of output-channel rows over all images (weight gradient), so no two items write the same
 * element and the per-GEMM synchronisation of a threaded OpenBLAS call is gone. With one thread, or a map
 * too small to split, each image is one GEMM that OpenBLAS threads itself. */
#include "minidet/gemm.h"
#include "conv2d_internal.h"
#include <omp.h>

/* Output pixels per work item at least: a narrower GEMM costs more in packing than the split saves. */
#define MD_PW_MIN_COLS 64
/* Output channels per thread at least (x2): the weight gradient is split by output-channel rows. */
#define MD_PW_MIN_OC_PER_THREAD 2

int md_conv2d_is_1x1(const md_conv2d_params *p) {
    return p->KH == 1 && p->KW == 1 && p->stride == 1 && p->pad == 0;
}

/* Column blocks per image (0: leave the threading to OpenBLAS). */
static int pw_split(const md_conv2d_params *p) {
    const int T = omp_get_max_threads();
    if (T < 2 || omp_in_parallel()) return 0;
    const int per = (T + p->N - 1) / p->N;
    return (long)p->OH * p->OW / per >= MD_PW_MIN_COLS && p->OC >= MD_PW_MIN_OC_PER_THREAD * T ? per : 0;
}

static void pw_forward_split(float *out, const float *in, const float *weight, const float *bias, const md_conv2d_params *p) {
    const int OC = p->OC, K = p->C, HW = p->OH * p->OW, per = pw_split(p), items = p->N * per;
#pragma omp parallel for schedule(static)
    for (int it = 0; it < items; it++) {
        const int n = it / per, j0 = (int)((long)HW * (it % per) / per), j1 = (int)((long)HW * (it % per + 1) / per);
        float *o = out + (size_t)n * OC * HW + j0;
        if (bias)
            for (int oc = 0; oc < OC; oc++)
                for (int j = 0; j < j1 - j0; j++) o[(size_t)oc * HW + j] = bias[oc];
        md_sgemm(0, 0, OC, j1 - j0, K, 1.0f, weight, K, in + (size_t)n * K * HW + j0, HW, bias ? 1.0f : 0.0f, o, HW);
    }
}

static void pw_backward_split(float *din, float *dweight, const float *dout, const float *in, const float *weight, const md_conv2d_params *p) {
    const int OC = p->OC, K = p->C, HW = p->OH * p->OW, N = p->N, per = pw_split(p), T = omp_get_max_threads();
#pragma omp parallel
    {
        if (dweight) { /* dweight rows [r0, r1) += sum over images dout_n rows @ in_n^T */
#pragma omp for schedule(static)
            for (int it = 0; it < T; it++) {
                const int r0 = (int)((long)OC * it / T), r1 = (int)((long)OC * (it + 1) / T);
                for (int n = 0; n < N && r1 > r0; n++)
                    md_sgemm(0, 1, r1 - r0, K, HW, 1.0f, dout + ((size_t)n * OC + r0) * HW, HW, in + (size_t)n * K * HW, HW, 1.0f,
                             dweight + (size_t)r0 * K, K);
            }
        }
        if (din) {
#pragma omp for schedule(static)
            for (int it = 0; it < N * per; it++) {
                const int n = it / per, j0 = (int)((long)HW * (it % per) / per), j1 = (int)((long)HW * (it % per + 1) / per);
                md_sgemm(1, 0, K, j1 - j0, OC, 1.0f, weight, K, dout + (size_t)n * OC * HW + j0, HW, 1.0f, din + (size_t)n * K * HW + j0, HW);
            }
        }
    }
}

void md_conv2d_1x1_forward(float *out, const float *in, const float *weight, const float *bias, const md_conv2d_params *p) {
    if (pw_split(p) > 0) {
        pw_forward_split(out, in, weight, bias, p);
        return;
    }
    const int OC = p->OC, K = p->C;
    const size_t ohow = (size_t)p->OH * p->OW, in_sz = (size_t)K * ohow, out_sz = (size_t)OC * ohow;
    for (int n = 0; n < p->N; n++) {
        float *o = out + (size_t)n * out_sz;
        if (bias) md_conv2d_fill_bias(o, bias, OC, ohow);
        md_sgemm(0, 0, OC, (int)ohow, K, 1.0f, weight, K, in + (size_t)n * in_sz, (int)ohow, bias ? 1.0f : 0.0f, o, (int)ohow);
    }
}

void md_conv2d_1x1_backward(float *din, float *dweight, const float *dout, const float *in, const float *weight,
                            const md_conv2d_params *p) {
    if (pw_split(p) > 0) {
        pw_backward_split(din, dweight, dout, in, weight, p);
        return;
    }
    const int OC = p->OC, K = p->C;
    const size_t ohow = (size_t)p->OH * p->OW, in_sz = (size_t)K * ohow, out_sz = (size_t)OC * ohow;
    for (int n = 0; n < p->N; n++) {
        const float *g = dout + (size_t)n * out_sz, *x = in + (size_t)n * in_sz;
        if (dweight) md_sgemm(0, 1, OC, K, (int)ohow, 1.0f, g, (int)ohow, x, (int)ohow, 1.0f, dweight, K);
        if (din) md_sgemm(1, 0, K, (int)ohow, OC, 1.0f, weight, K, g, (int)ohow, 1.0f, din + (size_t)n * in_sz, (int)ohow);
    }
}
