/* test_train_reliability.c — ./train survives crashes, full disks, divergence and long runs
 * (docs/DESIGN.md, "What bad input gets"; issue 10), on tests/fixtures/reliab_tiny.cfg (quarter-width R18-FPN, 64x64 shapes).
 *
 * - kill: ./train is SIGKILLed at pseudo-random points (once during start-up, then after 1-3 more
 *   logged iterations plus a random fraction of a step, so some kills land in checkpoint writes;
 *   progress-based, so a fast CI machine gets as many kills as a slow one), then restarted with --resume (or from scratch while no checkpoint exists). After every kill,
 *   last.safetensors and every iter_* file are complete (checksum, every tensor of the model with
 *   its shape) and iterations never go back; the last --resume finishes, and its final weights are
 *   bit-identical to an uninterrupted run's (resume is exact); its metrics.jsonl holds every train
 *   iteration once, in order, every line complete JSON.
 * - memory: during the uninterrupted run (60 iterations), neither the process's current RSS
 *   (/proc/PID/status VmRSS, sampled with the iteration metrics.jsonl has reached) nor the
 *   metrics.jsonl rss_mb (peak RSS) grows between iteration ~10 and the end.
 * - divergence: --resume with solver.base_lr=1e6 stops non-zero with one "minidet: " line naming
 *   the iteration, the image ids and the last good checkpoint, which is left untouched and finite.
 * - SIGTERM / SIGINT: finish the step, save a checkpoint of that iteration, exit 143 / 130 naming --resume.
 * - disk full: a run whose output_dir is a small tmpfs (root only) stops with "No space left" when
 *   a checkpoint does not fit, and the previous checkpoint loads. */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "minidet/threads.h"
#include "minidet/fs.h"
#include "minidet/config.h"
#include "minidet/model.h"
#include "minidet/rng.h"
#include "minidet/safetensors.h"
#include "minidet/shapes.h"
#include "testutil.h"

#define CFG "tests/fixtures/reliab_tiny.cfg"
#define RUNS "build/reliab/runs"

#if defined(__SANITIZE_ADDRESS__)
#define SAN_BUILD 1
#else
#define SAN_BUILD 0
#endif

static char bin[600];

static void make_data(void) {
    if (md_path_exists("build/reliab/shapes/annotations.json")) return;
    md_shapes_options o;
    md_shapes_options_default(&o);
    o.width = o.height = 64;
    o.num = 24;
    o.seed = 5;
    CHECK_OK(md_shapes_generate("build/reliab/shapes", &o));
}

/* Starts ./train CFG run.name=name extra... [--resume] --quiet; stderr to errpath. */
static pid_t start_train(const char *name, int resume, const char *const *extra, const char *errpath) {
    const char *argv[40];
    char nm[200];
    snprintf(nm, sizeof nm, "run.name=%s", name);
    int n = 0;
    argv[n++] = bin;
    argv[n++] = CFG;
    argv[n++] = nm;
    for (int i = 0; extra && extra[i] && n < 36; i++) argv[n++] = extra[i];
    if (resume) argv[n++] = "--resume";
    argv[n++] = "--quiet";
    argv[n] = NULL;
    return md_test_spawn(bin, argv, errpath);
}

static int wait_status(pid_t pid) {
    int st = -1;
    if (pid > 0) waitpid(pid, &st, 0);
    return st;
}

/* The configuration of the runs (the file, with overrides), for building the model to check against. */
static void load_cfg(md_config *c) { CHECK_OK(md_config_load(c, CFG, 0, NULL)); }

/* Checks a checkpoint file completely: safetensors checksum and every model tensor with its shape
 * (strict load), every value finite. Returns its iteration, or -1. */
