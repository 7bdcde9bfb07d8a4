/* core/cuda/cuda_vit.cu: the ViT LoRA training step on the device (cuda_vit.h says what it computes). The
 * forward and backward mirror core/vit.c call for call, with the ops of cuda_ops.h; differences, all for
 * memory or speed: the residual adds are the GEMMs' C operand; ln1 is not kept (backward takes the adapters' dA
 * from the block input and ln1's statistics: Blk.merged_bwd; fc1's weight is stored transposed: fc1_t); attention keeps its output and log-sum-exp, never the T x T probabilities; the
 * scratch buffers of forward (ln out, GELU out) are reused by backward; the LoRA adapters of a block are folded
 * into its qkv GEMM (Blk.fold; LORALAB_LORA_FOLD=0 keeps them as separate thin GEMMs); the whole step is
 * replayed as a CUDA graph (cuda_vit_set_graph). Saved per block and token: qkv (3D), attention out (D),
 * x_attn (D), fc1 output h (H), x_out (D), LN statistics, lse and LoRA's x A^T (r per adapter; folded: kept
 * unless LORALAB_LORA_KEEP_XA=0). */
#include <math.h>
#include <string.h>

#include "cuda_internal.cuh"
#include "cuda_ops.h"
#include "cuda_vit_desc.h"

struct Blk {
    /* frozen weights (bf16) */
    bf16 *n1w, *n1b, *qkv_w, *qkv_b, *proj_w, *proj_b, *n2w, *n2b, *fc1_w, *fc1_b, *fc2_w, *fc2_b;
    CvLora lora[CUDA_VIT_MAX_LORA];
    int n_lora;
    /* LoRA folded into the qkv GEMM (fold = 1): qkv_w is W_ext (3D, ld) = [W | scale_j B_j in rows row0_j..,
     * columns D + col_j.. | 0 | bias (column D + xw) | 0], the ln1 output carries x A_cat^T in columns D..D+R
     * (A_cat: the block's A's stacked, contiguous in the trainable buffers) and a 1 in column D + xw, so
     * qkv = [ln1 | x A_cat^T | 0 | 1 | 0] W_ext^T is one GEMM with K = ld, the bias included */
    int fold, R, ld, col[CUDA_VIT_MAX_LORA];
    int xw; /* the x A_cat^T columns: R rounded up to 8 (ld >= D + xw + 1) */
    /* keep_xa (LORALAB_LORA_KEEP_XA=0 turns it off): forward keeps x A_cat^T (xa_cat, (BT, xw)) so that
     * backward does not compute it again from ln1 (a thin GEMM reading ln1 for 0.4 MB at batch 64) */
    int keep_xa;
    /* merged_bwd (needs keep_xa; LORALAB_LORA_BWD=separate turns it off): backward's dX GEMM uses
     * W_bwd = [W + scale B A_cat | scale B] (built per block into g->wbwd), so dln1 comes out with the adapters'
     * path already added (no dln1 += dxa A_cat GEMM), and dA_cat comes from the block input x and ln1's
     * statistics (lora_da_from_x) instead of from ln1 computed again */
    int merged_bwd;
    /* saved activations (arena) */
    float *mean1, *rstd1, *mean2, *rstd2, *lse;
    bf16 *qkv, *o, *x_attn, *h, *x_out, *xa[CUDA_VIT_MAX_LORA], *xa_cat;
};

/* Optional per-phase timing (cuda_vit_profile): an event before each phase, the elapsed times summed by
 * phase after the step. */
enum Phase { PH_EMBED, PH_LN, PH_QKV, PH_LORA, PH_ATTN, PH_PROJ, PH_FC1, PH_GELU, PH_FC2, PH_HEAD, PH_B_FC2, PH_B_GELU,
             PH_B_FC1, PH_B_LN, PH_B_PROJ, PH_B_ATTN, PH_B_QKV, PH_B_LORA, PH_B_LORA_DB, PH_B_LORA_DA, PH_ADAMW, PH_END,
             PH_N };
static const char *PHASE_NAMES[PH_N] = {"patch embed + tokens", "layernorm fwd", "qkv GEMM", "LoRA fwd", "attention fwd",
                                        "proj GEMM (+res)", "fc1 GEMM", "GELU fwd", "fc2 GEMM (+res)", "head + xent",
                                        "bwd fc2 dX", "GELU bwd", "bwd fc1 dX", "layernorm bwd (+ln1 again)",
                                        "bwd proj dX", "attention bwd", "bwd qkv dX", "LoRA bwd", "LoRA bwd dB (folded)",
                                        "LoRA bwd dA (folded)", "AdamW", "end"};
#define PROF_MAX 2048
struct Prof {
    int on, n, steps;
    cudaEvent_t ev[PROF_MAX];
    int ph[PROF_MAX];
    double ms[PH_N];
};

#define GRAPHS_MAX 4
struct CudaVit {
    Prof prof;
    CvDesc d;
    CvTrain *train;
    Blk *blk;
    int T, NP, B, low, r_max;
    /* parameters */
    bf16 *frozen;
    size_t frozen_bytes;
    bf16 *patch_w, *patch_b, *cls, *pos, *norm_w, *norm_b, *head_w16;
    float *head_b32; /* the head bias in f32 (the logits GEMM's epilogue type) */
    float *head_frozen32;
    float *tp, *tg, *tm, *tv; /* trainable: f32 master, grad, AdamW m, v */
    bf16 *tp16;               /* their bf16 copies */
    long *toff, n_tp, n_decay;
    long t;                   /* AdamW steps */
    /* activations */
    CudaArena ar;
    bf16 *img, *patches, *pe, *x0, *lnbuf, *atty, *gbuf, *pooled, *dlogits, *dpooled, *dx, *dln, *dqkv, *dxa;
    bf16 *cls_raw; /* CLS pooling: the CLS rows before the final norm (B, D), the norm's input */
    float *meanf, *rstdf, *logits, *probs, *loss;
    int *labels;
    void *att_scratch;
    float *db_scratch; /* the LoRA dB / dA kernel's partial sums (cuda_lora_db_jobs) */
    bf16 *host_img16; /* host staging for set_batch's f32 -> bf16 conversion */
    /* the runner's additions (cuda_vit_desc.h): loss-gradient scale, the reduce hook, the gradient norm */
    float grad_scale;
    void (*reduce)(void *ctx, float *grads, long n, float *loss);
    void *reduce_ctx;
    int gnorm_on;
    float *gnorm_part; /* GNORM_BLOCKS partial sums of squares, then [GNORM_BLOCKS] = the norm */
    /* CUDA graphs of the whole step (forward, backward, gradient norm, AdamW), one per batch size (the arena
     * is carved the same way for the same B, so a graph stays valid across set_batch calls): a batch size's
     * first step runs eagerly (it makes the cuBLASLt plans), its second is captured, later ones replay. The
     * step's scalars (lr and AdamW's bias corrections) are read from `hyper` on the device. */
    int graph_on;
    struct { int B, eager_steps; cudaGraphExec_t exec; } graphs[GRAPHS_MAX];
    int n_graphs;
    float *hyper;
    /* the folded LoRA: ln1 / its gradient row stride (max over blocks), and the jobs that write scale B into
     * W_ext from the f32 masters (lora_fold, at the start of every forward) */
    int ln_ld, n_fold_jobs;
    /* fc1_t (LORALAB_FC1_T=0 turns it off): fc1's weight stored transposed, (D, H): its forward GEMM with the bias
     * epilogue is the non-transposed cuBLASLt layout, ~13 % faster at batch 256 (docs/engine.md), its dX GEMM as
     * fast as before */
    int fc1_t;
    int da_kernel; /* the merged dA's G = x^T u by cuda_lora_db_jobs (LORALAB_LORA_DA=cublas: by cuBLASLt) */
    struct FoldJob *fold_jobs; /* device */
    /* the merged LoRA backward's scratch (Blk.merged_bwd): W_bwd (3D, max ld) bf16, G = u^T x (R_max, D) f32, the
     * per-chunk column sums of dxa and u mean (LDA_CHUNKS, 2, ld_max - D) f32 */
    bf16 *wbwd;
    float *lda_g, *lda_part;
    /* the initializers' data passes (cuda_vit_input_moments, cuda_vit_qkv_grads): per block its slot in the
     * accumulators (-1: not selected); device buffers allocated at a pass's first call, never in a step */
    int *mo_slot, mo_on, mo_psm, n_mo;
    float *mo_S, *mo_scale; /* (n_mo, Dp, Dp) moments of [X | 1], (max_batch) per-image 1 / max |x| */
    int *gw_slot, gw_on, n_gw;
    float *gw;              /* (n_gw, 3D, D) accumulated dL/dW_qkv */
};
#define GNORM_BLOCKS 64

