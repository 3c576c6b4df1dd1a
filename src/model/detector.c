/* detector.c — md_detector: parameter registry, torchvision-style initialisation, and the stage
 * functions that chain ResNet, FPN, RPN and RoI heads (weight files: weights.c). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "minidet/rng.h"
#include "model_internal.h"


/* ------------------------------------------------------------------ registry */
int md_reg_add(md_detector *det, const char *name, int ndim, const int *shape, int trainable, int is_buffer) {
    if ((det->num_params & 63) == 0) {
        md_param *np = realloc(det->params, (size_t)(det->num_params + 64) * sizeof(md_param));
        if (!np) {
            md_set_error(MD_ERR_NOMEM, "detector: out of memory for the parameter registry");
            return -1;
        }
        det->params = np;
    }
    md_param *p = &det->params[det->num_params];
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "%s", name);
    p->ndim = ndim;
    p->numel = 1;
    for (int i = 0; i < ndim; i++) {
        p->shape[i] = shape[i];
        p->numel *= (size_t)shape[i];
    }
    p->trainable = trainable && !is_buffer;
    p->weight_decay = p->trainable;
    p->is_buffer = is_buffer;
    return det->num_params++;
}

md_status md_reg_conv(md_detector *det, md_conv *c, const char *prefix, const char *bn_prefix, int ic, int oc, int k,
                      int stride, int pad, int bias, int trainable) {
    char nm[MD_PARAM_NAME_MAX + 32];
    memset(c, 0, sizeof *c);
    c->ic = ic;
    c->oc = oc;
    c->k = k;
    c->stride = stride;
    c->pad = pad;
    c->trainable = trainable;
    c->b = c->bn = -1;
    int s4[4] = {oc, ic, k, k};
    snprintf(nm, sizeof nm, "%s.weight", prefix);
    if ((c->w = md_reg_add(det, nm, 4, s4, trainable, 0)) < 0) return MD_ERR_NOMEM;
    if (bias) {
        snprintf(nm, sizeof nm, "%s.bias", prefix);
        if ((c->b = md_reg_add(det, nm, 1, s4, trainable, 0)) < 0) return MD_ERR_NOMEM;
    }
    if (bn_prefix) {
        static const char *f[4] = {"weight", "bias", "running_mean", "running_var"};
        /* norm = bn: the BN affine of a trainable conv is trained; running statistics stay buffers */
        c->bn_train = trainable && det->model.norm == MD_NORM_BN;
        for (int i = 0; i < 4; i++) {
            snprintf(nm, sizeof nm, "%s.%s", bn_prefix, f[i]);
            int learn = c->bn_train && i < 2;
            int idx = md_reg_add(det, nm, 1, s4, learn, !learn);
            if (idx < 0) return MD_ERR_NOMEM;
            if (i == 0) c->bn = idx;
        }
    }
    return MD_OK;
}

/* every conv of the network, for folding and pointer set-up */
static int all_convs(md_detector *det, md_conv **out, int cap) {
    md_detector_impl *im = det->impl;
    int n = 0;
#define PUT(c) do { if (n < cap) out[n] = (c); n++; } while (0)
    if (im->resnet.vd) {
        PUT(&im->resnet.stem_vd[0]);
        PUT(&im->resnet.stem_vd[1]);
    }
    PUT(&im->resnet.stem);
    for (int i = 0; i < im->resnet.nblocks; i++) {
        md_block *b = &im->resnet.blocks[i];
        PUT(&b->c1);
        PUT(&b->c2);
        if (b->bottleneck) PUT(&b->c3);
        if (b->has_down) PUT(&b->down);
    }
    for (int i = 0; i < 4; i++) PUT(&im->fpn.inner[i]);
    for (int i = 0; i < 4; i++) PUT(&im->fpn.layer[i]);
    PUT(&im->rpn.conv);
    PUT(&im->rpn.cls);
    PUT(&im->rpn.bbox);
#undef PUT
    return n;
}

static void refold(md_detector *det, int trainable_only) {
    md_conv *cv[512];
    int n = all_convs(det, cv, 512);
    for (int i = 0; i < n && i < 512; i++)
        if (cv[i]->bn >= 0 && (!trainable_only || cv[i]->trainable)) md_conv_fold(det, cv[i]);
}

