/* safetensors.c — validated reader and atomic writer (see include/minidet/safetensors.h). */
#include "minidet/safetensors.h"
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MD_ST_MAX_HEADER (100u << 20) /* 100 MiB, as the reference implementation */

static const char *const dtype_names[] = {"F32", "F64", "I64", "I32", "U8", "BOOL", "F16", "BF16"};
static const size_t dtype_sizes[] = {4, 8, 8, 4, 1, 1, 2, 2};

size_t md_dtype_size(md_dtype dt) { return dtype_sizes[dt]; }
const char *md_dtype_name(md_dtype dt) { return dtype_names[dt]; }

uint64_t md_fnv1a64(const void *data, size_t n, uint64_t h) {
    const unsigned char *p = data;
    if (h == 0) h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

static int parse_dtype(const char *s, md_dtype *dt) {
    for (int i = 0; i < (int)(sizeof dtype_names / sizeof *dtype_names); i++)
        if (!strcmp(s, dtype_names[i])) { *dt = (md_dtype)i; return 1; }
    return 0;
}

void md_st_free(md_st_file *f) {
    if (!f) return;
    for (int i = 0; i < f->count; i++) free(f->tensors[i].name);
    for (int i = 0; i < f->meta_count; i++) { free(f->meta_keys[i]); free(f->meta_values[i]); }
    free(f->tensors);
    free(f->meta_keys);
    free(f->meta_values);
    free(f->block);
    free(f->path);
    memset(f, 0, sizeof *f);
}

static int cmp_range(const void *a, const void *b) {
    const md_st_tensor *x = *(md_st_tensor *const *)a, *y = *(md_st_tensor *const *)b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(const char *const *)a, *(const char *const *)b); }

/* The first key that occurs twice among obj's members, or NULL. The safetensors format has
 * unique keys (a JSON object), and cJSON keeps duplicates: a second "__metadata__" or a
 * repeated tensor name would otherwise be read twice. */
static md_status check_unique_keys(const char *path, const char *what, const cJSON *obj) {
    int n = cJSON_GetArraySize(obj);
    if (n < 2) return MD_OK;
    const char **keys = malloc((size_t)n * sizeof *keys);
    if (!keys) return md_set_error(MD_ERR_NOMEM, "%s: out of memory for %d keys", path, n);
    int k = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, obj) keys[k++] = it->string ? it->string : "";
    qsort(keys, (size_t)k, sizeof *keys, cmp_str);
    md_status st = MD_OK;
    for (int i = 1; i < k; i++)
        if (!strcmp(keys[i - 1], keys[i])) {
            st = md_set_error(MD_ERR_FORMAT, "%s: %s '%s' appears twice (safetensors keys are unique)", path, what, keys[i]);
            break;
        }
    free(keys);
    return st;
}

