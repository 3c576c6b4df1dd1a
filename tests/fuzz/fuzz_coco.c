/* fuzz_coco.c — the training-side COCO instances loader (md_coco_load) on arbitrary bytes. */
#include "fuzz_common.h"
#include "minidet/coco.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *p = fuzz_write_input(data, size);
    md_coco_options o;
    md_coco_options_default(&o);
    md_coco c;
    if (md_coco_load(&c, p, &o) == MD_OK) md_coco_free(&c);
    return 0;
}
