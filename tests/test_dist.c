/* test_dist.c — the communication module (dist.h).
 *
 * Without MPI (and in the MPI build before mpirun is involved) it checks the bucket bookkeeping and the
 * one-process stand-ins. In the MPI build the program then runs itself under mpirun with 2 and 4 ranks
 * (MD_TEST_RANKS set): every collective against closed forms (sums of small integers are exact in
 * float), gradient buckets started out of order and finished by the wait, and md_dist_abort on one rank
 * ending the whole job at once with its exit status. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "minidet/dist.h"
#include "testutil.h"

/* tensor sizes 3, 5, 2, 7, 1 and buckets of >= 6 floats from the end: {t3, t4}, {t1, t2}, {t0} */
static const size_t k_off[6] = {0, 3, 8, 10, 17, 18};

static void test_bucket_plan(void) {
    float flat[18] = {0};
    md_dist_buckets *b;
    CHECK_OK(md_dist_buckets_create(&b, flat, k_off, 5, 6));
    if (!b) return;
    CHECK(md_dist_buckets_count(b) == 3, "buckets: %d, expected 3", md_dist_buckets_count(b));
    CHECK_OK(md_dist_buckets_ready(b, 4));
    CHECK(md_dist_buckets_started_early(b) == 0, "t3 pending, yet %d started", md_dist_buckets_started_early(b));
    CHECK_OK(md_dist_buckets_ready(b, 3));
    CHECK(md_dist_buckets_started_early(b) == 1, "bucket {t3, t4} complete: %d started", md_dist_buckets_started_early(b));
    CHECK_OK(md_dist_buckets_ready(b, 0)); /* bucket 2 complete, but bucket 1 must start first */
    CHECK(md_dist_buckets_started_early(b) == 1, "out of order start: %d", md_dist_buckets_started_early(b));
    CHECK_OK(md_dist_buckets_ready(b, 0)); /* twice: no effect */
    CHECK_OK(md_dist_buckets_ready(b, 2));
    CHECK_OK(md_dist_buckets_ready(b, 1));
    CHECK(md_dist_buckets_started_early(b) == 3, "all complete: %d started", md_dist_buckets_started_early(b));
    CHECK(md_dist_buckets_ready(b, 5) == MD_ERR_INTERNAL, "tensor 5 of 5 accepted");
    double w = -1;
    CHECK_OK(md_dist_buckets_wait(b, &w));
    CHECK(w >= 0, "exposed time %g", w);
    md_dist_buckets_reset(b);
    CHECK(md_dist_buckets_started_early(b) == 0, "reset keeps %d started", md_dist_buckets_started_early(b));
    md_dist_buckets_destroy(b);
    /* one huge tensor: one bucket, never split */
    size_t off2[2] = {0, 18};
    CHECK_OK(md_dist_buckets_create(&b, flat, off2, 1, 4));
    if (b) CHECK(md_dist_buckets_count(b) == 1, "one tensor in %d buckets", md_dist_buckets_count(b));
    md_dist_buckets_destroy(b);
    size_t bad[3] = {0, 5, 4};
    CHECK(md_dist_buckets_create(&b, flat, bad, 2, 4) == MD_ERR_ARG, "decreasing offsets accepted");
}

static void test_one_process(void) {
    CHECK(md_dist_rank() == 0 && md_dist_size() == 1, "rank %d of %d", md_dist_rank(), md_dist_size());
    double d[2] = {1.5, -2};
    CHECK_OK(md_dist_sum_f64(d, 2));
    CHECK(d[0] == 1.5 && d[1] == -2, "one-process sum changed the values");
    const char msg[] = "abc";
    void *all = NULL;
    size_t n = 0;
    CHECK_OK(md_dist_gather_bytes(msg, 3, &all, &n));
    CHECK(n == 3 && all && !memcmp(all, "abc", 3), "one-process gather: %zu bytes", n);
    free(all);
    int mx = -1, who = -1;
    CHECK_OK(md_dist_agree(5, &mx, &who));
    CHECK(mx == 5 && who == 0, "agree: %d from rank %d", mx, who);
}

/* ---------------------------------------------------------------- under mpirun */

static int g_N; /* ranks started by mpirun */

static void ranks_collectives(void) {
    int N = g_N;
    int r = md_dist_rank();
    CHECK(md_dist_size() == N, "size %d, mpirun started %d", md_dist_size(), N);
    CHECK_OK(md_dist_barrier());
    double d[3] = {r + 1, 0.5 * r, 1};
    CHECK_OK(md_dist_sum_f64(d, 3));
    CHECK(d[0] == N * (N + 1) / 2.0 && d[1] == 0.25 * N * (N - 1) && d[2] == N, "sum_f64: %g %g %g", d[0], d[1], d[2]);
    int64_t q[2] = {(int64_t)1 << 40, r};
    CHECK_OK(md_dist_sum_i64(q, 2));
    CHECK(q[0] == (int64_t)N << 40 && q[1] == (int64_t)N * (N - 1) / 2, "sum_i64: %lld %lld", (long long)q[0], (long long)q[1]);
    char b[16];
    memset(b, r == N - 1 ? 'z' : 'a', sizeof b);
    CHECK_OK(md_dist_bcast(b, sizeof b, N - 1));
    for (int i = 0; i < 16; i++) CHECK(b[i] == 'z', "bcast byte %d = %c", i, b[i]);
    /* rank r sends r + 1 bytes of value r */
    char send[8];
    memset(send, r, sizeof send);
    void *all = NULL;
    size_t n = 0;
    CHECK_OK(md_dist_gather_bytes(send, (size_t)r + 1, &all, &n));
    if (r == 0) {
        CHECK(n == (size_t)N * (N + 1) / 2 && all, "gather: %zu bytes", n);
        size_t o = 0;
        for (int k = 0; all && k < N; k++)
            for (int i = 0; i <= k; i++, o++) CHECK(((char *)all)[o] == k, "gather byte %zu = %d, expected %d", o, ((char *)all)[o], k);
    } else {
        CHECK(all == NULL && n == 0, "rank %d received %zu gathered bytes", r, n);
    }
    free(all);
    /* ranks 1 and N-1 hold the largest flag: the lowest of them is named */
    int mx = -1, who = -1;
    CHECK_OK(md_dist_agree(r == 1 || r == N - 1 ? 7 : (r == 0 ? 3 : 0), &mx, &who));
    CHECK(mx == 7 && who == 1, "agree: %d from rank %d", mx, who);
}

