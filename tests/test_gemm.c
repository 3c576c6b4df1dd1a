/* test_gemm.c — minidet's own AVX-512 GEMM (src/core/gemm_avx512.c) against a double-precision
 * product: every transpose, tile and block edge (M, N, K not multiples of the 12 x 32 tile or of the
 * K / column / row blocks), alpha and beta (beta = 0 must not read C), leading dimensions wider than
 * the matrices (nothing read or written outside them); and its promise that an element of C comes out
 * bit-identical whatever block of C a call covers and however many threads share the product.
 * md_sgemm's results are checked in test_core, whichever GEMM it runs. On a CPU without AVX-512F these
 * functions never run, and this program says so and checks nothing of them. */
#include "testutil.h"
#include "minidet/gemm.h"
#include "minidet/rng.h"
#include "minidet/threads.h"
#include "../src/core/gemm_internal.h"
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

/* op(X) element (r, c) of a row-major X with leading dimension ld, transposed when t. */
static float at(const float *X, int ld, int t, int r, int c) { return t ? X[(size_t)c * ld + r] : X[(size_t)r * ld + c]; }

/* A buffer of rows x ld floats: the first cols of each row normal(0, 1), the padding NaN. */
static float *padded(md_rng *r, int rows, int cols, int ld) {
    float *x = malloc((size_t)rows * ld * sizeof(float));
    if (!x) return NULL;
    for (int i = 0; i < rows; i++)
        for (int j = 0; j < ld; j++) x[(size_t)i * ld + j] = j < cols ? md_rng_normal(r) : NAN;
    return x;
}

/* One product through md_sgemm_avx512, checked element by element against a double product with a
 * bound of 1e-5 of the sum of the terms' magnitudes; C's padding must still be NaN afterwards. */
static void check_product(int ta, int tb, int M, int N, int K, float alpha, float beta, uint64_t seed) {
    md_rng r = md_rng_make(seed, 0);
    const int lda = (ta ? M : K) + 3, ldb = (tb ? K : N) + 5, ldc = N + 7;
    float *A = padded(&r, ta ? K : M, ta ? M : K, lda), *B = padded(&r, tb ? N : K, tb ? K : N, ldb);
    float *C = padded(&r, M, N, ldc), *C0 = malloc((size_t)M * ldc * sizeof(float));
    if (!A || !B || !C || !C0) {
        CHECK(0, "out of memory");
        free(A), free(B), free(C), free(C0);
        return;
    }
    if (beta == 0.0f) /* C must not be read: NaN in it would show */
        for (int i = 0; i < M; i++)
            for (int j = 0; j < N; j++) C[(size_t)i * ldc + j] = NAN;
    memcpy(C0, C, (size_t)M * ldc * sizeof(float));
    CHECK(md_sgemm_avx512(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc), "md_sgemm_avx512 failed");
    double worst = 0;
    int pad_ok = 1;
    for (int i = 0; i < M; i++) {
        for (int j = 0; j < N; j++) {
            double acc = 0, mag = 0;
            for (int k = 0; k < K; k++) {
                const double p = (double)at(A, lda, ta, i, k) * at(B, ldb, tb, k, j);
                acc += p, mag += fabs(p);
            }
            const double c0 = beta != 0.0f ? C0[(size_t)i * ldc + j] : 0.0;
            const double want = alpha * acc + beta * c0, bound = 1e-5 * (fabs(alpha) * mag + fabs(beta * c0)) + 1e-30;
            const double e = fabs(C[(size_t)i * ldc + j] - want) / bound;
            if (!(e <= worst)) worst = isnan(e) ? INFINITY : e;
        }
        for (int j = N; j < ldc; j++) pad_ok &= isnan(C[(size_t)i * ldc + j]);
    }
    CHECK(worst <= 1.0, "ta=%d tb=%d M=%d N=%d K=%d alpha=%g beta=%g: error %.3g of the bound", ta, tb, M, N, K, alpha, beta, worst);
    CHECK(pad_ok, "ta=%d tb=%d M=%d N=%d K=%d: wrote into C's padding", ta, tb, M, N, K);
    free(A), free(B), free(C), free(C0);
}

