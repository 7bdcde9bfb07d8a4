/* methods/peft_io.c */
#include "peft_io.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "core/safetensors.h"
#include "dora.h"
#include "lora.h"
#include "lora_xs.h"

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

/* All adapters of one kind PEFT has: LoRA or DoRA; saving also takes LoRA-XS (written as the LoRA with the same
 * dW: lora_B = B R). Ranks and alphas may differ per adapter (rank_pattern / alpha_pattern). */
static int check_kinds(const AdapterSet *set, const char *what, int saving, Error *err) {
    if (set->n == 0) return err_set(err, "%s: no adapters", what);
    const AdapterKind *k0 = set->a[0].kind;
    if (k0 != &ADAPTER_LORA && k0 != &ADAPTER_DORA && !(saving && k0 == &ADAPTER_LORA_XS))
        return err_set(err, "%s: adapter '%s' is %s; PEFT files hold LoRA and DoRA adapters%s", what,
                       set->a[0].target, k0->name, saving ? " (and LoRA-XS, written as LoRA)" :
                       k0 == &ADAPTER_LORA_XS ? " (a LoRA-XS adapter is written as the LoRA with lora_B = B R, which "
                       "cannot be split back: load it into `method.adapter: lora`)" : "");
    for (int i = 1; i < set->n; i++)
        if (set->a[i].kind != k0)
            return err_set(err, "%s: adapters of different kinds ('%s' is %s, '%s' is %s): PEFT keeps one kind per "
                                "adapter file", what, set->a[0].target, k0->name, set->a[i].target, set->a[i].kind->name);
    return 0;
}

static int is_rslora(const Adapter *a) {
    return a->r != 1 && fabsf(a->scale - a->alpha / sqrtf((float)a->r)) < 1e-6f * a->scale;
}

