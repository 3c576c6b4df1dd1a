/* testutil.h — tiny test harness shared by every tests/test_*.c program.
 *
 * Each test program is a main() that calls MD_RUN(fn) for its cases and
 * returns md_test_summary(). CHECK* macros record a failure with file:line and
 * keep going; a program exits non-zero if any check failed. Tests run from
 * the repository root and read only repository paths (and what they write
 * under build/). md_test_need_path() makes a test that needs an input made
 * elsewhere (a built program, a generated file) FAIL loudly when it is
 * missing — never skip silently. */
#ifndef MINIDET_TESTUTIL_H
#define MINIDET_TESTUTIL_H
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>
#include "minidet/safetensors.h"

extern int md_test_checks, md_test_failures;

void md_test_fail(const char *file, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int md_test_summary(void);
/* Max over i of |a-b| / max(|b|, floor). Reports the index of the worst element in *worst (may be NULL). */
double md_max_rel_err(const float *a, const float *b, size_t n, double floor, size_t *worst);
double md_max_abs_err(const float *a, const float *b, size_t n);
/* max |a[i]| over n floats (0 for n = 0). */
double md_max_abs(const float *a, size_t n);
/* Compares got to a reference (n floats) as the fixture tests do: max relative error with the floor
 * 1e-2 * max|ref| (at least 1e-7), a check that it is <= tol naming case, what and the worst
 * element; folds it into *worst (may be NULL) and returns it. Use through CHECK_REL. */
double md_test_cmp_rel_at(const char *file, int line, double *worst, double tol, const char *cs, const char *what,
                          const float *got, const float *ref, size_t n);
#define CHECK_REL(worst, tol, cs, what, got, ref, n) md_test_cmp_rel_at(__FILE__, __LINE__, worst, tol, cs, what, got, ref, n)
/* The float32 fixture tensor "<cs>.<t>" of f, malloc'd (numel in *n, may be NULL); a failed check
 * and NULL when it is missing or not float32. */
float *md_test_fixture_f32(const md_st_file *f, const char *cs, const char *t, size_t *n);
/* Fixture tensors by their full name, malloc'd (numel in *n, may be NULL), converted from any stored
 * dtype the reader accepts; a failed check and NULL when missing or unreadable. */
float *md_test_tensor_f32(const md_st_file *f, const char *name, size_t *n);
double *md_test_tensor_f64(const md_st_file *f, const char *name, size_t *n);
int64_t *md_test_tensor_i64(const md_st_file *f, const char *name, size_t *n);
/* Reads the int64 vector "<cs>.geom" of exactly want values into g; a failed check and 0 otherwise. */
int md_test_fixture_geom(const md_st_file *f, const char *cs, int64_t *g, int want);
/* The whole file, malloc'd and NUL-terminated (size in *n, may be NULL); NULL when it cannot be read
 * (no check recorded: callers check what they expect). */
char *md_test_slurp(const char *path, size_t *n);
/* Up to cap - 1 bytes of the file into buf, NUL-terminated; the count read, or -1 (buf "") when the
 * file cannot be opened (no check recorded). For logs and stderr captures of a known bound. */
long md_test_read_text(const char *path, char *buf, size_t cap);
/* Writes text to path; 1 on success, 0 (no check recorded) otherwise. */
int md_test_write_text(const char *path, const char *text);
/* A fresh directory /tmp/md_test_<name>_XXXXXX, its path in buf (cap bytes); 0 with a message if it cannot. */
int md_test_tmpdir(const char *name, char *buf, size_t cap);
/* Removes path and everything below it (rm -rf); 0 on success, else a message on stderr. */
int md_test_rm_rf(const char *path);
/* Starts the program bin with argv (NULL-terminated; argv[0] as given), stdout to /dev/null and stderr
 * to err_path; returns the child's pid (-1 when it cannot fork). Wait for it with waitpid. */
pid_t md_test_spawn(const char *bin, const char *const *argv, const char *err_path);
/* Fails (and returns 0) when path does not exist, with a message saying what provides it. */
int md_test_need_path(const char *path, const char *what);

/* Runs `mpirun --oversubscribe -np np <args>` (args: the program and its arguments) under
 * `timeout timeout_s`, with MD_TEST_RANKS=np in the ranks' environment and root allowed; returns the
 * exit status (124 after the timeout, 128 + signal when killed), -1 when it cannot start. */
int md_test_mpirun(int np, const char *args, int timeout_s);

#define CHECK(cond, ...) do { md_test_checks++; if (!(cond)) md_test_fail(__FILE__, __LINE__, __VA_ARGS__); } while (0)
#define CHECK_OK(expr) do { md_test_checks++; md_status st_ = (expr); \
    if (st_ != MD_OK) md_test_fail(__FILE__, __LINE__, "%s -> %s", #expr, md_last_error()); } while (0)
#define CHECK_NEAR(a, b, tol) do { double a_ = (a), b_ = (b); md_test_checks++; \
    if (!(fabs(a_ - b_) <= (tol))) md_test_fail(__FILE__, __LINE__, "%s = %.9g, expected %.9g (tol %g)", #a, a_, b_, (double)(tol)); } while (0)
#define MD_RUN(fn) do { int f0_ = md_test_failures; fn(); \
    printf("%-44s %s\n", #fn, md_test_failures == f0_ ? "ok" : "FAILED"); fflush(stdout); } while (0)

#endif
