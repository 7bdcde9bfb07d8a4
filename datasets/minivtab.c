/* datasets/minivtab.c: the mini-VTAB-19 generator (contract and layout in minivtab.h; stand-ins in
 * MINIVTAB_STANDIN and docs/data.md). Images are drawn on a float RGB canvas in [0, 1] (S, S, 3) by a few
 * primitives (Fashion-MNIST items, supersampled shapes, shaded spheres, lines, textures) and saved as PNG.
 * Geometry is relative to S, so other sizes draw the same scenes. */
#include "datasets/minivtab.h"

#include <errno.h>
#include <ftw.h>
#include <math.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/rng.h"
#include "datasets/idx.h"
#include "datasets/imagefile.h"
#include "datasets/resize.h"

#define PI_F 3.14159265358979f
#define MAX_SRC 8

const char *const MINIVTAB_STANDIN[VTAB_N_TASKS] = {
    "two Fashion-MNIST items side by side; class = (left item class, right item class), 10 x 10",
    "one item over faint clutter; class = (item class, placement: 3x3 grid cell, large or medium centred), first 102 of 10 x 11",
    "texture tiled from one item; class = (item class, tiling: grid, brick, mirrored, checker, transposed), first 47 of 10 x 5",
    "centre item with 4 small items around it; class = (centre class, ring class, ring at corners / edges), first 102 of 10 x 10 x 2",
    "one large item with a coat pattern; class = (item class, coat: plain, stripes, spots, outline), first 37 of 10 x 4",
    "centre item between two cut-off distractor items; class = centre item class",
    "two items in a scene; class = (left class, right class, background layout: horizon high / low, split, vignette), first 397 of 10 x 10 x 4",
    "tissue of small dark nuclei; class = whether clusters of large nuclei (tumour) are present",
    "one of 10 procedural textures (gradient, 3 stripe directions, checker, dots, smooth noise, fine noise, rings, grid), random scale / phase / colours",
    "two textures on either side of a random line; class = the unordered pair of texture types, C(10,2) = 45",
    "retina disc with vessels; class = lesion-count grade 0..4 (0, 2-4, 5-9, 10-16, 17-26 spots)",
    "3..10 shapes on a floor; class = count - 3",
    "2..5 shapes in perspective; class = depth bin of the nearest one (6 bins over depth 1..4)",
    "corridor with one object; class = (kind: sphere / box, distance: near / mid / far)",
    "road with 1..4 cars in perspective; class = distance bin of the nearest car (4 bins)",
    "white dSprites-like shape (square, ellipse, heart) on black; class = x-position bin (16)",
    "white asymmetric shape (arrow, L, flag) on black; class = orientation bin (16 of 22.5 degrees)",
    "3D toy of shaded spheres (5 kinds); class = azimuth 0..340 in steps of 20 (18)",
    "the same 3D toys; class = elevation 30..70 in steps of 5 (9)",
};

/* ---- drawing -------------------------------------------------------------------------------------------- */
typedef struct Rng { uint64_t seed, stream, i; } Rng;
static float U(Rng *r) { return rng_uniform(r->seed, r->stream, r->i++); }
static float UR(Rng *r, float a, float b) { return a + (b - a) * U(r); }
static int RI(Rng *r, int n) {
    int k = (int)(U(r) * (float)n);
    return k >= n ? n - 1 : k;
}
static float clamp01(float v) { return v < 0 ? 0 : v > 1 ? 1 : v; }

typedef struct Rgb { float r, g, b; } Rgb;
static float lum(Rgb c) { return 0.299f * c.r + 0.587f * c.g + 0.114f * c.b; }
/* A random colour with luminance about L in [lo, hi] (hue carries no label: the gray view must suffice). */
static Rgb rand_color(Rng *r, float lo, float hi) {
    Rgb c = {UR(r, 0.2f, 1), UR(r, 0.2f, 1), UR(r, 0.2f, 1)};
    float L = UR(r, lo, hi), s = L / MAX(lum(c), 1e-3f);
    return (Rgb){clamp01(c.r * s), clamp01(c.g * s), clamp01(c.b * s)};
}
static Rgb scale_rgb(Rgb c, float s) { return (Rgb){clamp01(c.r * s), clamp01(c.g * s), clamp01(c.b * s)}; }

/* Fashion-MNIST pools of one task: pool[split][class] = test-split indices. */
typedef struct Pools {
    const IdxSet *fm;
    int *idx[3][10];
    int n[3][10];
} Pools;

typedef struct Img {
    int S;
    float *px; /* (S, S, 3) */
    Rng r;
    const Pools *pools;
    int split;
    int src[MAX_SRC], n_src;
} Img;

static void blend(Img *im, int x, int y, Rgb c, float a) {
    if (x < 0 || y < 0 || x >= im->S || y >= im->S || a <= 0) return;
    a = a > 1 ? 1 : a;
    float *p = im->px + ((size_t)y * im->S + x) * 3;
    p[0] += (c.r - p[0]) * a;
    p[1] += (c.g - p[1]) * a;
    p[2] += (c.b - p[2]) * a;
}

/* Linear gradient from c0 to c1 along angle, plus faint pixel noise. */
static void background(Img *im, Rgb c0, Rgb c1, float angle, float noise) {
    int S = im->S;
    float ca = cosf(angle), sa = sinf(angle);
    for (int y = 0; y < S; y++)
        for (int x = 0; x < S; x++) {
            float t = clamp01(0.5f + ((x + 0.5f - S / 2.0f) * ca + (y + 0.5f - S / 2.0f) * sa) / S);
            float n = noise * (U(&im->r) - 0.5f);
            float *p = im->px + ((size_t)y * S + x) * 3;
            p[0] = clamp01(c0.r + (c1.r - c0.r) * t + n);
            p[1] = clamp01(c0.g + (c1.g - c0.g) * t + n);
            p[2] = clamp01(c0.b + (c1.b - c0.b) * t + n);
        }
}

/* A random item of class cls from this split's pool (recorded as a source of the image). */
static const uint8_t *item(Img *im, int cls) {
    int split = im->split, n = im->pools->n[split][cls];
    int k = im->pools->idx[split][cls][RI(&im->r, n)];
    if (im->n_src < MAX_SRC) im->src[im->n_src++] = k;
    const IdxSet *fm = im->pools->fm;
    return fm->images + (size_t)k * fm->rows * fm->cols;
}

