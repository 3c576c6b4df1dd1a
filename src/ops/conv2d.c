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
    /* where it pays on 2 AMD cores (tool_bench_conv, forward + both gradients, N = 2): F(4x4) on 256 channels at
     * 120x160 0.6x the time of the first F(2x2) (which was 0.55x of im2col), at 60x80 on par with F(2x2); F(2x2) on
     * 64 channels at 120x160 0.7x of im2col, at 30x40 0.6x; at 15x20 and below no gain (transforms and edge tiles dominate) */
    const long px = (long)p->OH * p->OW;
    if (wino_geometry(p) && C >= 64 && OC >= 64 && px >= 1024) p->winograd = C >= 128 && OC >= 128 && px >= 4096 ? 4 : 2;
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

/* ---------------------------------------------------------------- Winograd F(m x m, 3x3), m = 2 or 4
 * For 3x3, stride-1, pad-1, dilation-1 convolutions (p->winograd = m, set by md_conv2d_init): each
 * m x m output tile is A^T [ (G g G^T) .* (B^T d B) ] A over its T x T input tile d (T = m + 2), so the
 * T*T element-wise products over channels become T*T GEMMs
 *   M[xi] (Cout x tiles) = U[xi] (Cout x Cin) @ V[xi] (Cin x tiles),   xi = 0..T*T-1,
 * with 2.25x (m = 2) or 4x (m = 4) fewer multiply-adds than im2col. F(2x2) uses only +-1 and 0.5 and
 * differs from im2col at float-rounding level (a few ulps of the largest term); F(4x4) (Lavin & Gray's
 * points 0, +-1, +-2) multiplies by up to 8 in the output transform, so its error is ~10x that of a direct
 * float convolution (measured in tests/test_ops_dense: a few 1e-4 of the largest output, relative).
 * Tiles of all N images are numbered together (tile row gr = n*TH + ty), so small maps make wide GEMMs;
 * they are processed in chunks of whole tile rows. Both gradients are adjoints of these steps, computed
 * together from one transform of the output gradient per tile (wino_backward).
 * Scratch: U and dU (T*T x Cout x Cin each), then V and M (T*T x (Cin + Cout) x tiles of a chunk). */
#define WINO_CHUNK_FLOATS ((size_t)6 << 20)
#define WINO_TMAX 6
#define WINO_INLINE static inline __attribute__((always_inline))

static int wino_geometry(const md_conv2d_params *p) {
    return p->KH == 3 && p->KW == 3 && p->stride == 1 && p->pad == 1 && p->dilation == 1;
}

static int use_wino(const md_conv2d_params *p) { return p->winograd && wino_geometry(p); }

/* output tile size: 4 for p->winograd >= 4, else 2 */
static int wino_m(const md_conv2d_params *p) { return p->winograd >= 4 ? 4 : 2; }

/* The six 1-D transforms of F(m, 3), each x (n_in) -> y (n_out):
 *   IN  = B^T (T -> T), IN_ADJ  = B   (T -> T)    input tile and its adjoint
 *   W   = G   (3 -> T), W_ADJ   = G^T (T -> 3)    kernel and its adjoint
 *   OUT = A^T (T -> m), OUT_ADJ = A   (m -> T)    output tile and its adjoint
 * F(2, 3):  B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1], G = [1 0 0; .5 .5 .5; .5 -.5 .5; 0 0 1],
 *           A^T = [1 1 1 0; 0 1 -1 -1].
 * F(4, 3):  B^T = [4 0 -5 0 1 0; 0 -4 -4 1 1 0; 0 4 -4 -1 1 0; 0 -2 -1 2 1 0; 0 2 -1 -2 1 0; 0 4 0 -5 0 1],
 *           G = [1/4 0 0; -1/6 -1/6 -1/6; -1/6 1/6 -1/6; 1/24 1/12 1/6; 1/24 -1/12 1/6; 0 0 1],
 *           A^T = [1 1 1 1 1 0; 0 1 -1 2 -2 0; 0 1 1 4 4 0; 0 1 -1 8 -8 1]. */
