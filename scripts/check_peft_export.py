#!/usr/bin/env python3
"""Adapters written by this framework load into PEFT itself and give our logits.

  build/tests/test_peft export DIR            # here: DoRA, rank_pattern and LoRA-XS adapters + our logits
  python3 scripts/check_peft_export.py DIR    # where PEFT is (the GPU machine): loads each with PeftModel

The base model is the tiny Hugging Face ViT of tests/fixtures/tiny_vit_hf.safetensors (as make_peft_fixture.py
builds it); inputs are tiny_vit_inputs' input.x. Prints the max relative error per adapter; exits 1 above 1e-4.
"""
import os, sys
import torch
from peft import PeftModel
from safetensors.torch import load_file

sys.argv += [] if len(sys.argv) > 1 else ["build/peft_export"]
d = sys.argv[1]
here = os.path.dirname(os.path.abspath(__file__))
sys.argv = [sys.argv[0], "/tmp/unused_peft_fixture_out"]
# the base model exactly as the fixture script builds it (its module-level code builds `model` and `w`)
src = open(os.path.join(here, "make_peft_fixture.py")).read().split("peft_model = get_peft_model")[0]
ns = {"__file__": os.path.join(here, "make_peft_fixture.py")}
exec(compile(src, "make_peft_fixture.py", "exec"), ns)
model = ns["model"].float().eval()
x = load_file(os.path.join(here, "..", "tests", "fixtures", "tiny_vit_inputs.safetensors"))["input.x"]
ours = load_file(os.path.join(d, "ours_logits.safetensors"))
bad = 0
for name in ("dora", "rank_pattern", "lora_xs"):
    base_model = ns["ViTForImageClassification"](ns["cfg"]).float().eval()
    base_model.load_state_dict(model.state_dict())  # before wrapping: PEFT renames the adapted layers' weights
    pm = PeftModel.from_pretrained(base_model, os.path.join(d, name)).eval()
    with torch.no_grad():
        got = pm(pixel_values=x).logits
    want = ours[name]
    err = ((got - want).abs() / (want.abs() + 1e-6)).max().item()
    base = ((model(pixel_values=x).logits - want).abs() / (want.abs() + 1e-6)).max().item()
    print(f"{name}: PEFT {__import__('peft').__version__} logits vs ours max rel err {err:.3g} (without the adapter: {base:.3g})")
    bad += err > 1e-4 or base < 1e-2
sys.exit(1 if bad else 0)
