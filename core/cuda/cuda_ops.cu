/* core/cuda/cuda_ops.cu: linear (cuBLASLt), layernorm, GELU, residual add, cross-entropy, AdamW, LoRA and the
 * ViT token plumbing. Elementwise kernels compute in f32 and store bf16; row reductions use one warp per row
 * with shuffles (f32), cross-row reductions (bias / LayerNorm parameter grads) shared-memory partials plus one
 * atomicAdd per block and column. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_internal.cuh"
#include "cuda_ops.h"

#define S g_cuda.stream
static inline const bf16d *D16(const bf16 *p) { return (const bf16d *)p; }
static inline bf16d *D16(bf16 *p) { return (bf16d *)p; }

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/* ---- linear -------------------------------------------------------------------------------------------- */
/* Row-major out (N,OC) = inp (N,IC) W^T is column-major out^T (OC,N) = op(W) inp^T with W read as the
 * column-major (IC,OC) matrix and transposed. */
extern "C" void cuda_linear_forward(bf16 *out, const bf16 *inp, const bf16 *weight, const bf16 *bias,
                                    const bf16 *residual, int N, int IC, int OC) {
    cuda_mm(true, false, OC, N, IC, D16(weight), IC, D16(inp), IC, out, OC, false, 1.0f, residual ? 1.0f : 0.0f,
            residual, bias);
}

extern "C" void cuda_linear_forward_f32out(float *out, const bf16 *inp, const bf16 *weight, const float *bias, int N,
                                           int IC, int OC) {
    cuda_mm(true, false, OC, N, IC, D16(weight), IC, D16(inp), IC, out, OC, true, 1.0f, 0.0f, NULL, bias);
}

/* dbias (OC) += column sums of dout (N,OC): 32 columns x 8 row groups per block, one atomic per column. */
__global__ void colsum_kernel(float *dbias, const bf16d *dout, int N, int OC, int rows_per_block) {
    __shared__ float part[8][33];
    int j = blockIdx.x * 32 + threadIdx.x;
    int r0 = blockIdx.y * rows_per_block, r1 = min(N, r0 + rows_per_block);
    float s = 0;
    if (j < OC)
        for (int i = r0 + threadIdx.y; i < r1; i += 8) s += __bfloat162float(dout[(long)i * OC + j]);
    part[threadIdx.y][threadIdx.x] = s;
    __syncthreads();
    if (threadIdx.y == 0 && j < OC) {
        float t = 0;
        for (int y = 0; y < 8; y++) t += part[y][threadIdx.x];
        atomicAdd(&dbias[j], t);
    }
}

extern "C" void cuda_linear_backward(bf16 *dinp, float *dweight, float *dbias, const bf16 *dout, const bf16 *inp,
                                     const bf16 *weight, int N, int IC, int OC, int accumulate) {
    if (dinp) /* dinp^T (IC,N) = W-as-(IC,OC) dout^T (OC,N) */
        cuda_mm(false, false, IC, N, OC, D16(weight), IC, D16(dout), OC, dinp, IC, false, 1.0f,
                accumulate ? 1.0f : 0.0f, NULL, NULL);
    if (dweight) /* dW^T (IC,OC) += inp^T-as-(IC,N) (dout-as-(OC,N))^T */
        cuda_mm(false, true, IC, OC, N, D16(inp), IC, D16(dout), OC, dweight, IC, true, 1.0f, 1.0f, NULL, NULL);
    if (dbias) {
        int rpb = 256;
        dim3 grid(cdiv(OC, 32), cdiv(N, rpb)), block(32, 8);
        colsum_kernel<<<grid, block, 0, S>>>(dbias, D16(dout), N, OC, rpb);
        LAUNCH_CHECK();
    }
}

/* ---- layernorm ----------------------------------------------------------------------------------------- */
__global__ void layernorm_forward_kernel(bf16d *out, int ldo, float *mean, float *rstd, const bf16d *inp,
                                         const bf16d *w, const bf16d *b, int N, int C, float eps, int one_col) {
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= N) return;
    const bf16d *x = inp + (long)row * C;
    float s = 0;
    for (int c = lane; c < C; c += 32) s += __bfloat162float(x[c]);
    float m = warp_sum(s) / C;
    float v = 0;
    for (int c = lane; c < C; c += 32) {
        float d = __bfloat162float(x[c]) - m;
        v += d * d;
    }
    float rs = rsqrtf(warp_sum(v) / C + eps);
    bf16d *o = out + (long)row * ldo;
    for (int c = lane; c < C; c += 32)
        o[c] = __float2bfloat16_rn((__bfloat162float(x[c]) - m) * rs * __bfloat162float(w[c]) + __bfloat162float(b[c]));
    if (one_col >= 0)
        for (int c = C + lane; c < ldo; c += 32) o[c] = __float2bfloat16_rn(c == one_col ? 1.0f : 0.0f);
    if (lane == 0) {
        if (mean) mean[row] = m;
        if (rstd) rstd[row] = rs;
    }
}

