/* core/cuda/cuda_attention.cu: softmax(q k^T / sqrt(hs)) v on timm's fused qkv, per (batch, head), through
 * cuBLAS batched GEMMs (pointer arrays: head h of image b starts at qkv + b*T*3C + h*hs, row stride 3C, so no
 * permute copies) and one softmax kernel. The forward keeps only the log-sum-exp per row; the backward
 * recomputes P = exp(S - lse) from q, k (one GEMM) instead of keeping B*NH*T*T probabilities per layer, and
 * uses rowsum(P * dP) for the softmax backward (equal to rowsum(dO * O), so O need not be kept either).
 *   forward:  S = scale K^T Q;  P = softmax(S), lse;  O = P V
 *   backward: S, P again;  dV = P^T dO;  dP = dO V^T;  dS = P (dP - rowsum(P dP));  dQ = scale dS K;
 *             dK = scale dS^T Q */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cooperative_groups.h>

#include "cuda_internal.cuh"
#include "cuda_ops.h"

#define S_ g_cuda.stream
namespace cg = cooperative_groups;

static int pad8(int t) { return (t + 7) & ~7; }


/* ---- fused (flash-style) path: head size 64, T <= 256 ---------------------------------------------------
 * One block = up to 8 warps of 16 query rows (forward, dQ) or 4 warps of 16 key rows (dK, dV) of one (image,
 * head); the whole K and V (or Q and dO) of the head sit in shared memory (T <= 256, loaded with cp.async),
 * tiles of 32 keys / queries are
 * multiplied with mma.sync m16n8k16 (bf16 in, f32 accumulate), operands loaded with ldmatrix from rows padded
 * to 72 elements (no bank conflicts). Scores never leave registers:
 *   forward: online softmax over key tiles; writes O and lse (T <= 208: flash_fwd_persist_kernel, one block per SM
 *   walking the heads, all query tiles of a head in one block, the next head's Q, K, V loaded while this one's are
 *   computed; otherwise, or LORALAB_ATTENTION_FWD=blocks, flash_forward_kernel: blocks of <= 8 query tiles);
 *   backward, T <= 208: one kernel per (image, head) (flash_bwd_fused_kernel, below: S and dP once, dQ from
 *   dS kept in shared memory; LORALAB_ATTENTION=cluster: flash_bwd_cluster_kernel, 2 blocks per head); otherwise (or LORALAB_ATTENTION=twopass) two kernels:
 *   (1) D = rowsum(dO * O), from the saved O (or from the forward run again, O in registers);
 *   (2) per query tile: S, P = exp(S - lse), dP = dO V^T, dS = P (dP - D), dQ = scale dS K;
 *   (3) per key tile: S^T, P^T, dP^T = V dO^T, dS^T, dV = P^T dO, dK = scale dS^T Q. No atomics. */
#define FA_HS 64
#define FA_LD 72 /* padded row (elements) */
struct alignas(16) FaPack8 {
    bf16d v[8];
};

__device__ __forceinline__ void ldsm_x4(uint32_t r[4], const bf16d *p) {
    uint32_t a = (uint32_t)__cvta_generic_to_shared(p);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(a));
}
__device__ __forceinline__ void ldsm_x4_t(uint32_t r[4], const bf16d *p) {
    uint32_t a = (uint32_t)__cvta_generic_to_shared(p);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(a));
}
__device__ __forceinline__ void mma16816(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
__device__ __forceinline__ uint32_t pack2(float lo, float hi) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *(uint32_t *)&v;
}
/* A fragments (16 rows x 64 cols, 4 k-chunks) of a row-major smem tile starting at row r0 */
__device__ __forceinline__ void load_a64(uint32_t a[4][4], const bf16d *sm, int r0, int lane) {
#pragma unroll
    for (int kk = 0; kk < 4; kk++)
        ldsm_x4(a[kk], sm + (r0 + (lane % 8) + ((lane / 8) % 2) * 8) * FA_LD + kk * 16 + (lane / 16) * 8);
}
/* 2^x (MUFU.EX2; ex2(-inf) = 0): the kernels keep scores in log2 units (scale log2(e) folded into one FMA) */
__device__ __forceinline__ float fa_ex2(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
}
#define FA_LOG2E 1.44269504088896340736f
#define FA_LN2 0.69314718055994530942f
/* acc (16 x 32: 4 n-tiles) = A (16 x 64) * Bst^T, Bst row-major [n][64] (rows n0..n0+31) */
__device__ __forceinline__ void mm_abt(float acc[4][4], const uint32_t a[4][4], const bf16d *sm, int n0, int lane) {
#pragma unroll
    for (int n = 0; n < 4; n++)
#pragma unroll
        for (int e = 0; e < 4; e++) acc[n][e] = 0.0f;
#pragma unroll
    for (int kk = 0; kk < 4; kk++)
#pragma unroll
        for (int np = 0; np < 2; np++) {
            uint32_t b[4];
            ldsm_x4(b, sm + (n0 + np * 16 + (lane % 8) + (lane / 16) * 8) * FA_LD + kk * 16 + ((lane / 8) % 2) * 8);
            mma16816(acc[2 * np], a[kk], b[0], b[1]);
            mma16816(acc[2 * np + 1], a[kk], b[2], b[3]);
        }
}
/* acc (16 x 64: 8 n-tiles) += P (16 x 32, A fragments pa[2]) * Bst (rows k0..k0+31 of a row-major [k][64]) */
__device__ __forceinline__ void mm_pb(float acc[8][4], const uint32_t pa[2][4], const bf16d *sm, int k0, int lane) {
#pragma unroll
    for (int kc = 0; kc < 2; kc++)
#pragma unroll
        for (int np = 0; np < 4; np++) {
            uint32_t b[4];
            ldsm_x4_t(b, sm + (k0 + kc * 16 + (lane % 8) + ((lane / 8) % 2) * 8) * FA_LD + np * 16 + (lane / 16) * 8);
            mma16816(acc[2 * np], pa[kc], b[0], b[1]);
            mma16816(acc[2 * np + 1], pa[kc], b[2], b[3]);
        }
}
/* C fragments of a 16 x 32 tile -> A fragments (2 k-chunks of 16) */
__device__ __forceinline__ void c_to_a(uint32_t pa[2][4], const float s[4][4]) {
#pragma unroll
    for (int c = 0; c < 2; c++) {
        pa[c][0] = pack2(s[2 * c][0], s[2 * c][1]);
        pa[c][1] = pack2(s[2 * c][2], s[2 * c][3]);
        pa[c][2] = pack2(s[2 * c + 1][0], s[2 * c + 1][1]);
        pa[c][3] = pack2(s[2 * c + 1][2], s[2 * c + 1][3]);
    }
}
/* The same three for NT n-tiles of 8 (mm_abt_n: acc 16 x 8 NT) and KC k-chunks of 16 (mm_pb_n, c_to_a_n) */
template <int NT>
__device__ __forceinline__ void mm_abt_n(float acc[NT][4], const uint32_t a[4][4], const bf16d *sm, int n0, int lane) {
#pragma unroll
    for (int n = 0; n < NT; n++)
#pragma unroll
        for (int e = 0; e < 4; e++) acc[n][e] = 0.0f;
#pragma unroll
    for (int kk = 0; kk < 4; kk++)
#pragma unroll
        for (int np = 0; np < NT / 2; np++) {
            uint32_t b[4];
            ldsm_x4(b, sm + (n0 + np * 16 + (lane % 8) + (lane / 16) * 8) * FA_LD + kk * 16 + ((lane / 8) % 2) * 8);
            mma16816(acc[2 * np], a[kk], b[0], b[1]);
            mma16816(acc[2 * np + 1], a[kk], b[2], b[3]);
        }
}
template <int KC>
__device__ __forceinline__ void mm_pb_n(float acc[8][4], const uint32_t pa[KC][4], const bf16d *sm, int k0, int lane) {
#pragma unroll
    for (int kc = 0; kc < KC; kc++)
#pragma unroll
        for (int np = 0; np < 4; np++) {
            uint32_t b[4];
            ldsm_x4_t(b, sm + (k0 + kc * 16 + (lane % 8) + ((lane / 8) % 2) * 8) * FA_LD + np * 16 + (lane / 16) * 8);
            mma16816(acc[2 * np], pa[kc], b[0], b[1]);
            mma16816(acc[2 * np + 1], pa[kc], b[2], b[3]);
        }
}
template <int KC>
__device__ __forceinline__ void c_to_a_n(uint32_t pa[KC][4], const float s[2 * KC][4]) {
#pragma unroll
    for (int c = 0; c < KC; c++) {
        pa[c][0] = pack2(s[2 * c][0], s[2 * c][1]);
        pa[c][1] = pack2(s[2 * c][2], s[2 * c][3]);
        pa[c][2] = pack2(s[2 * c + 1][0], s[2 * c + 1][1]);
        pa[c][3] = pack2(s[2 * c + 1][2], s[2 * c + 1][3]);
    }
}
/* rows [r0, r0 + n) of one head's 64 columns (global row stride ld elements) into smem rows 0..n-1; rows past
 * `valid` are zero. Asynchronous 16-byte copies (cp.async, zero-filled past `valid`), all in flight at once:
 * call load_wait() before reading. */
