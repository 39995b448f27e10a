#!/usr/bin/env python3
"""PyTorch eager baseline of `deepres bench`: the same training step, timed the same way.

Model: He et al.'s CIFAR ResNet-(6n+2), exactly deepres's default (`ResNet::new` with BN,
shortcut A, tau = 1): 3x3 stem conv 3->16 + BN + ReLU; 3 stages of n post-activation basic
blocks (conv3x3-BN-ReLU-conv3x3-BN, added to the shortcut, ReLU) with 16/32/64 channels, the
first block of stages 2 and 3 with stride 2 and the option-A shortcut x[:, :, ::2, ::2] with
zero channels appended; global average pooling (mean over H, W) and a linear layer to 10
classes. Init: convs N(0, 2/(9*out_channels)) (Kaiming normal, fan-out), BN gamma = 1,
beta = 0, the linear layer PyTorch's default; no conv biases.

Step (the same work as deepres's `train::train_epoch`, per batch): the batch (see the two
pipelines below; with --channels-last converted to channels-last after normalization),
forward (fp16/bf16: torch.autocast on CUDA, logits back to fp32), cross-entropy, zero_grad
(PyTorch's default, set_to_none, as deepres), backward, the global gradient norm every step,
as deepres computes it (torch.nn.utils.get_total_norm over the non-None gradients: one
_foreach_norm launch per device and dtype, then the norm of the stacked norms; foreach=True on
CUDA, the default on CPU; accumulated on the device, never read inside the loop),
torch.optim.SGD (lr 0.1, momentum 0.9, weight decay 1e-4), and the loss and accuracy sums
accumulated on the device. The optimizer is PyTorch's default implementation (foreach on
CUDA, a per-parameter for-loop on CPU), PyTorch eager as users write it; --fused passes
fused=True (torch._fused_sgd_, the same kernel deepres's step uses). fp16: torch.amp.GradScaler
with its defaults (init scale 2**16, growth 2, backoff 0.5, interval 2000; steps with inf/NaN
gradients skipped), as deepres's dynamic loss scaling: scale(loss).backward(), unscale_ before
the gradient norm, step, update. bf16: autocast only, no scaler. cuDNN benchmark mode on, as
in deepres. --channels-last: the model's 4-D parameters and every input batch in channels-last
(NHWC) memory format, as deepres's --channels-last.

Data: synthetic uint8 images of CIFAR's shape (3x32x32, 10 classes), a whole number of
batches, at most 50,000 images (the same count deepres uses), epochs cycled; augmentation:
random crop with zero padding 4 and horizontal flip with probability 1/2, then
normalization by the per-channel mean/std.
  --pipeline cpu: the usual torchvision-style input pipeline: a Dataset whose __getitem__
      transforms one image on the CPU (pad, random crop, random flip, to float, normalize; plain
      torch ops, since torchvision is not in the project's venv), a DataLoader with shuffling,
      --workers worker processes (default 2, torchvision's CIFAR tutorial's) and pinned memory
      when the device is CUDA, then .to(device, non_blocking=True).
  --pipeline gpu: deepres's pipeline: the dataset on the device as uint8, per epoch a randperm
      on the device, per batch index_select, float/255, crop by zero padding + two batched
      gathers, flip by where(), normalize (on a CPU device: all of it on the CPU).

Timing: --warmup untimed steps, then --windows windows of --steps steps; the device is
synchronized only before and after each window. images/s is the median window's.

Output: `key: value` lines like deepres bench's; the last line is `images_per_second: X`.
On CUDA, `peak_gpu_memory: A MiB allocated, R MiB reserved (caching allocator peaks)`
(torch.cuda.max_memory_allocated / max_memory_reserved, deepres's format) and
`gpu_memory_in_use: M MiB (cuMemGetInfo at the end)` (the reservation + the CUDA context).
Errors: one line `error: ...` on stderr, exit status 2.

--models N (N > 1): PyTorch's own way of training many small models at once, the
model-ensembling recipe (torch.func.stack_module_state + functional_call + vmap(grad)): N
ResNets (seeds 0 … N−1) stacked, each on its own batch from the stream, one vmapped
forward/backward, torch.optim.SGD over the stacked parameters (elementwise, so per model the
same update), the gradient norm per model. BatchNorm runs without running statistics
(torch.func.replace_all_batch_norm_modules_: vmap cannot update them in place); batch
statistics, as in training, are unchanged. bf16: autocast inside the vmapped function around
the forward (functional_call), as in the single-model step; BatchNorm's weight and bias are
cast to the activation dtype inside the forward (a cast node, so their gradients and the
optimizer stay fp32): PyTorch's vmap batching rule for batch_norm's backward fails on a bf16
input with fp32 weight ("expected scalar type BFloat16 but found Float", pytorch issue 184890),
wherever the autocast is placed. images/s counts all N models' images (the aggregate, as
`deepres bench --pack N`). fp16 and --compile are refused with --models.

Usage: python scripts/bench_torch.py --depth 56 --batch 128 --steps 50 --warmup 10 \
           --precision fp32|fp16|bf16 --device auto|cpu|cuda|cuda:N --pipeline cpu|gpu [--compile] \
           [--fused] [--channels-last]
"""
import argparse
import statistics
import sys
import time

