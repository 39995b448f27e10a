"""PyTorch oracle for deepres's CIFAR ResNet blocks and its SGD (tests/oracle.rs).

The models are the τ paper's own (Zhang et al. 2022, "Stabilize deep ResNet with a sharp
scaling factor τ", arXiv:1903.07120; its code dayu11/tau-ResNet, cifar/models/resnet_cifar.py
and resnet_cifar_nobn.py) and Fixup's (Zhang, Dauphin, Ma 2019, arXiv:1901.09321; its code
hongyi-zhang/Fixup, cifar/models/fixup_resnet_cifar.py), rewritten here from those files with
their module and parameter names, so that nothing of deepres's code is shared. The optimizers
are torch.optim.SGD set up as each paper's training script does (cifar_train.py): its
parameter groups chosen by name, lr/10 for the scalar ones, and in the τ paper the shared
τ's gradient divided by the number of blocks before each step.

Usage: python3 tau_paper.py forward|sgd FIXTURE_DIR
FIXTURE_DIR holds spec.json and tensors.safetensors written by the Rust test. Exit 0 when
every tensor matches within the tolerance, 1 (with the worst mismatches listed) otherwise.
"""
import json
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file


def conv3x3(cin, cout, stride=1):
    return nn.Conv2d(cin, cout, kernel_size=3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    """resnet_cifar.py: out = relu(identity + bn2(conv2(relu(bn1(conv1(x))))) * tau)."""

    def __init__(self, inplanes, planes, tau, stride=1, downsample=None, pad=True):
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.tau = tau
        self.downsample = downsample
        self.pad = pad  # False: option B's projection already has the block's channels

    def forward(self, x):
        identity = x
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out)) * self.tau
        if self.downsample is not None:
            identity = self.downsample(x)
            if self.pad:
                identity = torch.cat((identity, torch.zeros_like(identity)), 1)
        return F.relu(out + identity)


class BasicBlockNoBN(nn.Module):
    """resnet_cifar_nobn.py: (conv2(relu(conv1(x + b1a) + b1b) + b2a) + b2b) * tau + identity."""

    def __init__(self, inplanes, planes, tau, stride=1, downsample=None):
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.conv2 = conv3x3(planes, planes)
        self.downsample = downsample
        self.tau = tau
        self.bias1a = nn.Parameter(torch.zeros(1))
        self.bias1b = nn.Parameter(torch.zeros(1))
        self.bias2a = nn.Parameter(torch.zeros(1))
        self.bias2b = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        identity = x
        out = self.conv1(x + self.bias1a)
        out = F.relu(out + self.bias1b)
        out = (self.conv2(out + self.bias2a) + self.bias2b) * self.tau
        if self.downsample is not None:
            identity = self.downsample(x)
            identity = torch.cat((identity, torch.zeros_like(identity)), 1)
        return F.relu(out + identity)


class FixupBasicBlock(nn.Module):
    """fixup_resnet_cifar.py: conv2(relu(conv1(x + b1a) + b1b) + b2a) * scale + b2b + identity."""

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.bias1a = nn.Parameter(torch.zeros(1))
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bias1b = nn.Parameter(torch.zeros(1))
        self.bias2a = nn.Parameter(torch.zeros(1))
        self.conv2 = conv3x3(planes, planes)
        self.scale = nn.Parameter(torch.ones(1))
        self.bias2b = nn.Parameter(torch.zeros(1))
        self.downsample = downsample

    def forward(self, x):
        identity = x
        out = self.conv1(x + self.bias1a)
        out = F.relu(out + self.bias1b)
        out = self.conv2(out + self.bias2a)
        out = out * self.scale + self.bias2b
        if self.downsample is not None:
            identity = self.downsample(x + self.bias1a)
            identity = torch.cat((identity, torch.zeros_like(identity)), 1)
        return F.relu(out + identity)


