#!/usr/bin/env bash
# Builds the libFuzzer targets of fuzz/ (clang, ASan + UBSan) in build-fuzz/,
# writes their seed corpora (from ../shared and models/), replays the kept
# crash inputs of fuzz/regressions/<target>/, then runs each target for
# SECONDS (default 60), one process at a time. The corpus grows across runs
# in build-fuzz/corpus/<target>/. A crash, sanitizer report, leak or timeout
# fails the script after every target has run; its input is left in
# build-fuzz/crashes/<target>/ (add it to fuzz/regressions/<target>/ with the fix).
# Each run appends executions, coverage and corpus size to build-fuzz/fuzz-stats.tsv.
# Usage: scripts/fuzz.sh [SECONDS] [TARGET...]   (e.g. scripts/fuzz.sh 30 fuzz_gguf)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
shift || true
bash scripts/install_deps.sh fuzz
cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER=clang++ -DCKV_FUZZ=ON >/dev/null
ninja -C build-fuzz -j"${JOBS:-2}" >/dev/null
rm -rf build-fuzz/seeds
build-fuzz/fuzz_seeds build-fuzz/seeds

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(ls fuzz | sed -n 's/^\(fuzz_[a-z0-9_]*\)\.cpp$/\1/p')
fi
stats=build-fuzz/fuzz-stats.tsv
[ -f "$stats" ] || printf 'date\ttarget\tseconds\texecs\texecs_per_s\tcov\tft\tcorpus\tresult\n' > "$stats"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0} UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}
failed=()
# Scratch directories of crashed runs (fuzz_util.h) are removed at the end.
export CKV_FUZZ_TAG=$$
trap 'rm -rf /dev/shm/ckv_fuzz_$$_* /tmp/ckv_fuzz_$$_*' EXIT
for t in "${targets[@]}"; do
  bin=build-fuzz/$t
  [ -x "$bin" ] || { echo "fuzz.sh: no target $t" >&2; exit 2; }
  mkdir -p "build-fuzz/corpus/$t" "build-fuzz/crashes/$t" build-fuzz/logs
  log=build-fuzz/logs/$t.log
  # Every input that once crashed this target must pass now.
  if compgen -G "fuzz/regressions/$t/*" >/dev/null; then
    if ! "$bin" fuzz/regressions/$t/* >"$log.replay" 2>&1; then
      echo "$t: a regression input of fuzz/regressions/$t crashes again (build-fuzz/logs/$t.log.replay)" >&2
      failed+=("$t")
      continue
    fi
  fi
  result=ok
  "$bin" -max_total_time="$secs" -timeout=25 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="build-fuzz/crashes/$t/" "build-fuzz/corpus/$t" "build-fuzz/seeds/$t" >"$log" 2>&1 || result=crash
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  last=$(grep -E '^#[0-9]+' "$log" | tail -1 || true)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
  corp=$(sed -n 's/.* corp: \([0-9]*\).*/\1/p' <<<"$last")
  rate=$(( ${execs:-0} / (secs > 0 ? secs : 1) ))
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$(date -u +%FT%TZ)" "$t" "$secs" "${execs:-0}" "$rate" \
    "${cov:-?}" "${ft:-?}" "${corp:-?}" "$result" >> "$stats"
  printf '%-24s %10s execs %6s/s  cov %6s  ft %6s  corpus %5s  %s\n' "$t" "${execs:-0}" "$rate" "${cov:-?}" \
    "${ft:-?}" "${corp:-?}" "$result"
  if [ "$result" != ok ]; then
    grep -E 'ERROR|SUMMARY|Test unit written|uncaught|terminate' "$log" | head -8 >&2 || true
    failed+=("$t")
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz.sh: failed: ${failed[*]} (logs in build-fuzz/logs/, inputs in build-fuzz/crashes/)" >&2
  exit 1
fi