int peft_save(const char *dir, const AdapterSet *set, PeftNaming naming, Error *err) {
    if (check_kinds(set, dir, 1, err)) return -1;
    naming = resolve(set, naming);
    if (mkdir(dir, 0777) && errno != EEXIST) return err_set(err, "%s: cannot create directory: %s", dir, strerror(errno));
    const AdapterKind *kind = set->a[0].kind;
    int n = set->n, per = kind == &ADAPTER_DORA ? 3 : 2, xs = kind == &ADAPTER_LORA_XS;
    StEntry *e = xcalloc((size_t)(per * n), sizeof *e);
    char (*names)[PARAM_NAME_MAX + 64] = xcalloc((size_t)(per * n), sizeof *names);
    char (*mods)[PARAM_NAME_MAX + 32] = xcalloc((size_t)n, sizeof *mods);
    float **folded = xcalloc((size_t)n, sizeof *folded); /* LoRA-XS: B R (m, r) */
    int64_t (*fshape)[2] = xcalloc((size_t)n, sizeof *fshape);
    int rc = 0;
    for (int i = 0; i < n && !rc; i++) {
        const Adapter *a = &set->a[i];
        if (peft_module_name(a->target, naming, mods[i], sizeof mods[i]))
            rc = err_set(err, "%s: adapter target '%s' has no %s module name in PEFT", dir, a->target,
                         naming == PEFT_NAMES_TIMM ? "timm" : "Hugging Face ViT");
        for (int k = 0; k < per && !rc; k++) {
            const ParamView *v = &a->ps->views[a->t[k]]; /* LORA_A = 0, LORA_B = 1, DORA_MAG = 2 */
            const float *data = a->ps->data + v->offset;
            if (k == 2) snprintf(names[per * i + k], sizeof names[0], "base_model.model.%s.lora_magnitude_vector", mods[i]);
            else snprintf(names[per * i + k], sizeof names[0], "base_model.model.%s.lora_%c.weight", mods[i], k ? 'B' : 'A');
            if (xs && k == 1) { /* lora_B = B (m, r) R (r, r) */
                const float *B = data, *R = params_data(a->ps, a->t[LORA_XS_R]);
                float *BR = folded[i] = xcalloc((size_t)a->m * a->r, sizeof(float));
                for (int o = 0; o < a->m; o++)
                    for (int j = 0; j < a->r; j++) {
                        double acc = 0;
                        for (int q = 0; q < a->r; q++) acc += (double)B[(size_t)o * a->r + q] * R[(size_t)q * a->r + j];
                        BR[(size_t)o * a->r + j] = (float)acc;
                    }
                fshape[i][0] = a->m, fshape[i][1] = a->r;
                e[per * i + k] = (StEntry){.name = names[per * i + k], .dtype = ST_F32, .ndim = 2, .shape = fshape[i],
                                           .data = BR};
            } else
                e[per * i + k] = (StEntry){.name = names[per * i + k], .dtype = ST_F32, .ndim = v->ndim,
                                           .shape = v->shape, .data = data};
        }
    }
    char path[1024];
    if (!rc) {
        snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
        const char *meta[] = {"format", "pt"};
        rc = st_write(path, e, per * n, meta, 1, err);
    }
    if (!rc) {
        /* target_modules: the distinct last components, as PEFT matches module names by suffix. r / lora_alpha
         * are the first adapter's; every other adapter's rank / alpha goes into rank_pattern / alpha_pattern under
         * its full module name (PEFT matches a key k against a module name by the regex (.*\.)?(k)$). */
        snprintf(path, sizeof path, "%s/adapter_config.json", dir);
        char tmp[1040];
        snprintf(tmp, sizeof tmp, "%s.tmp", path);
        FILE *f = fopen(tmp, "w");
        if (!f) rc = err_set(err, "%s: cannot write: %s", tmp, strerror(errno));
        else {
            const Adapter *a0 = &set->a[0];
            fprintf(f, "{\n  \"peft_type\": \"LORA\",\n  \"r\": %d,\n  \"lora_alpha\": %.9g,\n  \"use_rslora\": %s,\n"
                       "  \"use_dora\": %s,\n  \"lora_dropout\": 0.0,\n  \"bias\": \"none\",\n"
                       "  \"fan_in_fan_out\": false,\n  \"init_lora_weights\": true,\n  \"inference_mode\": true,\n",
                    a0->r, a0->alpha, is_rslora(a0) ? "true" : "false", kind == &ADAPTER_DORA ? "true" : "false");
            for (int pat = 0; pat < 2; pat++) {
                fprintf(f, "  \"%s\": {", pat ? "alpha_pattern" : "rank_pattern");
                int first = 1;
                for (int i = 1; i < n; i++) {
                    const Adapter *a = &set->a[i];
                    if (pat ? a->alpha == a0->alpha : a->r == a0->r) continue;
                    if (pat) fprintf(f, "%s\"%s\": %.9g", first ? "" : ", ", mods[i], a->alpha);
                    else fprintf(f, "%s\"%s\": %d", first ? "" : ", ", mods[i], a->r);
                    first = 0;
                }
                fprintf(f, "},\n");
            }
            fprintf(f, "  \"target_modules\": [");
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
            fprintf(f, "],\n  \"loralab_names\": \"%s\",\n  \"loralab_adapter\": \"%s\"\n}\n",
                    naming == PEFT_NAMES_HF ? "hf" : naming == PEFT_NAMES_HF4 ? "hf4" : "timm", kind->name);
            if (fclose(f) || rename(tmp, path)) rc = err_set(err, "%s: cannot write: %s", path, strerror(errno));
        }
    }
    for (int i = 0; i < n; i++) free(folded[i]);
    free(folded);
    free(fshape);
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

/* The value for module name `mod` in the flat JSON object under "key" ({"name": number, ...}; PEFT's
 * rank_pattern / alpha_pattern): an entry k applies when mod is k or ends in ".k" (PEFT's regex (.*\.)?(k)$ with k
 * taken literally; regex patterns are not supported). Returns 0 and *out when an entry applies, -1 otherwise. */
static int json_pattern(const char *text, const char *key, const char *mod, double *out) {
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\"", key);
    const char *p = strstr(text, pat);
    if (!p) return -1;
    p = strchr(p + strlen(pat), '{');
    const char *end = p ? strchr(p, '}') : NULL;
    if (!p || !end) return -1;
    while (p < end) {
        const char *q0 = strchr(p, '"');
        if (!q0 || q0 > end) break;
        const char *q1 = strchr(q0 + 1, '"');
        if (!q1 || q1 > end) break;
        size_t kl = (size_t)(q1 - q0 - 1), ml = strlen(mod);
        const char *c = strchr(q1, ':');
        if (!c || c > end) break;
        char *num_end;
        double v = strtod(c + 1, &num_end);
        int match = kl <= ml && !strncmp(mod + ml - kl, q0 + 1, kl) && (kl == ml || mod[ml - kl - 1] == '.');
        if (match && num_end != c + 1) { *out = v; return 0; }
        p = num_end > c + 1 ? num_end : c + 1;
    }
    return -1;
}

