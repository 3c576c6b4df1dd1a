/* tool_bench_roi_align.c — RoIAlign forward/backward wall time at 1..T threads.
 *
 * Usage: tool_bench_roi_align [--threads T] [--reps R] [--sampling S] [--aligned A]
 *                             [ROIS_PER_IMAGE N C H W P SCALE_DENOM]
 * Default: the detector's box head on one FPN level: 512 RoIs per image x 2 images,
 * C = 256, feature map 120 x 160 (an 480 x 640 image at stride 4), 7 x 7 output,
 * sampling_ratio 2, aligned 0. RoIs are random proposal-like boxes (sizes 8..320 px,
 * partly outside the image sometimes). For 1..T threads it prints the best-of-R time of
 * forward and backward and the backward speed-up over 1 thread, and checks that the
 * backward result is bitwise the same at every thread count. The process CPU time of each
 * timed run is printed beside it: on a shared machine, wall time at 2 threads only means
 * something when the cores are idle, while equal CPU time shows no work is duplicated, and
 * the CPU time of the busiest pool thread in one backward call (the critical path; run with
 * OMP_WAIT_POLICY=passive) gives the speed-up the split allows on idle cores.
 * Figures, not a test. */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "minidet/ops.h"
#include "minidet/rng.h"
#include "minidet/threads.h"

static float *alloc_f(size_t n) {
    float *p = malloc((n ? n : 1) * sizeof(float));
    if (!p) {
        fprintf(stderr, "tool_bench_roi_align: out of memory (%zu floats)\n", n);
        exit(1);
    }
    return p;
}

static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* CPU time consumed so far by each thread of the OpenMP pool (t[0..nthreads)); GOMP keeps
 * the same pool threads across parallel regions, so deltas around a call give each thread's
 * busy time in it (run with OMP_WAIT_POLICY=passive so barrier waits are not spun). */
