/* train.c — `./train CONFIG [section.key=value ...] [--resume] [--quiet]`: parses arguments, runs md_train. */
#include <stdio.h>
#include <string.h>
#include "minidet/config.h"
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
               "  Keys and defaults: configs/README.md. Ctrl-C saves a checkpoint and exits.\n");
}

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    md_train_options o;
    md_train_options_default(&o);
    o.handle_signals = 1;
    if (!strncmp(argv[1], "--", 2)) {
        md_set_error(MD_ERR_ARG, "%s: the config file comes first: ./train CONFIG [section.key=value ...] [--resume] [--quiet]", argv[1]);
        md_die();
    }
    char *ov[256];
    int nov = 0;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--resume")) o.resume = 1;
        else if (!strcmp(argv[i], "--quiet")) o.quiet = 1;
        else if (!strncmp(argv[i], "--", 2)) {
            md_set_error(MD_ERR_ARG, "unknown option '%s' (see ./train --help)", argv[i]);
            md_die();
        } else if (nov < 256) ov[nov++] = argv[i];
        else {
            md_set_error(MD_ERR_ARG, "%s: more than 256 overrides", argv[i]);
            md_die();
        }
    }
    md_config cfg;
    if (md_config_load(&cfg, argv[1], nov, ov)) md_die();
    char run_dir[4096];
    md_status s = md_train(&cfg, &o, run_dir, sizeof run_dir);
    if (s == MD_ERR_INTERRUPTED) {
        fprintf(stderr, "minidet: %s\nminidet: resume with: ./train %s", md_last_error(), argv[1]);
        for (int i = 0; i < nov; i++) fprintf(stderr, " %s", ov[i]);
        fprintf(stderr, " --resume\n");
        return 0;
    }
    if (s) md_die();
    if (!o.quiet) fprintf(stderr, "minidet: training finished; outputs in %s\n", run_dir);
    return 0;
}
