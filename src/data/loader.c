/* loader.c — prefetching batch loader (see include/minidet/data.h).
 *
 * Batches are numbered by a sequence number seq = 0, 1, 2, ... from the start
 * (epoch, position). Batch seq lives in slot seq % depth. A worker claims the
 * next unclaimed seq once its slot has been released by the consumer, builds
 * it without holding the lock, and marks it ready; the consumer takes slots in
 * seq order. What a batch contains depends only on (seed, epoch, position),
 * never on which worker built it or when. */
#include "minidet/data.h"
#include "minidet/rng.h"
#include "minidet/threads.h"
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { SLOT_FREE = 0, SLOT_BUILDING, SLOT_READY };

typedef struct {
    int64_t epoch;  /* -1: empty */
    int nbatches;
    int *start;     /* [nbatches + 1] offsets into idx */
    int *idx;       /* image indices of the epoch's batches, concatenated */
} epoch_plan;

typedef struct {
    int state;
    int64_t seq;
    md_status st;
    char err[1024];
    md_batch b;
} slot;

typedef struct {
    struct md_loader *l;
    float *scratch;
    size_t scratch_cap;
    pthread_t tid;
} worker;

struct md_loader {
    const md_coco *c;
    char *image_dir;
    md_data_options o;
    int *pool;      /* usable images, file order */
    int npool;
    epoch_plan plans[2];
    int plan_next;  /* which plan entry to replace next */
    pthread_mutex_t mu;
    pthread_cond_t cv_ready, cv_free;
    int depth;
    slot *slots;
    int64_t next_claim, released, consumed;
    int64_t claim_epoch, claim_pos; /* (epoch, position) of next_claim */
    int64_t cons_epoch, cons_pos;   /* (epoch, position) of consumed */
    int held;       /* the consumer holds slot (consumed - 1) */
    int stop;
    worker *workers;
    int nworkers;
    float *scratch; /* for workers == 0 */
    size_t scratch_cap;
    double stall;
    int64_t images_done;
};

/* ---------- the epoch plan (pure function of seed, epoch, options) ---------- */

static void plan_free(epoch_plan *p) {
    free(p->start);
    free(p->idx);
    p->start = p->idx = NULL;
    p->epoch = -1;
    p->nbatches = 0;
}

static md_status plan_build(const md_loader *l, int64_t epoch, epoch_plan *p) {
    int n = l->npool, B = l->o.ims_per_batch;
    uint32_t *perm = malloc((size_t)n * sizeof *perm);
    int *idx = malloc((size_t)n * sizeof *idx);
    int *start = malloc((size_t)(n / B + 2) * sizeof *start);
    int *buf[2] = {malloc((size_t)B * sizeof(int)), malloc((size_t)B * sizeof(int))};
    md_status st = MD_OK;
    if (!perm || !idx || !start || !buf[0] || !buf[1]) {
        st = md_set_error(MD_ERR_NOMEM, "loader: out of memory planning epoch %lld", (long long)epoch);
        goto done;
    }
    for (int i = 0; i < n; i++) perm[i] = (uint32_t)i;
    if (l->o.shuffle) {
        md_rng r = md_rng_make(md_hash3(l->o.seed, (uint64_t)epoch, 0x6570u), MD_STREAM_SHUFFLE);
        md_rng_shuffle_u32(&r, perm, (uint32_t)n);
    }
    int nb = 0, k = 0;
    start[0] = 0;
    if (l->o.shuffle && l->o.aspect_grouping) {
        /* torchvision GroupedBatchSampler with 2 aspect groups: a batch is emitted when a
           group's buffer fills; incomplete buffers at the end of the epoch are dropped */
        int fill[2] = {0, 0};
        for (int i = 0; i < n; i++) {
            int im = l->pool[perm[i]];
            int g = l->c->images[im].width >= l->c->images[im].height ? 0 : 1;
            buf[g][fill[g]++] = im;
            if (fill[g] == B) {
                memcpy(idx + k, buf[g], (size_t)B * sizeof(int));
                k += B;
                start[++nb] = k;
                fill[g] = 0;
            }
        }
    } else {
        for (int i = 0; i < n; i++) {
            idx[k++] = l->pool[perm[i]];
            if (k - start[nb] == B) start[++nb] = k;
        }
        if (!l->o.shuffle && k > start[nb]) start[++nb] = k; /* evaluation order keeps the last partial batch */
        k = start[nb];
    }
    if (nb == 0) {
        st = md_set_error(MD_ERR_ARG, "%s: %d usable images cannot fill one batch of %d%s", l->c->path, n, B,
                          l->o.aspect_grouping ? " per aspect group" : "");
        goto done;
    }
    p->epoch = epoch;
    p->nbatches = nb;
    p->start = start;
    p->idx = idx;
    start = NULL;
    idx = NULL;
done:
    free(perm);
    free(idx);
    free(start);
    free(buf[0]);
    free(buf[1]);
    return st;
}

