/* core/optim.c */
#include "optim.h"

#include <math.h>
#include <string.h>

#include "common.h"

void optim_init(Optimizer *o, const OptConfig *cfg, ParamSet *const *sets, int n_sets) {
    memset(o, 0, sizeof *o);
    ASSERT(n_sets > 0 && n_sets <= OPTIM_MAX_SETS);
    o->cfg = *cfg;
    if (o->cfg.beta1 == 0 && o->cfg.kind == OPT_ADAMW) o->cfg.beta1 = 0.9f;
    if (o->cfg.beta2 == 0) o->cfg.beta2 = 0.999f;
    if (o->cfg.eps == 0) o->cfg.eps = 1e-8f;
    o->n_sets = n_sets;
    for (int i = 0; i < n_sets; i++) {
        o->sets[i] = sets[i];
        size_t n = sets[i]->n_grad;
        o->m[i] = xcalloc(n ? n : 1, sizeof(float));
        if (cfg->kind == OPT_ADAMW) o->v[i] = xcalloc(n ? n : 1, sizeof(float));
    }
}

double optim_grad_norm(const Optimizer *o) {
    double s = 0;
    for (int i = 0; i < o->n_sets; i++) {
        const ParamSet *ps = o->sets[i];
        for (int k = 0; k < ps->n; k++) {
            const ParamView *v = &ps->views[k];
            if (v->goff < 0) continue;
            const float *g = ps->grad + v->goff;
            double part = 0;
            for (size_t j = 0; j < v->numel; j++) part += (double)g[j] * g[j];
            s += part;
        }
    }
    return sqrt(s);
}

double optim_step(Optimizer *o, float lr) {
    const OptConfig *c = &o->cfg;
    double norm = optim_grad_norm(o);
    float gscale = 1.0f;
    if (c->clip_norm > 0 && norm > c->clip_norm) gscale = (float)(c->clip_norm / (norm + 1e-6));
    o->t++;
    float bc1 = 1.0f - powf(c->beta1, (float)o->t), bc2 = 1.0f - powf(c->beta2, (float)o->t);
    for (int i = 0; i < o->n_sets; i++) {
        ParamSet *ps = o->sets[i];
        for (int k = 0; k < ps->n; k++) {
            ParamView *v = &ps->views[k];
            if (v->goff < 0) continue;
            float *p = ps->data + v->offset, *g = ps->grad + v->goff, *m = o->m[i] + v->goff;
            float wd = (c->decay_all || v->decay) ? c->weight_decay : 0.0f;
            long n = (long)v->numel;
            if (c->kind == OPT_ADAMW) {
                float *vv = o->v[i] + v->goff;
                float b1 = c->beta1, b2 = c->beta2, eps = c->eps;
#pragma omp parallel for schedule(static) if (n > 65536)
                for (long j = 0; j < n; j++) {
                    float gj = g[j] * gscale;
                    p[j] -= lr * wd * p[j];
                    m[j] = b1 * m[j] + (1 - b1) * gj;
                    vv[j] = b2 * vv[j] + (1 - b2) * gj * gj;
                    float mh = m[j] / bc1, vh = vv[j] / bc2;
                    p[j] -= lr * mh / (sqrtf(vh) + eps);
                }
            } else { /* torch.optim.SGD: g += wd p; buf = mu buf + g; p -= lr (nesterov ? g + mu buf : buf) */
                float mu = c->momentum;
                int first = o->t == 1;
#pragma omp parallel for schedule(static) if (n > 65536)
                for (long j = 0; j < n; j++) {
                    float gj = g[j] * gscale + wd * p[j];
                    if (mu != 0) {
                        m[j] = first ? gj : mu * m[j] + gj;
                        gj = c->nesterov ? gj + mu * m[j] : m[j];
                    }
                    p[j] -= lr * gj;
                }
            }
        }
    }
    return norm;
}

void optim_free(Optimizer *o) {
    for (int i = 0; i < o->n_sets; i++) {
        free(o->m[i]);
        free(o->v[i]);
    }
    memset(o, 0, sizeof *o);
}

float sched_factor(const Schedule *s, long step) {
    if (s->warmup_steps > 0 && step < s->warmup_steps) return (float)(step + 1) / (float)s->warmup_steps;
    if (s->kind == SCHED_CONSTANT || s->total_steps <= s->warmup_steps) return 1.0f;
    double prog = (double)(step - s->warmup_steps) / (double)(s->total_steps - s->warmup_steps);
    if (prog > 1) prog = 1;
    double f = s->kind == SCHED_LINEAR ? 1.0 - prog : 0.5 * (1.0 + cos(M_PI * prog));
    return (float)(s->min_lr_ratio + (1.0 - s->min_lr_ratio) * f);
}
