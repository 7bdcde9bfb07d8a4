/* datasets/imagefile.c: JPEG / PNG reading and writing (contract in imagefile.h). Both libraries report
 * errors by longjmp; everything that must survive the jump lives in a context struct, not in locals. */
#include "datasets/imagefile.h"

#include <errno.h>
#include <setjmp.h>
#include <string.h>

#include <jpeglib.h>
#include <jerror.h>
#include <png.h>

void image8_free(Image8 *im) {
    if (!im) return;
    free(im->px);
    memset(im, 0, sizeof *im);
}

static int check_size(const char *path, const char *fmt, long w, long h, Error *err) {
    if (w <= 0 || h <= 0 || w > IMAGEFILE_MAX_SIDE || h > IMAGEFILE_MAX_SIDE ||
        (unsigned long long)w * (unsigned long long)h > IMAGEFILE_MAX_PIXELS)
        return err_set(err, "%s: %s: image size %ldx%ld out of range (each side 1..%d, at most %u pixels)", path, fmt,
                       w, h, IMAGEFILE_MAX_SIDE, IMAGEFILE_MAX_PIXELS);
    return 0;
}

/* ---- JPEG ----------------------------------------------------------------------------------------------- */
typedef struct JpegCtx {
    struct jpeg_error_mgr mgr; /* first: libjpeg hands us a pointer to it */
    jmp_buf jump;
    char msg[JMSG_LENGTH_MAX];
    uint8_t *px;
    FILE *f;
    int truncated;
} JpegCtx;

static void jpeg_fail(j_common_ptr cinfo) {
    JpegCtx *c = (JpegCtx *)cinfo->err;
    c->mgr.format_message(cinfo, c->msg);
    longjmp(c->jump, 1);
}
static void jpeg_quiet(j_common_ptr cinfo, int level) {
    /* warnings (level -1: corrupt data that libjpeg repairs) are not printed, as PIL; but a file cut short
     * (libjpeg pads it with gray) is an error, as PIL's "image file is truncated" */
    JpegCtx *c = (JpegCtx *)cinfo->err;
    if (level < 0 && c->mgr.msg_code == JWRN_JPEG_EOF) c->truncated = 1;
}

static int read_jpeg(Image8 *im, FILE *f, const char *path, Error *err) {
    struct jpeg_decompress_struct cinfo;
    JpegCtx *c = xcalloc(1, sizeof *c);
    c->f = f;
    cinfo.err = jpeg_std_error(&c->mgr);
    c->mgr.error_exit = jpeg_fail;
    c->mgr.emit_message = jpeg_quiet;
    if (setjmp(c->jump)) {
        err_set(err, "%s: JPEG: %s", path, c->msg);
        jpeg_destroy_decompress(&cinfo);
        free(c->px);
        free(c);
        return -1;
    }
    jpeg_create_decompress(&cinfo);
    jpeg_stdio_src(&cinfo, c->f);
    jpeg_read_header(&cinfo, TRUE);
    if (cinfo.num_components == 1) cinfo.out_color_space = JCS_GRAYSCALE;
    else if (cinfo.jpeg_color_space == JCS_YCbCr || cinfo.jpeg_color_space == JCS_RGB) cinfo.out_color_space = JCS_RGB;
    else {
        snprintf(c->msg, sizeof c->msg, "color space %d with %d components is not supported (CMYK/YCCK?): "
                 "convert the file to RGB", (int)cinfo.jpeg_color_space, cinfo.num_components);
        longjmp(c->jump, 1);
    }
    if (check_size(path, "JPEG", (long)cinfo.image_width, (long)cinfo.image_height, err)) {
        jpeg_destroy_decompress(&cinfo);
        free(c);
        return -1;
    }
    jpeg_start_decompress(&cinfo);
    int w = (int)cinfo.output_width, h = (int)cinfo.output_height, ch = cinfo.output_components;
    ASSERT(ch == 1 || ch == 3);
    c->px = xmalloc((size_t)w * h * ch);
    while (cinfo.output_scanline < cinfo.output_height) {
        JSAMPROW row = c->px + (size_t)cinfo.output_scanline * w * ch;
        jpeg_read_scanlines(&cinfo, &row, 1);
    }
    if (c->truncated) {
        snprintf(c->msg, sizeof c->msg, "file is truncated (premature end of JPEG data)");
        longjmp(c->jump, 1);
    }
    jpeg_finish_decompress(&cinfo);
    jpeg_destroy_decompress(&cinfo);
    *im = (Image8){.h = h, .w = w, .c = ch, .px = c->px};
    free(c);
    return 0;
}

