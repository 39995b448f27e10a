#!/usr/bin/env bash
# Figure C5 at full size (experiments/chizat2025/fig5.yaml, docs/chizat2025.md) takes about 8 h
# on a 2-core CPU, longer than one working session, and a session's machine may start from a
# fresh clone with no runs/. So the run's finished work is kept in the repository, under
# bench/cpu-c5-full/state/: the finished limits (runs/chizat2025/limits/limit-*.safetensors,
# about 0.5 MB each; a limit's partial training, 0.5 GB, is not kept) and the kept batches of
# models (runs/chizat2025/fig5/full/batches/errors-*.csv). Every file holds the full key of
# its setting, so a file that does not match the run is refused, never used.
#
#   scripts/c5_state.sh restore   # before the run: copy the kept state into runs/ (no overwrite)
#   scripts/c5_state.sh save      # after it (or a SIGTERM): copy what finished into bench/
#   scripts/c5_state.sh status    # how many limits and batches each side holds
#   scripts/c5_state.sh trained-limits DEST   # the ten trained limits (K = 100) into DEST (from
#                                 # the repository root), not the initialization control's
#                                 # K = 0 ones
#   scripts/c5_state.sh gpu-restore STATE     # a GPU's C5 (scripts/gpu_fidelity.sh, on the device):
#                                 # the trained limits and the batches an earlier GPU session
#                                 # kept (bench/gpu-c5-full/batches/) into STATE/{limits,batches}
#   scripts/c5_state.sh gpu-save C5_STATE     # after a GPU session, here: the batches of the
#                                 # c5-state/ that came back into bench/gpu-c5-full/batches/
#
# A GPU keeps its own batches: a batch's weights are drawn on its device, so the CPU's batches
# are not a GPU's; a limit's key names no device, so the CPU's limits serve both.
set -euo pipefail
cd "$(dirname "$0")/.."
state=bench/cpu-c5-full/state
limits=runs/chizat2025/limits
batches=runs/chizat2025/fig5/full/batches

# copy FROM TO PATTERN [SKIP]: the files FROM/PATTERN that TO does not hold yet, but those whose
# first 200 bytes (a safetensors file's header) match the regular expression SKIP.
copy() {
  mkdir -p "$2"
  local n=0 f skip=${4:-}
  for f in "$1"/$3; do
    [ -f "$f" ] || continue
    case $f in *.partial.*) continue ;; esac
    [ -e "$2/$(basename "$f")" ] && continue
    [ -n "$skip" ] && head -c 200 "$f" | grep -q "$skip" && continue
    cp "$f" "$2/"
    n=$((n + 1))
  done
  echo "c5-state: $n new file(s) $1 -> $2"
}

count() { find "$1" -maxdepth 1 -name "$2" ! -name '*.partial.*' 2>/dev/null | wc -l; }

case ${1:-} in
  restore)
    copy "$state/limits" "$limits" 'limit-*.safetensors'
    copy "$state/batches" "$batches" 'errors-*.csv'
    ;;
  save)
    copy "$limits" "$state/limits" 'limit-*.safetensors'
    copy "$batches" "$state/batches" 'errors-*.csv'
    ;;
  trained-limits)
    # A K = 0 limit holds a loss of K + 1 = 1 value: shape [1] in its header.
    [ -n "${2:-}" ] || { echo "usage: scripts/c5_state.sh trained-limits DEST" >&2; exit 2; }
    copy "$state/limits" "$2" \
      'limit-*.safetensors' '"loss":{[^}]*"shape":\[1\]'
    ;;
  gpu-restore)
    [ -n "${2:-}" ] || { echo "usage: scripts/c5_state.sh gpu-restore STATE" >&2; exit 2; }
    "$0" trained-limits "$2/limits"
    copy bench/gpu-c5-full/batches "$2/batches" 'errors-*.csv'
    ;;
  gpu-save)
    [ -d "${2:-}" ] || { echo "usage: scripts/c5_state.sh gpu-save C5_STATE (a c5-state/ that came back)" >&2; exit 2; }
    copy "$2/batches" bench/gpu-c5-full/batches 'errors-*.csv'
    ;;
  status)
    echo "c5-state: $state: $(count "$state/limits" 'limit-*.safetensors') limits, $(count "$state/batches" 'errors-*.csv') batches"
    echo "c5-state: runs/: $(count "$limits" 'limit-*.safetensors') limits, $(count "$batches" 'errors-*.csv') batches"
    echo "c5-state: bench/gpu-c5-full/batches: $(count bench/gpu-c5-full/batches 'errors-*.csv') batches (a GPU's)"
    ;;
  *)
    echo "usage: scripts/c5_state.sh restore|save|status|trained-limits DEST|gpu-restore STATE|gpu-save C5_STATE" >&2
    exit 2
    ;;
esac
