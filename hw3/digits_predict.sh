#!/usr/bin/env bash
# Shared body of hw3_p3.sh and hw3_p4.sh: digits_predict.sh SCRIPT NAME TEST_IMG_DIR TARGET OUT_CSV
# Predicts every image of TEST_IMG_DIR with checkpoints/<NAME>_<TARGET>.pt through SCRIPT (p3_dann.py / p4_adda.py).
set -euo pipefail
script=$1; name=$2; shift 2
if [ $# -ne 3 ]; then
  echo "usage: bash hw3_p${script:1:1}.sh TEST_IMG_DIR TARGET OUT_CSV   (TARGET: mnistm, svhn or usps)" >&2; exit 2
fi
abs() { case "$1" in /*) printf '%s' "$1";; *) printf '%s/%s' "$PWD" "$1";; esac; }
images=$(abs "$1"); target=$2; out=$(abs "$3")
ckpt_dir=${HW3_CKPT_DIR:+$(abs "$HW3_CKPT_DIR")}
cd "$(dirname "${BASH_SOURCE[0]}")/.."
case "$target" in mnistm|svhn|usps) ;; *) echo "error: unknown target '$target'; expected mnistm, svhn or usps" >&2; exit 2;; esac
ckpt="${ckpt_dir:-checkpoints}/${name}_${target}.pt"
if [ ! -f "$ckpt" ]; then
  echo "error: no model for target '$target' ($ckpt); train one with: python $script train --source SRC --target $target --run-dir runs/$target, then python $script export --ckpt runs/$target/best.pt --out $ckpt" >&2
  exit 1
fi
exec python3 "$script" predict --ckpt "$ckpt" --images "$images" --out "$out"
