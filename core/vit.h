/* core/vit.h: a Vision Transformer (timm's VisionTransformer layout, pre-norm blocks) with explicit
 * forward and backward, parameters in one ParamSet under timm's names:
 *   patch_embed.proj.{weight (D,C,p,p), bias}, cls_token (1,1,D), pos_embed (1,T,D),
 *   blocks.i.norm1.{weight,bias}, blocks.i.attn.qkv.{weight (3D,D), bias}, blocks.i.attn.proj.*,
 *   blocks.i.norm2.*, blocks.i.mlp.fc1.*, blocks.i.mlp.fc2.*, norm.*, head.{weight (K,D), bias}.
 * Adapter targets (AdapterTarget names): blocks.i.attn.qkv, blocks.i.attn.qkv:q / :k / :v (thirds of the fused
 * qkv), blocks.i.attn.proj, blocks.i.mlp.fc1, blocks.i.mlp.fc2, head. */
#ifndef CORE_VIT_H
#define CORE_VIT_H
#include "adapter.h"
#include "arena.h"
#include "common.h"
#include "cpu/tokens.h"
#include "params.h"

typedef struct ViTConfig {
    int img_size, in_ch, patch; /* square images, img_size divisible by patch */
    int dim, depth, heads, mlp_hidden;
    int n_classes;
    TokenPool pool;   /* POOL_CLS (timm 'token') or POOL_MEAN (timm 'avg', patch tokens only) */
    float ln_eps;     /* timm: 1e-6 */
    int init_torch;   /* 0: timm's init (below); 1: PyTorch module defaults (Linear: kaiming-uniform(a=sqrt 5)
                         weight and U(+-1/sqrt(fan_in)) bias; cls 0; pos N(0, .02)) */
} ViTConfig;

typedef struct ViTBlock {
    int n1w, n1b, n2w, n2b;
    LinearSlot qkv, proj, fc1, fc2;
} ViTBlock;

typedef struct ViTActs { /* one block's saved activations, (B*T, .) rows */
    float *ln1, *ln1_mean, *ln1_rstd, *qkv, *att, *atty, *x_attn, *ln2, *ln2_mean, *ln2_rstd, *h, *g, *x_out;
} ViTActs;

typedef struct ViT {
    ViTConfig cfg;
    int T, NP;
    ParamSet params;
    int patch_w, patch_b, cls, pos, norm_w, norm_b;
    ViTBlock *blocks;
    LinearSlot patch_slot, head;
    AdapterTarget *targets;
    int n_targets;
    /* the last forward's activations (arena memory) */
    int B;
    const float *img;
    float *patches, *pe, *x0, *lnf, *lnf_mean, *lnf_rstd, *pooled;
    ViTActs *acts;
} ViT;

/* Validates the config (names the bad field), registers and allocates parameters (zeroed). */
int vit_build(ViT *m, const ViTConfig *cfg, Error *err);
/* cfg.init_torch = 0 (timm): Linear weights trunc_normal(std .02), biases 0, pos_embed trunc_normal(.02),
 * cls_token N(0, 1e-6), patch embedding as PyTorch's Conv2d default, LayerNorm (1, 0). */
void vit_init_params(ViT *m, uint64_t seed);
/* logits (B, K); img (B, C, H, W). Activations come from ar and stay there for vit_backward. */
void vit_forward(ViT *m, float *logits, const float *img, int B, Arena *ar);
/* dlogits (B, K). ACCUMULATES into the trainable parameters' grads (model and adapters); frozen
 * weights cost no weight-gradient GEMM; stops below the lowest layer that has anything to train. */
void vit_backward(ViT *m, const float *dlogits, Arena *ar);
void vit_free(ViT *m);
#endif
