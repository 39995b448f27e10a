#!/usr/bin/env bash
# The GPU throughput figures in one run (under 10 minutes of device time on one H200 at full size),
# as rows of bench/gpu.csv: date,device,commit,what,model,precision,pack,value,unit,command.
#
#   scripts/gpu_tables.sh                      # GPU machine, repository root, release binary built
#   GPU_TABLES_SIZE=tiny scripts/gpu_tables.sh # tiny sizes on any device (a check of this script)
#
# What it measures (every value is read from deepres's own output, nothing is computed but the
# 200-epoch projection, which says so in its `what`):
#   1. packs: `deepres bench --pack N` at ResNet-56 and ResNet-110, fp32 and bf16, N = 4, 10 (the issue's 10 models; N = 2 measured 2026-12-01: 1.34–1.53×):
#      one model's images/s (pack 1), the pack's aggregate images/s and their ratio;
#   2. CUDA graph on/off: `deepres bench` at ResNet-110, fp32 and bf16, with and without
#      --cuda-graph (images/s); and the largest pack with --cuda-graph (aggregate images/s and
#      its ratio to one graphed model);
#   3. the 200-epoch ResNet-110 recipe (the run-config defaults: batch 128, SGD, crop + flip) on
#      50,000 synthetic CIFAR-shaped images (CIFAR is not on the GPU machines): the seconds of
#      the second of two epochs (training and the 10,000-image test pass, from metrics.csv; the
#      first also holds cuDNN's autotuning of every shape), fp32 and bf16,
#      CUDA graphs off and on, and 200 × that in hours, labelled projected; and how far the
#      two runs' curves (same seed, weights and batches) differ: epoch train loss, test accuracy;
#   3a. ResNet-1202 (Table Z1's deepest) alone and in a pack of 6 (fp32) or 10 (bf16); the largest pack at
#      ResNet-110 channels-last;
#   3b. peak_fraction: the largest pack's FLOP/s at ResNet-110 over the GPU's dense bf16 peak
#      (and, last of the CUDA-only figures, of the bf16 pack with graphs and channels-last);
#   3c. the largest pack's other way, N networks each on a CUDA stream of its own replaying
#      its graph (`--streams --cuda-graph`), at ResNet-56 and ResNet-110 (CUDA only);
#   3d. where a step's device time goes: `--profile` of one model and the largest pack at
#      ResNet-110 (the 15 largest kernels; in the kept logs, no row);
#   4. Tables Z1 and Z2 (all depths, 5 seeds, 200 epochs) on one GPU, projected from 1-3 by
#      scripts/project_tables.py (table_z1_hours, table_z2_hours; the cost model is in each
#      row's command).
# Also: PyTorch's torch.func ensemble (scripts/bench_torch.py --models N, the largest N) and
# deepres's pack of N against it (ratio_vs_torch_vmap).
# Order: packs, ResNet-1202 and the epochs first, then the profiles (never run on a GPU yet),
# then the ways that may reach the pack targets (graphs, streams), the vmap ratio, the rest,
# and the tables' projections from all of them: a run stopped at its time limit (about 7 min
# at full size on an H200 on 2026-12-04) loses the least needed, and the projections can be
# rerun from the rows it wrote.
# Environment: PYTHON (with torch; default python3), DEEPRES (binary, default target/release/deepres), DEVICE (default cuda; tiny:
# cpu), GPU_TABLES_OUT (default bench/gpu.csv), GPU_TABLES_SIZE (full | tiny), COMMIT (default git's HEAD),
# GPU_TABLES_LOGS (a folder for every command's own output; default: not kept). A command that
# fails writes no row and is named on stderr; the exit status is then 1.
set -uo pipefail
bin=${DEEPRES:-target/release/deepres}
size=${GPU_TABLES_SIZE:-full}
out=${GPU_TABLES_OUT:-bench/gpu.csv}
work=$(mktemp -d)
# GPU_TABLES_LOGS: a folder that keeps every command's own output (say, whether a CUDA-graph
# capture fell back to ordinary steps); else they go with the temporary folder.
keep_logs() {
  [ -n "${GPU_TABLES_LOGS:-}" ] && mkdir -p "$GPU_TABLES_LOGS" &&
    find "$work" -maxdepth 1 -name '*.txt' -o -maxdepth 1 -name '*.log' | xargs -r cp -t "$GPU_TABLES_LOGS"
  rm -rf "$work"
}
trap keep_logs EXIT
case $size in
  full) dev=${DEVICE:-cuda}; depths="56 110"; graph_depth=110; packs="4 10"; precisions="fp32 bf16"
        batch=128; steps=30; warmup=10; train_n=50000; test_n=10000
        deep=1202; deep_pack="fp32:6 bf16:10"; deep_steps=10; deep_warmup=3 ;;
  tiny) dev=${DEVICE:-cpu}; depths="8 14"; graph_depth=8; packs="2"; precisions="fp32"
        batch=8; steps=2; warmup=1; train_n=64; test_n=16
        deep=20; deep_pack="fp32:2 bf16:3"; deep_steps=1; deep_warmup=1 ;;
  *) echo "GPU_TABLES_SIZE=$size: use full or tiny" >&2; exit 2 ;;
