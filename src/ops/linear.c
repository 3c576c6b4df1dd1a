/* linear.c — fully connected layer in torch.nn.Linear layout (see include/minidet/ops.h). */
#include "minidet/gemm.h"
#include "minidet/ops.h"

/* in: B x IN, weight: OUT x IN, bias: OUT or NULL -> out: B x OUT. */
void md_linear_forward(float *out, const float *in, const float *weight, const float *bias, int B, int IN, int OUT) {
    if (bias) {
        for (int b = 0; b < B; b++)
            for (int o = 0; o < OUT; o++) out[(size_t)b * OUT + o] = bias[o];
    }
    md_sgemm(0, 1, B, OUT, IN, 1.0f, in, IN, weight, IN, bias ? 1.0f : 0.0f, out, OUT);
}

/* din += dout @ W (B x IN), dweight += dout^T @ in (OUT x IN), dbias += column sums of dout; each may be NULL. */
void md_linear_backward(float *din, float *dweight, float *dbias, const float *dout, const float *in, const float *weight, int B,
                        int IN, int OUT) {
    if (din) md_sgemm(0, 0, B, IN, OUT, 1.0f, dout, OUT, weight, IN, 1.0f, din, IN);
    if (dweight) md_sgemm(1, 0, OUT, IN, B, 1.0f, dout, OUT, in, IN, 1.0f, dweight, IN);
    if (dbias) {
        for (int o = 0; o < OUT; o++) {
            double acc = 0.0;
            for (int b = 0; b < B; b++) acc += dout[(size_t)b * OUT + o];
            dbias[o] += (float)acc;
        }
    }
}