static void mark(CudaVit *g, int ph) {
    Prof *p = &g->prof;
    if (!p->on) return;
    CUDA_ASSERT(p->n < PROF_MAX);
    CUDA_CHECK(cudaEventRecord(p->ev[p->n], g_cuda.stream));
    p->ph[p->n++] = ph;
}
static void prof_collect(CudaVit *g) {
    Prof *p = &g->prof;
    if (!p->on) return;
    CUDA_CHECK(cudaEventSynchronize(p->ev[p->n - 1]));
    for (int i = 0; i + 1 < p->n; i++) {
        float ms = 0;
        CUDA_CHECK(cudaEventElapsedTime(&ms, p->ev[i], p->ev[i + 1]));
        p->ms[p->ph[i]] += ms;
    }
    p->n = 0;
    p->steps++;
}

extern "C" void cuda_vit_profile(CudaVit *g, int on) {
    Prof *p = &g->prof;
    if (on && !p->on)
        for (int i = 0; i < PROF_MAX; i++) CUDA_CHECK(cudaEventCreate(&p->ev[i]));
    if (!on && p->on)
        for (int i = 0; i < PROF_MAX; i++) CUDA_CHECK(cudaEventDestroy(p->ev[i]));
    p->on = on;
    p->n = p->steps = 0;
    memset(p->ms, 0, sizeof p->ms);
}

extern "C" void cuda_vit_profile_print(CudaVit *g, FILE *f) {
    Prof *p = &g->prof;
    double total = 0;
    for (int i = 0; i < PH_N; i++) total += p->ms[i];
    if (!p->steps) return;
    fprintf(f, "per-phase device time, mean of %d steps (events between phases; total %.2f ms/step):\n", p->steps,
            total / p->steps);
    for (int i = 0; i < PH_N; i++)
        if (p->ms[i] > 0)
            fprintf(f, "  %-28s %8.3f ms  %5.1f%%\n", PHASE_NAMES[i], p->ms[i] / p->steps, 100 * p->ms[i] / total);
}

/* cuda_vit.c: dst = bf16(src), round to nearest even, on the host's OpenMP threads (set_batch: 9.6 M values at
 * ViT-B/16 batch 64) */
extern "C" void cuda_vit_host_bf16(uint16_t *dst, const float *src, long n);

/* W_ext's adapter columns: dst[i * ld + c] = bf16(scale * B[i][c]) for B (m, r) f32, one job per adapter */
struct FoldJob {
    bf16d *dst;
    const float *src;
    int m, r, ld;
    float scale;
};
__global__ void lora_fold_kernel(const FoldJob *jobs) {
    FoldJob j = jobs[blockIdx.y];
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < j.m * j.r; i += gridDim.x * blockDim.x)
        j.dst[(long)(i / j.r) * j.ld + i % j.r] = __float2bfloat16_rn(j.scale * j.src[i]);
}
static void fold_jobs_make(CudaVit *g) {
    FoldJob jobs[CUDA_VIT_MAX_LORA * 512];
    int n = 0;
    for (int l = 0; l < g->d.depth; l++) {
        Blk *b = &g->blk[l];
        if (!b->fold) continue;
        for (int j = 0; j < b->n_lora; j++) {
            const CvLora *lo = &b->lora[j];
            jobs[n++] = FoldJob{(bf16d *)b->qkv_w + (long)lo->row0 * b->ld + g->d.D + b->col[j], g->tp + g->toff[lo->tB],
                                lo->m, lo->r, b->ld, lo->scale};
        }
    }
    g->n_fold_jobs = n;
    if (!n) return;
    g->fold_jobs = (FoldJob *)cuda_alloc(sizeof(FoldJob) * n, "LoRA fold jobs");
    CUDA_CHECK(cudaMemcpy(g->fold_jobs, jobs, sizeof(FoldJob) * n, cudaMemcpyHostToDevice));
}
/* scale B from the f32 masters into every folded block's W_ext (before each forward: AdamW moved B) */
static void lora_fold(CudaVit *g) {
    if (!g->n_fold_jobs) return;
    lora_fold_kernel<<<dim3(8, g->n_fold_jobs), 256, 0, g_cuda.stream>>>(g->fold_jobs);
    LAUNCH_CHECK();
}

/* ---- the merged LoRA backward (Blk.merged_bwd) ----------------------------------------------------------
 * W_bwd (3D, ld) = [W + Bs A_cat | Bs] with Bs = W_ext's adapter columns (scale_j B_j, bf16) and A_cat (R, D) bf16:
 * dqkv W_bwd = [dqkv W + (dqkv Bs) A_cat | dqkv Bs] = [dln1 with the adapters' path | dxa] in one GEMM. Sums in f32,
 * one bf16 rounding (rows without an adapter: Bs = 0, W unchanged bit for bit). A thread: 8 columns of a row. */
__global__ void lora_wbwd_kernel(bf16d *wb, const bf16d *wext, const bf16d *A, int rows, int D, int R, int ld) {
    long i = blockIdx.x * (long)blockDim.x + threadIdx.x;
    int packs = ld / 8;
    if (i >= (long)rows * packs) return;
    long row = i / packs;
    int c0 = (int)(i % packs) * 8;
    const bf16d *w = wext + row * ld;
    uint4 raw = *(const uint4 *)(w + c0);
    if (c0 < D) {
        const bf16d *wv = (const bf16d *)&raw;
        float acc[8];
#pragma unroll
        for (int e = 0; e < 8; e++) acc[e] = __bfloat162float(wv[e]);
        for (int k = 0; k < R; k++) {
            float bs = __bfloat162float(w[D + k]);
            if (bs == 0.0f) continue;
            uint4 ar = *(const uint4 *)(A + (long)k * D + c0);
            const bf16d *av = (const bf16d *)&ar;
#pragma unroll
            for (int e = 0; e < 8; e++) acc[e] = fmaf(bs, __bfloat162float(av[e]), acc[e]);
        }
        bf16d *o = (bf16d *)&raw;
#pragma unroll
        for (int e = 0; e < 8; e++) o[e] = __float2bfloat16_rn(acc[e]);
    }
    *(uint4 *)(wb + row * ld + c0) = raw;
}

/* dA_cat from the block input instead of ln1: with ln1 = (x - mu) rstd gamma + beta per row t,
 *   dA[k][j] = sum_t dxa[t][k] ln1[t][j] = gamma_j (G[k][j] - s1[k]) + beta_j s0[k],
 *   u[t][k] = bf16(dxa[t][k] rstd_t), G = u^T x, s1[k] = sum_t u[t][k] mu_t, s0[k] = sum_t dxa[t][k]
 * (s1 uses the rounded u that G uses, so G - s1 = sum_t u (x - mu) exactly as summed). Step 1 (this kernel):
 * u in place of dxa, per-chunk column sums of dxa and u mu (LDA_CHUNKS chunks of rows; a block (32, 8): 32
 * columns, 8 row lanes summed in a fixed order: deterministic). */
#define LDA_CHUNKS 512
__global__ void lora_da_scale_kernel(float *__restrict__ part, bf16d *__restrict__ dxa, int ld,
                                     const float *__restrict__ mean, const float *__restrict__ rstd, long BT, int R,
                                     int ldx) {
    __shared__ float sh[2][8][33];
    int k = blockIdx.y * 32 + threadIdx.x, ty = threadIdx.y;
    long per = (BT + LDA_CHUNKS - 1) / LDA_CHUNKS, t0 = blockIdx.x * per, t1 = t0 + per < BT ? t0 + per : BT;
    float s0 = 0.0f, s1 = 0.0f;
    if (k < R) {
#pragma unroll 4
        for (long t = t0 + ty; t < t1; t += 8) {
            bf16d *p = dxa + t * ld + k;
            float v = __bfloat162float(*p);
            bf16d u = __float2bfloat16_rn(v * rstd[t]);
            *p = u;
            s0 += v;
            s1 = fmaf(__bfloat162float(u), mean[t], s1);
        }
    }
    sh[0][ty][threadIdx.x] = s0;
    sh[1][ty][threadIdx.x] = s1;
    __syncthreads();
    if (ty == 0 && k < R) {
        float a = 0.0f, b = 0.0f;
        for (int y = 0; y < 8; y++) { a += sh[0][y][threadIdx.x]; b += sh[1][y][threadIdx.x]; }
        part[(long)blockIdx.x * 2 * ldx + k] = a;
        part[(long)blockIdx.x * 2 * ldx + ldx + k] = b;
    }
}
/* Step 3 (after G = u^T x, stored (D, R) row-major): dA[k][j] += gamma_j (G[j][k] - s1[k]) + beta_j s0[k]; a block of
 * 256 per k: the chunks' sums in a fixed tree (thread i adds chunks i, i + 256, then halves) */
__global__ void __launch_bounds__(256) lora_da_finish_kernel(float *dA, const float *G, const float *part,
                                                             const bf16d *gamma, const bf16d *beta, int D, int R,
                                                             int ldx) {
    __shared__ float s[2][256];
    int k = blockIdx.x, i = threadIdx.x;
    float a = 0.0f, b = 0.0f;
    for (int c = i; c < LDA_CHUNKS; c += 256) { a += part[(long)c * 2 * ldx + k]; b += part[(long)c * 2 * ldx + ldx + k]; }
    s[0][i] = a;
    s[1][i] = b;
    __syncthreads();
    for (int h = 128; h > 0; h /= 2) {
        if (i < h) { s[0][i] += s[0][i + h]; s[1][i] += s[1][i + h]; }
        __syncthreads();
    }
    for (int j = i; j < D; j += blockDim.x)
        dA[(long)k * D + j] += __bfloat162float(gamma[j]) * (G[(long)j * R + k] - s[1][0]) + __bfloat162float(beta[j]) * s[0][0];
}

