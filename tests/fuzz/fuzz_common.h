/* fuzz_common.h — libFuzzer harness helper: the loaders under test take a path,
 * so each input is written to a private temp file first. */
#ifndef MINIDET_FUZZ_COMMON_H
#define MINIDET_FUZZ_COMMON_H
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static const char *fuzz_write_input(const uint8_t *data, size_t size) {
    static char path[64];
    if (!path[0]) snprintf(path, sizeof path, "/tmp/minidet_fuzz_%ld.in", (long)getpid());
    FILE *f = fopen(path, "wb");
    if (!f) abort();
    if (size && fwrite(data, 1, size, f) != size) abort();
    fclose(f);
    return path;
}
#endif