class CifarResNet(nn.Module):
    """The three papers' ResNet-(6n+2) skeletons: `kind` is bn (the τ paper, fixed τ, a
    downsample of AvgPool2d(1, 2) + BatchNorm2d), bn_b (the same blocks with He et al.'s
    option-B projection shortcut, conv1x1 with stride 2 + BatchNorm2d, as torchvision's
    resnet.py builds its `downsample`), nobn (the τ paper, one learnable τ shared by
    all blocks, downsample AvgPool2d(1, 2)) or fixup (Fixup, bias1 after the stem conv, bias2
    before the classifier)."""

    def __init__(self, kind, n, tau, in_channels, num_classes):
        super().__init__()
        self.kind = kind
        self.num_layers = 3 * n
        self.inplanes = 16
        if kind == "nobn":
            self.tau = nn.Parameter(torch.ones(1) * tau)  # shared by all blocks
        else:
            self.tau = tau
        self.conv1 = conv3x3(in_channels, 16)
        if kind in ("bn", "bn_b"):
            self.bn1 = nn.BatchNorm2d(16)
        if kind == "fixup":
            self.bias1 = nn.Parameter(torch.zeros(1))
        self.layer1 = self._make_layer(16, n, 1)
        self.layer2 = self._make_layer(32, n, 2)
        self.layer3 = self._make_layer(64, n, 2)
        if kind == "fixup":
            self.bias2 = nn.Parameter(torch.zeros(1))
        self.fc = nn.Linear(64, num_classes)

    def _make_layer(self, planes, blocks, stride):
        downsample = None
        if stride != 1:
            pool = nn.AvgPool2d(1, stride=stride)
            if self.kind == "bn":
                downsample = nn.Sequential(pool, nn.BatchNorm2d(self.inplanes))
            elif self.kind == "bn_b":
                downsample = nn.Sequential(
                    nn.Conv2d(self.inplanes, planes, kernel_size=1, stride=stride, bias=False),
                    nn.BatchNorm2d(planes))
            elif self.kind == "nobn":
                downsample = nn.Sequential(pool)
            else:
                downsample = pool
        layers = []
        for b in range(blocks):
            cin, s, ds = (self.inplanes, stride, downsample) if b == 0 else (planes, 1, None)
            if self.kind in ("bn", "bn_b"):
                layers.append(BasicBlock(cin, planes, self.tau, s, ds, self.kind == "bn"))
            elif self.kind == "nobn":
                layers.append(BasicBlockNoBN(cin, planes, self.tau, s, ds))
            else:
                layers.append(FixupBasicBlock(cin, planes, s, ds))
            self.inplanes = planes
        return nn.Sequential(*layers)

    def scale_tau_grad(self):
        """The τ paper's average of the shared τ's gradient over the blocks."""
        if self.kind == "nobn":
            self.tau.grad /= self.num_layers

    def forward(self, x):
        x = self.conv1(x)
        if self.kind in ("bn", "bn_b"):
            x = self.bn1(x)
        if self.kind == "fixup":
            x = x + self.bias1
        x = F.relu(x)
        x = self.layer3(self.layer2(self.layer1(x)))
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        if self.kind == "fixup":
            x = x + self.bias2
        return self.fc(x)


def paper_name(name, n):
    """deepres's tensor name → the papers' (state_dict) name; None for deepres-only ones."""
    parts = name.split(".")
    head = {"stem": "conv1", "stem_bn": "bn1", "stem_bias": "bias1", "head_bias": "bias2"}
    if parts[0] in head:
        return ".".join([head[parts[0]]] + parts[1:])
    if parts[0] in ("tau", "fc"):
        return name
    if parts[0] == "blocks":
        k = int(parts[1])
        prefix = f"layer{k // n + 1}.{k % n}"
        rest = parts[2:]
        if rest[0] == "shortcut_conv":  # option B: downsample = (conv1x1, bn)
            return ".".join([prefix, "downsample", "0"] + rest[1:])
        if rest[0] == "shortcut_bn":
            return ".".join([prefix, "downsample", "1"] + rest[1:])
        return ".".join([prefix] + rest)
    return None


def paper_model(spec):
    n = (spec["depth"] - 2) // 6
    model = CifarResNet(spec["kind"], n, spec["tau"], spec["in_channels"], spec["classes"])
    return model.double(), n


def load_into(model, n, tensors):
    """Copies the Rust side's initial tensors (prefix `init.`) into the paper's model; every
    parameter and buffer of the model must receive one."""
    own = dict(model.named_parameters())
    own.update(dict(model.named_buffers()))
    filled = set()
    for key, t in tensors.items():
        if not key.startswith("init."):
            continue
        target = paper_name(key[len("init."):], n)
        if target not in own:
            fail([f"deepres tensor {key} has no counterpart {target} in the paper's model"])
        with torch.no_grad():
            own[target].copy_(t.reshape(own[target].shape))
        filled.add(target)
    missing = [k for k in own if k not in filled and not k.endswith("num_batches_tracked")]
    if missing:
        fail([f"the paper's model has tensors deepres lacks: {missing}"])


def fail(lines):
    print("\n".join(lines))
    sys.exit(1)


