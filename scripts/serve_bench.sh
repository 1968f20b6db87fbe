#!/usr/bin/env bash
# gpu.sh's serve stage (issue 11 item 7): `compresskv serve` on random
# Llama-3.1-8B weights and bench/loadgen on the same machine. N clients each
# stream a 32k-token prompt of random ids; every run is cut (--stop-after)
# once the last client to start has read 128 tokens, so the "decode tok/s"
# column is measured while all N decode at once (the clients ask for
# max_tokens ALLOW so that the first ones are still decoding then).
#   full cache:        N in SERVE_FULL_NS (default 1,8; 16 also fits an H200)
#   compresskv@1024:   N in SERVE_CKV_NS (default 1,8,32,64; 128 costs ~5 more minutes)
#   arrivals:          SERVE_ARRIVE clients x seconds apart (default 16x3) on compresskv:
#                      new 32k prompts keep arriving while the others decode
# Time: a 32k prompt reads in ~2.1 s on an H200 (bench_cuda: 15.6k tok/s),
# more with decode steps between its slices; the defaults are ~115 prompts,
# ~7 minutes with both servers' start-up. Runs whose estimate (N x
# SERVE_PREFILL_S + 20 s) would pass SERVE_BUDGET seconds (default 450) of
# this stage are skipped, and say so. An empty list leaves its runs out; N=128
# alone (~6 more minutes): SERVE_FULL_NS= SERVE_CKV_NS=128 SERVE_ARRIVE= SERVE_BUDGET=500.
#   bash scripts/serve_bench.sh BIN_DIR OUT_DIR
# CPU plumbing check (stories260K, token ids below its vocabulary):
#   SERVE_DEVICE=cpu SERVE_MODEL="-m models/stories260k/stories260K.bin" SERVE_VOCAB=512 SERVE_P=96 \
#   SERVE_GEN=16 SERVE_ALLOW=200 SERVE_KV="--kv-method snapkv --kv-budget 32" SERVE_FULL_NS=1,4 \
#   SERVE_CKV_NS=1,4 SERVE_ARRIVE=4x0.3 bash scripts/serve_bench.sh build /tmp/serve-out
set -uo pipefail
cd "$(dirname "$0")/.."
BIN=${1:?usage: serve_bench.sh BIN_DIR OUT_DIR}
OUT=${2:?usage: serve_bench.sh BIN_DIR OUT_DIR}
mkdir -p "$OUT"
CONFIG=${CONFIG:-configs/Llama-3.1-8B.json}
SHARED=${SHARED:-$PWD/../shared}
DEVICE=${SERVE_DEVICE:-cuda}
read -r -a MODEL <<<"${SERVE_MODEL:---random-weights $CONFIG}"
P=${SERVE_P:-32768}
GEN=${SERVE_GEN:-128}
ALLOW=${SERVE_ALLOW:-4096}
FULL_NS=${SERVE_FULL_NS-1,8}
CKV_NS=${SERVE_CKV_NS-1,8,32,64}
ARRIVE=${SERVE_ARRIVE-16x3}
BUDGET=${SERVE_BUDGET:-450}
PREFILL_S=${SERVE_PREFILL_S:-2.6}
VOCAB=${SERVE_VOCAB:-$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['vocab_size'])" "$CONFIG")}
CTX=$((P + ALLOW + 256))
JSONL=$OUT/serve.jsonl
rm -f "$JSONL"
T0=$(date +%s)
note() { echo "-- [serve $(( $(date +%s) - T0 ))s] $*"; }
TMP=$(mktemp -d)
PID=
cleanup() { [ -n "$PID" ] && kill -KILL "$PID" 2>/dev/null; rm -rf "$TMP"; }
trap cleanup EXIT
trap 'exit 143' TERM INT  # (gpu.sh's timeout) so that the EXIT trap stops the server