static int pool_cpu(double *t) {
    int n = 1;
#pragma omp parallel
    {
        struct timespec ts;
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
        t[omp_get_thread_num()] = (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
#pragma omp single
        n = omp_get_num_threads();
    }
    return n;
}

/* Best-of-reps wall time; *cpu gets the smallest process CPU time of a run (all threads) and
 * *crit the smallest CPU time of the busiest pool thread in a run. */
static double best_of(int reps, void (*fn)(void *), void *arg, double *cpu, double *crit) {
    double best = 1e30, before[256], after[256];
    *cpu = *crit = 1e30;
    for (int i = 0; i < reps; i++) {
        int np = pool_cpu(before);
        double t0 = md_now(), c0 = cpu_now();
        fn(arg);
        double dt = md_now() - t0, dc = cpu_now() - c0, m = 0;
        pool_cpu(after);
        for (int k = 0; k < np; k++) m = after[k] - before[k] > m ? after[k] - before[k] : m;
        if (dt < best) best = dt;
        if (dc < *cpu) *cpu = dc;
        if (m < *crit) *crit = m;
    }
    return best;
}

typedef struct {
    float *out, *feat, *rois, *dout, *dfeat;
    int R, N, C, H, W, P, sr, aligned;
    float scale;
} bench_args;

static void run_fwd(void *p) {
    bench_args *a = p;
    md_roi_align_forward(a->out, a->feat, a->rois, a->R, a->N, a->C, a->H, a->W, a->P, a->P, a->scale, a->sr, a->aligned);
}

static void run_bwd(void *p) {
    bench_args *a = p;
    memset(a->dfeat, 0, sizeof(float) * (size_t)a->N * a->C * a->H * a->W);
    md_roi_align_backward(a->dfeat, a->dout, a->rois, a->R, a->N, a->C, a->H, a->W, a->P, a->P, a->scale, a->sr, a->aligned);
}

int main(int argc, char **argv) {
    int T = 2, reps = 3, per = 512;
    bench_args a = {.N = 2, .C = 256, .H = 120, .W = 160, .P = 7, .sr = 2, .aligned = 0, .scale = 0.25f};
    int pos = 0, denom = 4;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc) T = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--sampling") && i + 1 < argc) a.sr = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--aligned") && i + 1 < argc) a.aligned = atoi(argv[++i]);
        else if (argv[i][0] != '-' && pos < 7) {
            int v = atoi(argv[i]);
            int *slot[7] = {&per, &a.N, &a.C, &a.H, &a.W, &a.P, &denom};
            *slot[pos++] = v;
        } else {
            fprintf(stderr, "usage: %s [--threads T] [--reps R] [--sampling S] [--aligned A] [ROIS_PER_IMAGE N C H W P SCALE_DENOM]\n", argv[0]);
            return 2;
        }
    }
    if (T > 256) T = 256;
    if (T < 1 || reps < 1 || per < 1 || a.N < 1 || a.C < 1 || a.H < 1 || a.W < 1 || a.P < 1 || denom < 1) {
        fprintf(stderr, "tool_bench_roi_align: every size must be >= 1\n");
        return 2;
    }
    a.scale = 1.0f / (float)denom;
    a.R = per * a.N;
    const size_t nf = (size_t)a.N * a.C * a.H * a.W, no = (size_t)a.R * a.C * a.P * a.P;
    a.feat = alloc_f(nf), a.dfeat = alloc_f(nf), a.out = alloc_f(no), a.dout = alloc_f(no), a.rois = alloc_f((size_t)a.R * 5);
    float *ref = alloc_f(nf);
    md_rng r = md_rng_make(7, 1);
    for (size_t i = 0; i < nf; i++) a.feat[i] = md_rng_uniform(&r) - 0.5f;
    for (size_t i = 0; i < no; i++) a.dout[i] = md_rng_uniform(&r) - 0.5f;
    const float IW = (float)a.W * denom, IH = (float)a.H * denom;
    for (int i = 0; i < a.R; i++) {
        float w = 8 + md_rng_uniform(&r) * 312, h = 8 + md_rng_uniform(&r) * 312;
        float x = md_rng_uniform(&r) * IW - 0.25f * w, y = md_rng_uniform(&r) * IH - 0.25f * h;
        float *q = a.rois + 5 * i;
        q[0] = (float)(i / per), q[1] = x, q[2] = y, q[3] = x + w, q[4] = y + h;
    }
    printf("roi_align: %d RoIs (%d x %d images), C=%d, map %dx%d, out %dx%d, scale 1/%d, sampling %d, aligned %d\n", a.R, per, a.N, a.C, a.H,
           a.W, a.P, a.P, denom, a.sr, a.aligned);
    double t1 = 0, c1 = 0;
    int same = 1;
    for (int t = 1; t <= T; t++) {
        md_threads_init(t);
        run_fwd(&a); /* warm-up */
        double cf, cb, critf, crit;
        double tf = best_of(reps, run_fwd, &a, &cf, &critf);
        double tb = best_of(reps, run_bwd, &a, &cb, &crit);
        if (t == 1) t1 = tb, c1 = crit, memcpy(ref, a.dfeat, sizeof(float) * nf);
        else same &= !memcmp(ref, a.dfeat, sizeof(float) * nf);
        printf("threads %d: forward %8.2f ms (cpu %8.2f)   backward %8.2f ms (cpu %8.2f, busiest thread %8.2f)   "
               "backward speed-up: wall %.2fx, by busiest thread %.2fx\n",
               t, tf * 1e3, cf * 1e3, tb * 1e3, cb * 1e3, crit * 1e3, t1 / tb, c1 / crit);
    }
    printf("backward bitwise identical across thread counts: %s\n", same ? "yes" : "NO");
    free(a.feat), free(a.dfeat), free(a.out), free(a.dout), free(a.rois), free(ref);
    return same ? 0 : 1;
}
