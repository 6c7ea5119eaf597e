"""pgnface's CPU ops side by side with their peers, in one process.

    python -m bench.peers [--threads 1,2] [--rounds 9] [--quick] [--ops rasterize,...] [--out bench/results]

Peers (each skipped with a message when it is not importable):
- svd3x3: ``torch.linalg.svd``;
- similarity_align: roma's ``rigid_points_registration(compute_scaling=True)`` (``pip install roma``);
- rasterize + interpolate: Sim3DR, 3DDFA_V2's CPU colour rasterizer (build it with the script that
  ships with it and put the folder on ``PYTHONPATH``); it has no barycentrics and no gradients, so
  pgnface's forward + backward is set against Sim3DR's forward;
- synthesize: the best plain-torch formulation, one ``addmm`` over the flattened basis followed by a
  batched ``baddbmm`` for the pose.

Every op runs with its default arguments (``check_values=True``). The two sides alternate round by
round on the same inputs and the table reports each side's minimum and the ratio of the minima,
so that load from other processes inflates neither side more than the other. Single-item cases
(a few microseconds a call) time 200 calls per round and report the time per call.
"""

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import torch

import pgnface.ops as ops
from bench.rasterize import frontal_clip, load_mesh
from bench.synthesize import forward_backward, make_inputs, synthesize_matmul

Case = Tuple[str, str, Callable[[], object], str, Callable[[], object]]


def min_time_alternating(
    ours: Callable[[], object], peer: Callable[[], object], rounds: int, repeat: int = 1
) -> Tuple[float, float]:
    """Minimum seconds per call of each side, the sides alternating after one warm-up each.

    Each round times `repeat` calls of one side, then of the other; calls of a few microseconds
    need a run of them to rise above the timer's and the scheduler's noise.
    """
    ours()
    peer()
    best = [float("inf"), float("inf")]
    for _ in range(rounds):
        for side, fn in enumerate((ours, peer)):
            t0 = time.perf_counter()
            for _ in range(repeat):
                fn()
            best[side] = min(best[side], (time.perf_counter() - t0) / repeat)
    return best[0], best[1]


def calls_per_round(case: str) -> int:
    """Calls timed together per round: many for single-item cases (microseconds each), else one."""
    return 200 if case == "B = 1" or case.startswith("B = 1,") else 1


def backward_of(fn: Callable[..., torch.Tensor], *inputs: torch.Tensor) -> Callable[[], None]:
    """A call of fn on leaf copies of inputs followed by backward of the sum of its outputs."""
    leaves = [x.clone().requires_grad_(True) for x in inputs]

    def run():
        for leaf in leaves:
            leaf.grad = None
        out = fn(*leaves)
        out = out if isinstance(out, (tuple, list)) else (out,)
        sum(o.sum() for o in out).backward()

    return run


def svd_cases(quick: bool) -> List[Case]:
    cases = []
    for B in (1, 65_536 if not quick else 4_096):
        M = torch.randn(B, 3, 3, generator=torch.Generator().manual_seed(0))
        cases.append(
            (
                "svd3x3",
                f"B = {B:,}",
                lambda M=M: ops.svd3x3(M),
                "torch.linalg.svd",
                lambda M=M: torch.linalg.svd(M),
            )
        )
        cases.append(
            (
                "svd3x3 fwd+bwd",
                f"B = {B:,}",
                backward_of(ops.svd3x3, M),
                "torch.linalg.svd",
                backward_of(torch.linalg.svd, M),
            )
        )
    return cases


def align_inputs(B: int, P: int = 68) -> Tuple[torch.Tensor, torch.Tensor]:
    """src [B,P,3] and dst = 1.5 R src + t + noise, a well-posed similarity per item."""
    g = torch.Generator().manual_seed(1)
    src = torch.randn(B, P, 3, generator=g)
    R = torch.linalg.qr(torch.randn(B, 3, 3, generator=g))[0]
    dst = 1.5 * src @ R.mT + torch.randn(B, 1, 3, generator=g) + 0.01 * torch.randn(src.shape, generator=g)
    return src, dst