/* The fast path for C = 256 NV (ViT-B: 768): a warp keeps its row in registers, 16-byte loads and stores. */
struct alignas(16) Pack8v {
    bf16d v[8];
};
template <int NV>
__global__ void layernorm_forward_vec_kernel(bf16d *out, int ldo, float *mean, float *rstd, const bf16d *inp,
                                             const bf16d *w, const bf16d *b, int N, float eps, int one_col) {
    constexpr int C = NV * 256;
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= N) return;
    const Pack8v *x = (const Pack8v *)(inp + (long)row * C);
    float xr[NV][8];
    float s = 0;
#pragma unroll
    for (int k = 0; k < NV; k++) {
        Pack8v p = x[lane + 32 * k];
#pragma unroll
        for (int e = 0; e < 8; e++) { xr[k][e] = __bfloat162float(p.v[e]); s += xr[k][e]; }
    }
    float m = warp_sum(s) / C, v = 0;
#pragma unroll
    for (int k = 0; k < NV; k++)
#pragma unroll
        for (int e = 0; e < 8; e++) { float d = xr[k][e] - m; v += d * d; }
    float rs = rsqrtf(warp_sum(v) / C + eps);
    Pack8v *o = (Pack8v *)(out + (long)row * ldo);
#pragma unroll
    for (int k = 0; k < NV; k++) {
        Pack8v wp = ((const Pack8v *)w)[lane + 32 * k], bp = ((const Pack8v *)b)[lane + 32 * k], op;
#pragma unroll
        for (int e = 0; e < 8; e++)
            op.v[e] = __float2bfloat16_rn((xr[k][e] - m) * rs * __bfloat162float(wp.v[e]) + __bfloat162float(bp.v[e]));
        o[lane + 32 * k] = op;
    }
    if (one_col >= 0) /* columns C..ldo (a multiple of 8 past C): zeros and the bias column's 1 */
        for (int c = C + 8 * lane; c < ldo; c += 256) {
            Pack8v z;
#pragma unroll
            for (int e = 0; e < 8; e++) z.v[e] = __float2bfloat16_rn(c + e == one_col ? 1.0f : 0.0f);
            *(Pack8v *)(out + (long)row * ldo + c) = z;
        }
    if (lane == 0) {
        if (mean) mean[row] = m;
        if (rstd) rstd[row] = rs;
    }
}

template <int NV>
__global__ void layernorm_backward_vec_kernel(bf16d *dinp, const bf16d *dout, int ldd, const bf16d *inp, const bf16d *w,
                                              const float *mean, const float *rstd, int N, int accumulate) {
    constexpr int C = NV * 256;
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= N) return;
    const Pack8v *x = (const Pack8v *)(inp + (long)row * C), *dy = (const Pack8v *)(dout + (long)row * ldd);
    float m = mean[row], s = rstd[row];
    float xh[NV][8], g[NV][8];
    float sg = 0, sgx = 0;
#pragma unroll
    for (int k = 0; k < NV; k++) {
        Pack8v xp = x[lane + 32 * k], dp = dy[lane + 32 * k], wp = ((const Pack8v *)w)[lane + 32 * k];
#pragma unroll
        for (int e = 0; e < 8; e++) {
            xh[k][e] = (__bfloat162float(xp.v[e]) - m) * s;
            g[k][e] = __bfloat162float(dp.v[e]) * __bfloat162float(wp.v[e]);
            sg += g[k][e];
            sgx += g[k][e] * xh[k][e];
        }
    }
    sg = warp_sum(sg) / C;
    sgx = warp_sum(sgx) / C;
    Pack8v *dx = (Pack8v *)(dinp + (long)row * C);
#pragma unroll
    for (int k = 0; k < NV; k++) {
        Pack8v op;
        if (accumulate) op = dx[lane + 32 * k];
#pragma unroll
        for (int e = 0; e < 8; e++) {
            float val = s * (g[k][e] - sg - xh[k][e] * sgx);
            if (accumulate) val += __bfloat162float(op.v[e]);
            op.v[e] = __float2bfloat16_rn(val);
        }
        dx[lane + 32 * k] = op;
    }
}

static bool al16(const void *p) { return ((uintptr_t)p & 15) == 0; }

extern "C" void cuda_layernorm_forward_ext(bf16 *out, int ldo, float *mean, float *rstd, const bf16 *inp,
                                           const bf16 *w, const bf16 *b, int N, int C, float eps, int one_col) {
    CUDA_ASSERT(one_col < 0 || (one_col >= C && one_col < ldo));
    if (C % 256 == 0 && C <= 1024 && ldo % 8 == 0 && al16(out) && al16(inp) && al16(w) && al16(b)) {
        unsigned grid = cdiv(N, 8);
        switch (C / 256) {
        case 1: layernorm_forward_vec_kernel<1><<<grid, 256, 0, S>>>(D16(out), ldo, mean, rstd, D16(inp), D16(w), D16(b), N, eps, one_col); break;
        case 2: layernorm_forward_vec_kernel<2><<<grid, 256, 0, S>>>(D16(out), ldo, mean, rstd, D16(inp), D16(w), D16(b), N, eps, one_col); break;
        case 3: layernorm_forward_vec_kernel<3><<<grid, 256, 0, S>>>(D16(out), ldo, mean, rstd, D16(inp), D16(w), D16(b), N, eps, one_col); break;
        default: layernorm_forward_vec_kernel<4><<<grid, 256, 0, S>>>(D16(out), ldo, mean, rstd, D16(inp), D16(w), D16(b), N, eps, one_col); break;
        }
        LAUNCH_CHECK();
        return;
    }
    layernorm_forward_kernel<<<cdiv(N, 8), 256, 0, S>>>(D16(out), ldo, mean, rstd, D16(inp), D16(w), D16(b), N, C, eps,
                                                       one_col);
    LAUNCH_CHECK();
}