/* Under l->mu. */
static md_status get_plan(md_loader *l, int64_t epoch, const epoch_plan **out) {
    for (int i = 0; i < 2; i++)
        if (l->plans[i].epoch == epoch) { *out = &l->plans[i]; return MD_OK; }
    epoch_plan *p = &l->plans[l->plan_next];
    plan_free(p);
    md_status st = plan_build(l, epoch, p);
    if (st) return st;
    l->plan_next ^= 1;
    *out = p;
    return MD_OK;
}

static int flip_of(const md_loader *l, int64_t epoch, int64_t position, int k) {
    if (!(l->o.flip_prob > 0)) return 0;
    md_rng r = md_rng_make(md_hash3(l->o.seed, (uint64_t)epoch, (uint64_t)position), MD_STREAM_AUGMENT);
    r.counter = (uint64_t)k;
    return md_rng_uniform(&r) < l->o.flip_prob;
}

/* Under l->mu: the images and flips of batch (epoch, position); returns their count in *n. */
static md_status plan_batch(md_loader *l, int64_t epoch, int64_t position, int *idx, uint8_t *flips, int *n) {
    const epoch_plan *p;
    md_status st = get_plan(l, epoch, &p);
    if (st) return st;
    if (position < 0 || position >= p->nbatches)
        return md_set_error(MD_ERR_ARG, "loader: epoch %lld has %d batches, no position %lld", (long long)epoch, p->nbatches,
                            (long long)position);
    int b = p->start[position], e = p->start[position + 1];
    for (int k = 0; k < e - b; k++) {
        idx[k] = p->idx[b + k];
        flips[k] = (uint8_t)flip_of(l, epoch, position, k);
    }
    *n = e - b;
    return MD_OK;
}

/* Under l->mu: advance (epoch, pos) by one batch. */
static md_status advance(md_loader *l, int64_t *epoch, int64_t *pos) {
    const epoch_plan *p;
    md_status st = get_plan(l, *epoch, &p);
    if (st) return st;
    if (++*pos >= p->nbatches) {
        ++*epoch;
        *pos = 0;
    }
    return MD_OK;
}

/* ---------- workers ---------- */

/* Builds this rank's shard of batch (epoch, pos); returns the images it decoded. */
static int build_into(md_loader *l, slot *s, int64_t epoch, int64_t pos, const int *idx, const uint8_t *flips, int n, float **scratch,
                      size_t *scap) {
    int N = l->o.shard_count, r = l->o.shard_rank;
    if (n % N) {
        /* only an evaluation order's last batch can be short; training batches are whole */
        s->st = md_set_error(MD_ERR_ARG, "loader: batch (%lld, %lld) has %d images, which %d ranks cannot share evenly", (long long)epoch,
                             (long long)pos, n, N);
        n = 0;
    } else {
        s->st = md_batch_build_shard(&s->b, l->c, l->image_dir, idx, flips, n, r * (n / N), n / N, &l->o, scratch, scap);
        n /= N;
    }
    s->b.epoch = epoch;
    s->b.position = pos;
    if (s->st) snprintf(s->err, sizeof s->err, "%s", md_last_error());
    return n;
}

/* Under l->mu: claim the next batch if its slot is free. Returns 1 with the plan filled. */
static int claim(md_loader *l, int64_t *seq, int64_t *epoch, int64_t *pos, int *idx, uint8_t *flips, int *n, md_status *st) {
    if (l->next_claim >= l->released + l->depth) return 0;
    *seq = l->next_claim++;
    *epoch = l->claim_epoch;
    *pos = l->claim_pos;
    *st = plan_batch(l, *epoch, *pos, idx, flips, n);
    if (!*st) *st = advance(l, &l->claim_epoch, &l->claim_pos);
    return 1;
}

