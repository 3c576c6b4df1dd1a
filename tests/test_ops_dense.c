/* test_ops_dense.c — the dense ops of include/minidet/ops.h (conv2d, frozen BN, ReLU, max-pool,
 * nearest upsample, add, linear) checked three ways:
 *   1. against PyTorch: tests/fixtures/ops_dense.safetensors (scripts/torch_reference.py ops_dense)
 *      holds inputs, outputs and autograd gradients; forward and every backward output must match
 *      to relative error <= 1e-4 (floor: 1e-2 of the tensor's largest magnitude). Every case in the
 *      file is run (cases are found by their "<case>.geom" tensor), including accumulation (+=)
 *      and each gradient pointer passed as NULL;
 *   2. conv2d forward/backward against a double-precision direct (7-loop) convolution written
 *      here, over many random geometries (kernel, stride, padding, dilation, odd sizes), and the
 *      float backward against double-precision finite differences of that direct convolution;
 *   3. central finite differences of the float ops themselves (eps 1e-2, relative tolerance
 *      1e-2) on tiny shapes, for every input, weight and bias gradient, plus closed forms
 *      (BN folded into conv equals conv then BN).
 * The worst relative error per op is printed as a table. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "minidet/ops.h"
#include "minidet/rng.h"
#include "minidet/safetensors.h"
#include "minidet/threads.h"
#include "testutil.h"

#define FIXTURE "tests/fixtures/ops_dense.safetensors"
#define REL_TOL 1e-4
/* Winograd F(4x4,3x3) (Lavin & Gray's points 0, +-1, +-2) multiplies by up to 5 in the input and 8 in the
 * output transform, so its float error is about 10x a direct convolution's (measured here: up to 2.2e-4 at
 * C <= 32; a numpy simulation of the same transforms gives 4e-4 at C = 256, where im2col and F(2x2) give
 * 2-4e-5). It is held to its own bound; a wrong transform coefficient gives errors of order 1. */
#define WINO4_TOL 1e-3
static double worst_wino4;
#define FD_EPS 1e-2f
#define FD_TOL 1e-2

static md_st_file F;
static int have_fixture;

/* ------------------------------------------------------------ worst-error table */
enum { OP_CONV, OP_BN, OP_RELU, OP_POOL, OP_UP, OP_ADD, OP_LINEAR, OP_COUNT };
static const char *op_names[OP_COUNT] = {"conv2d", "frozen_bn", "relu", "maxpool2d", "upsample_nearest", "add", "linear"};
static double worst_fwd[OP_COUNT], worst_bwd[OP_COUNT], worst_fd[OP_COUNT], worst_dbl[OP_COUNT];
static int n_cases[OP_COUNT];


/* Compares got to ref (n floats); records the error under op (bwd selects the column). */
static void cmp(int op, int bwd, const char *cs, const char *what, const float *got, const float *ref, size_t n) {
    CHECK_REL(bwd ? &worst_bwd[op] : &worst_fwd[op], REL_TOL, cs, what, got, ref, n);
}

/* ------------------------------------------------------------ fixture access */
static float *fx(const char *cs, const char *t, size_t *n) { return md_test_fixture_f32(&F, cs, t, n); }

static int geom(const char *cs, int64_t *g, int want) { return md_test_fixture_geom(&F, cs, g, want); }

/* Calls fn(case name) for every case "<prefix>*" in the fixture. */
static void for_cases(const char *prefix, int op, void (*fn)(const char *)) {
    if (!have_fixture) return;
    int found = 0;
    for (int i = 0; i < F.count; i++) {
        const char *nm = F.tensors[i].name;
        size_t L = strlen(nm);
        if (strncmp(nm, prefix, strlen(prefix)) != 0 || L < 5 || strcmp(nm + L - 5, ".geom") != 0) continue;
        char cs[160];
        snprintf(cs, sizeof cs, "%.*s", (int)(L - 5), nm);
        fn(cs);
        found++;
    }
    n_cases[op] += found;
    CHECK(found > 0, "no %s* cases in %s", prefix, FIXTURE);
}

static float *zeros(size_t n) {
    float *p = calloc(n ? n : 1, sizeof(float));
    if (!p) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    return p;
}

static float *filled(size_t n, float v) {
    float *p = zeros(n);
    for (size_t i = 0; i < n; i++) p[i] = v;
    return p;
}

/* ref + c, elementwise (the expected result of accumulating into a buffer pre-filled with c). */
static float *plus_const(const float *ref, size_t n, float c) {
    float *p = zeros(n);
    for (size_t i = 0; i < n; i++) p[i] = ref[i] + c;
    return p;
}

/* ------------------------------------------------------------ conv2d vs PyTorch */
static void conv_case(const char *cs) {
    int64_t g[13];
    if (!geom(cs, g, 13)) return;
    md_conv2d_params p;
    int ok = md_conv2d_init(&p, (int)g[0], (int)g[1], (int)g[2], (int)g[3], (int)g[4], (int)g[5], (int)g[6], (int)g[7], (int)g[8],
                            (int)g[9]);
    CHECK(ok && p.OH == g[11] && p.OW == g[12], "%s: init %d OH %d OW %d, want %lld %lld", cs, ok, p.OH, p.OW, (long long)g[11],
          (long long)g[12]);
    if (!ok) return;
    const int has_b = (int)g[10];
    size_t nx, nw, ny, nb = (size_t)p.OC;
    float *x = fx(cs, "x", &nx), *w = fx(cs, "w", &nw), *y = fx(cs, "y", &ny), *gy = fx(cs, "gy", NULL);
    float *gx = fx(cs, "gx", NULL), *gw = fx(cs, "gw", NULL);
    float *b = has_b ? fx(cs, "b", NULL) : NULL, *gb = has_b ? fx(cs, "gb", NULL) : NULL;
    size_t ns = md_conv2d_scratch_floats(&p);
    float *scratch = ns ? zeros(ns) : NULL; /* scratch == NULL is allowed for 1x1 s1 p0 */
    if (x && w && y && gy && gx && gw && (!has_b || (b && gb))) {
        float *out = filled(ny, NAN); /* forward must write every element */
        md_conv2d_forward(out, x, w, b, &p, scratch);
        cmp(OP_CONV, 0, cs, "forward", out, y, ny);

        /* all gradients, into zeroed buffers, then again (accumulate: +=) into buffers pre-filled with 1 */
        float *dx = zeros(nx), *dw = zeros(nw), *db = zeros(nb);
        md_conv2d_backward(dx, dw, has_b ? db : NULL, gy, x, w, &p, scratch);
        cmp(OP_CONV, 1, cs, "dinput", dx, gx, nx);
        cmp(OP_CONV, 1, cs, "dweight", dw, gw, nw);
        if (has_b) cmp(OP_CONV, 1, cs, "dbias", db, gb, nb);
        float *ax = filled(nx, 1.0f), *aw = filled(nw, 1.0f), *ab = filled(nb, 1.0f);
        md_conv2d_backward(ax, aw, ab, gy, x, w, &p, scratch);
        float *ex = plus_const(gx, nx, 1.0f), *ew = plus_const(gw, nw, 1.0f);
        cmp(OP_CONV, 1, cs, "dinput (+=)", ax, ex, nx);
        cmp(OP_CONV, 1, cs, "dweight (+=)", aw, ew, nw);
        if (has_b) {
            float *eb = plus_const(gb, nb, 1.0f);
            cmp(OP_CONV, 1, cs, "dbias (+=)", ab, eb, nb);
            free(eb);
        }
        /* each gradient alone (the others NULL) */
        memset(dx, 0, nx * sizeof(float));
        md_conv2d_backward(dx, NULL, NULL, gy, x, w, &p, scratch);
        cmp(OP_CONV, 1, cs, "dinput only", dx, gx, nx);
        memset(dw, 0, nw * sizeof(float));
        md_conv2d_backward(NULL, dw, NULL, gy, x, w, &p, scratch);
        cmp(OP_CONV, 1, cs, "dweight only", dw, gw, nw);
        if (has_b) {
            memset(db, 0, nb * sizeof(float));
            md_conv2d_backward(NULL, NULL, db, gy, x, w, &p, scratch);
            cmp(OP_CONV, 1, cs, "dbias only", db, gb, nb);
        }
        md_conv2d_backward(NULL, NULL, NULL, gy, x, w, &p, scratch); /* must be a no-op, not a crash */
        free(out), free(dx), free(dw), free(db), free(ax), free(aw), free(ab), free(ex), free(ew);
    }
    free(x), free(w), free(y), free(gy), free(gx), free(gw), free(b), free(gb), free(scratch);
}

