/* resnet.c — torchvision ResNet 18/34/50/101 body (conv1 .. layer4) with frozen BN folded into the
 * convolutions, or ([model] norm = bn) trainable BatchNorm2d with batch statistics in the trainable
 * stages while training; forward and backward; plus the shared conv-layer helpers.
 *
 * model.vd = 1 builds ResNet-D (He et al. 2019, "Bag of Tricks"; PaddleDetection's R50-vd) with timm's
 * resnet50d state_dict names under backbone.body.: a deep stem of three 3x3 convs, each with BN + ReLU
 * (conv1.0 3->32 stride 2 + conv1.1, conv1.3 32->32 + conv1.4, conv1.6 32->64 + bn1; widths times
 * width_mult), then the max pool; the projection shortcut of each stage's first block is
 * AvgPool2d(2, 2, ceil_mode, count_include_pad=False) (only where the block strides) followed by a
 * 1x1 stride-1 conv downsample.1 + BN downsample.2. The main path is torchvision's (stride on the 3x3).
 * Both norms apply to every conv of the deep stem and of the shortcut. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "minidet/ops.h"
#include "model_internal.h"

static int scaled(int base, float width_mult) {
    int v = (int)((float)base * width_mult + 0.5f);
    return v < 1 ? 1 : v;
}

static int planes_of(const md_model_config *m, int stage) { return scaled(64 << stage, m->width_mult); } /* stage 0..3 */

int md_resnet_out_channels(const md_model_config *m, int stage) {
    return planes_of(m, stage) * (m->depth >= 50 ? 4 : 1);
}

void md_conv_fold(md_detector *det, md_conv *c) {
    if (c->bn < 0) return;
    const md_param *P = det->params;
    size_t K = (size_t)c->ic * c->k * c->k;
    md_frozen_bn_params(c->scale, c->bf, P[c->bn].data, P[c->bn + 1].data, P[c->bn + 2].data, P[c->bn + 3].data, c->oc,
                        1e-5f);
    /* bf now holds shift; fold: wf = w * scale, bf = 0 * scale + shift */
    memcpy(c->wf, P[c->w].data, (size_t)c->oc * K * sizeof(float));
    for (int o = 0; o < c->oc; o++) {
        float s = c->scale[o];
        float *w = c->wf + (size_t)o * K;
        for (size_t i = 0; i < K; i++) w[i] *= s;
    }
}

md_status md_conv_forward_into(md_detector *det, md_arena *a, const md_conv *c, const float *in, int N, int H, int W,
                               float *out) {
    (void)det;
    md_conv2d_params p;
    if (!md_conv2d_init(&p, N, c->ic, H, W, c->oc, c->k, c->k, c->stride, c->pad, 1))
        return md_set_error(MD_ERR_SHAPE, "conv %dx%d on a %dx%d input gives an empty output", c->k, c->k, H, W);
    size_t mark = md_arena_mark(a);
    size_t ns = md_conv2d_scratch_floats(&p);
    float *scratch = ns ? md_arena_floats(a, ns) : NULL;
    if (ns && !scratch) return MD_ERR_NOMEM;
    md_conv2d_forward(out, in, c->wf, c->bf, &p, scratch);
    md_arena_release(a, mark);
    return MD_OK;
}

