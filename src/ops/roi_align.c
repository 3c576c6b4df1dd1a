/* roi_align.c — RoIAlign forward/backward with torchvision 0.14 semantics (see include/minidet/ops.h).
 *
 * For RoI r on image b = (int)rois[r*5] and output bin (ph, pw), torchvision averages
 * gh x gw bilinear samples of the feature plane at
 *   y = start_h + ph*bin_h + (iy + .5f)*bin_h/gh,   x = start_w + pw*bin_w + (ix + .5f)*bin_w/gw
 * (all float32, in exactly this order), start = coord*spatial_scale - (aligned ? .5 : 0),
 * roi size forced >= 1 when not aligned, g = sampling_ratio or ceil(roi_size/pooled) when
 * <= 0. A sample with y < -1 || y > H || x < -1 || x > W contributes 0 (but still counts);
 * otherwise coordinates <= 0 clamp to 0 and those >= size-1 to size-1.
 *
 * The bilinear weights are separable: w = wy*wx with wy in {1-ly, ly} depending only on
 * (ph, iy) and wx only on (pw, ix). So per RoI we fill one small table per axis (index
 * k = ph*gh + iy, resp. pw*gw + ix) and reuse it for every channel; the products
 * hy*hx, hy*lx, ... are the same float32 products torchvision forms, so the forward is
 * bit-for-bit torchvision's. Tables live on the stack (MD_RA_TAB entries per axis); RoIs
 * with more samples per axis (only with adaptive sampling on very large RoIs) are done
 * in chunks of the table size, which keeps every per-bin summation in torchvision's order.
 *
 * Parallelism: forward over RoIs (each writes only its own output); backward over
 * (image, channel block) work items, each of which loops over every RoI of its image and
 * alone writes its channels' gradient planes. No atomics, no races, and each plane is
 * accumulated in the same order (RoI, then sample) whatever the thread count, so the
 * result is bitwise independent of the number of threads.
 * RoIs with a batch index outside [0, N) or non-finite coordinates give zero output and
 * no gradient (torchvision would read out of bounds). */
#include <math.h>
#include <string.h>
#include "minidet/ops.h"

#define MD_RA_TAB 512 /* table entries per axis held on the stack */
#define MD_RA_BLOCK 8 /* channels per backward work item */
#define MD_RA_MAXG (1 << 20)

typedef struct {
    int lo, hi; /* neighbouring rows (cols) */
    float l, h; /* ly, hy = 1 - ly */
    int bin;    /* ph (pw) of this sample */
    int valid;  /* inside [-1, size] */
} ra_tap;

typedef struct {
    int b;                    /* image index */
    float start_h, start_w;   /* in feature coordinates */
    float bin_h, bin_w;
    int gh, gw;               /* samples per bin */
    float count;              /* gh * gw */
} ra_geom;

/* Returns 0 when the RoI produces nothing (bad batch index, non-finite, empty grid). */
static int roi_geom(ra_geom *g, const float *roi, int N, int PH, int PW, float scale, int sampling_ratio, int aligned) {
    for (int i = 0; i < 5; i++)
        if (!isfinite(roi[i])) return 0;
    if (!(roi[0] >= 0 && roi[0] < (float)N)) return 0;
    g->b = (int)roi[0];
    float off = aligned ? 0.5f : 0.0f;
    float sw = roi[1] * scale - off, sh = roi[2] * scale - off;
    float ew = roi[3] * scale - off, eh = roi[4] * scale - off;
    float rw = ew - sw, rh = eh - sh;
    if (!aligned) {
        if (rw < 1.0f) rw = 1.0f;
        if (rh < 1.0f) rh = 1.0f;
    }
    g->start_h = sh, g->start_w = sw;
    g->bin_h = rh / (float)PH;
    g->bin_w = rw / (float)PW;
    if (sampling_ratio > 0) {
        g->gh = g->gw = sampling_ratio;
    } else {
        float fh = ceilf(rh / (float)PH), fw = ceilf(rw / (float)PW);
        if (!(fh >= 1.0f) || !(fw >= 1.0f)) return 0; /* empty grid: zero output */
        g->gh = fh > (float)MD_RA_MAXG ? MD_RA_MAXG : (int)fh;
        g->gw = fw > (float)MD_RA_MAXG ? MD_RA_MAXG : (int)fw;
    }
    g->count = (float)g->gh * (float)g->gw;
    return 1;
}

/* Fills taps for flat sample indices k in [k0, k1) along one axis of length `size`. */
static void fill_taps(ra_tap *t, long k0, long k1, int g, float start, float bin, int size) {
    for (long k = k0; k < k1; k++, t++) {
        int p = (int)(k / g), i = (int)(k % g);
        float v = start + (float)p * bin + (float)(i + .5f) * bin / (float)g;
        t->bin = p;
        if (!(v >= -1.0f && v <= (float)size)) {
            t->valid = 0, t->lo = t->hi = 0, t->l = t->h = 0;
            continue;
        }
        t->valid = 1;
        if (v <= 0) v = 0;
        int lo = (int)v, hi;
        if (lo >= size - 1) {
            hi = lo = size - 1;
            v = (float)lo;
        } else {
            hi = lo + 1;
        }
        t->lo = lo, t->hi = hi;
        t->l = v - (float)lo;
        t->h = 1.0f - t->l;
    }
}

