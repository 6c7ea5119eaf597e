"""Throughput of the synthetic face generator (images/s), built-in model, B = 64.

    python -m bench.synthetic [--device cpu|cuda] [--quick] [--json FILE]

Measures `SyntheticFaces.sample` (random parameters, backgrounds, rendering,
ground truth) at 128 x 128 and 224 x 224. Target on a GPU: >= 10,000 images/s
at 128 x 128, so training never waits for data.
"""

import argparse

import torch

from bench.common import (
    device_description,
    environment,
    format_table,
    time_call,
    write_json,
)
from pgnface.data import SyntheticConfig, SyntheticFaces
from pgnface.morphable import MorphableModel


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--quick", action="store_true", help="128 x 128 only")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    morphable = MorphableModel.builtin().to(device)
    rows = []
    print(
        f"synthetic generation benchmark on {device_description(device)}, built-in model "
        f"({morphable.num_vertices} vertices), B = {args.batch}"
    )
    for size in [128] if args.quick else [128, 224]:
        gen = SyntheticFaces(morphable, SyntheticConfig(size=size), seed=0)
        seconds = time_call(lambda gen=gen: gen.sample(args.batch), device, min_time=0.5)
        rows.append(
            {
                "size": f"{size}x{size}",
                "B": args.batch,
                "ms_per_batch": seconds * 1e3,
                "images_per_s": args.batch / seconds,
            }
        )
    print(format_table(rows, list(rows[0])))
    write_json(args.json, dict(benchmark="synthetic", device=device_description(device), env=environment(), rows=rows))


if __name__ == "__main__":
    main()
