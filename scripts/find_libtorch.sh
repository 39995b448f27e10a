# Sourced by the GPU scripts: find_libtorch BIN makes libtorch findable for BIN when its rpath
# (the build machine's venv) is not there: TORCH_LIB, else python3's torch, else
# /opt/torch/.venv's (where the device machines of BENCHMARKS.md have it).
find_libtorch() {
  local bin=$1
  if ldd "$bin" | grep -q 'libtorch.*not found'; then
    local lib=${TORCH_LIB:-}
    if [ -z "$lib" ]; then
      lib=$(python3 -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))' 2>/dev/null)
    fi
    if [ -z "$lib" ]; then
      lib=$(ls -d /opt/torch/.venv/lib/python3*/site-packages/torch/lib 2>/dev/null | head -n 1)
    fi
    export LD_LIBRARY_PATH=${lib}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
    if ldd "$bin" | grep -q 'not found'; then
      echo "$bin: libtorch not found (set TORCH_LIB to torch's lib directory)"
      ldd "$bin" | grep 'not found'
      return 1
    fi
  fi
}