static void test_conv2d_vs_torch(void) { for_cases("conv_", OP_CONV, conv_case); }

static void test_conv2d_init(void) {
    md_conv2d_params p;
    CHECK(md_conv2d_init(&p, 1, 3, 7, 7, 4, 3, 3, 2, 1, 1) && p.OH == 4 && p.OW == 4, "7x7 k3 s2 p1 -> 4x4, got %dx%d", p.OH, p.OW);
    CHECK(md_conv2d_init(&p, 1, 3, 4, 5, 4, 5, 5, 1, 0, 1) == 0, "kernel larger than the input must be rejected");
    CHECK(md_conv2d_init(&p, 1, 3, 5, 5, 4, 3, 3, 1, 0, 3) == 0, "dilated kernel larger than input must be rejected");
    CHECK(md_conv2d_init(&p, 1, 3, 5, 5, 4, 3, 3, 0, 1, 1) == 0, "stride 0 must be rejected");
    CHECK(md_conv2d_init(&p, 1, 3, 5, 5, 4, 3, 3, 1, -1, 1) == 0, "negative padding must be rejected");
    CHECK(md_conv2d_init(&p, 0, 3, 5, 5, 4, 3, 3, 1, 1, 1) == 0, "N = 0 must be rejected");
    CHECK(md_conv2d_init(&p, 2, 8, 5, 6, 4, 1, 1, 1, 0, 1) && md_conv2d_scratch_floats(&p) == 0, "1x1 s1 p0 needs no scratch");
    CHECK(md_conv2d_init(&p, 2, 8, 5, 6, 4, 3, 3, 1, 1, 1) && md_conv2d_scratch_floats(&p) == (size_t)8 * 9 * 5 * 6,
          "scratch is one image's im2col buffer: %zu", md_conv2d_scratch_floats(&p));
    p.chunk_rows = 2;
    CHECK(md_conv2d_scratch_floats(&p) == (size_t)8 * 9 * 2 * 6, "chunk_rows 2: scratch %zu", md_conv2d_scratch_floats(&p));
    /* Winograd scratch: U and dU (36 x 256 x 256 each) plus cache-sized chunks; a whole image's im2col would be 44M floats */
    CHECK(md_conv2d_init(&p, 2, 256, 120, 160, 256, 3, 3, 1, 1, 1) && p.chunk_rows >= 7 && p.chunk_rows < 120 && p.winograd == 4 &&
              md_conv2d_scratch_floats(&p) <= ((size_t)12 << 20),
          "FPN P2 3x3: Winograd F(4x4), im2col in chunks (%d rows, %zu floats)", p.chunk_rows, md_conv2d_scratch_floats(&p));
    /* the choice counts the output pixels of the whole batch (N x OH x OW), the width of the Winograd GEMMs */
    CHECK(md_conv2d_init(&p, 2, 256, 30, 40, 256, 3, 3, 1, 1, 1) && p.winograd == 4, "30x40 map, 2 images: Winograd F(4x4)");
    CHECK(md_conv2d_init(&p, 1, 512, 25, 42, 512, 3, 3, 1, 1, 1) && p.winograd == 2, "25x42 map, 1 image: Winograd F(2x2)");
    CHECK(md_conv2d_init(&p, 2, 64, 120, 160, 64, 3, 3, 1, 1, 1) && p.winograd == 4, "64 channels at 120x160: Winograd F(4x4)");
    CHECK(md_conv2d_init(&p, 2, 512, 15, 20, 512, 3, 3, 1, 1, 1) && p.winograd == 2, "15x20 map, 2 images: Winograd F(2x2)");
    CHECK(md_conv2d_init(&p, 2, 256, 120, 160, 256, 3, 3, 2, 1, 1) && !p.winograd, "stride 2: no Winograd");
    CHECK(md_conv2d_init(&p, 2, 32, 120, 160, 256, 3, 3, 1, 1, 1) && !p.winograd, "32 input channels: no Winograd by default");
    CHECK(md_conv2d_init(&p, 1, 256, 8, 10, 256, 3, 3, 1, 1, 1) && !p.winograd, "8x10 map, 1 image: no Winograd by default");
}

/* ------------------------------------------------------------ conv2d vs a double-precision direct convolution */
static void conv_direct(double *out, double *dx, double *dw, double *db, const float *x, const float *w, const float *b,
                        const float *gy, const md_conv2d_params *p) {
    for (int n = 0; n < p->N; n++)
        for (int oc = 0; oc < p->OC; oc++)
            for (int oh = 0; oh < p->OH; oh++)
                for (int ow = 0; ow < p->OW; ow++) {
                    size_t oi = (((size_t)n * p->OC + oc) * p->OH + oh) * p->OW + ow;
                    double acc = b ? b[oc] : 0.0, go = gy[oi];
                    for (int c = 0; c < p->C; c++)
                        for (int kh = 0; kh < p->KH; kh++)
                            for (int kw = 0; kw < p->KW; kw++) {
                                int ih = oh * p->stride - p->pad + kh * p->dilation;
                                int iw = ow * p->stride - p->pad + kw * p->dilation;
                                if (ih < 0 || ih >= p->H || iw < 0 || iw >= p->W) continue;
                                size_t xi = (((size_t)n * p->C + c) * p->H + ih) * p->W + iw;
                                size_t wi = (((size_t)oc * p->C + c) * p->KH + kh) * p->KW + kw;
                                acc += (double)x[xi] * w[wi];
                                dx[xi] += go * w[wi];
                                dw[wi] += go * x[xi];
                            }
                    out[oi] = acc;
                    db[oc] += go;
                }
}

static double rel_err_d(const float *got, const double *ref, size_t n) {
    double m = 0, floor = 0;
    for (size_t i = 0; i < n; i++) floor = fmax(floor, fabs(ref[i]));
    floor = fmax(1e-2 * floor, 1e-7);
    for (size_t i = 0; i < n; i++) {
        double e = fabs(got[i] - ref[i]) / fmax(fabs(ref[i]), floor);
        if (!(e <= m)) m = e;
    }
    return m;
}

static void rand_fill(md_rng *r, float *a, size_t n, float scale) {
    for (size_t i = 0; i < n; i++) a[i] = scale * md_rng_normal(r);
}