static void *worker_main(void *arg) {
    worker *w = arg;
    md_loader *l = w->l;
    int B = l->o.ims_per_batch;
    int *idx = malloc((size_t)B * sizeof *idx);
    uint8_t *flips = malloc((size_t)B);
    pthread_mutex_lock(&l->mu);
    while (!l->stop) {
        int64_t seq, epoch, pos;
        int n = 0;
        md_status st = MD_OK;
        if (!claim(l, &seq, &epoch, &pos, idx, flips, &n, &st)) {
            pthread_cond_wait(&l->cv_free, &l->mu);
            continue;
        }
        slot *s = &l->slots[seq % l->depth];
        s->state = SLOT_BUILDING;
        s->seq = seq;
        if (!idx || !flips) st = md_set_error(MD_ERR_NOMEM, "loader: out of memory in a worker");
        if (st) {
            s->st = st;
            snprintf(s->err, sizeof s->err, "%s", md_last_error());
        } else {
            pthread_mutex_unlock(&l->mu);
            int done = build_into(l, s, epoch, pos, idx, flips, n, &w->scratch, &w->scratch_cap);
            pthread_mutex_lock(&l->mu);
            l->images_done += done;
        }
        s->state = SLOT_READY;
        pthread_cond_broadcast(&l->cv_ready);
    }
    pthread_mutex_unlock(&l->mu);
    free(idx);
    free(flips);
    return NULL;
}

/* ---------- public ---------- */

md_status md_loader_create(md_loader **out, const md_coco *c, const char *image_dir, const md_data_options *o, const uint8_t *exclude,
                           int64_t epoch, int64_t position) {
    *out = NULL;
    if (o->ims_per_batch <= 0 || o->ims_per_batch > 4096)
        return md_set_error(MD_ERR_ARG, "loader: ims_per_batch must be in 1..4096 (got %d)", o->ims_per_batch);
    if (o->workers < 0 || o->workers > 256) return md_set_error(MD_ERR_ARG, "loader: workers must be in 0..256 (got %d)", o->workers);
    if (o->queue_depth < 1 || o->queue_depth > 1024)
        return md_set_error(MD_ERR_ARG, "loader: queue_depth must be in 1..1024 (got %d)", o->queue_depth);
    if (o->min_size <= 0 || o->max_size <= 0) return md_set_error(MD_ERR_ARG, "loader: min_size/max_size must be positive");
    int shards = o->shard_count > 0 ? o->shard_count : 1; /* 0: options filled without md_data_options_default */
    if (o->shard_rank < 0 || o->shard_rank >= shards) return md_set_error(MD_ERR_ARG, "loader: shard %d of %d", o->shard_rank, shards);
    if (o->ims_per_batch % shards)
        return md_set_error(MD_ERR_ARG, "loader: a batch of %d images cannot be shared evenly by %d ranks (ims_per_batch must be a multiple of the rank count)",
                            o->ims_per_batch, shards);
    if (epoch < 0 || position < 0) return md_set_error(MD_ERR_ARG, "loader: negative start (epoch %lld, position %lld)", (long long)epoch,
                                                       (long long)position);
    md_loader *l = calloc(1, sizeof *l);
    if (!l) return md_set_error(MD_ERR_NOMEM, "loader: out of memory");
    pthread_mutex_init(&l->mu, NULL);
    pthread_cond_init(&l->cv_ready, NULL);
    pthread_cond_init(&l->cv_free, NULL);
    l->c = c;
    l->o = *o;
    l->o.shard_count = shards;
    l->plans[0].epoch = l->plans[1].epoch = -1;
    l->image_dir = strdup(image_dir);
    l->pool = malloc((size_t)(c->num_images ? c->num_images : 1) * sizeof *l->pool);
    l->depth = o->queue_depth;
    l->slots = calloc((size_t)l->depth, sizeof *l->slots);
    if (!l->image_dir || !l->pool || !l->slots) {
        md_loader_destroy(l);
        return md_set_error(MD_ERR_NOMEM, "loader: out of memory");
    }
    for (int i = 0; i < c->num_images; i++) {
        if (exclude && exclude[i]) continue;
        if (o->skip_empty && c->images[i].num_targets == 0) continue;
        l->pool[l->npool++] = i;
    }
    if (l->npool == 0) {
        md_loader_destroy(l);
        return md_set_error(MD_ERR_ARG, "%s: no usable images%s", c->path, o->skip_empty ? " (none has a usable, non-crowd box)" : "");
    }
    /* validate the start position (also builds the first plan) */
    const epoch_plan *p;
    md_status st = get_plan(l, epoch, &p);
    if (!st && position >= p->nbatches)
        st = md_set_error(MD_ERR_ARG, "loader: epoch %lld has %d batches, cannot start at position %lld", (long long)epoch, p->nbatches,
                          (long long)position);
    if (st) {
        md_loader_destroy(l);
        return st;
    }
    l->claim_epoch = l->cons_epoch = epoch;
    l->claim_pos = l->cons_pos = position;
    l->nworkers = o->workers;
    if (l->nworkers > 0) {
        l->workers = calloc((size_t)l->nworkers, sizeof *l->workers);
        if (!l->workers) {
            l->nworkers = 0;
            md_loader_destroy(l);
            return md_set_error(MD_ERR_NOMEM, "loader: out of memory");
        }
        for (int i = 0; i < l->nworkers; i++) {
            l->workers[i].l = l;
            if (pthread_create(&l->workers[i].tid, NULL, worker_main, &l->workers[i]) != 0) {
                l->nworkers = i;
                md_loader_destroy(l);
                return md_set_error(MD_ERR_INTERNAL, "loader: cannot start worker thread %d", i);
            }
        }
    }
    *out = l;
    return MD_OK;
}

