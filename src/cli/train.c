/* train.c — `./train CONFIG [section.key=value ...]` (training arrives with the trainer module). */
#include <stdio.h>
#include <string.h>
#include "minidet/error.h"
#include "minidet/log.h"
#include "minidet/threads.h"

static void usage(FILE *f) {
    fprintf(f, "usage: ./train CONFIG [section.key=value ...] [--resume]\n"
               "  Trains a Faster R-CNN with the box-regression loss chosen in CONFIG\n"
               "  ([roi_heads] box_loss = smooth_l1 | iou | giou | diou | ciou).\n");
}

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    md_set_error(MD_ERR_ARG, "%s: training is not implemented yet", argv[1]);
    md_die();
}