enum { WT_IN, WT_IN_ADJ, WT_W, WT_W_ADJ, WT_OUT, WT_OUT_ADJ };

WINO_INLINE void wt_1d(int op, int m, const float *x, int xs, float *y, int ys) {
#define X(i) x[(i) * xs]
#define Y(i) y[(i) * ys]
    if (m == 2) {
        switch (op) {
        case WT_IN: Y(0) = X(0) - X(2), Y(1) = X(1) + X(2), Y(2) = X(2) - X(1), Y(3) = X(1) - X(3); break;
        case WT_IN_ADJ: Y(0) = X(0), Y(1) = X(1) - X(2) + X(3), Y(2) = X(1) + X(2) - X(0), Y(3) = -X(3); break;
        case WT_W: Y(0) = X(0), Y(1) = 0.5f * (X(0) + X(1) + X(2)), Y(2) = 0.5f * (X(0) - X(1) + X(2)), Y(3) = X(2); break;
        case WT_W_ADJ: Y(0) = X(0) + 0.5f * (X(1) + X(2)), Y(1) = 0.5f * (X(1) - X(2)), Y(2) = 0.5f * (X(1) + X(2)) + X(3); break;
        case WT_OUT: Y(0) = X(0) + X(1) + X(2), Y(1) = X(1) - X(2) - X(3); break;
        default: Y(0) = X(0), Y(1) = X(0) + X(1), Y(2) = X(0) - X(1), Y(3) = -X(1); break;
        }
        return;
    }
    const float s6 = 1.0f / 6.0f;
    switch (op) {
    case WT_IN:
        Y(0) = 4.0f * (X(0) - X(2)) + (X(4) - X(2));
        Y(1) = (X(3) + X(4)) - 4.0f * (X(1) + X(2));
        Y(2) = (X(4) - X(3)) + 4.0f * (X(1) - X(2));
        Y(3) = (X(4) - X(2)) + 2.0f * (X(3) - X(1));
        Y(4) = (X(4) - X(2)) - 2.0f * (X(3) - X(1));
        Y(5) = 4.0f * (X(1) - X(3)) + (X(5) - X(3));
        break;
    case WT_IN_ADJ:
        Y(0) = 4.0f * X(0);
        Y(1) = 4.0f * (X(2) - X(1) + X(5)) + 2.0f * (X(4) - X(3));
        Y(2) = -5.0f * X(0) - 4.0f * (X(1) + X(2)) - (X(3) + X(4));
        Y(3) = (X(1) - X(2)) + 2.0f * (X(3) - X(4)) - 5.0f * X(5);
        Y(4) = X(0) + X(1) + X(2) + X(3) + X(4);
        Y(5) = X(5);
        break;
    case WT_W:
        Y(0) = 0.25f * X(0);
        Y(1) = -s6 * (X(0) + X(1) + X(2));
        Y(2) = -s6 * (X(0) - X(1) + X(2));
        Y(3) = s6 * (0.25f * X(0) + 0.5f * X(1) + X(2));
        Y(4) = s6 * (0.25f * X(0) - 0.5f * X(1) + X(2));
        Y(5) = X(2);
        break;
    case WT_W_ADJ:
        Y(0) = 0.25f * X(0) - s6 * (X(1) + X(2)) + (s6 * 0.25f) * (X(3) + X(4));
        Y(1) = s6 * (X(2) - X(1)) + (s6 * 0.5f) * (X(3) - X(4));
        Y(2) = s6 * ((X(3) + X(4)) - (X(1) + X(2))) + X(5);
        break;
    case WT_OUT: {
        const float a = X(1) + X(2), b = X(1) - X(2), c = X(3) + X(4), d = X(3) - X(4);
        Y(0) = X(0) + a + c, Y(1) = b + 2.0f * d, Y(2) = a + 4.0f * c, Y(3) = b + 8.0f * d + X(5);
        break;
    }
    default: {
        const float a = X(0) + X(2), b = X(1) + X(3), c = X(0) + 4.0f * X(2), d = 2.0f * X(1) + 8.0f * X(3);
        Y(0) = X(0), Y(1) = a + b, Y(2) = a - b, Y(3) = c + d, Y(4) = c - d, Y(5) = X(3);
        break;
    }
    }
#undef X
#undef Y
}