__device__ __forceinline__ void load_rows(bf16d *sm, const bf16d *g, long ld, int r0, int n, int valid) {
    for (int i = threadIdx.x; i < n * 8; i += blockDim.x) {
        int r = i / 8, c = i % 8;
        int ok = r0 + r < valid;
        const bf16d *src = g + (ok ? (long)(r0 + r) * ld + c * 8 : 0);
        uint32_t dst = (uint32_t)__cvta_generic_to_shared(sm + r * FA_LD + c * 8);
        asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(ok ? 16 : 0));
    }
}
__device__ __forceinline__ void load_wait(void) {
    asm volatile("cp.async.commit_group;\n" ::);
    asm volatile("cp.async.wait_group 0;\n" ::: "memory");
    __syncthreads();
}
__device__ __forceinline__ void cp_commit(void) { asm volatile("cp.async.commit_group;\n" ::); }
/* wait until at most n (0..7) of this thread's cp.async groups are pending */
__device__ __forceinline__ void cp_wait(int n) {
    switch (n) {
    case 0: asm volatile("cp.async.wait_group 0;\n" ::: "memory"); break;
    case 1: asm volatile("cp.async.wait_group 1;\n" ::: "memory"); break;
    case 2: asm volatile("cp.async.wait_group 2;\n" ::: "memory"); break;
    case 3: asm volatile("cp.async.wait_group 3;\n" ::: "memory"); break;
    case 4: asm volatile("cp.async.wait_group 4;\n" ::: "memory"); break;
    case 5: asm volatile("cp.async.wait_group 5;\n" ::: "memory"); break;
    case 6: asm volatile("cp.async.wait_group 6;\n" ::: "memory"); break;
    default: asm volatile("cp.async.wait_group 7;\n" ::: "memory"); break;
    }
}
__device__ __forceinline__ float quad_max(float v) {
    v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 1));
    return fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 2));
}
__device__ __forceinline__ float quad_sum(float v) {
    v += __shfl_xor_sync(0xffffffffu, v, 1);
    return v + __shfl_xor_sync(0xffffffffu, v, 2);
}

/* mode 0: out, lse. mode 1 (backward step 1): D[row] = rowsum(dout * O). Scores are kept in log2 units (scale
 * log2(e) folded in, an ex2 per score). */
template <int mode>
__global__ void __launch_bounds__(256) flash_forward_kernel(bf16d *out, float *lse, float *Dout, const bf16d *dout,
                                                            const bf16d *qkv, int T, int C, int NH, int TP, float scale) {
    extern __shared__ __align__(16) unsigned char smraw[];
    int rows = blockDim.x / 2; /* 16 query rows per warp */
    bf16d *Ks = (bf16d *)smraw, *Vs = Ks + TP * FA_LD, *Qs = Vs + TP * FA_LD;
    int bh = blockIdx.y, b = bh / NH, h = bh % NH, q0 = blockIdx.x * rows;
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
    long C3 = 3L * C;
    const bf16d *base = qkv + (long)b * T * C3 + h * FA_HS;
    load_rows(Ks, base + C, C3, 0, TP, T);
    load_rows(Vs, base + 2 * C, C3, 0, TP, T);
    load_rows(Qs, base, C3, q0, rows, T);
    load_wait();
    if (q0 + warp * 16 >= T) return;
    uint32_t qa[4][4];
    load_a64(qa, Qs, warp * 16, lane);
    float scale2 = scale * FA_LOG2E;
    float o[8][4];
#pragma unroll
    for (int n = 0; n < 8; n++)
#pragma unroll
        for (int e = 0; e < 4; e++) o[n][e] = 0.0f;
    float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};
    for (int k0 = 0; k0 < T; k0 += 32) {
        float s[4][4];
        mm_abt(s, qa, Ks, k0, lane);
        float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
        for (int n = 0; n < 4; n++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                int col = k0 + n * 8 + 2 * t + (e & 1);
                s[n][e] = col < T ? s[n][e] * scale2 : -INFINITY;
                mx[e / 2] = fmaxf(mx[e / 2], s[n][e]);
            }
        float alpha[2], rs[2] = {0.0f, 0.0f};
#pragma unroll
        for (int r = 0; r < 2; r++) {
            float mn = fmaxf(m[r], quad_max(mx[r]));
            alpha[r] = fa_ex2(m[r] - mn);
            m[r] = mn;
        }
#pragma unroll
        for (int n = 0; n < 4; n++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                s[n][e] = fa_ex2(s[n][e] - m[e / 2]);
                rs[e / 2] += s[n][e];
            }
#pragma unroll
        for (int r = 0; r < 2; r++) l[r] = l[r] * alpha[r] + quad_sum(rs[r]);
#pragma unroll
        for (int n = 0; n < 8; n++) {
            o[n][0] *= alpha[0]; o[n][1] *= alpha[0];
            o[n][2] *= alpha[1]; o[n][3] *= alpha[1];
        }
        uint32_t pa[2][4];
        c_to_a(pa, s);
        mm_pb(o, pa, Vs, k0, lane);
    }
    int row[2] = {q0 + warp * 16 + g, q0 + warp * 16 + g + 8};
    float dsum[2] = {0.0f, 0.0f};
#pragma unroll
    for (int r = 0; r < 2; r++) {
        if (row[r] >= T) continue;
        float inv = 1.0f / l[r];
        long ro = ((long)b * T + row[r]) * C + h * FA_HS;
#pragma unroll
        for (int n = 0; n < 8; n++) {
            float v0 = o[n][2 * r] * inv, v1 = o[n][2 * r + 1] * inv;
            if (mode == 0) {
                *(__nv_bfloat162 *)(out + ro + n * 8 + 2 * t) = __floats2bfloat162_rn(v0, v1);
            } else {
                __nv_bfloat162 d = *(const __nv_bfloat162 *)(dout + ro + n * 8 + 2 * t);
                dsum[r] += v0 * __bfloat162float(d.x) + v1 * __bfloat162float(d.y);
            }
        }
    }
#pragma unroll
    for (int r = 0; r < 2; r++) {
        float d = quad_sum(dsum[r]);
        if (row[r] < T && t == 0) {
            long li = (long)bh * T + row[r];
            if (mode == 0) lse[li] = m[r] * FA_LN2 + logf(l[r]);
            else Dout[li] = d;
        }
    }
}

/* ---- the persistent forward (flash_fwd_persist_kernel, below) ----
 * One online-softmax step of one warp's 16 query rows over keys k0 .. k0 + 8 NT: S = Q K^T (raw: its max is taken
 * before scaling, scale2 > 0 keeps the order), P = 2^(scale2 S - m) by one FMA and an ex2, O = alpha O + P V.
 * The row sums l are per thread (its columns) and reduced over the quad once, at the end. MASK: keys >= T get
 * P = 0 (the last step; every step has at least one key < T). */
template <int NT, bool MASK>
__device__ __forceinline__ void fwd_step(float o[8][4], float m[2], float l[2], const uint32_t qa[4][4],
                                         const bf16d *Ks, const bf16d *Vs, int k0, int T, float scale2, int lane) {
    int t = lane % 4;
    float s[NT][4];
    mm_abt_n<NT>(s, qa, Ks, k0, lane);
    float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int n = 0; n < NT; n++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
            if (MASK && k0 + n * 8 + 2 * t + (e & 1) >= T) s[n][e] = -INFINITY;
            mx[e / 2] = fmaxf(mx[e / 2], s[n][e]);
        }
    float alpha[2];
#pragma unroll
    for (int r = 0; r < 2; r++) {
        float mn = fmaxf(m[r], quad_max(mx[r]) * scale2);
        alpha[r] = fa_ex2(m[r] - mn);
        m[r] = mn;
        l[r] *= alpha[r];
    }
#pragma unroll
    for (int n = 0; n < NT; n++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
            s[n][e] = fa_ex2(fmaf(s[n][e], scale2, -m[e / 2]));
            l[e / 2] += s[n][e];
        }
#pragma unroll
    for (int n = 0; n < 8; n++) {
        o[n][0] *= alpha[0]; o[n][1] *= alpha[0];
        o[n][2] *= alpha[1]; o[n][3] *= alpha[1];
    }
    uint32_t pa[NT / 2][4];
    c_to_a_n<NT / 2>(pa, s);
    mm_pb_n<NT / 2>(o, pa, Vs, k0, lane);
}
/* One warp's 16 query rows (A fragments qa) against keys [kb, ke) (multiples of 32, ke <= TP): steps of KT keys
 * (32 or 64; 64 measured no faster: 128 registers, a few spilled) while they are all < T, then steps of 32
 * (masked past T). l comes back reduced over the quad. An empty
 * range leaves o = 0, m = -inf, l = 0 (weight 0 when partial results are merged). */