md_status md_conv_bn_forward_into(md_detector *det, md_arena *a, const md_conv *c, const float *in, int N, int H, int W,
                                  float *out, int training, md_bn_act *save) {
    if (!(training && c->bn_train)) {
        if (save) memset(save, 0, sizeof *save);
        return md_conv_forward_into(det, a, c, in, N, H, W, out);
    }
    md_conv2d_params p;
    if (!md_conv2d_init(&p, N, c->ic, H, W, c->oc, c->k, c->k, c->stride, c->pad, 1))
        return md_set_error(MD_ERR_SHAPE, "conv %dx%d on a %dx%d input gives an empty output", c->k, c->k, H, W);
    md_param *P = det->params;
    size_t no = (size_t)N * c->oc * p.OH * p.OW;
    float *x = md_arena_floats(a, no), *mean = md_arena_floats(a, (size_t)c->oc), *invstd = md_arena_floats(a, (size_t)c->oc);
    if (!x || !mean || !invstd) return MD_ERR_NOMEM;
    size_t mark = md_arena_mark(a);
    size_t ns = md_conv2d_scratch_floats(&p);
    float *scratch = ns ? md_arena_floats(a, ns) : NULL;
    if (ns && !scratch) return MD_ERR_NOMEM;
    md_conv2d_forward(x, in, P[c->w].data, NULL, &p, scratch);
    md_arena_release(a, mark);
    if (!md_batchnorm_train_forward(out, mean, invstd, P[c->bn + 2].data, P[c->bn + 3].data, x, P[c->bn].data,
                                    P[c->bn + 1].data, N, c->oc, p.OH * p.OW, 1e-5f, 0.1f))
        return md_set_error(MD_ERR_SHAPE, "%s: BatchNorm in training needs more than 1 value per channel (batch %d, %dx%d)",
                            P[c->bn].name, N, p.OH, p.OW);
    if (save) {
        save->x = x;
        save->mean = mean;
        save->invstd = invstd;
    }
    return MD_OK;
}

md_status md_conv_bn_backward_layer(md_detector *det, md_arena *a, const md_conv *c, float *din, const float *dout,
                                    const float *in, int N, int H, int W, const md_bn_act *save) {
    if (!c->bn_train || !save || !save->x) return md_conv_backward_layer(det, a, c, din, dout, in, N, H, W);
    md_conv2d_params p;
    if (!md_conv2d_init(&p, N, c->ic, H, W, c->oc, c->k, c->k, c->stride, c->pad, 1))
        return md_set_error(MD_ERR_INTERNAL, "conv backward: bad geometry");
    md_param *P = det->params;
    size_t mark = md_arena_mark(a);
    size_t no = (size_t)N * c->oc * p.OH * p.OW;
    float *dx = md_arena_calloc(a, no * sizeof(float));
    size_t ns = md_conv2d_scratch_floats(&p);
    float *scratch = ns ? md_arena_floats(a, ns) : NULL;
    if (!dx || (ns && !scratch)) return MD_ERR_NOMEM;
    md_batchnorm_train_backward(dx, P[c->bn].grad, P[c->bn + 1].grad, dout, save->x, save->mean, save->invstd,
                                P[c->bn].data, N, c->oc, p.OH * p.OW);
    md_conv2d_backward(din, P[c->w].grad, NULL, dx, in, P[c->w].data, &p, scratch);
    md_arena_release(a, mark);
    return MD_OK;
}

md_status md_conv_forward_layer(md_detector *det, md_arena *a, const md_conv *c, const float *in, int N, int H, int W,
                                float **out, int *OH, int *OW) {
    int oh = md_conv_out(H, c->k, c->stride, c->pad), ow = md_conv_out(W, c->k, c->stride, c->pad);
    if (oh < 1 || ow < 1)
        return md_set_error(MD_ERR_SHAPE, "conv %dx%d on a %dx%d input gives an empty output", c->k, c->k, H, W);
    float *o = md_arena_floats(a, (size_t)N * c->oc * oh * ow);
    if (!o) return MD_ERR_NOMEM;
    md_status s = md_conv_forward_into(det, a, c, in, N, H, W, o);
    if (s) return s;
    *out = o;
    *OH = oh;
    *OW = ow;
    return MD_OK;
}

