/* methods/lava.c: the LAVA kinds (see lava.h; METHODS.md "LAVA").
 * lava_conv delta and its gradient, with P (C_in kh kw, R), P[(i,h,w),k] = V[i,k] X[h,k] Y[w,k] (kept in
 * a->work) and g = dL/d(dW) (C_out, C_in kh kw):
 *   dW = s U P^T;  dU += s g P;  Q = s g^T U (C_in kh kw, R);
 *   dV[i,k] += sum_{h,w} Q[(i,h,w),k] X[h,k] Y[w,k], dX[h,k] += sum_{i,w} Q V Y, dY[w,k] += sum_{i,h} Q V X. */
#include "lava.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/rng.h"
#include "lora.h"

/* ---- the regularizer ---------------------------------------------------------------------------------- */

double lava_orth_penalty(const float *F, int d, int R, int f_is_transposed, float lambda, float *dF, double *gram) {
    ASSERT(F && gram && d >= 1 && R >= 1);
    for (int k = 0; k < R * R; k++) gram[k] = 0;
    if (!f_is_transposed) { /* F (d,R): gram = F^T F */
        for (int i = 0; i < d; i++) {
            const float *row = F + (size_t)i * R;
            for (int k = 0; k < R; k++)
                for (int l = k; l < R; l++) gram[k * R + l] += (double)row[k] * row[l];
        }
    } else { /* F = M^T, M (R,d): gram = M M^T */
        for (int k = 0; k < R; k++)
            for (int l = k; l < R; l++) {
                const float *mk = F + (size_t)k * d, *ml = F + (size_t)l * d;
                double s = 0;
                for (int i = 0; i < d; i++) s += (double)mk[i] * ml[i];
                gram[k * R + l] = s;
            }
    }
    double pen = 0;
    for (int k = 0; k < R; k++) { /* E = gram - I, symmetric */
        gram[k * R + k] -= 1.0;
        for (int l = k + 1; l < R; l++) gram[l * R + k] = gram[k * R + l];
        for (int l = 0; l < R; l++) pen += gram[k * R + l] * gram[k * R + l];
    }
    if (dF) {
        double c = 4.0 * lambda;
        if (!f_is_transposed) { /* dF (d,R) += 4 lambda F E */
            for (int i = 0; i < d; i++) {
                const float *row = F + (size_t)i * R;
                float *o = dF + (size_t)i * R;
                for (int l = 0; l < R; l++) {
                    double s = 0;
                    for (int k = 0; k < R; k++) s += (double)row[k] * gram[k * R + l];
                    o[l] += (float)(c * s);
                }
            }
        } else { /* dM (R,d) += 4 lambda E M */
            for (int k = 0; k < R; k++) {
                float *o = dF + (size_t)k * d;
                for (int i = 0; i < d; i++) {
                    double s = 0;
                    for (int l = 0; l < R; l++) s += gram[k * R + l] * F[(size_t)l * d + i];
                    o[i] += (float)(c * s);
                }
            }
        }
    }
    return lambda * pen;
}

/* ---- lava: LoRA + the regularizer ---------------------------------------------------------------------- */

static unsigned lava_mask(const Adapter *a) { return a->opt.reg_mask ? a->opt.reg_mask : LAVA_REG_IN; }

static double lava_regularizer(Adapter *a, int grad, Arena *ar) {
    unsigned mask = lava_mask(a);
    double *gram = arena_alloc(ar, (size_t)a->r * a->r * sizeof(double)), total = 0;
    if (mask & LAVA_REG_IN) /* F = A^T (n, r) */
        total += lava_orth_penalty(params_data(a->ps, a->t[LORA_A]), a->n, a->r, 1, a->opt.reg_lambda,
                                   grad ? params_grad(a->ps, a->t[LORA_A]) : NULL, gram);
    if (mask & LAVA_REG_OUT) /* F = B (m, r) */
        total += lava_orth_penalty(params_data(a->ps, a->t[LORA_B]), a->m, a->r, 0, a->opt.reg_lambda,
                                   grad ? params_grad(a->ps, a->t[LORA_B]) : NULL, gram);
    return total;
}

static int lava_check(const Adapter *a, Error *err) {
    if (lava_mask(a) & ~(unsigned)(LAVA_REG_IN | LAVA_REG_OUT))
        return err_set(err, "adapter '%s' (lava): regularizer factors 0x%x: expected in, out or both", a->target,
                       lava_mask(a));
    if (a->r > a->m || a->r > a->n)
        return err_set(err, "adapter '%s' (lava): rank %d exceeds min(%d, %d), the layer's sizes, so neither factor "
                            "can have orthonormal columns; lower method.rank to at most %d", a->target, a->r, a->m,
                       a->n, MIN(a->m, a->n));
    return 0;
}

