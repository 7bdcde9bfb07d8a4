#!/usr/bin/python3
"""Reference fixtures for the adapter kinds (tests/test_adapters.c), computed by PyTorch in float64.

  /usr/bin/python3 scripts/make_adapter_fixtures.py    # writes tests/fixtures/dora_ref.safetensors

DoRA: a host nn.Linear(6 -> 12) standing for a fused qkv, with DoRA on its v third (rows 8..11), r = 2,
alpha = 4 (s = 2). The forward is PEFT's DoraLinearLayer.forward (peft/tuners/lora/dora.py) written out:
    lora_weight = lora_B(lora_A(eye(in))).T                  # = B A
    weight_norm = ||W + s * lora_weight.detach()||_row        # get_weight_norm, dim = 1
    weight_norm = weight_norm.detach()                        # "see section 4.3 of DoRA"
    mag_norm_scale = magnitude / weight_norm
    result += (mag_norm_scale - 1) * (base_result - bias) + mag_norm_scale * lora_B(lora_A(x)) * s
Loss = sum(out * R). Saved (all F32; the inputs are rounded to float32 first, so both sides start from the
same numbers): lin.weight, lin.bias, lora_A, lora_B, lora_magnitude_vector, input.x, loss.R, out,
weight_norm, grad.x, grad.lora_A, grad.lora_B, grad.lora_magnitude_vector.
"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_fixtures import OUT, save_safetensors  # noqa: E402


def f32(t):
    return t.float().double()


def make_dora():
    g = torch.Generator().manual_seed(1234)
    N, IN, M, r, alpha, row0 = 5, 6, 4, 2, 4.0, 8
    OUTF = 3 * M
    s = alpha / r
    W = f32(torch.rand(OUTF, IN, generator=g, dtype=torch.float64) - 0.5)
    b = f32(torch.rand(OUTF, generator=g, dtype=torch.float64) - 0.5)
    A = f32(torch.rand(r, IN, generator=g, dtype=torch.float64) - 0.5).requires_grad_()
    B = f32(torch.rand(M, r, generator=g, dtype=torch.float64) - 0.5).requires_grad_()
    Wv, bv = W[row0:row0 + M], b[row0:row0 + M]
    mag0 = torch.linalg.norm(Wv + s * (B @ A).detach(), dim=1)
    mag = f32(mag0 * (0.8 + 0.4 * torch.rand(M, generator=g, dtype=torch.float64))).requires_grad_()
    x = f32(torch.rand(N, IN, generator=g, dtype=torch.float64) - 0.5).requires_grad_()
    R = f32(torch.rand(N, OUTF, generator=g, dtype=torch.float64) - 0.5)

    base = x @ W.T + b  # the host linear, all 12 rows
    eye = torch.eye(IN, dtype=torch.float64)
    lora_weight = ((eye @ A.T) @ B.T).T
    weight_norm = torch.linalg.norm(Wv + s * lora_weight.detach(), dim=1).detach()
    scale = (mag / weight_norm).view(1, -1)
    lora_result = (x @ A.T) @ B.T
    base_v = base[:, row0:row0 + M]
    dora = (scale - 1) * (base_v - bv) + scale * lora_result * s
    out = torch.cat([base[:, :row0], base_v + dora, base[:, row0 + M:]], dim=1)
    (out * R).sum().backward()
    t = {
        "lin.weight": W, "lin.bias": b, "lora_A": A, "lora_B": B, "lora_magnitude_vector": mag,
        "input.x": x, "loss.R": R, "out": out, "weight_norm": weight_norm,
        "grad.x": x.grad, "grad.lora_A": A.grad, "grad.lora_B": B.grad, "grad.lora_magnitude_vector": mag.grad,
    }
    meta = {"N": str(N), "in": str(IN), "m": str(M), "r": str(r), "alpha": str(alpha), "row0": str(row0),
            "source": "PEFT DoraLinearLayer.forward, norm detached; scripts/make_adapter_fixtures.py"}
    path = os.path.join(OUT, "dora_ref.safetensors")
    save_safetensors(path, t, meta)
    print("wrote", path, os.path.getsize(path), "bytes")


if __name__ == "__main__":
    torch.set_default_dtype(torch.float64)
    make_dora()
