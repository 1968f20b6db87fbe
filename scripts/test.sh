#!/usr/bin/env bash
# Builds and runs every test (the end-to-end server tests of tests/server, with
# Node.js and Debian's chromium, among them as ctest's server_tests); then the
# bad-input, loader, tokenizer, sampler, SIMD kernel and server tests and the
# fuzz regression replays again under
# AddressSanitizer + UndefinedBehaviorSanitizer; then every fuzz target for
# CKV_FUZZ_SECONDS (default 30) each (scripts/fuzz.sh: clang, libFuzzer), a
# crash failing the run. CKV_FUZZ_SECONDS=0 leaves the fuzzing out.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install_deps.sh server-tests
bash scripts/build.sh
(cd build && ctest --output-on-failure -j"${JOBS:-2}")
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCKV_SANITIZE=ON -DCKV_CUDA=OFF >/dev/null
sanitized="test_gguf|test_safetensors|test_llama2c|test_bad_input|test_tokenizer|test_quant|test_matmul|test_attention|test_engine|test_eval"
sanitized+="|test_profile|test_chat_template|test_sampler|test_server|test_tp|fuzz_[a-z0-9_]*_replay"
ninja -C build-asan -j"${JOBS:-2}" $(ls tests | sed -n 's/^\(test_[a-z0-9_]*\)\.cpp$/\1/p' | grep -E "^($sanitized)$") \
  $(ls fuzz | sed -n 's/^\(fuzz_[a-z0-9_]*\)\.cpp$/\1_replay/p')
(cd build-asan && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
   ctest --output-on-failure -j"${JOBS:-2}" -R "^($sanitized)$")
if [ "${CKV_FUZZ_SECONDS:-30}" != 0 ]; then
  bash scripts/fuzz.sh "${CKV_FUZZ_SECONDS:-30}"
fi