void md_roi_align_forward(float *out, const float *feat, const float *rois, int R, int N, int C, int H, int W, int PH, int PW,
                          float spatial_scale, int sampling_ratio, int aligned) {
    const size_t HW = (size_t)H * W, PP = (size_t)PH * PW;
#pragma omp parallel for schedule(dynamic, 4)
    for (int r = 0; r < R; r++) {
        float *o = out + (size_t)r * C * PP;
        memset(o, 0, (size_t)C * PP * sizeof *o);
        ra_geom g;
        if (!roi_geom(&g, rois + (size_t)r * 5, N, PH, PW, spatial_scale, sampling_ratio, aligned)) continue;
        ra_tap ty[MD_RA_TAB], tx[MD_RA_TAB];
        const long KY = (long)PH * g.gh, KX = (long)PW * g.gw;
        for (long ky0 = 0; ky0 < KY; ky0 += MD_RA_TAB) {
            long ny = KY - ky0 < MD_RA_TAB ? KY - ky0 : MD_RA_TAB;
            fill_taps(ty, ky0, ky0 + ny, g.gh, g.start_h, g.bin_h, H);
            for (long kx0 = 0; kx0 < KX; kx0 += MD_RA_TAB) {
                long nx = KX - kx0 < MD_RA_TAB ? KX - kx0 : MD_RA_TAB;
                fill_taps(tx, kx0, kx0 + nx, g.gw, g.start_w, g.bin_w, W);
                for (int c = 0; c < C; c++) {
                    const float *f = feat + ((size_t)g.b * C + c) * HW;
                    float *oc = o + (size_t)c * PP;
                    for (long a = 0; a < ny; a++) {
                        const ra_tap *y = &ty[a];
                        if (!y->valid) continue;
                        const float *r0 = f + (size_t)y->lo * W, *r1 = f + (size_t)y->hi * W;
                        float *orow = oc + (size_t)y->bin * PW;
                        for (long b = 0; b < nx; b++) {
                            const ra_tap *x = &tx[b];
                            if (!x->valid) continue;
                            float w1 = y->h * x->h, w2 = y->h * x->l, w3 = y->l * x->h, w4 = y->l * x->l;
                            orow[x->bin] += w1 * r0[x->lo] + w2 * r0[x->hi] + w3 * r1[x->lo] + w4 * r1[x->hi];
                        }
                    }
                }
            }
        }
        for (size_t i = 0; i < (size_t)C * PP; i++) o[i] /= g.count;
    }
}

void md_roi_align_backward(float *dfeat, const float *dout, const float *rois, int R, int N, int C, int H, int W, int PH, int PW,
                           float spatial_scale, int sampling_ratio, int aligned) {
    if (!dfeat) return;
    const size_t HW = (size_t)H * W, PP = (size_t)PH * PW;
    const int nblk = (C + MD_RA_BLOCK - 1) / MD_RA_BLOCK;
#pragma omp parallel for schedule(dynamic, 1)
    for (int item = 0; item < N * nblk; item++) {
        const int n = item / nblk, c0 = (item % nblk) * MD_RA_BLOCK;
        const int c1 = c0 + MD_RA_BLOCK < C ? c0 + MD_RA_BLOCK : C;
        ra_tap ty[MD_RA_TAB], tx[MD_RA_TAB];
        for (int r = 0; r < R; r++) {
            ra_geom g;
            if (!roi_geom(&g, rois + (size_t)r * 5, N, PH, PW, spatial_scale, sampling_ratio, aligned) || g.b != n) continue;
            const long KY = (long)PH * g.gh, KX = (long)PW * g.gw;
            for (long ky0 = 0; ky0 < KY; ky0 += MD_RA_TAB) {
                long ny = KY - ky0 < MD_RA_TAB ? KY - ky0 : MD_RA_TAB;
                fill_taps(ty, ky0, ky0 + ny, g.gh, g.start_h, g.bin_h, H);
                for (long kx0 = 0; kx0 < KX; kx0 += MD_RA_TAB) {
                    long nx = KX - kx0 < MD_RA_TAB ? KX - kx0 : MD_RA_TAB;
                    fill_taps(tx, kx0, kx0 + nx, g.gw, g.start_w, g.bin_w, W);
                    for (int c = c0; c < c1; c++) {
                        float *f = dfeat + ((size_t)n * C + c) * HW;
                        const float *d = dout + ((size_t)r * C + c) * PP;
                        for (long a = 0; a < ny; a++) {
                            const ra_tap *y = &ty[a];
                            if (!y->valid) continue;
                            float *r0 = f + (size_t)y->lo * W, *r1 = f + (size_t)y->hi * W;
                            const float *drow = d + (size_t)y->bin * PW;
                            for (long b = 0; b < nx; b++) {
                                const ra_tap *x = &tx[b];
                                if (!x->valid) continue;
                                float gb = drow[x->bin] / g.count;
                                float w1 = y->h * x->h, w2 = y->h * x->l, w3 = y->l * x->h, w4 = y->l * x->l;
                                r0[x->lo] += gb * w1;
                                r0[x->hi] += gb * w2;
                                r1[x->lo] += gb * w3;
                                r1[x->hi] += gb * w4;
                            }
                        }
                    }
                }
            }
        }
    }
}