/* Tiles are transformed L at a time (L = 1, or WINO_LANES for a run of tiles inside the map: the
 * loops over the lanes then compile to vector instructions): x holds element (r, k) of tile j at
 * x[(r*nx + k)*L + j], y likewise. y (ny x ny) = F x F^T for the 1-D transform F = op (nx -> ny);
 * the row index is transformed first. */
#define WINO_LANES 8
WINO_INLINE void wt_2d(int op, int m, int L, const float *x, int nx, float *y, int ny) {
    float t[WINO_TMAX * WINO_TMAX * WINO_LANES]; /* t[(k*ny + r)*L + j] = (F x_j)[r][k] */
#pragma GCC unroll 6
    for (int k = 0; k < nx; k++)
#pragma omp simd
        for (int j = 0; j < L; j++) wt_1d(op, m, x + k * L + j, nx * L, t + k * ny * L + j, L);
#pragma GCC unroll 6
    for (int r = 0; r < ny; r++)
#pragma omp simd
        for (int j = 0; j < L; j++) wt_1d(op, m, t + r * L + j, ny * L, y + r * ny * L + j, L);
}

/* The T*T transformed values of L tiles (or kernels) between lane layout q[k*L + j] and the plane-major
 * scratch v[k*st + j] (V, M or Mg at the first tile's column; U or dU at the first kernel). */
WINO_INLINE void lanes_to_planes(float *v, size_t st, const float *q, int n, int L) {
#pragma GCC unroll 36
    for (int k = 0; k < n; k++)
#pragma omp simd
        for (int j = 0; j < L; j++) v[(size_t)k * st + j] = q[k * L + j];
}
WINO_INLINE void planes_to_lanes(float *q, const float *v, size_t st, int n, int L) {
#pragma GCC unroll 36
    for (int k = 0; k < n; k++)
#pragma omp simd
        for (int j = 0; j < L; j++) q[k * L + j] = v[(size_t)k * st + j];
}

/* Tile rows per chunk (C and OC enter symmetrically, so forward and input gradient agree). */
static int wino_chunk_rows(const md_conv2d_params *p) {
    const int m = wino_m(p), T = m + 2, TW = (p->OW + m - 1) / m, TR = p->N * ((p->OH + m - 1) / m);
    size_t r = WINO_CHUNK_FLOATS / ((size_t)T * T * ((size_t)p->C + p->OC) * (size_t)TW);
    if (r < 1) r = 1;
    return r > (size_t)TR ? TR : (int)r;
}

/* The T*T planes of V and M lie WINO_SKEW floats further apart than their size: with a
 * power-of-two plane size the streams of a transform would all map to the same cache sets. */
#define WINO_SKEW 48

static size_t wino_scratch_floats(const md_conv2d_params *p) {
    const int m = wino_m(p);
    const size_t nx = (size_t)(m + 2) * (m + 2), nt = (size_t)wino_chunk_rows(p) * ((p->OW + m - 1) / m);
    return 2 * nx * (size_t)p->C * p->OC + nx * (((size_t)p->C + p->OC) * nt + 2 * WINO_SKEW);
}

