/* tests/test_cnn.c: the CNN layers (core/cpu/{conv2d,pool2d,batchnorm,dropout,relu}) and the ResNet/VGG
 * backbones (core/cnn). Run one check by name: test_cnn grad_conv2d; every ctest entry is one name. */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "core/arena.h"
#include "core/cnn.h"
#include "core/cpu/batchnorm.h"
#include "core/cpu/conv2d.h"
#include "core/cpu/dropout.h"
#include "core/cpu/pool2d.h"
#include "core/cpu/relu.h"
#include "core/rng.h"
#include "gradcheck.h"
#include "testlib.h"

static float *zeros(size_t n) { return calloc(n, sizeof(float)); }

/* ---- conv2d ------------------------------------------------------------------------------------------- */

static const ConvShape CONV_CASES[] = {
    /* B  Cin H  W  Cout kh kw stride pad */
    {2, 3, 6, 6, 4, 3, 3, 1, 1, 0, 0}, /* 3x3 pad 1 stride 1 */
    {2, 3, 7, 7, 5, 3, 3, 2, 1, 0, 0}, /* 3x3 stride 2 */
    {2, 4, 5, 5, 3, 1, 1, 1, 0, 0, 0}, /* 1x1: the pointwise path, no im2col */
    {3, 4, 6, 6, 3, 1, 1, 2, 0, 0, 0}, /* 1x1 stride 2: a ResNet downsample */
    {1, 2, 8, 8, 3, 5, 5, 1, 2, 0, 0}, /* 5x5 pad 2 */
    {3, 2, 5, 9, 4, 3, 3, 1, 1, 0, 0}, /* non-square input */
    {2, 2, 6, 7, 3, 3, 1, 2, 1, 0, 0}, /* non-square kernel */
    {4, 8, 16, 16, 16, 3, 3, 1, 1, 0, 0}, /* big enough (1.2M MACs) for images in parallel */
};

static ConvShape conv_case(int i) {
    ConvShape c = CONV_CASES[i];
    return conv2d_shape(c.B, c.C_in, c.H, c.W, c.C_out, c.kh, c.kw, c.stride, c.pad);
}

static size_t conv_in_n(ConvShape s) { return (size_t)s.B * s.C_in * s.H * s.W; }
static size_t conv_out_n(ConvShape s) { return (size_t)s.B * s.C_out * s.H_out * s.W_out; }
static size_t conv_w_n(ConvShape s) { return (size_t)s.C_out * s.C_in * s.kh * s.kw; }

/* The definition, in double, as the reference for the im2col path. */
static void conv2d_reference(double *out, const float *inp, const float *w, const float *bias, ConvShape s) {
    for (int b = 0; b < s.B; b++)
        for (int co = 0; co < s.C_out; co++)
            for (int oh = 0; oh < s.H_out; oh++)
                for (int ow = 0; ow < s.W_out; ow++) {
                    double acc = bias ? bias[co] : 0.0;
                    for (int ci = 0; ci < s.C_in; ci++)
                        for (int i = 0; i < s.kh; i++)
                            for (int j = 0; j < s.kw; j++) {
                                int ih = oh * s.stride - s.pad + i, iw = ow * s.stride - s.pad + j;
                                if (ih < 0 || ih >= s.H || iw < 0 || iw >= s.W) continue;
                                acc += (double)w[((co * s.C_in + ci) * s.kh + i) * s.kw + j] *
                                       inp[((b * s.C_in + ci) * s.H + ih) * s.W + iw];
                            }
                    out[((b * s.C_out + co) * s.H_out + oh) * s.W_out + ow] = acc;
                }
}

static void test_conv2d_direct(void) {
    for (int c = 0; c < (int)ARRAY_LEN(CONV_CASES); c++) {
        ConvShape s = conv_case(c);
        float *inp = gc_filled(conv_in_n(s), -1, 1, 1), *w = gc_filled(conv_w_n(s), -1, 1, 2);
        float *bias = gc_filled((size_t)s.C_out, -1, 1, 3), *out = zeros(conv_out_n(s));
        float *scratch = malloc(conv2d_scratch_floats(s) * sizeof(float));
        double *ref = malloc(conv_out_n(s) * sizeof(double));
        for (int with_bias = 0; with_bias < 2; with_bias++) {
            conv2d_forward(out, scratch, inp, w, with_bias ? bias : NULL, s);
            conv2d_reference(ref, inp, w, with_bias ? bias : NULL, s);
            double worst = 0;
            for (size_t i = 0; i < conv_out_n(s); i++) worst = fmax(worst, fabs(out[i] - ref[i]));
            CHECK_MSG(worst < 1e-5, "case %d bias %d: max |im2col - direct| = %g", c, with_bias, worst);
        }
        free(inp), free(w), free(bias), free(out), free(scratch), free(ref);
    }
}

typedef struct {
    ConvShape s;
    float *inp, *w, *bias, *out, *r, *scratch;
} ConvCtx;

static double conv_loss(void *p) {
    ConvCtx *c = p;
    conv2d_forward(c->out, c->scratch, c->inp, c->w, c->bias, c->s);
    return gc_dot(c->out, c->r, conv_out_n(c->s));
}