static md_status parse_header(md_st_file *f, const char *json, size_t len, uint64_t data_size) {
    const char *path = f->path;
    cJSON *root = cJSON_ParseWithLength(json, len);
    if (!root) {
        const char *ep = cJSON_GetErrorPtr();
        long off = ep && ep >= json && ep <= json + len ? (long)(ep - json) : -1;
        return md_set_error(MD_ERR_FORMAT, "%s: header is not valid JSON (near byte %ld of the header)", path, off);
    }
    md_status st = MD_OK;
    if (!cJSON_IsObject(root)) { st = md_set_error(MD_ERR_FORMAT, "%s: header is not a JSON object", path); goto done; }
    if ((st = check_unique_keys(path, "header key", root)) != MD_OK) goto done;
    int n = cJSON_GetArraySize(root);
    f->tensors = calloc((size_t)(n ? n : 1), sizeof *f->tensors);
    if (!f->tensors) { st = md_set_error(MD_ERR_NOMEM, "%s: out of memory for %d tensors", path, n); goto done; }
    cJSON *item;
    cJSON_ArrayForEach(item, root) {
        const char *key = item->string ? item->string : "";
        if (!strcmp(key, "__metadata__")) {
            if (!cJSON_IsObject(item)) { st = md_set_error(MD_ERR_FORMAT, "%s: __metadata__ is not an object", path); goto done; }
            if ((st = check_unique_keys(path, "__metadata__ key", item)) != MD_OK) goto done;
            int m = cJSON_GetArraySize(item);
            f->meta_keys = calloc((size_t)(m ? m : 1), sizeof(char *));
            f->meta_values = calloc((size_t)(m ? m : 1), sizeof(char *));
            if (!f->meta_keys || !f->meta_values) { st = md_set_error(MD_ERR_NOMEM, "%s: out of memory", path); goto done; }
            cJSON *kv;
            cJSON_ArrayForEach(kv, item) {
                if (!cJSON_IsString(kv)) { st = md_set_error(MD_ERR_FORMAT, "%s: __metadata__.%s is not a string", path, kv->string); goto done; }
                f->meta_keys[f->meta_count] = strdup(kv->string);
                f->meta_values[f->meta_count] = strdup(kv->valuestring);
                f->meta_count++;
                if (!f->meta_keys[f->meta_count - 1] || !f->meta_values[f->meta_count - 1]) { st = md_set_error(MD_ERR_NOMEM, "%s: out of memory", path); goto done; }
            }
            continue;
        }
        md_st_tensor *t = &f->tensors[f->count];
        t->name = strdup(key);
        if (!t->name) { st = md_set_error(MD_ERR_NOMEM, "%s: out of memory", path); goto done; }
        f->count++;
        cJSON *dt = cJSON_GetObjectItemCaseSensitive(item, "dtype");
        cJSON *sh = cJSON_GetObjectItemCaseSensitive(item, "shape");
        cJSON *off = cJSON_GetObjectItemCaseSensitive(item, "data_offsets");
        if (!cJSON_IsString(dt) || !parse_dtype(dt->valuestring, &t->dtype)) {
            st = md_set_error(MD_ERR_FORMAT, "%s: tensor '%s': missing or unknown dtype", path, key); goto done;
        }
        if (!cJSON_IsArray(sh) || cJSON_GetArraySize(sh) > MD_ST_MAX_DIMS) {
            st = md_set_error(MD_ERR_FORMAT, "%s: tensor '%s': shape missing or has more than %d dims", path, key, MD_ST_MAX_DIMS); goto done;
        }
        t->numel = 1;
        cJSON *d;
        cJSON_ArrayForEach(d, sh) {
            if (!cJSON_IsNumber(d) || d->valuedouble < 0 || d->valuedouble > 1e12 || d->valuedouble != floor(d->valuedouble)) {
                st = md_set_error(MD_ERR_FORMAT, "%s: tensor '%s': bad shape entry", path, key); goto done;
            }
            t->shape[t->ndim++] = (int64_t)d->valuedouble;
            t->numel *= (size_t)d->valuedouble;
        }
        if (!cJSON_IsArray(off) || cJSON_GetArraySize(off) != 2 || !cJSON_IsNumber(cJSON_GetArrayItem(off, 0)) ||
            !cJSON_IsNumber(cJSON_GetArrayItem(off, 1))) {
            st = md_set_error(MD_ERR_FORMAT, "%s: tensor '%s': data_offsets missing or malformed", path, key); goto done;
        }
        double b = cJSON_GetArrayItem(off, 0)->valuedouble, e = cJSON_GetArrayItem(off, 1)->valuedouble;
        if (b < 0 || e < b || e > (double)data_size) {
            st = md_set_error(MD_ERR_FORMAT, "%s: tensor '%s': data_offsets [%.0f, %.0f] outside the %" PRIu64 "-byte data block (truncated file?)",
                              path, key, b, e, data_size); goto done;
        }
        t->nbytes = (size_t)(e - b);
        if (t->nbytes != t->numel * md_dtype_size(t->dtype)) {
            st = md_set_error(MD_ERR_FORMAT, "%s: tensor '%s': %zu bytes for %zu elements of %s", path, key, t->nbytes, t->numel,
                              md_dtype_name(t->dtype)); goto done;
        }
        t->offset = (size_t)b;
    }
done:
    cJSON_Delete(root);
    return st;
}

