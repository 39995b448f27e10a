"""Oracle for the metrics of Marion et al.'s Figures M1-M5 (arXiv:2206.06929): the authors' own
measurement loop (PierreMarion23/scaling-resnets, experiment_scaling_initialization.py,
`run_experiment`) with their i.i.d. FullResNet (models.py: `create_linear_layer`, uniform on
±√(3/fan_in), no biases; the scale 1 / depth ** scaling), rewritten here: per random model, an
input x0 ~ U[0, 1]^dim_input and a target ~ U[0, 1], the loss ‖B h_L − target‖², and
  forward  = ‖h_L − h_0‖ / ‖h_0‖,   backward = ‖∂ℓ/∂h_L − ∂ℓ/∂h_0‖ / ‖∂ℓ/∂h_L‖.

Usage: python3 marion_scaling.py DEPTH WIDTH DIM_INPUT MODELS SEED BETA [BETA ...]
Prints, per β, "beta forward_mean forward_se backward_mean backward_se" (standard errors of
the means over the models).
"""
import math
import sys

import torch
from torch import nn


def create_linear_layer(in_features, out_features):
    layer = nn.Linear(in_features, out_features, bias=False)
    length = torch.sqrt(torch.Tensor([3. / in_features]))
    layer.weight = nn.Parameter(2 * length * torch.rand((out_features, in_features)) - length)
    return layer


class FullResNet(nn.Module):
    def __init__(self, first_coord, final_width, width, depth, scaling):
        super().__init__()
        self.depth = depth
        self.activation = nn.ReLU()
        self.scaling_weight = torch.full((depth,), 1 / (float(depth) ** scaling))
        self.init = create_linear_layer(first_coord, width)
        self.inner_weights = nn.Sequential(
            *[create_linear_layer(width, width) for _ in range(depth)])
        self.outer_weights = nn.Sequential(
            *[create_linear_layer(width, width) for _ in range(depth)])
        self.final = create_linear_layer(width, final_width)

    def forward_hidden_state(self, hidden_state):
        for k in range(self.depth):
            hidden_state = hidden_state + (
                self.scaling_weight[k] *
                self.outer_weights[k](self.activation(self.inner_weights[k](hidden_state))))
        return hidden_state


def mean_se(values):
    n = len(values)
    m = sum(values) / n
    var = sum((v - m) ** 2 for v in values) / (n - 1)
    return m, math.sqrt(var / n)


def main():
    depth, width, dim_input, models, seed = (int(a) for a in sys.argv[1:6])
    betas = [float(b) for b in sys.argv[6:]]
    torch.manual_seed(seed)
    for beta in betas:
        fwd, bwd = [], []
        for _ in range(models):
            x0 = torch.rand((1, dim_input))
            target = torch.rand((1,))
            model = FullResNet(dim_input, 1, width, depth, beta)
            h_0 = model.init(x0)
            h_L = model.forward_hidden_state(h_0)
            output = model.final(h_L)
            h_0.retain_grad()
            h_L.retain_grad()
            loss = torch.norm(output - target) ** 2
            loss.backward()
            fwd.append((torch.norm(h_L - h_0) / torch.norm(h_0)).item())
            bwd.append((torch.norm(h_L.grad - h_0.grad) / torch.norm(h_L.grad)).item())
        print(beta, *mean_se(fwd), *mean_se(bwd))


if __name__ == "__main__":
    main()
