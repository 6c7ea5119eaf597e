"""Writes a smaller copy of a pgnface network: float weights stored in float16 (loads as float32).

    python scripts/compact_checkpoint.py runs/x/model.pt pgnface/assets/pgn_x.pt

Only for bundling networks in the repository; the copy keeps the format,
config and 3DMM identity, and drops training state (optimizer, RNG).
"""

import sys

from pgnface.nn import atomic_save, read_checkpoint

KEEP = ("format", "version", "network", "model", "input_size", "data_terms", "bn_calibration")


def main(source: str, target: str) -> None:
    payload = read_checkpoint(source)
    compact = {key: payload[key] for key in KEEP if key in payload}
    compact["state_dict"] = {
        name: value.half() if value.is_floating_point() else value for name, value in payload["state_dict"].items()
    }
    atomic_save(compact, target)
    print(f"wrote {target}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