md_status md_st_load(const char *path, md_st_file *f) {
    memset(f, 0, sizeof *f);
    f->path = strdup(path);
    if (!f->path) return md_set_error(MD_ERR_NOMEM, "%s: out of memory", path);
    md_status st = MD_OK;
    char *hdr = NULL;
    FILE *fp = fopen(path, "rb");
    if (!fp) { st = md_set_error(MD_ERR_IO, "%s: cannot open: %s", path, strerror(errno)); goto fail; }
    struct stat sb;
    if (fstat(fileno(fp), &sb) != 0 || !S_ISREG(sb.st_mode)) { st = md_set_error(MD_ERR_IO, "%s: not a regular file", path); goto fail; }
    uint64_t fsize = (uint64_t)sb.st_size;
    unsigned char lenb[8];
    if (fsize < 8 || fread(lenb, 1, 8, fp) != 8) { st = md_set_error(MD_ERR_FORMAT, "%s: too short to be a safetensors file (%" PRIu64 " bytes)", path, fsize); goto fail; }
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | lenb[i];
    if (hlen > MD_ST_MAX_HEADER || hlen > fsize - 8) {
        st = md_set_error(MD_ERR_FORMAT, "%s: header length %" PRIu64 " does not fit the %" PRIu64 "-byte file (not safetensors, or truncated)", path, hlen, fsize);
        goto fail;
    }
    hdr = malloc(hlen + 1);
    if (!hdr) { st = md_set_error(MD_ERR_NOMEM, "%s: out of memory for header", path); goto fail; }
    if (fread(hdr, 1, hlen, fp) != hlen) { st = md_set_error(MD_ERR_IO, "%s: short read of header", path); goto fail; }
    hdr[hlen] = 0;
    if (hlen == 0 || hdr[0] != '{') { st = md_set_error(MD_ERR_FORMAT, "%s: header does not start with '{' (not a safetensors file)", path); goto fail; }
    uint64_t dsize = fsize - 8 - hlen;
    if ((st = parse_header(f, hdr, hlen, dsize)) != MD_OK) goto fail;
    f->block_size = dsize;
    f->block = malloc(dsize ? dsize : 1);
    if (!f->block) { st = md_set_error(MD_ERR_NOMEM, "%s: out of memory for %" PRIu64 " bytes of data", path, dsize); goto fail; }
    if (dsize && fread(f->block, 1, dsize, fp) != dsize) { st = md_set_error(MD_ERR_IO, "%s: short read of data", path); goto fail; }
    for (int i = 0; i < f->count; i++) f->tensors[i].data = (char *)f->block + f->tensors[i].offset;
    /* no two tensors may overlap */
    if (f->count > 1) {
        md_st_tensor **order = malloc((size_t)f->count * sizeof *order);
        if (!order) { st = md_set_error(MD_ERR_NOMEM, "%s: out of memory", path); goto fail; }
        for (int i = 0; i < f->count; i++) order[i] = &f->tensors[i];
        qsort(order, (size_t)f->count, sizeof *order, cmp_range);
        for (int i = 1; i < f->count; i++)
            if (order[i - 1]->offset + order[i - 1]->nbytes > order[i]->offset) {
                st = md_set_error(MD_ERR_FORMAT, "%s: tensors '%s' and '%s' overlap", path, order[i - 1]->name, order[i]->name);
                break;
            }
        free(order);
        if (st) goto fail;
    }
    const char *ck = md_st_meta(f, "minidet.checksum");
    if (ck) {
        char want[32];
        snprintf(want, sizeof want, "%016" PRIx64, md_fnv1a64(f->block, dsize, 0));
        if (strcmp(ck, want) != 0) { st = md_set_error(MD_ERR_FORMAT, "%s: checksum mismatch (file is corrupt or truncated)", path); goto fail; }
    }
    free(hdr);
    fclose(fp);
    return MD_OK;
fail:
    free(hdr);
    if (fp) fclose(fp);
    md_st_free(f);
    return st;
}

const md_st_tensor *md_st_find(const md_st_file *f, const char *name) {
    for (int i = 0; i < f->count; i++)
        if (!strcmp(f->tensors[i].name, name)) return &f->tensors[i];
    return NULL;
}

const char *md_st_meta(const md_st_file *f, const char *key) {
    for (int i = 0; i < f->meta_count; i++)
        if (!strcmp(f->meta_keys[i], key)) return f->meta_values[i];
    return NULL;
}

