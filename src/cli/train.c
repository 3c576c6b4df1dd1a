/* train.c — `./train CONFIG [section.key=value ...] [--resume] [--quiet]`: parses arguments, runs md_train. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "minidet/config.h"
#include "minidet/dist.h"
#include "minidet/error.h"
#include "minidet/log.h"
#include "minidet/trainer.h"

static void usage(FILE *f) {
    fprintf(f, "usage: ./train CONFIG [section.key=value ...] [--resume] [--quiet]\n"
               "  Trains a Faster R-CNN with the box-regression loss chosen in CONFIG\n"
               "  ([roi_heads] box_loss = smooth_l1 | iou | giou | diou | ciou); writes runs/<name>/\n"
               "  (config.cfg, metrics.jsonl, checkpoints/, last.safetensors, eval.json).\n"
               "  --resume   continue exactly from runs/<name>/last.safetensors\n"
               "  --quiet    no progress output\n"
               "  Keys and defaults: configs/README.md. Ctrl-C / SIGTERM finish the step, save a checkpoint and exit\n"
               "  130 / 143 (128 + the signal).\n"
               "  Data-parallel on several processes (make MPI=1): mpirun -np N ./train CONFIG ...\n");
}

/* Every error below is every rank's (the same arguments, or agreed by md_train): end MPI in order. */
static void die(void) {
    fprintf(stderr, "minidet: %s\n", md_last_error());
    md_dist_finalize();
    exit(1);
}

int main(int argc, char **argv) {
    if (md_dist_init(&argc, &argv)) md_die();
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        if (md_dist_rank() == 0) usage(argc < 2 ? stderr : stdout);
        md_dist_finalize();
        return argc < 2 ? 2 : 0;
    }
    md_train_options o;
    md_train_options_default(&o);
    o.handle_signals = 1;
    if (!strncmp(argv[1], "--", 2)) {
        md_set_error(MD_ERR_ARG, "%s: the config file comes first: ./train CONFIG [section.key=value ...] [--resume] [--quiet]", argv[1]);
        die();
    }
    char *ov[256];
    int nov = 0;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--resume")) o.resume = 1;
        else if (!strcmp(argv[i], "--quiet")) o.quiet = 1;
        else if (!strncmp(argv[i], "--", 2)) {
            md_set_error(MD_ERR_ARG, "unknown option '%s' (see ./train --help)", argv[i]);
            die();
        } else if (nov < 256) ov[nov++] = argv[i];
        else {
            md_set_error(MD_ERR_ARG, "%s: more than 256 overrides", argv[i]);
            die();
        }
    }
    md_config cfg;
    if (md_config_load(&cfg, argv[1], nov, ov)) die();
    char run_dir[4096];
    md_status s = md_train(&cfg, &o, run_dir, sizeof run_dir);
    int rank = md_dist_rank();
    if (s == MD_ERR_INTERRUPTED) {
        if (rank == 0) {
            fprintf(stderr, "minidet: %s\nminidet: resume with: %s./train %s", md_last_error(), md_dist_size() > 1 ? "mpirun ... " : "", argv[1]);
            for (int i = 0; i < nov; i++) fprintf(stderr, " %s", ov[i]);
            fprintf(stderr, " --resume\n");
        }
        md_dist_finalize();
        /* 128 + signal, as if the signal had ended the process: `./train a && ./train b` stops and a batch
           scheduler sees its time-limit SIGTERM, not a success (every rank: the signal the ranks agreed on) */
        int sig = md_train_stop_signal();
        return sig ? 128 + sig : 1;
    }
    /* with several ranks, the ranks that only stopped because another failed leave the talking to rank 0
       and to the rank that failed */
    if (s && rank != 0 && strstr(md_last_error(), "stopped because rank")) {
        md_dist_finalize();
        return 1;
    }
    if (s) die();
    if (!o.quiet && rank == 0) fprintf(stderr, "minidet: training finished; outputs in %s\n", run_dir);
    md_dist_finalize();
    return 0;
}
