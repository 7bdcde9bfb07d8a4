/* core/cuda/cuda_lora_grad.cu: the LoRA B gradient dB (m,r) += scale dy^T (m,BT) xa (BT,r), a skinny GEMM
 * (r <= 64, BT ~ 10^4..10^5) that only streams dy: memory-bound. On the ViT-B/16 shapes (q and v slices of dqkv,
 * r 8) cuBLASLt reads at ~2.8 TB/s; this reads at ~3.4 TB/s (a plain read of the same slices: ~4.0 TB/s), and
 * is deterministic (scripts/bench/bench_lora_db.cu; docs/engine.md has the numbers).
 *   (1) lora_db_partial_kernel: block (column tile of NI dy columns, chunk of rows, job) streams its chunk's
 *       dy tile and xa rows through a STAGES-deep cp.async pipeline into shared memory (rows padded by 16 bytes:
 *       no ldmatrix bank conflicts); each warp owns 32 dy columns and runs mma.sync m16n8k16 (bf16 in, f32
 *       accumulate) with dy^T as A (ldmatrix.trans: 16 columns x 16 rows) and xa as B (ldmatrix.trans: 16 rows
 *       x 8 of the r columns), so r 8 wastes nothing. It writes its (m-tile, r) f32 partial to scratch.
 *   (2) lora_db_reduce_kernel: dB += scale * sum of the chunks' partials, summed in a fixed order (8 strided
 *       sums per output, then those 8 in order). No atomics: the same bits every run (for a given BT, which
 *       alone fixes the chunking, whatever the GPU).
 * Both are programmatic dependent launches (PDL): the reduction is scheduled while the partial kernel runs and
 * waits for it on the device (griddepcontrol.wait), hiding its launch: 0.58 -> 0.55 ms a step at batch 256.
 * xa: 16-byte cp.async when r % 8 == 0, ldx % 8 == 0 and the pointer is 16-byte aligned (the ViT's q / v
 * adapters); otherwise plain 2-byte loads with zero padding to the next multiple of 8 columns (slower, any
 * r <= 64). Measured and dropped: thread-block clusters summing the partials through distributed shared memory
 * (no reduction kernel, but too few blocks: slower), row tiles interleaved across chunks (no difference), wider
 * tiles (256 / 512 / 768 columns) and deeper or shallower pipelines (within 2%). */
#include <stdint.h>
#include <string.h>

#include "cuda_internal.cuh"
#include "cuda_ops.h"

#define S g_cuda.stream

/* Rows per chunk at least DB_MIN_ROWS, at most DB_MAX_CHUNKS chunks (a function of BT only: the reduction's
 * order, and so the bits, do not depend on the GPU; 33 measured best of 33 / 44 / 61 / 64 on the H200). */
#define DB_MIN_ROWS 128
#define DB_MAX_CHUNKS 33
#define DB_KT_MAX 64 /* the largest rows-per-stage of the kernels below: chunks are rounded to it */

struct DbArgs {
    LoraDbJob job[LORA_DB_MAX_JOBS];
    long off[LORA_DB_MAX_JOBS]; /* each job's partials in scratch (floats): nchunk x m x r */
    int vec[LORA_DB_MAX_JOBS];  /* xa loaded with 16-byte cp.async */
    float *scratch;
    int n_jobs, ldx, ldy, BT, rows, nchunk;
    int flags; /* 8: programmatic dependent launches (the default); bench only: 2 no reduction, 4 loads only */
};