template <int KT>
__device__ __forceinline__ void fwd_keys(float o[8][4], float m[2], float l[2], const uint32_t qa[4][4],
                                         const bf16d *Ks, const bf16d *Vs, int kb, int ke, int T, float scale2,
                                         int lane) {
#pragma unroll
    for (int n = 0; n < 8; n++)
#pragma unroll
        for (int e = 0; e < 4; e++) o[n][e] = 0.0f;
    m[0] = m[1] = -INFINITY;
    l[0] = l[1] = 0.0f;
    int k0 = kb;
    for (; k0 + KT <= ke && k0 + KT <= T; k0 += KT) fwd_step<KT / 8, false>(o, m, l, qa, Ks, Vs, k0, T, scale2, lane);
    for (; k0 < ke; k0 += 32) {
        if (k0 + 32 <= T) fwd_step<4, false>(o, m, l, qa, Ks, Vs, k0, T, scale2, lane);
        else fwd_step<4, true>(o, m, l, qa, Ks, Vs, k0, T, scale2, lane);
    }
    l[0] = quad_sum(l[0]);
    l[1] = quad_sum(l[1]);
}
/* O rows row0 + g, row0 + g + 8 (those < T) of head h of image b, and their lse (natural-log units) */
__device__ __forceinline__ void fwd_store(bf16d *out, float *lse, const float o[8][4], const float m[2],
                                          const float l[2], int b, int h, int NH, int row0, int T, int C, int lane) {
    int g = lane / 4, t = lane % 4;
#pragma unroll
    for (int r = 0; r < 2; r++) {
        int row = row0 + g + 8 * r;
        if (row >= T) continue;
        float inv = 1.0f / l[r];
        bf16d *dst = out + ((long)b * T + row) * C + h * FA_HS;
#pragma unroll
        for (int n = 0; n < 8; n++)
            *(__nv_bfloat162 *)(dst + n * 8 + 2 * t) = __floats2bfloat162_rn(o[n][2 * r] * inv, o[n][2 * r + 1] * inv);
        if (t == 0) lse[((long)b * NH + h) * T + row] = m[r] * FA_LN2 + logf(l[r]);
    }
}
/* The persistent forward (the default for T <= 208): gridDim.x blocks (one an SM) walk the B NH heads; a block's
 * warps cover all query tiles of a head, so K and V are read from memory once per head. Shared memory holds two
 * stages of Q (TQ rows), K, V (TP rows each): the next head's rows are loaded (cp.async, issued right after the
 * one barrier per head) while this head's are computed.
 * split (ceil(T/16) = 4k + 1 tiles, e.g. 13 at T = 197): 4k warps own a tile each, and the last tile's keys are
 * split in four over the last 4 warps (one on each of the SM's 4 schedulers), which merge their partial
 * (m, l, O) through shared memory (fixed order: deterministic). With a 13th warp one scheduler ran 4 warps and
 * the other three warps waited at the head's barrier. */
#define FA_PERSIST_WARPS 13 /* T <= 208 */
#define FA_XCH_VALS 36      /* a lane's partial: m[2], l[2], o[8][4] */
template <int KT>
__global__ void __launch_bounds__(32 * FA_PERSIST_WARPS, 1)
    flash_fwd_persist_kernel(bf16d *out, float *lse, const bf16d *qkv, int BH, int T, int C, int NH, int TP, int TQ,
                             int split, float scale) {
    extern __shared__ __align__(16) unsigned char smraw[];
    long stage = (long)(2 * TP + TQ) * FA_LD;
    float *xch = (float *)((bf16d *)smraw + 2 * stage); /* split: [4][FA_XCH_VALS][32] */
    int nw = blockDim.x / 32, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    int hq = split ? warp - (nw - 4) : -1; /* this warp's quarter of the last tile's keys, or -1 */
    long C3 = 3L * C;
    float scale2 = scale * FA_LOG2E;
    int j = blockIdx.x;
    if (j >= BH) return;
    auto load = [&](int head, int st) {
        bf16d *Ks = (bf16d *)smraw + st * stage, *Vs = Ks + TP * FA_LD, *Qs = Vs + TP * FA_LD;
        const bf16d *base = qkv + (long)(head / NH) * T * C3 + (head % NH) * FA_HS;
        load_rows(Qs, base, C3, 0, TQ, T);
        load_rows(Ks, base + C, C3, 0, TP, T);
        load_rows(Vs, base + 2 * C, C3, 0, TP, T);
        cp_commit();
    };
    load(j, 0);
    for (int it = 0; j < BH; it++, j += gridDim.x) {
        cp_wait(0);      /* head j (the only group in flight) */
        __syncthreads(); /* its rows are visible, and every warp is done with head j - gridDim.x's stage */
        if (j + (int)gridDim.x < BH) load(j + gridDim.x, (it + 1) & 1);
        bf16d *Ks = (bf16d *)smraw + (it & 1) * stage, *Vs = Ks + TP * FA_LD, *Qs = Vs + TP * FA_LD;
        int b = j / NH, h = j % NH;
        uint32_t qa[4][4];
        float o[8][4], m[2], l[2];
        if (hq >= 0) { /* the last tile (rows 16 nw ..), keys [kb, ke): this warp's quarter of the 32-key steps */
            int ns = TP / 32, kb = 32 * (hq * ns / 4), ke = 32 * ((hq + 1) * ns / 4);
            load_a64(qa, Qs, 16 * nw, lane);
            fwd_keys<KT>(o, m, l, qa, Ks, Vs, kb, ke, T, scale2, lane);
            float *x = xch + hq * FA_XCH_VALS * 32 + lane;
            x[0] = m[0]; x[32] = m[1]; x[64] = l[0]; x[96] = l[1];
#pragma unroll
            for (int n = 0; n < 8; n++)
#pragma unroll
                for (int e = 0; e < 4; e++) x[(4 + 4 * n + e) * 32] = o[n][e];
            asm volatile("bar.sync 1, 128;\n" ::: "memory"); /* the 4 helper warps */
            if (hq == 0) { /* merge the 4 partials in order q = 0..3 */
                float M[2], L[2] = {0.0f, 0.0f}, O[8][4];
#pragma unroll
                for (int r = 0; r < 2; r++) {
                    M[r] = -INFINITY;
                    for (int q = 0; q < 4; q++) M[r] = fmaxf(M[r], xch[(q * FA_XCH_VALS + r) * 32 + lane]);
                }
#pragma unroll
                for (int n = 0; n < 8; n++)
#pragma unroll
                    for (int e = 0; e < 4; e++) O[n][e] = 0.0f;
#pragma unroll
                for (int q = 0; q < 4; q++) {
                    const float *y = xch + q * FA_XCH_VALS * 32 + lane;
                    float a0 = fa_ex2(y[0] - M[0]), a1 = fa_ex2(y[32] - M[1]);
                    L[0] += y[64] * a0;
                    L[1] += y[96] * a1;
#pragma unroll
                    for (int n = 0; n < 8; n++) {
                        O[n][0] += y[(4 + 4 * n) * 32] * a0;
                        O[n][1] += y[(5 + 4 * n) * 32] * a0;
                        O[n][2] += y[(6 + 4 * n) * 32] * a1;
                        O[n][3] += y[(7 + 4 * n) * 32] * a1;
                    }
                }
                fwd_store(out, lse, O, M, L, b, h, NH, 16 * nw, T, C, lane);
            }
        }
        load_a64(qa, Qs, warp * 16, lane);
        fwd_keys<KT>(o, m, l, qa, Ks, Vs, 0, TP, T, scale2, lane);
        fwd_store(out, lse, o, m, l, b, h, NH, warp * 16, T, C, lane);
    }
}

/* dQ for 64 query rows */
__global__ void __launch_bounds__(256) flash_dq_kernel(bf16d *dqkv, const bf16d *dout, const bf16d *qkv, const float *lse,
                                                       const float *Dv, int T, int C, int NH, int TP, float scale,
                                                       int accumulate) {
    extern __shared__ __align__(16) unsigned char smraw[];
    int rows = blockDim.x / 2;
    bf16d *Ks = (bf16d *)smraw, *Vs = Ks + TP * FA_LD, *Qs = Vs + TP * FA_LD, *dOs = Qs + rows * FA_LD;
    int bh = blockIdx.y, b = bh / NH, h = bh % NH, q0 = blockIdx.x * rows;
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
    long C3 = 3L * C;
    const bf16d *base = qkv + (long)b * T * C3 + h * FA_HS;
    load_rows(Ks, base + C, C3, 0, TP, T);
    load_rows(Vs, base + 2 * C, C3, 0, TP, T);
    load_rows(Qs, base, C3, q0, rows, T);
    load_rows(dOs, dout + (long)b * T * C + h * FA_HS, C, q0, rows, T);
    load_wait();
    if (q0 + warp * 16 >= T) return;
    uint32_t qa[4][4], da[4][4];
    load_a64(qa, Qs, warp * 16, lane);
    load_a64(da, dOs, warp * 16, lane);
    int row[2] = {q0 + warp * 16 + g, q0 + warp * 16 + g + 8};
    float L[2], Dr[2];
#pragma unroll
    for (int r = 0; r < 2; r++) {
        L[r] = row[r] < T ? lse[(long)bh * T + row[r]] : 0.0f;
        Dr[r] = row[r] < T ? Dv[(long)bh * T + row[r]] : 0.0f;
    }
    float dq[8][4];
#pragma unroll
    for (int n = 0; n < 8; n++)
#pragma unroll
        for (int e = 0; e < 4; e++) dq[n][e] = 0.0f;
    for (int k0 = 0; k0 < T; k0 += 32) {
        float s[4][4], dp[4][4];
        mm_abt(s, qa, Ks, k0, lane);
        mm_abt(dp, da, Vs, k0, lane);
#pragma unroll
        for (int n = 0; n < 4; n++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                int col = k0 + n * 8 + 2 * t + (e & 1);
                float p = col < T ? __expf(s[n][e] * scale - L[e / 2]) : 0.0f;
                s[n][e] = p * (dp[n][e] - Dr[e / 2]); /* dS */
            }
        uint32_t pa[2][4];
        c_to_a(pa, s);
        mm_pb(dq, pa, Ks, k0, lane);
    }
#pragma unroll
    for (int r = 0; r < 2; r++) {
        if (row[r] >= T) continue;
        bf16d *dst = dqkv + ((long)b * T + row[r]) * C3 + h * FA_HS;
#pragma unroll
        for (int n = 0; n < 8; n++) {
            float v0 = dq[n][2 * r] * scale, v1 = dq[n][2 * r + 1] * scale;
            __nv_bfloat162 *p = (__nv_bfloat162 *)(dst + n * 8 + 2 * t);
            if (accumulate) { v0 += __bfloat162float(p->x); v1 += __bfloat162float(p->y); }
            *p = __floats2bfloat162_rn(v0, v1);
        }
    }
}

