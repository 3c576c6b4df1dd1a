/* fuzz_config.c — the INI config parser (md_config_load) on arbitrary bytes; a config that
 * loads must also write and load back. */
#include "fuzz_common.h"
#include "minidet/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *p = fuzz_write_input(data, size);
    md_config c;
    if (md_config_load(&c, p, 0, NULL) == MD_OK) {
        FILE *f = tmpfile();
        if (!f) abort();
        if (md_config_write(&c, f) != MD_OK) abort();
        fclose(f);
    }
    return 0;
}
