/* dist.c — data-parallel communication (see include/minidet/dist.h). With MD_MPI the calls go to
 * Open MPI; without it this is the one-process stand-in (rank 0 of 1). The bucket bookkeeping is the
 * same in both builds. */
#include "minidet/dist.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "minidet/threads.h"
#ifdef MD_MPI
#include <mpi.h>
#endif

static int g_rank = 0, g_size = 1;

int md_dist_rank(void) { return g_rank; }

/* The gather of a job of one process: a copy. */
static md_status gather_one(const void *send, size_t bytes, void **all, size_t *all_bytes) {
    *all = malloc(bytes ? bytes : 1);
    *all_bytes = 0;
    if (!*all) return md_set_error(MD_ERR_NOMEM, "gather: out of memory for %zu bytes", bytes);
    if (bytes) memcpy(*all, send, bytes);
    *all_bytes = bytes;
    return MD_OK;
}
int md_dist_size(void) { return g_size; }

#ifdef MD_MPI

static int g_started; /* this module called MPI_Init_thread */

int md_dist_compiled(void) { return 1; }

static md_status mpi_err(int rc, const char *what) {
    if (rc == MPI_SUCCESS) return MD_OK;
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, msg, &len);
    return md_set_error(MD_ERR_IO, "MPI: rank %d: %s: %s", g_rank, what, msg);
}

md_status md_dist_init(int *argc, char ***argv) {
    int inited = 0;
    MPI_Initialized(&inited);
    if (!inited) {
        int provided = 0;
        int rc = MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
        if (rc != MPI_SUCCESS) return md_set_error(MD_ERR_IO, "MPI: MPI_Init_thread failed (code %d)", rc);
        g_started = 1;
        if (provided < MPI_THREAD_FUNNELED) return md_set_error(MD_ERR_IO, "MPI: the library does not provide MPI_THREAD_FUNNELED");
    }
    /* errors come back as codes, so each is reported with the rank and the call */
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_size);
    return MD_OK;
}

void md_dist_finalize(void) {
    int fin = 0;
    MPI_Finalized(&fin);
    if (g_started && !fin) MPI_Finalize();
    g_started = 0;
}

md_status md_dist_barrier(void) {
    if (g_size == 1) return MD_OK;
    return mpi_err(MPI_Barrier(MPI_COMM_WORLD), "barrier");
}

/* MPI counts are int: large buffers go in chunks. */
#define CHUNK ((size_t)1 << 30)

md_status md_dist_bcast(void *buf, size_t bytes, int root) {
    if (g_size == 1) return MD_OK;
    for (size_t o = 0; o < bytes; o += CHUNK) {
        size_t n = bytes - o < CHUNK ? bytes - o : CHUNK;
        md_status s = mpi_err(MPI_Bcast((char *)buf + o, (int)n, MPI_BYTE, root, MPI_COMM_WORLD), "broadcast");
        if (s) return s;
    }
    return MD_OK;
}

static md_status sum(void *v, size_t n, size_t elem, MPI_Datatype t, const char *what) {
    if (g_size == 1) return MD_OK;
    size_t per = CHUNK / elem;
    for (size_t o = 0; o < n; o += per) {
        size_t k = n - o < per ? n - o : per;
        md_status s = mpi_err(MPI_Allreduce(MPI_IN_PLACE, (char *)v + o * elem, (int)k, t, MPI_SUM, MPI_COMM_WORLD), what);
        if (s) return s;
    }
    return MD_OK;
}

md_status md_dist_sum_f64(double *v, int n) { return sum(v, (size_t)n, sizeof *v, MPI_DOUBLE, "sum (double)"); }
md_status md_dist_sum_f32(float *v, size_t n) { return sum(v, n, sizeof *v, MPI_FLOAT, "sum (float)"); }
md_status md_dist_sum_i64(int64_t *v, int n) { return sum(v, (size_t)n, sizeof *v, MPI_INT64_T, "sum (int64)"); }

