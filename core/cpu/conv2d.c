/* core/cpu/conv2d.c: im2col + OpenBLAS sgemm, one image at a time.
 * Threads: with at least as many images as threads (and enough work), each thread takes whole images with its
 * own im2col buffer and runs its GEMMs on one thread, with no synchronisation; otherwise (B=1 inference, tiny
 * layers) the images run in order and the parallelism comes from the im2col/col2im loops and BLAS. */
#include "conv2d.h"

#include <cblas.h>
#include <omp.h>
#include <string.h>

#include "core/common.h"

ConvShape conv2d_shape(int B, int C_in, int H, int W, int C_out, int kh, int kw, int stride, int pad) {
    ConvShape s = {.B = B, .C_in = C_in, .H = H, .W = W, .C_out = C_out, .kh = kh, .kw = kw,
                   .stride = stride, .pad = pad};
    s.H_out = (H + 2 * pad - kh) / stride + 1;
    s.W_out = (W + 2 * pad - kw) / stride + 1;
    return s;
}

static void check_shape(ConvShape s) {
    ASSERT(s.B > 0 && s.C_in > 0 && s.H > 0 && s.W > 0 && s.C_out > 0 && s.kh > 0 && s.kw > 0);
    ASSERT(s.stride > 0 && s.pad >= 0);
    ASSERTF(s.H_out == (s.H + 2 * s.pad - s.kh) / s.stride + 1 && s.W_out == (s.W + 2 * s.pad - s.kw) / s.stride + 1
                && s.H_out > 0 && s.W_out > 0,
            "conv2d: bad output size %dx%d for input %dx%d k %dx%d stride %d pad %d", s.H_out, s.W_out, s.H, s.W,
            s.kh, s.kw, s.stride, s.pad);
}

/* The batch-parallel GEMMs must each run on one thread. OpenBLAS's OpenMP build does that by itself inside a
 * parallel region; its pthreads build would start its own threads from every worker (oversubscription, and
 * the callers queue on its one thread pool: 3x slower measured on 2 cores), so for the duration of the
 * region we set it to one thread. Returns the count to restore, 0 for nothing to restore. */
static int blas_single_begin(int slots) {
    if (slots <= 1 || openblas_get_parallel() != 1) return 0;
    int n = openblas_get_num_threads();
    if (n <= 1) return 0;
    openblas_set_num_threads(1);
    return n;
}
static void blas_single_end(int n) {
    if (n) openblas_set_num_threads(n);
}

/* Worker slots = threads that take whole images; 1 means "images in order, parallel inside". Below about a
 * million multiply-adds a parallel region costs more than it saves (and far more on a busy machine, where
 * the barrier waits for a descheduled thread). */
static int n_slots(ConvShape s) {
    int t = omp_get_max_threads();
    double macs = (double)s.B * s.C_out * s.C_in * s.kh * s.kw * s.H_out * s.W_out;
    return (t > 1 && s.B >= t && macs >= (double)(1 << 20)) ? t : 1;
}

/* A 1x1 stride-1 unpadded conv is a plain GEMM on the image itself: no im2col needed. */
static int is_pointwise(ConvShape s) { return s.kh == 1 && s.kw == 1 && s.stride == 1 && s.pad == 0; }

size_t conv2d_scratch_floats(ConvShape s) {
    size_t K = (size_t)s.C_in * s.kh * s.kw, HWo = (size_t)s.H_out * s.W_out;
    size_t slots = (size_t)n_slots(s);
    return slots * K * HWo + (slots - 1) * (size_t)s.C_out * K;
}

/* col (K, H_out*W_out), row r = (ci, i, j) in weight order; zero where the window reads padding. */
static void im2col(float *col, const float *img, ConvShape s) {
    int K = s.C_in * s.kh * s.kw, HWo = s.H_out * s.W_out;
#pragma omp parallel for schedule(static) if (!omp_in_parallel() && (long)K * HWo > 32768)
    for (int r = 0; r < K; r++) {
        int c = r / (s.kh * s.kw), i = (r / s.kw) % s.kh, j = r % s.kw;
        const float *plane = img + (size_t)c * s.H * s.W;
        float *dst = col + (size_t)r * HWo;
        for (int oh = 0; oh < s.H_out; oh++) {
            int ih = oh * s.stride - s.pad + i;
            float *d = dst + (size_t)oh * s.W_out;
            if (ih < 0 || ih >= s.H) {
                memset(d, 0, (size_t)s.W_out * sizeof(float));
                continue;
            }
            const float *row = plane + (size_t)ih * s.W;
            for (int ow = 0; ow < s.W_out; ow++) {
                int iw = ow * s.stride - s.pad + j;
                d[ow] = (iw >= 0 && iw < s.W) ? row[iw] : 0.0f;
            }
        }
    }
}

/* img (C_in,H,W) += the transpose of im2col applied to col. Parallel over channels: their planes are disjoint. */
static void col2im_add(float *img, const float *col, ConvShape s) {
    int HWo = s.H_out * s.W_out;
#pragma omp parallel for schedule(static) if (!omp_in_parallel() && (long)s.C_in * s.kh * s.kw * HWo > 32768)
    for (int c = 0; c < s.C_in; c++) {
        float *plane = img + (size_t)c * s.H * s.W;
        for (int i = 0; i < s.kh; i++)
            for (int j = 0; j < s.kw; j++) {
                const float *src = col + (size_t)((c * s.kh + i) * s.kw + j) * HWo;
                for (int oh = 0; oh < s.H_out; oh++) {
                    int ih = oh * s.stride - s.pad + i;
                    if (ih < 0 || ih >= s.H) continue;
                    float *row = plane + (size_t)ih * s.W;
                    const float *sr = src + (size_t)oh * s.W_out;
                    for (int ow = 0; ow < s.W_out; ow++) {
                        int iw = ow * s.stride - s.pad + j;
                        if (iw >= 0 && iw < s.W) row[iw] += sr[ow];
                    }
                }
            }
    }
}

