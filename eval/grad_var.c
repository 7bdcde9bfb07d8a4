/* eval/grad_var.c: see grad_var.h (METHODS.md, "Research metrics": gradient variance). */
#include "eval/grad_var.h"

#include "core/linalg.h"

#include <math.h>
#include <string.h>

void grad_var_init(GradVar *gv, double *mean, double *m2, long n) {
    ASSERT(gv && mean && m2 && n >= 1);
    gv->mean = mean;
    gv->m2 = m2;
    gv->n = n;
    grad_var_reset(gv);
}

void grad_var_reset(GradVar *gv) {
    memset(gv->mean, 0, (size_t)gv->n * sizeof *gv->mean);
    memset(gv->m2, 0, (size_t)gv->n * sizeof *gv->m2);
    gv->k = 0;
}

void grad_var_add(GradVar *gv, const float *g) {
    gv->k++;
    double inv = 1.0 / (double)gv->k;
    double *mean = gv->mean, *m2 = gv->m2;
    for (long i = 0; i < gv->n; i++) { /* Welford: d = x - mean_old; mean += d / k; m2 += d (x - mean_new) */
        double x = g[i], d = x - mean[i];
        mean[i] += d * inv;
        m2[i] += d * (x - mean[i]);
    }
}

double grad_var_total(const GradVar *gv) {
    if (gv->k < 2) return NAN;
    double s = 0;
    for (long i = 0; i < gv->n; i++) s += gv->m2[i];
    return s / (double)(gv->k - 1);
}

double grad_var_mean_sq(const GradVar *gv) {
    if (gv->k < 1) return NAN;
    double s = 0;
    for (long i = 0; i < gv->n; i++) s += gv->mean[i] * gv->mean[i];
    return s;
}

double orth_error(const float *F, int r, int n) {
    ASSERT(F && r >= 1 && n >= 1);
    float *E = xmalloc((size_t)r * r * sizeof *E), *w = xmalloc((size_t)r * sizeof *w);
    for (int i = 0; i < r; i++)
        for (int j = 0; j < r; j++) { /* (F F^T - I)_{ij} in double */
            double acc = 0;
            for (int k = 0; k < n; k++) acc += (double)F[(size_t)i * n + k] * (double)F[(size_t)j * n + k];
            E[(size_t)i * r + j] = (float)(acc - (i == j));
        }
    Error err;
    double out = NAN;
    if (la_eigh(w, NULL, E, r, &err) == 0) out = fmax(fabs((double)w[0]), fabs((double)w[r - 1]));
    free(E), free(w);
    return out;
}
