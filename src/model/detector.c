/* detector.c — md_detector: parameter registry, torchvision-style initialisation, checkpoint
 * load/save, and the stage functions that chain ResNet, FPN, RPN and RoI heads. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "minidet/rng.h"
#include "minidet/safetensors.h"
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

/* ------------------------------------------------------------------ load / save */
/* Maps a file tensor name to the model's naming: old torchvision (<0.13) FPN / RPN names and bare ImageNet
 * ResNet keys. Returns 0 for tensors that are never model tensors (num_batches_tracked, fc.*, optimizer.*). */
static int canonical_name(const char *in, char *out, size_t n) {
    size_t len = strlen(in);
    if (len >= 19 && !strcmp(in + len - 19, "num_batches_tracked")) return 0;
    if (!strncmp(in, "optimizer.", 10) || !strncmp(in, "train.", 6) || !strncmp(in, "fc.", 3)) return 0;
    if (!strncmp(in, "conv1.", 6) || !strncmp(in, "bn1.", 4) || !strncmp(in, "layer", 5)) {
        snprintf(out, n, "backbone.body.%s", in);
        return 1;
    }
    if (!strcmp(in, "rpn.head.conv.weight") || !strcmp(in, "rpn.head.conv.bias")) {
        snprintf(out, n, "rpn.head.conv.0.0.%s", in + 14);
        return 1;
    }
    int idx;
    char kind[16], tail[16];
    if (sscanf(in, "backbone.fpn.%15[a-z_].%d.%15s", kind, &idx, tail) == 3 &&
        (!strcmp(tail, "weight") || !strcmp(tail, "bias"))) {
        snprintf(out, n, "backbone.fpn.%s.%d.0.%s", kind, idx, tail);
        return 1;
    }
    snprintf(out, n, "%s", in);
    return 1;
}

static void shape_str(char *buf, size_t n, int ndim, const int64_t *s64, const int *s32) {
    size_t o = 0;
    o += (size_t)snprintf(buf + o, n - o, "[");
    for (int i = 0; i < ndim && o < n; i++)
        o += (size_t)snprintf(buf + o, n - o, "%s%lld", i ? ", " : "", s64 ? (long long)s64[i] : (long long)s32[i]);
    if (o < n) snprintf(buf + o, n - o, "]");
}

static void format_report(const md_load_report *r, char *buf, size_t n, int list);

static int has_prefix(const char *name, char pre[][MD_PREFIX_MAX], int np) {
    for (int k = 0; k < np; k++)
        if (!strncmp(name, pre[k], strlen(pre[k]))) return 1;
    return 0;
}

md_status md_detector_load_weights(md_detector *det, const char *path, int strict, md_load_report *report) {
    return md_detector_load_weights_ex(det, path, strict, NULL, report);
}

