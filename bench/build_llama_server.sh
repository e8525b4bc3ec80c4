#!/usr/bin/env bash
# Build the peer `llama-server` from the llama.cpp sources vendored in the
# llama-cpp-python sdist (the same version Sijo's engine uses), into a cache
# directory outside the repository. Idempotent: does nothing if the binary
# already exists, built with the same flags.
#
# Like Sijo's engine (scripts/install-llama-cpp.sh), the peer is compiled
# without llama.cpp's AMX kernels, which crash on AMX CPUs (llama.cpp #20824):
# both then run the same kernels, repacked weights included.
#
# Usage: bash bench/build_llama_server.sh
# Env:   SIJO_BENCH_CACHE  cache dir (default: $HOME/.cache/sijo-bench)
#        SIJO_BENCH_JOBS   parallel build jobs (default: 2)
#        PIP               pip command (default: python3 -m pip)
set -euo pipefail

VERSION="0.3.36"
CACHE="${SIJO_BENCH_CACHE:-$HOME/.cache/sijo-bench}"
JOBS="${SIJO_BENCH_JOBS:-2}"
PIP="${PIP:-python3 -m pip}"
BIN="$CACHE/llama-server"
FLAGS="$(bash "$(dirname "$0")/../scripts/llama-cpp-cflags.sh")"
STAMP="$CACHE/llama-server.flags"

if [[ -x "$BIN" && -f "$STAMP" && "$(cat "$STAMP")" == "$FLAGS" ]]; then
    echo "llama-server already built: $BIN" >&2
    echo "$BIN"
    exit 0
fi

mkdir -p "$CACHE"
SDIST="$CACHE/llama_cpp_python-$VERSION.tar.gz"
if [[ ! -f "$SDIST" ]]; then
    echo "Downloading llama-cpp-python==$VERSION sdist ..." >&2
    # Only llama-cpp-python as source: `--no-binary :all:` would also build the sdist's build tools
    # (cmake, scikit-build-core) from source to read its metadata, for many minutes.
    $PIP download --no-deps --no-binary llama-cpp-python "llama-cpp-python==$VERSION" -d "$CACHE" >&2
fi
if [[ ! -f "$SDIST" ]]; then
    # Older pip / setuptools may name it with a dash.
    SDIST="$(ls "$CACHE"/llama[-_]cpp[-_]python-"$VERSION".tar.gz | head -n1)"
fi

SRC="$CACHE/llama_cpp_python-$VERSION"
if [[ ! -d "$SRC/vendor/llama.cpp" ]]; then
    echo "Extracting $SDIST ..." >&2
    rm -rf "$CACHE/extract"
    mkdir -p "$CACHE/extract"
    tar -xzf "$SDIST" -C "$CACHE/extract"
    rm -rf "$SRC"
    mv "$CACHE/extract"/* "$SRC"
    rmdir "$CACHE/extract"
fi

cd "$SRC/vendor/llama.cpp"
echo "Configuring llama.cpp in $PWD ..." >&2
rm -rf build  # flags changed (or first build): configure afresh
cmake -B build -DLLAMA_CURL=OFF -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_C_FLAGS="$FLAGS" -DCMAKE_CXX_FLAGS="$FLAGS" >&2
echo "Building llama-server with -j$JOBS (this takes a while) ..." >&2
cmake --build build --target llama-server -j"$JOBS" >&2

BUILT="$(find build -type f -name llama-server -perm -u+x | head -n1)"
if [[ -z "$BUILT" ]]; then
    echo "error: llama-server binary not found after build" >&2
    exit 1
fi
# Symlink rather than copy: the binary links the shared ggml/llama libraries
# that live next to it in the build tree (found via its build-tree RPATH).
ln -sfn "$PWD/$BUILT" "$BIN"
echo "$FLAGS" > "$STAMP"
echo "Built: $BIN" >&2
echo "$BIN"
