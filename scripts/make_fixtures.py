#!/usr/bin/env python3
"""Reference fixtures for the C tests (tests/fixtures/*.safetensors), computed by PyTorch in float64.

  python3 scripts/make_fixtures.py            # writes tests/fixtures/tiny_vit*.safetensors

For each model: <name>.safetensors holds the weights (timm names), <name>_inputs.safetensors the input
batch (`input.x`, `input.y`) and any adapter tensors; <name>_ref.safetensors holds `logits`, `loss` and `grad.<param>` for every trainable parameter.
The C test (tests/test_ref.c) loads the same weights, runs its own forward/backward in float32 and compares.
Needs torch (Debian's python3-torch is enough); the tests themselves never need Python.
"""
import json, math, os, struct, sys
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures")


def save_safetensors(path, tensors, meta=None):
    """Minimal safetensors writer (F32 / I32), so the script needs no extra package."""
    header, blobs, off = {}, [], 0
    if meta:
        header["__metadata__"] = meta
    for name, t in tensors.items():
        a = t.detach().cpu().numpy() if torch.is_tensor(t) else np.asarray(t)
        if a.dtype.kind == "f":
            a, dt = a.astype("<f4"), "F32"
        else:
            a, dt = a.astype("<i4"), "I32"
        b = a.tobytes()
        header[name] = {"dtype": dt, "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


class Block(nn.Module):
    def __init__(s, d, h, hidden):
        super().__init__()
        s.h = h
        s.norm1 = nn.LayerNorm(d, eps=1e-6); s.attn = nn.Module()
        s.attn.qkv = nn.Linear(d, 3 * d); s.attn.proj = nn.Linear(d, d)
        s.norm2 = nn.LayerNorm(d, eps=1e-6); s.mlp = nn.Module()
        s.mlp.fc1 = nn.Linear(d, hidden); s.mlp.fc2 = nn.Linear(hidden, d)
        s.lora = None  # {"q": (A, B), "v": (A, B)}, scale

    def qkv(s, x):
        y = s.attn.qkv(x)
        if s.lora:
            d = x.shape[-1]
            parts = list(y.split(d, -1))
            for j, key in enumerate("qkv"):
                if key in s.lora[0]:
                    A, B = s.lora[0][key]
                    parts[j] = parts[j] + s.lora[1] * (x @ A.T) @ B.T
            y = torch.cat(parts, -1)
        return y

    def forward(s, x):
        B_, T, C = x.shape
        q, k, v = s.qkv(s.norm1(x)).view(B_, T, 3, s.h, C // s.h).permute(2, 0, 3, 1, 4)
        a = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(C // s.h), -1) @ v
        x = x + s.attn.proj(a.transpose(1, 2).reshape(B_, T, C))
        return x + s.mlp.fc2(F.gelu(s.mlp.fc1(s.norm2(x))))


class ViT(nn.Module):
    def __init__(s, img=8, ch=2, p=4, d=16, depth=2, h=2, hidden=32, n=5, pool="cls"):
        super().__init__()
        s.pool = pool
        T = (img // p) ** 2 + 1
        s.patch_embed = nn.Module(); s.patch_embed.proj = nn.Conv2d(ch, d, p, p)
        s.cls_token = nn.Parameter(torch.randn(1, 1, d) * 0.5)
        s.pos_embed = nn.Parameter(torch.randn(1, T, d) * 0.5)
        s.blocks = nn.ModuleList([Block(d, h, hidden) for _ in range(depth)])
        s.norm = nn.LayerNorm(d, eps=1e-6); s.head = nn.Linear(d, n)

    def forward(s, x):
        x = s.patch_embed.proj(x).flatten(2).transpose(1, 2)
        x = torch.cat([s.cls_token.expand(x.shape[0], -1, -1), x], 1) + s.pos_embed
        for b in s.blocks:
            x = b(x)
        x = s.norm(x)
        x = x[:, 0] if s.pool == "cls" else x[:, 1:].mean(1)
        return s.head(x)


def randomize(model, seed):
    """Weights of a trained-looking scale (not the init), so every path carries signal."""
    g = torch.Generator().manual_seed(seed)
    for name, p in model.named_parameters():
        with torch.no_grad():
            if "norm" in name and name.endswith("weight"):
                p.copy_(1 + 0.2 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.3 * torch.randn(p.shape, generator=g))


def make_vit(name, pool, lora):
    torch.manual_seed(0)
    m = ViT(pool=pool)
    randomize(m, 1)
    g = torch.Generator().manual_seed(2)
    x = torch.randn(3, 2, 8, 8, generator=g)
    y = torch.tensor([1, 4, 0])
    weights = {k: v.clone() for k, v in m.state_dict().items()}
    lora_tensors = {}
    if lora:
        r, alpha = 2, 4.0
        for i, b in enumerate(m.blocks):
            ad = {}
            for key in "qv":
                A = (0.3 * torch.randn(r, 16, generator=g)).requires_grad_()
                B = (0.3 * torch.randn(16, r, generator=g)).requires_grad_()
                ad[key] = (A, B)
                lora_tensors[f"blocks.{i}.attn.qkv:{key}.lora_A"] = A
                lora_tensors[f"blocks.{i}.attn.qkv:{key}.lora_B"] = B
            b.lora = (ad, alpha / r)
        for k, p in m.named_parameters():
            p.requires_grad_(k.startswith("head."))
    m = m.double()
    if lora:
        for b in m.blocks:
            ad, s = b.lora
            b.lora = ({k: (A.double().detach().requires_grad_(), B.double().detach().requires_grad_()) for k, (A, B) in ad.items()}, s)
    logits = m(x.double())
    loss = F.cross_entropy(logits, y, label_smoothing=0.1)
    loss.backward()
    ref = {"logits": logits, "loss": loss.reshape(1)}
    for k, p in m.named_parameters():
        if p.grad is not None:
            ref["grad." + k] = p.grad
    if lora:
        for i, b in enumerate(m.blocks):
            for key, (A, B) in b.lora[0].items():
                ref[f"grad.blocks.{i}.attn.qkv:{key}.lora_A"] = A.grad
                ref[f"grad.blocks.{i}.attn.qkv:{key}.lora_B"] = B.grad
    inputs = {k: v.detach() for k, v in lora_tensors.items()}
    inputs["input.x"] = x
    inputs["input.y"] = y.int()
    meta = {"config": json.dumps(dict(img=8, ch=2, patch=4, dim=16, depth=2, heads=2, mlp=32, classes=5, pool=pool,
                                      lora_rank=2 if lora else 0, lora_alpha=4.0, label_smoothing=0.1)),
            "torch": torch.__version__}
    save_safetensors(os.path.join(OUT, name + ".safetensors"), weights, meta)
    if name == "tiny_vit":
        save_safetensors(os.path.join(OUT, name + "_hf.safetensors"), to_hf(weights), meta)
    save_safetensors(os.path.join(OUT, name + "_inputs.safetensors"), inputs, meta)
    save_safetensors(os.path.join(OUT, name + "_ref.safetensors"), ref, meta)
    print(name, "loss", float(loss))


def to_hf(weights, d=16):
    """timm names -> Hugging Face ViTForImageClassification names (q/k/v split out of the fused qkv)."""
    hf = {}
    for k, v in weights.items():
        if k == "cls_token": hf["vit.embeddings.cls_token"] = v
        elif k == "pos_embed": hf["vit.embeddings.position_embeddings"] = v
        elif k.startswith("patch_embed.proj."): hf["vit.embeddings.patch_embeddings.projection." + k.split(".")[-1]] = v
        elif k.startswith("norm."): hf["vit.layernorm." + k.split(".")[-1]] = v
        elif k.startswith("head."): hf["classifier." + k.split(".")[-1]] = v
        else:
            _, i, *rest = k.split(".")
            sub, leaf = ".".join(rest[:-1]), rest[-1]
            pre = f"vit.encoder.layer.{i}."
            if sub == "attn.qkv":
                for j, qkv in enumerate(["query", "key", "value"]):
                    hf[pre + f"attention.attention.{qkv}.{leaf}"] = v[j * d:(j + 1) * d]
            else:
                hf[pre + {"norm1": "layernorm_before", "norm2": "layernorm_after", "attn.proj": "attention.output.dense",
                          "mlp.fc1": "intermediate.dense", "mlp.fc2": "output.dense"}[sub] + "." + leaf] = v
    hf["vit.pooler.dense.weight"] = torch.zeros(d, d)  # ViTModel checkpoints carry one; the loader ignores it
    return hf


def make_optim():
    """Three AdamW and three SGD(momentum, nesterov off) steps on a fixed parameter with fixed gradients."""
    g = torch.Generator().manual_seed(5)
    p0 = torch.randn(7, 5, generator=g, dtype=torch.float64)
    grads = [torch.randn(7, 5, generator=g, dtype=torch.float64) for _ in range(3)]
    out = {"p0": p0}
    for i, gr in enumerate(grads):
        out[f"g{i}"] = gr
    for kind in ("adamw", "sgd"):
        p = p0.clone().requires_grad_()
        opt = (torch.optim.AdamW([p], lr=0.01, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1) if kind == "adamw"
               else torch.optim.SGD([p], lr=0.01, momentum=0.9, weight_decay=0.1))
        for gr in grads:
            p.grad = gr.clone(); opt.step()
        out[kind] = p.detach()
    save_safetensors(os.path.join(OUT, "optim_ref.safetensors"), out, {"torch": torch.__version__})
    print("optim", float(out["adamw"][0, 0]), float(out["sgd"][0, 0]))


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    make_vit("tiny_vit", "cls", lora=False)
    make_vit("tiny_vit_mean", "mean", lora=False)
    make_vit("tiny_vit_lora", "cls", lora=True)
    make_optim()
