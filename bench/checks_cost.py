"""What the default value checks (``check_values=True``) cost each op, against ``check_values=False``.

    python -m bench.checks_cost [--device cpu|cuda] [--threads N] [--rounds N] [--quick] [--json FILE]

The checks are fused into the kernels (csrc/common/status.h): each forward op
tests the values it reads and fills a status word, which the op then acts on
(CPU: raise; CUDA: an asynchronous device-side assertion, no host sync). Both
settings run on the same inputs in the same process, alternating call by call
after a warm-up; the table gives the minimum time of each and their ratio
(on / off), the budget being 1.10 (10 %). Cases follow the other benchmarks:
synthesize on a BFM-sized model, rasterize and interpolate of the BFM mesh at
224 x 224 (a generated mesh of the same size without the shared data), svd3x3
and similarity_align (P = 68) at B = 4096 and 65536.
"""

import time
from functools import partial
from typing import Callable, Dict, List, Tuple

import torch

import pgnface.ops as ops
from bench.common import (
    device_description,
    device_parser,
    environment,
    format_table,
    resolve_device,
    synchronize,
    write_json,
)
from bench.peers import align_inputs
from bench.rasterize import frontal_clip, load_mesh
from bench.synthesize import make_inputs

# (op, case, call with check_values) per row.
Case = Tuple[str, str, Callable[[bool], object]]


def min_time_alternating(
    on: Callable[[], object], off: Callable[[], object], device, rounds: int
) -> Tuple[float, float]:
    """Minimum seconds per call of each setting, alternating call by call after one warm-up each."""
    on()
    off()
    synchronize(device)
    best = [float("inf"), float("inf")]
    for _ in range(rounds):
        for side, fn in enumerate((on, off)):
            t0 = time.perf_counter()
            fn()
            synchronize(device)
            best[side] = min(best[side], time.perf_counter() - t0)
    return best[0], best[1]


def cases(device, dtype, quick: bool) -> List[Case]:
    out: List[Case] = []
    args = make_inputs(35709, 199, 8, device, dtype)  # BFM-sized: 35709 vertices, 199 components
    out.append(("synthesize", "B=8 N=35709 K=199", lambda check: ops.synthesize(**args, check_values=check)))

    verts, tris, _ = load_mesh()
    pos = frontal_clip(verts, 224, 8, device, dtype)
    tris = tris.to(device)
    colours = torch.rand(pos.shape[1], 3, device=device, dtype=dtype)
    frag = ops.rasterize(pos, tris, 224)
    out.append(
        ("rasterize", f"B=8 224x224 T={tris.shape[0]}", lambda check: ops.rasterize(pos, tris, 224, check_values=check))
    )
    out.append(
        ("interpolate", "B=8 224x224 C=3", lambda check: ops.interpolate(colours, frag, tris, check_values=check))
    )

    for B in [4096] if quick else [4096, 65536]:
        g = torch.Generator().manual_seed(B)
        M = torch.randn(B, 3, 3, generator=g).to(device=device, dtype=dtype)
        out.append(("svd3x3", f"B={B}", lambda check, M=M: ops.svd3x3(M, check_values=check)))
        src, dst = (x.to(device=device, dtype=dtype) for x in align_inputs(B))
        w = torch.rand(B, 68, generator=g).to(device=device, dtype=dtype)
        out.append(
            (
                "similarity_align",
                f"B={B} P=68",
                lambda check, s=src, d=dst: ops.similarity_align(s, d, check_values=check),
            )
        )
        out.append(
            (
                "similarity_align",
                f"B={B} P=68 weighted",
                lambda check, s=src, d=dst, w=w: ops.similarity_align(s, d, w, check_values=check),
            )
        )
    return out


def main(argv=None) -> None:
    parser = device_parser(__doc__)
    parser.add_argument("--rounds", type=int, default=30, help="alternating calls per setting")
    parser.add_argument("--quick", action="store_true", help="leave out B = 65536")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device, ops.cuda_built())
    dtype = getattr(torch, args.dtype)
    rows: List[Dict[str, object]] = []
    with torch.no_grad():
        for op, case, call in cases(device, dtype, args.quick):
            on, off = min_time_alternating(partial(call, True), partial(call, False), device, args.rounds)
            rows.append(dict(op=op, case=case, on_ms=on * 1e3, off_ms=off * 1e3, ratio=on / off))
    header = f"checks_cost on {device_description(device)}, {args.dtype}, torch {torch.__version__}"
    print(header)
    print(format_table(rows, ["op", "case", "on_ms", "off_ms", "ratio"]))
    write_json(args.json, dict(header=header, environment=environment(), rounds=args.rounds, rows=rows))


if __name__ == "__main__":
    main()
