/* conv2d.c — 2-D convolution as im2col + sgemm (see include/minidet/ops.h).
 *
 * Forward, per image n:   out_n (OC x OHOW) = W (OC x CKK) @ col_n (CKK x OHOW) [+ bias]
 * Backward, per image n:  dW   += dout_n (OC x OHOW) @ col_n^T           (beta = 1)
 *                         col   = W^T (CKK x OC) @ dout_n, din_n += col2im(col)
 * with CKK = C*KH*KW. A 1x1, stride-1, pad-0 convolution needs no im2col: the
 * input plane itself is the column matrix (C x HW), and scratch is not used.
 * Otherwise the column matrix is built and consumed in chunks of whole output rows
 * (p->chunk_rows, by default enough for >= 1024 GEMM columns and about 16 MB), each
 * chunk one GEMM writing/reading a column block of out/dout (ldc = OHOW): the
 * scratch stays cache-sized instead of CKK x OHOW (177 MB at FPN P2 for 480x640).
 * im2col is parallel over the CKK rows (each row written by one thread) and
 * col2im over input channels (each channel's plane accumulated by one thread),
 * so neither races. BLAS threads itself, except in the Winograd path below, which runs each chunk in one
 * parallel region and hands whole single-threaded GEMMs to the threads. */
#include <string.h>
#include "minidet/gemm.h"
#include "minidet/ops.h"
#include <omp.h>

static int default_chunk_rows(const md_conv2d_params *p);
static int wino_geometry(const md_conv2d_params *p);
static int use_wino(const md_conv2d_params *p);
static size_t wino_scratch_floats(const md_conv2d_params *p);

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
    p->chunk_rows = default_chunk_rows(p);
    /* where it pays on 2 AMD cores (R50-FPN at 480x640, CPU time vs im2col): 256 ch at 120x160 1.4-1.7x,
     * at 30x40 ~1.2x; 512 ch at 15x20 and 64 ch at 120x160 no gain (transforms and edge tiles dominate) */
    p->winograd = wino_geometry(p) && C >= 128 && OC >= 128 && (long)p->OH * p->OW >= 1024;
    return 1;
}

static int is_pointwise(const md_conv2d_params *p) {
    return p->KH == 1 && p->KW == 1 && p->stride == 1 && p->pad == 0;
}

/* Output rows per im2col chunk: enough rows for >= MD_CONV_MIN_COLS GEMM columns, and more while
 * the chunk's column matrix stays within MD_CONV_CHUNK_FLOATS (so it stays in the last-level
 * cache); never more than OH. */
#define MD_CONV_CHUNK_FLOATS ((size_t)4 << 20)
#define MD_CONV_MIN_COLS 1024
static int default_chunk_rows(const md_conv2d_params *p) {
    const size_t ckk = (size_t)p->C * p->KH * p->KW, row = ckk * (size_t)p->OW;
    size_t r = MD_CONV_CHUNK_FLOATS / row, rmin = ((size_t)MD_CONV_MIN_COLS + p->OW - 1) / p->OW;
    if (r < rmin) r = rmin;
    if (r < 1) r = 1;
    return r > (size_t)p->OH ? p->OH : (int)r;
}

static int chunk_rows(const md_conv2d_params *p) {
    return p->chunk_rows >= 1 && p->chunk_rows < p->OH ? p->chunk_rows : p->OH;
}

