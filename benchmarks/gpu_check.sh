#!/usr/bin/env bash
# The GPU checks, as one command for a lent GPU machine (an H200 here; figures in docs/benchmarks.md, "On a GPU"):
#
#   bash benchmarks/gpu_check.sh OUT [EPOCHS]
#
# 1. the GPU tests (`pytest -m gpu`: every fit config in bf16 on CUDA, the GPU image encoder, the torch
#    neighbour backend), while 2. CE and ELR train on CIFAR-10 with 40 % symmetric noise for EPOCHS epochs
#    (default 20) through the experiment runner, two cells at once on the one GPU; then, alone on the machine,
# 3. the image encoder (variants, then all 60,000 CIFAR-10 images through `encode_images`) and 4. training
#    throughput fp32 vs bf16 (benchmarks/throughput.py). Each step has its own time limit, so one that fails or
#    overruns leaves the others' figures. Needs CUDA torch, timm and pytorch-lightning; the other dependencies
#    can come as wheels in .whl/ (installed into /tmp/site), the data in ../shared/data or .gpu/data.
set -u
OUT=${1:?usage: gpu_check.sh OUT [EPOCHS]}
EPOCHS=${2:-20}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PL_DISABLE_FORK=1
if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site:$PWD
else
    export PYTHONPATH=$PWD
fi
if [ ! -e ../shared/data ] && [ -d .gpu/data ]; then mkdir -p ../shared && ln -s "$PWD/.gpu/data" ../shared/data; fi

step() {  # step NAME SECONDS COMMAND...: run with a time limit, output to OUT/NAME.txt and the log
    local name=$1 limit=$2; shift 2
    local start=$SECONDS
    timeout "$limit" "$@" >"$OUT/$name.txt" 2>&1
    echo "== $name: exit $? after $((SECONDS - start)) s" | tee -a "$OUT/log.txt"
}

{ nvidia-smi -L; python3 -c "import torch, pytorch_lightning as pl, timm; print('torch', torch.__version__,
  'lightning', pl.__version__, 'timm', timm.__version__, torch.cuda.get_device_name())"; nproc; } >"$OUT/log.txt" 2>&1

step experiments 330 python3 -m robustlabels.experiments --suite cifar10-gpu --out /tmp/exp \
    --only cross_entropy,elr --settings symmetric-0.4 --limit-epochs "$EPOCHS" --jobs 2 &
step pytest 240 python3 -m pytest -q -m gpu -p no:cacheprovider tests/neighbors/test_neighbors.py \
    tests/data/test_image_features.py tests/test_fit_cli.py
wait
cp /tmp/exp/report.md "$OUT/experiments_report.md" 2>/dev/null
step encoder 100 python3 benchmarks/image_encoder.py --images 4096 --threads 16 --full
step throughput 120 python3 benchmarks/throughput.py --device cuda --models preact_resnet18 small_cnn --rounds 2 --steps 200 \
    --out "$OUT/throughput.md" --json "$OUT/throughput.json"
cat "$OUT/log.txt"
