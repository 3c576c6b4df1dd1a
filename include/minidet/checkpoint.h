/* checkpoint.h — training checkpoints: model + optimizer state + where training stands.
 *
 * A checkpoint is one safetensors file (docs/DESIGN.md, "Files"): every model tensor under
 * its torchvision state_dict name, the SGD momentum of every optimised tensor
 * as "optimizer.momentum.<name>", and __metadata__ with
 *   minidet.format = "minidet-train-checkpoint", minidet.format_version = "1",
 *   minidet.config (the fully resolved INI), minidet.iteration (completed
 *   optimizer steps), minidet.box_loss / minidet.rpn_box_loss, minidet.label_map
 *   (JSON given by the trainer), minidet.rng ("seed stream counter" of the
 *   sampling stream), minidet.loader_epoch / minidet.loader_position (the next
 *   batch), minidet.sgd_steps, minidet.train_time_s, minidet.best_ap / best_iter.
 * Such a file loads as plain weights too (./eval, md_detector_load_weights).
 * Writes are atomic (safetensors.h: temp file, fsync, rename) so a crash or a
 * full disk leaves the previous checkpoint intact; loading validates the file
 * (checksum, shapes, every tensor present) before touching the model, so a
 * truncated or foreign file is a clear error and the model is unchanged.
 *
 * Run directories keep checkpoints/iter_XXXXXXX.safetensors (the last K) and
 * last.safetensors (a hard link to the newest, or a copy where links fail). */
#ifndef MINIDET_CHECKPOINT_H
#define MINIDET_CHECKPOINT_H
#include <stddef.h>
#include <stdint.h>
#include "minidet/config.h"
#include "minidet/error.h"
#include "minidet/optim.h"

#define MD_CKPT_FORMAT "minidet-train-checkpoint"
#define MD_CKPT_VERSION 1

/* One model tensor (not owned). */
typedef struct {
    const char *name;
    float *data;
    size_t numel;
    int ndim;
    int shape[4];
} md_ckpt_tensor;

/* Where training stands. */
typedef struct {
    long long iteration;          /* completed optimizer steps */
    int64_t loader_epoch, loader_position; /* next batch */
    uint64_t rng_seed, rng_stream, rng_counter; /* RoI/anchor sampling stream */
    double train_time_s;          /* wall time spent training so far */
    double best_ap;               /* best val AP so far (-1 = none) */
    long long best_iter;
    int world_size;               /* ranks of the data-parallel job that wrote it (1: one process; informative:
                                     a run resumes on any rank count) */
} md_train_state;

/* Writes path atomically. opt may be NULL (weights only). label_map_json may be NULL. */
md_status md_checkpoint_save(const char *path, const md_ckpt_tensor *t, int n, const md_sgd *opt, const md_config *cfg,
                             const md_train_state *st, const char *label_map_json);
/* The resolved configuration stored in a checkpoint (metadata minidet.config) as a malloc'd string
 * (caller frees); *text = NULL when the file has none (a weights-only file). Errors: unreadable file. */
md_status md_checkpoint_config_text(const char *path, char **text);
/* Loads path into t[0..n) (every one must be present with the same shape), the momentum of every
 * opt tensor (opt may be NULL) and st (may be NULL). config_text (may be NULL) receives a malloc'd copy
 * of the stored resolved configuration (caller frees). Nothing is modified unless everything validates. */
md_status md_checkpoint_load(const char *path, const md_ckpt_tensor *t, int n, md_sgd *opt, md_train_state *st,
                             char **config_text);

/* Run-directory helpers. "dir/checkpoints/iter_%07lld.safetensors". */
void md_checkpoint_path(char *buf, size_t n, const char *run_dir, long long iteration);
/* Makes last.safetensors in run_dir point at ckpt (hard link, atomic rename; copy as fallback). */
md_status md_checkpoint_link_last(const char *run_dir, const char *ckpt);
/* Deletes the oldest iter_*.safetensors in run_dir/checkpoints beyond keep, and the temp files
 * (iter_*.safetensors.tmp.PID) that writers killed mid-save left there. */
md_status md_checkpoint_prune(const char *run_dir, int keep);

#endif