/* dK, dV for 64 key rows */
__global__ void __launch_bounds__(128) flash_dkdv_kernel(bf16d *dqkv, const bf16d *dout, const bf16d *qkv,
                                                         const float *lse, const float *Dv, int T, int C, int NH, int TP,
                                                         float scale, int accumulate) {
    extern __shared__ __align__(16) unsigned char smraw[];
    int rows = blockDim.x / 2;
    bf16d *Qs = (bf16d *)smraw, *dOs = Qs + TP * FA_LD, *Ks = dOs + TP * FA_LD, *Vs = Ks + rows * FA_LD;
    float *Ls = (float *)(Vs + rows * FA_LD), *Ds = Ls + TP;
    int bh = blockIdx.y, b = bh / NH, h = bh % NH, k0b = blockIdx.x * rows;
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
    long C3 = 3L * C;
    const bf16d *base = qkv + (long)b * T * C3 + h * FA_HS;
    load_rows(Qs, base, C3, 0, TP, T);
    load_rows(dOs, dout + (long)b * T * C + h * FA_HS, C, 0, TP, T);
    load_rows(Ks, base + C, C3, k0b, rows, T);
    load_rows(Vs, base + 2 * C, C3, k0b, rows, T);
    for (int i = threadIdx.x; i < TP; i += blockDim.x) {
        Ls[i] = i < T ? lse[(long)bh * T + i] : 0.0f;
        Ds[i] = i < T ? Dv[(long)bh * T + i] : 0.0f;
    }
    load_wait();
    if (k0b + warp * 16 >= T) return;
    uint32_t ka[4][4], va[4][4];
    load_a64(ka, Ks, warp * 16, lane);
    load_a64(va, Vs, warp * 16, lane);
    float dk[8][4], dv[8][4];
#pragma unroll
    for (int n = 0; n < 8; n++)
#pragma unroll
        for (int e = 0; e < 4; e++) dk[n][e] = dv[n][e] = 0.0f;
    for (int q0 = 0; q0 < T; q0 += 32) {
        float s[4][4], dp[4][4];
        mm_abt(s, ka, Qs, q0, lane);  /* S^T (keys x queries) */
        mm_abt(dp, va, dOs, q0, lane); /* dP^T */
#pragma unroll
        for (int n = 0; n < 4; n++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                int col = q0 + n * 8 + 2 * t + (e & 1);
                float p = col < T ? __expf(s[n][e] * scale - Ls[col]) : 0.0f;
                s[n][e] = p;
                dp[n][e] = p * (dp[n][e] - Ds[col]);
            }
        uint32_t pa[2][4], dsa[2][4];
        c_to_a(pa, s);
        c_to_a(dsa, dp);
        mm_pb(dv, pa, dOs, q0, lane);
        mm_pb(dk, dsa, Qs, q0, lane);
    }
    int row[2] = {k0b + warp * 16 + g, k0b + warp * 16 + g + 8};
#pragma unroll
    for (int r = 0; r < 2; r++) {
        if (row[r] >= T) continue;
        bf16d *dst = dqkv + ((long)b * T + row[r]) * C3 + h * FA_HS;
#pragma unroll
        for (int n = 0; n < 8; n++) {
            float k0v = dk[n][2 * r] * scale, k1v = dk[n][2 * r + 1] * scale;
            float v0 = dv[n][2 * r], v1 = dv[n][2 * r + 1];
            __nv_bfloat162 *pk = (__nv_bfloat162 *)(dst + C + n * 8 + 2 * t);
            __nv_bfloat162 *pv = (__nv_bfloat162 *)(dst + 2 * C + n * 8 + 2 * t);
            if (accumulate) {
                k0v += __bfloat162float(pk->x); k1v += __bfloat162float(pk->y);
                v0 += __bfloat162float(pv->x); v1 += __bfloat162float(pv->y);
            }
            *pk = __floats2bfloat162_rn(k0v, k1v);
            *pv = __floats2bfloat162_rn(v0, v1);
        }
    }
}

/* The fused backward (T <= FA1_MAX_T: ViT-B/16's 197), one block per (image, head). Warp w owns keys
 * [16w, 16w + 16) (max(8, ceil(T/16)) warps); Q, K, V, dO of the head sit in shared memory (cp.async: K and V
 * first, then Q and dO one 32-query tile per commit group, so the first tile's work starts before the rest has
 * landed), with lse and D = rowsum(dO * O) (a thread per query row, from the saved O; or Dv when given). Per
 * 32-query tile:
 *   (1) every warp: S^T = K_w Q^T, P^T = exp(scale S^T - lse), dP^T = V_w dO^T, dS^T = P^T (dP^T - D);
 *       dV_w += P^T dO and dK_w += dS^T Q stay in registers; dS^T (bf16) goes to shared memory;
 *   (2) after one barrier, 8 warps: dQ (32 x 64) = scale dS K over all keys, a 16 x 16 piece each, written out.
 * dS is double-buffered, so one barrier per tile suffices. S and dP are computed once (the two-kernel path
 * computes them twice), K, V, Q, dO are read once per head, and there are no atomics (deterministic).
 * A last tile of <= 16 queries (T = 197: 5) runs (1) on 16 queries and skips (2)'s rows past T; with 13 warps
 * the dQ warps avoid the scheduler that runs 4 key warps (below). Both: 0.1717 -> 0.1693 ms a layer. */
#define FA1_MAX_WARPS 13
#define FA1_MAX_T (16 * FA1_MAX_WARPS)
#define FA1_LDS 40 /* a dS^T row: 32 queries + 8 pad (80 bytes: conflict-free stores and ldmatrix) */

/* Step (1) of the one-kernel backward for warp keys k0w..+16 and NT * 8 queries from q0 (NT 4: a full 32-query
 * tile; 2: the first 16, when the rest are past T): S^T, P^T, dP^T, dS^T; dV += P^T dO, dK += dS^T Q; dS^T to
 * shared memory (columns 0 .. 8 NT). */
template <int NT>
__device__ __forceinline__ void fa1_key_tile(float dv[8][4], float dk[8][4], bf16d *dS, const bf16d *Ks,
                                             const bf16d *Vs, const bf16d *Qs, const bf16d *dOs, const float *Ls,
                                             const float *Ds, int k0w, int q0, int T, float scale2, int lane) {
    int g = lane / 4, t = lane % 4;
    uint32_t a[4][4];
    float s[NT][4], dp[NT][4];
    load_a64(a, Ks, k0w, lane);
    mm_abt_n<NT>(s, a, Qs, q0, lane); /* S^T (16 keys x 8 NT queries) */
    load_a64(a, Vs, k0w, lane);
    mm_abt_n<NT>(dp, a, dOs, q0, lane); /* dP^T */
#pragma unroll
    for (int n = 0; n < NT; n++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
            int col = q0 + n * 8 + 2 * t + (e & 1), key = k0w + g + 8 * (e / 2);
            float p = col < T && key < T ? fa_ex2(fmaf(s[n][e], scale2, -Ls[col])) : 0.0f;
            s[n][e] = p;
            dp[n][e] = p * (dp[n][e] - Ds[col]);
        }
    uint32_t pa[NT / 2][4];
    c_to_a_n<NT / 2>(pa, s);
    mm_pb_n<NT / 2>(dv, pa, dOs, q0, lane);
    c_to_a_n<NT / 2>(pa, dp);
    mm_pb_n<NT / 2>(dk, pa, Qs, q0, lane);
#pragma unroll
    for (int n = 0; n < NT; n++)
#pragma unroll
        for (int r = 0; r < 2; r++)
            *(uint32_t *)(dS + (k0w + g + 8 * r) * FA1_LDS + n * 8 + 2 * t) = pack2(dp[n][2 * r], dp[n][2 * r + 1]);
}