md_status md_detector_load_weights_ex(md_detector *det, const char *path, int strict, const char *exclude,
                                      md_load_report *report) {
    md_load_report local;
    md_load_report *rep = report ? report : &local;
    memset(rep, 0, sizeof *rep);
    char pre[MD_PREFIXES_MAX][MD_PREFIX_MAX];
    int npre = 0;
    md_status s = md_prefix_list_parse(exclude, pre, MD_PREFIXES_MAX, &npre);
    if (s) return md_error_prefix(s, "%s: [model] weights_exclude '%s'", path, exclude);
    for (int k = 0; k < npre; k++) {
        int hit = 0;
        for (int i = 0; i < det->num_params && !hit; i++) hit = !strncmp(det->params[i].name, pre[k], strlen(pre[k]));
        if (!hit)
            return md_set_error(MD_ERR_ARG, "%s: [model] weights_exclude prefix '%s' matches no tensor of the model (a typo? "
                                "tensor names start with backbone.body., backbone.fpn., rpn.head., roi_heads.)", path, pre[k]);
    }
    if (exclude) snprintf(rep->exclude, sizeof rep->exclude, "%s", exclude);
    md_st_file f;
    s = md_st_load(path, &f);
    if (s) {
        size_t pl = strlen(path);
        if ((pl > 4 && !strcmp(path + pl - 4, ".pth")) || (pl > 3 && !strcmp(path + pl - 3, ".pt")))
            return md_error_prefix(s, "%s: a PyTorch checkpoint? convert it with scripts/convert_torchvision.py", path);
        return s;
    }
    int np = det->num_params;
    int *src = malloc((size_t)(np ? np : 1) * sizeof(int));
    if (!src) {
        md_st_free(&f);
        return md_set_error(MD_ERR_NOMEM, "%s: out of memory", path);
    }
    for (int i = 0; i < np; i++) src[i] = -1;
    char cn[256];
    for (int t = 0; t < f.count; t++) {
        const md_st_tensor *T = &f.tensors[t];
        if (!canonical_name(T->name, cn, sizeof cn)) continue;
        if (has_prefix(cn, pre, npre)) continue; /* [model] weights_exclude */
        int pi = -1;
        for (int i = 0; i < np; i++)
            if (!strcmp(det->params[i].name, cn)) {
                pi = i;
                break;
            }
        if (pi < 0) {
            if (rep->unexpected < MD_LOAD_LIST) snprintf(rep->unexpected_names[rep->unexpected], MD_PARAM_NAME_MAX, "%s", T->name);
            rep->unexpected++;
            continue;
        }
        md_param *p = &det->params[pi];
        int ok = T->ndim == p->ndim;
        for (int d = 0; ok && d < p->ndim; d++) ok = T->shape[d] == p->shape[d];
        if (!ok) {
            src[pi] = -2;
            if (rep->mismatched < MD_LOAD_LIST) {
                char a[64], b[64];
                shape_str(a, sizeof a, T->ndim, T->shape, NULL);
                shape_str(b, sizeof b, p->ndim, NULL, p->shape);
                snprintf(rep->mismatched_desc[rep->mismatched], sizeof rep->mismatched_desc[0], "%.95s: file %.60s vs model %.60s",
                         p->name, a, b);
            }
            rep->mismatched++;
            continue;
        }
        if (T->dtype != MD_DT_F32 && T->dtype != MD_DT_F64) {
            src[pi] = -2;
            if (rep->mismatched < MD_LOAD_LIST)
                snprintf(rep->mismatched_desc[rep->mismatched], sizeof rep->mismatched_desc[0], "%s: dtype %s (need F32)",
                         p->name, md_dtype_name(T->dtype));
            rep->mismatched++;
            continue;
        }
        src[pi] = t;
    }
    for (int i = 0; i < np; i++)
        if (has_prefix(det->params[i].name, pre, npre)) {
            src[i] = -3;
            rep->excluded++;
        }
    for (int i = 0; i < np; i++)
        if (src[i] == -1) {
            if (rep->missing < MD_LOAD_LIST) snprintf(rep->missing_names[rep->missing], MD_PARAM_NAME_MAX, "%s", det->params[i].name);
            rep->missing++;
        }
    if (strict && (rep->missing || rep->unexpected || rep->mismatched)) {
        char msg[768];
        format_report(rep, msg, sizeof msg, 3);
        const char *m = strstr(msg, "; ") ? strstr(msg, "; ") + 2 : msg; /* nothing was loaded: skip "loaded N" */
        /* a ResNet-vd file for a plain model or the reverse: say which setting fits */
        int file_vd = md_st_find(&f, "backbone.body.conv1.0.weight") != NULL, file_plain = md_st_find(&f, "backbone.body.conv1.weight") != NULL;
        const char *hint = file_vd && !det->model.vd    ? " (the file has a ResNet-vd deep stem: set model.vd = 1)"
                           : file_plain && det->model.vd ? " (the file has a plain ResNet stem: set model.vd = 0)"
                                                         : "";
        /* an RPN head for another number of [rpn] aspect_ratios */
        char rhint[192];
        const md_st_tensor *fc = md_st_find(&f, "rpn.head.cls_logits.weight");
        if (!hint[0] && fc && fc->ndim >= 1 && fc->shape[0] != det->rpn.num_aspect_ratios) {
            snprintf(rhint, sizeof rhint, " (the file's RPN head has %lld anchors per location, the model %d: set rpn.aspect_ratios "
                     "to the %lld ratios it was trained with)", (long long)fc->shape[0], det->rpn.num_aspect_ratios, (long long)fc->shape[0]);
            hint = rhint;
        }
        md_status e = md_set_error(MD_ERR_SHAPE, "%s: checkpoint does not match the model (depth %d%s, %d classes)%s: %s; load with "
                                   "strict=0 to keep what matches", path, det->model.depth, det->model.vd ? "-vd" : "",
                                   det->model.num_classes, hint, m);
        free(src);
        md_st_free(&f);
        return e;
    }
    for (int i = 0; i < np; i++) {
        det->params[i].loaded = 0;
        if (src[i] < 0) continue;
        s = md_st_read_f32(&f, f.tensors[src[i]].name, -1, NULL, det->params[i].data, det->params[i].numel);
        if (s) {
            free(src);
            md_st_free(&f);
            return md_error_prefix(s, "%s", path);
        }
        det->params[i].loaded = 1;
        rep->loaded++;
    }
    free(src);
    md_st_free(&f);
    refold(det, 0);
    return MD_OK;
}

/* At most `list` names per kind (the strict-load error keeps to a few so it fits one error line). */
static void format_report(const md_load_report *r, char *buf, size_t n, int list) {
    size_t o = 0;
#define OUT(...) do { if (o < n) o += (size_t)snprintf(buf + o, n - o, __VA_ARGS__); } while (0)
    OUT("loaded %d tensors", r->loaded);
    if (r->excluded) OUT("; %d excluded by [model] weights_exclude = %s (initialised)", r->excluded, r->exclude);
    if (r->missing) {
        OUT("; %d missing (initialised): ", r->missing);
        for (int i = 0; i < r->missing && i < list; i++) OUT("%s%s", i ? ", " : "", r->missing_names[i]);
        if (r->missing > list) OUT(", ...");
    }
    if (r->unexpected) {
        OUT("; %d unexpected (ignored): ", r->unexpected);
        for (int i = 0; i < r->unexpected && i < list; i++) OUT("%s%s", i ? ", " : "", r->unexpected_names[i]);
        if (r->unexpected > list) OUT(", ...");
    }
    if (r->mismatched) {
        OUT("; %d with a wrong shape (initialised): ", r->mismatched);
        for (int i = 0; i < r->mismatched && i < list; i++) OUT("%s%s", i ? "; " : "", r->mismatched_desc[i]);
        if (r->mismatched > list) OUT("; ...");
    }
#undef OUT
}

void md_load_report_format(const md_load_report *r, char *buf, size_t n) { format_report(r, buf, n, MD_LOAD_LIST); }

md_status md_detector_save_weights(const md_detector *det, const char *path, int n_meta, const char *const *meta_keys,
                                   const char *const *meta_values) {
    md_st_writer *w = md_st_writer_new();
    if (!w) return md_last_status();
    md_status s = MD_OK;
    for (int i = 0; i < det->num_params && !s; i++) {
        const md_param *p = &det->params[i];
        s = md_st_writer_add_f32(w, p->name, p->ndim, p->shape, p->data);
    }
    for (int i = 0; i < n_meta && !s; i++) s = md_st_writer_meta(w, meta_keys[i], meta_values[i]);
    if (!s) s = md_st_writer_save(w, path);
    md_st_writer_free(w);
    return s;
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
