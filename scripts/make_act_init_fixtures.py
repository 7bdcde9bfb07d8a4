#!/usr/bin/env python3
"""Reference fixtures for the EVA and CorDA initializers (tests/fixtures/init_act_ref.safetensors).

  python3 scripts/make_act_init_fixtures.py      # writes tests/fixtures/init_act_ref.safetensors

Re-implements, in float64 (torch), the code paths of PEFT (huggingface/peft) that methods/init_eva.c and
methods/init_corda.c follow, on fixed inputs stored in the file (rounded to f32 first, so the C test starts
from the very same numbers). tests/test_init_act.c (ref_init_eva, ref_init_corda) feeds them to the exposed
functions of methods/init_act.h and compares at <= 1e-4 relative.

EVA (src/peft/utils/incremental_pca.py IncrementalPCA.partial_fit with lowrank=False, i.e. the exact SVD;
src/peft/tuners/lora/eva.py SVDHook and _get_rank_distribution):
  3 layers of n = 12 features, k = round(rho r) = 4 components (r 2, rho 2); 4 batches of 30 rows each, with
  different means per batch (exercises the mean correction) and a different spectrum per layer.
  Tensors: eva.L<i>.X (120, 12): the 4 batches stacked; eva.L<i>.{comp (4, 12), sv (4), evr (4), cos (4)}
  after the last batch (cos: cosine of each component with the previous batch's); eva.ranks (3, int32): the
  rank distribution over the 3 layers with budget r x 3 = 6.
CorDA (METHODS.md, CorDA; src/peft/tuners/lora/corda.py and LoraLayer.corda_init), r 4, alpha 8 (s = 2):
  per shape (tall: W0 24 x 16, wide: W0 16 x 24), 6 samples of T = 5 tokens, X (30, n):
  C = mean_s (X_s / max|X_s|)^T (X_s / max|X_s|)   (METHODS.md: max|X|; PEFT divides by |max X|)
  d = 0.01; C' = C + d mean(diag C) I; while ||C' C'^-1 - I||_F >= 0.05: d *= 2
  U, S, Vh = svd(W0 C'); V = (Vh C'^-1)^T; ipm: [:r], kpm: [-r:]; S /= s
  A = V_r^T * sqrt(S_r) (rows), B = U_r * sqrt(S_r) (columns); W0_new = W0 - s B A
  Tensors: corda.<shape>.{X, W0, C}, corda.<mode>.<shape>.{A, B, W0_new}; metadata corda.<shape>.damp.
"""
import os, sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_fixtures import save_safetensors  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "init_act_ref.safetensors")
f64 = torch.float64


def f32(t):
    return t.float().double()


# ---- EVA: PEFT's IncrementalPCA (exact SVD) ----
class IPCA:
    def __init__(self, k):
        self.k, self.fits = k, 0

    def partial_fit(self, X):
        N, n = X.shape
        first = self.fits == 0
        if first:
            self.mean_, self.var_, self.seen = None, None, 0
        # _incremental_mean_and_var
        tot = self.seen + N
        last_sum = torch.zeros(n, dtype=f64) if self.mean_ is None else self.mean_ * self.seen
        new_sum = X.sum(0)
        col_mean = (last_sum + new_sum) / tot
        T = new_sum / N
        tmp = X - T
        new_unnorm = (tmp ** 2).sum(0) - tmp.sum(0) ** 2 / N
        if self.var_ is None:
            col_var = new_unnorm / tot
        else:
            last_over_new = self.seen / N
            col_var = (self.var_ * self.seen + new_unnorm
                       + last_over_new / tot * (last_sum / last_over_new - new_sum) ** 2) / tot
        if first:
            Xc = X - col_mean
        else:
            bm = X.mean(0)
            corr = ((self.seen / tot) * N) ** 0.5 * (self.mean_ - bm)
            Xc = torch.vstack((self.sv.view(-1, 1) * self.comp, X - bm, corr.view(1, -1)))
        U, S, Vt = torch.linalg.svd(Xc, full_matrices=False)
        # _svd_flip(u_based_decision=False): the largest-|.| entry of each row of Vt positive
        big = Vt.abs().argmax(1)
        signs = torch.sign(Vt[torch.arange(Vt.shape[0]), big])
        Vt = Vt * signs.view(-1, 1)
        prev = None if first else self.comp.clone()
        self.seen, self.mean_, self.var_ = tot, col_mean, col_var
        self.comp, self.sv = Vt[: self.k], S[: self.k]
        self.evr = (S ** 2 / (col_var * tot).sum())[: self.k]
        self.cos = torch.zeros(self.k, dtype=f64) if prev is None else \
            torch.nn.functional.cosine_similarity(self.comp, prev)
        self.fits += 1


def rank_distribution(evrs, budget):
    """PEFT _get_rank_distribution: the layers' ratios pooled, the top `budget` counted per layer."""
    keys, values = zip(*[(i, v) for i, e in enumerate(evrs) for v in e])
    idx = torch.stack(values).argsort(descending=True)
    ranks = [0] * len(evrs)
    for t in idx[:budget]:
        ranks[keys[t]] += 1
    pooled = torch.stack(values).sort(descending=True).values
    return ranks, (pooled[budget - 1] - pooled[budget]).item() / pooled[budget - 1].item()