static void test_conv2d_vs_double_random_geometries(void) {
    /* larger maps (thousands of output pixels, several channels: the OpenMP paths), then random small ones */
    static const int big[][10] = {{1, 3, 70, 50, 4, 3, 3, 1, 1, 1}, {2, 2, 61, 45, 3, 3, 3, 2, 1, 2}, {1, 3, 65, 47, 4, 7, 7, 2, 3, 1},
                                  {1, 24, 33, 29, 5, 3, 3, 1, 1, 1}, {1, 40, 31, 37, 3, 1, 1, 1, 0, 1}, {1, 16, 40, 36, 6, 1, 1, 2, 0, 1},
                                  /* 3x3 stride 1 pad 1 (Winograd forced on in pass 2): odd/even sizes, 1-pixel rows */
                                  {2, 16, 21, 19, 24, 3, 3, 1, 1, 1}, {2, 20, 1, 7, 17, 3, 3, 1, 1, 1}, {1, 5, 9, 8, 3, 3, 3, 1, 1, 1},
                                  {2, 32, 2, 2, 16, 3, 3, 1, 1, 1},
                                  /* 1x1 stride 1 with >= 64 pixels per thread and OC >= 2 x threads: GEMMs shared out to the threads */
                                  {2, 24, 20, 17, 8, 1, 1, 1, 0, 1}, {1, 9, 33, 31, 13, 1, 1, 1, 0, 1}};
    const int nbig = (int)(sizeof big / sizeof big[0]);
    md_rng r = md_rng_make(1234, 99);
    int tested = 0;
    int wino_tested = 0, wino4_tested = 0;
    for (int t = 0; t < 120 + nbig; t++) {
        int N = 1 + (int)md_rng_below(&r, 2), C = 1 + (int)md_rng_below(&r, 4), OC = 1 + (int)md_rng_below(&r, 4);
        int H = 1 + (int)md_rng_below(&r, 11), W = 1 + (int)md_rng_below(&r, 11);
        int KH = 1 + (int)md_rng_below(&r, 4), KW = 1 + (int)md_rng_below(&r, 4), s = 1 + (int)md_rng_below(&r, 3);
        int pad = (int)md_rng_below(&r, 3), d = 1 + (int)md_rng_below(&r, 2);
        if (t < 6) KH = KW = 1, s = 1 + t % 2, pad = 0, d = 1; /* pointwise and 1x1 stride 2 */
        if (t >= 120) {
            const int *G = big[t - 120];
            N = G[0], C = G[1], H = G[2], W = G[3], OC = G[4], KH = G[5], KW = G[6], s = G[7], pad = G[8], d = G[9];
        }
        md_conv2d_params p;
        if (!md_conv2d_init(&p, N, C, H, W, OC, KH, KW, s, pad, d)) continue;
        tested++;
        size_t nx = (size_t)N * C * H * W, nw = (size_t)OC * C * KH * KW, ny = (size_t)N * OC * p.OH * p.OW;
        float *x = zeros(nx), *w = zeros(nw), *b = zeros((size_t)OC), *gy = zeros(ny);
        rand_fill(&r, x, nx, 1), rand_fill(&r, w, nw, 0.5f), rand_fill(&r, b, (size_t)OC, 1), rand_fill(&r, gy, ny, 1);
        double *ry = calloc(ny, sizeof(double)), *rx = calloc(nx, sizeof(double)), *rw = calloc(nw, sizeof(double)),
               *rb = calloc((size_t)OC, sizeof(double));
        if (!ry || !rx || !rw || !rb) exit(2);
        conv_direct(ry, rx, rw, rb, x, w, b, gy, &p);
        const float *bias = (t & 1) ? b : NULL;
        if (!bias)
            for (size_t i = 0; i < ny; i++) ry[i] -= b[(i / ((size_t)p.OH * p.OW)) % (size_t)OC];
        /* pass 0: defaults (one im2col chunk at these sizes); pass 1: im2col in chunks of 1..3 output rows;
         * passes 2 and 3: Winograd F(2x2) and F(4x4) forced on (used only for 3x3 stride-1 pad-1 dilation-1) */
        const int def_wino = p.winograd;
        for (int pass = 0; pass < 4; pass++) {
            if (pass == 1) p.chunk_rows = 1 + t % 3, p.winograd = 0;
            if (pass >= 2) p.winograd = pass == 2 ? 2 : 4;
            if (pass >= 2 && !(KH == 3 && KW == 3 && s == 1 && pad == 1 && d == 1)) break;
            wino_tested += pass == 2 || (pass == 0 && def_wino);
            wino4_tested += pass == 3;
            size_t ns = md_conv2d_scratch_floats(&p);
            float *scr = ns ? filled(ns, NAN) : NULL, *y = filled(ny, NAN), *dx = zeros(nx), *dw = zeros(nw), *db = zeros((size_t)OC);
            md_conv2d_forward(y, x, w, bias, &p, scr);
            md_conv2d_backward(dx, dw, db, gy, x, w, &p, scr);
            double e[4] = {rel_err_d(y, ry, ny), rel_err_d(dx, rx, nx), rel_err_d(dw, rw, nw), rel_err_d(db, rb, (size_t)OC)};
            const double tol = p.winograd >= 4 ? WINO4_TOL : REL_TOL;
            for (int k = 0; k < 4; k++) {
                if (p.winograd >= 4) {
                    if (!(e[k] <= worst_wino4)) worst_wino4 = e[k];
                } else if (!(e[k] <= worst_dbl[OP_CONV])) {
                    worst_dbl[OP_CONV] = e[k];
                }
                CHECK(e[k] <= tol, "N%d C%d %dx%d OC%d k%dx%d s%d p%d d%d chunk %d rows winograd %d: %s rel err %.3g", N, C, H, W, OC, KH,
                      KW, s, pad, d, p.chunk_rows, p.winograd, (const char *[]){"forward", "dinput", "dweight", "dbias"}[k], e[k]);
            }
            free(scr), free(y), free(dx), free(dw), free(db);
        }
        free(x), free(w), free(b), free(gy), free(ry), free(rx), free(rw), free(rb);
    }
    CHECK(tested >= 60, "only %d valid random geometries", tested);
    CHECK(wino_tested >= 5 && wino4_tested >= 5, "only %d F(2x2) and %d F(4x4) Winograd runs", wino_tested, wino4_tested);
    printf("  conv2d Winograd F(4x4,3x3) vs double: worst relative error %.3g (bound %g; the rest of conv2d: table below)\n",
           worst_wino4, WINO4_TOL);
}

/* ------------------------------------------------------------ finite differences (float ops, central, eps 1e-2)
 * L = sum(forward(...) * gy) in double; dL/dv[i] ~ (L(v+eps) - L(v-eps)) / 2eps vs the analytic gradient. */
typedef double (*loss_fn)(void *ctx);

static double dot_d(const float *a, const float *b, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}

static void fd_check(int op, const char *what, loss_fn L, void *ctx, float *v, const float *grad, size_t n) {
    double gmax = md_max_abs(grad, n), worst = 0;
    size_t wi = 0;
    double fd_w = 0;
    for (size_t i = 0; i < n; i++) {
        float keep = v[i];
        v[i] = keep + FD_EPS;
        double lp = L(ctx);
        v[i] = keep - FD_EPS;
        double lm = L(ctx);
        v[i] = keep;
        double fd = (lp - lm) / (2.0 * (double)FD_EPS);
        double e = fabs(fd - grad[i]) / fmax(fabs(grad[i]), fmax(0.05 * gmax, 1e-3));
        if (!(e <= worst)) worst = e, wi = i, fd_w = fd;
    }
    if (!(worst <= worst_fd[op])) worst_fd[op] = worst;
    CHECK(worst <= FD_TOL, "%s %s: finite-difference rel err %.3g at %zu (analytic %.6g, fd %.6g)", op_names[op], what, worst, wi,
          n ? grad[wi] : 0.0, fd_w);
}

typedef struct {
    md_conv2d_params p;
    float *x, *w, *b, *gy, *y, *scr;
} conv_ctx;

static double conv_loss(void *c_) {
    conv_ctx *c = c_;
    md_conv2d_forward(c->y, c->x, c->w, c->b, &c->p, c->scr);
    return dot_d(c->y, c->gy, (size_t)c->p.N * c->p.OC * c->p.OH * c->p.OW);
}

