/* gemm.c — md_sgemm: cblas_sgemm, or minidet's AVX-512 GEMM on an AVX-512 CPU where OpenBLAS runs a
 * kernel without it (see include/minidet/gemm.h and gemm_internal.h). */
#include "minidet/gemm.h"
#include "gemm_internal.h"
#include <cblas.h>
#include <omp.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>

static _Atomic uint64_t g_flops;
static _Atomic int g_own = -1; /* use_own_kernel(), once known */

/* Products below this many FLOPs run on the calling thread: a fork costs more than the split saves. */
#define MD_GEMM_PAR_MIN_FLOPS (1 << 21)

/* OpenBLAS's AVX-512 kernels, by openblas_get_corename(). */
static int blas_core_has_avx512(void) {
    static const char *const names[] = {"SkylakeX", "Cooperlake", "SapphireRapids"};
    const char *core = openblas_get_corename();
    for (size_t i = 0; core && i < sizeof names / sizeof names[0]; i++)
        if (strcasecmp(core, names[i]) == 0) return 1;
    return 0;
}

/* MINIDET_MAX_CPU_ISA=AVX2 keeps minidet off AVX-512 (as ONEDNN_MAX_CPU_ISA does oneDNN): how an
 * AVX2-only machine is measured on an AVX-512 one. 0 when it caps, 1 when unset or AVX512. */
static int isa_allows_avx512(void) {
    const char *isa = getenv("MINIDET_MAX_CPU_ISA");
    if (!isa || !*isa || strcasecmp(isa, "AVX512") == 0) return 1;
    if (strcasecmp(isa, "AVX2") == 0) return 0;
    fprintf(stderr, "minidet: MINIDET_MAX_CPU_ISA=%s: not AVX2 or AVX512; ignored\n", isa);
    return 1;
}

static int use_own_kernel(void) {
    int own = atomic_load_explicit(&g_own, memory_order_relaxed);
    if (own < 0) {
        own = md_sgemm_avx512_supported() && !blas_core_has_avx512() && isa_allows_avx512();
        atomic_store_explicit(&g_own, own, memory_order_relaxed);
    }
    return own;
}

void md_sgemm(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A, int lda,
              const float *B, int ldb, float beta, float *C, int ldc) {
    if (M <= 0 || N <= 0) return;
    atomic_fetch_add_explicit(&g_flops, 2ull * (uint64_t)M * (uint64_t)N * (uint64_t)K, memory_order_relaxed);
    if (use_own_kernel()) {
        /* one thread: inside a parallel region (the convolutions share their GEMMs out whole), one thread in
           all, or a small product; else split over the threads as OpenBLAS would thread it */
        const double flops = 2.0 * M * (double)N * K;
        if (omp_in_parallel() || omp_get_max_threads() == 1 || flops < MD_GEMM_PAR_MIN_FLOPS) {
            if (md_sgemm_avx512(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc)) return;
        } else {
            md_sgemm_avx512_parallel(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
            return;
        }
    }
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
                M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

uint64_t md_gemm_flops(void) { return atomic_load(&g_flops); }
void md_gemm_flops_reset(void) { atomic_store(&g_flops, 0); }

const char *md_blas_config(void) { return openblas_get_config(); }
const char *md_blas_corename(void) { return openblas_get_corename(); }
const char *md_gemm_kernel(void) { return use_own_kernel() ? "minidet AVX-512" : "OpenBLAS"; }
