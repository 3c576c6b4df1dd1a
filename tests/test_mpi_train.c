/* test_mpi_train.c — data-parallel ./train under mpirun (built with make MPI=1 only).
 *
 * The tiny quarter-width ResNet-18-FPN of tests/fixtures/reliab_tiny.cfg (frozen BN, one thread per rank)
 * on 64x64 shapes, global batch 4:
 * - equivalence: 20 iterations in one process, on 2 ranks x 2 images and on 4 ranks x 1 image: the four
 *   losses at every iteration and the final weights within 1e-4 relative; two runs on 2 ranks bit-identical.
 *   These runs sample every labelled anchor and proposal (as test_train_parity does): with the random
 *   subsampling, a rounding-level difference that moves one proposal across a threshold reshuffles the
 *   whole sample of the step, and the trajectories part by more than summation order;
 * - the random subsampling itself is rank-invariant: with the default samplers the first two iterations'
 *   losses of 1 process and 2 ranks agree to 1e-5 (per-image sampling streams, global normalisers);
 * - a run started on 4 ranks and resumed on 2 continues the one-process trajectory; checkpoints record
 *   the rank count;
 * - the final evaluation sharded over 2 ranks gives the one-process COCO stats exactly (same weights);
 * - a batch that 3 ranks cannot share: an error naming both numbers;
 * - faults: a corrupt image on one rank stops every rank with a message naming the rank and the image;
 *   a divergence stops every rank at the same iteration naming the images, the last good checkpoint
 *   intact; a non-finite loss on one rank only (a NaN log1p preloaded into rank 1) stops every rank at
 *   that step, rank 1 naming itself and its images, rank 0 naming rank 1; SIGKILL of one rank ends the
 *   job non-zero within 60 s with the last checkpoint loadable and resumable; SIGTERM to mpirun stops
 *   every rank at the same step with rank 0's checkpoint and the resume hint (ranks 143, mpirun 1);
 *   SIGINT to one rank does the same, every rank and mpirun exiting 130. */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include "minidet/fs.h"
#include "minidet/safetensors.h"
#include "minidet/shapes.h"
#include "minidet/threads.h"
#include "testutil.h"

#define CFG "tests/fixtures/reliab_tiny.cfg"
#define TDIR "build/mpi_train"
#define RUNS TDIR "/runs"
#define BASE                                                                                                                  \
    "data.train_ann=" TDIR "/shapes/annotations.json data.train_images=" TDIR "/shapes/images run.output_dir=" RUNS             \
    " solver.ims_per_batch=4 run.log_every=1 solver.base_lr=0.01"
#define ALL_SAMPLED                                                                                                           \
    " rpn.batch_size_per_image=100000 rpn.positive_fraction=1 roi_heads.batch_size_per_image=100000 roi_heads.positive_fraction=1"

static char bin[600], evalbin[600];
static void line_with(const char *err, const char *prefix, char *out, size_t cap);

static void sh(const char *cmd) {
    if (system(cmd)) fprintf(stderr, "failed: %s\n", cmd);
}

static void make_data(void) {
    md_shapes_options o;
    md_shapes_options_default(&o);
    o.width = o.height = 64;
    o.num = 24;
    o.seed = 5;
    if (!md_path_exists(TDIR "/shapes/annotations.json")) CHECK_OK(md_shapes_generate(TDIR "/shapes", &o));
    o.num = 10;
    o.seed = 6;
    if (!md_path_exists(TDIR "/val/annotations.json")) CHECK_OK(md_shapes_generate(TDIR "/val", &o));
}

/* ./train CFG run.name=name BASE extra [--resume] --quiet on np ranks (np = 0: no mpirun); stderr to TDIR/name.err. */
static int train(int np, const char *name, const char *extra, int resume) {
    char args[4096];
    snprintf(args, sizeof args, "%s %s run.name=%s %s %s %s--quiet 2> %s/%s.err", bin, CFG, name, BASE, extra, resume ? "--resume " : "",
             TDIR, name);
    if (np > 0) return md_test_mpirun(np, args, 300);
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "timeout 300 %s", args);
    int rc = system(cmd);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : 128 + WTERMSIG(rc);
}

static void show_err(const char *name) {
    char p[300], line[1024];
    snprintf(p, sizeof p, "%s/%s.err", TDIR, name);
    FILE *f = fopen(p, "r");
    while (f && fgets(line, sizeof line, f)) printf("    %s: %s", name, line);
    if (f) fclose(f);
}

static void read_err(const char *name, char *buf, size_t cap) {
    char p[300];
    snprintf(p, sizeof p, "%s/%s.err", TDIR, name);
    md_test_read_text(p, buf, cap);
}