md_status md_loader_next(md_loader *l, const md_batch **batch) {
    *batch = NULL;
    pthread_mutex_lock(&l->mu);
    if (l->held) {
        l->slots[(l->consumed - 1) % l->depth].state = SLOT_FREE;
        l->released++;
        l->held = 0;
        pthread_cond_broadcast(&l->cv_free);
    }
    slot *s = &l->slots[l->consumed % l->depth];
    if (l->nworkers == 0) {
        /* synchronous mode: build here (all of it counts as the consumer waiting for data) */
        double t0 = md_now();
        int64_t seq, epoch, pos;
        int n = 0;
        md_status st = MD_OK;
        int B = l->o.ims_per_batch;
        int *idx = malloc((size_t)B * sizeof *idx);
        uint8_t *flips = malloc((size_t)B);
        if (!idx || !flips) st = md_set_error(MD_ERR_NOMEM, "loader: out of memory");
        else if (claim(l, &seq, &epoch, &pos, idx, flips, &n, &st) && !st) {
            s->seq = seq;
            l->images_done += build_into(l, s, epoch, pos, idx, flips, n, &l->scratch, &l->scratch_cap);
            st = s->st;
        }
        free(idx);
        free(flips);
        l->stall += md_now() - t0;
        if (st) {
            l->next_claim = l->consumed; /* retry the same batch next time */
            pthread_mutex_unlock(&l->mu);
            return st;
        }
        s->state = SLOT_READY;
    } else {
        double t0 = md_now();
        while (!(s->state == SLOT_READY && s->seq == l->consumed)) pthread_cond_wait(&l->cv_ready, &l->mu);
        l->stall += md_now() - t0;
        if (s->st) {
            md_status st = md_set_error(s->st, "%s", s->err);
            pthread_mutex_unlock(&l->mu);
            return st; /* the loader stays at this batch: every later call reports it again */
        }
    }
    l->consumed++;
    l->held = 1;
    md_status st = advance(l, &l->cons_epoch, &l->cons_pos);
    pthread_mutex_unlock(&l->mu);
    if (st) return st;
    *batch = &s->b;
    return MD_OK;
}

void md_loader_tell(const md_loader *l, int64_t *epoch, int64_t *position) {
    *epoch = l->cons_epoch;
    *position = l->cons_pos;
}

int64_t md_loader_epoch_batches(md_loader *l, int64_t epoch) {
    pthread_mutex_lock(&l->mu);
    const epoch_plan *p;
    md_status st = get_plan(l, epoch, &p);
    int64_t n = st ? -1 : p->nbatches;
    pthread_mutex_unlock(&l->mu);
    return n;
}

md_status md_loader_plan(md_loader *l, int64_t epoch, int64_t position, int *idx, uint8_t *flips, int *n) {
    pthread_mutex_lock(&l->mu);
    md_status st = plan_batch(l, epoch, position, idx, flips, n);
    pthread_mutex_unlock(&l->mu);
    return st;
}

double md_loader_stall_seconds(const md_loader *l) { return l->stall; }
int64_t md_loader_images_done(const md_loader *l) { return l->images_done; }
int md_loader_num_images(const md_loader *l) { return l->npool; }

void md_loader_destroy(md_loader *l) {
    if (!l) return;
    pthread_mutex_lock(&l->mu);
    l->stop = 1;
    pthread_cond_broadcast(&l->cv_free);
    pthread_mutex_unlock(&l->mu);
    for (int i = 0; i < l->nworkers; i++) pthread_join(l->workers[i].tid, NULL);
    for (int i = 0; l->workers && i < l->nworkers; i++) free(l->workers[i].scratch);
    pthread_mutex_destroy(&l->mu);
    pthread_cond_destroy(&l->cv_ready);
    pthread_cond_destroy(&l->cv_free);
    for (int i = 0; l->slots && i < l->depth; i++) md_batch_free(&l->slots[i].b);
    free(l->workers);
    free(l->slots);
    plan_free(&l->plans[0]);
    plan_free(&l->plans[1]);
    free(l->pool);
    free(l->image_dir);
    free(l->scratch);
    free(l);
}
