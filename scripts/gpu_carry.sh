#!/usr/bin/env bash
# Here, on a machine with nvcc and no GPU: build the GPU test and benchmark
# programs and lay out what one `scripts/gpu.sh` call on the GPU machine needs
# in the main checkout's ignored .carry/ folder (the device tool sends the
# main checkout only):
#   .carry/cuda            this worktree (no build dirs, no .git)
#   .carry/cuda/prebuilt   the programs (GPU tests, bench_cuda, compresskv, loadgen), the shared libraries they need
#                          beyond glibc/libstdc++/CUDA, and where they were built
#   .carry/shared          the parts of ../shared the GPU tests and benchmarks read
# Then: run with carry [".carry/cuda", ".carry/shared"] and
#   cd .carry/cuda && bash scripts/gpu.sh
set -euo pipefail
cd "$(dirname "$0")/.."
SRC=$PWD
MAIN=${MAIN:-/work/main}
B=${BUILD_DIR:-build-cuda}
[ -d "$B" ] || cmake -S . -B "$B" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
ninja -C "$B" -j"${JOBS:-1}" test_cuda_backend bench_cuda compresskv loadgen test_cuda_tp bench_tp
DST=$MAIN/.carry/cuda
rm -rf "$DST" && mkdir -p "$DST"
tar -C "$SRC" --exclude='./build*' --exclude=node_modules --exclude=./.git --exclude=./gpu-out --exclude=./.carry --exclude=./.whl -cf - . | tar -C "$DST" -xf -
. scripts/carry_binaries.sh
carry_binaries "$B" "$DST/prebuilt" test_cuda_backend bench_cuda compresskv loadgen test_cuda_tp bench_tp
echo "$SRC" >"$DST/prebuilt/source_dir"
git rev-parse --short HEAD >"$DST/prebuilt/commit"
# The 64 MiB the tool carries: the libraries travel xz-compressed.
tar -C "$DST/prebuilt" -cJf "$DST/prebuilt/lib.tar.xz" lib && rm -rf "$DST/prebuilt/lib"
SH=$MAIN/.carry/shared
SHARED=${SHARED:-$SRC/../shared}
rm -rf "$SH" && mkdir -p "$SH/golden" "$SH/models" "$SH/data"
cp -a "$SHARED/golden/tiny-hf" "$SHARED/golden/stories260k" "$SH/golden/"
mkdir -p "$SH/golden/smollm2" && cp -a "$SHARED"/golden/smollm2/{short,chat,long}.{json,last_logits.f32} "$SH/golden/smollm2/"
cp -a "$SHARED/models/tiny-hf" "$SH/models/"
cp -a "$SHARED/data/compresskv-published" "$SH/data/"
du -sh "$DST" "$SH" "$DST/prebuilt"
