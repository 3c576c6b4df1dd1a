/* fpn.c — torchvision FeaturePyramidNetwork (lateral 1x1 + output 3x3, nearest top-down) with
 * LastLevelMaxPool (P6 = max_pool2d(P5, 1, 2, 0)), forward and backward. */
#include <stdio.h>
#include <string.h>
#include "minidet/ops.h"
#include "model_internal.h"


md_status md_fpn_build(md_detector *det) {
    md_fpn *f = &det->impl->fpn;
    int F = det->model.fpn_channels;
    if (F < 1) return md_set_error(MD_ERR_ARG, "model.fpn_channels = %d: must be >= 1", F);
    f->channels = F;
    char pre[96];
    for (int i = 0; i < 4; i++) {
        snprintf(pre, sizeof pre, "backbone.fpn.inner_blocks.%d.0", i);
        MD_TRY(md_reg_conv(det, &f->inner[i], pre, NULL, det->impl->resnet.out_ch[i], F, 1, 1, 0, 1, 1));
    }
    for (int i = 0; i < 4; i++) {
        snprintf(pre, sizeof pre, "backbone.fpn.layer_blocks.%d.0", i);
        MD_TRY(md_reg_conv(det, &f->layer[i], pre, NULL, F, F, 3, 1, 1, 1, 1));
    }
    return MD_OK;
}

md_status md_fpn_forward(md_detector *det, md_arena *a, md_step *st) {
    md_fpn *f = &det->impl->fpn;
    md_step_saved *sv = st->saved;
    int N = st->N, F = f->channels, h, w;
    MD_TRY(md_conv_forward_layer(det, a, &f->inner[3], sv->C[3], N, sv->cH[3], sv->cW[3], &sv->inner[3], &h, &w));
    MD_TRY(md_conv_forward_layer(det, a, &f->layer[3], sv->inner[3], N, h, w, &st->features[3], &st->level_h[3],
                              &st->level_w[3]));
    for (int i = 2; i >= 0; i--) {
        int lh, lw;
        MD_TRY(md_conv_forward_layer(det, a, &f->inner[i], sv->C[i], N, sv->cH[i], sv->cW[i], &sv->inner[i], &lh, &lw));
        size_t mark = md_arena_mark(a);
        float *up = md_arena_floats(a, (size_t)N * F * lh * lw);
        if (!up) return MD_ERR_NOMEM;
        md_upsample_nearest_forward(up, sv->inner[i + 1], N, F, sv->cH[i + 1], sv->cW[i + 1], lh, lw);
        md_add_forward(sv->inner[i], sv->inner[i], up, (size_t)N * F * lh * lw);
        md_arena_release(a, mark);
        MD_TRY(md_conv_forward_layer(det, a, &f->layer[i], sv->inner[i], N, lh, lw, &st->features[i], &st->level_h[i],
                                  &st->level_w[i]));
    }
    /* P6: max_pool2d(P5, kernel 1, stride 2) = every other pixel */
    int H5 = st->level_h[3], W5 = st->level_w[3];
    int H6 = (H5 - 1) / 2 + 1, W6 = (W5 - 1) / 2 + 1;
    float *p6 = md_arena_floats(a, (size_t)N * F * H6 * W6);
    if (!p6) return MD_ERR_NOMEM;
    for (int nc = 0; nc < N * F; nc++)
        for (int y = 0; y < H6; y++)
            for (int x = 0; x < W6; x++)
                p6[((size_t)nc * H6 + y) * W6 + x] = st->features[3][((size_t)nc * H5 + 2 * y) * W5 + 2 * x];
    st->features[4] = p6;
    st->level_h[4] = H6;
    st->level_w[4] = W6;
    st->fpn_channels = F;
    return MD_OK;
}

md_status md_fpn_backward(md_detector *det, md_arena *a, md_step *st, float *dP[MD_FPN_LEVELS], float *dC[4]) {
    md_fpn *f = &det->impl->fpn;
    md_step_saved *sv = st->saved;
    int N = st->N, F = f->channels;
    int H5 = st->level_h[3], W5 = st->level_w[3], H6 = st->level_h[4], W6 = st->level_w[4];
    for (int nc = 0; nc < N * F; nc++)
        for (int y = 0; y < H6; y++)
            for (int x = 0; x < W6; x++)
                dP[3][((size_t)nc * H5 + 2 * y) * W5 + 2 * x] += dP[4][((size_t)nc * H6 + y) * W6 + x];
    float *dI[4];
    for (int i = 0; i < 4; i++) {
        dI[i] = md_arena_calloc(a, (size_t)N * F * sv->cH[i] * sv->cW[i] * sizeof(float));
        if (!dI[i]) return MD_ERR_NOMEM;
    }
    for (int i = 0; i < 4; i++) {
        MD_TRY(md_conv_backward_layer(det, a, &f->layer[i], dI[i], dP[i], sv->inner[i], N, sv->cH[i], sv->cW[i]));
        MD_TRY(md_conv_backward_layer(det, a, &f->inner[i], dC[i], dI[i], sv->C[i], N, sv->cH[i], sv->cW[i]));
        if (i < 3)
            md_upsample_nearest_backward(dI[i + 1], dI[i], N, F, sv->cH[i + 1], sv->cW[i + 1], sv->cH[i], sv->cW[i]);
    }
    return MD_OK;
}
