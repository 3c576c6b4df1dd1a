/* gemm.c — thin wrapper over cblas_sgemm (see include/minidet/gemm.h). */
#include "minidet/gemm.h"
#include <cblas.h>
#include <stdatomic.h>

static _Atomic uint64_t g_flops;

void md_sgemm(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A, int lda,
              const float *B, int ldb, float beta, float *C, int ldc) {
    if (M <= 0 || N <= 0) return;
    atomic_fetch_add_explicit(&g_flops, 2ull * (uint64_t)M * (uint64_t)N * (uint64_t)K, memory_order_relaxed);
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
                M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

uint64_t md_gemm_flops(void) { return atomic_load(&g_flops); }
void md_gemm_flops_reset(void) { atomic_store(&g_flops, 0); }

const char *md_blas_config(void) { return openblas_get_config(); }
const char *md_blas_corename(void) { return openblas_get_corename(); }