static md_status check_tensor(const md_st_file *f, const char *name, int ndim, const int *shape, size_t cap, const md_st_tensor **out) {
    const md_st_tensor *t = md_st_find(f, name);
    if (!t) return md_set_error(MD_ERR_FORMAT, "%s: no tensor named '%s'", f->path, name);
    int match = ndim < 0 || ndim == t->ndim;
    for (int i = 0; match && ndim >= 0 && i < ndim; i++) match = t->shape[i] == shape[i];
    if (!match) {
        char a[128] = "[", b[128] = "[";
        for (int i = 0; i < t->ndim; i++) snprintf(a + strlen(a), sizeof a - strlen(a), i ? ", %" PRId64 : "%" PRId64, t->shape[i]);
        for (int i = 0; i < ndim; i++) snprintf(b + strlen(b), sizeof b - strlen(b), i ? ", %d" : "%d", shape[i]);
        strncat(a, "]", sizeof a - strlen(a) - 1);
        strncat(b, "]", sizeof b - strlen(b) - 1);
        return md_set_error(MD_ERR_SHAPE, "%s: tensor '%s' has shape %s, expected %s", f->path, name, a, b);
    }
    if (t->numel > cap) return md_set_error(MD_ERR_SHAPE, "%s: tensor '%s' has %zu elements, buffer holds %zu", f->path, name, t->numel, cap);
    if (t->dtype != MD_DT_F32 && t->dtype != MD_DT_F64 && t->dtype != MD_DT_I64 && t->dtype != MD_DT_I32)
        return md_set_error(MD_ERR_FORMAT, "%s: tensor '%s' has unsupported dtype %s", f->path, name, md_dtype_name(t->dtype));
    *out = t;
    return MD_OK;
}

/* Element i of t as double (memcpy: the data may be unaligned). */
static double elem(const md_st_tensor *t, size_t i) {
    const char *p = (const char *)t->data;
    switch (t->dtype) {
    case MD_DT_F32: { float v; memcpy(&v, p + 4 * i, 4); return v; }
    case MD_DT_F64: { double v; memcpy(&v, p + 8 * i, 8); return v; }
    case MD_DT_I64: { int64_t v; memcpy(&v, p + 8 * i, 8); return (double)v; }
    case MD_DT_I32: { int32_t v; memcpy(&v, p + 4 * i, 4); return v; }
    default: return NAN;
    }
}

md_status md_st_read_f32(const md_st_file *f, const char *name, int ndim, const int *shape, float *out, size_t cap) {
    const md_st_tensor *t;
    md_status st = check_tensor(f, name, ndim, shape, cap, &t);
    if (st) return st;
    if (t->dtype == MD_DT_F32) memcpy(out, t->data, t->nbytes);
    else for (size_t i = 0; i < t->numel; i++) out[i] = (float)elem(t, i);
    return MD_OK;
}

md_status md_st_read_f64(const md_st_file *f, const char *name, int ndim, const int *shape, double *out, size_t cap) {
    const md_st_tensor *t;
    md_status st = check_tensor(f, name, ndim, shape, cap, &t);
    if (st) return st;
    for (size_t i = 0; i < t->numel; i++) out[i] = elem(t, i);
    return MD_OK;
}

md_status md_st_read_i64(const md_st_file *f, const char *name, int ndim, const int *shape, int64_t *out, size_t cap) {
    const md_st_tensor *t;
    md_status st = check_tensor(f, name, ndim, shape, cap, &t);
    if (st) return st;
    if (t->dtype == MD_DT_I64) memcpy(out, t->data, t->nbytes);
    else for (size_t i = 0; i < t->numel; i++) out[i] = (int64_t)elem(t, i);
    return MD_OK;
}

md_status md_st_alloc_f32(const md_st_file *f, const char *name, float **out, size_t *numel) {
    *out = NULL;
    const md_st_tensor *t = md_st_find(f, name);
    if (!t) return md_set_error(MD_ERR_FORMAT, "%s: no tensor named '%s'", f->path, name);
    float *buf = malloc((t->numel ? t->numel : 1) * sizeof(float));
    if (!buf) return md_set_error(MD_ERR_NOMEM, "%s: out of memory for tensor '%s'", f->path, name);
    md_status st = md_st_read_f32(f, name, -1, NULL, buf, t->numel);
    if (st) { free(buf); return st; }
    *out = buf;
    if (numel) *numel = t->numel;
    return MD_OK;
}

