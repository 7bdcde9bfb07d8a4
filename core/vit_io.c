/* core/vit_io.c */
#include "vit_io.h"

#include <stdio.h>
#include <string.h>

#include "params_io.h"

static int starts(const char *s, const char *p) { return strncmp(s, p, strlen(p)) == 0; }

int vit_hf_name_map(const char *name, char *out, size_t cap, int *row0, int *rows, void *ctx) {
    const ViT *m = ctx;
    int D = m->cfg.dim, l = -1, n = 0;
    *row0 = 0;
    *rows = -1;
    if (starts(name, "vit.")) name += 4;
    /* already a timm name */
    if (!starts(name, "embeddings.") && !starts(name, "encoder.") && !starts(name, "layers.") &&
        !starts(name, "layernorm.") && !starts(name, "classifier.")) {
        snprintf(out, cap, "%s", name);
        return 0;
    }
    const char *suffix = strrchr(name, '.'); /* ".weight" / ".bias" */
    if (!suffix) return -1;
    if (!strcmp(name, "embeddings.cls_token")) { snprintf(out, cap, "cls_token"); return 0; }
    if (!strcmp(name, "embeddings.position_embeddings")) { snprintf(out, cap, "pos_embed"); return 0; }
    if (starts(name, "embeddings.patch_embeddings.projection.")) { snprintf(out, cap, "patch_embed.proj%s", suffix); return 0; }
    if (starts(name, "layernorm.")) { snprintf(out, cap, "norm%s", suffix); return 0; }
    if (starts(name, "classifier.")) { snprintf(out, cap, "head%s", suffix); return 0; }
    /* transformers 4: encoder.layer.i.attention.attention.query ...; transformers 5: layers.i.attention.q_proj ... */
    if ((sscanf(name, "encoder.layer.%d.%n", &l, &n) != 1 && sscanf(name, "layers.%d.%n", &l, &n) != 1) || l < 0)
        return -1;
    const char *rest = name + n;
    static const struct { const char *hf, *timm; int qkv; } tab[] = {
        {"layernorm_before.", "norm1", -1}, {"layernorm_after.", "norm2", -1},
        {"attention.attention.query.", "attn.qkv", 0}, {"attention.attention.key.", "attn.qkv", 1},
        {"attention.attention.value.", "attn.qkv", 2}, {"attention.output.dense.", "attn.proj", -1},
        {"intermediate.dense.", "mlp.fc1", -1}, {"output.dense.", "mlp.fc2", -1},
        {"attention.q_proj.", "attn.qkv", 0}, {"attention.k_proj.", "attn.qkv", 1}, {"attention.v_proj.", "attn.qkv", 2},
        {"attention.o_proj.", "attn.proj", -1}, {"mlp.fc1.", "mlp.fc1", -1}, {"mlp.fc2.", "mlp.fc2", -1},
    };
    for (size_t i = 0; i < sizeof tab / sizeof tab[0]; i++)
        if (starts(rest, tab[i].hf) && strchr(rest + strlen(tab[i].hf), '.') == NULL) {
            snprintf(out, cap, "blocks.%d.%s%s", l, tab[i].timm, suffix);
            if (tab[i].qkv >= 0) { *row0 = tab[i].qkv * D; *rows = D; }
            return 0;
        }
    return -1;
}

int vit_load(ViT *m, const char *path, int skip_head, Error *err) {
    ParamLoadOptions o = {.map = vit_hf_name_map, .ctx = m, .skip = skip_head ? "head.*" : NULL,
                          .ignore = "*pooler.*"};
    return params_load(&m->params, path, &o, err);
}

int vit_save(const ViT *m, const char *path, const char *const *meta_kv, int n_meta, Error *err) {
    return params_save(&m->params, path, 0, meta_kv, n_meta, err);
}