md_status md_conv_backward_layer(md_detector *det, md_arena *a, const md_conv *c, float *din, const float *dout,
                                 const float *in, int N, int H, int W) {
    if (!c->trainable && !din) return MD_OK;
    md_conv2d_params p;
    if (!md_conv2d_init(&p, N, c->ic, H, W, c->oc, c->k, c->k, c->stride, c->pad, 1))
        return md_set_error(MD_ERR_INTERNAL, "conv backward: bad geometry");
    size_t mark = md_arena_mark(a);
    size_t ns = md_conv2d_scratch_floats(&p);
    float *scratch = ns ? md_arena_floats(a, ns) : NULL;
    if (ns && !scratch) return MD_ERR_NOMEM;
    md_param *P = det->params;
    if (!c->trainable) {
        md_conv2d_backward(din, NULL, NULL, dout, in, c->wf, &p, scratch);
    } else if (c->bn < 0) {
        md_conv2d_backward(din, P[c->w].grad, c->b >= 0 ? P[c->b].grad : NULL, dout, in, c->wf, &p, scratch);
    } else {
        /* folded weight wf = w * scale[oc]: d w = d wf * scale[oc]; the BN itself is frozen */
        size_t K = (size_t)c->ic * c->k * c->k;
        float *dwf = md_arena_calloc(a, (size_t)c->oc * K * sizeof(float));
        if (!dwf) return MD_ERR_NOMEM;
        md_conv2d_backward(din, dwf, NULL, dout, in, c->wf, &p, scratch);
        float *g = P[c->w].grad;
        for (int o = 0; o < c->oc; o++) {
            float s = c->scale[o];
            for (size_t i = 0; i < K; i++) g[(size_t)o * K + i] += dwf[(size_t)o * K + i] * s;
        }
    }
    md_arena_release(a, mark);
    return MD_OK;
}

/* ------------------------------------------------------------------ build */
md_status md_resnet_build(md_detector *det) {
    md_resnet *r = &det->impl->resnet;
    const md_model_config *m = &det->model;
    static const int L18[4] = {2, 2, 2, 2}, L34[4] = {3, 4, 6, 3}, L101[4] = {3, 4, 23, 3};
    const int *layers;
    switch (m->depth) {
    case 18: layers = L18; break;
    case 34: case 50: layers = L34; break;
    case 101: layers = L101; break;
    default: return md_set_error(MD_ERR_ARG, "model.depth = %d: supported depths are 18, 34, 50, 101", m->depth);
    }
    if (!(m->width_mult > 0.0f && m->width_mult <= 8.0f))
        return md_set_error(MD_ERR_ARG, "model.width_mult = %g: must be in (0, 8]", (double)m->width_mult);
    if (m->trainable_layers < 0 || m->trainable_layers > 5)
        return md_set_error(MD_ERR_ARG, "model.trainable_layers = %d: must be 0..5", m->trainable_layers);
    r->depth = m->depth;
    r->bottleneck = m->depth >= 50;
    int tl = m->trainable_layers;
    r->lowest_trainable = 5 - tl; /* layers trained = last tl of [layer4, layer3, layer2, layer1, conv1] */
    int stem_ch = planes_of(m, 0);
    md_status s;
    r->vd = m->vd != 0;
    if (r->vd) { /* deep stem (timm stem_type='deep', stem_width 32) */
        int sw = scaled(32, m->width_mult);
        if ((s = md_reg_conv(det, &r->stem_vd[0], "backbone.body.conv1.0", "backbone.body.conv1.1", 3, sw, 3, 2, 1, 0, tl == 5)) ||
            (s = md_reg_conv(det, &r->stem_vd[1], "backbone.body.conv1.3", "backbone.body.conv1.4", sw, sw, 3, 1, 1, 0, tl == 5)) ||
            (s = md_reg_conv(det, &r->stem, "backbone.body.conv1.6", "backbone.body.bn1", sw, stem_ch, 3, 1, 1, 0, tl == 5)))
            return s;
    } else {
        s = md_reg_conv(det, &r->stem, "backbone.body.conv1", "backbone.body.bn1", 3, stem_ch, 7, 2, 3, 0, tl == 5);
        if (s) return s;
    }
    r->nblocks = layers[0] + layers[1] + layers[2] + layers[3];
    r->blocks = calloc((size_t)r->nblocks, sizeof(md_block));
    if (!r->blocks) return md_set_error(MD_ERR_NOMEM, "resnet: out of memory");
    int inpl = stem_ch, bi = 0;
    char pre[128], bnp[128];
    for (int st = 0; st < 4; st++) {
        int planes = planes_of(m, st), exp = r->bottleneck ? 4 : 1;
        int trainable = (st + 1) >= r->lowest_trainable;
        for (int j = 0; j < layers[st]; j++, bi++) {
            md_block *b = &r->blocks[bi];
            b->stage = st + 1;
            b->first = j == 0;
            b->bottleneck = r->bottleneck;
            int stride = (j == 0 && st > 0) ? 2 : 1;
#define REG(conv, name, bn, ic, oc, k, strd, pad)                                                   \
    do {                                                                                            \
        snprintf(pre, sizeof pre, "backbone.body.layer%d.%d.%s", st + 1, j, name);                  \
        snprintf(bnp, sizeof bnp, "backbone.body.layer%d.%d.%s", st + 1, j, bn);                    \
        if ((s = md_reg_conv(det, &b->conv, pre, bnp, ic, oc, k, strd, pad, 0, trainable))) return s; \
    } while (0)
            if (r->bottleneck) {
                REG(c1, "conv1", "bn1", inpl, planes, 1, 1, 0);
                REG(c2, "conv2", "bn2", planes, planes, 3, stride, 1);
                REG(c3, "conv3", "bn3", planes, planes * 4, 1, 1, 0);
            } else {
                REG(c1, "conv1", "bn1", inpl, planes, 3, stride, 1);
                REG(c2, "conv2", "bn2", planes, planes, 3, 1, 1);
            }
            if (j == 0 && (stride != 1 || inpl != planes * exp)) {
                b->has_down = 1;
                if (r->vd) { /* timm downsample_avg: .0 pool (Identity at stride 1), .1 conv, .2 bn */
                    b->down_pool = stride != 1;
                    REG(down, "downsample.1", "downsample.2", inpl, planes * exp, 1, 1, 0);
                } else {
                    REG(down, "downsample.0", "downsample.1", inpl, planes * exp, 1, stride, 0);
                }
            }
#undef REG
            inpl = planes * exp;
        }
        r->out_ch[st] = inpl;
    }
    return MD_OK;
}

