#!/usr/bin/env python3
"""PiSSA and OLoRA as PEFT itself computes them, for tests/test_peft_init.c.

Needs torch and peft (the GPU machine has PEFT 0.21; nothing is downloaded). A Linear(16 -> 24) with fixed
weights is wrapped by PEFT with init_lora_weights = "pissa" and then "olora" (r 4, lora_alpha 8); the file
holds the original weight, PEFT's lora_A / lora_B and the weight PEFT leaves in the base layer.
usage: make_peft_init_fixtures.py [OUT_DIR (default tests/fixtures)]
"""
import os, sys
import torch
from peft import LoraConfig, get_peft_model
from safetensors.torch import save_file

out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures")
g = torch.Generator().manual_seed(11)
W0 = torch.randn(24, 16, generator=g) * 0.5
tensors = {"W0": W0.clone()}
for init in ("pissa", "olora"):
    model = torch.nn.Sequential()
    model.add_module("lin", torch.nn.Linear(16, 24, bias=False))
    with torch.no_grad():
        model.lin.weight.copy_(W0)
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["lin"], init_lora_weights=init))
    lin = peft_model.base_model.model.lin
    tensors[f"{init}.lora_A"] = lin.lora_A["default"].weight.detach().clone().contiguous()
    tensors[f"{init}.lora_B"] = lin.lora_B["default"].weight.detach().clone().contiguous()
    tensors[f"{init}.W0_new"] = lin.base_layer.weight.detach().clone().contiguous()
import peft
save_file(tensors, os.path.join(out, "peft_init_ref.safetensors"), metadata={"peft": peft.__version__, "torch": torch.__version__})
print({k: tuple(v.shape) for k, v in tensors.items()})
