"""Where a meta-learning step's time goes: the torch profiler's operator table for one strategy against CE.

Same module, batches and controls as ``overhead.py`` (small_cnn, batch 128, 2 threads); prints each variant's
step time and its ten most expensive operators (self CPU time, summed over the profiled steps).

    .venv/bin/python benchmarks/meta_profile.py --variants CE,MetaWeightNet,STORM --steps 10
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).parent))
from overhead import build, make_batches, time_steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", default="CE,MetaWeightNet,STORM")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--rows", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(2)
    shape = (1, 28, 28)
    batches = make_batches(args.steps, 128, shape, 50_000, "cpu")
    for name in args.variants.split(","):
        module, optimizer = build(name, "small_cnn", shape, 50_000, "cpu")
        time_steps(module, optimizer, batches[:3], "cpu")  # warm-up
        seconds = time_steps(module, optimizer, batches, "cpu")
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            time_steps(module, optimizer, batches, "cpu")
        print(f"\n## {name}: {1000 * seconds:.1f} ms per step\n")
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows, max_name_column_width=40))


if __name__ == "__main__":
    main()
