/* test_crash_safety.c — a crash or a full disk while saving never loses the last good checkpoint
 * (docs/DESIGN.md, "Files" and "What bad input gets"; issue 10).
 *
 * - kill during save: a child process saves checkpoints in a loop exactly as the trainer does
 *   (iter_N file, last.safetensors link, prune to 2); the parent SIGKILLs it after pseudo-random
 *   delays, many times, so kills land inside writes, fsyncs and renames. After every kill,
 *   last.safetensors and every iter_* file must load with md_checkpoint_load and hold the values
 *   of their own iteration (no torn file), and iterations never go backwards.
 * - stale temp files a kill leaves behind are removed by the next prune.
 * - disk full: the save of a bigger checkpoint into a small tmpfs (mounted here when running as
 *   root) fails with ENOSPC, and a save under RLIMIT_FSIZE fails with EFBIG; either way the error
 *   names the file and the cause, the previous checkpoint loads unchanged and no temp file is left. */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "minidet/checkpoint.h"
#include "minidet/rng.h"
#include "testutil.h"

#define CDIR "build/crash_safety"
#define NT 3

typedef struct {
    float *data[NT], *grad[NT], *mom_check;
    size_t numel[NT];
    md_ckpt_tensor t[NT];
    md_sgd_param p[NT];
    md_sgd opt;
} model;

static const char *names[NT] = {"backbone.body.conv1.weight", "rpn.head.conv.0.0.weight", "roi_heads.box_head.fc6.weight"};

/* Tensors of `scale` x (64k, 128k, 256k) floats. */
static int model_init(model *m, size_t scale) {
    memset(m, 0, sizeof *m);
    for (int i = 0; i < NT; i++) {
        m->numel[i] = scale * ((size_t)65536 << i);
        m->data[i] = malloc(m->numel[i] * sizeof(float));
        m->grad[i] = calloc(m->numel[i], sizeof(float));
        if (!m->data[i] || !m->grad[i]) return 0;
        m->t[i] = (md_ckpt_tensor){names[i], m->data[i], m->numel[i], 1, {(int)m->numel[i]}};
        m->p[i] = (md_sgd_param){names[i], m->data[i], m->grad[i], m->numel[i], 1};
    }
    return md_sgd_init(&m->opt, m->p, NT, 0.9f, 0.0f) == MD_OK;
}

static void model_free(model *m) {
    for (int i = 0; i < NT; i++) { free(m->data[i]); free(m->grad[i]); }
    md_sgd_free(&m->opt);
}

/* Every value of the state at iteration it is a function of it (and of the element). */
static void model_fill(model *m, long long it) {
    for (int i = 0; i < NT; i++)
        for (size_t j = 0; j < m->numel[i]; j++) m->data[i][j] = (float)it + 1e-3f * (float)(j % 1000);
    for (size_t j = 0; j < m->opt.total; j++) m->opt.momentum_block[j] = -(float)it;
    m->opt.steps = it;
}

/* 1 when model m holds exactly the state of iteration it. */
static int model_is(const model *m, long long it) {
    for (int i = 0; i < NT; i++)
        for (size_t j = 0; j < m->numel[i]; j++)
            if (m->data[i][j] != (float)it + 1e-3f * (float)(j % 1000)) return 0;
    for (size_t j = 0; j < m->opt.total; j++)
        if (m->opt.momentum_block[j] != -(float)it) return 0;
    return m->opt.steps == it;
}

static md_status save_iter(model *m, const char *run, long long it) {
    char path[512];
    md_checkpoint_path(path, sizeof path, run, it);
    model_fill(m, it);
    md_train_state st = {.iteration = it, .best_ap = -1};
    md_status s = md_checkpoint_save(path, m->t, NT, &m->opt, NULL, &st, NULL);
    if (!s) s = md_checkpoint_link_last(run, path);
    if (!s) s = md_checkpoint_prune(run, 2);
    return s;
}

