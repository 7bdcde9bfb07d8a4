#!/usr/bin/env python3
"""Reference fixtures for the gradient-based initializers LoRA-GA and LoRA-SB
(tests/fixtures/init_grad_ref.safetensors; the C side is tests/test_init_grad.c, ref_init_lora_ga / ref_init_lora_sb).

  python3 scripts/make_grad_init_fixtures.py      # writes tests/fixtures/init_grad_ref.safetensors

The gradient G is given (a fixed matrix in the file), so both sides start from the same G and W0 and only the
formulas are compared; tests/test_init_grad.c feeds G through lora_ga_from_grad / lora_sb_first_step +
lora_sb_from_update (methods/init_grad.h). Float64 throughout, on inputs rounded to f32 first. Shapes: a tall
(24 x 16) and a wide (16 x 24) weight stored (out, in) as nn.Linear does; r = 4, alpha = 8 (s = alpha / r = 2).

LoRA-GA, the official code path (Outsider565/LoRA-GA, peft/src/peft/tuners/lora/layer.py, LoraLayer.lora_ga_init
with the LoraGAConfig defaults direction="ArB2r", scale="stable", stable_gamma=16):
    U, S, V = svd(G);  B = U[:, r:2r];  A = V^T[:r];  B, A *= m**0.25 / gamma**0.5 (m = out features)
    W0 <- W0 - s B A                                  (no minus sign on B, no S in the factors)
  The official code uses torch.svd_lowrank(G, q=min(4r, min(m, n)), niter=4); the fixture uses the exact SVD
  (the limit of the randomized one; the script prints how far svd_lowrank lands from it on these G: with
  q = min(4r, min(m, n)) = min(m, n) at these sizes it is exact up to rounding).

LoRA-SB (RaghavSinghal10/lora-sb, utils/gradient_utils.py estimate_and_process_grads_torch_*: dW = -lr * sign(g),
lr = eff_lr = lr / (warmup_ratio * total_steps) in train_*.py; utils/initialization_utils.py
find_and_initialize_grad: SVD of the update, B = left vectors, A = right vectors (both frozen), R = diag(S_r)):
    dW = -lr_1 sign(G) (AdamW's first step; sign(0) = 0)   or   dW = -lr_1 G (SGD, METHODS.md)
    U, S, V = svd(dW);  B = U[:, :r];  A = V^T[:r];  R = diag(S[:r]) / s
  The official code runs with alpha = r (s = 1), so R = diag(S_r); the project divides by s so that s B R A is the
  rank-r part of dW for any alpha (METHODS.md "s = 1 (no alpha)"). Official: svd_lowrank niter 10, cast to bf16;
  here exact, float64.

Tensors: <shape>.W0, <shape>.G; lora_ga.<shape>.{A, B, W0_new}; lora_sb.<shape>.{dW, A, B, R};
lora_sb_sgd.<shape>.dW; metadata r, alpha, gamma, lr, warmup_frac, total_steps, lr_1.
"""
import os, sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_fixtures import save_safetensors  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures",
                   "init_grad_ref.safetensors")
R, ALPHA, GAMMA = 4, 8.0, 16.0
LR, WARMUP_FRAC, TOTAL_STEPS = 1e-3, 0.1, 50


def f32(t):
    return t.float().double()


def lora_ga(W, G, r, s, gamma):
    U, S, Vh = torch.linalg.svd(G, full_matrices=False)
    B, A = U[:, r:2 * r], Vh[:r]
    m = G.shape[0]
    c = m ** 0.25 / gamma ** 0.5
    B, A = B * c, A * c
    return A, B, W - s * B @ A


def lora_sb(dW, r, s):
    U, S, Vh = torch.linalg.svd(dW, full_matrices=False)
    return Vh[:r], U[:, :r], torch.diag(S[:r]) / s


def main():
    g = torch.Generator().manual_seed(20240707)
    s = ALPHA / R
    w = WARMUP_FRAC * TOTAL_STEPS
    lr1 = LR / w if w >= 1 else LR
    out = {}
    for shape, (m, n) in (("tall", (24, 16)), ("wide", (16, 24))):
        W = f32((torch.rand(m, n, generator=g, dtype=torch.float64) * 2 - 1) / n ** 0.5)
        # a gradient-like matrix: decaying spectrum (1e-2 * 0.7^i) in random orthonormal bases, plus one exact
        # zero so that sign(0) = 0 is exercised
        k = min(m, n)
        Q1, _ = torch.linalg.qr(torch.randn(m, k, generator=g, dtype=torch.float64))
        Q2, _ = torch.linalg.qr(torch.randn(n, k, generator=g, dtype=torch.float64))
        sv = 1e-2 * 0.7 ** torch.arange(k, dtype=torch.float64)
        G = Q1 @ torch.diag(sv) @ Q2.T
        G[0, 0] = 0.0
        G = f32(G)
        out[f"{shape}.W0"], out[f"{shape}.G"] = W, G

        A, B, Wn = lora_ga(W.clone(), G, R, s, GAMMA)
        out[f"lora_ga.{shape}.A"], out[f"lora_ga.{shape}.B"], out[f"lora_ga.{shape}.W0_new"] = A, B, Wn
        assert (W - (Wn + s * B @ A)).abs().max().item() < 1e-12

        dW = -lr1 * torch.sign(G)
        A, B, Rm = lora_sb(dW, R, s)
        out[f"lora_sb.{shape}.dW"], out[f"lora_sb.{shape}.A"] = dW, A
        out[f"lora_sb.{shape}.B"], out[f"lora_sb.{shape}.R"] = B, Rm
        out[f"lora_sb_sgd.{shape}.dW"] = -lr1 * G

        # how far the official randomized SVD lands from the exact one (information only)
        torch.manual_seed(0)
        U2, S2, V2 = torch.svd_lowrank(G, q=min(4 * R, k), niter=4)
        U, S, Vh = torch.linalg.svd(G, full_matrices=False)
        proj = lambda X, Y: (X @ X.T - Y @ Y.T).norm().item()  # noqa: E731
        print(f"{shape}: svd_lowrank(q={min(4 * R, k)}, niter=4) vs exact: |P_A - P_A'| = "
              f"{proj(Vh[:R].T, V2[:, :R]):.2e}, |P_B - P_B'| = {proj(U[:, R:2 * R], U2[:, R:2 * R]):.2e}")
    meta = {"r": str(R), "alpha": str(ALPHA), "gamma": str(GAMMA), "lr": repr(LR), "warmup_frac": repr(WARMUP_FRAC),
            "total_steps": str(TOTAL_STEPS), "lr_1": repr(lr1), "torch": torch.__version__,
            "source": "Outsider565/LoRA-GA peft/src/peft/tuners/lora/layer.py lora_ga_init (ArB2r, stable); "
                      "RaghavSinghal10/lora-sb utils/gradient_utils.py, utils/initialization_utils.py"}
    save_safetensors(OUT, out, meta)
    print(f"wrote {os.path.normpath(OUT)} ({os.path.getsize(OUT)} bytes, {len(out)} tensors)")


if __name__ == "__main__":
    main()
