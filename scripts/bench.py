#!/usr/bin/env python3
"""`make bench`: deepres bench and scripts/bench_torch.py, alternately, on the same machine.

For each round (default 3) and each depth (default ResNet-20, 56, 110) and precision, every
variant runs once, deepres first in odd rounds and last in even ones (so a drift of the
machine's speed does not favour one tool):
  - deepres (its on-device pipeline), and with --cuda-graph also deepres `--cuda-graph`
    (each full-batch step replayed from one captured CUDA graph), labelled `on-device+graph`,
  - PyTorch eager, `--pipeline cpu` (the usual DataLoader),
  - PyTorch eager, `--pipeline gpu` (the dataset on the device, batched crop/flip, as deepres;
    on a CPU device that is "on the CPU, batched"),
  - with --compile, PyTorch `--compile` for each of its pipelines,
  - with --fused-torch, each PyTorch variant again with `--fused` (SGD fused=True, the kernel
    deepres's step uses), labelled `<pipeline>+fused`; the plain variants keep PyTorch's
    default SGD (foreach on CUDA, a for-loop on CPU), PyTorch eager as users write it.
  - with --torch-malloc, each PyTorch variant again with the host-memory setting deepres makes
    at start-up (glibc's MALLOC_* environment variables; deepres calls mallopt), labelled
    `<pipeline>+malloc`: without it PyTorch runs with glibc's defaults, as users run it.
On CPU: fp32 only and few steps (a 2-core machine finishes in about 10 minutes); on CUDA:
fp32 and bf16 (--precisions fp32,bf16,fp16 adds fp16, GradScaler-style loss scaling in both
tools). --channels-last passes `--channels-last` to both tools (model and batches NHWC).

Writes <out>/results.csv (one row per run: date, device, depth, batch, precision, tool,
pipeline, round, images_per_second, memory_format (contiguous | channels_last),
peak_allocated_mib (the first figure of the `peak_gpu_memory:` line, the caching allocator's
peak allocation; empty on CPU); an empty figure for a failed run), <out>/results.md (per
config the median over rounds, its min-max, the ratio deepres / PyTorch of the medians and the
median peak allocation) and every run's full output under <out>/out/ (git-ignored). Standard
library only.
"""
import argparse
import csv
import datetime
import os
import platform
import re
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# (warmup, steps) per depth. CPU: about 10 minutes for 3 rounds x 3 variants on 2 cores.
CPU_STEPS = {20: (1, 6), 56: (1, 3), 110: (1, 2)}
CPU_DEFAULT = (1, 3)
GPU_STEPS = (20, 100)

# The host-memory setting deepres makes at start-up (src/device.rs, keep_freed_host_memory:
# mallopt), as glibc's environment variables, for PyTorch's `+malloc` variants: blocks up to
# 32 MB from the heap, no trimming (16 GB threshold), the heap grown 1 GB at a time.
DEEPRES_MALLOC = {
    "MALLOC_MMAP_THRESHOLD_": str(32 << 20),
    "MALLOC_TRIM_THRESHOLD_": str(16 << 30),
    "MALLOC_TOP_PAD_": str(1 << 30),
}


def fail(msg):
    print(f"error: {msg}", file=sys.stderr)
    sys.exit(2)


def parse_output(text):
    fields = {}
    for line in text.splitlines():
        k, sep, v = line.partition(": ")
        if sep and k not in fields:
            fields[k] = v
    last = text.strip().splitlines()[-1] if text.strip() else ""
    if not last.startswith("images_per_second: "):
        return fields, None
    try:
        return fields, float(last.split(": ", 1)[1])
    except ValueError:
        return fields, None


def peak_allocated(fields):
    """MiB, the first figure of `peak_gpu_memory: A MiB allocated, R MiB reserved ...`; None when n/a."""
    m = re.match(r"\s*([0-9.]+) MiB", fields.get("peak_gpu_memory", ""))
    try:
        return float(m.group(1)) if m else None
    except ValueError:
        return None


def machine_lines(deepres, device_is_cuda):
    lines = []
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    lines.append(f"CPU: {cpu}, {os.cpu_count()} logical cores")
    try:
        info = subprocess.run([deepres, "info"], capture_output=True, text=True, timeout=120).stdout
        for l in info.splitlines():
            if l.startswith(("libtorch:", "gpu", "cudnn_version:")) and (device_is_cuda or not l.startswith("gpu")):
                lines.append(l)
    except (OSError, subprocess.SubprocessError):
        pass
    return lines


