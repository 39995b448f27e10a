#!/usr/bin/env python3
"""Projects the wall time of the τ paper's Tables Z1 and Z2 on one GPU (BENCHMARKS.md) from
the throughputs scripts/gpu_tables.sh measured, and appends them as rows of bench/gpu.csv.

The tables (Zhang et al. 2022, arXiv:2206.06929, Tables 1 and 2; experiments/zhang2022/):
  Z1: depths 20, 32, 44, 56, 110, 1202 x {BN, BN + tau} x 5 seeds = 60 runs;
  Z2: depths 20, 32, 44, 56, 110, 1202 x 6 variants x {CIFAR-10, CIFAR-100} x 5 seeds = 360 runs;
each run 200 epochs of 50,000 training images and a 10,000-image test pass.

Model of the cost (stated in every row's `command`, never measured at depths other than the
two benchmarked ones):
  - seconds per training image of one model alone, and of one member of a pack of N (the pack's
    aggregate images/s, each image of each member once), are linear in the depth d: the line
    through the two measured depths (ResNet-56 and ResNet-110 at full size), extrapolated to
    20-44 and 1202 (the work and the kernel launches of a step are both linear in the blocks);
  - with --graphs only, packs with CUDA graphs (`pack_images_per_second_cuda_graph_on` rows at
    both depths) where they project faster than packs without. Off by default: `deepres sweep
    --pack N` refuses train.cuda_graph: true until a graphed training is shown to learn as an
    ordinary one (on an H200 on 2026-12-04 it did not; docs/config.md);
  - ResNet-1202: in packs of the largest N measured at depth 1202 (its aggregate images/s), else
    alone at its measured one-model rate, else alone on the one-model line; every other depth in
    packs of the largest N measured at the two benchmarked depths;
  - the test pass and the data pipeline: the measured ResNet-110 epoch (training + test pass)
    over its training images at the measured one-model rate, the same factor at every depth.
Hours = sum over runs of 200 x 50,000 x factor x seconds per image(d).

Usage: project_tables.py GPU_CSV --date D --device DEV --commit C [--epochs 200]
                          [--epoch-images 50000] [--graphs]
(the rows of that date, device and commit are the inputs; the last of each key counts).
"""
import argparse
import csv
import sys

Z1 = {"depths": [20, 32, 44, 56, 110, 1202], "runs_per_depth": 2 * 5, "name": "table_z1_hours"}
Z2 = {"depths": [20, 32, 44, 56, 110, 1202], "runs_per_depth": 6 * 2 * 5, "name": "table_z2_hours"}
ALONE = {1202}
TRAIN_IMAGES = 50_000


def depth_of(model):
    return int(model.split("-")[1])


