/* safetensors.h — read and write .safetensors files (checkpoints and test fixtures).
 *
 * Format (huggingface safetensors): u64 little-endian header length N, N bytes
 * of JSON {"name": {"dtype", "shape", "data_offsets": [begin, end]}, ...,
 * "__metadata__": {"key": "string"}}, then the raw little-endian data.
 * The reader validates everything before use (header bounds, JSON, dtype,
 * shape × dtype size == byte range, ranges inside the file, no overlaps) and,
 * when the metadata carries "minidet.checksum", verifies it, so a truncated or
 * foreign file is a clear MD_ERR_FORMAT, never a crash. The writer adds that
 * checksum and writes atomically (temp file, fsync, rename): a failed save
 * leaves any previous file at the path intact. */
#ifndef MINIDET_SAFETENSORS_H
#define MINIDET_SAFETENSORS_H
#include <stddef.h>
#include <stdint.h>
#include "minidet/error.h"

typedef enum { MD_DT_F32, MD_DT_F64, MD_DT_I64, MD_DT_I32, MD_DT_U8, MD_DT_BOOL, MD_DT_F16, MD_DT_BF16 } md_dtype;
#define MD_ST_MAX_DIMS 8

typedef struct {
    char *name;
    md_dtype dtype;
    int ndim;
    int64_t shape[MD_ST_MAX_DIMS];
    size_t numel;
    size_t nbytes;
    size_t offset;    /* byte offset inside the data block */
    const void *data; /* points into the file's data block; may be unaligned for foreign files */
} md_st_tensor;

typedef struct {
    char *path;
    md_st_tensor *tensors;
    int count;
    char **meta_keys, **meta_values;
    int meta_count;
    void *block; /* data block (owned) */
    size_t block_size;
} md_st_file;

size_t md_dtype_size(md_dtype dt);
const char *md_dtype_name(md_dtype dt);

md_status md_st_load(const char *path, md_st_file *f);
void md_st_free(md_st_file *f);
const md_st_tensor *md_st_find(const md_st_file *f, const char *name);
const char *md_st_meta(const md_st_file *f, const char *key); /* NULL when absent */
/* Copies tensor `name` converted to float32 (from F32, F64, I64, I32) into out[numel].
 * If ndim >= 0 the shape must equal shape[0..ndim) (error names the tensor and both shapes).
 * numel_out (optional) receives the element count. */
md_status md_st_read_f32(const md_st_file *f, const char *name, int ndim, const int *shape, float *out, size_t cap);
md_status md_st_read_f64(const md_st_file *f, const char *name, int ndim, const int *shape, double *out, size_t cap);
md_status md_st_read_i64(const md_st_file *f, const char *name, int ndim, const int *shape, int64_t *out, size_t cap);
/* Allocating variant: *out = malloc'd float array of the tensor's numel (caller frees). */
md_status md_st_alloc_f32(const md_st_file *f, const char *name, float **out, size_t *numel);

typedef struct md_st_writer md_st_writer;
md_st_writer *md_st_writer_new(void); /* NULL (with error set) on allocation failure */
/* Data is not copied: it must stay valid until md_st_writer_save returns. */
md_status md_st_writer_add(md_st_writer *w, const char *name, md_dtype dt, int ndim, const int64_t *shape, const void *data);
md_status md_st_writer_add_f32(md_st_writer *w, const char *name, int ndim, const int *shape, const float *data);
md_status md_st_writer_meta(md_st_writer *w, const char *key, const char *value);
md_status md_st_writer_save(md_st_writer *w, const char *path);
void md_st_writer_free(md_st_writer *w);

/* FNV-1a 64 of a byte range (the checksum stored as "minidet.checksum"). */
uint64_t md_fnv1a64(const void *data, size_t n, uint64_t h);

#endif
