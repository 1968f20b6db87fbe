#!/usr/bin/env bash
# The main job: build, then generate with SmolLM2-135M-Instruct from
# ../shared/models when present, else with the stories260K model shipped here.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
smol=../shared/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf
if [ -f "$smol" ]; then
  ./build/compresskv run -m "$smol" --chat -p "What is the capital of France?" --temp 0 -n 64
else
  ./build/compresskv run -m models/stories260k/stories260K.bin --temp 0 -n 256
fi
