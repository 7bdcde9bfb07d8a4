# The PyTorch peers of the ViT-B/16 LoRA step (a copy of BENCHMARKS.md's bench/peft_vit_bench2.py, same
# measurement, with the configurations chosen on the command line so a lease runs only what it needs).
#   python3 peft_vit_peers.py timm:bf16:compile:64 timm:amp:eager:64 ...   (model:precision:mode:batch)
# model timm (fused qkv) | hf; precision bf16 (pure bf16 weights) | amp (bf16 autocast); mode eager | compile.
# Prints one JSON line per configuration.
import time, json, sys, torch, timm
from peft import LoraConfig, get_peft_model
torch.backends.cuda.matmul.allow_tf32 = True; torch.backends.cudnn.allow_tf32 = True

def build(kind):
    torch.manual_seed(0)
    if kind.startswith("timm"):
        m = timm.create_model("vit_base_patch16_224", pretrained=False, num_classes=100)
        cfg = LoraConfig(r=8, lora_alpha=16, target_modules=["qkv"], modules_to_save=["head"])
    else:
        from transformers import ViTConfig, ViTForImageClassification
        c = ViTConfig(num_labels=100); c._attn_implementation = "sdpa"
        m = ViTForImageClassification(c)
        cfg = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], modules_to_save=["classifier"])
    return get_peft_model(m, cfg).cuda()

def bench(kind, pure_bf16, compiled, batch, steps=30, warm=10):
    m = build(kind)
    if pure_bf16: m = m.to(torch.bfloat16)
    opt = torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=1e-3)
    x = torch.randn(batch, 3, 224, 224, device="cuda", dtype=torch.bfloat16 if pure_bf16 else torch.float32)
    y = torch.randint(0, 100, (batch,), device="cuda")
    def fwd():
        out = m(x) if kind.startswith("timm") else m(pixel_values=x).logits
        return torch.nn.functional.cross_entropy(out.float(), y)
    def step():
        if pure_bf16: loss = fwd()
        else:
            with torch.autocast("cuda", dtype=torch.bfloat16): loss = fwd()
        loss.backward(); opt.step(); opt.zero_grad(set_to_none=True)
    f = torch.compile(step) if compiled else step
    for _ in range(warm): f()
    torch.cuda.synchronize(); torch.cuda.reset_peak_memory_stats(); t = time.perf_counter()
    for _ in range(steps): f()
    torch.cuda.synchronize(); dt = (time.perf_counter() - t) / steps
    return dict(engine="peft", model=kind, pure_bf16=pure_bf16, compile=compiled, batch=batch, step_ms=round(dt * 1e3, 2),
                img_s=round(batch / dt), peak_gib=round(torch.cuda.max_memory_allocated() / 2**30, 2))

for spec in sys.argv[1:]:
    kind, prec, mode, b = spec.split(":")
    try: r = bench(kind, prec == "bf16", mode == "compile", int(b))
    except Exception as e: r = dict(engine="peft", model=kind, pure_bf16=prec == "bf16", compile=mode == "compile", batch=int(b), error=repr(e)[:300])
    print(json.dumps(r), flush=True)
    del r; torch.cuda.empty_cache()
