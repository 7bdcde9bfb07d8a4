/* tests/test_peft_init.c: PiSSA and OLoRA against PEFT itself (tests/fixtures/peft_init_ref.safetensors,
 * written by PEFT 0.21 through scripts/make_peft_init_fixtures.py on a Linear(16 -> 24), r 4, alpha 8):
 * lora_A, lora_B and the base weight PEFT leaves behind, <= 1e-4 relative after normalizing the sign of each
 * rank-1 pair (PEFT computes in float32; this project's SVD / QR run in double).
 * random_orthogonal / random_gaussian: PEFT's draws (tests/fixtures/peft_random_ref.safetensors, 4 draws on a
 * Linear(64 -> 96), r 8, scripts/make_peft_act_fixtures.py) cannot equal ours (another RNG), so both are held to
 * the same structure and scale: gaussian B = 0 and std(A) = 1/r; orthogonal B A = 0, rank A = rank B = r/2 and
 * mean ||A||_F, ||B||_F within 25% of PEFT's (a missing or doubled scale factor fails). */
#include <math.h>
#include <string.h>

#include "core/linalg.h"
#include "core/safetensors.h"
#include "methods/init.h"
#include "methods/lora.h"
#include "testlib.h"

/* Flip pair k so that B's largest-magnitude entry in column k is positive. */
static void normalize(float *A, float *B, int m, int n, int r) {
    for (int k = 0; k < r; k++) {
        int arg = 0;
        for (int i = 1; i < m; i++) if (fabsf(B[i * r + k]) > fabsf(B[arg * r + k])) arg = i;
        if (B[arg * r + k] >= 0) continue;
        for (int i = 0; i < m; i++) B[i * r + k] = -B[i * r + k];
        for (int j = 0; j < n; j++) A[k * n + j] = -A[k * n + j];
    }
}

/* One nn.Linear(N -> M) without bias ("lin", weight zeroed) with a LoRA adapter of rank R attached. */
typedef struct {
    ParamSet ps;
    int w;
    LinearSlot slot;
    AdapterTarget tg;
    AdapterSet set;
} OneLinear;
static void one_linear(OneLinear *o, int M, int N, int R, float alpha) {
    Error err;
    params_init(&o->ps);
    int64_t shape[2] = {M, N};
    o->w = params_add(&o->ps, "lin.weight", 2, shape, 1);
    params_finalize(&o->ps);
    o->slot = (LinearSlot){.w = o->w, .b = -1, .in = N, .out = M};
    o->tg = (AdapterTarget){.name = "lin", .slot = &o->slot, .row0 = 0, .rows = M};
    const char *pats[] = {"lin"};
    AdapterSpec spec = {.kind = &ADAPTER_LORA, .r = R, .alpha = alpha};
    ASSERTF(adapters_attach(&o->set, &o->tg, 1, &o->ps, pats, 1, &spec, 1, &err) == 1, "%s", err.msg);
}
static void one_linear_free(OneLinear *o) {
    adapters_free(&o->set, &o->tg, 1);
    params_free(&o->ps);
}

static void check(const char *init) {
    enum { M = 24, N = 16, R = 4 };
    Error err;
    SafeTensors st;
    ASSERT(st_open(&st, TEST_FIXTURE_DIR "/peft_init_ref.safetensors", &err) == 0);
    OneLinear o;
    one_linear(&o, M, N, R, 8);
    /* W0 after attaching: LoRA's default init leaves it alone, and PiSSA / OLoRA read it */
    ASSERT(st_read_f32(&st, "W0", params_data(&o.ps, o.w), M * N, &err) == 0);
    InitContext ctx = {.set = &o.set, .seed = 1};
    InitResult res;
    CHECK_MSG(init_run(init, &ctx, &res, &err) == 0, "%s", err.msg);
    float A[R * N], B[M * R], rA[R * N], rB[M * R], rW[M * N];
    memcpy(A, params_data(&o.set.params, o.set.a[0].t[LORA_A]), sizeof A);
    memcpy(B, params_data(&o.set.params, o.set.a[0].t[LORA_B]), sizeof B);
    char name[64];
    snprintf(name, sizeof name, "%s.lora_A", init);
    ASSERT(st_read_f32(&st, name, rA, R * N, &err) == 0);
    snprintf(name, sizeof name, "%s.lora_B", init);
    ASSERT(st_read_f32(&st, name, rB, M * R, &err) == 0);
    snprintf(name, sizeof name, "%s.W0_new", init);
    ASSERT(st_read_f32(&st, name, rW, M * N, &err) == 0);
    normalize(A, B, M, N, R);
    normalize(rA, rB, M, N, R);
    double ea = max_rel_err(A, rA, R * N, 1e-6, NULL), eb = max_rel_err(B, rB, M * R, 1e-6, NULL);
    double ew = max_rel_err(params_data(&o.ps, o.w), rW, M * N, 1e-6, NULL);
    printf("%s vs PEFT %s: A %.2g, B %.2g, new W0 %.2g (max rel err)\n", init, st_meta(&st, "peft"), ea, eb, ew);
    CHECK_MSG(ea < 1e-4 && eb < 1e-4 && ew < 1e-4, "%s differs from PEFT", init);
    CHECK(res.changed_w0 && !res.changed_function);
    one_linear_free(&o);
    st_close(&st);
}