md_status md_dist_gather_bytes(const void *send, size_t bytes, void **all, size_t *all_bytes) {
    if (g_size == 1) return gather_one(send, bytes, all, all_bytes);
    *all = NULL;
    *all_bytes = 0;
    if (bytes > (size_t)2147483647) return md_set_error(MD_ERR_ARG, "MPI: rank %d: gather of %zu bytes exceeds 2 GiB", g_rank, bytes);
    int mine = (int)bytes;
    int *counts = NULL, *displs = NULL;
    char *buf = NULL;
    if (g_rank == 0) {
        counts = calloc((size_t)g_size, sizeof *counts);
        displs = calloc((size_t)g_size, sizeof *displs);
        if (!counts || !displs) {
            free(counts);
            free(displs);
            /* the other ranks still wait in the collectives: end the job rather than hang */
            fprintf(stderr, "minidet: rank 0: gather: out of memory\n");
            md_dist_abort(1);
        }
    }
    md_status s = mpi_err(MPI_Gather(&mine, 1, MPI_INT, counts, 1, MPI_INT, 0, MPI_COMM_WORLD), "gather (sizes)");
    if (s) { free(counts); free(displs); return s; }
    size_t total = 0;
    if (g_rank == 0) {
        for (int r = 0; r < g_size; r++) {
            if (total + (size_t)counts[r] > (size_t)2147483647) {
                fprintf(stderr, "minidet: rank 0: gather of more than 2 GiB\n");
                md_dist_abort(1);
            }
            displs[r] = (int)total;
            total += (size_t)counts[r];
        }
        buf = malloc(total ? total : 1);
        if (!buf) {
            fprintf(stderr, "minidet: rank 0: gather: out of memory for %zu bytes\n", total);
            md_dist_abort(1);
        }
    }
    s = mpi_err(MPI_Gatherv(send, mine, MPI_BYTE, buf, counts, displs, MPI_BYTE, 0, MPI_COMM_WORLD), "gather");
    free(counts);
    free(displs);
    if (s) { free(buf); return s; }
    *all = buf;
    *all_bytes = total;
    return MD_OK;
}

md_status md_dist_agree(int local, int *max_value, int *rank_of_max) {
    struct { int v, r; } in = {local, g_rank}, out = {local, g_rank};
    if (g_size > 1) {
        md_status s = mpi_err(MPI_Allreduce(&in, &out, 1, MPI_2INT, MPI_MAXLOC, MPI_COMM_WORLD), "agreement");
        if (s) return s;
    }
    *max_value = out.v;
    *rank_of_max = out.r;
    return MD_OK;
}

void md_dist_abort(int code) {
    int inited = 0, fin = 0;
    MPI_Initialized(&inited);
    MPI_Finalized(&fin);
    fflush(stdout);
    fflush(stderr);
    if (inited && !fin) MPI_Abort(MPI_COMM_WORLD, code);
    exit(code);
}

#else /* one process */

int md_dist_compiled(void) { return 0; }
md_status md_dist_init(int *argc, char ***argv) { (void)argc; (void)argv; return MD_OK; }
void md_dist_finalize(void) {}
md_status md_dist_barrier(void) { return MD_OK; }
md_status md_dist_bcast(void *buf, size_t bytes, int root) { (void)buf; (void)bytes; (void)root; return MD_OK; }
md_status md_dist_sum_f64(double *v, int n) { (void)v; (void)n; return MD_OK; }
md_status md_dist_sum_f32(float *v, size_t n) { (void)v; (void)n; return MD_OK; }
md_status md_dist_sum_i64(int64_t *v, int n) { (void)v; (void)n; return MD_OK; }

md_status md_dist_gather_bytes(const void *send, size_t bytes, void **all, size_t *all_bytes) {
    return gather_one(send, bytes, all, all_bytes);
}

md_status md_dist_agree(int local, int *max_value, int *rank_of_max) {
    *max_value = local;
    *rank_of_max = 0;
    return MD_OK;
}

void md_dist_abort(int code) {
    fflush(stdout);
    fflush(stderr);
    exit(code);
}

#endif

/* ---------------------------------------------------------------- gradient buckets */

struct md_dist_buckets {
    float *flat;
    int ntensors, nbuckets;
    int *bucket_of;      /* [ntensors] */
    size_t *begin, *end; /* [nbuckets]: float range; bucket 0 is at the end of flat */
    int *pending;        /* [nbuckets]: tensors not final yet this step */
    int *pending0;       /* [nbuckets]: tensors per bucket */
    uint8_t *final;      /* [ntensors] */
    int next_start;      /* buckets [0, next_start) are started */
    int started_early;
#ifdef MD_MPI
    MPI_Request *req;    /* [nbuckets] */
#endif
};

void md_dist_buckets_destroy(md_dist_buckets *b) {
    if (!b) return;
    free(b->bucket_of);
    free(b->begin);
    free(b->end);
    free(b->pending);
    free(b->pending0);
    free(b->final);
#ifdef MD_MPI
    free(b->req);
#endif
    free(b);
}

