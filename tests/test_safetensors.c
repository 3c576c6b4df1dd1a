/* test_safetensors.c — round trip, a file written by scripts/st_io.py, and rejection of
 * truncated, corrupted, foreign and inconsistent files with clear messages. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "minidet/safetensors.h"
#include "testutil.h"

#define TMP "build/tmp_test.safetensors"

static long file_bytes(const char *p, unsigned char **out) {
    FILE *f = fopen(p, "rb");
    if (!f) return -1;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    *out = malloc((size_t)n);
    if (fread(*out, 1, (size_t)n, f) != (size_t)n) n = -1;
    fclose(f);
    return n;
}

static void put_bytes(const char *p, const unsigned char *b, long n) {
    FILE *f = fopen(p, "wb");
    fwrite(b, 1, (size_t)n, f);
    fclose(f);
}

static void write_sample(void) {
    float a[6] = {0, 1.5f, -2, 3e-8f, 1e30f, -0.0f};
    int64_t b[3] = {1, -2, 1LL << 40};
    int64_t sb = 3;
    int sa[2] = {2, 3};
    md_st_writer *w = md_st_writer_new();
    CHECK_OK(md_st_writer_add_f32(w, "backbone.body.conv1.weight", 2, sa, a));
    CHECK_OK(md_st_writer_add(w, "iter", MD_DT_I64, 1, &sb, b));
    CHECK_OK(md_st_writer_meta(w, "loss", "giou"));
    CHECK_OK(md_st_writer_save(w, TMP));
    md_st_writer_free(w);
}

static void test_roundtrip(void) {
    write_sample();
    md_st_file f;
    CHECK_OK(md_st_load(TMP, &f));
    CHECK(f.count == 2, "count %d", f.count);
    float a[6];
    int sa[2] = {2, 3};
    CHECK_OK(md_st_read_f32(&f, "backbone.body.conv1.weight", 2, sa, a, 6));
    CHECK(a[1] == 1.5f && a[3] == 3e-8f && a[4] == 1e30f && signbit(a[5]), "values");
    int64_t b[3];
    CHECK_OK(md_st_read_i64(&f, "iter", -1, NULL, b, 3));
    CHECK(b[2] == (1LL << 40) && b[1] == -2, "i64 values");
    CHECK(md_st_meta(&f, "loss") && !strcmp(md_st_meta(&f, "loss"), "giou"), "metadata");
    CHECK(md_st_meta(&f, "minidet.checksum") != NULL, "checksum written");
    int wrong[2] = {3, 2};
    CHECK(md_st_read_f32(&f, "backbone.body.conv1.weight", 2, wrong, a, 6) == MD_ERR_SHAPE &&
              strstr(md_last_error(), "[2, 3]") && strstr(md_last_error(), "[3, 2]"),
          "shape mismatch message: %s", md_last_error());
    CHECK(md_st_read_f32(&f, "nope", -1, NULL, a, 6) == MD_ERR_FORMAT && strstr(md_last_error(), "'nope'"), "missing tensor: %s", md_last_error());
    CHECK(md_st_read_f32(&f, "backbone.body.conv1.weight", -1, NULL, a, 5) == MD_ERR_SHAPE, "capacity check");
    md_st_free(&f);
}

static void test_python_file(void) {
    if (!md_test_need_path("tests/fixtures/st_python.safetensors", "written by scripts/st_io.py")) return;
    md_st_file f;
    CHECK_OK(md_st_load("tests/fixtures/st_python.safetensors", &f));
    float a[6];
    double c[5];
    int64_t b[2];
    int sa[2] = {2, 3};
    CHECK_OK(md_st_read_f32(&f, "a", 2, sa, a, 6));
    for (int i = 0; i < 6; i++) CHECK(a[i] == 0.5f * (float)i, "a[%d] = %g", i, a[i]);
    CHECK_OK(md_st_read_i64(&f, "b", -1, NULL, b, 2));
    CHECK(b[0] == -3 && b[1] == (1LL << 40), "b");
    CHECK_OK(md_st_read_f64(&f, "c", -1, NULL, c, 5));
    for (int i = 0; i < 5; i++) CHECK(c[i] == 0.25 * i, "c[%d] = %g", i, c[i]);
    CHECK(md_st_meta(&f, "origin") && !strcmp(md_st_meta(&f, "origin"), "st_io.py"), "metadata");
    md_st_free(&f);
}

/* TMP = an 8-byte header length, the JSON header hdr (< 256 bytes) and data_bytes zero bytes. */
static void put_header(const char *hdr, long data_bytes) {
    unsigned char buf[512] = {0};
    size_t hl = strlen(hdr);
    buf[0] = (unsigned char)hl;
    memcpy(buf + 8, hdr, hl);
    put_bytes(TMP, buf, (long)(8 + hl) + data_bytes);
}