/* U[xi][o][i] = (G g G^T)[xi] of the 3x3 kernel g = w[o][i]; WINO_LANES kernels (consecutive i) at a time. */
WINO_INLINE void wino_weights_row(int m, float *U, const float *w, int o, int Cin, size_t plane) {
    const int T = m + 2, L = WINO_LANES;
    int i = 0;
    for (; i + L <= Cin; i += L) {
        float g[9 * WINO_LANES], u[WINO_TMAX * WINO_TMAX * WINO_LANES];
        const float *wi = w + ((size_t)o * Cin + i) * 9;
#pragma GCC unroll 9
        for (int k = 0; k < 9; k++)
#pragma omp simd
            for (int j = 0; j < L; j++) g[k * L + j] = wi[j * 9 + k];
        wt_2d(WT_W, m, L, g, 3, u, T);
        lanes_to_planes(U + (size_t)o * Cin + i, plane, u, T * T, L);
    }
    for (; i < Cin; i++) {
        float u[WINO_TMAX * WINO_TMAX];
        wt_2d(WT_W, m, 1, w + ((size_t)o * Cin + i) * 9, 3, u, T);
        lanes_to_planes(U + (size_t)o * Cin + i, plane, u, T * T, 1);
    }
}
static void wino_weights(int m, float *U, const float *w, int Cout, int Cin) {
    const size_t plane = (size_t)Cout * Cin;
#pragma omp parallel for schedule(static) if (plane > 4096)
    for (int o = 0; o < Cout; o++) {
        if (m == 4) wino_weights_row(4, U, w, o, Cin, plane);
        else wino_weights_row(2, U, w, o, Cin, plane);
    }
}

/* V[xi][c][t] = (B^T d B)[xi] for the T x T input tiles d of tile rows [gr0, gr1) (all N images
 * numbered together, TH tile rows each), plane stride Cin*nt + WINO_SKEW. Called inside a parallel region. */
WINO_INLINE void wino_input_m(int m, float *V, const float *in, int Cin, int H, int W, int gr0, int gr1) {
    const int T = m + 2, L = WINO_LANES, TH = (H + m - 1) / m, TW = (W + m - 1) / m, nt = (gr1 - gr0) * TW;
    const size_t HW = (size_t)H * W, st = (size_t)Cin * nt + WINO_SKEW;
#pragma omp for schedule(static)
    for (int c = 0; c < Cin; c++) {
        for (int gr = gr0; gr < gr1; gr++) {
            const int n = gr / TH, y0 = m * (gr % TH) - 1;
            const float *plane = in + ((size_t)n * Cin + c) * HW;
            float *v = V + (size_t)c * nt + (size_t)(gr - gr0) * TW;
            for (int tx = 0; tx < TW;) {
                const int x0 = m * tx - 1;
                float d[WINO_TMAX * WINO_TMAX * WINO_LANES], q[WINO_TMAX * WINO_TMAX * WINO_LANES];
                if (tx + L <= TW && x0 >= 0 && x0 + m * (L - 1) + T <= W) { /* L tiles, columns inside the map */
#pragma GCC unroll 6
                    for (int r = 0; r < T; r++) {
                        const int yy = y0 + r;
                        const float *row = plane + (size_t)(yy < 0 ? 0 : yy >= H ? H - 1 : yy) * W + x0;
                        const float keep = yy >= 0 && yy < H ? 1.0f : 0.0f;
#pragma GCC unroll 6
                        for (int k = 0; k < T; k++)
#pragma omp simd
                            for (int j = 0; j < L; j++) d[(r * T + k) * L + j] = keep * row[m * j + k];
                    }
                    wt_2d(WT_IN, m, L, d, T, q, T);
                    lanes_to_planes(v + tx, st, q, T * T, L);
                    tx += L;
                    continue;
                }
#pragma GCC unroll 6
                for (int r = 0; r < T; r++)
#pragma GCC unroll 6
                    for (int k = 0; k < T; k++) {
                        const int yy = y0 + r, xx = x0 + k;
                        d[r * T + k] = (yy >= 0 && yy < H && xx >= 0 && xx < W) ? plane[(size_t)yy * W + xx] : 0.0f;
                    }
                wt_2d(WT_IN, m, 1, d, T, q, T);
                lanes_to_planes(v + tx, st, q, T * T, 1);
                tx++;
            }
        }
    }
}
static void wino_input(int m, float *V, const float *in, int Cin, int H, int W, int gr0, int gr1) {
    if (m == 4) wino_input_m(4, V, in, Cin, H, W, gr0, gr1);
    else wino_input_m(2, V, in, Cin, H, W, gr0, gr1);
}

/* out (N x Cout x H x W) tiles of tile rows [gr0, gr1) = A^T M A (+ bias), cropped at the right and bottom
 * edges; M has V's layout with Cout planes. Called inside a parallel region. */