/* ---------------------------------------------------------------- writer */

typedef struct {
    char *name;
    md_dtype dtype;
    int ndim;
    int64_t shape[MD_ST_MAX_DIMS];
    size_t nbytes;
    const void *data;
} wentry;

struct md_st_writer {
    wentry *e;
    int n, cap;
    char **mk, **mv;
    int mn, mcap;
};

md_st_writer *md_st_writer_new(void) {
    md_st_writer *w = calloc(1, sizeof *w);
    if (!w) md_set_error(MD_ERR_NOMEM, "safetensors writer: out of memory");
    return w;
}

void md_st_writer_free(md_st_writer *w) {
    if (!w) return;
    for (int i = 0; i < w->n; i++) free(w->e[i].name);
    for (int i = 0; i < w->mn; i++) { free(w->mk[i]); free(w->mv[i]); }
    free(w->e); free(w->mk); free(w->mv);
    free(w);
}

md_status md_st_writer_add(md_st_writer *w, const char *name, md_dtype dt, int ndim, const int64_t *shape, const void *data) {
    if (ndim < 0 || ndim > MD_ST_MAX_DIMS) return md_set_error(MD_ERR_ARG, "safetensors writer: '%s' has %d dims", name, ndim);
    if (!strcmp(name, "__metadata__")) return md_set_error(MD_ERR_ARG, "safetensors writer: reserved tensor name");
    if (w->n == w->cap) {
        int nc = w->cap ? 2 * w->cap : 64;
        wentry *ne = realloc(w->e, (size_t)nc * sizeof *ne);
        if (!ne) return md_set_error(MD_ERR_NOMEM, "safetensors writer: out of memory");
        w->e = ne; w->cap = nc;
    }
    wentry *e = &w->e[w->n];
    memset(e, 0, sizeof *e);
    e->name = strdup(name);
    if (!e->name) return md_set_error(MD_ERR_NOMEM, "safetensors writer: out of memory");
    e->dtype = dt; e->ndim = ndim; e->data = data;
    size_t numel = 1;
    for (int i = 0; i < ndim; i++) { e->shape[i] = shape[i]; numel *= (size_t)shape[i]; }
    e->nbytes = numel * md_dtype_size(dt);
    w->n++;
    return MD_OK;
}

md_status md_st_writer_add_f32(md_st_writer *w, const char *name, int ndim, const int *shape, const float *data) {
    int64_t s[MD_ST_MAX_DIMS];
    if (ndim < 0 || ndim > MD_ST_MAX_DIMS) return md_set_error(MD_ERR_ARG, "safetensors writer: '%s' has %d dims", name, ndim);
    for (int i = 0; i < ndim; i++) s[i] = shape[i];
    return md_st_writer_add(w, name, MD_DT_F32, ndim, s, data);
}

md_status md_st_writer_meta(md_st_writer *w, const char *key, const char *value) {
    if (w->mn == w->mcap) {
        int nc = w->mcap ? 2 * w->mcap : 16;
        char **a = realloc(w->mk, (size_t)nc * sizeof *a);
        if (!a) return md_set_error(MD_ERR_NOMEM, "safetensors writer: out of memory");
        w->mk = a;
        char **b = realloc(w->mv, (size_t)nc * sizeof *b);
        if (!b) return md_set_error(MD_ERR_NOMEM, "safetensors writer: out of memory");
        w->mv = b;
        w->mcap = nc;
    }
    for (int i = 0; i < w->mn; i++)
        if (!strcmp(w->mk[i], key)) {
            char *v = strdup(value);
            if (!v) return md_set_error(MD_ERR_NOMEM, "safetensors writer: out of memory");
            free(w->mv[i]); w->mv[i] = v;
            return MD_OK;
        }
    w->mk[w->mn] = strdup(key);
    w->mv[w->mn] = strdup(value);
    if (!w->mk[w->mn] || !w->mv[w->mn]) { free(w->mk[w->mn]); free(w->mv[w->mn]); return md_set_error(MD_ERR_NOMEM, "safetensors writer: out of memory"); }
    w->mn++;
    return MD_OK;
}

