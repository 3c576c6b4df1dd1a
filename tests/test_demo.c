/* test_demo.c — scripts/demo.sh (`make demo`) as a user meets it, shrunk to seconds: 12 training
 * and 6 val images, 20 stage-0 and 2 stage-1 iterations, 2 seeds per loss (DEMO_SEEDS), under
 * build/demo_test/ (DEMO_DATA, DEMO_RUNS, DEMO_N_TRAIN, DEMO_N_VAL, DEMO_BIN = $MD_BIN).
 *   0. DEMO_SEEDS=0 is refused before anything runs.
 *   1. Ctrl-C during stage 0 (SIGINT to the demo's process group, as a terminal sends it): the
 *      demo waits for ./train to save, says so and exits 130; stage 0 holds an unfinished checkpoint.
 *   2. DEMO_REUSE_PRETRAIN=1 then resumes that stage 0 (it says at which iteration) instead of
 *      reusing it, and shows the progress of both stages (DEMO_PROGRESS_EVERY=1 s instead of 60);
 *      stage 1 trains runs/shapes_<loss>_s<seed> with run.seed = seed.
 *   3. DEMO_REUSE_PRETRAIN=1 once more reuses the finished stage 0 without training it; runs that an
 *      earlier demo left for this loss (the one-seed layout runs/shapes_<loss>, a seed above
 *      DEMO_SEEDS) are removed, a directory whose name only starts like them is not.
 *   4. The README's comparison command, `./eval runs/shapes_*` (here build/demo_test/runs/shapes_*,
 *      expanded by sh), exits 0 and compares exactly the ten stage-1 runs (no log file, no stage 0):
 *      one group per loss with its 2 seeds, the intervals against smooth_l1 with a verdict per loss,
 *      TIDE's errors per loss.
 *   5. `./eval --weights RUN/last.safetensors` evaluates with the configuration the checkpoint stores
 *      (no --config); --config replaces it. */
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "testutil.h"

#define ROOT "build/demo_test"
#define PRE ROOT "/runs/stage0/shapes_pretrain"

static char bin[600];

static void set_env(void) {
    setenv("DEMO_DATA", ROOT "/data", 1);
    setenv("DEMO_RUNS", ROOT "/runs", 1);
    setenv("DEMO_N_TRAIN", "12", 1);
    setenv("DEMO_N_VAL", "6", 1);
    setenv("DEMO_THREADS", "1", 1);
    setenv("DEMO_BIN", bin, 1);
    setenv("DEMO_PROGRESS_EVERY", "1", 1);
    setenv("DEMO_SEEDS", "2", 1);
    setenv("DEMO_PRETRAIN_ARGS", "solver.max_iter=20 solver.steps=15 solver.warmup_iters=1 run.log_every=1", 1);
    setenv("DEMO_ARGS", "solver.max_iter=2 solver.steps=1 solver.warmup_iters=1 solver.eval_every=0", 1);
}

/* Runs the demo with extra environment "K=V ..." (sh syntax); output into out. Returns the exit status. */
static int demo(const char *env, const char *outpath, char *out, size_t n) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s sh scripts/demo.sh > %s 2>&1", env, outpath);
    int st = system(cmd);
    md_test_read_text(outpath, out, n);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int last_iter(const char *log) {
    static char buf[1 << 16];
    if (md_test_read_text(log, buf, sizeof buf) < 0) return 0;
    int it = 0;
    for (char *p = buf; (p = strstr(p, "iter ")); p += 5)
        if (p == buf || p[-1] == '\n') it = atoi(p + 5);
    return it;
}

