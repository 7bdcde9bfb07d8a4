/* methods/lava.h: LAVA (METHODS.md "LAVA"): low-rank adapters with a column-orthogonal regularizer
 *   R(F) = lambda ||F^T F - I_R||_F^2,   dR/dF = 4 lambda F (F^T F - I_R),   F (d, R), rank as columns,
 * summed over the regularized factors and layers (adapters_regularize, core/adapter.h). The penalty is
 * computed from the R x R Gram matrix F^T F (in double), never F F^T.
 *
 * lava       matrix layers (and conv layers, as reshape-LoRA + regularizer): plain LoRA's tensors, forward,
 *            backward and default init (methods/lora.h: dW = s B A, A (r, n) kaiming-uniform, B = 0) plus the
 *            regularizer on F = A^T (n, r) (LAVA_REG_IN, the default: the factor the gradient-variance bound
 *            uses), B (m, r) (LAVA_REG_OUT) or both. Tensor indices: LORA_A, LORA_B.
 * lava_conv  conv layers only (CP factors): dW[o,i,h,w] = s sum_k U[o,k] V[i,k] X[h,k] Y[w,k], s = alpha / R,
 *            U (C_out, R), V (C_in, R), X (kh, R), Y (kw, R), named <target>.lava_U/V/X/Y (indices LAVA_U..Y).
 *            Default init (a project choice; the paper gives none): U, X, Y kaiming-uniform as PyTorch's
 *            kaiming_uniform_(a = sqrt 5) on a (d, R) tensor, i.e. U(+-1/sqrt R), V = 0, so dW = 0 at start;
 *            init variant LAVA_INIT_U_ZERO: U = 0, V, X, Y random. Regularizer on U by default; any subset of
 *            {U, V, X, Y} (mask bits 1 << LAVA_U, ...). The CP rank may exceed the kernel's sizes, but not the
 *            row count of a regularized factor (F^T F = I_R needs R <= d): attaching says so.
 *            Its forward runs through the conv slot (materialized dW); no tangent basis (a CP image is not a
 *            linear space of the QB / QA form).
 * Kind options (AdapterSpec.opt): reg_lambda, reg_mask (0: the default factor), init_variant. */
#ifndef METHODS_LAVA_H
#define METHODS_LAVA_H
#include "core/adapter.h"
#include "core/common.h"

enum { LAVA_U = 0, LAVA_V = 1, LAVA_X = 2, LAVA_Y = 3 };
enum { LAVA_REG_IN = 1u << 0, LAVA_REG_OUT = 1u << 1 };
enum { LAVA_INIT_V_ZERO = 0, LAVA_INIT_U_ZERO = 1 };

extern const AdapterKind ADAPTER_LAVA, ADAPTER_LAVA_CONV;

/* Config text -> reg_mask for the kind: lava "in" | "out" | "both"; lava_conv letters of U, V, X, Y joined
 * by ',' or '+' (or "all"); NULL or "" -> 0 (the kind's default). -1 with err (naming key) otherwise. */
int lava_parse_factors(const AdapterKind *kind, const char *text, const char *key, unsigned *mask, Error *err);
/* "v_zero" (default; NULL or "" too) | "u_zero" -> LAVA_INIT_*; -1 with err naming key otherwise. */
int lava_parse_init(const char *text, const char *key, int *variant, Error *err);

/* lambda ||F^T F - I_R||_F^2 for F (d, R) row-major (f_is_transposed = 0) or F = M^T with M (R, d) row-major
 * (f_is_transposed = 1: LoRA's A). dF != NULL: ACCUMULATES 4 lambda F (F^T F - I) in F's own layout
 * (for M: 4 lambda (M M^T - I) M). Sums in double; gram: R*R doubles of scratch. */
double lava_orth_penalty(const float *F, int d, int R, int f_is_transposed, float lambda, float *dF, double *gram);
#endif