static long long check_ckpt(const char *path, md_detector *det) {
    md_st_file f;
    if (md_st_load(path, &f)) return -1;
    const char *it = md_st_meta(&f, "minidet.iteration");
    long long iter = it ? atoll(it) : -1;
    md_st_free(&f);
    if (md_detector_load_weights(det, path, 1, NULL)) return -1;
    for (int i = 0; i < det->num_params; i++)
        for (size_t j = 0; j < det->params[i].numel; j++)
            if (!isfinite(det->params[i].data[j])) {
                md_set_error(MD_ERR_NUMERIC, "%s: %s[%zu] is not finite", path, det->params[i].name, j);
                return -1;
            }
    return iter;
}

/* Every iter_* file of a run loads; returns the newest iteration (0 if none), -1 on a bad file. */
static long long check_all(const char *run, md_detector *det, int *nfiles) {
    char dir[600], p[1200];
    snprintf(dir, sizeof dir, "%s/checkpoints", run);
    DIR *d = opendir(dir);
    long long newest = 0;
    *nfiles = 0;
    if (!d) return 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t l = strlen(e->d_name);
        if (strncmp(e->d_name, "iter_", 5) || l < 12 || strcmp(e->d_name + l - 12, ".safetensors")) continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        long long it = check_ckpt(p, det);
        (*nfiles)++;
        if (it != atoll(e->d_name + 5)) {
            md_test_fail(__FILE__, __LINE__, "%s: %s", p, it < 0 ? md_last_error() : "iteration metadata differs from the name");
            newest = -1;
            break;
        }
        if (it > newest) newest = it;
    }
    closedir(d);
    return newest;
}

/* "rss_mb" of the train lines of metrics.jsonl: rss[iter] (0 when not logged). */
static int read_rss(const char *run, double *rss, int cap) {
    char p[700], line[4096];
    snprintf(p, sizeof p, "%s/metrics.jsonl", run);
    FILE *f = fopen(p, "rb");
    if (!f) return 0;
    int last = 0;
    while (fgets(line, sizeof line, f)) {
        const char *a = strstr(line, "\"iter\":"), *b = strstr(line, "\"rss_mb\":");
        if (!strstr(line, "\"train\"") || !a || !b) continue;
        int it = atoi(a + 7);
        if (it > 0 && it < cap) { rss[it] = atof(b + 9); if (it > last) last = it; }
    }
    fclose(f);
    return last;
}

/* Train-line iterations of a metrics.jsonl, in file order; -1 if a line is not complete JSON. */
static int train_iters(const char *path, int *out, int cap) {
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    char line[4096];
    int n = 0, bad = 0;
    while (fgets(line, sizeof line, f)) {
        cJSON *j = cJSON_Parse(line);
        const cJSON *ty = cJSON_GetObjectItemCaseSensitive(j, "type"), *it = cJSON_GetObjectItemCaseSensitive(j, "iter");
        if (!j || !cJSON_IsString(ty) || !cJSON_IsNumber(it) || !strchr(line, '\n')) bad = 1;
        else if (!strcmp(ty->valuestring, "train") && n < cap) out[n++] = (int)it->valuedouble;
        cJSON_Delete(j);
    }
    fclose(f);
    return bad ? -1 : n;
}

static int same_weights(const char *a, const char *b) {
    md_st_file fa, fb;
    if (md_st_load(a, &fa)) return 0;
    if (md_st_load(b, &fb)) { md_st_free(&fa); return 0; }
    int same = fa.count == fb.count, compared = 0;
    for (int i = 0; same && i < fa.count; i++) {
        const md_st_tensor *t = md_st_find(&fb, fa.tensors[i].name);
        same = t && t->nbytes == fa.tensors[i].nbytes && !memcmp(t->data, fa.tensors[i].data, t->nbytes);
        if (!same) fprintf(stderr, "  tensor %s differs\n", fa.tensors[i].name);
        compared++;
    }
    md_st_free(&fa);
    md_st_free(&fb);
    return same && compared > 0;
}

static const int MAX_ITER = SAN_BUILD ? 16 : 60;

