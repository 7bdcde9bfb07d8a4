/* core/cpu/conv2d.h: 2-D convolution (cross-correlation, as PyTorch nn.Conv2d with groups = 1):
 *   out[b,co,oh,ow] = bias[co] + sum_{ci,i,j} w[co,ci,i,j] * inp[b,ci, oh*stride-pad+i, ow*stride-pad+j]
 * with zero padding. Done as im2col + one sgemm per image: out_b (C_out,HWo) = W (C_out,K) @ col_b (K,HWo),
 * K = C_in*kh*kw. Layout NCHW; weight (C_out,C_in,kh,kw); bias (C_out) or NULL. */
#ifndef CORE_CPU_CONV2D_H
#define CORE_CPU_CONV2D_H
#include <stddef.h>

typedef struct {
    int B, C_in, H, W;     /* input (B,C_in,H,W) */
    int C_out, kh, kw;     /* weight (C_out,C_in,kh,kw) */
    int stride, pad;       /* same in both spatial directions */
    int H_out, W_out;      /* output (B,C_out,H_out,W_out) */
} ConvShape;

/* Fills H_out = (H + 2 pad - kh) / stride + 1 (floor, as PyTorch) and W_out likewise. */
ConvShape conv2d_shape(int B, int C_in, int H, int W, int C_out, int kh, int kw, int stride, int pad);

/* Floats of col_scratch that forward and backward need (one im2col buffer per worker thread, plus private
 * weight-gradient partials for all but the first). Depends on omp_get_max_threads(): ask again after
 * changing the thread count. Allocate it from the step's arena, once, and share it between layers.
 * (While the images run in parallel, a pthreads build of OpenBLAS is set to one thread and restored after.) */
size_t conv2d_scratch_floats(ConvShape s);

/* out (B,C_out,H_out,W_out) = conv(inp (B,C_in,H,W), weight (C_out,C_in,kh,kw)) + bias (C_out, or NULL).
 * col_scratch: conv2d_scratch_floats(s) floats, contents undefined on return. out must not alias inp. */
void conv2d_forward(float *out, float *col_scratch, const float *inp, const float *weight, const float *bias,
                    ConvShape s);

/* ACCUMULATES (+=) into dinp (B,C_in,H,W), dweight (C_out,C_in,kh,kw) and dbias (C_out), so several
 * consumers can share one buffer. Any of them may be NULL = not wanted: a frozen weight (NULL dweight)
 * skips the im2col and the weight-gradient GEMM entirely (most of a LoRA step's savings); dinp is NULL for
 * the first layer. dout (B,C_out,H_out,W_out); inp and weight as in the forward. */
void conv2d_backward(float *dinp, float *dweight, float *dbias, float *col_scratch, const float *dout,
                     const float *inp, const float *weight, ConvShape s);
#endif
