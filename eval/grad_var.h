/* eval/grad_var.h: gradient variance of an adapter factor by Welford's algorithm, and the orthogonality
 * error of a factor (METHODS.md, "Research metrics": gradient variance, LAVA's Var(grad_B L) = E||G A^T -
 * E[G A^T]||_F^2). The expectation is over mini-batches: each sample is one mini-batch gradient of the
 * factor (n entries); the reported variance is the SUM over entries of their sample variance (k - 1 in the
 * denominator), so it is E||g - E g||^2 estimated from k samples.
 *
 * Memory is the caller's (GradVar points at 2 n doubles it owns): adding a sample allocates nothing, so the
 * training loop can feed it every step. Accumulation in double, in a fixed order (deterministic). */
#ifndef EVAL_GRAD_VAR_H
#define EVAL_GRAD_VAR_H

#include "core/common.h"

typedef struct GradVar {
    double *mean; /* (n) running mean of the samples */
    double *m2;   /* (n) running sum of squared deviations */
    long n;       /* entries per sample */
    long k;       /* samples added */
} GradVar;

/* mean, m2: caller-owned buffers of n doubles (zeroed here). */
void grad_var_init(GradVar *gv, double *mean, double *m2, long n);
void grad_var_reset(GradVar *gv);
/* One sample g (n floats): Welford's update of mean and m2 per entry. */
void grad_var_add(GradVar *gv, const float *g);
/* sum_i m2_i / (k - 1): the total sample variance (NaN when k < 2). */
double grad_var_total(const GradVar *gv);
/* ||mean||_F^2 (NaN when k = 0). */
double grad_var_mean_sq(const GradVar *gv);

/* E = ||F F^T - I_r||_2 for F (r, n) with r rows (LoRA's A: E_A = ||A A^T - I_r||_2), the spectral norm of
 * the r x r Gram error (its largest |eigenvalue|), by a symmetric eigendecomposition. Returns NaN on a
 * non-finite entry. */
double orth_error(const float *F, int r, int n);

#endif
