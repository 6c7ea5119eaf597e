"""Two threads against one: the CPU ops' parallel speed-up, measured in one process.

    python -m bench.threads [--threads 2] [--rounds 7] [--quick] [--ops synthesize,...] [--json FILE]

Every op runs with its default arguments at a batch of 16 or more: synthesize (BFM 3DDFA,
B = 64, and the full BFM, B = 16), svd3x3 (B = 65,536), similarity_align (B = 4,096, P = 68)
and rasterize + interpolate (BFM no-neck, 224², B = 16), forward and forward + backward.
The thread count alternates call by call (``torch.set_num_threads``) and the table reports
each count's minimum and their ratio, so that load from other processes inflates neither
more than the other. On a machine with as many cores as threads and nothing else running the
ideal ratio is the thread count; a loaded machine gives less, and says so in its load average.
"""

import argparse
import os
import time
from typing import Callable, Dict, List, Optional, Tuple

import torch

import pgnface.ops as ops
from bench.common import add_ops_argument, chosen_ops, format_table, write_json
from bench.peers import align_inputs, backward_of, machine_description
from bench.rasterize import frontal_clip, load_mesh
from bench.synthesize import forward_backward, make_inputs

Case = Tuple[str, str, Callable[[], object]]


def synthesize_cases(quick: bool) -> List[Case]:
    cases = []
    for name, N, K, B in [("BFM 3DDFA", 38_365, 50, 64), ("BFM full", 53_490, 228, 16)][: 1 if quick else 2]:
        args = make_inputs(N, K, B, torch.device("cpu"), torch.float32)
        case = f"B = {B}, {N:,} x {K} ({name})"
        grads = ("coeffs", "rotation", "scale", "translation")
        cases.append(("synthesize", case, lambda a=args: ops.synthesize(**a)))
        cases.append(("synthesize fwd+bwd", case, forward_backward(ops.synthesize, dict(args), grads)))
    return cases


def svd_cases(quick: bool) -> List[Case]:
    B = 4_096 if quick else 65_536
    M = torch.randn(B, 3, 3, generator=torch.Generator().manual_seed(0))
    return [
        ("svd3x3", f"B = {B:,}", lambda: ops.svd3x3(M)),
        ("svd3x3 fwd+bwd", f"B = {B:,}", backward_of(ops.svd3x3, M)),
    ]


def align_cases(quick: bool) -> List[Case]:
    src, dst = align_inputs(512 if quick else 4_096)
    case = f"B = {src.shape[0]:,}, P = 68"
    return [
        ("similarity_align", case, lambda: ops.similarity_align(src, dst)),
        ("similarity_align fwd+bwd", case, backward_of(ops.similarity_align, src, dst)),
    ]


def raster_cases(quick: bool) -> List[Case]:
    verts, tris, source = load_mesh()
    size, B = 224, 16
    pos = frontal_clip(verts, size, B, torch.device("cpu"))
    colours = torch.rand(verts.shape[0], 3, generator=torch.Generator().manual_seed(2))

    def render(p, c):
        return ops.interpolate(c, ops.rasterize(p, tris, (size, size)), tris)

    case = f"{source}, {size}², B = {B}"
    cases = [("rasterize + interpolate", case, lambda: render(pos, colours))]
    if not quick:
        cases.append(("rasterize + interpolate fwd+bwd", case, backward_of(render, pos, colours)))
    return cases


MAKERS = dict(synthesize=synthesize_cases, svd3x3=svd_cases, similarity_align=align_cases, rasterize=raster_cases)


def times_by_threads(fn: Callable[[], object], counts: List[int], calls: int) -> Dict[int, List[float]]:
    """Seconds of each call of fn, per thread count, the counts alternating call by call."""
    times: Dict[int, List[float]] = {n: [] for n in counts}
    for n in counts:
        torch.set_num_threads(n)
        fn()
    for _ in range(calls):
        for n in counts:
            torch.set_num_threads(n)
            t0 = time.perf_counter()
            fn()
            times[n].append(time.perf_counter() - t0)
    return times


def min_times_by_threads(fn: Callable[[], object], counts: List[int], rounds: int) -> List[float]:
    """Minimum seconds per call of fn at each thread count, the counts alternating call by call."""
    times = times_by_threads(fn, counts, rounds)
    return [min(times[n]) for n in counts]


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2, help="the thread count set against one (default: 2)")
    parser.add_argument("--rounds", type=int, default=7, help="alternating calls per thread count (default: 7)")
    parser.add_argument("--quick", action="store_true", help="smaller cases, for a smoke test")
    add_ops_argument(parser, MAKERS)
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    wanted = chosen_ops(parser, args.ops, MAKERS)
    machine = machine_description()
    print(f"machine: {machine}")
    counts = [1, args.threads]
    rows: List[Dict[str, object]] = []
    threads_before = torch.get_num_threads()
    for op in wanted:
        for name, case, fn in MAKERS[op](args.quick):
            with torch.no_grad() if "bwd" not in name else torch.enable_grad():
                one, many = min_times_by_threads(fn, counts, args.rounds)
            row = {"op": name, "case": case, "1 thread ms": one * 1e3, f"{args.threads} threads ms": many * 1e3}
            row["speedup"] = one / many
            rows.append(row)
            print(format_table([row], list(row)).splitlines()[-1], flush=True)
    torch.set_num_threads(threads_before)
    machine["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    print()
    print(format_table(rows, list(rows[0]) if rows else []))
    write_json(args.json, dict(benchmark="threads", machine=machine, rows=rows))


if __name__ == "__main__":
    main()
