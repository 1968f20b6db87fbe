#!/usr/bin/env bash
# The closing note's tables (issue 8 item 10) on SmolLM2-135M-Instruct in one
# command: NIAH, RULER-style and KLD for every method at budgets 64..1024
# (FullKV the reference); the paper's Table 3 ablation (snapkv = window +
# uniform -> srh+uniform -> compresskv = srh + error-aware) read from the same
# runs; the observation-window ablation (8, 16, 32, 64; --kv-window-at end
# and user) for SnapKV and CompressKV. Each command's wall time goes to
# times.md; every table goes into summary.md, printed last.
#
#   DEVICE=cpu|cuda SIZE=full|tiny STAGES=niah,kld,window,ruler bash scripts/eval_smollm2.sh
#
# SIZE=full: lengths up to 8k (for the GPU: about 5 minutes on one H200 by
# the estimate in the report; many hours on a 2-core CPU). SIZE=tiny: 500-token
# prompts, one depth, two needles -- checks the whole script on a CPU in minutes.
# Inputs: BIN (compresskv; default ./build/compresskv), M (the GGUF) and H
# (the haystack folder), which default to SHARED=../shared's
# models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf and
# data/pg_essays. PROFILE: the shipped profiles/smollm2-135m-instruct.json.
# OUT (default bench/eval-smollm2): one folder per command, times.md, summary.md.
# LIMIT: seconds each command may run; DEADLINE: seconds the whole script may
# run (0: no limit), commands in the order niah, kld, window, ruler. A command
# over its time is stopped and one without time left is skipped, both noted in
# times.md; the summary holds whatever finished.
set -euo pipefail
cd "$(dirname "$0")/.."
DEVICE=${DEVICE:-cpu}
SIZE=${SIZE:-full}
STAGES=${STAGES:-niah,kld,window,ruler}
SHARED=${SHARED:-../shared}
BIN=${BIN:-./build/compresskv}
M=${M:-$SHARED/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf}
H=${H:-$SHARED/data/pg_essays}
PROFILE=${PROFILE:-profiles/smollm2-135m-instruct.json}
OUT=${OUT:-bench/eval-smollm2}
LIMIT=${LIMIT:-0}
DEADLINE=${DEADLINE:-0}
START=$(date +%s)
case $DEVICE in cpu | cuda) ;; *) echo "DEVICE must be cpu or cuda, got '$DEVICE'" >&2; exit 2 ;; esac
for f in "$BIN" "$M" "$PROFILE"; do [ -e "$f" ] || { echo "missing: $f" >&2; exit 2; }; done
[ -d "$H" ] || { echo "missing haystack folder: $H" >&2; exit 2; }
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}  # shared cores: no busy waiting
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

methods=full,streamingllm,snapkv,pyramidkv,adakv,compresskv,srh+uniform
budgets=64,128,256,512,1024
if [[ $SIZE == tiny ]]; then
  # Two needles of our own (never the calibration or evaluation sets).
  printf '%s\n' \
    '{"needle": "The lighthouse keeper kept a green parrot called Mango.", "question": "What was the parrot called?", "answer": "Mango"}' \
    '{"needle": "The secret ingredient of the soup was smoked paprika.", "question": "What was the secret ingredient of the soup?", "answer": "smoked paprika"}' \
    >"$OUT/needles.jsonl"
  NIAH=(--lengths 500 --depths 0.5 --needles "$OUT/needles.jsonl")
  RULER=(--lengths 500 --samples 1 --tasks niah_single_1,niah_multikey_1,vt)
  KLD=("400 32")
  WIN=(--lengths 500 --depths 0.5 --needles "$OUT/needles.jsonl")
  WIN_BUDGETS=128
else
  NIAH=(--lengths 1000,2000,4000,8000 --depths 0.1,0.3,0.5,0.7,0.9)
  RULER=(--lengths 4000,8000 --samples 3)
  KLD=("2048 256" "7680 256")
  WIN=(--lengths 2000 --depths 0.1,0.3,0.5,0.7,0.9)
  WIN_BUDGETS=128,256
