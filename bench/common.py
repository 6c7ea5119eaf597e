"""Timing and table helpers shared by the benchmark scripts.

Every benchmark measures pgnface and its baseline in the same run, on the same
inputs, and prints their ratio. Absolute times only mean something on a GPU;
on a shared CPU compare the ratios.
"""

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

import torch

# Peak DRAM bandwidth (GB/s) of common GPUs, by a substring of the device name;
# used when torch does not report the memory clock and bus width.
KNOWN_PEAK_GBPS = {
    "H200": 4800.0,
    "H100 PCIe": 2000.0,
    "H100": 3350.0,
    "A100": 2039.0,
    "L40S": 864.0,
    "L4": 300.0,
    "A10": 600.0,
    "RTX 4090": 1008.0,
    "V100": 900.0,
}


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(
    fn: Callable[[], object],
    device: torch.device,
    *,
    min_time: float = 0.2,
    min_repeat: int = 3,
    max_repeat: int = 200,
    warmup: int = 1,
) -> float:
    """Median seconds per call of fn, after warm-up; runs until min_time or max_repeat."""
    for _ in range(warmup):
        fn()
    synchronize(device)
    times: List[float] = []
    start_all = time.perf_counter()
    while len(times) < max_repeat and (len(times) < min_repeat or time.perf_counter() - start_all < min_time):
        if device.type == "cuda":
            begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            begin.record()
            fn()
            end.record()
            end.synchronize()
            times.append(begin.elapsed_time(end) / 1000.0)
        else:
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def min_times_alternating(fns: List[Callable[[], object]], device: torch.device, rounds: int) -> List[float]:
    """Minimum seconds per call of each of fns, the functions alternating call by call.

    One warm-up call each, then `rounds` rounds of one call per function: load from other
    processes then inflates no side more than another, and the ratio of the minima is the
    comparison to report on a shared machine.
    """
    for fn in fns:
        fn()
    synchronize(device)
    best = [float("inf")] * len(fns)
    for _ in range(rounds):
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            fn()
            synchronize(device)
            best[i] = min(best[i], time.perf_counter() - t0)
    return best


def peak_bandwidth_gbps(device: torch.device) -> Optional[float]:
    """The device's peak memory bandwidth in GB/s, or None when unknown (e.g. CPU)."""
    if device.type != "cuda":
        return None
    props = torch.cuda.get_device_properties(device)
    clock_khz = getattr(props, "memory_clock_rate", 0)
    bus_bits = getattr(props, "memory_bus_width", 0)
    if clock_khz and bus_bits:
        return 2.0 * clock_khz * 1e3 * bus_bits / 8 / 1e9  # double data rate
    for key, value in KNOWN_PEAK_GBPS.items():
        if key in props.name:
            return value
    return None


def device_description(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda})"
    return f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"


def environment() -> Dict[str, str]:
    return {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d"),
        "host": platform.node(),
    }


def format_table(rows: List[Dict[str, object]], columns: List[str]) -> str:
    """Plain-text table of rows (dicts) with the given columns, right-aligned numbers."""

    def fmt(value):
        if isinstance(value, float):
            return f"{value:.3f}" if abs(value) < 1000 else f"{value:.0f}"
        return str(value)

    cells = [[fmt(row.get(c, "")) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) if cells else len(c) for i, c in enumerate(columns)]
    lines = ["  ".join(c.rjust(w) for c, w in zip(columns, widths)), "  ".join("-" * w for w in widths)]
    lines += ["  ".join(v.rjust(w) for v, w in zip(r, widths)) for r in cells]
    return "\n".join(lines)


def write_json(path: Optional[str], payload: Dict[str, object]) -> None:
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(payload, indent=2))


def add_ops_argument(parser: argparse.ArgumentParser, names) -> None:
    """Adds ``--ops``: a comma-separated subset of `names` (default: all)."""
    parser.add_argument("--ops", default=",".join(names), help="comma-separated subset of: " + ", ".join(names))


def chosen_ops(parser: argparse.ArgumentParser, value: str, names) -> List[str]:
    """The ops an ``--ops`` value names, in its order; a usage error (exit code 2) for others."""
    wanted = [op.strip() for op in value.split(",") if op.strip()]
    unknown = sorted(set(wanted) - set(names))
    if unknown:
        parser.error(f"--ops must name ops among {sorted(names)}, got {unknown}")
    return wanted


def device_parser(description: str):
    """An argparse parser with the options every benchmark shares: --device, --dtype, --json."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--device",
        default="cuda" if torch.cuda.is_available() else "cpu",
        help="cpu or cuda (default: cuda when available)",
    )
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    return parser


def resolve_device(name: str, cuda_built: bool) -> torch.device:
    """The torch.device for --device; exits with a message when CUDA cannot run."""
    device = torch.device(name)
    if device.type == "cuda" and not (torch.cuda.is_available() and cuda_built):
        sys.exit("--device cuda needs a GPU and a CUDA build of pgnface")
    return device