MAX_IMAGES = 50_000


def fail(msg):
    print(f"error: {msg}", file=sys.stderr)
    sys.exit(2)


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--depth", type=int, default=56)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--precision", default="fp32")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--windows", type=int, default=1)
    p.add_argument("--pipeline", default="cpu")
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers (--pipeline cpu)")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--fused", action="store_true",
                   help="SGD with fused=True (torch._fused_sgd_, deepres's kernel); default: PyTorch's default SGD")
    p.add_argument("--channels-last", action="store_true",
                   help="model and input batches in channels-last (NHWC) memory format")
    p.add_argument("--models", type=int, default=1,
                   help="N > 1: N models trained at once with torch.func (stack_module_state + vmap)")
    p.add_argument("--no-grad-norm", action="store_true", help="skip the per-step gradient norm (profiling only)")
    a = p.parse_args(argv)
    if a.depth < 8 or (a.depth - 2) % 6 != 0:
        fail(f"--depth: depth {a.depth} is not 6n+2 with n >= 1 (CIFAR ResNet)")
    for flag, v, lo in [("--batch", a.batch, 1), ("--steps", a.steps, 1), ("--warmup", a.warmup, 0),
                        ("--windows", a.windows, 1), ("--workers", a.workers, 0)]:
        if v < lo:
            fail(f"{flag} {v}: must be at least {lo}")
    if a.models < 1:
        fail(f"--models {a.models}: must be at least 1")
    if a.models > 1 and (a.precision == "fp16" or a.compile):
        fail("--models: the torch.func ensemble runs fp32 or bf16 without --compile")
    if a.threads is not None and a.threads < 1:
        fail(f"--threads {a.threads}: must be at least 1")
    if a.precision not in ("fp32", "fp16", "bf16"):
        fail(f"--precision {a.precision!r}: unknown; accepted: fp32, fp16, bf16 (CUDA only)")
    if a.pipeline not in ("cpu", "gpu"):
        fail(f"--pipeline {a.pipeline!r}: unknown; accepted: cpu (DataLoader), gpu (dataset on the device)")
    return a


