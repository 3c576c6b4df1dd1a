/* tool_make_shapes.c — writes the synthetic shapes dataset (COCO JSON + images).
 *   build/bin/tool_make_shapes OUT_DIR --num N --seed S --size WxH [--split train|val] [--jpeg]
 *                              [--shapes MIN-MAX] [--noise A] [--obj-size MIN-FRAC] [--bar-thick MIN-MAX]
 * Deterministic: the same arguments give byte-identical files. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "minidet/log.h"
#include "minidet/shapes.h"

static void usage(FILE *f) {
    fprintf(f, "usage: tool_make_shapes OUT_DIR [--num N] [--seed S] [--size WxH] [--split train|val] [--jpeg]\n"
               "                        [--shapes MIN-MAX] [--noise A] [--obj-size MIN-FRAC] [--bar-thick MIN-MAX]\n"
               "  Writes OUT_DIR/images/NNNNNN.png and OUT_DIR/annotations.json (COCO) with rectangles,\n"
               "  ellipses, triangles and thin bars. Defaults: --num 200 --seed 1 --size 128x128 --split train\n"
               "  --shapes 1-5 --noise 12 --obj-size 6-0.6 (nominal object size log-uniform from 6 px to 0.6 x the\n"
               "  shorter side) --bar-thick 2-4 (px).\n");
}

static int parse_int(const char *s, long lo, long hi, long *out) {
    char *end;
    long v = strtol(s, &end, 10);
    if (end == s || *end || v < lo || v > hi) return 0;
    *out = v;
    return 1;
}

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    md_shapes_options o;
    md_shapes_options_default(&o);
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        long x;
        int w, h, lo, hi;
        float flo, fhi;
        char tail;
        if (!strcmp(a, "--jpeg")) { o.jpeg = 1; continue; }
        if (!v) { md_set_error(MD_ERR_ARG, "%s needs a value", a); md_die(); }
        i++;
        if (!strcmp(a, "--num") && parse_int(v, 1, 10000000, &x)) o.num = (int)x;
        else if (!strcmp(a, "--seed") && parse_int(v, 0, 0x7fffffffL, &x)) o.seed = (uint64_t)x;
        else if (!strcmp(a, "--size") && sscanf(v, "%dx%d%c", &w, &h, &tail) == 2) { o.width = w; o.height = h; }
        else if (!strcmp(a, "--split") && (!strcmp(v, "train") || !strcmp(v, "val"))) o.val = !strcmp(v, "val");
        else if (!strcmp(a, "--shapes") && sscanf(v, "%d-%d%c", &lo, &hi, &tail) == 2) { o.min_shapes = lo; o.max_shapes = hi; }
        else if (!strcmp(a, "--noise") && parse_int(v, 0, 255, &x)) o.noise = (int)x;
        else if (!strcmp(a, "--obj-size") && sscanf(v, "%f-%f%c", &flo, &fhi, &tail) == 2) { o.min_size = flo; o.max_size_frac = fhi; }
        else if (!strcmp(a, "--bar-thick") && sscanf(v, "%d-%d%c", &lo, &hi, &tail) == 2) { o.bar_thick_min = lo; o.bar_thick_max = hi; }
        else {
            md_set_error(MD_ERR_ARG, "bad option or value: %s %s", a, v);
            usage(stderr);
            md_die();
        }
    }
    if (md_shapes_generate(argv[1], &o)) md_die();
    printf("%s: %d %s images %dx%d (seed %llu)\n", argv[1], o.num, o.val ? "val" : "train", o.width, o.height,
           (unsigned long long)o.seed);
    return 0;
}
