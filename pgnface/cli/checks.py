"""Checks of command-line values, run before a command does any work.

Each check raises UsageError with one line that names the option, the value
and what is expected, so `pgnface.cli.main` can report it as such.
"""

import json
import math
from pathlib import Path
from typing import Dict, List, Optional

from pgnface.cli.errors import UsageError

# Crop and render sizes the networks and the renderer are used at; larger ones only exhaust memory.
MAX_SIZE = 1024


def in_range(option: str, value, low, high=None, unit: str = ""):
    """Returns `value` when it is a finite number in [low, high] (high None: no upper limit).

    Args:
        option: the option's name as the user typed it (e.g. "--fps").
        value: the parsed value; None (the option was not given) passes.
        low, high: the inclusive limits.
        unit: appended to the limits in the message (e.g. " px").
    """
    if value is None:
        return value
    if math.isfinite(value) and low <= value and (high is None or value <= high):
        return value
    limits = f"at least {low}{unit}" + (f" and at most {high}{unit}" if high is not None else "")
    raise UsageError(f"{option} must be {limits}, got {value}")


def device(name: Optional[str], option: str = "--device") -> Optional[str]:
    """Returns `name` when it is a device this machine has: cpu, or cuda / cuda:N with that GPU present."""
    import torch

    if name is None:
        return name
    try:
        dev = torch.device(name)
    except RuntimeError:
        dev = None
    if dev is None or dev.type not in ("cpu", "cuda"):
        raise UsageError(f"{option} {name}: pgnface runs on cpu or cuda (cuda:N for the N-th GPU)")
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise UsageError(f"{option} {name}: no CUDA GPU is available here; use --device cpu")
        if dev.index is not None and dev.index >= count:
            raise UsageError(f"{option} {name}: this machine has {count} GPU(s), cuda:0 to cuda:{count - 1}")
    return name


def input_file(path, option: str) -> Path:
    """Returns `path` as a Path when it is an existing file."""
    path = Path(path)
    if not path.is_file():
        state = "is a folder" if path.is_dir() else "does not exist"
        raise UsageError(f"{option} {path}: {state}; give an existing file")
    return path


def boxes_file(path, option: str = "--boxes") -> Dict[str, List[List[float]]]:
    """The face boxes of a --boxes JSON file: {"image.jpg": [[x0, y0, x1, y1], ...]}, each box checked.

    Every box has four finite pixel coordinates with x1 > x0 and y1 > y0.
    """
    expected = '{"image.jpg": [[x0, y0, x1, y1], ...], ...}'
    try:
        boxes = json.loads(input_file(path, option).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UsageError(f"{option} {path}: not a readable JSON file ({err}); expected {expected}") from None
    if not isinstance(boxes, dict):
        raise UsageError(f"{option} {path}: a JSON {type(boxes).__name__}, expected an object {expected}")
    for name, items in boxes.items():
        if not isinstance(items, list) or not items or not all(isinstance(box, list) for box in items):
            raise UsageError(f"{option} {path}: {name!r} must be a list of boxes [[x0, y0, x1, y1], ...]")
        for box in items:
            _check_box(box, f"{option} {path}: {name!r} box {box}")
    return boxes


def _check_box(box: list, where: str) -> None:
    if len(box) != 4 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in box):
        raise UsageError(f"{where}: expected four numbers x0, y0, x1, y1")
    if not all(math.isfinite(v) for v in box):
        raise UsageError(f"{where}: the coordinates must be finite")
    x0, y0, x1, y1 = box
    if not (x1 > x0 and y1 > y0):
        raise UsageError(f"{where}: x1 must exceed x0 and y1 exceed y0 (a box of positive size, corners in order)")