enum { COAT_PLAIN = 0, COAT_STRIPES, COAT_SPOTS, COAT_OUTLINE };
enum { PASTE_HFLIP = 1, PASTE_TRANSPOSE = 2 };
/* Pastes item (28x28) resized to s x s at (x0, y0), coloured c, alpha = intensity * opacity (and the coat). */
static void paste(Img *im, const uint8_t *it, int x0, int y0, int s, Rgb c, float opacity, int flags, int coat) {
    const IdxSet *fm = im->pools->fm;
    if (s < 2) s = 2;
    uint8_t *t = xmalloc((size_t)s * s);
    resize_bicubic_u8(t, s, s, it, fm->rows, fm->cols, 1);
    float period = MAX(3.0f, s / 6.0f);
    for (int v = 0; v < s; v++)
        for (int u = 0; u < s; u++) {
            int su = u, sv = v;
            if (flags & PASTE_TRANSPOSE) su = v, sv = u;
            if (flags & PASTE_HFLIP) su = s - 1 - su;
            float a = t[(size_t)sv * s + su] / 255.0f;
            if (coat == COAT_STRIPES) a *= fmodf((float)v, period) < period / 2 ? 1.0f : 0.25f;
            else if (coat == COAT_SPOTS) {
                float du = fmodf((float)u, period) - period / 2, dv = fmodf((float)v, period) - period / 2;
                a *= du * du + dv * dv < period * period / 8 ? 0.25f : 1.0f;
            } else if (coat == COAT_OUTLINE) {
                int l = t[(size_t)sv * s + MAX(su - 1, 0)], rr = t[(size_t)sv * s + MIN(su + 1, s - 1)];
                int up = t[(size_t)MAX(sv - 1, 0) * s + su], dn = t[(size_t)MIN(sv + 1, s - 1) * s + su];
                a = clamp01((fabsf((float)(rr - l)) + fabsf((float)(dn - up))) / 255.0f);
            }
            blend(im, x0 + u, y0 + v, c, a * opacity);
        }
    free(t);
}

/* Shapes in local coordinates (u right, v down, radius 1). */
enum { SH_DISK, SH_SQUARE, SH_TRIANGLE, SH_HEART, SH_ARROW, SH_L, SH_FLAG, SH_ELLIPSE };
static int inside(int kind, float u, float v) {
    switch (kind) {
    case SH_DISK: return u * u + v * v <= 1;
    case SH_ELLIPSE: return u * u / 1.0f + v * v / 0.36f <= 1;
    case SH_SQUARE: return fabsf(u) <= 0.75f && fabsf(v) <= 0.75f;
    case SH_TRIANGLE: return v <= 0.7f && fabsf(u) <= (v + 0.95f) * 0.52f;
    case SH_HEART: {
        float x = u * 1.2f, y = -v * 1.2f + 0.25f, q = x * x + y * y - 1;
        return q * q * q - x * x * y * y * y <= 0;
    }
    case SH_ARROW: return (u >= -0.95f && u <= 0.2f && fabsf(v) <= 0.22f) || (u > 0.2f && u <= 0.95f && fabsf(v) <= (0.95f - u) * 0.9f);
    case SH_L: return (u >= -0.8f && u <= -0.3f && v >= -0.8f && v <= 0.8f) || (u >= -0.8f && u <= 0.8f && v >= 0.35f && v <= 0.8f);
    case SH_FLAG: return (u >= -0.8f && u <= -0.6f && v >= -0.9f && v <= 0.9f) || (u > -0.6f && v >= -0.9f && v <= 0.1f && u <= 0.8f - 0.8f * fabsf(v + 0.4f) / 0.5f);
    }
    return 0;
}
/* Shape of radius R at (cx, cy) rotated by angle (radians, counter-clockwise on screen), 4x4 supersampled. */
static void shape(Img *im, int kind, float cx, float cy, float R, float angle, Rgb c) {
    float ca = cosf(angle), sa = sinf(angle);
    int x0 = (int)floorf(cx - 1.5f * R), x1 = (int)ceilf(cx + 1.5f * R);
    int y0 = (int)floorf(cy - 1.5f * R), y1 = (int)ceilf(cy + 1.5f * R);
    for (int y = MAX(y0, 0); y <= MIN(y1, im->S - 1); y++)
        for (int x = MAX(x0, 0); x <= MIN(x1, im->S - 1); x++) {
            int hits = 0;
            for (int k = 0; k < 16; k++) {
                float dx = x + (k % 4 + 0.5f) / 4 - cx, dy = y + (k / 4 + 0.5f) / 4 - cy;
                /* screen -> shape frame: rotate by -angle (screen v points down, so the sign of sin flips) */
                float u = (dx * ca - dy * sa) / R, v = (dx * sa + dy * ca) / R;
                hits += inside(kind, u, v);
            }
            blend(im, x, y, c, hits / 16.0f);
        }
}
/* Lambert-shaded sphere, light direction (lx, ly, lz) normalized by the caller. */
static void sphere(Img *im, float cx, float cy, float r, Rgb c, float lx, float ly, float lz) {
    for (int y = MAX((int)floorf(cy - r - 1), 0); y <= MIN((int)ceilf(cy + r + 1), im->S - 1); y++)
        for (int x = MAX((int)floorf(cx - r - 1), 0); x <= MIN((int)ceilf(cx + r + 1), im->S - 1); x++) {
            float dx = (x + 0.5f - cx) / r, dy = (y + 0.5f - cy) / r, d2 = dx * dx + dy * dy;
            float cover = clamp01((1 - sqrtf(d2)) * r + 0.5f);
            if (cover <= 0) continue;
            float nz = sqrtf(MAX(0.0f, 1 - d2)), sh = 0.25f + 0.75f * MAX(0.0f, dx * lx + dy * ly + nz * lz);
            blend(im, x, y, scale_rgb(c, sh), cover);
        }
}
static void line(Img *im, float x0, float y0, float x1, float y1, float w, Rgb c, float opacity) {
    float ex = x1 - x0, ey = y1 - y0, L2 = MAX(ex * ex + ey * ey, 1e-6f);
    for (int y = MAX((int)floorf(MIN(y0, y1) - w), 0); y <= MIN((int)ceilf(MAX(y0, y1) + w), im->S - 1); y++)
        for (int x = MAX((int)floorf(MIN(x0, x1) - w), 0); x <= MIN((int)ceilf(MAX(x0, x1) + w), im->S - 1); x++) {
            float px = x + 0.5f - x0, py = y + 0.5f - y0, t = clamp01((px * ex + py * ey) / L2);
            float dx = px - t * ex, dy = py - t * ey, d = sqrtf(dx * dx + dy * dy);
            blend(im, x, y, c, clamp01(w / 2 + 0.5f - d) * opacity);
        }
}
/* Axis-aligned rectangle [x0, x1) x [y0, y1) with fractional edges. */
static void rect(Img *im, float x0, float y0, float x1, float y1, Rgb c) {
    for (int y = MAX((int)floorf(y0), 0); y <= MIN((int)ceilf(y1), im->S - 1); y++)
        for (int x = MAX((int)floorf(x0), 0); x <= MIN((int)ceilf(x1), im->S - 1); x++) {
            float ax = clamp01(MIN(x + 1.0f, x1) - MAX((float)x, x0)), ay = clamp01(MIN(y + 1.0f, y1) - MAX((float)y, y0));
            blend(im, x, y, c, ax * ay);
        }
}
/* Convex polygon (n points, xy pairs), 2x2 supersampled. */
static void poly(Img *im, const float *xy, int n, Rgb c) {
    for (int y = 0; y < im->S; y++)
        for (int x = 0; x < im->S; x++) {
            int hits = 0;
            for (int k = 0; k < 4; k++) {
                float px = x + (k % 2 + 0.5f) / 2, py = y + (k / 2 + 0.5f) / 2;
                int pos = 0, neg = 0;
                for (int e = 0; e < n; e++) {
                    const float *a = xy + 2 * e, *b = xy + 2 * ((e + 1) % n);
                    float cr = (b[0] - a[0]) * (py - a[1]) - (b[1] - a[1]) * (px - a[0]);
                    pos |= cr > 0;
                    neg |= cr < 0;
                }
                hits += !(pos && neg);
            }
            blend(im, x, y, c, hits / 4.0f);
        }
}