def main(argv):
    a = parse_args(argv)
    import warnings
    warnings.filterwarnings("ignore", message="Failed to initialize NumPy")  # the venv has no numpy
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    if a.threads is not None:
        torch.set_num_threads(a.threads)

    # Device, as deepres's select_device: CUDA asked for and absent is an error.
    if a.device == "auto":
        device = torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    elif a.device == "cpu":
        device = torch.device("cpu")
    elif a.device in ("cuda", "gpu") or a.device.startswith("cuda:"):
        idx = 0 if ":" not in a.device else a.device.split(":", 1)[1]
        try:
            idx = int(idx)
        except ValueError:
            fail(f"--device: unknown device {a.device!r}; accepted: auto, cpu, cuda, cuda:N")
        if not torch.cuda.is_available():
            fail(f"--device {a.device}: CUDA is not available here; use --device cpu or auto")
        if idx >= torch.cuda.device_count():
            fail(f"--device {a.device}: only {torch.cuda.device_count()} CUDA device(s)")
        device = torch.device(f"cuda:{idx}")
    else:
        fail(f"--device: unknown device {a.device!r}; accepted: auto, cpu, cuda, cuda:N")
    cuda = device.type == "cuda"
    if a.precision != "fp32" and not cuda:
        fail(f"--precision {a.precision}: needs a CUDA device (autocast); the device is cpu, which runs fp32 only: use --precision fp32")
    if cuda:
        torch.backends.cudnn.benchmark = True
        torch.cuda.set_device(device)
    amp_dtype = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}[a.precision]

    class Block(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.down = stride != 1 or cin != cout
            self.extra = cout - cin

        def forward(self, x):
            out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
            skip = F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, 0, self.extra)) if self.down else x
            return F.relu(skip + out)

    class ResNet(nn.Module):
        def __init__(self, depth, classes=10):
            super().__init__()
            n = (depth - 2) // 6
            self.stem = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
            self.stem_bn = nn.BatchNorm2d(16)
            blocks, cin = [], 16
            for stage in range(3):
                cout = 16 << stage
                for b in range(n):
                    blocks.append(Block(cin, cout, 2 if stage > 0 and b == 0 else 1))
                    cin = cout
            self.blocks = nn.Sequential(*blocks)
            self.fc = nn.Linear(cin, classes)
            self.num_blocks = 3 * n
            for m in self.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.normal_(m.weight, 0.0, (2.0 / (9 * m.out_channels)) ** 0.5)
                elif isinstance(m, nn.BatchNorm2d):
                    nn.init.ones_(m.weight)
                    nn.init.zeros_(m.bias)

        def forward(self, x):
            h = F.relu(self.stem_bn(self.stem(x)))
            h = self.blocks(h)
            return self.fc(h.mean((2, 3)))

    # Data: the same number of images as deepres bench.
    needed = a.warmup + a.steps * a.windows
    batches = min(needed, max(MAX_IMAGES // a.batch, 1))
    images_n = batches * a.batch
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (images_n, 3, 32, 32), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, 10, (images_n,), dtype=torch.int64, generator=g)
    xf = images.double() / 255.0
    mean = xf.mean((0, 2, 3)).float()
    std = xf.std((0, 2, 3), unbiased=False).float()
    del xf
    pad = 4

    if a.pipeline == "cpu":
        class Augmented(torch.utils.data.Dataset):
            """Per image, on the CPU, like torchvision's RandomCrop(32, padding=4),
            RandomHorizontalFlip(), ToTensor(), Normalize(mean, std)."""

            def __init__(self, images, labels):
                self.images, self.labels = images, labels
                self.mean, self.std = mean.view(3, 1, 1), std.view(3, 1, 1)

            def __len__(self):
                return len(self.labels)

            def __getitem__(self, i):
                img = F.pad(self.images[i], (pad, pad, pad, pad))
                oy, ox = torch.randint(0, 2 * pad + 1, (2,)).tolist()
                img = img[:, oy:oy + 32, ox:ox + 32]
                if torch.rand(()) < 0.5:
                    img = img.flip(-1)
                img = img.float().div_(255.0)
                return (img - self.mean) / self.std, self.labels[i]

        loader = torch.utils.data.DataLoader(
            Augmented(images, labels), batch_size=a.batch, shuffle=True, drop_last=True,
            num_workers=a.workers, pin_memory=cuda, persistent_workers=a.workers > 0)

        def batch_stream():
            while True:
                for x, y in loader:
                    x = x.to(device, non_blocking=True)
                    if a.channels_last:
                        x = x.contiguous(memory_format=torch.channels_last)
                    yield x, y.to(device, non_blocking=True)
        pipeline_desc = (f"cpu (DataLoader, {a.workers} worker(s), per-image crop pad 4 + flip on the CPU"
                         f"{', pinned memory' if cuda else ''})")
    else:
        d_images, d_labels = images.to(device), labels.to(device)
        d_mean, d_std = mean.view(1, 3, 1, 1).to(device), std.view(1, 3, 1, 1).to(device)
        ar = torch.arange(32, device=device)

        def augment(x):
            b = x.shape[0]
            off_y = torch.randint(0, 2 * pad + 1, (b,), device=device)
            off_x = torch.randint(0, 2 * pad + 1, (b,), device=device)
            padded = F.pad(x, (pad, pad, pad, pad))
            rows = (off_y.view(b, 1) + ar.view(1, 32)).view(b, 1, 32, 1).expand(b, 3, 32, 32 + 2 * pad)
            x = padded.gather(2, rows)
            cols = (off_x.view(b, 1) + ar.view(1, 32)).view(b, 1, 1, 32).expand(b, 3, 32, 32)
            x = x.gather(3, cols)
            mask = (torch.rand(b, device=device) < 0.5).view(b, 1, 1, 1)
            return torch.where(mask, x.flip(3), x)

        def batch_stream():
            while True:
                perm = torch.randperm(images_n, device=device)
                for start in range(0, images_n, a.batch):
                    idx = perm[start:start + a.batch]
                    x = d_images.index_select(0, idx).float() / 255.0
                    x = (augment(x) - d_mean) / d_std
                    if a.channels_last:
                        x = x.contiguous(memory_format=torch.channels_last)
                    yield x, d_labels.index_select(0, idx)
        pipeline_desc = "on-device (dataset on the device as uint8, batched crop pad 4 + flip by gather)"

    torch.manual_seed(0)
    model = ResNet(a.depth).to(device)
    if a.channels_last:
        model = model.to(memory_format=torch.channels_last)  # the 4-D parameters (conv weights)
    parameters = sum(p.numel() for p in model.parameters() if p.requires_grad)
    params = [p for p in model.parameters() if p.requires_grad]
    try:
        opt = torch.optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=1e-4,
                              **({"fused": True} if a.fused else {}))
    except RuntimeError as e:
        fail(f"--fused: {str(e).splitlines()[0] if str(e) else e}")
    scaler = torch.amp.GradScaler("cuda") if a.precision == "fp16" else None
    norm_foreach = True if cuda else None
    fwd = torch.compile(model) if a.compile else model
    model.train()

    stream = batch_stream()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device)
    gn_sum = torch.zeros((), device=device)

    def steps(k):
        nonlocal loss_sum, correct, gn_sum
        for _ in range(k):
            x, y = next(stream)
            if amp_dtype is None:
                logits = fwd(x)
            else:
                with torch.autocast(device_type="cuda", dtype=amp_dtype):
                    logits = fwd(x)
                logits = logits.float()
            loss = F.cross_entropy(logits, y)
            opt.zero_grad()
            if scaler is None:
                loss.backward()
            else:
                scaler.scale(loss).backward()
                scaler.unscale_(opt)
            if not a.no_grad_norm:
                grads = [p.grad for p in params if p.grad is not None]
                gn_sum += torch.nn.utils.get_total_norm(grads, norm_type=2.0, foreach=norm_foreach)
            if scaler is None:
                opt.step()
            else:
                scaler.step(opt)
                scaler.update()
            loss_sum += loss.detach() * y.shape[0]
            correct += (logits.argmax(-1) == y).sum().float()

    if a.models > 1:
        run, parameters = ensemble(a, ResNet, device, amp_dtype, stream, torch, F)
    else:
        run = steps

    def sync():
        if cuda:
            torch.cuda.synchronize(device)

    sync()
    t0 = time.perf_counter()
    run(a.warmup)
    sync()
    warmup_s = time.perf_counter() - t0
    windows = []
    for _ in range(a.windows):
        sync()
        t = time.perf_counter()
        run(a.steps)
        sync()
        windows.append(time.perf_counter() - t)
    per_step = a.batch * a.models
    total = (a.warmup + a.steps * a.windows) * per_step
    sums = run.sums if a.models > 1 else (loss_sum, correct, gn_sum)
    mean_loss = sums[0].item() / total
    sums[1].item(), sums[2].item()

    rates = [a.steps * per_step / max(s, 1e-12) for s in windows]
    ms = [1e3 * s / a.steps for s in windows]
    out = [
        "tool: pytorch",
        f"torch: {torch.__version__}",
        f"model: ResNet-{a.depth} (L = {3 * ((a.depth - 2) // 6)} blocks, {parameters} parameters, BN, shortcut A, tau 1)"
        + (" torch.compile" if a.compile else " eager"),
        f"batch: {a.batch}" + (f" per model, {a.models} models (torch.func stack_module_state + vmap, "
                               "BN without running statistics)" if a.models > 1 else ""),
        f"precision: {a.precision}"
        + (" (GradScaler: init scale 2**16, growth 2, backoff 0.5, interval 2000)" if scaler is not None else "")
        + (f" (BN weight/bias cast to {a.precision} in the vmapped forward)" if a.models > 1 and amp_dtype else ""),
        f"memory_format: {'channels_last' if a.channels_last else 'contiguous'}",
        "optimizer: " + ("SGD fused=True" if a.fused else "SGD (default: foreach on CUDA, for-loop on CPU)"),
        f"pipeline: {pipeline_desc}",
        f"data: synthetic 3x32x32, {images_n} images, epochs cycled",
        f"device: {device}",
        f"threads: {torch.get_num_threads()}",
        f"grad_norm: {'off (profiling only)' if a.no_grad_norm else 'every step (as deepres)'}",
        f"warmup: {a.warmup} steps, {warmup_s:.3f} s",
    ]
    for i, (s, m, r) in enumerate(zip(windows, ms, rates)):
        out.append(f"window {i + 1}: {a.steps} steps, {s:.3f} s, {m:.2f} ms/step, {r:.1f} images/s")
    out.append(f"steps: {a.steps * a.windows} timed ({a.windows} window(s) of {a.steps})")
    out.append(f"seconds: {sum(windows):.3f}")
    spread = ""
    if len(ms) > 1:
        spread = f" (windows min/median/max {min(ms):.2f}/{statistics.median(ms):.2f}/{max(ms):.2f})"
    out.append(f"ms_per_step: {1e3 * sum(windows) / (a.steps * a.windows):.2f}{spread}")
    if cuda:
        out.append(f"peak_gpu_memory: {torch.cuda.max_memory_allocated(device) / 2**20:.1f} MiB allocated, "
                   f"{torch.cuda.max_memory_reserved(device) / 2**20:.1f} MiB reserved (caching allocator peaks)")
        free, total_mem = torch.cuda.mem_get_info(device)
        out.append(f"gpu_memory_in_use: {(total_mem - free) / 2**20:.1f} MiB (cuMemGetInfo at the end)")
    else:
        out.append("peak_gpu_memory: n/a (cpu)")
    out.append(f"mean_loss: {mean_loss:.4f}")
    out.append(f"images_per_second: {statistics.median(rates):.2f}")
    print("\n".join(out), flush=True)