/* The train lines of runs/<name>/metrics.jsonl: losses[iter - 1][0..3]; returns the number of lines. */
static int read_losses(const char *name, double losses[][4], int cap) {
    char p[300], line[4096];
    snprintf(p, sizeof p, "%s/%s/metrics.jsonl", RUNS, name);
    FILE *f = fopen(p, "r");
    CHECK(f != NULL, "%s: no metrics.jsonl", name);
    if (!f) return 0;
    int n = 0;
    const char *keys[4] = {"loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg"};
    while (fgets(line, sizeof line, f)) {
        cJSON *j = cJSON_Parse(line);
        cJSON *ty = cJSON_GetObjectItem(j, "type"), *it = cJSON_GetObjectItem(j, "iter");
        if (cJSON_IsString(ty) && !strcmp(ty->valuestring, "train") && cJSON_IsNumber(it) && it->valueint >= 1 && it->valueint <= cap) {
            for (int k = 0; k < 4; k++) losses[it->valueint - 1][k] = cJSON_GetObjectItem(j, keys[k])->valuedouble;
            if (it->valueint > n) n = it->valueint;
        }
        cJSON_Delete(j);
    }
    fclose(f);
    return n;
}

static void compare_losses(const char *a, const char *b, int from, int to, double tol) {
    double la[64][4] = {{0}}, lb[64][4] = {{0}};
    int na = read_losses(a, la, 64), nb = read_losses(b, lb, 64);
    CHECK(na >= to && nb >= to, "%s has %d iterations, %s %d; expected %d", a, na, b, nb, to);
    double worst = 0;
    for (int i = from - 1; i < to && i < na && i < nb; i++)
        for (int k = 0; k < 4; k++) {
            double e = fabs(la[i][k] - lb[i][k]) / fmax(fabs(lb[i][k]), 1e-3);
            if (e > worst) worst = e;
            CHECK(e <= tol, "iteration %d loss %d: %s %.9g vs %s %.9g (rel %.2e > %.0e)", i + 1, k, a, la[i][k], b, lb[i][k], e, tol);
        }
    printf("  losses %s vs %s, iterations %d-%d: max rel diff %.2e\n", a, b, from, to, worst);
}

/* Every tensor of a's last.safetensors against b's: max |a - b| / max |b| <= tol (tol 0: bit-identical). */
static void compare_weights(const char *a, const char *b, double tol) {
    char pa[300], pb[300];
    snprintf(pa, sizeof pa, "%s/%s/last.safetensors", RUNS, a);
    snprintf(pb, sizeof pb, "%s/%s/last.safetensors", RUNS, b);
    md_st_file fa, fb;
    md_status sa = md_st_load(pa, &fa), sb = md_st_load(pb, &fb);
    CHECK(!sa && !sb, "cannot load %s / %s: %s", pa, pb, md_last_error());
    if (sa || sb) {
        if (!sa) md_st_free(&fa);
        if (!sb) md_st_free(&fb);
        return;
    }
    double worst = 0;
    int compared = 0;
    for (int i = 0; i < fb.count; i++) {
        const md_st_tensor *tb = &fb.tensors[i], *ta = md_st_find(&fa, tb->name);
        CHECK(ta && ta->nbytes == tb->nbytes, "%s: tensor %s missing or resized", a, tb->name);
        if (!ta || ta->nbytes != tb->nbytes || tb->dtype != MD_DT_F32) continue;
        compared++;
        if (tol == 0) {
            CHECK(!memcmp(ta->data, tb->data, tb->nbytes), "%s vs %s: %s not bit-identical", a, b, tb->name);
            continue;
        }
        const float *x = ta->data, *y = tb->data;
        double d = 0, m = 1e-7;
        for (size_t k = 0; k < tb->numel; k++) {
            d = fmax(d, fabs((double)x[k] - y[k]));
            m = fmax(m, fabs((double)y[k]));
        }
        if (d / m > worst) worst = d / m;
        CHECK(d / m <= tol, "%s vs %s: %s differs by %.2e of its scale", a, b, tb->name, d / m);
    }
    CHECK(compared > 50, "only %d tensors compared", compared);
    if (tol > 0) printf("  weights %s vs %s: %d tensors, max rel diff %.2e\n", a, b, compared, worst);
    md_st_free(&fa);
    md_st_free(&fb);
}

static const char *meta_of(const char *run, const char *key, char *out, size_t cap) {
    char p[300];
    snprintf(p, sizeof p, "%s/%s/last.safetensors", RUNS, run);
    md_st_file f;
    out[0] = 0;
    if (md_st_load(p, &f)) return out;
    const char *v = md_st_meta(&f, key);
    snprintf(out, cap, "%s", v ? v : "");
    md_st_free(&f);
    return out;
}

static void rm_run(const char *name) {
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf %s/%s", RUNS, name);
    sh(cmd);
}

/* ---------------------------------------------------------------- cases */