void md_detector_refold(md_detector *det) { refold(det, 0); }

/* ------------------------------------------------------------------ initialisation (torchvision 0.14) */
static void init_params(md_detector *det, unsigned long long seed) {
    md_rng r = md_rng_make(seed, MD_STREAM_INIT);
    for (int i = 0; i < det->num_params; i++) {
        md_param *p = &det->params[i];
        const char *nm = p->name;
        size_t len = strlen(nm);
        int is_bias = len > 5 && !strcmp(nm + len - 5, ".bias");
        if (p->is_buffer) {
            float v = (strstr(nm, ".weight") || strstr(nm, "running_var")) ? 1.0f : 0.0f;
            for (size_t j = 0; j < p->numel; j++) p->data[j] = v;
        } else if (!strncmp(nm, "backbone.body.", 14) && p->ndim == 1) { /* trained BatchNorm2d: weight 1, bias 0 */
            for (size_t j = 0; j < p->numel; j++) p->data[j] = is_bias ? 0.0f : 1.0f;
        } else if (!strncmp(nm, "backbone.body.", 14)) { /* kaiming_normal_(fan_out, relu) */
            float sd = sqrtf(2.0f / (float)(p->shape[0] * p->shape[2] * p->shape[3]));
            for (size_t j = 0; j < p->numel; j++) p->data[j] = sd * md_rng_normal(&r);
        } else if (!strncmp(nm, "backbone.fpn.", 13)) { /* kaiming_uniform_(a=1), bias 0 */
            float bound = is_bias ? 0.0f : sqrtf(3.0f / (float)(p->shape[1] * p->shape[2] * p->shape[3]));
            for (size_t j = 0; j < p->numel; j++) p->data[j] = bound * (2.0f * md_rng_uniform(&r) - 1.0f);
        } else if (!strncmp(nm, "rpn.", 4)) { /* normal(std 0.01), bias 0 */
            for (size_t j = 0; j < p->numel; j++) p->data[j] = is_bias ? 0.0f : 0.01f * md_rng_normal(&r);
        } else { /* nn.Linear defaults: U(+-1/sqrt(fan_in)) for weight and bias */
            int fan_in = is_bias ? det->params[i - 1].shape[1] : p->shape[1];
            float bound = 1.0f / sqrtf((float)fan_in);
            for (size_t j = 0; j < p->numel; j++) p->data[j] = bound * (2.0f * md_rng_uniform(&r) - 1.0f);
        }
    }
}