def align_cases(quick: bool) -> List[Case]:
    try:
        import roma
    except ImportError:
        print("similarity_align: roma is not importable (pip install roma); skipped")
        return []
    ours = ops.similarity_align

    def peer(s, d):
        R, t, scale = roma.rigid_points_registration(s, d, compute_scaling=True)
        return R, t, scale

    cases = []
    for B in (1, 4_096 if not quick else 512):
        src, dst = align_inputs(B)
        case = f"B = {B:,}, P = 68"
        cases += [
            ("similarity_align", case, lambda s=src, d=dst: ours(s, d), "roma", lambda s=src, d=dst: peer(s, d)),
            ("similarity_align fwd+bwd", case, backward_of(ours, src, dst), "roma", backward_of(peer, src, dst)),
        ]
    return cases


def sim3dr_render(pos: torch.Tensor, tris: torch.Tensor, colours: torch.Tensor, size: int):
    """A Sim3DR call per image of pos [B,N,4] (clip space), drawing the same pixels pgnface does."""
    import Sim3DR_Cython

    ndc = pos[..., :3] / pos[..., 3:]
    pixels = torch.stack([(ndc[..., 0] + 1) * size / 2, (ndc[..., 1] + 1) * size / 2, -ndc[..., 2]], -1)
    vertices = [np.ascontiguousarray(p.numpy(), dtype=np.float32) for p in pixels]
    triangles = np.ascontiguousarray(tris.numpy(), dtype=np.int32)
    rgb = np.ascontiguousarray(colours.numpy(), dtype=np.float32)
    image = np.zeros((size, size, 3), np.uint8)
    depth = np.empty((size, size), np.float32)

    def run():
        for v in vertices:
            image.fill(0)
            depth.fill(-1e8)
            Sim3DR_Cython.rasterize(image, v, triangles, rgb, depth, len(triangles), size, size, 3, False)

    return run


def raster_cases(quick: bool) -> List[Case]:
    try:
        import Sim3DR_Cython  # noqa: F401
    except ImportError:
        print("rasterize: Sim3DR_Cython is not importable (build it and put it on PYTHONPATH); skipped")
        return []
    verts, tris, source = load_mesh()
    size = 224
    colours = torch.rand(verts.shape[0], 3, generator=torch.Generator().manual_seed(2))
    cases = []
    for B in (1, 16, 64) if not quick else (1,):
        pos = frontal_clip(verts, size, B, torch.device("cpu"))

        def render(p, c):
            return ops.interpolate(c, ops.rasterize(p, tris, (size, size)), tris)

        case = f"{source}, {size}², frontal, {B} image{'s' if B > 1 else ''}"
        peer = sim3dr_render(pos, tris, colours, size)
        cases.append(("rasterize + interpolate", case, lambda p=pos: render(p, colours), "Sim3DR", peer))
        if B == 1:
            cases.append(
                ("rasterize + interpolate fwd+bwd", case, backward_of(render, pos, colours), "Sim3DR fwd", peer)
            )
    return cases


def synthesize_cases(quick: bool) -> List[Case]:
    args = make_inputs(38_365, 50, 64 if not quick else 8, torch.device("cpu"), torch.float32)
    case = f"B = {args['coeffs'].shape[0]}, 38,365 x 50 (BFM 3DDFA)"
    grads = ("coeffs", "rotation", "scale", "translation")
    return [
        (
            "synthesize",
            case,
            lambda: ops.synthesize(**args),
            "matmul chain",
            lambda: synthesize_matmul(**args),
        ),
        (
            "synthesize fwd+bwd",
            case,
            forward_backward(ops.synthesize, dict(args), grads),
            "matmul chain",
            forward_backward(synthesize_matmul, {k: v.detach().clone() for k, v in args.items()}, grads),
        ),
    ]


def machine_description() -> Dict[str, object]:
    """CPU model, cores, load and software versions of this machine."""
    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return dict(
        cpu=model,
        cores=os.cpu_count(),
        gpu="none" if not torch.cuda.is_available() else torch.cuda.get_device_name(),
        load_average=[round(x, 2) for x in os.getloadavg()],
        torch=torch.__version__,
        python=platform.python_version(),
        date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    )