/* Max |a - b| over n. */
static double max_abs_diff(const float *a, const float *b, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) m = fmax(m, fabs((double)a[i] - b[i]));
    return m;
}

static void test_grad_conv2d(void) {
    for (int k = 0; k < (int)ARRAY_LEN(CONV_CASES); k++) {
        ConvShape s = conv_case(k);
        size_t ni = conv_in_n(s), nw = conv_w_n(s), no = conv_out_n(s);
        ConvCtx c = {s, gc_filled(ni, -1, 1, 10 + k), gc_filled(nw, -1, 1, 20 + k), gc_filled((size_t)s.C_out, -1, 1, 30 + k),
                     zeros(no), gc_filled(no, -1, 1, 40 + k), malloc(conv2d_scratch_floats(s) * sizeof(float))};
        float *di = zeros(ni), *dw = zeros(nw), *db = zeros((size_t)s.C_out);
        conv2d_backward(di, dw, db, c.scratch, c.r, c.inp, c.w, s);
        char label[64];
        snprintf(label, sizeof label, "conv case %d dinp", k);
        CHECK(gradcheck(label, conv_loss, &c, c.inp, di, ni, 1e-2f, 64) == 0);
        snprintf(label, sizeof label, "conv case %d dweight", k);
        CHECK(gradcheck(label, conv_loss, &c, c.w, dw, nw, 1e-2f, 64) == 0);
        snprintf(label, sizeof label, "conv case %d dbias", k);
        CHECK(gradcheck(label, conv_loss, &c, c.bias, db, (size_t)s.C_out, 1e-2f, 64) == 0);

        /* Accumulation: a second backward into the same buffers doubles them. */
        float *di2 = malloc(ni * sizeof(float)), *dw2 = malloc(nw * sizeof(float));
        memcpy(di2, di, ni * sizeof(float));
        memcpy(dw2, dw, nw * sizeof(float));
        conv2d_backward(di2, dw2, NULL, c.scratch, c.r, c.inp, c.w, s);
        for (size_t i = 0; i < ni; i++) di2[i] -= 2 * di[i];
        for (size_t i = 0; i < nw; i++) dw2[i] -= 2 * dw[i];
        double e1 = 0, e2 = 0;
        for (size_t i = 0; i < ni; i++) e1 = fmax(e1, fabs(di2[i]));
        for (size_t i = 0; i < nw; i++) e2 = fmax(e2, fabs(dw2[i]));
        CHECK_MSG(e1 < 1e-5 && e2 < 1e-4, "case %d: backward does not accumulate (%g, %g)", k, e1, e2);

        /* A frozen weight (dweight NULL) gives the same input gradient. */
        float *di3 = zeros(ni);
        conv2d_backward(di3, NULL, NULL, c.scratch, c.r, c.inp, c.w, s);
        CHECK_MSG(max_abs_diff(di3, di, ni) < 1e-6, "case %d: dinp differs with dweight NULL", k);

        /* Thread count changes the schedule (images per thread, weight-gradient partials), not the result. */
        int nt = omp_get_max_threads();
        float *o1 = zeros(no), *dw1 = zeros(nw), *di1 = zeros(ni);
        omp_set_num_threads(1);
        float *sc1 = malloc(conv2d_scratch_floats(s) * sizeof(float));
        conv2d_forward(o1, sc1, c.inp, c.w, c.bias, s);
        conv2d_backward(di1, dw1, NULL, sc1, c.r, c.inp, c.w, s);
        omp_set_num_threads(3); /* the last case then runs its images on 3 threads, with dW partials */
        float *o3 = zeros(no), *dw3 = zeros(nw), *di3t = zeros(ni);
        float *sc3 = malloc(conv2d_scratch_floats(s) * sizeof(float));
        conv2d_forward(o3, sc3, c.inp, c.w, c.bias, s);
        conv2d_backward(di3t, dw3, NULL, sc3, c.r, c.inp, c.w, s);
        omp_set_num_threads(nt);
        double scale = 1; /* float sums in another order: compare relative to the largest value */
        for (size_t i = 0; i < nw; i++) scale = fmax(scale, fabs(dw1[i]));
        for (size_t i = 0; i < no; i++) scale = fmax(scale, fabs(o1[i]));
        CHECK_MSG(max_abs_diff(o1, o3, no) < 1e-6 * scale && max_abs_diff(dw1, dw3, nw) < 1e-6 * scale &&
                      max_abs_diff(di1, di3t, ni) < 1e-6 * scale,
                  "case %d: results depend on the thread count", k);

        free(c.inp), free(c.w), free(c.bias), free(c.out), free(c.r), free(c.scratch);
        free(di), free(dw), free(db), free(di2), free(dw2), free(di3), free(o1), free(dw1), free(di1), free(sc1);
        free(o3), free(dw3), free(di3t), free(sc3);
    }
}

/* ---- pooling ------------------------------------------------------------------------------------------ */

typedef struct {
    PoolShape s;
    int kind; /* 0 max, 1 avg, 2 global avg */
    float *inp, *out, *r;
    int32_t *argmax;
} PoolCtx;