static void expect_reject(const char *what, const char *needle) {
    md_st_file f;
    md_status st = md_st_load(TMP, &f);
    CHECK(st != MD_OK, "%s: must be rejected", what);
    CHECK(strstr(md_last_error(), TMP) != NULL, "%s: message must name the file: %s", what, md_last_error());
    if (needle) CHECK(strstr(md_last_error(), needle) != NULL, "%s: message '%s' lacks '%s'", what, md_last_error(), needle);
    if (st == MD_OK) md_st_free(&f);
}

static void test_rejects(void) {
    unsigned char *b = NULL;
    write_sample();
    long n = file_bytes(TMP, &b);
    CHECK(n > 40, "sample size");
    if (n <= 40) return;
    for (long cut = 0; cut < n; cut += (cut < 16 ? 1 : 7)) { /* every truncation point */
        put_bytes(TMP, b, cut);
        md_st_file f;
        md_status st = md_st_load(TMP, &f);
        CHECK(st != MD_OK, "truncated at %ld of %ld must be rejected", cut, n);
        if (st == MD_OK) md_st_free(&f);
    }
    unsigned char *c = malloc((size_t)n);
    memcpy(c, b, (size_t)n);
    c[n - 3] ^= 0x40; /* flip a data bit */
    put_bytes(TMP, c, n);
    expect_reject("corrupted data", "checksum");
    static const char zip[] = "PK\003\004 this is a zip file, not safetensors....";
    put_bytes(TMP, (const unsigned char *)zip, (long)sizeof zip - 1);
    expect_reject("foreign file", NULL);
    /* valid framing, inconsistent header: byte range does not match shape */
    put_header("{\"x\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 12);
    expect_reject("size mismatch", "'x'");
    put_header("{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"y\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12);
    expect_reject("overlap", "overlap");
    put_header("{\"x\":{\"dtype\":\"Q9\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8);
    expect_reject("bad dtype", "dtype");
    /* duplicate keys: cJSON keeps both members, the format has unique keys */
    put_header("{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8);
    expect_reject("duplicate tensor name", "'x' appears twice");
    put_header("{\"__metadata__\":{\"a\":\"1\",\"b\":\"2\",\"a\":\"3\"}}", 0);
    expect_reject("duplicate metadata key", "__metadata__ key 'a' appears twice");
    free(c);
    free(b);
    md_st_file f;
    CHECK(md_st_load("build/does/not/exist.safetensors", &f) == MD_ERR_IO, "missing file");
    CHECK(md_st_load("build", &f) != MD_OK, "directory");
    /* the fuzzer's find: a checkpoint header with "__metadata__" repeated as a tensor entry
     * leaked the first metadata set (LeakSanitizer under make test SAN=1) */
    const char *dup = "tests/fuzz/corpus/safetensors/regress_dup_metadata.safetensors";
    CHECK(md_st_load(dup, &f) == MD_ERR_FORMAT && strstr(md_last_error(), "header key '__metadata__' appears twice"),
          "%s: %s", dup, md_last_error());
}

static void test_atomic_save(void) {
    write_sample();
    float x = 1;
    int s = 1;
    md_st_writer *w = md_st_writer_new();
    CHECK_OK(md_st_writer_add_f32(w, "x", 1, &s, &x));
    CHECK(md_st_writer_save(w, "build/no_such_dir/ckpt.safetensors") == MD_ERR_IO, "unwritable dir must fail");
    md_st_writer_free(w);
    md_st_file f;
    CHECK_OK(md_st_load(TMP, &f)); /* previous file untouched */
    md_st_free(&f);
    remove(TMP);
}

int main(void) {
    MD_RUN(test_roundtrip);
    MD_RUN(test_python_file);
    MD_RUN(test_rejects);
    MD_RUN(test_atomic_save);
    return md_test_summary();
}
