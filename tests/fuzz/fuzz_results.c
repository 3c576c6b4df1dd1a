/* fuzz_results.c — the results loader (md_coco_dets_load, COCO loadRes format) on arbitrary
 * bytes against a fixed small ground truth; a successful load is also evaluated. */
#include "fuzz_common.h"
#include "minidet/cocoeval.h"

static md_coco_gt *g_gt;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc; (void)argv;
    const char *gt = getenv("MD_FUZZ_GT");
    if (!gt) gt = "tests/fixtures/cocoeval/basic/gt.json";
    if (md_coco_gt_load(gt, &g_gt) != MD_OK) {
        fprintf(stderr, "fuzz_results: cannot load ground truth %s: %s\n", gt, md_last_error());
        abort();
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *p = fuzz_write_input(data, size);
    md_coco_dets *d = NULL;
    if (md_coco_dets_load(g_gt, p, &d) == MD_OK) {
        md_cocoeval_result r;
        if (md_cocoeval_run(g_gt, d, &r) == MD_OK) md_cocoeval_result_free(&r);
        md_coco_dets_free(d);
    }
    return 0;
}