static void test_products(void) {
    /* one tile, partial tiles, K across blocks of 256, N across column blocks of 512, M across row blocks of 1536 */
    static const int shapes[][3] = {{1, 1, 1}, {12, 32, 16}, {13, 33, 5}, {25, 70, 300}, {37, 65, 600}, {7, 1100, 3}, {1550, 20, 17}, {3, 17, 0}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++) {
                check_product(ta, tb, shapes[s][0], shapes[s][1], shapes[s][2], 1.0f, 0.0f, 10 + s);
                check_product(ta, tb, shapes[s][0], shapes[s][1], shapes[s][2], 1.5f, -0.5f, 20 + s);
            }
}

/* C (M x N) of a fixed product, computed as one call, as four calls on blocks that cut tiles, and on
 * 1, 2 and 3 threads: all bit-identical. */
static void test_blocks_and_threads(void) {
    enum { M = 50, N = 100, K = 300 };
    md_rng r = md_rng_make(7, 0);
    float *A = padded(&r, K, M, M), *B = padded(&r, N, K, K), *C = malloc(sizeof(float) * M * N), *D = malloc(sizeof(float) * M * N);
    if (!A || !B || !C || !D) {
        CHECK(0, "out of memory");
        free(A), free(B), free(C), free(D);
        return;
    }
    for (int i = 0; i < M * N; i++) C[i] = D[i] = (float)i;
    md_sgemm_avx512(1, 1, M, N, K, 0.75f, A, M, B, K, 0.25f, C, N);
    const int rows[3] = {0, 25, M}, cols[3] = {0, 45, N};
    for (int bi = 0; bi < 2; bi++)
        for (int bj = 0; bj < 2; bj++)
            md_sgemm_avx512(1, 1, rows[bi + 1] - rows[bi], cols[bj + 1] - cols[bj], K, 0.75f, A + rows[bi], M, B + (size_t)cols[bj] * K, K, 0.25f,
                            D + (size_t)rows[bi] * N + cols[bj], N);
    CHECK(memcmp(C, D, sizeof(float) * M * N) == 0, "four blocks differ from one call");
    for (int threads = 1; threads <= 3; threads++) {
        for (int i = 0; i < M * N; i++) D[i] = (float)i;
        omp_set_num_threads(threads);
        md_sgemm_avx512_parallel(1, 1, M, N, K, 0.75f, A, M, B, K, 0.25f, D, N);
        CHECK(memcmp(C, D, sizeof(float) * M * N) == 0, "%d threads differ from one call", threads);
    }
    /* a tall product splits by rows */
    float *E = malloc(sizeof(float) * N * M), *F = malloc(sizeof(float) * N * M);
    if (E && F) {
        md_sgemm_avx512(0, 0, N, M, K, 1.0f, B, K, A, M, 0.0f, E, M);
        omp_set_num_threads(3);
        md_sgemm_avx512_parallel(0, 0, N, M, K, 1.0f, B, K, A, M, 0.0f, F, M);
        CHECK(memcmp(E, F, sizeof(float) * N * M) == 0, "a row split on 3 threads differs from one call");
    } else {
        CHECK(0, "out of memory");
    }
    omp_set_num_threads(md_threads_get());
    free(A), free(B), free(C), free(D), free(E), free(F);
}

/* MINIDET_MAX_CPU_ISA=AVX2 keeps md_sgemm on OpenBLAS (md_sgemm decides once, at its first use, so this
 * runs before anything else here calls it). */
static void test_isa_cap(void) {
    setenv("MINIDET_MAX_CPU_ISA", "AVX2", 1);
    CHECK(strcmp(md_gemm_kernel(), "OpenBLAS") == 0, "MINIDET_MAX_CPU_ISA=AVX2: md_sgemm runs %s", md_gemm_kernel());
    unsetenv("MINIDET_MAX_CPU_ISA");
}

int main(void) {
    md_threads_init(0);
    MD_RUN(test_isa_cap);
    if (!md_sgemm_avx512_supported()) {
        printf("test_gemm: this CPU has no AVX-512F, so minidet's own GEMM never runs here; nothing of it is checked\n");
        return md_test_summary();
    }
    MD_RUN(test_products);
    MD_RUN(test_blocks_and_threads);
    return md_test_summary();
}