/* ------------------------------------------------------------------ create / free */
md_status md_detector_create(md_detector *det, const md_config *cfg) {
    memset(det, 0, sizeof *det);
    for (int l = 0; l < MD_RPN_ANCHOR_LEVELS; l++)
        if (!(cfg->rpn.anchor_sizes[l] > 0.0f) || !isfinite(cfg->rpn.anchor_sizes[l]))
            return md_set_error(MD_ERR_ARG, "detector: [rpn] anchor_sizes[%d] = %g must be a positive size in pixels",
                                l, (double)cfg->rpn.anchor_sizes[l]);
    int nr = cfg->rpn.num_aspect_ratios;
    if (nr < 1 || nr > MD_RPN_MAX_RATIOS)
        return md_set_error(MD_ERR_ARG, "detector: [rpn] aspect_ratios has %d values (1..%d)", nr, MD_RPN_MAX_RATIOS);
    for (int i = 0; i < nr; i++)
        if (!(cfg->rpn.aspect_ratios[i] > 0.0f) || !isfinite(cfg->rpn.aspect_ratios[i]))
            return md_set_error(MD_ERR_ARG, "detector: [rpn] aspect_ratios[%d] = %g must be a positive ratio", i,
                                (double)cfg->rpn.aspect_ratios[i]);
    det->model = cfg->model;
    det->rpn = cfg->rpn;
    det->roi = cfg->roi_heads;
    det->test = cfg->test;
    det->impl = calloc(1, sizeof(md_detector_impl));
    if (!det->impl) return md_set_error(MD_ERR_NOMEM, "detector: out of memory");
    md_status s;
    if ((s = md_resnet_build(det)) || (s = md_fpn_build(det)) || (s = md_rpn_build(det)) ||
        (s = md_box_head_build(det))) {
        md_detector_free(det);
        return s;
    }
    size_t total = 0, tr = 0;
    for (int i = 0; i < det->num_params; i++) {
        total += det->params[i].numel;
        if (det->params[i].trainable) tr += det->params[i].numel;
    }
    det->num_trainable_floats = tr;
    md_conv *cv[512];
    int nc = all_convs(det, cv, 512);
    if (nc > 512) {
        md_detector_free(det);
        return md_set_error(MD_ERR_INTERNAL, "detector: too many convolutions (%d)", nc);
    }
    size_t fold = 0;
    for (int i = 0; i < nc; i++)
        if (cv[i]->bn >= 0) fold += (size_t)cv[i]->oc * cv[i]->ic * cv[i]->k * cv[i]->k + 2 * (size_t)cv[i]->oc;
    float *data = malloc((total + 1) * sizeof(float));
    float *grad = calloc(tr + 1, sizeof(float));
    float *fb = malloc((fold + 1) * sizeof(float));
    if (!data || !grad || !fb) {
        free(data);
        free(grad);
        free(fb);
        md_detector_free(det);
        return md_set_error(MD_ERR_NOMEM, "detector: out of memory for %zu parameters", total);
    }
    size_t o = 0, g = 0;
    for (int i = 0; i < det->num_params; i++) {
        md_param *p = &det->params[i];
        p->data = data + o;
        o += p->numel;
        if (p->trainable) {
            p->grad = grad + g;
            g += p->numel;
        }
    }
    det->impl->fold_block = fb;
    det->impl->fold_floats = fold;
    size_t f = 0;
    for (int i = 0; i < nc; i++) {
        md_conv *c = cv[i];
        if (c->bn >= 0) {
            c->wf = fb + f;
            f += (size_t)c->oc * c->ic * c->k * c->k;
            c->bf = fb + f;
            f += (size_t)c->oc;
            c->scale = fb + f;
            f += (size_t)c->oc;
        } else {
            c->wf = det->params[c->w].data;
            c->bf = c->b >= 0 ? det->params[c->b].data : NULL;
        }
    }
    init_params(det, cfg->run.seed);
    refold(det, 0);
    return MD_OK;
}

void md_detector_free(md_detector *det) {
    if (!det) return;
    if (det->num_params > 0 && det->params) {
        free(det->params[0].data);
        for (int i = 0; i < det->num_params; i++)
            if (det->params[i].grad) {
                free(det->params[i].grad);
                break;
            }
    }
    free(det->params);
    if (det->impl) {
        free(det->impl->resnet.blocks);
        free(det->impl->fold_block);
        free(det->impl);
    }
    memset(det, 0, sizeof *det);
}

md_param *md_detector_param(md_detector *det, const char *name) {
    for (int i = 0; i < det->num_params; i++)
        if (!strcmp(det->params[i].name, name)) return &det->params[i];
    return NULL;
}

void md_detector_zero_grad(md_detector *det) {
    for (int i = 0; i < det->num_params; i++)
        if (det->params[i].grad) {
            /* grads are one contiguous block starting at the first trainable param */
            memset(det->params[i].grad, 0, det->num_trainable_floats * sizeof(float));
            return;
        }
}

/* ------------------------------------------------------------------ stages */
md_status md_detector_forward_rpn(md_detector *det, md_arena *a, const float *images, int N, int H, int W,
                                  const int *image_sizes, int training, md_step *st) {
    if (N < 1 || N > MD_MAX_BATCH) return md_set_error(MD_ERR_ARG, "detector: batch of %d images (1..%d)", N, MD_MAX_BATCH);
    if (H < 32 || W < 32) return md_set_error(MD_ERR_ARG, "detector: padded batch %dx%d is smaller than 32x32", H, W);
    memset(st, 0, sizeof *st);
    st->N = N;
    st->H = H;
    st->W = W;
    st->training = training;
    for (int n = 0; n < N; n++) {
        int h = image_sizes[2 * n], w = image_sizes[2 * n + 1];
        if (h < 1 || w < 1 || h > H || w > W)
            return md_set_error(MD_ERR_ARG, "detector: image %d: size %dx%d outside the padded batch %dx%d", n, h, w, H, W);
        st->image_h[n] = h;
        st->image_w[n] = w;
    }
    st->saved = md_arena_calloc(a, sizeof(md_step_saved));
    if (!st->saved) return MD_ERR_NOMEM;
    st->saved->images = images;
    refold(det, 1);
    MD_TRY(md_resnet_forward(det, a, st));
    MD_TRY(md_fpn_forward(det, a, st));
    MD_TRY(md_rpn_forward(det, a, st));
    return MD_OK;
}

