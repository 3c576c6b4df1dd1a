/* test_batchnorm.c — BatchNorm2d training mode (src/ops/batchnorm.c) checked two ways:
 *   1. against PyTorch: tests/fixtures/batchnorm.safetensors (scripts/ref_batchnorm.py) holds
 *      nn.BatchNorm2d.train() inputs, output, running statistics after the step and autograd
 *      gradients for a random upstream gradient; output, running_mean/var and dx, dgamma, dbeta
 *      must match to relative error <= 1e-4 (floor 1e-2 of the tensor's largest magnitude); also
 *      in-place forward, accumulation (+=) of every gradient and NULL gradient pointers;
 *   2. central finite differences (eps 1e-2, relative tolerance 1e-2) of L = sum(gy * y) with
 *      respect to every input, gamma and beta element of a small random case.
 * Prints the worst errors. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "minidet/ops.h"
#include "minidet/rng.h"
#include "minidet/safetensors.h"
#include "testutil.h"

#define FIXTURE "tests/fixtures/batchnorm.safetensors"
#define REL_TOL 1e-4

static md_st_file F;
static double worst_fwd, worst_stats, worst_bwd, worst_fd;


static void cmp(double *worst, const char *cs, const char *what, const float *got, const float *ref, size_t n) {
    CHECK_REL(worst, REL_TOL, cs, what, got, ref, n);
}

static float *fx(const char *cs, const char *t, size_t *n) { return md_test_fixture_f32(&F, cs, t, n); }

static float *dup(const float *a, size_t n, float add) {
    float *p = malloc(n * sizeof(float));
    if (p)
        for (size_t i = 0; i < n; i++) p[i] = a[i] + add;
    return p;
}

static void one_case(const char *cs) {
    char gname[80];
    snprintf(gname, sizeof gname, "%s.geom", cs);
    int64_t g[4];
    md_test_checks++;
    if (md_st_read_i64(&F, gname, -1, NULL, g, 4) != MD_OK) {
        md_test_fail(__FILE__, __LINE__, "%s: %s", gname, md_last_error());
        return;
    }
    const int N = (int)g[0], C = (int)g[1], HW = (int)(g[2] * g[3]);
    size_t nx = 0;
    float *x = fx(cs, "x", &nx), *ga = fx(cs, "gamma", NULL), *be = fx(cs, "beta", NULL), *rm0 = fx(cs, "rm0", NULL);
    float *rv0 = fx(cs, "rv0", NULL), *y = fx(cs, "y", NULL), *rm1 = fx(cs, "rm1", NULL), *rv1 = fx(cs, "rv1", NULL);
    float *gy = fx(cs, "gy", NULL), *gx = fx(cs, "gx", NULL), *gga = fx(cs, "ggamma", NULL), *gbe = fx(cs, "gbeta", NULL);
    if (x && ga && be && rm0 && rv0 && y && rm1 && rv1 && gy && gx && gga && gbe && nx == (size_t)N * C * HW) {
        float *out = calloc(nx, sizeof(float)), *mean = calloc((size_t)C, sizeof(float)), *is = calloc((size_t)C, sizeof(float));
        float *rm = dup(rm0, (size_t)C, 0), *rv = dup(rv0, (size_t)C, 0), *dx = calloc(nx, sizeof(float));
        float *dg = calloc((size_t)C, sizeof(float)), *db = calloc((size_t)C, sizeof(float));
        CHECK(md_batchnorm_train_forward(out, mean, is, rm, rv, x, ga, be, N, C, HW, 1e-5f, 0.1f) == 1, "%s forward", cs);
        cmp(&worst_fwd, cs, "forward", out, y, nx);
        cmp(&worst_stats, cs, "running_mean", rm, rm1, (size_t)C);
        cmp(&worst_stats, cs, "running_var", rv, rv1, (size_t)C);
        md_batchnorm_train_backward(dx, dg, db, gy, x, mean, is, ga, N, C, HW);
        cmp(&worst_bwd, cs, "dx", dx, gx, nx);
        cmp(&worst_bwd, cs, "dgamma", dg, gga, (size_t)C);
        cmp(&worst_bwd, cs, "dbeta", db, gbe, (size_t)C);
        /* accumulation into 1.0-filled buffers */
        float *ax = dup(x, nx, 0), *ag = dup(ga, (size_t)C, 0), *ab = dup(be, (size_t)C, 0);
        for (size_t i = 0; i < nx; i++) ax[i] = 1.0f;
        for (int c = 0; c < C; c++) ag[c] = ab[c] = 1.0f;
        md_batchnorm_train_backward(ax, ag, ab, gy, x, mean, is, ga, N, C, HW);
        float *ex = dup(gx, nx, 1.0f), *eg = dup(gga, (size_t)C, 1.0f), *eb = dup(gbe, (size_t)C, 1.0f);
        cmp(&worst_bwd, cs, "dx (+=)", ax, ex, nx);
        cmp(&worst_bwd, cs, "dgamma (+=)", ag, eg, (size_t)C);
        cmp(&worst_bwd, cs, "dbeta (+=)", ab, eb, (size_t)C);
        /* NULL gradients: only dx */
        memset(dx, 0, nx * sizeof(float));
        md_batchnorm_train_backward(dx, NULL, NULL, gy, x, mean, is, ga, N, C, HW);
        cmp(&worst_bwd, cs, "dx (NULL dgamma/dbeta)", dx, gx, nx);
        md_batchnorm_train_backward(NULL, NULL, NULL, gy, x, mean, is, ga, N, C, HW); /* no-op */
        /* in place, no running statistics */
        float *xi = dup(x, nx, 0);
        CHECK(md_batchnorm_train_forward(xi, mean, is, NULL, NULL, xi, ga, be, N, C, HW, 1e-5f, 0.1f) == 1, "in place");
        cmp(&worst_fwd, cs, "forward in place", xi, y, nx);
        free(out), free(mean), free(is), free(rm), free(rv), free(dx), free(dg), free(db);
        free(ax), free(ag), free(ab), free(ex), free(eg), free(eb), free(xi);
    } else {
        CHECK(0, "%s: fixture tensors missing or wrong size", cs);
    }
    free(x), free(ga), free(be), free(rm0), free(rv0), free(y), free(rm1), free(rv1), free(gy), free(gx), free(gga), free(gbe);
}

