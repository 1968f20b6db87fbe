#!/usr/bin/env bash
# The longer fuzz campaign: ROUNDS rounds of scripts/fuzz.sh SECONDS over
# every target (or those named), at the lowest priority, one process at a
# time; the corpus carries over between rounds. Figures per run are appended
# to build-fuzz/fuzz-stats.tsv; `scripts/fuzz_campaign.sh --totals` sums them.
# Usage: scripts/fuzz_campaign.sh [SECONDS] [ROUNDS] [TARGET...] | --totals
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = --totals ]; then
  awk -F'\t' 'NR > 1 { e[$2] += $4; s[$2] += $3; c[$2] = $6; f[$2] = $7; k[$2] = $8; if ($9 != "ok") x[$2]++ }
    END { printf "%-24s %12s %8s %6s %6s %6s %7s\n", "target", "execs", "seconds", "cov", "ft", "corpus", "crashes";
          for (t in e) printf "%-24s %12d %8d %6s %6s %6s %7d\n", t, e[t], s[t], c[t], f[t], k[t], x[t] }' \
    build-fuzz/fuzz-stats.tsv | sort
  exit 0
fi
secs=${1:-600}
rounds=${2:-1}
shift $(( $# > 2 ? 2 : $# )) || true
for r in $(seq 1 "$rounds"); do
  echo "round $r of $rounds" >&2
  nice -n 19 bash scripts/fuzz.sh "$secs" "$@" || true  # crashes are in build-fuzz/crashes/ and the stats
done
bash "$0" --totals
