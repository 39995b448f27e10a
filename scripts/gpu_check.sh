#!/usr/bin/env bash
# GPU check for the foundation issue: `deepres info`, then ResNet-56 on synthetic CIFAR-shaped
# data (50k train / 10k test, batch 128, fp32) for 2 epochs (the first includes cuDNN's
# autotuning), then the demo's two Fashion-MNIST runs on CUDA. Prints everything; the CSVs
# go to $1 (default ./gpu-check).
# Usage: scripts/gpu_check.sh [OUT_DIR]   (with the release binary built and libtorch findable)
# The metrics CSVs are also copied flat into $2 when given (the device tool's $OUT).
set -uo pipefail
out=${1:-gpu-check}
flat=${2:-}
bin=${DEEPRES:-./target/release/deepres}
mkdir -p "$out"
echo "== date: $(date -u +%FT%TZ)"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
echo "== deepres info"
$bin info
echo "== ResNet-56, synthetic CIFAR-shaped data, 2 epochs"
time $bin train --device cuda --set name=r56-synth --set out_dir="$out" \
  --set data.name=synthetic --set data.synthetic_train=50000 --set data.synthetic_test=10000 \
  --set model.depth=56 --set train.epochs=2 --set train.schedule.kind=constant --set train.checkpoint=false
cat "$out/r56-synth/metrics.csv"
echo "== demo on CUDA (Fashion-MNIST)"
for c in bn nobn-tau; do
  time $bin train --config experiments/demo/$c.yaml --set out_dir="$out/demo" --device cuda --set train.checkpoint=false
done
$bin compare "$out/demo/bn" "$out/demo/nobn-tau" --out "$out/demo/comparison.csv"
if [ -n "$flat" ]; then
  cp "$out/r56-synth/metrics.csv" "$flat/r56-synth-metrics.csv"
  for c in bn nobn-tau; do cp "$out/demo/$c/metrics.csv" "$flat/demo-$c-metrics.csv"; done
  cp "$out/demo/comparison.csv" "$flat/demo-comparison.csv"
fi
