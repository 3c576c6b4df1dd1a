/* weights.c — md_detector weight files: loading a safetensors file by tensor name (with torchvision's
 * older FPN / RPN names and bare ImageNet ResNet keys mapped to the model's), the load report, and saving.
 * See include/minidet/model.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "minidet/safetensors.h"
#include "model_internal.h"

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
    md_detector_refold(det);
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
