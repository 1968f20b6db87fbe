#!/usr/bin/env bash
# On the GPU machine (second of the two calls scripts/eval_carry.sh lays out):
# unpacks compresskv, joins the SmolLM2 GGUF from part a (left in
# $PARTS by the first call) and part b, checks its sha256, runs
# scripts/eval_smollm2.sh with DEVICE=cuda and puts summary.md, the log and
# every output (eval-smollm2.tar.gz) in $OUT. summary.md is printed last.
#   C=.carry/eval PARTS=/tmp/ckv-eval-model SIZE=full STAGES=... DEADLINE=500 bash scripts/eval_gpu.sh
# DEADLINE (default 500 s) keeps the call inside the tool's 10 minutes.
# DEVICE=cpu runs the same on a CPU (how it was tested). Back here:
#   mkdir -p bench/eval-smollm2 && tar -C bench/eval-smollm2 --strip-components=1 -xzf eval-smollm2.tar.gz
#   for f in bench/eval-smollm2/*/results.json; do ./build/compresskv eval plot -i "$f"; done
# (the figures, where the GPU machine had no gnuplot).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
ROOT=$PWD
C=${C:-$ROOT/.carry/eval}
PARTS=${PARTS:-/tmp/ckv-eval-model}
OUT=${OUT:-$ROOT/gpu-out}
W=${WORK:-/tmp/ckv-eval}
mkdir -p "$OUT" "$W"
# Part a: where the first call copied it, or still in the checkout (an ignored
# path the device tool keeps between calls while the machine stays warm).
[ -e "$PARTS/smollm2.part-a" ] || PARTS=$ROOT/.carry/eval-model
if [ ! -e "$PARTS/smollm2.part-a" ]; then
  echo "no $PARTS/smollm2.part-a: the first call (carry .carry/eval-model, copy part a to $PARTS) did not run on" \
       "this machine, or the machine was given back in between: make both calls again, the second right after" >&2
  exit 3
fi
tar -C "$W" -xJf "$C/prebuilt.tar.xz" || exit 3
export LD_LIBRARY_PATH="$W/lib:${LD_LIBRARY_PATH:-}"
# cuBLASLt of this machine's toolkit (or PyTorch's wheel), as scripts/gpu.sh finds it.
for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib \
         $(python3 -c 'import nvidia, os; print(" ".join(os.path.join(p, "cu13/lib") for p in nvidia.__path__))' 2>/dev/null); do
  [ -e "$d/libcublasLt.so.13" ] && { export LD_LIBRARY_PATH="$d:$LD_LIBRARY_PATH"; break; }
done
cat "$PARTS/smollm2.part-a" "$C/smollm2.part-b" >"$W/smollm2.gguf"
if [ "$(sha256sum <"$W/smollm2.gguf" | cut -d' ' -f1)" != "$(cat "$C/smollm2.sha256")" ]; then
  echo "the joined GGUF's sha256 differs from $C/smollm2.sha256 (a part is stale or cut short)" >&2
  exit 3
fi
rm -rf "$W/out"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null || true
echo "compresskv $(cat "$W/commit"), $(nproc) cores"
COMMIT=$(cat "$W/commit") DEADLINE=${DEADLINE:-500} DEVICE=${DEVICE:-cuda} BIN=$W/bin/compresskv M=$W/smollm2.gguf H=$C/pg_essays OUT=$W/out \
  bash scripts/eval_smollm2.sh >"$OUT/eval.log" 2>&1
rc=$?
tar -C "$W" -czf "$OUT/eval-smollm2.tar.gz" --exclude=smollm2.gguf out
cp "$W/out/summary.md" "$OUT/" 2>/dev/null
grep '^\[' "$OUT/eval.log"  # one line per command: its time and status
cat "$OUT/summary.md" 2>/dev/null
exit "$rc"
