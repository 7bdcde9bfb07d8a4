/* core/cpu/batchnorm.h: batch normalization over (B, HW) per channel (PyTorch nn.BatchNorm2d, and
 * BatchNorm1d with HW = 1 or HW = L):  y = (x - mean_c) * rstd_c * w_c + b_c,  rstd_c = 1/sqrt(var_c + eps).
 * Two modes:
 *   train  : mean/var are the batch statistics (biased variance, divisor B*HW); the running statistics are
 *            updated in place as PyTorch does: r = (1 - momentum) r + momentum * stat, with the UNBIASED
 *            variance (divisor B*HW - 1) going into running_var.
 *   frozen : mean/var are running_mean/running_var (eval mode, or a frozen backbone during fine-tuning);
 *            the layer is then a per-channel affine map and its backward a per-channel scale.
 * Layout NCHW; weight/bias (C). */
#ifndef CORE_CPU_BATCHNORM_H
#define CORE_CPU_BATCHNORM_H

typedef struct {
    int B, C, HW;          /* input (B,C,HW) = (B,C,H,W) flattened spatially */
    float eps;             /* 1e-5 in PyTorch */
    float momentum;        /* 0.1 in PyTorch */
} BatchNormShape;

/* BatchNormShape with PyTorch's defaults eps 1e-5, momentum 0.1. */
BatchNormShape batchnorm_shape(int B, int C, int HW);

/* Train mode. out (B,C,HW); mean (C), rstd (C) saved for backward; running_mean/running_var (C) updated in
 * place (both NULL: no update); inp (B,C,HW); weight, bias (C) (NULL: 1 and 0). Needs B*HW > 1.
 * out may alias inp. */
void batchnorm_forward_train(float *out, float *mean, float *rstd, float *running_mean, float *running_var,
                             const float *inp, const float *weight, const float *bias, BatchNormShape s);
/* Frozen-statistics mode. out (B,C,HW); mean (C), rstd (C) saved for backward (a copy of running_mean and
 * 1/sqrt(running_var + eps)); running_mean/running_var (C) are read only. out may alias inp. */
void batchnorm_forward_frozen(float *out, float *mean, float *rstd, const float *inp, const float *weight,
                              const float *bias, const float *running_mean, const float *running_var,
                              BatchNormShape s);

/* ACCUMULATES (+=) into dinp (B,C,HW), dweight (C), dbias (C); each may be NULL = not wanted.
 * batch_stats: 1 if the forward was batchnorm_forward_train (the gradient then flows through the batch
 * mean and variance too), 0 for batchnorm_forward_frozen. dout (B,C,HW); inp, weight and the saved mean,
 * rstd as in the forward (inp must be the forward's input, so the forward must not have run in place). */
void batchnorm_backward(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                        const float *weight, const float *mean, const float *rstd, int batch_stats,
                        BatchNormShape s);
#endif
