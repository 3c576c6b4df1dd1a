/* data_parallel.c — gradient buckets hooked into the backward pass, state broadcast, BN statistics
 * averaging (see include/minidet/data_parallel.h). */
#include "minidet/data_parallel.h"
#include <stdlib.h>
#include <string.h>
#include "minidet/threads.h"

static md_status on_grad_final(void *ctx, int param) {
    md_dp *d = ctx;
    if (!d->armed || d->tensor_of_param[param] < 0) return MD_OK;
    return md_dist_buckets_ready(d->buckets, d->tensor_of_param[param]);
}

md_status md_dp_init(md_dp *d, md_detector *det, size_t bucket_floats) {
    memset(d, 0, sizeof *d);
    d->rank = md_dist_rank();
    d->size = md_dist_size();
    d->det = det;
    if (d->size == 1) return MD_OK;
    int nt = 0, first = -1;
    for (int i = 0; i < det->num_params; i++)
        if (det->params[i].trainable) {
            if (first < 0) first = i;
            nt++;
        }
    d->tensor_of_param = malloc(sizeof(int) * (size_t)(det->num_params ? det->num_params : 1));
    size_t *off = malloc(sizeof(size_t) * (size_t)(nt + 1));
    if (!d->tensor_of_param || !off) {
        free(off);
        md_dp_free(d);
        return md_set_error(MD_ERR_NOMEM, "data-parallel: out of memory");
    }
    float *flat = first >= 0 ? det->params[first].grad : NULL;
    off[0] = 0;
    int k = 0;
    for (int i = 0; i < det->num_params; i++) {
        md_param *p = &det->params[i];
        d->tensor_of_param[i] = -1;
        if (!p->trainable) continue;
        /* the buckets are ranges of one block: the gradients must lie back to back in parameter order */
        if (p->grad != flat + off[k]) {
            free(off);
            md_dp_free(d);
            return md_set_error(MD_ERR_INTERNAL, "data-parallel: the gradient of %s is not contiguous with the previous one", p->name);
        }
        d->tensor_of_param[i] = k;
        off[k + 1] = off[k] + p->numel;
        k++;
    }
    md_status s = md_dist_buckets_create(&d->buckets, flat, off, nt, bucket_floats);
    free(off);
    if (s) {
        md_dp_free(d);
        return s;
    }
    det->on_grad_final = on_grad_final;
    det->on_grad_final_ctx = d;
    return MD_OK;
}

void md_dp_free(md_dp *d) {
    if (d->det && d->det->on_grad_final_ctx == d) {
        d->det->on_grad_final = NULL;
        d->det->on_grad_final_ctx = NULL;
    }
    md_dist_buckets_destroy(d->buckets);
    free(d->tensor_of_param);
    d->buckets = NULL;
    d->tensor_of_param = NULL;
}

void md_dp_step_begin(md_dp *d) {
    d->exposed_s = 0;
    d->armed = 0;
    if (d->buckets) md_dist_buckets_reset(d->buckets);
}

void md_dp_arm(md_dp *d, int armed) { d->armed = armed; }

md_status md_dp_step_end(md_dp *d) {
    d->armed = 0;
    if (!d->buckets) return MD_OK;
    return md_dist_buckets_wait(d->buckets, &d->exposed_s);
}

md_status md_dp_broadcast_state(md_dp *d, md_sgd *opt, md_train_state *st) {
    if (d->size == 1) return MD_OK;
    md_detector *det = d->det;
    for (int i = 0; i < det->num_params; i++) {
        md_status s = md_dist_bcast(det->params[i].data, det->params[i].numel * sizeof(float), 0);
        if (s) return s;
    }
    md_status s = md_dist_bcast(&opt->steps, sizeof opt->steps, 0);
    if (!s && opt->momentum_block) s = md_dist_bcast(opt->momentum_block, opt->total * sizeof(float), 0);
    if (!s) s = md_dist_bcast(st, sizeof *st, 0);
    if (!s) md_detector_refold(det); /* frozen BN folded into the convs from the received buffers */
    return s;
}

md_status md_dp_average_bn(md_dp *d) {
    if (d->size == 1 || d->det->model.norm != MD_NORM_BN) return MD_OK;
    md_detector *det = d->det;
    float inv = 1.0f / (float)d->size;
    for (int i = 0; i < det->num_params; i++) {
        md_param *p = &det->params[i];
        size_t n = strlen(p->name);
        int stat = p->is_buffer && ((n > 13 && !strcmp(p->name + n - 13, ".running_mean")) || (n > 12 && !strcmp(p->name + n - 12, ".running_var")));
        if (!stat) continue;
        md_status s = md_dist_sum_f32(p->data, p->numel);
        if (s) return s;
        for (size_t k = 0; k < p->numel; k++) p->data[k] *= inv;
    }
    return MD_OK;
}