static void test_conv2d_finite_differences(void) {
    /* N C H W OC KH KW s p d */
    static const int geoms[][10] = {{2, 2, 5, 4, 3, 3, 3, 1, 1, 1}, {1, 3, 7, 6, 2, 3, 3, 2, 1, 1}, {1, 2, 7, 7, 2, 3, 3, 1, 2, 2},
                                    {2, 3, 4, 5, 2, 1, 1, 1, 0, 1}, {1, 2, 5, 6, 3, 1, 1, 2, 0, 1}, {1, 2, 9, 8, 2, 7, 7, 2, 3, 1},
                                    {1, 2, 5, 6, 2, 2, 3, 1, 1, 1}};
    md_rng r = md_rng_make(7, 1);
    for (size_t gi = 0; gi < sizeof geoms / sizeof geoms[0]; gi++) {
        const int *G = geoms[gi];
        conv_ctx c;
        if (!md_conv2d_init(&c.p, G[0], G[1], G[2], G[3], G[4], G[5], G[6], G[7], G[8], G[9])) {
            CHECK(0, "geometry %zu invalid", gi);
            continue;
        }
        size_t nx = (size_t)G[0] * G[1] * G[2] * G[3], nw = (size_t)G[4] * G[1] * G[5] * G[6];
        size_t ny = (size_t)G[0] * G[4] * c.p.OH * c.p.OW, ns = md_conv2d_scratch_floats(&c.p);
        c.x = zeros(nx), c.w = zeros(nw), c.b = zeros((size_t)G[4]), c.gy = zeros(ny), c.y = zeros(ny), c.scr = zeros(ns);
        rand_fill(&r, c.x, nx, 1), rand_fill(&r, c.w, nw, 0.5f), rand_fill(&r, c.b, (size_t)G[4], 1), rand_fill(&r, c.gy, ny, 1);
        float *dx = zeros(nx), *dw = zeros(nw), *db = zeros((size_t)G[4]);
        md_conv2d_backward(dx, dw, db, c.gy, c.x, c.w, &c.p, c.scr);
        char what[64];
        snprintf(what, sizeof what, "geometry %zu dinput", gi);
        fd_check(OP_CONV, what, conv_loss, &c, c.x, dx, nx);
        snprintf(what, sizeof what, "geometry %zu dweight", gi);
        fd_check(OP_CONV, what, conv_loss, &c, c.w, dw, nw);
        snprintf(what, sizeof what, "geometry %zu dbias", gi);
        fd_check(OP_CONV, what, conv_loss, &c, c.b, db, (size_t)G[4]);
        free(c.x), free(c.w), free(c.b), free(c.gy), free(c.y), free(c.scr), free(dx), free(dw), free(db);
    }
}

/* ------------------------------------------------------------ double-precision finite differences for conv2d
 * A double-precision direct convolution is differentiated numerically (central, eps 1e-3: the map is
 * linear, so the difference quotient is exact up to double rounding) and compared with the float
 * backward at the fixture tolerance (1e-4). */
static double conv_loss_d(const double *x, const double *w, const double *b, const float *gy, const md_conv2d_params *p) {
    double L = 0;
    for (int n = 0; n < p->N; n++)
        for (int oc = 0; oc < p->OC; oc++)
            for (int oh = 0; oh < p->OH; oh++)
                for (int ow = 0; ow < p->OW; ow++) {
                    double acc = b[oc];
                    for (int c = 0; c < p->C; c++)
                        for (int kh = 0; kh < p->KH; kh++)
                            for (int kw = 0; kw < p->KW; kw++) {
                                int ih = oh * p->stride - p->pad + kh * p->dilation;
                                int iw = ow * p->stride - p->pad + kw * p->dilation;
                                if (ih < 0 || ih >= p->H || iw < 0 || iw >= p->W) continue;
                                acc += x[(((size_t)n * p->C + c) * p->H + ih) * p->W + iw] *
                                       w[(((size_t)oc * p->C + c) * p->KH + kh) * p->KW + kw];
                            }
                    L += acc * gy[(((size_t)n * p->OC + oc) * p->OH + oh) * p->OW + ow];
                }
    return L;
}

static void fd_double_one(const char *what, double *v, size_t n, const float *grad, const double *x, const double *w,
                          const double *b, const float *gy, const md_conv2d_params *p) {
    const double eps = 1e-3;
    float *fd = zeros(n);
    for (size_t i = 0; i < n; i++) {
        double keep = v[i];
        v[i] = keep + eps;
        double lp = conv_loss_d(x, w, b, gy, p);
        v[i] = keep - eps;
        double lm = conv_loss_d(x, w, b, gy, p);
        v[i] = keep;
        fd[i] = (float)((lp - lm) / (2 * eps));
    }
    double e = md_max_rel_err(grad, fd, n, fmax(1e-2 * md_max_abs(fd, n), 1e-7), NULL);
    if (!(e <= worst_dbl[OP_CONV])) worst_dbl[OP_CONV] = e;
    CHECK(e <= REL_TOL, "%s: float backward vs double finite differences: rel err %.3g", what, e);
    free(fd);
}

static void test_conv2d_double_finite_differences(void) {
    static const int geoms[][10] = {{2, 2, 5, 4, 3, 3, 3, 1, 1, 1}, {1, 3, 7, 6, 2, 3, 3, 2, 1, 1}, {1, 2, 7, 7, 2, 3, 3, 1, 2, 2},
                                    {2, 3, 4, 5, 2, 1, 1, 1, 0, 1}, {1, 2, 5, 6, 3, 1, 1, 2, 0, 1}, {1, 2, 9, 8, 2, 7, 7, 2, 3, 1}};
    md_rng r = md_rng_make(8, 1);
    for (size_t gi = 0; gi < sizeof geoms / sizeof geoms[0]; gi++) {
        const int *G = geoms[gi];
        md_conv2d_params p;
        if (!md_conv2d_init(&p, G[0], G[1], G[2], G[3], G[4], G[5], G[6], G[7], G[8], G[9])) {
            CHECK(0, "geometry %zu invalid", gi);
            continue;
        }
        size_t nx = (size_t)G[0] * G[1] * G[2] * G[3], nw = (size_t)G[4] * G[1] * G[5] * G[6], nb = (size_t)G[4];
        size_t ny = (size_t)G[0] * G[4] * p.OH * p.OW, ns = md_conv2d_scratch_floats(&p);
        float *x = zeros(nx), *w = zeros(nw), *gy = zeros(ny), *scr = zeros(ns), *dx = zeros(nx), *dw = zeros(nw), *db = zeros(nb);
        rand_fill(&r, x, nx, 1), rand_fill(&r, w, nw, 0.5f), rand_fill(&r, gy, ny, 1);
        md_conv2d_backward(dx, dw, db, gy, x, w, &p, scr);
        double *xd = calloc(nx, sizeof(double)), *wd = calloc(nw, sizeof(double)), *bd = calloc(nb, sizeof(double));
        if (!xd || !wd || !bd) exit(2);
        for (size_t i = 0; i < nx; i++) xd[i] = x[i];
        for (size_t i = 0; i < nw; i++) wd[i] = w[i];
        char what[64];
        snprintf(what, sizeof what, "geometry %zu dinput", gi);
        fd_double_one(what, xd, nx, dx, xd, wd, bd, gy, &p);
        snprintf(what, sizeof what, "geometry %zu dweight", gi);
        fd_double_one(what, wd, nw, dw, xd, wd, bd, gy, &p);
        snprintf(what, sizeof what, "geometry %zu dbias", gi);
        fd_double_one(what, bd, nb, db, xd, wd, bd, gy, &p);
        free(x), free(w), free(gy), free(scr), free(dx), free(dw), free(db), free(xd), free(wd), free(bd);
    }
}

