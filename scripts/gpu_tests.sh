#!/usr/bin/env bash
# The tests that need a GPU, in one run. A GPU machine has no cargo: the test
# executables are built here and carried over, as the GPU check and bench scripts carry the
# release binary.
#
#   scripts/gpu_tests.sh --prepare   # build machine (cargo): builds tests/gpu.rs, gpu_graph.rs,
#                                    # gpu_train_graph.rs, loader.rs
#                                    # and deepres; copies them to target/gpu-tests/ (carry that)
#   scripts/gpu_tests.sh [OUT_DIR]   # GPU machine, in the repository root: runs them
#
# Each test runs alone from its executable with an exact filter, under DEEPRES_REQUIRE_CUDA=1,
# so a test whose CUDA part cannot run FAILS instead of skipping; a filter that matches no
# test fails too (the harness would say "0 passed" and exit 0). The tests and their oracles:
#   loader cuda_loader_matches_cpu: the CUDA loader and augmentation equal the CPU ones;
#   gpu fp16_loss_scaling_skips_an_overflowing_step_and_recovers: a step whose fp16 gradients
#       overflow is skipped (weights unchanged, scale halved), the next is taken exactly;
#   gpu autocast_dtype_inside_the_region_and_restored_after: bf16/fp16 inside, fp32 after,
#       nested regions restore the outer dtype, a panic inside a region leaves it;
#   gpu_graph a_graphed_step_equals_the_ordinary_one: CUDA-graph steps vs ordinary steps, fp32, bf16;
#   gpu_graph a_graphed_training_follows_the_ordinary_loss_over_200_steps: ResNet-20, 200 steps
#       with and without graphs, fp32 and bf16: each step's loss within max(4 D, 2 %) of the
#       ordinary run's, D the largest difference between two ordinary runs (printed);
#   gpu_graph a_graphed_pack_step_equals_the_ordinary_one: a pack of 3 the same (and fp16), one rate and a rate
#       per member, a member frozen midway (the step captured again), within 4 times the spread
#       of two ordinary runs where that exceeds the bound;
#   gpu_train_graph deterministic_graphed_steps_on_the_loaders_batches_equal_the_ordinary_ones:
#       ResNet-110's graphed steps on the run's loader batches, deterministic mode, lr 0.1,
#       against ordinary ones, step by step (prints the first step at which they differ);
#   gpu_train_graph deterministic_graphed_training_equals_the_ordinary_one: `deepres train` of
#       ResNet-110, 2 epochs at lr 0.1, `train.deterministic: true` (no cuDNN benchmark),
#       fp32: graphed equals ordinary to the last digits (graphed training did not
#       learn on 2026-12-04, and is refused until the five gpu_train_graph tests pass);
#   gpu_train_graph graphed_training_in_benchmark_mode_learns_as_without: the same run as
#       `deepres train` runs by default (cuDNN benchmark on), at lr 0.02, against two
#       ordinary runs;
#   gpu_train_graph graphed_steps_on_the_loaders_batches_follow_the_ordinary_ones: the same
#       model's steps on the run's loader batches with cuDNN benchmark on, lr 0.02, outside
#       the run's loop;
#   gpu_train_graph graphed_steps_without_benchmark_mode_follow_the_ordinary_ones: the same
#       with cuDNN's heuristics instead of its benchmark (the five together: whether the
#       steps or the loop, and whether cuDNN's benchmark mode, part graphed from ordinary
#       training);
#   gpu_graph a_step_that_cannot_be_captured_runs_on_without_graphs: a failed capture falls back to
#       ordinary steps, each step run and counted once;
#   gpu_graph a_graphed_marion_training_equals_the_ordinary_one: Marion's batched training (M9's)
#       with its steps replayed from CUDA graphs equals it without (losses, weights, accuracy);
#   gpu_graph networks_on_their_own_streams_train_as_on_one_stream: `bench --pack 3 --streams
#       --cuda-graph` (each network's graph on its own stream) equals the networks stepped one
#       after another on the default stream without graphs;
#   gpu gpus_pin_one_child_per_device: `sweep --gpus` over every GPU, one child per device,
#       each child's CUDA_VISIBLE_DEVICES its one device, cells on cuda:0 (with one GPU this
#       checks one child at a time on it; the pinning across devices needs two or more);
#   gpu a_pack_on_cuda_trains_as_its_members_alone: `sweep --pack 3` against the cells alone
#       on CUDA, fp32, bf16 and fp16 (a loss scale per member), to a relative 2e-2 (5e-2 in
#       bf16 and fp16); `--pack auto` packs them on the GPU.
# Output: OUT_DIR/gpu-tests.log (everything) and OUT_DIR/results.txt (one line per test).
# Exit status 0 only when every test passed. DRY_RUN_CPU=1 runs them without
# DEEPRES_REQUIRE_CUDA on a machine without a GPU (CPU parts only; a check of this script).
# libtorch: the binaries' rpath, else LD_LIBRARY_PATH, else TORCH_LIB, else python3's torch,
# else /opt/torch/.venv's.
set -uo pipefail
DIR=target/gpu-tests
TESTS=(
  "gpu_train_graph deterministic_graphed_steps_on_the_loaders_batches_equal_the_ordinary_ones"
  "gpu_train_graph deterministic_graphed_training_equals_the_ordinary_one"
  "gpu_train_graph graphed_training_in_benchmark_mode_learns_as_without"
  "gpu_train_graph graphed_steps_on_the_loaders_batches_follow_the_ordinary_ones"
  "gpu_train_graph graphed_steps_without_benchmark_mode_follow_the_ordinary_ones"
  "loader cuda_loader_matches_cpu"
  "gpu fp16_loss_scaling_skips_an_overflowing_step_and_recovers"
  "gpu autocast_dtype_inside_the_region_and_restored_after"
  "gpu_graph a_graphed_step_equals_the_ordinary_one"
  "gpu_graph a_graphed_training_follows_the_ordinary_loss_over_200_steps"
  "gpu_graph a_graphed_pack_step_equals_the_ordinary_one"
  "gpu_graph a_step_that_cannot_be_captured_runs_on_without_graphs"
  "gpu_graph a_graphed_marion_training_equals_the_ordinary_one"
  "gpu_graph networks_on_their_own_streams_train_as_on_one_stream"
  "gpu gpus_pin_one_child_per_device"
  "gpu a_pack_on_cuda_trains_as_its_members_alone"
)

