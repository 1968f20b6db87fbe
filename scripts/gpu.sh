#!/usr/bin/env bash
# The GPU machine's one call (issue 10 items 5-7): build with CUDA (or use
# the binaries scripts/gpu_carry.sh prebuilt), run the GPU tests and
# compute-sanitizer memcheck on them, measure the ceilings (copy bandwidth,
# bf16 GEMM), run the kernel and engine benchmarks on random Llama-3.1-8B
# weights, the transformers peer, and print a short table LAST.
#
#   STAGES=tests,sanitizer,kernels,engine,ab,peer,tp SCENARIOS=d0,full32k,... bash scripts/gpu.sh
#   (ab: the engine again with AB's environment, default CKV_CUDA_FUSED=0, A/B against engine's run)
#   (tp: tensor parallelism, on 2+ GPUs only; prints "skipped: N GPUs" otherwise)
#   STAGES=serve bash scripts/gpu.sh   (issue 11: compresskv serve + bench/loadgen, full vs
#                                       compresskv@1024, ~7 minutes; scripts/serve_bench.sh says what)
#   BUILD=1 forces a build here even when prebuilt/ is present.
# Logs and JSON go to $OUT (the device tool's folder) or ./gpu-out: at most 8
# files (the tool's limit).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${OUT:-$ROOT/gpu-out}
mkdir -p "$OUT"
STAGES=${STAGES:-tests,sanitizer,kernels,engine,cli,peer,tp}
SCENARIOS=${SCENARIOS:-d0,full32k,ckv32k,b8full,b32ckv,ckv131k}
CONFIG=${CONFIG:-configs/Llama-3.1-8B.json}
SHARED=$ROOT/../shared
has() { [[ ",$STAGES," == *",$1,"* ]]; }
T0=$(date +%s)
stamp() { echo "== [$(( $(date +%s) - T0 ))s] $*"; }

stamp machine
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv,noheader
echo "cores: $(nproc); $(nvcc --version | tail -1); $(cmake --version | head -1)"
for p in libpcre2-dev nlohmann-json3-dev libcli11-dev libgtest-dev libopenblas-dev; do
  dpkg -s "$p" >/dev/null 2>&1 && echo "build dep present: $p" || echo "build dep missing: $p"
done
# cuBLASLt of this machine's toolkit (or PyTorch's wheel).
for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib \
         $(python3 -c 'import nvidia, os; print(" ".join(os.path.join(p, "cu13/lib") for p in nvidia.__path__))' 2>/dev/null); do
  [ -e "$d/libcublasLt.so.13" ] && { export LD_LIBRARY_PATH="$d:${LD_LIBRARY_PATH:-}"; echo "cuBLASLt: $d"; break; }
done

if [ -z "${BUILD:-}" ] && [ -x prebuilt/bin/test_cuda_backend ]; then
  BIN=$ROOT/prebuilt/bin
  [ -d prebuilt/lib ] || tar -C prebuilt -xJf prebuilt/lib.tar.xz
  export LD_LIBRARY_PATH="$ROOT/prebuilt/lib:${LD_LIBRARY_PATH:-}"
  # The prebuilt tests name the source tree by the path they were built at.
  AT=$(cat prebuilt/source_dir)
  if [ ! -e "$AT" ]; then mkdir -p "$(dirname "$AT")" && ln -s "$ROOT" "$AT"; fi
  # ... and ../shared beside it (the golden files the end-to-end tests read).
  [ -e "$(dirname "$AT")/shared" ] || ln -s "$SHARED" "$(dirname "$AT")/shared"
  [ -e "$ROOT/../shared" ] && echo "shared: $(ls "$(dirname "$AT")/shared/golden" | tr '\n' ' ')"
  # The SmolLM2 GGUF is too big for one carry; scripts/eval_gpu.sh joins it
  # in /tmp/ckv-eval on this machine, where the GPU golden test can read it.
  SM=$(dirname "$AT")/shared/models/smollm2-135m-instruct
  if [ -s /tmp/ckv-eval/smollm2.gguf ] && [ ! -e "$SM/SmolLM2-135M-Instruct.Q4_1.gguf" ]; then
    mkdir -p "$SM" && ln -s /tmp/ckv-eval/smollm2.gguf "$SM/SmolLM2-135M-Instruct.Q4_1.gguf" && echo "SmolLM2: /tmp/ckv-eval/smollm2.gguf"
  fi
  stamp "prebuilt binaries (built at $AT, $(cat prebuilt/commit))"
else
  stamp build
  cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DCKV_CUDA=ON >"$OUT/cmake.log" 2>&1 || { tail -30 "$OUT/cmake.log"; exit 1; }
  ninja -C build-gpu -j16 test_cuda_backend bench_cuda compresskv loadgen test_cuda_tp bench_tp >"$OUT/build.log" 2>&1 || { tail -40 "$OUT/build.log"; exit 1; }
  BIN=$ROOT/build-gpu
fi

