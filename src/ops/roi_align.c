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
 * hy*hx, hy*lx, ... are the same float32 products torchvision forms, and bins and samples
 * are visited in torchvision's order, so forward and backward are bit-for-bit
 * torchvision's (0 difference on every unchunked fixture case). Tables live on the stack (MD_RA_TAB
 * entries per axis); RoIs with more samples per axis (only with adaptive sampling on very
 * large RoIs) are done in chunks of the table size (then sums are split per chunk).
 *
 * Parallelism (forward and backward alike): work items are (image n, block of channels),
 * each looping over the RoIs of image n in order. A forward item alone writes its RoIs'
 * outputs for its channels, a backward item alone accumulates into its channels' gradient
 * planes of image n: no atomics, no races, and every plane is accumulated in the same order
 * (RoI, bin, sample) whatever the thread count, so results are bitwise independent of the
 * number of threads. The channel block is sized so its planes stay in L2 while the item
 * walks over its image's RoIs (RoI-major with all channels would stream the feature map
 * from memory once per RoI).
 * RoIs with a batch index outside [0, N) or non-finite coordinates give zero output and
 * no gradient (torchvision would read out of bounds). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "minidet/ops.h"

#ifndef MD_RA_TAB
#define MD_RA_TAB 512 /* table entries per axis held on the stack (overridable to test the chunking) */
#endif
#define MD_RA_BLOCK_MAX 64 /* at most this many channels per work item */
#ifndef MD_RA_CACHE
#define MD_RA_CACHE (256 << 10) /* bytes of feature planes per work item */
#endif
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

/* Channels per work item: as many feature planes as fit in ~256 KiB (a core's share of L2),
 * so the RoIs of one image reuse the planes from cache; depends only on H*W, never on the
 * thread count (which keeps results thread-count independent). */
static int channel_block(int C, int H, int W) {
    size_t plane = (size_t)H * W * sizeof(float), cb = plane ? (size_t)MD_RA_CACHE / plane : 1;
    if (cb < 1) cb = 1;
    if (cb > MD_RA_BLOCK_MAX) cb = MD_RA_BLOCK_MAX;
    return cb > (size_t)C ? C : (int)cb;
}

/* Range of bins [*p0, *p1) touched by samples [k0, k1) of g samples per bin. */
static void bin_range(long k0, long k1, int g, int *p0, int *p1) {
    *p0 = (int)(k0 / g);
    *p1 = (int)((k1 - 1) / g) + 1;
}

/* One RoI, channels [c0, c1): out (C x PH x PW block of this RoI) += per-bin sums over the
 * samples held in the tables (y samples [ky0, ky0+ny), x samples [kx0, kx0+nx)). For a RoI
 * whose tables hold all samples this is torchvision's loop: bins row-major, samples iy-major. */
static void fwd_chunk(float *o, const float *feat_img, const ra_tap *ty, long ky0, long ny, const ra_tap *tx, long kx0, long nx, const ra_geom *g,
                      int c0, int c1, int H, int W, int PH, int PW) {
    int ph0, ph1, pw0, pw1;
    bin_range(ky0, ky0 + ny, g->gh, &ph0, &ph1);
    bin_range(kx0, kx0 + nx, g->gw, &pw0, &pw1);
    const size_t HW = (size_t)H * W, PP = (size_t)PH * PW;
    for (int c = c0; c < c1; c++) {
        const float *restrict f = feat_img + (size_t)c * HW;
        float *restrict oc = o + (size_t)c * PP;
        for (int ph = ph0; ph < ph1; ph++) {
            long a0 = (long)ph * g->gh - ky0, a1 = a0 + g->gh;
            if (a0 < 0) a0 = 0;
            if (a1 > ny) a1 = ny;
            for (int pw = pw0; pw < pw1; pw++) {
                long b0 = (long)pw * g->gw - kx0, b1 = b0 + g->gw;
                if (b0 < 0) b0 = 0;
                if (b1 > nx) b1 = nx;
                float acc = 0.0f;
                for (long a = a0; a < a1; a++) {
                    const ra_tap y = ty[a];
                    if (!y.valid) continue;
                    const float *r0 = f + (size_t)y.lo * W, *r1 = f + (size_t)y.hi * W;
                    for (long b = b0; b < b1; b++) {
                        const ra_tap x = tx[b];
                        if (!x.valid) continue;
                        float w1 = y.h * x.h, w2 = y.h * x.l, w3 = y.l * x.h, w4 = y.l * x.l;
                        acc += w1 * r0[x.lo] + w2 * r0[x.hi] + w3 * r1[x.lo] + w4 * r1[x.hi];
                    }
                }
                oc[(size_t)ph * PW + pw] += acc;
            }
        }
    }
}

