#!/usr/bin/env python3
"""Reference fixtures for the CNN backbones of core/cnn.c (tests/test_ref_cnn.c), computed by PyTorch in float64.

  /usr/bin/python3 scripts/make_cnn_fixtures.py    # writes tests/fixtures/tiny_{resnet,vgg}*.safetensors

The modules below rebuild core/cnn.c's tiny ResNet (CIFAR stem: conv 3x3 - bn - relu; BasicBlocks with a
1x1 stride-2 conv + bn downsample where the shape changes; global average pool; fc) and VGG (per stage
[conv 3x3 + bias - bn - relu] x blocks, maxpool 2x2; global average pool; one linear `classifier`) with
torchvision's module names, so their state dicts carry the C parameter names. Per model:
  <name>.safetensors            the weights: the whole state dict, num_batches_tracked included (as a
                                torchvision checkpoint has it; the C loader is told to ignore it)
  <name>_inputs.safetensors     input.x (B,C,H,W), input.y (B)
  <name>_train_ref.safetensors  train mode (batch statistics): logits, loss, grad.<param> for every
                                parameter, updated.<bn>.running_{mean,var} after that one forward
                                (momentum 0.1, unbiased variance)
  <name>_eval_ref.safetensors   eval mode (frozen running statistics): logits, loss, grad.<param>
Loss: cross entropy with label smoothing 0.1, mean over the batch. Weights are drawn in float32 (what the
files hold) and only then promoted to float64, so the reference sees exactly the C model's weights.
Needs torch (Debian's python3-torch is enough; torchvision is not needed); the tests never need Python.
"""
import json, os, sys

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_fixtures import OUT, save_safetensors  # noqa: E402

# Keep in step with tests/test_ref_cnn.c. Two blocks per stage so the fixtures also cover an identity
# block after a downsampling one (ResNet) and consecutive convs in features.<i> numbering (VGG).
CFG = dict(in_ch=3, img=8, classes=5, width=4, stages=2, blocks_per_stage=2, batchnorm=1, batch=4,
           label_smoothing=0.1, bn_eps=1e-5, bn_momentum=0.1)


def bn(c):
    return nn.BatchNorm2d(c, eps=CFG["bn_eps"], momentum=CFG["bn_momentum"])


class BasicBlock(nn.Module):
    """torchvision.models.resnet.BasicBlock (expansion 1)."""

    def __init__(s, c_in, c_out, stride, use_bn):
        super().__init__()
        s.use_bn = use_bn
        s.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=not use_bn)
        if use_bn: s.bn1 = bn(c_out)
        s.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=not use_bn)
        if use_bn: s.bn2 = bn(c_out)
        s.downsample = None
        if stride != 1 or c_in != c_out:
            mods = [nn.Conv2d(c_in, c_out, 1, stride, 0, bias=not use_bn)] + ([bn(c_out)] if use_bn else [])
            s.downsample = nn.Sequential(*mods)

    def forward(s, x):
        h = s.conv1(x)
        if s.use_bn: h = s.bn1(h)
        h = s.conv2(F.relu(h))
        if s.use_bn: h = s.bn2(h)
        return F.relu(h + (x if s.downsample is None else s.downsample(x)))


class ResNet(nn.Module):
    """CIFAR-style ResNet as core/cnn.c's build_resnet: 3x3 stem (no maxpool), stage s has width << s
    channels, its first block strides 2 (s > 0), then global average pooling and fc."""

    def __init__(s, c):
        super().__init__()
        use_bn = bool(c["batchnorm"])
        s.use_bn = use_bn
        s.conv1 = nn.Conv2d(c["in_ch"], c["width"], 3, 1, 1, bias=not use_bn)
        if use_bn: s.bn1 = bn(c["width"])
        ch = c["width"]
        for st in range(c["stages"]):
            blocks = []
            for k in range(c["blocks_per_stage"]):
                out = c["width"] << st
                blocks.append(BasicBlock(ch, out, 2 if st > 0 and k == 0 else 1, use_bn))
                ch = out
            setattr(s, f"layer{st + 1}", nn.Sequential(*blocks))
        s.n_stages = c["stages"]
        s.fc = nn.Linear(ch, c["classes"])

    def forward(s, x):
        x = s.conv1(x)
        if s.use_bn: x = s.bn1(x)
        x = F.relu(x)
        for st in range(s.n_stages):
            x = getattr(s, f"layer{st + 1}")(x)
        return s.fc(x.mean((2, 3)))


