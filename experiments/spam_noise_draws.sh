#!/bin/bash
# How much does the one noise draw of the storm-spam suite matter? SMS at 40 % flips, training seed 0, other noise
# draws (noise seeds 1-3; the suite's is 42), "no rescaling" and STORM. Prints the paper's metric of each run.
#   bash experiments/spam_noise_draws.sh [OUT_DIR]
out=${1:-runs/spam_noise_draws}
for ns in 1 2 3; do
  for rescale in false true; do
    log=$out/ns$ns-rescale_$rescale.log
    mkdir -p "$out"
    python -m robustlabels.fit --config spam/sms_ce --model.strategy=MetaLossRescaling \
      --model.strategy.init_args.rescale=$rescale --data.init_args.noise_seed=$ns \
      --data.init_args.noise.init_args.rate=0.4 --trainer.enable_progress_bar=false \
      --trainer.logger.init_args.save_dir="$out/ns$ns-rescale_$rescale" > "$log" 2>&1 || { tail -1 "$log"; exit 1; }
    echo "noise_seed=$ns rescale=$rescale: $(grep -E 'F1 \(class 1\) at best val|realized noise' "$log" | tr -s ' ' | tr '\n' ';')"
  done
done