/* ------------------------------------------------------------------ forward */

/* ResNet-vd shortcut pool: *src = avgpool2d(x, k 2, stride 2, ceil_mode, count_include_pad = 0) in arena
 * memory, N x ic x sh x sw; without down_pool *src = x unchanged. */
static md_status shortcut_pool(md_arena *a, const md_block *b, const float *x, int N, int H, int W, const float **src, int *sh,
                               int *sw) {
    *src = x;
    *sh = H;
    *sw = W;
    if (!b->down_pool) return MD_OK;
    int oh = md_avgpool2d_out(H, 2, 2, 0, 1), ow = md_avgpool2d_out(W, 2, 2, 0, 1);
    float *p = md_arena_floats(a, (size_t)N * b->down.ic * oh * ow);
    if (!p) return MD_ERR_NOMEM;
    md_avgpool2d_forward(p, x, N, b->down.ic, H, W, 2, 2, 0, 0, oh, ow);
    *src = p;
    *sh = oh;
    *sw = ow;
    return MD_OK;
}

/* Output size of a block on an H x W input: conv1, then conv2 (conv3 of a bottleneck is 1x1 stride 1). */
static md_status block_out_shape(const md_block *b, int H, int W, int *h1, int *w1, int *ho, int *wo) {
    *h1 = md_conv_out(H, b->c1.k, b->c1.stride, b->c1.pad);
    *w1 = md_conv_out(W, b->c1.k, b->c1.stride, b->c1.pad);
    *ho = md_conv_out(*h1, b->c2.k, b->c2.stride, b->c2.pad);
    *wo = md_conv_out(*w1, b->c2.k, b->c2.stride, b->c2.pad);
    if (*h1 < 1 || *w1 < 1 || *ho < 1 || *wo < 1) return md_set_error(MD_ERR_SHAPE, "resnet block on a %dx%d input", H, W);
    return MD_OK;
}

