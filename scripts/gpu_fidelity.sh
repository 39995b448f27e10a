#!/usr/bin/env bash
# The papers' full-size figures on a GPU in one call (at most about 8 minutes of device time, by default):
#   0. Figure M7 at full size (51 H × 70 β heatmaps, L = 1000; 56 s on 2 CPU cores);
#   1. Figure M9 at full size on Fashion-MNIST: all 500 runs (10 H × 10 β × 5 learning rates,
#      L = 1000, 10 epochs) in one batched program (`--set chunk=500`);
#   2. Figure C5 at full size: 2100 models, D up to 100, n = 2048 training points.
# Each runs under its own time limit (M9_SECONDS, C5_SECONDS). At the limit it gets SIGTERM,
# stops after the step in progress and exits 75: its progress lines (seconds per epoch, per
# limit) are then the measurement, and the figure is not finished (say so; claim nothing).
#
#   scripts/gpu_fidelity.sh --prepare        # build machine: the release binary and Fashion-MNIST
#                                            # into target/gpu-fidelity/ and data/fashion-mnist/;
#                                            # carry both to the GPU machine
#   scripts/gpu_fidelity.sh OUT_DIR          # GPU machine, repository root
#   FIDELITY_SIZE=tiny scripts/gpu_fidelity.sh OUT_DIR   # smoke scale on the CPU (a check of
#                                            # this script; no GPU figure)
# Output in OUT_DIR: m9/ and c5/ (each figure's CSV, Markdown and plots; not M9's chunk
# checkpoint, 5 GB at 500 models), c5-state/ (C5's kept batches and its limits, a few MB: what
# lets a later run go on where this one stopped), m9.log, c5.log, fidelity.log (everything) and
# summary.txt, one line per figure: finished or stopped at the limit, wall seconds, exit status.
# Going on where a run stopped: the runs live in WORK (default runs/gpu-fidelity, a stable
# folder), so a second call on the same (still warm) machine resumes M9 from its checkpoint
# and C5 from its kept batches. A later session on a fresh machine resumes C5 from the
# repository: the CPU's trained limits and the GPU's batches that `scripts/c5_state.sh
# gpu-save` put in bench/gpu-c5-full/batches/ (copied into WORK/c5/state before C5 starts).
# Environment: FIDELITY_FIGURES (default "m7 m9 c5": which to run, in that order; "c5" alone for
# a call of C5 only: 781 of its 2100 models took 128 s on an H200), M7_SECONDS (default 60),
# M9_SECONDS (default 300),
# C5_SECONDS (default 180), M9_GRAPH (default 1: M9's
# steps through CUDA graphs; 0: ordinary), DEVICE (default cuda; tiny:
# cpu), WORK (where the runs go before their results are copied; default runs/gpu-fidelity,
# tiny: a temporary folder).
set -uo pipefail
DIR=target/gpu-fidelity
source "$(dirname "$0")/find_libtorch.sh"