/* ------------------------------------------------------------ frozen BN */
static void bn_case(const char *cs) {
    int64_t g[4];
    if (!geom(cs, g, 4)) return;
    const int N = (int)g[0], C = (int)g[1], HW = (int)(g[2] * g[3]);
    size_t nx;
    float *x = fx(cs, "x", &nx), *wt = fx(cs, "weight", NULL), *bs = fx(cs, "bias", NULL), *rm = fx(cs, "running_mean", NULL);
    float *rv = fx(cs, "running_var", NULL), *rs = fx(cs, "scale", NULL), *rsh = fx(cs, "shift", NULL), *y = fx(cs, "y", NULL);
    float *gy = fx(cs, "gy", NULL), *gx = fx(cs, "gx", NULL);
    if (x && wt && bs && rm && rv && rs && rsh && y && gy && gx) {
        float *scale = zeros((size_t)C), *shift = zeros((size_t)C), *out = filled(nx, NAN), *dx = zeros(nx);
        md_frozen_bn_params(scale, shift, wt, bs, rm, rv, C, 1e-5f);
        cmp(OP_BN, 0, cs, "scale", scale, rs, (size_t)C);
        cmp(OP_BN, 0, cs, "shift", shift, rsh, (size_t)C);
        md_frozen_bn_forward(out, x, scale, shift, N, C, HW);
        cmp(OP_BN, 0, cs, "forward", out, y, nx);
        memcpy(out, x, nx * sizeof(float));
        md_frozen_bn_forward(out, out, scale, shift, N, C, HW); /* in place */
        cmp(OP_BN, 0, cs, "forward in place", out, y, nx);
        md_frozen_bn_backward(dx, gy, scale, N, C, HW);
        cmp(OP_BN, 1, cs, "dinput", dx, gx, nx);
        float *ax = filled(nx, 1.0f), *ex = plus_const(gx, nx, 1.0f);
        md_frozen_bn_backward(ax, gy, scale, N, C, HW);
        cmp(OP_BN, 1, cs, "dinput (+=)", ax, ex, nx);
        md_frozen_bn_backward(NULL, gy, scale, N, C, HW); /* no-op */
        free(scale), free(shift), free(out), free(dx), free(ax), free(ex);
    }
    free(x), free(wt), free(bs), free(rm), free(rv), free(rs), free(rsh), free(y), free(gy), free(gx);
}
static void test_frozen_bn_vs_torch(void) { for_cases("bn_", OP_BN, bn_case); }

/* conv then BN == conv with BN folded into weight and bias (closed form), with and without a conv bias. */
static void test_frozen_bn_fold(void) {
    md_rng r = md_rng_make(11, 2);
    md_conv2d_params p;
    CHECK(md_conv2d_init(&p, 2, 3, 6, 5, 4, 3, 3, 1, 1, 1), "init");
    size_t nx = 2 * 3 * 30, nw = 4 * 3 * 9, ny = (size_t)2 * 4 * p.OH * p.OW;
    float *x = zeros(nx), *w = zeros(nw), *b = zeros(4), *wt = zeros(4), *bs = zeros(4), *rm = zeros(4), *rv = zeros(4);
    float *scale = zeros(4), *shift = zeros(4), *y1 = zeros(ny), *y2 = zeros(ny), *scr = zeros(md_conv2d_scratch_floats(&p));
    rand_fill(&r, x, nx, 1), rand_fill(&r, w, nw, 0.3f), rand_fill(&r, wt, 4, 1), rand_fill(&r, bs, 4, 1), rand_fill(&r, rm, 4, 1);
    for (int i = 0; i < 4; i++) rv[i] = 0.2f + md_rng_uniform(&r);
    md_frozen_bn_params(scale, shift, wt, bs, rm, rv, 4, 1e-5f);
    for (int with_bias = 0; with_bias < 2; with_bias++) {
        rand_fill(&r, b, 4, with_bias ? 1.0f : 0.0f);
        md_conv2d_forward(y1, x, w, with_bias ? b : NULL, &p, scr);
        md_frozen_bn_forward(y1, y1, scale, shift, 2, 4, p.OH * p.OW);
        float *wf = zeros(nw), *bf = zeros(4);
        memcpy(wf, w, nw * sizeof(float));
        memcpy(bf, b, 4 * sizeof(float));
        md_frozen_bn_fold(wf, bf, scale, shift, 4, 3 * 9);
        md_conv2d_forward(y2, x, wf, bf, &p, scr);
        cmp(OP_BN, 0, with_bias ? "fold (conv bias)" : "fold (no conv bias)", "conv+bn vs folded conv", y2, y1, ny);
        free(wf), free(bf);
    }
    free(x), free(w), free(b), free(wt), free(bs), free(rm), free(rv), free(scale), free(shift), free(y1), free(y2), free(scr);
}

/* ------------------------------------------------------------ relu */
static void relu_case(const char *cs) {
    int64_t g[1];
    if (!geom(cs, g, 1)) return;
    size_t n = (size_t)g[0];
    float *x = fx(cs, "x", NULL), *y = fx(cs, "y", NULL), *gy = fx(cs, "gy", NULL), *gx = fx(cs, "gx", NULL);
    if (x && y && gy && gx) {
        float *out = filled(n, NAN), *dx = zeros(n), *ax = filled(n, 1.0f), *ex = plus_const(gx, n, 1.0f);
        md_relu_forward(out, x, n);
        cmp(OP_RELU, 0, cs, "forward", out, y, n);
        memcpy(out, x, n * sizeof(float));
        md_relu_forward(out, out, n);
        cmp(OP_RELU, 0, cs, "forward in place", out, y, n);
        md_relu_backward(dx, gy, out, n);
        cmp(OP_RELU, 1, cs, "dinput", dx, gx, n);
        md_relu_backward(ax, gy, out, n);
        cmp(OP_RELU, 1, cs, "dinput (+=)", ax, ex, n);
        md_relu_backward(NULL, gy, out, n);
        /* in-place and fused forms (the model's): same values as torch's */
        memcpy(dx, gy, n * sizeof(float));
        md_relu_backward_inplace(dx, out, n);
        cmp(OP_RELU, 1, cs, "dinput in place", dx, gx, n);
        float *z = zeros(n), *gx2 = zeros(n);
        for (size_t i = 0; i < n; i++) gx2[i] = 2.0f * gx[i];
        md_add_relu_forward(ax, x, z, n);
        cmp(OP_RELU, 0, cs, "add + relu forward (x + 0)", ax, y, n);
        memcpy(ax, x, n * sizeof(float));
        md_add_relu_forward(ax, z, ax, n);
        cmp(OP_RELU, 0, cs, "add + relu forward in place (0 + x)", ax, y, n);
        memcpy(dx, gy, n * sizeof(float));
        md_add_relu_backward_inplace(dx, gy, out, n);
        cmp(OP_RELU, 1, cs, "add + relu backward in place (gy + gy)", dx, gx2, n);
        memcpy(dx, gy, n * sizeof(float));
        md_add_relu_backward_inplace(dx, NULL, out, n);
        cmp(OP_RELU, 1, cs, "add + relu backward in place (gy)", dx, gx, n);
        free(z), free(gx2);
        free(out), free(dx), free(ax), free(ex);
    }
    free(x), free(y), free(gy), free(gx);
}
static void test_relu_vs_torch(void) { for_cases("relu_", OP_RELU, relu_case); }

