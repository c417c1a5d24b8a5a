#!/usr/bin/env bash
# The DCGAN lever ranking in docs/experiments.md: short runs from scratch, each one lever on top of the shipped
# recipe (DiffAugment colour + translation + cutout, EMA 0.999, batch 64, bf16), the same seed, equal steps; then
# FID of 1,000 faces from each run's EMA generator (BatchNorm re-estimated) against the 1,000 dev faces.
# CPU: OMP_NUM_THREADS=1, two runs at a time on the 2-core machine, ~30-45 min each.
# Usage: bash benchmarks/gan_levers.sh [DATA_ROOT] [OUT_DIR] [STEPS]; then
#   python benchmarks/gan_report.py OUT_DIR lev_base lev_hinge lev_sn lev_r1 lev_ttur lev_sngan lev_xflip lev_r1_01 lev_base_s1 lev_xflip_s1 lev_base_s2 lev_xflip_s2
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:-hw3_data}; out=${2:-runs}; steps=${3:-2000}
export OMP_NUM_THREADS=1
lever() {
  name=$1; shift
  python p1_dcgan.py train --data "$data" --run-dir "$out/$name" --overwrite --steps "$steps" --batch 64 \
    --precision bf16 --sample-every 500 "$@"
  python p1_dcgan.py eval --ckpt "$out/$name/last.pt" --data "$data" --n 1000 --json "$out/$name/eval.json"
}
lever lev_base
lever lev_hinge --loss hinge
lever lev_sn --spectral-norm
lever lev_r1 --r1 1
lever lev_ttur --lr 1e-4 --lr-d 4e-4
lever lev_sngan --loss hinge --spectral-norm --lr 1e-4 --lr-d 4e-4 --betas 0 0.9  # the three together, as SNGAN
lever lev_xflip --xflip            # real faces mirrored at random: twice the data
lever lev_r1_01 --r1 0.1           # R1 at a tenth of the weight that held D at chance
lever lev_base_s1 --seed 1         # a second seed of the recipe and of mirroring: how far runs spread
lever lev_xflip_s1 --xflip --seed 1
lever lev_base_s2 --seed 2
lever lev_xflip_s2 --xflip --seed 2