static void test_kill_and_resume(void) {
    make_data();
    md_config cfg;
    load_cfg(&cfg);
    md_detector det;
    CHECK_OK(md_detector_create(&det, &cfg));
    char maxit[64];
    snprintf(maxit, sizeof maxit, "solver.max_iter=%d", MAX_ITER);
    const char *extra[] = {maxit, "run.log_every=1", NULL};
    char err[8192];

    /* the uninterrupted reference run (also the memory check) */
    md_test_rm_rf(RUNS "/ref");
    double t0 = md_now();
    pid_t ref = start_train("ref", 0, extra, "build/reliab/ref.err");
    /* sample the process's current RSS (VmRSS) together with the iteration it has logged */
    static double rss_now[4096];
    int st = -1, sampled_last = 0;
    for (;;) {
        pid_t w = waitpid(ref, &st, WNOHANG);
        if (w == ref || w < 0) break;
        char sp[64], line[256];
        snprintf(sp, sizeof sp, "/proc/%d/status", (int)ref);
        FILE *f = fopen(sp, "r");
        double kb = 0;
        while (f && fgets(line, sizeof line, f))
            if (!strncmp(line, "VmRSS:", 6)) kb = atof(line + 6);
        if (f) fclose(f);
        static double tmp[4096];
        int it = read_rss(RUNS "/ref", tmp, 4096);
        if (it > 0 && it < 4096 && kb > 0) { rss_now[it] = kb / 1024; sampled_last = it; }
        struct timespec d = {0, 20000000};
        nanosleep(&d, NULL);
    }
    double t_ref = md_now() - t0;
    md_test_read_text("build/reliab/ref.err", err, sizeof err);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "reference run failed (status %d): %s", st, err);
    printf("  reference run: %d iterations in %.1f s\n", MAX_ITER, t_ref);
    static double rss[4096];
    int last = read_rss(RUNS "/ref", rss, 4096);
    CHECK(last == MAX_ITER, "metrics.jsonl ends at iteration %d, expected %d", last, MAX_ITER);
    /* Under the sanitizers RSS holds ASan's quarantine: there the check is LSan's, on the exit status above. */
    if (SAN_BUILD) printf("  sanitizer build: RSS not compared (ASan quarantine); LSan checked the run at exit\n");
    if (!SAN_BUILD && last == MAX_ITER) {
        /* peak RSS: the first logged iteration after the first 5 (arena sized, loader warm) vs the last */
        double a = rss[10], b = rss[MAX_ITER];
        printf("  peak RSS (metrics.jsonl) %.1f MB at iteration 10, %.1f MB at iteration %d\n", a, b, MAX_ITER);
        CHECK(a > 0 && b - a <= 1.0, "peak RSS grew from %.1f MB (iteration 10) to %.1f MB (iteration %d)", a, b, MAX_ITER);
    }
    if (!SAN_BUILD) {
        /* current RSS: the first sample once 10 iterations are logged vs the last sample */
        int i0 = 10;
        while (i0 < sampled_last && rss_now[i0] == 0) i0++;
        printf("  current RSS %.1f MB at iteration %d, %.1f MB at iteration %d\n", rss_now[i0], i0, rss_now[sampled_last], sampled_last);
        CHECK(sampled_last >= MAX_ITER - 10 && i0 <= MAX_ITER / 2, "RSS sampled only from iteration %d to %d", i0, sampled_last);
        CHECK(rss_now[sampled_last] - rss_now[i0] <= 2.0, "current RSS grew from %.1f MB (iteration %d) to %.1f MB (iteration %d)",
              rss_now[i0], i0, rss_now[sampled_last], sampled_last);
    }

    /* killed and resumed */
    md_test_rm_rf(RUNS "/killed");
    md_rng rng = md_rng_make(77, 1);
    long long prev = 0;
    int kills = 0, finished = 0, bad = 0, mid_write = 0;
    const int rounds = SAN_BUILD ? 3 : 8;
    for (int r = 0; r < rounds && !finished; r++) {
        int resume = md_path_exists(RUNS "/killed/last.safetensors");
        static double tmp[4096];
        int base = read_rss(RUNS "/killed", tmp, 4096);
        pid_t pid = start_train("killed", resume, extra, "build/reliab/killed.err");
        /* Round 0 is killed during start-up; later rounds once metrics.jsonl shows 1-3 more iterations
           (progress, not wall time, so a fast or a slow machine gets the same kills), plus a random
           fraction of a step so that some kills land inside a checkpoint write. */
        int reaped = 0;
        st = -1;
        if (r == 0) {
            double delay = md_rng_uniform(&rng) * 0.2;
            struct timespec d = {0, (long)(delay * 1e9)};
            nanosleep(&d, NULL);
        } else {
            int target = base + 1 + (int)(md_rng_uniform(&rng) * 3);
            double t_start = md_now();
            while (read_rss(RUNS "/killed", tmp, 4096) < target && md_now() - t_start < 120) {
                pid_t w = waitpid(pid, &st, WNOHANG);
                if (w == pid || w < 0) { reaped = 1; break; }
                struct timespec d = {0, 2000000};
                nanosleep(&d, NULL);
            }
            double delay = fmin(0.9, md_rng_uniform(&rng) * t_ref / MAX_ITER);
            struct timespec d = {0, (long)(delay * 1e9)};
            if (!reaped) nanosleep(&d, NULL);
        }
        if (!reaped) {
            kill(pid, SIGKILL);
            st = wait_status(pid);
        }
        if (WIFEXITED(st)) {
            finished = 1; /* ran to the end before the kill */
            md_test_read_text("build/reliab/killed.err", err, sizeof err);
            CHECK(WEXITSTATUS(st) == 0, "round %d: ./train exited %d: %s", r, WEXITSTATUS(st), err);
        } else {
            CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "round %d: status %d", r, st);
            kills++;
        }
        DIR *cd = opendir(RUNS "/killed/checkpoints");
        struct dirent *e;
        while (cd && (e = readdir(cd))) mid_write += strstr(e->d_name, ".tmp.") != NULL;
        if (cd) closedir(cd);
        if (!md_path_exists(RUNS "/killed/last.safetensors")) continue; /* killed before the first checkpoint */
        long long it = check_ckpt(RUNS "/killed/last.safetensors", &det);
        int nf;
        long long newest = check_all(RUNS "/killed", &det, &nf);
        if (it < 0 || it < prev || newest < it) {
            bad++;
            md_test_fail(__FILE__, __LINE__, "round %d: last.safetensors at %lld (before %lld, newest iter file %lld): %s", r, it, prev, newest,
                         md_last_error());
        }
        if (it > prev) prev = it;
    }
    printf("  %d kills (%d inside a checkpoint write), last checkpoint before the final resume: iteration %lld\n", kills, mid_write, prev);
    CHECK(kills >= 2, "only %d kills landed", kills);
    CHECK(bad == 0, "%d rounds left a bad checkpoint", bad);
    /* the final resume completes and equals the uninterrupted run */
    if (!finished) {
        int resume = md_path_exists(RUNS "/killed/last.safetensors");
        st = wait_status(start_train("killed", resume, extra, "build/reliab/killed.err"));
        md_test_read_text("build/reliab/killed.err", err, sizeof err);
        CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "final --resume failed (status %d): %s", st, err);
    }
    CHECK(check_ckpt(RUNS "/killed/last.safetensors", &det) == MAX_ITER, "final checkpoint: %s", md_last_error());
    CHECK(same_weights(RUNS "/killed/last.safetensors", RUNS "/ref/last.safetensors"),
          "killed-and-resumed run's final weights differ from the uninterrupted run's");
    /* metrics.jsonl after kills and resumes: every line complete JSON, the same train iterations as the
       uninterrupted run's, in order, each once */
    int ik[512], ir[512];
    int nk = train_iters(RUNS "/killed/metrics.jsonl", ik, 512), nr = train_iters(RUNS "/ref/metrics.jsonl", ir, 512);
    CHECK(nk > 0 && nk == nr && !memcmp(ik, ir, sizeof(int) * (size_t)nk), "metrics.jsonl of the killed-and-resumed run: %d train lines "
          "(%s), the uninterrupted run has %d", nk, nk < 0 ? "a line is not complete JSON" : "iterations differ", nr);
    md_detector_free(&det);
}

