/* tool_bench_allreduce.c — times the gradient sum of a data-parallel step with the real gradient size:
 *   mpirun -np N build/mpi/bin/tool_bench_allreduce [--depth 50] [--reps 10] [--bucket-mb 25]
 * Rank 0 builds the detector of the default configuration ([model] depth as given) to learn the trainable
 * gradient (floats and tensor boundaries) and broadcasts it. Then, reps times each after a barrier:
 * one blocking sum of the whole buffer, and the bucketed non-blocking sum the trainer uses (every
 * tensor marked final in backward order, then wait). Prints the median seconds, the algorithm
 * bandwidth (bytes / s) and the bus bandwidth of a ring (2 (N - 1) / N x bytes / s), the figure to
 * compare with a link's speed. Without MPI it runs as one rank (nothing to sum). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "minidet/config.h"
#include "minidet/dist.h"
#include "minidet/log.h"
#include "minidet/model.h"
#include "minidet/threads.h"

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static void fail(void) {
    fprintf(stderr, "minidet: rank %d: %s\n", md_dist_rank(), md_last_error());
    md_dist_abort(1);
}

int main(int argc, char **argv) {
    if (md_dist_init(&argc, &argv)) fail();
    int depth = 50, reps = 10;
    double bucket_mb = 25;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--depth") && i + 1 < argc) depth = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--bucket-mb") && i + 1 < argc) bucket_mb = atof(argv[++i]);
        else {
            if (md_dist_rank() == 0) fprintf(stderr, "usage: %s [--depth D] [--reps K] [--bucket-mb MB]\n", argv[0]);
            md_dist_finalize();
            return 2;
        }
    }
    if (reps < 1 || reps > 1000 || !(bucket_mb > 0)) {
        if (md_dist_rank() == 0) fprintf(stderr, "minidet: --reps must be 1..1000 and --bucket-mb positive\n");
        md_dist_finalize();
        return 2;
    }
    md_threads_init(1);
    int64_t nt = 0;
    size_t *off = NULL;
    if (md_dist_rank() == 0) {
        md_config cfg;
        md_config_defaults(&cfg);
        cfg.model.depth = depth;
        md_detector det;
        if (md_detector_create(&det, &cfg)) fail();
        for (int i = 0; i < det.num_params; i++) nt += det.params[i].trainable;
        off = calloc((size_t)nt + 1, sizeof *off);
        if (!off) { md_set_error(MD_ERR_NOMEM, "out of memory"); fail(); }
        int k = 0;
        for (int i = 0; i < det.num_params; i++)
            if (det.params[i].trainable) { off[k + 1] = off[k] + det.params[i].numel; k++; }
        md_detector_free(&det);
    }
    if (md_dist_bcast(&nt, sizeof nt, 0)) fail();
    if (md_dist_rank() != 0) off = calloc((size_t)nt + 1, sizeof *off);
    if (!off) { md_set_error(MD_ERR_NOMEM, "out of memory"); fail(); }
    if (md_dist_bcast(off, ((size_t)nt + 1) * sizeof *off, 0)) fail();
    size_t n = off[nt];
    float *g = malloc((n ? n : 1) * sizeof *g);
    double *tb = malloc(sizeof(double) * (size_t)reps), *tk = malloc(sizeof(double) * (size_t)reps);
    if (!g || !tb || !tk) { md_set_error(MD_ERR_NOMEM, "out of memory for %zu floats", n); fail(); }
    for (size_t i = 0; i < n; i++) g[i] = 1e-3f * (float)(i % 997);
    md_dist_buckets *bk;
    if (md_dist_buckets_create(&bk, g, off, (int)nt, (size_t)(bucket_mb * (1 << 20) / sizeof(float)))) fail();
    double exposed = 0;
    for (int r = -1; r < reps; r++) { /* r = -1: warm-up (connections, buffers) */
        if (md_dist_barrier()) fail();
        double t0 = md_now();
        if (md_dist_sum_f32(g, n)) fail();
        double t1 = md_now();
        if (md_dist_barrier()) fail();
        double t2 = md_now();
        md_dist_buckets_reset(bk);
        for (int t = (int)nt - 1; t >= 0; t--)
            if (md_dist_buckets_ready(bk, t)) fail();
        if (md_dist_buckets_wait(bk, &exposed)) fail();
        double t3 = md_now();
        if (r >= 0) { tb[r] = t1 - t0; tk[r] = t3 - t2; }
    }
    /* the slowest rank decides: rank 0 takes the maximum of every rank's medians */
    double med[2] = {median(tb, reps), median(tk, reps)}, mx[2] = {0, 0};
    int N = md_dist_size();
    void *all = NULL;
    size_t all_bytes = 0;
    if (md_dist_gather_bytes(med, sizeof med, &all, &all_bytes)) fail();
    for (size_t i = 0; i < all_bytes / sizeof(double); i++)
        if (((double *)all)[i] > mx[i % 2]) mx[i % 2] = ((double *)all)[i];
    free(all);
    if (md_dist_rank() == 0) {
        double bytes = (double)n * sizeof(float), ring = N > 1 ? 2.0 * (N - 1) / N : 0;
        printf("R%d-FPN gradient: %zu floats in %lld tensors (%.1f MB); %d ranks; %d buckets of ~%.0f MB; median of %d\n", depth, n,
               (long long)nt, bytes / 1e6, N, md_dist_buckets_count(bk), bucket_mb, reps);
        const char *name[2] = {"MPI_Allreduce, one buffer", "MPI_Iallreduce, buckets"};
        for (int q = 0; q < 2; q++)
            printf("%-28s %9.4f s  algbw %7.2f GB/s  busbw %7.2f GB/s\n", name[q], mx[q], mx[q] > 0 ? bytes / mx[q] / 1e9 : 0,
                   mx[q] > 0 ? ring * bytes / mx[q] / 1e9 : 0);
    }
    md_dist_buckets_destroy(bk);
    free(g);
    free(tb);
    free(tk);
    free(off);
    md_dist_finalize();
    return 0;
}