static void test_batchnorm_vs_torch(void) {
    if (!md_test_need_path(FIXTURE, "scripts/ref_batchnorm.py")) return;
    CHECK_OK(md_st_load(FIXTURE, &F));
    int n = 0;
    for (int i = 0; i < F.count; i++) {
        const char *nm = F.tensors[i].name;
        size_t l = strlen(nm);
        if (l > 5 && !strcmp(nm + l - 5, ".geom")) {
            char cs[64];
            snprintf(cs, sizeof cs, "%.*s", (int)(l - 5), nm);
            one_case(cs);
            n++;
        }
    }
    CHECK(n >= 4, "fixture has %d cases, expected >= 4", n);
    md_st_free(&F);
    printf("  batchnorm vs torch (%d cases): fwd %.2e  running stats %.2e  bwd %.2e\n", n, worst_fwd, worst_stats, worst_bwd);
}

/* L = sum(gy * BN(x)) in double from the float forward */
static double loss(const float *x, const float *ga, const float *be, const float *gy, int N, int C, int HW, float *scr) {
    float mean[8], is[8];
    md_batchnorm_train_forward(scr, mean, is, NULL, NULL, x, ga, be, N, C, HW, 1e-5f, 0.1f);
    double s = 0;
    for (size_t i = 0; i < (size_t)N * C * HW; i++) s += (double)gy[i] * scr[i];
    return s;
}

static void test_batchnorm_finite_diff(void) {
    enum { N = 2, C = 3, HW = 6 };
    const size_t nx = (size_t)N * C * HW;
    md_rng r = md_rng_make(5, 3);
    float x[N * C * HW], gy[N * C * HW], ga[C], be[C], y[N * C * HW], mean[C], is[C];
    for (size_t i = 0; i < nx; i++) x[i] = 2.0f * md_rng_normal(&r) + 0.5f, gy[i] = md_rng_normal(&r);
    for (int c = 0; c < C; c++) ga[c] = 1.0f + 0.5f * md_rng_normal(&r), be[c] = md_rng_normal(&r);
    float dx[N * C * HW] = {0}, dg[C] = {0}, db[C] = {0};
    md_batchnorm_train_forward(y, mean, is, NULL, NULL, x, ga, be, N, C, HW, 1e-5f, 0.1f);
    md_batchnorm_train_backward(dx, dg, db, gy, x, mean, is, ga, N, C, HW);
    const float eps = 1e-2f;
    struct { float *v, *g; size_t n; const char *nm; } T[3] = {{x, dx, nx, "x"}, {ga, dg, C, "gamma"}, {be, db, C, "beta"}};
    for (int t = 0; t < 3; t++) {
        double gmax = 0;
        for (size_t i = 0; i < T[t].n; i++) gmax = fmax(gmax, fabs((double)T[t].g[i]));
        for (size_t i = 0; i < T[t].n; i++) {
            float keep = T[t].v[i];
            T[t].v[i] = keep + eps;
            double lp = loss(x, ga, be, gy, N, C, HW, y);
            T[t].v[i] = keep - eps;
            double lm = loss(x, ga, be, gy, N, C, HW, y);
            T[t].v[i] = keep;
            double fd = (lp - lm) / (2.0 * eps), e = fabs(fd - T[t].g[i]) / fmax(fabs(fd), 0.05 * gmax);
            if (e > worst_fd) worst_fd = e;
            CHECK(e <= 1e-2, "d%s[%zu]: analytic %.6g, finite difference %.6g", T[t].nm, i, (double)T[t].g[i], fd);
        }
    }
    printf("  batchnorm finite differences: worst rel err %.2e\n", worst_fd);
}

static void test_batchnorm_too_small(void) {
    float x[3] = {1, 2, 3}, y[3] = {7, 7, 7}, m[3], s[3], ga[3] = {1, 1, 1}, be[3] = {0, 0, 0};
    CHECK(md_batchnorm_train_forward(y, m, s, NULL, NULL, x, ga, be, 1, 3, 1, 1e-5f, 0.1f) == 0, "M = 1 must be refused");
    CHECK(y[0] == 7 && y[2] == 7, "nothing written when refused");
}

int main(void) {
    MD_RUN(test_batchnorm_vs_torch);
    MD_RUN(test_batchnorm_finite_diff);
    MD_RUN(test_batchnorm_too_small);
    return md_test_summary();
}
