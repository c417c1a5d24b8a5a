#!/usr/bin/env bash
# The t-SNE figure in the README (docs/tsne_u2m.png): source-only, DANN and P4 on usps -> mnistm, 60 dev-test
# images per class and domain, from the runs of p3_table.sh and p4_ablation.sh written to one RUNS_DIR.
# Usage: bash benchmarks/tsne_u2m.sh [DATA_ROOT] [RUNS_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:-hw3_data}; runs=${2:-runs/p3}
for m in "source $runs/imp_source_u2m" "dann $runs/imp_dann_u2m" "p4 $runs/p4_u2m_full"; do
  set -- $m
  python tsne.py --ckpt "$2/best.pt" --data "$data" --per-class 60 --out-dir "$runs/tsne/$1"
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
