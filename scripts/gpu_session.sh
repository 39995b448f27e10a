#!/usr/bin/env bash
# A lent GPU's work in priority order, in two device calls of at most about 9 minutes each:
# the GPU tests and the throughput figures (BENCHMARKS.md, bench/gpu.csv) first, the papers'
# full-size figures second.
#
#   scripts/gpu_session.sh --prepare       # build machine: builds and stages everything; prints
#                                          # what each call carries, with its size (the limit is
#                                          # 64 MiB, the tracked files included)
#   scripts/gpu_session.sh OUT 1           # GPU machine, call 1: scripts/gpu_tests.sh (OUT/tests/),
#                                          # then scripts/gpu_tables.sh (rows in OUT/gpu.csv)
#   scripts/gpu_session.sh OUT 2           # GPU machine, call 2: scripts/gpu_fidelity.sh (OUT/fidelity/;
#                                          # C5 starts from the CPU's trained limits and the
#                                          # batches earlier GPU sessions kept, both in the
#                                          # repository; its batches come back in
#                                          # OUT/fidelity/c5-state/: keep them here with
#                                          # `scripts/c5_state.sh gpu-save <that folder>`. M9 with
#                                          # raw pixels is finished on the CPU
#                                          # (bench/2026-12-01-cpu-m9-raw/): its GPU epochs are
#                                          # timed from scratch)
#   GPU_SESSION_DRY=1 scripts/gpu_session.sh OUT 1|2   # the same at tiny sizes on the CPU (a check
#                                          # of this script; no GPU figure)
#
# Each part runs under its own limit (TESTS_SECONDS 230, TABLES_SECONDS 330; call 2 keeps
# gpu_fidelity.sh's own limits, M9_SECONDS 300 and C5_SECONDS 180), so that a call ends before
# the device tool's 600 s and whatever was written under OUT comes back. OUT/session.txt says
# what ran, how long and how it ended; every other file of the call (the logs of each part,
# each command's own output under tables-logs/, the tests' and figures' files) is packed into
# OUT/call-N.tar.gz, since the device tool brings back at most 8 files. Record every figure in
# BENCHMARKS.md and bench/gpu.csv (OUT/gpu.csv holds its rows) with the date, device and
# command. PYTHON: a python3 with torch for scripts/bench_torch.py (default
# /opt/torch/.venv/bin/python3 where it exists, else make setup's venv, else python3).
#
# The budget: a session's 15 device minutes count start-up and idle time too. On 2026-12-04 the
# machine started in about 30 s; call 1 held it 536 s (the tables reached their 430 s limit in
# their last step, the graphed channels-last pack; the tests, 11, took 98 s), which left
# 334 s: call 2 ran `FIDELITY_FIGURES='m7 c5' C5_SECONDS=200` in 222 s, and 97 s were left
# over, under the 4 minutes a fresh start needs. So: give call 2 what is left less about
# 100 s, and give_back at once after it. M7 takes seconds. C5 starts from the CPU's ten
# trained limits and the GPU's kept batches (653 of its 2100 models by 2026-12-04; models of
# larger D cost more), and a C5 stopped at its limit goes on in a later session. M9
# (`M9_SECONDS=240 FIDELITY_FIGURES='m7 m9'`) times epochs of the 500 runs only: its 10
# epochs (about 15 min) do not fit in one session.
set -uo pipefail
here=$(dirname "$0")
source "$here/find_libtorch.sh"

prepare() {
  set -e
  "$here/gpu_tests.sh" --prepare
  "$here/gpu_fidelity.sh" --prepare
  # What each call carries: nothing under runs/ (C5's limits and a GPU's kept batches are in
  # the repository, and gpu_fidelity.sh copies them into place on the device); Fashion-MNIST
  # only for M9. The device tool refuses a call whose tracked files and carry pass 64 MiB
  # (a refused call on 2026-12-04 carried 81 MB).
  local tracked
  tracked=$(git ls-files -z | du -cb --files0-from=- 2>/dev/null | tail -1 | cut -f1)
  carry_line "$tracked" 1 target/gpu-tests
  carry_line "$tracked" 2 target/gpu-fidelity
  carry_line "$tracked" "2 with M9 (FIDELITY_FIGURES='m7 m9')" target/gpu-fidelity data/fashion-mnist
}

