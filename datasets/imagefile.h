/* datasets/imagefile.h: JPEG (libjpeg) and PNG (libpng) files <-> 8-bit images in memory, (h, w, c)
 * interleaved, c = 1 (gray) or 3 (RGB). Files are untrusted input: the format is chosen by the first bytes
 * (not the name), sizes are bounded, and every failure names the file and the library's message:
 *   data/dtd/images/test/12.jpg: JPEG: Premature end of JPEG file
 * Decoding follows PIL's Image.open(...).convert("RGB") where the two can differ: libjpeg's defaults (islow
 * DCT, fancy upsampling) are PIL's; PNG palettes and low bit depths expand to 8 bits, 16-bit samples keep
 * their high byte, an alpha channel is dropped (as convert("RGB") does). CMYK JPEGs are refused, and so is a
 * JPEG cut short (libjpeg would pad it with gray; PIL raises "image file is truncated"). */
#ifndef DATASETS_IMAGEFILE_H
#define DATASETS_IMAGEFILE_H
#include <stdint.h>

#include "core/common.h"

#define IMAGEFILE_MAX_SIDE 32768        /* larger width or height is refused */
#define IMAGEFILE_MAX_PIXELS 200000000u /* w * h bound (600 MB as RGB) */

typedef struct Image8 {
    int h, w, c;  /* c: 1 or 3 */
    uint8_t *px;  /* (h, w, c), malloc'ed */
} Image8;

/* Reads a JPEG or PNG file into *im (px malloc'ed; free with image8_free). On failure *im is zeroed. */
int image_read(Image8 *im, const char *path, Error *err);
/* PNG, 8 bits per sample, c = 1 (gray) or 3 (RGB), fixed settings (no time chunk), so the same pixels give
 * the same bytes with the same libpng/zlib. */
int image_write_png(const char *path, const uint8_t *px, int h, int w, int c, Error *err);
/* Baseline JPEG at quality (1..100), c = 1 or 3 (4:2:0 chroma, libjpeg's defaults). */
int image_write_jpeg(const char *path, const uint8_t *px, int h, int w, int c, int quality, Error *err);
void image8_free(Image8 *im);
#endif
