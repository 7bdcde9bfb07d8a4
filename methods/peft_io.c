/* methods/peft_io.c */
#include "peft_io.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "core/safetensors.h"
#include "lora.h"

int peft_module_name(const char *target, PeftNaming naming, char *out, size_t cap) {
    if (naming == PEFT_NAMES_TIMM || naming == PEFT_NAMES_AUTO) {
        if (strchr(target, ':')) return -1;
        snprintf(out, cap, "%s", target);
        return 0;
    }
    if (!strcmp(target, "head")) { snprintf(out, cap, "classifier"); return 0; }
    int l = -1, n = 0, v4 = naming == PEFT_NAMES_HF4;
    if (sscanf(target, "blocks.%d.%n", &l, &n) != 1 || l < 0) return -1;
    const char *rest = target + n;
    static const struct { const char *ours, *hf4, *hf5; } tab[] = {
        {"attn.qkv:q", "attention.attention.query", "attention.q_proj"},
        {"attn.qkv:k", "attention.attention.key", "attention.k_proj"},
        {"attn.qkv:v", "attention.attention.value", "attention.v_proj"},
        {"attn.proj", "attention.output.dense", "attention.o_proj"},
        {"mlp.fc1", "intermediate.dense", "mlp.fc1"},
        {"mlp.fc2", "output.dense", "mlp.fc2"},
    };
    for (size_t i = 0; i < sizeof tab / sizeof tab[0]; i++)
        if (!strcmp(rest, tab[i].ours)) {
            snprintf(out, cap, v4 ? "vit.encoder.layer.%d.%s" : "vit.layers.%d.%s", l, v4 ? tab[i].hf4 : tab[i].hf5);
            return 0;
        }
    return -1; /* e.g. the fused qkv as a whole: HF ViT has no such module */
}

static PeftNaming resolve(const AdapterSet *set, PeftNaming naming) {
    if (naming != PEFT_NAMES_AUTO) return naming;
    for (int i = 0; i < set->n; i++)
        if (strchr(set->a[i].target, ':')) return PEFT_NAMES_HF;
    return PEFT_NAMES_TIMM;
}

static int check_lora(const AdapterSet *set, const char *what, Error *err) {
    for (int i = 0; i < set->n; i++)
        if (set->a[i].kind != &ADAPTER_LORA)
            return err_set(err, "%s: adapter '%s' is %s; PEFT files are written for LoRA adapters only so far", what,
                           set->a[i].target, set->a[i].kind->name);
    if (set->n == 0) return err_set(err, "%s: no adapters", what);
    for (int i = 1; i < set->n; i++)
        if (set->a[i].r != set->a[0].r || set->a[i].alpha != set->a[0].alpha)
            return err_set(err, "%s: adapters with different ranks or alphas need PEFT's rank_pattern (not written "
                                "yet): '%s' r %d, '%s' r %d", what, set->a[0].target, set->a[0].r, set->a[i].target,
                           set->a[i].r);
    return 0;
}