/* ------------------------------------------------------------ max pool */
static void pool_case(const char *cs) {
    int64_t g[9];
    if (!geom(cs, g, 9)) return;
    const int N = (int)g[0], C = (int)g[1], H = (int)g[2], W = (int)g[3], k = (int)g[4], s = (int)g[5], pd = (int)g[6];
    const int OH = (int)g[7], OW = (int)g[8];
    CHECK(OH == (H + 2 * pd - k) / s + 1 && OW == (W + 2 * pd - k) / s + 1, "%s: output size rule", cs);
    size_t nx = (size_t)N * C * H * W, ny = (size_t)N * C * OH * OW;
    float *x = fx(cs, "x", NULL), *y = fx(cs, "y", NULL), *gy = fx(cs, "gy", NULL), *gx = fx(cs, "gx", NULL);
    if (x && y && gy && gx) {
        float *out = filled(ny, NAN), *dx = zeros(nx), *ax = filled(nx, 1.0f), *ex = plus_const(gx, nx, 1.0f);
        int32_t *am = malloc(ny * sizeof(int32_t));
        if (!am) exit(2);
        md_maxpool2d_forward(out, am, x, N, C, H, W, k, s, pd, OH, OW);
        cmp(OP_POOL, 0, cs, "forward", out, y, ny);
        md_maxpool2d_backward(dx, gy, am, N, C, H, W, OH, OW);
        cmp(OP_POOL, 1, cs, "dinput", dx, gx, nx);
        md_maxpool2d_backward(ax, gy, am, N, C, H, W, OH, OW);
        cmp(OP_POOL, 1, cs, "dinput (+=)", ax, ex, nx);
        md_maxpool2d_backward(NULL, gy, am, N, C, H, W, OH, OW);
        free(out), free(dx), free(ax), free(ex), free(am);
    }
    free(x), free(y), free(gy), free(gx);
}
static void test_maxpool_vs_torch(void) { for_cases("maxpool_", OP_POOL, pool_case); }

/* ------------------------------------------------------------ nearest upsample */
static void up_case(const char *cs) {
    int64_t g[6];
    if (!geom(cs, g, 6)) return;
    const int N = (int)g[0], C = (int)g[1], H = (int)g[2], W = (int)g[3], OH = (int)g[4], OW = (int)g[5];
    size_t nx = (size_t)N * C * H * W, ny = (size_t)N * C * OH * OW;
    float *x = fx(cs, "x", NULL), *y = fx(cs, "y", NULL), *gy = fx(cs, "gy", NULL), *gx = fx(cs, "gx", NULL);
    if (x && y && gy && gx) {
        float *out = filled(ny, NAN), *dx = zeros(nx), *ax = filled(nx, 1.0f), *ex = plus_const(gx, nx, 1.0f);
        md_upsample_nearest_forward(out, x, N, C, H, W, OH, OW);
        cmp(OP_UP, 0, cs, "forward", out, y, ny);
        md_upsample_nearest_backward(dx, gy, N, C, H, W, OH, OW);
        cmp(OP_UP, 1, cs, "dinput", dx, gx, nx);
        md_upsample_nearest_backward(ax, gy, N, C, H, W, OH, OW);
        cmp(OP_UP, 1, cs, "dinput (+=)", ax, ex, nx);
        md_upsample_nearest_backward(NULL, gy, N, C, H, W, OH, OW);
        free(out), free(dx), free(ax), free(ex);
    }
    free(x), free(y), free(gy), free(gx);
}
static void test_upsample_vs_torch(void) { for_cases("upsample_", OP_UP, up_case); }

/* ------------------------------------------------------------ add */
static void add_case(const char *cs) {
    int64_t g[1];
    if (!geom(cs, g, 1)) return;
    size_t n = (size_t)g[0];
    float *a = fx(cs, "a", NULL), *b = fx(cs, "b", NULL), *y = fx(cs, "y", NULL), *gy = fx(cs, "gy", NULL);
    float *ga = fx(cs, "ga", NULL), *gb = fx(cs, "gb", NULL);
    if (a && b && y && gy && ga && gb) {
        float *out = filled(n, NAN), *da = zeros(n), *db = zeros(n), *ea = plus_const(ga, n, 1.0f), *e2 = zeros(n);
        md_add_forward(out, a, b, n);
        cmp(OP_ADD, 0, cs, "forward", out, y, n);
        memcpy(out, a, n * sizeof(float));
        md_add_forward(out, out, b, n);
        cmp(OP_ADD, 0, cs, "forward (out = a)", out, y, n);
        memcpy(out, b, n * sizeof(float));
        md_add_forward(out, a, out, n);
        cmp(OP_ADD, 0, cs, "forward (out = b)", out, y, n);
        md_add_backward(da, db, gy, n);
        cmp(OP_ADD, 1, cs, "da", da, ga, n);
        cmp(OP_ADD, 1, cs, "db", db, gb, n);
        for (size_t i = 0; i < n; i++) da[i] = 1.0f;
        md_add_backward(da, NULL, gy, n);
        cmp(OP_ADD, 1, cs, "da (+=, db NULL)", da, ea, n);
        memset(db, 0, n * sizeof(float));
        md_add_backward(NULL, db, gy, n);
        cmp(OP_ADD, 1, cs, "db (da NULL)", db, gb, n);
        memset(da, 0, n * sizeof(float));
        md_add_backward(da, da, gy, n); /* x + x: both contributions */
        for (size_t i = 0; i < n; i++) e2[i] = 2.0f * gy[i];
        cmp(OP_ADD, 1, cs, "da == db", da, e2, n);
        free(out), free(da), free(db), free(ea), free(e2);
    }
    free(a), free(b), free(y), free(gy), free(ga), free(gb);
}
static void test_add_vs_torch(void) { for_cases("add_", OP_ADD, add_case); }

/* ------------------------------------------------------------ linear */
static void linear_case(const char *cs) {
    int64_t g[4];
    if (!geom(cs, g, 4)) return;
    const int B = (int)g[0], IN = (int)g[1], OUT = (int)g[2], has_b = (int)g[3];
    size_t nx = (size_t)B * IN, nw = (size_t)OUT * IN, ny = (size_t)B * OUT, nb = (size_t)OUT;
    float *x = fx(cs, "x", NULL), *w = fx(cs, "w", NULL), *y = fx(cs, "y", NULL), *gy = fx(cs, "gy", NULL);
    float *gx = fx(cs, "gx", NULL), *gw = fx(cs, "gw", NULL);
    float *b = has_b ? fx(cs, "b", NULL) : NULL, *gb = has_b ? fx(cs, "gb", NULL) : NULL;
    if (x && w && y && gy && gx && gw && (!has_b || (b && gb))) {
        float *out = filled(ny, NAN), *dx = zeros(nx), *dw = zeros(nw), *db = zeros(nb);
        md_linear_forward(out, x, w, b, B, IN, OUT);
        cmp(OP_LINEAR, 0, cs, "forward", out, y, ny);
        md_linear_backward(dx, dw, has_b ? db : NULL, gy, x, w, B, IN, OUT);
        cmp(OP_LINEAR, 1, cs, "dinput", dx, gx, nx);
        cmp(OP_LINEAR, 1, cs, "dweight", dw, gw, nw);
        if (has_b) cmp(OP_LINEAR, 1, cs, "dbias", db, gb, nb);
        float *ax = filled(nx, 1.0f), *aw = filled(nw, 1.0f), *ex = plus_const(gx, nx, 1.0f), *ew = plus_const(gw, nw, 1.0f);
        md_linear_backward(ax, aw, NULL, gy, x, w, B, IN, OUT);
        cmp(OP_LINEAR, 1, cs, "dinput (+=)", ax, ex, nx);
        cmp(OP_LINEAR, 1, cs, "dweight (+=)", aw, ew, nw);
        memset(dx, 0, nx * sizeof(float));
        md_linear_backward(dx, NULL, NULL, gy, x, w, B, IN, OUT);
        cmp(OP_LINEAR, 1, cs, "dinput only", dx, gx, nx);
        memset(dw, 0, nw * sizeof(float));
        md_linear_backward(NULL, dw, NULL, gy, x, w, B, IN, OUT);
        cmp(OP_LINEAR, 1, cs, "dweight only", dw, gw, nw);
        if (has_b) {
            for (size_t i = 0; i < nb; i++) db[i] = 1.0f;
            float *eb = plus_const(gb, nb, 1.0f);
            md_linear_backward(NULL, NULL, db, gy, x, w, B, IN, OUT);
            cmp(OP_LINEAR, 1, cs, "dbias only (+=)", db, eb, nb);
            free(eb);
        }
        free(out), free(dx), free(dw), free(db), free(ax), free(aw), free(ex), free(ew);
    }
    free(x), free(w), free(y), free(gy), free(gx), free(gw), free(b), free(gb);
}
static void test_linear_vs_torch(void) { for_cases("linear_", OP_LINEAR, linear_case); }

