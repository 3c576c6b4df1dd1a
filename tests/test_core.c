/* test_core.c — arena, rng, gemm, error reporting, clocks. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "minidet/arena.h"
#include "minidet/error.h"
#include "minidet/gemm.h"
#include "minidet/rng.h"
#include "minidet/threads.h"
#include "testutil.h"

static void test_arena(void) {
    md_arena a;
    CHECK_OK(md_arena_init(&a, 1000));
    char *p = md_arena_alloc(&a, 10);
    char *q = md_arena_alloc(&a, 10);
    CHECK(p && q && ((uintptr_t)q % 64) == 0 && q - p == 64, "alignment: p=%p q=%p", (void *)p, (void *)q);
    size_t m = md_arena_mark(&a);
    CHECK(md_arena_alloc(&a, 5000) == NULL, "overflow must fail");
    CHECK(md_last_status() == MD_ERR_NOMEM && strstr(md_last_error(), "out of space"), "message: %s", md_last_error());
    CHECK(md_arena_alloc(&a, (size_t)-10) == NULL, "huge request must fail without wrap-around");
    md_arena_release(&a, m);
    CHECK(a.used == m, "release");
    md_arena_reset(&a);
    CHECK(a.used == 0 && a.peak >= 74, "peak %zu", a.peak);
    md_arena_free(&a);
}

static void test_rng(void) {
    md_rng r1 = md_rng_make(42, MD_STREAM_SHUFFLE), r2 = md_rng_make(42, MD_STREAM_SHUFFLE);
    md_rng r3 = md_rng_make(42, MD_STREAM_AUGMENT);
    int same = 1, diff = 0;
    for (int i = 0; i < 100; i++) {
        uint64_t a = md_rng_u64(&r1), b = md_rng_u64(&r2), c = md_rng_u64(&r3);
        same &= a == b;
        diff += a != c;
    }
    CHECK(same, "same seed+stream must give the same sequence");
    CHECK(diff == 100, "different streams must differ");
    /* resume: a generator restored at counter k continues identically */
    md_rng r4 = md_rng_make(7, 1), r5;
    for (int i = 0; i < 10; i++) md_rng_u64(&r4);
    r5 = r4;
    CHECK(md_rng_u64(&r4) == md_rng_u64(&r5), "restored state continues");
    /* moments of uniform and normal */
    md_rng r = md_rng_make(1, 9);
    double s = 0, s2 = 0, n1 = 0, n2 = 0;
    int N = 200000, below_ok = 1;
    for (int i = 0; i < N; i++) {
        float u = md_rng_uniform(&r);
        s += u; s2 += (double)u * u;
        float z = md_rng_normal(&r);
        n1 += z; n2 += (double)z * z;
        below_ok &= md_rng_below(&r, 7) < 7;
    }
    CHECK_NEAR(s / N, 0.5, 0.005);
    CHECK_NEAR(s2 / N - (s / N) * (s / N), 1.0 / 12, 0.002);
    CHECK_NEAR(n1 / N, 0.0, 0.01);
    CHECK_NEAR(n2 / N, 1.0, 0.01);
    CHECK(below_ok, "md_rng_below out of range");
    uint32_t idx[50], seen[50] = {0};
    for (uint32_t i = 0; i < 50; i++) idx[i] = i;
    md_rng_shuffle_u32(&r, idx, 50);
    int perm = 1;
    for (int i = 0; i < 50; i++) { if (idx[i] >= 50 || seen[idx[i]]++) perm = 0; }
    CHECK(perm, "shuffle must be a permutation");
}

static void test_gemm(void) {
    /* Compare against a naive double-precision product for all four transposes. */
    int M = 7, N = 5, K = 9;
    float A[7 * 9], B[9 * 5], C[7 * 5];
    md_rng r = md_rng_make(3, 0);
    for (int i = 0; i < M * K; i++) A[i] = md_rng_normal(&r);
    for (int i = 0; i < K * N; i++) B[i] = md_rng_normal(&r);
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            for (int i = 0; i < M * N; i++) C[i] = 1.0f;
            /* interpret the same buffers with the requested layout */
            md_sgemm(ta, tb, M, N, K, 2.0f, A, ta ? M : K, B, tb ? K : N, 0.5f, C, N);
            double worst = 0;
            for (int i = 0; i < M; i++)
                for (int j = 0; j < N; j++) {
                    double acc = 0;
                    for (int k = 0; k < K; k++) {
                        double a = ta ? A[k * M + i] : A[i * K + k];
                        double b = tb ? B[j * K + k] : B[k * N + j];
                        acc += a * b;
                    }
                    double want = 2.0 * acc + 0.5;
                    double e = fabs(want - C[i * N + j]);
                    if (e > worst) worst = e;
                }
            CHECK(worst < 1e-4, "gemm ta=%d tb=%d max abs err %g", ta, tb, worst);
        }
    CHECK(md_gemm_flops() >= 4ull * 2 * M * N * K, "flop counter");
}

static void test_error(void) {
    md_set_error(MD_ERR_FORMAT, "field %s", "bbox");
    md_error_prefix(MD_ERR_FORMAT, "file.json");
    CHECK(strcmp(md_last_error(), "file.json: field bbox") == 0, "got '%s'", md_last_error());
}

/* md_cpu_seconds is this process's CPU time: it does not advance while the process sleeps, and a
   single thread spinning for it never gets more CPU time than wall time. */
static void test_clocks(void) {
    double c0 = md_cpu_seconds(), t0 = md_now();
    struct timespec ts = {0, 200000000};
    nanosleep(&ts, NULL);
    double slept_cpu = md_cpu_seconds() - c0, slept_wall = md_now() - t0;
    CHECK(slept_wall >= 0.19 && slept_cpu >= 0 && slept_cpu < 0.05, "sleeping 0.2 s: wall %.3f s, cpu %.3f s", slept_wall, slept_cpu);
    volatile double x = 0;
    c0 = md_cpu_seconds(), t0 = md_now();
    while (md_cpu_seconds() - c0 < 0.05 && md_now() - t0 < 20) x += 1;
    double spun_cpu = md_cpu_seconds() - c0, spun_wall = md_now() - t0;
    CHECK(spun_cpu >= 0.05 && spun_cpu <= spun_wall + 1e-3, "spinning: cpu %.3f s, wall %.3f s", spun_cpu, spun_wall);
}

int main(void) {
    md_threads_init(0);
    MD_RUN(test_arena);
    MD_RUN(test_rng);
    MD_RUN(test_gemm);
    MD_RUN(test_error);
    MD_RUN(test_clocks);
    return md_test_summary();
}