static void forward_image(float *out, float *colbuf, const float *img, const float *weight, const float *bias,
                          ConvShape s) {
    int K = s.C_in * s.kh * s.kw, HWo = s.H_out * s.W_out;
    const float *col = img;
    if (!is_pointwise(s)) {
        im2col(colbuf, img, s);
        col = colbuf;
    }
    // out (C_out,HWo) = W (C_out,K) @ col (K,HWo)
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, s.C_out, HWo, K, 1.0f, weight, K, col, HWo, 0.0f, out, HWo);
    if (bias)
        for (int co = 0; co < s.C_out; co++) {
            float *o = out + (size_t)co * HWo, bv = bias[co];
            for (int p = 0; p < HWo; p++) o[p] += bv;
        }
}

void conv2d_forward(float *out, float *col_scratch, const float *inp, const float *weight, const float *bias,
                    ConvShape s) {
    check_shape(s);
    size_t K = (size_t)s.C_in * s.kh * s.kw, HWo = (size_t)s.H_out * s.W_out;
    size_t in_sz = (size_t)s.C_in * s.H * s.W, out_sz = (size_t)s.C_out * HWo;
    int slots = n_slots(s), blas_threads = blas_single_begin(slots);
#pragma omp parallel num_threads(slots) if (slots > 1)
    {
        float *col = col_scratch + (size_t)omp_get_thread_num() * K * HWo;
#pragma omp for schedule(static)
        for (int b = 0; b < s.B; b++) forward_image(out + b * out_sz, col, inp + b * in_sz, weight, bias, s);
    }
    blas_single_end(blas_threads);
}

/* One image's dW (+= dout_b @ col^T) and dinp (+= col2im(W^T @ dout_b)); colbuf is reused for both. */
static void backward_image(float *dimg, float *dw, float *colbuf, const float *dout, const float *img,
                           const float *weight, ConvShape s) {
    int K = s.C_in * s.kh * s.kw, HWo = s.H_out * s.W_out;
    int pw = is_pointwise(s);
    if (dw) {
        const float *col = img;
        if (!pw) {
            im2col(colbuf, img, s);
            col = colbuf;
        }
        // dW (C_out,K) += dout (C_out,HWo) @ col^T (HWo,K)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, s.C_out, K, HWo, 1.0f, dout, HWo, col, HWo, 1.0f, dw, K);
    }
    if (dimg) {
        // dcol (K,HWo) = W^T (K,C_out) @ dout (C_out,HWo); pointwise: straight into dimg with beta 1
        float *dcol = pw ? dimg : colbuf;
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, K, HWo, s.C_out, 1.0f, weight, K, dout, HWo,
                    pw ? 1.0f : 0.0f, dcol, HWo);
        if (!pw) col2im_add(dimg, colbuf, s);
    }
}

void conv2d_backward(float *dinp, float *dweight, float *dbias, float *col_scratch, const float *dout,
                     const float *inp, const float *weight, ConvShape s) {
    check_shape(s);
    size_t K = (size_t)s.C_in * s.kh * s.kw, HWo = (size_t)s.H_out * s.W_out;
    size_t in_sz = (size_t)s.C_in * s.H * s.W, out_sz = (size_t)s.C_out * HWo, wsz = (size_t)s.C_out * K;

    if (dbias) {
#pragma omp parallel for schedule(static) if ((long)s.B * out_sz > 65536)
        for (int co = 0; co < s.C_out; co++) {
            double acc = 0;
            for (int b = 0; b < s.B; b++) {
                const float *d = dout + b * out_sz + co * HWo;
                float part = 0;
                for (size_t p = 0; p < HWo; p++) part += d[p];
                acc += part;
            }
            dbias[co] += (float)acc;
        }
    }
    if (!dinp && !dweight) return;

    int slots = n_slots(s);
    /* Threads other than 0 sum their images' dW into private partials, reduced below in a fixed order
     * (deterministic for a given thread count). */
    float *partials = col_scratch + (size_t)slots * K * HWo;
    if (dweight && slots > 1) memset(partials, 0, (size_t)(slots - 1) * wsz * sizeof(float));
    int blas_threads = blas_single_begin(slots);
#pragma omp parallel num_threads(slots) if (slots > 1)
    {
        int t = omp_get_thread_num();
        float *col = col_scratch + (size_t)t * K * HWo;
        float *dw = !dweight ? NULL : t == 0 ? dweight : partials + (size_t)(t - 1) * wsz;
#pragma omp for schedule(static)
        for (int b = 0; b < s.B; b++)
            backward_image(dinp ? dinp + b * in_sz : NULL, dw, col, dout + b * out_sz, inp + b * in_sz, weight, s);
    }
    blas_single_end(blas_threads);
    if (dweight && slots > 1) {
#pragma omp parallel for schedule(static) if (wsz > 65536)
        for (size_t i = 0; i < wsz; i++) {
            float acc = 0;
            for (int t = 0; t < slots - 1; t++) acc += partials[(size_t)t * wsz + i];
            dweight[i] += acc;
        }
    }
}
