#!/usr/bin/env bash
# The compiler flags that keep llama.cpp's AMX kernels out of a -march=native build (all three: GCC 12
# still defines __AMX_INT8__ under -march=native with -mno-amx-tile alone). Prints nothing where the
# compiler targets no x86 AMX (ARM, or a compiler too old to know AMX, which then cannot emit it).
set -euo pipefail
CC="${CC:-cc}"
AMX_OFF="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
# shellcheck disable=SC2086
if echo | "$CC" $AMX_OFF -x c -E - >/dev/null 2>&1; then
    echo "$AMX_OFF"
fi