__global__ void __launch_bounds__(32 * FA1_MAX_WARPS, 1)
    flash_bwd_fused_kernel(bf16d *dqkv, const bf16d *dout, const bf16d *out, const float *Dv, const bf16d *qkv,
                           const float *lse, int T, int C, int NH, int TP, int TK, float scale, int accumulate) {
    extern __shared__ __align__(16) unsigned char smraw[];
    bf16d *Qs = (bf16d *)smraw, *dOs = Qs + TP * FA_LD, *Ks = dOs + TP * FA_LD, *Vs = Ks + TK * FA_LD;
    bf16d *dSs = Vs + TK * FA_LD; /* 2 buffers of TK rows x FA1_LDS */
    float *Ls = (float *)(dSs + 2 * TK * FA1_LDS), *Ds = Ls + TP;
    int bh = blockIdx.x, b = bh / NH, h = bh % NH;
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
    long C3 = 3L * C;
    const bf16d *base = qkv + (long)b * T * C3 + h * FA_HS, *dob = dout + (long)b * T * C + h * FA_HS;
    int nq = TP / 32;
    load_rows(Ks, base + C, C3, 0, TK, T);
    load_rows(Vs, base + 2 * C, C3, 0, TK, T);
    cp_commit();
    for (int i = 0; i < nq; i++) {
        load_rows(Qs + i * 32 * FA_LD, base, C3, i * 32, 32, T);
        load_rows(dOs + i * 32 * FA_LD, dob, C, i * 32, 32, T);
        cp_commit();
    }
    for (int q = threadIdx.x; q < TP; q += blockDim.x) {
        float L = 0.0f, d = 0.0f;
        if (q < T) {
            L = lse[(long)bh * T + q] * FA_LOG2E;
            if (Dv) {
                d = Dv[(long)bh * T + q];
            } else {
                const FaPack8 *o = (const FaPack8 *)(out + ((long)b * T + q) * C + h * FA_HS);
                const FaPack8 *dd = (const FaPack8 *)(dob + (long)q * C);
#pragma unroll
                for (int k = 0; k < FA_HS / 8; k++) {
                    FaPack8 a = o[k], c = dd[k];
#pragma unroll
                    for (int e = 0; e < 8; e++) d += __bfloat162float(a.v[e]) * __bfloat162float(c.v[e]);
                }
            }
        }
        Ls[q] = L;
        Ds[q] = d;
    }
    cp_wait(nq - 1); /* K, V and the first query tile */
    __syncthreads();
    int k0w = warp * 16, active = k0w < T;
    /* the 8 dQ warps: warps 0..7, or with 13 warps (the 4 schedulers of an SM run warps w % 4 = 0, 1, 2, 3: 4,
     * 3, 3, 3 key warps) the 8 of 1, 2, 3, 5, 6, 7, 9, 10, off the scheduler that has 4 */
    int qslot = blockDim.x == 32 * 13 ? (warp % 4 ? warp - 1 - warp / 4 : 8) : warp;
    float scale2 = scale * FA_LOG2E; /* Ls holds lse log2(e) */
    float dk[8][4], dv[8][4];
#pragma unroll
    for (int n = 0; n < 8; n++)
#pragma unroll
        for (int e = 0; e < 4; e++) dk[n][e] = dv[n][e] = 0.0f;
    for (int i = 0; i < nq; i++) {
        int q0 = i * 32;
        bf16d *dS = dSs + (i & 1) * TK * FA1_LDS;
        if (active) { /* a last tile of <= 16 queries (T = 197: 5) does half the work */
            if (T - q0 > 16) fa1_key_tile<4>(dv, dk, dS, Ks, Vs, Qs, dOs, Ls, Ds, k0w, q0, T, scale2, lane);
            else fa1_key_tile<2>(dv, dk, dS, Ks, Vs, Qs, dOs, Ls, Ds, k0w, q0, T, scale2, lane);
        }
        cp_wait(nq - i - 2 > 0 ? nq - i - 2 : 0); /* the next query tile */
        __syncthreads();
        if (qslot < 8 && q0 + (qslot / 4) * 16 < T) { /* dQ rows q0 + mt*16 .. +16 (< T), columns nu*16 .. +16 */
            int mt = qslot / 4, nu = qslot % 4;
            float acc[2][4];
#pragma unroll
            for (int j = 0; j < 2; j++)
#pragma unroll
                for (int e = 0; e < 4; e++) acc[j][e] = 0.0f;
            for (int kk = 0; kk < TK; kk += 16) {
                uint32_t a[4], bb[4];
                ldsm_x4_t(a, dS + (kk + (lane % 8) + (lane / 16) * 8) * FA1_LDS + mt * 16 + ((lane / 8) % 2) * 8);
                ldsm_x4_t(bb, Ks + (kk + (lane % 8) + ((lane / 8) % 2) * 8) * FA_LD + nu * 16 + (lane / 16) * 8);
                mma16816(acc[0], a, bb[0], bb[1]);
                mma16816(acc[1], a, bb[2], bb[3]);
            }
#pragma unroll
            for (int r = 0; r < 2; r++) {
                int row = q0 + mt * 16 + g + 8 * r;
                if (row >= T) continue;
                bf16d *dst = dqkv + ((long)b * T + row) * C3 + h * FA_HS + nu * 16;
#pragma unroll
                for (int j = 0; j < 2; j++) {
                    float v0 = acc[j][2 * r] * scale, v1 = acc[j][2 * r + 1] * scale;
                    __nv_bfloat162 *p = (__nv_bfloat162 *)(dst + j * 8 + 2 * t);
                    if (accumulate) { v0 += __bfloat162float(p->x); v1 += __bfloat162float(p->y); }
                    *p = __floats2bfloat162_rn(v0, v1);
                }
            }
        }
    }
    if (!active) return;
#pragma unroll
    for (int r = 0; r < 2; r++) {
        int row = k0w + g + 8 * r;
        if (row >= T) continue;
        bf16d *dst = dqkv + ((long)b * T + row) * C3 + h * FA_HS;
#pragma unroll
        for (int n = 0; n < 8; n++) {
            float k0v = dk[n][2 * r] * scale, k1v = dk[n][2 * r + 1] * scale;
            float v0 = dv[n][2 * r], v1 = dv[n][2 * r + 1];
            __nv_bfloat162 *pk = (__nv_bfloat162 *)(dst + C + n * 8 + 2 * t);
            __nv_bfloat162 *pv = (__nv_bfloat162 *)(dst + 2 * C + n * 8 + 2 * t);
            if (accumulate) {
                k0v += __bfloat162float(pk->x); k1v += __bfloat162float(pk->y);
                v0 += __bfloat162float(pv->x); v1 += __bfloat162float(pv->y);
            }
            *pk = __floats2bfloat162_rn(k0v, k1v);
            *pv = __floats2bfloat162_rn(v0, v1);
        }
    }
}

/* The cluster backward (LORALAB_ATTENTION=cluster, T <= FA1_MAX_T; slower than the kernel above, kept as a measured
 * alternative: both are bound by shared-memory bandwidth (ldmatrix), not by occupancy, docs/engine.md): the
 * one-kernel backward split over the keys of a head into a cluster of 2 blocks of 8 warps, rank r owning keys
 * [TK r, TK (r + 1)) (TK = 16 ceil(ceil(T/16) / 2): 112 at T = 197), so that 2 blocks fit an SM (<= 128 registers,
 * 113 KB of shared memory each) where the one-kernel backward fits one block of 13 warps. Per 32-query tile:
 *   (1) each key warp: S^T, P^T, dP^T, dS^T for its 16 keys; dK, dV in registers; dS^T (bf16) to shared memory;
 *   (2) after a barrier, the 8 warps: the partial dQ = dS K over the block's keys, 16 x 16 each; rank 0 finishes
 *       columns 0..31, rank 1 columns 32..63: each warp whose piece the other rank finishes stores it (f32)
 *       into the other block's shared memory (distributed shared memory; two buffers, by tile parity);
 *   (3) after a cluster barrier (which also frees the single dS buffer), the finishing warps add the two
 *       partials and write dQ. A sum of exactly two f32 partials does not depend on their order: deterministic. */