esac
[ -x "$bin" ] || { echo "$bin: no deepres binary (cargo build --release, or set DEEPRES)" >&2; exit 2; }
[[ $dev == cuda* ]] && ! "$bin" info | grep -q "^cuda_available: true" &&
  { echo "no CUDA device: run on the GPU machine, or GPU_TABLES_SIZE=tiny" >&2; exit 2; }

date=$(date -u +%F)
commit=${COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}
device=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
[[ $dev == cpu ]] && device="cpu ($(nproc) cores)"
device=${device:-$dev}
[ -s "$out" ] || echo "date,device,commit,what,model,precision,pack,value,unit,command" > "$out"
status=0
py=${PYTHON:-python3}  # with torch: scripts/bench_torch.py, scripts/project_tables.py

row() {  # what model precision pack value unit command; no value (its output lacked it): no row
  if [[ ! $5 =~ ^[-+0-9.eE]+$ ]]; then
    echo "failed: $7 (no value for $1 in its output)" >&2; status=1; return 0
  fi
  echo "$date,$device,$commit,$1,$2,$3,$4,$5,$6,\"$7\"" >> "$out"
}

field() {  # file key: the first number of the line `key: ...`
  sed -n "s/^$2: \([-0-9.eE+]*\).*/\1/p" "$1" | head -1
}

has() {  # file key: whether the file has a number for key (a figure computed from it may be written)
  [ -n "$(field "$1" "$2" 2>/dev/null)" ]
}

# pack_rows FILE WHAT MODEL PRECISION N COMMAND: a `bench --pack N` output's rows, the pack's
# aggregate images/s and its ratio to one model (WHAT: pack, pack_..._cuda_graph_on, streams_...)
# and, on CUDA, the pack's peak allocated memory.
pack_rows() {
  local f=$1 what=$2 model=$3 p=$4 n=$5 cmd=$6
  row ${what/WHAT/images_per_second} $model $p $n "$(field "$f" pack_images_per_second)" images/s "$cmd"
  row ${what/WHAT/speedup} $model $p $n "$(field "$f" pack_speedup)" x "$cmd"
  [[ $dev == cuda* ]] && row ${what/WHAT/peak_allocated_mib} $model $p $n \
    "$(field "$f" pack_peak_gpu_memory)" MiB "$cmd"
  return 0
}

# fell_back FILE COMMAND: whether a CUDA-graph capture fell back to ordinary steps in FILE (its
# figure would then not be one of graphs: no row, and said on stderr).
fell_back() {
  grep -q "training goes on without CUDA graphs" "$1" || return 1
  echo "failed: $2 (the CUDA-graph capture fell back to ordinary steps: $(grep -m1 "without CUDA graphs" "$1" | cut -c1-200))" >&2
  status=1
}