class VGG(nn.Module):
    """torchvision make_layers numbering (conv, bn, relu, maxpool each take an index of `features`);
    the head is core/cnn.c's: global average pooling and one linear layer named classifier."""

    def __init__(s, c):
        super().__init__()
        mods, ch = [], c["in_ch"]
        for st in range(c["stages"]):
            for _ in range(c["blocks_per_stage"]):
                out = c["width"] << st
                mods.append(nn.Conv2d(ch, out, 3, 1, 1))
                if c["batchnorm"]: mods.append(bn(out))
                mods.append(nn.ReLU())
                ch = out
            mods.append(nn.MaxPool2d(2, 2))
        s.features = nn.Sequential(*mods)
        s.classifier = nn.Linear(ch, c["classes"])

    def forward(s, x):
        return s.classifier(s.features(x).mean((2, 3)))


def randomize(model, seed):
    """Trained-looking values, not the init: conv/linear weights at a He-like scale, nonzero conv and linear
    biases, bn weight around 1 and bias around 0, running means nonzero and running variances positive and
    away from 1 (so eval mode really uses them)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, mod in model.named_modules():
            if isinstance(mod, nn.BatchNorm2d):
                C = mod.num_features
                mod.weight.copy_(1 + 0.25 * torch.randn(C, generator=g))
                mod.bias.copy_(0.2 * torch.randn(C, generator=g))
                mod.running_mean.copy_(0.3 * torch.randn(C, generator=g))
                mod.running_var.copy_(0.4 + 1.6 * torch.rand(C, generator=g))  # U(0.4, 2.0)
                mod.num_batches_tracked.fill_(7)
            elif isinstance(mod, (nn.Conv2d, nn.Linear)):
                fan_in = mod.weight[0].numel()
                mod.weight.copy_((2.0 / fan_in) ** 0.5 * torch.randn(mod.weight.shape, generator=g))
                if mod.bias is not None:
                    mod.bias.copy_(0.2 * torch.randn(mod.bias.shape, generator=g))


def run(model, x, y, train):
    """float64 forward/backward; returns the reference tensors."""
    model.train(train)
    model.zero_grad(set_to_none=True)
    logits = model(x)
    loss = F.cross_entropy(logits, y, label_smoothing=CFG["label_smoothing"])
    loss.backward()
    ref = {"logits": logits, "loss": loss.reshape(1)}
    for k, p in model.named_parameters():
        ref["grad." + k] = p.grad
    if train:
        for k, t in model.state_dict().items():
            if k.endswith("running_mean") or k.endswith("running_var"):
                ref["updated." + k] = t.clone()
    return ref


def make(name, cls, seed):
    torch.manual_seed(0)
    m = cls(CFG)
    randomize(m, seed)
    g = torch.Generator().manual_seed(seed + 100)
    x = torch.randn(CFG["batch"], CFG["in_ch"], CFG["img"], CFG["img"], generator=g)
    y = torch.randint(0, CFG["classes"], (CFG["batch"],), generator=g)
    weights = {k: v.clone() for k, v in m.state_dict().items()}  # float32, what the C test loads
    meta = {"config": json.dumps(dict(CFG, kind=name.split("_")[1])), "torch": torch.__version__}
    save_safetensors(os.path.join(OUT, name + ".safetensors"), weights, meta)
    save_safetensors(os.path.join(OUT, name + "_inputs.safetensors"), {"input.x": x, "input.y": y.int()}, meta)
    for mode in ("train", "eval"):
        md = cls(CFG)
        md.load_state_dict(weights)  # fresh copy: the train forward moves the running statistics
        md = md.double()
        ref = run(md, x.double(), y, mode == "train")
        save_safetensors(os.path.join(OUT, f"{name}_{mode}_ref.safetensors"), ref, meta)
        print(name, mode, "loss", float(ref["loss"]), "max |logit|", float(ref["logits"].abs().max()))


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    make("tiny_resnet", ResNet, 11)
    make("tiny_vgg", VGG, 12)
