#!/usr/bin/env bash
# Wall time of `hw3_p3.sh` on a folder, process start, decoding and model load included (the graded use).
# Usage: bash benchmarks/predict_time.sh IMAGE_DIR [REPEATS]   (first run warms the OS file cache, not timed)
set -euo pipefail
dir=$1; repeats=${2:-3}
here=$(cd "$(dirname "$0")/.." && pwd)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
n=$(find "$dir" -maxdepth 1 -type f | wc -l)
bash "$here/hw3_p3.sh" "$dir" mnistm "$out/p.csv" > /dev/null
times=()
for _ in $(seq "$repeats"); do
  t0=$(date +%s.%N)
  bash "$here/hw3_p3.sh" "$dir" mnistm "$out/p.csv" > /dev/null
  times+=("$(echo "$(date +%s.%N) - $t0" | bc)")
done
printf '%s\n' "${times[@]}" | sort -n | awk -v n="$n" '{t[NR]=$1} END {
  printf "hw3_p3.sh on %d images: wall s min / median / max %.2f / %.2f / %.2f; images/s (median) %.0f\n",
         n, t[1], t[int((NR + 1) / 2)], t[NR], n / t[int((NR + 1) / 2)]}'
