#!/usr/bin/env bash
# GPU measurements of the fast-training issue, in one run (the device is lent for minutes):
#   1. make bench's comparison: deepres vs PyTorch eager (DataLoader and on-device pipelines),
#      ResNet-56 and 110, batch 128, fp32 and bf16, 3 alternating rounds (scripts/bench.py);
#   2. peak GPU memory of ResNet-1202 at batch 128 (deepres fp32/bf16, PyTorch fp32);
#   3. ResNet-110 on synthetic CIFAR-shaped data (50k/10k), 2 epochs per precision with
#      `deepres train` (epoch 2's time × 200 is the 200-epoch projection; fp16 as a check of
#      loss scaling);
#   4. channels-last against the default memory format (deepres and PyTorch, ResNet-110 bf16).
# Everything is written under $1 as it goes (a cut-off run keeps what it finished).
# Usage: scripts/gpu_bench.sh OUT_DIR  (env: DEEPRES, PYTHON = a python with torch 2.11.0;
# DEV, DEPTHS, BIG, TRAIN_N, ROUNDS, STEPS shrink it for a dry run on the CPU)
set -uo pipefail
out=${1:?usage: scripts/gpu_bench.sh OUT_DIR}
bin=${DEEPRES:-./target/release/deepres}
py=${PYTHON:-python3}
dev=${DEV:-cuda:0}
depths=${DEPTHS:-56,110}
big=${BIG:-1202}
train_n=${TRAIN_N:-50000}
rounds=${ROUNDS:-3}
steps=${STEPS:-100}
mkdir -p "$out"
t0=$(date +%s)
say() { echo "== +$(( $(date +%s) - t0 ))s $*"; }
say "date: $(date -u +%FT%TZ)"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv 2>/dev/null
$bin info

say "2. ResNet-1202 peak memory, batch 128"
for p in fp32 bf16; do
  $bin bench --depth $big --batch 128 --steps 5 --warmup 3 --precision $p --device $dev \
    > "$out/r1202-deepres-$p.txt" 2>&1
  grep -H -E "ms_per_step|peak_gpu|images_per|error" "$out/r1202-deepres-$p.txt"
done
$py scripts/bench_torch.py --depth $big --batch 128 --steps 5 --warmup 3 --precision fp32 \
  --device $dev --pipeline gpu > "$out/r1202-pytorch-fp32.txt" 2>&1
grep -H -E "ms_per_step|peak_gpu|images_per|error" "$out/r1202-pytorch-fp32.txt"

say "3. deepres train ResNet-110, synthetic 50k/10k, 2 epochs"
for p in bf16 fp32 fp16; do
  $bin train --device $dev --quiet --set name=r110-$p --set out_dir="$out/train" \
    --set data.name=synthetic --set data.synthetic_train=$train_n --set data.synthetic_test=$((train_n / 5)) \
    --set model.depth=110 --set train.epochs=2 --set train.precision=$p \
    --set train.checkpoint=false > "$out/train-r110-$p.log" 2>&1
  echo "-- $p (exit $?)"; cat "$out/train/r110-$p/metrics.csv"
done

say "1. bench.py: ResNet-56/110, fp32+bf16, 3 rounds"
$py scripts/bench.py --deepres "$bin" --python "$py" --device $dev --depths $depths \
  --precisions fp32,bf16 --rounds $rounds --timeout 90 --out "$out/bench" 2>&1

say "4. channels-last, ResNet-110 bf16 (deepres, PyTorch on-device)"
for cl in "" "--channels-last"; do
  $bin bench --depth 110 --batch 128 --steps $steps --warmup 20 --windows 3 --precision bf16 \
    --device $dev $cl > "$out/r110-bf16-deepres${cl:+-cl}.txt" 2>&1
  $py scripts/bench_torch.py --depth 110 --batch 128 --steps $steps --warmup 20 --windows 3 \
    --precision bf16 --device $dev --pipeline gpu $cl > "$out/r110-bf16-pytorch${cl:+-cl}.txt" 2>&1
  grep -H -E "^(memory_format|train_tflops|images_per_second|error)" \
    "$out/r110-bf16-deepres${cl:+-cl}.txt" "$out/r110-bf16-pytorch${cl:+-cl}.txt"
done
say "done"