/* Carves every activation buffer from ar for batch B (dry or real arena: same sequence both times). */
static void carve(CudaVit *g, CudaArena *ar, int B) {
    const CvDesc *d = &g->d;
    long BT = (long)B * g->T, D = d->D, H = d->H, NPB = (long)B * g->NP, Cpp = (long)d->in_ch * d->patch * d->patch;
#define A16(n) ((bf16 *)cuda_arena_alloc(ar, (size_t)(n) * sizeof(bf16)))
#define A32(n) ((float *)cuda_arena_alloc(ar, (size_t)(n) * sizeof(float)))
    g->img = A16((long)B * d->in_ch * d->img * d->img);
    g->patches = A16(NPB * Cpp);
    g->pe = A16(NPB * D);
    g->x0 = A16(BT * D);
    for (int l = 0; l < d->depth; l++) {
        Blk *b = &g->blk[l];
        if (d->infer_only && l >= 2) { /* forward only: block l reads block l - 1's output, so two sets suffice */
            Blk *s = &g->blk[l % 2];
            b->mean1 = s->mean1; b->rstd1 = s->rstd1; b->mean2 = s->mean2; b->rstd2 = s->rstd2; b->lse = s->lse;
            b->qkv = s->qkv; b->o = s->o; b->x_attn = s->x_attn; b->h = s->h; b->x_out = s->x_out;
            memcpy(b->xa, s->xa, sizeof b->xa);
            b->xa_cat = s->xa_cat;
            continue;
        }
        b->mean1 = A32(BT); b->rstd1 = A32(BT); b->mean2 = A32(BT); b->rstd2 = A32(BT);
        b->lse = A32((long)B * d->heads * g->T);
        b->qkv = A16(BT * 3 * D);
        b->o = A16(BT * D); /* attention output: proj's input, and the softmax backward's rowsum(dO * O) */
        b->x_attn = A16(BT * D);
        b->h = A16(BT * H);
        b->x_out = A16(BT * D);
        if (!b->fold)
            for (int j = 0; j < b->n_lora; j++) b->xa[j] = A16(BT * b->lora[j].r);
        if (b->keep_xa) b->xa_cat = A16(BT * b->xw);
    }
    g->meanf = A32(BT); g->rstdf = A32(BT);
    g->lnbuf = A16(BT * g->ln_ld);
    g->atty = A16(BT * D);  /* backward: the attention output's gradient */
    g->gbuf = A16(BT * H);  /* forward: GELU out; backward: dg, then dh in place */
    g->pooled = A16((long)B * D);
    g->cls_raw = A16((long)B * D);
    g->logits = A32((long)B * d->K);
    g->probs = A32((long)B * d->K);
    g->loss = A32(1);
    g->labels = (int *)cuda_arena_alloc(ar, (size_t)B * sizeof(int));
    g->dlogits = A16((long)B * d->K);
    g->dpooled = A16((long)B * D);
    g->dx = A16(BT * D);
    g->dln = A16(BT * g->ln_ld);
    g->dqkv = A16(BT * 3 * D);
    g->dxa = A16(BT * (g->r_max ? g->r_max : 1));
    g->att_scratch = cuda_arena_alloc(ar, cuda_attention_scratch_bytes(B, g->T, d->D, d->heads));
    long db_mr = 0; /* the largest block's sum of m r over its adapters (or D R for the merged dA): the partials */
    for (int l = 0; l < d->depth; l++) {
        const Blk *b = &g->blk[l];
        long s = 0;
        for (int j = 0; j < b->n_lora; j++) s += (long)b->lora[j].m * b->lora[j].r;
        if (b->merged_bwd && D * b->R > s) s = D * b->R;
        if (s > db_mr) db_mr = s;
    }
    g->db_scratch = db_mr ? (float *)cuda_arena_alloc(ar, cuda_lora_db_scratch_bytes((int)BT, db_mr)) : NULL;
#undef A16
#undef A32
}

/* dst (rows, ld) <- src (rows, cols) row-major, as bf16 */
__global__ void f32_to_bf16_rows_kernel(bf16d *dst, const float *src, long rows, long cols, long ld) {
    long i = blockIdx.x * (long)blockDim.x + threadIdx.x;
    if (i >= rows * cols) return;
    dst[(i / cols) * ld + i % cols] = __float2bfloat16_rn(src[i]);
}

/* column col of dst (rows, ld) <- src (rows): a folded block's qkv bias into W_ext (once, at create) */
__global__ void set_col_kernel(bf16d *dst, long ld, int col, const bf16d *src, long rows) {
    long r = blockIdx.x * (long)blockDim.x + threadIdx.x;
    if (r < rows) dst[r * ld + col] = src[r];
}

/* dst (cols, rows) <- src (rows, cols)^T, as bf16 (once, at create: the uncoalesced stores do not matter) */
__global__ void f32_to_bf16_transpose_kernel(bf16d *dst, const float *src, long rows, long cols) {
    long i = blockIdx.x * (long)blockDim.x + threadIdx.x;
    if (i >= rows * cols) return;
    dst[(i % cols) * rows + i / cols] = __float2bfloat16_rn(src[i]);
}