# curve_rows OFF ON PRECISION COMMAND: how far `deepres train`'s curves with CUDA graphs (ON,
# a metrics.csv) are from those without (OFF; the same seed, weights and batches, so every
# step of both epochs went through the train path both ways): the largest relative
# difference of an epoch's mean training loss, and of its test accuracy (absolute).
curve_rows() {
  [ -s "$1" ] && [ -s "$2" ] || return 0
  local d
  d=$(awk -F, 'FNR == 1 { for (i = 1; i <= NF; i++) c[$i] = i; next }
    NR == FNR { l[FNR] = $c["train_loss"]; a[FNR] = $c["test_acc"]; next }
    { r = ($c["train_loss"] - l[FNR]) / l[FNR]; if (r < 0) r = -r; if (r > R) R = r
      t = $c["test_acc"] - a[FNR]; if (t < 0) t = -t; if (t > T) T = t }
    END { printf "%.3e %.4f", R, T }' "$1" "$2")
  row graph_vs_ordinary_train_loss_rel_diff ResNet-$graph_depth $3 1 "${d% *}" relative "$4"
  row graph_vs_ordinary_test_acc_diff ResNet-$graph_depth $3 1 "${d#* }" accuracy "$4"
}

# at WHAT: one line on stderr (the call's log) with the seconds since the start, so that a
# later session knows what each part costs and where a limit will cut.
at() { echo "gpu_tables: ${SECONDS} s: $*" >&2; }

bench() {  # label args...: runs deepres bench (steps and warmup: $steps, $warmup), output in $work/$label.txt
  local label=$1; shift
  at "deepres bench $label"
  if ! "$bin" bench --device "$dev" --batch $batch --steps $steps --warmup $warmup "$@" \
      > "$work/$label.txt" 2>&1; then
    echo "failed: deepres bench $* ($(tail -1 "$work/$label.txt"))" >&2; status=1; return 1
  fi
  ! fell_back "$work/$label.txt" "deepres bench $*"
}

for d in $depths; do
  for p in $precisions; do
    for n in $packs; do
      args=(--depth $d --precision $p --pack $n)
      bench "pack-$d-$p-$n" "${args[@]}" || continue
      f=$work/pack-$d-$p-$n.txt
      cmd="deepres bench --device $dev --batch $batch --steps $steps --warmup $warmup ${args[*]}"
      row images_per_second ResNet-$d $p 1 "$(field "$f" images_per_second)" images/s "$cmd"
      pack_rows "$f" pack_WHAT ResNet-$d $p $n "$cmd"
    done
  done
done

# ResNet-$deep, the depth that Table Z1's projection trains alone (68 of its 74 hours on the
# 2026-12-01 H200 run): one model and the pack `deepres sweep --pack auto` makes of Table Z1's
# ten runs of that depth on an H200 (deep_pack: 6 in fp32, 11.5 GiB per model at batch 128; all
# 10 in bf16, 5.9 GiB), fewer steps (each is ~11 ResNet-110 steps).
for p in $precisions; do
  k=$(tr ' ' '\n' <<< "$deep_pack" | sed -n "s/^$p://p")
  args=(--depth $deep --precision $p --pack ${k:-2})
  steps=$deep_steps warmup=$deep_warmup bench "deep-$p" "${args[@]}" || continue
  f=$work/deep-$p.txt
  cmd="deepres bench --device $dev --batch $batch --steps $deep_steps --warmup $deep_warmup ${args[*]}"
  row images_per_second ResNet-$deep $p 1 "$(field "$f" images_per_second)" images/s "$cmd"
  pack_rows "$f" pack_WHAT ResNet-$deep $p ${k:-2} "$cmd"
done

# The epoch through `deepres train` itself (its loader, schedule and test pass), with CUDA
# graphs off (the run-config default) and, on CUDA, on (train.cuda_graph: true).
graph_modes=off
[[ $dev == cuda* ]] && graph_modes="off on"
for p in $precisions; do
  for g in $graph_modes; do
    name=epoch-$p-graph-$g
    sets=(--set name=$name --set "out_dir=$work/runs" --set data.name=synthetic
          --set data.synthetic_train=$train_n --set data.synthetic_test=$test_n
          --set model.depth=$graph_depth --set train.epochs=2 --set train.precision=$p
          --set train.checkpoint=false)
    # (graphed training is refused until it is shown to learn as ordinary training does:
    # this is the measurement that shows it, so it runs it anyway)
    unverified=()
    [ $g = on ] && sets+=(--set train.cuda_graph=true) && unverified=(env DEEPRES_UNVERIFIED_CUDA_GRAPH=1)
    at "deepres train $name"
    if ! "${unverified[@]}" "$bin" train --device "$dev" --quiet "${sets[@]}" > "$work/$name.log" 2>&1; then
      echo "failed: deepres train ${sets[*]} ($(tail -1 "$work/$name.log"))" >&2; status=1; continue
    fi
    fell_back "$work/$name.log" "deepres train ${sets[*]}" && continue
    csv=$work/runs/$name/metrics.csv
    if [ ! -s "$csv" ]; then
      echo "failed: deepres train ${sets[*]} (no metrics.csv in $work/runs/$name)" >&2; status=1; continue
    fi
    col=$(head -1 "$csv" | tr , '\n' | grep -n '^epoch_seconds$' | cut -d: -f1)
    secs=$(sed -n 3p "$csv" | cut -d, -f"$col")  # epoch 2
    ips_col=$(head -1 "$csv" | tr , '\n' | grep -n '^images_per_second$' | cut -d: -f1)
    ips=$(sed -n 3p "$csv" | cut -d, -f"$ips_col")  # its training part alone
    cmd="deepres train --device $dev ${sets[*]//$work\//}"
    # (graphs off keep the rows' first names, which scripts/project_tables.py reads)
    suffix=""
    [ $g = on ] && suffix=_cuda_graph_on
    row epoch_seconds$suffix ResNet-$graph_depth $p 1 "$secs" s "$cmd"
    row epoch_train_images_per_second$suffix ResNet-$graph_depth $p 1 "$ips" images/s "$cmd"
    [ -n "$secs" ] && row projected_200_epochs_from_one$suffix ResNet-$graph_depth $p 1 \
      "$(awk -v s="$secs" 'BEGIN { printf "%.3f", 200 * s / 3600 }')" h "$cmd"
    [ $g = on ] && curve_rows "$work/runs/epoch-$p-graph-off/metrics.csv" "$csv" $p "$cmd (against graphs off)"
  done
done
# 3d. Where a step's device time goes: one model and the largest pack at ResNet-$graph_depth
#    under libtorch's profiler (`--profile`: 5 steps after the timing, the 15 largest kernels
#    by device time; no row: the kernels' names and shares are in the kept logs,
#    GPU_TABLES_LOGS, to say whether the pack's grouped convolutions bound it).
n=${packs##* }
for p in $precisions; do
  bench "profile-$p" --depth $graph_depth --precision $p --pack $n --profile || true
done

# On CUDA, first what may reach the pack targets (BENCHMARKS.md): 10 x ResNet-56 (5x one
# model) with graphs, and the pack's other way.
n=${packs##* }
if [[ $dev == cuda* ]]; then
  for p in $precisions; do
    args=(--depth ${depths%% *} --precision $p --pack $n --cuda-graph)
    bench "graph-pack-${depths%% *}-$p" "${args[@]}" || continue
    f=$work/graph-pack-${depths%% *}-$p.txt
    cmd="deepres bench --device $dev --batch $batch --steps $steps --warmup $warmup ${args[*]}"
    pack_rows "$f" pack_WHAT_cuda_graph_on ResNet-${depths%% *} $p $n "$cmd"
  done
  # The largest pack's other way (for where grouped convolutions are slow): N networks,
  # each replaying its graph on a CUDA stream of its own; ResNet-56 (the 5x target) in both
  # precisions, ResNet-110 in bf16 (the peak-fraction target).
  for dp in "${depths%% *} fp32" "${depths%% *} bf16" "$graph_depth bf16"; do
    set -- $dp
    args=(--depth $1 --precision $2 --pack $n --streams --cuda-graph)
    bench "streams-$1-$2" "${args[@]}" || continue
    f=$work/streams-$1-$2.txt
    cmd="deepres bench --device $dev --batch $batch --steps $steps --warmup $warmup ${args[*]}"
    pack_rows "$f" streams_WHAT_cuda_graph_on ResNet-$1 $2 $n "$cmd"
  done
fi

# The fraction of the GPU's dense bf16 peak that the largest pack reaches at ResNet-$graph_depth
# (target: >= 5 % for ResNet-110 bf16): 3 x forward GFLOP per image (deepres bench's count)
# x aggregate images/s. The peak: PEAK_TFLOPS, else NVIDIA's data-sheet figure for the GPU's
# name (H100 SXM and H200: 989 TFLOP/s dense bf16); unknown: no row, said on stderr.
peak=${PEAK_TFLOPS:-}
case $device in
  *H200*|*"H100 80GB HBM3"*|*"H100 SXM"*) peak=${peak:-989} ;;
  *"H100 PCIe"*) peak=${peak:-756} ;;
  *A100*) peak=${peak:-312} ;;