md_status md_dist_buckets_create(md_dist_buckets **out, float *flat, const size_t *offsets, int ntensors, size_t bucket_floats) {
    *out = NULL;
    if (ntensors < 0 || bucket_floats == 0) return md_set_error(MD_ERR_ARG, "gradient buckets: %d tensors, bucket of %zu floats", ntensors, bucket_floats);
    for (int i = 0; i < ntensors; i++)
        if (offsets[i + 1] < offsets[i]) return md_set_error(MD_ERR_ARG, "gradient buckets: offsets decrease at tensor %d", i);
    md_dist_buckets *b = calloc(1, sizeof *b);
    size_t nt = (size_t)(ntensors ? ntensors : 1);
    if (b) {
        b->bucket_of = calloc(nt, sizeof *b->bucket_of);
        b->begin = calloc(nt, sizeof *b->begin);
        b->end = calloc(nt, sizeof *b->end);
        b->pending = calloc(nt, sizeof *b->pending);
        b->pending0 = calloc(nt, sizeof *b->pending0);
        b->final = calloc(nt, 1);
#ifdef MD_MPI
        b->req = calloc(nt, sizeof *b->req);
#endif
    }
    if (!b || !b->bucket_of || !b->begin || !b->end || !b->pending || !b->pending0 || !b->final
#ifdef MD_MPI
        || !b->req
#endif
    ) {
        md_dist_buckets_destroy(b);
        return md_set_error(MD_ERR_NOMEM, "gradient buckets: out of memory");
    }
    b->flat = flat;
    b->ntensors = ntensors;
    /* from the last tensor backwards: the order in which the backward pass finishes them */
    int nb = 0;
    size_t fill = 0;
    for (int i = ntensors - 1; i >= 0; i--) {
        size_t n = offsets[i + 1] - offsets[i];
        if (nb == 0 || (fill >= bucket_floats && b->pending0[nb - 1] > 0)) {
            b->end[nb] = offsets[i + 1];
            b->begin[nb] = offsets[i + 1];
            nb++;
            fill = 0;
        }
        b->bucket_of[i] = nb - 1;
        b->begin[nb - 1] = offsets[i];
        b->pending0[nb - 1]++;
        fill += n;
    }
    b->nbuckets = nb;
#ifdef MD_MPI
    for (int k = 0; k < nb; k++) b->req[k] = MPI_REQUEST_NULL;
#endif
    md_dist_buckets_reset(b);
    *out = b;
    return MD_OK;
}

void md_dist_buckets_reset(md_dist_buckets *b) {
    memcpy(b->pending, b->pending0, sizeof(int) * (size_t)(b->nbuckets ? b->nbuckets : 1));
    memset(b->final, 0, (size_t)(b->ntensors ? b->ntensors : 1));
    b->next_start = 0;
    b->started_early = 0;
}

/* Starts bucket k (all ranks start the same buckets in the same order). */
static md_status start_bucket(md_dist_buckets *b, int k) {
#ifdef MD_MPI
    if (g_size > 1) {
        size_t n = b->end[k] - b->begin[k];
        if (n > (size_t)2147483647) return md_set_error(MD_ERR_ARG, "gradient buckets: bucket %d has %zu floats (MPI count limit)", k, n);
        int rc = MPI_Iallreduce(MPI_IN_PLACE, b->flat + b->begin[k], (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD, &b->req[k]);
        if (rc != MPI_SUCCESS) return mpi_err(rc, "gradient allreduce");
    }
#else
    (void)b;
    (void)k;
#endif
    return MD_OK;
}

md_status md_dist_buckets_ready(md_dist_buckets *b, int t) {
    if (t < 0 || t >= b->ntensors) return md_set_error(MD_ERR_INTERNAL, "gradient buckets: no tensor %d", t);
    if (b->final[t]) return MD_OK;
    b->final[t] = 1;
    b->pending[b->bucket_of[t]]--;
    while (b->next_start < b->nbuckets && b->pending[b->next_start] == 0) {
        md_status s = start_bucket(b, b->next_start++);
        if (s) return s;
        b->started_early++;
    }
#ifdef MD_MPI
    /* Open MPI progresses non-blocking collectives inside MPI calls: test the running ones */
    if (g_size > 1 && b->next_start > 0) {
        int done = 0;
        int rc = MPI_Testall(b->next_start, b->req, &done, MPI_STATUSES_IGNORE);
        if (rc != MPI_SUCCESS) return mpi_err(rc, "gradient allreduce (test)");
    }
#endif
    return MD_OK;
}

md_status md_dist_buckets_wait(md_dist_buckets *b, double *exposed_s) {
    double t0 = md_now();
    md_status s = MD_OK;
    while (!s && b->next_start < b->nbuckets) s = start_bucket(b, b->next_start++);
#ifdef MD_MPI
    if (!s && g_size > 1 && b->nbuckets > 0) {
        int rc = MPI_Waitall(b->nbuckets, b->req, MPI_STATUSES_IGNORE);
        if (rc != MPI_SUCCESS) s = mpi_err(rc, "gradient allreduce (wait)");
    }
#endif
    if (exposed_s) *exposed_s = md_now() - t0;
    return s;
}

int md_dist_buckets_count(const md_dist_buckets *b) { return b->nbuckets; }
int md_dist_buckets_started_early(const md_dist_buckets *b) { return b->started_early; }