WINO_INLINE void wino_output_m(int m, float *out, const float *M, const float *bias, int Cout, int H, int W, int gr0, int gr1) {
    const int T = m + 2, L = WINO_LANES, TH = (H + m - 1) / m, TW = (W + m - 1) / m, nt = (gr1 - gr0) * TW;
    const size_t HW = (size_t)H * W, st = (size_t)Cout * nt + WINO_SKEW;
#pragma omp for schedule(static)
    for (int o = 0; o < Cout; o++) {
        const float b = bias ? bias[o] : 0.0f;
        for (int gr = gr0; gr < gr1; gr++) {
            const int n = gr / TH, y = m * (gr % TH);
            float *plane = out + ((size_t)n * Cout + o) * HW;
            const float *mm = M + (size_t)o * nt + (size_t)(gr - gr0) * TW;
            for (int tx = 0; tx < TW;) {
                const int x = m * tx;
                float q[WINO_TMAX * WINO_TMAX * WINO_LANES], yv[16 * WINO_LANES];
                if (tx + L <= TW && x + m * L <= W) { /* L whole tiles in x */
                    planes_to_lanes(q, mm + tx, st, T * T, L);
                    wt_2d(WT_OUT, m, L, q, T, yv, m);
                    for (int i = 0; i < m && y + i < H; i++) {
                        float *row = plane + (size_t)(y + i) * W + x;
#pragma GCC unroll 4
                        for (int jj = 0; jj < m; jj++)
#pragma omp simd
                            for (int j = 0; j < L; j++) row[m * j + jj] = yv[(i * m + jj) * L + j] + b;
                    }
                    tx += L;
                    continue;
                }
                planes_to_lanes(q, mm + tx, st, T * T, 1);
                wt_2d(WT_OUT, m, 1, q, T, yv, m);
                for (int i = 0; i < m && y + i < H; i++)
                    for (int j = 0; j < m && x + j < W; j++) plane[(size_t)(y + i) * W + x + j] = yv[i * m + j] + b;
                tx++;
            }
        }
    }
}
static void wino_output(int m, float *out, const float *M, const float *bias, int Cout, int H, int W, int gr0, int gr1) {
    if (m == 4) wino_output_m(4, out, M, bias, Cout, H, W, gr0, gr1);
    else wino_output_m(2, out, M, bias, Cout, H, W, gr0, gr1);
}

/* GEMM work items per chunk: the T*T GEMMs of a chunk are shared out whole among the threads (each a
 * single-threaded md_sgemm, OpenBLAS runs single-threaded inside a parallel region), split in
 * column (or row) blocks when there are more than 8 threads, so one chunk costs one fork and
 * three barriers instead of T*T multi-threaded GEMMs with their internal synchronisation. */
static int wino_splits(void) {
    const int t = omp_get_max_threads();
    return t <= 8 ? 1 : (t + 7) / 8;
}

/* out (N x Cout x H x W) = 3x3 pad-1 conv of in (N x Cin x H x W) with the transformed weights U [+ bias]. */
static void wino_run(int m, float *out, const float *in, const float *U, const float *bias, int N, int Cin, int Cout, int H,
                     int W, int chunk_rows, float *scratch) {
    const int nx = (m + 2) * (m + 2), TW = (W + m - 1) / m, TR = N * ((H + m - 1) / m), ns = wino_splits();
    const size_t ntmax = (size_t)chunk_rows * TW;
    float *V = scratch, *M = scratch + nx * ((size_t)Cin * ntmax + WINO_SKEW);
#pragma omp parallel if ((size_t)Cout * ntmax > 2048)
    for (int gr0 = 0; gr0 < TR; gr0 += chunk_rows) {
        const int gr1 = gr0 + chunk_rows < TR ? gr0 + chunk_rows : TR;
        const int nt = (gr1 - gr0) * TW;
        wino_input(m, V, in, Cin, H, W, gr0, gr1);
#pragma omp for schedule(static)
        for (int item = 0; item < nx * ns; item++) {
            const int xi = item / ns, j0 = (int)((long)nt * (item % ns) / ns), j1 = (int)((long)nt * (item % ns + 1) / ns);
            md_sgemm(0, 0, Cout, j1 - j0, Cin, 1.0f, U + (size_t)xi * Cout * Cin, Cin,
                     V + (size_t)xi * ((size_t)Cin * nt + WINO_SKEW) + j0, nt, 0.0f, M + (size_t)xi * ((size_t)Cout * nt + WINO_SKEW) + j0,
                     nt);
        }
        wino_output(m, out, M, bias, Cout, H, W, gr0, gr1);
    }
}

