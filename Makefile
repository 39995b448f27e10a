# deepres: the two commands are `make demo` (the main job) and `make test`.
# Everything depends on `setup`, which installs libtorch (PyPI torch==2.11.0) into a cache
# directory outside the repository and the Debian package dataset-fashion-mnist, when missing.
SHELL := /bin/bash
.DEFAULT_GOAL := demo

CACHE_DIR   ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/deepres
TORCH_VENV  ?= $(CACHE_DIR)/torch-2.11.0
TORCH_SPEC  := torch==2.11.0
FASHION     := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
FONT        := /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf
SUDO        := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
BIN         := target/release/deepres
DEEPRES     := ./$(BIN)

# tch's build (torch-sys) takes libtorch from the venv's PyTorch.
export LIBTORCH_USE_PYTORCH := 1
export PATH := $(TORCH_VENV)/bin:$(PATH)

.PHONY: setup setup-chromium build test demo info report clean-demo data-cifar10 data-cifar100 data-mnist \
        tables zhang-stability zhang-table1 zhang-table2 zhang-fig3 \
        marion marion-fig1 marion-fig2 marion-fig3 marion-fig4 marion-fig5 marion-fig6 \
        marion-fig7 marion-fig8 marion-fig9 \
        chizat chizat-fig1 chizat-fig2 chizat-fig3 chizat-fig4 chizat-fig5 chizat-fig2d chizat-dlaw

# Paper targets: SCALE=smoke (default; minutes on a 2-core CPU, small depths, Fashion-MNIST,
# each ending with the paper's expected result checked on its runs) or SCALE=full (the paper's
# setting; needs CIFAR on disk and a GPU).
SCALE ?= smoke
# SEEDS=0,1,2,3,4 runs every cell with 5 seeds (default: the grid file's seeds at that scale).
SEEDS ?=
SEEDS_ARG := $(if $(SEEDS),--seeds $(SEEDS),)
# The τ paper's sweeps train the cells of one depth together on a GPU (`--pack auto`: as many
# as fit half its memory, at most 10; one cell at a time on the CPU); PACK=1 trains each alone,
# PACK=N packs N.
PACK ?= auto
# ZHANG_SET="train.precision=bf16 out_dir=runs/bf16": run-config keys set in every cell of the
# τ paper's sweeps and their reports; a sweep directory holding runs of other settings is
# refused, so give such runs their own out_dir.
ZHANG_SET ?=
ZHANG_SET_ARG = $(foreach kv,$(ZHANG_SET),--set $(kv))
RUNS := runs

## setup: libtorch venv, CUDA headers, the tests' Python packages, Fashion-MNIST and a font for
## PNG plots, each only when missing (a second run takes seconds); Chromium is `make test`'s
setup: $(TORCH_VENV)/.installed $(TORCH_VENV)/.cuda-headers $(TORCH_VENV)/.oracles-v2 $(FASHION) $(FONT) .cargo/config.toml

# Plain `cargo build` / `cargo test` (a Rust user's habit) build exactly as `make build` does:
# torch-sys finds libtorch through the venv's python (LIBTORCH_USE_PYTORCH), which this
# untracked file puts first on the PATH of cargo's build scripts. Rewritten when the venv is.
.cargo/config.toml: $(TORCH_VENV)/.installed
	@mkdir -p .cargo
	@printf '%s\n' '# Written by `make setup` (not tracked): torch-sys takes libtorch from the cached venv.' \
	  '[env]' 'LIBTORCH_USE_PYTORCH = "1"' \
	  'PATH = { value = "$(PATH)", force = true }' > $@
	@echo "setup: wrote $@ (cargo build / cargo test now work directly)"