static size_t pool_out_n(const PoolCtx *c) {
    return c->kind == 2 ? (size_t)c->s.B * c->s.C : (size_t)c->s.B * c->s.C * c->s.H_out * c->s.W_out;
}

static double pool_loss(void *p) {
    PoolCtx *c = p;
    if (c->kind == 0) maxpool2d_forward(c->out, c->argmax, c->inp, c->s);
    else if (c->kind == 1) avgpool2d_forward(c->out, c->inp, c->s);
    else global_avgpool_forward(c->out, c->inp, c->s.B, c->s.C, c->s.H * c->s.W);
    return gc_dot(c->out, c->r, pool_out_n(c));
}

static void pool_gradcheck(const char *label, int kind, PoolShape s, unsigned seed) {
    size_t ni = (size_t)s.B * s.C * s.H * s.W;
    PoolCtx c = {s, kind, gc_filled(ni, -1, 1, seed), NULL, NULL, NULL};
    size_t no = pool_out_n(&c);
    c.out = zeros(no);
    c.r = gc_filled(no, -1, 1, seed + 1);
    c.argmax = malloc(no * sizeof(int32_t));
    pool_loss(&c);
    float *di = zeros(ni);
    if (kind == 0) maxpool2d_backward(di, c.r, c.argmax, s);
    else if (kind == 1) avgpool2d_backward(di, c.r, s);
    else global_avgpool_backward(di, c.r, s.B, s.C, s.H * s.W);
    /* eps well below the gaps between random values, so no window changes its max */
    CHECK(gradcheck(label, pool_loss, &c, c.inp, di, ni, 1e-3f, 200) == 0);
    free(c.inp), free(c.out), free(c.r), free(c.argmax), free(di);
}

static void test_grad_maxpool2d(void) {
    pool_gradcheck("maxpool 2x2 s2", 0, pool2d_shape(2, 3, 6, 6, 2, 2, 2, 0), 1);
    pool_gradcheck("maxpool 3x3 s2 p1", 0, pool2d_shape(2, 2, 7, 5, 3, 3, 2, 1), 2);
    pool_gradcheck("maxpool 3x3 s1 (overlapping)", 0, pool2d_shape(1, 2, 5, 5, 3, 3, 1, 0), 3);
    /* Forward by hand: argmax is the flat index in the plane, ties go to the first. */
    float x[16] = {1, 2, 0, 0, 3, 4, 0, 0, 5, 5, 7, 1, 5, 5, 2, 7};
    float y[4];
    int32_t am[4];
    maxpool2d_forward(y, am, x, pool2d_shape(1, 1, 4, 4, 2, 2, 2, 0));
    CHECK(y[0] == 4 && y[1] == 0 && y[2] == 5 && y[3] == 7);
    CHECK(am[0] == 5 && am[1] == 2 && am[2] == 8 && am[3] == 10);
}

static void test_grad_avgpool2d(void) {
    pool_gradcheck("avgpool 2x2 s2", 1, pool2d_shape(2, 3, 6, 6, 2, 2, 2, 0), 4);
    pool_gradcheck("avgpool 3x3 s2 p1", 1, pool2d_shape(2, 2, 7, 5, 3, 3, 2, 1), 5);
    pool_gradcheck("avgpool 3x3 s1 p1", 1, pool2d_shape(1, 2, 4, 6, 3, 3, 1, 1), 6);
    /* count_include_pad: on ones, a 3x3 pad-1 corner window holds 4 real values and divides by 9. */
    float x[25], y[16];
    for (int i = 0; i < 25; i++) x[i] = 1;
    avgpool2d_forward(y, x, pool2d_shape(1, 1, 4, 4, 3, 3, 1, 1));
    CHECK_NEAR(y[0], 4.0 / 9, 1e-6);
    CHECK_NEAR(y[1], 6.0 / 9, 1e-6);
    CHECK_NEAR(y[5], 1.0, 1e-6);
    avgpool2d_forward(y, x, pool2d_shape(1, 1, 5, 5, 3, 3, 3, 1)); /* stride 3: windows at -1 and 2 */
    CHECK_NEAR(y[0], 4.0 / 9, 1e-6);
    CHECK_NEAR(y[1], 6.0 / 9, 1e-6);
    CHECK_NEAR(y[2], 6.0 / 9, 1e-6);
    CHECK_NEAR(y[3], 1.0, 1e-6);
}

static void test_grad_global_avgpool(void) {
    pool_gradcheck("global avgpool", 2, pool2d_shape(3, 4, 5, 3, 1, 1, 1, 0), 7);
    float x[6] = {1, 2, 3, 4, 5, 6}, y[2];
    global_avgpool_forward(y, x, 1, 2, 3);
    CHECK_NEAR(y[0], 2.0, 1e-6);
    CHECK_NEAR(y[1], 5.0, 1e-6);
}

/* ---- batchnorm ---------------------------------------------------------------------------------------- */

typedef struct {
    BatchNormShape s;
    int train;
    float *inp, *w, *b, *rm, *rv, *out, *mean, *rstd, *r;
} BnCtx;

static size_t bn_n(BatchNormShape s) { return (size_t)s.B * s.C * s.HW; }

