"""The HH-RLHF demo (docs/results/pairs-cpu/README.md): the pairs a CRM-style run doubts most, with their text.

    python -m robustlabels.fit --config configs/pairs/hh_rlhf_crm.yaml --trainer.default_root_dir=runs/hh
    python experiments/hh_rlhf_demo.py runs/hh_rlhf_crm/version_0/issues.csv --top 5
"""

from __future__ import annotations

import argparse

import pandas as pd

from robustlabels.data import HHRLHFDataModule


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("issues")
    parser.add_argument("--top", type=int, default=5)
    args = parser.parse_args()
    data = HHRLHFDataModule(features="tfidf")  # the texts only: no embedding needed
    pairs = data.read_pairs()["train"]
    table = pd.read_csv(args.issues)
    print(f"{int(table['flagged'].sum())} of {len(table)} training pairs flagged; the {args.top} most doubted:\n")
    for row in table.head(args.top).itertuples():
        i = int(row.index)
        prompt = pairs.prompts[i].strip().split("\n\nHuman: ")[-1].removesuffix("\n\nAssistant:")
        print(f"- pair {i} (margins {row.margin_a:+.2f}, {row.margin_b:+.2f}; kept {row.keep_frequency:.0%}):")
        print(f"  last human turn: {prompt[:160]!r}")
        print(f"  chosen:   {pairs.chosen[i][:160]!r}")
        print(f"  rejected: {pairs.rejected[i][:160]!r}")


if __name__ == "__main__":
    main()
