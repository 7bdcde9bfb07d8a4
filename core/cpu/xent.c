/* core/cpu/xent.c: log-sum-exp in double so the loss is exact to float rounding of the logits. */
#include "xent.h"

#include <math.h>

double xent_forward(float *probs, const float *logits, const int *labels, int B, int K, float smoothing,
                    int *correct) {
    double total = 0;
    int hits = 0;
    for (int b = 0; b < B; b++) {
        const float *z = logits + (long)b * K;
        float *p = probs + (long)b * K;
        int arg = 0;
        for (int k = 1; k < K; k++)
            if (z[k] > z[arg]) arg = k;
        double mx = z[arg], sum = 0;
        for (int k = 0; k < K; k++) sum += exp((double)z[k] - mx);
        double lse = mx + log(sum), mean_nll = 0;
        for (int k = 0; k < K; k++) {
            p[k] = (float)exp((double)z[k] - lse);
            mean_nll += lse - z[k];
        }
        double nll = lse - z[labels[b]];
        total += (1.0 - smoothing) * nll + smoothing * mean_nll / K;
        hits += arg == labels[b];
    }
    if (correct) *correct = hits;
    return total / B;
}

void xent_backward(float *dlogits, const float *probs, const int *labels, int B, int K, float smoothing, float scale) {
    float s = scale / B;
    for (int b = 0; b < B; b++)
        for (int k = 0; k < K; k++) {
            float t = smoothing / K + (k == labels[b] ? 1.0f - smoothing : 0.0f);
            dlogits[(long)b * K + k] = s * (probs[(long)b * K + k] - t);
        }
}
