/* testutil.c — see testutil.h. */
#include "testutil.h"
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include "minidet/fs.h"

int md_test_checks = 0, md_test_failures = 0;

void md_test_fail(const char *file, int line, const char *fmt, ...) {
    va_list ap;
    md_test_failures++;
    fprintf(stdout, "  FAIL %s:%d: ", file, line);
    va_start(ap, fmt);
    vfprintf(stdout, fmt, ap);
    va_end(ap);
    fputc('\n', stdout);
    fflush(stdout);
}

int md_test_summary(void) {
    printf("%d checks, %d failed\n", md_test_checks, md_test_failures);
    return md_test_failures ? 1 : 0;
}

double md_max_rel_err(const float *a, const float *b, size_t n, double floor, size_t *worst) {
    double m = 0;
    size_t wi = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        double s = fabs((double)b[i]);
        if (s < floor) s = floor;
        double r = d / s;
        if (!(r <= m)) { m = isnan(r) ? INFINITY : r; wi = i; if (isinf(m)) break; }
    }
    if (worst) *worst = wi;
    return m;
}

double md_max_abs_err(const float *a, const float *b, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (!(d <= m)) m = isnan(d) ? INFINITY : d;
    }
    return m;
}

int md_test_need_path(const char *path, const char *what) {
    struct stat sb;
    md_test_checks++;
    if (stat(path, &sb) == 0) return 1;
    md_test_fail(__FILE__, __LINE__, "required input %s is missing (%s) — this test cannot run without it", path, what);
    return 0;
}

double md_max_abs(const float *a, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) m = fmax(m, fabs((double)a[i]));
    return m;
}

double md_test_cmp_rel_at(const char *file, int line, double *worst, double tol, const char *cs, const char *what,
                          const float *got, const float *ref, size_t n) {
    size_t wi = 0;
    double e = md_max_rel_err(got, ref, n, fmax(1e-2 * md_max_abs(ref, n), 1e-7), &wi);
    if (worst && !(e <= *worst)) *worst = e;
    md_test_checks++;
    if (!(e <= tol))
        md_test_fail(file, line, "%s %s: max rel err %.3g at %zu (got %.9g, want %.9g)", cs, what, e, wi, n ? got[wi] : 0.0,
                     n ? ref[wi] : 0.0);
    return e;
}

float *md_test_fixture_f32(const md_st_file *f, const char *cs, const char *t, size_t *n) {
    char name[256];
    snprintf(name, sizeof name, "%s.%s", cs, t);
    return md_test_tensor_f32(f, name, n);
}

float *md_test_tensor_f32(const md_st_file *f, const char *name, size_t *n) {
    float *p = NULL;
    size_t cnt = 0;
    md_test_checks++;
    if (md_st_alloc_f32(f, name, &p, &cnt) != MD_OK) {
        md_test_fail(__FILE__, __LINE__, "fixture tensor %s: %s", name, md_last_error());
        return NULL;
    }
    if (n) *n = cnt;
    return p;
}

/* The element count of name, with a failed check when it is missing or empty. */
static size_t tensor_numel(const md_st_file *f, const char *name) {
    const md_st_tensor *t = md_st_find(f, name);
    if (!t || !t->numel) md_test_fail(__FILE__, __LINE__, "fixture tensor %s: missing", name);
    return t ? t->numel : 0;
}

double *md_test_tensor_f64(const md_st_file *f, const char *name, size_t *n) {
    md_test_checks++;
    size_t cnt = tensor_numel(f, name);
    if (!cnt) return NULL;
    double *p = malloc(sizeof(double) * cnt);
    if (!p || md_st_read_f64(f, name, -1, NULL, p, cnt) != MD_OK) {
        md_test_fail(__FILE__, __LINE__, "fixture tensor %s: %s", name, p ? md_last_error() : "out of memory");
        free(p);
        return NULL;
    }
    if (n) *n = cnt;
    return p;
}

int64_t *md_test_tensor_i64(const md_st_file *f, const char *name, size_t *n) {
    md_test_checks++;
    size_t cnt = tensor_numel(f, name);
    if (!cnt) return NULL;
    int64_t *p = malloc(sizeof(int64_t) * cnt);
    if (!p || md_st_read_i64(f, name, -1, NULL, p, cnt) != MD_OK) {
        md_test_fail(__FILE__, __LINE__, "fixture tensor %s: %s", name, p ? md_last_error() : "out of memory");
        free(p);
        return NULL;
    }
    if (n) *n = cnt;
    return p;
}

int md_test_fixture_geom(const md_st_file *f, const char *cs, int64_t *g, int want) {
    char name[200];
    snprintf(name, sizeof name, "%s.geom", cs);
    const md_st_tensor *t = md_st_find(f, name);
    md_test_checks++;
    if (!t || (int)t->numel != want || md_st_read_i64(f, name, -1, NULL, g, (size_t)want) != MD_OK) {
        md_test_fail(__FILE__, __LINE__, "%s: missing or wrong size (want %d values)", name, want);
        return 0;
    }
    return 1;
}

char *md_test_slurp(const char *path, size_t *n) {
    char *data = NULL;
    size_t len = 0;
    if (md_read_file(path, &data, &len) != MD_OK) return NULL;
    if (n) *n = len;
    return data;
}

long md_test_read_text(const char *path, char *buf, size_t cap) {
    buf[0] = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    size_t k = fread(buf, 1, cap - 1, f);
    buf[k] = 0;
    fclose(f);
    return (long)k;
}

int md_test_write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    int ok = fputs(text, f) >= 0;
    return (fclose(f) == 0) && ok;
}

int md_test_mpirun(int np, const char *args, int timeout_s) {
    /* Open MPI refuses root unless told; --oversubscribe lets np exceed the cores of a small CI machine */
    setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
    setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "timeout -k 5 %d mpirun --oversubscribe -np %d -x MD_TEST_RANKS=%d %s", timeout_s, np, np, args);
    int rc = system(cmd);
    if (rc == -1) return -1;
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : 128 + WTERMSIG(rc);
}

int md_test_tmpdir(const char *name, char *buf, size_t cap) {
    snprintf(buf, cap, "/tmp/md_test_%s_XXXXXX", name);
    if (mkdtemp(buf)) return 1;
    perror("mkdtemp");
    return 0;
}

int md_test_rm_rf(const char *path) {
    size_t n = strlen(path) + 16;
    char *cmd = malloc(n);
    if (!cmd) return -1;
    snprintf(cmd, n, "rm -rf '%s'", path);
    int rc = system(cmd);
    free(cmd);
    if (rc) fprintf(stderr, "cannot remove %s\n", path);
    return rc;
}

pid_t md_test_spawn(const char *bin, const char *const *argv, const char *err_path) {
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        int fe = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0644), fo = open("/dev/null", O_WRONLY);
        if (fe < 0 || fo < 0) _exit(126);
        dup2(fe, 2);
        dup2(fo, 1);
        execv(bin, (char *const *)argv);
        _exit(127);
    }
    return pid;
}
