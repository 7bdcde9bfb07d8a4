/* tests/test_peft_init.c: PiSSA and OLoRA against PEFT itself (tests/fixtures/peft_init_ref.safetensors,
 * written by PEFT 0.21 through scripts/make_peft_init_fixtures.py on a Linear(16 -> 24), r 4, alpha 8):
 * lora_A, lora_B and the base weight PEFT leaves behind, <= 1e-4 relative after normalizing the sign of each
 * rank-1 pair (PEFT computes in float32; this project's SVD / QR run in double). */
#include <math.h>
#include <string.h>

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

static void check(const char *init) {
    enum { M = 24, N = 16, R = 4 };
    Error err;
    SafeTensors st;
    ASSERT(st_open(&st, TEST_FIXTURE_DIR "/peft_init_ref.safetensors", &err) == 0);
    ParamSet ps;
    params_init(&ps);
    int64_t shape[2] = {M, N};
    int w = params_add(&ps, "lin.weight", 2, shape, 1);
    params_finalize(&ps);
    ASSERT(st_read_f32(&st, "W0", params_data(&ps, w), M * N, &err) == 0);
    LinearSlot slot = {.w = w, .b = -1, .in = N, .out = M};
    AdapterTarget tg = {.name = "lin", .slot = &slot, .row0 = 0, .rows = M};
    AdapterSet set;
    const char *pats[] = {"lin"};
    AdapterSpec spec = {.kind = &ADAPTER_LORA, .r = R, .alpha = 8};
    ASSERT(adapters_attach(&set, &tg, 1, &ps, pats, 1, &spec, 1, &err) == 1);
    InitContext ctx = {.set = &set, .seed = 1};
    InitResult res;
    CHECK_MSG(init_run(init, &ctx, &res, &err) == 0, "%s", err.msg);
    float A[R * N], B[M * R], rA[R * N], rB[M * R], rW[M * N];
    memcpy(A, params_data(&set.params, set.a[0].t[LORA_A]), sizeof A);
    memcpy(B, params_data(&set.params, set.a[0].t[LORA_B]), sizeof B);
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
    double ew = max_rel_err(params_data(&ps, w), rW, M * N, 1e-6, NULL);
    printf("%s vs PEFT %s: A %.2g, B %.2g, new W0 %.2g (max rel err)\n", init, st_meta(&st, "peft"), ea, eb, ew);
    CHECK_MSG(ea < 1e-4 && eb < 1e-4 && ew < 1e-4, "%s differs from PEFT", init);
    CHECK(res.changed_w0 && !res.changed_function);
    adapters_free(&set, &tg, 1);
    params_free(&ps);
    st_close(&st);
}

int main(int argc, char **argv) {
    const char *w = argc > 1 ? argv[1] : "";
    check(w);
    return test_finish(w);
}