static void ranks_buckets(void) {
    int N = g_N;
    int r = md_dist_rank();
    float flat[18];
    for (int i = 0; i < 18; i++) flat[i] = (float)((r + 1) * (i + 1));
    md_dist_buckets *b;
    CHECK_OK(md_dist_buckets_create(&b, flat, k_off, 5, 6));
    if (!b) return;
    /* two steps: every tensor marked out of order, then only one (the wait starts the rest) */
    for (int step = 0; step < 2; step++) {
        md_dist_buckets_reset(b);
        if (step == 0) {
            const int order[5] = {4, 3, 0, 2, 1};
            for (int k = 0; k < 5; k++) CHECK_OK(md_dist_buckets_ready(b, order[k]));
        } else {
            CHECK_OK(md_dist_buckets_ready(b, 4));
        }
        double w;
        CHECK_OK(md_dist_buckets_wait(b, &w));
        double f = step == 0 ? N * (N + 1) / 2.0 : N * (double)N * (N + 1) / 2.0;
        for (int i = 0; i < 18; i++) CHECK(flat[i] == (float)(f * (i + 1)), "step %d: flat[%d] = %g, expected %g", step, i, flat[i], f * (i + 1));
    }
    md_dist_buckets_destroy(b);
    /* a gradient-sized buffer in 1 M-float buckets */
    size_t n = (size_t)3 << 20, off[4] = {0, n / 3, 2 * n / 3 + 5, n};
    float *big = malloc(n * sizeof *big);
    CHECK(big != NULL, "out of memory");
    if (!big) return;
    for (size_t i = 0; i < n; i++) big[i] = (float)((i % 1000) * (r + 1));
    CHECK_OK(md_dist_buckets_create(&b, big, off, 3, (size_t)1 << 20));
    if (b) {
        for (int t = 2; t >= 0; t--) CHECK_OK(md_dist_buckets_ready(b, t));
        CHECK_OK(md_dist_buckets_wait(b, NULL));
        size_t bad = 0;
        for (size_t i = 0; i < n; i++) bad += big[i] != (float)((i % 1000) * N * (N + 1) / 2);
        CHECK(bad == 0, "%zu of %zu floats wrong after the bucketed sum", bad, n);
    }
    md_dist_buckets_destroy(b);
    free(big);
}

int main(int argc, char **argv) {
    const char *ranks = getenv("MD_TEST_RANKS");
    if (ranks) { /* a rank under mpirun */
        if (md_dist_init(&argc, &argv)) { fprintf(stderr, "%s\n", md_last_error()); return 1; }
        int N = g_N = atoi(ranks);
        if (argc > 1 && !strcmp(argv[1], "abort")) {
            /* rank 1 ends the job while the others wait in a barrier */
            if (md_dist_rank() == 1) md_dist_abort(3);
            md_dist_barrier();
            md_dist_finalize();
            return 0; /* never reached by a correct abort */
        }
        MD_RUN(test_bucket_plan);
        if (N > 1) {
            MD_RUN(ranks_collectives);
            MD_RUN(ranks_buckets);
        }
        int rc = md_test_summary();
        md_dist_finalize();
        return rc;
    }
    MD_RUN(test_bucket_plan);
    MD_RUN(test_one_process);
    if (md_dist_compiled()) {
        char args[4096];
        snprintf(args, sizeof args, "%s", argv[0]);
        for (int np = 2; np <= 4; np += 2) {
            int rc = md_test_mpirun(np, args, 120);
            CHECK(rc == 0, "%d ranks: exit status %d", np, rc);
        }
        snprintf(args, sizeof args, "%s abort", argv[0]);
        int rc = md_test_mpirun(3, args, 60);
        CHECK(rc != 0 && rc != 124, "md_dist_abort on rank 1 of 3: exit status %d (124: the job hung)", rc);
        /* a one-process start of the MPI build without mpirun (Open MPI singleton) */
        CHECK_OK(md_dist_init(&argc, &argv));
        CHECK(md_dist_rank() == 0 && md_dist_size() == 1, "singleton: rank %d of %d", md_dist_rank(), md_dist_size());
        MD_RUN(test_one_process);
        md_dist_finalize();
    }
    return md_test_summary();
}