static void test_divergence(void) {
    make_data();
    md_config cfg;
    load_cfg(&cfg);
    md_detector det;
    CHECK_OK(md_detector_create(&det, &cfg));
    md_test_rm_rf(RUNS "/nan");
    const char *good[] = {"solver.max_iter=4", NULL};
    char err[8192];
    int st = wait_status(start_train("nan", 0, good, "build/reliab/nan.err"));
    md_test_read_text("build/reliab/nan.err", err, sizeof err);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "4 good iterations failed (status %d): %s", st, err);
    const char *diverge[] = {"solver.max_iter=30", "solver.base_lr=1e6", "solver.warmup_iters=0", NULL};
    st = wait_status(start_train("nan", 1, diverge, "build/reliab/nan.err"));
    md_test_read_text("build/reliab/nan.err", err, sizeof err);
    CHECK(!WIFSIGNALED(st), "diverging run killed by signal %d", WIFSIGNALED(st) ? WTERMSIG(st) : 0);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) != 0, "diverging run exited 0");
    /* the error is the last line (a warning that the resumed configuration differs may precede it) */
    char *lastline = err, *nl;
    for (char *s = err; (nl = strchr(s, '\n')) && nl[1]; s = nl + 1) lastline = nl + 1;
    if ((nl = strchr(lastline, '\n'))) *nl = 0;
    CHECK(!strncmp(lastline, "minidet: ", 9) && strstr(lastline, "iteration") && strstr(lastline, "image ids") &&
              strstr(lastline, "non-finite") && strstr(lastline, "last.safetensors"),
          "divergence message: '%s'", lastline);
    printf("  %s\n", lastline);
    CHECK(check_ckpt(RUNS "/nan/last.safetensors", &det) == 4, "last good checkpoint: %s", md_last_error());
    int nf;
    CHECK(check_all(RUNS "/nan", &det, &nf) == 4, "a checkpoint after the divergence was written");
    md_detector_free(&det);
}

