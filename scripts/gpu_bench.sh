#!/usr/bin/env bash
# GPU measurements of the fast-training issue, in one run (the device is lent for minutes):
#   1. CUDA graphs against ordinary steps: `deepres train` ResNet-20 on synthetic data, fp32,
#      2 epochs each way (the curves must agree), and ResNet-110 bf16 bench both ways;
#   2. make bench's comparison with the graph variant: deepres (ordinary and --cuda-graph) vs
#      PyTorch eager (DataLoader and on-device pipelines), ResNet-56 and 110, batch 128, fp32
#      and bf16, 3 alternating rounds (scripts/bench.py; per-run lines go to bench-stdout.log as
#      they come);
#   3. ResNet-110 on synthetic CIFAR-shaped data (50k/10k), 2 epochs with `deepres train`, bf16
#      and fp32 with CUDA graphs (epoch 2's time × 200 is the 200-epoch projection).
# Usage: scripts/gpu_bench.sh OUT_DIR  (env: DEEPRES, PYTHON = a python with torch 2.11.0;
# DEV, DEPTHS, TRAIN_N, SMALL_N, ROUNDS, STEPS shrink it for a dry run)
set -uo pipefail
out=${1:?usage: scripts/gpu_bench.sh OUT_DIR}
bin=${DEEPRES:-./target/release/deepres}
py=${PYTHON:-python3}
dev=${DEV:-cuda:0}
depths=${DEPTHS:-56,110}
train_n=${TRAIN_N:-50000}
small_n=${SMALL_N:-10240}
rounds=${ROUNDS:-3}
steps=${STEPS:-100}
work=$(mktemp -d)
mkdir -p "$out"
t0=$(date +%s)
say() { echo "== +$(( $(date +%s) - t0 ))s $*"; }
say "date: $(date -u +%FT%TZ)"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv 2>/dev/null
$bin info

train() {  # name depth n epochs precision graph
  $bin train --device $dev --quiet --set name=$1 --set out_dir="$work/train" \
    --set data.name=synthetic --set data.synthetic_train=$3 --set data.synthetic_test=$(($3 / 5)) \
    --set model.depth=$2 --set train.epochs=$4 --set train.precision=$5 --set train.cuda_graph=$6 \
    --set train.schedule.kind=constant --set train.optimizer.lr=0.05 --set train.checkpoint=false \
    > "$out/train-$1.log" 2>&1
  echo "-- $1 (exit $?)"; cut -d, -f1-7,9,10 "$work/train/$1/metrics.csv"
}

say "1. CUDA graph vs ordinary steps"
train r20-eager 20 $small_n 2 fp32 false
train r20-graph 20 $small_n 2 fp32 true
for g in "" "--cuda-graph"; do
  $bin bench --depth 110 --batch 128 --steps $steps --warmup 20 --windows 3 --precision bf16 \
    --device $dev $g > "$out/r110-bf16${g:+-graph}.txt" 2>&1
  grep -H -E "^(cuda_graph|ms_per_step|peak_gpu|train_tflops|images_per_second|error)" \
    "$out/r110-bf16${g:+-graph}.txt"
done

say "2. bench.py: ResNet $depths, fp32+bf16, $rounds rounds, deepres with and without graphs"
$py scripts/bench.py --deepres "$bin" --python "$py" --device $dev --depths $depths \
  --precisions fp32,bf16 --rounds $rounds --timeout 60 --cuda-graph --out "$work/bench" \
  2>&1 | tee "$out/bench-stdout.log"
cp "$work/bench/results.csv" "$work/bench/results.md" "$out/" 2>/dev/null
tar czf "$out/bench-logs.tgz" -C "$work/bench" out 2>/dev/null

say "3. deepres train ResNet-110 with CUDA graphs, synthetic $train_n, 2 epochs"
for p in bf16 fp32; do train r110-$p-graph 110 $train_n 2 $p true; done
say "done"
