/* tests/test_peft.c: adapters in PEFT's format.
 *   ref_peft_load          an adapter written by real PEFT 0.21 (transformers 5 names, scripts/make_peft_fixture.py)
 *                          loads onto the tiny ViT and gives PEFT's logits
 *   record_peft_roundtrip  save -> load is exact, with HF names (q/k/v thirds) and with timm names
 *   fault_peft_mismatch    another rank, fewer targets, a missing directory: errors naming the file and the fix
 *   record_peft_kinds      DoRA (use_dora + lora_magnitude_vector), per-layer ranks (rank_pattern / alpha_pattern) and
 *                          LoRA-XS (written as the LoRA with lora_B = B R) save and load back with the same logits;
 *                          `test_peft export DIR` leaves the three directories and our logits in DIR for
 *                          scripts/check_peft_export.py, which loads them into PEFT itself (run where PEFT is). */
#include <string.h>
#include <unistd.h>

#include "core/safetensors.h"
#include "core/vit_io.h"
#include "gradcheck.h"
#include "methods/dora.h"
#include "methods/lora.h"
#include "methods/lora_xs.h"
#include "methods/peft_io.h"
#include "testlib.h"

static ViTConfig cfg(void) {
    return (ViTConfig){.img_size = 8, .in_ch = 2, .patch = 4, .dim = 16, .depth = 2, .heads = 2, .mlp_hidden = 32,
                       .n_classes = 5, .pool = POOL_CLS, .ln_eps = 1e-6f};
}

static void attach(ViT *m, AdapterSet *ad, const char *const *pats, int n, int r, float alpha) {
    Error err;
    AdapterSpec spec = {.kind = &ADAPTER_LORA, .r = r, .alpha = alpha};
    int k = adapters_attach(ad, m->targets, m->n_targets, &m->params, pats, n, &spec, 1, &err);
    ASSERTF(k > 0, "%s", err.msg);
}

static void ref_load(void) {
    ViT m;
    ViTConfig c = cfg();
    Error err;
    ASSERT(vit_build(&m, &c, &err) == 0);
    ASSERT(vit_load(&m, TEST_FIXTURE_DIR "/tiny_vit_hf.safetensors", 0, &err) == 0);
    AdapterSet ad;
    const char *pats[] = {"blocks.*.attn.qkv:q", "blocks.*.attn.qkv:v"};
    attach(&m, &ad, pats, 2, 2, 4);
    CHECK_MSG(peft_load(TEST_FIXTURE_DIR "/peft_tiny_vit", &ad, &err) == 0, "%s", err.msg);
    SafeTensors in, ref;
    ASSERT(st_open(&in, TEST_FIXTURE_DIR "/tiny_vit_inputs.safetensors", &err) == 0);
    ASSERT(st_open(&ref, TEST_FIXTURE_DIR "/peft_tiny_vit_ref.safetensors", &err) == 0);
    float x[3 * 2 * 64], logits[15], want[15];
    ASSERT(st_read_f32(&in, "input.x", x, 3 * 2 * 64, &err) == 0 && st_read_f32(&ref, "logits", want, 15, &err) == 0);
    Arena ar;
    arena_init(&ar, 1 << 16);
    vit_forward(&m, logits, x, 3, &ar);
    double e = max_rel_err(logits, want, 15, 1e-6, NULL);
    printf("PEFT %s adapter: logits max rel err %.3g\n", st_meta(&ref, "peft") ? st_meta(&ref, "peft") : "?", e);
    CHECK_MSG(e < 1e-4, "logits differ from PEFT's: %.3g", e);
    /* and the adapter matters: without it the logits differ */
    memset(ad.params.data, 0, ad.params.numel * sizeof(float));
    arena_reset(&ar);
    float base[15];
    vit_forward(&m, base, x, 3, &ar);
    CHECK(max_rel_err(base, want, 15, 1e-6, NULL) > 1e-2);
    /* transformers 5 base-model names map onto the fused qkv rows */
    char name[128];
    int row0, rows;
    CHECK(vit_hf_name_map("vit.layers.1.attention.k_proj.weight", name, sizeof name, &row0, &rows, &m) == 0 &&
          !strcmp(name, "blocks.1.attn.qkv.weight") && row0 == 16 && rows == 16);
    CHECK(vit_hf_name_map("vit.layers.0.mlp.fc2.bias", name, sizeof name, &row0, &rows, &m) == 0 &&
          !strcmp(name, "blocks.0.mlp.fc2.bias") && rows == -1);
    st_close(&in);
    st_close(&ref);
    arena_free(&ar);
    adapters_free(&ad, m.targets, m.n_targets);
    vit_free(&m);
}

static char tmpd[64];