esac
# peak_row WHAT FILE PRECISION N ARGS: the peak_fraction-like row WHAT of the pack whose
# `deepres bench ARGS` output is FILE.
peak_row() {
  has "$2" pack_images_per_second || return 0
  if [ -z "$peak" ]; then echo "$1: no dense bf16 peak known for '$device' (set PEAK_TFLOPS)" >&2; return 0; fi
  row "$1" ResNet-$graph_depth $3 $4 \
    "$(awk -v g="$(field "$2" forward_gflops_per_image)" -v ips="$(field "$2" pack_images_per_second)" \
          -v peak="$peak" 'BEGIN { printf "%.5f", 3 * g * ips / 1000 / peak }')" \
    "of $peak TFLOP/s dense bf16" "deepres bench $5 (3 x forward_gflops_per_image x pack_images_per_second)"
}
n=${packs##* }
for p in $precisions; do
  peak_row peak_fraction "$work/pack-$graph_depth-$p-$n.txt" $p $n "--depth $graph_depth --precision $p --pack $n"
done

# PyTorch's own way of training N models at once (torch.func stack_module_state + vmap,
# scripts/bench_torch.py --models N) at the largest N, against deepres's pack of N.
n=${packs##* }
for d in $depths; do
  for p in $precisions; do
    f=$work/torch-$d-$p-$n.txt
    targs=(--depth $d --precision $p --models $n --batch $batch --steps $steps --warmup $warmup
           --device $dev --pipeline gpu)
    at "torch vmap $d $p $n"
    if ! "$py" scripts/bench_torch.py "${targs[@]}" > "$f" 2>&1; then
      echo "failed: $py scripts/bench_torch.py ${targs[*]} ($(tail -1 "$f"))" >&2; status=1; continue
    fi
    torch_ips=$(field "$f" images_per_second)
    row torch_vmap_images_per_second ResNet-$d $p $n "$torch_ips" images/s "python3 scripts/bench_torch.py ${targs[*]}"
    ours=$work/pack-$d-$p-$n.txt
    has "$ours" pack_images_per_second && row ratio_vs_torch_vmap ResNet-$d $p $n \
      "$(awk -v a="$(field "$ours" pack_images_per_second)" -v b="$torch_ips" 'BEGIN { printf "%.3f", a / b }')" \
      x "deepres bench --pack $n / bench_torch.py --models $n"
  done
done

# The largest pack at ResNet-$graph_depth with weights and batches channels-last (NHWC): cuDNN's
# grouped convolutions may run other kernels there.
n=${packs##* }
for p in $precisions; do
  args=(--depth $graph_depth --precision $p --pack $n --channels-last)
  bench "cl-$p" "${args[@]}" || continue
  cmd="deepres bench --device $dev --batch $batch --steps $steps --warmup $warmup ${args[*]}"
  row pack_images_per_second_channels_last ResNet-$graph_depth $p $n \
    "$(field "$work/cl-$p.txt" pack_images_per_second)" images/s "$cmd"
done

if [[ $dev == cuda* ]]; then
  for p in $precisions; do
    for g in off on; do
      args=(--depth $graph_depth --precision $p)
      [ $g = on ] && args+=(--cuda-graph)
      bench "graph-$p-$g" "${args[@]}" || continue
      cmd="deepres bench --device $dev --batch $batch --steps $steps --warmup $warmup ${args[*]}"
      row "images_per_second_cuda_graph_$g" ResNet-$graph_depth $p 1 \
        "$(field "$work/graph-$p-$g.txt" images_per_second)" images/s "$cmd"
    done
    # The largest pack with its step captured too (its graph-off figures are rows of 1.).
    args=(--depth $graph_depth --precision $p --pack $n --cuda-graph)
    bench "graph-pack-$p" "${args[@]}" || continue
    f=$work/graph-pack-$p.txt
    cmd="deepres bench --device $dev --batch $batch --steps $steps --warmup $warmup ${args[*]}"
    pack_rows "$f" pack_WHAT_cuda_graph_on ResNet-$graph_depth $p $n "$cmd"
  done
  # One ResNet-110 with graphs and channels-last (the 200-epoch target's model, every speed
  # setting at once).
  for p in $precisions; do
    args=(--depth $graph_depth --precision $p --cuda-graph --channels-last)
    bench "graph-cl-$p" "${args[@]}" || continue
    cmd="deepres bench --device $dev --batch $batch --steps $steps --warmup $warmup ${args[*]}"
    row images_per_second_cuda_graph_on_channels_last ResNet-$graph_depth $p 1 \
      "$(field "$work/graph-cl-$p.txt" images_per_second)" images/s "$cmd"
  done
  # The largest pack at ResNet-$graph_depth in bf16 with every speed setting at once (graphs and
  # channels-last): target 2c's best chance, with its peak fraction.
  args=(--depth $graph_depth --precision bf16 --pack $n --cuda-graph --channels-last)
  if [[ " $precisions " == *" bf16 "* ]] && bench "graph-cl-pack-bf16" "${args[@]}"; then
    f=$work/graph-cl-pack-bf16.txt
    cmd="deepres bench --device $dev --batch $batch --steps $steps --warmup $warmup ${args[*]}"
    pack_rows "$f" pack_WHAT_cuda_graph_on_channels_last ResNet-$graph_depth bf16 $n "$cmd"
    peak_row peak_fraction_cuda_graph_on_channels_last "$f" bf16 $n "${args[*]}"
  fi
fi

# 4. Tables Z1 and Z2 on one GPU, projected from all the rows above (scripts/project_tables.py
#    states the model of the cost in each row's command; run last, so that graphed packs
#    measured at both depths count where faster). A run stopped at its limit loses these rows
#    only: project_tables.py gives them from the rows written (GPU_CSV --date --device --commit).
if "$py" scripts/project_tables.py "$out" --date "$date" --device "$device" --commit "$commit" \
    --epoch-images $train_n > "$work/tables.csv"; then
  cat "$work/tables.csv" >> "$out"
else
  echo "failed: python3 scripts/project_tables.py $out" >&2; status=1
fi
echo "rows appended to $out" >&2
exit $status
