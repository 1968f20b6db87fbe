#!/usr/bin/env bash
# Here (a machine with nvcc, no GPU): build compresskv with CUDA and lay out
# what scripts/eval_gpu.sh needs on the GPU machine, in the main checkout's
# ignored .carry/ (the device tool sends the main checkout only; ../shared
# does not travel). The SmolLM2 GGUF (98 MB) is more than one call may carry
# (64 MiB with the tree), so it travels in two parts over two calls:
#   .carry/eval-model/smollm2.part-a   call 1 copies it to /tmp/ckv-eval-model
#   .carry/eval/                        call 2: compresskv + libraries
#                                       (prebuilt.tar.xz), pg_essays/, part b,
#                                       the GGUF's sha256
# Then, one right after the other (the machine stays warm ~30 s between calls):
#   1. carry [".carry/eval-model"]:
#      mkdir -p /tmp/ckv-eval-model && cp .carry/eval-model/smollm2.part-a /tmp/ckv-eval-model/
#   2. carry [".carry/eval"]: bash scripts/eval_gpu.sh
set -euo pipefail
cd "$(dirname "$0")/.."
MAIN=${MAIN:-/work/main}
SHARED=${SHARED:-$PWD/../shared}
B=${BUILD_DIR:-build-cuda}
GGUF=$SHARED/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf
PART_A_MIB=${PART_A_MIB:-52}
[ -d "$B" ] || cmake -S . -B "$B" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
ninja -C "$B" -j"${JOBS:-1}" compresskv
DST=$MAIN/.carry/eval
A=$MAIN/.carry/eval-model
rm -rf "$DST" "$A" && mkdir -p "$DST" "$A"
. scripts/carry_binaries.sh
carry_binaries "$B" "$DST/prebuilt" compresskv
git rev-parse --short HEAD >"$DST/prebuilt/commit"
tar -C "$DST/prebuilt" -cJf "$DST/prebuilt.tar.xz" . && rm -rf "$DST/prebuilt"
cp -R "$SHARED/data/pg_essays" "$DST/" && chmod -R u+w "$DST/pg_essays"
head -c $((PART_A_MIB << 20)) "$GGUF" >"$A/smollm2.part-a"
tail -c +$(((PART_A_MIB << 20) + 1)) "$GGUF" >"$DST/smollm2.part-b"
sha256sum <"$GGUF" | cut -d' ' -f1 >"$DST/smollm2.sha256"
du -sh "$A" "$DST"
