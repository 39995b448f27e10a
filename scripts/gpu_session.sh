#!/usr/bin/env bash
# A lent GPU's work in priority order, in two device calls of at most about 9 minutes each:
# the throughput figures (BENCHMARKS.md, bench/gpu.csv) and the GPU tests first, the papers'
# full-size figures second.
#
#   scripts/gpu_session.sh --prepare       # build machine: builds and stages everything; prints
#                                          # what to carry (about 62 MB with the ten trained limits of
#                                          # the CPU's C5, under the 64 MiB limit)
#   scripts/gpu_session.sh OUT 1           # GPU machine, call 1: scripts/gpu_tables.sh (rows in
#                                          # OUT/gpu.csv), then scripts/gpu_tests.sh (OUT/tests/)
#   scripts/gpu_session.sh OUT 2           # GPU machine, call 2: scripts/gpu_fidelity.sh (OUT/fidelity/;
#                                          # C5's state in OUT/fidelity/c5-state/: unpack it to
#                                          # runs/gpu-fidelity/c5/state here, and --prepare carries it;
#                                          # --prepare also copies the CPU's finished C5 limits,
#                                          # kept in bench/cpu-c5-full/state/limits/, to that
#                                          # state/limits/ (not its kept batches: a batch's
#                                          # weights are drawn on its device, so a GPU draws its
#                                          # own). M9 with raw pixels is finished
#                                          # on the CPU (bench/2026-12-01-cpu-m9-raw/): carry
#                                          # none of its runs, so that the GPU's epochs are timed)
#   GPU_SESSION_DRY=1 scripts/gpu_session.sh OUT 1|2   # the same at tiny sizes on the CPU (a check
#                                          # of this script; no GPU figure)
#
# Each part runs under its own limit (TABLES_SECONDS 430, TESTS_SECONDS 130; call 2 keeps
# gpu_fidelity.sh's own limits, M9_SECONDS 300 and C5_SECONDS 180), so that a call ends before
# the device tool's 600 s and whatever was written under OUT comes back. OUT/session.txt says
# what ran, how long and how it ended; every other file of the call (the logs of each part,
# each command's own output under tables-logs/, the tests' and figures' files) is packed into
# OUT/call-N.tar.gz, since the device tool brings back at most 8 files. Record every figure in
# BENCHMARKS.md and bench/gpu.csv (OUT/gpu.csv holds its rows) with the date, device and
# command. PYTHON: a python3 with torch for scripts/bench_torch.py (default
# /opt/torch/.venv/bin/python3 where it exists, else make setup's venv, else python3).
#
# The budget: a session's 15 device minutes count start-up and idle time too. On 2026-12-01 the
# machine started in about 30 s and call 1 held it 317 s (tables 211 s, tests 71 s), call 2
# 377 s. Call 1 now measures more (about 6 min expected; the tests, 11 now, about 100 s):
# give call 2 what is left less a minute, e.g.
# `FIDELITY_FIGURES='m7 c5' C5_SECONDS=380 scripts/gpu_session.sh $OUT 2`, and give_back at
# once after it. M7 takes seconds. C5 starts from the CPU's ten trained limits (--prepare
# carries them), so what is left is its 2100 models and the initialization control (on an H200,
# 2026-12-01, 781 models and the limits of D = 1, 2, 3, 15-22 s each, took 128 s; the models
# of larger D cost more, so give C5_SECONDS as much as the call allows); a C5 stopped at its
# limit goes on in a later session from the c5-state/ that comes back. M9 (`M9_SECONDS=240
# FIDELITY_FIGURES='m7 m9'`) times epochs of the 500 runs only: its 10 epochs (about 15 min)
# do not fit in one session.
set -uo pipefail
here=$(dirname "$0")
source "$here/find_libtorch.sh"

prepare() {
  set -e
  "$here/gpu_tests.sh" --prepare
  "$here/gpu_fidelity.sh" --prepare
  local carry=(target/gpu-tests target/gpu-fidelity data/fashion-mnist)
  # C5's state from an earlier GPU session (its c5-state/, put there) and the limits the CPU
  # finished (a limit's key names no device: the H200's and the CPU's D = 1, 2, 3, 5 limits
  # ended at losses within 1 % of each other, docs/chizat2025.md): C5 goes on from them.
  # Only the ten trained limits (K = 100, 0.5 MB each) are copied: the initialization control's
  # K = 0 limits take seconds on a GPU, and all twenty would take the carry past 64 MiB.
  "$here/c5_state.sh" trained-limits runs/gpu-fidelity/c5/state/limits
  [ -d runs/gpu-fidelity/c5/state ] && carry+=(runs/gpu-fidelity/c5/state)
  # M9's runs so far (the CPU's runs-fashion-mnist.csv and its .runs-fashion-mnist.key, put
  # there): the GPU trains the rest.
  [ -f runs/gpu-fidelity/m9/runs-fashion-mnist.csv ] && carry+=(runs/gpu-fidelity/m9)
  echo "gpu-session: carry [$(printf '"%s", ' "${carry[@]}" | sed 's/, $//')] ($(du -shc "${carry[@]}" | tail -1 | cut -f1))"
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
  find_libtorch target/gpu-tests/deepres || exit 1
  echo "date $(date -u +%FT%TZ), call $call${GPU_SESSION_DRY:+ (GPU_SESSION_DRY: tiny sizes on the CPU, no GPU figure)}" | tee -a "$out/session.txt"
  cat target/gpu-tests/BUILD >> "$out/session.txt"
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
      local commit
      commit=$(sed -n 's/^commit \(.......\).*/\1/p' target/gpu-tests/BUILD)
      part tables "${TABLES_SECONDS:-430}" "${dry[@]}" env DEEPRES=target/gpu-tests/deepres \
        GPU_TABLES_OUT="$out/gpu.csv" GPU_TABLES_LOGS="$out/tables-logs" PYTHON="$py" COMMIT="$commit" \
        "$here/gpu_tables.sh"
      part tests "${TESTS_SECONDS:-130}" "${dry[@]}" "$here/gpu_tests.sh" "$out/tests"
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