int peft_save(const char *dir, const AdapterSet *set, PeftNaming naming, Error *err) {
    if (check_lora(set, dir, err)) return -1;
    naming = resolve(set, naming);
    if (mkdir(dir, 0777) && errno != EEXIST) return err_set(err, "%s: cannot create directory: %s", dir, strerror(errno));
    int n = set->n;
    StEntry *e = xcalloc((size_t)(2 * n), sizeof *e);
    char (*names)[PARAM_NAME_MAX + 64] = xcalloc((size_t)(2 * n), sizeof *names);
    char (*mods)[PARAM_NAME_MAX + 32] = xcalloc((size_t)n, sizeof *mods);
    int rc = 0;
    for (int i = 0; i < n && !rc; i++) {
        const Adapter *a = &set->a[i];
        if (peft_module_name(a->target, naming, mods[i], sizeof mods[i]))
            rc = err_set(err, "%s: adapter target '%s' has no %s module name in PEFT", dir, a->target,
                         naming == PEFT_NAMES_TIMM ? "timm" : "Hugging Face ViT");
        for (int k = 0; k < 2 && !rc; k++) {
            const ParamView *v = &a->ps->views[a->t[k == 0 ? LORA_A : LORA_B]];
            snprintf(names[2 * i + k], sizeof names[0], "base_model.model.%s.lora_%c.weight", mods[i], k ? 'B' : 'A');
            e[2 * i + k] = (StEntry){.name = names[2 * i + k], .dtype = ST_F32, .ndim = 2, .shape = v->shape,
                                     .data = a->ps->data + v->offset};
        }
    }
    char path[1024];
    if (!rc) {
        snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
        const char *meta[] = {"format", "pt"};
        rc = st_write(path, e, 2 * n, meta, 1, err);
    }
    if (!rc) {
        /* target_modules: the distinct last components, as PEFT matches module names by suffix */
        snprintf(path, sizeof path, "%s/adapter_config.json", dir);
        char tmp[1040];
        snprintf(tmp, sizeof tmp, "%s.tmp", path);
        FILE *f = fopen(tmp, "w");
        if (!f) rc = err_set(err, "%s: cannot write: %s", tmp, strerror(errno));
        else {
            const Adapter *a0 = &set->a[0];
            int rs = fabsf(a0->scale - a0->alpha / sqrtf((float)a0->r)) < 1e-6f * a0->scale && a0->r != 1;
            fprintf(f, "{\n  \"peft_type\": \"LORA\",\n  \"r\": %d,\n  \"lora_alpha\": %.9g,\n  \"use_rslora\": %s,\n"
                       "  \"use_dora\": false,\n  \"lora_dropout\": 0.0,\n  \"bias\": \"none\",\n"
                       "  \"fan_in_fan_out\": false,\n  \"init_lora_weights\": true,\n  \"inference_mode\": true,\n"
                       "  \"target_modules\": [",
                    a0->r, a0->alpha, rs ? "true" : "false");
            int first = 1;
            for (int i = 0; i < n; i++) {
                const char *last = strrchr(mods[i], '.') ? strrchr(mods[i], '.') + 1 : mods[i];
                int seen = 0;
                for (int j = 0; j < i && !seen; j++) {
                    const char *lj = strrchr(mods[j], '.') ? strrchr(mods[j], '.') + 1 : mods[j];
                    seen = !strcmp(lj, last);
                }
                if (!seen) { fprintf(f, "%s\"%s\"", first ? "" : ", ", last); first = 0; }
            }
            fprintf(f, "],\n  \"loralab_names\": \"%s\"\n}\n",
                    naming == PEFT_NAMES_HF ? "hf" : naming == PEFT_NAMES_HF4 ? "hf4" : "timm");
            if (fclose(f) || rename(tmp, path)) rc = err_set(err, "%s: cannot write: %s", path, strerror(errno));
        }
    }
    free(e);
    free(names);
    free(mods);
    return rc;
}

/* The number after "key": at the top level of a small JSON object (enough for adapter_config.json). */
static int json_number(const char *text, const char *key, double *out) {
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\"", key);
    const char *p = strstr(text, pat);
    if (!p) return -1;
    p += strlen(pat);
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') p++;
    if (*p++ != ':') return -1;
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') p++;
    if (!strncmp(p, "true", 4)) { *out = 1; return 0; }
    if (!strncmp(p, "false", 5) || !strncmp(p, "null", 4)) { *out = 0; return 0; }
    char *end;
    *out = strtod(p, &end);
    return end == p ? -1 : 0;
}