/* ------------------------------------------------------------ finite differences of the other ops */
typedef struct {
    int op; /* which forward */
    int N, C, H, W, OH, OW, k, s, pad;
    float *x, *x2, *w, *b, *gy, *y;
    int32_t *am;
    size_t ny;
} fd_ctx;

static double other_loss(void *c_) {
    fd_ctx *c = c_;
    switch (c->op) {
    case OP_BN: md_frozen_bn_forward(c->y, c->x, c->w, c->b, c->N, c->C, c->H * c->W); break;
    case OP_RELU: md_relu_forward(c->y, c->x, c->ny); break;
    case OP_POOL: md_maxpool2d_forward(c->y, c->am, c->x, c->N, c->C, c->H, c->W, c->k, c->s, c->pad, c->OH, c->OW); break;
    case OP_UP: md_upsample_nearest_forward(c->y, c->x, c->N, c->C, c->H, c->W, c->OH, c->OW); break;
    case OP_ADD: md_add_forward(c->y, c->x, c->x2, c->ny); break;
    case OP_LINEAR: md_linear_forward(c->y, c->x, c->w, c->b, c->N, c->C, c->OH); break;
    }
    return dot_d(c->y, c->gy, c->ny);
}

static void test_other_ops_finite_differences(void) {
    md_rng r = md_rng_make(21, 3);
    fd_ctx c;
    /* frozen BN: N=2 C=3 3x4 */
    memset(&c, 0, sizeof c);
    c.op = OP_BN, c.N = 2, c.C = 3, c.H = 3, c.W = 4, c.ny = 72;
    c.x = zeros(72), c.w = zeros(3), c.b = zeros(3), c.gy = zeros(72), c.y = zeros(72);
    rand_fill(&r, c.x, 72, 1), rand_fill(&r, c.w, 3, 1), rand_fill(&r, c.b, 3, 1), rand_fill(&r, c.gy, 72, 1);
    float *dx = zeros(72);
    md_frozen_bn_backward(dx, c.gy, c.w, 2, 3, 12);
    fd_check(OP_BN, "dinput", other_loss, &c, c.x, dx, 72);
    free(c.x), free(c.w), free(c.b), free(c.gy), free(c.y), free(dx);

    /* relu: inputs kept at least 0.05 away from the kink */
    memset(&c, 0, sizeof c);
    c.op = OP_RELU, c.ny = 50;
    c.x = zeros(50), c.gy = zeros(50), c.y = zeros(50), dx = zeros(50);
    for (int i = 0; i < 50; i++) {
        float v = md_rng_normal(&r);
        c.x[i] = v + (v < 0 ? -0.05f : 0.05f);
        c.gy[i] = md_rng_normal(&r);
    }
    md_relu_forward(c.y, c.x, 50);
    md_relu_backward(dx, c.gy, c.y, 50);
    fd_check(OP_RELU, "dinput", other_loss, &c, c.x, dx, 50);
    free(c.x), free(c.gy), free(c.y), free(dx);

    /* max pool k3 s2 p1 on 7x5 and k1 s2 p0 on 5x6: distinct values 0.1 apart, so +-eps never changes the argmax */
    static const int pools[2][6] = {{7, 5, 3, 2, 1, 0}, {5, 6, 1, 2, 0, 0}};
    for (int t = 0; t < 2; t++) {
        memset(&c, 0, sizeof c);
        c.op = OP_POOL, c.N = 1, c.C = 2, c.H = pools[t][0], c.W = pools[t][1], c.k = pools[t][2], c.s = pools[t][3];
        c.pad = pools[t][4];
        c.OH = (c.H + 2 * c.pad - c.k) / c.s + 1, c.OW = (c.W + 2 * c.pad - c.k) / c.s + 1;
        size_t nx = (size_t)2 * c.H * c.W;
        c.ny = (size_t)2 * c.OH * c.OW;
        c.x = zeros(nx), c.gy = zeros(c.ny), c.y = zeros(c.ny), dx = zeros(nx);
        c.am = malloc(c.ny * sizeof(int32_t));
        uint32_t *perm = malloc(nx * sizeof(uint32_t));
        if (!c.am || !perm) exit(2);
        for (size_t i = 0; i < nx; i++) perm[i] = (uint32_t)i;
        md_rng_shuffle_u32(&r, perm, (uint32_t)nx);
        for (size_t i = 0; i < nx; i++) c.x[i] = 0.1f * (float)perm[i] - 2.0f;
        rand_fill(&r, c.gy, c.ny, 1);
        other_loss(&c);
        md_maxpool2d_backward(dx, c.gy, c.am, 1, 2, c.H, c.W, c.OH, c.OW);
        fd_check(OP_POOL, t ? "k1s2p0 dinput" : "k3s2p1 dinput", other_loss, &c, c.x, dx, nx);
        free(c.x), free(c.gy), free(c.y), free(dx), free(c.am), free(perm);
    }

    /* nearest upsample 3x4 -> 7x9 and 3x4 -> 6x8 */
    for (int t = 0; t < 2; t++) {
        memset(&c, 0, sizeof c);
        c.op = OP_UP, c.N = 1, c.C = 2, c.H = 3, c.W = 4, c.OH = t ? 6 : 7, c.OW = t ? 8 : 9;
        c.ny = (size_t)2 * c.OH * c.OW;
        c.x = zeros(24), c.gy = zeros(c.ny), c.y = zeros(c.ny), dx = zeros(24);
        rand_fill(&r, c.x, 24, 1), rand_fill(&r, c.gy, c.ny, 1);
        md_upsample_nearest_backward(dx, c.gy, 1, 2, 3, 4, c.OH, c.OW);
        fd_check(OP_UP, t ? "2x dinput" : "3x4->7x9 dinput", other_loss, &c, c.x, dx, 24);
        free(c.x), free(c.gy), free(c.y), free(dx);
    }

    /* add */
    memset(&c, 0, sizeof c);
    c.op = OP_ADD, c.ny = 30;
    c.x = zeros(30), c.x2 = zeros(30), c.gy = zeros(30), c.y = zeros(30);
    float *da = zeros(30), *db = zeros(30);
    rand_fill(&r, c.x, 30, 1), rand_fill(&r, c.x2, 30, 1), rand_fill(&r, c.gy, 30, 1);
    md_add_backward(da, db, c.gy, 30);
    fd_check(OP_ADD, "da", other_loss, &c, c.x, da, 30);
    fd_check(OP_ADD, "db", other_loss, &c, c.x2, db, 30);
    free(c.x), free(c.x2), free(c.gy), free(c.y), free(da), free(db);

    /* linear B=3 IN=5 OUT=4 (N, C, OH carry B, IN, OUT) */
    memset(&c, 0, sizeof c);
    c.op = OP_LINEAR, c.N = 3, c.C = 5, c.OH = 4, c.ny = 12;
    c.x = zeros(15), c.w = zeros(20), c.b = zeros(4), c.gy = zeros(12), c.y = zeros(12);
    rand_fill(&r, c.x, 15, 1), rand_fill(&r, c.w, 20, 0.5f), rand_fill(&r, c.b, 4, 1), rand_fill(&r, c.gy, 12, 1);
    float *lx = zeros(15), *lw = zeros(20), *lb = zeros(4);
    md_linear_backward(lx, lw, lb, c.gy, c.x, c.w, 3, 5, 4);
    fd_check(OP_LINEAR, "dinput", other_loss, &c, c.x, lx, 15);
    fd_check(OP_LINEAR, "dweight", other_loss, &c, c.w, lw, 20);
    fd_check(OP_LINEAR, "dbias", other_loss, &c, c.b, lb, 4);
    free(c.x), free(c.w), free(c.b), free(c.gy), free(c.y), free(lx), free(lw), free(lb);
}