extern "C" void cuda_layernorm_forward_ld(bf16 *out, int ldo, float *mean, float *rstd, const bf16 *inp,
                                          const bf16 *w, const bf16 *b, int N, int C, float eps) {
    cuda_layernorm_forward_ext(out, ldo, mean, rstd, inp, w, b, N, C, eps, -1);
}

extern "C" void cuda_layernorm_forward(bf16 *out, float *mean, float *rstd, const bf16 *inp, const bf16 *w,
                                       const bf16 *b, int N, int C, float eps) {
    cuda_layernorm_forward_ld(out, C, mean, rstd, inp, w, b, N, C, eps);
}

/* One warp per row; the block's warps share dw/db partials in shared memory (2C floats, dynamic). */
__global__ void layernorm_backward_kernel(bf16d *dinp, float *dw, float *db, const bf16d *dout, int ldd, const bf16d *inp,
                                          const bf16d *w, const float *mean, const float *rstd, int N, int C,
                                          int accumulate) {
    extern __shared__ float sh[]; /* dw (C), db (C) partials */
    int want = dw || db;
    if (want)
        for (int c = threadIdx.x; c < 2 * C; c += blockDim.x) sh[c] = 0;
    __syncthreads();
    int warps = blockDim.x / 32, lane = threadIdx.x % 32;
    for (int row = blockIdx.x * warps + threadIdx.x / 32; row < N; row += gridDim.x * warps) {
        const bf16d *x = inp + (long)row * C, *dy = dout + (long)row * ldd;
        float m = mean[row], s = rstd[row];
        float sg = 0, sgx = 0;
        for (int c = lane; c < C; c += 32) {
            float xh = (__bfloat162float(x[c]) - m) * s, d = __bfloat162float(dy[c]), g = d * __bfloat162float(w[c]);
            sg += g;
            sgx += g * xh;
            if (want) {
                atomicAdd(&sh[c], d * xh);
                atomicAdd(&sh[C + c], d);
            }
        }
        sg = warp_sum(sg) / C;
        sgx = warp_sum(sgx) / C;
        if (dinp) {
            bf16d *dx = dinp + (long)row * C;
            for (int c = lane; c < C; c += 32) {
                float xh = (__bfloat162float(x[c]) - m) * s;
                float val = s * (__bfloat162float(dy[c]) * __bfloat162float(w[c]) - sg - xh * sgx);
                if (accumulate) val += __bfloat162float(dx[c]);
                dx[c] = __float2bfloat16_rn(val);
            }
        }
    }
    if (want) {
        __syncthreads();
        for (int c = threadIdx.x; c < C; c += blockDim.x) {
            if (dw) atomicAdd(&dw[c], sh[c]);
            if (db) atomicAdd(&db[c], sh[C + c]);
        }
    }
}