size_t md_conv2d_scratch_floats(const md_conv2d_params *p) {
    if (is_pointwise(p)) return 0;
    size_t n = (size_t)p->C * p->KH * p->KW * (size_t)chunk_rows(p) * p->OW;
    if (use_wino(p) && wino_scratch_floats(p) > n) n = wino_scratch_floats(p);
    return n;
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
#pragma omp parallel for schedule(static) if (rows * ncol > 32768)
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
#pragma omp parallel for schedule(static) if ((size_t)C * KH * KW * ncol > 32768)
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

/* ---------------------------------------------------------------- Winograd F(2x2, 3x3)
 * For 3x3, stride-1, pad-1, dilation-1 convolutions (p->winograd, set by md_conv2d_init when
 * C, OC >= 128 and OH*OW >= 1024): each 2x2 output tile is A^T [ (G g G^T) .* (B^T d B) ] A over its 4x4 input
 * tile d, so the 16 element-wise products over channels become 16 GEMMs
 *   M[xi] (Cout x tiles) = U[xi] (Cout x Cin) @ V[xi] (Cin x tiles),   xi = 0..15,
 * with 2.25x fewer multiply-adds than im2col. The transforms use only +-1 and 0.5, so results
 * differ from im2col at float-rounding level (a few ulps of the largest term). Tiles of all N
 * images are numbered together (tile row gr = n*TH + ty), so small maps make wide GEMMs; they
 * are processed in chunks of whole tile rows. Both gradients are adjoints of these steps, computed
 * together from one transform of the output gradient per tile (wino_backward).
 * Scratch: U and dU (16 x Cout x Cin each), then V and M (16 x (Cin + Cout) x tiles of a chunk). */
#define WINO_CHUNK_FLOATS ((size_t)6 << 20)

static int wino_geometry(const md_conv2d_params *p) {
    return p->KH == 3 && p->KW == 3 && p->stride == 1 && p->pad == 1 && p->dilation == 1;
}

static int use_wino(const md_conv2d_params *p) { return p->winograd && wino_geometry(p); }

/* Tile rows per chunk (C and OC enter symmetrically, so forward and input gradient agree). */
static int wino_chunk_rows(const md_conv2d_params *p) {
    const int TW = (p->OW + 1) / 2, TR = p->N * ((p->OH + 1) / 2);
    size_t r = WINO_CHUNK_FLOATS / (16 * ((size_t)p->C + p->OC) * (size_t)TW);
    if (r < 1) r = 1;
    return r > (size_t)TR ? TR : (int)r;
}

/* The 16 planes of V and M lie WINO_SKEW floats further apart than their size: with a
 * power-of-two plane size the 16 streams of a transform would all map to the same cache sets. */
#define WINO_SKEW 48

static size_t wino_scratch_floats(const md_conv2d_params *p) {
    const size_t nt = (size_t)wino_chunk_rows(p) * ((p->OW + 1) / 2);
    return 32 * (size_t)p->C * p->OC + 16 * (((size_t)p->C + p->OC) * nt + 2 * WINO_SKEW);
}

/* U[xi][o][i] = (G g G^T)[xi] of the 3x3 kernel g = w[o][i]. */
static void wino_weights(float *U, const float *w, int Cout, int Cin) {
    const size_t plane = (size_t)Cout * Cin;
#pragma omp parallel for schedule(static) if (plane > 4096)
    for (int o = 0; o < Cout; o++)
        for (int i = 0; i < Cin; i++) {
            const float *g = w + ((size_t)o * Cin + i) * 9;
            float t[4][3];
            for (int j = 0; j < 3; j++) {
                t[0][j] = g[j];
                t[1][j] = 0.5f * (g[j] + g[3 + j] + g[6 + j]);
                t[2][j] = 0.5f * (g[j] - g[3 + j] + g[6 + j]);
                t[3][j] = g[6 + j];
            }
            float *u = U + (size_t)o * Cin + i;
            for (int r = 0; r < 4; r++) {
                u[(size_t)(r * 4 + 0) * plane] = t[r][0];
                u[(size_t)(r * 4 + 1) * plane] = 0.5f * (t[r][0] + t[r][1] + t[r][2]);
                u[(size_t)(r * 4 + 2) * plane] = 0.5f * (t[r][0] - t[r][1] + t[r][2]);
                u[(size_t)(r * 4 + 3) * plane] = t[r][2];
            }
        }
}

/* V[xi][c][t] = (B^T d B)[xi] for the 4x4 input tiles d of tile rows [gr0, gr1) (all N images
 * numbered together, TH tile rows each), plane stride Cin*nt + WINO_SKEW. */
static void wino_input(float *V, const float *in, int Cin, int H, int W, int gr0, int gr1) {
    const int TH = (H + 1) / 2, TW = (W + 1) / 2, nt = (gr1 - gr0) * TW;
    const size_t HW = (size_t)H * W;
#pragma omp for schedule(static)
    for (int c = 0; c < Cin; c++) {
        for (int gr = gr0; gr < gr1; gr++) {
            const int n = gr / TH, y0 = 2 * (gr % TH) - 1;
            const float *plane = in + ((size_t)n * Cin + c) * HW;
            float *v = V + (size_t)c * nt + (size_t)(gr - gr0) * TW;
            for (int tx = 0; tx < TW; tx++) {
                const int x0 = 2 * tx - 1;
                float d[4][4];
                if (y0 >= 0 && y0 + 3 < H && x0 >= 0 && x0 + 3 < W) {
                    for (int r = 0; r < 4; r++)
                        for (int k = 0; k < 4; k++) d[r][k] = plane[(size_t)(y0 + r) * W + x0 + k];
                } else {
                    for (int r = 0; r < 4; r++)
                        for (int k = 0; k < 4; k++) {
                            const int yy = y0 + r, xx = x0 + k;
                            d[r][k] = (yy >= 0 && yy < H && xx >= 0 && xx < W) ? plane[(size_t)yy * W + xx] : 0.0f;
                        }
                }
                float t[4][4];
                for (int k = 0; k < 4; k++) {
                    t[0][k] = d[0][k] - d[2][k];
                    t[1][k] = d[1][k] + d[2][k];
                    t[2][k] = d[2][k] - d[1][k];
                    t[3][k] = d[1][k] - d[3][k];
                }
                const size_t st = (size_t)Cin * nt + WINO_SKEW;
                for (int r = 0; r < 4; r++) {
                    v[(size_t)(r * 4 + 0) * st + tx] = t[r][0] - t[r][2];
                    v[(size_t)(r * 4 + 1) * st + tx] = t[r][1] + t[r][2];
                    v[(size_t)(r * 4 + 2) * st + tx] = t[r][2] - t[r][1];
                    v[(size_t)(r * 4 + 3) * st + tx] = t[r][1] - t[r][3];
                }
            }
        }
    }
}

/* GEMM work items per chunk: the 16 GEMMs of a chunk are shared out whole among the threads (each a
 * single-threaded md_sgemm, OpenBLAS runs single-threaded inside a parallel region), split in
 * column (or row) blocks when there are more than 8 threads, so one chunk costs one fork and
 * three barriers instead of 16 multi-threaded GEMMs with their internal synchronisation. */
static int wino_splits(void) {
    const int t = omp_get_max_threads();
    return t <= 8 ? 1 : (t + 7) / 8;
}

/* out (N x Cout x H x W) = 3x3 pad-1 conv of in (N x Cin x H x W) with the transformed weights U [+ bias]. */
static void wino_run(float *out, const float *in, const float *U, const float *bias, int N, int Cin, int Cout, int H,
                     int W, int chunk_rows, float *scratch) {
    const int TH = (H + 1) / 2, TW = (W + 1) / 2, TR = N * TH, ns = wino_splits();
    const size_t HW = (size_t)H * W, ntmax = (size_t)chunk_rows * TW;
    float *V = scratch, *M = scratch + 16 * ((size_t)Cin * ntmax + WINO_SKEW);
#pragma omp parallel if ((size_t)Cout * ntmax > 2048)
    for (int gr0 = 0; gr0 < TR; gr0 += chunk_rows) {
        const int gr1 = gr0 + chunk_rows < TR ? gr0 + chunk_rows : TR;
        const int nt = (gr1 - gr0) * TW;
        wino_input(V, in, Cin, H, W, gr0, gr1);
#pragma omp for schedule(static)
        for (int item = 0; item < 16 * ns; item++) {
            const int xi = item / ns, j0 = (int)((long)nt * (item % ns) / ns), j1 = (int)((long)nt * (item % ns + 1) / ns);
            md_sgemm(0, 0, Cout, j1 - j0, Cin, 1.0f, U + (size_t)xi * Cout * Cin, Cin,
                     V + (size_t)xi * ((size_t)Cin * nt + WINO_SKEW) + j0, nt, 0.0f, M + (size_t)xi * ((size_t)Cout * nt + WINO_SKEW) + j0,
                     nt);
        }
        /* out tile = A^T m A (+ bias), cropped at the right and bottom edges */
#pragma omp for schedule(static)
        for (int o = 0; o < Cout; o++) {
            const float b = bias ? bias[o] : 0.0f;
            const size_t st = (size_t)Cout * nt + WINO_SKEW;
            for (int gr = gr0; gr < gr1; gr++) {
                const int n = gr / TH, y = 2 * (gr % TH);
                float *plane = out + ((size_t)n * Cout + o) * HW;
                const float *m = M + (size_t)o * nt + (size_t)(gr - gr0) * TW;
                for (int tx = 0; tx < TW; tx++) {
                    float q[16];
                    for (int k = 0; k < 16; k++) q[k] = m[(size_t)k * st + tx];
                    float r0[4], r1[4];
                    for (int k = 0; k < 4; k++) {
                        r0[k] = q[k] + q[4 + k] + q[8 + k];
                        r1[k] = q[4 + k] - q[8 + k] - q[12 + k];
                    }
                    const float yv[2][2] = {{r0[0] + r0[1] + r0[2], r0[1] - r0[2] - r0[3]}, {r1[0] + r1[1] + r1[2], r1[1] - r1[2] - r1[3]}};
                    const int x = 2 * tx;
                    for (int i = 0; i < 2 && y + i < H; i++)
                        for (int j = 0; j < 2 && x + j < W; j++) plane[(size_t)(y + i) * W + x + j] = yv[i][j] + b;
                }
            }
        }
    }
}

/* din (N x Cin x H x W) += B dV B^T of every 4x4 input tile of tile rows [gr0, gr1), overlapping tiles
 * added up and the padding ring dropped: the adjoint of wino_input. dV has wino_input's layout; each
 * channel's plane is written by one thread. */
static void wino_input_adjoint(float *din, const float *dV, int Cin, int H, int W, int gr0, int gr1) {
    const int TH = (H + 1) / 2, TW = (W + 1) / 2, nt = (gr1 - gr0) * TW;
    const size_t HW = (size_t)H * W, st = (size_t)Cin * nt + WINO_SKEW;
#pragma omp for schedule(static)
    for (int c = 0; c < Cin; c++) {
        for (int gr = gr0; gr < gr1; gr++) {
            const int n = gr / TH, y0 = 2 * (gr % TH) - 1;
            float *plane = din + ((size_t)n * Cin + c) * HW;
            const float *v = dV + (size_t)c * nt + (size_t)(gr - gr0) * TW;
            for (int tx = 0; tx < TW; tx++) {
                const int x0 = 2 * tx - 1;
                float t[4][4], d[4][4];
                for (int r = 0; r < 4; r++) { /* columns: adjoint of v = t B */
                    const float q0 = v[(size_t)(r * 4 + 0) * st + tx], q1 = v[(size_t)(r * 4 + 1) * st + tx];
                    const float q2 = v[(size_t)(r * 4 + 2) * st + tx], q3 = v[(size_t)(r * 4 + 3) * st + tx];
                    t[r][0] = q0;
                    t[r][1] = q1 - q2 + q3;
                    t[r][2] = q1 + q2 - q0;
                    t[r][3] = -q3;
                }
                for (int k = 0; k < 4; k++) { /* rows: adjoint of t = B^T d */
                    d[0][k] = t[0][k];
                    d[1][k] = t[1][k] - t[2][k] + t[3][k];
                    d[2][k] = t[1][k] + t[2][k] - t[0][k];
                    d[3][k] = -t[3][k];
                }
                if (y0 >= 0 && y0 + 3 < H && x0 >= 0 && x0 + 3 < W) {
                    for (int r = 0; r < 4; r++)
                        for (int k = 0; k < 4; k++) plane[(size_t)(y0 + r) * W + x0 + k] += d[r][k];
                } else {
                    for (int r = 0; r < 4; r++)
                        for (int k = 0; k < 4; k++) {
                            const int yy = y0 + r, xx = x0 + k;
                            if (yy >= 0 && yy < H && xx >= 0 && xx < W) plane[(size_t)yy * W + xx] += d[r][k];
                        }
                }
            }
        }
    }
}

/* Backward of wino_run's forward, both gradients from one pass over the chunks, sharing the output-gradient
 * transform Mg = A dY A^T (16 planes, Cout x tiles):
 *   dweight (Cout x Cin x 3 x 3) += G^T [ sum over tiles Mg .* (B^T d B) ] G, as 16 GEMMs dU[xi] (Cout x Cin)
 *                                    += Mg[xi] (Cout x tiles) @ V[xi]^T  (V: the input transform),
 *   din (N x Cin x H x W)         += B dV B^T scattered over the overlapping 4x4 input tiles, with
 *                                    dV[xi] (Cin x tiles) = U[xi]^T @ Mg[xi]  (U: the forward's G g G^T).
 * Either may be NULL. Scratch: dU (if dweight), U (if din), V (reused for dV), Mg. */
static void wino_backward(float *din, float *dweight, const float *in, const float *dout, const float *weight, int N, int Cin, int Cout,
                          int H, int W, int chunk_rows, float *scratch) {
    const int TH = (H + 1) / 2, TW = (W + 1) / 2, TR = N * TH;
    const size_t HW = (size_t)H * W, ntmax = (size_t)chunk_rows * TW, plane = (size_t)Cout * Cin;
    float *dU = scratch, *U = scratch + 16 * plane, *V = U + 16 * plane, *Mg = V + 16 * ((size_t)Cin * ntmax + WINO_SKEW);
    if (din) wino_weights(U, weight, Cout, Cin);
    const int ns = wino_splits();
#pragma omp parallel if ((size_t)Cout * ntmax > 2048)
    for (int gr0 = 0; gr0 < TR; gr0 += chunk_rows) {
        const int gr1 = gr0 + chunk_rows < TR ? gr0 + chunk_rows : TR;
        const int nt = (gr1 - gr0) * TW;
        const size_t sv = (size_t)Cin * nt + WINO_SKEW, sm = (size_t)Cout * nt + WINO_SKEW;
        if (dweight) wino_input(V, in, Cin, H, W, gr0, gr1);
        /* Mg[xi][o][t] = (A dy A^T)[xi] of the 2x2 output-gradient tile (0 outside the map) */
#pragma omp for schedule(static)
        for (int o = 0; o < Cout; o++) {
            for (int gr = gr0; gr < gr1; gr++) {
                const int n = gr / TH, y = 2 * (gr % TH);
                const float *plane_g = dout + ((size_t)n * Cout + o) * HW;
                float *m = Mg + (size_t)o * nt + (size_t)(gr - gr0) * TW;
                for (int tx = 0; tx < TW; tx++) {
                    const int x = 2 * tx;
                    float g[2][2];
                    for (int i = 0; i < 2; i++)
                        for (int j = 0; j < 2; j++) g[i][j] = (y + i < H && x + j < W) ? plane_g[(size_t)(y + i) * W + x + j] : 0.0f;
                    float a[4][2];
                    for (int j = 0; j < 2; j++) {
                        a[0][j] = g[0][j];
                        a[1][j] = g[0][j] + g[1][j];
                        a[2][j] = g[0][j] - g[1][j];
                        a[3][j] = -g[1][j];
                    }
                    for (int r = 0; r < 4; r++) {
                        m[(size_t)(r * 4 + 0) * sm + tx] = a[r][0];
                        m[(size_t)(r * 4 + 1) * sm + tx] = a[r][0] + a[r][1];
                        m[(size_t)(r * 4 + 2) * sm + tx] = a[r][0] - a[r][1];
                        m[(size_t)(r * 4 + 3) * sm + tx] = -a[r][1];
                    }
                }
            }
        }
        if (dweight) { /* dU[xi] rows [r0, r1) += Mg[xi] @ V[xi]^T: each item owns its block of dU */
#pragma omp for schedule(static)
            for (int item = 0; item < 16 * ns; item++) {
                const int xi = item / ns, r0 = (int)((long)Cout * (item % ns) / ns), r1 = (int)((long)Cout * (item % ns + 1) / ns);
                md_sgemm(0, 1, r1 - r0, Cin, nt, 1.0f, Mg + (size_t)xi * sm + (size_t)r0 * nt, nt, V + (size_t)xi * sv, nt,
                         gr0 ? 1.0f : 0.0f, dU + (size_t)xi * plane + (size_t)r0 * Cin, Cin);
            }
        }
        if (din) { /* dV[xi] (Cin x nt, in V's place) = U[xi]^T @ Mg[xi], then scattered into din */
#pragma omp for schedule(static)
            for (int item = 0; item < 16 * ns; item++) {
                const int xi = item / ns, j0 = (int)((long)nt * (item % ns) / ns), j1 = (int)((long)nt * (item % ns + 1) / ns);
                md_sgemm(1, 0, Cin, j1 - j0, Cout, 1.0f, U + (size_t)xi * plane, Cin, Mg + (size_t)xi * sm + j0, nt, 0.0f,
                         V + (size_t)xi * sv + j0, nt);
            }
            wino_input_adjoint(din, V, Cin, H, W, gr0, gr1);
        }
    }
    if (!dweight) return;
    /* dweight[o][i] += G^T dU G */
#pragma omp parallel for schedule(static) if (plane > 4096)
    for (int o = 0; o < Cout; o++)
        for (int i = 0; i < Cin; i++) {
            float u[4][4];
            for (int k = 0; k < 16; k++) u[k / 4][k % 4] = dU[(size_t)k * plane + (size_t)o * Cin + i];
            float t[3][4];
            for (int k = 0; k < 4; k++) {
                t[0][k] = u[0][k] + 0.5f * (u[1][k] + u[2][k]);
                t[1][k] = 0.5f * (u[1][k] - u[2][k]);
                t[2][k] = 0.5f * (u[1][k] + u[2][k]) + u[3][k];
            }
            float *dg = dweight + ((size_t)o * Cin + i) * 9;
            for (int r = 0; r < 3; r++) {
                dg[r * 3 + 0] += t[r][0] + 0.5f * (t[r][1] + t[r][2]);
                dg[r * 3 + 1] += 0.5f * (t[r][1] - t[r][2]);
                dg[r * 3 + 2] += 0.5f * (t[r][1] + t[r][2]) + t[r][3];
            }
        }
}

/* ---------------------------------------------------------------- 1x1 convs: GEMMs shared out to the threads
 * With several threads, a pointwise conv's GEMMs run single-threaded inside one parallel region
 * (OpenBLAS does not thread inside a region), each work item a block of whole output columns of one image
 * (forward, input gradient) or of output-channel rows over all images (weight gradient), so no two items
 * write the same element and the per-GEMM synchronisation of a threaded OpenBLAS call is gone.
 * pw_split: column blocks per image (0: leave the threading to OpenBLAS: one thread, or a map too small
 * to split). */
static int pw_split(const md_conv2d_params *p) {
    const int T = omp_get_max_threads();
    if (T < 2 || omp_in_parallel()) return 0;
    const int per = (T + p->N - 1) / p->N;
    return (long)p->OH * p->OW / per >= 64 && p->OC >= 2 * T ? per : 0;
}

static void pw_forward(float *out, const float *in, const float *weight, const float *bias, const md_conv2d_params *p) {
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

static void pw_backward(float *din, float *dweight, const float *dout, const float *in, const float *weight, const md_conv2d_params *p) {
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

void md_conv2d_forward(float *out, const float *in, const float *weight, const float *bias, const md_conv2d_params *p, float *scratch) {
    const int OC = p->OC, K = p->C * p->KH * p->KW, OW = p->OW;
    const size_t ohow = (size_t)p->OH * OW, in_sz = (size_t)p->C * p->H * p->W, out_sz = (size_t)OC * ohow;
    const int pointwise = is_pointwise(p), rows = chunk_rows(p);
    if (use_wino(p)) {
        wino_weights(scratch, weight, OC, p->C);
        wino_run(out, in, scratch, bias, p->N, p->C, OC, p->H, p->W, wino_chunk_rows(p), scratch + 16 * (size_t)OC * p->C);
        return;
    }
    if (pointwise && pw_split(p) > 0) {
        pw_forward(out, in, weight, bias, p);
        return;
    }
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
        if (pointwise) {
            md_sgemm(0, 0, OC, (int)ohow, K, 1.0f, weight, K, x, (int)ohow, bias ? 1.0f : 0.0f, o, (int)ohow);
            continue;
        }
        for (int oh0 = 0; oh0 < p->OH; oh0 += rows) {
            const int oh1 = oh0 + rows < p->OH ? oh0 + rows : p->OH, ncol = (oh1 - oh0) * OW;
            im2col(scratch, x, p, oh0, oh1);
            md_sgemm(0, 0, OC, ncol, K, 1.0f, weight, K, scratch, ncol, bias ? 1.0f : 0.0f, o + (size_t)oh0 * OW, (int)ohow);
        }
    }
}

void md_conv2d_backward(float *din, float *dweight, float *dbias, const float *dout, const float *in, const float *weight,
                        const md_conv2d_params *p, float *scratch) {
    const int OC = p->OC, K = p->C * p->KH * p->KW, OW = p->OW;
    const size_t ohow = (size_t)p->OH * OW, in_sz = (size_t)p->C * p->H * p->W, out_sz = (size_t)OC * ohow;
    const int pointwise = is_pointwise(p), rows = chunk_rows(p);
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
    if (pointwise && pw_split(p) > 0) {
        pw_backward(din, dweight, dout, in, weight, p);
        return;
    }
    const int wino = use_wino(p);
    for (int n = 0; n < p->N && !wino; n++) {
        const float *g = dout + (size_t)n * out_sz;
        const float *x = in + (size_t)n * in_sz;
        float *dx = din ? din + (size_t)n * in_sz : NULL;
        if (pointwise) {
            if (dweight) md_sgemm(0, 1, OC, K, (int)ohow, 1.0f, g, (int)ohow, x, (int)ohow, 1.0f, dweight, K);
            if (dx) md_sgemm(1, 0, K, (int)ohow, OC, 1.0f, weight, K, g, (int)ohow, 1.0f, dx, (int)ohow);
            continue;
        }
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
    if (wino) wino_backward(din, dweight, in, dout, weight, p->N, p->C, OC, p->H, p->W, wino_chunk_rows(p), scratch);
}
