#!/usr/bin/env bash
# The exact commands behind the P4 table in docs/p4.md (CPU, one process at a time, ~5-15 min each on a
# shared 2-core machine). Each improved run also yields two rows for free: "source-only" (the end of stage 1)
# and "+ adversarial alignment" (the best im-score checkpoint of stage 2, read from metrics.jsonl).
# Usage: bash benchmarks/p4_ablation.sh [DATA_ROOT] [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:-/work/hw3_data}; out=${2:-/work/exp}
export OMP_NUM_THREADS=1
steps="--pretrain-steps 1000 --adapt-steps 1500 --selftrain-steps 1500 --eval-every 250"
t() { python p4_adda.py train --data "$data" --overwrite "$@"; }

# usps -> mnistm
t --source usps --target mnistm --run "$out/p4_u2m_plain" --plain $steps        # report's ADDA (selftrain 0)
t --source usps --target mnistm --run "$out/p4_u2m_full" $steps                 # BN+norm, augment, smooth, self-train
t --source usps --target mnistm --run "$out/p4_u2m_zoom" --zoom $steps          # + random rescale
# mnistm -> usps
t --source mnistm --target usps --run "$out/p4_m2u_full" $steps
# mnist -> mnistm
t --source mnist --target mnistm --run "$out/p4_mn2m_full" $steps

# shipped checkpoints (best.pt = chosen by im-score on unlabelled target train images)
python p4_adda.py export --ckpt "$out/p4_u2m_zoom/best.pt" --out checkpoints/p4_adda_mnistm.pt
python p4_adda.py export --ckpt "$out/p4_m2u_full/best.pt" --out checkpoints/p4_adda_usps.pt
# per-stage rows: "by_stage" in each run's metrics.json
