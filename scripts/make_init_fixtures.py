#!/usr/bin/env python3
"""Reference fixtures for the PiSSA and OLoRA initializers (tests/fixtures/init_ref.safetensors).

  python3 scripts/make_init_fixtures.py      # writes tests/fixtures/init_ref.safetensors

Re-implements, in float64, the two formulas of PEFT's src/peft/tuners/lora/layer.py (huggingface/peft,
LoraLayer.pissa_init with init_lora_weights="pissa", and LoraLayer.olora_init), on a tall (24 x 16) and a
wide (16 x 24) random weight stored (out, in) as nn.Linear does, with r = 4, alpha = 8 (s = alpha / r = 2):

  pissa: V, S, Uh = torch.linalg.svd(W, full_matrices=False); Sr = S[:r] / s
         A = diag(sqrt(Sr)) @ Uh[:r];  B = V[:, :r] @ diag(sqrt(Sr));  W <- W - s B A
  olora: Q, R = torch.linalg.qr(W);  B = Q[:, :r];  A = R[:r];  W <- W - s B A   (signs as torch gives them)

PEFT runs these in float32; float64 here makes the reference exact to the f32 the file stores. The input W is
rounded to f32 first, so the C test (tests/test_init.c, ref_init_pissa / ref_init_olora) starts from the very
same weight. Tensors: <shape>.W0 and <method>.<shape>.{A, B, W0_new} for shape in (tall, wide).
"""
import os, sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_fixtures import save_safetensors  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "init_ref.safetensors")
R, ALPHA = 4, 8.0


def pissa(W, r, s):
    V, S, Uh = torch.linalg.svd(W, full_matrices=False)
    Sr = S[:r] / s
    A = torch.diag(torch.sqrt(Sr)) @ Uh[:r]
    B = V[:, :r] @ torch.diag(torch.sqrt(Sr))
    return A, B, W - s * B @ A


def olora(W, r, s):
    Q, Rm = torch.linalg.qr(W)
    B, A = Q[:, :r], Rm[:r]
    return A, B, W - s * B @ A


def main():
    g = torch.Generator().manual_seed(20240601)
    s = ALPHA / R
    out = {}
    for shape, (m, n) in (("tall", (24, 16)), ("wide", (16, 24))):
        # U(+-1/sqrt(n)) like nn.Linear's default, rounded to f32 so both sides see the same weight
        W = ((torch.rand(m, n, generator=g, dtype=torch.float64) * 2 - 1) / n ** 0.5).float().double()
        out[f"{shape}.W0"] = W
        for name, f in (("pissa", pissa), ("olora", olora)):
            A, B, Wn = f(W.clone(), R, s)
            out[f"{name}.{shape}.A"], out[f"{name}.{shape}.B"], out[f"{name}.{shape}.W0_new"] = A, B, Wn
            err = (W - (Wn + s * B @ A)).abs().max().item()
            assert err < 1e-12, (name, shape, err)
    meta = {"r": str(R), "alpha": str(ALPHA), "torch": torch.__version__,
            "source": "huggingface/peft src/peft/tuners/lora/layer.py: pissa_init ('pissa'), olora_init"}
    save_safetensors(OUT, out, meta)
    print(f"wrote {os.path.normpath(OUT)} ({os.path.getsize(OUT)} bytes, {len(out)} tensors)")


if __name__ == "__main__":
    main()
