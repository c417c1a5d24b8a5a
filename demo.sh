#!/usr/bin/env bash
# The quick start: score the shipped P3 (DANN) and P4 (improved ADDA) models on the real digits in
# examples/digits.zip (100 per target domain, 10 per class, from the dev test splits; unpacked into OUT_DIR) and
# draw the two graded GAN figures.
# Installs what requirements.txt lists into the active Python first, if any of it is missing.
# Usage: bash demo.sh [OUT_DIR]   (default runs/demo)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
out=${1:-runs/demo}
if ! python3 -c "import torch, torchvision, numpy, PIL, sklearn, scipy, matplotlib, tqdm, cleanfid, pytest, xdist" \
    2> /dev/null; then
  echo "installing requirements.txt into $(python3 -c 'import sys; print(sys.prefix)') ..."
  python3 -m pip install -q -r requirements.txt
fi
if [ -e "$out" ] && [ ! -d "$out" ]; then
  echo "error: OUT_DIR $out exists and is not a folder" >&2; exit 2
fi
mkdir -p "$out"
python3 -m zipfile -e examples/digits.zip "$out/examples"   # <target>/images/*.png + <target>/labels.csv
bash hw3_p1p2.sh "$out" > /dev/null
printf "%-14s %-7s %6s %9s\n" problem target images accuracy
for target in mnistm usps; do
  for p in 3 4; do
    bash "hw3_p$p.sh" "$out/examples/$target/images" "$target" "$out/p${p}_$target.csv" > /dev/null
    result=$(python3 hw3_eval.py "$out/p${p}_$target.csv" "$out/examples/$target/labels.csv")  # accuracy: A (N images)
    acc=$(echo "$result" | awk '{print $2}'); n=$(echo "$result" | tr -d '(' | awk '{print $3}')
    name=$([ "$p" = 3 ] && echo "P3 DANN" || echo "P4 ADDA+")
    printf "%-14s %-7s %6s %9s\n" "$name" "$target" "$n" "$acc"
  done
done
echo "figures: $out/fig1_2.jpg (DCGAN, 4x8 faces), $out/fig2_2.jpg (ACGAN, not smiling / smiling)"