const AdapterKind ADAPTER_LAVA = {
    .name = "lava",
    .create = lora_create,
    .init_default = lora_init_default,
    .forward = lora_forward,
    .backward = lora_backward,
    .delta_weight = lora_delta_weight,
    .backward_delta = lora_backward_delta,
    .regularizer = lava_regularizer,
    .tangent_basis = lora_tangent_basis,
    .check = lava_check,
};

/* ---- lava_conv: CP factors ------------------------------------------------------------------------------ */

static const char *const CP_NAMES[4] = {"lava_U", "lava_V", "lava_X", "lava_Y"};

/* Rows of factor f: U C_out, V C_in, X kh, Y kw. */
static int cp_rows(const Adapter *a, int f) {
    switch (f) {
    case LAVA_U: return a->m;
    case LAVA_V: return a->n / (a->kh * a->kw);
    case LAVA_X: return a->kh;
    default: return a->kw;
    }
}

static void cp_create(Adapter *a, ParamSet *ps) {
    ASSERT(a->kh > 0 && a->kw > 0 && a->n % (a->kh * a->kw) == 0);
    char name[PARAM_NAME_MAX + 16];
    for (int f = 0; f < 4; f++) {
        int64_t sh[2] = {cp_rows(a, f), a->r};
        snprintf(name, sizeof name, "%s.%s", a->target, CP_NAMES[f]);
        a->t[f] = params_add(ps, name, 2, sh, 1);
    }
    a->nt = 4;
    a->work = xmalloc((size_t)a->n * a->r * sizeof(float)); /* P (n, R) */
}

static void cp_init_default(Adapter *a, uint64_t seed) {
    int zero = a->opt.init_variant == LAVA_INIT_U_ZERO ? LAVA_U : LAVA_V;
    float bound = 1.0f / sqrtf((float)a->r); /* kaiming_uniform_(a = sqrt 5) on a (d, R) tensor: fan_in = R */
    for (int f = 0; f < 4; f++) {
        float *x = params_data(a->ps, a->t[f]);
        size_t n = (size_t)cp_rows(a, f) * a->r;
        if (f == zero) memset(x, 0, n * sizeof(float));
        else rng_fill_uniform(x, n, -bound, bound, seed, rng_stream(a->target, (uint64_t)f, 0));
    }
}

/* P (n, R) from V, X, Y, rows ordered (i, h, w) as the kernel's columns. */
static void cp_inner(const Adapter *a, float *P) {
    const int R = a->r, cin = cp_rows(a, LAVA_V);
    const float *V = params_data(a->ps, a->t[LAVA_V]), *X = params_data(a->ps, a->t[LAVA_X]);
    const float *Y = params_data(a->ps, a->t[LAVA_Y]);
    for (int i = 0; i < cin; i++)
        for (int h = 0; h < a->kh; h++)
            for (int w = 0; w < a->kw; w++) {
                float *p = P + ((size_t)(i * a->kh + h) * a->kw + w) * R;
                for (int k = 0; k < R; k++) p[k] = V[i * R + k] * X[h * R + k] * Y[w * R + k];
            }
}

static void cp_delta_weight(const Adapter *a, float *dW) {
    const float *U = params_data(a->ps, a->t[LAVA_U]);
    cp_inner(a, a->work);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, a->m, a->n, a->r, a->scale, U, a->r, a->work, a->r, 0.0f, dW,
                a->n);
}

static void cp_backward_delta(Adapter *a, const float *g, Arena *ar) {
    const int R = a->r, n = a->n, cin = cp_rows(a, LAVA_V);
    const float *U = params_data(a->ps, a->t[LAVA_U]), *V = params_data(a->ps, a->t[LAVA_V]);
    const float *X = params_data(a->ps, a->t[LAVA_X]), *Y = params_data(a->ps, a->t[LAVA_Y]);
    float *dU = params_grad(a->ps, a->t[LAVA_U]), *dV = params_grad(a->ps, a->t[LAVA_V]);
    float *dX = params_grad(a->ps, a->t[LAVA_X]), *dY = params_grad(a->ps, a->t[LAVA_Y]);
    if (dU) { /* (m,R) += s g P */
        cp_inner(a, a->work);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, a->m, R, n, a->scale, g, n, a->work, R, 1.0f, dU, R);
    }
    if (!dV && !dX && !dY) return;
    float *Q = arena_floats(ar, (size_t)n * R); // (n,R) = s g^T U
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, n, R, a->m, a->scale, g, n, U, R, 0.0f, Q, R);
    for (int i = 0; i < cin; i++)
        for (int h = 0; h < a->kh; h++)
            for (int w = 0; w < a->kw; w++) {
                const float *q = Q + ((size_t)(i * a->kh + h) * a->kw + w) * R;
                const float *v = V + i * R, *x = X + h * R, *y = Y + w * R;
                for (int k = 0; k < R; k++) {
                    if (dV) dV[i * R + k] += q[k] * x[k] * y[k];
                    if (dX) dX[h * R + k] += q[k] * v[k] * y[k];
                    if (dY) dY[w * R + k] += q[k] * v[k] * x[k];
                }
            }
}

