"""Recomputes a network's batch-norm statistics on one kind of training batch of a run config.

    python scripts/calibrate_batch_norm.py runs/stage8/best.pt --config runs/stage8/config.json \
        --kind real300w --batches 40 -o runs/stage8/calibrated.pt

What a run with ``bn_calibration`` does to the network it exports
(pgnface.train.batch_norm_calibration), applied afterwards to a network that was trained
without it. The data folders come from the config (paths relative to where it runs); the
output keeps the checkpoint's metadata and records the calibration under ``bn_calibration``.
"""

import argparse
import sys
from dataclasses import replace

import torch

from pgnface.nn import atomic_save, read_checkpoint
from pgnface.nn.checkpoint import build_network, network_payload
from pgnface.train import TrainConfig
from pgnface.train.batch_norm_calibration import calibrate_batch_norm, calibration_batches
from pgnface.train.loop import load_morphable

KEEP = ("input_size", "data_terms", "step", "validation")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="a pgnface network (model.pt, best.pt, checkpoint.pt)")
    parser.add_argument("--config", required=True, help="the run's config.json (its data folders and batch size)")
    parser.add_argument("--kind", default="real300w", help="the batch kind whose images give the statistics")
    parser.add_argument("--batches", type=int, default=40, help="number of batches averaged (default 40)")
    parser.add_argument("-o", "--out", required=True, help="where to write the calibrated network")
    args = parser.parse_args(argv)
    try:
        config = replace(
            TrainConfig.from_json(args.config), bn_calibration=args.kind, bn_calibration_batches=args.batches
        )
        config.validate()
        payload = read_checkpoint(args.checkpoint)
    except (OSError, ValueError) as e:
        print(f"calibrate_batch_norm: {e}", file=sys.stderr)
        return 2
    torch.set_num_threads(max(config.threads, 1))
    morphable = load_morphable(config.data.morphable)
    net = build_network(payload, morphable, f"checkpoint {args.checkpoint}")
    batches = calibration_batches(config, net.morphable_on(torch.device("cpu")))
    calibrated = calibrate_batch_norm(net, batches, args.batches, config.batch_size, torch.device("cpu"))
    out = network_payload(calibrated)
    out.update({key: payload[key] for key in KEEP if key in payload})
    out["bn_calibration"] = {"kind": args.kind, "batches": args.batches, "batch_size": config.batch_size}
    atomic_save(out, args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