if [ -z "${SERVE_KV+x}" ]; then
  # The authors' Llama-3.1-8B head ranking and layer scores, as bench_cuda reads them.
  D=$SHARED/data/compresskv-published
  "$BIN/compresskv" profile import --random-weights "$CONFIG" --heads "$D/Llama-3.1-8B-Instruct_head_idx.json" \
    --layer-scores "$D/Llama-3.1-8B-Instruct_layer_score.json" -o "$TMP/profile.json" || exit 1
  SERVE_KV="--kv-method compresskv --kv-budget 1024 --kv-profile $TMP/profile.json"
fi

# start NAME ARGS...: a server on a free port; sets PID and URL.
start() {
  local name=$1 log=$OUT/serve-$1.log
  shift
  # f16 KV pages (SERVE_KV_TYPE): CUDA's split-K decode kernel reads f16
  # pages; f32 pages take the plain kernel, far slower at these lengths.
  "$BIN/compresskv" serve "${MODEL[@]}" --device "$DEVICE" --port 0 -c "$CTX" --queue 512 \
    --kv-type "${SERVE_KV_TYPE:-f16}" "$@" 2>"$log" &
  PID=$!
  URL=
  for _ in $(seq 900); do
    URL=$(sed -n 's|^compresskv serve: listening on \(http://[^ ]*\)$|\1|p' "$log" | head -1)
    [ -n "$URL" ] && break
    kill -0 "$PID" 2>/dev/null || { note "$name server exited before it was ready:"; tail -5 "$log"; PID=; return 1; }
    sleep 0.2
  done
  [ -n "$URL" ] || { note "$name server not ready in 180 s"; tail -5 "$log"; return 1; }
  note "$name server at $URL: $*"
}

# stop: SIGTERM, its exit status within 15 s (the contract: clean exit 0).
stop() {
  [ -n "$PID" ] || return 0
  kill -TERM "$PID"
  for _ in $(seq 150); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$PID" 2>/dev/null; then
    note "server still running 15 s after SIGTERM: killed"
    kill -KILL "$PID"
  fi
  wait "$PID"
  note "server exit status after SIGTERM: $?"
  PID=
}

# load LABEL N INTERVAL [loadgen args]: one loadgen run, if the budget allows.
load() {
  local label=$1 n=$2 interval=$3
  shift 3
  local est now
  est=$(python3 -c "print(int($n * $PREFILL_S + 20))")
  now=$(( $(date +%s) - T0 ))
  if [ $((now + est)) -gt "$BUDGET" ]; then
    note "skipped $label (N=$n): ~${est}s would pass the stage's ${BUDGET}s (SERVE_BUDGET)"
    return 0
  fi
  note "$label: N=$n, prompt $P, read $GEN (max_tokens $ALLOW), interval $interval s"
  timeout $((est * 3 + 60)) "$BIN/loadgen" --url "$URL" -n "$n" -p "$P" -m "$ALLOW" --stop-after "$GEN" \
    --interval "$interval" --vocab "$VOCAB" --seed "$n" --label "$label" --json "$JSONL" --timeout $((est * 3 + 60)) "$@"
  echo "loadgen exit: $?"
}

if [ -n "$FULL_NS" ] && start full --max-seqs 16; then
  for n in ${FULL_NS//,/ }; do load "full N=$n" "$n" 0; done
  stop
fi
read -r -a KV <<<"$SERVE_KV"
if { [ -n "$CKV_NS" ] || [ -n "$ARRIVE" ]; } && start ckv --max-seqs 128 "${KV[@]}"; then
  for n in ${CKV_NS//,/ }; do
    load "${KV[1]} N=$n" "$n" 0
    if [ "$n" = 8 ] && [ -n "$ARRIVE" ]; then  # the arrival run right after N=8: it matters more than N=64
      load "${KV[1]} arrivals ${ARRIVE}s" "${ARRIVE%x*}" "${ARRIVE#*x}"
    fi
  done
  case ",$CKV_NS," in *,8,*) ;; *) [ -n "$ARRIVE" ] && load "${KV[1]} arrivals ${ARRIVE}s" "${ARRIVE%x*}" "${ARRIVE#*x}" ;; esac
  stop
fi
note "table ($JSONL)"
"$BIN/loadgen" --table "$JSONL" | tee "$OUT/serve.md"
