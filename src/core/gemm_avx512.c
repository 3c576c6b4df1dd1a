/* gemm_avx512.c — packed SGEMM with an AVX-512 micro-kernel (see gemm_internal.h).
 *
 * The blocking is GotoBLAS's, ordered so that each operand is packed once where the shapes allow. For
 * each block of up to MC = 1536 rows of C and each block of KC = 256 of the inner dimension, op(A)'s
 * block is packed into row panels of MR = 12 (KC x 12 each, one after another); then for each block of
 * NC = 512 columns, op(B)'s block is packed into column panels of NR = 32 (KC x 32 each, 512 KiB in
 * all, in L2). The micro-kernel adds one 12 x 32 tile of C from one A panel and one B panel: per k,
 * two 16-float loads of B, twelve broadcasts of A and 24 fused multiply-adds into 24 accumulator
 * registers (of 32). An A panel (12 KiB) stays in L1 while the kernel walks along the B block. Panels
 * are zero-padded to whole tiles; the kernel stores only the rows and columns that exist (column
 * masks), so edges need no second kernel. Operands whose rows run along k (A untransposed, B
 * transposed) are packed with 16 x 16 register transposes.
 *
 * Every element of C is the same sequence of operations whatever tile, block, call or thread covers
 * it: the k-loop runs in order inside a KC block and the KC blocks are added to C in order. The
 * packing buffers (MC x KC + KC x NC floats, 2 MiB) are allocated once per thread and freed when the
 * thread ends. */
#include "gemm_internal.h"
#include <cblas.h>
#include <immintrin.h>
#include <omp.h>
#include <pthread.h>
#include <stdlib.h>

#define MR MD_SGEMM_MR
#define NR MD_SGEMM_NR
#define KC 256
#define MC 1536
#define NC 512

int md_sgemm_avx512_supported(void) { return __builtin_cpu_supports("avx512f") ? 1 : 0; }

static pthread_key_t g_key;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static int g_key_ok;
static void make_key(void) { g_key_ok = pthread_key_create(&g_key, free) == 0; }

/* This thread's packing buffers (MC * KC + KC * NC floats, 64-byte aligned), or NULL. */
static float *thread_buffers(void) {
    pthread_once(&g_once, make_key);
    if (!g_key_ok) return NULL;
    float *buf = pthread_getspecific(g_key);
    if (!buf) {
        buf = aligned_alloc(64, (size_t)(MC * KC + KC * NC) * sizeof(float));
        if (buf && pthread_setspecific(g_key, buf) != 0) {
            free(buf);
            buf = NULL;
        }
    }
    return buf;
}

#define AVX512 __attribute__((target("avx512f")))

/* dst[k * ldd + r] = src[r * lds + k] for k < 16 and the rows r < 16 whose lane is set in mask; rows
 * r >= nrows read as 0. A 16 x 16 transpose in four shuffle stages: after stage s, each register holds
 * 2^s rows' values of one column in each 128-bit lane, then whole lanes are gathered. */
AVX512 static inline void transpose16(const float *src, size_t lds, int nrows, float *dst, int ldd, __mmask16 mask) {
    __m512 r[16], t[16];
    for (int i = 0; i < 16; i++) r[i] = i < nrows ? _mm512_loadu_ps(src + (size_t)i * lds) : _mm512_setzero_ps();
    for (int i = 0; i < 8; i++) { /* lane L: rows 2i, 2i+1 of columns 4L..4L+3, interleaved */
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for (int g = 0; g < 4; g++) { /* r[4g + c], lane L: rows 4g..4g+3 of column 4L + c */
        r[4 * g] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t[4 * g]), _mm512_castps_pd(t[4 * g + 2])));
        r[4 * g + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t[4 * g]), _mm512_castps_pd(t[4 * g + 2])));
        r[4 * g + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t[4 * g + 1]), _mm512_castps_pd(t[4 * g + 3])));
        r[4 * g + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t[4 * g + 1]), _mm512_castps_pd(t[4 * g + 3])));
    }
    for (int c = 0; c < 4; c++) { /* t[c]: rows 0-7 of columns c and 8+c; t[4+c]: of 4+c and 12+c (t[8+..]: rows 8-15) */
        t[c] = _mm512_shuffle_f32x4(r[c], r[4 + c], 0x88);
        t[4 + c] = _mm512_shuffle_f32x4(r[c], r[4 + c], 0xdd);
        t[8 + c] = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0x88);
        t[12 + c] = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0xdd);
    }
    for (int c = 0; c < 4; c++) {
        _mm512_mask_storeu_ps(dst + (size_t)c * ldd, mask, _mm512_shuffle_f32x4(t[c], t[8 + c], 0x88));
        _mm512_mask_storeu_ps(dst + (size_t)(8 + c) * ldd, mask, _mm512_shuffle_f32x4(t[c], t[8 + c], 0xdd));
        _mm512_mask_storeu_ps(dst + (size_t)(4 + c) * ldd, mask, _mm512_shuffle_f32x4(t[4 + c], t[12 + c], 0x88));
        _mm512_mask_storeu_ps(dst + (size_t)(12 + c) * ldd, mask, _mm512_shuffle_f32x4(t[4 + c], t[12 + c], 0xdd));
    }
}

