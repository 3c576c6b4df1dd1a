/* testutil.h — tiny test harness shared by every tests/test_*.c program.
 *
 * Each test program is a main() that calls MD_RUN(fn) for its cases and
 * returns md_test_summary(). CHECK* macros record a failure with file:line and
 * keep going; a program exits non-zero if any check failed. Tests run from
 * the repository root. md_test_need_path() makes a test that needs
 * ../shared (or another external input) FAIL loudly when it is missing —
 * never skip silently. */
#ifndef MINIDET_TESTUTIL_H
#define MINIDET_TESTUTIL_H
#include <stddef.h>
#include <stdio.h>

extern int md_test_checks, md_test_failures;

void md_test_fail(const char *file, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int md_test_summary(void);
/* Max over i of |a-b| / max(|b|, floor). Reports the index of the worst element in *worst (may be NULL). */
double md_max_rel_err(const float *a, const float *b, size_t n, double floor, size_t *worst);
double md_max_abs_err(const float *a, const float *b, size_t n);
/* Fails (and returns 0) when path does not exist, with a message saying what provides it. */
int md_test_need_path(const char *path, const char *what);

#define CHECK(cond, ...) do { md_test_checks++; if (!(cond)) md_test_fail(__FILE__, __LINE__, __VA_ARGS__); } while (0)
#define CHECK_OK(expr) do { md_test_checks++; md_status st_ = (expr); \
    if (st_ != MD_OK) md_test_fail(__FILE__, __LINE__, "%s -> %s", #expr, md_last_error()); } while (0)
#define CHECK_NEAR(a, b, tol) do { double a_ = (a), b_ = (b); md_test_checks++; \
    if (!(fabs(a_ - b_) <= (tol))) md_test_fail(__FILE__, __LINE__, "%s = %.9g, expected %.9g (tol %g)", #a, a_, b_, (double)(tol)); } while (0)
#define MD_RUN(fn) do { int f0_ = md_test_failures; fn(); \
    printf("%-44s %s\n", #fn, md_test_failures == f0_ ? "ok" : "FAILED"); fflush(stdout); } while (0)

#endif
