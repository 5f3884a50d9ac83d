#!/usr/bin/env bash
# The GPU checks of issue 6, as one short script (about 5 minutes on an H100):
#   1. `sarb bench --device cuda` at full size: the CUDA rows of BENCHMARKS.md, including
#      train_vs_backbone (ResNet-101, 448 px, batch 16, bf16);
#   2. a CUDA training smoke run on the demo data with the CUDA defaults (bf16 autocast,
#      channels_last, decode_jpeg + loader workers + pinned memory), backbone training;
#   3. the same with --compile;
#   4. the same under torchrun (NCCL, one process per GPU; on a one-GPU machine this checks
#      the launcher and the one-process path only, as NCCL cannot put two ranks on one GPU).
# Run from the repository root on a machine with a GPU; it uses that machine's own torch,
# torchvision, scikit-learn, PyYAML, tqdm and matplotlib (no install, PYTHONPATH=src):
#   OUT=/tmp/sarb-gpu bash scripts/gpu_check.sh
set -euo pipefail
OUT=${OUT:-/tmp/sarb-gpu}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
export PYTHONPATH="$PWD/src" SARB_CACHE_DIR="$OUT/cache" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
"$PY" -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__)"

"$PY" -m sarb bench --device cuda --json "$OUT/bench.json" | tee "$OUT/bench.txt"

SMOKE=(--config configs/demo.yaml --backbone resnet50 --weights random --trainable paper
       --no-feature-cache --crop-flip --image-size 224 --batch-size 32 --workers 6
       --epochs 2 --blend-start 1 --proto-every 1 --method sarb --overwrite)
for run in eager compile; do
    extra=()
    [ "$run" = compile ] && extra=(--compile)
    start=$(date +%s)
    # ${extra[@]+...}: an empty array is "unbound" under set -u before bash 4.4; tr: tqdm's
    # carriage returns would otherwise hide each epoch's summary line from grep -v
    "$PY" -m sarb train "${SMOKE[@]}" ${extra[@]+"${extra[@]}"} --max-steps 150 --out "$OUT/run_$run" \
        2>&1 | tr '\r' '\n' | grep -v "it/s" | tail -4
    echo "$run: $(( $(date +%s) - start )) s"
done
"$PY" -m torch.distributed.run --standalone --nproc_per_node "$("$PY" -c 'import torch; print(torch.cuda.device_count())')" \
    -m sarb train "${SMOKE[@]}" --max-steps 60 --out "$OUT/run_ddp" 2>&1 | tr '\r' '\n' | grep -v "it/s" | tail -4
for run in eager compile ddp; do
    "$PY" -c "import json,sys; m=json.load(open(sys.argv[1])); print(sys.argv[2], 'mAP', round(m['mAP'], 2), 'steps', m['steps'], 'world', m['world_size'])" \
        "$OUT/run_$run/metrics.json" "$run"
    grep -o '"epoch_time_s": [0-9.]*' "$OUT/run_$run/log.jsonl" | tr '\n' ' '
    echo
    if grep -q "amp: true" "$OUT/run_$run/config.yaml"; then echo "$run: bf16 autocast on";
    else echo "$run: bf16 autocast OFF (expected on for CUDA)"; fi
done
