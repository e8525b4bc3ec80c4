#!/usr/bin/env bash
# Installs llama-cpp-python into a virtualenv, compiled for this machine's CPU (llama.cpp's default,
# -march=native) but WITHOUT llama.cpp's AMX kernels: on CPUs with AMX (Intel Sapphire Rapids and
# later) they crash the first decode (llama.cpp issue #20824, fix pending in PR #26954). The weight-
# repacking kernels, which are safe and fast, stay. Sijo's engine also refuses an AMX build at run
# time (engines/llama_cpp/cpu.py), so a wheel built some other way cannot crash it either.
#
# pip's own wheel cache would hand back a wheel built with other flags, or on another CPU, so the
# wheel is kept in a cache of ours keyed by everything that shapes it: version, flags, compiler, CPU.
#
# Usage: scripts/install-llama-cpp.sh PIP VERSION
# Env:   SIJO_WHEEL_CACHE  where built wheels are kept (default: ~/.cache/sijo/wheels)
set -euo pipefail

PIP="$1"
VERSION="$2"
CACHE="${SIJO_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sijo/wheels}"

flags="$(bash "$(dirname "$0")/llama-cpp-cflags.sh")"
cpu="$(grep -m1 -E '^(flags|Features)' /proc/cpuinfo 2>/dev/null \
    || sysctl -n machdep.cpu.brand_string machdep.cpu.features 2>/dev/null || uname -m)"
key="$(printf '%s\n' "$VERSION" "$flags" "${CMAKE_ARGS:-}" "$(cc --version 2>/dev/null | head -n1)" "$cpu" \
    | python3 -c 'import hashlib, sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest()[:16])')"
dir="$CACHE/$key"

wheel="$(ls "$dir"/llama_cpp_python-"$VERSION"-*.whl 2>/dev/null | head -n1 || true)"
if [[ -z "$wheel" ]]; then
    echo "Compiling llama-cpp-python $VERSION for this CPU (CFLAGS: ${flags:-none}); a few minutes ..." >&2
    mkdir -p "$dir"
    CFLAGS="${CFLAGS:-} $flags" CXXFLAGS="${CXXFLAGS:-} $flags" \
        $PIP wheel --quiet --no-deps --no-cache-dir --no-binary llama-cpp-python -w "$dir" \
        "llama-cpp-python==$VERSION"
    wheel="$(ls "$dir"/llama_cpp_python-"$VERSION"-*.whl | head -n1)"
fi
$PIP install --quiet --force-reinstall --no-deps "$wheel"