extern "C" CudaVit *cuda_vit_create_desc(const CvDesc *din, char *err) {
    if (cuda_init(err)) return NULL;
    const CvDesc *d = din;
    if (d->D % d->heads || d->img % d->patch) {
        snprintf(err, 256, "cuda_vit: dim %d / heads %d or img %d / patch %d do not divide", d->D, d->heads, d->img, d->patch);
        return NULL;
    }
    if (d->D % 8 || d->H % 8) {
        snprintf(err, 256, "cuda_vit: dim (%d) and mlp_hidden (%d) must be multiples of 8 (16-byte bf16 rows)", d->D, d->H);
        return NULL;
    }
    CudaVit *g = (CudaVit *)calloc(1, sizeof *g);
    g->d = *d;
    g->train = (CvTrain *)malloc(sizeof(CvTrain) * (d->n_train ? d->n_train : 1));
    memcpy(g->train, d->train, sizeof(CvTrain) * d->n_train);
    g->blk = (Blk *)calloc(d->depth, sizeof(Blk));
    g->NP = (d->img / d->patch) * (d->img / d->patch);
    g->T = g->NP + 1;
    g->low = d->depth;
    const char *fe = getenv("LORALAB_LORA_FOLD");
    int fold_on = !(fe && strcmp(fe, "0") == 0);
    const char *kx = getenv("LORALAB_LORA_KEEP_XA");
    int keep_xa = !(kx && strcmp(kx, "0") == 0);
    const char *mb = getenv("LORALAB_LORA_BWD");
    int merged_bwd = !(mb && strcmp(mb, "separate") == 0);
    g->ln_ld = d->D;
    const char *ft = getenv("LORALAB_FC1_T");
    g->fc1_t = !(ft && strcmp(ft, "0") == 0);
    const char *da = getenv("LORALAB_LORA_DA");
    g->da_kernel = !(da && strcmp(da, "cublas") == 0);
    for (int l = 0; l < d->depth; l++) {
        Blk *b = &g->blk[l];
        b->n_lora = d->blocks[l].n_lora;
        memcpy(b->lora, d->blocks[l].lora, sizeof b->lora);
        /* folded when the block's A's can sit side by side in one AdamW group (the same weight decay) */
        b->fold = fold_on && b->n_lora > 0;
        for (int j = 0; j < b->n_lora; j++) {
            b->fold &= g->train[b->lora[j].tA].decay == g->train[b->lora[0].tA].decay;
            b->col[j] = b->R;
            b->R += b->lora[j].r;
        }
        b->xw = (b->R + 7) & ~7; /* 16-byte rows */
        /* [ln1 | x A_cat^T | 0 | 1 (column D + xw: qkv's bias) | 0], rows of 64-byte multiples (ViT-B/16, r 8 on q
         * and v: 800): cuBLASLt's qkv GEMMs ran 10-25 % slower on 16-byte-aligned rows of 792 and ~25 % slower
         * with the bias epilogue than with the bias as a K column (K = 800, no extra K tile; docs/engine.md) */
        b->ld = (d->D + b->xw + 1 + 31) & ~31;
        b->keep_xa = b->fold && keep_xa;
        b->merged_bwd = b->keep_xa && merged_bwd;
        if (b->fold && b->ld > g->ln_ld) g->ln_ld = b->ld;
        for (int j = 0; j < b->n_lora && !b->fold; j++) g->r_max = b->lora[j].r > g->r_max ? b->lora[j].r : g->r_max;
        if (b->n_lora && l < g->low) g->low = l;
    }

    /* frozen weights: one bf16 allocation, every tensor at a 64-element (128-byte) aligned offset */
    long D = d->D, H = d->H, Cpp = (long)d->in_ch * d->patch * d->patch;
    /* rows > 0: (rows, n / rows) at row stride ld; tr: stored transposed, (n / rows, rows) */
    struct Item { bf16 **dst; const float *src; long n, rows, ld; int tr; };
    Item items[16 + 12 * 512];
    int ni = 0;
    items[ni++] = Item{&g->patch_w, d->patch_w, D * Cpp};
    items[ni++] = Item{&g->patch_b, d->patch_b, D};
    items[ni++] = Item{&g->cls, d->cls, D};
    items[ni++] = Item{&g->pos, d->pos, (long)g->T * D};
    items[ni++] = Item{&g->norm_w, d->norm_w, D};
    items[ni++] = Item{&g->norm_b, d->norm_b, D};
    if (d->head_w_t < 0) items[ni++] = Item{&g->head_w16, d->head_w, (long)d->K * D};
    if (d->depth > 512) { snprintf(err, 256, "cuda_vit: depth %d > 512", d->depth); free(g->blk); free(g->train); free(g); return NULL; }
    for (int l = 0; l < d->depth; l++) {
        Blk *b = &g->blk[l];
        const CvBlock *s = &d->blocks[l];
        items[ni++] = Item{&b->n1w, s->n1w, D};
        items[ni++] = Item{&b->n1b, s->n1b, D};
        items[ni++] = b->fold ? Item{&b->qkv_w, s->qkv_w, 3 * D * D, 3 * D, b->ld} : Item{&b->qkv_w, s->qkv_w, 3 * D * D};
        items[ni++] = Item{&b->qkv_b, s->qkv_b, 3 * D};
        items[ni++] = Item{&b->proj_w, s->proj_w, D * D};
        items[ni++] = Item{&b->proj_b, s->proj_b, D};
        items[ni++] = Item{&b->n2w, s->n2w, D};
        items[ni++] = Item{&b->n2b, s->n2b, D};
        items[ni++] = g->fc1_t ? Item{&b->fc1_w, s->fc1_w, H * D, H, D, 1} : Item{&b->fc1_w, s->fc1_w, H * D};
        items[ni++] = Item{&b->fc1_b, s->fc1_b, H};
        items[ni++] = Item{&b->fc2_w, s->fc2_w, D * H};
        items[ni++] = Item{&b->fc2_b, s->fc2_b, D};
    }
    long total = 0;
    for (int i = 0; i < ni; i++) total += ((items[i].rows ? items[i].rows * items[i].ld : items[i].n) + 63) & ~63L;
    g->frozen_bytes = (size_t)total * sizeof(bf16);
    g->frozen = (bf16 *)cuda_alloc(g->frozen_bytes, "frozen ViT weights (bf16)");
    /* f32 up, bf16 on the device (round to nearest even, as host_bf16): the host never converts 86 M values */
    cuda_memset0(g->frozen, g->frozen_bytes); /* W_ext's adapter columns start at 0 */
    long smax = 1;
    for (int i = 0; i < ni; i++) smax = items[i].n > smax ? items[i].n : smax;
    float *stage = (float *)cuda_alloc(sizeof(float) * smax, "frozen weight upload staging (f32)");
    long off = 0;
    for (int i = 0; i < ni; i++) {
        *items[i].dst = g->frozen + off;
        long rows = items[i].rows ? items[i].rows : 1, cols = items[i].n / rows, ld = items[i].rows ? items[i].ld : cols;
        cuda_upload_f32(stage, items[i].src, (size_t)items[i].n);
        if (items[i].tr)
            f32_to_bf16_transpose_kernel<<<cdiv(items[i].n, 256), 256, 0, g_cuda.stream>>>((bf16d *)(g->frozen + off),
                                                                                          stage, rows, cols);
        else
            f32_to_bf16_rows_kernel<<<cdiv(items[i].n, 256), 256, 0, g_cuda.stream>>>((bf16d *)(g->frozen + off), stage,
                                                                                      rows, cols, ld);
        LAUNCH_CHECK();
        off += (rows * ld + 63) & ~63L;
    }
    for (int l = 0; l < d->depth; l++) /* a folded block's qkv bias: W_ext's column D + xw (ln1's 1 there) */
        if (g->blk[l].fold) {
            Blk *b = &g->blk[l];
            set_col_kernel<<<cdiv(3 * D, 256), 256, 0, g_cuda.stream>>>((bf16d *)b->qkv_w, b->ld, (int)D + b->xw,
                                                                        (const bf16d *)b->qkv_b, 3 * D);
            LAUNCH_CHECK();
        }
    cuda_sync();
    cuda_free(stage);

    /* trainable tensors: decayed first, then the rest, so AdamW is two launches; a folded block's A's side by
     * side (A_cat), the group and every other tensor at 64-element offsets */
    g->toff = (long *)malloc(sizeof(long) * (d->n_train ? d->n_train : 1));
    char *placed = (char *)calloc(d->n_train ? d->n_train : 1, 1);
    long o = 0;
    for (int pass = 1; pass >= 0; pass--) {
        for (int l = 0; l < d->depth; l++) {
            Blk *b = &g->blk[l];
            if (!b->fold || (g->train[b->lora[0].tA].decay != 0) != (pass == 1)) continue;
            for (int j = 0; j < b->n_lora; j++) {
                g->toff[b->lora[j].tA] = o;
                placed[b->lora[j].tA] = 1;
                o += g->train[b->lora[j].tA].n;
            }
            o = (o + 63) & ~63L;
        }
        for (int i = 0; i < d->n_train; i++)
            if (!placed[i] && (g->train[i].decay != 0) == (pass == 1)) {
                g->toff[i] = o;
                o += (g->train[i].n + 63) & ~63L;
            }
        if (pass == 1) g->n_decay = o;
    }
    free(placed);
    g->n_tp = o;
    size_t nb = (size_t)(o ? o : 64);
    g->tp = (float *)cuda_alloc(nb * 4, "trainable f32 master weights");
    g->tg = (float *)cuda_alloc(nb * 4, "trainable gradients");
    g->tm = (float *)cuda_alloc(nb * 4, "AdamW m");
    g->tv = (float *)cuda_alloc(nb * 4, "AdamW v");
    g->tp16 = (bf16 *)cuda_alloc(nb * 2, "trainable bf16 copies");
    float *host = (float *)calloc(nb, sizeof(float));
    for (int i = 0; i < d->n_train; i++) memcpy(host + g->toff[i], g->train[i].host, sizeof(float) * g->train[i].n);
    cuda_upload_f32(g->tp, host, nb);
    free(host);
    cuda_f32_to_bf16(g->tp16, g->tp, (long)nb);
    cuda_memset0(g->tm, nb * 4);
    cuda_memset0(g->tv, nb * 4);
    cuda_memset0(g->tg, nb * 4);
    for (int i = 0; i < d->n_train; i++) { /* a resumed run: AdamW state from the host */
        if (g->train[i].host_m) cuda_upload_f32(g->tm + g->toff[i], g->train[i].host_m, g->train[i].n);
        if (g->train[i].host_v) cuda_upload_f32(g->tv + g->toff[i], g->train[i].host_v, g->train[i].n);
    }
    g->t = d->adam_t;
    g->grad_scale = 1.0f;
    g->gnorm_part = (float *)cuda_alloc(sizeof(float) * (GNORM_BLOCKS + 1), "gradient norm partial sums");
    g->hyper = (float *)cuda_alloc(sizeof(float) * 3, "AdamW step scalars");
    fold_jobs_make(g);
    int ld_max = 0, r_cat = 0, xw_max = 0;
    for (int l = 0; l < d->depth; l++)
        if (g->blk[l].merged_bwd) {
            ld_max = g->blk[l].ld > ld_max ? g->blk[l].ld : ld_max;
            r_cat = g->blk[l].R > r_cat ? g->blk[l].R : r_cat;
            xw_max = g->blk[l].xw > xw_max ? g->blk[l].xw : xw_max;
        }
    if (ld_max) {
        g->wbwd = (bf16 *)cuda_alloc(sizeof(bf16) * 3 * (size_t)d->D * ld_max, "LoRA backward weight W_bwd");
        g->lda_g = (float *)cuda_alloc(sizeof(float) * ((size_t)r_cat * d->D + (size_t)LDA_CHUNKS * 2 * xw_max),
                                       "LoRA dA scratch");
        g->lda_part = g->lda_g + (size_t)r_cat * d->D;
    }
    const char *ge = getenv("LORALAB_CUDA_GRAPH");
    g->graph_on = !(ge && strcmp(ge, "0") == 0);
    if (d->head_w_t >= 0) g->head_w16 = g->tp16 + g->toff[d->head_w_t];
    if (d->head_b_t >= 0) {
        g->head_b32 = g->tp + g->toff[d->head_b_t];
    } else {
        g->head_frozen32 = (float *)cuda_alloc(sizeof(float) * d->K, "frozen head bias (f32)");
        cuda_upload_f32(g->head_frozen32, d->head_b, d->K);
        g->head_b32 = g->head_frozen32;
    }

    /* activations: a dry pass sizes the arena, the real pass carves it */
    CudaArena dry;
    cuda_arena_init(&dry, 0, "dry");
    carve(g, &dry, d->max_batch);
    cuda_arena_init(&g->ar, dry.high, "ViT activations");
    carve(g, &g->ar, d->max_batch);
    g->host_img16 = (bf16 *)malloc(sizeof(bf16) * (size_t)d->max_batch * d->in_ch * d->img * d->img);
    g->B = 0;
    cuda_sync();
    return g;
}

