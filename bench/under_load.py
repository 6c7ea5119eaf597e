"""Two threads while another process keeps a core busy: does the second thread still pay?

    python -m bench.under_load [--spinners 1] [--calls 60] [--pool] [--ops rasterize,...] [--json FILE]

Starts ``--spinners`` processes that spin on the CPU for as long as the benchmark runs, then
times ``--calls`` calls of each case at one thread and at two, alternating call by call
(``torch.set_num_threads``), and reports the median, the 95th percentile and the slowest call of
each thread count. Cases: rasterize + interpolate of one BFM image and of 16 (224², the
rasterizer's cases), and the forward cases of ``bench.threads`` for the other ops.

On a 2-core machine one spinner leaves the op one core's worth of time and the scheduler shares
the other between the spinner and the op's second thread. A parallel loop that waits at its end
for a thread the scheduler has not run yet (torch's OpenMP threads, the default) then takes a
time slice longer than the whole call (milliseconds where the call takes one); ``--pool`` runs
the ops on pgnface's thread pool (``pgnface.ops.use_cpu_thread_pool``), which hands pieces only
to threads that are running and keeps the slowest call near one thread's time.
"""

import argparse
import os
import statistics
import subprocess
import sys
import time
from contextlib import contextmanager
from typing import Callable, Dict, Iterator, List, Optional, Tuple

import torch

import pgnface.ops as ops
from bench.common import add_ops_argument, chosen_ops, format_table, write_json
from bench.peers import machine_description
from bench.rasterize import frontal_clip, load_mesh
from bench.threads import MAKERS, times_by_threads

Case = Tuple[str, str, Callable[[], object]]


def raster_cases() -> List[Case]:
    verts, tris, source = load_mesh()
    size = 224
    colours = torch.rand(verts.shape[0], 3, generator=torch.Generator().manual_seed(2))
    cases = []
    for B in (1, 16):
        pos = frontal_clip(verts, size, B, torch.device("cpu"))
        cases.append(
            (
                "rasterize + interpolate",
                f"{source}, {size}², B = {B}",
                lambda p=pos: ops.interpolate(colours, ops.rasterize(p, tris, (size, size)), tris),
            )
        )
    return cases


def other_cases(op: str) -> List[Case]:
    return [case for case in MAKERS[op](False) if "bwd" not in case[0]]


CASES = dict(
    rasterize=raster_cases,
    synthesize=lambda: other_cases("synthesize"),
    svd3x3=lambda: other_cases("svd3x3"),
    similarity_align=lambda: other_cases("similarity_align"),
)


@contextmanager
def spinning(count: int) -> Iterator[None]:
    """Runs `count` processes that spin on the CPU until the block ends."""
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]
    try:
        time.sleep(0.5)  # let the scheduler place them
        yield
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait()


def summary(times: List[float]) -> Tuple[float, float, float]:
    """(median, 95th percentile, maximum) in milliseconds."""
    ms = sorted(t * 1e3 for t in times)
    return statistics.median(ms), ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))], ms[-1]


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spinners", type=int, default=1, help="busy processes to run alongside (default: 1)")
    parser.add_argument("--calls", type=int, default=60, help="timed calls per thread count and case (default: 60)")
    parser.add_argument("--pool", action="store_true", help="run the ops on pgnface's thread pool")
    add_ops_argument(parser, CASES)
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    wanted = chosen_ops(parser, args.ops, CASES)
    if args.spinners < 0 or args.calls < 1:
        parser.error("--spinners must be >= 0 and --calls >= 1")
    machine = machine_description()
    pool_before = ops.use_cpu_thread_pool(args.pool)
    threads = "pgnface's pool" if args.pool else "torch's threads"
    print(f"machine: {machine}; {args.spinners} spinning process(es); {threads}")
    rows: List[Dict[str, object]] = []
    threads_before = torch.get_num_threads()
    with spinning(args.spinners), torch.no_grad():
        machine["load_average_during"] = [round(x, 2) for x in os.getloadavg()]
        for op in wanted:
            for name, case, fn in CASES[op]():
                times = times_by_threads(fn, [1, 2], args.calls)
                row: Dict[str, object] = {"op": name, "case": case}
                for n in (1, 2):
                    median, p95, slowest = summary(times[n])
                    row[f"{n}t median ms"] = median
                    row[f"{n}t p95 ms"] = p95
                    row[f"{n}t max ms"] = slowest
                rows.append(row)
                print(format_table([row], list(row)).splitlines()[-1], flush=True)
    torch.set_num_threads(threads_before)
    ops.use_cpu_thread_pool(pool_before)
    print()
    print(format_table(rows, list(rows[0]) if rows else []))
    write_json(
        args.json,
        dict(benchmark="under_load", spinners=args.spinners, pool=args.pool, machine=machine, rows=rows),
    )


if __name__ == "__main__":
    main()