/* Nearest index rule, closed form: the float32 formula of PyTorch 1.13 (exact 2x -> dst >> 1). */
static void test_upsample_index_rule(void) {
    static const int sizes[][2] = {{5, 9}, {7, 13}, {13, 25}, {25, 50}, {3, 7}, {38, 75}, {100, 201}, {9, 4}, {26, 44}, {30, 58}, {39, 66}};
    for (size_t t = 0; t < sizeof sizes / sizeof sizes[0]; t++) {
        const int in = sizes[t][0], out = sizes[t][1];
        float *x = zeros((size_t)in), *y = zeros((size_t)out);
        for (int i = 0; i < in; i++) x[i] = (float)i;
        md_upsample_nearest_forward(y, x, 1, 1, 1, in, 1, out);
        int bad = 0;
        for (int o = 0; o < out; o++) {
            int want = (int)floorf((float)o * ((float)in / (float)out));
            if (out == 2 * in) want = o >> 1;
            if (want > in - 1) want = in - 1;
            if (y[o] != (float)want) bad++;
        }
        CHECK(bad == 0, "%d -> %d: %d wrong source indices", in, out, bad);
        free(x), free(y);
    }
}

/* ------------------------------------------------------------ thread-count invariance
 * Large enough inputs to take the OpenMP paths: 1 thread and 2 threads must give identical results
 * (bitwise for the non-GEMM ops, whose parallel loops own disjoint outputs; conv within 1e-4, as OpenBLAS
 * may block the GEMM differently). */
typedef struct {
    float *y, *dx;
} run_out;

static void run_ops_large(int threads, const float *x, const float *g, float *w, run_out *o, md_conv2d_params *cp, float *scr,
                          int32_t *am) {
    md_threads_init(threads);
    const int N = 2, C = 8, H = 95, W = 97, HW = H * W;
    const size_t n = (size_t)N * C * HW;
    size_t off = 0;
    /* bn */
    md_frozen_bn_forward(o->y, x, w, w + C, N, C, HW);
    md_frozen_bn_backward(o->dx, g, w, N, C, HW);
    off += n;
    md_relu_forward(o->y + off, x, n);
    md_relu_backward(o->dx + off, g, o->y + off, n);
    off += n;
    md_add_forward(o->y + off, x, g, n);
    md_add_backward(o->dx + off, o->dx + off + n, g, n);
    off += 2 * n;
    md_maxpool2d_forward(o->y + off, am, x, N, C, H, W, 3, 2, 1, 48, 49);
    md_maxpool2d_backward(o->dx + off, g, am, N, C, H, W, 48, 49);
    off += n;
    md_upsample_nearest_forward(o->y + off, x, N, C, 48, 49, H, W);
    md_upsample_nearest_backward(o->dx + off, g, N, C, 48, 49, H, W);
    off += n;
    md_conv2d_forward(o->y + off, x, w, w, cp, scr);
    md_conv2d_backward(o->dx + off, w + 1000, w + 3000, g, x, w, cp, scr);
}

static void test_thread_count_invariance(void) {
    const size_t n = (size_t)2 * 8 * 95 * 97, total = 7 * n;
    md_rng r = md_rng_make(5, 5);
    md_conv2d_params cp;
    CHECK(md_conv2d_init(&cp, 2, 8, 95, 97, 8, 3, 3, 1, 1, 1), "conv init");
    float *x = zeros(n), *g = zeros(n), *w1 = zeros(4000), *w2 = zeros(4000), *scr = zeros(md_conv2d_scratch_floats(&cp));
    rand_fill(&r, x, n, 1), rand_fill(&r, g, n, 1), rand_fill(&r, w1, 1000, 0.3f);
    memcpy(w2, w1, 4000 * sizeof(float));
    int32_t *am = malloc(n * sizeof(int32_t));
    run_out a = {zeros(total), zeros(total)}, b = {zeros(total), zeros(total)};
    if (!am) exit(2);
    run_ops_large(1, x, g, w1, &a, &cp, scr, am);
    run_ops_large(2, x, g, w2, &b, &cp, scr, am);
    md_threads_init(0);
    const size_t exact = 6 * n; /* everything before the conv block */
    CHECK(memcmp(a.y, b.y, exact * sizeof(float)) == 0, "forward outputs differ between 1 and 2 threads");
    CHECK(memcmp(a.dx, b.dx, exact * sizeof(float)) == 0, "backward outputs differ between 1 and 2 threads");
    /* OpenBLAS may block the GEMM differently per thread count: equal up to float rounding */
    double e1 = md_max_rel_err(b.y + exact, a.y + exact, n, 1e-2 * md_max_abs(a.y + exact, n), NULL);
    double e2 = md_max_rel_err(b.dx + exact, a.dx + exact, n, 1e-2 * md_max_abs(a.dx + exact, n), NULL);
    double e3 = md_max_rel_err(w2 + 1000, w1 + 1000, 3000, 1e-2 * md_max_abs(w1 + 1000, 3000), NULL);
    CHECK(e1 <= REL_TOL && e2 <= REL_TOL && e3 <= REL_TOL, "conv 1 vs 2 threads: forward %.3g dinput %.3g dweight/dbias %.3g", e1, e2, e3);
    free(x), free(g), free(w1), free(w2), free(scr), free(am), free(a.y), free(a.dx), free(b.y), free(b.dx);
}

/* ------------------------------------------------------------ table */
static void print_table(void) {
    printf("\n  %-18s %5s %14s %14s %14s %14s\n", "op", "cases", "torch fwd", "torch bwd", "double ref", "finite diff");
    for (int i = 0; i < OP_COUNT; i++)
        printf("  %-18s %5d %14.3g %14.3g %14.3g %14.3g\n", op_names[i], n_cases[i], worst_fwd[i], worst_bwd[i], worst_dbl[i],
               worst_fd[i]);
    printf("  (max relative error; floor 1e-2 x max|ref| for torch/double, 0.05 x max|grad| for finite differences)\n\n");
}

int main(void) {
    have_fixture = md_test_need_path(FIXTURE, "written by /usr/bin/python3 scripts/torch_reference.py ops_dense");
    if (have_fixture && md_st_load(FIXTURE, &F) != MD_OK) {
        CHECK(0, "load %s: %s", FIXTURE, md_last_error());
        have_fixture = 0;
    }
    MD_RUN(test_conv2d_init);
    MD_RUN(test_conv2d_vs_torch);
    MD_RUN(test_conv2d_vs_double_random_geometries);
    MD_RUN(test_conv2d_finite_differences);
    MD_RUN(test_conv2d_double_finite_differences);
    MD_RUN(test_frozen_bn_vs_torch);
    MD_RUN(test_frozen_bn_fold);
    MD_RUN(test_relu_vs_torch);
    MD_RUN(test_maxpool_vs_torch);
    MD_RUN(test_upsample_vs_torch);
    MD_RUN(test_upsample_index_rule);
    MD_RUN(test_add_vs_torch);
    MD_RUN(test_linear_vs_torch);
    MD_RUN(test_other_ops_finite_differences);
    MD_RUN(test_thread_count_invariance);
    print_table();
    if (have_fixture) md_st_free(&F);
    return md_test_summary();
}