def ensemble(a, ResNet, device, amp_dtype, stream, torch, F):
    """The model-ensembling recipe: returns run(k) (k steps of all models; run.sums holds the
    device-side loss, correct and gradient-norm sums) and the parameter count of all models."""
    import copy
    from torch.func import functional_call, grad, replace_all_batch_norm_modules_, stack_module_state, vmap
    members = []
    for i in range(a.models):
        torch.manual_seed(i)
        m = ResNet(a.depth).to(device)
        replace_all_batch_norm_modules_(m)
        if a.channels_last:
            m = m.to(memory_format=torch.channels_last)
        members.append(m)
    stacked, buffers = stack_module_state(members)
    base = copy.deepcopy(members[0]).to("meta")
    if amp_dtype is not None:
        # Under autocast the convolutions hand BatchNorm a bf16/fp16 input while its weight and
        # bias are fp32. Without vmap that mixed case is fine, but functorch's batching rule for
        # native_batch_norm_backward multiplies the gradient by the fp32 weight and passes the
        # fp32 result with the low-precision input to the kernel, which rejects it ("expected
        # scalar type BFloat16 but found Float" on the CPU, "Expected grad_output to have type
        # BFloat16 but got Float" on CUDA; pytorch issue 184890); moving the autocast outside
        # vmap/grad does not change that. Casting weight and bias to the input's dtype keeps the
        # batch norm in the input's dtype (on CUDA the kernel, the native one for bf16 with either
        # weight dtype, never cuDNN, still keeps fp32 statistics); the cast is an autograd node,
        # so the gradients reaching the stacked fp32 parameters are fp32.
        class AmpBatchNorm2d(torch.nn.BatchNorm2d):
            def forward(self, x):
                return F.batch_norm(x, self.running_mean, self.running_var, self.weight.to(x.dtype),
                                    self.bias.to(x.dtype), True, self.momentum, self.eps)

        for m in base.modules():
            if type(m) is torch.nn.BatchNorm2d:
                m.__class__ = AmpBatchNorm2d  # the module functional_call runs; members keep theirs
    names = list(stacked)
    params = [stacked[n] for n in names]
    opt = torch.optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=1e-4,
                          **({"fused": True} if a.fused else {}))

    def member_loss(p, b, x, y):
        if amp_dtype is None:
            logits = functional_call(base, (p, b), (x,))
        else:
            with torch.autocast(device_type="cuda", dtype=amp_dtype):
                logits = functional_call(base, (p, b), (x,))
            logits = logits.float()
        loss = F.cross_entropy(logits, y)
        return loss, (loss, logits)

    per_member = vmap(grad(member_loss, has_aux=True))
    sums = [torch.zeros((), device=device) for _ in range(3)]

    def run(k):
        for _ in range(k):
            xs, ys = zip(*(next(stream) for _ in range(a.models)))
            x, y = torch.stack(xs), torch.stack(ys)
            with torch.no_grad():
                grads, (loss, logits) = per_member(stacked, buffers, x, y)
                for n, p in zip(names, params):
                    p.grad = grads[n]
                if not a.no_grad_norm:
                    norms = torch.stack([grads[n].flatten(1).norm(dim=1) for n in names])
                    sums[2] += norms.norm(dim=0).sum()
                opt.step()
                sums[0] += loss.sum() * y.shape[1]
                sums[1] += (logits.argmax(-1) == y).sum().float()

    run.sums = sums
    return run, sum(p.numel() for p in params)


if __name__ == "__main__":
    main(sys.argv[1:])
