#!/usr/bin/env bash
# Every GPU figure of issues #17 and #15 on the device machine (one H200, 16 cores), prepared here:
#   bash bench/gpu_pack.sh                          # here, once: .gpu/ (wheels, model, table)
#   then the calls it prints; the last one runs:   bash bench/gpu.sh $OUT/gpu
#   GPU_PARTS="retrain" bash bench/gpu.sh $OUT/re   # a next call on the still-warm machine
#   GPU_SMOKE=1 bash bench/gpu.sh var/gpu-smoke     # the same steps, tiny, on this CPU
# Parts (GPU_PARTS, default "setup draft train"; ~5 min), each writing OUT/<part>.json and .log; a
# failed part is reported and the next one runs:
#   setup    on the device: the pieces of .gpu/p*/ put together and checked (sha256), Ray and the
#            other wheels installed into /tmp/site, the base model imported from the GGUF, the
#            IU table copied to var/iu/table (the image has no Java/Spark: no ingest there);
#            nvidia-smi and torch's view of the device in OUT/device.txt
#   draft    bench/draft_variants.py, IU validate + test (764 reports), one round on Ray Data (one
#            GPU actor): before = the code of GPU_BEFORE (27d3ff2, .gpu/before from gpu_pack.sh;
#            here a git archive; with the adapter's carry-rates file of that commit) at the
#            setting of the 18.6 reports/s figure (greedy, batch 64); b64 = today's code at that setting; greedy at batch 512; the shipped default (n-best
#            4) at batch 256. End to end and engine (steady state) reports/s, ratios to before,
#            greedy agreement (targets: 10x, >= 99%)
#   train    bench/train.py on CUDA in process: the shipped recipe's prompts (3 retrieved
#            examples, cutoff 768), full-logits loss at micro-batch 16 (the code of the 22k
#            tokens/s figure) vs response_loss at 16 and at 64; tokens/s, MFU (target: 5x)
#   retrain  (~6 min) the shipped adapter drafted, then training/sweep.sh k3-all-r16-obs (the
#            chat-obs-v1 prompt, issue #15): both scored on validate and test in OUT/sweep
#   compile  (opt-in, ~3 min) the train part's runs plus the micro-batch-64 run under
#            torch.compile(dynamic=True): whether compiling pays, its compile seconds, and that
#            its losses agree with the eager run (compiled_loss_max_diff)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-var/gpu}
PARTS=${GPU_PARTS:-setup draft train}
CONF=conf/gpu.yaml ROOT=var/iu BASE=var/models/smollm2-135m-instruct
SPLIT=validate,test LIMIT=100000 DB=(512 256) TRAIN=(--examples 512 --steps 6 --bigger 64)
DSETS=() SW=(-- --set model.base=$BASE)
if [[ -n ${GPU_SMOKE:-} ]]; then  # this CPU, minutes: the same steps, tiny sizes
  CONF=conf/local.yaml SPLIT=test LIMIT=6 DB=(8 8)
  TRAIN=(--examples 8 --steps 1 --bigger 4 --micro-batch 2 --grad-accum 2)  # after the defaults
  DSETS=(--limit 4 --split validate,test)
  SW=(-- --set train.max_steps=2 --set train.effective_batch=8 --set draft.limit=4
      --set paths.root=$ROOT --set model.base=$BASE --set draft.selection=split --set draft.split=validate,test)
fi
if [[ -x .venv/bin/python ]]; then PY=.venv/bin/python; else PY=python3; fi  # the device: its image
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false RAY_USAGE_STATS_ENABLED=0
[[ -d /tmp/site ]] && export PYTHONPATH=$PYTHONPATH:/tmp/site
R="$PY -m radgpt"
mkdir -p "$OUT"
t0=$SECONDS
part() { [[ " $PARTS " == *" $1 "* ]]; }
say() { echo "gpu.sh [$((SECONDS - t0)) s] $*"; }
run() {  # run NAME CMD...: stdout -> OUT/NAME.json, stderr -> OUT/NAME.log
  local name=$1; shift
  say "$name: $*"
  if "$@" > "$OUT/$name.json" 2> "$OUT/$name.log"; then say "$name: ok"; cat "$OUT/$name.json"; else
    say "$name: FAILED (exit $?), last lines:"; tail -5 "$OUT/$name.log"; fi
}

