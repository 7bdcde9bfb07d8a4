#!/usr/bin/env python3
"""A timm ViT-B/16 with random weights (timm's own init), saved as safetensors with an input batch and timm's
logits, for tests/test_timm_vit.c (ctest ref_timm_vitb16). Run on a machine with torch + timm + safetensors:
    python3 scripts/make_timm_vit.py OUTDIR [batch (8)] [seed (0)]
OUTDIR gets vit_b16.safetensors (timm names, f32), input.f32 (B,3,224,224), logits_f32.f32 (B,1000: timm in
f32 on the CPU, eval mode) and, with a GPU, logits_bf16.f32 (timm under bf16 autocast on the GPU, for context),
then: LORALAB_TIMM_VIT_DIR=OUTDIR build/test_timm_vit."""
import os
import sys

import numpy as np
import timm
import torch
from safetensors.torch import save_file

out = sys.argv[1]
B = int(sys.argv[2]) if len(sys.argv) > 2 else 8
seed = int(sys.argv[3]) if len(sys.argv) > 3 else 0
os.makedirs(out, exist_ok=True)
torch.manual_seed(seed)
model = timm.create_model("vit_base_patch16_224", pretrained=False, num_classes=1000).eval()
sd = {k: v.detach().contiguous().float() for k, v in model.state_dict().items()}
save_file(sd, os.path.join(out, "vit_b16.safetensors"), metadata={"format": "pt"})
x = torch.randn(B, 3, 224, 224, generator=torch.Generator().manual_seed(seed + 1))
torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
with torch.no_grad():
    logits = model(x).float()
x.numpy().astype(np.float32).tofile(os.path.join(out, "input.f32"))
logits.numpy().astype(np.float32).tofile(os.path.join(out, "logits_f32.f32"))
print(f"timm {timm.__version__}, torch {torch.__version__}: vit_base_patch16_224, {sum(v.numel() for v in sd.values())} "
      f"parameters, batch {B}; logits max |.| {logits.abs().max():.4g}, std {logits.std():.4g}")
if torch.cuda.is_available():
    m = model.cuda()
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        lb = m(x.cuda()).float().cpu()
    lb.numpy().astype(np.float32).tofile(os.path.join(out, "logits_bf16.f32"))
    e = (lb - logits).abs().max() / logits.abs().max()
    print(f"timm bf16 autocast (GPU) vs timm f32 (CPU): max rel err {e:.3g}")