def line(points, what):
    """(a, b) of seconds per image = a + b d through two (d, s) points. A deeper model that
    measured faster per image (timing noise: it cannot be slower to train fewer blocks) gives
    b = 0 at the mean of the two, with a warning, rather than a negative time at depth."""
    (d0, s0), (d1, s1) = points
    b = (s1 - s0) / (d1 - d0)
    if b < 0:
        print(f"project_tables: {what}: ResNet-{d1} measured faster per image than ResNet-{d0}; "
              "the projection takes their mean at every depth", file=sys.stderr)
        return (s0 + s1) / 2, 0.0
    return s0 - b * d0, b


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("csv")
    ap.add_argument("--date", required=True)
    ap.add_argument("--device", required=True)
    ap.add_argument("--commit", required=True)
    ap.add_argument("--epochs", type=int, default=200)
    ap.add_argument("--graphs", action="store_true",
                    help="count graphed packs where faster (graphed training is refused for now)")
    ap.add_argument("--epoch-images", type=int, default=TRAIN_IMAGES,
                    help="training images of the measured epoch (gpu_tables.sh: 50,000 at full size)")
    a = ap.parse_args()
    with open(a.csv, newline="") as f:
        rows = [r for r in csv.DictReader(f)
                if (r["date"], r["device"], r["commit"]) == (a.date, a.device, a.commit)]
    last = {}
    for r in rows:
        last[(r["what"], r["model"], r["precision"], r["pack"])] = float(r["value"])
    precisions = sorted({k[2] for k in last if k[0] == "epoch_seconds"})
    for p in precisions:
        one = {depth_of(m): v for (w, m, q, n), v in last.items()
               if w == "images_per_second" and q == p and n == "1"}
        packs = {}
        for (w, m, q, n), v in last.items():
            if w == "pack_images_per_second" and q == p:
                packs.setdefault(int(n), {})[depth_of(m)] = v
        epoch = [(depth_of(m), v) for (w, m, q, n), v in last.items()
                 if w == "epoch_seconds" and q == p]
        if len(one) < 2 or not packs or not epoch:
            print(f"project_tables: {p}: needs one-model rates at two depths, a pack and an epoch",
                  file=sys.stderr)
            return 1
        depths = sorted(one)[:2]
        # the largest pack measured at both depths (a deeper model's pack may be of another size)
        n = max((k for k in packs if all(d in packs[k] for d in depths)), default=None)
        if n is None:
            print(f"project_tables: {p}: no pack size measured at both depths {depths}",
                  file=sys.stderr)
            return 1
        alone = line([(d, 1 / one[d]) for d in depths], f"{p} one model")
        # the packs' line, and with CUDA graphs where measured at both depths: the faster counts
        ways = [(line([(d, 1 / packs[n][d]) for d in depths], f"{p} pack of {n}"),
                 f"packs of {n}")]
        graphed = {depth_of(m): v for (w, m, q, k), v in last.items()
                   if w == "pack_images_per_second_cuda_graph_on" and q == p and k == str(n)}
        if a.graphs and all(d in graphed for d in depths):
            ways.append((line([(d, 1 / graphed[d]) for d in depths], f"{p} graphed pack of {n}"),
                         f"packs of {n} with CUDA graphs (train.cuda_graph), measured faster"))
        # seconds per image at each depth of ALONE, and how it was had
        deep = {}
        for d in ALONE:
            measured = [k for k in packs if k > 1 and d in packs[k]]
            if measured:
                k = max(measured)
                deep[d] = (1 / packs[k][d], f"ResNet-{d} in packs of {k}, measured")
            elif d in one:
                deep[d] = (1 / one[d], f"ResNet-{d} alone, measured")
            else:
                deep[d] = (alone[0] + alone[1] * d, f"ResNet-{d} alone, on the one-model line")
        d_ep, secs = epoch[-1]
        if d_ep not in one:
            print(f"project_tables: {p}: no one-model rate at the epoch's depth {d_ep}", file=sys.stderr)
            return 1
        factor = secs / (a.epoch_images / one[d_ep])
        for table in (Z1, Z2):
            def hours(packed):
                total = 0.0
                for d in table["depths"]:
                    per_image = deep[d][0] if d in deep else packed[0] + packed[1] * d
                    total += table["runs_per_depth"] * a.epochs * TRAIN_IMAGES * factor * per_image
                return total / 3600
            total, packs_how = min((hours(packed), how) for packed, how in ways)
            deep_how = "; ".join(how for _, how in deep.values())
            how = (f"python3 scripts/project_tables.py (projected: seconds per image linear in "
                   f"depth through ResNet-{depths[0]} and ResNet-{depths[1]}; {packs_how}; "
                   f"{deep_how}; x{factor:.3f} for the test pass from the ResNet-{d_ep} "
                   f"epoch; {a.epochs} epochs)")
            runs = table["runs_per_depth"] * len(table["depths"])
            print(f'{a.date},{a.device},{a.commit},{table["name"]},{runs} runs,{p},{n},'
                  f'{total:.3f},h,"{how}"')
    return 0


if __name__ == "__main__":
    sys.exit(main())