extern "C" void cuda_vit_set_batch(CudaVit *g, const float *img, const int *labels, int B) {
    CUDA_ASSERT(B > 0 && B <= g->d.max_batch);
    if (B != g->B) { /* re-carve so the buffers are dense for this batch size (same arena, no allocation) */
        cuda_arena_reset(&g->ar);
        carve(g, &g->ar, B);
        g->B = B;
    }
    long n = (long)B * g->d.in_ch * g->d.img * g->d.img;
    cuda_vit_host_bf16((uint16_t *)g->host_img16, img, n);
    CUDA_CHECK(cudaMemcpyAsync(g->img, g->host_img16, n * sizeof(bf16), cudaMemcpyHostToDevice, g_cuda.stream));
    CUDA_CHECK(cudaMemcpyAsync(g->labels, labels, B * sizeof(int), cudaMemcpyHostToDevice, g_cuda.stream));
    CUDA_CHECK(cudaStreamSynchronize(g_cuda.stream));
}

static void input_moments_block(CudaVit *g, int l, int ld);

/* dst (N, ldd) columns 0..cols <- src (N, lds) columns 0..cols, bf16, cols % 8 == 0 (16-byte packs) */
__global__ void copy_cols_kernel(uint4 *dst, int ldd8, const uint4 *src, int lds8, long N, int packs) {
    long i = blockIdx.x * (long)blockDim.x + threadIdx.x;
    if (i >= N * packs) return;
    long r = i / packs;
    dst[r * ldd8 + i % packs] = src[r * lds8 + i % packs];
}
static void copy_cols(bf16 *dst, int ldd, const bf16 *src, int lds, long N, int cols) {
    CUDA_ASSERT(cols % 8 == 0 && ldd % 8 == 0 && lds % 8 == 0);
    copy_cols_kernel<<<cdiv(N * (cols / 8), 256), 256, 0, g_cuda.stream>>>((uint4 *)dst, ldd / 8, (const uint4 *)src,
                                                                          lds / 8, N, cols / 8);
    LAUNCH_CHECK();
}

static void forward(CudaVit *g) {
    const CvDesc *d = &g->d;
    int B = g->B, T = g->T, D = d->D, H = d->H, NH = d->heads;
    int BT = B * T;
    CUDA_ASSERT(B > 0);
    mark(g, PH_EMBED);
    cuda_patchify(g->patches, g->img, B, d->in_ch, d->img, d->img, d->patch);
    cuda_linear_forward(g->pe, g->patches, g->patch_w, g->patch_b, NULL, B * g->NP, d->in_ch * d->patch * d->patch, D);
    cuda_tokens_forward(g->x0, g->pe, g->cls, g->pos, B, g->NP, D);
    mark(g, PH_LORA);
    lora_fold(g);
    const bf16 *x = g->x0;
    for (int l = 0; l < d->depth; l++) {
        Blk *b = &g->blk[l];
        mark(g, PH_LN);
        if (b->fold) { /* [ln1 | ln1 A_cat^T] (BT, ld), then qkv = that W_ext^T + bias: the adapters ride in the GEMM */
            const bf16d *lnx = (const bf16d *)g->lnbuf;
            const bf16 *Acat = g->tp16 + g->toff[b->lora[0].tA];
            cuda_layernorm_forward_ext(g->lnbuf, b->ld, b->mean1, b->rstd1, x, b->n1w, b->n1b, BT, D, d->eps,
                                       D + b->xw);
            mark(g, PH_LORA);
            cuda_mm(true, false, b->R, BT, D, (const bf16d *)Acat, D, lnx, b->ld, g->lnbuf + D, b->ld, false, 1.0f,
                    0.0f, NULL, NULL);
            if (b->keep_xa) copy_cols(b->xa_cat, b->xw, g->lnbuf + D, b->ld, BT, b->xw); /* for backward */
            mark(g, PH_QKV);
            cuda_mm(true, false, 3 * D, BT, b->ld, (const bf16d *)b->qkv_w, b->ld, lnx, b->ld, b->qkv, 3 * D, false,
                    1.0f, 0.0f, NULL, NULL); /* the bias: column D + xw */
        } else {
            cuda_layernorm_forward(g->lnbuf, b->mean1, b->rstd1, x, b->n1w, b->n1b, BT, D, d->eps);
            mark(g, PH_QKV);
            cuda_linear_forward(b->qkv, g->lnbuf, b->qkv_w, b->qkv_b, NULL, BT, D, 3 * D);
        }
        if (g->mo_on && g->mo_slot[l] >= 0) input_moments_block(g, l, b->fold ? b->ld : D);
        mark(g, PH_LORA);
        for (int j = 0; j < b->n_lora && !b->fold; j++) {
            const CvLora *lo = &b->lora[j];
            cuda_lora_forward(b->qkv + lo->row0, 3 * D, b->xa[j], g->lnbuf, g->tp16 + g->toff[lo->tA],
                              g->tp16 + g->toff[lo->tB], BT, D, lo->m, lo->r, lo->scale);
        }
        mark(g, PH_ATTN);
        cuda_attention_forward(b->o, b->lse, b->qkv, B, T, D, NH, g->att_scratch);
        mark(g, PH_PROJ);
        cuda_linear_forward(b->x_attn, b->o, b->proj_w, b->proj_b, x, BT, D, D);
        mark(g, PH_LN);
        cuda_layernorm_forward(g->lnbuf, b->mean2, b->rstd2, b->x_attn, b->n2w, b->n2b, BT, D, d->eps);
        mark(g, PH_FC1);
        if (g->fc1_t) /* h^T (H, BT) = W1^T-as-(H, D) ln2^T */
            cuda_mm(false, false, H, BT, D, (const bf16d *)b->fc1_w, H, (const bf16d *)g->lnbuf, D, b->h, H, false, 1.0f,
                    0.0f, NULL, b->fc1_b);
        else
            cuda_linear_forward(b->h, g->lnbuf, b->fc1_w, b->fc1_b, NULL, BT, D, H);
        mark(g, PH_GELU);
        cuda_gelu_forward(g->gbuf, b->h, (long)BT * H);
        mark(g, PH_FC2);
        cuda_linear_forward(b->x_out, g->gbuf, b->fc2_w, b->fc2_b, b->x_attn, BT, H, D);
        x = b->x_out;
    }
    mark(g, PH_HEAD);
    if (d->pool == 0) { /* CLS pooling: only the B CLS rows reach the head, so only they are normalized */
        cuda_token_pool_forward(g->cls_raw, x, B, T, D, 0);
        cuda_layernorm_forward(g->pooled, g->meanf, g->rstdf, g->cls_raw, g->norm_w, g->norm_b, B, D, d->eps);
    } else {
        cuda_layernorm_forward(g->lnbuf, g->meanf, g->rstdf, x, g->norm_w, g->norm_b, BT, D, d->eps);
        cuda_token_pool_forward(g->pooled, g->lnbuf, B, T, D, d->pool);
    }
    cuda_linear_forward_f32out(g->logits, g->pooled, g->head_w16, g->head_b32, B, D, d->K);
    cuda_xent_forward(g->probs, g->loss, NULL, g->logits, g->labels, B, d->K, d->label_smoothing);
}

/* The qkv GEMM's backward for a folded block (forward: qkv = [ln1 | xa] W_ext^T, xa = ln1 A_cat^T).
 * Merged (Blk.merged_bwd): [dln1 | dxa] = dqkv W_bwd, W_bwd = [W + Bs A_cat | Bs] (dln1 already holds the adapters'
 * dxa A_cat); dB_j += scale_j dy_j^T xa_j (xa kept by forward); dA_cat from the block input (lora_da_scale_kernel);
 * then layernorm's backward. Separate (the previous path): [dln1 | dxa] = dqkv W_ext; ln1 again from the block input
 * (and xa again unless forward kept it: keep_xa); dB_j; dA_cat += dxa^T ln1; dln1 += dxa A_cat; layernorm's
 * backward. */
