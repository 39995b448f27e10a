# deepres: the two commands are `make demo` (the main job) and `make test`.
# Everything depends on `setup`, which installs libtorch (PyPI torch==2.11.0) into a cache
# directory outside the repository and the Debian package dataset-fashion-mnist, when missing.
SHELL := /bin/bash
.DEFAULT_GOAL := demo

CACHE_DIR   ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/deepres
TORCH_VENV  ?= $(CACHE_DIR)/torch-2.11.0
TORCH_SPEC  := torch==2.11.0
FASHION     := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
SUDO        := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
BIN         := target/release/deepres
DEEPRES     := ./$(BIN)

# tch's build (torch-sys) takes libtorch from the venv's PyTorch.
export LIBTORCH_USE_PYTORCH := 1
export PATH := $(TORCH_VENV)/bin:$(PATH)

.PHONY: setup build test demo info clean-demo fetch-cifar10 fetch-cifar100 fetch-mnist

## setup: libtorch venv + Fashion-MNIST, each only when missing (a second run takes seconds)
setup: $(TORCH_VENV)/.installed $(FASHION)

$(TORCH_VENV)/.installed:
	@echo "setup: installing $(TORCH_SPEC) into $(TORCH_VENV) (about 4.6 GB, a minute or two)"
	rm -rf $(TORCH_VENV)
	mkdir -p $(CACHE_DIR)
	python3 -m venv $(TORCH_VENV)
	$(TORCH_VENV)/bin/pip install --quiet --disable-pip-version-check $(TORCH_SPEC)
	$(TORCH_VENV)/bin/python -c 'import torch; v = torch.__version__; assert v.startswith("2.11.0"), v; print("setup: torch", v)'
	touch $@

$(FASHION):
	@echo "setup: installing the Debian package dataset-fashion-mnist"
	$(SUDO) apt-get install -y dataset-fashion-mnist || ($(SUDO) apt-get update && $(SUDO) apt-get install -y dataset-fashion-mnist)

## build: the release binary (linked against the venv's libtorch, rpath set)
build: setup
	cargo build --release

## test: the whole test suite (CPU, a few minutes after the build)
test: setup
	cargo test --release

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

## fetch-*: official archives into data/ (needs internet; see data/README.md)
fetch-cifar10: build
	$(DEEPRES) data fetch cifar10
fetch-cifar100: build
	$(DEEPRES) data fetch cifar100
fetch-mnist: build
	$(DEEPRES) data fetch mnist