#define FA2C_WARPS 8
#define FA2C_XCH (4 * 8 * 32) /* floats of one exchange buffer: 4 warps x 8 values x 32 lanes */
__global__ void __cluster_dims__(2, 1, 1) __launch_bounds__(32 * FA2C_WARPS, 2)
    flash_bwd_cluster_kernel(bf16d *dqkv, const bf16d *dout, const bf16d *out, const float *Dv, const bf16d *qkv,
                             const float *lse, int T, int C, int NH, int TP, int TK, float scale, int accumulate) {
    extern __shared__ __align__(16) unsigned char smraw[];
    bf16d *Qs = (bf16d *)smraw, *dOs = Qs + TP * FA_LD, *Ks = dOs + TP * FA_LD, *Vs = Ks + TK * FA_LD;
    bf16d *dS = Vs + TK * FA_LD;                 /* TK rows x FA1_LDS */
    float *xch = (float *)(dS + TK * FA1_LDS);   /* 2 exchange buffers */
    float *Ls = xch + 2 * FA2C_XCH, *Ds = Ls + TP;
    cg::cluster_group cluster = cg::this_cluster();
    int rank = (int)cluster.block_rank();
    float *xpeer = cluster.map_shared_rank(xch, rank ^ 1);
    int bh = blockIdx.x / 2, b = bh / NH, h = bh % NH, kb = rank * TK;
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
    long C3 = 3L * C;
    const bf16d *base = qkv + (long)b * T * C3 + h * FA_HS, *dob = dout + (long)b * T * C + h * FA_HS;
    int nq = TP / 32;
    load_rows(Ks, base + C, C3, kb, TK, T);
    load_rows(Vs, base + 2 * C, C3, kb, TK, T);
    cp_commit();
    for (int i = 0; i < nq; i++) {
        load_rows(Qs + i * 32 * FA_LD, base, C3, i * 32, 32, T);
        load_rows(dOs + i * 32 * FA_LD, dob, C, i * 32, 32, T);
        cp_commit();
    }
    for (int q = threadIdx.x; q < TP; q += blockDim.x) {
        float L = 0.0f, d = 0.0f;
        if (q < T) {
            L = lse[(long)bh * T + q] * FA_LOG2E;
            if (Dv) {
                d = Dv[(long)bh * T + q];
            } else {
                const FaPack8 *o = (const FaPack8 *)(out + ((long)b * T + q) * C + h * FA_HS);
                const FaPack8 *dd = (const FaPack8 *)(dob + (long)q * C);
#pragma unroll
                for (int k = 0; k < FA_HS / 8; k++) {
                    FaPack8 a = o[k], c = dd[k];
#pragma unroll
                    for (int e = 0; e < 8; e++) d += __bfloat162float(a.v[e]) * __bfloat162float(c.v[e]);
                }
            }
        }
        Ls[q] = L;
        Ds[q] = d;
    }
    cp_wait(nq - 1); /* K, V and the first query tile */
    cluster.sync();  /* also: the other block runs before its shared memory is written */
    int k0w = warp * 16, active = k0w < TK && kb + k0w < T;
    int TKa = T - kb <= 0 ? 0 : min(TK, (T - kb + 15) & ~15); /* rows of dS (and Ks) that hold keys < T */
    int mt = warp / 4, nu = warp % 4, own = (nu >> 1) == rank, slot = mt * 2 + (nu & 1);
    float scale2 = scale * FA_LOG2E; /* Ls holds lse log2(e) */
    float dk[8][4], dv[8][4];
#pragma unroll
    for (int n = 0; n < 8; n++)
#pragma unroll
        for (int e = 0; e < 4; e++) dk[n][e] = dv[n][e] = 0.0f;
    for (int i = 0; i < nq; i++) {
        int q0 = i * 32;
        if (active) {
            uint32_t a[4][4];
            float s[4][4], dp[4][4];
            load_a64(a, Ks, k0w, lane);
            mm_abt(s, a, Qs, q0, lane); /* S^T (16 keys x 32 queries) */
            load_a64(a, Vs, k0w, lane);
            mm_abt(dp, a, dOs, q0, lane); /* dP^T */
#pragma unroll
            for (int n = 0; n < 4; n++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    int col = q0 + n * 8 + 2 * t + (e & 1), key = kb + k0w + g + 8 * (e / 2);
                    float p = col < T && key < T ? fa_ex2(fmaf(s[n][e], scale2, -Ls[col])) : 0.0f;
                    s[n][e] = p;
                    dp[n][e] = p * (dp[n][e] - Ds[col]);
                }
            uint32_t pa[2][4];
            c_to_a(pa, s);
            mm_pb(dv, pa, dOs, q0, lane);
            c_to_a(pa, dp);
            mm_pb(dk, pa, Qs, q0, lane);
#pragma unroll
            for (int n = 0; n < 4; n++)
#pragma unroll
                for (int r = 0; r < 2; r++)
                    *(uint32_t *)(dS + (k0w + g + 8 * r) * FA1_LDS + n * 8 + 2 * t) = pack2(dp[n][2 * r], dp[n][2 * r + 1]);
        }
        cp_wait(nq - i - 2 > 0 ? nq - i - 2 : 0); /* the next query tile */
        __syncthreads();
        /* partial dQ rows q0 + mt*16 .. +16, columns nu*16 .. +16, over this block's keys */
        float acc[2][4];
#pragma unroll
        for (int j = 0; j < 2; j++)
#pragma unroll
            for (int e = 0; e < 4; e++) acc[j][e] = 0.0f;
        for (int kk = 0; kk < TKa; kk += 16) {
            uint32_t a[4], bb[4];
            ldsm_x4_t(a, dS + (kk + (lane % 8) + (lane / 16) * 8) * FA1_LDS + mt * 16 + ((lane / 8) % 2) * 8);
            ldsm_x4_t(bb, Ks + (kk + (lane % 8) + ((lane / 8) % 2) * 8) * FA_LD + nu * 16 + (lane / 16) * 8);
            mma16816(acc[0], a, bb[0], bb[1]);
            mma16816(acc[1], a, bb[2], bb[3]);
        }
        float *xb = ((i & 1) * 4 + slot) * 8 * 32 + lane + (own ? xch : xpeer);
        if (!own) {
#pragma unroll
            for (int j = 0; j < 2; j++)
#pragma unroll
                for (int e = 0; e < 4; e++) xb[(j * 4 + e) * 32] = acc[j][e];
        }
        cluster.sync();
        if (own) {
#pragma unroll
            for (int r = 0; r < 2; r++) {
                int row = q0 + mt * 16 + g + 8 * r;
                if (row >= T) continue;
                bf16d *dst = dqkv + ((long)b * T + row) * C3 + h * FA_HS + nu * 16;
#pragma unroll
                for (int j = 0; j < 2; j++) {
                    float v0 = (acc[j][2 * r] + xb[(j * 4 + 2 * r) * 32]) * scale;
                    float v1 = (acc[j][2 * r + 1] + xb[(j * 4 + 2 * r + 1) * 32]) * scale;
                    __nv_bfloat162 *p = (__nv_bfloat162 *)(dst + j * 8 + 2 * t);
                    if (accumulate) { v0 += __bfloat162float(p->x); v1 += __bfloat162float(p->y); }
                    *p = __floats2bfloat162_rn(v0, v1);
                }
            }
        }
    }
    if (!active) return;
#pragma unroll
    for (int r = 0; r < 2; r++) {
        int row = kb + k0w + g + 8 * r;
        if (row >= T) continue;
        bf16d *dst = dqkv + ((long)b * T + row) * C3 + h * FA_HS;
#pragma unroll
        for (int n = 0; n < 8; n++) {
            float k0v = dk[n][2 * r] * scale, k1v = dk[n][2 * r + 1] * scale;
            float v0 = dv[n][2 * r], v1 = dv[n][2 * r + 1];
            __nv_bfloat162 *pk = (__nv_bfloat162 *)(dst + C + n * 8 + 2 * t);
            __nv_bfloat162 *pv = (__nv_bfloat162 *)(dst + 2 * C + n * 8 + 2 * t);
            if (accumulate) {
                k0v += __bfloat162float(pk->x); k1v += __bfloat162float(pk->y);
                v0 += __bfloat162float(pv->x); v1 += __bfloat162float(pv->y);
            }
            *pk = __floats2bfloat162_rn(k0v, k1v);
            *pv = __floats2bfloat162_rn(v0, v1);
        }
    }
}

/* LORALAB_ATTENTION (or cuda_set_attention_mode): unfused = cuBLAS batched GEMMs + softmax kernels; twopass =
 * the fused forward with the two-kernel (dQ, then dK / dV) backward even where a one-pass backward applies;
 * cluster = the cluster backward (2 blocks per head) instead of the one-block-per-head backward (the default:
 * the cluster backward measured 0.213 vs 0.172 ms a layer, docs/engine.md). Modes: 0 unfused, 1 onekernel
 * (default), 2 twopass, 3 cluster. */
static int g_attention_mode = -1;
static int parse_attention_mode(const char *e) {
    return !e ? 1 : strcmp(e, "unfused") == 0 ? 0 : strcmp(e, "twopass") == 0 ? 2 : strcmp(e, "cluster") == 0 ? 3 : 1;
}
static int attention_mode(void) {
    if (g_attention_mode < 0) g_attention_mode = parse_attention_mode(getenv("LORALAB_ATTENTION"));
    return g_attention_mode;
}
extern "C" void cuda_set_attention_mode(const char *mode) {
    g_attention_mode = parse_attention_mode(mode ? mode : getenv("LORALAB_ATTENTION"));
}
/* LORALAB_ATTENTION_FWD=blocks (read at every call, so a benchmark can switch it): the forward (mode 0) on
 * flash_forward_kernel's blocks of <= 8 warps (two blocks per head at T = 197) instead of the persistent
 * kernel (0.0632 vs 0.0547 ms a layer at batch 64, docs/engine.md); T > 208 always takes the blocks. */
static int fwd_blocks(void) {
    const char *e = getenv("LORALAB_ATTENTION_FWD");
    return e && strcmp(e, "blocks") == 0;
}
static int use_flash(int T, int C, int NH) { return attention_mode() && C / NH == FA_HS && T <= 256 && C % 8 == 0; }
static int use_fused_bwd(int T) { return (attention_mode() == 1 || attention_mode() == 3) && T <= FA1_MAX_T; }
static int pad32(int t) { return (t + 31) & ~31; }
/* Warps per block: the 16-row tiles of one head split evenly over the fewest blocks of at most max_warps
 * (T = 197: 13 tiles = 2 blocks of 7 warps), so K and V are read by as few blocks as possible. */
