#!/usr/bin/env bash
# Builds and runs every test; then the bad-input, loader and SIMD kernel
# tests again under AddressSanitizer + UndefinedBehaviorSanitizer.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
(cd build && ctest --output-on-failure -j"${JOBS:-2}")
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCKV_SANITIZE=ON >/dev/null
sanitized="test_gguf|test_safetensors|test_llama2c|test_bad_input|test_tokenizer|test_quant|test_matmul|test_attention|test_engine|test_eval"
ninja -C build-asan -j"${JOBS:-2}" $(ls tests | sed -n 's/^\(test_[a-z0-9_]*\)\.cpp$/\1/p' | grep -E "^($sanitized)$")
(cd build-asan && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
   ctest --output-on-failure -j"${JOBS:-2}" -R "^($sanitized)$")