/* SIGTERM (a scheduler's stop) and SIGINT (Ctrl-C): finish the step, save, say how to resume and
 * exit 128 + the signal (143 / 130), so `./train a && ./train b` stops and a scheduler does not
 * count a time-limit stop as success. */
static void test_sigterm(void) {
    make_data();
    md_config cfg;
    load_cfg(&cfg);
    md_detector det;
    CHECK_OK(md_detector_create(&det, &cfg));
    const int sigs[2] = {SIGTERM, SIGINT};
    for (int k = 0; k < 2; k++) {
        md_test_rm_rf(RUNS "/term");
        const char *extra[] = {"solver.max_iter=1000", "solver.checkpoint_every=0", "run.log_every=1", NULL};
        pid_t pid = start_train("term", 0, extra, "build/reliab/term.err");
        static double rss[4096];
        double t0 = md_now();
        while (read_rss(RUNS "/term", rss, 4096) < 3 && md_now() - t0 < 60) {
            struct timespec d = {0, 20000000};
            nanosleep(&d, NULL);
        }
        kill(pid, sigs[k]);
        int st = wait_status(pid);
        char err[8192];
        md_test_read_text("build/reliab/term.err", err, sizeof err);
        const char *nm = sigs[k] == SIGTERM ? "SIGTERM" : "SIGINT";
        CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 128 + sigs[k], "%s: status %d (exit %d, want %d): %s", nm, st,
              WIFEXITED(st) ? WEXITSTATUS(st) : -1, 128 + sigs[k], err);
        CHECK(strstr(err, "minidet: interrupted at iteration") && strstr(err, "--resume"), "%s message: %s", nm, err);
        /* --quiet keeps the warning this from-scratch, frozen-BN fixture earns (not the summary: tests/test_demo.c) */
        CHECK(strstr(err, "minidet: warning: [model] norm = frozen_bn while training from scratch") && !strstr(err, "minidet: data: "),
              "%s: start-up warning under --quiet: %s", nm, err);
        long long it = check_ckpt(RUNS "/term/last.safetensors", &det);
        int logged = read_rss(RUNS "/term", rss, 4096);
        CHECK(it >= 3 && it == logged, "%s: checkpoint at %lld, metrics at %d: %s", nm, it, logged, it < 0 ? md_last_error() : "");
        char *msg = strstr(err, "minidet: interrupted");
        char *nl = msg ? strchr(msg, '\n') : NULL;
        if (nl) *nl = 0;
        printf("  %s: exit %d, %s (checkpoint at iteration %lld)\n", nm, WIFEXITED(st) ? WEXITSTATUS(st) : -1, msg ? msg : err, it);
    }
    md_detector_free(&det);
}

