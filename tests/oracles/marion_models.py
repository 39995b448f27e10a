"""PyTorch oracle for deepres's two models of Marion et al. (2022, "Scaling ResNets in the
large-depth regime", arXiv:2206.06929): FullResNet ("res-3") and SimpleResNet ("res-1"), as the
authors' code has them (PierreMarion23/scaling-resnets, models.py: `ResNet.forward` =
final(forward_hidden_state(init(x))), the scale 1 / depth ** scaling per layer, nn.Linear
layers, ReLU), rewritten here with their names so that nothing of deepres's code is shared.
deepres's weights are loaded into it.

Usage: python3 marion_models.py FIXTURE_DIR
FIXTURE_DIR holds spec.json ({"model": "full" | "simple", "depth", "scaling", "atol"}) and
tensors.safetensors (A `[models, d, d_in]`, W and V `[models, L, d, d]`, bias `[models, L, d]`
for the simple model, B `[models, d_out, d]`, inputs x `[n, d_in]`, and deepres's h_L and output
`[models, n, ·]`). Exit 0 when both match within atol for every model, 1 otherwise.
"""
import json
import sys

import torch
import torch.nn as nn
from safetensors.torch import load_file


def linear(weight, bias=None):
    layer = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None).double()
    layer.weight = nn.Parameter(weight.clone())
    if bias is not None:
        layer.bias = nn.Parameter(bias.clone())
    return layer


class ResNet(nn.Module):
    def __init__(self, depth, scaling, init, final):
        super().__init__()
        self.depth = depth
        self.activation = nn.ReLU()
        self.scaling_weight = torch.full((depth,), 1 / (float(depth) ** scaling), dtype=torch.float64)
        self.init = init
        self.final = final

    def forward(self, x):
        hidden_state = self.init(x)
        hidden_state = self.forward_hidden_state(hidden_state)
        return self.final(hidden_state)


class SimpleResNet(ResNet):
    def __init__(self, depth, scaling, init, final, outer_weights):
        super().__init__(depth, scaling, init, final)
        self.outer_weights = outer_weights

    def forward_hidden_state(self, hidden_state):
        for k in range(self.depth):
            hidden_state = hidden_state + self.scaling_weight[k] * \
                           self.outer_weights[k](self.activation(hidden_state))
        return hidden_state


class FullResNet(ResNet):
    def __init__(self, depth, scaling, init, final, inner_weights, outer_weights):
        super().__init__(depth, scaling, init, final)
        self.inner_weights = inner_weights
        self.outer_weights = outer_weights

    def forward_hidden_state(self, hidden_state):
        for k in range(self.depth):
            hidden_state = hidden_state + (
                    self.scaling_weight[k] *
                    self.outer_weights[k](
                        self.activation(self.inner_weights[k](hidden_state))
                    )
            )
        return hidden_state


def model_of(spec, t, m):
    depth, scaling = spec["depth"], spec["scaling"]
    init, final = linear(t["A"][m]), linear(t["B"][m])
    outer = nn.Sequential(*[
        linear(t["V"][m, k], t["bias"][m, k] if spec["model"] == "simple" else None)
        for k in range(depth)])
    if spec["model"] == "simple":
        return SimpleResNet(depth, scaling, init, final, outer)
    inner = nn.Sequential(*[linear(t["W"][m, k]) for k in range(depth)])
    return FullResNet(depth, scaling, init, final, inner, outer)


def main():
    fixture = sys.argv[1]
    with open(f"{fixture}/spec.json") as f:
        spec = json.load(f)
    t = load_file(f"{fixture}/tensors.safetensors")
    bad = []
    with torch.no_grad():
        for m in range(t["A"].shape[0]):
            net = model_of(spec, t, m)
            h = net.forward_hidden_state(net.init(t["x"]))
            out = net(t["x"])
            for what, got, want in [("h_L", h, t["h_L"][m]), ("output", out, t["out"][m])]:
                err = (got - want).abs().max().item()
                line = f"{spec['model']} model {m}: {what} max |Δ| {err:.3g}"
                print(line)
                if not err <= spec["atol"]:
                    bad.append(line)
    if bad:
        print("\n".join(["differs from the authors' forward pass:"] + bad))
        sys.exit(1)


if __name__ == "__main__":
    main()
