#!/usr/bin/env bash
# The CPU speed figures quoted in issues and notes, in one run: SmolLM2 at
# llama-bench's standard tests (exact and fast settings), generation after a
# long context at full cache and compressed, prompt reading with and without
# compression, and stories260K. Usage: scripts/bench_cpu.sh [MODEL] [REPS]
# Needs an idle machine: every figure is a median of REPS (default 3) runs,
# the long-context ones of one.
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:-../shared/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf}
reps=${2:-3}
bin=./build/compresskv
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# A seeded random head ranking stands in for a measured profile: valid for
# speed and memory, not for quality.
python3 - "$work/heads.json" <<'PY'
import json, random, sys
random.seed(0)
json.dump({str(l): random.sample(range(9), 9) for l in range(30)}, open(sys.argv[1], "w"))
PY
$bin profile import -m "$model" --heads "$work/heads.json" -o "$work/profile.json" 2>/dev/null
ckv=(--kv-method compresskv --kv-budget 256 --kv-profile "$work/profile.json")
fast=(--matmul q8 --kv-type f16)
b() { $bin bench -m "$model" "$@" | grep '^| [^-m]' | grep -v '^| model'; }
echo "| model | backend | threads | method | budget | test | t/s | kv held | kv full | peak |"
echo "| --- | --- | ---: | --- | ---: | --- | ---: | ---: | ---: | ---: |"
b -p 512 -n 128 -r "$reps"
b -p 0 -n 128 -r "$reps" "${fast[@]}" | sed 's/| full |/| full (q8, f16) |/'
b -p 2048 -n 0 -r 1
b -p 2048 -n 0 -r 1 "${ckv[@]}"
b -p 0 -n 64 -d 6144 -r 1
b -p 0 -n 64 -d 6144 -r 1 "${fast[@]}" | sed 's/| full |/| full (q8, f16) |/'
b -p 0 -n 64 -d 8000 -r 1 "${ckv[@]}"
b -p 0 -n 64 -d 8000 -r 1 "${ckv[@]}" "${fast[@]}" | sed 's/| compresskv |/| compresskv (q8, f16) |/'
$bin bench -m models/stories260k/stories260K.bin -p 256 -n 128 -r "$reps" | grep '^| [^-m]' | grep -v '^| model'