/* ---- procedural textures (eurosat, resisc45) ------------------------------------------------------------- */
#define N_TEX 10
typedef struct Tex { int type; float f, ph1, ph2, ang, cx, cy; uint64_t noise_stream; Rgb c0, c1; } Tex;
static Tex tex_make(Img *im, int type) {
    Tex t = {.type = type, .f = UR(&im->r, 3, 5.5f), .ph1 = UR(&im->r, 0, 2 * PI_F), .ph2 = UR(&im->r, 0, 2 * PI_F),
             .ang = UR(&im->r, -0.17f, 0.17f), .cx = UR(&im->r, 0.3f, 0.7f), .cy = UR(&im->r, 0.3f, 0.7f)};
    t.noise_stream = rng_stream("minivtab/texture", im->r.stream, im->r.i++);
    t.c0 = rand_color(&im->r, 0.05f, 0.3f);
    t.c1 = rand_color(&im->r, 0.6f, 0.95f);
    return t;
}
static float vnoise(const Img *im, const Tex *t, float x, float y) { /* bilinear value noise on a 5x5 grid */
    float gx = x * 4, gy = y * 4;
    int ix = (int)gx, iy = (int)gy;
    float fx = gx - ix, fy = gy - iy, v[4];
    for (int k = 0; k < 4; k++) v[k] = rng_uniform(im->r.seed, t->noise_stream, (uint64_t)((iy + k / 2) * 8 + ix + k % 2));
    return (v[0] * (1 - fx) + v[1] * fx) * (1 - fy) + (v[2] * (1 - fx) + v[3] * fx) * fy;
}
static float tex_value(Img *im, const Tex *t, float x, float y) { /* x, y in [0, 1) */
    float ca = cosf(t->ang), sa = sinf(t->ang), xr = x * ca - y * sa, yr = x * sa + y * ca, w = 2 * PI_F * t->f;
    switch (t->type) {
    case 0: return clamp01(0.5f + (xr - 0.5f) * cosf(t->ph1) + (yr - 0.5f) * sinf(t->ph1));
    case 1: return 0.5f + 0.5f * sinf(w * yr + t->ph1);
    case 2: return 0.5f + 0.5f * sinf(w * xr + t->ph1);
    case 3: return 0.5f + 0.5f * sinf(w * (x + y) * 0.7071f + t->ph1);
    case 4: return sinf(w * 0.5f * xr + t->ph1) * sinf(w * 0.5f * yr + t->ph2) > 0 ? 1.0f : 0.0f;
    case 5: return cosf(w * xr + t->ph1) * cosf(w * yr + t->ph2) > 0.55f ? 1.0f : 0.0f;
    case 6: return vnoise(im, t, x, y);
    case 7: return U(&im->r);
    case 8: {
        float dx = x - t->cx, dy = y - t->cy;
        return 0.5f + 0.5f * sinf(w * 1.3f * sqrtf(dx * dx + dy * dy) + t->ph1);
    }
    default: return fabsf(sinf(w * 0.5f * xr + t->ph1)) < 0.3f || fabsf(sinf(w * 0.5f * yr + t->ph2)) < 0.3f ? 1.0f : 0.0f;
    }
}
static Rgb tex_color(Img *im, const Tex *t, int x, int y) {
    float v = tex_value(im, t, (x + 0.5f) / im->S, (y + 0.5f) / im->S);
    return (Rgb){t->c0.r + (t->c1.r - t->c0.r) * v, t->c0.g + (t->c1.g - t->c0.g) * v, t->c0.b + (t->c1.b - t->c0.b) * v};
}

/* ---- the 19 stand-ins (label -> image) ------------------------------------------------------------------- */
static void dark_bg(Img *im) { background(im, rand_color(&im->r, 0.02f, 0.25f), rand_color(&im->r, 0.02f, 0.3f), UR(&im->r, 0, 2 * PI_F), 0.04f); }
static Rgb bright(Img *im) { return rand_color(&im->r, 0.7f, 1.0f); }
static int J(Img *im, float amount) { return (int)lroundf(UR(&im->r, -amount, amount) * im->S); } /* jitter in pixels */