/* Numerical rank (sigma_i > 1e-4 sigma_1) of X (m, n). */
static int num_rank(const float *X, int m, int n) {
    int k = m < n ? m : n;
    float *S = malloc(sizeof(float) * k);
    Error err;
    ASSERT(la_svd(NULL, S, NULL, X, m, n, &err) == 0);
    int r = 0;
    for (int i = 0; i < k; i++) r += S[i] > 1e-4f * S[0];
    free(S);
    return r;
}
static double fro(const float *X, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)X[i] * X[i];
    return sqrt(s);
}
/* Structure of one draw (A (R,N), B (M,R)); adds ||A||_F, ||B||_F and the sums for std(A) to acc. */
static void draw_stats(const char *who, const char *init, const float *A, const float *B, int M, int N, int R,
                       double acc[4]) {
    if (!strcmp(init, "gaussian")) {
        CHECK_MSG(fro(B, (size_t)M * R) == 0, "%s gaussian: B != 0", who);
    } else {
        double ba = 0;
        for (int i = 0; i < M; i++)
            for (int j = 0; j < N; j++) {
                double v = 0;
                for (int k = 0; k < R; k++) v += (double)B[i * R + k] * A[k * N + j];
                ba += v * v;
            }
        CHECK_MSG(sqrt(ba) <= 1e-6 * fro(A, (size_t)R * N) * fro(B, (size_t)M * R), "%s orthogonal: B A != 0", who);
        CHECK_MSG(num_rank(A, R, N) == R / 2 && num_rank(B, M, R) == R / 2, "%s orthogonal: rank A %d, rank B %d, "
                  "expected %d", who, num_rank(A, R, N), num_rank(B, M, R), R / 2);
    }
    acc[0] += fro(A, (size_t)R * N);
    acc[1] += fro(B, (size_t)M * R);
    for (int i = 0; i < R * N; i++) acc[2] += (double)A[i] * A[i], acc[3] += 1;
}
static void check_random(const char *init) {
    enum { M = 96, N = 64, R = 8, DRAWS = 4 };
    Error err;
    SafeTensors st;
    ASSERT(st_open(&st, TEST_FIXTURE_DIR "/peft_random_ref.safetensors", &err) == 0);
    double peft[4] = {0}, ours[4] = {0};
    float A[R * N], B[M * R];
    char name[64];
    for (int d = 0; d < DRAWS; d++) {
        snprintf(name, sizeof name, "%s.%d.lora_A", init, d);
        ASSERT(st_read_f32(&st, name, A, R * N, &err) == 0);
        snprintf(name, sizeof name, "%s.%d.lora_B", init, d);
        ASSERT(st_read_f32(&st, name, B, M * R, &err) == 0);
        draw_stats("PEFT", init, A, B, M, N, R, peft);
        OneLinear o;
        one_linear(&o, M, N, R, 16);
        InitContext ctx = {.set = &o.set, .seed = 1000 + (uint64_t)d};
        InitResult res;
        CHECK_MSG(init_run(init, &ctx, &res, &err) == 0, "%s", err.msg);
        draw_stats("ours", init, params_data(&o.set.params, o.set.a[0].t[LORA_A]),
                   params_data(&o.set.params, o.set.a[0].t[LORA_B]), M, N, R, ours);
        one_linear_free(&o);
    }
    double sa = sqrt(ours[2] / ours[3]), sp = sqrt(peft[2] / peft[3]);
    printf("%s vs PEFT %s (%d draws, %d x %d, r %d): mean ||A||_F %.4g vs %.4g, mean ||B||_F %.4g vs %.4g, "
           "rms(A) %.4g vs %.4g (1/r = %.4g)\n", init, st_meta(&st, "peft"), DRAWS, M, N, R, ours[0] / DRAWS,
           peft[0] / DRAWS, ours[1] / DRAWS, peft[1] / DRAWS, sa, sp, 1.0 / R);
    CHECK_MSG(fabs(ours[0] / peft[0] - 1) < 0.25, "%s: ||A|| scale differs from PEFT's", init);
    if (peft[1] > 0) CHECK_MSG(fabs(ours[1] / peft[1] - 1) < 0.25, "%s: ||B|| scale differs from PEFT's", init);
    if (!strcmp(init, "gaussian"))
        CHECK_MSG(fabs(sa * R - 1) < 0.05 && fabs(sp * R - 1) < 0.05, "gaussian: rms(A) %g (PEFT %g), expected 1/r", sa, sp);
    st_close(&st);
}

int main(int argc, char **argv) {
    const char *w = argc > 1 ? argv[1] : "";
    if (!strncmp(w, "random_", 7)) check_random(w + 7);
    else check(w);
    return test_finish(w);
}
