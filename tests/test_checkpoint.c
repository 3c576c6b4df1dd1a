/* test_checkpoint.c — checkpoint round trip (bit-exact), refusal of truncated / foreign / mismatched
 * files with the model left unchanged, rotation (keep last K) and last.safetensors. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "minidet/checkpoint.h"
#include "minidet/fs.h"
#include "testutil.h"

static char dir[256];

typedef struct {
    float w[6], b[2], bn[2], gw[6], gb[2];
    md_ckpt_tensor t[3];
    md_sgd_param p[2];
    md_sgd opt;
} model;

static void make_model(model *m, float base) {
    for (int i = 0; i < 6; i++) { m->w[i] = base + 0.1f * i; m->gw[i] = 0.3f * i - 0.7f; }
    for (int i = 0; i < 2; i++) { m->b[i] = base - i; m->bn[i] = 2 * base + i; m->gb[i] = 0.25f * (i + 1); }
    m->t[0] = (md_ckpt_tensor){"head.weight", m->w, 6, 2, {2, 3}};
    m->t[1] = (md_ckpt_tensor){"head.bias", m->b, 2, 1, {2}};
    m->t[2] = (md_ckpt_tensor){"bn.running_mean", m->bn, 2, 1, {2}};
    m->p[0] = (md_sgd_param){"head.weight", m->w, m->gw, 6, 1};
    m->p[1] = (md_sgd_param){"head.bias", m->b, m->gb, 2, 0};
    CHECK_OK(md_sgd_init(&m->opt, m->p, 2, 0.9f, 1e-4f));
}

static void test_round_trip(void) {
    model a, b;
    make_model(&a, 1.0f);
    make_model(&b, -5.0f);
    md_sgd_step(&a.opt, 0.1f);
    md_sgd_step(&a.opt, 0.05f);
    md_config cfg;
    md_config_defaults(&cfg);
    cfg.roi_heads.box_loss = MD_BOXLOSS_GIOU;
    md_train_state st = {.iteration = 2, .loader_epoch = 3, .loader_position = 17, .rng_seed = 42, .rng_stream = 4,
                         .rng_counter = 123456789012345ULL, .train_time_s = 1.25, .best_ap = 0.375, .best_iter = 2};
    char path[512];
    md_checkpoint_path(path, sizeof path, dir, 2);
    CHECK(strstr(path, "checkpoints/iter_0000002.safetensors") != NULL, "path %s", path);
    CHECK_OK(md_checkpoint_save(path, a.t, 3, &a.opt, &cfg, &st, "{\"layout\":\"contiguous\"}"));
    md_train_state got;
    char *txt = NULL;
    CHECK_OK(md_checkpoint_load(path, b.t, 3, &b.opt, &got, &txt));
    CHECK(!memcmp(a.w, b.w, sizeof a.w) && !memcmp(a.b, b.b, sizeof a.b) && !memcmp(a.bn, b.bn, sizeof a.bn), "tensors bit-exact");
    CHECK(!memcmp(a.opt.momentum_block, b.opt.momentum_block, sizeof(float) * 8), "momentum bit-exact");
    CHECK(b.opt.steps == 2, "sgd steps %lld", b.opt.steps);
    CHECK(got.iteration == 2 && got.loader_epoch == 3 && got.loader_position == 17 && got.rng_counter == 123456789012345ULL &&
          got.rng_stream == 4 && got.rng_seed == 42 && got.train_time_s == 1.25 && got.best_ap == 0.375 && got.best_iter == 2,
          "train state");
    CHECK(txt && strstr(txt, "box_loss = giou"), "config text stored");
    free(txt);
    /* the next SGD step from the restored state equals the original's */
    md_sgd_step(&a.opt, 0.02f);
    md_sgd_step(&b.opt, 0.02f);
    CHECK(!memcmp(a.w, b.w, sizeof a.w) && !memcmp(a.b, b.b, sizeof a.b), "step after resume bit-exact");
    md_sgd_free(&a.opt);
    md_sgd_free(&b.opt);
}