prepare() {
  set -e
  cargo build --release
  local json
  json=$(cargo test --release --no-run --test gpu --test gpu_graph --test gpu_train_graph --test loader --message-format=json)
  rm -rf "$DIR" && mkdir -p "$DIR"
  for t in gpu gpu_graph gpu_train_graph loader; do
    exe=$(python3 -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == sys.argv[1] and m.get("executable"):
        print(m["executable"])' "$t" <<< "$json")
    [ -n "$exe" ] || { echo "gpu-tests: no executable for tests/$t.rs"; exit 1; }
    cp "$exe" "$DIR/$t"
  done
  cp target/release/deepres "$DIR/deepres"
  { echo "commit $(git rev-parse HEAD)"; git status --porcelain | sed 's/^/dirty /'; } > "$DIR/BUILD"
  echo "gpu-tests: $DIR ready ($(du -sh "$DIR" | cut -f1)); carry it to the GPU machine"
  cat "$DIR/BUILD"
}

# find_libtorch: the binaries' rpath, else TORCH_LIB, python3's torch or /opt/torch/.venv's.
source "$(dirname "$0")/find_libtorch.sh"

run_all() {
  local out=${1:-gpu-tests-out}
  mkdir -p "$out"
  local log=$out/gpu-tests.log results=$out/results.txt
  : > "$results"
  exec > >(tee -a "$log") 2>&1
  for f in gpu gpu_graph loader deepres BUILD; do
    [ -e "$DIR/$f" ] || { echo "gpu-tests: $DIR/$f missing: run scripts/gpu_tests.sh --prepare on the build machine"; exit 1; }
  done
  find_libtorch "$DIR/deepres" || exit 1
  echo "== date: $(date -u +%FT%TZ)"
  cat "$DIR/BUILD"
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=index,name,memory.total,driver_version --format=csv
  export DEEPRES_BIN=$PWD/$DIR/deepres
  "$DEEPRES_BIN" info
  if [ -n "${DRY_RUN_CPU:-}" ]; then
    echo "== DRY_RUN_CPU: DEEPRES_REQUIRE_CUDA unset, CUDA parts skip (this is no GPU result)"
    unset DEEPRES_REQUIRE_CUDA
  else
    export DEEPRES_REQUIRE_CUDA=1
    "$DEEPRES_BIN" info | grep -qx 'cuda_available: true' || echo "gpu-tests: CUDA is not available: every test below must fail"
  fi
  local failed=0
  for t in "${TESTS[@]}"; do
    read -r exe name <<< "$t"
    echo "== $exe $name"
    local start=$SECONDS
    "$DIR/$exe" "$name" --exact --nocapture --test-threads=1 > "$out/$name.log" 2>&1
    local rc=$?
    cat "$out/$name.log"
    if [ "$rc" = 0 ] && grep -q '^test result: ok. 1 passed' "$out/$name.log"; then
      echo "PASS $exe $name ($((SECONDS - start)) s)" | tee -a "$results"
    else
      failed=$((failed + 1))
      echo "FAIL $exe $name (exit $rc, $((SECONDS - start)) s)" | tee -a "$results"
    fi
  done
  echo "== $((${#TESTS[@]} - failed)) of ${#TESTS[@]} passed${DRY_RUN_CPU:+ (DRY_RUN_CPU: CPU parts only)}"
  cat "$results"
  [ "$failed" = 0 ]
}

case "${1:-}" in
  --prepare) prepare ;;
  -h | --help) sed -n '2,/^set -uo/{/^set -uo/!p}' "$0" ;;
  *) run_all "$@" ;;
esac
