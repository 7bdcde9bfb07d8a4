/* eval/tangent.h: the projection of a full-weight gradient G (m, n) on an adapter's tangent space (METHODS.md,
 * "Research metrics": information loss), for any kind with a tangent_basis entry (core/adapter.h):
 *   LoRA, LAVA (sum form):  P(G) = QB QB^T G + G QA QA^T - QB QB^T G QA QA^T   (B = 0: G QA QA^T)
 *   LoRA-XS (product form): P(G) = QB QB^T G QA QA^T
 * The kind gives the bases (methods/ cannot call eval/); the projection is info_loss.h's tangent_project. */
#ifndef EVAL_TANGENT_H
#define EVAL_TANGENT_H
#include "core/adapter.h"
#include "core/common.h"

/* P (a->m, a->n) = P_T(G); P must not alias G. -1 with err when the kind has no tangent basis (DoRA,
 * LAVA-conv) or a factor is not finite. */
int adapter_tangent_project(float *P, const float *G, const Adapter *a, Error *err);
#endif
