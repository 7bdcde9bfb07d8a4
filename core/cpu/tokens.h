/* core/cpu/tokens.h: the ViT token plumbing around the transformer blocks.
 * patchify: non-overlapping p x p patches in (c, kh, kw) order, so patch embedding = patchify + linear with
 * the conv weight (D, C_in, p, p) read as (D, C_in*p*p) — exactly timm's Conv2d(kernel = stride = p).
 * tokens: x (B,T,D) = [cls ; patch embeddings] + pos (T = NP + 1). pooling: CLS token or the mean of the
 * patch tokens (timm's global_pool='avg' excludes the CLS token). */
#ifndef CORE_CPU_TOKENS_H
#define CORE_CPU_TOKENS_H

/* out (B, NP, C*p*p), NP = (H/p)*(W/p) row-major over the patch grid; img (B,C,H,W). */
void patchify(float *out, const float *img, int B, int C, int H, int W, int p);
/* x (B,T,D) = concat(cls (D), pe (B,NP,D)) + pos (T,D). */
void tokens_forward(float *x, const float *pe, const float *cls, const float *pos, int B, int NP, int D);
/* ACCUMULATES dpe (B,NP,D), dcls (D), dpos (T,D); any may be NULL. */
void tokens_backward(float *dpe, float *dcls, float *dpos, const float *dx, int B, int NP, int D);

typedef enum { POOL_CLS = 0, POOL_MEAN = 1 } TokenPool;
/* out (B,D) from x (B,T,D). */
void token_pool_forward(float *out, const float *x, int B, int T, int D, TokenPool mode);
/* ACCUMULATES dx (B,T,D). */
void token_pool_backward(float *dx, const float *dout, int B, int T, int D, TokenPool mode);

/* out (n) = a + b (residual connections); in-place safe. */
void add_forward(float *out, const float *a, const float *b, long n);
#endif