def compare(got, want, what, atol, rtol, report):
    """got: the paper model's tensor, want: deepres's."""
    want = want.reshape(got.shape)
    diff = (got - want).abs()
    bound = atol + rtol * want.abs()
    worst = (diff - bound).max().item()
    report.append((worst, f"{what}: max |Δ| {diff.max().item():.3g} (bound {atol}+{rtol}·|x|)"))


def finish(report, what):
    bad = [line for worst, line in report if not worst <= 0]
    if bad:
        fail([f"{what}: {len(bad)} of {len(report)} tensors differ from PyTorch"] + bad[:20])
    print(f"{what}: {len(report)} tensors equal PyTorch's within the tolerance")


def check_forward(spec, t):
    """Eval-mode logits (before the step, with the given running statistics), then train-mode
    logits, loss, every gradient and the batch norms' running statistics."""
    model, n = paper_model(spec)
    load_into(model, n, t)
    atol, rtol = spec["atol"], spec["rtol"]
    report = []
    model.eval()
    with torch.no_grad():
        compare(model(t["x"]), t["eval_logits"], "eval_logits", atol, rtol, report)
    model.train()
    logits = model(t["x"])
    loss = F.cross_entropy(logits, t["y"])
    loss.backward()
    compare(logits.detach(), t["logits"], "logits", atol, rtol, report)
    compare(loss.detach(), t["loss"], "loss", atol, rtol, report)
    params = dict(model.named_parameters())
    buffers = dict(model.named_buffers())
    for key in t:
        if key.startswith("grad."):
            name = paper_name(key[len("grad."):], n)
            compare(params[name].grad, t[key], key, atol, rtol, report)
        if key.startswith("after."):
            name = paper_name(key[len("after."):], n)
            compare(buffers[name], t[key], key, atol, rtol, report)
    finish(report, f"forward/backward of the {spec['kind']} ResNet-{spec['depth']}")


def paper_optimizer(model, spec):
    """torch.optim.SGD as the papers' cifar_train.py sets it up."""
    named = list(model.named_parameters())
    if spec["kind"] == "fixup":  # Fixup: 'bias' and 'scale' in the name train at lr/10
        slow = [p for k, p in named if "bias" in k]
        slow2 = [p for k, p in named if "scale" in k]
        others = [p for k, p in named if not ("bias" in k or "scale" in k)]
    else:  # the τ paper: 'bias1'/'bias2' and 'tau' train at lr/10
        slow = [p for k, p in named if "bias1" in k or "bias2" in k]
        slow2 = [p for k, p in named if "tau" in k]
        others = [p for k, p in named if not ("bias1" in k or "bias2" in k or "tau" in k)]
    lr = spec["lr"][0]
    groups = [
        {"params": slow, "lr": lr / 10.0, "initial_lr": lr / 10.0},
        {"params": slow2, "lr": lr / 10.0, "initial_lr": lr / 10.0},
        {"params": others, "initial_lr": lr},
    ]
    return torch.optim.SGD(groups, lr=lr, momentum=spec["momentum"],
                           weight_decay=spec["weight_decay"])


def check_sgd(spec, t):
    """Steps of the paper's training loop on the Rust side's batches; every parameter after
    the last step against deepres's."""
    model, n = paper_model(spec)
    load_into(model, n, t)
    model.train()
    opt = paper_optimizer(model, spec)
    report = []
    for step, lr in enumerate(spec["lr"]):
        for g in opt.param_groups:  # adjust_learning_rate: every group by the same factor
            g["lr"] = g["initial_lr"] * lr / spec["lr"][0]
        opt.zero_grad()
        loss = F.cross_entropy(model(t[f"x.{step}"]), t[f"y.{step}"])
        loss.backward()
        model.scale_tau_grad()
        opt.step()
        compare(loss.detach(), t[f"loss.{step}"], f"loss of step {step}",
                spec["atol"], spec["rtol"], report)
    params = dict(model.named_parameters())
    for key in t:
        if key.startswith("final."):
            name = paper_name(key[len("final."):], n)
            compare(params[name].detach(), t[key], key, spec["atol"], spec["rtol"], report)
    finish(report, f"{len(spec['lr'])} SGD steps of the {spec['kind']} ResNet-{spec['depth']}")


def main():
    torch.use_deterministic_algorithms(True)
    mode, fixture = sys.argv[1], sys.argv[2]
    with open(f"{fixture}/spec.json") as f:
        spec = json.load(f)
    tensors = load_file(f"{fixture}/tensors.safetensors")
    {"forward": check_forward, "sgd": check_sgd}[mode](spec, tensors)


if __name__ == "__main__":
    main()