static void roundtrip(void) {
    for (int naming = 0; naming < 2; naming++) {
        ViT m;
        ViTConfig c = cfg();
        Error err;
        ASSERT(vit_build(&m, &c, &err) == 0);
        AdapterSet a, b;
        const char *hf[] = {"blocks.*.attn.qkv:q", "blocks.*.attn.qkv:v", "blocks.1.mlp.fc1", "head"};
        const char *timm[] = {"blocks.*.attn.qkv", "blocks.*.mlp.fc2"};
        const char *const *pats = naming ? timm : hf;
        int np = naming ? 2 : 4;
        attach(&m, &a, pats, np, 4, 8);
        for (int i = 0; i < a.params.n; i++) gc_fill(params_data(&a.params, i), a.params.views[i].numel, -1, 1, 3 + i);
        char dir[128];
        snprintf(dir, sizeof dir, "%s/%s", tmpd, naming ? "timm" : "hf");
        CHECK_MSG(peft_save(dir, &a, PEFT_NAMES_AUTO, &err) == 0, "%s", err.msg);
        size_t na = a.params.numel;
        float *saved = malloc(na * sizeof(float));
        memcpy(saved, a.params.data, a.params.numel * sizeof(float));
        adapters_free(&a, m.targets, m.n_targets);
        attach(&m, &b, pats, np, 4, 8);
        CHECK_MSG(peft_load(dir, &b, &err) == 0, "%s", err.msg);
        CHECK(b.params.numel == na); /* same targets, same layout */
        CHECK(memcmp(b.params.data, saved, b.params.numel * sizeof(float)) == 0);
        char path[200];
        snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
        SafeTensors st;
        ASSERT(st_open(&st, path, &err) == 0);
        const char *expect = naming ? "base_model.model.blocks.1.attn.qkv.lora_B.weight"
                                    : "base_model.model.vit.layers.1.attention.v_proj.lora_A.weight";
        CHECK_MSG(st_find(&st, expect) != NULL, "%s has no %s", path, expect);
        if (!naming) CHECK(st_find(&st, "base_model.model.classifier.lora_B.weight") != NULL);
        st_close(&st);
        free(saved);
        adapters_free(&b, m.targets, m.n_targets);
        vit_free(&m);
    }
    printf("roundtrip: HF names (q, v, fc1, head) and timm names (qkv, fc2) load back bit for bit\n");
}

static void mismatch(void) {
    ViT m;
    ViTConfig c = cfg();
    Error err;
    ASSERT(vit_build(&m, &c, &err) == 0);
    AdapterSet ad;
    const char *pats[] = {"blocks.*.attn.qkv:q", "blocks.*.attn.qkv:v"};
    attach(&m, &ad, pats, 2, 4, 4); /* rank 4, the file has r 2 */
    CHECK(peft_load(TEST_FIXTURE_DIR "/peft_tiny_vit", &ad, &err) < 0 && strstr(err.msg, "adapter_config.json") &&
          strstr(err.msg, "r 2") && strstr(err.msg, "method.rank"));
    printf("other rank: %s\n", err.msg);
    adapters_free(&ad, m.targets, m.n_targets);
    const char *q[] = {"blocks.*.attn.qkv:q"};
    attach(&m, &ad, q, 1, 2, 4);
    CHECK(peft_load(TEST_FIXTURE_DIR "/peft_tiny_vit", &ad, &err) < 0 && strstr(err.msg, "v_proj") &&
          strstr(err.msg, "belongs to no adapter"));
    printf("fewer targets: %s\n", err.msg);
    float before = ad.params.data[0];
    CHECK(ad.params.data[0] == before);
    CHECK(peft_load("/nonexistent/adapter", &ad, &err) < 0 && strstr(err.msg, "/nonexistent/adapter/adapter_config.json"));
    adapters_free(&ad, m.targets, m.n_targets);
    vit_free(&m);
}

