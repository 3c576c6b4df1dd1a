/* test_avgpool.c — average pooling (md_avgpool2d_*, src/ops/pool.c) against PyTorch:
 * tests/fixtures/avgpool.safetensors (scripts/ref_avgpool.py) holds F.avg_pool2d inputs, outputs,
 * a random upstream gradient and the autograd input gradient for ResNet-vd's shortcut pool
 * (k 2, stride 2, ceil_mode, count_include_pad=False) on odd/even/1-pixel inputs and for padded,
 * ceil-mode edge windows. Checks: md_avgpool2d_out gives torch's output size, forward and backward
 * within relative 1e-4 (floor 1e-2 of the largest magnitude), backward accumulates (+=), NULL din is
 * a no-op. Prints the worst errors. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "minidet/ops.h"
#include "minidet/safetensors.h"
#include "testutil.h"

#define FIXTURE "tests/fixtures/avgpool.safetensors"
#define REL_TOL 1e-4

static md_st_file F;
static double worst_fwd, worst_bwd;


static void cmp(double *worst, const char *cs, const char *what, const float *got, const float *ref, size_t n) {
    CHECK_REL(worst, REL_TOL, cs, what, got, ref, n);
}

static float *fx(const char *cs, const char *t, size_t *n) { return md_test_fixture_f32(&F, cs, t, n); }

static void one_case(const char *cs) {
    char gname[80];
    snprintf(gname, sizeof gname, "%s.geom", cs);
    int64_t g[11];
    md_test_checks++;
    if (md_st_read_i64(&F, gname, -1, NULL, g, 11) != MD_OK) {
        md_test_fail(__FILE__, __LINE__, "%s: %s", gname, md_last_error());
        return;
    }
    const int N = (int)g[0], C = (int)g[1], H = (int)g[2], W = (int)g[3], k = (int)g[4], s = (int)g[5], p = (int)g[6];
    const int ceil_mode = (int)g[7], incl = (int)g[8], OH = (int)g[9], OW = (int)g[10];
    CHECK(md_avgpool2d_out(H, k, s, p, ceil_mode) == OH && md_avgpool2d_out(W, k, s, p, ceil_mode) == OW,
          "%s: output size %dx%d, torch %dx%d", cs, md_avgpool2d_out(H, k, s, p, ceil_mode),
          md_avgpool2d_out(W, k, s, p, ceil_mode), OH, OW);
    size_t nx = 0, ny = 0;
    float *x = fx(cs, "x", &nx), *y = fx(cs, "y", &ny), *gy = fx(cs, "gy", NULL), *gx = fx(cs, "gx", NULL);
    if (x && y && gy && gx && nx == (size_t)N * C * H * W && ny == (size_t)N * C * OH * OW) {
        float *out = calloc(ny, sizeof(float)), *dx = calloc(nx, sizeof(float)), *acc = malloc(nx * sizeof(float));
        if (out && dx && acc) {
            md_avgpool2d_forward(out, x, N, C, H, W, k, s, p, incl, OH, OW);
            cmp(&worst_fwd, cs, "forward", out, y, ny);
            md_avgpool2d_backward(dx, gy, N, C, H, W, k, s, p, incl, OH, OW);
            cmp(&worst_bwd, cs, "backward", dx, gx, nx);
            /* accumulation: starting from 1.5 gives gx + 1.5 */
            for (size_t i = 0; i < nx; i++) acc[i] = 1.5f;
            md_avgpool2d_backward(acc, gy, N, C, H, W, k, s, p, incl, OH, OW);
            for (size_t i = 0; i < nx; i++) acc[i] -= 1.5f;
            double e = md_max_abs_err(acc, gx, nx);
            CHECK(e <= 1e-5 * (1 + md_max_abs(gx, nx)), "%s backward accumulates: max abs err %.3g", cs, e);
            md_avgpool2d_backward(NULL, gy, N, C, H, W, k, s, p, incl, OH, OW); /* must not crash */
        } else {
            md_test_fail(__FILE__, __LINE__, "out of memory");
        }
        free(out);
        free(dx);
        free(acc);
    } else {
        CHECK(0, "%s: fixture tensors missing or of the wrong size", cs);
    }
    free(x);
    free(y);
    free(gy);
    free(gx);
}

static void test_avgpool_vs_torch(void) {
    static const char *cases[] = {"vd_odd", "vd_even", "vd_one", "vd_incl", "k3_pad_ceil_incl", "k3_pad_ceil_excl",
                                  "k3_pad_floor", "ceil_drop_last", "stride1"};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) one_case(cases[i]);
    printf("  avgpool vs torch: worst rel err forward %.3g, backward %.3g (tol %g)\n", worst_fwd, worst_bwd, REL_TOL);
}

/* Closed forms: torch's output-size rule on a few sizes (ceil mode adds the partial window; a window
 * that would start in the right padding is dropped). */
static void test_avgpool_out_size(void) {
    CHECK(md_avgpool2d_out(7, 2, 2, 0, 1) == 4 && md_avgpool2d_out(7, 2, 2, 0, 0) == 3, "7 -> 4 (ceil) / 3 (floor)");
    CHECK(md_avgpool2d_out(1, 2, 2, 0, 1) == 1 && md_avgpool2d_out(1, 2, 2, 0, 0) < 1, "1 -> 1 (ceil) / empty (floor)");
    CHECK(md_avgpool2d_out(4, 2, 3, 1, 1) == 2, "4, k2 s3 p1 ceil: last window dropped -> 2");
    CHECK(md_avgpool2d_out(8, 2, 2, 0, 1) == 4, "8 -> 4");
}

int main(void) {
    if (md_st_load(FIXTURE, &F) != MD_OK) {
        fprintf(stderr, "cannot load %s: %s (regenerate: /usr/bin/python3 scripts/torch_reference.py avgpool)\n", FIXTURE,
                md_last_error());
        return 1;
    }
    MD_RUN(test_avgpool_vs_torch);
    MD_RUN(test_avgpool_out_size);
    md_st_free(&F);
    return md_test_summary();
}