$(TORCH_VENV)/.installed:
	@echo "setup: installing $(TORCH_SPEC) into $(TORCH_VENV) (about 4.6 GB, a minute or two)"
	rm -rf $(TORCH_VENV)
	mkdir -p $(CACHE_DIR)
	python3 -m venv $(TORCH_VENV)
	$(TORCH_VENV)/bin/pip install --quiet --disable-pip-version-check $(TORCH_SPEC)
	$(TORCH_VENV)/bin/python -c 'import torch; v = torch.__version__; assert v.startswith("2.11.0"), v; print("setup: torch", v)'
	touch $@

# CUDA graphs (src/train/graph.rs) compile against the CUDA runtime headers; torch's wheel
# brings cuda_runtime_api.h but not crt/host_config.h, which is this 130 kB wheel.
CUDA_CRT_SPEC := nvidia-cuda-crt==13.0.88
$(TORCH_VENV)/.cuda-headers: $(TORCH_VENV)/.installed
	@echo "setup: installing $(CUDA_CRT_SPEC) (CUDA headers for CUDA graphs) into $(TORCH_VENV)"
	$(TORCH_VENV)/bin/pip install --quiet --disable-pip-version-check --no-deps $(CUDA_CRT_SPEC)
	touch $@

# The tests' PyTorch oracles (tests/oracles/*.py) read the Rust side's tensors with the
# safetensors package; numpy is what torchvision's pickled CIFAR batches hold; TensorBoard's
# own reader checks the event files deepres writes.
# (the stamp's version goes up with the list, so cached venvs get the new packages)
ORACLE_SPEC := numpy==2.4.6 safetensors==0.8.0 tensorboard==2.21.0
$(TORCH_VENV)/.oracles-v2: $(TORCH_VENV)/.installed
	@echo "setup: installing $(ORACLE_SPEC) (the tests' PyTorch oracles) into $(TORCH_VENV)"
	$(TORCH_VENV)/bin/pip install --quiet --disable-pip-version-check $(ORACLE_SPEC)
	touch $@

$(FASHION):
	@echo "setup: installing the Debian package dataset-fashion-mnist"
	$(SUDO) apt-get install -y dataset-fashion-mnist || ($(SUDO) apt-get update && $(SUDO) apt-get install -y dataset-fashion-mnist)

$(FONT):
	@echo "setup: installing the Debian package fonts-dejavu-core (text in PNG plots)"
	$(SUDO) apt-get install -y fonts-dejavu-core || ($(SUDO) apt-get update && $(SUDO) apt-get install -y fonts-dejavu-core)

# Debian's chromium, for tests/page.rs (headless: a screenshot of runs/index.html and a check
# that every figure rendered); found on the PATH by name, as the test looks for it. Only
# `make test` needs it (about 300 MB), so `make setup` / `make demo` leave it out.
setup-chromium:
	@command -v chromium >/dev/null || { echo "setup: installing the Debian package chromium (tests/page.rs)"; \
	  $(SUDO) apt-get install -y chromium || ($(SUDO) apt-get update && $(SUDO) apt-get install -y chromium); }

## build: the release binary (linked against the venv's libtorch, rpath set)
build: setup
	cargo build --release

## test: the whole test suite (CPU, 10-17 minutes with the build), then test-slurm (root or
## passwordless sudo; about a minute). Where test-slurm cannot run, `make test` fails rather
## than pass without it; SLURM_TEST=0 leaves it out on purpose (and says so). As root, the
## full-disk tests (tests/durability.rs) fail where a tmpfs cannot be mounted, unless
## DEEPRES_TMPFS_TEST=0 leaves them out.
SLURM_TEST ?= auto
test: setup setup-chromium
	cargo test --release
	@if [ "$(SLURM_TEST)" = 0 ]; then echo "test: test-slurm left out (SLURM_TEST=0): the Slurm path is untested"; \
	elif [ "$$(id -u)" = 0 ] || sudo -n true 2>/dev/null; then $(MAKE) --no-print-directory test-slurm; \
	else echo "test: FAILED: test-slurm cannot run here (it needs root or passwordless sudo for the Slurm daemons); run it where it can, or leave it out with \`make test SLURM_TEST=0\`" >&2; exit 1; fi