/* Adjoint of fwd_chunk: dfeat planes of channels [c0, c1) += (dout * w) / count, in
 * torchvision's order (bins row-major, then iy, ix) and arithmetic, so the gradient is
 * torchvision's bit for bit. When count is a power of two (sampling_ratio 2: count 4) the
 * division is done as the (exactly equal) multiplication by 1/count. */
static void bwd_chunk(float *dfeat_img, const float *d, const ra_tap *ty, long ky0, long ny, const ra_tap *tx, long kx0, long nx, const ra_geom *g,
                      int c0, int c1, int H, int W, int PH, int PW) {
    int ph0, ph1, pw0, pw1;
    bin_range(ky0, ky0 + ny, g->gh, &ph0, &ph1);
    bin_range(kx0, kx0 + nx, g->gw, &pw0, &pw1);
    const size_t HW = (size_t)H * W, PP = (size_t)PH * PW;
    const float inv = 1.0f / g->count;
    const int n_ = g->gh * g->gw, pow2 = (n_ & (n_ - 1)) == 0; /* then * inv == / count exactly */
    for (int c = c0; c < c1; c++) {
        float *restrict f = dfeat_img + (size_t)c * HW;
        const float *restrict dc = d + (size_t)c * PP;
        for (int ph = ph0; ph < ph1; ph++) {
            long a0 = (long)ph * g->gh - ky0, a1 = a0 + g->gh;
            if (a0 < 0) a0 = 0;
            if (a1 > ny) a1 = ny;
            for (int pw = pw0; pw < pw1; pw++) {
                long b0 = (long)pw * g->gw - kx0, b1 = b0 + g->gw;
                if (b0 < 0) b0 = 0;
                if (b1 > nx) b1 = nx;
                const float gb = dc[(size_t)ph * PW + pw];
                if (gb == 0.0f) continue;
                for (long a = a0; a < a1; a++) {
                    const ra_tap y = ty[a];
                    if (!y.valid) continue;
                    float *r0 = f + (size_t)y.lo * W, *r1 = f + (size_t)y.hi * W;
                    for (long b = b0; b < b1; b++) {
                        const ra_tap x = tx[b];
                        if (!x.valid) continue;
                        float w1 = y.h * x.h, w2 = y.h * x.l, w3 = y.l * x.h, w4 = y.l * x.l;
                        if (pow2) {
                            r0[x.lo] += gb * w1 * inv;
                            r0[x.hi] += gb * w2 * inv;
                            r1[x.lo] += gb * w3 * inv;
                            r1[x.hi] += gb * w4 * inv;
                        } else {
                            r0[x.lo] += gb * w1 / g->count;
                            r0[x.hi] += gb * w2 / g->count;
                            r1[x.lo] += gb * w3 / g->count;
                            r1[x.hi] += gb * w4 / g->count;
                        }
                    }
                }
            }
        }
    }
}

/* Fast path for a fixed sampling_ratio whose grid fits in MD_RA_SAMPLES entries (the box
 * head: 7x7 bins x 2x2 samples = 196): the valid samples of each bin, in torchvision's order
 * (iy-major), are flattened once per RoI (one parallel pass, R x 196 x 32 bytes on the heap,
 * shared by every work item; if that allocation fails the generic path runs) into offsets of the four neighbours in
 * the plane and the four weights w1..w4 (the same float products hy*hx, ...), so the per-channel
 * loops do only loads, multiplies and adds. Forward sums use the same expression as fwd_chunk
 * (bit-identical). Backward with a power-of-two count scales the bin's gradient by 1/count
 * first: (gb*inv)*w == (gb*w)*inv exactly since both only shift the exponent (barring
 * subnormal intermediates); other counts take bwd_chunk. */
