/* detect.c — md_eval_detector: a detector over a COCO split, as COCO-style detections (see evaluate.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "minidet/dist.h"
#include "minidet/evaluate.h"
#include "minidet/log.h"
#include "minidet/threads.h"

void md_det_list_free(md_det_list *d) {
    free(d->image_id);
    free(d->category_id);
    free(d->xywh);
    free(d->score);
    memset(d, 0, sizeof *d);
}

static md_status det_push(md_det_list *d, int64_t img, int64_t cat, const float *b, float score) {
    if (d->n == d->cap) {
        size_t c = d->cap ? 2 * d->cap : 4096;
        int64_t *i2 = realloc(d->image_id, c * sizeof(int64_t));
        if (i2) d->image_id = i2;
        int64_t *c2 = realloc(d->category_id, c * sizeof(int64_t));
        if (c2) d->category_id = c2;
        double *x2 = realloc(d->xywh, c * 4 * sizeof(double));
        if (x2) d->xywh = x2;
        double *s2 = realloc(d->score, c * sizeof(double));
        if (s2) d->score = s2;
        if (!i2 || !c2 || !x2 || !s2) return md_set_error(MD_ERR_NOMEM, "detections: out of memory");
        d->cap = c;
    }
    d->image_id[d->n] = img;
    d->category_id[d->n] = cat;
    d->xywh[4 * d->n] = b[0];
    d->xywh[4 * d->n + 1] = b[1];
    d->xywh[4 * d->n + 2] = (double)b[2] - b[0];
    d->xywh[4 * d->n + 3] = (double)b[3] - b[1];
    d->score[d->n] = score;
    d->n++;
    return MD_OK;
}

/* Sharded evaluation: every rank's detections from index n0 of out (appended batch by batch; counts[i] of
 * them from the rank's i-th batch) to rank 0, re-appended there in the one-process order (batch b came
 * from rank b % ranks); the other ranks' lists end at n0. */
static md_status gather_shards(md_det_list *out, size_t n0, const int64_t *counts, int nb, int ranks) {
    int64_t mine[2] = {(int64_t)(out->n - n0), nb};
    size_t m = out->n - n0, bytes[7];
    void *all[7] = {NULL};
    md_status s = md_dist_gather_bytes(mine, sizeof mine, &all[0], &bytes[0]);
    if (!s) s = md_dist_gather_bytes(counts, sizeof(int64_t) * (size_t)nb, &all[1], &bytes[1]);
    if (!s) s = md_dist_gather_bytes(out->image_id + n0, sizeof(int64_t) * m, &all[2], &bytes[2]);
    if (!s) s = md_dist_gather_bytes(out->category_id + n0, sizeof(int64_t) * m, &all[3], &bytes[3]);
    if (!s) s = md_dist_gather_bytes(out->xywh + 4 * n0, 4 * sizeof(double) * m, &all[4], &bytes[4]);
    if (!s) s = md_dist_gather_bytes(out->score + n0, sizeof(double) * m, &all[5], &bytes[5]);
    out->n = n0;
    if (!s && md_dist_rank() == 0) {
        const int64_t *per = all[0], *cnt = all[1], *img = all[2], *cat = all[3];
        const double *xywh = all[4], *score = all[5];
        /* per rank: where its detections and its batch counts start in the gathered arrays, and how far it got */
        size_t *det_at = calloc((size_t)ranks, sizeof *det_at), *cnt_at = calloc((size_t)ranks, sizeof *cnt_at);
        if (!det_at || !cnt_at) s = md_set_error(MD_ERR_NOMEM, "evaluation: out of memory");
        size_t d0 = 0, c0 = 0;
        for (int r = 0; !s && r < ranks; r++) {
            det_at[r] = d0;
            cnt_at[r] = c0;
            d0 += (size_t)per[2 * r];
            c0 += (size_t)per[2 * r + 1];
        }
        for (int64_t b = 0; !s && b < (int64_t)c0; b++) {
            int r = (int)(b % ranks);
            size_t k = (size_t)cnt[cnt_at[r]++], j = det_at[r];
            det_at[r] += k;
            for (size_t q = 0; q < k && !s; q++) {
                const double *x = xywh + 4 * (j + q);
                const float box[4] = {0, 0, 0, 0};
                s = det_push(out, img[j + q], cat[j + q], box, (float)score[j + q]);
                if (!s) memcpy(out->xywh + 4 * (out->n - 1), x, 4 * sizeof(double)); /* as detected, not through float */
            }
        }
        free(det_at);
        free(cnt_at);
    }
    for (int i = 0; i < 7; i++) free(all[i]);
    return s;
}