/* One residual block. keep = 1 stores t1/t2 for backward; keep = 0 computes them in scratch memory
 * released before returning, so only the block output stays in the arena. out: where the output goes
 * (N x oc x ho x wo), or NULL to allocate it in the arena. */
static md_status block_forward(md_detector *det, md_arena *a, const md_block *b, md_block_act *ba, const float *x, int N,
                               int H, int W, int keep, int training, float *out) {
    const md_conv *lc = b->bottleneck ? &b->c3 : &b->c2;
    int h1, w1, ho, wo;
    MD_TRY(block_out_shape(b, H, W, &h1, &w1, &ho, &wo));
    int h2 = ho, w2 = wo;
    size_t no = (size_t)N * lc->oc * ho * wo;
    ba->in = x;
    ba->H = H;
    ba->W = W;
    ba->H1 = h1;
    ba->W1 = w1;
    ba->OH = ho;
    ba->OW = wo;
    ba->out = out ? out : md_arena_floats(a, no);
    if (!ba->out) return MD_ERR_NOMEM;
    size_t mark = md_arena_mark(a);
    float *t1 = md_arena_floats(a, (size_t)N * b->c1.oc * h1 * w1);
    if (!t1) return MD_ERR_NOMEM;
    MD_TRY(md_conv_bn_forward_into(det, a, &b->c1, x, N, H, W, t1, training, &ba->bn[0]));
    md_relu_forward(t1, t1, (size_t)N * b->c1.oc * h1 * w1);
    float *t2 = NULL;
    if (b->bottleneck) {
        t2 = md_arena_floats(a, (size_t)N * b->c2.oc * h2 * w2);
        if (!t2) return MD_ERR_NOMEM;
        MD_TRY(md_conv_bn_forward_into(det, a, &b->c2, t1, N, h1, w1, t2, training, &ba->bn[1]));
        md_relu_forward(t2, t2, (size_t)N * b->c2.oc * h2 * w2);
        MD_TRY(md_conv_bn_forward_into(det, a, &b->c3, t2, N, h2, w2, ba->out, training, &ba->bn[2]));
    } else {
        MD_TRY(md_conv_bn_forward_into(det, a, &b->c2, t1, N, h1, w1, ba->out, training, &ba->bn[1]));
    }
    if (b->has_down) {
        size_t m2 = md_arena_mark(a);
        float *idn = md_arena_floats(a, no);
        if (!idn) return MD_ERR_NOMEM;
        const float *src = x;
        int sh = H, sw = W;
        MD_TRY(shortcut_pool(a, b, x, N, H, W, &src, &sh, &sw));
        if (md_conv_out(sh, 1, b->down.stride, 0) != ho || md_conv_out(sw, 1, b->down.stride, 0) != wo)
            return md_set_error(MD_ERR_INTERNAL, "resnet shortcut: %dx%d vs main path %dx%d", sh, sw, ho, wo);
        MD_TRY(md_conv_bn_forward_into(det, a, &b->down, src, N, sh, sw, idn, training, &ba->bn[3]));
        md_add_relu_forward(ba->out, ba->out, idn, no);
        if (!keep) md_arena_release(a, m2); /* kept: the training BN's saved input lies above idn */
    } else {
        md_add_relu_forward(ba->out, ba->out, x, no);
    }
    if (keep) {
        ba->t1 = t1;
        ba->t2 = t2;
    } else {
        ba->t1 = ba->t2 = NULL;
        md_arena_release(a, mark);
    }
    return MD_OK;
}

