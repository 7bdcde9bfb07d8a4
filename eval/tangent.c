/* eval/tangent.c: see tangent.h. */
#include "eval/tangent.h"

#include <stdlib.h>

#include "eval/info_loss.h"

int adapter_tangent_project(float *P, const float *G, const Adapter *a, Error *err) {
    ASSERT(P && G && P != G);
    if (!a->kind->tangent_basis)
        return err_set(err, "adapter '%s': kind %s has no tangent basis (its image is not of the QB / QA form)",
                       a->target, a->kind->name);
    TangentBasis tb;
    if (a->kind->tangent_basis(a, &tb, err)) return -1;
    if (!tb.product) {
        tangent_project(P, G, tb.QB, tb.kb, tb.QA, tb.ka, a->m, a->n);
    } else { /* QB QB^T G QA QA^T = (QB QB^T G) projected on the right: two one-sided projections */
        float *left = xmalloc((size_t)a->m * a->n * sizeof(float));
        tangent_project(left, G, tb.QB, tb.kb, NULL, 0, a->m, a->n);
        tangent_project(P, left, NULL, 0, tb.QA, tb.ka, a->m, a->n);
        free(left);
    }
    tangent_basis_free(&tb);
    return 0;
}
