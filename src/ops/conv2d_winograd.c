/* conv2d_winograd.c — Winograd F(m x m, 3x3), m = 2 or 4: forward and both gradients (see conv2d_internal.h).
 *
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
 * Scratch: U and dU (T*T x Cout x Cin each), then V and M (T*T x (Cin + Cout) x tiles of a chunk).
 * Each chunk runs in one parallel region that hands whole single-threaded GEMMs to the threads. */
#include "minidet/gemm.h"
#include "conv2d_internal.h"
#include <omp.h>

/* Floats of V and M per chunk at most (24 MB): a chunk's transforms stay in the last-level cache for its GEMMs. */
#define WINO_CHUNK_FLOATS ((size_t)6 << 20)
/* Weight matrices (Cout x Cin) larger than this transform in parallel: for smaller ones the fork costs more. */
#define WINO_PAR_MIN_WEIGHTS 4096
/* Chunks of more output elements (Cout x tiles) than this run on several threads: for fewer the fork costs more. */
#define WINO_PAR_MIN_OUT 2048
/* A chunk's GEMMs are split in blocks only beyond this many threads: up to it, whole GEMMs (16 or 36) keep each busy. */
#define WINO_THREADS_PER_SPLIT 8
#define WINO_TMAX 6
#define WINO_INLINE static inline __attribute__((always_inline))
/* The tile transforms are vectorised over WINO_LANES tiles, but the build targets baseline x86-64
 * (SSE2), so their drivers are also compiled for AVX2 and the dynamic loader picks that clone on CPUs
 * that have it (an ifunc). The AVX2 target adds no FMA, so both clones do the same float operations
 * in the same order and give the same bits. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define WINO_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define WINO_CLONES
#endif

int md_conv2d_wino_geometry(const md_conv2d_params *p) {
    return p->KH == 3 && p->KW == 3 && p->stride == 1 && p->pad == 1 && p->dilation == 1;
}

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
#define WINO_LANES 8 /* one AVX2 vector or two SSE vectors (see WINO_CLONES) */
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

size_t md_conv2d_wino_scratch_floats(const md_conv2d_params *p) {
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
/* Called inside a parallel region: the worksharing loop sits in the clonable function, as in wino_input. */
WINO_CLONES static void wino_weights_rows(int m, float *U, const float *w, int Cout, int Cin) {
    const size_t plane = (size_t)Cout * Cin;
#pragma omp for schedule(static)
    for (int o = 0; o < Cout; o++) {
        if (m == 4) wino_weights_row(4, U, w, o, Cin, plane);
        else wino_weights_row(2, U, w, o, Cin, plane);
    }
}
static void wino_weights(int m, float *U, const float *w, int Cout, int Cin) {
#pragma omp parallel if ((size_t)Cout * Cin > WINO_PAR_MIN_WEIGHTS)
    wino_weights_rows(m, U, w, Cout, Cin);
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
WINO_CLONES static void wino_input(int m, float *V, const float *in, int Cin, int H, int W, int gr0, int gr1) {
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
WINO_CLONES static void wino_output(int m, float *out, const float *M, const float *bias, int Cout, int H, int W, int gr0, int gr1) {
    if (m == 4) wino_output_m(4, out, M, bias, Cout, H, W, gr0, gr1);
    else wino_output_m(2, out, M, bias, Cout, H, W, gr0, gr1);
}

/* GEMM work items per chunk: the T*T GEMMs of a chunk are shared out whole among the threads (each a
 * single-threaded md_sgemm, OpenBLAS runs single-threaded inside a parallel region), split in
 * column (or row) blocks when there are more than WINO_THREADS_PER_SPLIT threads, so one chunk costs one fork and
 * three barriers instead of T*T multi-threaded GEMMs with their internal synchronisation. */
static int wino_splits(void) {
    const int t = omp_get_max_threads();
    return t <= WINO_THREADS_PER_SPLIT ? 1 : (t + WINO_THREADS_PER_SPLIT - 1) / WINO_THREADS_PER_SPLIT;
}

/* out (N x Cout x H x W) = 3x3 pad-1 conv of in (N x Cin x H x W) with the transformed weights U [+ bias]. */
static void wino_run(int m, float *out, const float *in, const float *U, const float *bias, int N, int Cin, int Cout, int H,
                     int W, int chunk_rows, float *scratch) {
    const int nx = (m + 2) * (m + 2), TW = (W + m - 1) / m, TR = N * ((H + m - 1) / m), ns = wino_splits();
    const size_t ntmax = (size_t)chunk_rows * TW;
    float *V = scratch, *M = scratch + nx * ((size_t)Cin * ntmax + WINO_SKEW);
#pragma omp parallel if ((size_t)Cout * ntmax > WINO_PAR_MIN_OUT)
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
WINO_CLONES static void wino_input_adjoint(int m, float *din, const float *dV, int Cin, int H, int W, int gr0, int gr1) {
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
WINO_CLONES static void wino_output_adjoint(int m, float *Mg, const float *dout, int Cout, int H, int W, int gr0, int gr1) {
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
/* Called inside a parallel region, like wino_weights_rows. */
WINO_CLONES static void wino_weights_adjoint_rows(int m, float *dweight, const float *dU, int Cout, int Cin) {
    const size_t plane = (size_t)Cout * Cin;
#pragma omp for schedule(static)
    for (int o = 0; o < Cout; o++) {
        if (m == 4) wino_weights_adjoint_row(4, dweight, dU, o, Cin, plane);
        else wino_weights_adjoint_row(2, dweight, dU, o, Cin, plane);
    }
}
static void wino_weights_adjoint(int m, float *dweight, const float *dU, int Cout, int Cin) {
#pragma omp parallel if ((size_t)Cout * Cin > WINO_PAR_MIN_WEIGHTS)
    wino_weights_adjoint_rows(m, dweight, dU, Cout, Cin);
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
#pragma omp parallel if ((size_t)Cout * ntmax > WINO_PAR_MIN_OUT)
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

void md_conv2d_wino_forward(float *out, const float *in, const float *weight, const float *bias, const md_conv2d_params *p,
                            float *scratch) {
    const int m = wino_m(p);
    wino_weights(m, scratch, weight, p->OC, p->C);
    wino_run(m, out, in, scratch, bias, p->N, p->C, p->OC, p->H, p->W, wino_chunk_rows(p), scratch + (size_t)(m + 2) * (m + 2) * p->OC * p->C);
}

void md_conv2d_wino_backward(float *din, float *dweight, const float *dout, const float *in, const float *weight,
                             const md_conv2d_params *p, float *scratch) {
    wino_backward(wino_m(p), din, dweight, in, dout, weight, p->N, p->C, p->OC, p->H, p->W, wino_chunk_rows(p), scratch);
}