extern "C" void cuda_layernorm_backward_ld(bf16 *dinp, float *dw, float *db, const bf16 *dout, int ldd,
                                           const bf16 *inp, const bf16 *w, const float *mean, const float *rstd, int N,
                                           int C, int accumulate) {
    int want = dw || db;
    if (!want && dinp && C % 256 == 0 && C <= 1024 && ldd % 8 == 0 && al16(dinp) && al16(dout) && al16(inp) && al16(w)) {
        unsigned grid = cdiv(N, 8);
        switch (C / 256) {
        case 1: layernorm_backward_vec_kernel<1><<<grid, 256, 0, S>>>(D16(dinp), D16(dout), ldd, D16(inp), D16(w), mean, rstd, N, accumulate); break;
        case 2: layernorm_backward_vec_kernel<2><<<grid, 256, 0, S>>>(D16(dinp), D16(dout), ldd, D16(inp), D16(w), mean, rstd, N, accumulate); break;
        case 3: layernorm_backward_vec_kernel<3><<<grid, 256, 0, S>>>(D16(dinp), D16(dout), ldd, D16(inp), D16(w), mean, rstd, N, accumulate); break;
        default: layernorm_backward_vec_kernel<4><<<grid, 256, 0, S>>>(D16(dinp), D16(dout), ldd, D16(inp), D16(w), mean, rstd, N, accumulate); break;
        }
        LAUNCH_CHECK();
        return;
    }
    size_t smem = want ? 2 * (size_t)C * sizeof(float) : 0;
    unsigned blocks = cdiv(N, 8);
    if (want && blocks > (unsigned)g_cuda.prop.multiProcessorCount * 4) blocks = g_cuda.prop.multiProcessorCount * 4;
    if (smem > 48 * 1024)
        CUDA_CHECK(cudaFuncSetAttribute(layernorm_backward_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    layernorm_backward_kernel<<<blocks, 256, smem, S>>>(D16(dinp), dw, db, D16(dout), ldd, D16(inp), D16(w), mean, rstd,
                                                         N, C, accumulate);
    LAUNCH_CHECK();
}

extern "C" void cuda_layernorm_backward(bf16 *dinp, float *dw, float *db, const bf16 *dout, const bf16 *inp,
                                        const bf16 *w, const float *mean, const float *rstd, int N, int C,
                                        int accumulate) {
    cuda_layernorm_backward_ld(dinp, dw, db, dout, C, inp, w, mean, rstd, N, C, accumulate);
}

/* ---- GELU, add ----------------------------------------------------------------------------------------- */
#define INV_SQRT2 0.70710678118654752440f
#define INV_SQRT_2PI 0.39894228040143267794f

/* 8 bf16 (16 bytes) per thread when n is a multiple of 8 and the pointers are 16-byte aligned. */
struct alignas(16) Pack8 {
    bf16d v[8];
};

/* erf by Abramowitz & Stegun 7.1.26 (|error| <= 1.5e-7, the CPU engine's erf_fast, core/cpu/activations.c):
 * erf(a) = 1 - poly(t) exp(-a^2), t = 1 / (1 + p a), a >= 0. With a = |v| / sqrt(2), q = 0.5 poly(t) exp(-v^2 / 2)
 * is the normal tail, so Phi(v) = 1 - q (v >= 0) or q (v < 0), and the exp is shared with the pdf the backward
 * needs: one rcp and one ex2 (MUFU) per element instead of libdevice's erff plus an exp. 1 / sqrt(2) is folded into
 * p and the 0.5 into poly's coefficients, and gelu(v) = v Phi(v) = max(v, 0) - |v| q (one FMA), so the forward is
 * ~15 instructions an element: the step runs at the GPU's power limit (~690 W, SM clock ~1.6 GHz), where every
 * instruction of these memory-bound kernels costs time (docs/engine.md). */
__device__ __forceinline__ float ex2_approx(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
}
__device__ __forceinline__ float rcp_approx(float x) {
    float y;
    asm("rcp.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
}
/* q (the tail: Phi(v) = 1 - q for v >= 0, q for v < 0) and e = exp(-v^2 / 2) */
__device__ __forceinline__ float normal_tail_as(float v, float *e) {
    float t = rcp_approx(fmaf(0.3275911f * INV_SQRT2, fabsf(v), 1.0f));
    float poly = t * fmaf(t, fmaf(t, fmaf(t, fmaf(t, 0.5f * 1.061405429f, 0.5f * -1.453152027f), 0.5f * 1.421413741f),
                                  0.5f * -0.284496736f),
                          0.5f * 0.254829592f);
    *e = ex2_approx(v * (v * -0.72134752044448170368f)); /* exp(-v^2 / 2) = 2^(-v^2 log2(e) / 2) */
    return poly * *e;
}
__device__ __forceinline__ float gelu_f(float v, int erff_path) {
    if (erff_path) return 0.5f * v * (1.0f + erff(v * INV_SQRT2));
    float e, q = normal_tail_as(v, &e);
    return fmaf(-fabsf(v), q, fmaxf(v, 0.0f));
}
/* gelu'(v) = Phi(v) + v phi(v) */
__device__ __forceinline__ float gelu_grad_f(float v, int erff_path) {
    if (erff_path)
        return 0.5f * (1.0f + erff(v * INV_SQRT2)) + v * INV_SQRT_2PI * __expf(-0.5f * v * v);
    float e, q = normal_tail_as(v, &e);
    return fmaf(v * INV_SQRT_2PI, e, v >= 0.0f ? 1.0f - q : q);
}

/* GELU_PACKS packs of 8 bf16 (16 bytes) per thread, every load issued before the math (more bytes in flight per
 * SM). A thread's packs are blockDim.x packs apart (pack p at base + 8 p blockDim.x), so each load or store
 * instruction of a warp covers 512 contiguous bytes; with a thread's packs side by side (the previous layout) a
 * warp instruction spans twice the address range and the kernels ran at ~3.1 (fwd) / 3.6 (bwd) TB/s against
 * 4.05 / 4.3 now, the copy rate (docs/engine.md). The pack whose 8 elements cross n does the scalar tail (n % 8;
 * the launchers assert 16-byte alignment). */
#define GELU_PACKS 4
template <int ERFF>
__global__ void gelu_forward_kernel(bf16d *out, const bf16d *inp, long n) {
    long stride = 8L * blockDim.x, base = blockIdx.x * stride * GELU_PACKS + 8L * threadIdx.x;
    Pack8 x[GELU_PACKS];
#pragma unroll
    for (int p = 0; p < GELU_PACKS; p++)
        if (base + p * stride + 8 <= n) x[p] = *(const Pack8 *)(inp + base + p * stride);
#pragma unroll
    for (int p = 0; p < GELU_PACKS; p++) {
        long i = base + p * stride;
        if (i + 8 <= n) {
            Pack8 o;
#pragma unroll
            for (int k = 0; k < 8; k++) o.v[k] = __float2bfloat16_rn(gelu_f(__bfloat162float(x[p].v[k]), ERFF));
            *(Pack8 *)(out + i) = o;
        } else {
            for (; i < n; i++) out[i] = __float2bfloat16_rn(gelu_f(__bfloat162float(inp[i]), ERFF));
        }
    }
}

template <int ERFF>
__global__ void gelu_backward_kernel(bf16d *dinp, const bf16d *dout, const bf16d *inp, long n, int accumulate) {
    long stride = 8L * blockDim.x, base = blockIdx.x * stride * GELU_PACKS + 8L * threadIdx.x;
    Pack8 x[GELU_PACKS], d[GELU_PACKS], a[GELU_PACKS];
#pragma unroll
    for (int p = 0; p < GELU_PACKS; p++) {
        long i = base + p * stride;
        if (i + 8 <= n) {
            x[p] = *(const Pack8 *)(inp + i);
            d[p] = *(const Pack8 *)(dout + i);
            if (accumulate) a[p] = *(const Pack8 *)(dinp + i);
        }
    }
#pragma unroll
    for (int p = 0; p < GELU_PACKS; p++) {
        long i = base + p * stride;
        if (i + 8 <= n) {
            Pack8 o;
#pragma unroll
            for (int k = 0; k < 8; k++) {
                float g = __bfloat162float(d[p].v[k]) * gelu_grad_f(__bfloat162float(x[p].v[k]), ERFF);
                if (accumulate) g += __bfloat162float(a[p].v[k]);
                o.v[k] = __float2bfloat16_rn(g);
            }
            *(Pack8 *)(dinp + i) = o;
        } else {
            for (; i < n; i++) {
                float g = __bfloat162float(dout[i]) * gelu_grad_f(__bfloat162float(inp[i]), ERFF);
                if (accumulate) g += __bfloat162float(dinp[i]);
                dinp[i] = __float2bfloat16_rn(g);
            }
        }
    }
}

static bool aligned16(const void *p) { return ((uintptr_t)p & 15) == 0; }

/* LORALAB_GELU=erff: libdevice's erff (the previous kernels' math) instead of the 7.1.26 form */
static int g_gelu_erff = -1;
static int gelu_erff(void) {
    if (g_gelu_erff < 0) {
        const char *e = getenv("LORALAB_GELU");
        g_gelu_erff = e && strcmp(e, "erff") == 0;
    }
    return g_gelu_erff;
}
extern "C" void cuda_set_gelu_erff(int on) { g_gelu_erff = on != 0; }

extern "C" void cuda_gelu_forward(bf16 *out, const bf16 *inp, long n) {
    CUDA_ASSERT(aligned16(out) && aligned16(inp));
    unsigned grid = cdiv(cdiv(n, 8 * GELU_PACKS), 256);
    if (gelu_erff()) gelu_forward_kernel<1><<<grid, 256, 0, S>>>(D16(out), D16(inp), n);
    else gelu_forward_kernel<0><<<grid, 256, 0, S>>>(D16(out), D16(inp), n);
    LAUNCH_CHECK();
}

extern "C" void cuda_gelu_backward(bf16 *dinp, const bf16 *dout, const bf16 *inp, long n, int accumulate) {
    CUDA_ASSERT(aligned16(dinp) && aligned16(dout) && aligned16(inp));
    unsigned grid = cdiv(cdiv(n, 8 * GELU_PACKS), 256);
    if (gelu_erff()) gelu_backward_kernel<1><<<grid, 256, 0, S>>>(D16(dinp), D16(dout), D16(inp), n, accumulate);
    else gelu_backward_kernel<0><<<grid, 256, 0, S>>>(D16(dinp), D16(dout), D16(inp), n, accumulate);
    LAUNCH_CHECK();
}

__global__ void add_kernel(bf16d *out, const bf16d *a, const bf16d *b, long n) {
    long i = blockIdx.x * (long)blockDim.x + threadIdx.x;
    if (i < n) out[i] = __float2bfloat16_rn(__bfloat162float(a[i]) + __bfloat162float(b[i]));
}

extern "C" void cuda_add_forward(bf16 *out, const bf16 *a, const bf16 *b, long n) {
    add_kernel<<<cdiv(n, 256), 256, 0, S>>>(D16(out), D16(a), D16(b), n);
    LAUNCH_CHECK();
}

/* ---- cross-entropy ------------------------------------------------------------------------------------- */
/* One block; warp w takes rows w, w+8, ...; the mean is summed in double in a fixed order (deterministic). */
__global__ void xent_forward_kernel(float *probs, float *loss, int *correct, const float *logits, const int *labels,
                                    int B, int K, float smoothing) {
    __shared__ double part[8];
    __shared__ int hits[8];
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    double acc = 0;
    int h = 0;
    for (int b = warp; b < B; b += 8) {
        const float *z = logits + (long)b * K;
        float mx = -INFINITY;
        int arg = 0;
        for (int k = lane; k < K; k += 32)
            if (z[k] > mx) { mx = z[k]; arg = k; }
        for (int o = 16; o > 0; o >>= 1) { /* argmax: first index among equal maxima, like the CPU loop */
            float om = __shfl_xor_sync(0xffffffffu, mx, o);
            int oa = __shfl_xor_sync(0xffffffffu, arg, o);
            if (om > mx || (om == mx && oa < arg)) { mx = om; arg = oa; }
        }
        float s = 0, zsum = 0;
        for (int k = lane; k < K; k += 32) {
            s += expf(z[k] - mx);
            zsum += z[k];
        }
        s = warp_sum(s);
        zsum = warp_sum(zsum);
        float lse = mx + logf(s);
        for (int k = lane; k < K; k += 32) probs[(long)b * K + k] = expf(z[k] - lse);
        if (lane == 0) {
            float nll = lse - z[labels[b]], mean_nll = lse - zsum / K;
            acc += (double)((1.0f - smoothing) * nll + smoothing * mean_nll);
            h += arg == labels[b];
        }
    }
    if (lane == 0) { part[warp] = acc; hits[warp] = h; }
    __syncthreads();
    if (threadIdx.x == 0) {
        double t = 0;
        int c = 0;
        for (int w = 0; w < 8; w++) { t += part[w]; c += hits[w]; }
        *loss = (float)(t / B);
        if (correct) *correct = c;
    }
}

extern "C" void cuda_xent_forward(float *probs, float *loss, int *correct, const float *logits, const int *labels,
                                  int B, int K, float smoothing) {
    xent_forward_kernel<<<1, 256, 0, S>>>(probs, loss, correct, logits, labels, B, K, smoothing);
    LAUNCH_CHECK();
}

__global__ void xent_backward_kernel(bf16d *dlogits, const float *probs, const int *labels, int B, int K,
                                     float smoothing, float scale) {
    long i = blockIdx.x * (long)blockDim.x + threadIdx.x;
    if (i >= (long)B * K) return;
    int b = (int)(i / K), k = (int)(i % K);
    float t = smoothing / K + (k == labels[b] ? 1.0f - smoothing : 0.0f);
    dlogits[i] = __float2bfloat16_rn(scale / B * (probs[i] - t));
}

extern "C" void cuda_xent_backward(bf16 *dlogits, const float *probs, const int *labels, int B, int K, float smoothing,
                                   float scale) {
    xent_backward_kernel<<<cdiv((long)B * K, 256), 256, 0, S>>>(D16(dlogits), probs, labels, B, K, smoothing, scale);
    LAUNCH_CHECK();
}

/* ---- AdamW --------------------------------------------------------------------------------------------- */
/* one element's AdamW update (decoupled weight decay), shared by the two kernels below */
__device__ __forceinline__ void adamw_element(float *p, bf16d *p16, float *m, float *v, const float *g, long i,
                                              float lr, float b1, float b2, float eps, float wd, float bc1, float bc2) {
    float x = p[i], gj = g[i];
    x -= lr * wd * x;
    float mj = b1 * m[i] + (1 - b1) * gj, vj = b2 * v[i] + (1 - b2) * gj * gj;
    m[i] = mj;
    v[i] = vj;
    x -= lr * (mj / bc1) / (sqrtf(vj / bc2) + eps);
    p[i] = x;
    if (p16) p16[i] = __float2bfloat16_rn(x);
}
__global__ void adamw_kernel(float *p, bf16d *p16, float *m, float *v, const float *g, long n, float lr, float b1,
                             float b2, float eps, float wd, float bc1, float bc2) {
    long i = blockIdx.x * (long)blockDim.x + threadIdx.x;
    if (i < n) adamw_element(p, p16, m, v, g, i, lr, b1, b2, eps, wd, bc1, bc2);
}

extern "C" void cuda_adamw(float *p, bf16 *p16, float *m, float *v, const float *g, long n, float lr, float beta1,
                           float beta2, float eps, float weight_decay, float bc1, float bc2) {
    if (n == 0) return;
    adamw_kernel<<<cdiv(n, 256), 256, 0, S>>>(p, D16(p16), m, v, g, n, lr, beta1, beta2, eps, weight_decay, bc1, bc2);
    LAUNCH_CHECK();
}

/* The same with lr, bc1, bc2 read from the device (hyper[0..2]), so a captured CUDA graph replays any step. */
__global__ void adamw_dev_kernel(float *p, bf16d *p16, float *m, float *v, const float *g, long n, const float *hyper,
                                 float b1, float b2, float eps, float wd) {
    long i = blockIdx.x * (long)blockDim.x + threadIdx.x;
    if (i < n) adamw_element(p, p16, m, v, g, i, hyper[0], b1, b2, eps, wd, hyper[1], hyper[2]);
}

extern "C" void cuda_adamw_dev(float *p, bf16 *p16, float *m, float *v, const float *g, long n, const float *hyper,
                               float beta1, float beta2, float eps, float weight_decay) {
    if (n == 0) return;
    adamw_dev_kernel<<<cdiv(n, 256), 256, 0, S>>>(p, D16(p16), m, v, g, n, hyper, beta1, beta2, eps, weight_decay);
    LAUNCH_CHECK();
}

/* ---- LoRA ---------------------------------------------------------------------------------------------- */
extern "C" void cuda_lora_forward(bf16 *out, int ldo, bf16 *xa, const bf16 *inp, const bf16 *A, const bf16 *B, int N,
                                  int n, int m, int r, float scale) {
    /* xa^T (r,N) = A-as-(n,r)^T inp^T */
    cuda_mm(true, false, r, N, n, D16(A), n, D16(inp), n, xa, r, false, 1.0f, 0.0f, NULL, NULL);
    /* out^T (m,N) += scale B-as-(r,m)^T xa^T */
    cuda_mm(true, false, m, N, r, D16(B), r, D16(xa), r, out, ldo, false, scale, 1.0f, NULL, NULL);
}

extern "C" void cuda_lora_backward(bf16 *dinp, float *dA, float *dB, bf16 *dxa, const bf16 *dout, int ldo,
                                   const bf16 *inp, const bf16 *xa, const bf16 *A, const bf16 *B, int N, int n, int m,
                                   int r, float scale) {
    if (dB) /* dB^T (r,m) += scale xa^T-as-(r,N) (dy-as-(m,N))^T */
        cuda_mm(false, true, r, m, N, D16(xa), r, D16(dout), ldo, dB, r, true, scale, 1.0f, NULL, NULL);
    if (!dA && !dinp) return;
    /* dxa^T (r,N) = scale B-as-(r,m) dy-as-(m,N) */
    cuda_mm(false, false, r, N, m, D16(B), r, D16(dout), ldo, dxa, r, false, scale, 0.0f, NULL, NULL);
    if (dA) /* dA^T (n,r) += inp-as-(n,N) (dxa-as-(r,N))^T */
        cuda_mm(false, true, n, r, N, D16(inp), n, D16(dxa), r, dA, n, true, 1.0f, 1.0f, NULL, NULL);
    if (dinp) /* dinp^T (n,N) += A-as-(n,r) dxa-as-(r,N) */
        cuda_mm(false, false, n, N, r, D16(A), n, D16(dxa), r, dinp, n, false, 1.0f, 1.0f, NULL, NULL);
}

/* ---- tokens -------------------------------------------------------------------------------------------- */
__global__ void patchify_kernel(bf16d *out, const bf16d *img, int B, int C, int H, int W, int p) {
    int gw = W / p, NP = (H / p) * gw, K = C * p * p;
    long idx = blockIdx.x * (long)blockDim.x + threadIdx.x;
    if (idx >= (long)B * NP * K) return;
    int k = (int)(idx % K);
    long bn = idx / K;
    int n = (int)(bn % NP), b = (int)(bn / NP);
    int c = k / (p * p), i = (k / p) % p, j = k % p;
    int py = n / gw, px = n % gw;
    out[idx] = img[(((long)b * C + c) * H + py * p + i) * W + px * p + j];
}

/* One thread per patch row (p contiguous pixels) in 16-byte packs, when p and W are multiples of 8 (ViT-B/16:
 * 2 packs). The element-per-thread kernel above spends its time on 64-bit index divisions (0.7 ms of a batch-256
 * step for patch embedding + tokens, against ~0.2 ms of traffic and GEMM). */
__global__ void patchify_rows_kernel(uint4 *out, const bf16d *img, int B, int C, int H, int W, int p) {
    int gw = W / p, NP = (H / p) * gw;
    long r = blockIdx.x * (long)blockDim.x + threadIdx.x; /* ((b NP + n) C + c) p + i */
    if (r >= (long)B * NP * C * p) return;
    int i = (int)(r % p);
    long t = r / p;
    int c = (int)(t % C);
    t /= C;
    int n = (int)(t % NP), b = (int)(t / NP);
    const uint4 *src = (const uint4 *)(img + (((long)b * C + c) * H + (n / gw) * p + i) * W + (n % gw) * p);
    for (int j = 0; j < p / 8; j++) out[r * (p / 8) + j] = src[j];
}

extern "C" void cuda_patchify(bf16 *out, const bf16 *img, int B, int C, int H, int W, int p) {
    long n = (long)B * (H / p) * (W / p) * C * p * p;
    if (p % 8 == 0 && W % 8 == 0 && aligned16(out) && aligned16(img))
        patchify_rows_kernel<<<cdiv(n / p, 256), 256, 0, S>>>((uint4 *)out, D16(img), B, C, H, W, p);
    else
        patchify_kernel<<<cdiv(n, 256), 256, 0, S>>>(D16(out), D16(img), B, C, H, W, p);
    LAUNCH_CHECK();
}

/* element (or 16-byte pack) idx of a (B, T, n) token tensor -> image b, token t, column d */
__device__ __forceinline__ void token_index(long idx, int n, int T, int *b, int *t, int *d) {
    *d = (int)(idx % n);
    long bt = idx / n;
    *t = (int)(bt % T);
    *b = (int)(bt / T);
}

__global__ void tokens_forward_kernel(bf16d *x, const bf16d *pe, const bf16d *cls, const bf16d *pos, int B, int NP,
                                      int D) {
    int T = NP + 1;
    long idx = blockIdx.x * (long)blockDim.x + threadIdx.x;
    if (idx >= (long)B * T * D) return;
    int b, t, d;
    token_index(idx, D, T, &b, &t, &d);
    float v = t == 0 ? __bfloat162float(cls[d]) : __bfloat162float(pe[((long)b * NP + t - 1) * D + d]);
    x[idx] = __float2bfloat16_rn(v + __bfloat162float(pos[(long)t * D + d]));
}

/* 8 features (16 bytes) a thread when D is a multiple of 8 (ViT-B/16), the element-per-thread kernel otherwise */
__global__ void tokens_forward_vec_kernel(Pack8 *x, const Pack8 *pe, const Pack8 *cls, const Pack8 *pos, int B, int NP,
                                          int D8) {
    int T = NP + 1;
    long idx = blockIdx.x * (long)blockDim.x + threadIdx.x;
    if (idx >= (long)B * T * D8) return;
    int b, t, d;
    token_index(idx, D8, T, &b, &t, &d);
    Pack8 v = t == 0 ? cls[d] : pe[((long)b * NP + t - 1) * D8 + d], q = pos[(long)t * D8 + d], o;
#pragma unroll
    for (int k = 0; k < 8; k++) o.v[k] = __float2bfloat16_rn(__bfloat162float(v.v[k]) + __bfloat162float(q.v[k]));
    x[idx] = o;
}

extern "C" void cuda_tokens_forward(bf16 *x, const bf16 *pe, const bf16 *cls, const bf16 *pos, int B, int NP, int D) {
    long n = (long)B * (NP + 1) * D;
    if (D % 8 == 0 && aligned16(x) && aligned16(pe) && aligned16(cls) && aligned16(pos))
        tokens_forward_vec_kernel<<<cdiv(n / 8, 256), 256, 0, S>>>((Pack8 *)x, (const Pack8 *)pe, (const Pack8 *)cls,
                                                                    (const Pack8 *)pos, B, NP, D / 8);
    else
        tokens_forward_kernel<<<cdiv(n, 256), 256, 0, S>>>(D16(x), D16(pe), D16(cls), D16(pos), B, NP, D);
    LAUNCH_CHECK();
}

__global__ void pool_forward_kernel(bf16d *out, const bf16d *x, int B, int T, int D, int pool) {
    long idx = blockIdx.x * (long)blockDim.x + threadIdx.x;
    if (idx >= (long)B * D) return;
    int d = (int)(idx % D), b = (int)(idx / D);
    const bf16d *xb = x + (long)b * T * D;
    if (pool == 0) {
        out[idx] = xb[d];
    } else {
        float s = 0;
        for (int t = 1; t < T; t++) s += __bfloat162float(xb[(long)t * D + d]);
        out[idx] = __float2bfloat16_rn(s / (T - 1));
    }
}

extern "C" void cuda_token_pool_forward(bf16 *out, const bf16 *x, int B, int T, int D, int pool) {
    pool_forward_kernel<<<cdiv((long)B * D, 256), 256, 0, S>>>(D16(out), D16(x), B, T, D, pool);
    LAUNCH_CHECK();
}

__global__ void pool_backward_kernel(bf16d *dx, const bf16d *dout, int B, int T, int D, int pool) {
    long idx = blockIdx.x * (long)blockDim.x + threadIdx.x;
    if (idx >= (long)B * T * D) return;
    int b, t, d;
    token_index(idx, D, T, &b, &t, &d);
    float g = __bfloat162float(dout[(long)b * D + d]);
    float v = pool == 0 ? (t == 0 ? g : 0.0f) : (t == 0 ? 0.0f : g / (T - 1));
    dx[idx] = __float2bfloat16_rn(v);
}

/* 8 features a thread (D % 8 == 0): it writes all of dx, mostly zeros for CLS pooling */
__global__ void pool_backward_vec_kernel(Pack8 *dx, const Pack8 *dout, int B, int T, int D8, int pool) {
    long idx = blockIdx.x * (long)blockDim.x + threadIdx.x;
    if (idx >= (long)B * T * D8) return;
    int b, t, d;
    token_index(idx, D8, T, &b, &t, &d);
    Pack8 g = dout[(long)b * D8 + d], o;
#pragma unroll
    for (int k = 0; k < 8; k++) {
        float v = __bfloat162float(g.v[k]);
        o.v[k] = __float2bfloat16_rn(pool == 0 ? (t == 0 ? v : 0.0f) : (t == 0 ? 0.0f : v / (T - 1)));
    }
    dx[idx] = o;
}

extern "C" void cuda_token_pool_backward(bf16 *dx, const bf16 *dout, int B, int T, int D, int pool) {
    if (D % 8 == 0 && aligned16(dx) && aligned16(dout))
        pool_backward_vec_kernel<<<cdiv((long)B * T * D / 8, 256), 256, 0, S>>>((Pack8 *)dx, (const Pack8 *)dout, B, T,
                                                                               D / 8, pool);
    else
        pool_backward_kernel<<<cdiv((long)B * T * D, 256), 256, 0, S>>>(D16(dx), D16(dout), B, T, D, pool);
    LAUNCH_CHECK();
}

__global__ void f32_to_bf16_kernel2(bf16d *out, const float *in, long n) {
    long i = blockIdx.x * (long)blockDim.x + threadIdx.x;
    if (i < n) out[i] = __float2bfloat16_rn(in[i]);
}

extern "C" void cuda_f32_to_bf16(bf16 *dst, const float *src, long n) {
    if (n == 0) return;
    f32_to_bf16_kernel2<<<cdiv(n, 256), 256, 0, S>>>(D16(dst), src, n);
    LAUNCH_CHECK();
}