def run_cases(cases: List[Case], rounds: int) -> List[Dict[str, object]]:
    rows = []
    for op, case, ours, peer_name, peer in cases:
        with torch.no_grad() if "bwd" not in op else torch.enable_grad():
            t_ours, t_peer = min_time_alternating(ours, peer, rounds, calls_per_round(case))
        row = dict(op=op, case=case, pgnface_ms=t_ours * 1e3, peer=peer_name, peer_ms=t_peer * 1e3)
        row["ratio"] = t_peer / t_ours
        print(
            f"  {op:32s} {case:48s} {row['pgnface_ms']:9.3f} ms  {peer_name:18s} {row['peer_ms']:9.3f} ms"
            f"  {row['ratio']:6.2f}x",
            flush=True,
        )
        rows.append(row)
    return rows


def markdown_table(rows: List[Dict[str, object]]) -> str:
    lines = ["| op | case | pgnface | peer | ratio now |", "|---|---|---:|---:|---:|"]
    for r in rows:
        lines.append(
            f"| {r['op']} | {r['case']} | {r['pgnface_ms']:.3g} ms | {r['peer']} {r['peer_ms']:.3g} ms |"
            f" {r['ratio']:.2f}x |"
        )
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", default="1,2", help="comma-separated torch thread counts (default: 1,2)")
    parser.add_argument("--rounds", type=int, default=9, help="alternating calls per side (default: 9)")
    parser.add_argument("--quick", action="store_true", help="smaller batches, for a smoke test")
    parser.add_argument("--out", default=None, help="folder for the .md and .json results (default: print only)")
    parser.add_argument(
        "--ops",
        default="svd3x3,similarity_align,rasterize,synthesize",
        help="comma-separated ops to compare (default: all four)",
    )
    args = parser.parse_args(argv)
    machine = machine_description()
    print("machine:", json.dumps(machine))
    makers = dict(svd3x3=svd_cases, similarity_align=align_cases, rasterize=raster_cases, synthesize=synthesize_cases)
    wanted = [op.strip() for op in args.ops.split(",") if op.strip()]
    unknown = sorted(set(wanted) - set(makers))
    if unknown:
        parser.error(f"--ops must name ops among {sorted(makers)}, got {unknown}")
    cases = [case for op in wanted for case in makers[op](args.quick)]
    results = {}
    for threads in [int(t) for t in args.threads.split(",")]:
        torch.set_num_threads(threads)
        print(f"{threads} thread{'s' if threads > 1 else ''}:")
        results[threads] = run_cases(cases, args.rounds)
    machine["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    if args.out:
        subset = "" if len(wanted) == len(makers) else "_" + "-".join(wanted)
        stem = Path(args.out) / f"cpu_{time.strftime('%Y-%m-%d')}_peers{subset}"
        stem.parent.mkdir(parents=True, exist_ok=True)
        text = [
            f"# pgnface vs peers on the CPU, {machine['date']}",
            "",
            "Machine: " + json.dumps(machine),
            "",
            f"Each time is one side's minimum over {args.rounds} calls alternating with the other side's, in one "
            "process. "
            + (
                "Taken under load: other processes shared the cores during the run (load average above the core "
                "count), so absolute times are inflated, ratios less so."
                if max(machine["load_average"]) > (machine["cores"] or 1)
                else "The machine was otherwise idle (load average below the core count)."
            ),
            "",
        ]
        for threads, rows in results.items():
            text += [f"## {threads} thread{'s' if threads > 1 else ''}", "", markdown_table(rows), ""]
        stem.with_suffix(".md").write_text("\n".join(text))
        stem.with_suffix(".json").write_text(json.dumps(dict(machine=machine, results=results), indent=2))
        print("wrote", stem.with_suffix(".md"), "and", stem.with_suffix(".json"))
    for threads, rows in results.items():
        print(f"\n{threads} thread(s):\n" + markdown_table(rows))


if __name__ == "__main__":
    main()
