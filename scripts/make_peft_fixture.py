#!/usr/bin/env python3
"""A LoRA adapter written by real PEFT, for the C loader's cross-framework test (tests/test_peft.c).

Needs torch, transformers and peft (the GPU machine has them; nothing is downloaded). It builds a tiny
Hugging Face ViTForImageClassification with the tiny_vit fixture's shape, loads the weights from
tests/fixtures/tiny_vit_hf.safetensors, wraps it with PEFT LoRA (r 2, alpha 4, target_modules query and value),
gives lora_B non-zero values (seeded), and writes
  OUT/peft_tiny_vit/adapter_config.json, adapter_model.safetensors   (PEFT's save_pretrained)
  OUT/peft_tiny_vit_ref.safetensors                                  (logits for tiny_vit_inputs' input.x)
usage: make_peft_fixture.py [OUT (default tests/fixtures)]
"""
import json, os, struct, sys
import numpy as np
import torch
from transformers import ViTConfig, ViTForImageClassification
from peft import LoraConfig, get_peft_model
from safetensors.torch import load_file, save_file

here = os.path.dirname(os.path.abspath(__file__))
fx = os.path.join(here, "..", "tests", "fixtures")
out = sys.argv[1] if len(sys.argv) > 1 else fx
os.makedirs(out, exist_ok=True)
cfg = ViTConfig(image_size=8, num_channels=2, patch_size=4, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                intermediate_size=32, num_labels=5, layer_norm_eps=1e-6, hidden_act="gelu", qkv_bias=True,
                hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
model = ViTForImageClassification(cfg).double().eval()
w = {k: v.double() for k, v in load_file(os.path.join(fx, "tiny_vit_hf.safetensors")).items()}
if any(k.startswith("vit.layers.") for k in model.state_dict()):  # transformers 5 renamed the blocks
    v5 = {"attention.attention.query": "attention.q_proj", "attention.attention.key": "attention.k_proj",
          "attention.attention.value": "attention.v_proj", "attention.output.dense": "attention.o_proj",
          "intermediate.dense": "mlp.fc1", "output.dense": "mlp.fc2"}
    def rename(k):
        if not k.startswith("vit.encoder.layer."):
            return k
        i, rest = k[len("vit.encoder.layer."):].split(".", 1)
        for old, new in v5.items():
            if rest.startswith(old + "."):
                rest = new + rest[len(old):]
        return f"vit.layers.{i}.{rest}"
    w = {rename(k): v for k, v in w.items()}
targets = ["q_proj", "v_proj"] if any(".q_proj." in k for k in model.state_dict()) else ["query", "value"]
missing, unexpected = model.load_state_dict(w, strict=False)
assert not missing, missing
assert all(k.startswith("vit.pooler") for k in unexpected), unexpected
peft_model = get_peft_model(model, LoraConfig(r=2, lora_alpha=4, target_modules=targets, lora_dropout=0.0))
g = torch.Generator().manual_seed(7)
with torch.no_grad():
    for name, p in peft_model.named_parameters():
        if "lora_B" in name:
            p.copy_(0.3 * torch.randn(p.shape, generator=g, dtype=torch.float64))
peft_model = peft_model.float()
peft_model.save_pretrained(os.path.join(out, "peft_tiny_vit"))
x = load_file(os.path.join(fx, "tiny_vit_inputs.safetensors"))["input.x"]
with torch.no_grad():
    logits = peft_model.double()(pixel_values=x.double()).logits
save_file({"logits": logits.float().contiguous()}, os.path.join(out, "peft_tiny_vit_ref.safetensors"),
          metadata={"peft": __import__("peft").__version__, "transformers": __import__("transformers").__version__,
                    "torch": torch.__version__})
print("logits", logits.tolist())