static double bn_loss(void *p) {
    BnCtx *c = p;
    if (c->train) batchnorm_forward_train(c->out, c->mean, c->rstd, NULL, NULL, c->inp, c->w, c->b, c->s);
    else batchnorm_forward_frozen(c->out, c->mean, c->rstd, c->inp, c->w, c->b, c->rm, c->rv, c->s);
    return gc_dot(c->out, c->r, bn_n(c->s));
}

static void bn_gradcheck(int train) {
    BatchNormShape s = batchnorm_shape(3, 4, 5);
    size_t n = bn_n(s), C = (size_t)s.C;
    BnCtx c = {s, train, gc_filled(n, -2, 3, 1), gc_filled(C, 0.5f, 1.5f, 2), gc_filled(C, -1, 1, 3), gc_filled(C, -1, 1, 4),
               gc_filled(C, 0.5f, 2, 5), zeros(n), zeros(C), zeros(C), gc_filled(n, -1, 1, 6)};
    bn_loss(&c);
    float *di = zeros(n), *dw = zeros(C), *db = zeros(C);
    batchnorm_backward(di, dw, db, c.r, c.inp, c.w, c.mean, c.rstd, train, s);
    const char *mode = train ? "train" : "frozen";
    char label[64];
    snprintf(label, sizeof label, "batchnorm %s dinp", mode);
    CHECK(gradcheck(label, bn_loss, &c, c.inp, di, n, 1e-2f, 60) == 0);
    snprintf(label, sizeof label, "batchnorm %s dweight", mode);
    CHECK(gradcheck(label, bn_loss, &c, c.w, dw, C, 1e-2f, 60) == 0);
    snprintf(label, sizeof label, "batchnorm %s dbias", mode);
    CHECK(gradcheck(label, bn_loss, &c, c.b, db, C, 1e-2f, 60) == 0);
    /* Input gradient alone (frozen weight and bias) is the same. */
    float *di2 = zeros(n);
    batchnorm_backward(di2, NULL, NULL, c.r, c.inp, c.w, c.mean, c.rstd, train, s);
    CHECK(max_abs_diff(di, di2, n) < 1e-6);
    free(c.inp), free(c.w), free(c.b), free(c.rm), free(c.rv), free(c.out), free(c.mean), free(c.rstd), free(c.r);
    free(di), free(dw), free(db), free(di2);
}

static void test_grad_batchnorm_train(void) { bn_gradcheck(1); }
static void test_grad_batchnorm_frozen(void) { bn_gradcheck(0); }

/* PyTorch: running = (1 - 0.1) running + 0.1 stat, with the unbiased variance; normalization uses biased. */
static void test_batchnorm_running_stats(void) {
    BatchNormShape s = batchnorm_shape(2, 3, 4);
    size_t n = bn_n(s);
    float *x = gc_filled(n, -1, 3, 11), *out = zeros(n), mean[3], rstd[3];
    float rm[3] = {0.5f, -1, 0}, rv[3] = {2, 0.5f, 1}, w[3] = {1, 2, 3}, b[3] = {0, 1, -1};
    double erm[3], erv[3];
    memcpy(out, x, n * sizeof(float));
    for (int step = 0; step < 2; step++) {
        for (int c = 0; c < 3; c++) {
            double sum = 0, sq = 0;
            for (int i = 0; i < s.B; i++)
                for (int j = 0; j < s.HW; j++) sum += x[(i * s.C + c) * s.HW + j];
            double m = sum / 8;
            for (int i = 0; i < s.B; i++)
                for (int j = 0; j < s.HW; j++) sq += pow(x[(i * s.C + c) * s.HW + j] - m, 2);
            erm[c] = 0.9 * (step ? erm[c] : rm[c]) + 0.1 * m;
            erv[c] = 0.9 * (step ? erv[c] : rv[c]) + 0.1 * sq / 7;
        }
        batchnorm_forward_train(out, mean, rstd, rm, rv, x, w, b, s);
        for (int c = 0; c < 3; c++) {
            CHECK_NEAR(rm[c], erm[c], 1e-6);
            CHECK_NEAR(rv[c], erv[c], 1e-5);
        }
    }
    /* The output uses the biased variance: each channel of (out - b)/w has mean 0 and mean square var/(var+eps). */
    for (int c = 0; c < 3; c++) {
        double s1 = 0, s2 = 0;
        for (int i = 0; i < s.B; i++)
            for (int j = 0; j < s.HW; j++) {
                double z = (out[(i * s.C + c) * s.HW + j] - b[c]) / w[c];
                s1 += z, s2 += z * z;
            }
        CHECK_NEAR(s1 / 8, 0.0, 1e-5);
        CHECK_NEAR(s2 / 8, 1.0, 1e-4);
    }
    /* Frozen mode reads the running statistics and leaves them alone. */
    float rm0 = rm[0], rv0 = rv[0];
    batchnorm_forward_frozen(out, mean, rstd, x, w, b, rm, rv, s);
    CHECK(rm[0] == rm0 && rv[0] == rv0);
    CHECK_NEAR(out[0], (x[0] - rm[0]) / sqrt(rv[0] + 1e-5) * w[0] + b[0], 1e-5);
    free(x), free(out);
}

