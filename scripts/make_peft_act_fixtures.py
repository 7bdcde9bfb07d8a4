#!/usr/bin/env python3
"""EVA, CorDA and DoRA as PEFT itself computes them (tests/fixtures/peft_act_ref.safetensors), plus PEFT's
orthogonal and gaussian draws (tests/fixtures/peft_random_ref.safetensors) for the distribution checks.

Needs torch and peft (the GPU machine has PEFT 0.21; nothing is downloaded). Runs PEFT's own code on the
inputs of the committed float64 re-implementation fixtures (scripts/make_act_init_fixtures.py,
scripts/make_adapter_fixtures.py), so tests/test_init_act.c and tests/test_adapters.c check the C code
against both: the re-implementation (exact arithmetic paths, 1e-4) and PEFT's actual output.

EVA: PEFT's SVDHook configures IncrementalPCA(lowrank=True, lowrank_seed=42) (a randomized SVD, 4 subspace
  iterations); the fixture keeps that PCA's components/values after the batches PEFT fed it, and the rank
  distribution get_eva_state_dict returned (3 parallel Linear(12 -> 8) layers, r 2, rho 2, tau 0.99; the
  dataloader is the 4 stored batches, cycled by PEFT until its convergence test passes; eva.batches says how
  many it consumed and eva.L<i>.X holds them in order). The script asserts that get_eva_state_dict's
  components are the first rank rows of that PCA.
CorDA: preprocess_corda + get_peft_model(init_lora_weights="corda") on parallel Linear(16 -> 24) (tall) and
  Linear(24 -> 16) (wide), one forward per sample of T = 5 tokens. PEFT scales each sample by |max X| where
  METHODS.md says max|X|: every stored sample is sign-flipped so that its largest-|.| entry is positive (X^T X
  is unchanged, so both conventions give the same C).
DoRA: the v rows (8..11) of dora_ref's host as their own nn.Linear(6 -> 4) with PEFT's use_dora, A, B and the
  magnitude from the fixture: out_v and the gradients of sum(out_v * R_v).
usage: make_peft_act_fixtures.py [FIXTURE_DIR (default tests/fixtures)]
"""
import os, sys

import torch
from torch import nn
import peft
from peft import LoraConfig, get_peft_model
from peft.tuners.lora.config import CordaConfig, EvaConfig
from peft.tuners.lora.corda import preprocess_corda
from peft.tuners.lora.eva import get_eva_state_dict
from peft.utils.incremental_pca import IncrementalPCA
from safetensors.torch import load_file, save_file

fx = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures")
act = load_file(os.path.join(fx, "init_act_ref.safetensors"))
from safetensors import safe_open
with safe_open(os.path.join(fx, "init_act_ref.safetensors"), "pt") as f:
    meta_in = f.metadata()
out, meta = {}, {"peft": peft.__version__, "torch": torch.__version__}

# ---- EVA ----
n, k, r, L = int(meta_in["eva.n"]), int(meta_in["eva.k"]), int(meta_in["eva.r"]), int(meta_in["eva.layers"])
nb, rows = int(meta_in["eva.batches"]), int(meta_in["eva.rows"])
X = [act[f"eva.L{i}.X"].reshape(nb, rows, n) for i in range(L)]


class Par(nn.Module):
    def __init__(s):
        super().__init__()
        for i in range(L):
            setattr(s, f"l{i}", nn.Linear(n, 8, bias=False))

    def forward(s, x):
        return torch.cat([getattr(s, f"l{i}")(x[:, i * n:(i + 1) * n]) for i in range(L)], dim=1)


torch.manual_seed(0)
model = Par()
loader = [torch.cat([X[i][b] for i in range(L)], dim=1) for b in range(nb)]
# Every partial_fit PEFT's hooks make, by PCA instance (first use in forward order = layer order).
fits, _orig_fit = {}, IncrementalPCA.partial_fit