if has tests; then
  stamp "GPU tests"
  timeout "${T_TESTS:-180}" "$BIN/test_cuda_backend" >"$OUT/tests.log" 2>&1
  echo "tests exit: $?"
  grep -E "^\[  (FAILED|PASSED|SKIPPED) |Failure|Expected|Which is|exception|error [0-9]|differ between|max abs" "$OUT/tests.log" | head -60
  grep -E "^\[ RUN" "$OUT/tests.log" | tail -1
fi
if has sanitizer; then
  # The out-of-memory test is left out: its deliberate failed cudaMalloc is an API error to the sanitizer.
  stamp "compute-sanitizer memcheck (the op tests)"
  timeout "${T_SAN:-200}" compute-sanitizer --tool memcheck --error-exitcode 9 --print-limit 20 \
    "$BIN/test_cuda_backend" --gtest_brief=1 --gtest_filter='CudaOps.*:-CudaOps.OutOfMemoryIsAClearError' >"$OUT/memcheck.log" 2>&1
  echo "memcheck exit: $? ($(grep -c 'Invalid\|out of bounds' "$OUT/memcheck.log") error lines)"
  tail -8 "$OUT/memcheck.log"
fi

if has kernels || has engine || has ab; then  # the ceilings their tables are measured against
  stamp ceilings
  python3 bench/rooflines.py | tee "$OUT/roof.json"
  COPY=$(python3 -c "import json;print(json.load(open('$OUT/roof.json'))['copy_gbs'])")
  GEMM=$(python3 -c "import json;print(json.load(open('$OUT/roof.json'))['gemm_tflops'])")
fi
PROF=(--heads "$SHARED/data/compresskv-published/Llama-3.1-8B-Instruct_head_idx.json"
      --scores "$SHARED/data/compresskv-published/Llama-3.1-8B-Instruct_layer_score.json")
if has kernels; then
  stamp "kernels (Llama-3.1-8B sizes)"
  timeout "${T_KERN:-90}" "$BIN/bench_cuda" "$CONFIG" --copy-gbs "$COPY" --gemm-tflops "$GEMM" --kernels --scenarios none \
    --json "$OUT/kernels.json" 2>&1
fi
if has engine; then
  stamp "engine: $SCENARIOS"
  timeout "${T_ENGINE:-300}" "$BIN/bench_cuda" "$CONFIG" --copy-gbs "$COPY" --gemm-tflops "$GEMM" "${PROF[@]}" --scenarios "$SCENARIOS" \
    --json "$OUT/bench.json" 2>&1 | tee "$OUT/bench.log"
fi
if has ab; then
  # The engine again with each environment of AB (';' between them; default
  # CKV_CUDA_FUSED=0, the plain kernels; CKV_CUDA_PDL=0: no dependent
  # launches), same scenarios in the same call: the tests that compare modes
  # within a process first, then for each environment the GPU tests under it
  # (a variant must pass them before its speed counts) and the engine;
  # gpu_table.py prints each against the default.
  AB=${AB:-CKV_CUDA_FUSED=0}
  stamp "A/B ($AB): tests, then engine: $SCENARIOS"
  timeout "${T_TESTS:-180}" "$BIN/test_cuda_backend" --gtest_filter='*Fused*:*DependentLaunches*' 2>&1 | grep -E "^\[  (FAILED|PASSED|  OK) |Failure|Expected|Which is"
  : >"$OUT/ab.txt"
  IFS=';' read -r -a ABS <<<"$AB"
  for i in "${!ABS[@]}"; do
    echo "${ABS[$i]}" >>"$OUT/ab.txt"
    echo "-- ${ABS[$i]}: GPU tests"
    env ${ABS[$i]} timeout "${T_TESTS:-180}" "$BIN/test_cuda_backend" --gtest_brief=1 2>&1 | grep -E "^\[  (FAILED|PASSED) |Failure|Expected|Which is" | head -12
    echo "-- ${ABS[$i]}: engine"
    env ${ABS[$i]} timeout "${T_ENGINE:-300}" "$BIN/bench_cuda" "$CONFIG" --copy-gbs "$COPY" --gemm-tflops "$GEMM" "${PROF[@]}" \
      --scenarios "$SCENARIOS" --json "$OUT/bench_ab_$i.json" 2>&1 | grep -v "^model:"
  done
fi
if has cli; then
  # The user's path: compresskv itself on the GPU (CPU vs CUDA on stories260K's
  # greedy text, then bench with random Llama-3.1-8B weights, 8 sequences).
  stamp "compresskv --device cuda"
  for d in cpu cuda; do
    "$BIN/compresskv" run -m models/stories260k/stories260K.bin --temp 0 -n 200 --device $d 2>/dev/null | md5sum | sed "s/^/greedy text $d: /"
  done
  timeout "${T_CLI:-120}" "$BIN/compresskv" bench --device cuda --random-weights "$CONFIG" -p 0 -n 64 -d 4096 -b 8 -r 3 \
    --kv-method snapkv --kv-budget 1024 2>&1 | tee "$OUT/cli.log"