#ifndef MD_RA_SAMPLES
#define MD_RA_SAMPLES 1024
#endif
typedef struct {
    int i0, i1, i2, i3; /* r0+lo, r0+hi, r1+lo, r1+hi as offsets into the plane */
    float w1, w2, w3, w4;
} ra_samp;

/* Fills s (in bin order) and bin_end[ph*PW+pw] = one past the bin's last sample; returns the count. */
static int fill_samples(ra_samp *s, int *bin_end, const ra_tap *ty, const ra_tap *tx, const ra_geom *g, int W, int PH, int PW) {
    int n = 0;
    for (int ph = 0; ph < PH; ph++)
        for (int pw = 0; pw < PW; pw++) {
            for (int iy = 0; iy < g->gh; iy++) {
                const ra_tap y = ty[ph * g->gh + iy];
                if (!y.valid) continue;
                for (int ix = 0; ix < g->gw; ix++) {
                    const ra_tap x = tx[pw * g->gw + ix];
                    if (!x.valid) continue;
                    ra_samp *e = &s[n++];
                    e->i0 = y.lo * W + x.lo, e->i1 = y.lo * W + x.hi, e->i2 = y.hi * W + x.lo, e->i3 = y.hi * W + x.hi;
                    e->w1 = y.h * x.h, e->w2 = y.h * x.l, e->w3 = y.l * x.h, e->w4 = y.l * x.l;
                }
            }
            bin_end[ph * PW + pw] = n;
        }
    return n;
}

/* Channels go in pairs: the two planes share each table entry's load, and their sums (forward) or
 * read-modify-write chains (backward) are independent, so they overlap; each plane still sees its
 * own operations in the single-channel order, so the results are the same bits. */
static void fwd_table(float *o, const float *feat_img, const ra_samp *s, const int *bin_end, int c0, int c1, size_t HW, int PP) {
    int c = c0;
    for (; c + 2 <= c1; c += 2) {
        const float *restrict f = feat_img + (size_t)c * HW, *restrict f2 = f + HW;
        float *restrict oc = o + (size_t)c * PP, *restrict oc2 = oc + PP;
        int k = 0;
        for (int b = 0; b < PP; b++) {
            float acc = 0.0f, acc2 = 0.0f;
            for (; k < bin_end[b]; k++) {
                const ra_samp e = s[k];
                acc += e.w1 * f[e.i0] + e.w2 * f[e.i1] + e.w3 * f[e.i2] + e.w4 * f[e.i3];
                acc2 += e.w1 * f2[e.i0] + e.w2 * f2[e.i1] + e.w3 * f2[e.i2] + e.w4 * f2[e.i3];
            }
            oc[b] += acc;
            oc2[b] += acc2;
        }
    }
    for (; c < c1; c++) {
        const float *restrict f = feat_img + (size_t)c * HW;
        float *restrict oc = o + (size_t)c * PP;
        int k = 0;
        for (int b = 0; b < PP; b++) {
            float acc = 0.0f;
            for (; k < bin_end[b]; k++) {
                const ra_samp e = s[k];
                acc += e.w1 * f[e.i0] + e.w2 * f[e.i1] + e.w3 * f[e.i2] + e.w4 * f[e.i3];
            }
            oc[b] += acc;
        }
    }
}

/* One plane's scatter of bin samples [k0, k1) scaled by gs. */
static inline void bwd_bin(float *restrict f, const ra_samp *s, int k0, int k1, float gs) {
    for (int k = k0; k < k1; k++) {
        const ra_samp e = s[k];
        f[e.i0] += gs * e.w1;
        f[e.i1] += gs * e.w2;
        f[e.i2] += gs * e.w3;
        f[e.i3] += gs * e.w4;
    }
}