/* Inference of one built batch; the arena doubles while a step does not fit (up to max bytes). */
static md_status infer_batch(md_detector *det, md_arena *arena, size_t max, const md_batch *b, md_detections *out) {
    int sizes[2 * MD_MAX_BATCH], orig[2 * MD_MAX_BATCH];
    for (int k = 0; k < b->n; k++) {
        sizes[2 * k] = b->info[k].h;
        sizes[2 * k + 1] = b->info[k].w;
        orig[2 * k] = b->info[k].orig_h;
        orig[2 * k + 1] = b->info[k].orig_w;
    }
    for (;;) {
        md_arena_reset(arena);
        md_status s = md_detector_infer(det, arena, b->images, b->n, b->height, b->width, sizes, orig, out);
        if (s != MD_ERR_NOMEM || !strstr(md_last_error(), "arena") || arena->cap >= max) return s;
        size_t c = arena->cap * 2;
        md_arena_free(arena);
        md_log(MD_LOG_DEBUG, "arena grown to %zu MiB", c >> 20);
        if ((s = md_arena_init(arena, c))) return s;
    }
}

md_status md_eval_detector(md_detector *det, md_arena *arena, const md_eval_detector_options *o, md_det_list *out,
                           int *n_images, double *seconds) {
    const md_coco *coco = o->coco;
    int nimg = 0;
    for (int i = 0; i < coco->num_images; i++) nimg += !(o->exclude && o->exclude[i]);
    if (o->max_images > 0 && o->max_images < nimg) nimg = o->max_images;
    int bs = o->batch_size < 1 ? 1 : (o->batch_size > MD_MAX_BATCH ? MD_MAX_BATCH : o->batch_size);
    size_t amax = o->arena_max ? o->arena_max : ((size_t)32 << 30);
    md_batch batch;
    memset(&batch, 0, sizeof batch);
    float *scratch = NULL;
    size_t scratch_cap = 0;
    int idx[MD_MAX_BATCH];
    uint8_t flips[MD_MAX_BATCH] = {0};
    int done = 0, next = 0, tty = isatty(2);
    double t0 = md_now(), last_print = 0, cb_secs = 0;
    md_status s = MD_OK;
    int ranks = o->shard_count > 1 ? o->shard_count : 1, rank = ranks > 1 ? o->shard_rank : 0;
    size_t n0 = out ? out->n : 0;
    int64_t *counts = NULL; /* detections of each batch this rank runs (sharded) */
    int nb = 0;
    if (ranks > 1 && !(counts = malloc(sizeof(int64_t) * (size_t)(nimg / bs / ranks + 2))))
        return md_set_error(MD_ERR_NOMEM, "evaluation: out of memory");
    if (o->progress) md_log(MD_LOG_INFO, "evaluating %d images of %s (batch %d, %d threads)", nimg, coco->path, bs, md_threads_get());
    for (int64_t bi = 0; done < nimg;) {
        int n = 0;
        while (n < bs && done + n < nimg && next < coco->num_images) {
            if (!(o->exclude && o->exclude[next])) idx[n++] = next;
            next++;
        }
        if (!n) break;
        if ((bi++) % ranks != rank) { /* another rank's batch */
            done += n;
            continue;
        }
        size_t before = out ? out->n : 0;
        if ((s = md_batch_build(&batch, coco, o->image_dir, idx, flips, n, o->dopt, &scratch, &scratch_cap))) break;
        md_detections dets[MD_MAX_BATCH];
        if ((s = infer_batch(det, arena, amax, &batch, dets))) break;
        for (int k = 0; k < n && out && !s; k++)
            for (int d = 0; d < dets[k].n && !s; d++) {
                int cat = md_coco_category_of_label(o->label_map, dets[k].labels[d]);
                if (o->gt && (cat < 0 || md_coco_gt_cat_index(o->gt, cat) < 0)) continue; /* a class the split lacks */
                s = det_push(out, batch.info[k].image_id, cat, dets[k].boxes + 4 * d, dets[k].scores[d]);
            }
        for (int k = 0; k < n && o->on_image && !s; k++) {
            double tc = md_now();
            s = o->on_image(o->ctx, batch.info[k].index, &dets[k]);
            cb_secs += md_now() - tc;
        }
        if (s) break;
        if (counts) counts[nb++] = (int64_t)((out ? out->n : 0) - before);
        done += n;
        double now = md_now() - t0;
        if (o->progress && md_log_get_level() <= MD_LOG_INFO && (now - last_print > (tty ? 0.5 : 10.0) || done == nimg)) {
            double ips = done / (now > 0 ? now : 1e-9);
            fprintf(stderr, "%s[eval] %d/%d images, %.2f img/s, ETA %.0f s%s", tty ? "\r" : "", done, nimg, ips,
                    (nimg - done) / (ips > 0 ? ips : 1e-9), tty && done < nimg ? "" : "\n");
            last_print = now;
        }
    }
    md_batch_free(&batch);
    free(scratch);
    /* a rank that failed returns its error; under mpirun its exit ends the job, so no rank waits here for it */
    if (!s && ranks > 1 && out) s = gather_shards(out, n0, counts, nb, ranks);
    free(counts);
    if (n_images) *n_images = done;
    if (seconds) *seconds = md_now() - t0 - cb_secs;
    return s;
}
