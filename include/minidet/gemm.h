/* gemm.h — the one place minidet calls BLAS.
 *
 * md_sgemm computes C = alpha * op(A) @ op(B) + beta * C for row-major
 * matrices (op = transpose when trans_* is nonzero) with OpenBLAS
 * cblas_sgemm, or, on a CPU with AVX-512F where OpenBLAS runs a kernel without
 * it (its CPU table or OPENBLAS_CORETYPE), with minidet's own AVX-512 GEMM, so
 * the convolutions run at the CPU's AVX-512 rate either way
 * (MINIDET_MAX_CPU_ISA=AVX2 in the environment keeps it off). Keeping BLAS
 * behind this wrapper lets benchmarks count FLOPs (md_gemm_flops) and lets
 * tests swap in a reference. */
#ifndef MINIDET_GEMM_H
#define MINIDET_GEMM_H
#include <stdint.h>

/* A: (M x K) or (K x M) if trans_a; B: (K x N) or (N x K) if trans_b; C: (M x N). */
void md_sgemm(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A, int lda,
              const float *B, int ldb, float beta, float *C, int ldc);
/* Total FLOPs (2*M*N*K per call) issued through md_sgemm since start or last reset. */
uint64_t md_gemm_flops(void);
void md_gemm_flops_reset(void);
/* The BLAS build and the kernel it picked for this CPU (OpenBLAS: openblas_get_config() and
   openblas_get_corename(), which OPENBLAS_CORETYPE overrides), for benchmark reports. */
const char *md_blas_config(void);
const char *md_blas_corename(void);
/* Which GEMM md_sgemm runs: "minidet AVX-512" or "OpenBLAS" (decided at the first call). */
const char *md_gemm_kernel(void);

#endif