static void block_backward_folded(CudaVit *g, Blk *b, const bf16 *x_in, int want_dx) {
    const CvDesc *d = &g->d;
    int BT = g->B * g->T, D = d->D, R = b->R, ld = b->ld;
    const bf16d *Wext = (const bf16d *)b->qkv_w, *lnx = (const bf16d *)g->lnbuf, *dlnx = (const bf16d *)g->dln;
    const bf16d *Acat = (const bf16d *)(g->tp16 + g->toff[b->lora[0].tA]);
    float *dAcat = g->tg + g->toff[b->lora[0].tA];
    mark(g, PH_B_QKV);
    if (want_dx) {
        const bf16d *Wb = Wext;
        if (b->merged_bwd) {
            long n = 3L * D * (ld / 8);
            lora_wbwd_kernel<<<cdiv(n, 256), 256, 0, g_cuda.stream>>>((bf16d *)g->wbwd, Wext, Acat, 3 * D, D, R, ld);
            LAUNCH_CHECK();
            Wb = (const bf16d *)g->wbwd;
        }
        cuda_mm(false, false, D + R, BT, 3 * D, Wb, ld, (const bf16d *)g->dqkv, 3 * D, g->dln, ld, false, 1.0f, 0.0f,
                NULL, NULL);
    } else { /* the lowest adapted block: only dxa */
        cuda_mm(false, false, R, BT, 3 * D, Wext + D, ld, (const bf16d *)g->dqkv, 3 * D, g->dln + D, ld, false, 1.0f,
                0.0f, NULL, NULL);
    }
    if (!b->merged_bwd) {
        mark(g, PH_B_LN);
        cuda_layernorm_forward_ld(g->lnbuf, ld, NULL, NULL, x_in, b->n1w, b->n1b, BT, D, d->eps);
    }
    mark(g, PH_B_LORA);
    const bf16d *xa = (const bf16d *)b->xa_cat; /* (BT, ldx) */
    int ldx = b->xw;
    if (!b->keep_xa) {
        cuda_mm(true, false, R, BT, D, Acat, D, lnx, ld, g->lnbuf + D, ld, false, 1.0f, 0.0f, NULL, NULL);
        xa = lnx + D;
        ldx = ld;
    }
    mark(g, PH_B_LORA_DB);
    /* dB_j (m, r) += scale_j dy_j^T xa_j, the block's adapters in one launch (cuda_lora_grad.cu: deterministic) */
    for (int j0 = 0; j0 < b->n_lora; j0 += LORA_DB_MAX_JOBS) {
        LoraDbJob jobs[LORA_DB_MAX_JOBS];
        int n = b->n_lora - j0 < LORA_DB_MAX_JOBS ? b->n_lora - j0 : LORA_DB_MAX_JOBS;
        for (int j = 0; j < n; j++) {
            const CvLora *lo = &b->lora[j0 + j];
            jobs[j] = LoraDbJob{g->tg + g->toff[lo->tB], (const bf16 *)(xa + b->col[j0 + j]), g->dqkv + lo->row0, lo->m,
                                lo->r, lo->scale};
        }
        cuda_lora_db_jobs(jobs, n, ldx, 3 * D, BT, g->db_scratch);
    }
    mark(g, PH_B_LORA_DA);
    if (b->merged_bwd) { /* u = dxa rstd in place, column sums; G^T (D, R) = x-as-(D, BT) (u-as-(R, BT))^T; finish */
        int ldu = b->xw;
        lora_da_scale_kernel<<<dim3(LDA_CHUNKS, cdiv(R, 32)), dim3(32, 8), 0, g_cuda.stream>>>(
            g->lda_part, (bf16d *)g->dln + D, ld, b->mean1, b->rstd1, BT, R, ldu);
        LAUNCH_CHECK();
        if (g->da_kernel && R <= 64) { /* G (D, R) += x^T u by the dB kernel (r <= 64), from zero */
            CUDA_CHECK(cudaMemsetAsync(g->lda_g, 0, sizeof(float) * D * R, g_cuda.stream));
            LoraDbJob job = {g->lda_g, g->dln + D, x_in, D, R, 1.0f};
            cuda_lora_db_jobs(&job, 1, ld, D, BT, g->db_scratch);
        } else { /* G^T-as-(R, D) = u-as-(R, BT) (x-as-(D, BT))^T: the same (D, R) row-major layout */
            cuda_mm(false, true, R, D, BT, dlnx + D, ld, (const bf16d *)x_in, D, g->lda_g, R, true, 1.0f, 0.0f, NULL, NULL);
        }
        lora_da_finish_kernel<<<R, 256, 0, g_cuda.stream>>>(dAcat, g->lda_g, g->lda_part, (const bf16d *)b->n1w,
                                                            (const bf16d *)b->n1b, D, R, ldu);
        LAUNCH_CHECK();
    } else { /* dA_cat^T (D, R) += ln1-as-(D, BT) (dxa-as-(R, BT))^T */
        cuda_mm(false, true, D, R, BT, lnx, ld, dlnx + D, ld, dAcat, D, true, 1.0f, 1.0f, NULL, NULL);
    }
    if (!want_dx) return;
    if (!b->merged_bwd) { /* dln1^T (D, BT) += A_cat-as-(D, R) dxa-as-(R, BT) */
        mark(g, PH_B_LORA);
        cuda_mm(false, false, D, BT, R, Acat, D, dlnx + D, ld, g->dln, ld, false, 1.0f, 1.0f, NULL, NULL);
    }
    mark(g, PH_B_LN);
    cuda_layernorm_backward_ld(g->dx, NULL, NULL, g->dln, ld, x_in, b->n1w, b->mean1, b->rstd1, BT, D, 1);
}

static void backward(CudaVit *g) {
    const CvDesc *d = &g->d;
    CUDA_ASSERT(!d->infer_only); /* its blocks share activation buffers: forward only */
    int B = g->B, T = g->T, D = d->D, H = d->H, NH = d->heads;
    int BT = B * T;
    cuda_xent_backward(g->dlogits, g->probs, g->labels, B, d->K, d->label_smoothing, g->grad_scale);
    if (g->n_tp) CUDA_CHECK(cudaMemsetAsync(g->tg, 0, sizeof(float) * g->n_tp, g_cuda.stream));
    int below = g->low < d->depth;
    for (int l = 0; g->gw_on && l < d->depth; l++) below |= g->gw_slot[l] >= 0;
    cuda_linear_backward(below ? g->dpooled : NULL, d->head_w_t >= 0 ? g->tg + g->toff[d->head_w_t] : NULL,
                         d->head_b_t >= 0 ? g->tg + g->toff[d->head_b_t] : NULL, g->dlogits, g->pooled, g->head_w16, B,
                         D, d->K, 0);
    if (!below) return;
    mark(g, PH_B_LN);
    if (d->pool == 0) { /* the CLS rows' norm backward into dln's first B rows, then dx = those rows, zeros elsewhere */
        cuda_layernorm_backward(g->dln, NULL, NULL, g->dpooled, g->cls_raw, g->norm_w, g->meanf, g->rstdf, B, D, 0);
        cuda_token_pool_backward(g->dx, g->dln, B, T, D, 0);
    } else {
        cuda_token_pool_backward(g->dln, g->dpooled, B, T, D, d->pool);
        const bf16 *x_last = g->blk[d->depth - 1].x_out;
        cuda_layernorm_backward(g->dx, NULL, NULL, g->dln, x_last, g->norm_w, g->meanf, g->rstdf, BT, D, 0);
    }
    int low = g->low;
    for (int l = 0; g->gw_on && l < low; l++)
        if (g->gw_slot[l] >= 0) low = l;
    for (int l = d->depth - 1; l >= low; l--) {
        Blk *b = &g->blk[l];
        const bf16 *x_in = l ? g->blk[l - 1].x_out : g->x0;
        int want_dx = l > low;
        /* x_out = x_attn + fc2(gelu(fc1(ln2(x_attn)))) */
        mark(g, PH_B_FC2);
        cuda_linear_backward(g->gbuf, NULL, NULL, g->dx, NULL, b->fc2_w, BT, H, D, 0);
        mark(g, PH_B_GELU);
        cuda_gelu_backward(g->gbuf, g->gbuf, b->h, (long)BT * H, 0);
        mark(g, PH_B_FC1);
        if (g->fc1_t) /* dln2^T (D, BT) = (W1^T-as-(H, D))^T dh^T */
            cuda_mm(true, false, D, BT, H, (const bf16d *)b->fc1_w, H, (const bf16d *)g->gbuf, H, g->dln, D, false, 1.0f,
                    0.0f, NULL, NULL);
        else
            cuda_linear_backward(g->dln, NULL, NULL, g->gbuf, NULL, b->fc1_w, BT, D, H, 0);
        mark(g, PH_B_LN);
        cuda_layernorm_backward(g->dx, NULL, NULL, g->dln, b->x_attn, b->n2w, b->mean2, b->rstd2, BT, D, 1);
        /* x_attn = x_in + proj(attn(qkv(ln1(x_in)))) */
        mark(g, PH_B_PROJ);
        cuda_linear_backward(g->atty, NULL, NULL, g->dx, NULL, b->proj_w, BT, D, D, 0);
        mark(g, PH_B_ATTN);
        cuda_attention_backward(g->dqkv, g->atty, b->qkv, b->o, b->lse, B, T, D, NH, g->att_scratch, 0);
        if (g->gw_on && g->gw_slot[l] >= 0) { /* dW_qkv (3D, D) += dqkv^T ln1: ln1 again, unstrided */
            cuda_layernorm_forward(g->lnbuf, NULL, NULL, x_in, b->n1w, b->n1b, BT, D, d->eps);
            cuda_mm(false, true, D, 3 * D, BT, (const bf16d *)g->lnbuf, D, (const bf16d *)g->dqkv, 3 * D,
                    g->gw + (size_t)g->gw_slot[l] * 3 * D * D, D, true, 1.0f, 1.0f, NULL, NULL);
        }
        if (b->fold) {
            block_backward_folded(g, b, x_in, want_dx);
            continue;
        }
        mark(g, PH_B_QKV);
        if (want_dx) cuda_linear_backward(g->dln, NULL, NULL, g->dqkv, NULL, b->qkv_w, BT, D, 3 * D, 0);
        mark(g, PH_B_LN);
        if (b->n_lora) /* ln1 again, from the block input and the saved statistics' inputs */
            cuda_layernorm_forward(g->lnbuf, NULL, NULL, x_in, b->n1w, b->n1b, BT, D, d->eps);
        mark(g, PH_B_LORA);
        for (int j = 0; j < b->n_lora; j++) {
            const CvLora *lo = &b->lora[j];
            cuda_lora_backward(want_dx ? g->dln : NULL, g->tg + g->toff[lo->tA], g->tg + g->toff[lo->tB], g->dxa,
                               g->dqkv + lo->row0, 3 * D, g->lnbuf, b->xa[j], g->tp16 + g->toff[lo->tA],
                               g->tp16 + g->toff[lo->tB], BT, D, lo->m, lo->r, lo->scale);
        }
        mark(g, PH_B_LN);
        if (want_dx) cuda_layernorm_backward(g->dx, NULL, NULL, g->dln, x_in, b->n1w, b->mean1, b->rstd1, BT, D, 1);
    }
}