/* Loads path into m; returns the iteration or -1 (message in md_last_error). */
static long long load_check(model *m, const char *path) {
    md_train_state st;
    model_fill(m, -7);
    if (md_checkpoint_load(path, m->t, NT, &m->opt, &st, NULL)) return -1;
    if (!model_is(m, st.iteration)) { md_set_error(MD_ERR_FORMAT, "%s: content is not that of iteration %lld", path, st.iteration); return -1; }
    return st.iteration;
}

static int count_tmp(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) n += strstr(e->d_name, ".tmp") != NULL;
    closedir(d);
    return n;
}

static void rm_tree_files(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    char p[1024];
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        unlink(p); /* files only: checkpoints/ stays */
    }
    closedir(d);
}

static void test_kill_during_save(void) {
    const char *run = CDIR "/run";
    mkdir(run, 0755);
    mkdir(CDIR "/run/checkpoints", 0755);
    rm_tree_files(CDIR "/run/checkpoints");
    rm_tree_files(run);
    model m;
    CHECK(model_init(&m, 1), "model allocation");
    CHECK_OK(save_iter(&m, run, 1));
    md_rng rng = md_rng_make(2026, 10);
    int kills = 0, mid_write = 0, bad = 0;
    long long next = 2, prev_last = 1;
    const int rounds = 24;
    double t0 = (double)clock();
    for (int r = 0; r < rounds; r++) {
        fflush(stdout);
        pid_t pid = fork();
        if (pid == 0) {
            for (long long it = next;; it++)
                if (save_iter(&m, run, it)) _exit(3);
        }
        CHECK(pid > 0, "fork");
        if (pid <= 0) break;
        /* 0..250 ms: a save of these 3.5 MB (write, fsync, rename, link, prune) takes ~30-100 ms here */
        struct timespec d = {0, (long)(md_rng_uniform(&rng) * 250e6)};
        nanosleep(&d, NULL);
        kill(pid, SIGKILL);
        int status;
        waitpid(pid, &status, 0);
        CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "round %d: child ended otherwise (status %d)", r, status);
        kills++;
        mid_write += count_tmp(CDIR "/run/checkpoints") > 0 || count_tmp(run) > 0;
        /* last.safetensors: complete and consistent, never older than before */
        long long last = load_check(&m, CDIR "/run/last.safetensors");
        if (last < 0 || last < prev_last) {
            bad++;
            md_test_fail(__FILE__, __LINE__, "round %d: last.safetensors: %s (iteration %lld, before %lld)", r, last < 0 ? md_last_error() : "ok",
                         last, prev_last);
        }
        /* every completed iter_* file loads */
        DIR *dd = opendir(CDIR "/run/checkpoints");
        struct dirent *e;
        long long newest = 0;
        while (dd && (e = readdir(dd))) {
            size_t l = strlen(e->d_name);
            if (strncmp(e->d_name, "iter_", 5) || l < 12 || strcmp(e->d_name + l - 12, ".safetensors")) continue;
            char p[1024];
            snprintf(p, sizeof p, CDIR "/run/checkpoints/%s", e->d_name);
            long long it = load_check(&m, p);
            CHECK(it == atoll(e->d_name + 5), "round %d: %s: %s", r, p, it < 0 ? md_last_error() : "wrong iteration");
            if (it > newest) newest = it;
        }
        if (dd) closedir(dd);
        CHECK(newest >= last, "round %d: newest iter file %lld older than last.safetensors %lld", r, newest, last);
        if (last > 0) prev_last = last;
        /* resume: the next child continues after the newest complete checkpoint */
        next = (newest > last ? newest : last) + 1;
    }
    printf("  %d kills, %d left a partial temp file (killed mid-write), last iteration %lld, %.1f s CPU\n", kills, mid_write, prev_last,
           ((double)clock() - t0) / CLOCKS_PER_SEC);
    CHECK(mid_write >= 1, "no kill landed inside a write (%d kills): the test does not test what it claims", kills);
    CHECK(prev_last > 1, "the child never completed a save");
    CHECK(bad == 0, "%d rounds left a bad last.safetensors", bad);
    /* the next save's prune removes the temp files of dead writers */
    CHECK_OK(save_iter(&m, run, next));
    CHECK(count_tmp(CDIR "/run/checkpoints") == 0, "%d stale temp files left in checkpoints/ after the next save",
          count_tmp(CDIR "/run/checkpoints"));
    CHECK(count_tmp(run) == 0, "%d stale temp files left in the run directory after the next save", count_tmp(run));
    model_free(&m);
}