int image_write_jpeg(const char *path, const uint8_t *px, int h, int w, int c, int quality, Error *err) {
    ASSERT(px && h > 0 && w > 0 && (c == 1 || c == 3) && quality >= 1 && quality <= 100);
    FILE *f = fopen(path, "wb");
    if (!f) return err_set(err, "%s: cannot create: %s", path, strerror(errno));
    struct jpeg_compress_struct cinfo;
    JpegCtx *ctx = xcalloc(1, sizeof *ctx);
    ctx->f = f;
    cinfo.err = jpeg_std_error(&ctx->mgr);
    ctx->mgr.error_exit = jpeg_fail;
    if (setjmp(ctx->jump)) {
        err_set(err, "%s: JPEG: %s", path, ctx->msg);
        jpeg_destroy_compress(&cinfo);
        fclose(ctx->f);
        free(ctx);
        return -1;
    }
    jpeg_create_compress(&cinfo);
    jpeg_stdio_dest(&cinfo, ctx->f);
    cinfo.image_width = (JDIMENSION)w;
    cinfo.image_height = (JDIMENSION)h;
    cinfo.input_components = c;
    cinfo.in_color_space = c == 3 ? JCS_RGB : JCS_GRAYSCALE;
    jpeg_set_defaults(&cinfo);
    jpeg_set_quality(&cinfo, quality, TRUE);
    jpeg_start_compress(&cinfo, TRUE);
    while (cinfo.next_scanline < cinfo.image_height) {
        JSAMPROW row = (JSAMPROW)(px + (size_t)cinfo.next_scanline * w * c);
        jpeg_write_scanlines(&cinfo, &row, 1);
    }
    jpeg_finish_compress(&cinfo);
    jpeg_destroy_compress(&cinfo);
    int rc = fclose(ctx->f);
    free(ctx);
    if (rc) return err_set(err, "%s: write error: %s", path, strerror(errno));
    return 0;
}

/* ---- PNG ------------------------------------------------------------------------------------------------ */
typedef struct PngCtx {
    char msg[256];
    uint8_t *px;
    png_bytep *rows;
} PngCtx;

static void png_fail(png_structp png, png_const_charp msg) {
    PngCtx *c = png_get_error_ptr(png);
    snprintf(c->msg, sizeof c->msg, "%s", msg);
    png_longjmp(png, 1);
}
static void png_quiet(png_structp png, png_const_charp msg) {
    (void)png;
    (void)msg;
}