/* AdamW with lr and the bias corrections from g->hyper (step_scalars wrote them for this step) */
static void adamw(CudaVit *g) {
    const CvDesc *d = &g->d;
    mark(g, PH_ADAMW);
    cuda_adamw_dev(g->tp, g->tp16, g->tm, g->tv, g->tg, g->n_decay, g->hyper, d->beta1, d->beta2, d->eps_adam,
                   d->weight_decay);
    cuda_adamw_dev(g->tp + g->n_decay, g->tp16 + g->n_decay, g->tm + g->n_decay, g->tv + g->n_decay,
                   g->tg + g->n_decay, g->n_tp - g->n_decay, g->hyper, d->beta1, d->beta2, d->eps_adam, 0.0f);
}

__global__ void set_scalars_kernel(float *hyper, float lr, float bc1, float bc2) {
    hyper[0] = lr;
    hyper[1] = bc1;
    hyper[2] = bc2;
}
/* this step's lr, 1 - beta1^t, 1 - beta2^t to the device (a one-thread kernel outside the graph: kernel
 * arguments are copied at launch, so nothing waits) */
static void step_scalars(CudaVit *g, float lr) {
    const CvDesc *d = &g->d;
    g->t++;
    set_scalars_kernel<<<1, 1, 0, g_cuda.stream>>>(g->hyper, lr, 1.0f - powf(d->beta1, (float)g->t),
                                                   1.0f - powf(d->beta2, (float)g->t));
    LAUNCH_CHECK();
}

static void graphs_clear(CudaVit *g) {
    for (int i = 0; i < g->n_graphs; i++)
        if (g->graphs[i].exec) CUDA_CHECK(cudaGraphExecDestroy(g->graphs[i].exec));
    g->n_graphs = 0;
}

extern "C" void cuda_vit_set_graph(CudaVit *g, int on) {
    cuda_sync();
    graphs_clear(g);
    g->graph_on = on;
}

extern "C" void cuda_vit_forward(CudaVit *g) {
    forward(g);
    mark(g, PH_END);
    prof_collect(g);
}

/* sum of squares: GNORM_BLOCKS partial sums (fixed order), then one block takes the square root of their sum */
__global__ void sumsq_partial_kernel(float *part, const float *x, long n) {
    __shared__ float sh[256];
    float s = 0;
    for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * blockDim.x) s += x[i] * x[i];
    sh[threadIdx.x] = s;
    __syncthreads();
    for (int k = blockDim.x / 2; k > 0; k /= 2) {
        if ((int)threadIdx.x < k) sh[threadIdx.x] += sh[threadIdx.x + k];
        __syncthreads();
    }
    if (threadIdx.x == 0) part[blockIdx.x] = sh[0];
}
__global__ void sqrt_sum_kernel(float *part, int n) {
    if (threadIdx.x != 0) return;
    float s = 0;
    for (int i = 0; i < n; i++) s += part[i];
    part[n] = sqrtf(s);
}

/* everything a step queues after its scalars */
static void step_body(CudaVit *g) {
    forward(g);
    backward(g);
    if (g->reduce) g->reduce(g->reduce_ctx, g->tg, g->n_tp, g->loss);
    if (g->gnorm_on) {
        sumsq_partial_kernel<<<GNORM_BLOCKS, 256, 0, g_cuda.stream>>>(g->gnorm_part, g->tg, g->n_tp);
        LAUNCH_CHECK();
        sqrt_sum_kernel<<<1, 32, 0, g_cuda.stream>>>(g->gnorm_part, GNORM_BLOCKS);
        LAUNCH_CHECK();
    }
    adamw(g);
}

/* Replays (or captures, on a batch size's second step) the step's graph; 0 when this step must run eagerly:
 * graphs off, the profiler on (its events sit between the kernels), a reduce hook (NCCL), a batch size's first
 * step, or more batch sizes than GRAPHS_MAX. */
static int step_graph(CudaVit *g) {
    if (!g->graph_on || g->prof.on || g->reduce) return 0;
    int i = 0;
    while (i < g->n_graphs && g->graphs[i].B != g->B) i++;
    if (i == g->n_graphs) {
        if (g->n_graphs == GRAPHS_MAX) return 0;
        g->graphs[g->n_graphs++] = {g->B, 0, NULL};
    }
    if (!g->graphs[i].exec) {
        if (g->graphs[i].eager_steps++ == 0) return 0;
        cudaGraph_t graph;
        CUDA_CHECK(cudaStreamBeginCapture(g_cuda.stream, cudaStreamCaptureModeThreadLocal));
        step_body(g);
        CUDA_CHECK(cudaStreamEndCapture(g_cuda.stream, &graph));
        CUDA_CHECK(cudaGraphInstantiate(&g->graphs[i].exec, graph, 0));
        CUDA_CHECK(cudaGraphDestroy(graph));
    }
    CUDA_CHECK(cudaGraphLaunch(g->graphs[i].exec, g_cuda.stream));
    return 1;
}

extern "C" void cuda_vit_step(CudaVit *g, float lr) {
    step_scalars(g, lr);
    if (step_graph(g)) return;
    step_body(g);
    mark(g, PH_END);
    prof_collect(g);
}

extern "C" float cuda_vit_loss(CudaVit *g) {
    float l = 0;
    CUDA_CHECK(cudaMemcpyAsync(&l, g->loss, sizeof l, cudaMemcpyDeviceToHost, g_cuda.stream));
    cuda_sync();
    return l;
}

extern "C" void cuda_vit_logits(CudaVit *g, float *logits) {
    CUDA_CHECK(cudaMemcpyAsync(logits, g->logits, sizeof(float) * g->B * g->d.K, cudaMemcpyDeviceToHost, g_cuda.stream));
    cuda_sync();
}

extern "C" void cuda_vit_download(CudaVit *g) {
    cuda_sync();
    for (int i = 0; i < g->d.n_train; i++) cuda_download_f32(g->train[i].host, g->tp + g->toff[i], g->train[i].n);
}

/* these change what a step queues: the captured graphs are dropped (recaptured on later steps) */
extern "C" void cuda_vit_set_grad_scale(CudaVit *g, float scale) {
    if (scale != g->grad_scale) cuda_vit_set_graph(g, g->graph_on);
    g->grad_scale = scale;
}
extern "C" void cuda_vit_set_reduce(CudaVit *g, void (*fn)(void *ctx, float *grads, long n, float *loss), void *ctx) {
    cuda_vit_set_graph(g, g->graph_on);
    g->reduce = fn;
    g->reduce_ctx = ctx;
}
extern "C" void cuda_vit_set_grad_norm(CudaVit *g, int on) {
    if (on != g->gnorm_on) cuda_vit_set_graph(g, g->graph_on);
    g->gnorm_on = on;
}

extern "C" void cuda_vit_stats(CudaVit *g, float *loss, float *grad_norm) {
    float l = 0, gn = 0;
    CUDA_CHECK(cudaMemcpyAsync(&l, g->loss, sizeof l, cudaMemcpyDeviceToHost, g_cuda.stream));
    if (g->gnorm_on)
        CUDA_CHECK(cudaMemcpyAsync(&gn, g->gnorm_part + GNORM_BLOCKS, sizeof gn, cudaMemcpyDeviceToHost, g_cuda.stream));
    cuda_sync();
    if (loss) *loss = l;
    if (grad_norm) *grad_norm = gn;
}

extern "C" void cuda_vit_download_grads(CudaVit *g) {
    cuda_sync();
    for (int i = 0; i < g->d.n_train; i++)
        if (g->train[i].host_grad) cuda_download_f32(g->train[i].host_grad, g->tg + g->toff[i], g->train[i].n);
}

