#!/usr/bin/env python3
"""Reference fixtures for the CNTLoRA initializer (tests/fixtures/init_cnt_ref.safetensors).

  python3 scripts/make_cnt_fixtures.py      # writes tests/fixtures/init_cnt_ref.safetensors

Re-implements, in float64 with torch, shared/METHODS.md "CNTLoRA (ConsNoTrainLoRA)" (the paper's eqs. 4, 12,
17, 18 and the SVD split), with X stored as the C code sees it: (N, n), one row per sample x token, so the
spec's X X^T (its X is n x N) is X^T X here:

  X  mode: W_tar = W0 pinv(G)                         G = X^T X, raw sum
  S  mode: G = P D P^T, W_tar = W0 pinv(P D^{1/2})    P by descending eigenvalue, each column's sign fixed so its
                                                      largest-magnitude entry is positive (the C code's choice)
  Sh mode: W_tar = c pinv(W0^T - G W0^T)              C = c I_m
  pinv drops singular values <= max(rows, cols) * eps_f32 * sigma_max (LAPACK's usual rcond at the float
  precision the C code works in; torch.linalg.pinv with that rtol).
  W_est = (W0 + sum_j W_tar(X_j)) / (Bn + 1) over the batches X_j (row blocks of X); dW = W_est - W0;
  SVD split, rank r, scale s, fraction p: S' = S_r / s, B = U_r S'^(1-p), A = S'^p V_r^T.

Cases (inputs rounded to f32 first, so the C test starts from the same numbers):
  full       W0 8 x 6, X 20 x 6 normal: X X^T invertible; Sh with c = 1; two batches of 10 rows.
  deficient  W0 6 x 8, X 5 x 8 of small integers (X X^T exact in f32, rank 5 of 8: the pseudo-inverse drops
             three zero singular values); Sh with c = 2.5; one batch.
Tensors: <case>.W0, <case>.X, <case>.{x,s,sh}.W_tar, <case>.dW (X mode over the batches), <case>.B, <case>.A
(split of dW with r, s, p of the metadata). Metadata: per case c, batches, r, s, p; and the kept ranks.
"""
import os, sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_fixtures import save_safetensors  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "init_cnt_ref.safetensors")
EPS32 = torch.finfo(torch.float32).eps
R, S, P = 3, 2.0, 0.5


def pinv(M):
    rtol = max(M.shape) * EPS32
    sv = torch.linalg.svdvals(M)
    return torch.linalg.pinv(M, rtol=rtol), int((sv > rtol * sv[0]).sum())


def fixed_eigvecs(G):
    d, P_ = torch.linalg.eigh(G)                 # ascending
    d, P_ = d.flip(0), P_.flip(1)                # descending, as the paper's "SVD of X X^T"
    for j in range(P_.shape[1]):
        mag = P_[:, j].abs()
        top = torch.topk(mag, 2).values
        assert top[0] - top[1] > 1e-3 * top[0], "near-tie in an eigenvector's largest entry: sign rule fragile"
        i = int(torch.argmax(mag))
        if P_[i, j] < 0:
            P_[:, j] = -P_[:, j]
    return d, P_


def w_tar(W0, X, mode, c):
    G = X.T @ X
    if mode == "x":
        Gp, k = pinv(G)
        return W0 @ Gp, k
    if mode == "s":
        d, P_ = fixed_eigvecs(G)
        Mp, k = pinv(P_ * torch.sqrt(d.clamp(min=0)))
        return W0 @ Mp, k
    Mp, k = pinv(W0.T - G @ W0.T)
    return c * Mp, k


def split_svd(dW, r, s, p):
    U, Sv, Vh = torch.linalg.svd(dW, full_matrices=False)
    Sp = Sv[:r] / s
    return U[:, :r] * Sp ** (1 - p), (Sp ** p)[:, None] * Vh[:r]


def main():
    g = torch.Generator().manual_seed(20250301)
    out, meta = {}, {"r": str(R), "s": str(S), "p": str(P), "eps": "float32", "torch": torch.__version__,
                     "source": "shared/METHODS.md, CNTLoRA (ConsNoTrainLoRA): X, S, Sh modes, W_est, SVD split"}
    cases = {
        "full": dict(m=8, n=6, c=1.0, batches=2,
                     X=torch.randn(20, 6, generator=g, dtype=torch.float64)),
        "deficient": dict(m=6, n=8, c=2.5, batches=1,
                          X=torch.randint(-2, 3, (5, 8), generator=g).double()),
    }
    for name, cs in cases.items():
        m, n = cs["m"], cs["n"]
        W0 = ((torch.rand(m, n, generator=g, dtype=torch.float64) * 2 - 1) / n ** 0.5).float().double()
        X = cs["X"].float().double()
        out[f"{name}.W0"], out[f"{name}.X"] = W0, X
        for mode in ("x", "s", "sh"):
            Wt, k = w_tar(W0, X, mode, cs["c"])
            out[f"{name}.{mode}.W_tar"] = Wt
            meta[f"{name}.{mode}.rank"] = str(k)
        # X mode over row-block batches, then the SVD split
        blocks = X.chunk(cs["batches"], 0)
        W_est = (W0 + sum(w_tar(W0, Xj, "x", cs["c"])[0] for Xj in blocks)) / (len(blocks) + 1)
        dW = W_est - W0
        B, A = split_svd(dW, R, S, P)
        U, Sv, Vh = torch.linalg.svd(dW, full_matrices=False)
        assert (S * B @ A - U[:, :R] @ torch.diag(Sv[:R]) @ Vh[:R]).abs().max() < 1e-12
        assert Sv[R - 1] - Sv[R] > 1e-3 * Sv[0], "rank-r part not well separated"
        out[f"{name}.dW"], out[f"{name}.B"], out[f"{name}.A"] = dW, B, A
        meta[f"{name}.c"], meta[f"{name}.batches"] = str(cs["c"]), str(cs["batches"])
    save_safetensors(OUT, out, meta)
    print(f"wrote {os.path.normpath(OUT)} ({os.path.getsize(OUT)} bytes, {len(out)} tensors); kept ranks "
          + ", ".join(f"{k} {v}" for k, v in meta.items() if k.endswith(".rank")))


if __name__ == "__main__":
    main()