static void test_disk_full(void) {
    make_data();
    const char *mnt = "build/reliab/tmpfs";
    mkdir(mnt, 0755);
    umount2(mnt, MNT_DETACH);
    /* a checkpoint of this model with momentum is ~7.8 MB: two fit (keep_checkpoints = 2), a third does not */
    if (mount("tmpfs", mnt, "tmpfs", 0, "size=20m") != 0) {
        printf("  cannot mount a tmpfs here (%s; needs CAP_SYS_ADMIN): the trainer's disk-full case is covered by test_crash_safety's RLIMIT_FSIZE case only\n",
               strerror(errno));
        return;
    }
    md_config cfg;
    load_cfg(&cfg);
    md_detector det;
    CHECK_OK(md_detector_create(&det, &cfg));
    const char *extra[] = {"run.output_dir=build/reliab/tmpfs", "solver.max_iter=12", "solver.keep_checkpoints=3", NULL};
    char err[8192];
    int st = wait_status(start_train("full", 0, extra, "build/reliab/full.err"));
    md_test_read_text("build/reliab/full.err", err, sizeof err);
    char *e = err; /* past the start-up warnings (this fixture's steps lie beyond max_iter 12) */
    while (!strncmp(e, "minidet: warning: ", 18) && strchr(e, '\n')) e = strchr(e, '\n') + 1;
    memmove(err, e, strlen(e) + 1);
    char *nl = strchr(err, '\n');
    if (nl) *nl = 0;
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) != 0, "run on a full disk: status %d", st);
    CHECK(!strncmp(err, "minidet: ", 9) && strstr(err, "No space left") && strstr(err, "build/reliab/tmpfs/full/checkpoints/iter_"),
          "disk-full message: '%s'", err);
    printf("  %s\n", err);
    long long it = check_ckpt("build/reliab/tmpfs/full/last.safetensors", &det);
    CHECK(it == 4, "previous checkpoint (iteration 4) after the failed save: %lld %s", it, it < 0 ? md_last_error() : "");
    md_detector_free(&det);
    CHECK(umount(mnt) == 0, "umount: %s", strerror(errno));
}

int main(void) {
    const char *b = getenv("MD_BIN");
    snprintf(bin, sizeof bin, "%s/train", b && *b ? b : "build/bin");
    mkdir("build", 0755);
    mkdir("build/reliab", 0755);
    if (!md_test_need_path(bin, "make (the ./train program)")) return md_test_summary();
    MD_RUN(test_kill_and_resume);
    MD_RUN(test_divergence);
    MD_RUN(test_sigterm);
    MD_RUN(test_disk_full);
    return md_test_summary();
}
