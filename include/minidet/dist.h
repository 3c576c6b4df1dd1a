/* dist.h — communication between the processes of a data-parallel job (Open MPI).
 *
 * `make MPI=1` compiles this module against Open MPI (MD_MPI defined); the
 * default build compiles it as a one-process stand-in with the same API, so
 * the layers above call it unconditionally: rank 0 of 1, collectives copy or
 * do nothing. An MPI build also runs as one process without mpirun (Open MPI
 * singleton start).
 *
 * Every collective here must be called by all ranks in the same order; every
 * function returns MD_OK or records an MPI error. Reductions are sums in
 * place. For a fixed number of ranks Open MPI's reductions are deterministic
 * (same algorithm, same order), so runs with the same rank count repeat bit
 * for bit.
 *
 * Gradient buckets: the trainer hands md_dist_buckets one flat float buffer
 * (the model's gradients, tensor i at offsets[i] .. offsets[i + 1]). Buckets
 * are contiguous ranges of about bucket_floats floats cut from the end of the
 * buffer, since the backward pass finishes the last tensors (heads) first.
 * md_dist_buckets_ready(tensor) is called as each tensor's gradient becomes
 * final; a bucket whose tensors are all final starts a non-blocking sum
 * (MPI_Iallreduce) at once, strictly in bucket order so every rank issues the
 * same collectives in the same order. md_dist_buckets_wait() starts what is
 * left, waits for all and reports the seconds it waited: the communication
 * that did not hide behind the backward pass. */
#ifndef MINIDET_DIST_H
#define MINIDET_DIST_H
#include <stddef.h>
#include <stdint.h>
#include "minidet/error.h"

/* 1 when compiled with MPI (make MPI=1). */
int md_dist_compiled(void);
/* Starts MPI (thread level FUNNELED: only the main thread communicates); a no-op when already
   started or built without MPI. argc/argv may be NULL. */
md_status md_dist_init(int *argc, char ***argv);
/* Ends MPI (after the last collective); a no-op without MPI or before md_dist_init. */
void md_dist_finalize(void);
int md_dist_rank(void); /* 0 before init */
int md_dist_size(void); /* 1 before init */

md_status md_dist_barrier(void);
/* bytes of buf from root to every rank. */
md_status md_dist_bcast(void *buf, size_t bytes, int root);
/* In-place sums over the ranks. */
md_status md_dist_sum_f64(double *v, int n);
md_status md_dist_sum_f32(float *v, size_t n);
md_status md_dist_sum_i64(int64_t *v, int n);
/* Rank 0 receives the concatenation, in rank order, of every rank's `bytes` bytes at send:
   *all (malloc'd, free it) and *all_bytes; other ranks get NULL and 0. */
md_status md_dist_gather_bytes(const void *send, size_t bytes, void **all, size_t *all_bytes);
/* Agreement on a stop: *max_value = the largest `local` over the ranks, *rank_of_max = the lowest
   rank holding it. Used once per step so an error or a signal on any rank stops all at the same step. */
md_status md_dist_agree(int local, int *max_value, int *rank_of_max);
/* Ends every rank of the job at once with exit status code (MPI_Abort); exit(code) without MPI. */
void md_dist_abort(int code) __attribute__((noreturn));

typedef struct md_dist_buckets md_dist_buckets;
/* flat: the buffer summed in place; offsets[0..ntensors]: tensor i is flat[offsets[i] .. offsets[i + 1]).
   bucket_floats: target bucket size (a tensor is never split; a bucket holds at least one tensor). */
md_status md_dist_buckets_create(md_dist_buckets **out, float *flat, const size_t *offsets, int ntensors, size_t bucket_floats);
/* A new step: every tensor pending again. */
void md_dist_buckets_reset(md_dist_buckets *b);
/* Tensor t's gradient is final (calling it twice in a step is a no-op); starts the complete buckets. */
md_status md_dist_buckets_ready(md_dist_buckets *b, int t);
/* Starts the buckets not started yet, waits for all; *exposed_s (may be NULL) = seconds spent waiting. */
md_status md_dist_buckets_wait(md_dist_buckets *b, double *exposed_s);
int md_dist_buckets_count(const md_dist_buckets *b);
/* How many buckets md_dist_buckets_ready started during the last step (before md_dist_buckets_wait). */
int md_dist_buckets_started_early(const md_dist_buckets *b);
void md_dist_buckets_destroy(md_dist_buckets *b);

#endif
