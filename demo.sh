#!/usr/bin/env bash
# Set up and run every graded wrapper on synthetic demo data with the shipped weights (no download, no user data).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
python3 -m pip install -q -r requirements.txt
demo=${1:-/tmp/hw3_demo}
python3 datasets.py demo "$demo" --digits 300 100 --faces 64 16
bash hw3_p1p2.sh "$demo/figs"
for target in mnistm usps; do
  for p in 3 4; do
    bash "hw3_p$p.sh" "$demo/digits/$target/test" "$target" "$demo/pred_p${p}_$target.csv"
    echo -n "P$p on demo $target (synthetic digits, not the real domain): "
    python3 hw3_eval.py "$demo/pred_p${p}_$target.csv" "$demo/digits/$target/test.csv"
  done
done
echo "figures: $demo/figs/fig1_2.jpg $demo/figs/fig2_2.jpg"
