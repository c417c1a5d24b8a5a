#!/usr/bin/env bash
# The exact commands behind the P3 table in the README (CPU, OMP_NUM_THREADS=1, 3000 steps of batch 128 per
# domain each: 7-15 min per run on the shared 2-core machine).
# Usage: bash benchmarks/p3_table.sh [DATA_ROOT] [OUT_DIR] [report|improved|all]
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:-hw3_data}; out=${2:-runs/p3}; which=${3:-all}
export OMP_NUM_THREADS=1
t() { python p3_dann.py train --data "$data" --steps 3000 --overwrite "$@"; }
for pair in "usps mnistm u2m" "mnistm usps m2u"; do
  set -- $pair
  if [ "$which" != improved ]; then  # the report's settings: plain inputs, no augmentation
    t --source "$1" --target "$2" --mode source --run-dir "$out/base_source_$3"
    t --source "$1" --target "$2" --mode dann --run-dir "$out/base_dann_$3"
  fi
  if [ "$which" != report ]; then  # + per-image input normalisation, shift/colour/inversion/zoom augmentation, per-domain BN + AdaBN (dann)
    for mode in source dann target; do
      t --source "$1" --target "$2" --mode $mode --input-norm --augment --zoom --domain-bn --run-dir "$out/imp_${mode}_$3"
    done
  fi
done
# ablation rows: DANN with only some of the improvements
if [ "$which" != report ]; then
  t --source usps --target mnistm --mode dann --input-norm --augment --run-dir "$out/abl_normaug_dann_u2m"
  t --source mnistm --target usps --mode dann --input-norm --run-dir "$out/abl_norm_dann_m2u"
fi
# mnist -> mnistm, the improved DANN (the P4 comparison): the mnist data's train/ holds no 9s, its test/ all of
# them, so the source is both splits (--source-test)
if [ "$which" != report ]; then
  t --source mnist --target mnistm --mode dann --input-norm --augment --zoom --domain-bn --source-test --run-dir "$out/imp_dann_mn2m_st"
fi
# the shipped DANN models: per target, the DANN configuration that did best on the dev split (the checkpoint
# within each run is chosen on source validation accuracy)
python p3_dann.py export --ckpt "$out/imp_dann_u2m/best.pt" --out checkpoints/p3_dann_mnistm.pt
python p3_dann.py export --ckpt "$out/base_dann_m2u/best.pt" --out checkpoints/p3_dann_usps.pt