static unsigned cp_mask(const Adapter *a) { return a->opt.reg_mask ? a->opt.reg_mask : 1u << LAVA_U; }

static double cp_regularizer(Adapter *a, int grad, Arena *ar) {
    double *gram = arena_alloc(ar, (size_t)a->r * a->r * sizeof(double)), total = 0;
    for (int f = 0; f < 4; f++)
        if (cp_mask(a) & (1u << f))
            total += lava_orth_penalty(params_data(a->ps, a->t[f]), cp_rows(a, f), a->r, 0, a->opt.reg_lambda,
                                       grad ? params_grad(a->ps, a->t[f]) : NULL, gram);
    return total;
}

static int cp_check(const Adapter *a, Error *err) {
    unsigned mask = cp_mask(a);
    if (mask & ~0xFu)
        return err_set(err, "adapter '%s' (lava_conv): regularizer factors 0x%x: expected a subset of U, V, X, Y",
                       a->target, mask);
    if (a->opt.reg_lambda == 0) return 0; /* no penalty: the CP rank is free */
    for (int f = 0; f < 4; f++)
        if ((mask & (1u << f)) && a->r > cp_rows(a, f))
            return err_set(err, "adapter '%s' (lava_conv): rank %d exceeds the %d rows of the regularized factor %c "
                                "(%d x %d), so %c^T %c = I cannot hold; lower method.rank to at most %d or regularize "
                                "other factors (method.lava.factors)", a->target, a->r, cp_rows(a, f), "UVXY"[f],
                           cp_rows(a, f), a->r, "UVXY"[f], "UVXY"[f], cp_rows(a, f));
    return 0;
}

const AdapterKind ADAPTER_LAVA_CONV = {
    .name = "lava_conv",
    .create = cp_create,
    .init_default = cp_init_default,
    /* forward / backward NULL: conv layers only, through the materialized kernel */
    .delta_weight = cp_delta_weight,
    .backward_delta = cp_backward_delta,
    .regularizer = cp_regularizer,
    .check = cp_check,
};

/* ---- options from config text --------------------------------------------------------------------------- */

int lava_parse_factors(const AdapterKind *kind, const char *text, const char *key, unsigned *mask, Error *err) {
    *mask = 0;
    if (!text || !*text) return 0;
    if (kind == &ADAPTER_LAVA) {
        if (!strcmp(text, "in")) *mask = LAVA_REG_IN;
        else if (!strcmp(text, "out")) *mask = LAVA_REG_OUT;
        else if (!strcmp(text, "both")) *mask = LAVA_REG_IN | LAVA_REG_OUT;
        else return err_set(err, "%s: '%s' for adapter lava: expected in (A^T, the default), out (B) or both", key, text);
        return 0;
    }
    if (kind == &ADAPTER_LAVA_CONV) {
        if (!strcmp(text, "all")) {
            *mask = 0xF;
            return 0;
        }
        for (const char *p = text; *p; p++) {
            const char *f = strchr("UVXY", *p);
            if (f && *p) *mask |= 1u << (f - "UVXY");
            else if (*p != ',' && *p != '+' && *p != ' ')
                return err_set(err, "%s: '%s' for adapter lava_conv: expected factors among U, V, X, Y joined by ',' "
                                    "or '+' (e.g. U or U+V), or all", key, text);
        }
        if (!*mask) return err_set(err, "%s: '%s' names no factor (U, V, X, Y)", key, text);
        return 0;
    }
    return err_set(err, "%s is set but method.adapter '%s' has no regularizer (lava or lava_conv)", key, kind->name);
}

int lava_parse_init(const char *text, const char *key, int *variant, Error *err) {
    *variant = LAVA_INIT_V_ZERO;
    if (!text || !*text || !strcmp(text, "v_zero")) return 0;
    if (!strcmp(text, "u_zero")) {
        *variant = LAVA_INIT_U_ZERO;
        return 0;
    }
    return err_set(err, "%s: '%s': expected v_zero (U, X, Y random, V = 0) or u_zero (U = 0, V random)", key, text);
}
