/* datasets/resize.c: PIL-exact bicubic resize and channel conversion (contract in resize.h). */
#include "datasets/resize.h"

#include <math.h>
#include <string.h>

#include "core/common.h"

#define PRECISION_BITS (32 - 8 - 2) /* Pillow's fixed point for 8-bit images */

/* Keys' cubic convolution with a = -0.5 (Pillow's bicubic_filter), support 2. */
static double bicubic(double x) {
    const double a = -0.5;
    if (x < 0.0) x = -x;
    if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
    if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
    return 0.0;
}

/* Pillow's precompute_coeffs + normalize_coeffs_8bpc for in_size -> out_size over the whole input:
 * bounds[2 o] = first input index, bounds[2 o + 1] = count; kk[o * ksize + k] fixed-point weights.
 * Returns ksize. */
static int coeffs(int **bounds_out, int32_t **kk_out, int in_size, int out_size) {
    double scale = (double)in_size / out_size, filterscale = scale < 1.0 ? 1.0 : scale;
    double support = 2.0 * filterscale;
    int ksize = (int)ceil(support) * 2 + 1;
    double *k = xmalloc(sizeof(double) * (size_t)ksize);
    int32_t *kk = xcalloc((size_t)out_size * ksize, sizeof *kk);
    int *bounds = xmalloc(sizeof(int) * 2 * (size_t)out_size);
    for (int o = 0; o < out_size; o++) {
        double center = (o + 0.5) * scale, ww = 0.0, ss = 1.0 / filterscale;
        int xmin = (int)(center - support + 0.5);
        if (xmin < 0) xmin = 0;
        int xmax = (int)(center + support + 0.5);
        if (xmax > in_size) xmax = in_size;
        xmax -= xmin;
        ASSERT(xmax >= 0 && xmax <= ksize);
        for (int x = 0; x < xmax; x++) {
            double w = bicubic((x + xmin - center + 0.5) * ss);
            k[x] = w;
            ww += w;
        }
        for (int x = 0; x < xmax; x++) {
            double w = ww != 0.0 ? k[x] / ww : k[x];
            kk[(size_t)o * ksize + x] = w < 0 ? (int32_t)(-0.5 + w * (1 << PRECISION_BITS))
                                              : (int32_t)(0.5 + w * (1 << PRECISION_BITS));
        }
        bounds[2 * o] = xmin;
        bounds[2 * o + 1] = xmax;
    }
    free(k);
    *bounds_out = bounds;
    *kk_out = kk;
    return ksize;
}

static inline uint8_t clip8(int64_t v) {
    int64_t s = v >> PRECISION_BITS; /* floor, as Pillow's lookup table */
    return (uint8_t)(s < 0 ? 0 : s > 255 ? 255 : s);
}

void resize_bicubic_u8(uint8_t *dst, int dh, int dw, const uint8_t *src, int sh, int sw, int c) {
    ASSERT(dst && src && dh > 0 && dw > 0 && sh > 0 && sw > 0 && c > 0);
    const uint8_t *cur = src;
    uint8_t *tmp = NULL;
    if (dw != sw) { /* horizontal pass: (sh, sw, c) -> (sh, dw, c) */
        int *b;
        int32_t *kk;
        int ks = coeffs(&b, &kk, sw, dw);
        uint8_t *out = dh == sh ? dst : (tmp = xmalloc((size_t)sh * dw * c));
        for (int y = 0; y < sh; y++) {
            const uint8_t *row = src + (size_t)y * sw * c;
            for (int x = 0; x < dw; x++) {
                const int32_t *k = kk + (size_t)x * ks;
                int x0 = b[2 * x], n = b[2 * x + 1];
                for (int ch = 0; ch < c; ch++) {
                    int64_t s = 1 << (PRECISION_BITS - 1);
                    for (int i = 0; i < n; i++) s += (int64_t)row[(size_t)(x0 + i) * c + ch] * k[i];
                    out[((size_t)y * dw + x) * c + ch] = clip8(s);
                }
            }
        }
        free(b);
        free(kk);
        cur = out;
    }
    if (dh != sh) { /* vertical pass: (sh, dw, c) -> (dh, dw, c) */
        int *b;
        int32_t *kk;
        int ks = coeffs(&b, &kk, sh, dh);
        size_t rowlen = (size_t)dw * c;
        for (int y = 0; y < dh; y++) {
            const int32_t *k = kk + (size_t)y * ks;
            int y0 = b[2 * y], n = b[2 * y + 1];
            for (size_t j = 0; j < rowlen; j++) {
                int64_t s = 1 << (PRECISION_BITS - 1);
                for (int i = 0; i < n; i++) s += (int64_t)cur[(size_t)(y0 + i) * rowlen + j] * k[i];
                dst[(size_t)y * rowlen + j] = clip8(s);
            }
        }
        free(b);
        free(kk);
    }
    if (dw == sw && dh == sh) memcpy(dst, src, (size_t)dh * dw * c);
    free(tmp);
}

void rgb_to_gray_u8(uint8_t *dst, const uint8_t *src, long n) {
    for (long i = 0; i < n; i++) {
        const uint8_t *p = src + 3 * i;
        dst[i] = (uint8_t)((19595u * p[0] + 38470u * p[1] + 7471u * p[2] + 0x8000u) >> 16);
    }
}

void image_to_chw_float(float *dst, int C, int H, int W, const uint8_t *src, int h, int w, int c) {
    size_t n = (size_t)C * H * W;
    uint8_t *b = xmalloc(n);
    image_to_chw_u8(b, C, H, W, src, h, w, c);
    const float inv = 1.0f / 255.0f;
    for (size_t p = 0; p < n; p++) dst[p] = b[p] * inv;
    free(b);
}

void image_to_chw_u8(uint8_t *dst, int C, int H, int W, const uint8_t *src, int h, int w, int c) {
    ASSERT((C == 1 || C == 3) && (c == 1 || c == 3) && H > 0 && W > 0 && h > 0 && w > 0);
    const uint8_t *in = src;
    uint8_t *gray = NULL;
    if (C == 1 && c == 3) { /* to gray first, then one plane to resize */
        gray = xmalloc((size_t)h * w);
        rgb_to_gray_u8(gray, src, (long)h * w);
        in = gray;
        c = 1;
    }
    uint8_t *rs = xmalloc((size_t)H * W * c);
    resize_bicubic_u8(rs, H, W, in, h, w, c);
    size_t plane = (size_t)H * W;
    for (int ch = 0; ch < C; ch++) {
        int from = c == 1 ? 0 : ch; /* gray -> RGB repeats the plane */
        for (size_t p = 0; p < plane; p++) dst[ch * plane + p] = rs[p * c + from];
    }
    free(rs);
    free(gray);
}