md_status md_detector_backward(md_detector *det, md_arena *a, md_step *st, const float *d_objectness,
                               const float *d_rpn_deltas, const float *d_class_logits, const float *d_box_deltas) {
    if (!st->saved || !st->training)
        return md_set_error(MD_ERR_ARG, "detector backward: the step was not run with training = 1");
    int N = st->N, F = st->fpn_channels;
    float *dP[MD_FPN_LEVELS];
    for (int l = 0; l < MD_FPN_LEVELS; l++) {
        dP[l] = md_arena_calloc(a, (size_t)N * F * st->level_h[l] * st->level_w[l] * sizeof(float));
        if (!dP[l]) return MD_ERR_NOMEM;
    }
    uint8_t *reported = NULL;
    if (det->on_grad_final && !(reported = md_arena_calloc(a, (size_t)det->num_params))) return MD_ERR_NOMEM;
    MD_TRY(md_roi_backward(det, a, st, d_class_logits, d_box_deltas, dP));
    MD_TRY(md_grads_final(det, reported, "roi_heads."));
    if (d_objectness || d_rpn_deltas) MD_TRY(md_rpn_backward(det, a, st, d_objectness, d_rpn_deltas, dP));
    MD_TRY(md_grads_final(det, reported, "rpn."));
    md_resnet *r = &det->impl->resnet;
    float *dC[4] = {NULL, NULL, NULL, NULL};
    for (int s = 0; s < 4; s++)
        if (s + 1 >= r->lowest_trainable) {
            dC[s] = md_arena_calloc(a, (size_t)N * r->out_ch[s] * st->saved->cH[s] * st->saved->cW[s] * sizeof(float));
            if (!dC[s]) return MD_ERR_NOMEM;
        }
    MD_TRY(md_fpn_backward(det, a, st, dP, dC));
    MD_TRY(md_grads_final(det, reported, "backbone.fpn."));
    MD_TRY(md_resnet_backward(det, a, st, dC, reported));
    return md_grads_final(det, reported, ""); /* the stem, and tensors no stage reported */
}

md_status md_grads_final(md_detector *det, uint8_t *reported, const char *prefix) {
    if (!det->on_grad_final || !reported) return MD_OK;
    size_t n = strlen(prefix);
    for (int i = 0; i < det->num_params; i++) {
        if (!det->params[i].trainable || reported[i] || strncmp(det->params[i].name, prefix, n)) continue;
        reported[i] = 1;
        MD_TRY(det->on_grad_final(det->on_grad_final_ctx, i));
    }
    return MD_OK;
}

md_status md_detector_infer(md_detector *det, md_arena *a, const float *images, int N, int H, int W,
                            const int *image_sizes, const int *orig_sizes, md_detections *out) {
    md_step st;
    MD_TRY(md_detector_forward_rpn(det, a, images, N, H, W, image_sizes, 0, &st));
    MD_TRY(md_detector_proposals(det, a, &st));
    int R = 0;
    for (int n = 0; n < N; n++) R += st.num_proposals[n];
    float *rois = md_arena_floats(a, (size_t)(R ? R : 1) * 5);
    if (!rois) return MD_ERR_NOMEM;
    int r = 0;
    for (int n = 0; n < N; n++)
        for (int j = 0; j < st.num_proposals[n]; j++, r++) {
            rois[(size_t)r * 5] = (float)n;
            memcpy(rois + (size_t)r * 5 + 1, st.proposals[n] + (size_t)j * 4, 4 * sizeof(float));
        }
    MD_TRY(md_detector_forward_roi(det, a, &st, rois, R));
    return md_detector_postprocess(det, a, &st, orig_sizes, out);
}