/* din (N x Cin x H x W) += B dV B^T of every T x T input tile of tile rows [gr0, gr1), overlapping tiles
 * added up and the padding ring dropped: the adjoint of wino_input. dV has wino_input's layout; each
 * channel's plane is written by one thread. Called inside a parallel region. */
WINO_INLINE void wino_input_adjoint_m(int m, float *din, const float *dV, int Cin, int H, int W, int gr0, int gr1) {
    const int T = m + 2, L = WINO_LANES, TH = (H + m - 1) / m, TW = (W + m - 1) / m, nt = (gr1 - gr0) * TW;
    const size_t HW = (size_t)H * W, st = (size_t)Cin * nt + WINO_SKEW;
#pragma omp for schedule(static)
    for (int c = 0; c < Cin; c++) {
        for (int gr = gr0; gr < gr1; gr++) {
            const int n = gr / TH, y0 = m * (gr % TH) - 1;
            float *plane = din + ((size_t)n * Cin + c) * HW;
            const float *v = dV + (size_t)c * nt + (size_t)(gr - gr0) * TW;
            for (int tx = 0; tx < TW;) {
                const int x0 = m * tx - 1;
                float q[WINO_TMAX * WINO_TMAX * WINO_LANES], d[WINO_TMAX * WINO_TMAX * WINO_LANES];
                if (tx + L <= TW && x0 >= 0 && x0 + m * (L - 1) + T <= W) { /* L tiles, columns inside the map */
                    planes_to_lanes(q, v + tx, st, T * T, L);
                    wt_2d(WT_IN_ADJ, m, L, q, T, d, T);
                    for (int r = 0; r < T; r++) {
                        const int yy = y0 + r;
                        if (yy < 0 || yy >= H) continue;
                        float *row = plane + (size_t)yy * W + x0;
                        for (int j = 0; j < L; j++) /* tiles overlap by 2 columns: one tile at a time */
#pragma GCC unroll 6
                            for (int k = 0; k < T; k++) row[m * j + k] += d[(r * T + k) * L + j];
                    }
                    tx += L;
                    continue;
                }
                planes_to_lanes(q, v + tx, st, T * T, 1);
                wt_2d(WT_IN_ADJ, m, 1, q, T, d, T);
                for (int r = 0; r < T; r++)
                    for (int k = 0; k < T; k++) {
                        const int yy = y0 + r, xx = x0 + k;
                        if (yy >= 0 && yy < H && xx >= 0 && xx < W) plane[(size_t)yy * W + xx] += d[r * T + k];
                    }
                tx++;
            }
        }
    }
}
static void wino_input_adjoint(int m, float *din, const float *dV, int Cin, int H, int W, int gr0, int gr1) {
    if (m == 4) wino_input_adjoint_m(4, din, dV, Cin, H, W, gr0, gr1);
    else wino_input_adjoint_m(2, din, dV, Cin, H, W, gr0, gr1);
}

/* Mg[xi][o][t] = (A dy A^T)[xi] of the m x m output-gradient tiles dy of tile rows [gr0, gr1) (0 outside
 * the map): the adjoint of wino_output. Called inside a parallel region. */