static void test_equivalence(void) {
    const char *ex = "solver.max_iter=20 solver.checkpoint_every=10" ALL_SAMPLED;
    const char *names[4] = {"eq_p1", "eq_r2", "eq_r4", "eq_r2b"};
    const int np[4] = {0, 2, 4, 2};
    for (int i = 0; i < 4; i++) {
        rm_run(names[i]);
        double t0 = md_now();
        int rc = train(np[i], names[i], ex, 0);
        printf("  %s (%d ranks): %.1f s\n", names[i], np[i] ? np[i] : 1, md_now() - t0);
        CHECK(rc == 0, "%s: exit status %d", names[i], rc);
        if (rc) show_err(names[i]);
    }
    compare_losses("eq_r2", "eq_p1", 1, 20, 1e-4);
    compare_losses("eq_r4", "eq_p1", 1, 20, 1e-4);
    compare_weights("eq_r2", "eq_p1", 1e-4);
    compare_weights("eq_r4", "eq_p1", 1e-4);
    compare_losses("eq_r2b", "eq_r2", 1, 20, 0);
    compare_weights("eq_r2b", "eq_r2", 0);
    char ws[32];
    CHECK(!strcmp(meta_of("eq_r4", "minidet.world_size", ws, sizeof ws), "4"), "4-rank checkpoint records world size '%s'", ws);
    CHECK(!strcmp(meta_of("eq_p1", "minidet.world_size", ws, sizeof ws), "1"), "1-process checkpoint records world size '%s'", ws);
}

static void test_sampling_invariance(void) {
    rm_run("smp_p1");
    rm_run("smp_r2");
    CHECK(train(0, "smp_p1", "solver.max_iter=2", 0) == 0, "one process failed");
    CHECK(train(2, "smp_r2", "solver.max_iter=2", 0) == 0, "2 ranks failed");
    compare_losses("smp_r2", "smp_p1", 1, 2, 1e-5);
}

static void test_resume_other_rank_count(void) {
    rm_run("res");
    CHECK(train(4, "res", "solver.max_iter=10 solver.checkpoint_every=10" ALL_SAMPLED, 0) == 0, "4 ranks, 10 iterations failed");
    char ws[32];
    CHECK(!strcmp(meta_of("res", "minidet.world_size", ws, sizeof ws), "4"), "checkpoint of 4 ranks records '%s'", ws);
    int rc = train(2, "res", "solver.max_iter=20 solver.checkpoint_every=10" ALL_SAMPLED, 1);
    CHECK(rc == 0, "resume on 2 ranks: status %d", rc);
    if (rc) show_err("res");
    CHECK(!strcmp(meta_of("res", "minidet.world_size", ws, sizeof ws), "2"), "checkpoint after the resume records '%s'", ws);
    compare_losses("res", "eq_p1", 1, 20, 1e-4);
    compare_weights("res", "eq_p1", 1e-4);
}

/* stats of <dir>/eval.json */
static int read_stats_at(const char *dir, double st[12]) {
    char p[400];
    snprintf(p, sizeof p, "%s/eval.json", dir);
    static char buf[1 << 20];
    if (md_test_read_text(p, buf, sizeof buf) < 0) return 0;
    cJSON *j = cJSON_Parse(buf);
    cJSON *a = cJSON_GetObjectItem(j, "stats");
    int k = 0;
    for (cJSON *e = a ? a->child : NULL; e && k < 12; e = e->next) st[k++] = e->valuedouble;
    cJSON_Delete(j);
    return k;
}