int peft_load(const char *dir, AdapterSet *set, Error *err) {
    if (check_kinds(set, dir, 0, err)) return -1;
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
    int want_dora = set->a[0].kind == &ADAPTER_DORA, per = want_dora ? 3 : 2;
    if ((dora != 0) != want_dora)
        return err_set(err, "%s: use_dora is %s but the config's adapters are %s (set method.adapter: %s)", path,
                       dora ? "true" : "false", set->a[0].kind->name, dora ? "dora" : "lora");
    /* every adapter's rank and alpha: the pattern entry for its module name, else r / lora_alpha */
    for (int i = 0; i < set->n; i++) {
        const Adapter *a = &set->a[i];
        double ri = r, ai = alpha, v;
        for (int nm = PEFT_NAMES_TIMM; nm <= PEFT_NAMES_HF4; nm++) {
            char mod[PARAM_NAME_MAX + 32];
            if (peft_module_name(a->target, (PeftNaming)nm, mod, sizeof mod)) continue;
            if (!json_pattern(text, "rank_pattern", mod, &v)) ri = v;
            if (!json_pattern(text, "alpha_pattern", mod, &v)) ai = v;
        }
        if ((int)ri != a->r || fabs(ai - a->alpha) > 1e-6 * fabs(ai))
            return err_set(err, "%s: the adapter on '%s' has r %g, lora_alpha %g there (r / lora_alpha / rank_pattern / "
                                "alpha_pattern), but r %d, alpha %g in this config (set method.rank / method.alpha, or "
                                "the per-layer ranks, to match)", path, a->target, ri, ai, a->r, a->alpha);
        if ((rs != 0) != is_rslora(a))
            return err_set(err, "%s: use_rslora is %s but method.rslora says otherwise", path, rs ? "true" : "false");
    }
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    SafeTensors st;
    if (st_open(&st, path, err)) return -1;
    int rc = 0, n = set->n;
    const StTensor **found = xcalloc((size_t)(per * n), sizeof *found);
    char *used = xcalloc((size_t)st.n + 1, 1);
    for (int i = 0; i < n && !rc; i++) {
        const Adapter *a = &set->a[i];
        for (int k = 0; k < per && !rc; k++) {
            const ParamView *v = &a->ps->views[a->t[k]];
            const char *what = k == 2 ? "lora_magnitude_vector" : k ? "lora_B" : "lora_A";
            for (int nm = PEFT_NAMES_TIMM; nm <= PEFT_NAMES_HF4 && !found[per * i + k]; nm++) {
                char mod[PARAM_NAME_MAX + 32], name[PARAM_NAME_MAX + 64];
                if (peft_module_name(a->target, (PeftNaming)nm, mod, sizeof mod)) continue;
                if (k == 2) snprintf(name, sizeof name, "base_model.model.%s.lora_magnitude_vector", mod);
                else snprintf(name, sizeof name, "base_model.model.%s.%s.weight", mod, what);
                found[per * i + k] = st_find(&st, name);
            }
            const StTensor *t = found[per * i + k];
            int64_t want0 = v->shape[0], want1 = v->ndim > 1 ? v->shape[1] : 1;
            int64_t got0 = t && t->ndim > 0 ? t->shape[0] : 0, got1 = t && t->ndim > 1 ? t->shape[1] : 1;
            if (!t) rc = err_set(err, "%s: no %s tensor for the adapted layer '%s' (different targets?)", path, what,
                                 a->target);
            else if (t->ndim != v->ndim || got0 != want0 || got1 != want1)
                rc = err_set(err, "%s: tensor '%s' is %lld x %lld, the adapter on '%s' needs %lld x %lld", path, t->name,
                             (long long)got0, (long long)got1, a->target, (long long)want0, (long long)want1);
            else used[t - st.tensors] = 1;
        }
    }
    for (int t = 0; t < st.n && !rc; t++)
        if (!used[t] && (strstr(st.tensors[t].name, ".lora_A.") || strstr(st.tensors[t].name, ".lora_B.") ||
                         strstr(st.tensors[t].name, ".lora_magnitude_vector")))
            rc = err_set(err, "%s: tensor '%s' belongs to no adapter of this config (method.targets adapts fewer "
                              "layers)", path, st.tensors[t].name);
    for (int i = 0; i < n && !rc; i++)
        for (int k = 0; k < per && !rc; k++) {
            const Adapter *a = &set->a[i];
            const ParamView *v = &a->ps->views[a->t[k]];
            rc = st_read_f32(&st, found[per * i + k]->name, a->ps->data + v->offset, (int64_t)v->numel, err);
        }
    free(found);
    free(used);
    st_close(&st);
    return rc;
}
