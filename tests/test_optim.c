/* test_optim.c — SGD steps, clipping and the lr schedule against torch.optim.SGD
 * (tests/fixtures/train_sgd.safetensors from scripts/ref_train.py sgd). */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include "minidet/optim.h"
#include "minidet/safetensors.h"
#include "testutil.h"

#define FIX "tests/fixtures/train_sgd.safetensors"
static const char *names[3] = {"a.weight", "a.bias", "b.weight"};
static const int decay[3] = {1, 0, 1};
static const size_t numel[3] = {12, 4, 5};

static void read(const md_st_file *f, const char *prefix, const char *name, float *out, size_t n) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", prefix, name);
    CHECK_OK(md_st_read_f32(f, key, -1, NULL, out, n));
}

static void test_sgd_matches_torch(void) {
    md_st_file f;
    if (!md_test_need_path(FIX, "scripts/ref_train.py sgd")) return;
    CHECK_OK(md_st_load(FIX, &f));
    float data[3][12], grad[3][12], ref[3][12];
    md_sgd_param p[3];
    for (int i = 0; i < 3; i++) {
        read(&f, "init", names[i], data[i], numel[i]);
        p[i] = (md_sgd_param){names[i], data[i], grad[i], numel[i], decay[i]};
    }
    md_sgd s;
    CHECK_OK(md_sgd_init(&s, p, 3, 0.9f, 1e-4f));
    float lrs[3];
    CHECK_OK(md_st_read_f32(&f, "lrs", -1, NULL, lrs, 3));
    for (int step = 0; step < 3; step++) {
        char pre[32];
        snprintf(pre, sizeof pre, "grad%d", step);
        for (int i = 0; i < 3; i++) read(&f, pre, names[i], grad[i], numel[i]);
        md_sgd_step(&s, lrs[step]);
        snprintf(pre, sizeof pre, "after%d", step);
        for (int i = 0; i < 3; i++) {
            read(&f, pre, names[i], ref[i], numel[i]);
            double e = md_max_rel_err(data[i], ref[i], numel[i], 1e-6, NULL);
            CHECK(e < 1e-6, "step %d %s: rel err %g vs torch.optim.SGD", step, names[i], e);
        }
    }
    for (int i = 0; i < 3; i++) {
        read(&f, "momentum", names[i], ref[i], numel[i]);
        double e = md_max_rel_err(s.momentum[i], ref[i], numel[i], 1e-6, NULL);
        CHECK(e < 1e-6, "momentum %s: rel err %g", names[i], e);
    }
    /* clipping */
    for (int i = 0; i < 3; i++) read(&f, "clipgrad", names[i], grad[i], numel[i]);
    double norm_ref;
    CHECK_OK(md_st_read_f64(&f, "clip_norm", -1, NULL, &norm_ref, 1));
    double norm = md_clip_grad_norm(&s, 1.5f);
    CHECK_NEAR(norm, norm_ref, 1e-5 * norm_ref);
    for (int i = 0; i < 3; i++) {
        read(&f, "clipped", names[i], ref[i], numel[i]);
        double e = md_max_rel_err(grad[i], ref[i], numel[i], 1e-6, NULL);
        CHECK(e < 1e-6, "clipped %s: rel err %g", names[i], e);
    }
    md_sgd_free(&s);
    md_st_free(&f);
}

static void test_schedule(void) {
    md_st_file f;
    if (!md_test_need_path(FIX, "scripts/ref_train.py sgd")) return;
    CHECK_OK(md_st_load(FIX, &f));
    md_solver_config sc = {0};
    sc.base_lr = 0.02f;
    sc.warmup_factor = 0.001f;
    sc.warmup_iters = 100;
    sc.steps[0] = 300;
    sc.steps[1] = 400;
    sc.num_steps = 2;
    sc.gamma = 0.1f;
    int64_t its[10];
    double lr[10];
    CHECK_OK(md_st_read_i64(&f, "sched_iters", -1, NULL, its, 10));
    CHECK_OK(md_st_read_f64(&f, "sched_lr", -1, NULL, lr, 10));
    for (int i = 0; i < 10; i++) {
        double got = md_lr_at(&sc, its[i]);
        CHECK(fabs(got - lr[i]) <= 1e-6 * lr[i], "lr at %lld: %.9g, expected %.9g", (long long)its[i], got, lr[i]);
    }
    md_st_free(&f);
}

/* Closed form: momentum 0 and no decay is plain gradient descent; grad_scale halves gradients. */
static void test_plain_descent(void) {
    float w[3] = {1, 2, 3}, g[3] = {0.5f, -1, 2};
    md_sgd_param p = {"w", w, g, 3, 1};
    md_sgd s;
    CHECK_OK(md_sgd_init(&s, &p, 1, 0.0f, 0.0f));
    md_grad_scale(&s, 0.5f);
    md_sgd_step(&s, 0.1f);
    CHECK_NEAR(w[0], 1 - 0.1 * 0.25, 1e-7);
    CHECK_NEAR(w[1], 2 + 0.1 * 0.5, 1e-7);
    CHECK_NEAR(w[2], 3 - 0.1 * 1.0, 1e-7);
    CHECK_NEAR(md_grad_norm(&s), sqrt(0.25 * 0.25 + 0.25 + 1), 1e-7);
    md_sgd_free(&s);
}

/* A norm over many blocks (one tensor of 100,003 and one of 5 floats) of irregular values whose
 * squares' sum rounds differently in different orders: within 1e-13 of a long-double sum, and the
 * same bits with 1, 2 and 3 threads. */
static void test_grad_norm_blocks(void) {
    const size_t n0 = 100003, n1 = 5;
    float *w = calloc(n0 + n1, sizeof *w), *g = malloc((n0 + n1) * sizeof *g);
    if (!w || !g) {
        CHECK(0, "out of memory");
        free(w), free(g);
        return;
    }
    long double expect = 0;
    for (size_t j = 0; j < n0 + n1; j++) {
        g[j] = (float)sin(0.37 * (double)j) * (float)(1 + j % 13);
        expect += (long double)g[j] * g[j];
    }
    md_sgd_param p[2] = {{"big", w, g, n0, 1}, {"small", w + n0, g + n0, n1, 0}};
    md_sgd s;
    CHECK_OK(md_sgd_init(&s, p, 2, 0.9f, 1e-4f));
    const int saved = omp_get_max_threads();
    double norm[3];
    for (int t = 1; t <= 3; t++) {
        omp_set_num_threads(t);
        norm[t - 1] = md_grad_norm(&s);
    }
    omp_set_num_threads(saved);
    const double ref = (double)sqrtl(expect);
    CHECK(fabs(norm[0] - ref) <= 1e-13 * ref, "grad norm %.17g, long-double sum %.17g", norm[0], ref);
    CHECK(norm[1] == norm[0] && norm[2] == norm[0], "grad norm with 1/2/3 threads: %.17g %.17g %.17g", norm[0], norm[1], norm[2]);
    md_sgd_free(&s);
    free(w), free(g);
}

int main(void) {
    MD_RUN(test_sgd_matches_torch);
    MD_RUN(test_schedule);
    MD_RUN(test_plain_descent);
    MD_RUN(test_grad_norm_blocks);
    return md_test_summary();
}