static void test_sharded_eval(void) {
    const char *ex = "solver.max_iter=30 solver.base_lr=0.02 data.val_ann=" TDIR "/val/annotations.json data.val_images=" TDIR
                     "/val/images test.batch_size=2";
    rm_run("ev_p1");
    rm_run("ev_r2");
    CHECK(train(0, "ev_p1", ex, 0) == 0, "one process with evaluation failed");
    sh("cp -r " RUNS "/ev_p1 " RUNS "/ev_r2 && rm -f " RUNS "/ev_r2/eval.json");
    /* nothing left to train: the resumed run only evaluates the same weights, on 2 ranks (10 images: batches 0, 2, 4 on rank 0) */
    int rc = train(2, "ev_r2", ex, 1);
    CHECK(rc == 0, "evaluation on 2 ranks: status %d", rc);
    if (rc) show_err("ev_r2");
    double a[12] = {0}, b[12] = {0};
    int na = read_stats_at(RUNS "/ev_p1", a), nb = read_stats_at(RUNS "/ev_r2", b);
    CHECK(na == 12 && nb == 12, "eval.json stats: %d and %d", na, nb);
    int same = 1;
    for (int k = 0; k < 12; k++) same &= a[k] == b[k];
    CHECK(same, "sharded stats differ: AP %.6f vs %.6f, AP50 %.6f vs %.6f", b[0], a[0], b[1], a[1]);
    CHECK(a[1] > 0, "AP50 %.4f: the evaluation found nothing, so the comparison shows little", a[1]);
    printf("  AP %.4f AP50 %.4f on 1 process and on 2 ranks\n", a[0], a[1]);
    /* ./eval --weights: 1 process, 2 ranks, 3 ranks (5 batches of 2: 2, 2, 1 per rank): the same stats, byte-identical results */
    char cmd[2048], dir[3][64];
    for (int k = 0; k < 3; k++) {
        snprintf(dir[k], sizeof dir[k], TDIR "/ev_w%d", k + 1);
        snprintf(cmd, sizeof cmd, "rm -rf %s", dir[k]);
        sh(cmd);
        snprintf(cmd, sizeof cmd, "%s --weights " RUNS "/ev_p1/last.safetensors --config " RUNS "/ev_p1/config.cfg --out-dir %s 2> %s.err > /dev/null",
                 evalbin, dir[k], dir[k]);
        if (k == 0) {
            char c2[2100];
            snprintf(c2, sizeof c2, "timeout 120 %s", cmd);
            rc = system(c2);
        } else {
            rc = md_test_mpirun(k + 1, cmd, 120);
        }
        CHECK(rc == 0, "./eval --weights on %d ranks: status %d", k + 1, rc);
        double w[12] = {0};
        CHECK(read_stats_at(dir[k], w) == 12, "%s/eval.json: no stats", dir[k]);
        for (int q = 0; q < 12; q++) CHECK(w[q] == a[q], "./eval --weights on %d ranks: stat %d = %.9g, training's final evaluation %.9g", k + 1, q, w[q], a[q]);
        if (k) {
            snprintf(cmd, sizeof cmd, "cmp -s %s/results.json %s/results.json", dir[0], dir[k]);
            CHECK(system(cmd) == 0, "%s/results.json differs from the one-process results", dir[k]);
        }
    }
}

static void test_indivisible(void) {
    rm_run("odd");
    int rc = train(3, "odd", "solver.max_iter=2", 0);
    char err[8192];
    read_err("odd", err, sizeof err);
    CHECK(rc != 0 && rc != 124, "4 images on 3 ranks: status %d", rc);
    CHECK(strstr(err, "ims_per_batch (4)") && strstr(err, "3 ranks"), "message names neither number: %s", err);
}

static void test_corrupt_image(void) {
    sh("rm -rf " TDIR "/bad && cp -r " TDIR "/shapes " TDIR "/bad");
    /* garbage inside the pixel data of one PNG: its header (checked at start-up) stays valid, the decode fails */
    DIR *d = opendir(TDIR "/bad/images");
    struct dirent *e;
    char victim[256] = "";
    while (d && (e = readdir(d)))
        if (strstr(e->d_name, ".png") && (!victim[0] || strcmp(e->d_name, victim) < 0)) snprintf(victim, sizeof victim, "%s", e->d_name);
    if (d) closedir(d);
    CHECK(victim[0], "no PNG to corrupt");
    char p[512];
    snprintf(p, sizeof p, TDIR "/bad/images/%s", victim);
    FILE *f = fopen(p, "r+b");
    CHECK(f != NULL, "cannot open %s", p);
    if (!f) return;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, n / 2, SEEK_SET);
    for (long i = n / 2; i < n - 16; i++) fputc(0xA5, f);
    fclose(f);
    rm_run("bad");
    double t0 = md_now();
    int rc = train(2, "bad", "data.train_ann=" TDIR "/bad/annotations.json data.train_images=" TDIR "/bad/images solver.max_iter=14", 0);
    double dt = md_now() - t0;
    char err[16384];
    read_err("bad", err, sizeof err);
    CHECK(rc != 0 && rc != 124, "corrupt image: status %d", rc);
    CHECK(strstr(err, "minidet: rank ") && strstr(err, victim), "message names no rank or not %s: %s", victim, err);
    printf("  corrupt image: status %d after %.1f s\n", rc, dt);
    show_err("bad");
}

/* How many lines of err contain needle. */
static int count_lines(const char *err, const char *needle) {
    int n = 0;
    for (const char *l = err; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
        size_t len = strcspn(l, "\n");
        char line[2048];
        snprintf(line, sizeof line, "%.*s", (int)(len < sizeof line ? len : sizeof line - 1), l);
        n += strstr(line, needle) != NULL;
    }
    return n;
}

/* The start-up header check is shared: images [r n/N, (r + 1) n/N) on rank r. A PNG cut to 10 bytes
 * (images[19], in rank 1's half): with the default policy rank 0 alone prints the one-process message
 * prefixed with "rank 1: "; with bad_image_policy = skip only rank 1 reads (and names) it, every rank skips
 * it, and 2 ranks follow the one-process trajectory. */
