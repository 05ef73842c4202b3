#!/usr/bin/env bash
# fp32 against bf16-mixed for every strategy family, on a lent GPU (figures in docs/benchmarks.md, "CPU training
# precision"): the `cpu` suite's Fashion-MNIST cells at 40 % symmetric noise (20k subset, small CNN, 20 epochs,
# seeds 0 and 1), once with `precision: 32-true` and once with `bf16-mixed`, the two runs side by side on one GPU:
#
#   bash benchmarks/gpu_precision.sh OUT
#
# On a CPU without native bf16 the same comparison takes hours (bf16 is emulated, 11x slower), hence a GPU: the
# bf16 format and autocast rules are the same, the kernels are not. Needs Fashion-MNIST (data/fashion_mnist or
# .gpu/fashion_mnist) and, as benchmarks/gpu_check.sh, wheels for what the machine lacks in .whl/.
set -u
OUT=${1:?usage: gpu_precision.sh OUT}
ONLY=${ONLY:-cross_entropy,elr,elr_plus,adaptive_k,neighbor_consistency,neighbor_consistency-dataset,co_teaching,nested_co_teaching,gce,sce,meta_loss_rescaling}
mkdir -p "$OUT" .gpu
export PYTHONUNBUFFERED=1 PL_DISABLE_FORK=1 PYTHONPATH=$PWD
if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site:$PWD
fi
[ -e data/fashion_mnist ] || ln -s "$PWD/.gpu/fashion_mnist" data/fashion_mnist
for precision in 32-true bf16-mixed; do
    sed "s/trainer: {max_epochs: 20}/trainer: {max_epochs: 20, precision: $precision}/" \
        robustlabels/experiments/suites/cpu.yaml >".gpu/suite-$precision.yaml"
    timeout "${LIMIT:-360}" python3 -m robustlabels.experiments --suite ".gpu/suite-$precision.yaml" \
        --out "/tmp/precision-$precision" --datasets fashion_mnist --settings symmetric-0.4 --only "$ONLY" \
        --jobs "${JOBS:-6}" >"$OUT/run-$precision.txt" 2>&1 &
done
timeout 120 python3 -m pytest -q -m gpu -p no:cacheprovider tests/test_precision.py \
    tests/data/test_image_features.py >"$OUT/pytest.txt" 2>&1
wait
for precision in 32-true bf16-mixed; do cp "/tmp/precision-$precision/results.csv" "$OUT/results-$precision.csv"; done
tail -n 3 "$OUT"/*.txt
