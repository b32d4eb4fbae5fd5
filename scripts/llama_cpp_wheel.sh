# Sourced by scripts/test.sh: the real model server of tests/real, llama-cpp-python[server].
#
# It is a compiled wheel (llama.cpp inside; about 10 minutes to build on 2 cores), so it is
# built once into a wheel cache OUTSIDE the checkout and installed from there afterwards:
#   $POWERGATE_CI_CACHE/wheels (default /var/cache/powergate-ci/wheels; when that is not
#   writable, ~/.cache/powergate-ci/wheels). The build log is build-llama.log beside it.
# llama_cpp_start: installs from the cache, or starts the build in the background, so it
#   overlaps the other tests; llama_cpp_wait: waits for it before tests/real run.
LLAMA_CPP_VERSION="0.3.36"
LLAMA_CPP_CMAKE_ARGS="-DGGML_NATIVE=OFF"  # portable: the wheel may be reused on another CPU
LLAMA_CPP_BUILD_PID=""

llama_cpp_cache() {
  local base="${POWERGATE_CI_CACHE:-/var/cache/powergate-ci}"
  if ! mkdir -p "$base/wheels" 2>/dev/null || [ ! -w "$base/wheels" ]; then
    base="${XDG_CACHE_HOME:-$HOME/.cache}/powergate-ci"
    mkdir -p "$base/wheels"
  fi
  echo "$base/wheels"
}

llama_cpp_install_cached() {  # PY CACHE: 0 when installed from a cached wheel
  local wheel
  wheel="$(ls "$2"/llama_cpp_python-"$LLAMA_CPP_VERSION"-*.whl 2>/dev/null | head -n1 || true)"
  [ -n "$wheel" ] || return 1
  "$1" -m pip install -q --disable-pip-version-check "${wheel}[server]"
}

llama_cpp_start() {  # PY
  local py="$1" cache
  if "$py" -c "import llama_cpp.server" >/dev/null 2>&1; then
    return 0
  fi
  cache="$(llama_cpp_cache)"
  if llama_cpp_install_cached "$py" "$cache"; then
    return 0
  fi
  echo "test.sh: building llama-cpp-python $LLAMA_CPP_VERSION once into $cache (about 10 minutes, in the background; log: $cache/build-llama.log)"
  (
    CMAKE_ARGS="$LLAMA_CPP_CMAKE_ARGS" "$py" -m pip wheel -q --disable-pip-version-check --no-deps \
      -w "$cache" "llama-cpp-python==$LLAMA_CPP_VERSION" >"$cache/build-llama.log" 2>&1 \
      && llama_cpp_install_cached "$py" "$cache"
  ) &
  LLAMA_CPP_BUILD_PID=$!
}

llama_cpp_wait() {
  if [ -n "$LLAMA_CPP_BUILD_PID" ]; then
    echo "test.sh: waiting for the llama-cpp-python build (the real-model tests run last)"
    if ! wait "$LLAMA_CPP_BUILD_PID"; then
      echo "test.sh: building llama-cpp-python failed; see $(llama_cpp_cache)/build-llama.log" >&2
      tail -n 20 "$(llama_cpp_cache)/build-llama.log" >&2 || true
      return 1
    fi
  fi
}