/* ---- dropout, relu ------------------------------------------------------------------------------------ */

typedef struct {
    float *inp, *out, *r;
    size_t n;
    float p;
} DropCtx;

enum { DROP_SEED = 1234 };
#define DROP_STREAM rng_stream("dropout", 3, 7)

static double drop_loss(void *p) {
    DropCtx *c = p;
    dropout_forward(c->out, NULL, c->inp, c->n, c->p, DROP_SEED, DROP_STREAM);
    return gc_dot(c->out, c->r, c->n);
}

static void test_grad_dropout(void) {
    size_t n = 1001; /* not a multiple of 4: the last Philox block is partial */
    DropCtx c = {gc_filled(n, -1, 1, 1), zeros(n), gc_filled(n, -1, 1, 2), n, 0.3f};
    uint8_t *mask = malloc(n);
    dropout_forward(c.out, mask, c.inp, n, c.p, DROP_SEED, DROP_STREAM);
    size_t kept = 0;
    int agree = 1;
    for (size_t i = 0; i < n; i++) {
        kept += mask[i];
        agree &= mask[i] == (rng_uniform(DROP_SEED, DROP_STREAM, i) >= c.p);
        agree &= fabsf(c.out[i] - (mask[i] ? c.inp[i] / (1 - c.p) : 0.0f)) <= 1e-6f;
    }
    CHECK_MSG(agree, "mask is not rng_uniform(seed, stream, i) >= p, or out is not x/(1-p) on kept elements");
    CHECK_MSG(fabs((double)kept / n - 0.7) < 0.05, "kept fraction %g, expected about 0.7", (double)kept / n);

    float *dm = zeros(n), *dr = zeros(n);
    dropout_backward(dm, c.r, mask, n, c.p, DROP_SEED, DROP_STREAM);
    dropout_backward(dr, c.r, NULL, n, c.p, DROP_SEED, DROP_STREAM); /* recomputed mask */
    CHECK(max_abs_diff(dm, dr, n) == 0);
    CHECK(gradcheck("dropout", drop_loss, &c, c.inp, dm, n, 1e-2f, 200) == 0);

    /* Thread-count independent, reproducible; another stream gives another mask. */
    size_t big = 300000;
    float *x = gc_filled(big, -1, 1, 3), *y1 = zeros(big), *y2 = zeros(big), *y3 = zeros(big);
    int nt = omp_get_max_threads();
    omp_set_num_threads(1);
    dropout_forward(y1, NULL, x, big, 0.5f, 9, 1);
    omp_set_num_threads(3);
    dropout_forward(y2, NULL, x, big, 0.5f, 9, 1);
    dropout_forward(y3, NULL, x, big, 0.5f, 9, 2);
    omp_set_num_threads(nt);
    CHECK(memcmp(y1, y2, big * sizeof(float)) == 0);
    CHECK(memcmp(y1, y3, big * sizeof(float)) != 0);

    /* p = 0 is the identity, p = 1 drops everything; in place works. */
    memcpy(y1, x, big * sizeof(float));
    dropout_forward(y1, NULL, y1, big, 0.0f, 9, 1);
    CHECK(memcmp(y1, x, big * sizeof(float)) == 0);
    dropout_forward(y1, NULL, x, n, 1.0f, 9, 1);
    CHECK(y1[0] == 0 && y1[n / 2] == 0 && y1[n - 1] == 0);
    free(c.inp), free(c.out), free(c.r), free(mask), free(dm), free(dr), free(x), free(y1), free(y2), free(y3);
}

typedef struct {
    float *inp, *out, *r;
    size_t n;
} ReluCtx;

static double relu_loss(void *p) {
    ReluCtx *c = p;
    relu_forward(c->out, c->inp, c->n);
    return gc_dot(c->out, c->r, c->n);
}

static void test_grad_relu(void) {
    size_t n = 500;
    ReluCtx c = {gc_filled(n, -1, 1, 1), zeros(n), gc_filled(n, -1, 1, 2), n};
    for (size_t i = 0; i < n; i++) /* keep inputs away from the kink so finite differences see one side */
        if (fabsf(c.inp[i]) < 0.05f) c.inp[i] = 0.05f;
    relu_loss(&c);
    float *d = zeros(n), *d2 = zeros(n);
    relu_backward(d, c.r, c.out, n);
    relu_backward(d2, c.r, c.inp, n); /* from the input or the output: same */
    CHECK(max_abs_diff(d, d2, n) == 0);
    CHECK(gradcheck("relu", relu_loss, &c, c.inp, d, n, 1e-3f, 200) == 0);
    float *y = malloc(n * sizeof(float));
    relu_loss(&c); /* c.out as of the unperturbed input */
    memcpy(y, c.inp, n * sizeof(float));
    relu_forward(y, y, n); /* in place */
    CHECK(memcmp(y, c.out, n * sizeof(float)) == 0);
    free(c.inp), free(c.out), free(c.r), free(d), free(d2), free(y);
}

/* ---- backbones ---------------------------------------------------------------------------------------- */

typedef struct {
    CnnModel m;
    Arena arena;
    float *x, *logits, *r;
    int B, train;
} CnnCtx;