static void test_demo(void) {
    if (system("rm -rf " ROOT)) fprintf(stderr, "cannot clean " ROOT "\n");
    set_env();
    static char out[1 << 16];
    /* 0. a seed count that is not a positive number stops the demo before it does anything */
    int rc = demo("DEMO_SEEDS=0", ROOT "_0.txt", out, sizeof out);
    CHECK(rc == 1 && strstr(out, "DEMO_SEEDS=0 is not a positive number") && !strstr(out, "generating"), "DEMO_SEEDS=0: exit %d: %s", rc,
          out);
    /* 1. Ctrl-C in stage 0 */
    pid_t pid = fork();
    if (pid == 0) {
        setpgid(0, 0);
        signal(SIGINT, SIG_DFL);
        setenv("DEMO_LOSSES", "giou", 1);
        if (!freopen(ROOT "_1.txt", "w", stdout) || dup2(fileno(stdout), 2) < 0) _exit(127);
        execl("/bin/sh", "sh", "scripts/demo.sh", (char *)NULL);
        _exit(127);
    }
    setpgid(pid, pid);
    struct timespec d = {0, 50000000};
    for (int i = 0; i < 1200 && last_iter(PRE "/train.log") < 3; i++) nanosleep(&d, NULL);
    CHECK(last_iter(PRE "/train.log") >= 3, "stage 0 did not log 3 iterations in 60 s");
    kill(-pid, SIGINT);
    int st;
    waitpid(pid, &st, 0);
    md_test_read_text(ROOT "_1.txt", out, sizeof out);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 130, "interrupted demo: status %d, want exit 130: %s", st, out);
    CHECK(strstr(out, "interrupted: waiting for the runs to save") && strstr(out, "DEMO_REUSE_PRETRAIN=1 make demo"),
          "interrupted demo says what happened and how to go on: %s", out);
    int stopped = last_iter(PRE "/train.log");
    CHECK(stopped >= 3 && stopped < 20, "stage 0 stopped at iteration %d", stopped);
    /* 2. an unfinished stage 0 is resumed, not reused */
    rc = demo("DEMO_REUSE_PRETRAIN=1", ROOT "_2.txt", out, sizeof out);
    CHECK(rc == 0, "resuming demo: exit %d: %s", rc, out);
    char want[128];
    snprintf(want, sizeof want, "stopped at iteration %d of 20: resuming it", stopped);
    CHECK(strstr(out, want) != NULL, "resuming demo lacks '%s': %s", want, out);
    CHECK(!strstr(out, "reusing " PRE), "an unfinished stage 0 must not be reused: %s", out);
    CHECK(strstr(out, "demo:   stage 0: ") && strstr(out, " s: iter "), "stage 0 shows its progress: %s", out);
    CHECK(strstr(out, "stage 1: 10 runs (2 seed(s) per loss") && strstr(out, " smooth_l1 ") && strstr(out, "; ciou ") &&
              strstr(out, "(per loss: seed 1..2)"),
          "stage 1 trains 2 seeds of 5 losses and shows their progress: %s", out);
    CHECK(last_iter(PRE "/train.log") == 20, "stage 0 ends at iteration %d, want 20", last_iter(PRE "/train.log"));
    /* ./train's start-up summary, in stage 0's log */
    static char log[1 << 16];
    md_test_read_text(PRE "/train.log", log, sizeof log);
    CHECK(strstr(log, "minidet: data: 12 training images") && strstr(log, "minidet: model: ResNet-18 x0.25-FPN") &&
              strstr(log, "minidet: schedule: 20 iterations x 4 images = 6.67 epochs of 12 images"),
          "start-up summary: %s", log);
    CHECK(strstr(log, "final eval at iteration 20: AP ") && strstr(log, "(x100)"), "AP x100 in the training log: %s", log);
    /* run.seed of each stage-1 run, in the configuration it resolved */
    static const char *const losses[] = {"smooth_l1", "iou", "giou", "diou", "ciou"};
    for (int i = 0; i < 5; i++)
        for (int s = 1; s <= 2; s++) {
            char p[256], want_name[64], want_seed[32];
            snprintf(p, sizeof p, ROOT "/runs/shapes_%s_s%d/config.cfg", losses[i], s);
            snprintf(want_name, sizeof want_name, "name = shapes_%s_s%d\n", losses[i], s);
            snprintf(want_seed, sizeof want_seed, "seed = %d\n", s);
            md_test_read_text(p, log, sizeof log);
            CHECK(strstr(log, want_name) && strstr(log, want_seed), "%s: want '%s' and '%s': %s", p, want_name, want_seed, log);
        }
    /* 3. a finished stage 0 is reused; an earlier demo's runs of the loss go, other directories stay */
    struct stat sb;
    mkdir(ROOT "/runs/shapes_giou", 0755);
    mkdir(ROOT "/runs/shapes_giou_s3", 0755);
    mkdir(ROOT "/runs/shapes_giou_small", 0755);
    rc = demo("DEMO_REUSE_PRETRAIN=1 DEMO_LOSSES=giou", ROOT "_3.txt", out, sizeof out);
    CHECK(rc == 0, "reusing demo: exit %d: %s", rc, out);
    CHECK(strstr(out, "reusing " PRE ": it finished (iteration 20 of 20)") != NULL, "finished stage 0 reused: %s", out);
    CHECK(!strstr(out, "stage 0 done"), "a reused stage 0 is not trained again: %s", out);
    CHECK(stat(ROOT "/runs/shapes_giou", &sb) != 0 && stat(ROOT "/runs/shapes_giou_s3", &sb) != 0 &&
              strstr(out, "removing " ROOT "/runs/shapes_giou_s3 (an earlier demo's run"),
          "an earlier demo's giou runs are removed: %s", out);
    CHECK(stat(ROOT "/runs/shapes_giou_small", &sb) == 0 && rmdir(ROOT "/runs/shapes_giou_small") == 0,
          "shapes_giou_small is not a demo run: it stays: %s", out);
    /* 4. the README's comparison command */
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s/eval " ROOT "/runs/shapes_* > " ROOT "_4.txt 2>&1", bin);
    st = system(cmd);
    md_test_read_text(ROOT "_4.txt", out, sizeof out);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "./eval runs/shapes_*: status %d: %s", st, out);
    CHECK(strstr(out, "10 runs") && !strstr(out, "pretrain") && !strstr(out, "not a directory"), "exactly the ten stage-1 runs: %s", out);
    const char *groups = strstr(out, "\nSeeds: "), *deltas = strstr(out, "\nAgainst shapes_smooth_l1: "),
               *tide = strstr(out, "\nTIDE error analysis");
    CHECK(groups && deltas && tide && groups < deltas && deltas < tide, "seed groups, intervals and TIDE in the comparison: %s", out);
    for (int i = 0; groups && deltas && tide && i < 5; i++) {
        char row[160];
        for (int s = 1; s <= 2; s++) {
            snprintf(row, sizeof row, "\nshapes_%s_s%d ", losses[i], s);
            CHECK(strstr(out, row) && strstr(out, row) < groups, "the table lacks the row of shapes_%s_s%d: %s", losses[i], s, out);
        }
        /* the group row: name, loss, 2 seeds (columns padded to the widest entry) */
        snprintf(row, sizeof row, "\nshapes_%s ", losses[i]);
        const char *g = strstr(groups, row);
        int ok = g && g < deltas;
        if (ok) {
            g += strlen(row);
            while (*g == ' ') g++;
            ok = !strncmp(g, losses[i], strlen(losses[i]));
            g += strlen(losses[i]);
            while (ok && *g == ' ') g++;
            ok = ok && !strncmp(g, "2 ", 2) && strstr(g, " +- ") && strstr(g, " +- ") < strchr(g, '\n');
        }
        CHECK(ok, "no seed-group row 'shapes_%s  %s  2  mean +- sd': %s", losses[i], losses[i], out);
        if (i == 0) continue;
        /* "shapes_giou - shapes_smooth_l1: -0.1 AP [-1.3, +0.1] over 2 seeds: no clear difference; ..." */
        snprintf(row, sizeof row, "  shapes_%s - shapes_smooth_l1: ", losses[i]);
        const char *v = strstr(deltas, row);
        double d = NAN, lo = NAN, hi = NAN;
        char verdict[32] = "";
        ok = v && v < tide && sscanf(v + strlen(row), "%lf AP [%lf, %lf] over 2 seeds: %31[a-z ]", &d, &lo, &hi, verdict) == 4 &&
             lo <= d && d <= hi &&
             (!strcmp(verdict, "better") || !strcmp(verdict, "worse") || !strcmp(verdict, "no clear difference"));
        CHECK(ok, "no interval and verdict line for %s against smooth_l1 over 2 seeds: %s", losses[i], out);
    }
    /* 5. --weights alone; --config wins over the stored configuration */
    snprintf(cmd, sizeof cmd, "%s/eval --weights " ROOT "/runs/shapes_giou_s1/last.safetensors --out-dir " ROOT "/ev > " ROOT "_5.txt 2>&1", bin);
    st = system(cmd);
    md_test_read_text(ROOT "_5.txt", out, sizeof out);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0 && stat(ROOT "/ev/eval.json", &sb) == 0 && strstr(out, "using the configuration stored"),
          "./eval --weights without --config: status %d: %s", st, out);
    FILE *f = fopen(ROOT "/other.cfg", "w");
    if (f) {
        fputs("[data]\nval_ann = " ROOT "/nowhere.json\nval_images = " ROOT "\n", f);
        fclose(f);
    }
    snprintf(cmd, sizeof cmd, "%s/eval --weights " ROOT "/runs/shapes_giou_s1/last.safetensors --config " ROOT "/other.cfg --out-dir " ROOT
             "/ev2 > " ROOT "_5.txt 2>&1", bin);
    st = system(cmd);
    md_test_read_text(ROOT "_5.txt", out, sizeof out);
    /* other.cfg has the default anchors: the checkpoint's own check names them, so --config was used */
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 1 && strstr(out, "the configuration has 32,64,128,256,512"),
          "--config replaces the stored config: %s", out);
}

int main(void) {
    const char *b = getenv("MD_BIN");
    snprintf(bin, sizeof bin, "%s", b && *b ? b : "build/bin");
    char p[700];
    snprintf(p, sizeof p, "%s/train", bin);
    if (!md_test_need_path(p, "make (./train, ./eval, tool_make_shapes)")) return md_test_summary();
    mkdir("build", 0755);
    MD_RUN(test_demo);
    return md_test_summary();
}
