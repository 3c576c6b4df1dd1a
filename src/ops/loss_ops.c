/* loss_ops.c — the detector's classification losses (see include/minidet/ops.h):
 * softmax cross-entropy with an ignore index (mean over the rows that are not ignored) and
 * sigmoid binary cross-entropy with logits (mean). Smooth-L1 is with the box losses (box_loss.h).
 *
 * Semantics follow torch.nn.functional 1.13. Sums are accumulated in double, so the
 * returned loss is the correctly rounded mean/sum up to float32 rounding of the inputs.
 * The cross-entropy with every row ignored returns 0 (and its backward adds nothing),
 * where PyTorch's mean reduction gives 0/0 = NaN: a batch without a labelled row must
 * not poison training. Gradients are float arithmetic: dloss / count rounded once, times
 * (p - onehot) or (sigmoid(x) - t) in float (relative error a few ulps; the losses themselves sum in double). */
#include <math.h>
#include "minidet/error.h"
#include "minidet/ops.h"

/* ------------------------------------------------------------ softmax cross-entropy */

float md_cross_entropy_forward(float *probs, const float *logits, const int32_t *labels, int N, int K, int ignore_index,
                               int normalizer) {
    double sum = 0;
    int count = 0, bad = -1;
    for (int i = 0; i < N; i++) {
        const float *x = logits + (size_t)i * K;
        float *p = probs + (size_t)i * K;
        double m = -INFINITY;
        for (int k = 0; k < K; k++)
            if (x[k] > m) m = x[k];
        double z = 0;
        for (int k = 0; k < K; k++) z += exp((double)x[k] - m);
        double lse = m + log(z);
        for (int k = 0; k < K; k++) p[k] = (float)exp((double)x[k] - lse);
        int y = labels[i];
        if (y == ignore_index) continue;
        if (y < 0 || y >= K) {
            if (bad < 0) bad = i;
            continue;
        }
        sum += lse - (double)x[y];
        count++;
    }
    if (bad >= 0) {
        md_set_error(MD_ERR_ARG, "cross_entropy: labels[%d] = %d is outside [0, %d) and is not the ignore index %d", bad,
                     labels[bad], K, ignore_index);
        return NAN;
    }
    if (normalizer > 0) count = normalizer;
    return count ? (float)(sum / count) : 0.0f;
}

void md_cross_entropy_backward(float *dlogits, const float *probs, const int32_t *labels, int N, int K, int ignore_index, float dloss,
                               int normalizer) {
    if (!dlogits) return;
    int count = 0;
    for (int i = 0; i < N; i++)
        if (labels[i] != ignore_index && labels[i] >= 0 && labels[i] < K) count++;
    if (!count) return;
    const float s = dloss * (1.0f / (float)(normalizer > 0 ? normalizer : count));
    for (int i = 0; i < N; i++) {
        int y = labels[i];
        if (y == ignore_index || y < 0 || y >= K) continue;
        const float *p = probs + (size_t)i * K;
        float *g = dlogits + (size_t)i * K;
        for (int k = 0; k < K; k++) g[k] += s * (p[k] - (k == y ? 1.0f : 0.0f));
    }
}

/* ------------------------------------------------------------ sigmoid BCE with logits */

float md_bce_logits_forward(const float *x, const float *target, int n, int normalizer) {
    if (n <= 0) return NAN; /* torch: mean over an empty tensor */
    double sum = 0;
    for (int i = 0; i < n; i++) {
        double v = x[i], t = target[i];
        /* max(v, 0) - v*t + log(1 + exp(-|v|)): no overflow for any finite v */
        sum += (v > 0 ? v : 0) - v * t + log1p(exp(-fabs(v)));
    }
    return (float)(sum / (normalizer > 0 ? normalizer : n));
}

void md_bce_logits_backward(float *dx, const float *x, const float *target, int n, float dloss, int normalizer) {
    if (!dx || n <= 0) return;
    const float s = dloss * (1.0f / (float)(normalizer > 0 ? normalizer : n));
    for (int i = 0; i < n; i++) dx[i] += s * (1.0f / (1.0f + expf(-x[i])) - target[i]);
}
