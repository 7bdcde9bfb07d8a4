# The PEFT side of the "Init cost" benchmark (scripts/bench_init): ONE PEFT initializer on a Hugging Face ViT
# with random weights, LoRA r 8 alpha 16 on the query and value projections of every block (the same 2 x depth
# dim x dim adapters as loralab's blocks.*.attn.qkv:q|v; timm's fused qkv cannot take q and v separately in
# PEFT), the init data = the first N images of a mini-VTAB-19 task (the same PNG files loralab reads: RGB,
# bicubic resize to img_size, per-channel statistics of those N images), in batches of B.
#   python3 peft_init_peers.py --method pissa --device cpu --threads 16 --samples 256 --batch 32 \
#       --shape 224:16:768:12:12:3072 --data runs/data/mini-vtab/dtd
# Methods: kaiming (PEFT's default; the baseline), pissa (full SVD), pissa_niter_16 (torch.svd_lowrank, 16
# subspace iterations), olora, eva (initialize_lora_eva_weights; PEFT cycles its loader until every layer
# converged), corda (preprocess_corda, IPM; PEFT's covariance hook squeezes dim 0, so it is fed the N images one
# at a time), lora_ga (preprocess_loraga: one forward + backward per batch, then get_peft_model).
# Timed: from the start of PEFT's preprocessing / get_peft_model to its end (the model and the data already in
# memory / on the device, torch warmed up by one forward of one batch and a small SVD, QR and eigh on the
# device, so CUDA's lazy library loading is not counted). Prints one JSON line: seconds, forward passes run,
# memory: CPU: RSS before, the peak RSS sampled every 2 ms during the init and getrusage's process peak;
# GPU: torch.cuda.memory_allocated before and max_memory_allocated during the init.
import argparse, json, os, resource, sys, threading, time

ap = argparse.ArgumentParser()
ap.add_argument("--method", required=True)
ap.add_argument("--device", default="cpu")
ap.add_argument("--threads", type=int, default=0)
ap.add_argument("--samples", type=int, default=256)
ap.add_argument("--batch", type=int, default=32)
ap.add_argument("--shape", default="224:16:768:12:12:3072", help="img:patch:dim:depth:heads:mlp_hidden")
ap.add_argument("--classes", type=int, default=47)
ap.add_argument("--data", required=True, help="a mini-VTAB / VTAB-1k task folder (train800val200.txt)")
ap.add_argument("--rank", type=int, default=8)
ap.add_argument("--alpha", type=float, default=16)
a = ap.parse_args()
out = dict(engine="peft", method=a.method, device=a.device, threads=a.threads, samples=a.samples, batch=a.batch,
           shape=a.shape)


def emit(**kw):
    out.update(kw)
    print(json.dumps(out), flush=True)


def rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class RssSampler:  # the peak resident set during the timed region (torch releases the GIL in its kernels)
    def __init__(self):
        self.peak, self.stop = rss_bytes(), False
        self.t = threading.Thread(target=self.run, daemon=True)

    def run(self):
        while not self.stop:
            self.peak = max(self.peak, rss_bytes())
            time.sleep(0.002)

    def __enter__(self):
        self.t.start()
        return self

    def __exit__(self, *e):
        self.stop = True
        self.t.join()
        self.peak = max(self.peak, rss_bytes())