md_status md_resnet_forward(md_detector *det, md_arena *a, md_step *st) {
    md_resnet *r = &det->impl->resnet;
    md_step_saved *sv = st->saved;
    int N = st->N;
    const md_conv *c = &r->stem;
    int C0 = c->oc;
    const md_conv *c0 = r->vd ? &r->stem_vd[0] : c; /* the stride-2 conv on the image */
    sv->sH = md_conv_out(st->H, c0->k, c0->stride, c0->pad);
    sv->sW = md_conv_out(st->W, c0->k, c0->stride, c0->pad);
    sv->pH = md_conv_out(sv->sH, 3, 2, 1);
    sv->pW = md_conv_out(sv->sW, 3, 2, 1);
    size_t ns = (size_t)N * C0 * sv->sH * sv->sW, np = (size_t)N * C0 * sv->pH * sv->pW;
    int keep_stem = st->training && r->lowest_trainable == 0;
    sv->pool = md_arena_floats(a, np);
    sv->argmax = md_arena_alloc(a, np * sizeof(int32_t));
    if (!sv->pool || !sv->argmax) return MD_ERR_NOMEM;
    size_t mark = md_arena_mark(a);
    sv->stem = md_arena_floats(a, ns);
    if (!sv->stem) return MD_ERR_NOMEM;
    if (r->vd) { /* deep stem: conv1.0 (stride 2) + ReLU, conv1.3 + ReLU, then conv1.6 below */
        const float *x = sv->images;
        int h = st->H, w = st->W;
        for (int i = 0; i < 2; i++) {
            const md_conv *ci = &r->stem_vd[i];
            size_t n = (size_t)N * ci->oc * sv->sH * sv->sW;
            if (!(sv->stem_vd[i] = md_arena_floats(a, n))) return MD_ERR_NOMEM;
            MD_TRY(md_conv_bn_forward_into(det, a, ci, x, N, h, w, sv->stem_vd[i], st->training, &sv->stem_vd_bn[i]));
            md_relu_forward(sv->stem_vd[i], sv->stem_vd[i], n);
            x = sv->stem_vd[i];
            h = sv->sH;
            w = sv->sW;
        }
        MD_TRY(md_conv_bn_forward_into(det, a, c, x, N, h, w, sv->stem, st->training, &sv->stem_bn));
    } else {
        MD_TRY(md_conv_bn_forward_into(det, a, c, sv->images, N, st->H, st->W, sv->stem, st->training, &sv->stem_bn));
    }
    md_relu_forward(sv->stem, sv->stem, ns);
    md_maxpool2d_forward(sv->pool, sv->argmax, sv->stem, N, C0, sv->sH, sv->sW, 3, 2, 1, sv->pH, sv->pW);
    if (!keep_stem) {
        sv->stem = sv->stem_vd[0] = sv->stem_vd[1] = NULL;
        md_arena_release(a, mark);
    }
    const float *x = sv->pool;
    int H = sv->pH, W = sv->pW;
    sv->blk = md_arena_calloc(a, (size_t)r->nblocks * sizeof(md_block_act));
    if (!sv->blk) return MD_ERR_NOMEM;
    for (int i = 0; i < r->nblocks;) {
        int stage = r->blocks[i].stage, end = i;
        while (end < r->nblocks && r->blocks[end].stage == stage) end++;
        int keep = st->training && stage >= r->lowest_trainable;
        /* A stage without backward (inference, frozen stages) needs only its last output later (the
         * FPN's C and the next stage's input): the blocks before it write into two buffers in turn,
         * released after the stage, instead of one arena buffer each (at 800x1333 this keeps ~340 MB
         * of ResNet-50 block outputs out of the peak). Outputs of a stage's blocks all have the size
         * of its first block's. */
        float *stage_out = NULL, *pingpong[2] = {NULL, NULL};
        size_t mark = md_arena_mark(a);
        if (!keep && end - i > 1) {
            const md_block *b0 = &r->blocks[i];
            int h1, w1, ho, wo;
            MD_TRY(block_out_shape(b0, H, W, &h1, &w1, &ho, &wo));
            size_t no = (size_t)N * (b0->bottleneck ? b0->c3.oc : b0->c2.oc) * ho * wo;
            if (!(stage_out = md_arena_floats(a, no))) return MD_ERR_NOMEM;
            mark = md_arena_mark(a);
            for (int k = 0; k < 2 && k < end - i - 1; k++)
                if (!(pingpong[k] = md_arena_floats(a, no))) return MD_ERR_NOMEM;
        }
        for (int j = i; j < end; j++) {
            md_block_act *ba = &sv->blk[j];
            float *out = j + 1 == end ? stage_out : pingpong[(j - i) & 1];
            MD_TRY(block_forward(det, a, &r->blocks[j], ba, x, N, H, W, keep, st->training, out));
            x = ba->out;
            H = ba->OH;
            W = ba->OW;
        }
        if (stage_out) md_arena_release(a, mark);
        sv->C[stage - 1] = (float *)x;
        sv->cH[stage - 1] = H;
        sv->cW[stage - 1] = W;
        i = end;
    }
    return MD_OK;
}