static __device__ __forceinline__ void db_cp16(void *dst, const void *src, bool ok) {
    uint32_t d = (uint32_t)__cvta_generic_to_shared(dst);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(d), "l"(src), "r"(ok ? 16 : 0));
}
static __device__ __forceinline__ void db_commit(void) { asm volatile("cp.async.commit_group;\n" ::); }
template <int N> static __device__ __forceinline__ void db_wait(void) {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}
static __device__ __forceinline__ void db_ldsm_x4_t(uint32_t r[4], const bf16d *p) {
    uint32_t a = (uint32_t)__cvta_generic_to_shared(p);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(a));
}
static __device__ __forceinline__ void db_ldsm_x2_t(uint32_t r[2], const bf16d *p) {
    uint32_t a = (uint32_t)__cvta_generic_to_shared(p);
    asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0,%1}, [%2];\n" : "=r"(r[0]), "=r"(r[1]) : "r"(a));
}
static __device__ __forceinline__ void db_mma(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

/* Shared-memory row strides (elements): dy rows NI + 8 (an odd number of 16-byte units for NI = 64, 128, 256,
 * 768: ldmatrix's 8 row addresses hit distinct banks); xa rows R8 when R8 / 8 is odd, else R8 + 8. */
template <int NI> struct DbYs { static constexpr int v = NI + 8; };
template <int NT> struct DbXs { static constexpr int v = (NT & 1) ? NT * 8 : NT * 8 + 8; };
template <int NI, int KT, int STAGES, int NT> static constexpr int db_smem_bytes() {
    return STAGES * KT * (DbYs<NI>::v + DbXs<NT>::v) * (int)sizeof(bf16d);
}

/* grid (column tiles of NI, chunks, jobs); NI / (16 WN) warps, each owning WN x 16 dy columns; NT = ceil(r_max /
 * 8). Chunk c = rows c * a.rows .. (c + 1) * a.rows - 1, in tiles of KT rows; the block's (NI, r) partial goes to
 * scratch (lora_db_reduce_kernel sums them). a.flags & 4 (bench): loads only, no mma. */
template <int NI, int WN, int KT, int STAGES, int NT>
__global__ void __launch_bounds__(NI * 2 / WN) lora_db_partial_kernel(const __grid_constant__ DbArgs a) {
    constexpr int YS = DbYs<NI>::v, XS = DbXs<NT>::v, R8 = NT * 8, NTHR = NI * 2 / WN, WC = 16 * WN;
    static_assert(KT % 16 == 0 && NI % WC == 0 && STAGES >= 2 && KT <= DB_KT_MAX && (KT * NI / 8) % NTHR == 0,
                  "tile shape");
    const int jn = blockIdx.z;
    const int m = a.job[jn].m, r = a.job[jn].r, vec = a.vec[jn];
    const int i0 = blockIdx.x * NI;
    if (i0 >= m) return; /* a job narrower than the widest one */
    const bf16d *dy = (const bf16d *)a.job[jn].dy, *xa = (const bf16d *)a.job[jn].xa;
    const int c = blockIdx.y;
    const int base = c * a.rows, tend = min(base + a.rows, a.BT), ntiles = max(0, (tend - base + KT - 1) / KT);
    extern __shared__ __align__(16) unsigned char db_smem[];
    bf16d *sy = (bf16d *)db_smem, *sx = sy + STAGES * KT * YS;
    const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
    /* launched as a programmatic dependent (PDL): wait for the stream's previous kernel (it may have written dy
     * or xa), then let the reduction kernel be scheduled (it waits for this grid in turn). No-ops otherwise. */
    asm volatile("griddepcontrol.wait;\n" ::: "memory");
    asm volatile("griddepcontrol.launch_dependents;\n" ::);

    auto load = [&](int tile, int stage) {
        const int tb = base + tile * KT;
        bf16d *ys = sy + stage * KT * YS, *xs = sx + stage * KT * XS;
#pragma unroll
        for (int p = 0; p < KT * NI / 8 / NTHR; p++) { /* KT rows x NI / 8 16-byte pieces */
            int e = tid + p * NTHR, rr = e / (NI / 8), cc = e % (NI / 8), t = tb + rr, i = i0 + cc * 8;
            bool ok = t < tend && i < m;
            db_cp16(ys + rr * YS + cc * 8, ok ? dy + (long)t * a.ldy + i : dy, ok);
        }
        if (vec) {
            for (int e = tid; e < KT * NT; e += NTHR) {
                int rr = e / NT, cc = e % NT, t = tb + rr;
                bool ok = t < tend;
                db_cp16(xs + rr * XS + cc * 8, ok ? xa + (long)t * a.ldx + cc * 8 : xa, ok);
            }
        } else {
            for (int e = tid; e < KT * R8; e += NTHR) {
                int rr = e / R8, cc = e % R8, t = tb + rr;
                xs[rr * XS + cc] = t < tend && cc < r ? xa[(long)t * a.ldx + cc] : __float2bfloat16(0.0f);
            }
        }
    };

    float acc[WN][NT][4];
#pragma unroll
    for (int mt = 0; mt < WN; mt++)
#pragma unroll
        for (int nt = 0; nt < NT; nt++)
#pragma unroll
            for (int q = 0; q < 4; q++) acc[mt][nt][q] = 0.0f;
    const bool active = i0 + warp * WC < m && !(a.flags & 4); /* warp-uniform */

#pragma unroll
    for (int s = 0; s < STAGES - 1; s++) {
        if (s < ntiles) load(s, s);
        db_commit();
    }
    for (int k = 0; k < ntiles; k++) {
        db_wait<STAGES - 2>();
        __syncthreads(); /* tile k visible to all; stage (k - 1) % STAGES free again */
        if (k + STAGES - 1 < ntiles) load(k + STAGES - 1, (k + STAGES - 1) % STAGES);
        db_commit();
        if (!active) continue;
        const bf16d *ys = sy + (k % STAGES) * KT * YS + warp * WC, *xs = sx + (k % STAGES) * KT * XS;
#pragma unroll
        for (int kk = 0; kk < KT / 16; kk++) {
            uint32_t b[NT][2];
#pragma unroll
            for (int nt = 0; nt < NT; nt++) /* xa rows kk*16 + 0..7 -> b0, + 8..15 -> b1 */
                db_ldsm_x2_t(b[nt], xs + (kk * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * XS + nt * 8);
#pragma unroll
            for (int mt = 0; mt < WN; mt++) { /* dy^T: matrices (cols +0, rows 0-7), (+8, 0-7), (+0, 8-15), (+8, 8-15) */
                uint32_t af[4];
                db_ldsm_x4_t(af, ys + (kk * 16 + (lane & 7) + ((lane >> 4) << 3)) * YS + mt * 16 + ((lane >> 3) & 1) * 8);
#pragma unroll
                for (int nt = 0; nt < NT; nt++) db_mma(acc[mt][nt], af, b[nt][0], b[nt][1]);
            }
        }
    }
    db_wait<0>();
    /* C fragment: c0, c1 = (row g, cols 2q, 2q + 1), c2, c3 = (row g + 8, same cols); rows = dy columns i */
    const int g = lane / 4, q = lane % 4;
    if (!active) return;
    float *part = a.scratch + a.off[jn] + (long)c * m * r;
#pragma unroll
    for (int mt = 0; mt < WN; mt++)
#pragma unroll
        for (int h = 0; h < 2; h++) {
            int i = i0 + warp * WC + mt * 16 + g + h * 8;
            if (i >= m) continue;
#pragma unroll
            for (int nt = 0; nt < NT; nt++)
#pragma unroll
                for (int e = 0; e < 2; e++) {
                    int cc = nt * 8 + 2 * q + e;
                    if (cc < r) part[(long)i * r + cc] = acc[mt][nt][2 * h + e];
                }
        }
}

/* dB (m r) += scale sum over chunks of the partials: block = 8 warps x 32 outputs; warp w sums chunks w, w + 8,
 * ... in order, then warp 0 sums the 8 in order. grid (ceil(max m r / 32), jobs). */
__global__ void __launch_bounds__(256) lora_db_reduce_kernel(const __grid_constant__ DbArgs a) {
    __shared__ float part[8][32];
    const int jn = blockIdx.y;
    const long n = (long)a.job[jn].m * a.job[jn].r;
    const long idx = (long)blockIdx.x * 32 + threadIdx.x % 32;
    if ((long)blockIdx.x * 32 >= n) return;
    const int w = threadIdx.x / 32;
    const float *p = a.scratch + a.off[jn] + idx;
    asm volatile("griddepcontrol.wait;\n" ::: "memory"); /* the partials (PDL launch: scheduled early) */
    float s = 0.0f;
    if (idx < n) {
#pragma unroll 4
        for (int c = w; c < a.nchunk; c += 8) s += p[(long)c * n];
    }
    part[w][threadIdx.x % 32] = s;
    __syncthreads();
    if (w == 0 && idx < n) {
        float t = 0.0f;
#pragma unroll
        for (int k = 0; k < 8; k++) t += part[k][threadIdx.x];
        a.job[jn].dB[idx] += a.job[jn].scale * t;
    }
}

static int db_rows(int BT) { /* rows per chunk: a multiple of DB_KT_MAX */
    int want = (BT + DB_MAX_CHUNKS - 1) / DB_MAX_CHUNKS;
    if (want < DB_MIN_ROWS) want = DB_MIN_ROWS;
    return (want + DB_KT_MAX - 1) / DB_KT_MAX * DB_KT_MAX;
}

/* enough for every BT' <= BT: nchunk <= ceil(BT' / DB_MIN_ROWS) and <= DB_MAX_CHUNKS (nchunk itself is not
 * monotone in BT) */
extern "C" size_t cuda_lora_db_scratch_bytes(int BT, long mr_total) {
    long nchunk = ((long)(BT < 1 ? 1 : BT) + DB_MIN_ROWS - 1) / DB_MIN_ROWS;
    if (nchunk > DB_MAX_CHUNKS) nchunk = DB_MAX_CHUNKS;
    return (size_t)(nchunk * mr_total) * sizeof(float);
}

/* fills a's jobs, offsets and load modes (chunks of `rows` rows); returns NT (ceil(max r / 8)) and the widest m */
static int db_args(DbArgs *a, const LoraDbJob *jobs, int n_jobs, int ldx, int ldy, int BT, float *scratch, int rows,
                   int *m_max) {
    CUDA_ASSERT(n_jobs >= 1 && n_jobs <= LORA_DB_MAX_JOBS && BT >= 1 && ldy % 8 == 0 && rows >= 1 && scratch);
    memset(a, 0, sizeof *a);
    a->n_jobs = n_jobs;
    a->ldx = ldx;
    a->ldy = ldy;
    a->BT = BT;
    a->rows = rows;
    a->nchunk = (BT + rows - 1) / rows;
    a->flags = 8;
    a->scratch = scratch;
    int r_max = 0;
    long off = 0;
    *m_max = 0;
    for (int j = 0; j < n_jobs; j++) {
        const LoraDbJob *jb = &jobs[j];
        CUDA_ASSERT(jb->dB && jb->xa && jb->dy && jb->m >= 8 && jb->m % 8 == 0 && jb->r >= 1 && jb->r <= 64 &&
                    ldx >= jb->r && ((uintptr_t)jb->dy & 15) == 0);
        a->job[j] = *jb;
        a->off[j] = off;
        a->vec[j] = jb->r % 8 == 0 && ldx % 8 == 0 && ((uintptr_t)jb->xa & 15) == 0;
        off += (long)a->nchunk * jb->m * jb->r;
        if (jb->r > r_max) r_max = jb->r;
        if (jb->m > *m_max) *m_max = jb->m;
    }
    return (r_max + 7) / 8;
}

/* kern<<<grid, block, smem, S>>>(a), as a programmatic dependent launch when pdl (it may be scheduled before the
 * stream's previous kernel ends; both kernels wait for it with griddepcontrol.wait before reading) */
static void db_launch_ex(void (*kern)(DbArgs), dim3 grid, dim3 block, int smem, bool pdl, const DbArgs &a) {
    cudaLaunchConfig_t cfg = {};
    cudaLaunchAttribute attr[1];
    attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[0].val.programmaticStreamSerializationAllowed = 1;
    cfg.gridDim = grid;
    cfg.blockDim = block;
    cfg.dynamicSmemBytes = smem;
    cfg.stream = S;
    cfg.attrs = attr;
    cfg.numAttrs = pdl ? 1 : 0;
    CUDA_CHECK(cudaLaunchKernelEx(&cfg, kern, a));
}

template <int NI, int WN, int KT, int STAGES, int NT> static void db_launch(const DbArgs &a, int m_max) {
    constexpr int smem = db_smem_bytes<NI, KT, STAGES, NT>();
    auto kern = lora_db_partial_kernel<NI, WN, KT, STAGES, NT>;
    static bool configured = false; /* one per instantiation */
    if (!configured) {
        CUDA_CHECK(cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
        configured = true;
    }
    db_launch_ex(kern, dim3(cdiv(m_max, NI), a.nchunk, a.n_jobs), dim3(NI * 2 / WN), smem, a.flags & 8, a);
    if (a.flags & 2) return; /* bench: partials only */
    long mr_max = 0;
    for (int j = 0; j < a.n_jobs; j++) mr_max = max(mr_max, (long)a.job[j].m * a.job[j].r);
    db_launch_ex(lora_db_reduce_kernel, dim3(cdiv(mr_max, 32), a.n_jobs), dim3(256), 0, a.flags & 8, a);
}

/* The production tile (scripts/bench/bench_lora_db.cu compares the others below): 128 columns (4 warps of 32),
 * 32 rows a stage, 4 stages (35 KB of shared memory); with <= 33 chunks, ViT-B/16's q + v (m 768) make 6 x 33
 * x 2 = 396 blocks: 3 per SM of an H200, one wave. */
#define DB_NI 128
#define DB_WN 2
#define DB_KT 32
#define DB_STAGES 4

extern "C" void cuda_lora_db_jobs(const LoraDbJob *jobs, int n_jobs, int ldx, int ldy, int BT, float *scratch) {
    cuda_require_init();
    DbArgs a;
    int m_max;
    int nt = db_args(&a, jobs, n_jobs, ldx, ldy, BT, scratch, db_rows(BT), &m_max);
    switch (nt) {
    case 1: db_launch<DB_NI, DB_WN, DB_KT, DB_STAGES, 1>(a, m_max); break;
    case 2: db_launch<DB_NI, DB_WN, DB_KT, DB_STAGES, 2>(a, m_max); break;
    case 3: db_launch<DB_NI, DB_WN, DB_KT, DB_STAGES, 3>(a, m_max); break;
    case 4: db_launch<DB_NI, DB_WN, DB_KT, DB_STAGES, 4>(a, m_max); break;
    case 5: db_launch<DB_NI, DB_WN, DB_KT, DB_STAGES, 5>(a, m_max); break;
    case 6: db_launch<DB_NI, DB_WN, DB_KT, DB_STAGES, 6>(a, m_max); break;
    case 7: db_launch<DB_NI, DB_WN, DB_KT, DB_STAGES, 7>(a, m_max); break;
    default: db_launch<DB_NI, DB_WN, DB_KT, DB_STAGES, 8>(a, m_max); break;
    }
}

extern "C" void cuda_lora_db(float *dB, const bf16 *xa, int ldx, const bf16 *dy, int ldy, int BT, int m, int r,
                             float scale, float *scratch) {
    LoraDbJob jb = {dB, xa, dy, m, r, scale};
    cuda_lora_db_jobs(&jb, 1, ldx, ldy, BT, scratch);
}

/* For scripts/bench/bench_lora_db.cu only (not in cuda_ops.h): r <= 8, tile config `cfg` (0 the production one),
 * about `nchunk` chunks (rows per chunk rounded up to 64; scratch sized by the caller), flags: 2 no reduction
 * kernel, 4 no mma (loads only), 8 programmatic dependent launches (the production default). Returns 0 for an
 * unknown cfg. */
extern "C" int cuda_lora_db_jobs_cfg(const LoraDbJob *jobs, int n_jobs, int ldx, int ldy, int BT, float *scratch,
                                     int cfg, int nchunk, int flags) {
    cuda_require_init();
    DbArgs a;
    int m_max, rows = ((BT + nchunk - 1) / nchunk + DB_KT_MAX - 1) / DB_KT_MAX * DB_KT_MAX;
    int nt = db_args(&a, jobs, n_jobs, ldx, ldy, BT, scratch, rows, &m_max);
    a.flags = flags;
    CUDA_ASSERT(nt == 1);
    switch (cfg) {
    case 0: db_launch<DB_NI, DB_WN, DB_KT, DB_STAGES, 1>(a, m_max); break;
    case 1: db_launch<256, 2, 32, 4, 1>(a, m_max); break;
    case 2: db_launch<256, 2, 32, 3, 1>(a, m_max); break;
    case 3: db_launch<256, 4, 32, 4, 1>(a, m_max); break;
    case 4: db_launch<768, 6, 16, 4, 1>(a, m_max); break;
    default: return 0;
    }
    return 1;
}
