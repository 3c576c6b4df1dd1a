/* conv2d_internal.h — the three algorithms behind md_conv2d_* (private to src/ops).
 *
 * conv2d.c picks one per geometry and owns what they share (bias fill, bias gradient); each algorithm
 * file has its forward, both gradients and the scratch it needs:
 *   conv2d_1x1.c       1x1 stride-1 pad-0: the input plane is the GEMM operand, no scratch
 *   conv2d_winograd.c  3x3 stride-1 pad-1 on wide enough maps: Winograd F(2x2) or F(4x4)
 *   conv2d_im2col.c    everything else: im2col + GEMM in chunks of output rows
 * The thresholds below are tuned on the 2-core bench machine; the measurements are in docs/BENCHMARKS.md. */
#ifndef MINIDET_CONV2D_INTERNAL_H
#define MINIDET_CONV2D_INTERNAL_H
#include <stddef.h>
#include "minidet/ops.h"

/* Loops touching more elements than this fork OpenMP threads: for fewer the fork costs more than the loop. */
#define MD_CONV_PAR_MIN_ELEMS 32768
/* Winograd from this many input and output channels: with fewer, the transforms cost more than the GEMMs save. */
#define MD_WINO_MIN_CHANNELS 64
/* F(2x2) from this many output pixels of the whole batch (N x OH x OW: the tiles of all images form one GEMM
 * width): on fewer, the edge tiles and transforms outweigh the saved multiply-adds. */
#define MD_WINO2_MIN_PIXELS 160
/* F(4x4) from this many: it saves 4x instead of 2.25x multiply-adds but has larger transforms and edge tiles. */
#define MD_WINO4_MIN_PIXELS 1200

/* out (OC x ohow) rows = bias[oc], for a GEMM that then accumulates with beta = 1 (OpenBLAS zero-fills C itself for
 * beta = 0, so the fill costs no extra pass). */
void md_conv2d_fill_bias(float *out, const float *bias, int OC, size_t ohow);

/* 1x1 stride-1 pad-0 convolutions: plain GEMMs on the input planes. */
int md_conv2d_is_1x1(const md_conv2d_params *p);
void md_conv2d_1x1_forward(float *out, const float *in, const float *weight, const float *bias, const md_conv2d_params *p);
void md_conv2d_1x1_backward(float *din, float *dweight, const float *dout, const float *in, const float *weight,
                            const md_conv2d_params *p);

/* Winograd F(m x m, 3x3), m = wino_m (2 or 4), for p->winograd != 0 on md_conv2d_wino_geometry. */
int md_conv2d_wino_geometry(const md_conv2d_params *p);
size_t md_conv2d_wino_scratch_floats(const md_conv2d_params *p);
void md_conv2d_wino_forward(float *out, const float *in, const float *weight, const float *bias, const md_conv2d_params *p,
                            float *scratch);
void md_conv2d_wino_backward(float *din, float *dweight, const float *dout, const float *in, const float *weight,
                             const md_conv2d_params *p, float *scratch);

/* im2col + GEMM, in chunks of output rows. */
int md_conv2d_im2col_default_chunk_rows(const md_conv2d_params *p);
size_t md_conv2d_im2col_scratch_floats(const md_conv2d_params *p);
void md_conv2d_im2col_forward(float *out, const float *in, const float *weight, const float *bias, const md_conv2d_params *p,
                              float *scratch);
void md_conv2d_im2col_backward(float *din, float *dweight, const float *dout, const float *in, const float *weight,
                               const md_conv2d_params *p, float *scratch);

#endif