WINO_INLINE void wino_output_adjoint_m(int m, float *Mg, const float *dout, int Cout, int H, int W, int gr0, int gr1) {
    const int T = m + 2, L = WINO_LANES, TH = (H + m - 1) / m, TW = (W + m - 1) / m, nt = (gr1 - gr0) * TW;
    const size_t HW = (size_t)H * W, st = (size_t)Cout * nt + WINO_SKEW;
#pragma omp for schedule(static)
    for (int o = 0; o < Cout; o++) {
        for (int gr = gr0; gr < gr1; gr++) {
            const int n = gr / TH, y = m * (gr % TH);
            const float *plane = dout + ((size_t)n * Cout + o) * HW;
            float *mm = Mg + (size_t)o * nt + (size_t)(gr - gr0) * TW;
            for (int tx = 0; tx < TW;) {
                const int x = m * tx;
                float g[16 * WINO_LANES], q[WINO_TMAX * WINO_TMAX * WINO_LANES];
                if (tx + L <= TW && x + m * L <= W) { /* L whole tiles in x */
#pragma GCC unroll 4
                    for (int i = 0; i < m; i++) {
                        const int yy = y + i < H ? y + i : H - 1;
                        const float keep = y + i < H ? 1.0f : 0.0f, *row = plane + (size_t)yy * W + x;
#pragma GCC unroll 4
                        for (int jj = 0; jj < m; jj++)
#pragma omp simd
                            for (int j = 0; j < L; j++) g[(i * m + jj) * L + j] = keep * row[m * j + jj];
                    }
                    wt_2d(WT_OUT_ADJ, m, L, g, m, q, T);
                    lanes_to_planes(mm + tx, st, q, T * T, L);
                    tx += L;
                    continue;
                }
                for (int i = 0; i < m; i++)
                    for (int j = 0; j < m; j++) g[i * m + j] = (y + i < H && x + j < W) ? plane[(size_t)(y + i) * W + x + j] : 0.0f;
                wt_2d(WT_OUT_ADJ, m, 1, g, m, q, T);
                lanes_to_planes(mm + tx, st, q, T * T, 1);
                tx++;
            }
        }
    }
}
static void wino_output_adjoint(int m, float *Mg, const float *dout, int Cout, int H, int W, int gr0, int gr1) {
    if (m == 4) wino_output_adjoint_m(4, Mg, dout, Cout, H, W, gr0, gr1);
    else wino_output_adjoint_m(2, Mg, dout, Cout, H, W, gr0, gr1);
}

/* dweight[o][i] (3x3) += G^T dU[.][o][i] G; WINO_LANES kernels (consecutive i) at a time. */
WINO_INLINE void wino_weights_adjoint_row(int m, float *dweight, const float *dU, int o, int Cin, size_t plane) {
    const int T = m + 2, L = WINO_LANES;
    int i = 0;
    for (; i + L <= Cin; i += L) {
        float u[WINO_TMAX * WINO_TMAX * WINO_LANES], g[9 * WINO_LANES];
        planes_to_lanes(u, dU + (size_t)o * Cin + i, plane, T * T, L);
        wt_2d(WT_W_ADJ, m, L, u, T, g, 3);
        float *dg = dweight + ((size_t)o * Cin + i) * 9;
        for (int j = 0; j < L; j++)
#pragma GCC unroll 9
            for (int k = 0; k < 9; k++) dg[j * 9 + k] += g[k * L + j];
    }
    for (; i < Cin; i++) {
        float u[WINO_TMAX * WINO_TMAX], g[9];
        planes_to_lanes(u, dU + (size_t)o * Cin + i, plane, T * T, 1);
        wt_2d(WT_W_ADJ, m, 1, u, T, g, 3);
        float *dg = dweight + ((size_t)o * Cin + i) * 9;
        for (int k = 0; k < 9; k++) dg[k] += g[k];
    }
}
static void wino_weights_adjoint(int m, float *dweight, const float *dU, int Cout, int Cin) {
    const size_t plane = (size_t)Cout * Cin;
#pragma omp parallel for schedule(static) if (plane > 4096)
    for (int o = 0; o < Cout; o++) {
        if (m == 4) wino_weights_adjoint_row(4, dweight, dU, o, Cin, plane);
        else wino_weights_adjoint_row(2, dweight, dU, o, Cin, plane);
    }
}