prepare() {
  set -e
  cargo build --release
  rm -rf "$DIR" && mkdir -p "$DIR" data/fashion-mnist
  cp target/release/deepres "$DIR/deepres"
  cp /usr/share/datasets/fashion-mnist/*-ubyte.gz data/fashion-mnist/
  { echo "commit $(git rev-parse HEAD)"; git status --porcelain | sed 's/^/dirty /'; } > "$DIR/BUILD"
  echo "gpu-fidelity: ready; carry $DIR ($(du -sh "$DIR" | cut -f1)) and data/fashion-mnist ($(du -sh data/fashion-mnist | cut -f1))"
  cat "$DIR/BUILD"
}

# run_figure NAME LIMIT_S OUT ARGS...: one figure under its time limit; a summary line.
run_figure() {
  local name=$1 limit=$2 out=$3
  shift 3
  local start=$SECONDS rc
  echo "== $name: deepres $* (limit ${limit} s)"
  timeout --preserve-status -s TERM -k 120 "$limit" "$DIR/deepres" "$@" > "$out/$name.log" 2>&1
  rc=$?
  cat "$out/$name.log"
  local how="finished"
  case $rc in
    0) ;;
    3) how="finished, a check of the paper's claim failed (see its acceptance.csv)" ;;
    75) how="stopped at the ${limit} s limit (resumable; the figure is NOT finished)" ;;
    *) how="FAILED" ;;
  esac
  echo "$name: $how, $((SECONDS - start)) s wall, exit $rc" | tee -a "$out/summary.txt"
}

# keep_results FROM TO: the figure's CSV, Markdown and plots, not its checkpoints or caches.
keep_results() {
  mkdir -p "$2"
  find "$1" -maxdepth 1 -type f \( -name '*.csv' -o -name '*.md' -o -name '*.svg' -o -name '*.png' \) \
    -exec cp {} "$2"/ \;
}

run_all() {
  local out=${1:-gpu-fidelity-out}
  mkdir -p "$out"
  : > "$out/summary.txt"
  exec > >(tee -a "$out/fidelity.log") 2>&1
  [ -x "$DIR/deepres" ] || { echo "gpu-fidelity: $DIR/deepres missing: run scripts/gpu_fidelity.sh --prepare on the build machine"; exit 1; }
  find_libtorch "$DIR/deepres" || exit 1
  local size=${FIDELITY_SIZE:-full} scale dev
  case $size in
    full) scale=full; dev=${DEVICE:-cuda} ;;
    tiny) scale=smoke; dev=${DEVICE:-cpu} ;;
    *) echo "FIDELITY_SIZE=$size: use full or tiny"; exit 2 ;;
  esac
  echo "== date: $(date -u +%FT%TZ)"
  cat "$DIR/BUILD" 2>/dev/null
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  "$DIR/deepres" info
  if [[ $dev == cuda* ]] && ! "$DIR/deepres" info | grep -qx 'cuda_available: true'; then
    echo "gpu-fidelity: CUDA is not available: run on the GPU machine, or FIDELITY_SIZE=tiny"
    exit 2
  fi
  local work=${WORK:-runs/gpu-fidelity}
  [ "$size" = tiny ] && work=${WORK:-$(mktemp -d)}  # a check's runs never mix with a GPU's
  mkdir -p "$work"
  # M9: every run in one program on the GPU (the CPU default is 50 at a time), each step
  # replayed from a CUDA graph (M9_GRAPH=0: ordinary steps; its results count only where
  # gpu_tests.sh's a_graphed_marion_training_equals_the_ordinary_one passed on that GPU).
  local chunk=500 graph=(--set train.cuda_graph=true) figures=" ${FIDELITY_FIGURES:-m7 m9 c5} "
  [ "$size" = tiny ] && chunk=9
  [ "${M9_GRAPH:-1}" = 0 ] || [[ $dev != cuda* ]] && graph=()
  if [[ $figures == *" m7 "* ]]; then  # the paper's size at both scales: 56 s on 2 CPU cores
    local m7_tiny=()  # (its one scale is the paper's; the check of this script runs less)
    [ "$size" = tiny ] && m7_tiny=(--set hursts.points=3 --set betas.points=4 --set depth=50)
    run_figure m7 "${M7_SECONDS:-60}" "$out" marion experiments/marion2022/fig7.yaml \
      --scale "$scale" --device "$dev" --out "$work/m7" "${m7_tiny[@]}"
    keep_results "$work/m7" "$out/m7"
  fi
  if [[ $figures == *" m9 "* ]]; then
    run_figure m9 "${M9_SECONDS:-300}" "$out" marion experiments/marion2022/fig9.yaml \
      --scale "$scale" --device "$dev" --out "$work/m9" --set chunk=$chunk "${graph[@]}"
    keep_results "$work/m9" "$out/m9"
  fi
  if [[ $figures == *" c5 "* ]]; then
    # C5's kept batches and its limits in one folder (state/), returned as c5-state/.
    local state=$work/c5/state
    # On a GPU, C5 goes on from the limits and the GPU batches kept in the repository.
    [ "$size" = full ] && "$(dirname "$0")/c5_state.sh" gpu-restore "$state"
    run_figure c5 "${C5_SECONDS:-180}" "$out" chizat experiments/chizat2025/fig5.yaml \
      --scale "$scale" --device "$dev" --out "$state" --set "limit.cache=$state/limits"
    keep_results "$state" "$out/c5"
    mkdir -p "$out/c5-state" && cp -r "$state/batches" "$state/limits" "$out/c5-state/" 2>/dev/null
    echo "c5: $(ls "$state/batches" 2>/dev/null | wc -l) batches kept (returned in c5-state/)" | tee -a "$out/summary.txt"
  fi
  echo "== summary"
  cat "$out/summary.txt"
  ! grep -q FAILED "$out/summary.txt"
}

case "${1:-}" in
  --prepare) prepare ;;
  -h | --help) sed -n '2,/^set -uo/{/^set -uo/!p}' "$0" ;;
  *) run_all "$@" ;;
esac
