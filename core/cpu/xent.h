/* core/cpu/xent.h: softmax cross-entropy with optional label smoothing eps (PyTorch's definition:
 * target = (1 - eps) onehot(y) + eps / K), mean over the batch. */
#ifndef CORE_CPU_XENT_H
#define CORE_CPU_XENT_H

/* Returns the mean loss; probs (B,K) saved for backward; logits (B,K), labels (B). correct (may be NULL)
 * gets the number of argmax hits. */
double xent_forward(float *probs, const float *logits, const int *labels, int B, int K, float smoothing,
                    int *correct);
/* WRITES dlogits (B,K) = scale * (probs - target) / B (the gradient of scale * mean loss). */
void xent_backward(float *dlogits, const float *probs, const int *labels, int B, int K, float smoothing, float scale);
#endif
