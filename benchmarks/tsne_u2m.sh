#!/usr/bin/env bash
# The t-SNE figure (docs/tsne_u2m.png) on usps -> mnistm: source-only and DANN (the seed-0 runs of p3_table.sh in
# RUNS_DIR), then P4 (P4_RUN: a run's best.pt, default the shipped model's run); 60 dev-test images per class and
# domain; left coloured by class, right by domain.
# Usage: bash benchmarks/tsne_u2m.sh [DATA_ROOT] [RUNS_DIR] [P4_RUN]
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:-hw3_data}; runs=${2:-runs/p3}; p4=${3:-runs/exp/p4_u2m_gptex_st3k/best.pt}
for m in "source $runs/source_u2m_s0/best.pt" "dann $runs/dann_u2m_s0/best.pt" "p4 $p4"; do
  set -- $m
  python tsne.py --ckpt "$2" --data "$data" --source usps --target mnistm --per-class 60 --out-dir "$runs/tsne/$1"
done
python - "$runs/tsne" <<'PY'
import sys
from PIL import Image
root = sys.argv[1]
fig = Image.new("RGB", (800, 1200), "white")
for r, m in enumerate(["source", "dann", "p4"]):
    for c, k in enumerate(["class", "domain"]):
        im = Image.open(f"{root}/{m}/tsne_{k}.png").convert("RGB").resize((400, 400), Image.LANCZOS)
        fig.paste(im, (c * 400, r * 400))
fig.save("docs/tsne_u2m.png", optimize=True)
PY