static void bwd_table(float *dfeat_img, const float *d, const ra_samp *s, const int *bin_end, float inv, int c0, int c1, size_t HW,
                      int PP) {
    int c = c0;
    for (; c + 2 <= c1; c += 2) {
        float *restrict f = dfeat_img + (size_t)c * HW, *restrict f2 = f + HW;
        const float *restrict dc = d + (size_t)c * PP, *restrict dc2 = dc + PP;
        for (int b = 0, k0 = 0; b < PP; k0 = bin_end[b++]) {
            const float gb = dc[b], gb2 = dc2[b];
            if (gb == 0.0f || gb2 == 0.0f) { /* a zero bin gradient adds nothing to its plane */
                if (gb != 0.0f) bwd_bin(f, s, k0, bin_end[b], gb * inv);
                if (gb2 != 0.0f) bwd_bin(f2, s, k0, bin_end[b], gb2 * inv);
                continue;
            }
            const float gs = gb * inv, gs2 = gb2 * inv;
            for (int k = k0; k < bin_end[b]; k++) {
                const ra_samp e = s[k];
                f[e.i0] += gs * e.w1;
                f2[e.i0] += gs2 * e.w1;
                f[e.i1] += gs * e.w2;
                f2[e.i1] += gs2 * e.w2;
                f[e.i2] += gs * e.w3;
                f2[e.i2] += gs2 * e.w3;
                f[e.i3] += gs * e.w4;
                f2[e.i3] += gs2 * e.w4;
            }
        }
    }
    for (; c < c1; c++) {
        float *restrict f = dfeat_img + (size_t)c * HW;
        const float *restrict dc = d + (size_t)c * PP;
        for (int b = 0, k0 = 0; b < PP; k0 = bin_end[b++])
            if (dc[b] != 0.0f) bwd_bin(f, s, k0, bin_end[b], dc[b] * inv);
    }
}

/* Shared driver: work items (image n, channel block), each looping over the RoIs of image n
 * in order. Forward (dout == NULL): out += sums, then /= count. Backward: dfeat += adjoint. */