static int warps_per_block(int T, int max_warps) {
    int tiles = (T + 15) / 16, blocks = (tiles + max_warps - 1) / max_warps;
    return (tiles + blocks - 1) / blocks;
}
#define FA_FWD_WARPS 8
#define FA_DKDV_WARPS 4 /* 168 registers a thread */
static size_t fwd_smem(int TP, int rows) { return (size_t)(2 * TP + rows) * FA_LD * 2; }
/* the persistent forward: 2 stages of Q (TQ rows), K, V (TP rows), the split's exchange buffer */
static size_t persist_smem(int TP, int TQ, int split) {
    return 2 * fwd_smem(TP, TQ) + (split ? (size_t)4 * FA_XCH_VALS * 32 * 4 : 0);
}
static size_t dq_smem(int TP, int rows) { return (size_t)(2 * TP + 2 * rows) * FA_LD * 2; }
static size_t dkdv_smem(int TP, int rows) { return (size_t)(2 * TP + 2 * rows) * FA_LD * 2 + 2 * (size_t)TP * 4; }
static size_t bwd1_smem(int TP, int TK) {
    return (size_t)(2 * TP + 2 * TK) * FA_LD * 2 + 2 * (size_t)TK * FA1_LDS * 2 + 2 * (size_t)TP * 4;
}
/* the cluster backward: Q, dO (TP rows), K, V (TK rows), dS (TK rows), 2 exchange buffers, lse, D */
static size_t bwd2_smem(int TP, int TK) {
    return (size_t)(2 * TP + 2 * TK) * FA_LD * 2 + (size_t)TK * FA1_LDS * 2 + 2 * FA2C_XCH * 4 + 2 * (size_t)TP * 4;
}
static int bwd2_tk(int T) { return 16 * (((T + 15) / 16 + 1) / 2); }
static void flash_attrs(void) {
    static int done = 0;
    if (done) return;
    CUDA_CHECK(cudaFuncSetAttribute(flash_bwd_fused_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                    (int)bwd1_smem(pad32(FA1_MAX_T), FA1_MAX_T)));
    CUDA_CHECK(cudaFuncSetAttribute(flash_bwd_cluster_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                    (int)bwd2_smem(pad32(FA1_MAX_T), bwd2_tk(FA1_MAX_T))));
    CUDA_CHECK(cudaFuncSetAttribute(flash_bwd_cluster_kernel, cudaFuncAttributePreferredSharedMemoryCarveout, 100));
    CUDA_CHECK(cudaFuncSetAttribute(flash_forward_kernel<0>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                    (int)fwd_smem(256, 16 * FA_FWD_WARPS)));
    CUDA_CHECK(cudaFuncSetAttribute(flash_forward_kernel<1>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                    (int)fwd_smem(256, 16 * FA_FWD_WARPS)));
    size_t psm = persist_smem(pad32(16 * FA_PERSIST_WARPS), 16 * FA_PERSIST_WARPS, 1);
    CUDA_CHECK(cudaFuncSetAttribute(flash_fwd_persist_kernel<32>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)psm));
    CUDA_CHECK(cudaFuncSetAttribute(flash_dq_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                    (int)dq_smem(256, 16 * FA_FWD_WARPS)));
    CUDA_CHECK(cudaFuncSetAttribute(flash_dkdv_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                    (int)dkdv_smem(256, 16 * FA_DKDV_WARPS)));
    done = 1;
}

extern "C" size_t cuda_attention_scratch_bytes(int B, int T, int C, int NH) {
    if (use_flash(T, C, NH)) return (size_t)B * NH * T * sizeof(float) + 256; /* D = rowsum(dO * O) */
    size_t scores = (size_t)B * NH * T * pad8(T) * 2;
    return 2 * ((scores + 255) & ~(size_t)255) + 10 * (size_t)B * NH * sizeof(void *) + 256;
}

struct PtrSpec {
    char *base;
    long sb, sh; /* byte strides per image and per head */
};
struct PtrTable {
    PtrSpec s[10];
    int n;
};

__global__ void fill_ptrs_kernel(void **arr, PtrTable t, int count, int NH) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= count) return;
    int b = i / NH, h = i % NH;
    for (int a = 0; a < t.n; a++) arr[(long)a * count + i] = t.s[a].base + b * t.s[a].sb + h * t.s[a].sh;
}

/* Row r of (B*NH*T) rows: scores at S + (r / T) * T * Tp + (r % T) * Tp, length T. In place: P (bf16), lse. */
__global__ void softmax_rows_kernel(bf16d *Sbuf, float *lse, int rows, int T, int Tp) {
    int r = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (r >= rows) return;
    bf16d *row = Sbuf + (long)(r / T) * T * Tp + (long)(r % T) * Tp;
    float mx = -INFINITY;
    for (int k = lane; k < T; k += 32) mx = fmaxf(mx, __bfloat162float(row[k]));
    for (int o = 16; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
    float s = 0;
    for (int k = lane; k < T; k += 32) s += __expf(__bfloat162float(row[k]) - mx);
    for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
    float inv = 1.0f / s;
    for (int k = lane; k < T; k += 32) row[k] = __float2bfloat16_rn(__expf(__bfloat162float(row[k]) - mx) * inv);
    if (lane == 0) lse[r] = mx + logf(s);
}

/* P = exp(S - lse), in place. */
__global__ void recompute_p_kernel(bf16d *Sbuf, const float *lse, int rows, int T, int Tp) {
    int r = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (r >= rows) return;
    bf16d *row = Sbuf + (long)(r / T) * T * Tp + (long)(r % T) * Tp;
    float l = lse[r];
    for (int k = lane; k < T; k += 32) row[k] = __float2bfloat16_rn(__expf(__bfloat162float(row[k]) - l));
}

/* dS = P (dP - sum_k P dP), written over dP. */
__global__ void softmax_backward_rows_kernel(bf16d *dP, const bf16d *P, int rows, int T, int Tp) {
    int r = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (r >= rows) return;
    long off = (long)(r / T) * T * Tp + (long)(r % T) * Tp;
    const bf16d *p = P + off;
    bf16d *d = dP + off;
    float dot = 0;
    for (int k = lane; k < T; k += 32) dot += __bfloat162float(p[k]) * __bfloat162float(d[k]);
    for (int o = 16; o > 0; o >>= 1) dot += __shfl_xor_sync(0xffffffffu, dot, o);
    for (int k = lane; k < T; k += 32) {
        float pk = __bfloat162float(p[k]);
        d[k] = __float2bfloat16_rn(pk * (__bfloat162float(d[k]) - dot));
    }
}

struct Scratch {
    bf16d *s, *dp;
    void **ptrs;
};
static Scratch carve(void *scratch, int B, int T, int NH) {
    size_t scores = (size_t)B * NH * T * pad8(T) * 2;
    scores = (scores + 255) & ~(size_t)255;
    char *p = (char *)(((uintptr_t)scratch + 255) & ~(uintptr_t)255);
    Scratch sc;
    sc.s = (bf16d *)p;
    sc.dp = (bf16d *)(p + scores);
    sc.ptrs = (void **)(p + 2 * scores);
    return sc;
}

static void fill(void **arr, const PtrTable &t, int count, int NH) {
    fill_ptrs_kernel<<<cdiv(count, 256), 256, 0, S_>>>(arr, t, count, NH);
    LAUNCH_CHECK();
}

extern "C" void cuda_attention_forward(bf16 *out, float *lse, const bf16 *qkv, int B, int T, int C, int NH,
                                       void *scratch) {
    int hs = C / NH, Tp = pad8(T), cnt = B * NH, C3 = 3 * C;
    float scale = 1.0f / sqrtf((float)hs);
    if (use_flash(T, C, NH)) {
        flash_attrs();
        int TP = pad32(T);
        if (fwd_blocks() || T > 16 * FA_PERSIST_WARPS) {
            int w = warps_per_block(T, FA_FWD_WARPS);
            dim3 grid(cdiv(T, 16 * w), cnt);
            flash_forward_kernel<0><<<grid, 32 * w, fwd_smem(TP, 16 * w), S_>>>((bf16d *)out, lse, NULL, NULL,
                                                                                 (const bf16d *)qkv, T, C, NH, TP, scale);
        } else { /* as many blocks as fit (T = 197: one an SM), at most one per head */
            int nt = (T + 15) / 16, split = nt % 4 == 1 && nt > 4, nw = nt - split, per_sm = 0;
            size_t sm = persist_smem(TP, 16 * nt, split);
            CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, flash_fwd_persist_kernel<32>, 32 * nw, sm));
            int nb = g_cuda.prop.multiProcessorCount * (per_sm > 0 ? per_sm : 1);
            if (nb > cnt) nb = cnt;
            flash_fwd_persist_kernel<32><<<nb, 32 * nw, sm, S_>>>(
                (bf16d *)out, lse, (const bf16d *)qkv, cnt, T, C, NH, TP, 16 * nt, split, scale);
        }
        LAUNCH_CHECK();
        return;
    }
    Scratch sc = carve(scratch, B, T, NH);
    char *q = (char *)qkv;
    long e = sizeof(bf16);
    PtrTable t;
    t.n = 5;
    t.s[0] = PtrSpec{q, (long)T * C3 * e, hs * e};                     /* Q */
    t.s[1] = PtrSpec{q + C * e, (long)T * C3 * e, hs * e};             /* K */
    t.s[2] = PtrSpec{q + 2 * C * e, (long)T * C3 * e, hs * e};         /* V */
    t.s[3] = PtrSpec{(char *)sc.s, (long)NH * T * Tp * e, (long)T * Tp * e}; /* S */
    t.s[4] = PtrSpec{(char *)out, (long)T * C * e, hs * e};            /* O */
    fill(sc.ptrs, t, cnt, NH);
    void **Q = sc.ptrs, **K = Q + cnt, **V = K + cnt, **Sp = V + cnt, **O = Sp + cnt;
    /* S^T (Tk,Tq) = K^T-as-stored (hs,Tk)^T Q (hs,Tq), i.e. row-major S (Tq,Tk) = Q K^T */
    cuda_mm_batched(true, false, T, T, hs, K, C3, Q, C3, Sp, Tp, scale, 0.0f, cnt);
    int rows = cnt * T;
    softmax_rows_kernel<<<cdiv(rows, 8), 256, 0, S_>>>(sc.s, lse, rows, T, Tp);
    LAUNCH_CHECK();
    /* O^T (hs,Tq) = V (hs,Tk) P^T-as-(Tk,Tq) */
    cuda_mm_batched(false, false, hs, T, T, V, C3, Sp, Tp, O, C, 1.0f, 0.0f, cnt);
}