static double cnn_loss(void *p) {
    CnnCtx *c = p;
    arena_reset(&c->arena);
    cnn_forward(&c->m, c->logits, c->x, c->B, c->train, &c->arena);
    return gc_dot(c->logits, c->r, (size_t)c->B * c->m.cfg.n_classes);
}

static void cnn_ctx_init(CnnCtx *c, CnnConfig cfg, int B, int train) {
    Error err;
    memset(c, 0, sizeof *c);
    ASSERTF(cnn_build(&c->m, &cfg, &err) == 0, "%s", err.msg);
    cnn_init_params(&c->m, 42);
    arena_init(&c->arena, 4096);
    size_t nx = (size_t)B * cfg.in_ch * cfg.img_h * cfg.img_w, nl = (size_t)B * cfg.n_classes;
    c->x = gc_filled(nx, -1, 1, 77);
    c->logits = zeros(nl);
    c->r = gc_filled(nl, -1, 1, 78);
    c->B = B;
    c->train = train;
}

static void cnn_ctx_free(CnnCtx *c) {
    cnn_free(&c->m);
    arena_free(&c->arena);
    free(c->x), free(c->logits), free(c->r);
}

/* Gradients of loss = sum(logits * r) into params.grad (zeroed first). */
static void cnn_grads(CnnCtx *c) {
    params_zero_grad(&c->m.params);
    cnn_loss(c);
    cnn_backward(&c->m, c->r, &c->arena);
}

/* gradcheck for a piecewise-smooth loss (ReLU, max pooling): central differences are compared as in
 * tests/gradcheck.h, but an entry whose two one-sided differences disagree (a kink within +-eps, where the
 * central difference is wrong by up to half the slope jump) is skipped instead. Returns the bad entries and
 * adds the skipped ones to *skipped. */
static int gradcheck_kinked(const char *label, GcLossFn f, void *ctx, float *x, const float *g, size_t n,
                            float eps, int max_checks, int *skipped) {
    double gmax = 0;
    for (size_t i = 0; i < n; i++) gmax = fmax(gmax, fabs(g[i]));
    double atol = 1e-3 * gmax + 1e-6, rtol = 2e-2, worst = 0;
    size_t stride = n > (size_t)max_checks ? n / (size_t)max_checks : 1;
    int bad = 0, checked = 0, skip = 0;
    for (size_t i = stride / 2; i < n; i += stride) {
        float x0 = x[i];
        double f0 = f(ctx);
        x[i] = x0 + eps;
        double fp = f(ctx);
        x[i] = x0 - eps;
        double fm = f(ctx);
        x[i] = x0;
        double num = (fp - fm) / (2.0 * eps), tol = atol + rtol * fabs(num);
        if (fabs(fp - 2 * f0 + fm) / eps > tol) {
            skip++;
            continue;
        }
        double err = fabs(num - g[i]);
        worst = fmax(worst, err);
        if (!(err <= tol)) {
            fprintf(stderr, "%s: entry %zu analytic %.6g numeric %.6g\n", label, i, g[i], num);
            bad++;
        }
        checked++;
    }
    printf("%s: max abs err %.3g, max |g| %.3g, %d checked, %d skipped at kinks, %d bad\n", label, worst, gmax,
           checked, skip, bad);
    if (gmax == 0) bad++;
    *skipped += skip;
    return bad;
}

/* Is view i a conv bias feeding a train-mode batchnorm? Its true gradient is 0 (the batch mean cancels it),
 * so a finite-difference check would only compare rounding noise. */
static int bias_before_bn(const CnnModel *m, int i) {
    const ParamView *v = &m->params.views[i];
    if (!m->cfg.batchnorm || v->ndim != 1 || i == 0 || m->params.views[i - 1].ndim != 4) return 0;
    return strstr(v->name, ".bias") != NULL;
}

static void cnn_gradcheck(const char *label, CnnConfig cfg, int train) {
    CnnCtx c;
    cnn_ctx_init(&c, cfg, 2, train);
    ParamSet *ps = &c.m.params;
    cnn_grads(&c);
    float *full = malloc(ps->n_grad * sizeof(float));
    memcpy(full, ps->grad, ps->n_grad * sizeof(float));
    long *goff_full = malloc((size_t)ps->n * sizeof(long));
    for (int i = 0; i < ps->n; i++) goff_full[i] = ps->views[i].goff;

    int checked = 0, skipped = 0;
    for (int i = 0; i < ps->n; i++) {
        ParamView *v = &ps->views[i];
        int stat = strstr(v->name, "running_") != NULL;
        CHECK_MSG(v->trainable == !stat, "%s: running statistics frozen, the rest trainable", v->name);
        if (!v->trainable) continue;
        char l[160];
        snprintf(l, sizeof l, "%s %s", label, v->name);
        if (train && bias_before_bn(&c.m, i)) {
            double g = 0;
            for (size_t j = 0; j < v->numel; j++) g = fmax(g, fabs(params_grad(ps, i)[j]));
            CHECK_MSG(g < 1e-5, "%s: gradient through a train-mode batchnorm should vanish, max %g", l, g);
            continue;
        }
        CHECK_MSG(gradcheck_kinked(l, cnn_loss, &c, params_data(ps, i), params_grad(ps, i), v->numel, 1e-3f, 12,
                                   &skipped) == 0,
                  "%s", l);
        checked += (int)MIN(v->numel, 12);
    }
    CHECK_MSG(skipped * 4 < checked, "%s: %d of %d entries skipped at kinks: the check proves little", label,
              skipped, checked);

    /* Freeze every conv weight: the remaining gradients must not change, the frozen ones must not exist. */
    int frozen = 0;
    for (int i = 0; i < ps->n; i++)
        if (ps->views[i].ndim == 4) frozen += params_set_trainable(ps, ps->views[i].name, 0);
    CHECK(frozen >= 2);
    params_alloc_grads(ps);
    cnn_grads(&c);
    for (int i = 0; i < ps->n; i++) {
        ParamView *v = &ps->views[i];
        if (v->ndim == 4) {
            CHECK(params_grad(ps, i) == NULL);
            continue;
        }
        if (!v->trainable) continue;
        double e = max_abs_diff(params_grad(ps, i), full + goff_full[i], v->numel);
        CHECK_MSG(e < 1e-6, "%s %s: gradient changed by %g when the conv weights were frozen", label, v->name, e);
    }
    free(full), free(goff_full);
    cnn_ctx_free(&c);
}