/* Backward of wino_run's forward, both gradients from one pass over the chunks, sharing the output-gradient
 * transform Mg = A dY A^T (T*T planes, Cout x tiles):
 *   dweight (Cout x Cin x 3 x 3) += G^T [ sum over tiles Mg .* (B^T d B) ] G, as T*T GEMMs dU[xi] (Cout x Cin)
 *                                    += Mg[xi] (Cout x tiles) @ V[xi]^T  (V: the input transform),
 *   din (N x Cin x H x W)         += B dV B^T scattered over the overlapping input tiles, with
 *                                    dV[xi] (Cin x tiles) = U[xi]^T @ Mg[xi]  (U: the forward's G g G^T).
 * Either may be NULL. Scratch: dU (if dweight), U (if din), V (reused for dV), Mg. */
static void wino_backward(int m, float *din, float *dweight, const float *in, const float *dout, const float *weight, int N, int Cin,
                          int Cout, int H, int W, int chunk_rows, float *scratch) {
    const int nx = (m + 2) * (m + 2), TW = (W + m - 1) / m, TR = N * ((H + m - 1) / m);
    const size_t ntmax = (size_t)chunk_rows * TW, plane = (size_t)Cout * Cin;
    float *dU = scratch, *U = scratch + nx * plane, *V = U + nx * plane, *Mg = V + nx * ((size_t)Cin * ntmax + WINO_SKEW);
    if (din) wino_weights(m, U, weight, Cout, Cin);
    const int ns = wino_splits();
#pragma omp parallel if ((size_t)Cout * ntmax > 2048)
    for (int gr0 = 0; gr0 < TR; gr0 += chunk_rows) {
        const int gr1 = gr0 + chunk_rows < TR ? gr0 + chunk_rows : TR;
        const int nt = (gr1 - gr0) * TW;
        const size_t sv = (size_t)Cin * nt + WINO_SKEW, sm = (size_t)Cout * nt + WINO_SKEW;
        if (dweight) wino_input(m, V, in, Cin, H, W, gr0, gr1);
        wino_output_adjoint(m, Mg, dout, Cout, H, W, gr0, gr1);
        if (dweight) { /* dU[xi] rows [r0, r1) += Mg[xi] @ V[xi]^T: each item owns its block of dU */
#pragma omp for schedule(static)
            for (int item = 0; item < nx * ns; item++) {
                const int xi = item / ns, r0 = (int)((long)Cout * (item % ns) / ns), r1 = (int)((long)Cout * (item % ns + 1) / ns);
                md_sgemm(0, 1, r1 - r0, Cin, nt, 1.0f, Mg + (size_t)xi * sm + (size_t)r0 * nt, nt, V + (size_t)xi * sv, nt,
                         gr0 ? 1.0f : 0.0f, dU + (size_t)xi * plane + (size_t)r0 * Cin, Cin);
            }
        }
        if (din) { /* dV[xi] (Cin x nt, in V's place) = U[xi]^T @ Mg[xi], then scattered into din */
#pragma omp for schedule(static)
            for (int item = 0; item < nx * ns; item++) {
                const int xi = item / ns, j0 = (int)((long)nt * (item % ns) / ns), j1 = (int)((long)nt * (item % ns + 1) / ns);
                md_sgemm(1, 0, Cin, j1 - j0, Cout, 1.0f, U + (size_t)xi * plane, Cin, Mg + (size_t)xi * sm + j0, nt, 0.0f,
                         V + (size_t)xi * sv + j0, nt);
            }
            wino_input_adjoint(m, din, V, Cin, H, W, gr0, gr1);
        }
    }
    if (dweight) wino_weights_adjoint(m, dweight, dU, Cout, Cin);
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
        const int m = wino_m(p);
        wino_weights(m, scratch, weight, OC, p->C);
        wino_run(m, out, in, scratch, bias, p->N, p->C, OC, p->H, p->W, wino_chunk_rows(p), scratch + (size_t)(m + 2) * (m + 2) * OC * p->C);
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
    if (wino) wino_backward(wino_m(p), din, dweight, in, dout, weight, p->N, p->C, OC, p->H, p->W, wino_chunk_rows(p), scratch);
}