static void roi_align_run(float *out, const float *feat, float *dfeat, const float *dout, const float *rois, int R, int N, int C, int H, int W,
                          int PH, int PW, float spatial_scale, int sampling_ratio, int aligned) {
    const size_t HW = (size_t)H * W, PP = (size_t)PH * PW;
    const int cb = channel_block(C, H, W), nblk = (C + cb - 1) / cb;
    /* sample tables for every RoI, built once (in parallel) and shared by all work items */
    const int sr = sampling_ratio, cnt = sr * sr;
    const size_t S = sr > 0 ? (size_t)PH * sr * PW * sr : 0;
    ra_samp *tab = NULL;
    int *tab_end = NULL;
    if (sr > 0 && (long)PH * sr <= MD_RA_TAB && (long)PW * sr <= MD_RA_TAB && S <= MD_RA_SAMPLES && (out || (cnt & (cnt - 1)) == 0)) {
        tab = malloc((size_t)R * S * sizeof *tab);
        tab_end = malloc((size_t)R * PP * sizeof *tab_end);
        if (!tab || !tab_end) { /* out of memory: the generic path needs none */
            free(tab), free(tab_end);
            tab = NULL, tab_end = NULL;
        } else {
#pragma omp parallel for schedule(static)
            for (int r = 0; r < R; r++) {
                ra_geom g;
                ra_tap ty[MD_RA_TAB], tx[MD_RA_TAB];
                if (!roi_geom(&g, rois + (size_t)r * 5, N, PH, PW, spatial_scale, sampling_ratio, aligned)) continue;
                fill_taps(ty, 0, (long)PH * g.gh, g.gh, g.start_h, g.bin_h, H);
                fill_taps(tx, 0, (long)PW * g.gw, g.gw, g.start_w, g.bin_w, W);
                fill_samples(tab + (size_t)r * S, tab_end + (size_t)r * PP, ty, tx, &g, W, PH, PW);
            }
        }
    }
#pragma omp parallel for schedule(dynamic, 1)
    for (int item = 0; item < N * nblk; item++) {
        const int n = item / nblk, c0 = (item % nblk) * cb, c1 = c0 + cb < C ? c0 + cb : C;
        ra_tap ty[MD_RA_TAB], tx[MD_RA_TAB];
        for (int r = 0; r < R; r++) {
            ra_geom g;
            if (!roi_geom(&g, rois + (size_t)r * 5, N, PH, PW, spatial_scale, sampling_ratio, aligned) || g.b != n) continue;
            float *o = out ? out + (size_t)r * C * PP : NULL;
            if (o) memset(o + (size_t)c0 * PP, 0, (size_t)(c1 - c0) * PP * sizeof *o);
            const long KY = (long)PH * g.gh, KX = (long)PW * g.gw;
            if (tab) {
                const ra_samp *smp = tab + (size_t)r * S;
                const int *be = tab_end + (size_t)r * PP;
                if (o) {
                    fwd_table(o, feat + (size_t)n * C * HW, smp, be, c0, c1, HW, (int)PP);
                    for (size_t i = (size_t)c0 * PP; i < (size_t)c1 * PP; i++) o[i] /= g.count;
                } else {
                    bwd_table(dfeat + (size_t)n * C * HW, dout + (size_t)r * C * PP, smp, be, 1.0f / g.count, c0, c1, HW, (int)PP);
                }
                continue;
            }
            for (long ky0 = 0; ky0 < KY; ky0 += MD_RA_TAB) {
                long ny = KY - ky0 < MD_RA_TAB ? KY - ky0 : MD_RA_TAB;
                fill_taps(ty, ky0, ky0 + ny, g.gh, g.start_h, g.bin_h, H);
                for (long kx0 = 0; kx0 < KX; kx0 += MD_RA_TAB) {
                    long nx = KX - kx0 < MD_RA_TAB ? KX - kx0 : MD_RA_TAB;
                    fill_taps(tx, kx0, kx0 + nx, g.gw, g.start_w, g.bin_w, W);
                    if (o) fwd_chunk(o, feat + (size_t)n * C * HW, ty, ky0, ny, tx, kx0, nx, &g, c0, c1, H, W, PH, PW);
                    else bwd_chunk(dfeat + (size_t)n * C * HW, dout + (size_t)r * C * PP, ty, ky0, ny, tx, kx0, nx, &g, c0, c1, H, W, PH, PW);
                }
            }
            if (o)
                for (size_t i = (size_t)c0 * PP; i < (size_t)c1 * PP; i++) o[i] /= g.count;
        }
    }
    free(tab);
    free(tab_end);
}

void md_roi_align_forward(float *out, const float *feat, const float *rois, int R, int N, int C, int H, int W, int PH, int PW,
                          float spatial_scale, int sampling_ratio, int aligned) {
    if (R <= 0 || C <= 0 || PH <= 0 || PW <= 0) return;
    if (N <= 0 || H <= 0 || W <= 0) N = 0; /* no feature map: every RoI is invalid, output zeros */
    /* RoIs that produce nothing are zeroed here; the others are written by their work items */
    for (int r = 0; r < R; r++) {
        ra_geom g;
        if (!roi_geom(&g, rois + (size_t)r * 5, N, PH, PW, spatial_scale, sampling_ratio, aligned))
            memset(out + (size_t)r * C * PH * PW, 0, (size_t)C * PH * PW * sizeof *out);
    }
    if (N > 0) roi_align_run(out, feat, NULL, NULL, rois, R, N, C, H, W, PH, PW, spatial_scale, sampling_ratio, aligned);
}

void md_roi_align_backward(float *dfeat, const float *dout, const float *rois, int R, int N, int C, int H, int W, int PH, int PW,
                           float spatial_scale, int sampling_ratio, int aligned) {
    if (!dfeat || R <= 0 || N <= 0 || C <= 0 || H <= 0 || W <= 0 || PH <= 0 || PW <= 0) return;
    roi_align_run(NULL, NULL, dfeat, dout, rois, R, N, C, H, W, PH, PW, spatial_scale, sampling_ratio, aligned);
}
