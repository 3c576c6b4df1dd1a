/* gemm_internal.h — minidet's own AVX-512 SGEMM (gemm_avx512.c), behind md_sgemm.
 *
 * md_sgemm (gemm.c) sends its calls here instead of OpenBLAS when the CPU has AVX-512F but OpenBLAS
 * runs a kernel without it: OpenBLAS picks its kernel by its own table of CPUs, which a newer CPU may
 * not be in, or by OPENBLAS_CORETYPE (pinned to Haswell on some machines), and its AVX2 kernels run at
 * half the AVX-512 rate on a CPU with full-width AVX-512, while oneDNN, torchvision's convolution
 * library, decides by the CPU alone. Where OpenBLAS runs its AVX-512 kernels it stays: on the
 * convolutions' shapes they are up to a fifth faster than these. Tests call these functions directly. */
#ifndef MINIDET_GEMM_INTERNAL_H
#define MINIDET_GEMM_INTERNAL_H

/* The micro-kernel's tile of C: MR rows x NR columns. Thread splits of C fall on these multiples. */
#define MD_SGEMM_MR 12
#define MD_SGEMM_NR 32

/* 1 if this CPU runs md_sgemm_avx512 (AVX-512F), else 0. */
int md_sgemm_avx512_supported(void);

/* C (M x N, row-major, ldc) = alpha * op(A) @ op(B) + beta * C on the calling thread, as md_sgemm
 * (beta = 0: C is not read). Blocks of K are added in a fixed order, so every element of C comes out
 * the same whatever block of C a call covers. Returns 0 when its packing buffers cannot be
 * allocated (C untouched; the caller falls back to OpenBLAS), else 1. Only when
 * md_sgemm_avx512_supported(). */
int md_sgemm_avx512(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A, int lda, const float *B,
                    int ldb, float beta, float *C, int ldc);

/* The same product on omp_get_max_threads() threads: C is split into one block of whole tiles per
 * thread (columns when N >= M, else rows), each block a md_sgemm_avx512 call (OpenBLAS, single-
 * threaded, for a block whose buffers cannot be allocated). The result is bit-identical to one
 * md_sgemm_avx512 call on the whole of C, for any thread count. Only when md_sgemm_avx512_supported(). */
void md_sgemm_avx512_parallel(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A, int lda,
                              const float *B, int ldb, float beta, float *C, int ldc);

#endif