static CnnConfig tiny(CnnKind kind, int batchnorm) {
    return (CnnConfig){.kind = kind, .in_ch = 3, .img_h = 8, .img_w = 8, .n_classes = 5, .width = 4, .stages = 2,
                       .blocks_per_stage = 1, .batchnorm = batchnorm};
}

static void test_grad_cnn_resnet(void) {
    cnn_gradcheck("resnet bn train", tiny(CNN_RESNET, 1), 1);
    cnn_gradcheck("resnet bn frozen", tiny(CNN_RESNET, 1), 0);
    CnnConfig c = tiny(CNN_RESNET, 0);
    c.blocks_per_stage = 2; /* identity shortcuts too */
    c.img_w = 6;
    cnn_gradcheck("resnet no-bn", c, 1);
}

static void test_grad_cnn_vgg(void) {
    cnn_gradcheck("vgg bn train", tiny(CNN_VGG, 1), 1);
    cnn_gradcheck("vgg bn frozen", tiny(CNN_VGG, 1), 0);
    CnnConfig c = tiny(CNN_VGG, 0);
    c.blocks_per_stage = 2;
    cnn_gradcheck("vgg no-bn", c, 1);
}

/* The torchvision names and shapes, the init, and the config errors. */
static void test_cnn_build(void) {
    CnnModel m;
    Error err;
    CnnConfig rc = tiny(CNN_RESNET, 1);
    rc.stages = 3;
    CHECK(cnn_build(&m, &rc, &err) == 0);
    const char *rn[] = {"conv1.weight", "bn1.weight", "bn1.bias", "bn1.running_mean", "bn1.running_var",
                        "layer1.0.conv1.weight", "layer1.0.bn1.running_var", "layer1.0.conv2.weight",
                        "layer1.0.bn2.bias", "layer2.0.downsample.0.weight", "layer2.0.downsample.1.running_mean",
                        "layer3.0.conv2.weight", "fc.weight", "fc.bias"};
    for (size_t i = 0; i < ARRAY_LEN(rn); i++) CHECK_MSG(params_find(&m.params, rn[i]) >= 0, "missing %s", rn[i]);
    CHECK(params_find(&m.params, "layer1.0.downsample.0.weight") < 0); /* stage 1 keeps its shape */
    CHECK(params_find(&m.params, "conv1.bias") < 0);
    const ParamView *v = &m.params.views[params_find(&m.params, "layer3.0.downsample.0.weight")];
    CHECK(v->shape[0] == 16 && v->shape[1] == 8 && v->shape[2] == 1 && v->shape[3] == 1);
    v = &m.params.views[params_find(&m.params, "fc.weight")];
    CHECK(v->shape[0] == 5 && v->shape[1] == 16);
    CHECK(strcmp(m.params.views[0].name, "conv1.weight") == 0); /* state-dict order */
    cnn_free(&m);

    CnnConfig vc = tiny(CNN_VGG, 1);
    CHECK(cnn_build(&m, &vc, &err) == 0);
    /* vgg_bn modules: 0 conv, 1 bn, 2 relu, 3 maxpool, 4 conv, 5 bn, 6 relu, 7 maxpool */
    const char *vn[] = {"features.0.weight", "features.0.bias", "features.1.running_var", "features.4.weight",
                        "features.5.bias", "classifier.weight", "classifier.bias"};
    for (size_t i = 0; i < ARRAY_LEN(vn); i++) CHECK_MSG(params_find(&m.params, vn[i]) >= 0, "missing %s", vn[i]);
    v = &m.params.views[params_find(&m.params, "features.4.weight")];
    CHECK(v->ndim == 4 && v->shape[0] == 8 && v->shape[1] == 4);
    CHECK(m.params.views[params_find(&m.params, "features.5.weight")].ndim == 1);
    cnn_free(&m);
    vc.batchnorm = 0; /* vgg: 0 conv, 1 relu, 2 maxpool, 3 conv */
    CHECK(cnn_build(&m, &vc, &err) == 0);
    CHECK(params_find(&m.params, "features.3.weight") >= 0 && params_find(&m.params, "features.4.weight") < 0);
    cnn_free(&m);

    /* Init: conv std sqrt(2/fan_out), bn 1/0/0/1, linear within 1/sqrt(fan_in); reproducible by seed. */
    CnnConfig big = tiny(CNN_RESNET, 1);
    big.width = 32;
    CHECK(cnn_build(&m, &big, &err) == 0);
    cnn_init_params(&m, 5);
    int iw = params_find(&m.params, "layer1.0.conv2.weight");
    const float *w = params_data(&m.params, iw);
    double sq = 0;
    for (size_t i = 0; i < m.params.views[iw].numel; i++) sq += (double)w[i] * w[i];
    CHECK_NEAR(sqrt(sq / m.params.views[iw].numel), sqrt(2.0 / (32 * 9)), 0.03 * sqrt(2.0 / (32 * 9)));
    CHECK(params_data(&m.params, params_find(&m.params, "bn1.running_var"))[3] == 1.0f);
    CHECK(params_data(&m.params, params_find(&m.params, "bn1.weight"))[3] == 1.0f);
    int ifc = params_find(&m.params, "fc.weight");
    double mx = 0;
    for (size_t i = 0; i < m.params.views[ifc].numel; i++) mx = fmax(mx, fabs(params_data(&m.params, ifc)[i]));
    CHECK(mx <= 1 / sqrt(64.0) && mx > 0.8 / sqrt(64.0));
    float w0 = w[0];
    cnn_init_params(&m, 5);
    CHECK(w[0] == w0);
    cnn_init_params(&m, 6);
    CHECK(w[0] != w0);
    cnn_free(&m);

    CnnConfig bad = tiny(CNN_VGG, 1);
    bad.stages = 4; /* 8x8 halved 4 times */
    CHECK(cnn_build(&m, &bad, &err) == -1 && strstr(err.msg, "too small"));
    bad = tiny(CNN_RESNET, 1);
    bad.stages = 0;
    CHECK(cnn_build(&m, &bad, &err) == -1 && strstr(err.msg, "stages = 0"));
    bad = tiny(CNN_RESNET, 2);
    CHECK(cnn_build(&m, &bad, &err) == -1 && strstr(err.msg, "batchnorm"));
    bad = tiny(CNN_RESNET, 1);
    bad.kind = (CnnKind)7;
    CHECK(cnn_build(&m, &bad, &err) == -1 && strstr(err.msg, "kind"));
    cnn_free(&m); /* safe after a failed build */
}

