/* fs.c — directories, atomic writes and whole-file reads (see fs.h). */
#include "minidet/fs.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

md_status md_mkdir_p(const char *path) {
    size_t n = strlen(path);
    char *tmp = malloc(n + 1);
    if (!tmp) return md_set_error(MD_ERR_NOMEM, "%s: out of memory", path);
    memcpy(tmp, path, n + 1);
    md_status s = MD_OK;
    for (char *p = tmp + 1; !s && *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(tmp, 0777) != 0 && errno != EEXIST) s = md_set_error(MD_ERR_IO, "%s: cannot create directory: %s", tmp, strerror(errno));
        *p = '/';
    }
    if (!s && mkdir(tmp, 0777) != 0 && errno != EEXIST) s = md_set_error(MD_ERR_IO, "%s: cannot create directory: %s", tmp, strerror(errno));
    free(tmp);
    return s;
}

md_status md_write_atomic(const char *path, const void *data, size_t len) {
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

md_status md_read_file(const char *path, char **data, size_t *len) {
    *data = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return md_set_error(MD_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fileno(f), &sb) == 0 && S_ISDIR(sb.st_mode)) {
        fclose(f);
        return md_set_error(MD_ERR_IO, "%s: is a directory, expected a file", path);
    }
    /* sized from the file when it can tell, grown as it reads otherwise (pipes, /proc) */
    size_t cap = 1 << 16, n = 0;
    if (S_ISREG(sb.st_mode) && sb.st_size > 0 && (size_t)sb.st_size + 1 > cap) cap = (size_t)sb.st_size + 1;
    char *buf = malloc(cap);
    if (!buf) { fclose(f); return md_set_error(MD_ERR_NOMEM, "%s: out of memory (%zu bytes)", path, cap); }
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

int md_path_exists(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0;
}