# carry_line TRACKED_BYTES CALL PATH...: the carry list of a call and its size with the tracked
# files (TRACKED_BYTES), which travel too; a warning when the total passes the device tool's
# 64 MiB.
carry_line() {
  local tracked=$1 call=$2 paths total
  shift 2
  paths=$(du -cb "$@" | tail -1 | cut -f1)
  total=$(( (tracked + paths) / 1048576 ))
  echo "gpu-session: call $call: carry [$(printf '"%s", ' "$@" | sed 's/, $//')] ($total MiB with the tracked files)"
  [ "$total" -lt 64 ] || echo "gpu-session: call $call: WARNING: over the device tool's 64 MiB: it will refuse the call"
}

# part NAME LIMIT COMMAND...: runs COMMAND under LIMIT seconds, its output in OUT/NAME.log.
part() {
  local name=$1 limit=$2 start=$SECONDS rc
  shift 2
  echo "== $name (limit $limit s): $*"
  timeout --signal=TERM --kill-after=20 "$limit" "$@" > "$out/$name.log" 2>&1
  rc=$?
  tail -n 15 "$out/$name.log"
  local how
  case $rc in
    0) how=finished ;;
    124 | 137) how="stopped at the limit" ;;
    *) how=FAILED ;;
  esac
  echo "$name: $how, exit $rc, $((SECONDS - start)) s" | tee -a "$out/session.txt"
}

run() {
  out=${1:?OUT directory}
  local call=${2:?call 1 or 2}
  mkdir -p "$out"
  # Call 1 runs the tests' build, call 2 the figures' (each carries only its own).
  local build=target/gpu-tests
  [ "$call" = 2 ] && build=target/gpu-fidelity
  find_libtorch "$build/deepres" || exit 1
  echo "date $(date -u +%FT%TZ), call $call${GPU_SESSION_DRY:+ (GPU_SESSION_DRY: tiny sizes on the CPU, no GPU figure)}" | tee -a "$out/session.txt"
  cat "$build/BUILD" >> "$out/session.txt"
  # A python3 with torch, for scripts/bench_torch.py: PYTHON, else the device machines' venv,
  # else the one `make setup` installs here (a GPU_SESSION_DRY run on the build machine).
  local py=${PYTHON:-python3} v
  if [ -z "${PYTHON:-}" ]; then
    for v in /opt/torch/.venv "${XDG_CACHE_HOME:-$HOME/.cache}/deepres/torch-2.11.0"; do
      [ -x "$v/bin/python3" ] && { py=$v/bin/python3; break; }
    done
  fi
  local dry=()
  [ -n "${GPU_SESSION_DRY:-}" ] && dry=(env GPU_TABLES_SIZE=tiny DRY_RUN_CPU=1 FIDELITY_SIZE=tiny C5_SECONDS=20)
  case $call in
    1)
      # The tests first (whether graphed training learns decides what the rows are worth),
      # then the tables until the call's end.
      local commit
      commit=$(sed -n 's/^commit \(.......\).*/\1/p' "$build/BUILD")
      part tests "${TESTS_SECONDS:-230}" "${dry[@]}" "$here/gpu_tests.sh" "$out/tests"
      part tables "${TABLES_SECONDS:-330}" "${dry[@]}" env DEEPRES="$build/deepres" \
        GPU_TABLES_OUT="$out/gpu.csv" GPU_TABLES_LOGS="$out/tables-logs" PYTHON="$py" COMMIT="$commit" \
        "$here/gpu_tables.sh"
      ;;
    2)
      part fidelity 560 "${dry[@]}" "$here/gpu_fidelity.sh" "$out/fidelity"
      ;;
    *) echo "call $call: use 1 or 2" >&2; exit 2 ;;
  esac
  bundle "$out" "$call"
  cat "$out/session.txt"
}

# bundle OUT CALL: everything under OUT but session.txt and gpu.csv into OUT/call-CALL.tar.gz
# (the device tool brings back at most 8 files, at most 2 folders down).
bundle() {
  local out=$1 call=$2 items
  items=$(cd "$out" && ls -A | grep -v -x -e session.txt -e gpu.csv -e 'call-.*\.tar\.gz')
  [ -n "$items" ] || return 0
  # shellcheck disable=SC2086
  tar -czf "$out/call-$call.tar.gz" -C "$out" $items && (cd "$out" && rm -rf $items)
}

case "${1:-}" in
  --prepare) prepare ;;
  -h | --help | "") sed -n '2,/^set -uo/{/^set -uo/!p}' "$0" ;;
  *) run "$@" ;;
esac
