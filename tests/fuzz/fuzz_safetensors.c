/* fuzz_safetensors.c — the safetensors reader (md_st_load) on arbitrary bytes; every tensor of
 * a file that loads is read back as float32. */
#include "fuzz_common.h"
#include "minidet/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *p = fuzz_write_input(data, size);
    md_st_file f;
    if (md_st_load(p, &f) == MD_OK) {
        for (int i = 0; i < f.count; i++) {
            float *buf = NULL;
            size_t n = 0;
            if (md_st_alloc_f32(&f, f.tensors[i].name, &buf, &n) == MD_OK) free(buf);
        }
        md_st_free(&f);
    }
    return 0;
}
