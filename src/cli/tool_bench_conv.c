/* tool_bench_conv.c — conv2d throughput (GFLOP/s) next to the md_sgemm peak.
 *
 * Usage: tool_bench_conv [--threads T] [--reps R] [--gemm M] [--winograd 0|2|4] [N C H W OC K STRIDE PAD]
 * Default layer: a ResNet-50 layer3-like 3x3 conv, N=2 C=256 60x60 -> OC=256, stride 1, pad 1,
 * plus a few other typical backbone/FPN shapes when no layer is given. For each layer it prints
 * forward, backward-input, backward-weight(+bias) times and GFLOP/s (2*N*OC*CKK*OH*OW per pass),
 * and the share of time spent outside the GEMMs (im2col / col2im / bias). The peak is one
 * M x M x M md_sgemm (default M = 2048). Figures, not a test. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "minidet/gemm.h"
#include "minidet/ops.h"
#include "minidet/rng.h"
#include "minidet/threads.h"

static float *alloc_rand(size_t n, md_rng *r) {
    float *p = malloc((n ? n : 1) * sizeof(float));
    if (!p) {
        fprintf(stderr, "tool_bench_conv: out of memory (%zu floats)\n", n);
        exit(1);
    }
    for (size_t i = 0; i < n; i++) p[i] = md_rng_uniform(r) - 0.5f;
    return p;
}

/* Best-of-reps wall time of fn. */
#define TIME_BEST(best, reps, stmt)                                                                                              \
    do {                                                                                                                         \
        best = 1e30;                                                                                                             \
        for (int rep_ = 0; rep_ < (reps); rep_++) {                                                                              \
            double t0_ = md_now();                                                                                               \
            stmt;                                                                                                                \
            double dt_ = md_now() - t0_;                                                                                         \
            if (dt_ < best) best = dt_;                                                                                          \
        }                                                                                                                        \
    } while (0)

static void bench_layer(const int *L, int reps, int wino) {
    md_conv2d_params p;
    if (!md_conv2d_init(&p, L[0], L[1], L[2], L[3], L[4], L[5], L[5], L[6], L[7], 1)) {
        fprintf(stderr, "tool_bench_conv: invalid geometry\n");
        exit(1);
    }
    if (wino >= 0) p.winograd = wino;
    md_rng r = md_rng_make(1, 1);
    const size_t nx = (size_t)p.N * p.C * p.H * p.W, nw = (size_t)p.OC * p.C * p.KH * p.KW;
    const size_t ny = (size_t)p.N * p.OC * p.OH * p.OW, ns = md_conv2d_scratch_floats(&p);
    float *x = alloc_rand(nx, &r), *w = alloc_rand(nw, &r), *b = alloc_rand((size_t)p.OC, &r), *y = alloc_rand(ny, &r);
    float *gy = alloc_rand(ny, &r), *dx = alloc_rand(nx, &r), *dw = alloc_rand(nw, &r), *db = alloc_rand((size_t)p.OC, &r);
    float *scr = ns ? alloc_rand(ns, &r) : NULL;
    const int K = p.C * p.KH * p.KW, ohow = p.OH * p.OW;
    const double gflop = 2.0 * p.N * p.OC * (double)K * ohow * 1e-9;
    double t_fwd, t_bin, t_bw, t_all, g_fwd, g_bin, g_bw;
    md_conv2d_forward(y, x, w, b, &p, scr); /* warm-up */
    TIME_BEST(t_fwd, reps, md_conv2d_forward(y, x, w, b, &p, scr));
    TIME_BEST(t_bin, reps, md_conv2d_backward(dx, NULL, NULL, gy, x, w, &p, scr));
    TIME_BEST(t_bw, reps, md_conv2d_backward(NULL, dw, db, gy, x, w, &p, scr));
    TIME_BEST(t_all, reps, md_conv2d_backward(dx, dw, db, gy, x, w, &p, scr));
    /* the GEMMs alone, same sizes (one whole-image column matrix, CKK x OH*OW: larger than the chunked or
     * Winograd scratch), on stale data */
    float *col = ns ? alloc_rand((size_t)K * ohow, &r) : NULL;
    const float *colm = ns ? col : x;
    float *cbuf = ns ? col : dx;
    TIME_BEST(g_fwd, reps, for (int n = 0; n < p.N; n++) md_sgemm(0, 0, p.OC, ohow, K, 1.0f, w, K, colm, ohow, 0.0f, y, ohow));
    TIME_BEST(g_bin, reps, for (int n = 0; n < p.N; n++) md_sgemm(1, 0, K, ohow, p.OC, 1.0f, w, K, gy, ohow, 0.0f, cbuf, ohow));
    TIME_BEST(g_bw, reps, for (int n = 0; n < p.N; n++) md_sgemm(0, 1, p.OC, K, ohow, 1.0f, gy, ohow, colm, ohow, 1.0f, dw, K));
    printf("conv N=%d C=%d %dx%d -> OC=%d k%d s%d p%d (out %dx%d), %.2f GFLOP per pass\n", p.N, p.C, p.H, p.W, p.OC, p.KH,
           p.stride, p.pad, p.OH, p.OW, gflop);
    printf("  %-26s %9s %9s %12s\n", "pass", "ms", "GFLOP/s", "outside GEMM");
    printf("  %-26s %9.2f %9.1f %11.0f%%\n", "forward", 1e3 * t_fwd, gflop / t_fwd, 100.0 * (1 - g_fwd / t_fwd));
    printf("  %-26s %9.2f %9.1f %11.0f%%\n", "backward input", 1e3 * t_bin, gflop / t_bin, 100.0 * (1 - g_bin / t_bin));
    printf("  %-26s %9.2f %9.1f %11.0f%%\n", "backward weight+bias", 1e3 * t_bw, gflop / t_bw, 100.0 * (1 - g_bw / t_bw));
    printf("  %-26s %9.2f %9.1f\n", "backward all", 1e3 * t_all, 2 * gflop / t_all);
    free(x), free(w), free(b), free(y), free(gy), free(dx), free(dw), free(db), free(scr), free(col);
}

