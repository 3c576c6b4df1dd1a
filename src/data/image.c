/* image.c — image files: decode with stb_image, header checks, the dataset
 * start-up check (see include/minidet/data.h). */
#include "minidet/data.h"
#include "minidet/log.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <stb_image.h>

#define EOI_SEARCH 4096 /* the JPEG end-of-image marker must be within this many bytes of the end */

/* Regular, non-empty file; returns its size. */
static md_status check_file(const char *path, long *size) {
    struct stat sb;
    if (stat(path, &sb) != 0) return md_set_error(MD_ERR_IO, "%s: cannot open image: %s", path, strerror(errno));
    if (S_ISDIR(sb.st_mode)) return md_set_error(MD_ERR_IO, "%s: is a directory, expected an image file", path);
    if (!S_ISREG(sb.st_mode)) return md_set_error(MD_ERR_IO, "%s: not a regular file", path);
    if (sb.st_size == 0) return md_set_error(MD_ERR_FORMAT, "%s: zero-byte image file", path);
    *size = (long)sb.st_size;
    return MD_OK;
}

static int is_jpeg(const uint8_t *head, size_t n) { return n >= 3 && head[0] == 0xFF && head[1] == 0xD8 && head[2] == 0xFF; }

/* Entropy-coded data cannot contain FF D9, so a file without it near the end stopped early. */
static int has_eoi(const uint8_t *tail, size_t n) {
    for (size_t i = n; i >= 2; i--)
        if (tail[i - 2] == 0xFF && tail[i - 1] == 0xD9) return 1;
    return 0;
}

static md_status truncated_jpeg(const char *path) {
    return md_set_error(MD_ERR_FORMAT, "%s: truncated or corrupt JPEG: no end-of-image marker (FF D9) at the end of the file", path);
}

static md_status not_8bit(const char *path) {
    return md_set_error(MD_ERR_FORMAT, "%s: 16-bit PNG: not supported by default (convert to 8-bit, or set allow_16bit to load it as "
                        "8-bit)", path);
}

md_status md_image_load(const char *path, int allow_16bit, md_image *img) {
    memset(img, 0, sizeof *img);
    long size;
    md_status st = check_file(path, &size);
    if (st) return st;
    FILE *f = fopen(path, "rb");
    if (!f) return md_set_error(MD_ERR_IO, "%s: cannot open image: %s", path, strerror(errno));
    uint8_t *buf = malloc((size_t)size);
    if (!buf) {
        fclose(f);
        return md_set_error(MD_ERR_NOMEM, "%s: out of memory reading %ld bytes", path, size);
    }
    size_t got = fread(buf, 1, (size_t)size, f);
    fclose(f);
    if (got != (size_t)size) {
        free(buf);
        return md_set_error(MD_ERR_IO, "%s: short read (%zu of %ld bytes)", path, got, size);
    }
    if (size > (long)0x7fffffff) {
        free(buf);
        return md_set_error(MD_ERR_FORMAT, "%s: image file larger than 2 GB", path);
    }
    if (is_jpeg(buf, (size_t)size)) {
        size_t n = (size_t)size < EOI_SEARCH ? (size_t)size : EOI_SEARCH;
        if (!has_eoi(buf + size - n, n)) {
            free(buf);
            return truncated_jpeg(path);
        }
    }
    if (!allow_16bit && stbi_is_16_bit_from_memory(buf, (int)size)) {
        free(buf);
        return not_8bit(path);
    }
    int w, h, comp;
    uint8_t *px = stbi_load_from_memory(buf, (int)size, &w, &h, &comp, 3);
    free(buf);
    if (!px) return md_set_error(MD_ERR_FORMAT, "%s: cannot decode image: %s", path, stbi_failure_reason());
    img->data = px;
    img->width = w;
    img->height = h;
    return MD_OK;
}

void md_image_free(md_image *img) {
    if (img->data) stbi_image_free(img->data);
    memset(img, 0, sizeof *img);
}