static int read_png(Image8 *im, FILE *f, const char *path, Error *err) {
    PngCtx *c = xcalloc(1, sizeof *c);
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, c, png_fail, png_quiet);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!png || !info) {
        png_destroy_read_struct(&png, NULL, NULL);
        free(c);
        return err_set(err, "%s: PNG: out of memory", path);
    }
    if (setjmp(png_jmpbuf(png))) {
        err_set(err, "%s: PNG: %s", path, c->msg);
        png_destroy_read_struct(&png, &info, NULL);
        free(c->px);
        free(c->rows);
        free(c);
        return -1;
    }
    png_init_io(png, f);
    png_set_user_limits(png, IMAGEFILE_MAX_SIDE, IMAGEFILE_MAX_SIDE);
    png_read_info(png, info);
    png_uint_32 w = png_get_image_width(png, info), h = png_get_image_height(png, info);
    int ctype = png_get_color_type(png, info), depth = png_get_bit_depth(png, info);
    if (check_size(path, "PNG", (long)w, (long)h, err)) {
        png_destroy_read_struct(&png, &info, NULL);
        free(c);
        return -1;
    }
    /* to 8-bit gray or RGB: expand palettes and 1/2/4-bit gray, keep the high byte of 16-bit samples, drop
     * alpha and tRNS (convert("RGB") ignores transparency) */
    if (ctype == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if (ctype == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
    if (depth == 16) png_set_strip_16(png);
    if (ctype & PNG_COLOR_MASK_ALPHA) png_set_strip_alpha(png);
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    int ch = png_get_channels(png, info);
    if (png_get_bit_depth(png, info) != 8 || (ch != 1 && ch != 3)) {
        snprintf(c->msg, sizeof c->msg, "unsupported layout after expansion: %d channels of %d bits", ch,
                 png_get_bit_depth(png, info));
        png_longjmp(png, 1);
    }
    c->px = xmalloc((size_t)w * h * ch);
    c->rows = xmalloc(sizeof(png_bytep) * h);
    for (png_uint_32 r = 0; r < h; r++) c->rows[r] = c->px + (size_t)r * w * ch;
    png_read_image(png, c->rows);
    png_read_end(png, NULL);
    png_destroy_read_struct(&png, &info, NULL);
    *im = (Image8){.h = (int)h, .w = (int)w, .c = ch, .px = c->px};
    free(c->rows);
    free(c);
    return 0;
}

int image_write_png(const char *path, const uint8_t *px, int h, int w, int c, Error *err) {
    ASSERT(px && h > 0 && w > 0 && (c == 1 || c == 3));
    FILE *f = fopen(path, "wb");
    if (!f) return err_set(err, "%s: cannot create: %s", path, strerror(errno));
    PngCtx *ctx = xcalloc(1, sizeof *ctx);
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, ctx, png_fail, png_quiet);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!png || !info) {
        png_destroy_write_struct(&png, NULL);
        fclose(f);
        free(ctx);
        return err_set(err, "%s: PNG: out of memory", path);
    }
    ctx->rows = xmalloc(sizeof(png_bytep) * (size_t)h);
    if (setjmp(png_jmpbuf(png))) {
        err_set(err, "%s: PNG: %s", path, ctx->msg);
        png_destroy_write_struct(&png, &info);
        fclose(f);
        free(ctx->rows);
        free(ctx);
        return -1;
    }
    png_init_io(png, f);
    png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, 8, c == 3 ? PNG_COLOR_TYPE_RGB : PNG_COLOR_TYPE_GRAY,
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    /* small images: fast deflate, no filter search (most time of the mini-VTAB generation was in zlib) */
    png_set_compression_level(png, 1);
    png_set_filter(png, PNG_FILTER_TYPE_BASE, PNG_FILTER_NONE);
    png_write_info(png, info);
    for (int r = 0; r < h; r++) ctx->rows[r] = (png_bytep)(px + (size_t)r * w * c);
    png_write_image(png, ctx->rows);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    free(ctx->rows);
    free(ctx);
    if (fclose(f)) return err_set(err, "%s: write error: %s", path, strerror(errno));
    return 0;
}

/* ---- dispatch by magic ---------------------------------------------------------------------------------- */
int image_read(Image8 *im, const char *path, Error *err) {
    ASSERT(im && path);
    memset(im, 0, sizeof *im);
    FILE *f = fopen(path, "rb");
    if (!f) return err_set(err, "%s: cannot open: %s", path, strerror(errno));
    unsigned char magic[8] = {0};
    size_t got = fread(magic, 1, sizeof magic, f);
    rewind(f);
    int rc;
    if (got >= 3 && magic[0] == 0xFF && magic[1] == 0xD8 && magic[2] == 0xFF) rc = read_jpeg(im, f, path, err);
    else if (got == 8 && !png_sig_cmp(magic, 0, 8)) rc = read_png(im, f, path, err);
    else
        rc = err_set(err, "%s: not a JPEG or PNG file (first bytes %02x %02x %02x %02x, %zu bytes read)", path,
                     magic[0], magic[1], magic[2], magic[3], got);
    fclose(f);
    return rc;
}
