"""Oracle of `deepres export` (tests/export.rs): the exported state dict loads into the public
code's own model class with load_state_dict(strict=True), and that model's logits (eval mode)
on the fixture's batch equal deepres's; the TorchScript file, run by torch.jit.load alone,
gives the same logits. Also writes a state dict the way a PyTorch user would (for import).

Usage: export_check.py check FIXTURE_DIR | export_check.py make FIXTURE_DIR
"""
import json
import sys

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import akamaster
import tau_paper


def public_model(meta):
    depth, classes, cin = int(meta["depth"]), int(meta["classes"]), int(meta["in_channels"])
    n = (depth - 2) // 6
    if meta["format"] == "akamaster":
        return akamaster.ResNet([n, n, n], classes, cin)
    kind = "bn" if meta["norm"] == "bn" else "nobn"
    return tau_paper.CifarResNet(kind, n, float(meta["tau"]), cin, classes)


def check(fixture):
    spec = json.load(open(f"{fixture}/spec.json"))
    t = load_file(f"{fixture}/batch.safetensors")
    x, want = t["x"], t["logits"]
    worst = 0.0
    for path in spec["exports"]:
        with safe_open(path, "pt") as f:
            meta = f.metadata()
        for key in ("depth", "norm", "shortcut", "tau", "classes", "in_channels",
                    "input_mean", "input_std", "weights", "format"):
            assert key in meta, f"{path}: metadata lacks {key}: {meta}"
        model = public_model(meta)
        model.load_state_dict(load_file(path), strict=True)
        model.eval()
        with torch.no_grad():
            got = model(x)
        d = (got - want).abs().max().item()
        print(f"{path}: {meta['format']} strict load, max |Δ logits| {d:.2e}")
        worst = max(worst, d)
    for path in spec["torchscript"]:
        module = torch.jit.load(path)
        with torch.no_grad():
            got = module(x)
        d = (got - want).abs().max().item()
        print(f"{path}: TorchScript, max |Δ logits| {d:.2e}")
        worst = max(worst, d)
    if not worst <= 1e-4:
        print(f"logits differ from deepres's by {worst:.3g} > 1e-4")
        sys.exit(1)


def make(fixture):
    """A τ-paper state dict as a PyTorch user has it: the paper's class, random weights and
    BN statistics, saved with safetensors (no metadata), with its eval-mode logits."""
    spec = json.load(open(f"{fixture}/spec.json"))
    torch.manual_seed(0)
    model = tau_paper.CifarResNet(spec["kind"], (spec["depth"] - 2) // 6, spec["tau"], 3, 10)
    with torch.no_grad():
        for name, p in model.state_dict().items():
            if name.endswith("num_batches_tracked"):
                continue
            if name.endswith("running_var"):
                p.copy_(torch.rand_like(p) + 0.5)
            elif name == "tau" or name.endswith(".tau"):
                p.fill_(spec["tau"])
            else:
                p.add_(torch.randn_like(p) * 0.1)
    model.eval()
    x = load_file(f"{fixture}/batch.safetensors")["x"]
    with torch.no_grad():
        logits = model(x)
    state = {k: v.clone().contiguous() for k, v in model.state_dict().items()}
    save_file(state, f"{fixture}/paper.safetensors")
    save_file({"logits": logits}, f"{fixture}/paper_logits.safetensors")
    print(f"wrote {fixture}/paper.safetensors ({len(state)} tensors)")


if __name__ == "__main__":
    {"check": check, "make": make}[sys.argv[1]](sys.argv[2])
