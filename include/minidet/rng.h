/* rng.h — counter-based random numbers (reproducible, resumable, parallel-safe).
 *
 * Every random draw is a pure function of (seed, stream, counter): md_rng
 * holds those three numbers and each draw increments counter. Streams
 * separate uses (data order, flips, sampling, init) so that changing one
 * consumer never shifts another; saving {seed, stream, counter} in a
 * checkpoint restores the exact sequence. The mixer is SplitMix64-based
 * hashing of the triple (good statistical quality, not cryptographic). */
#ifndef MINIDET_RNG_H
#define MINIDET_RNG_H
#include <stdint.h>

typedef struct {
    uint64_t seed;
    uint64_t stream;
    uint64_t counter;
} md_rng;

/* Well-known stream ids. */
enum { MD_STREAM_INIT = 1, MD_STREAM_SHUFFLE = 2, MD_STREAM_AUGMENT = 3, MD_STREAM_SAMPLER = 4, MD_STREAM_DATA = 5 };

static inline md_rng md_rng_make(uint64_t seed, uint64_t stream) { md_rng r = {seed, stream, 0}; return r; }
/* Stateless hash of three words to 64 random bits. */
uint64_t md_hash3(uint64_t a, uint64_t b, uint64_t c);
uint64_t md_rng_u64(md_rng *r);
uint32_t md_rng_u32(md_rng *r);
/* Uniform in [0, 1) with 24 random bits (exactly representable floats). */
float md_rng_uniform(md_rng *r);
/* Uniform integer in [0, n), n > 0, unbiased. */
uint32_t md_rng_below(md_rng *r, uint32_t n);
/* Standard normal (Box-Muller, consumes two draws). */
float md_rng_normal(md_rng *r);
/* Fisher-Yates shuffle of idx[0..n). */
void md_rng_shuffle_u32(md_rng *r, uint32_t *idx, uint32_t n);

#endif