/* dst[k * ldd + r] = src[r * lds + k] for r < nr (rows nr..nrows-1 of dst zero), k < kc: a row block
 * whose rows run along k transposed into k-major order, 16 k at a time. */
AVX512 static void transpose_rows(const float *src, size_t lds, int nr, int nrows, int kc, float *dst, int ldd) {
    const __mmask16 mask = (__mmask16)((1u << nrows) - 1);
    int k = 0;
    for (; k + 16 <= kc; k += 16) transpose16(src + k, lds, nr, dst + (size_t)k * ldd, ldd, mask);
    for (; k < kc; k++)
        for (int r = 0; r < nrows; r++) dst[(size_t)k * ldd + r] = r < nr ? src[(size_t)r * lds + k] : 0.0f;
}

/* Ap: rows [i0, i0 + mc) x k [p0, p0 + kc) of op(A) as ceil(mc / MR) panels, panel r at Ap + r * MR * kc
 * holding element (i, k) at [k * MR + i], rows past mc zero. */
AVX512 static void pack_a(int trans_a, const float *A, int lda, int i0, int mc, int p0, int kc, float *Ap) {
    for (int ir = 0; ir < mc; ir += MR) {
        const int m = mc - ir < MR ? mc - ir : MR;
        float *dst = Ap + (size_t)ir * kc;
        if (!trans_a) {
            transpose_rows(A + (size_t)(i0 + ir) * lda + p0, (size_t)lda, m, MR, kc, dst, MR);
        } else {
            const __mmask16 in = (__mmask16)((1u << m) - 1), out = (__mmask16)((1u << MR) - 1);
            for (int k = 0; k < kc; k++)
                _mm512_mask_storeu_ps(dst + k * MR, out, _mm512_maskz_loadu_ps(in, A + (size_t)(p0 + k) * lda + i0 + ir));
        }
    }
}

/* Bp: k [p0, p0 + kc) x columns [j0, j0 + nc) of op(B) as ceil(nc / NR) panels, panel r at
 * Bp + r * NR * kc holding element (k, j) at [k * NR + j], columns past nc zero. Without transpose the
 * rows of B are read one after another (each into every panel), which streams; reading panel by panel
 * would touch kc pages per panel. */
AVX512 static void pack_b(int trans_b, const float *B, int ldb, int p0, int kc, int j0, int nc, float *Bp) {
    const int full = nc / NR * NR;
    if (!trans_b) {
        const int rest = nc - full; /* columns of the last, partial panel */
        const __mmask16 m0 = rest >= 16 ? 0xFFFF : (__mmask16)((1u << rest) - 1);
        const __mmask16 m1 = rest > 16 ? (__mmask16)((1u << (rest - 16)) - 1) : 0;
        for (int k = 0; k < kc; k++) {
            const float *src = B + (size_t)(p0 + k) * ldb + j0;
            for (int jr = 0; jr < full; jr += NR) {
                float *dst = Bp + (size_t)jr * kc + k * NR;
                _mm512_store_ps(dst, _mm512_loadu_ps(src + jr));
                _mm512_store_ps(dst + 16, _mm512_loadu_ps(src + jr + 16));
            }
            if (rest) {
                float *dst = Bp + (size_t)full * kc + k * NR;
                _mm512_store_ps(dst, _mm512_maskz_loadu_ps(m0, src + full));
                _mm512_store_ps(dst + 16, _mm512_maskz_loadu_ps(m1, src + full + 16));
            }
        }
        return;
    }
    for (int jr = 0; jr < nc; jr += NR) /* two 16-row halves of each panel's 32 rows of B */
        for (int h = 0; h < NR; h += 16) {
            const int n = nc - jr - h < 0 ? 0 : nc - jr - h < 16 ? nc - jr - h : 16;
            transpose_rows(B + (size_t)(j0 + jr + h) * ldb + p0, (size_t)ldb, n, 16, kc, Bp + (size_t)jr * kc + h, NR);
        }
}

/* C tile (m <= MR rows x n <= NR columns, ldc) = alpha * Ap-panel @ Bp-panel + beta * C (beta = 0: C not
 * read). Ap: kc x MR, Bp: kc x NR (64-byte aligned), as pack_a / pack_b lay them out. Not instrumented by
 * AddressSanitizer: it reads only the packed panels, whose extent the packers (instrumented) fix, and
 * writes C through masked stores, which ASan does not check anyway; instrumented, its 14 loads per k
 * make the sanitized test suite's training tests several times slower. */