static void test_image_check_shared(void) {
    sh("rm -rf " TDIR "/hdr && cp -r " TDIR "/shapes " TDIR "/hdr && head -c 10 " TDIR "/shapes/images/000020.png > " TDIR
       "/hdr/images/000020.png");
    const char *data = "data.train_ann=" TDIR "/hdr/annotations.json data.train_images=" TDIR "/hdr/images ";
    char ex[1024], err1[8192], err2[8192], line1[2048], want[2100];
    snprintf(ex, sizeof ex, "%ssolver.max_iter=2", data);
    rm_run("hdr_p1");
    rm_run("hdr_r2");
    int rc1 = train(0, "hdr_p1", ex, 0), rc2 = train(2, "hdr_r2", ex, 0);
    read_err("hdr_p1", err1, sizeof err1);
    read_err("hdr_r2", err2, sizeof err2);
    line_with(err1, "minidet: image check (images[19], id 20): ", line1, sizeof line1);
    CHECK(rc1 != 0 && line1[0] && strstr(line1, "000020.png"), "one process: status %d, message %s", rc1, err1);
    snprintf(want, sizeof want, "minidet: rank 1: %s", line1 + strlen("minidet: "));
    CHECK(rc2 != 0 && rc2 != 124 && strstr(err2, want), "2 ranks: status %d; expected the line '%s' in %s", rc2, want, err2);
    CHECK(count_lines(err2, "image check") == 1, "2 ranks: %d lines name the image check (rank 0 alone speaks): %s",
          count_lines(err2, "image check"), err2);
    printf("  2 ranks: %s\n", want);
    /* skip: every rank skips it, only rank 1 read it */
    snprintf(ex, sizeof ex, "%sdata.bad_image_policy=skip solver.max_iter=6" ALL_SAMPLED, data);
    rm_run("hdr_p1");
    rm_run("hdr_r2");
    CHECK(train(0, "hdr_p1", ex, 0) == 0, "one process, skip: failed");
    rc2 = train(2, "hdr_r2", ex, 0);
    CHECK(rc2 == 0, "2 ranks, skip: status %d", rc2);
    read_err("hdr_r2", err2, sizeof err2);
    CHECK(count_lines(err2, "skipping images[19] (id 20)") == 1, "2 ranks, skip: %d warnings name images[19] (only rank 1 reads it): %s",
          count_lines(err2, "skipping images[19] (id 20)"), err2);
    CHECK(count_lines(err2, "skipping 1 unreadable images") == 1, "2 ranks, skip: the count line: %s", err2);
    compare_losses("hdr_r2", "hdr_p1", 1, 6, 1e-4);
}

static void test_divergence(void) {
    rm_run("nan");
    CHECK(train(2, "nan", "solver.max_iter=4 solver.checkpoint_every=2", 0) == 0, "4 good iterations failed");
    int rc = train(2, "nan", "solver.max_iter=30 solver.base_lr=1e6 solver.warmup_iters=0 solver.checkpoint_every=2", 1);
    char err[16384], it[32];
    read_err("nan", err, sizeof err);
    CHECK(rc != 0 && rc != 124, "diverging run: status %d", rc);
    CHECK(strstr(err, "non-finite") && strstr(err, "image ids") && strstr(err, ": rank ") && strstr(err, "iteration "), "divergence message: %s",
          err);
    CHECK(!strcmp(meta_of("nan", "minidet.iteration", it, sizeof it), "4"), "last good checkpoint at iteration '%s', expected 4", it);
    show_err("nan");
}

/* The image ids a message names after "image ids " (up to ';'), or "" */
static void ids_named(const char *msg, char *out, size_t cap) {
    const char *p = msg ? strstr(msg, "image ids ") : NULL;
    out[0] = 0;
    if (!p) return;
    p += strlen("image ids ");
    size_t n = strcspn(p, ";\n");
    snprintf(out, cap, "%.*s", (int)(n < cap ? n : cap - 1), p);
}

/* The line of err that starts with prefix, copied (without its newline) to out, or "". */
static void line_with(const char *err, const char *prefix, char *out, size_t cap) {
    out[0] = 0;
    for (const char *l = err; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL)
        if (!strncmp(l, prefix, strlen(prefix))) {
            snprintf(out, cap, "%.*s", (int)strcspn(l, "\n"), l);
            return;
        }
}

/* A non-finite loss on rank 1 alone: an LD_PRELOAD library whose log1p returns NaN (the objectness loss,
 * log(1 + exp(-|x|)), is its only caller) on rank 1's ./train only. Every rank stops at the first step of
 * the run; rank 1 names itself and its images (the second half of the batch one process names with the
 * same fault), rank 0 names rank 1 and no images; the last good checkpoint stays and nothing later is saved. */
