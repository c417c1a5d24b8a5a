#!/usr/bin/env bash
# Course interface for P3: bash hw3_p3.sh TEST_IMG_DIR TARGET OUT_CSV
# Predicts every image of TEST_IMG_DIR with the shipped DANN model whose target domain is TARGET.
set -euo pipefail
if [ $# -ne 3 ]; then
  echo "usage: bash hw3_p3.sh TEST_IMG_DIR TARGET OUT_CSV   (TARGET: mnistm, svhn or usps)" >&2; exit 2
fi
abs() { case "$1" in /*) printf '%s' "$1";; *) printf '%s/%s' "$PWD" "$1";; esac; }
images=$(abs "$1"); target=$2; out=$(abs "$3")
ckpt_dir=${HW3_CKPT_DIR:+$(abs "$HW3_CKPT_DIR")}
cd "$(dirname "${BASH_SOURCE[0]}")"
case "$target" in mnistm|svhn|usps) ;; *) echo "error: unknown target '$target'; expected mnistm, svhn or usps" >&2; exit 2;; esac
ckpt="${ckpt_dir:-checkpoints}/p3_dann_${target}.pt"
if [ ! -f "$ckpt" ]; then
  echo "error: no DANN model for target '$target' ($ckpt); train one with: python p3_dann.py train --source SRC --target $target --mode dann --run-dir runs/p3/dann_$target, then python p3_dann.py export --ckpt runs/p3/dann_$target/best.pt --out $ckpt" >&2
  exit 1
fi
exec python3 p3_dann.py predict --ckpt "$ckpt" --images "$images" --out "$out"