## test-slurm: a one-node Slurm on localhost (Debian's slurm-wlm and munge, installed when
## missing; loopback only), a 3-cell grid as a job array, one task requeued (scontrol
## requeue), one preempted by SIGUSR1 (it checkpoints and requeues itself), one cancelled
## and resubmitted, all mid-run; checks every cell finished with the uninterrupted CSVs
## (scripts/test_slurm.sh)
.PHONY: test-slurm
test-slurm: build
	scripts/test_slurm.sh $(BIN)

## demo: ResNet-20 with BN vs without normalization (τ = 1/√L) on Fashion-MNIST, 3 epochs,
## curves and a comparison under runs/demo/. CUDA when present. Rerunning resumes/skips.
demo: build
	$(DEEPRES) train --config experiments/demo/bn.yaml --resume
	$(DEEPRES) train --config experiments/demo/nobn-tau.yaml --resume
	$(DEEPRES) compare runs/demo/bn runs/demo/nobn-tau --out runs/demo/comparison.csv

## info: libtorch version, CUDA/cuDNN, GPUs
info: build
	$(DEEPRES) info

clean-demo:
	rm -rf runs/demo

## data-*: official archives into data/, checksums verified (needs internet; see data/README.md)
data-cifar10: build
	$(DEEPRES) data fetch cifar10
data-cifar100: build
	$(DEEPRES) data fetch cifar100
data-mnist: build
	$(DEEPRES) data fetch mnist

## The τ paper (Zhang et al. 2022, arXiv:1903.07120; docs/zhang2022.md) ----------------------------
PROBE_smoke := --depths 8,14,20,38,56,110,218 --batch 32
PROBE_full  := --depths 20,32,44,56,110,218,434,866,1202 --batch 128
PROBE_FC_smoke := --depths 3,6,9,18,27,54,108 --batch 32
PROBE_FC_full  := --depths 9,15,21,27,54,108,216,432,600 --batch 128
STABILITY_DIR := $(RUNS)/zhang2022-stability-$(SCALE)

## zhang-stability: forward/backward ratios at init vs L, 7 τ rules, BN and no BN, 5 seeds
zhang-stability: build
	$(DEEPRES) probe --model resnet $(PROBE_$(SCALE)) --norm bn,none --seeds 0,1,2,3,4 --out $(STABILITY_DIR)/resnet
	$(DEEPRES) probe --model fc $(PROBE_FC_$(SCALE)) --seeds 0,1,2,3,4 --out $(STABILITY_DIR)/fc

## zhang-table1: CIFAR-10 test error, BN vs BN + τ, ResNet-20 … 1202
zhang-table1: build
	$(DEEPRES) sweep experiments/zhang2022/table1.yaml --scale $(SCALE) $(SEEDS_ARG) $(ZHANG_SET_ARG) --pack $(PACK)
	$(DEEPRES) report experiments/zhang2022/table1.yaml --scale $(SCALE) $(SEEDS_ARG) $(ZHANG_SET_ARG)

## zhang-table2: no normalization: τ = 1, fixed τ, learnable τ, Fixup, ReZero; CIFAR-10/100
zhang-table2: build
	$(DEEPRES) sweep experiments/zhang2022/table2.yaml --scale $(SCALE) $(SEEDS_ARG) $(ZHANG_SET_ARG) --pack $(PACK)
	$(DEEPRES) report experiments/zhang2022/table2.yaml --scale $(SCALE) $(SEEDS_ARG) $(ZHANG_SET_ARG)

## zhang-fig3: training curves, normalized vs unnormalized (full: ResNet-110 and 1202; smoke: ResNet-20)
zhang-fig3: build
	$(DEEPRES) sweep experiments/zhang2022/fig3.yaml --scale $(SCALE) $(SEEDS_ARG) $(ZHANG_SET_ARG) --pack $(PACK)
	$(DEEPRES) report experiments/zhang2022/fig3.yaml --scale $(SCALE) $(SEEDS_ARG) $(ZHANG_SET_ARG)