fi
if has tp; then
  # Tensor parallelism (issue 13): only on a machine with 2 or more GPUs.
  # TP_SIZES / TP_SCALING pick the --tp values (one value a call keeps a call
  # under the device tool's 10 minutes); TP_PARTS=tests,allreduce,70b,scaling.
  NGPU=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU')
  if [ "$NGPU" -lt 2 ]; then
    echo "tp: skipped: $NGPU GPUs"
  else
    stamp "tensor parallelism on $NGPU GPUs"
    # NVLink multicast stays off (the machine's notes), here and in every program started.
    export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
    for d in /usr/local/cuda/lib /usr/local/cuda/lib64 /usr/lib/x86_64-linux-gnu \
             $(python3 -c 'import nvidia.nccl, os; print(os.path.join(nvidia.nccl.__path__[0], "lib"))' 2>/dev/null); do
      [ -e "$d/libnccl.so.2" ] && { export LD_LIBRARY_PATH="$d:${LD_LIBRARY_PATH:-}"; echo "NCCL: $d"; break; }
    done
    [ -x "$BIN/test_cuda_tp" ] || ninja -C build-gpu -j16 test_cuda_tp bench_tp >>"$OUT/build.log" 2>&1
    tp_part() { [[ ",${TP_PARTS:-tests,allreduce,70b,scaling}," == *",$1,"* ]]; }
    if tp_part tests; then
      timeout "${T_TP_TESTS:-300}" "$BIN/test_cuda_tp" >"$OUT/tp_tests.log" 2>&1
      echo "tp tests exit: $?"
      grep -E "^\[  (FAILED|PASSED|SKIPPED) |Failure|Expected|Which is|exception" "$OUT/tp_tests.log" | head -30
    fi
    if tp_part allreduce; then
      stamp "tp: all-reduce against the bus bandwidth"
      timeout "${T_TP_AR:-300}" "$BIN/bench_tp" --dim 8192 --layers 80 | tee "$OUT/tp_allreduce.jsonl"
    fi
    # A profile of the 70B shape for compresskv's speed (random heads and
    # uniform layer scores: speed only, never quality).
    python3 - "${TMPDIR:-/tmp}/tp70b_profile.json" <<'PY'
import json, sys
L, H, G = 80, 64, 8
json.dump({"version": 1, "model": {"arch": "llama", "n_layers": L, "n_heads": H, "n_kv_heads": G, "head_dim": 128},
           "srh": {"ranking": [[(h * 7 + l) % H for h in range(H)] for l in range(L)]},
           "layer_scores": [1.0 / L] * L}, open(sys.argv[1], "w"))
PY
    TPB=(--device cuda --random-weights configs/Llama-3.1-70B.json -r 1 --json)
    for N in ${TP_SIZES:-2 4 8}; do
      [ "$N" -le "$NGPU" ] && tp_part 70b || continue
      stamp "tp $N: Llama-3.1-70B shapes, prefill 32k, decode at 32k full and compresskv@1024"
      timeout "${T_TP_RUN:-240}" "$BIN/compresskv" bench "${TPB[@]}" --tp $N -p 32768 -n 0 2>&1 | tee -a "$OUT/tp_bench.jsonl"
      timeout "${T_TP_RUN:-240}" "$BIN/compresskv" bench "${TPB[@]}" --tp $N -p 0 -n 32 -d 32768 2>&1 | tee -a "$OUT/tp_bench.jsonl"
      timeout "${T_TP_RUN:-240}" "$BIN/compresskv" bench "${TPB[@]}" --tp $N -p 0 -n 32 -d 32768 \
        --kv-method compresskv --kv-budget 1024 --kv-profile "${TMPDIR:-/tmp}/tp70b_profile.json" 2>&1 | tee -a "$OUT/tp_bench.jsonl"
    done
    stamp "tp scaling on Llama-3.1-8B shapes (tp 1 to 8)"
    for N in ${TP_SCALING:-1 2 4 8}; do
      [ "$N" -le "$NGPU" ] && tp_part scaling || continue
      timeout "${T_TP_RUN:-240}" "$BIN/compresskv" bench --device cuda --random-weights configs/Llama-3.1-8B.json -r 3 \
        --json --tp $N -p 8192 -n 64 -d 0 2>&1 | tee -a "$OUT/tp_bench.jsonl"
    done
  fi
fi
if has peer; then
  stamp "transformers peer"
  PYTHONUNBUFFERED=1 timeout "${T_PEER:-200}" python3 bench/hf_peer.py "$CONFIG" ${PEER_ARGS:-} 2>&1 | grep -v Warning | tee "$OUT/peer.jsonl"
fi
if has serve; then
  stamp "serve: compresskv serve + loadgen"
  timeout "${T_SERVE:-540}" bash scripts/serve_bench.sh "$BIN" "$OUT"
  echo "serve stage exit: $?"
fi
stamp done
python3 bench/gpu_table.py "$OUT"
if [ -f "$OUT/serve.md" ]; then echo; echo "serve (bench/loadgen):"; cat "$OUT/serve.md"; fi