/* From the second step on, a step with the same B takes no new memory. */
static void test_cnn_arena_steady(void) {
    for (int kind = 0; kind < 2; kind++) {
        CnnCtx c;
        cnn_ctx_init(&c, tiny(kind ? CNN_VGG : CNN_RESNET, 1), 4, 1);
        cnn_grads(&c);
        int g1 = c.arena.grows;
        size_t h1 = c.arena.high;
        CHECK(g1 > 0); /* the 4 KiB start had to grow, so the check below means something */
        for (int step = 0; step < 3; step++) cnn_grads(&c);
        CHECK_MSG(c.arena.grows == g1 && c.arena.high == h1, "arena grew after the first step: %d -> %d grows",
                  g1, c.arena.grows);
        /* Train-mode forwards moved the running statistics off their init. */
        CHECK(params_data(&c.m.params, params_find(&c.m.params, kind ? "features.1.running_var" : "bn1.running_var"))[0]
              != 1.0f);
        cnn_ctx_free(&c);
    }
}

/* ---- driver ------------------------------------------------------------------------------------------- */

static const struct {
    const char *name;
    void (*fn)(void);
} TESTS[] = {
    {"grad_conv2d", test_grad_conv2d},
    {"conv2d_direct", test_conv2d_direct},
    {"grad_maxpool2d", test_grad_maxpool2d},
    {"grad_avgpool2d", test_grad_avgpool2d},
    {"grad_global_avgpool", test_grad_global_avgpool},
    {"grad_batchnorm_train", test_grad_batchnorm_train},
    {"grad_batchnorm_frozen", test_grad_batchnorm_frozen},
    {"batchnorm_running_stats", test_batchnorm_running_stats},
    {"grad_dropout", test_grad_dropout},
    {"grad_relu", test_grad_relu},
    {"cnn_build", test_cnn_build},
    {"grad_cnn_resnet", test_grad_cnn_resnet},
    {"grad_cnn_vgg", test_grad_cnn_vgg},
    {"cnn_arena_steady", test_cnn_arena_steady},
};

int main(int argc, char **argv) {
    const char *want = argc > 1 ? argv[1] : "all";
    int ran = 0;
    for (size_t i = 0; i < ARRAY_LEN(TESTS); i++)
        if (!strcmp(want, "all") || !strcmp(want, TESTS[i].name)) {
            TESTS[i].fn();
            ran++;
        }
    if (!ran) {
        fprintf(stderr, "test_cnn: unknown test '%s'\n", want);
        return 2;
    }
    return test_finish(want);
}