## report: runs/index.html, one static page (nothing loaded from elsewhere) with every paper's
## tables and figures found under runs/ (SVGs inline), each with its scale, the command that
## made it and its date; runs nothing, only reads what exists
report: build
	$(DEEPRES) page --runs $(RUNS) --out $(RUNS)/index.html

## tables: every table and figure of the τ paper
tables: zhang-stability zhang-table1 zhang-table2 zhang-fig3

## bench: deepres bench vs PyTorch eager (scripts/bench_torch.py), alternately, 3 rounds each,
## ResNet-20/56/110 at batch 128, on this machine: bench/results.csv, bench/results.md, bench/out/ (logs).
## CPU: fp32, few steps (about 10-17 minutes on 2 cores); CUDA (auto): fp32 and bf16; both PyTorch
## pipelines (DataLoader and on-device). BENCH_ARGS adds options, e.g. --compile, --rounds 5,
## --steps 20, --torch-malloc (PyTorch also with deepres's glibc allocator setting).
BENCH_DEVICE ?= auto
BENCH_ARGS ?=
.PHONY: bench
bench: build
	$(TORCH_VENV)/bin/python scripts/bench.py --deepres $(DEEPRES) --python $(TORCH_VENV)/bin/python \
	  --device $(BENCH_DEVICE) --out bench $(BENCH_ARGS)

## Scaling ResNets in the large-depth regime (Marion et al. 2022, arXiv:2206.06929; docs/marion2022.md) ---
## marion-figN: figure MN from experiments/marion2022/figN.yaml into runs/marion2022/figN/$(SCALE)/
## (CSV, Markdown tables, SVG/PNG). M1–M7 run at the paper's size at both scales (M2: 10³ models
## at smoke, 10⁴ at full); M8–M9 shrink at smoke (L = 100, 1 epoch, fewer cells).
## MARION_ARGS adds options, e.g. --device cuda.
MARION_ARGS ?=
MARION_FIGS := 1 2 3 4 5 6 7 8 9
$(addprefix marion-fig,$(MARION_FIGS)): marion-fig%: build
	$(DEEPRES) marion experiments/marion2022/fig$*.yaml --scale $(SCALE) $(MARION_ARGS)

## marion: every figure of the Marion et al. paper
marion: $(addprefix marion-fig,$(MARION_FIGS))

## The hidden width of deep ResNets (Chizat 2025, arXiv:2509.10167; docs/chizat2025.md) ------------
## chizat-figN: figure CN from experiments/chizat2025/figN.yaml into runs/chizat2025/figN/$(SCALE)/
## (CSV, Markdown tables with the fits and acceptance checks, SVG/PNG). Limit models are cached
## in runs/chizat2025/limits/ and shared by the figures. CHIZAT_ARGS adds options, e.g.
## --device cuda or --set dynamics.eta=0.5.
CHIZAT_ARGS ?=
CHIZAT_FIGS := 1 2 3 4 5
$(addprefix chizat-fig,$(CHIZAT_FIGS)): chizat-fig%: build
	$(DEEPRES) chizat experiments/chizat2025/fig$*.yaml --scale $(SCALE) $(CHIZAT_ARGS)

## chizat: every figure of the Chizat paper
chizat: $(addprefix chizat-fig,$(CHIZAT_FIGS))

## chizat-fig2d: C2 at D = 2, 8, 32 (b or b√D constant?); chizat-dlaw: study C5D, the error's
## exponent in D over training points n, targets and step sizes η (docs/chizat2025.md,
## "Where the √D law holds"). Not part of `make chizat`: they measure, they do not check.
chizat-fig2d chizat-dlaw: chizat-%: build
	$(DEEPRES) chizat experiments/chizat2025/$*.yaml --scale $(SCALE) $(CHIZAT_ARGS)