extern "C" long cuda_vit_download_optim(CudaVit *g) {
    cuda_sync();
    for (int i = 0; i < g->d.n_train; i++) {
        if (g->train[i].host_m) cuda_download_f32(g->train[i].host_m, g->tm + g->toff[i], g->train[i].n);
        if (g->train[i].host_v) cuda_download_f32(g->train[i].host_v, g->tv + g->toff[i], g->train[i].n);
    }
    return g->t;
}

extern "C" void cuda_vit_each_state(CudaVit *g, void (*fn)(void *ctx, void *dev, size_t bytes), void *ctx) {
    size_t nb = (size_t)(g->n_tp ? g->n_tp : 64);
    fn(ctx, g->frozen, g->frozen_bytes);
    fn(ctx, g->tp, nb * 4);
    fn(ctx, g->tm, nb * 4);
    fn(ctx, g->tv, nb * 4);
    if (g->head_frozen32) fn(ctx, g->head_frozen32, sizeof(float) * g->d.K);
}

extern "C" void cuda_vit_state_changed(CudaVit *g, long t) {
    cuda_f32_to_bf16(g->tp16, g->tp, g->n_tp ? g->n_tp : 64);
    g->t = t;
    cuda_sync();
}

extern "C" size_t cuda_vit_param_bytes(const CudaVit *g) {
    return g->frozen_bytes + (size_t)(g->n_tp ? g->n_tp : 64) * 18 + (g->head_frozen32 ? sizeof(float) * g->d.K : 0);
}
extern "C" size_t cuda_vit_arena_bytes(const CudaVit *g) { return g->ar.cap; }
extern "C" size_t cuda_vit_init_bytes(const CudaVit *g) {
    size_t Dp = (size_t)g->d.D + 8, D = g->d.D;
    return (g->mo_S ? sizeof(float) * (g->n_mo ? g->n_mo : 1) * Dp * Dp : 0) +
           (g->mo_scale ? sizeof(float) * g->d.max_batch : 0) + (g->gw ? sizeof(float) * (g->n_gw ? g->n_gw : 1) * 3 * D * D : 0);
}

extern "C" void cuda_vit_free(CudaVit *g) {
    if (!g) return;
    cuda_sync();
    cuda_vit_profile(g, 0);
    cuda_arena_free(&g->ar);
    cuda_free(g->frozen);
    cuda_free(g->tp);
    cuda_free(g->tg);
    cuda_free(g->tm);
    cuda_free(g->tv);
    cuda_free(g->tp16);
    cuda_free(g->head_frozen32);
    cuda_free(g->gnorm_part);
    cuda_free(g->hyper);
    cuda_free(g->fold_jobs);
    cuda_free(g->wbwd);
    cuda_free(g->lda_g);
    cuda_free(g->mo_S);
    cuda_free(g->mo_scale);
    cuda_free(g->gw);
    free(g->mo_slot);
    free(g->gw_slot);
    graphs_clear(g);
    free(g->host_img16);
    free(g->toff);
    free(g->train);
    free(g->blk);
    free(g);
}

/* ---- the initializers' data passes (cuda_vit_desc.h) ---- */

/* scale[b] = 1 / max |x| over image b's T rows (0 for an all-zero image); one block per image */
__global__ void image_absmax_inv_kernel(float *scale, const bf16d *x, int ld, int T, int D) {
    __shared__ float sh[256];
    const bf16d *xb = x + (size_t)blockIdx.x * T * ld;
    float m = 0;
    for (long i = threadIdx.x; i < (long)T * D; i += blockDim.x) m = fmaxf(m, fabsf(__bfloat162float(xb[(i / D) * ld + i % D])));
    sh[threadIdx.x] = m;
    __syncthreads();
    for (int k = blockDim.x / 2; k > 0; k /= 2) {
        if ((int)threadIdx.x < k) sh[threadIdx.x] = fmaxf(sh[threadIdx.x], sh[threadIdx.x + k]);
        __syncthreads();
    }
    if (threadIdx.x == 0) scale[blockIdx.x] = sh[0] > 0 ? 1.0f / sh[0] : 0.0f;
}
/* y (BT, Dp) = [x * scale[row / T] | 1 | 0...] (scale NULL: 1) */
__global__ void moments_rows_kernel(bf16d *y, const bf16d *x, int ld, const float *scale, int T, long BT, int D, int Dp) {
    long i = blockIdx.x * (long)blockDim.x + threadIdx.x;
    if (i >= BT * Dp) return;
    long r = i / Dp;
    int j = (int)(i % Dp);
    float v = j < D ? __bfloat162float(x[r * ld + j]) * (scale ? scale[r / T] : 1.0f) : j == D ? 1.0f : 0.0f;
    y[i] = __float2bfloat16(v);
}

/* S (Dp, Dp) = [X | 1]^T [X | 1] of block l's ln1 output (g->lnbuf, row stride ld), into the block's slot. The
 * GELU buffer is free at this point of the block (GELU writes it later, in stream order). */
static void input_moments_block(CudaVit *g, int l, int ld) {
    int T = g->T, D = g->d.D, Dp = D + 8;
    long BT = (long)g->B * T;
    const bf16d *x = (const bf16d *)g->lnbuf;
    if (g->mo_psm) {
        image_absmax_inv_kernel<<<g->B, 256, 0, g_cuda.stream>>>(g->mo_scale, x, ld, T, D);
        LAUNCH_CHECK();
    }
    moments_rows_kernel<<<cdiv(BT * Dp, 256), 256, 0, g_cuda.stream>>>((bf16d *)g->gbuf, x, ld,
                                                                          g->mo_psm ? g->mo_scale : NULL, T, BT, D, Dp);
    LAUNCH_CHECK();
    cuda_mm(false, true, Dp, Dp, (int)BT, (const bf16d *)g->gbuf, Dp, (const bf16d *)g->gbuf, Dp,
            g->mo_S + (size_t)g->mo_slot[l] * Dp * Dp, Dp, true, 1.0f, 0.0f, NULL, NULL);
}

/* the selected blocks' slots; 1 when the selection changed from the previous call's */
static int select_blocks(int **slot, int *n, const unsigned char *mask, int depth) {
    int changed = !*slot;
    if (!*slot) *slot = (int *)malloc(sizeof(int) * depth);
    int k = 0;
    for (int l = 0; l < depth; l++) {
        int s = mask[l] ? k++ : -1;
        changed |= (*slot)[l] != s;
        (*slot)[l] = s;
    }
    *n = k;
    return changed;
}

extern "C" void cuda_vit_input_moments(CudaVit *g, const unsigned char *mask, int per_sample_max, float *S) {
    const CvDesc *d = &g->d;
    int D = d->D, Dp = D + 8;
    CUDA_ASSERT(g->B > 0 && d->H >= Dp);
    if (select_blocks(&g->mo_slot, &g->n_mo, mask, d->depth) || !g->mo_S) {
        cuda_free(g->mo_S);
        g->mo_S = (float *)cuda_alloc(sizeof(float) * (size_t)(g->n_mo ? g->n_mo : 1) * Dp * Dp, "init input moments");
    }
    if (!g->mo_scale) g->mo_scale = (float *)cuda_alloc(sizeof(float) * d->max_batch, "init per-image scales");
    g->mo_on = 1;
    g->mo_psm = per_sample_max;
    forward(g);
    g->mo_on = 0;
    /* (D+1, D+1) per selected block: X^T X, the column sums in row / column D, the row count at [D][D] */
    for (int k = 0; k < g->n_mo; k++)
        CUDA_CHECK(cudaMemcpy2DAsync(S + (size_t)k * (D + 1) * (D + 1), sizeof(float) * (D + 1),
                                     g->mo_S + (size_t)k * Dp * Dp, sizeof(float) * Dp, sizeof(float) * (D + 1), D + 1,
                                     cudaMemcpyDeviceToHost, g_cuda.stream));
    cuda_sync();
}

extern "C" void cuda_vit_qkv_grads(CudaVit *g, const unsigned char *mask, int reset) {
    const CvDesc *d = &g->d;
    size_t per = (size_t)3 * d->D * d->D;
    CUDA_ASSERT(g->B > 0);
    if (select_blocks(&g->gw_slot, &g->n_gw, mask, d->depth) || !g->gw) {
        cuda_free(g->gw);
        g->gw = (float *)cuda_alloc(sizeof(float) * (g->n_gw ? g->n_gw : 1) * per, "init qkv weight gradients");
        reset = 1;
    }
    if (reset) cuda_memset0(g->gw, sizeof(float) * (g->n_gw ? g->n_gw : 1) * per);
    g->gw_on = 1;
    forward(g);
    backward(g);
    g->gw_on = 0;
}

extern "C" void cuda_vit_qkv_grads_download(CudaVit *g, int l, int row0, int rows, float scale, float *out) {
    const CvDesc *d = &g->d;
    CUDA_ASSERT(g->gw && l >= 0 && l < d->depth && g->gw_slot[l] >= 0 && row0 >= 0 && row0 + rows <= 3 * d->D);
    size_t n = (size_t)rows * d->D;
    cuda_download_f32(out, g->gw + (size_t)g->gw_slot[l] * 3 * d->D * d->D + (size_t)row0 * d->D, (long)n);
    for (size_t i = 0; i < n; i++) out[i] *= scale;
}