/* D[(b, h, t)] = dout . out over the head's 64 columns; one thread per (b, t, h), h fastest (coalesced) */
__global__ void attn_rowdot_kernel(float *D, const bf16d *dout, const bf16d *out, int B, int T, int C, int NH) {
    long i = blockIdx.x * (long)blockDim.x + threadIdx.x;
    if (i >= (long)B * T * NH) return;
    int h = (int)(i % NH);
    long bt = i / NH;
    int t = (int)(bt % T), b = (int)(bt / T);
    const FaPack8 *o = (const FaPack8 *)(out + bt * C + h * FA_HS), *d = (const FaPack8 *)(dout + bt * C + h * FA_HS);
    float s = 0;
#pragma unroll
    for (int k = 0; k < FA_HS / 8; k++) {
        FaPack8 a = o[k], c = d[k];
#pragma unroll
        for (int e = 0; e < 8; e++) s += __bfloat162float(a.v[e]) * __bfloat162float(c.v[e]);
    }
    D[((long)b * NH + h) * T + t] = s;
}

extern "C" void cuda_attention_backward(bf16 *dqkv, const bf16 *dout, const bf16 *qkv, const bf16 *out,
                                        const float *lse, int B, int T, int C, int NH, void *scratch, int accumulate) {
    int hs = C / NH, Tp = pad8(T), cnt = B * NH, C3 = 3 * C;
    float scale = 1.0f / sqrtf((float)hs), beta = accumulate ? 1.0f : 0.0f;
    if (use_flash(T, C, NH)) {
        flash_attrs();
        int TP = pad32(T);
        float *Dv = (float *)(((uintptr_t)scratch + 255) & ~(uintptr_t)255);
        int w = warps_per_block(T, FA_FWD_WARPS), wk = warps_per_block(T, FA_DKDV_WARPS);
        dim3 grid(cdiv(T, 16 * w), cnt), gridk(cdiv(T, 16 * wk), cnt);
        if (use_fused_bwd(T)) {
            if (!out) { /* D from O recomputed in registers; with O saved the kernel computes D itself */
                flash_forward_kernel<1><<<grid, 32 * w, fwd_smem(TP, 16 * w), S_>>>(
                    NULL, NULL, Dv, (const bf16d *)dout, (const bf16d *)qkv, T, C, NH, TP, scale);
                LAUNCH_CHECK();
            }
            if (attention_mode() != 3) {
                int nk = (T + 15) / 16, warps = nk > 8 ? nk : 8;
                flash_bwd_fused_kernel<<<cnt, 32 * warps, bwd1_smem(TP, 16 * nk), S_>>>(
                    (bf16d *)dqkv, (const bf16d *)dout, (const bf16d *)out, out ? NULL : Dv, (const bf16d *)qkv, lse, T,
                    C, NH, TP, 16 * nk, scale, accumulate);
            } else {
                int TK = bwd2_tk(T);
                flash_bwd_cluster_kernel<<<2 * cnt, 32 * FA2C_WARPS, bwd2_smem(TP, TK), S_>>>(
                    (bf16d *)dqkv, (const bf16d *)dout, (const bf16d *)out, out ? NULL : Dv, (const bf16d *)qkv, lse, T,
                    C, NH, TP, TK, scale, accumulate);
            }
            LAUNCH_CHECK();
            return;
        }
        if (out) /* D = rowsum(dO * O) from the saved O */
            attn_rowdot_kernel<<<cdiv((long)B * T * NH, 256), 256, 0, S_>>>(Dv, (const bf16d *)dout, (const bf16d *)out, B,
                                                                          T, C, NH);
        else /* from O recomputed in registers */
            flash_forward_kernel<1><<<grid, 32 * w, fwd_smem(TP, 16 * w), S_>>>(
                NULL, NULL, Dv, (const bf16d *)dout, (const bf16d *)qkv, T, C, NH, TP, scale);
        LAUNCH_CHECK();
        flash_dq_kernel<<<grid, 32 * w, dq_smem(TP, 16 * w), S_>>>((bf16d *)dqkv, (const bf16d *)dout, (const bf16d *)qkv,
                                                                    lse, Dv, T, C, NH, TP, scale, accumulate);
        LAUNCH_CHECK();
        flash_dkdv_kernel<<<gridk, 32 * wk, dkdv_smem(TP, 16 * wk), S_>>>((bf16d *)dqkv, (const bf16d *)dout,
                                                                           (const bf16d *)qkv, lse, Dv, T, C, NH, TP,
                                                                           scale, accumulate);
        LAUNCH_CHECK();
        return;
    }
    Scratch sc = carve(scratch, B, T, NH);
    char *q = (char *)qkv, *dq = (char *)dqkv;
    long e = sizeof(bf16);
    PtrTable t;
    t.s[0] = PtrSpec{q, (long)T * C3 * e, hs * e};
    t.s[1] = PtrSpec{q + C * e, (long)T * C3 * e, hs * e};
    t.s[2] = PtrSpec{q + 2 * C * e, (long)T * C3 * e, hs * e};
    t.s[3] = PtrSpec{(char *)sc.s, (long)NH * T * Tp * e, (long)T * Tp * e};
    t.s[4] = PtrSpec{(char *)dout, (long)T * C * e, hs * e};
    t.s[5] = PtrSpec{dq, (long)T * C3 * e, hs * e};
    t.s[6] = PtrSpec{dq + C * e, (long)T * C3 * e, hs * e};
    t.s[7] = PtrSpec{dq + 2 * C * e, (long)T * C3 * e, hs * e};
    t.s[8] = PtrSpec{(char *)sc.dp, (long)NH * T * Tp * e, (long)T * Tp * e};
    t.n = 9;
    fill(sc.ptrs, t, cnt, NH);
    void **Q = sc.ptrs, **K = Q + cnt, **V = K + cnt, **P = V + cnt, **dO = P + cnt, **dQ = dO + cnt, **dK = dQ + cnt,
         **dV = dK + cnt, **dP = dV + cnt;
    int rows = cnt * T;
    cuda_mm_batched(true, false, T, T, hs, K, C3, Q, C3, P, Tp, scale, 0.0f, cnt);
    recompute_p_kernel<<<cdiv(rows, 8), 256, 0, S_>>>(sc.s, lse, rows, T, Tp);
    LAUNCH_CHECK();
    /* dV^T (hs,Tk) = dO (hs,Tq) P-as-(Tk,Tq)^T */
    cuda_mm_batched(false, true, hs, T, T, dO, C, P, Tp, dV, C3, 1.0f, beta, cnt);
    /* dP^T (Tk,Tq) = V (hs,Tk)^T dO (hs,Tq) */
    cuda_mm_batched(true, false, T, T, hs, V, C3, dO, C, dP, Tp, 1.0f, 0.0f, cnt);
    softmax_backward_rows_kernel<<<cdiv(rows, 8), 256, 0, S_>>>(sc.dp, sc.s, rows, T, Tp);
    LAUNCH_CHECK();
    /* dQ^T (hs,Tq) = scale K (hs,Tk) dS^T-as-(Tk,Tq) */
    cuda_mm_batched(false, false, hs, T, T, K, C3, dP, Tp, dQ, C3, scale, beta, cnt);
    /* dK^T (hs,Tk) = scale Q (hs,Tq) dS-as-(Tk,Tq)^T */
    cuda_mm_batched(false, true, hs, T, T, Q, C3, dP, Tp, dK, C3, scale, beta, cnt);
}
