#!/usr/bin/env bash
# The t-SNE figure (docs/tsne_u2m.png) on usps -> mnistm: source-only and DANN (the seed-0 runs of p3_table.sh in
# RUNS_DIR), then P4 (P4_RUN: a run's best.pt, default the shipped model's run); 60 dev-test images per class and
# domain; left coloured by class, right by domain. Without the P3 runs, the figure's first two rows are kept and only
# the P4 row is drawn again.
# Usage: bash benchmarks/tsne_u2m.sh [DATA_ROOT] [RUNS_DIR] [P4_RUN]
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:-hw3_data}; runs=${2:-runs/p3}; p4=${3:-runs/exp/p4_u2m_one16k_s2/best.pt}
rows="source dann p4"
[ -f "$runs/source_u2m_s0/best.pt" ] && [ -f "$runs/dann_u2m_s0/best.pt" ] || rows="p4"
for m in $rows; do
  ckpt=$([ "$m" = p4 ] && echo "$p4" || echo "$runs/${m}_u2m_s0/best.pt")
  python tsne.py --ckpt "$ckpt" --data "$data" --source usps --target mnistm --per-class 60 --out-dir "$runs/tsne/$m"
done
python - "$runs/tsne" $rows <<'PY'
import sys
from PIL import Image
root, rows = sys.argv[1], sys.argv[2:]
fig = Image.open("docs/tsne_u2m.png").convert("RGB")  # 800 x 1200: rows source, DANN, P4
for r, m in enumerate(["source", "dann", "p4"]):
    if m not in rows:
        continue
    for c, k in enumerate(["class", "domain"]):
        im = Image.open(f"{root}/{m}/tsne_{k}.png").convert("RGB").resize((400, 400), Image.LANCZOS)
        fig.paste(im, (c * 400, r * 400))
fig.save("docs/tsne_u2m.png", optimize=True)
PY
