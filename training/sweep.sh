#!/usr/bin/env bash
# Sweep the adapter recipes of training/variants.tsv: each one is trained with `radgpt train`, drafts
# the validate and test splits, and all are scored together (paired) by `radgpt evaluate`.
#   bash training/sweep.sh [CONFIG] [OUTDIR] [-- extra radgpt args, e.g. --set train.max_steps=2]
#   SWEEP_ONLY="k3-all-r16 k2-qv-r8"  run only these variants (names in training/variants.tsv)
#   SWEEP_BUDGET_S=420                 start no new variant after this many seconds
# Input: the canonical table at paths.table of CONFIG (radgpt ingest). Output in OUTDIR:
# adapters/<name>/, drafts/ (a drafts table), eval-validate/ and eval-test/ (metrics.json,
# summary.md), variants.tsv (name, adapter_id, wall seconds) and one log per step.
set -euo pipefail
cd "$(dirname "$0")/.."
CONFIG=${1:-conf/gpu.yaml}
OUT=${2:-var/sweep}
shift $(( $# < 2 ? $# : 2 )); [[ ${1:-} == -- ]] && shift
EXTRA=("$@")
RADGPT=${RADGPT:-.venv/bin/radgpt}
BUDGET=${SWEEP_BUDGET_S:-0}
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false RAY_USAGE_STATS_ENABLED=0
mkdir -p "$OUT/adapters" "$OUT/logs"
: > "$OUT/variants.tsv"
t0=$SECONDS
while IFS=$'\t' read -r name sets; do
  [[ -z $name || $name == \#* ]] && continue
  if [[ -n ${SWEEP_ONLY:-} && " $SWEEP_ONLY " != *" $name "* ]]; then continue; fi
  if (( BUDGET > 0 && SECONDS - t0 > BUDGET )); then echo "sweep: budget spent, skip $name"; continue; fi
  t1=$SECONDS
  read -ra args <<< "$sets"
  echo "sweep: $name: ${args[*]}"
  $RADGPT train --config "$CONFIG" "${args[@]}" "${EXTRA[@]}" --out "$OUT/adapters/$name" \
    > "$OUT/logs/$name.train.log" 2>&1 || { echo "sweep: $name: train failed"; tail -5 "$OUT/logs/$name.train.log"; continue; }
  $RADGPT draft --config "$CONFIG" "${EXTRA[@]}" --adapter "$OUT/adapters/$name" \
    --split validate,test --out "$OUT/drafts" \
    > "$OUT/logs/$name.draft.log" 2>&1 || { echo "sweep: $name: draft failed"; tail -5 "$OUT/logs/$name.draft.log"; continue; }
  id=$(python3 -c "import json,sys;print(json.load(open(sys.argv[1]))['adapter_id'])" "$OUT/adapters/$name/adapter_record.json")
  printf '%s\t%s\t%s\n' "$name" "$id" "$((SECONDS - t1))" >> "$OUT/variants.tsv"
  echo "sweep: $name -> $id in $((SECONDS - t1)) s"
done < training/variants.tsv
for split in validate test; do
  $RADGPT evaluate --config "$CONFIG" "${EXTRA[@]}" --drafts "$OUT/drafts" --split "$split" \
    --out "$OUT/eval-$split" > "$OUT/logs/eval-$split.log" 2>&1 || { echo "sweep: evaluate $split failed"; tail -5 "$OUT/logs/eval-$split.log"; }
done
echo "sweep: done in $((SECONDS - t0)) s"
