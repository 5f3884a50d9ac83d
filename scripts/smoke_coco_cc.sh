#!/usr/bin/env bash
# Smoke run of the COCO reader on real photos (not part of the test suite): a few SARB steps
# on ../shared/data/coco-cc (33 COCO photos with a COCO-format instances.json) through
# `--dataset coco`, the same file for training and testing, a frozen EfficientNet-Lite0 with
# cached features at 128 px. About a minute on a CPU. The photos stay where they are.
#
#   scripts/smoke_coco_cc.sh [DATA_DIR] [OUT_DIR]
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
data="${1:-$here/../shared/data/coco-cc}"
out="${2:-$(mktemp -d)/smoke-coco-cc}"
python="${PYTHON:-$here/.venv/bin/python}"

"$python" -m sarb labels --dataset coco \
    --annotations "$data/instances.json" --images "$data/images" \
    --test-annotations "$data/instances.json" --split train \
    --out "$out/labels.csv" --names "$out/classes.txt"

"$python" -m sarb train --dataset coco \
    --annotations "$data/instances.json" --images "$data/images" \
    --test-annotations "$data/instances.json" \
    --method sarb --known 0.5 \
    --backbone efficientnet_lite0 --weights auto --trainable none --feature-cache \
    --image-size 128 --feat-dim 64 --hidden-dim 64 --neck-pool 1 --no-crop-flip \
    --epochs 2 --batch-size 8 --lr 1e-3 --blend-start 1 --proto-every 1 --num-prototypes 3 \
    --max-steps 5 --workers 0 --device cpu --out "$out/run"

"$python" - "$out/run/metrics.json" <<'PY'
import json, sys

m = json.load(open(sys.argv[1]))
keep = ("mAP", "CP", "CR", "CF1", "OP", "OR", "OF1", "val_mAP", "best_epoch", "steps")
print(sys.argv[1] + ":", json.dumps({k: round(m[k], 2) if isinstance(m[k], float) else m[k]
                                     for k in keep if k in m}))
PY