def eva(g, out):
    n, r, rho, L, nb, rows = 12, 2, 2.0, 3, 4, 30
    k = round(r * rho)
    evrs = []
    for i in range(L):
        Q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=f64))
        # layer 0: three strong directions, layer 1: a geometric spectrum, layer 2: flat-ish, so the budget of
        # 6 is shared unequally
        scales = torch.tensor([[4.0, 3.2, 2.5] + [0.4] * (n - 3),
                               [3.0 * 0.75 ** j for j in range(n)],
                               [2.0, 1.7, 1.45, 1.25] + [1.0] * (n - 4)][i], dtype=f64)
        batches = []
        for b in range(nb):
            Z = torch.randn(rows, n, generator=g, dtype=f64)
            mean = 0.5 * torch.randn(n, generator=g, dtype=f64) + 0.2 * b
            batches.append(f32(Z * scales @ Q.T + mean))
        p = IPCA(k)
        for X in batches:
            p.partial_fit(X)
        out[f"eva.L{i}.X"] = torch.cat(batches)
        out[f"eva.L{i}.comp"], out[f"eva.L{i}.sv"] = p.comp, p.sv
        out[f"eva.L{i}.evr"], out[f"eva.L{i}.cos"] = p.evr, p.cos
        evrs.append(p.evr)
        # well-separated singular values, so f32 and f64 pick the same components
        gaps = (p.sv[:-1] - p.sv[1:]) / p.sv[0]
        assert gaps.min() > 1e-2, (i, gaps)
    ranks, gap = rank_distribution(evrs, r * L)
    assert gap > 1e-3, gap  # no near-tie at the budget's edge
    out["eva.ranks"] = torch.tensor(ranks, dtype=torch.int32)
    return {"eva.n": str(n), "eva.k": str(k), "eva.r": str(r), "eva.rho": str(rho), "eva.layers": str(L),
            "eva.batches": str(nb), "eva.rows": str(rows), "eva.ranks": ",".join(map(str, ranks))}


# ---- CorDA ----
def corda_cov(X, T):
    n = X.shape[1]
    C = torch.zeros(n, n, dtype=f64)
    S = X.shape[0] // T
    flips = 0
    for s in range(S):
        x = X[s * T:(s + 1) * T]
        flips += int(x.abs().max() > x.max().abs())  # where METHODS.md's max|X| and PEFT's |max X| differ
        y = x / x.abs().max()
        C += y.T @ y
    return C / S, flips


def corda_damp(C):
    n = C.shape[0]
    d = 0.01
    while True:
        Cf = C + torch.eye(n, dtype=f64) * torch.mean(torch.diag(C)) * d
        Ci = torch.linalg.inv(Cf)
        if torch.dist(Cf @ Ci, torch.eye(n, dtype=f64)).item() < 0.05:
            return Cf, Ci, d
        d *= 2


def corda(W, Cf, Ci, r, s, mode):
    U, S, Vh = torch.linalg.svd(W @ Cf, full_matrices=False)
    V = (Vh @ Ci).T
    sl = slice(0, r) if mode == "ipm" else slice(-r, None)
    U, S, V = U[:, sl], S[sl] / s, V[:, sl]
    A = V.T * S.sqrt().view(-1, 1)
    B = U * S.sqrt()
    return A, B, W - s * B @ A


def corda_all(g, out):
    r, alpha, T, S = 4, 8.0, 5, 6
    s = alpha / r
    meta, flips = {}, 0
    for shape, (m, n) in (("tall", (24, 16)), ("wide", (16, 24))):
        W = f32((torch.rand(m, n, generator=g, dtype=f64) * 2 - 1) / n ** 0.5)
        feat = torch.linspace(0.5, 2.0, n, dtype=f64)
        X = f32(torch.randn(S * T, n, generator=g, dtype=f64) * feat + 0.3)
        C, fl = corda_cov(X, T)
        flips += fl
        Cf, Ci, d = corda_damp(C)
        out[f"corda.{shape}.W0"], out[f"corda.{shape}.X"], out[f"corda.{shape}.C"] = W, X, C
        meta[f"corda.{shape}.damp"] = repr(d)
        for mode in ("ipm", "kpm"):
            A, B, Wn = corda(W.clone(), Cf, Ci, r, s, mode)
            assert (W - (Wn + s * B @ A)).abs().max().item() < 1e-12
            out[f"corda.{mode}.{shape}.A"], out[f"corda.{mode}.{shape}.B"] = A, B
            out[f"corda.{mode}.{shape}.W0_new"] = Wn
        Sv = torch.linalg.svdvals(W @ Cf)
        gaps = (Sv[:-1] - Sv[1:]) / Sv[0]
        assert gaps.min() > 1e-3, (shape, gaps)
    assert flips > 0, "no sample where max|X| != |max X|: the fixture would not pin METHODS.md's choice"
    meta.update({"corda.r": str(r), "corda.alpha": str(alpha), "corda.T": str(T), "corda.samples": str(S),
                 "corda.maxabs_ne_absmax_samples": str(flips)})
    return meta


def main():
    g = torch.Generator().manual_seed(20240917)
    out = {}
    meta = {"torch": torch.__version__,
            "source": "huggingface/peft src/peft/utils/incremental_pca.py (lowrank=False), "
                      "src/peft/tuners/lora/eva.py, src/peft/tuners/lora/corda.py, layer.py corda_init; "
                      "shared/METHODS.md EVA, CorDA"}
    meta.update(eva(g, out))
    meta.update(corda_all(g, out))
    save_safetensors(OUT, out, meta)
    print(f"wrote {os.path.normpath(OUT)} ({os.path.getsize(OUT)} bytes, {len(out)} tensors)")


if __name__ == "__main__":
    main()