/* The tiny HF-fixture ViT with an adapter of `kind` on q, v (and fc1), random tensors; logits on the fixture input. */
static void kind_logits(ViT *m, float *logits) {
    Error err;
    SafeTensors in;
    float x[3 * 2 * 64];
    ASSERT(st_open(&in, TEST_FIXTURE_DIR "/tiny_vit_inputs.safetensors", &err) == 0);
    ASSERT(st_read_f32(&in, "input.x", x, 3 * 2 * 64, &err) == 0);
    st_close(&in);
    Arena ar;
    arena_init(&ar, 1 << 16);
    vit_forward(m, logits, x, 3, &ar);
    arena_free(&ar);
}
static void kinds(const char *export_dir) {
    static const char *names[] = {"dora", "rank_pattern", "lora_xs"};
    static const int ranks[] = {2, 4, 3, 2, 4, 3}; /* q0 v0 fc1.0 q1 v1 fc1.1 in target order */
    const char *pats[] = {"blocks.*.attn.qkv:q", "blocks.*.attn.qkv:v", "blocks.*.mlp.fc1"};
    Error err;
    StEntry out[3];
    float logits[3][15];
    int64_t lshape[2] = {3, 5};
    for (int k = 0; k < 3; k++) {
        ViT m;
        ViTConfig c = cfg();
        ASSERT(vit_build(&m, &c, &err) == 0);
        ASSERT(vit_load(&m, TEST_FIXTURE_DIR "/tiny_vit_hf.safetensors", 0, &err) == 0);
        const AdapterKind *kind = k == 0 ? &ADAPTER_DORA : k == 1 ? &ADAPTER_LORA : &ADAPTER_LORA_XS;
        AdapterSpec spec = {.kind = kind, .r = 4, .alpha = 8, .ranks = k == 1 ? ranks : NULL, .n_ranks = k == 1 ? 6 : 0};
        AdapterSet a, b;
        ASSERT(adapters_attach(&a, m.targets, m.n_targets, &m.params, pats, 3, &spec, 1, &err) == 6);
        for (int i = 0; i < a.params.n; i++)
            gc_fill(params_data(&a.params, i), a.params.views[i].numel, k == 0 && i % 3 == 2 ? 0.5f : -0.4f, 1, 11 + i);
        kind_logits(&m, logits[k]);
        char dir[256];
        snprintf(dir, sizeof dir, "%s/%s", export_dir ? export_dir : tmpd, names[k]);
        CHECK_MSG(peft_save(dir, &a, PEFT_NAMES_AUTO, &err) == 0, "%s", err.msg);
        adapters_free(&a, m.targets, m.n_targets);
        AdapterSpec back = spec;
        if (k == 2) back.kind = &ADAPTER_LORA; /* LoRA-XS comes back as the LoRA with the same dW */
        ASSERT(adapters_attach(&b, m.targets, m.n_targets, &m.params, pats, 3, &back, 1, &err) == 6);
        CHECK_MSG(peft_load(dir, &b, &err) == 0, "%s: %s", names[k], err.msg);
        float again[15];
        kind_logits(&m, again);
        double e = max_rel_err(again, logits[k], 15, 1e-6, NULL);
        printf("record_peft_kinds %s: saved, loaded back (%s), logits max rel err %.2g\n", names[k],
               k == 2 ? "as LoRA" : "same kind", e);
        CHECK_MSG(e < 1e-5, "%s: logits after the round trip differ (%.3g)", names[k], e);
        char path[300];
        snprintf(path, sizeof path, "%s/adapter_config.json", dir);
        FILE *f = fopen(path, "r");
        char text[4096] = {0};
        if (f) { if (fread(text, 1, sizeof text - 1, f)) {} fclose(f); }
        if (k == 0) CHECK(strstr(text, "\"use_dora\": true") != NULL);
        if (k == 1) CHECK_MSG(strstr(text, "\"vit.layers.0.attention.v_proj\": 4") && strstr(text, "\"vit.layers.1.mlp.fc1\": 3"),
                              "rank_pattern missing in %s", path);
        adapters_free(&b, m.targets, m.n_targets);
        /* the wrong kind or ranks: clear errors */
        if (k < 2) {
            AdapterSpec wrong = {.kind = k == 0 ? &ADAPTER_LORA : &ADAPTER_LORA, .r = 4, .alpha = 8};
            ASSERT(adapters_attach(&b, m.targets, m.n_targets, &m.params, pats, 3, &wrong, 1, &err) == 6);
            CHECK(peft_load(dir, &b, &err) < 0 && (k == 0 ? strstr(err.msg, "use_dora") != NULL
                                                          : strstr(err.msg, "rank_pattern") != NULL));
            printf("  wrong %s: %s\n", k == 0 ? "kind" : "ranks", err.msg);
            adapters_free(&b, m.targets, m.n_targets);
        } else {
            ASSERT(adapters_attach(&b, m.targets, m.n_targets, &m.params, pats, 3, &spec, 1, &err) == 6);
            CHECK(peft_load(dir, &b, &err) < 0 && strstr(err.msg, "lora_xs") && strstr(err.msg, "method.adapter: lora"));
            printf("  LoRA-XS load: %s\n", err.msg);
            adapters_free(&b, m.targets, m.n_targets);
        }
        vit_free(&m);
    }
    if (export_dir) {
        char path[300];
        snprintf(path, sizeof path, "%s/ours_logits.safetensors", export_dir);
        for (int k = 0; k < 3; k++)
            out[k] = (StEntry){.name = names[k], .dtype = ST_F32, .ndim = 2, .shape = lshape, .data = logits[k]};
        ASSERT(st_write(path, out, 3, NULL, 0, &err) == 0);
        printf("wrote %s\n", path);
    }
}

int main(int argc, char **argv) {
    if (argc > 2 && !strcmp(argv[1], "export")) {
        kinds(argv[2]);
        return test_finish("export");
    }
    snprintf(tmpd, sizeof tmpd, "/tmp/loralab_peft_XXXXXX");
    ASSERT(mkdtemp(tmpd));
    const char *w = argc > 1 ? argv[1] : "";
    if (!strcmp(w, "ref")) ref_load();
    else if (!strcmp(w, "roundtrip")) roundtrip();
    else if (!strcmp(w, "mismatch")) mismatch();
    else if (!strcmp(w, "kinds")) kinds(NULL);
    else return 2;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpd);
    if (system(cmd)) {}
    return test_finish(w);
}
