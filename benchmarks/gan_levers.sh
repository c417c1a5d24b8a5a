#!/usr/bin/env bash
# The DCGAN lever ranking in docs/experiments.md: short runs from scratch at a constant rate, each one lever on top
# of the recipe, the same seed, equal steps; then FID of 1,000 faces from each run's EMA generator (BatchNorm
# re-estimated) against the 1,000 dev faces.
# CPU: OMP_NUM_THREADS=1, two runs at a time on the 2-core machine, ~30-45 min each.
# The earlier rows (lev_hinge, lev_sn, lev_r1, lev_ttur, lev_sngan, lev_r1_01: --loss hinge, --spectral-norm, --r1,
# --lr-d) need commit 38f8f44, where those options still exist; their base then was today's --extra-share 0.
# Usage: bash benchmarks/gan_levers.sh [DATA_ROOT] [OUT_DIR] [STEPS]; then
#   python benchmarks/gan_report.py OUT_DIR lev_x50 lev_x0 lev_x80 lev_noflip lev_x50_s1 lev_x0_s1
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:-hw3_data}; out=${2:-runs}; steps=${3:-2000}
export OMP_NUM_THREADS=1
lever() {
  name=$1; shift
  python p1_dcgan.py train --data "$data" --run-dir "$out/$name" --overwrite --steps "$steps" \
    --lr-decay-from "$steps" --precision bf16 --sample-every 500 "$@"
  python p1_dcgan.py eval --ckpt "$out/$name/last.pt" --data "$data" --n 1000 --json "$out/$name/eval.json"
}
lever lev_x50                               # the recipe: mirrored faces, half of them from face/extra
lever lev_x0 --extra-share 0                # face/train alone (the earlier lev_xflip)
lever lev_x80 --extra-share 0.8             # all 35,456 faces equally often
lever lev_noflip --extra-share 0 --no-xflip # the earlier lev_base
lever lev_x50_s1 --seed 1                   # second seeds: how far runs spread
lever lev_x0_s1 --extra-share 0 --seed 1
