/* core/cpu/pool2d.c: direct loops, parallel over (image, channel) planes, which never share outputs. */
#include "pool2d.h"

#include <math.h>
#include <stddef.h>

#include "core/common.h"

PoolShape pool2d_shape(int B, int C, int H, int W, int kh, int kw, int stride, int pad) {
    PoolShape s = {.B = B, .C = C, .H = H, .W = W, .kh = kh, .kw = kw, .stride = stride, .pad = pad};
    s.H_out = (H + 2 * pad - kh) / stride + 1;
    s.W_out = (W + 2 * pad - kw) / stride + 1;
    return s;
}

static void check_shape(PoolShape s) {
    ASSERT(s.B > 0 && s.C > 0 && s.H > 0 && s.W > 0 && s.kh > 0 && s.kw > 0 && s.stride > 0);
    /* PyTorch's rule; it also guarantees every max window sees at least one real element. */
    ASSERTF(s.pad >= 0 && 2 * s.pad <= s.kh && 2 * s.pad <= s.kw, "pool2d: pad %d exceeds half the window", s.pad);
    ASSERT(s.H_out == (s.H + 2 * s.pad - s.kh) / s.stride + 1 && s.W_out == (s.W + 2 * s.pad - s.kw) / s.stride + 1);
    ASSERT(s.H_out > 0 && s.W_out > 0);
}

#define PLANE_PARALLEL_IF(s) if ((long)(s).B * (s).C * (s).H * (s).W > 32768)

void maxpool2d_forward(float *out, int32_t *argmax, const float *inp, PoolShape s) {
    check_shape(s);
    int np = s.B * s.C;
#pragma omp parallel for schedule(static) PLANE_PARALLEL_IF(s)
    for (int p = 0; p < np; p++) {
        const float *in = inp + (size_t)p * s.H * s.W;
        float *o = out + (size_t)p * s.H_out * s.W_out;
        int32_t *am = argmax + (size_t)p * s.H_out * s.W_out;
        for (int oh = 0; oh < s.H_out; oh++)
            for (int ow = 0; ow < s.W_out; ow++) {
                int h0 = oh * s.stride - s.pad, w0 = ow * s.stride - s.pad;
                float best = -INFINITY;
                int32_t bi = -1;
                for (int h = MAX(h0, 0); h < MIN(h0 + s.kh, s.H); h++)
                    for (int w = MAX(w0, 0); w < MIN(w0 + s.kw, s.W); w++) {
                        float v = in[h * s.W + w];
                        if (bi < 0 || v > best || isnan(v)) { /* NaN propagates, as in PyTorch */
                            best = v;
                            bi = h * s.W + w;
                        }
                    }
                o[oh * s.W_out + ow] = best;
                am[oh * s.W_out + ow] = bi;
            }
    }
}

void maxpool2d_backward(float *dinp, const float *dout, const int32_t *argmax, PoolShape s) {
    check_shape(s);
    int np = s.B * s.C, no = s.H_out * s.W_out;
#pragma omp parallel for schedule(static) PLANE_PARALLEL_IF(s)
    for (int p = 0; p < np; p++) {
        float *di = dinp + (size_t)p * s.H * s.W;
        const float *d = dout + (size_t)p * no;
        const int32_t *am = argmax + (size_t)p * no;
        for (int q = 0; q < no; q++) di[am[q]] += d[q];
    }
}

/* count_include_pad: PyTorch divides by the window clipped to the padded input, which with floor-mode
 * output sizes (no ceil_mode) is always the whole window: the last one ends at most at H + pad. */
static int avg_divisor(int h0, int w0, PoolShape s) {
    ASSERT(h0 + s.kh <= s.H + s.pad && w0 + s.kw <= s.W + s.pad);
    return s.kh * s.kw;
}

void avgpool2d_forward(float *out, const float *inp, PoolShape s) {
    check_shape(s);
    int np = s.B * s.C;
#pragma omp parallel for schedule(static) PLANE_PARALLEL_IF(s)
    for (int p = 0; p < np; p++) {
        const float *in = inp + (size_t)p * s.H * s.W;
        float *o = out + (size_t)p * s.H_out * s.W_out;
        for (int oh = 0; oh < s.H_out; oh++)
            for (int ow = 0; ow < s.W_out; ow++) {
                int h0 = oh * s.stride - s.pad, w0 = ow * s.stride - s.pad;
                float acc = 0;
                for (int h = MAX(h0, 0); h < MIN(h0 + s.kh, s.H); h++)
                    for (int w = MAX(w0, 0); w < MIN(w0 + s.kw, s.W); w++) acc += in[h * s.W + w];
                o[oh * s.W_out + ow] = acc / (float)avg_divisor(h0, w0, s);
            }
    }
}

void avgpool2d_backward(float *dinp, const float *dout, PoolShape s) {
    check_shape(s);
    int np = s.B * s.C;
#pragma omp parallel for schedule(static) PLANE_PARALLEL_IF(s)
    for (int p = 0; p < np; p++) {
        float *di = dinp + (size_t)p * s.H * s.W;
        const float *d = dout + (size_t)p * s.H_out * s.W_out;
        for (int oh = 0; oh < s.H_out; oh++)
            for (int ow = 0; ow < s.W_out; ow++) {
                int h0 = oh * s.stride - s.pad, w0 = ow * s.stride - s.pad;
                float g = d[oh * s.W_out + ow] / (float)avg_divisor(h0, w0, s);
                for (int h = MAX(h0, 0); h < MIN(h0 + s.kh, s.H); h++)
                    for (int w = MAX(w0, 0); w < MIN(w0 + s.kw, s.W); w++) di[h * s.W + w] += g;
            }
    }
}

void global_avgpool_forward(float *out, const float *inp, int B, int C, int HW) {
    ASSERT(B > 0 && C > 0 && HW > 0);
    int np = B * C;
#pragma omp parallel for schedule(static) if ((long)np * HW > 32768)
    for (int p = 0; p < np; p++) {
        const float *in = inp + (size_t)p * HW;
        float acc = 0;
        for (int i = 0; i < HW; i++) acc += in[i];
        out[p] = acc / (float)HW;
    }
}

void global_avgpool_backward(float *dinp, const float *dout, int B, int C, int HW) {
    ASSERT(B > 0 && C > 0 && HW > 0);
    int np = B * C;
#pragma omp parallel for schedule(static) if ((long)np * HW > 32768)
    for (int p = 0; p < np; p++) {
        float *di = dinp + (size_t)p * HW, g = dout[p] / (float)HW;
        for (int i = 0; i < HW; i++) di[i] += g;
    }
}
