#!/usr/bin/env python3
"""The PyTorch peer of scripts/bench/bench_step.c: the same tiny ViT (d 64, depth 4, heads 2, patch 7,
Fashion-MNIST shape, 10 classes), the same step (forward, cross-entropy, backward, AdamW), timed the same
way (3 warm-up steps, median of 5 windows).  usage: tiny_vit_step.py <lora|full> [threads] [batch] [steps]
lora: frozen backbone, rank-8 A, B on the q and v slices of each block's qkv, head trained (the step of
shared/bench/tiny_vit_cpu.py)."""
import json, math, sys, time
import torch, torch.nn as nn, torch.nn.functional as F

mode = sys.argv[1] if len(sys.argv) > 1 else "lora"
torch.set_num_threads(int(sys.argv[2]) if len(sys.argv) > 2 else 2)
B = int(sys.argv[3]) if len(sys.argv) > 3 else 128
steps = int(sys.argv[4]) if len(sys.argv) > 4 else 40


class Block(nn.Module):
    def __init__(s, d, h):
        super().__init__(); s.h = h
        s.norm1 = nn.LayerNorm(d, eps=1e-6); s.qkv = nn.Linear(d, 3 * d); s.proj = nn.Linear(d, d)
        s.norm2 = nn.LayerNorm(d, eps=1e-6); s.fc1 = nn.Linear(d, 4 * d); s.fc2 = nn.Linear(4 * d, d)
        s.lora = None

    def forward(s, x):
        B_, T, C = x.shape
        h = s.norm1(x)
        qkv = s.qkv(h)
        if s.lora is not None:
            A, Bm, sc = s.lora
            dq = (h @ A[0].T) @ Bm[0].T; dv = (h @ A[1].T) @ Bm[1].T
            qkv = qkv + torch.cat([dq, torch.zeros_like(dq), dv], -1) * sc
        q, k, v = qkv.view(B_, T, 3, s.h, C // s.h).permute(2, 0, 3, 1, 4)
        a = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(C // s.h), -1) @ v
        x = x + s.proj(a.transpose(1, 2).reshape(B_, T, C))
        return x + s.fc2(F.gelu(s.fc1(s.norm2(x))))


class ViT(nn.Module):
    def __init__(s, d=64, depth=4, h=2, p=7, n=10):
        super().__init__(); T = (28 // p) ** 2
        s.embed = nn.Conv2d(1, d, p, p); s.cls = nn.Parameter(torch.zeros(1, 1, d))
        s.pos = nn.Parameter(torch.randn(1, T + 1, d) * .02)
        s.blocks = nn.ModuleList([Block(d, h) for _ in range(depth)]); s.norm = nn.LayerNorm(d, eps=1e-6)
        s.head = nn.Linear(d, n)

    def forward(s, x):
        x = s.embed(x).flatten(2).transpose(1, 2)
        x = torch.cat([s.cls.expand(x.shape[0], -1, -1), x], 1) + s.pos
        for b in s.blocks: x = b(x)
        return s.head(s.norm(x)[:, 0])


torch.manual_seed(0)
m = ViT()
if mode == "lora":
    for p_ in m.parameters(): p_.requires_grad_(False)
    params = [m.head.weight, m.head.bias]
    for b in m.blocks:
        A = nn.Parameter(torch.randn(2, 8, 64) * .01); Bm = nn.Parameter(torch.zeros(2, 64, 8))
        b.lora = (A, Bm, 2.0); params += [A, Bm]
    m.head.weight.requires_grad_(True); m.head.bias.requires_grad_(True)
else:
    params = list(m.parameters())
opt = torch.optim.AdamW(params, lr=1e-3)
x = torch.randn(B, 1, 28, 28); y = torch.arange(B) % 10


def step():
    opt.zero_grad(set_to_none=True)
    F.cross_entropy(m(x), y).backward()
    opt.step()


for _ in range(3): step()
win = []
for w in range(5):
    n = steps // 5; t = time.perf_counter()
    for _ in range(n): step()
    win.append((time.perf_counter() - t) / n)
win.sort()
print(json.dumps(dict(engine="pytorch " + torch.__version__, mode=mode, threads=torch.get_num_threads(), batch=B,
                      step_ms=round(win[2] * 1e3, 2), img_s=round(B / win[2], 1))))