md_status md_image_probe(const char *path, int allow_16bit, int *width, int *height) {
    long size;
    md_status st = check_file(path, &size);
    if (st) return st;
    FILE *f = fopen(path, "rb");
    if (!f) return md_set_error(MD_ERR_IO, "%s: cannot open image: %s", path, strerror(errno));
    uint8_t head[4] = {0}, tail[EOI_SEARCH];
    size_t nh = fread(head, 1, sizeof head, f);
    if (is_jpeg(head, nh)) {
        size_t n = (size_t)size < EOI_SEARCH ? (size_t)size : EOI_SEARCH;
        if (fseek(f, size - (long)n, SEEK_SET) != 0 || fread(tail, 1, n, f) != n) {
            fclose(f);
            return md_set_error(MD_ERR_IO, "%s: cannot read the end of the file", path);
        }
        if (!has_eoi(tail, n)) {
            fclose(f);
            return truncated_jpeg(path);
        }
    }
    rewind(f);
    int w, h, comp;
    if (!stbi_info_from_file(f, &w, &h, &comp)) {
        /* stb_image's reason is that of the last format it tried: name what a PNG header declares */
        uint8_t ih[24];
        rewind(f);
        size_t ni = fread(ih, 1, sizeof ih, f);
        fclose(f);
        if (ni == sizeof ih && !memcmp(ih, "\x89PNG\r\n\x1a\n", 8) && !memcmp(ih + 12, "IHDR", 4)) {
            uint32_t pw = (uint32_t)ih[16] << 24 | (uint32_t)ih[17] << 16 | (uint32_t)ih[18] << 8 | ih[19];
            uint32_t ph = (uint32_t)ih[20] << 24 | (uint32_t)ih[21] << 16 | (uint32_t)ih[22] << 8 | ih[23];
            return md_set_error(MD_ERR_FORMAT, "%s: not a readable PNG (header declares %u x %u: %s)", path, pw, ph,
                                !pw || !ph ? "zero size" : (uint64_t)pw * ph * 4 > (1u << 30) || pw > (1u << 24) || ph > (1u << 24)
                                                         ? "too large to decode (stb_image's limit is 2^30 bytes)" : "corrupt header");
        }
        return md_set_error(MD_ERR_FORMAT, "%s: not a readable image (%s)", path, stbi_failure_reason());
    }
    rewind(f);
    int is16 = stbi_is_16_bit_from_file(f);
    fclose(f);
    if (is16 && !allow_16bit) return not_8bit(path);
    *width = w;
    *height = h;
    return MD_OK;
}

md_status md_dataset_check(const md_coco *c, const char *image_dir, md_bad_policy policy, int allow_16bit, uint8_t *bad, int *num_bad) {
    return md_dataset_check_shard(c, image_dir, policy, allow_16bit, 0, 1, bad, num_bad);
}

md_status md_dataset_check_shard(const md_coco *c, const char *image_dir, md_bad_policy policy, int allow_16bit, int shard_rank,
                                 int shard_count, uint8_t *bad, int *num_bad) {
    if (shard_count < 1 || shard_rank < 0 || shard_rank >= shard_count)
        return md_set_error(MD_ERR_ARG, "image check: shard %d of %d", shard_rank, shard_count);
    int nbad = 0;
    char path[4096];
    int first = (int)((int64_t)c->num_images * shard_rank / shard_count), end = (int)((int64_t)c->num_images * (shard_rank + 1) / shard_count);
    for (int i = first; i < end; i++) {
        const md_coco_image *im = &c->images[i];
        int w = 0, h = 0;
        snprintf(path, sizeof path, "%s/%s", image_dir, im->file_name);
        md_status st = md_image_probe(path, allow_16bit, &w, &h);
        if (!st && (w != im->width || h != im->height))
            st = md_set_error(MD_ERR_FORMAT, "%s: image is %dx%d but %s: images[%d] (id %lld) says width %d, height %d", path, w, h, c->path, i,
                              (long long)im->id, im->width, im->height);
        if (bad) bad[i] = st != MD_OK;
        if (!st) continue;
        if (policy == MD_POLICY_FAIL) {
            if (num_bad) *num_bad = nbad + 1;
            return md_error_prefix(st, "image check (images[%d], id %lld)", i, (long long)im->id);
        }
        if (nbad++ < 5) md_log(MD_LOG_WARN, "skipping images[%d] (id %lld): %s", i, (long long)im->id, md_last_error());
    }
    if (nbad && shard_count == 1) md_log(MD_LOG_WARN, "%s: %d of %d images unreadable, skipped", image_dir, nbad, c->num_images);
    if (num_bad) *num_bad = nbad;
    md_clear_error();
    return MD_OK;
}
