/* tool_bench_model.c — times the detector's stages (forward, proposals, RoI heads, backward, inference)
 * on random images: build/bin/tool_bench_model [--depth 50] [--batch 2] [--h 480] [--w 640]
 * [--iters 2] [--threads 0] [--infer]. Prints seconds per stage, GFLOP/s through md_sgemm, peak RSS,
 * and the process CPU time (user+sys, all threads) of the step: on a shared machine the wall time
 * also counts other programs' load, the CPU time much less so. */
#include <stdio.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>
#include "minidet/gemm.h"
#include "minidet/log.h"
#include "minidet/model.h"
#include "minidet/rng.h"
#include "minidet/threads.h"

int main(int argc, char **argv) {
    int depth = 50, N = 2, H = 480, W = 640, iters = 2, threads = 0, infer = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--depth") && i + 1 < argc) depth = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--batch") && i + 1 < argc) N = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--h") && i + 1 < argc) H = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--w") && i + 1 < argc) W = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--iters") && i + 1 < argc) iters = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--infer")) infer = 1;
        else {
            fprintf(stderr, "usage: %s [--depth D] [--batch N] [--h H] [--w W] [--iters K] [--threads T] [--infer]\n", argv[0]);
            return 2;
        }
    }
    if (N < 1 || N > MD_MAX_BATCH) {
        fprintf(stderr, "batch must be 1..%d\n", MD_MAX_BATCH);
        return 2;
    }
    int nt = md_threads_init(threads);
    md_config cfg;
    md_config_defaults(&cfg);
    cfg.model.depth = depth;
    md_detector det;
    if (md_detector_create(&det, &cfg)) md_die();
    size_t n = (size_t)N * 3 * H * W;
    float *img = malloc(n * sizeof(float));
    int sizes[2 * MD_MAX_BATCH];
    md_rng r = md_rng_make(1, 9);
    for (size_t i = 0; i < n; i++) img[i] = md_rng_normal(&r);
    for (int i = 0; i < N; i++) {
        sizes[2 * i] = H;
        sizes[2 * i + 1] = W;
    }
    md_arena arena;
    if (md_arena_init(&arena, (size_t)6 << 30)) md_die();
    printf("R%d-FPN, batch %d, %dx%d, %d threads; BLAS: %s, kernel %s; GEMM: %s\n", depth, N, H, W, nt, md_blas_config(),
           md_blas_corename(), md_gemm_kernel());
    for (int it = 0; it < iters; it++) {
        md_arena_reset(&arena);
        md_gemm_flops_reset();
        double c0 = md_cpu_seconds(), t0 = md_now();
        if (infer) {
            md_detections d[MD_MAX_BATCH];
            if (md_detector_infer(&det, &arena, img, N, H, W, sizes, sizes, d)) md_die();
            double t1 = md_now(), c1 = md_cpu_seconds();
            printf("iter %d: inference %.3f s (%.3f s/image), cpu %.3f s, %.1f GFLOP/s, %d dets, arena %.0f MiB, peak RSS %.0f MiB\n",
                   it, t1 - t0, (t1 - t0) / N, c1 - c0, md_gemm_flops() / (t1 - t0) * 1e-9, d[0].n, arena.peak / 1048576.0,
                   md_peak_rss_mb());
            continue;
        }
        md_step st;
        if (md_detector_forward_rpn(&det, &arena, img, N, H, W, sizes, 1, &st)) md_die();
        double t1 = md_now();
        if (md_detector_proposals(&det, &arena, &st)) md_die();
        double t2 = md_now();
        /* 512 RoIs per image: the first proposals, as the sampler would give */
        int R = 0;
        float *rois = md_arena_floats(&arena, (size_t)N * 512 * 5);
        if (!rois) md_die();
        for (int b = 0; b < N; b++)
            for (int j = 0; j < st.num_proposals[b] && j < 512; j++, R++) {
                rois[R * 5] = (float)b;
                memcpy(rois + R * 5 + 1, st.proposals[b] + j * 4, 4 * sizeof(float));
            }
        if (md_detector_forward_roi(&det, &arena, &st, rois, R)) md_die();
        double t3 = md_now(), c3 = md_cpu_seconds();
        size_t A = (size_t)N * st.num_anchors;
        float *go = md_arena_floats(&arena, A), *gd = md_arena_floats(&arena, A * 4);
        float *gc = md_arena_floats(&arena, (size_t)R * st.num_classes), *gb = md_arena_floats(&arena, (size_t)R * 4 * st.num_classes);
        if (!go || !gd || !gc || !gb) md_die();
        for (size_t i = 0; i < A; i++) go[i] = 1e-4f * md_rng_normal(&r);
        for (size_t i = 0; i < A * 4; i++) gd[i] = 1e-4f * md_rng_normal(&r);
        for (size_t i = 0; i < (size_t)R * st.num_classes; i++) gc[i] = 1e-3f * md_rng_normal(&r);
        for (size_t i = 0; i < (size_t)R * 4 * st.num_classes; i++) gb[i] = 1e-3f * md_rng_normal(&r);
        double t4 = md_now(), c4 = md_cpu_seconds();
        md_detector_zero_grad(&det);
        if (md_detector_backward(&det, &arena, &st, go, gd, gc, gb)) md_die();
        double t5 = md_now(), c5 = md_cpu_seconds();
        double tot = (t3 - t0) + (t5 - t4), cpu = (c3 - c0) + (c5 - c4);
        printf("iter %d: forward %.3f s, proposals %.3f s, roi heads (%d RoIs) %.3f s, backward %.3f s; step %.3f s "
               "(%.3f s/image), %.1f GFLOP/s, cpu %.3f s (forward %.3f, backward %.3f), %.1f GFLOP, arena %.0f MiB, peak RSS %.0f MiB\n",
               it, t1 - t0, t2 - t1, R, t3 - t2, t5 - t4, tot, tot / N, md_gemm_flops() / tot * 1e-9, cpu, c3 - c0, c5 - c4,
               md_gemm_flops() * 1e-9, arena.peak / 1048576.0, md_peak_rss_mb());
    }
    md_arena_free(&arena);
    md_detector_free(&det);
    free(img);
    return 0;
}
