/* tests/test_checkpoint.c: ViT checkpoints in and out.
 *   record_vit_checkpoint  save -> load round trip is exact, and a model loaded from it computes the same logits
 *   fault_vit_checkpoint   a checkpoint of another shape, with a missing tensor, with an unknown tensor, or a
 *                          truncated file: each an error naming the file and the tensor, model untouched */
#include <string.h>
#include <unistd.h>

#include "core/params_io.h"
#include "core/vit_io.h"
#include "gradcheck.h"
#include "testlib.h"

static ViTConfig cfg16(void) {
    return (ViTConfig){.img_size = 8, .in_ch = 2, .patch = 4, .dim = 16, .depth = 2, .heads = 2, .mlp_hidden = 32,
                       .n_classes = 5, .pool = POOL_CLS};
}
static char tmpdir[256];

static void roundtrip(void) {
    ViT a, b;
    ViTConfig c = cfg16();
    Error err;
    ASSERT(vit_build(&a, &c, &err) == 0 && vit_build(&b, &c, &err) == 0);
    vit_init_params(&a, 1);
    vit_init_params(&b, 2);
    char path[512];
    snprintf(path, sizeof path, "%s/a.safetensors", tmpdir);
    const char *meta[] = {"format", "pt"};
    CHECK_MSG(vit_save(&a, path, meta, 1, &err) == 0, "%s", err.msg);
    CHECK_MSG(vit_load(&b, path, 0, &err) == 0, "%s", err.msg);
    CHECK(memcmp(a.params.data, b.params.data, a.params.numel * sizeof(float)) == 0);
    float x[2 * 2 * 64], la[10], lb[10];
    gc_fill(x, sizeof x / sizeof x[0], -1, 1, 3);
    Arena ar;
    arena_init(&ar, 1 << 16);
    vit_forward(&a, la, x, 2, &ar);
    arena_reset(&ar);
    vit_forward(&b, lb, x, 2, &ar);
    CHECK(memcmp(la, lb, sizeof la) == 0);
    /* skip_head keeps the model's own head: a 7-class model loads the 5-class backbone */
    ViT c7;
    ViTConfig k7 = cfg16();
    k7.n_classes = 7;
    ASSERT(vit_build(&c7, &k7, &err) == 0);
    CHECK_MSG(vit_load(&c7, path, 1, &err) == 0, "%s", err.msg);
    CHECK_MSG(vit_load(&c7, path, 0, &err) < 0 && strstr(err.msg, "head.weight"), "%s", err.msg);
    arena_free(&ar);
    vit_free(&a); vit_free(&b); vit_free(&c7);
}

static void faults(void) {
    Error err;
    ViT m;
    ViTConfig c = cfg16();
    ASSERT(vit_build(&m, &c, &err) == 0);
    vit_init_params(&m, 1);
    char good[512], path[512];
    snprintf(good, sizeof good, "%s/good.safetensors", tmpdir);
    ASSERT(vit_save(&m, good, NULL, 0, &err) == 0);
    float before = params_data(&m.params, 0)[0];

    /* another width: the first mismatching tensor is named with both shapes */
    ViT w8;
    ViTConfig c8 = cfg16();
    c8.dim = 8;
    c8.mlp_hidden = 16;
    ASSERT(vit_build(&w8, &c8, &err) == 0);
    CHECK(vit_load(&w8, good, 0, &err) < 0);
    printf("other width: %s\n", err.msg);
    CHECK(strstr(err.msg, "good.safetensors") && strstr(err.msg, "(16, 2, 4, 4)") && strstr(err.msg, "patch_embed"));

    /* missing tensors: save only the trainable head */
    params_set_all_trainable(&m.params, 0);
    params_set_trainable(&m.params, "head.*", 1);
    snprintf(path, sizeof path, "%s/head_only.safetensors", tmpdir);
    ASSERT(params_save(&m.params, path, 1, NULL, 0, &err) == 0);
    CHECK(vit_load(&m, path, 0, &err) < 0);
    printf("missing: %s\n", err.msg);
    CHECK(strstr(err.msg, "head_only.safetensors") && strstr(err.msg, "missing"));

    /* an unknown tensor name (a typo must not silently leave a weight unloaded) */
    ViT deeper;
    ViTConfig c3 = cfg16();
    c3.depth = 3;
    ASSERT(vit_build(&deeper, &c3, &err) == 0);
    snprintf(path, sizeof path, "%s/deeper.safetensors", tmpdir);
    ASSERT(vit_save(&deeper, path, NULL, 0, &err) == 0);
    CHECK(vit_load(&m, path, 0, &err) < 0);
    printf("unknown: %s\n", err.msg);
    CHECK(strstr(err.msg, "blocks.2.") && strstr(err.msg, "matches no parameter"));

    CHECK_MSG(params_data(&m.params, 0)[0] == before, "a failed load must not touch the model");
    /* a truncated file */
    snprintf(path, sizeof path, "%s/cut.safetensors", tmpdir);
    FILE *in = fopen(good, "rb"), *out = fopen(path, "wb");
    char buf[1000];
    size_t n = fread(buf, 1, sizeof buf, in);
    fwrite(buf, 1, n, out);
    fclose(in);
    fclose(out);
    CHECK(vit_load(&m, path, 0, &err) < 0);
    printf("truncated: %s\n", err.msg);
    CHECK(strstr(err.msg, "cut.safetensors") != NULL);
    CHECK_MSG(params_data(&m.params, 0)[0] == before, "a failed header check must not touch the model");
    vit_free(&m); vit_free(&w8); vit_free(&deeper);
}

int main(int argc, char **argv) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/loralab_ckpt_XXXXXX");
    ASSERT(mkdtemp(tmpdir));
    const char *w = argc > 1 ? argv[1] : "";
    if (!strcmp(w, "roundtrip")) roundtrip();
    else if (!strcmp(w, "faults")) faults();
    else return 2;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    if (system(cmd)) {}
    return test_finish(w);
}