def main(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--deepres", default=os.path.join(ROOT, "target/release/deepres"))
    p.add_argument("--python", default=sys.executable, help="the venv's python (torch 2.11.0)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--depths", default="20,56,110")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--precisions", default=None, help="default: fp32 on CPU, fp32,bf16 on CUDA")
    p.add_argument("--pipelines", default="cpu,gpu", help="PyTorch pipelines: cpu (DataLoader), gpu (on-device)")
    p.add_argument("--compile", action="store_true", help="also PyTorch with torch.compile")
    p.add_argument("--fused-torch", action="store_true",
                   help="also the PyTorch variants with --fused (SGD fused=True), as <pipeline>+fused")
    p.add_argument("--cuda-graph", action="store_true",
                   help="also deepres with --cuda-graph (CUDA only), as on-device+graph")
    p.add_argument("--torch-malloc", action="store_true",
                   help="also the PyTorch variants with deepres's host-memory setting (MALLOC_* env), as <pipeline>+malloc")
    p.add_argument("--channels-last", action="store_true",
                   help="both tools with --channels-last (model and batches in NHWC memory format)")
    p.add_argument("--steps", type=int, default=None, help="timed steps (default: per device and depth)")
    p.add_argument("--warmup", type=int, default=None)
    p.add_argument("--threads", type=int, default=None, help="intra-op threads of both tools (default: libtorch's)")
    p.add_argument("--out", default=os.path.join(ROOT, "bench"))
    p.add_argument("--timeout", type=int, default=1800, help="seconds per run")
    a = p.parse_args(argv)

    if not os.path.exists(a.deepres):
        fail(f"{a.deepres}: not built; run `make build` first")
    depths = [int(d) for d in a.depths.split(",") if d]
    pipelines = [x for x in a.pipelines.split(",") if x]
    for x in pipelines:
        if x not in ("cpu", "gpu"):
            fail(f"--pipelines: unknown pipeline {x!r}; accepted: cpu, gpu")

    # Resolve the device once (deepres info), so both tools get the same explicit device.
    device = a.device
    if device == "auto":
        info = subprocess.run([a.deepres, "info"], capture_output=True, text=True).stdout
        device = "cuda:0" if "cuda_available: true" in info else "cpu"
    elif device in ("cuda", "gpu"):
        device = "cuda:0"
    is_cuda = device.startswith("cuda")
    precisions = (a.precisions or ("fp32,bf16" if is_cuda else "fp32")).split(",")
    memory_format = "channels_last" if a.channels_last else "contiguous"

    variants = [("deepres", "on-device", [a.deepres, "bench"])]
    if a.cuda_graph:
        variants.append(("deepres", "on-device+graph", [a.deepres, "bench", "--cuda-graph"]))
    deepres_pipelines = [pl for t, pl, _ in variants if t == "deepres"]
    torch_script = [a.python, os.path.join(ROOT, "scripts/bench_torch.py")]
    for pl in pipelines:
        name = {"cpu": "cpu-loader", "gpu": "on-device"}[pl]
        variants.append(("pytorch", name, torch_script + ["--pipeline", pl]))
        if a.fused_torch:
            variants.append(("pytorch", name + "+fused", torch_script + ["--pipeline", pl, "--fused"]))
        if a.compile:
            variants.append(("pytorch-compile", name, torch_script + ["--pipeline", pl, "--compile"]))
            if a.fused_torch:
                variants.append(("pytorch-compile", name + "+fused",
                                 torch_script + ["--pipeline", pl, "--compile", "--fused"]))
        if a.torch_malloc:
            variants.append(("pytorch", name + "+malloc", torch_script + ["--pipeline", pl]))

    def steps_for(depth):
        w, s = GPU_STEPS if is_cuda else CPU_STEPS.get(depth, CPU_DEFAULT)
        return (a.warmup if a.warmup is not None else w), (a.steps if a.steps is not None else s)

    logs = os.path.join(a.out, "out")  # ignored by git (/bench/out)
    os.makedirs(logs, exist_ok=True)
    csv_path = os.path.join(a.out, "results.csv")
    md_path = os.path.join(a.out, "results.md")
    started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    header = ["date", "device", "depth", "batch", "precision", "tool", "pipeline", "round", "images_per_second",
              "memory_format", "peak_allocated_mib"]
    rows = []
    with open(csv_path, "w", newline="") as f:
        csv.writer(f).writerow(header)
    device_desc = device
    threads_seen = set()
    load_start = os.getloadavg()
    for r in range(1, a.rounds + 1):
        order = variants if r % 2 == 1 else list(reversed(variants))
        for depth in depths:
            warmup, steps = steps_for(depth)
            for prec in precisions:
                for tool, pipeline, cmd in order:
                    args = cmd + ["--depth", str(depth), "--batch", str(a.batch), "--steps", str(steps),
                                  "--warmup", str(warmup), "--precision", prec, "--device", device]
                    if a.threads is not None:
                        args += ["--threads", str(a.threads)]
                    if a.channels_last:
                        args.append("--channels-last")
                    tag = f"{tool}-{pipeline}-d{depth}-{prec}{'-cl' if a.channels_last else ''}-r{r}"
                    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
                    env = dict(os.environ, **DEEPRES_MALLOC) if pipeline.endswith("+malloc") else None
                    try:
                        proc = subprocess.run(args, capture_output=True, text=True, timeout=a.timeout, cwd=ROOT,
                                              env=env)
                        out, err, rc = proc.stdout, proc.stderr, proc.returncode
                    except subprocess.TimeoutExpired as e:
                        out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
                        err, rc = f"timed out after {a.timeout} s", 124
                    with open(os.path.join(logs, tag + ".txt"), "w") as f:
                        prefix = "".join(f"{k}={v} " for k, v in DEEPRES_MALLOC.items()) if env else ""
                        f.write(prefix + " ".join(args) + "\n\n" + out + ("\n--- stderr\n" + err if err else ""))
                    fields, ips = parse_output(out)
                    peak = peak_allocated(fields)
                    if rc != 0 or ips is None:
                        print(f"{tag}: FAILED (exit {rc}): {err.strip().splitlines()[-1] if err.strip() else ''}", flush=True)
                        ips, peak = None, None
                    else:
                        mem = f", peak {peak:.1f} MiB allocated" if peak is not None else ""
                        print(f"{tag}: {ips:.2f} images/s ({fields.get('ms_per_step', '?')} ms/step{mem})", flush=True)
                        threads_seen.add(f"{tool} {fields.get('threads', '?')}")
                        if is_cuda and tool == "deepres" and "device" in fields:
                            device_desc = fields["device"]
                    row = [date, device, depth, a.batch, prec, tool, pipeline, r, "" if ips is None else f"{ips:.3f}",
                           memory_format, "" if peak is None else f"{peak:.1f}"]
                    rows.append(row)
                    with open(csv_path, "a", newline="") as f:
                        csv.writer(f).writerow(row)

    # The table: per (depth, precision, memory format), the median over rounds of each variant.
    def cell(vals):
        if not vals:
            return "failed", None
        m = statistics.median(vals)
        return (f"{m:.1f} [{min(vals):.1f}-{max(vals):.1f}]" if len(vals) > 1 else f"{m:.1f}"), m

    names = [(t, pl) for t, pl, _ in variants]
    torch_names = [n for n in names if n[0] != "deepres"]
    md = [
        f"# deepres bench vs PyTorch eager ({started})",
        "",
        f"Device: {device_desc}; batch {a.batch}; threads {', '.join(sorted(threads_seen)) or '?'}; {a.rounds} rounds, alternating; "
        f"steps per run (warmup + timed): "
        + ", ".join(f"ResNet-{d}: {steps_for(d)[0]} + {steps_for(d)[1]}" for d in depths) + ".",
        "",
    ]
    load_end = os.getloadavg()
    md += ["- " + l for l in machine_lines(a.deepres, is_cuda)]
    md.append(f"- load average (1 min) at the start {load_start[0]:.2f}, at the end {load_end[0]:.2f} "
              "(other work on the machine slows both tools, unevenly)")
    md += [
        "",
        "Images/s: median over the rounds [min-max]; ratio = deepres median / PyTorch median "
        "(> 1: deepres faster). Pipelines: on-device = the dataset on the device, batched crop + flip "
        "(deepres's; on a CPU device, on the CPU); cpu-loader = PyTorch's DataLoader with per-image "
        "transforms in worker processes; +fused = PyTorch with SGD fused=True (deepres's kernel), "
        "without it PyTorch's default SGD (foreach on CUDA, a for-loop on CPU); +malloc = PyTorch with "
        "the host-memory setting deepres makes at start-up (glibc MALLOC_* environment: mmap threshold "
        "32 MB, no trim, 1 GB top pad), without it glibc's defaults. "
        "Raw figures: results.csv; full outputs: out/.",
        "",
    ]
    if is_cuda:
        md += [
            "Peak memory: median over the rounds of the CUDA caching allocator's peak allocation "
            "(max_memory_allocated, MiB), per tool.",
            "",
        ]
    head = ["ResNet", "precision", "memory format", "deepres pipeline", "deepres"]
    for t, pl in torch_names:
        head += [f"{t} {pl}", f"ratio vs {pl}" + (" (compile)" if t != "pytorch" else "")]
    if is_cuda:
        head += ["peak MiB deepres"] + [f"peak MiB {t} {pl}" for t, pl in torch_names]
    md.append("| " + " | ".join(head) + " |")
    md.append("|" + "---|" * len(head))

    def median_peak(vals):
        return f"{statistics.median(vals):.1f}" if vals else "n/a"

    for depth in depths:
        for prec in precisions:
            def sel(t, pl, col):
                return [float(x[col]) for x in rows if x[2] == depth and x[4] == prec and x[5] == t
                        and x[6] == pl and x[9] == memory_format and x[8] and x[col]]
            for dpl in deepres_pipelines:
                ours_s, ours = cell(sel("deepres", dpl, 8))
                line = [str(depth), prec, memory_format, dpl, ours_s]
                for t, pl in torch_names:
                    s, m = cell(sel(t, pl, 8))
                    ratio = f"{ours / m:.2f}" if ours and m else "n/a"
                    line += [s, ratio]
                if is_cuda:
                    line += [median_peak(sel("deepres", dpl, 10))]
                    line += [median_peak(sel(t, pl, 10)) for t, pl in torch_names]
                md.append("| " + " | ".join(line) + " |")
    md.append("")
    with open(md_path, "w") as f:
        f.write("\n".join(md))
    print("\n".join(md))
    print(f"written: {csv_path}, {md_path}")


if __name__ == "__main__":
    main(sys.argv[1:])
