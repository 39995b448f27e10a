"""PyTorch oracle for the τ paper's fully connected ResNet in deepres's stability probe
(tests/probe.rs, `fc_ratios`).

The model is the paper's eq. (1) (Zhang et al. 2022, "Stabilize deep ResNet with a sharp
scaling factor τ", arXiv:1903.07120, Section 2), written here from the paper, not from
deepres: h_0 = relu(A x), h_l = relu(h_{l-1} + τ W_l h_{l-1}) for l = 1..L, logits B h_L,
ℓ the mean cross-entropy; A ~ N(0, 1/d_in), W_l ~ N(0, 2/m), B ~ N(0, 1/m), drawn from
torch's generator after torch.manual_seed(seed) in the order A, W_1 … W_L, B, each a randn of
shape [in, out] (libtorch's CPU generator: the same numbers deepres draws).

Usage: python3 fc_probe.py FIXTURE_DIR
FIXTURE_DIR holds tensors.safetensors (x, y, and cases: rows of blocks, τ, seed, width,
classes, forward ratio, backward ratio as deepres measured them). Exit 0 when every ratio
matches to a relative 1e-4, 1 otherwise (every case listed).
"""
import math
import sys

import torch
import torch.nn.functional as F
from safetensors.torch import load_file


def ratios(x, y, blocks, tau, width, seed, classes):
    torch.manual_seed(seed)
    xf = x.reshape(x.shape[0], -1)
    d_in = xf.shape[1]
    a = torch.randn(d_in, width) / math.sqrt(d_in)
    h0 = F.relu(xf @ a).detach().requires_grad_(True)
    h = h0
    for _ in range(blocks):
        w = torch.randn(width, width) * math.sqrt(2.0 / width)
        h = F.relu(h + tau * (h @ w))
    h.retain_grad()
    head = torch.randn(width, classes) / math.sqrt(width)
    loss = F.cross_entropy(h @ head, y)
    loss.backward()
    fwd = (h.norm() / h0.norm()).item()
    bwd = (h0.grad.norm() / h.grad.norm()).item()
    return fwd, bwd


def main():
    t = load_file(sys.argv[1] + "/tensors.safetensors")
    x, y, cases = t["x"], t["y"], t["cases"].double()
    bad = 0
    for row in cases.tolist():
        blocks, tau, seed, width, classes, fwd, bwd = row
        want = ratios(x, y, int(blocks), tau, int(width), int(seed), int(classes))
        errs = [abs(g - w) / abs(w) for g, w in zip((fwd, bwd), want)]
        ok = max(errs) < 1e-4
        bad += not ok
        print(f"L={int(blocks)} tau={tau:.4g} seed={int(seed)}: deepres ({fwd:.6g}, {bwd:.6g}) "
              f"torch ({want[0]:.6g}, {want[1]:.6g}) {'ok' if ok else 'MISMATCH'}")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
