/* conv2d.c — 2-D convolution (see include/minidet/ops.h): geometry, the choice of algorithm, and what
 * the algorithms share (bias fill, bias gradient). The algorithms are in conv2d_1x1.c, conv2d_winograd.c
 * and conv2d_im2col.c (see conv2d_internal.h). */
#include <string.h>
#include "conv2d_internal.h"

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
    p->chunk_rows = md_conv2d_im2col_default_chunk_rows(p);
    const long px = (long)N * p->OH * p->OW;
    if (md_conv2d_wino_geometry(p) && C >= MD_WINO_MIN_CHANNELS && OC >= MD_WINO_MIN_CHANNELS && px >= MD_WINO2_MIN_PIXELS)
        p->winograd = px >= MD_WINO4_MIN_PIXELS ? 4 : 2;
    return 1;
}

static int use_wino(const md_conv2d_params *p) { return p->winograd && md_conv2d_wino_geometry(p); }

size_t md_conv2d_scratch_floats(const md_conv2d_params *p) {
    if (md_conv2d_is_1x1(p)) return 0;
    size_t n = md_conv2d_im2col_scratch_floats(p);
    if (use_wino(p) && md_conv2d_wino_scratch_floats(p) > n) n = md_conv2d_wino_scratch_floats(p);
    return n;
}

void md_conv2d_fill_bias(float *out, const float *bias, int OC, size_t ohow) {
#pragma omp parallel for schedule(static) if ((size_t)OC * ohow > MD_CONV_PAR_MIN_ELEMS)
    for (int oc = 0; oc < OC; oc++) {
        float *row = out + (size_t)oc * ohow;
        const float b = bias[oc];
        for (size_t i = 0; i < ohow; i++) row[i] = b;
    }
}

void md_conv2d_forward(float *out, const float *in, const float *weight, const float *bias, const md_conv2d_params *p, float *scratch) {
    if (use_wino(p)) md_conv2d_wino_forward(out, in, weight, bias, p, scratch);
    else if (md_conv2d_is_1x1(p)) md_conv2d_1x1_forward(out, in, weight, bias, p);
    else md_conv2d_im2col_forward(out, in, weight, bias, p, scratch);
}

void md_conv2d_backward(float *din, float *dweight, float *dbias, const float *dout, const float *in, const float *weight,
                        const md_conv2d_params *p, float *scratch) {
    const int OC = p->OC;
    const size_t ohow = (size_t)p->OH * p->OW, out_sz = (size_t)OC * ohow;
    if (dbias) {
        for (int n = 0; n < p->N; n++) {
            const float *g = dout + (size_t)n * out_sz;
#pragma omp parallel for schedule(static) if (out_sz > MD_CONV_PAR_MIN_ELEMS)
            for (int oc = 0; oc < OC; oc++) {
                const float *row = g + (size_t)oc * ohow;
                double acc = 0.0;
                for (size_t i = 0; i < ohow; i++) acc += row[i];
                dbias[oc] += (float)acc;
            }
        }
    }
    if (!dweight && !din) return;
    if (use_wino(p)) md_conv2d_wino_backward(din, dweight, dout, in, weight, p, scratch);
    else if (md_conv2d_is_1x1(p)) md_conv2d_1x1_backward(din, dweight, dout, in, weight, p);
    else md_conv2d_im2col_backward(din, dweight, dout, in, weight, p, scratch);
}
