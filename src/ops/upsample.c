/* upsample.c — nearest-neighbour resize to a given size, exactly F.interpolate(mode="nearest")
 * of PyTorch 1.13 (aten/src/ATen/native/UpSample.h: nearest_idx): same size -> identity,
 * exactly 2x -> dst >> 1, otherwise src = min(floor(dst * (float)in / out), in - 1) in float. */
#include <math.h>
#include "minidet/ops.h"

static inline int nearest_src(int dst, int in_size, int out_size) {
    if (out_size == in_size) return dst;
    if (out_size == 2 * in_size) return dst >> 1;
    const float scale = (float)in_size / (float)out_size;
    const int s = (int)floorf((float)dst * scale);
    return s < in_size - 1 ? s : in_size - 1;
}

/* in: N x C x H x W -> out: N x C x OH x OW. */
void md_upsample_nearest_forward(float *out, const float *in, int N, int C, int H, int W, int OH, int OW) {
    const int planes = N * C;
#pragma omp parallel for schedule(static) if ((size_t)planes * OH * OW > 65536)
    for (int pl = 0; pl < planes; pl++) {
        const float *x = in + (size_t)pl * H * W;
        float *y = out + (size_t)pl * OH * OW;
        for (int oh = 0; oh < OH; oh++) {
            const float *row = x + (size_t)nearest_src(oh, H, OH) * W;
            float *dst = y + (size_t)oh * OW;
            if (OW == 2 * W) {
                for (int iw = 0; iw < W; iw++) dst[2 * iw] = dst[2 * iw + 1] = row[iw];
            } else {
                for (int ow = 0; ow < OW; ow++) dst[ow] = row[nearest_src(ow, W, OW)];
            }
        }
    }
}

/* din (N x C x H x W) += sum of dout over the output pixels that copied each input pixel. */
void md_upsample_nearest_backward(float *din, const float *dout, int N, int C, int H, int W, int OH, int OW) {
    if (!din) return;
    const int planes = N * C;
#pragma omp parallel for schedule(static) if ((size_t)planes * OH * OW > 65536)
    for (int pl = 0; pl < planes; pl++) {
        float *dx = din + (size_t)pl * H * W;
        const float *g = dout + (size_t)pl * OH * OW;
        for (int oh = 0; oh < OH; oh++) {
            float *row = dx + (size_t)nearest_src(oh, H, OH) * W;
            const float *src = g + (size_t)oh * OW;
            if (OW == 2 * W) {
                for (int iw = 0; iw < W; iw++) row[iw] += src[2 * iw] + src[2 * iw + 1];
            } else {
                for (int ow = 0; ow < OW; ow++) row[nearest_src(ow, W, OW)] += src[ow];
            }
        }
    }
}