static void gen_cifar(Img *im, int label) {
    int S = im->S, s = S / 2;
    dark_bg(im);
    paste(im, item(im, label % 10), J(im, 0.04f), (S - s) / 2 + J(im, 0.15f), s, bright(im), 1, 0, 0);
    paste(im, item(im, label / 10), S / 2 + J(im, 0.04f), (S - s) / 2 + J(im, 0.15f), s, bright(im), 1, 0, 0);
}
static void gen_caltech101(Img *im, int label) {
    int S = im->S, cls = label % 10, v = label / 10;
    dark_bg(im);
    for (int k = 0, nc = RI(&im->r, 3); k < nc; k++) /* faint clutter */
        paste(im, item(im, RI(&im->r, 10)), RI(&im->r, S) - S / 4, RI(&im->r, S) - S / 4, S / 2, bright(im), 0.2f, 0, 0);
    int s, x, y;
    if (v < 9) s = (int)(S * 0.45f), x = (v % 3) * S / 3 + (S / 3 - s) / 2, y = (v / 3) * S / 3 + (S / 3 - s) / 2;
    else s = (int)(S * (v == 9 ? 0.95f : 0.65f)), x = y = (S - s) / 2;
    paste(im, item(im, cls), x + J(im, 0.03f), y + J(im, 0.03f), s, bright(im), 1, 0, 0);
}
static void gen_dtd(Img *im, int label) {
    int S = im->S, s = MAX(S / 4, 4), tiling = label / 10;
    dark_bg(im);
    const uint8_t *it = item(im, label % 10);
    Rgb c = bright(im);
    int ox = RI(&im->r, s), oy = RI(&im->r, s);
    for (int j = -1; j <= S / s; j++)
        for (int i = -1; i <= S / s; i++) {
            int x = i * s + ox, y = j * s + oy, flags = 0;
            if (tiling == 1 && (j & 1)) x += s / 2;                          /* brick */
            if (tiling == 2 && (i & 1)) flags = PASTE_HFLIP;                  /* mirrored */
            if (tiling == 3 && ((i + j) & 1)) continue;                        /* checker */
            if (tiling == 4) flags = PASTE_TRANSPOSE;                          /* transposed */
            paste(im, it, x, y, s, c, 1, flags, 0);
        }
}
static void gen_flowers(Img *im, int label) {
    int S = im->S, sc = S / 2, sr = (int)(S * 0.3f), layout = label / 100;
    dark_bg(im);
    const uint8_t *ring = item(im, (label / 10) % 10);
    Rgb cr = bright(im);
    for (int k = 0; k < 4; k++) {
        int x, y;
        if (layout == 0) x = (k & 1) ? S - sr : 0, y = (k & 2) ? S - sr : 0;
        else x = k == 0 ? 0 : k == 1 ? S - sr : (S - sr) / 2, y = k == 2 ? 0 : k == 3 ? S - sr : (S - sr) / 2;
        paste(im, ring, x, y, sr, cr, 1, 0, 0);
    }
    paste(im, item(im, label % 10), (S - sc) / 2 + J(im, 0.03f), (S - sc) / 2 + J(im, 0.03f), sc, bright(im), 1, 0, 0);
}
static void gen_pets(Img *im, int label) {
    int S = im->S, s = (int)(S * 0.85f);
    dark_bg(im);
    paste(im, item(im, label % 10), (S - s) / 2 + J(im, 0.05f), (S - s) / 2 + J(im, 0.05f), s, bright(im), 1, 0, label / 10);
}
static void gen_svhn(Img *im, int label) {
    int S = im->S, s = (int)(S * 0.6f);
    background(im, rand_color(&im->r, 0.05f, 0.4f), rand_color(&im->r, 0.05f, 0.4f), UR(&im->r, 0, 2 * PI_F), 0.06f);
    Rgb c = bright(im);
    int y = (S - s) / 2 + J(im, 0.05f);
    paste(im, item(im, RI(&im->r, 10)), -s / 2 - RI(&im->r, S / 8), y, s, c, 1, 0, 0);
    paste(im, item(im, RI(&im->r, 10)), S - s / 2 + RI(&im->r, S / 8), y, s, c, 1, 0, 0);
    paste(im, item(im, label), (S - s) / 2 + J(im, 0.03f), y, s, c, 1, 0, 0);
}
static void gen_sun397(Img *im, int label) {
    int S = im->S, s = (int)(S * 0.45f), layout = label / 100;
    Rgb hi = rand_color(&im->r, 0.45f, 0.6f), lo = rand_color(&im->r, 0.05f, 0.2f);
    for (int y = 0; y < S; y++)
        for (int x = 0; x < S; x++) {
            float fx = (x + 0.5f) / S, fy = (y + 0.5f) / S, d = (fx - 0.5f) * (fx - 0.5f) + (fy - 0.5f) * (fy - 0.5f);
            int up = layout == 0 ? fy < 0.33f : layout == 1 ? fy < 0.67f : layout == 2 ? fx < 0.5f : d < 0.09f;
            blend(im, x, y, up ? hi : lo, 1);
        }
    int y = S - s - RI(&im->r, S / 8);
    paste(im, item(im, label % 10), J(im, 0.03f) + S / 32, y, s, rand_color(&im->r, 0.85f, 1), 1, 0, 0);
    paste(im, item(im, (label / 10) % 10), S - s - S / 32 + J(im, 0.03f), y, s, rand_color(&im->r, 0.85f, 1), 1, 0, 0);
}
static void gen_camelyon(Img *im, int label) {
    int S = im->S;
    float k = S / 32.0f;
    background(im, (Rgb){UR(&im->r, .8f, .95f), UR(&im->r, .55f, .7f), UR(&im->r, .7f, .85f)},
               (Rgb){UR(&im->r, .75f, .9f), UR(&im->r, .5f, .65f), UR(&im->r, .7f, .85f)}, UR(&im->r, 0, 6.28f), 0.12f);
    Rgb nuc = {UR(&im->r, .3f, .45f), UR(&im->r, .15f, .25f), UR(&im->r, .45f, .6f)};
    int n = 15 + RI(&im->r, 16);
    for (int i = 0; i < n; i++) shape(im, SH_DISK, UR(&im->r, 0, S), UR(&im->r, 0, S), k * UR(&im->r, 0.8f, 1.6f), 0, nuc);
    for (int i = 0, m = RI(&im->r, 3); i < m; i++) /* a few medium ones in both classes */
        shape(im, SH_ELLIPSE, UR(&im->r, 0, S), UR(&im->r, 0, S), k * UR(&im->r, 1.6f, 2.2f), UR(&im->r, 0, 6.28f), nuc);
    if (label) { /* tumour: a cluster of large dark irregular nuclei */
        float cx = UR(&im->r, S * .25f, S * .75f), cy = UR(&im->r, S * .25f, S * .75f);
        Rgb dark = scale_rgb(nuc, 0.6f);
        for (int i = 0, m = 4 + RI(&im->r, 5); i < m; i++)
            shape(im, SH_ELLIPSE, cx + UR(&im->r, -S * .22f, S * .22f), cy + UR(&im->r, -S * .22f, S * .22f),
                  k * UR(&im->r, 2.2f, 3.2f), UR(&im->r, 0, 6.28f), dark);
    }
}
static void gen_eurosat(Img *im, int label) {
    Tex t = tex_make(im, label);
    for (int y = 0; y < im->S; y++)
        for (int x = 0; x < im->S; x++) blend(im, x, y, tex_color(im, &t, x, y), 1);
}
static void gen_resisc45(Img *im, int label) {
    int a = 0, b = 1;
    for (int k = label; k > 0; k--) /* the label-th unordered pair a < b */
        if (++b == N_TEX) a++, b = a + 1;
    if (U(&im->r) < 0.5f) { int t = a; a = b; b = t; } /* which side is random: the pair is unordered */
    Tex ta = tex_make(im, a), tb = tex_make(im, b);
    float ang = UR(&im->r, 0, 2 * PI_F), nx = cosf(ang), ny = sinf(ang), off = UR(&im->r, -0.15f, 0.15f);
    for (int y = 0; y < im->S; y++)
        for (int x = 0; x < im->S; x++) {
            float d = ((x + 0.5f) / im->S - 0.5f) * nx + ((y + 0.5f) / im->S - 0.5f) * ny - off;
            blend(im, x, y, tex_color(im, d < 0 ? &ta : &tb, x, y), 1);
        }
}
static void gen_retinopathy(Img *im, int label) {
    int S = im->S;
    static const int lo[5] = {0, 2, 5, 10, 17}, hi[5] = {0, 4, 9, 16, 26};
    float k = S / 32.0f, R = S * UR(&im->r, 0.42f, 0.48f), cx = S / 2.0f + J(im, 0.02f), cy = S / 2.0f + J(im, 0.02f);
    memset(im->px, 0, sizeof(float) * 3 * (size_t)S * S);
    shape(im, SH_DISK, cx, cy, R, 0, (Rgb){UR(&im->r, .6f, .8f), UR(&im->r, .3f, .4f), UR(&im->r, .1f, .2f)});
    float dx = cx + R * UR(&im->r, -0.5f, 0.5f), dy = cy + R * UR(&im->r, -0.3f, 0.3f);
    for (int v = 0, nv = 3 + RI(&im->r, 3); v < nv; v++) { /* vessels from the optic disc */
        float a = UR(&im->r, 0, 2 * PI_F), L = R * UR(&im->r, 0.6f, 1.2f);
        line(im, dx, dy, dx + L * cosf(a), dy + L * sinf(a), k * 0.9f, (Rgb){.45f, .12f, .08f}, 0.8f);
    }
    shape(im, SH_DISK, dx, dy, k * 2.5f, 0, (Rgb){.95f, .85f, .6f});
    int n = lo[label] + RI(&im->r, hi[label] - lo[label] + 1);
    for (int i = 0; i < n; i++) {
        float a = UR(&im->r, 0, 2 * PI_F), r = R * 0.85f * sqrtf(U(&im->r));
        int bright_spot = U(&im->r) < 0.5f;
        shape(im, SH_DISK, cx + r * cosf(a), cy + r * sinf(a), k * UR(&im->r, 0.6f, 1.1f), 0,
              bright_spot ? (Rgb){1, .95f, .5f} : (Rgb){.3f, .02f, .02f});
    }
}
static void floor_bg(Img *im) {
    background(im, rand_color(&im->r, 0.35f, 0.5f), rand_color(&im->r, 0.15f, 0.3f), PI_F / 2 + UR(&im->r, -.2f, .2f), 0.03f);
}
static void gen_clevr_count(Img *im, int label) {
    int S = im->S, n = label + 3;
    floor_bg(im);
    float xs[10], ys[10], r = S * 0.085f;
    for (int i = 0; i < n; i++) {
        for (int tries = 0;; tries++) { /* non-overlapping; shrink when crowded */
            if (tries && tries % 50 == 0) r *= 0.9f;
            xs[i] = UR(&im->r, r, S - r), ys[i] = UR(&im->r, r, S - r);
            int ok = 1;
            for (int j = 0; j < i; j++) ok &= (xs[i] - xs[j]) * (xs[i] - xs[j]) + (ys[i] - ys[j]) * (ys[i] - ys[j]) > 4.4f * r * r;
            if (ok) break;
        }
        shape(im, RI(&im->r, 3), xs[i], ys[i], r * UR(&im->r, 0.8f, 1.0f), UR(&im->r, 0, 6.28f), rand_color(&im->r, 0.6f, 1));
    }
}
/* perspective helpers: ground depth d >= 1 -> screen row and size */
static void gen_clevr_dist(Img *im, int label) {
    int S = im->S, n = 2 + RI(&im->r, 4);
    floor_bg(im);
    float d[6], h = S * 0.3f;
    d[0] = 1 + 0.5f * (label + U(&im->r)); /* the nearest: bin `label` of [1, 4) in steps of 0.5 */
    for (int i = 1; i < n; i++) d[i] = UR(&im->r, d[0] + 0.15f, 6.5f);
    for (int i = n - 1; i >= 0; i--) { /* far to near; index 0 (nearest) last */
        float y = h + S * 0.62f / d[i], r = S * 0.15f / d[i];
        shape(im, RI(&im->r, 3), UR(&im->r, r, S - r), y - r, r, 0, rand_color(&im->r, 0.6f, 1));
    }
}
static void gen_dmlab(Img *im, int label) {
    int S = im->S, kind = label % 2, dist = label / 2;
    float h = S * UR(&im->r, 0.4f, 0.5f), vx = S * UR(&im->r, 0.35f, 0.65f);
    background(im, rand_color(&im->r, 0.1f, 0.2f), rand_color(&im->r, 0.1f, 0.2f), 0, 0.02f);
    float fl[8] = {0, (float)S, (float)S, (float)S, vx + S * 0.1f, h, vx - S * 0.1f, h};
    poly(im, fl, 4, rand_color(&im->r, 0.35f, 0.5f));
    line(im, 0, 0, vx - S * 0.1f, h, 1, rand_color(&im->r, 0.5f, 0.7f), 1);
    line(im, (float)S, 0, vx + S * 0.1f, h, 1, rand_color(&im->r, 0.5f, 0.7f), 1);
    float dd = dist == 0 ? UR(&im->r, 1.0f, 1.6f) : dist == 1 ? UR(&im->r, 2.0f, 3.0f) : UR(&im->r, 3.8f, 5.5f);
    float r = S * 0.2f / dd, y = h + (S - h) * 0.9f / dd - r, x = vx + UR(&im->r, -0.5f, 0.5f) * S * 0.5f / dd;
    Rgb c = rand_color(&im->r, 0.75f, 1);
    if (kind == 0) sphere(im, x, y, r, c, -0.4f, -0.6f, 0.7f);
    else rect(im, x - r, y - r, x + r, y + r, scale_rgb(c, 0.8f));
}
static void gen_kitti(Img *im, int label) {
    int S = im->S, n = 1 + RI(&im->r, 4);
    static const float edges[5] = {1.0f, 1.5f, 2.2f, 3.2f, 5.0f};
    float h = S * UR(&im->r, 0.35f, 0.45f);
    background(im, rand_color(&im->r, 0.5f, 0.7f), rand_color(&im->r, 0.15f, 0.3f), PI_F / 2, 0.03f);
    float road[8] = {-S * 0.3f, (float)S, S * 1.3f, (float)S, S * 0.55f, h, S * 0.45f, h};
    poly(im, road, 4, rand_color(&im->r, 0.08f, 0.15f));
    line(im, S * 0.5f, (float)S, S * 0.5f, h, 1, (Rgb){.9f, .9f, .8f}, 0.6f);
    float d[4];
    d[0] = UR(&im->r, edges[label], edges[label + 1]);
    for (int i = 1; i < n; i++) d[i] = UR(&im->r, d[0] + 0.2f, 7.0f);
    for (int i = n - 1; i >= 0; i--) {
        float w = S * 0.35f / d[i], y = h + (S - h) * 0.95f / d[i], lane = (float)(RI(&im->r, 3) - 1);
        float x = S * 0.5f + lane * S * 0.45f / d[i];
        Rgb body = rand_color(&im->r, 0.4f, 0.9f);
        rect(im, x - w / 2, y - w * 0.6f, x + w / 2, y, body);
        rect(im, x - w * 0.35f, y - w * 0.55f, x + w * 0.35f, y - w * 0.35f, (Rgb){.1f, .1f, .15f});
    }
}
static void gen_dsprites_loc(Img *im, int label) {
    int S = im->S;
    static const int kinds[3] = {SH_SQUARE, SH_ELLIPSE, SH_HEART};
    memset(im->px, 0, sizeof(float) * 3 * (size_t)S * S);
    float lo = S * 0.15f, span = S * 0.7f, x = lo + span * (label + U(&im->r)) / 16, y = UR(&im->r, lo, lo + span);
    shape(im, kinds[RI(&im->r, 3)], x, y, S * UR(&im->r, 0.08f, 0.15f), UR(&im->r, 0, 2 * PI_F), (Rgb){1, 1, 1});
}
static void gen_dsprites_ori(Img *im, int label) {
    int S = im->S;
    static const int kinds[3] = {SH_ARROW, SH_L, SH_FLAG};
    memset(im->px, 0, sizeof(float) * 3 * (size_t)S * S);
    float a = 2 * PI_F * (label + U(&im->r)) / 16, R = S * UR(&im->r, 0.18f, 0.28f);
    shape(im, kinds[RI(&im->r, 3)], UR(&im->r, R, S - R), UR(&im->r, R, S - R), R, a, (Rgb){1, 1, 1});
}
/* smallNORB-like toys: 5 fixed kinds of 5 spheres each (x, y, z, radius, gray), no symmetry */
static const float TOYS[5][5][5] = {
    {{0, 0, 0, .45f, .9f}, {.6f, .1f, 0, .3f, .6f}, {-.5f, -.2f, .3f, .25f, .75f}, {0, .6f, -.3f, .22f, .5f}, {-.2f, -.5f, -.5f, .2f, 1}},
    {{0, 0, 0, .35f, .7f}, {.5f, .5f, .2f, .3f, 1}, {-.6f, 0, -.2f, .3f, .55f}, {.1f, -.6f, .4f, .25f, .85f}, {.4f, -.2f, -.6f, .2f, .6f}},
    {{-.6f, 0, 0, .3f, .8f}, {-.2f, .1f, .1f, .3f, .7f}, {.2f, .2f, .2f, .3f, .6f}, {.6f, .3f, .3f, .3f, .5f}, {.6f, -.4f, 0, .25f, 1}},
    {{0, -.5f, 0, .4f, .6f}, {0, .2f, 0, .3f, .8f}, {0, .65f, .1f, .2f, 1}, {.5f, 0, .3f, .2f, .5f}, {-.3f, -.2f, -.5f, .25f, .9f}},
    {{.3f, .3f, -.3f, .35f, .95f}, {-.3f, -.3f, .3f, .35f, .55f}, {.3f, -.3f, .3f, .2f, .75f}, {-.5f, .4f, 0, .25f, .65f}, {0, 0, .7f, .2f, 1}},
};
static void render_toy(Img *im, float azimuth, float elevation) {
    int S = im->S, kind = RI(&im->r, 5);
    background(im, rand_color(&im->r, 0.15f, 0.3f), rand_color(&im->r, 0.15f, 0.3f), UR(&im->r, 0, 6.28f), 0.02f);
    float ca = cosf(azimuth), sa = sinf(azimuth), ce = cosf(elevation), se = sinf(elevation);
    float f = S * UR(&im->r, 0.33f, 0.38f), cx = S / 2.0f + J(im, 0.03f), cy = S / 2.0f + J(im, 0.03f);
    float lx = UR(&im->r, -0.5f, 0.5f), ly = -0.6f, lz = 0.6f, ln = sqrtf(lx * lx + ly * ly + lz * lz);
    float sx[5], sy[5], sz[5];
    int order[5];
    for (int i = 0; i < 5; i++) {
        const float *p = TOYS[kind][i];
        float x = p[0] * ca + p[2] * sa, z = -p[0] * sa + p[2] * ca; /* azimuth about the vertical axis */
        float y = p[1] * ce - z * se, zz = p[1] * se + z * ce;        /* elevation: tilt towards the viewer */
        sx[i] = cx + f * x, sy[i] = cy - f * y, sz[i] = zz, order[i] = i;
    }
    for (int i = 1; i < 5; i++) /* far (small z) first */
        for (int j = i; j > 0 && sz[order[j - 1]] > sz[order[j]]; j--) { int t = order[j]; order[j] = order[j - 1]; order[j - 1] = t; }
    for (int k = 0; k < 5; k++) {
        int i = order[k];
        float g = TOYS[kind][i][4];
        sphere(im, sx[i], sy[i], f * TOYS[kind][i][3], (Rgb){g, g, g}, lx / ln, ly / ln, lz / ln);
    }
}
static void gen_smallnorb_azi(Img *im, int label) { render_toy(im, label * 20 * PI_F / 180, (30 + 5 * RI(&im->r, 9)) * PI_F / 180); }
static void gen_smallnorb_ele(Img *im, int label) { render_toy(im, RI(&im->r, 18) * 20 * PI_F / 180, (30 + 5 * label) * PI_F / 180); }