try:
    import numpy as np
    import torch
    from PIL import Image
    import peft
    from peft import LoraConfig, get_peft_model
    from transformers import ViTConfig, ViTForImageClassification
    import transformers

    if a.threads > 0:
        torch.set_num_threads(a.threads)
    dev = torch.device(a.device)
    out.update(peft=peft.__version__, torch=torch.__version__, transformers=transformers.__version__,
               torch_threads=torch.get_num_threads())
    if dev.type == "cuda":
        out["gpu"] = torch.cuda.get_device_name()
        torch.backends.cuda.matmul.allow_tf32 = False  # f32 as PEFT's defaults (and loralab's CPU path)
    img, patch, dim, depth, heads, mlp = (int(v) for v in a.shape.split(":"))

    # the data: the first N lines of train800val200.txt (loralab's dataset.train_n takes the same files)
    lines = open(os.path.join(a.data, "train800val200.txt")).read().split("\n")
    lines = [l.split() for l in lines if l.strip()][: a.samples]
    if len(lines) < a.samples:
        raise SystemExit(f"{a.data}: {len(lines)} training images, {a.samples} asked")
    x = np.stack([np.asarray(Image.open(os.path.join(a.data, p)).convert("RGB").resize((img, img), Image.BICUBIC),
                             dtype=np.float32) / 255.0 for p, _ in lines])  # (N, H, W, 3)
    mean, std = x.mean(axis=(0, 1, 2)), x.std(axis=(0, 1, 2)) + 1e-12
    x = torch.from_numpy(((x - mean) / std).transpose(0, 3, 1, 2).copy())
    y = torch.tensor([int(l) for _, l in lines]) % a.classes
    batches = [(x[i:i + a.batch].to(dev), y[i:i + a.batch].to(dev)) for i in range(0, a.samples, a.batch)]
    del x

    torch.manual_seed(0)
    cfg = ViTConfig(hidden_size=dim, num_hidden_layers=depth, num_attention_heads=heads, intermediate_size=mlp,
                    image_size=img, patch_size=patch, num_labels=a.classes, layer_norm_eps=1e-6)
    model = ViTForImageClassification(cfg).to(dev).eval()
    names = [n for n, _ in model.named_modules()]
    T = ["q_proj", "v_proj"] if any(n.endswith("q_proj") for n in names) else ["query", "value"]  # transformers 5 / 4
    n_adapted = sum(1 for n in names if n.split(".")[-1] in T)
    out.update(targets=T, adapted_layers=n_adapted)

    forwards = [0]
    model.vit.embeddings.register_forward_pre_hook(lambda m, i: forwards.__setitem__(0, forwards[0] + 1))

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    # warm-up: one forward, a small SVD / QR / eigh / matmul backward on the device (library handles, kernels)
    with torch.no_grad():
        model(pixel_values=batches[0][0])
    w = torch.randn(64, 48, device=dev, requires_grad=True)
    torch.linalg.svd(w.detach(), full_matrices=False), torch.linalg.qr(w.detach()), torch.linalg.eigh(w.detach().T @ w.detach())
    torch.svd_lowrank(w.detach(), q=16, niter=2)
    (w @ w.T).sum().backward()
    sync()
    forwards[0] = 0

    kw = dict(r=a.rank, lora_alpha=a.alpha, target_modules=T)
    m = a.method
    if m == "kaiming":
        lc, pre, post = LoraConfig(**kw), None, None
    elif m in ("pissa", "olora") or m.startswith("pissa_niter_"):
        lc, pre, post = LoraConfig(init_lora_weights=m, **kw), None, None
    elif m == "eva":
        from peft import EvaConfig, initialize_lora_eva_weights

        lc = LoraConfig(init_lora_weights="eva", eva_config=EvaConfig(rho=2.0, tau=0.99), **kw)
        loader = [dict(pixel_values=b[0]) for b in batches]

        def rows(li, mi, ln):  # (B, T, C) -> (B T, C): every token is a row, as loralab's taps
            t = li[0] if isinstance(li, (tuple, list)) else li
            return t.reshape(-1, t.shape[-1])

        pre = None
        post = lambda pm: initialize_lora_eva_weights(pm, loader, prepare_model_inputs_fn=None,
                                                      prepare_layer_inputs_fn=rows, show_progress_bar=False)
    elif m in ("corda", "corda_kpm"):
        from peft.tuners.lora.config import CordaConfig
        from peft.tuners.lora.corda import preprocess_corda

        lc = LoraConfig(init_lora_weights="corda", corda_config=CordaConfig(corda_method="kpm" if m == "corda_kpm" else "ipm"), **kw)

        @torch.no_grad()
        def run_model():  # batch-1 inputs only (the hook squeezes dim 0)
            for xb, _ in batches:
                for i in range(xb.shape[0]):
                    model(pixel_values=xb[i:i + 1])

        pre, post = lambda: preprocess_corda(model, lc, run_model=run_model), None
    elif m == "lora_ga":
        from peft.tuners.lora.config import LoraGAConfig
        from peft.tuners.lora.loraga import preprocess_loraga

        lc = LoraConfig(init_lora_weights="lora_ga", lora_ga_config=LoraGAConfig(), **kw)

        def train_step():
            for xb, yb in batches:
                model(pixel_values=xb, labels=yb).loss.backward()

        pre, post = lambda: preprocess_loraga(model, lc, train_step=train_step), None
    else:
        raise SystemExit(f"--method {m}: not one of kaiming, pissa, pissa_niter_K, olora, eva, corda, corda_kpm, lora_ga")

    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        gpu_before = torch.cuda.memory_allocated()
    rss_before = rss_bytes()
    with RssSampler() as s:
        t0 = time.perf_counter()
        if pre:
            pre()
        pm = get_peft_model(model, lc)
        if post:
            post(pm)
        sync()
        dt = time.perf_counter() - t0
    res = dict(seconds=round(dt, 4), forwards=forwards[0], rss_before_mb=round(rss_before / 2**20, 1),
               rss_peak_mb=round(s.peak / 2**20, 1), maxrss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1))
    if dev.type == "cuda":
        res.update(gpu_before_mib=round(gpu_before / 2**20, 1), gpu_peak_mib=round(torch.cuda.max_memory_allocated() / 2**20, 1))
    # a sanity check that the init did something: the adapters' shapes and norms
    ab = [(n, p) for n, p in pm.named_parameters() if "lora_A" in n or "lora_B" in n]
    res.update(adapter_tensors=len(ab), ranks=sorted({p.shape[0] for n, p in ab if "lora_A" in n}))
    emit(**res)
except SystemExit as e:
    emit(error=str(e))
    sys.exit(1)
except Exception as e:  # reported as the method's result; the driver goes on with the next one
    emit(error=repr(e)[:400])
    sys.exit(1)