AVX512 __attribute__((no_sanitize_address)) static void kernel_12x32(int kc, const float *Ap, const float *Bp, float *C, int ldc, int m,
                                                            int n, float alpha, float beta) {
    __m512 c[MR][2];
#pragma GCC unroll 12
    for (int i = 0; i < MR; i++) {
        c[i][0] = c[i][1] = _mm512_setzero_ps();
        if (i < m) { /* the tile's rows are far apart in memory: start fetching them now, not at the store */
            _mm_prefetch((const char *)(C + (size_t)i * ldc), _MM_HINT_T0);
            _mm_prefetch((const char *)(C + (size_t)i * ldc + NR - 1), _MM_HINT_T0);
        }
    }
    for (int k = 0; k < kc; k++) {
        const __m512 b0 = _mm512_load_ps(Bp), b1 = _mm512_load_ps(Bp + 16);
#pragma GCC unroll 12
        for (int i = 0; i < MR; i++) {
            const __m512 a = _mm512_set1_ps(Ap[i]);
            c[i][0] = _mm512_fmadd_ps(a, b0, c[i][0]);
            c[i][1] = _mm512_fmadd_ps(a, b1, c[i][1]);
        }
        Ap += MR;
        Bp += NR;
    }
    const __mmask16 m0 = n >= 16 ? 0xFFFF : (__mmask16)((1u << n) - 1);
    const __mmask16 m1 = n >= 32 ? 0xFFFF : n > 16 ? (__mmask16)((1u << (n - 16)) - 1) : 0;
    const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
#pragma GCC unroll 12
    for (int i = 0; i < MR; i++) {
        if (i >= m) break;
        float *row = C + (size_t)i * ldc;
        __m512 r0 = _mm512_mul_ps(va, c[i][0]), r1 = _mm512_mul_ps(va, c[i][1]);
        if (beta != 0.0f) {
            r0 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m0, row), r0);
            r1 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m1, row + 16), r1);
        }
        _mm512_mask_storeu_ps(row, m0, r0);
        _mm512_mask_storeu_ps(row + 16, m1, r1);
    }
}

int md_sgemm_avx512(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A, int lda, const float *B,
                    int ldb, float beta, float *C, int ldc) {
    if (M <= 0 || N <= 0) return 1;
    if (K <= 0) { /* no products: C = beta * C */
        for (int i = 0; i < M; i++)
            for (int j = 0; j < N; j++) C[(size_t)i * ldc + j] = beta != 0.0f ? beta * C[(size_t)i * ldc + j] : 0.0f;
        return 1;
    }
    float *Ap = thread_buffers();
    if (!Ap) return 0;
    float *Bp = Ap + MC * KC;
    for (int ic = 0; ic < M; ic += MC) {
        const int mc = M - ic < MC ? M - ic : MC;
        for (int pc = 0; pc < K; pc += KC) {
            const int kc = K - pc < KC ? K - pc : KC;
            const float bt = pc == 0 ? beta : 1.0f;
            pack_a(trans_a, A, lda, ic, mc, pc, kc, Ap);
            for (int jc = 0; jc < N; jc += NC) {
                const int nc = N - jc < NC ? N - jc : NC;
                pack_b(trans_b, B, ldb, pc, kc, jc, nc, Bp);
                for (int ir = 0; ir < mc; ir += MR)
                    for (int jr = 0; jr < nc; jr += NR)
                        kernel_12x32(kc, Ap + (size_t)ir * kc, Bp + (size_t)jr * kc, C + (size_t)(ic + ir) * ldc + jc + jr, ldc,
                                     mc - ir < MR ? mc - ir : MR, nc - jr < NR ? nc - jr : NR, alpha, bt);
            }
        }
    }
    return 1;
}

/* Start of block t of T over n, on a multiple of unit (block T ends at n). */
static int split_at(int n, int t, int T, int unit) {
    if (t >= T) return n;
    const int at = (int)((long)n * t / T) / unit * unit;
    return at < n ? at : n;
}

void md_sgemm_avx512_parallel(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A, int lda,
                              const float *B, int ldb, float beta, float *C, int ldc) {
    const int by_cols = N >= M;
#pragma omp parallel
    {
        const int t = omp_get_thread_num(), T = omp_get_num_threads();
        const int n = by_cols ? N : M, lo = split_at(n, t, T, by_cols ? NR : MR), hi = split_at(n, t + 1, T, by_cols ? NR : MR);
        if (hi > lo) {
            const int m_blk = by_cols ? M : hi - lo, n_blk = by_cols ? hi - lo : N;
            const float *a = by_cols ? A : trans_a ? A + lo : A + (size_t)lo * lda;
            const float *b = !by_cols ? B : trans_b ? B + (size_t)lo * ldb : B + lo;
            float *c = by_cols ? C + lo : C + (size_t)lo * ldc;
            if (!md_sgemm_avx512(trans_a, trans_b, m_blk, n_blk, K, alpha, a, lda, b, ldb, beta, c, ldc))
                cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, m_blk, n_blk, K,
                            alpha, a, lda, b, ldb, beta, c, ldc);
        }
    }
}
