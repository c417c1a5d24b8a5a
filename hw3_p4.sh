#!/usr/bin/env bash
# Course interface for P4: bash hw3_p4.sh TEST_IMG_DIR TARGET OUT_CSV
# Predicts every image of TEST_IMG_DIR with the shipped improved-ADDA model whose target domain is TARGET.
set -euo pipefail
if [ $# -ne 3 ]; then
  echo "usage: bash hw3_p4.sh TEST_IMG_DIR TARGET OUT_CSV   (TARGET: mnistm, svhn or usps)" >&2; exit 2
fi
abs() { case "$1" in /*) printf '%s' "$1";; *) printf '%s/%s' "$PWD" "$1";; esac; }
images=$(abs "$1"); target=$2; out=$(abs "$3")
ckpt_dir=${HW3_CKPT_DIR:+$(abs "$HW3_CKPT_DIR")}
cd "$(dirname "${BASH_SOURCE[0]}")"
case "$target" in mnistm|svhn|usps) ;; *) echo "error: unknown target '$target'; expected mnistm, svhn or usps" >&2; exit 2;; esac
ckpt="${ckpt_dir:-checkpoints}/p4_adda_${target}.pt"
if [ ! -f "$ckpt" ]; then
  echo "error: no P4 model for target '$target' ($ckpt); train one with: python p4_adda.py train --source SRC --target $target --run-dir runs/p4/$target, then python p4_adda.py export --ckpt runs/p4/$target/best.pt --out $ckpt" >&2
  exit 1
fi
exec python3 p4_adda.py predict --ckpt "$ckpt" --images "$images" --out "$out"
