#!/usr/bin/env bash
# Course interface for P1 and P2: bash hw3_p1p2.sh OUT_DIR
# Writes OUT_DIR/fig1_2.jpg (DCGAN, 32 faces) and OUT_DIR/fig2_2.jpg (ACGAN, 10 pairs) from the shipped generators.
set -euo pipefail
if [ $# -ne 1 ]; then
  echo "usage: bash hw3_p1p2.sh OUT_DIR" >&2; exit 2
fi
abs() { case "$1" in /*) printf '%s' "$1";; *) printf '%s/%s' "$PWD" "$1";; esac; }
out=$(abs "$1")
ckdir=${HW3_CKPT_DIR:+$(abs "$HW3_CKPT_DIR")}
cd "$(dirname "${BASH_SOURCE[0]}")"
ckdir="${ckdir:-checkpoints}"
for f in p1_dcgan p2_acgan; do
  if [ ! -f "$ckdir/$f.pt" ]; then
    echo "error: missing generator $ckdir/$f.pt; train one (python ${f}.py train ...) and export it" \
         "(python ${f}.py export --ckpt RUN/last.pt --out $ckdir/$f.pt)" >&2
    exit 1
  fi
done
if [ -e "$out" ] && [ ! -d "$out" ]; then
  echo "error: OUT_DIR $out exists and is not a folder" >&2; exit 2
fi
if ! mkdir -p "$out" 2>/dev/null || [ ! -w "$out" ]; then
  echo "error: cannot create or write OUT_DIR $out" >&2; exit 2
fi
python3 p1_dcgan.py sample --ckpt "$ckdir/p1_dcgan.pt" --out "$out/fig1_2.jpg" --seed 0
python3 p2_acgan.py sample --ckpt "$ckdir/p2_acgan.pt" --out "$out/fig2_2.jpg" --seed 0