static void test_nan_one_rank(void) {
    FILE *f = fopen(TDIR "/nan_log1p.c", "w");
    CHECK(f != NULL, "cannot write " TDIR "/nan_log1p.c");
    if (!f) return;
    fputs("#include <math.h>\ndouble log1p(double x) { (void)x; return NAN; }\n", f);
    fclose(f);
    CHECK(system("cc -shared -fPIC -o " TDIR "/nan_log1p.so " TDIR "/nan_log1p.c") == 0, "cannot build the log1p library");
    rm_run("nan1");
    rm_run("nan1_p1");
    CHECK(train(2, "nan1", "solver.max_iter=4 solver.checkpoint_every=2", 0) == 0, "4 good iterations failed");
    sh("cp -r " RUNS "/nan1 " RUNS "/nan1_p1");
    /* an ASan build checks that its runtime comes first; the preloaded library does not allocate */
    const char *preload = "env LD_PRELOAD=" TDIR "/nan_log1p.so ASAN_OPTIONS=verify_asan_link_order=0:detect_leaks=0";
    const char *ex = "solver.max_iter=30 solver.checkpoint_every=2 --resume --quiet";
    char cmd[8192], err[16384], line[2048], all_ids[256], r1_ids[256], it[32];
    /* one process with the fault: the whole batch's images */
    snprintf(cmd, sizeof cmd, "timeout 120 %s %s %s run.name=nan1_p1 %s %s 2> %s/nan1_p1.err", preload, bin, CFG, BASE, ex, TDIR);
    int rc = system(cmd);
    read_err("nan1_p1", err, sizeof err);
    line_with(err, "minidet: iteration 5: non-finite loss", line, sizeof line);
    ids_named(line, all_ids, sizeof all_ids);
    CHECK(rc != 0 && all_ids[0], "one process with NaN log1p: status %d, no 'iteration 5: non-finite loss ... image ids' line: %s", rc, err);
    /* 2 ranks, the fault on rank 1 only */
    snprintf(cmd, sizeof cmd, "%s %s run.name=nan1 %s %s : -np 1 %s %s %s run.name=nan1 %s %s 2> %s/nan1.err", bin, CFG, BASE, ex, preload,
             bin, CFG, BASE, ex, TDIR);
    double t0 = md_now();
    rc = md_test_mpirun(1, cmd, 120);
    double dt = md_now() - t0;
    read_err("nan1", err, sizeof err);
    printf("  non-finite loss on rank 1: status %d after %.1f s\n", rc, dt);
    CHECK(rc != 0 && rc != 124 && rc != 137, "status %d", rc);
    line_with(err, "minidet: iteration 5: rank 1: non-finite loss", line, sizeof line);
    ids_named(line, r1_ids, sizeof r1_ids);
    printf("  rank 1: %s\n  one process named image ids %s\n", line, all_ids);
    /* rank r of 2 takes images [2r, 2r + 2) of the global batch of 4: rank 1 the last two */
    const char *second = all_ids;
    for (int k = 0; k < 2 && second; k++) second = strchr(second, ',') ? strchr(second, ',') + 2 : NULL;
    CHECK(r1_ids[0] && second && !strcmp(r1_ids, second), "rank 1 names image ids '%s', the second half of the batch is '%s'", r1_ids,
          second ? second : "?");
    line_with(err, "minidet: iteration 5: rank 0: stopped because rank 1 had a non-finite loss", line, sizeof line);
    CHECK(line[0] && !strstr(line, "image ids") && strstr(line, "last good checkpoint"), "rank 0's message: '%s' in %s", line, err);
    CHECK(!strcmp(meta_of("nan1", "minidet.iteration", it, sizeof it), "4"), "last good checkpoint at iteration '%s', expected 4", it);
    CHECK(!md_path_exists(RUNS "/nan1/checkpoints/iter_0000006.safetensors"), "a checkpoint after the fault was written");
    double l[64][4];
    CHECK(read_losses("nan1", l, 64) == 4, "metrics.jsonl goes past iteration 4");
}

/* The pid of rank r of the job whose command line holds run.name=name, or -1. */
static pid_t rank_pid(const char *name, int r) {
    char want_arg[128], want_env[64];
    snprintf(want_arg, sizeof want_arg, "run.name=%s", name);
    snprintf(want_env, sizeof want_env, "OMPI_COMM_WORLD_RANK=%d", r);
    DIR *d = opendir("/proc");
    struct dirent *e;
    pid_t found = -1;
    static char buf[1 << 16];
    while (d && (e = readdir(d)) && found < 0) {
        pid_t pid = (pid_t)atoi(e->d_name);
        if (pid <= 0) continue;
        char p[64];
        snprintf(p, sizeof p, "/proc/%d/cmdline", (int)pid);
        FILE *f = fopen(p, "rb");
        if (!f) continue;
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        int is_train = n > 0 && strstr(buf, "/train") != NULL, has_name = 0;
        for (size_t o = 0; o < n; o += strlen(buf + o) + 1) has_name |= !strcmp(buf + o, want_arg);
        if (!is_train || !has_name) continue;
        snprintf(p, sizeof p, "/proc/%d/environ", (int)pid);
        if (!(f = fopen(p, "rb"))) continue;
        n = fread(buf, 1, sizeof buf - 1, f);
        buf[n] = 0;
        fclose(f);
        for (size_t o = 0; o < n; o += strlen(buf + o) + 1)
            if (!strcmp(buf + o, want_env)) found = pid;
    }
    if (d) closedir(d);
    return found;
}