def logged_fit(self, x, *a, **kw):
    fits.setdefault(id(self), []).append(x.detach().clone())
    return _orig_fit(self, x, *a, **kw)


IncrementalPCA.partial_fit = logged_fit


def layer_rows(layer_input, model_input, layer_name):  # the layer's input rows, as the default hook takes them
    x = layer_input[0] if isinstance(layer_input, (tuple, list)) else layer_input
    return x.reshape(-1, x.size(-1)).contiguous()


cfg = LoraConfig(r=r, lora_alpha=2 * r, target_modules=[f"l{i}" for i in range(L)], init_lora_weights="eva",
                 eva_config=EvaConfig(rho=k / r, tau=0.99))
sd = get_eva_state_dict(model, loader, peft_config=cfg, forward_fn=lambda m, x: m(x), prepare_model_inputs_fn=None,
                        prepare_layer_inputs_fn=layer_rows, show_progress_bar=False)
IncrementalPCA.partial_fit = _orig_fit
per_layer = list(fits.values())
assert len(per_layer) == L, f"expected {L} PCA instances, saw {len(per_layer)}"
ranks, used = [], []
for i in range(L):
    xs = per_layer[i]
    p = IncrementalPCA(n_components=k, copy=True, lowrank=True, lowrank_seed=42)
    prev = None
    for t, xb in enumerate(xs):
        if t > 0:
            prev = p.components_.clone()
        p.partial_fit(xb.float())
    cos = torch.nn.functional.cosine_similarity(p.components_, prev) if prev is not None else torch.zeros(k)
    u = sd[f"l{i}"]
    ranks.append(u.shape[0])
    used.append(len(xs))
    err = (u - p.components_[: u.shape[0]]).abs().max().item() if u.shape[0] else 0.0
    assert err < 1e-6, f"EVA layer {i}: get_eva_state_dict components differ from the PCA replay by {err}"
    out[f"eva.L{i}.X"] = torch.cat(xs).float().contiguous()
    out[f"eva.L{i}.comp"] = p.components_.float().contiguous()
    out[f"eva.L{i}.sv"] = p.singular_values_.float().contiguous()
    out[f"eva.L{i}.evr"] = p.explained_variance_ratio_.float().contiguous()
    out[f"eva.L{i}.cos"] = cos.float().contiguous()
    meta[f"eva.L{i}.fits"] = str(len(xs))
out["eva.ranks"] = torch.tensor(ranks, dtype=torch.float32)
meta.update({"eva.n": str(n), "eva.k": str(k), "eva.r": str(r), "eva.layers": str(L), "eva.batches": str(max(used)),
             "eva.rows": str(rows), "eva.lowrank": "1", "eva.ranks": ",".join(map(str, ranks))})
print("EVA: fits per layer", used, "ranks", ranks)

# ---- CorDA ----
cr, calpha, T, S = int(meta_in["corda.r"]), float(meta_in["corda.alpha"]), int(meta_in["corda.T"]), int(meta_in["corda.samples"])
Xc, W0 = {}, {}
for shape in ("tall", "wide"):
    x = act[f"corda.{shape}.X"].reshape(S, T, -1).clone()
    for s_ in range(S):
        flat = x[s_].reshape(-1)
        if flat[flat.abs().argmax()] < 0:
            x[s_] = -x[s_]
    Xc[shape], W0[shape] = x, act[f"corda.{shape}.W0"]


class Two(nn.Module):
    def __init__(s):
        super().__init__()
        s.tall = nn.Linear(16, 24, bias=False)
        s.wide = nn.Linear(24, 16, bias=False)

    def forward(s, x):
        return s.tall(x[..., :16]), s.wide(x[..., 16:])