typedef void (*GenFn)(Img *im, int label);
static const GenFn GENERATORS[VTAB_N_TASKS] = {
    gen_cifar, gen_caltech101, gen_dtd, gen_flowers, gen_pets, gen_svhn, gen_sun397,
    gen_camelyon, gen_eurosat, gen_resisc45, gen_retinopathy,
    gen_clevr_count, gen_clevr_dist, gen_dmlab, gen_kitti, gen_dsprites_loc, gen_dsprites_ori, gen_smallnorb_azi,
    gen_smallnorb_ele,
};

/* ---- files ---------------------------------------------------------------------------------------------- */
static const char *const SPLIT_DIRS[3] = {"train800", "val200", "test"};
static const int SPLIT_N[3] = {MINIVTAB_TRAIN_N, MINIVTAB_VAL_N, MINIVTAB_TEST_N};

static int label_of(int i, int n, int K) { return n >= K ? i % K : (int)((long)i * K / n); }

static int rm_entry(const char *p, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st; (void)flag; (void)ftw;
    return remove(p);
}
static void rm_rf(const char *path) { nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS); }

void minivtab_stamp_text(char *buf, size_t size, const MiniVtabOptions *o) {
    snprintf(buf, size, "loralab mini-vtab version=%d seed=%llu size=%d train=%d val=%d test=%d\n", MINIVTAB_VERSION,
             (unsigned long long)o->seed, o->size > 0 ? o->size : 32, MINIVTAB_TRAIN_N, MINIVTAB_VAL_N, MINIVTAB_TEST_N);
}