/* Starts the job in the background: returns mpirun's pid. kill_s: mpirun's odls_base_sigkill_timeout (a
   signalled mpirun, or one whose rank died, sends the ranks SIGCONT, SIGTERM kill_s seconds later and SIGKILL
   as many again). statuses: each rank runs under sh, which writes
   the rank's exit status to TDIR/<name>.status<rank> (sh ignores SIGINT/SIGTERM, so that mpirun's signals,
   which reach the rank's whole process group, leave it alive to write it). */
static pid_t start_job(int np, const char *name, const char *extra, int kill_s, int statuses) {
    setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
    setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
    char cmd[4096], train_cmd[3000];
    snprintf(train_cmd, sizeof train_cmd, "%s %s run.name=%s %s %s --quiet", bin, CFG, name, BASE, extra);
    for (int r = 0; r < np; r++) {
        snprintf(cmd, sizeof cmd, "%s/%s.status%d", TDIR, name, r);
        remove(cmd);
    }
    if (statuses)
        snprintf(cmd, sizeof cmd,
                 "exec mpirun --oversubscribe --mca odls_base_sigkill_timeout %d -np %d sh -c 'trap \"\" INT TERM; %s; s=$?; "
                 "echo $s > %s/%s.status$OMPI_COMM_WORLD_RANK; exit $s' 2> %s/%s.err",
                 kill_s, np, train_cmd, TDIR, name, TDIR, name);
    else
        snprintf(cmd, sizeof cmd, "exec mpirun --oversubscribe --mca odls_base_sigkill_timeout %d -np %d %s 2> %s/%s.err", kill_s, np, train_cmd,
                 TDIR, name);
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    return pid;
}

/* The exit status start_job(..., statuses = 1) recorded for rank r, or -1. */
static int rank_status(const char *name, int r) {
    char p[300];
    snprintf(p, sizeof p, "%s/%s.status%d", TDIR, name, r);
    FILE *f = fopen(p, "r");
    int v = -1;
    if (f && fscanf(f, "%d", &v) != 1) v = -1;
    if (f) fclose(f);
    return v;
}

/* Waits up to limit seconds; the exit status (128 + signal when killed), or -1 after the limit (the job is then killed). */
static int wait_job(pid_t pid, double limit) {
    double t0 = md_now();
    int st;
    while (md_now() - t0 < limit) {
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid) return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        usleep(100000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &st, 0);
    return -1;
}

/* Waits until runs/<name>/checkpoints holds a checkpoint (up to limit seconds). */
static int wait_checkpoint(const char *name, double limit) {
    char p[300];
    snprintf(p, sizeof p, "%s/%s/last.safetensors", RUNS, name);
    double t0 = md_now();
    while (md_now() - t0 < limit) {
        if (md_path_exists(p)) return 1;
        usleep(100000);
    }
    return 0;
}

static void test_kill_rank(void) {
    rm_run("kill");
    pid_t job = start_job(2, "kill", "solver.max_iter=100000 solver.checkpoint_every=3", 3, 0);
    CHECK(wait_checkpoint("kill", 120), "no checkpoint within 120 s");
    usleep(300000);
    pid_t victim = rank_pid("kill", 1);
    CHECK(victim > 0, "rank 1 not found");
    if (victim > 0) kill(victim, SIGKILL);
    double t0 = md_now();
    int rc = wait_job(job, 60);
    printf("  SIGKILL of rank 1: job status %d after %.1f s\n", rc, md_now() - t0);
    CHECK(rc > 0, "job status %d (-1: still running after 60 s)", rc);
    char it[32];
    meta_of("kill", "minidet.iteration", it, sizeof it);
    CHECK(atoi(it) >= 3, "last checkpoint unreadable or early: iteration '%s'", it);
    char ex[200];
    snprintf(ex, sizeof ex, "solver.max_iter=%d solver.checkpoint_every=3", atoi(it) + 2);
    rc = train(2, "kill", ex, 1);
    CHECK(rc == 0, "resume after the kill: status %d", rc);
    if (rc) show_err("kill");
}

/* Waits until runs/<name>/metrics.jsonl holds a few steps (up to 120 s). */
static void wait_steps(const char *name) {
    char p[300];
    snprintf(p, sizeof p, "%s/%s/metrics.jsonl", RUNS, name);
    double t0 = md_now();
    struct stat sb;
    while (md_now() - t0 < 120 && !(stat(p, &sb) == 0 && sb.st_size > 600)) usleep(100000);
}