for mode in ("ipm", "kpm"):
    m = Two()
    with torch.no_grad():
        m.tall.weight.copy_(W0["tall"]); m.wide.weight.copy_(W0["wide"])
    cfg = LoraConfig(r=cr, lora_alpha=calpha, target_modules=["tall", "wide"], init_lora_weights="corda",
                     corda_config=CordaConfig(corda_method=mode))
    samples = [torch.cat([Xc["tall"][s_], Xc["wide"][s_]], dim=1)[None] for s_ in range(S)]

    def run_model():
        with torch.no_grad():
            for x in samples:
                m(x)

    preprocess_corda(m, cfg, run_model=run_model)
    pm = get_peft_model(m, cfg)
    for shape in ("tall", "wide"):
        lin = getattr(pm.base_model.model, shape)
        out[f"corda.{mode}.{shape}.A"] = lin.lora_A["default"].weight.detach().float().contiguous()
        out[f"corda.{mode}.{shape}.B"] = lin.lora_B["default"].weight.detach().float().contiguous()
        out[f"corda.{mode}.{shape}.W0_new"] = lin.base_layer.weight.detach().float().contiguous()
for shape in ("tall", "wide"):
    x = Xc[shape]
    C = sum((xs / xs.max().abs()).T @ (xs / xs.max().abs()) for xs in x) / S  # PEFT's hook, written out
    out[f"corda.{shape}.X"] = x.reshape(S * T, -1).contiguous()
    out[f"corda.{shape}.W0"] = W0[shape].contiguous()
    out[f"corda.{shape}.C"] = C.float().contiguous()
meta.update({"corda.r": str(cr), "corda.alpha": str(calpha), "corda.T": str(T), "corda.samples": str(S)})

# ---- DoRA forward and gradients ----
dr = load_file(os.path.join(fx, "dora_ref.safetensors"))
row0, M = 8, 4
lin = nn.Sequential()
lin.add_module("v", nn.Linear(6, M, bias=True))
with torch.no_grad():
    lin.v.weight.copy_(dr["lin.weight"][row0:row0 + M]); lin.v.bias.copy_(dr["lin.bias"][row0:row0 + M])
pm = get_peft_model(lin, LoraConfig(r=2, lora_alpha=4, target_modules=["v"], use_dora=True, init_lora_weights=False))
v = pm.base_model.model.v
with torch.no_grad():
    v.lora_A["default"].weight.copy_(dr["lora_A"]); v.lora_B["default"].weight.copy_(dr["lora_B"])
    v.lora_magnitude_vector["default"].weight.copy_(dr["lora_magnitude_vector"])
x = dr["input.x"].clone()
y = pm(x)
(y * dr["loss.R"][:, row0:row0 + M]).sum().backward()
out["dora.out_v"] = y.detach().contiguous()
out["dora.grad.lora_A"] = v.lora_A["default"].weight.grad.contiguous()
out["dora.grad.lora_B"] = v.lora_B["default"].weight.grad.contiguous()
out["dora.grad.lora_magnitude_vector"] = v.lora_magnitude_vector["default"].weight.grad.contiguous()
save_file(out, os.path.join(fx, "peft_act_ref.safetensors"), metadata=meta)

# ---- orthogonal and gaussian draws (distribution checks only: PEFT's RNG is not ours) ----
rnd = {}
for init in ("orthogonal", "gaussian"):
    for seed in range(4):
        torch.manual_seed(100 + seed)
        mm = nn.Sequential(); mm.add_module("lin", nn.Linear(64, 96, bias=False))
        pl = get_peft_model(mm, LoraConfig(r=8, lora_alpha=16, target_modules=["lin"], init_lora_weights=init)).base_model.model.lin
        rnd[f"{init}.{seed}.lora_A"] = pl.lora_A["default"].weight.detach().float().contiguous()
        rnd[f"{init}.{seed}.lora_B"] = pl.lora_B["default"].weight.detach().float().contiguous()
save_file(rnd, os.path.join(fx, "peft_random_ref.safetensors"), metadata={"peft": peft.__version__, "in": "64", "out": "96", "r": "8"})
print("wrote peft_act_ref.safetensors and peft_random_ref.safetensors")