/* Saves a bigger checkpoint over a good one where the write must fail; checks the error and the old file. */
static void expect_failed_save(const char *dir, const char *what, const char *needle) {
    char path[512];
    snprintf(path, sizeof path, "%s/ck.safetensors", dir);
    model small, big;
    CHECK(model_init(&small, 1) && model_init(&big, 1), "alloc");
    /* small: 64k+128k+256k floats ~ 3.5 MB with momentum; big: the same tensors, twice as many bytes
       are not possible at the same shapes, so big differs by iteration only and the limit is set
       between "nothing" and "one file" below. */
    model_fill(&small, 5);
    md_train_state st = {.iteration = 5, .best_ap = -1};
    md_status s = md_checkpoint_save(path, small.t, NT, &small.opt, NULL, &st, NULL);
    CHECK_OK(s);
    model_fill(&big, 6);
    st.iteration = 6;
    pid_t pid = fork();
    if (pid == 0) {
        if (!strcmp(what, "RLIMIT_FSIZE")) {
            signal(SIGXFSZ, SIG_IGN);
            struct rlimit rl = {1 << 20, 1 << 20};
            if (setrlimit(RLIMIT_FSIZE, &rl)) _exit(4);
        }
        s = md_checkpoint_save(path, big.t, NT, &big.opt, NULL, &st, NULL);
        FILE *f = fopen(CDIR "/msg.txt", "w");
        if (f) { fprintf(f, "%s", md_last_error()); fclose(f); }
        _exit(s == MD_OK ? 0 : 1);
    }
    int status = -1;
    waitpid(pid, &status, 0);
    char msg[1024] = "";
    FILE *f = fopen(CDIR "/msg.txt", "r");
    if (f) { if (!fgets(msg, sizeof msg, f)) msg[0] = 0; fclose(f); }
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 1, "%s: save should fail (status %d)", what, status);
    CHECK(strstr(msg, path) && strstr(msg, needle) && !strchr(msg, '\n'), "%s: message '%s' lacks the path or '%s'", what, msg, needle);
    printf("  %s: %s\n", what, msg);
    CHECK(load_check(&small, path) == 5, "%s: previous checkpoint no longer loads: %s", what, md_last_error());
    CHECK(count_tmp(dir) == 0, "%s: temp file left behind", what);
    model_free(&small);
    model_free(&big);
}

static void test_disk_full(void) {
    /* EFBIG through RLIMIT_FSIZE: works for every user */
    mkdir(CDIR "/fsize", 0755);
    rm_tree_files(CDIR "/fsize");
    expect_failed_save(CDIR "/fsize", "RLIMIT_FSIZE", "File too large");
    /* ENOSPC in a small tmpfs: needs CAP_SYS_ADMIN (the CI container runs as root) */
    const char *mnt = CDIR "/tmpfs";
    mkdir(mnt, 0755);
    umount2(mnt, MNT_DETACH); /* a mount left by an interrupted earlier run */
    /* one checkpoint (~3.5 MB) fits, a second copy during the atomic save does not */
    if (mount("tmpfs", mnt, "tmpfs", 0, "size=5m") != 0) {
        printf("  cannot mount a tmpfs here (%s; needs CAP_SYS_ADMIN): disk full is covered by the RLIMIT_FSIZE case only\n",
               strerror(errno));
        return;
    }
    expect_failed_save(mnt, "tmpfs full (ENOSPC)", "No space left");
    CHECK(umount(mnt) == 0, "umount %s: %s", mnt, strerror(errno));
}

int main(void) {
    mkdir("build", 0755);
    mkdir(CDIR, 0755);
    MD_RUN(test_kill_during_save);
    MD_RUN(test_disk_full);
    return md_test_summary();
}
