/* datasets/resize.h: the per-image preprocessing every image-file loader shares (VTAB-1k folders, mini-VTAB,
 * CIFAR binaries): channel conversion, bicubic resize to the backbone's resolution, and u8 -> float.
 *
 * The resize is PIL's Image.resize(size, Image.BICUBIC) (what torchvision's Resize((224, 224),
 * interpolation=3) calls on a PIL image, the VTAB-1k pipelines of NOAH / SPT for ViT-B/16) bit for bit:
 * separable, horizontal pass first, Keys cubic with a = -0.5, the kernel widened by the scale factor when
 * shrinking (antialiasing), weights in 22-bit fixed point, each pass rounded and clipped to 8 bits
 * (Pillow's libImaging/Resample.c). tests/test_vtab.c checks it against PIL's output (tests/fixtures/). */
#ifndef DATASETS_RESIZE_H
#define DATASETS_RESIZE_H
#include <stdint.h>

/* dst (dh, dw, c) = bicubic resize of src (sh, sw, c), interleaved u8. A side that keeps its size is not
 * filtered (as PIL). */
void resize_bicubic_u8(uint8_t *dst, int dh, int dw, const uint8_t *src, int sh, int sw, int c);
/* dst (n) = PIL's convert("L") of src (n, 3): (19595 R + 38470 G + 7471 B + 2^15) >> 16. */
void rgb_to_gray_u8(uint8_t *dst, const uint8_t *src, long n);

/* dst (C, H, W) = src (h, w, c) / 255, converted to C channels (gray -> RGB repeats the plane, as PIL's
 * convert("RGB"); RGB -> gray by rgb_to_gray_u8 before resizing) and resized to H x W by
 * resize_bicubic_u8. c, C in {1, 3}. Allocates scratch per call (loaders, not training steps). */
void image_to_chw_float(float *dst, int C, int H, int W, const uint8_t *src, int h, int w, int c);
/* The same as bytes (dst (C, H, W); image_to_chw_float = these / 255). */
void image_to_chw_u8(uint8_t *dst, int C, int H, int W, const uint8_t *src, int h, int w, int c);
#endif
