#!/usr/bin/env bash
# GPU check for the τ-paper issue: the stability probe at full scale (CIFAR ResNet up to
# ResNet-1202 = 600 blocks, fc ResNet up to 600 blocks, 6 τ rules, BN and no BN, 5 seeds), then
# 2 epochs of ResNet-110 BN vs BN + τ vs no-BN + τ on synthetic CIFAR-shaped data (50k/10k),
# with GPU memory sampled by nvidia-smi. Usage: scripts/gpu_zhang.sh OUT_DIR [FLAT_DIR]
# PROBE_DEPTHS, PROBE_FC_DEPTHS, SEEDS, TRAIN_DEPTH, EPOCHS, NTRAIN, DEVICE shrink it for a CPU dry run;
# SKIP_PROBE=1 trains only; VARIANTS picks among bn bn-tau nobn-tau nobn-tau-warm tau-fixed fixup rezero.
set -uo pipefail
out=${1:-gpu-zhang}
flat=${2:-}
bin=${DEEPRES:-./target/release/deepres}
dev=${DEVICE:-cuda}
mkdir -p "$out"
mem_start() { if command -v nvidia-smi >/dev/null; then nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 200 > "$out/mem-$1.log" & echo $! > "$out/mem.pid"; fi; }
mem_stop() { if [ -f "$out/mem.pid" ]; then kill "$(cat "$out/mem.pid")" 2>/dev/null; rm -f "$out/mem.pid"; sleep 0.3; echo "peak nvidia-smi memory.used during $1: $(sort -n "$out/mem-$1.log" | tail -1) MiB (includes the CUDA context)"; fi; }
echo "== date: $(date -u +%FT%TZ)"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
variants=${VARIANTS:-bn bn-tau nobn-tau}
if [ -z "${SKIP_PROBE:-}" ]; then
echo "== probe, CIFAR ResNet"
mem_start probe
time $bin probe --model resnet --depths "${PROBE_DEPTHS:-20,32,44,56,110,218,434,866,1202}" --batch 128 \
  --seeds "${SEEDS:-0,1,2,3,4}" --out "$out/probe-resnet" --device "$dev" -q
mem_stop probe
echo "== probe, fc ResNet (width 100)"
time $bin probe --model fc --depths "${PROBE_FC_DEPTHS:-9,15,21,27,54,108,216,432,600}" --batch 128 \
  --seeds "${SEEDS:-0,1,2,3,4}" --out "$out/probe-fc" --device "$dev" -q
fi
echo "== ResNet-${TRAIN_DEPTH:-110}, synthetic data, ${EPOCHS:-2} epochs per variant"
common=(--device "$dev" --set out_dir="$out/train" --set data.name=synthetic --set data.synthetic_train="${NTRAIN:-50000}"
  --set data.synthetic_test=10000 --set model.depth="${TRAIN_DEPTH:-110}" --set train.epochs="${EPOCHS:-2}"
  --set train.schedule.kind=constant --set train.checkpoint=false)
for v in $variants; do
  case $v in
    bn) sets=(--set model.norm=bn --set model.shortcut=a-bn --set model.tau.rule=one) ;;
    bn-tau) sets=(--set model.norm=bn --set model.shortcut=a-bn --set model.tau.rule=inv_sqrt) ;;
    nobn-tau) sets=(--set model.norm=none --set model.shortcut=a --set model.tau.rule=inv_sqrt --set model.tau.learnable=shared) ;;
    nobn-tau-warm) sets=(--set model.norm=none --set model.shortcut=a --set model.tau.rule=inv_sqrt --set model.tau.learnable=shared --set train.schedule.warmup_epochs=1) ;;
    tau-fixed) sets=(--set model.norm=none --set model.shortcut=a --set model.tau.rule=inv_sqrt) ;;
    fixup) sets=(--set model.norm=none --set model.shortcut=a --set model.init=fixup) ;;
    rezero) sets=(--set model.norm=none --set model.shortcut=a --set model.tau.learnable=rezero) ;;
  esac
  mem_start "$v"
  time $bin train "${common[@]}" "${sets[@]}" --set name="r110-$v"
  mem_stop "$v"
done
if [ -n "$flat" ]; then
  if [ -z "${SKIP_PROBE:-}" ]; then
    cp "$out/probe-resnet/probe.csv" "$flat/probe-resnet.csv"; cp "$out/probe-fc/probe.csv" "$flat/probe-fc.csv"
    cp "$out/probe-resnet/stability.md" "$flat/stability-resnet.md" 2>/dev/null
    cp "$out/probe-fc/stability.md" "$flat/stability-fc.md" 2>/dev/null
  fi
  for v in $variants; do cp "$out/train/r110-$v/metrics.csv" "$flat/r110-$v-metrics.csv"; done
fi
