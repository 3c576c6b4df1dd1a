/* eval_util.c — file reading, atomic writes, the stable sort and box IoU of src/eval (see eval_util.h). */
#include "eval_util.h"
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

md_status md_eval_read_file(const char *path, char **data, size_t *len) {
    *data = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return md_set_error(MD_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fileno(f), &sb) == 0 && S_ISDIR(sb.st_mode)) {
        fclose(f);
        return md_set_error(MD_ERR_IO, "%s: is a directory, expected a JSON file", path);
    }
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    if (!buf) { fclose(f); return md_set_error(MD_ERR_NOMEM, "%s: out of memory reading the file", path); }
    if (fseek(f, 0, SEEK_END) == 0) {
        long sz = ftell(f);
        if (sz > 0 && (size_t)sz + 1 > cap) {
            char *nb = realloc(buf, (size_t)sz + 1);
            if (!nb) { free(buf); fclose(f); return md_set_error(MD_ERR_NOMEM, "%s: out of memory (%ld bytes)", path, sz); }
            buf = nb;
            cap = (size_t)sz + 1;
        }
        rewind(f);
    }
    for (;;) {
        if (n + 1 >= cap) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) { free(buf); fclose(f); return md_set_error(MD_ERR_NOMEM, "%s: out of memory reading the file", path); }
            buf = nb;
            cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - 1 - n, f);
        n += got;
        if (got == 0) break;
    }
    if (ferror(f)) {
        int e = errno;
        free(buf);
        fclose(f);
        return md_set_error(MD_ERR_IO, "%s: read error: %s", path, strerror(e));
    }
    fclose(f);
    buf[n] = 0;
    *data = buf;
    *len = n;
    return MD_OK;
}

md_status md_eval_write_atomic(const char *path, const void *data, size_t len) {
    size_t pl = strlen(path);
    char *tmp = malloc(pl + 32);
    if (!tmp) return md_set_error(MD_ERR_NOMEM, "%s: out of memory", path);
    snprintf(tmp, pl + 32, "%s.tmp.%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        md_set_error(MD_ERR_IO, "%s: cannot create %s: %s", path, tmp, strerror(errno));
        free(tmp);
        return MD_ERR_IO;
    }
    int ok = fwrite(data, 1, len, f) == len;
    ok = fflush(f) == 0 && ok;
    ok = fsync(fileno(f)) == 0 && ok;
    int e = errno;
    ok = fclose(f) == 0 && ok;
    if (!ok || rename(tmp, path) != 0) {
        if (ok) e = errno;
        remove(tmp);
        md_set_error(MD_ERR_IO, "%s: write failed: %s", path, strerror(e));
        free(tmp);
        return MD_ERR_IO;
    }
    free(tmp);
    return MD_OK;
}

int md_eval_fmt_double(char *s, size_t cap, double v) {
    for (int prec = 15; prec < 17; prec++) {
        int n = snprintf(s, cap, "%.*g", prec, v);
        if (strtod(s, NULL) == v) return n;
    }
    return snprintf(s, cap, "%.17g", v);
}

/* Stable: an element of the right run goes first only if its key is strictly greater. */
static void merge_desc(uint32_t *idx, uint32_t *tmp, size_t n, const double *key) {
    if (n <= 16) {
        for (size_t i = 1; i < n; i++) {
            uint32_t v = idx[i];
            double kv = key[v];
            size_t j = i;
            while (j > 0 && key[idx[j - 1]] < kv) { idx[j] = idx[j - 1]; j--; }
            idx[j] = v;
        }
        return;
    }
    size_t h = n / 2;
    merge_desc(idx, tmp, h, key);
    merge_desc(idx + h, tmp, n - h, key);
    if (!(key[idx[h]] > key[idx[h - 1]])) return; /* already in order */
    memcpy(tmp, idx, h * sizeof *idx);
    size_t i = 0, j = h, o = 0;
    while (i < h && j < n) {
        if (key[idx[j]] > key[tmp[i]]) idx[o++] = idx[j++];
        else idx[o++] = tmp[i++];
    }
    while (i < h) idx[o++] = tmp[i++];
}

void md_eval_sort_desc(uint32_t *idx, uint32_t *tmp, size_t n, const double *key) {
    if (n > 1) merge_desc(idx, tmp, n, key);
}

void md_eval_box_ious(const double *dbb, const uint32_t *dsel, int D, const double *gbb, const uint32_t *gsel,
                      const uint8_t *crowd, int G, double *o) {
    for (int g = 0; g < G; g++) {
        const double *gb = gbb + 4 * (size_t)gsel[g];
        double ga = gb[2] * gb[3];
        int cr = crowd && crowd[gsel[g]];
        for (int d = 0; d < D; d++) {
            const double *db = dbb + 4 * (size_t)dsel[d];
            double da = db[2] * db[3];
            o[(size_t)d * G + g] = 0;
            double w = fmin(db[2] + db[0], gb[2] + gb[0]) - fmax(db[0], gb[0]);
            if (w <= 0) continue;
            double h = fmin(db[3] + db[1], gb[3] + gb[1]) - fmax(db[1], gb[1]);
            if (h <= 0) continue;
            double i = w * h, u = cr ? da : da + ga - i;
            o[(size_t)d * G + g] = i / u;
        }
    }
}

/* numpy's pairwise summation (pairwise_sum_DOUBLE, blocks of 8, PW_BLOCKSIZE 128). */
static double pairwise_sum(const double *a, size_t n) {
    if (n < 8) {
        double res = 0.;
        for (size_t i = 0; i < n; i++) res += a[i];
        return res;
    }
    if (n <= 128) {
        double r8[8];
        for (int j = 0; j < 8; j++) r8[j] = a[j];
        size_t i;
        for (i = 8; i < n - (n % 8); i += 8)
            for (int j = 0; j < 8; j++) r8[j] += a[i + j];
        double res = ((r8[0] + r8[1]) + (r8[2] + r8[3])) + ((r8[4] + r8[5]) + (r8[6] + r8[7]));
        for (; i < n; i++) res += a[i];
        return res;
    }
    size_t n2 = n / 2;
    n2 -= n2 % 8;
    return pairwise_sum(a, n2) + pairwise_sum(a + n2, n - n2);
}

double md_eval_np_mean(const double *v, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i += 8192) s += pairwise_sum(v + i, n - i < 8192 ? n - i : 8192);
    return s / (double)n;
}