static void test_refusals(void) {
    model a, b;
    make_model(&a, 1.0f);
    md_sgd_step(&a.opt, 0.1f);
    md_train_state st = {.iteration = 1};
    char path[512], bad[600];
    snprintf(path, sizeof path, "%s/good.safetensors", dir);
    CHECK_OK(md_checkpoint_save(path, a.t, 3, &a.opt, NULL, &st, NULL));
    struct stat sb;
    CHECK(stat(path, &sb) == 0, "saved");
    /* truncated */
    snprintf(bad, sizeof bad, "%s/trunc.safetensors", dir);
    FILE *in = fopen(path, "rb"), *out = fopen(bad, "wb");
    char buf[8192];
    size_t n = fread(buf, 1, sizeof buf, in);
    fwrite(buf, 1, n - 7, out);
    fclose(in);
    fclose(out);
    make_model(&b, -5.0f);
    model ref = b;
    md_status s = md_checkpoint_load(bad, b.t, 3, &b.opt, NULL, NULL);
    CHECK(s == MD_ERR_FORMAT, "truncated refused (%s)", md_status_name(s));
    CHECK(strstr(md_last_error(), "trunc.safetensors") != NULL, "names the file: %s", md_last_error());
    CHECK(!memcmp(b.w, ref.w, sizeof b.w), "model unchanged");
    /* foreign safetensors (written by python, no minidet metadata) */
    s = md_checkpoint_load("tests/fixtures/st_python.safetensors", b.t, 3, &b.opt, NULL, NULL);
    CHECK(s == MD_ERR_FORMAT && strstr(md_last_error(), "not a minidet training checkpoint"), "foreign: %s", md_last_error());
    /* shape mismatch */
    b.t[0].shape[0] = 3;
    b.t[0].shape[1] = 2;
    s = md_checkpoint_load(path, b.t, 3, &b.opt, NULL, NULL);
    CHECK(s == MD_ERR_SHAPE && strstr(md_last_error(), "head.weight") && strstr(md_last_error(), "[2, 3]"), "shape: %s", md_last_error());
    CHECK(!memcmp(b.w, ref.w, sizeof b.w) && !memcmp(b.b, ref.b, sizeof b.b), "model unchanged");
    /* missing tensor */
    b.t[0].shape[0] = 2;
    b.t[0].shape[1] = 3;
    b.t[2].name = "bn.running_var";
    s = md_checkpoint_load(path, b.t, 3, &b.opt, NULL, NULL);
    CHECK(s == MD_ERR_SHAPE && strstr(md_last_error(), "bn.running_var") && strstr(md_last_error(), "missing"), "missing: %s", md_last_error());
    /* not a file */
    s = md_checkpoint_load("/nonexistent.safetensors", b.t, 3, &b.opt, NULL, NULL);
    CHECK(s == MD_ERR_IO, "absent file");
    md_sgd_free(&a.opt);
    md_sgd_free(&b.opt);
}

static void test_rotation(void) {
    model a;
    make_model(&a, 1.0f);
    md_train_state st = {0};
    char path[512];
    for (long long it = 10; it <= 50; it += 10) {
        st.iteration = it;
        md_checkpoint_path(path, sizeof path, dir, it);
        CHECK_OK(md_checkpoint_save(path, a.t, 3, &a.opt, NULL, &st, NULL));
        CHECK_OK(md_checkpoint_link_last(dir, path));
        CHECK_OK(md_checkpoint_prune(dir, 2));
    }
    struct stat sb;
    for (long long it = 10; it <= 50; it += 10) {
        md_checkpoint_path(path, sizeof path, dir, it);
        int exists = stat(path, &sb) == 0;
        CHECK(exists == (it >= 40), "iter %lld exists=%d", it, exists);
    }
    snprintf(path, sizeof path, "%s/last.safetensors", dir);
    md_train_state got;
    model b;
    make_model(&b, 0);
    CHECK_OK(md_checkpoint_load(path, b.t, 3, NULL, &got, NULL));
    CHECK(got.iteration == 50, "last is iteration %lld", got.iteration);
    md_sgd_free(&a.opt);
    md_sgd_free(&b.opt);
}

int main(void) {
    snprintf(dir, sizeof dir, "/tmp/md_test_ckpt_%d", (int)getpid());
    char sub[600];
    snprintf(sub, sizeof sub, "%s/checkpoints", dir);
    if (md_mkdir_p(sub)) return 1;
    MD_RUN(test_round_trip);
    MD_RUN(test_refusals);
    MD_RUN(test_rotation);
    if (md_test_rm_rf(dir)) return 1;
    return md_test_summary();
}