int peft_load(const char *dir, AdapterSet *set, Error *err) {
    if (check_lora(set, dir, err)) return -1;
    char path[1024];
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    FILE *f = fopen(path, "r");
    if (!f) return err_set(err, "%s: cannot open: %s (a PEFT adapter directory has adapter_config.json and "
                                "adapter_model.safetensors)", path, strerror(errno));
    char text[65536];
    size_t len = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[len] = 0;
    double r, alpha, rs = 0, dora = 0;
    if (json_number(text, "r", &r) || json_number(text, "lora_alpha", &alpha))
        return err_set(err, "%s: no \"r\" / \"lora_alpha\" numbers: not a PEFT LoRA config", path);
    json_number(text, "use_rslora", &rs);
    json_number(text, "use_dora", &dora);
    const Adapter *a0 = &set->a[0];
    if (dora) return err_set(err, "%s: use_dora is true; load it into DoRA adapters (not supported by this loader yet)", path);
    if ((int)r != a0->r || fabs(alpha - a0->alpha) > 1e-6 * fabs(alpha))
        return err_set(err, "%s: r %g, lora_alpha %g, but the config's adapters have r %d, alpha %g (set method.rank / "
                            "method.alpha to match)", path, r, alpha, a0->r, a0->alpha);
    if ((rs != 0) != (fabsf(a0->scale - a0->alpha / sqrtf((float)a0->r)) < 1e-6f * a0->scale && a0->r != 1))
        return err_set(err, "%s: use_rslora is %s but method.rslora says otherwise", path, rs ? "true" : "false");
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    SafeTensors st;
    if (st_open(&st, path, err)) return -1;
    int rc = 0, n = set->n;
    const StTensor **found = xcalloc((size_t)(2 * n), sizeof *found);
    char *used = xcalloc((size_t)st.n + 1, 1);
    for (int i = 0; i < n && !rc; i++) {
        const Adapter *a = &set->a[i];
        for (int k = 0; k < 2 && !rc; k++) {
            const ParamView *v = &a->ps->views[a->t[k ? LORA_B : LORA_A]];
            for (int nm = PEFT_NAMES_TIMM; nm <= PEFT_NAMES_HF4 && !found[2 * i + k]; nm++) {
                char mod[PARAM_NAME_MAX + 32], name[PARAM_NAME_MAX + 64];
                if (peft_module_name(a->target, (PeftNaming)nm, mod, sizeof mod)) continue;
                snprintf(name, sizeof name, "base_model.model.%s.lora_%c.weight", mod, k ? 'B' : 'A');
                found[2 * i + k] = st_find(&st, name);
            }
            const StTensor *t = found[2 * i + k];
            if (!t) rc = err_set(err, "%s: no lora_%c tensor for the adapted layer '%s' (different targets?)", path,
                                 k ? 'B' : 'A', a->target);
            else if (t->ndim != 2 || t->shape[0] != v->shape[0] || t->shape[1] != v->shape[1])
                rc = err_set(err, "%s: tensor '%s' is %lld x %lld, the adapter on '%s' needs %lld x %lld", path, t->name,
                             (long long)(t->ndim > 0 ? t->shape[0] : 0), (long long)(t->ndim > 1 ? t->shape[1] : 0),
                             a->target, (long long)v->shape[0], (long long)v->shape[1]);
            else used[t - st.tensors] = 1;
        }
    }
    for (int t = 0; t < st.n && !rc; t++)
        if (!used[t] && (strstr(st.tensors[t].name, ".lora_A.") || strstr(st.tensors[t].name, ".lora_B.")))
            rc = err_set(err, "%s: tensor '%s' belongs to no adapter of this config (method.targets adapts fewer "
                              "layers)", path, st.tensors[t].name);
    for (int i = 0; i < n && !rc; i++)
        for (int k = 0; k < 2 && !rc; k++) {
            const Adapter *a = &set->a[i];
            const ParamView *v = &a->ps->views[a->t[k ? LORA_B : LORA_A]];
            rc = st_read_f32(&st, found[2 * i + k]->name, a->ps->data + v->offset, (int64_t)v->numel, err);
        }
    free(found);
    free(used);
    st_close(&st);
    return rc;
}