/* ------------------------------------------------------------------ backward
 * dC[s] (N x out_ch[s] x cH x cW) are the gradients from the FPN for the trainable stages (modified). */
md_status md_resnet_backward(md_detector *det, md_arena *a, md_step *st, float *dC[4], uint8_t *reported) {
    md_resnet *r = &det->impl->resnet;
    md_step_saved *sv = st->saved;
    int N = st->N;
    int low = r->lowest_trainable;
    if (low > 4) return MD_OK;
    float *dx_next = NULL; /* gradient w.r.t. the output of block i (accumulated from above) */
    for (int i = r->nblocks - 1; i >= 0; i--) {
        md_block *b = &r->blocks[i];
        md_block_act *ba = &sv->blk[i];
        if (b->stage < low) break;
        int last_of_stage = (i + 1 == r->nblocks) || r->blocks[i + 1].stage != b->stage;
        const md_conv *lc = b->bottleneck ? &b->c3 : &b->c2;
        size_t no = (size_t)N * lc->oc * ba->OH * ba->OW;
        float *dout = last_of_stage ? dC[b->stage - 1] : dx_next;
        /* need the gradient of this block's input? */
        int need_din = !(b->stage == low && b->first);
        size_t nin = (size_t)N * b->c1.ic * ba->H * ba->W;
        float *din = NULL;
        if (need_din) {
            din = md_arena_calloc(a, nin * sizeof(float));
            if (!din) return MD_ERR_NOMEM;
        }
        size_t mark = md_arena_mark(a);
        /* ReLU backwards in place: dout (ours: dC from the FPN or the next block's din) becomes dz, and
         * each conv's input gradient becomes the gradient of the ReLU before it */
        float *dz = dout;
        md_add_relu_backward_inplace(dz, last_of_stage ? dx_next : NULL, ba->out, no);
        size_t n1 = (size_t)N * b->c1.oc * ba->H1 * ba->W1;
        float *dt1 = md_arena_calloc(a, n1 * sizeof(float));
        if (!dt1) return MD_ERR_NOMEM;
        if (b->bottleneck) {
            size_t n2 = (size_t)N * b->c2.oc * ba->OH * ba->OW;
            float *dt2 = md_arena_calloc(a, n2 * sizeof(float));
            if (!dt2) return MD_ERR_NOMEM;
            MD_TRY(md_conv_bn_backward_layer(det, a, &b->c3, dt2, dz, ba->t2, N, ba->OH, ba->OW, &ba->bn[2]));
            md_relu_backward_inplace(dt2, ba->t2, n2);
            MD_TRY(md_conv_bn_backward_layer(det, a, &b->c2, dt1, dt2, ba->t1, N, ba->H1, ba->W1, &ba->bn[1]));
        } else {
            MD_TRY(md_conv_bn_backward_layer(det, a, &b->c2, dt1, dz, ba->t1, N, ba->H1, ba->W1, &ba->bn[1]));
        }
        md_relu_backward_inplace(dt1, ba->t1, n1);
        MD_TRY(md_conv_bn_backward_layer(det, a, &b->c1, din, dt1, ba->in, N, ba->H, ba->W, &ba->bn[0]));
        if (b->has_down && b->down_pool) { /* ResNet-vd: the pooled input is recomputed (cheap), not kept */
            const float *pooled;
            int sh, sw;
            MD_TRY(shortcut_pool(a, b, ba->in, N, ba->H, ba->W, &pooled, &sh, &sw));
            float *dpool = NULL;
            if (din && !(dpool = md_arena_calloc(a, (size_t)N * b->down.ic * sh * sw * sizeof(float)))) return MD_ERR_NOMEM;
            MD_TRY(md_conv_bn_backward_layer(det, a, &b->down, dpool, dz, pooled, N, sh, sw, &ba->bn[3]));
            md_avgpool2d_backward(din, dpool, N, b->down.ic, ba->H, ba->W, 2, 2, 0, 0, sh, sw);
        } else if (b->has_down) {
            MD_TRY(md_conv_bn_backward_layer(det, a, &b->down, din, dz, ba->in, N, ba->H, ba->W, &ba->bn[3]));
        } else if (din) {
            md_add_forward(din, din, dz, nin);
        }
        md_arena_release(a, mark);
        dx_next = din;
        if (b->first) { /* the stage's first block: every gradient of the stage is final */
            char pre[48];
            snprintf(pre, sizeof pre, "backbone.body.layer%d.", b->stage);
            MD_TRY(md_grads_final(det, reported, pre));
        }
    }
    if (low == 0 && dx_next) {
        /* stem: maxpool, relu, conv1 (no gradient to the image) */
        const md_conv *c = &r->stem;
        size_t ns = (size_t)N * c->oc * sv->sH * sv->sW;
        float *dstem = md_arena_calloc(a, ns * sizeof(float));
        float *dstem_r = md_arena_calloc(a, ns * sizeof(float));
        if (!dstem || !dstem_r) return MD_ERR_NOMEM;
        md_maxpool2d_backward(dstem, dx_next, sv->argmax, N, c->oc, sv->sH, sv->sW, sv->pH, sv->pW);
        md_relu_backward(dstem_r, dstem, sv->stem, ns);
        if (r->vd) { /* conv1.6 <- ReLU <- conv1.3 <- ReLU <- conv1.0 <- image (no gradient to the image) */
            float *dy = dstem_r;
            for (int i = 1; i >= 0; i--) { /* conv i + 1 of the stem (conv1.6, then conv1.3) reads stem_vd[i] */
                const md_conv *cn = i == 1 ? c : &r->stem_vd[1];
                const md_bn_act *bn = i == 1 ? &sv->stem_bn : &sv->stem_vd_bn[1];
                size_t n = (size_t)N * r->stem_vd[i].oc * sv->sH * sv->sW;
                float *dx = md_arena_calloc(a, n * sizeof(float)), *dxr = md_arena_calloc(a, n * sizeof(float));
                if (!dx || !dxr) return MD_ERR_NOMEM;
                MD_TRY(md_conv_bn_backward_layer(det, a, cn, dx, dy, sv->stem_vd[i], N, sv->sH, sv->sW, bn));
                md_relu_backward(dxr, dx, sv->stem_vd[i], n);
                dy = dxr;
            }
            MD_TRY(md_conv_bn_backward_layer(det, a, &r->stem_vd[0], NULL, dy, sv->images, N, st->H, st->W, &sv->stem_vd_bn[0]));
        } else {
            MD_TRY(md_conv_bn_backward_layer(det, a, c, NULL, dstem_r, sv->images, N, st->H, st->W, &sv->stem_bn));
        }
    }
    return MD_OK;
}
