/* tide.h — TIDE error analysis of box detections (Bolya et al., "TIDE: A
 * General Toolbox for Identifying Object Detection Errors", ECCV 2020).
 *
 * AP alone does not say why two detectors differ. TIDE sorts every false
 * positive and missed object into one error type and reports, per type, how
 * much AP (at one IoU threshold) fixing all errors of that type would add:
 *   main errors   Cls  right box, wrong class (IoU >= pos with another class's GT)
 *                 Loc  right class, box off (bg <= IoU <= pos with a GT of its class)
 *                 Both wrong class and box off (neither of the above, IoU > bg)
 *                 Dupe right class and box, but its GT already matched a higher score
 *                 Bkg  background (IoU <= bg with every GT)
 *                 Miss GT no detection could have found
 *   special       FalsePos: AP with every false positive scored below every true one;
 *                 FalseNeg: AP with every missed GT removed.
 * Numbers equal tidecv 1.0.1 (TIDE.BOX, pos_threshold, background_threshold
 * 0.1, COCO's max_dets 100) within 1e-6 — tests/test_tide.c checks them on
 * tidecv's own output. Its rules are not COCOeval's (AP per class at one
 * threshold over the classes that have GT or detections, max_dets per image
 * over all classes, crowd regions ignore only at IoU > pos, first-best
 * matching); docs/TIDE.md lists every difference.
 *
 * Usage:
 *   md_tide_opts o = MD_TIDE_OPTS_DEFAULT;   // o.pos_thr = 0.75 for TIDE @ 75
 *   md_tide_result t;
 *   md_tide_run(gt, dets, &o, &t);           // gt, dets as for md_cocoeval_run
 *   md_tide_print(&t, stdout);               // t.main[MD_TIDE_LOC] is Loc's dAP in percent
 */
#ifndef MINIDET_TIDE_H
#define MINIDET_TIDE_H
#include <stddef.h>
#include <stdio.h>
#include "minidet/cocoeval.h"
#include "minidet/error.h"

typedef struct {
    double pos_thr;  /* IoU that makes a true positive (TIDE's pos_threshold) */
    double bg_thr;   /* IoU at or below which a detection is background (background_threshold) */
    int max_dets;    /* detections kept per image, over all classes */
} md_tide_opts;
#define MD_TIDE_OPTS_DEFAULT {0.5, 0.1, 100}

enum { MD_TIDE_CLS, MD_TIDE_LOC, MD_TIDE_BOTH, MD_TIDE_DUPE, MD_TIDE_BKG, MD_TIDE_MISS, MD_TIDE_N_MAIN };
enum { MD_TIDE_FALSE_POS, MD_TIDE_FALSE_NEG, MD_TIDE_N_SPECIAL };

typedef struct {
    md_tide_opts opts;
    double ap;                          /* TIDE's AP at opts.pos_thr, percent */
    double main[MD_TIDE_N_MAIN];        /* dAP, percent, >= 0 */
    double special[MD_TIDE_N_SPECIAL];  /* dAP, percent */
    long count[MD_TIDE_N_MAIN];         /* errors of each type */
} md_tide_result;

/* TIDE on detections resolved against gt. An empty result list, or one whose
 * classes hold nothing to evaluate, is an error. */
md_status md_tide_run(const md_coco_gt *gt, const md_coco_dets *dets, const md_tide_opts *o, md_tide_result *r);
/* "Cls", "Loc", "Both", "Dupe", "Bkg", "Miss" / "FalsePos", "FalseNeg". */
const char *md_tide_main_name(int e);
const char *md_tide_special_name(int e);
/* TIDE's summary: AP, then the main and the special errors as dAP with two decimals. */
void md_tide_print(const md_tide_result *r, FILE *f);
/* {"pos_threshold": .., "background_threshold": .., "max_dets": .., "ap": .., "main": {"Cls": .., ...},
 * "special": {"FalsePos": .., "FalseNeg": ..}, "count": {"Cls": n, ...}} into buf (NUL-terminated,
 * truncated to cap); returns the full length. */
size_t md_tide_json(const md_tide_result *r, char *buf, size_t cap);

#endif