fi
COMMON=(-m "$M" --device "$DEVICE" --kv-profile "$PROFILE")
# On the GPU the grid's KV pool is allocated: 32 GiB decodes every cell of an 8k prompt in one batch.
[[ $DEVICE == cuda ]] && COMMON+=(--pool-gib "${POOL_GIB:-32}")
# EXTRA: more flags for every command, e.g. EXTRA="--kv-type f16" (f32 rows are the default, as on the CPU).
read -r -a extra <<<"${EXTRA:-}"
COMMON+=("${extra[@]}")
has() { [[ ",$STAGES," == *",$1,"* ]]; }

{
  echo "| command | wall s | status |"
  echo "|---|---:|---|"
} >"$OUT/times.md"
# timed NAME ARGS...: runs `compresskv ARGS -o OUT/NAME`, logs to OUT/NAME.log.
timed() {
  local name=$1 t0 rc=0 limit=$LIMIT
  shift
  if [[ $DEADLINE -gt 0 ]]; then
    local left=$((DEADLINE - ($(date +%s) - START)))
    if [[ $left -lt 15 ]]; then
      printf '| `compresskv %s` | - | skipped: DEADLINE=%s s reached |\n' "$*" "$DEADLINE" >>"$OUT/times.md"
      echo "[$(date +%T)] $name: skipped (deadline)" >&2
      return 0
    fi
    [[ $limit -gt 0 && $limit -lt $left ]] || limit=$left
  fi
  t0=$(date +%s%N)
  if [[ $limit -gt 0 ]]; then
    timeout "$limit" "$BIN" "$@" -o "$OUT/$name" >"$OUT/$name.log" 2>&1 || rc=$?
  else
    "$BIN" "$@" -o "$OUT/$name" >"$OUT/$name.log" 2>&1 || rc=$?
  fi
  local ds status=ok  # tenths of a second
  ds=$(( ($(date +%s%N) - t0) / 100000000 ))
  if [[ $rc -eq 124 ]]; then status="FAILED (stopped after $limit s)"; elif [[ $rc -ne 0 ]]; then status="FAILED (exit $rc)"; fi
  printf '| `compresskv %s` | %d.%d | %s |\n' "$*" $((ds / 10)) $((ds % 10)) "$status" >>"$OUT/times.md"
  echo "[$(date +%T)] $name: $((ds / 10)) s, $status" >&2
  if [[ $rc -ne 0 ]]; then tail -5 "$OUT/$name.log" >&2; fi
  return 0
}

if has niah; then
  timed niah eval niah "${COMMON[@]}" --haystack "$H" --methods $methods --budgets $budgets "${NIAH[@]}"
fi
if has kld; then
  # The essays joined (name order, licence left out) as one long text.
  find "$H" -name '*.txt' ! -name 'LICENSE*' | LC_ALL=C sort | xargs cat >"$OUT/kld_text.txt"
  for k in "${KLD[@]}"; do
    read -r n_ctx n_eval <<<"$k"
    timed "kld_$n_ctx" eval kld "${COMMON[@]}" -f "$OUT/kld_text.txt" --methods $methods --budgets $budgets \
      --n-ctx "$n_ctx" --n-eval "$n_eval"
  done
  rm -f "$OUT/kld_text.txt"
fi
if has window; then
  for at in end user; do
    for w in 8 16 32 64; do
      timed "window_${at}_$w" eval niah "${COMMON[@]}" --haystack "$H" --methods snapkv,compresskv \
        --budgets $WIN_BUDGETS --kv-window $w --kv-window-at $at --no-plots "${WIN[@]}"
    done
  done
fi
if has ruler; then
  timed ruler eval ruler "${COMMON[@]}" --haystack "$H" --methods $methods --budgets $budgets "${RULER[@]}"
fi

python3 scripts/eval_summary.py "$OUT" --device "$DEVICE" --size "$SIZE" --model "$M" \
  --commit "${COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}"
cat "$OUT/summary.md"
