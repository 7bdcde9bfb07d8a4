/* core/cpu/pool2d.h: 2-D max and average pooling (PyTorch nn.MaxPool2d / nn.AvgPool2d with ceil_mode False,
 * dilation 1) and global average pooling. Layout NCHW. */
#ifndef CORE_CPU_POOL2D_H
#define CORE_CPU_POOL2D_H
#include <stdint.h>

typedef struct {
    int B, C, H, W;        /* input (B,C,H,W) */
    int kh, kw;            /* window */
    int stride, pad;       /* same in both spatial directions; pad <= k/2 as PyTorch requires */
    int H_out, W_out;      /* output (B,C,H_out,W_out) */
} PoolShape;

/* Fills H_out = (H + 2 pad - kh) / stride + 1 (floor) and W_out likewise. */
PoolShape pool2d_shape(int B, int C, int H, int W, int kh, int kw, int stride, int pad);

/* out (B,C,H_out,W_out) = window max of inp (B,C,H,W); padding counts as -inf. argmax (B,C,H_out,W_out)
 * saves, per output, the flat index h*W+w of the max inside its input plane (PyTorch's return_indices);
 * ties go to the first position in row-major window order. */
void maxpool2d_forward(float *out, int32_t *argmax, const float *inp, PoolShape s);
/* ACCUMULATES dinp (B,C,H,W) += dout (B,C,H_out,W_out) routed through argmax. */
void maxpool2d_backward(float *dinp, const float *dout, const int32_t *argmax, PoolShape s);

/* out (B,C,H_out,W_out) = window mean of inp; the divisor counts padded positions (count_include_pad =
 * True, PyTorch's default), so it is always kh*kw. */
void avgpool2d_forward(float *out, const float *inp, PoolShape s);
/* ACCUMULATES dinp (B,C,H,W) += dout spread evenly over each window (same divisor as the forward). */
void avgpool2d_backward(float *dinp, const float *dout, PoolShape s);

/* out (B,C) = mean over H*W of inp (B,C,H,W). */
void global_avgpool_forward(float *out, const float *inp, int B, int C, int HW);
/* ACCUMULATES dinp (B,C,H,W) += dout (B,C) / HW. */
void global_avgpool_backward(float *dinp, const float *dout, int B, int C, int HW);
#endif
