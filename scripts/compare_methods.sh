#!/usr/bin/env bash
# Every method at several budgets on one long prompt (essays from
# ../shared/data/pg_essays with a fact planted in the middle and a question
# after them): KV bytes held, peak RSS, prompt/generation speed and the greedy
# answer. Usage: scripts/compare_methods.sh [MODEL] [PROFILE] [budgets...]
# Without PROFILE, compresskv uses a profile made from a seeded random head
# ranking (a stand-in until identify-heads exists: valid for speed and memory,
# not for quality).
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:-../shared/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf}
profile=${2:-}
shift $(( $# > 2 ? 2 : $# )) || true
budgets=("$@"); [ ${#budgets[@]} -gt 0 ] || budgets=(64 128 256 512)
bin=./build/compresskv
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
essays=../shared/data/pg_essays
{
  head -c 14000 "$essays/gap.txt"
  printf '\nThe secret code of the lighthouse keeper is 7193.\n'
  head -c 14000 "$essays/popular.txt"
  printf '\n\nQuestion: What is the secret code of the lighthouse keeper?\nAnswer:'
} > "$work/prompt.txt"
if [ -z "$profile" ]; then
  python3 - "$work/heads.json" <<'PY'
import json, random, sys
random.seed(0)
json.dump({str(l): random.sample(range(9), 9) for l in range(30)}, open(sys.argv[1], "w"))
PY
  $bin profile import -m "$model" --heads "$work/heads.json" -o "$work/profile.json" 2>/dev/null
  profile=$work/profile.json
fi
printf '| method | budget | prompt tokens | KV held | KV full | peak RSS | prompt t/s | gen t/s | answer |\n'
printf '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n'
one() {
  local method=$1 budget=$2
  local args=(run -m "$model" -f "$work/prompt.txt" --chat --temp 0 -n 24 --kv-method "$method")
  [ "$method" != full ] && args+=(--kv-budget "$budget")
  [ "$method" = compresskv ] && args+=(--kv-profile "$profile")
  /usr/bin/time -f '%M' -o "$work/rss" $bin "${args[@]}" > "$work/out" 2> "$work/err"
  local stats kv rss
  stats=$(grep '^prompt tokens' "$work/err")
  kv=$(grep '^kv cache' "$work/err")
  rss=$(awk '{printf "%.1f MiB", $1/1024}' "$work/rss")
  printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$method" "$budget" \
    "$(sed 's/prompt tokens: \([0-9]*\),.*/\1/' <<<"$stats")" \
    "$(sed 's/.*: \(.*\) held.*/\1/' <<<"$kv")" "$(sed 's/.*full cache \(.*\) (.*/\1/' <<<"$kv")" "$rss" \
    "$(sed 's/.*prompt tokens\/s: \([0-9.]*\),.*/\1/' <<<"$stats")" \
    "$(sed 's/.*generated tokens\/s: \([0-9.]*\).*/\1/' <<<"$stats")" "$(tr '\n' ' ' < "$work/out" | cut -c1-60)"
}
one full -
for b in "${budgets[@]}"; do
  for m in streamingllm snapkv pyramidkv adakv compresskv; do one "$m" "$b"; done
done
