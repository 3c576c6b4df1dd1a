/* fuzz_cocoeval_gt.c — the evaluator's ground-truth loader (md_coco_gt_load) on arbitrary bytes. */
#include "fuzz_common.h"
#include "minidet/cocoeval.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *p = fuzz_write_input(data, size);
    md_coco_gt *gt = NULL;
    if (md_coco_gt_load(p, &gt) == MD_OK) md_coco_gt_free(gt);
    return 0;
}