int main(int argc, char **argv) {
    int threads = 2, reps = 3, M = 2048, wino = -1, layer[8], have_layer = 0, nl = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--gemm") && i + 1 < argc) M = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--winograd") && i + 1 < argc) wino = atoi(argv[++i]);
        else if (nl < 8 && argv[i][0] >= '0' && argv[i][0] <= '9') layer[nl++] = atoi(argv[i]);
        else {
            fprintf(stderr, "usage: tool_bench_conv [--threads T] [--reps R] [--gemm M] [--winograd 0|2|4] [N C H W OC K STRIDE PAD]\n");
            return 2;
        }
    }
    if (nl != 0 && nl != 8) {
        fprintf(stderr, "tool_bench_conv: a layer needs 8 numbers: N C H W OC K STRIDE PAD\n");
        return 2;
    }
    have_layer = nl == 8;
    if (reps < 1) reps = 1;
    threads = md_threads_init(threads);
    printf("threads %d, best of %d; GEMM: %s (OpenBLAS kernel %s)\n", threads, reps, md_gemm_kernel(), md_blas_corename());

    md_rng r = md_rng_make(2, 1);
    float *A = alloc_rand((size_t)M * M, &r), *B = alloc_rand((size_t)M * M, &r), *C = alloc_rand((size_t)M * M, &r);
    double t;
    md_sgemm(0, 0, M, M, M, 1.0f, A, M, B, M, 0.0f, C, M);
    TIME_BEST(t, reps, md_sgemm(0, 0, M, M, M, 1.0f, A, M, B, M, 0.0f, C, M));
    printf("md_sgemm %dx%dx%d: %.1f GFLOP/s (peak reference)\n\n", M, M, M, 2.0 * M * (double)M * M * 1e-9 / t);
    free(A), free(B), free(C);

    if (have_layer) {
        bench_layer(layer, reps, wino);
    } else {
        static const int layers[][8] = {
            {2, 256, 60, 60, 256, 3, 1, 1},  /* ResNet-50 layer3 3x3 at ~480x480 input */
            {2, 1024, 30, 30, 256, 1, 1, 0}, /* layer4 1x1 reduce (pointwise: no im2col) */
            {2, 128, 120, 120, 128, 3, 2, 1}, /* stride-2 3x3 (layer2 first block) */
            {2, 256, 60, 80, 256, 3, 1, 1},  /* FPN output 3x3 at P3-ish size */
        };
        for (size_t i = 0; i < sizeof layers / sizeof layers[0]; i++) {
            bench_layer(layers[i], reps, wino);
            printf("\n");
        }
    }
    return 0;
}