if part setup; then
  { nvidia-smi || true; nproc; $PY -c "import torch; print(torch.__version__, torch.cuda.is_available() and torch.cuda.get_device_name(0))"; } > "$OUT/device.txt" 2>&1
  if [[ $PY == python3 && -d .gpu/w && ! -d /tmp/site ]]; then  # the device: what gpu_pack.sh packed
    say "setup: unpacking .gpu"
    cat .gpu/p*/big.tar.part* > /tmp/big.tar
    (cd /tmp && sed 's# big.tar# /tmp/big.tar#' "$OLDPWD/.gpu/w/SHA256SUMS" | sha256sum -c) || { say "setup: pieces missing or corrupt"; exit 1; }
    mkdir -p /tmp/big && tar -xf /tmp/big.tar -C /tmp/big && rm /tmp/big.tar
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site \
      .gpu/w/*.whl /tmp/big/ray-*.whl || exit 1
    export PYTHONPATH=$PYTHONPATH:/tmp/site
    mkdir -p $ROOT/table && cp -r .gpu/t/. $ROOT/table/
    [[ -d $BASE ]] || $R models import-gguf /tmp/big/*.gguf --out $BASE >> "$OUT/setup.log" 2>&1 || exit 1
  fi
  [[ -d $BASE ]] || $R models import-smollm2 --out $BASE >> "$OUT/setup.log" 2>&1
  say "setup: done"
fi
if part draft; then
  B=.gpu/before G64=draft.n_best=1,draft.batch_size=64,draft.executor=ray
  if [[ ! -d $B ]]; then  # here: the same code from git (a fresh dir each run)
    B=$OUT/before-code; rm -rf "$B"; mkdir -p "$B"
    git archive "${GPU_BEFORE:-27d3ff2}" radgpt conf schemas models/iu-default/carry_rates.json \
      | tar -x -C "$B" || B=
  fi
  BEFORE=(--variant "before=$G64")  # no old code at hand: today's code at that setting
  if [[ -n $B ]]; then  # the shipped adapter with the carry-rates file that code reads
    cp -rn models/iu-default/. "$B/models/iu-default/"
    BEFORE=(--variant "before@$B=$G64,model.adapter=$PWD/$B/models/iu-default")
  fi
  run draft $PY bench/draft_variants.py --config $CONF --root $ROOT --base-model $BASE \
    --split $SPLIT --limit $LIMIT --rounds 1 --out "$OUT/drafts" "${BEFORE[@]}" \
    --variant b64=$G64 \
    --variant greedy=draft.n_best=1,draft.batch_size=${DB[0]},draft.executor=ray \
    --variant nbest=draft.batch_size=${DB[1]},draft.executor=ray
fi
if part train; then
  dev=cpu; $PY -c "import torch, sys; sys.exit(not torch.cuda.is_available())" && dev=cuda
  run train $PY bench/train.py --base-model $BASE --data $ROOT/table --device $dev --autocast \
    --retrieval-k 3 --cutoff-len 768 --micro-batch 16 --grad-accum 2 "${TRAIN[@]}"  # last wins
fi
if part compile; then  # apart from train: a compile failure must not cost the train figures
  dev=cpu; $PY -c "import torch, sys; sys.exit(not torch.cuda.is_available())" && dev=cuda
  run compile $PY bench/train.py --base-model $BASE --data $ROOT/table --device $dev --autocast \
    --retrieval-k 3 --cutoff-len 768 --micro-batch 16 --grad-accum 2 "${TRAIN[@]}" --compile
fi
if part retrain; then
  say "retrain: the shipped adapter's drafts, then training/sweep.sh k3-all-r16-obs"
  $R draft --config $CONF --set paths.root=$ROOT --set model.base=$BASE "${DSETS[@]}" \
    --out "$OUT/sweep/drafts" > "$OUT/retrain-shipped.log" 2>&1 || say "retrain: shipped drafts FAILED"
  if RADGPT="$R" SWEEP_ONLY=k3-all-r16-obs bash training/sweep.sh $CONF "$OUT/sweep" "${SW[@]}" > "$OUT/retrain.log" 2>&1
  then say "retrain: ok"; cat "$OUT/sweep/eval-test/summary.md" 2>/dev/null | head -40
  else say "retrain: FAILED"; tail -5 "$OUT/retrain.log"; fi
fi
say "done: $OUT"
