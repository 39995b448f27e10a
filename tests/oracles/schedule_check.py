"""PyTorch oracle for the learning rate deepres records in metrics.csv's `lr` column (the rate
of each epoch's first step), from PyTorch's own schedulers stepped once per step: MultiStepLR
(milestones in epochs, as the τ paper's and He et al.'s recipes give them), StepLR (Marion et
al.'s M8 and M9), CosineAnnealingLR (to 0 over the epochs after the warmup), and a linear
warmup by LinearLR chained in front with SequentialLR.

Usage: python3 schedule_check.py METRICS_CSV KIND LR EPOCHS STEPS MILESTONES GAMMA WARMUP
KIND: multistep | step | cosine | constant; MILESTONES: comma-separated epochs (or "-"; for
step, StepLR's step size in epochs);
WARMUP: warmup epochs. Exit 0 when every epoch's rate matches to a relative 1e-9, 1 otherwise
(every epoch printed). With METRICS_CSV `-`, prints every step's rate instead, one per line
(the caller compares them).
"""
import csv
import sys

import torch


def step_rates(kind, lr, epochs, steps, milestones, gamma, warmup):
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)
    w = warmup * steps
    # The schedule after the warmup, counted in steps from its end.
    if kind == "multistep":
        after = torch.optim.lr_scheduler.MultiStepLR(
            opt, milestones=[(m - warmup) * steps for m in milestones], gamma=gamma
        )
    elif kind == "step":
        # StepLR, its step size in epochs the first (and only) milestone given.
        after = torch.optim.lr_scheduler.StepLR(opt, step_size=milestones[0] * steps, gamma=gamma)
    elif kind == "cosine":
        after = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=(epochs - warmup) * steps)
    else:
        after = torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
    sched = after
    if warmup > 0:
        ramp = torch.optim.lr_scheduler.LinearLR(
            opt, start_factor=1.0 / w, end_factor=1.0, total_iters=w - 1
        )
        sched = torch.optim.lr_scheduler.SequentialLR(opt, [ramp, after], milestones=[w])
    rates = []
    for _ in range(epochs * steps):
        rates.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return rates


def main():
    path, kind, lr, epochs, steps, ms, gamma, warmup = sys.argv[1:]
    milestones = [] if ms == "-" else [int(m) for m in ms.split(",")]
    every = step_rates(kind, float(lr), int(epochs), int(steps), milestones, float(gamma), int(warmup))
    if path == "-":
        print("\n".join(repr(r) for r in every))
        return
    want = every[:: int(steps)]
    with open(path) as f:
        got = [float(r["lr"]) for r in csv.DictReader(f)]
    ok = len(got) == len(want)
    for e, (g, t) in enumerate(zip(got, want), start=1):
        good = abs(g - t) <= 1e-9 * abs(t)
        ok &= good
        print(f"epoch {e}: deepres {g!r}, PyTorch {t!r}{'' if good else '  <- differs'}")
    if len(got) != len(want):
        print(f"{len(got)} rows, {len(want)} epochs")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