/* 1: stamp matches, 0: no folder, -1 (err set): a folder with another or no stamp. */
static int check_existing(const char *out, const char *want, Error *err) {
    struct stat st;
    if (stat(out, &st) != 0) return 0;
    char path[4200], got[512] = "";
    snprintf(path, sizeof path, "%s/%s", out, MINIVTAB_STAMP);
    FILE *f = fopen(path, "r");
    if (f) {
        size_t n = fread(got, 1, sizeof got - 1, f);
        got[n] = 0;
        fclose(f);
    }
    if (!strcmp(got, want)) return 1;
    if (!f) return err_set(err, "mini-vtab: %s exists but holds no %s: not overwriting it; remove it or choose another "
                           "folder (--out / dataset.root)", out, MINIVTAB_STAMP);
    return err_set(err, "mini-vtab: %s holds another generation (%.*s), not '%.*s'; remove it or choose another folder "
                   "(--out / dataset.root)", out, (int)strcspn(got, "\n"), got, (int)strcspn(want, "\n"), want);
}

int minivtab_generate_task(const char *dir, int t, const MiniVtabOptions *o, const IdxSet *fm, Error *err) {
    ASSERT(t >= 0 && t < VTAB_N_TASKS && fm);
    const VtabTask *task = &VTAB_TASKS[t];
    int S = o->size > 0 ? o->size : 32, K = task->n_classes, natural = task->group == VTAB_NATURAL;
    char path[4600];
    Pools pools = {.fm = fm};
    int *perm = NULL;
    if (natural) { /* three disjoint pools of test-split items: 40% / 10% / 50% */
        perm = xmalloc(sizeof(int) * (size_t)fm->n);
        rng_permutation(perm, fm->n, o->seed, rng_stream("minivtab/pools", (uint64_t)t, 0));
        int cut[4] = {0, (int)(fm->n * 0.4), fm->n / 2, fm->n};
        for (int p = 0; p < 3; p++) {
            for (int c = 0; c < 10; c++) pools.idx[p][c] = xmalloc(sizeof(int) * (size_t)(cut[p + 1] - cut[p]));
            for (int k = cut[p]; k < cut[p + 1]; k++) {
                int c = fm->labels[perm[k]];
                pools.idx[p][c][pools.n[p][c]++] = perm[k];
            }
            for (int c = 0; c < 10; c++)
                if (!pools.n[p][c]) {
                    err_set(err, "mini-vtab: the Fashion-MNIST test split (%d images) has no class-%d item in pool %d; "
                            "it needs the full 10000-image test split", fm->n, c, p);
                    goto fail;
                }
        }
    }
    int total = MINIVTAB_TRAIN_N + MINIVTAB_VAL_N + MINIVTAB_TEST_N;
    int (*src)[MAX_SRC + 1] = xcalloc((size_t)total, sizeof *src); /* [0] = count */
    int failed = 0;
    Error first = {{0}};
    for (int sp = 0, base = 0; sp < 3; base += SPLIT_N[sp], sp++) {
        snprintf(path, sizeof path, "%s/%s/images/%s", dir, task->name, SPLIT_DIRS[sp]);
        if (mkdirs(path, err)) { free(src); goto fail; }
#pragma omp parallel for schedule(dynamic, 16)
        for (int i = 0; i < SPLIT_N[sp]; i++) {
            Img im = {.S = S, .r = {o->seed, rng_stream(task->name, (uint64_t)sp, (uint64_t)i), 0}, .pools = &pools, .split = sp};
            im.px = xcalloc((size_t)S * S * 3, sizeof(float));
            GENERATORS[t](&im, label_of(i, SPLIT_N[sp], K));
            uint8_t *u8 = xmalloc((size_t)S * S * 3);
            for (size_t k = 0; k < (size_t)S * S * 3; k++) u8[k] = (uint8_t)(clamp01(im.px[k]) * 255 + 0.5f);
            char fp[4700];
            snprintf(fp, sizeof fp, "%s/%s/images/%s/%d.png", dir, task->name, SPLIT_DIRS[sp], i);
            Error e;
            if (image_write_png(fp, u8, S, S, 3, &e)) {
#pragma omp critical(minivtab_error)
                if (!failed++) first = e;
            }
            src[base + i][0] = im.n_src;
            memcpy(&src[base + i][1], im.src, sizeof(int) * (size_t)im.n_src);
            free(u8);
            free(im.px);
        }
    }
    if (failed) {
        *err = first;
        free(src);
        goto fail;
    }
    /* the lists: train800val200 = train800 then val200 */
    const char *lists[4] = {"train800", "val200", "train800val200", "test"};
    for (int l = 0; l < 4; l++) {
        snprintf(path, sizeof path, "%s/%s/%s.txt", dir, task->name, lists[l]);
        FILE *f = fopen(path, "w");
        if (!f) { err_set(err, "%s: cannot create: %s", path, strerror(errno)); free(src); goto fail; }
        for (int sp = 0; sp < 3; sp++) {
            int take = l == 2 ? sp < 2 : (l == 3 ? sp == 2 : sp == l);
            for (int i = 0; take && i < SPLIT_N[sp]; i++)
                fprintf(f, "images/%s/%d.png %d\n", SPLIT_DIRS[sp], i, label_of(i, SPLIT_N[sp], K));
        }
        if (fclose(f)) { err_set(err, "%s: write error: %s", path, strerror(errno)); free(src); goto fail; }
    }
    if (natural) {
        snprintf(path, sizeof path, "%s/%s/sources.txt", dir, task->name);
        FILE *f = fopen(path, "w");
        if (!f) { err_set(err, "%s: cannot create: %s", path, strerror(errno)); free(src); goto fail; }
        fprintf(f, "# image, then the Fashion-MNIST test-split indices composed into it\n");
        for (int sp = 0, base = 0; sp < 3; base += SPLIT_N[sp], sp++)
            for (int i = 0; i < SPLIT_N[sp]; i++) {
                fprintf(f, "images/%s/%d.png", SPLIT_DIRS[sp], i);
                for (int k = 0; k < src[base + i][0]; k++) fprintf(f, " %d", src[base + i][1 + k]);
                fputc('\n', f);
            }
        if (fclose(f)) { err_set(err, "%s: write error: %s", path, strerror(errno)); free(src); goto fail; }
    }
    free(src);
    for (int p = 0; p < 3; p++)
        for (int c = 0; c < 10; c++) free(pools.idx[p][c]);
    free(perm);
    return 0;
fail:
    for (int p = 0; p < 3; p++)
        for (int c = 0; c < 10; c++) free(pools.idx[p][c]);
    free(perm);
    return -1;
}

