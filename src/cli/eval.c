/* eval.c — `./eval --ann GT.json --results DETS.json` and friends (see design.md §2). */
#include <stdio.h>
#include <string.h>
#include "minidet/error.h"
#include "minidet/log.h"

static void usage(FILE *f) {
    fprintf(f, "usage: ./eval --ann GT.json --results DETS.json [--json OUT.json]\n"
               "       ./eval --weights W.safetensors --config C.cfg [--ann GT --images DIR] [--out R.json]\n"
               "       ./eval RUN_DIR [RUN_DIR ...]\n");
}

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    md_set_error(MD_ERR_ARG, "evaluation is not implemented yet");
    md_die();
}
