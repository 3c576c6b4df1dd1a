/* pointwise.c — elementwise ops: ReLU and add (see include/minidet/ops.h). */
#include "minidet/ops.h"

#define PAR_MIN 65536 /* below this many elements a parallel region costs more than it saves */

/* out may alias in. NaN passes through (as torch.relu). */
void md_relu_forward(float *out, const float *in, size_t n) {
#pragma omp parallel for simd schedule(static) if (n > PAR_MIN)
    for (size_t i = 0; i < n; i++) out[i] = in[i] < 0.0f ? 0.0f : in[i];
}

/* din += dout * (out > 0); `out` is the forward output (din may alias dout only if the caller owns both). */
void md_relu_backward(float *din, const float *dout, const float *out, size_t n) {
    if (!din) return;
#pragma omp parallel for simd schedule(static) if (n > PAR_MIN)
    for (size_t i = 0; i < n; i++) din[i] += out[i] > 0.0f ? dout[i] : 0.0f;
}

void md_relu_backward_inplace(float *g, const float *out, size_t n) {
#pragma omp parallel for simd schedule(static) if (n > PAR_MIN)
    for (size_t i = 0; i < n; i++) g[i] = out[i] > 0.0f ? g[i] : 0.0f;
}

void md_add_relu_forward(float *out, const float *a, const float *b, size_t n) {
#pragma omp parallel for simd schedule(static) if (n > PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        const float v = a[i] + b[i];
        out[i] = v < 0.0f ? 0.0f : v;
    }
}

void md_add_relu_backward_inplace(float *g, const float *h, const float *out, size_t n) {
    if (!h) {
        md_relu_backward_inplace(g, out, n);
        return;
    }
#pragma omp parallel for simd schedule(static) if (n > PAR_MIN)
    for (size_t i = 0; i < n; i++) g[i] = out[i] > 0.0f ? g[i] + h[i] : 0.0f;
}

/* out = a + b; out may alias a or b. */
void md_add_forward(float *out, const float *a, const float *b, size_t n) {
#pragma omp parallel for simd schedule(static) if (n > PAR_MIN)
    for (size_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}

/* da += dout, db += dout (either may be NULL; da == db receives both contributions). */
void md_add_backward(float *da, float *db, const float *dout, size_t n) {
    if (da) {
#pragma omp parallel for simd schedule(static) if (n > PAR_MIN)
        for (size_t i = 0; i < n; i++) da[i] += dout[i];
    }
    if (db) {
#pragma omp parallel for simd schedule(static) if (n > PAR_MIN)
        for (size_t i = 0; i < n; i++) db[i] += dout[i];
    }
}