int minivtab_generate(const MiniVtabOptions *opt, int *generated, Error *err) {
    MiniVtabOptions o = *opt;
    if (o.size == 0) o.size = 32;
    if (generated) *generated = 0;
    if (!o.out || !*o.out) return err_set(err, "mini-vtab: no output folder given");
    if (o.size < 16 || o.size > 256) return err_set(err, "mini-vtab: size %d out of range: expected 16..256", o.size);
    char stamp[256];
    minivtab_stamp_text(stamp, sizeof stamp, &o);
    int have = check_existing(o.out, stamp, err);
    if (have) return have > 0 ? 0 : -1;

    double t0 = now_seconds();
    IdxSet fm;
    if (fashion_mnist_load(&fm, o.fmnist_dir, 0, err)) return -1; /* the TEST split only */
    char tmp[4200], path[4300];
    snprintf(tmp, sizeof tmp, "%s.tmp-%ld", o.out, (long)getpid());
    rm_rf(tmp);
    if (mkdirs(tmp, err)) { idx_free(&fm); return -1; }
    for (int t = 0; t < VTAB_N_TASKS; t++) {
        double ts = now_seconds();
        if (minivtab_generate_task(tmp, t, &o, &fm, err)) {
            idx_free(&fm);
            rm_rf(tmp);
            return -1;
        }
        if (o.verbose)
            printf("mini-vtab: %-20s %3d classes  %s  %.2f s\n", VTAB_TASKS[t].name, VTAB_TASKS[t].n_classes,
                   VTAB_GROUP_NAMES[VTAB_TASKS[t].group], now_seconds() - ts);
    }
    idx_free(&fm);
    snprintf(path, sizeof path, "%s/%s", tmp, MINIVTAB_STAMP);
    FILE *f = fopen(path, "w");
    if (!f || fputs(stamp, f) < 0 || fclose(f)) {
        err_set(err, "%s: cannot write: %s", path, strerror(errno));
        rm_rf(tmp);
        return -1;
    }
    if (rename(tmp, o.out)) {
        int e = errno;
        rm_rf(tmp);
        /* another process finished first: fine if it made the same suite */
        if ((e == ENOTEMPTY || e == EEXIST) && check_existing(o.out, stamp, err) > 0) return 0;
        if (e == ENOTEMPTY || e == EEXIST) return -1;
        return err_set(err, "mini-vtab: cannot rename %s to %s: %s", tmp, o.out, strerror(e));
    }
    if (generated) *generated = 1;
    if (o.verbose) printf("mini-vtab: wrote %s (19 tasks, %d images each) in %.1f s\n", o.out,
                          MINIVTAB_TRAIN_N + MINIVTAB_VAL_N + MINIVTAB_TEST_N, now_seconds() - t0);
    return 0;
}
