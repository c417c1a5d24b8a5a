#!/usr/bin/env bash
# The exact commands behind the P3 tables (README, docs/experiments.md, benchmarks/RESULTS.md): run folders
# RUNS/<row>_<pair>_s<seed>, 3000 steps of batch 128 per domain, --precision bf16 on a CPU (one process per core,
# OMP_NUM_THREADS=1: 3-11 minutes a run). Then: python benchmarks/p3_report.py RUNS
# Usage: bash benchmarks/p3_table.sh [DATA_ROOT] [RUNS] [main|marginal|levers|all]
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:-hw3_data}; out=${2:-runs/p3}; which=${3:-all}
export OMP_NUM_THREADS=1
t() { python p3_dann.py train --data "$data" --steps 3000 --precision bf16 --overwrite "$@"; }
pairs=("usps mnistm u2m" "mnistm usps m2u" "mnist mnistm mn2m")
marginal=(--no-conditional --no-entropy-weighting --target-entropy 0)  # the previous defaults: plain marginal DANN
for seed in 0 1 2; do
  for pair in "${pairs[@]}"; do
    set -- $pair
    if [ "$which" = main ] || [ "$which" = all ]; then  # the defaults against source-only of the same flags
      t --source "$1" --target "$2" --mode dann --seed "$seed" --run-dir "$out/dann_$3_s$seed"
      t --source "$1" --target "$2" --mode source --seed "$seed" --run-dir "$out/source_$3_s$seed"
    fi
    if [ "$which" = marginal ] || [ "$which" = all ]; then  # (mnistm -> usps: seeds 0 and 1 only)
      t --source "$1" --target "$2" --mode dann "${marginal[@]}" --seed "$seed" --run-dir "$out/marginal_$3_s$seed"
    fi
  done
done
if [ "$which" = levers ] || [ "$which" = all ]; then  # one lever at a time, seed 0
  u2m=(--source usps --target mnistm --mode dann); m2u=(--source mnistm --target usps --mode dann)
  t "${m2u[@]}" "${marginal[@]}" --lr 1e-3 --run-dir "$out/marginal_lr1e-3_m2u_s0"
  t "${m2u[@]}" "${marginal[@]}" --target-entropy 0.1 --run-dir "$out/marginal_ent0.1_m2u_s0"
  t "${m2u[@]}" --target-entropy 0 --run-dir "$out/cdane_m2u_s0"                       # CDAN+E, no entropy term
  t "${m2u[@]}" --target-entropy 0.1 --run-dir "$out/cdane_ent0.1_m2u_s0"
  t "${u2m[@]}" --target-entropy 0.1 --run-dir "$out/cdane_ent0.1_u2m_s0"
  # rows of removed flags, for reruns from their commits: marginal_ls_{u2m,m2u} (--label-shift, b6223f5),
  # marginal_delay1k_cw_m2u (--grl-delay 1000 --class-weights, 337204b); from 1a7f9f9, with the flags it had:
  #   marginal_nodbn_nozoom_u2m ("${u2m[@]}" "${marginal[@]}" --no-domain-bn --no-zoom),
  #   marginal_nozoom_u2m ("${u2m[@]}" "${marginal[@]}" --no-zoom), source_nozoom_u2m (--mode source --no-zoom),
  #   on "${m2u[@]}" (marginal_*: and "${marginal[@]}"): marginal_w0.3_m2u (--domain-weight 0.3),
  #   marginal_nodbn_m2u (--no-domain-bn), marginal_delay1k_m2u (--grl-delay 1000),
  #   cdane_delay1k_m2u (--target-entropy 0 --grl-delay 1000)
fi
# the shipped models: seed 0 of the defaults
if [ -f "$out/dann_u2m_s0/best.pt" ] && [ -f "$out/dann_m2u_s0/best.pt" ]; then
  python p3_dann.py export --ckpt "$out/dann_u2m_s0/best.pt" --out checkpoints/p3_dann_mnistm.pt --force
  python p3_dann.py export --ckpt "$out/dann_m2u_s0/best.pt" --out checkpoints/p3_dann_usps.pt --force
fi