static int write_all(int fd, const void *buf, size_t n) {
    const char *p = buf;
    while (n) {
        ssize_t k = write(fd, p, n);
        if (k < 0) { if (errno == EINTR) continue; return -1; }
        p += k; n -= (size_t)k;
    }
    return 0;
}

md_status md_st_writer_save(md_st_writer *w, const char *path) {
    uint64_t h = 0;
    for (int i = 0; i < w->n; i++) h = md_fnv1a64(w->e[i].data, w->e[i].nbytes, h);
    if (w->n == 0) h = md_fnv1a64("", 0, 0);
    char ck[32];
    snprintf(ck, sizeof ck, "%016" PRIx64, h);
    md_status st = md_st_writer_meta(w, "minidet.checksum", ck);
    if (st) return st;

    cJSON *root = cJSON_CreateObject(), *meta = cJSON_CreateObject();
    if (!root || !meta) { cJSON_Delete(root); cJSON_Delete(meta); return md_set_error(MD_ERR_NOMEM, "%s: out of memory", path); }
    for (int i = 0; i < w->mn; i++) cJSON_AddStringToObject(meta, w->mk[i], w->mv[i]);
    cJSON_AddItemToObject(root, "__metadata__", meta);
    size_t off = 0;
    for (int i = 0; i < w->n; i++) {
        cJSON *t = cJSON_CreateObject(), *sh = cJSON_CreateArray(), *of = cJSON_CreateArray();
        cJSON_AddStringToObject(t, "dtype", md_dtype_name(w->e[i].dtype));
        for (int d = 0; d < w->e[i].ndim; d++) cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)w->e[i].shape[d]));
        cJSON_AddItemToObject(t, "shape", sh);
        cJSON_AddItemToArray(of, cJSON_CreateNumber((double)off));
        cJSON_AddItemToArray(of, cJSON_CreateNumber((double)(off + w->e[i].nbytes)));
        cJSON_AddItemToObject(t, "data_offsets", of);
        cJSON_AddItemToObject(root, w->e[i].name, t);
        off += w->e[i].nbytes;
    }
    char *js = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (!js) return md_set_error(MD_ERR_NOMEM, "%s: out of memory for header", path);
    size_t jl = strlen(js), padded = (jl + 7) & ~(size_t)7;
    char *hdr = malloc(8 + padded);
    if (!hdr) { cJSON_free(js); return md_set_error(MD_ERR_NOMEM, "%s: out of memory for header", path); }
    for (int i = 0; i < 8; i++) hdr[i] = (char)(((uint64_t)padded >> (8 * i)) & 0xff);
    memcpy(hdr + 8, js, jl);
    memset(hdr + 8 + jl, ' ', padded - jl);
    cJSON_free(js);

    size_t pl = strlen(path);
    char *tmp = malloc(pl + 32);
    if (!tmp) { free(hdr); return md_set_error(MD_ERR_NOMEM, "%s: out of memory", path); }
    snprintf(tmp, pl + 32, "%s.tmp.%ld", path, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) { st = md_set_error(MD_ERR_IO, "%s: cannot create %s: %s", path, tmp, strerror(errno)); goto out; }
    int bad = write_all(fd, hdr, 8 + padded);
    for (int i = 0; !bad && i < w->n; i++) bad = write_all(fd, w->e[i].data, w->e[i].nbytes);
    if (!bad) bad = fsync(fd);
    int err = errno;
    if (close(fd) != 0 && !bad) { bad = 1; err = errno; }
    if (bad) { unlink(tmp); st = md_set_error(MD_ERR_IO, "%s: write failed: %s (previous file left intact)", path, strerror(err)); goto out; }
    if (rename(tmp, path) != 0) { err = errno; unlink(tmp); st = md_set_error(MD_ERR_IO, "%s: rename failed: %s", path, strerror(err)); goto out; }
    /* make the rename durable */
    char *dcopy = strdup(path);
    if (dcopy) {
        int dfd = open(dirname(dcopy), O_RDONLY | O_DIRECTORY);
        if (dfd >= 0) { fsync(dfd); close(dfd); }
        free(dcopy);
    }
out:
    free(tmp);
    free(hdr);
    return st;
}