/* After a signal: the ranks exited want_rank (every rank when all_recorded, else every rank whose status was
   recorded, at least one), rank 0 saved at the iteration its message names, the metrics end there, and the
   message says how to resume. */
static void check_stopped(const char *name, int np, int want_rank, int all_recorded) {
    char err[16384], it[32];
    read_err(name, err, sizeof err);
    int recorded = 0;
    for (int r = 0; r < np; r++) {
        int st = rank_status(name, r);
        recorded += st >= 0;
        CHECK(st == want_rank || (st < 0 && !all_recorded), "rank %d exited %d, expected %d", r, st, want_rank);
    }
    CHECK(recorded > 0, "no rank's exit status was recorded");
    const char *m = strstr(err, "interrupted at iteration ");
    CHECK(m && strstr(err, "resume with: mpirun"), "no interruption message with the resume hint: %s", err);
    int at = m ? atoi(m + strlen("interrupted at iteration ")) : -1;
    CHECK(atoi(meta_of(name, "minidet.iteration", it, sizeof it)) == at && at > 0, "checkpoint at iteration '%s', message says %d", it,
          at);
    static double l[4096][4];
    int last = read_losses(name, l, 4096);
    CHECK(last == at, "metrics end at iteration %d, interrupted at %d", last, at);
    show_err(name);
}

/* SIGTERM to mpirun (what it does on SIGINT too): mpirun sends the ranks SIGTERM after
   odls_base_sigkill_timeout; they stop at the same step, rank 0 saves, the ranks exit 143. mpirun itself exits 1
   (Open MPI 4.1 sets its own status when signalled, whatever the ranks return), and as soon as one rank has
   ended it may end the others' last moments (MPI_Finalize of an aborting job waits about 2 s), so not every
   rank's status need be recorded. */
static void test_sigterm(void) {
    rm_run("term");
    /* 8 s for the step, the save, MPI_Finalize (about 2 s here) and, under make test SAN=1, LeakSanitizer's
       check at exit */
    pid_t job = start_job(2, "term", "solver.max_iter=100000 solver.checkpoint_every=1000", 8, 1);
    wait_steps("term");
    kill(job, SIGTERM);
    double t0 = md_now();
    int rc = wait_job(job, 60);
    printf("  SIGTERM to mpirun: status %d after %.1f s; ranks %d %d\n", rc, md_now() - t0, rank_status("term", 0), rank_status("term", 1));
    CHECK(rc == 1 || rc == 143, "status %d (-1: still running after 60 s; 137: ranks killed before saving)", rc);
    check_stopped("term", 2, 143, 0);
}

/* SIGINT to rank 1 alone (as srun or Slurm's time limit deliver the signal to the tasks, or `kill` of one rank):
   every rank stops at the same step, rank 0 (not signalled) saves, every rank and mpirun exit 130. */
static void test_signal_one_rank(void) {
    rm_run("sigint");
    pid_t job = start_job(2, "sigint", "solver.max_iter=100000 solver.checkpoint_every=1000", 3, 1);
    wait_steps("sigint");
    pid_t victim = rank_pid("sigint", 1);
    CHECK(victim > 0, "rank 1 not found");
    if (victim > 0) kill(victim, SIGINT);
    double t0 = md_now();
    int rc = wait_job(job, 60);
    printf("  SIGINT to rank 1: mpirun status %d after %.1f s; ranks %d %d\n", rc, md_now() - t0, rank_status("sigint", 0),
           rank_status("sigint", 1));
    CHECK(rc == 130, "mpirun status %d, expected 130 (-1: still running after 60 s)", rc);
    check_stopped("sigint", 2, 130, 1);
}

/* argv[1] (optional): run only the cases whose name contains it */
static const char *g_only;
#define RUN(fn) do { if (!g_only || strstr(#fn, g_only)) MD_RUN(fn); } while (0)

int main(int argc, char **argv) {
    g_only = argc > 1 ? argv[1] : NULL;
    const char *b = getenv("MD_BIN");
    snprintf(bin, sizeof bin, "%s/train", b && *b ? b : "build/mpi/bin");
    snprintf(evalbin, sizeof evalbin, "%s/eval", b && *b ? b : "build/mpi/bin");
    mkdir("build", 0755);
    mkdir(TDIR, 0755);
    if (!md_test_need_path(bin, "make MPI=1 (the ./train program)")) return md_test_summary();
    make_data();
    RUN(test_equivalence);
    RUN(test_sampling_invariance);
    RUN(test_resume_other_rank_count);
    RUN(test_sharded_eval);
    RUN(test_indivisible);
    RUN(test_corrupt_image);
    RUN(test_image_check_shared);
    RUN(test_divergence);
    RUN(test_nan_one_rank);
    RUN(test_kill_rank);
    RUN(test_sigterm);
    RUN(test_signal_one_rank);
    return md_test_summary();
}
