"""Training-step throughput of the PGN reconstructor, and where a step's time goes.

    python -m bench.train_step [--device cpu|cuda] [--batch-size 64] [--size 224]
        [--backbone resnet18] [--width 1.0] [--pose-mode pgn|regress] [--amp]
        [--steps N] [--warmup N] [--threads N] [--set KEY=VALUE ...] [--output FILE.json|FILE.md]

Builds the real training pieces (pgnface.train.Trainer: the network, the
3DMM, AdamW, the schedule, the AMP scaler, TrainBatches) with the default
TrainConfig changed only by the options above, and reports:

1. **Throughput**: images/s of `Trainer.train_step` (forward, losses with the
   rendering, backward, gradient clipping, AdamW), median over --steps steps
   after --warmup. Making the batch (synthetic faces rendered on the fly by
   `TrainBatches`) is timed separately and excluded from the step.
2. **Phase split** of one step, timed at the boundaries (the device is
   synchronized at each one): the CNN (backbone + landmark and coefficient
   heads) forward; the geometry forward (pose solve by `similarity_align`,
   `synthesize`); the losses forward (rendering: normals, shading,
   `rasterize`, `interpolate`, visibility; the loss math); the backward of the
   losses and geometry down to the heads' outputs; the CNN backward; the
   optimizer. The step runs as `train_step` does, only with the autograd graph
   cut at the heads' outputs so that the two backward parts can be timed apart
   (the gradients are the same).
3. **Op split** of one `train_step` under torch.profiler: the time of every
   pgnface op by its profiler keys (`pgnface::<op>` and its autograd wrapper
   forward; the `GeneratedBackwardFor_pgnface_<op>` autograd node with
   `pgnface::<op>_backward` backward), against everything else. CPU time on a
   CPU, device (kernel) time on a GPU; % of the profiled step.

Target: on a GPU, geometry and rendering (phase split: geometry
forward + losses forward + their backward) under 10% of the step.
"""

import argparse
import re
import statistics
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Dict, List, Optional

import torch
from torch.profiler import ProfilerActivity, profile, record_function

from bench.common import (
    device_description,
    environment,
    format_table,
    resolve_device,
    synchronize,
    write_json,
)
from pgnface import ops
from pgnface.train import TrainConfig, Trainer, apply_overrides, compute_losses

TARGET_PCT = 10.0  # geometry + rendering share of a GPU step, at most

# (key, label) of the phase split, in step order.
PHASES = [
    ("network_forward", "CNN forward (backbone + heads)"),
    ("geometry_forward", "geometry forward (similarity_align, synthesize)"),
    ("losses_forward", "losses forward (rendering + loss math)"),
    ("geometry_backward", "losses + geometry backward"),
    ("network_backward", "CNN backward"),
    ("optimizer", "optimizer (clip + AdamW)"),
]
GEOMETRY_PHASES = ("geometry_forward", "losses_forward", "geometry_backward")

# A profiler key of a pgnface op: pgnface::<op>, pgnface::<op>_backward, and the autograd
# wrappers GeneratedBackwardFor_pgnface_<op>_default (forward) / ..._defaultBackward (backward).
_OP_KEY = re.compile(r"pgnface(?:::|_)(\w+?)(?:_backward|_default\w*)?$")
STEP_KEY = "bench::train_step"


def build_config(
    batch_size: int = 64,
    size: int = 224,
    backbone: str = "resnet18",
    width: float = 1.0,
    pose_mode: str = "pgn",
    amp: bool = False,
    device: str = "cpu",
    threads: int = 0,
    overrides: Optional[List[str]] = None,
) -> TrainConfig:
    """The default TrainConfig with the benchmark's options (and key=value overrides) applied."""
    cfg = apply_overrides(
        TrainConfig(),
        [
            f"batch_size={batch_size}",
            f"data.size={size}",
            f"net.backbone={backbone}",
            f"net.width={width}",
            f"net.pose_mode={pose_mode}",
            f"amp={amp}",
            f"device={device}",
            f"threads={threads}",
            "log_every=1000000",
            "checkpoint_every=1000000",
        ]
        + list(overrides or []),
    )
    cfg.validate()
    return cfg


def _timed(fn, device: torch.device):
    """(result of fn(), seconds) with the device synchronized before and after."""
    synchronize(device)
    t0 = time.perf_counter()
    result = fn()
    synchronize(device)
    return result, time.perf_counter() - t0


def phase_split(trainer: Trainer, batch: Dict) -> Dict[str, float]:
    """Runs one training step as Trainer.train_step does and returns each phase's seconds (PHASES keys)
    plus "step" (the whole step; the phases are consecutive intervals inside it).

    The network's geometry method is wrapped for the step: it marks the end of the CNN
    forward and makes the heads' outputs leaves, so the backward of the losses and the
    geometry (down to those leaves) and the CNN's backward (from their gradients) are two
    separate, timed calls. The gradients equal those of one backward call.
    """
    cfg, net, device = trainer.config, trainer.net, trainer.device
    marks = [("start", 0.0)]
    cut = {}

    def mark(name):
        synchronize(device)
        marks.append((name, time.perf_counter()))

    geometry = net.geometry

    def cut_geometry(landmarks, heads, size, landmark_weights=None):
        mark("network_forward")
        leaves = {k: v.detach().requires_grad_(v.requires_grad) for k, v in heads.items()}
        leaves["landmarks"] = landmarks.detach().requires_grad_(landmarks.requires_grad)
        cut["pairs"] = [(o, leaves[k]) for k, o in [*heads.items(), ("landmarks", landmarks)] if o.requires_grad]
        out = geometry(leaves["landmarks"], {k: leaves[k] for k in heads}, size, landmark_weights)
        out["landmarks"] = leaves["landmarks"]  # forward's dict gets the leaf, not the head's tensor
        mark("geometry_forward")
        return out

    net.geometry = cut_geometry  # an instance attribute shadows the method for this step only
    try:
        net.train()
        images = batch["image"]
        if cfg.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        synchronize(device)
        marks[0] = ("start", time.perf_counter())
        with torch.autocast(device.type, dtype=trainer.amp_dtype, enabled=cfg.amp):
            out = net(images)
        total, _ = compute_losses(out, batch, trainer.morphable, cfg.loss)
        mark("losses_forward")
        trainer.optimizer.zero_grad(set_to_none=True)
        outputs, leaves = zip(*cut["pairs"])
        grads = torch.autograd.grad(trainer.scaler.scale(total), leaves, allow_unused=True)
        mark("geometry_backward")
        used = [(o, g) for o, g in zip(outputs, grads) if g is not None]
        torch.autograd.backward([o for o, _ in used], [g for _, g in used])
        mark("network_backward")
        trainer.scaler.unscale_(trainer.optimizer)
        torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip if cfg.grad_clip > 0 else float("inf"))
        trainer.scaler.step(trainer.optimizer)
        trainer.scaler.update()
        trainer.scheduler.step()
        float(total.detach())  # train_step reads the loss too
        mark("optimizer")
    finally:
        del net.geometry
    seconds = {name: t - marks[i][1] for i, (name, t) in enumerate(marks[1:])}
    seconds["step"] = marks[-1][1] - marks[0][1]
    return seconds


def _op_of(name: str) -> Optional[str]:
    m = _OP_KEY.search(name)
    return m.group(1) if m else None


def _is_forward_key(name: str, op: str) -> bool:
    return name == f"pgnface::{op}" or name.endswith(f"pgnface_{op}_default")


def op_split(trainer: Trainer, batch: Dict) -> Dict[str, object]:
    """Profiles one Trainer.train_step; returns the step's microseconds and each pgnface op's
    forward and backward microseconds (outermost pgnface events only, so nested keys such as
    pgnface::synthesize inside its autograd wrapper count once)."""
    device = trainer.device
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    synchronize(device)
    with profile(activities=activities) as prof:
        with record_function(STEP_KEY):
            trainer.train_step(batch)
            synchronize(device)
    on_gpu = device.type == "cuda"
    step_us, ops_us, keys = None, {}, {}
    for event in prof.events():
        if event.device_type != torch.autograd.DeviceType.CPU:
            continue
        if event.name == STEP_KEY:
            step_us = event.cpu_time_total  # wall time of the step (synchronized at its end)
            continue
        op = _op_of(event.name)
        if op is None:
            continue
        parent, nested = event.cpu_parent, False
        while parent is not None and not nested:
            nested = _op_of(parent.name) is not None
            parent = parent.cpu_parent
        if nested:
            continue
        direction = "forward" if _is_forward_key(event.name, op) else "backward"
        entry = ops_us.setdefault(op, {"forward": 0.0, "backward": 0.0, "forward_calls": 0, "backward_calls": 0})
        entry[direction] += event.device_time_total if on_gpu else event.cpu_time_total
        entry[direction + "_calls"] += 1
        keys.setdefault(op, set()).add(event.name)
    if step_us is None:
        raise RuntimeError(f"the profiler recorded no {STEP_KEY!r} event")
    return {
        "step_us": float(step_us),
        "ops_us": ops_us,
        "keys": {k: sorted(v) for k, v in keys.items()},
        "time": "device (kernel) time" if on_gpu else "CPU time",
    }


def measure(config: TrainConfig, steps: int = 3, warmup: int = 2) -> Dict[str, object]:
    """Runs the benchmark for one TrainConfig (device, threads and all taken from it); returns the results
    (times in ms; see the module docstring for what each part is)."""
    if steps < 1 or warmup < 0:
        raise ValueError(f"steps must be >= 1 and warmup >= 0, got steps={steps}, warmup={warmup}")
    B = config.batch_size
    with tempfile.TemporaryDirectory() as out_dir:
        trainer = Trainer(config, out_dir, progress=False)
        try:
            device = trainer.device
            data_s, step_s, images = [], [], []
            for i in range(warmup + steps):
                batch, seconds = _timed(lambda i=i: trainer.batches.batch(i, B), device)
                _, step_seconds = _timed(lambda batch=batch: trainer.train_step(batch), device)
                if i >= warmup:
                    data_s.append(seconds)
                    step_s.append(step_seconds)
                    images.append(batch["image"].shape[0])  # B (clip steps: whole clips only)
            batch = trainer.batches.batch(warmup + steps, B)
            phases = phase_split(trainer, batch)
            profiled = op_split(trainer, batch)
        finally:
            trainer.close()
    n = statistics.median(images)
    step_ms, data_ms = statistics.median(step_s) * 1e3, statistics.median(data_s) * 1e3
    phase_ms = phases["step"] * 1e3
    phase_rows = [
        {"part": label, "key": key, "ms": phases[key] * 1e3, "pct": 100.0 * phases[key] / phases["step"]}
        for key, label in PHASES
    ]
    geometry_pct = sum(r["pct"] for r in phase_rows if r["key"] in GEOMETRY_PHASES)
    prof_ms = profiled["step_us"] / 1e3
    op_rows = []
    for op, entry in sorted(profiled["ops_us"].items()):
        for direction in ("forward", "backward"):
            if entry[direction + "_calls"]:
                ms = entry[direction] / 1e3
                op_rows.append(
                    {
                        "op": op,
                        "pass": direction,
                        "calls": entry[direction + "_calls"],
                        "ms": ms,
                        "pct": 100.0 * ms / prof_ms,
                    }
                )
    ops_ms = sum(r["ms"] for r in op_rows)
    return {
        "benchmark": "train_step",
        "device": device_description(device),
        "env": environment(),
        "config": {
            "batch_size": B,
            "images_per_step": n,
            "size": config.data.size,
            **{k: asdict(config.net)[k] for k in ("backbone", "width", "pose_mode", "landmark_mode")},
            "amp": config.amp,
            "threads": torch.get_num_threads(),
            "steps": steps,
            "warmup": warmup,
        },
        "step_ms": step_ms,
        "images_per_s": n / (step_ms / 1e3),
        "step_ms_all": [s * 1e3 for s in step_s],
        "data_ms": data_ms,
        "data_images_per_s": n / (data_ms / 1e3),
        "images_per_s_with_data": n / ((step_ms + data_ms) / 1e3),
        "phase_step_ms": phase_ms,
        "phases": phase_rows,
        "geometry_rendering_pct": geometry_pct,
        "profiled_step_ms": prof_ms,
        "profiler_time": profiled["time"],
        "ops": op_rows,
        "pgnface_ops_ms": ops_ms,
        "pgnface_ops_pct": 100.0 * ops_ms / prof_ms,
        "other_ms": prof_ms - ops_ms,
        "other_pct": 100.0 * (prof_ms - ops_ms) / prof_ms,
        "op_keys": profiled["keys"],
        "target": {
            "what": f"geometry + rendering < {TARGET_PCT:g}% of a GPU step",
            "pct": geometry_pct,
            "applies": device.type == "cuda",
            "met": (geometry_pct < TARGET_PCT) if device.type == "cuda" else None,
        },
    }


def report(r: Dict[str, object]) -> str:
    """The printed result: throughput, phase split, op split, target."""
    c = r["config"]
    head = (
        f"training-step benchmark on {r['device']}, torch {r['env']['torch']}: {c['backbone']} "
        f"x{c['width']:g}, {c['landmark_mode']} landmarks, pose {c['pose_mode']}, "
        f"B = {c['batch_size']}, {c['size']} x {c['size']}, amp {'on' if c['amp'] else 'off'}, "
        f"median of {c['steps']} steps after {c['warmup']} warm-up"
    )
    lines = [
        head,
        "",
        format_table(
            [
                {"": "train step (data excluded)", "ms": r["step_ms"], "images/s": r["images_per_s"]},
                {"": "data: synthetic rendering of the batch", "ms": r["data_ms"], "images/s": r["data_images_per_s"]},
                {"": "step + data", "ms": r["step_ms"] + r["data_ms"], "images/s": r["images_per_s_with_data"]},
            ],
            ["", "ms", "images/s"],
        ),
        "",
        f"phase split of one step ({r['phase_step_ms']:.1f} ms, synchronized at each boundary):",
        format_table([{"part": p["part"], "ms": p["ms"], "%": p["pct"]} for p in r["phases"]], ["part", "ms", "%"]),
        "",
        f"pgnface ops in one profiled train_step ({r['profiled_step_ms']:.1f} ms; "
        f"{r['profiler_time']}, outermost profiler keys):",
        format_table(
            [{"op": o["op"], "pass": o["pass"], "calls": o["calls"], "ms": o["ms"], "%": o["pct"]} for o in r["ops"]]
            + [
                {
                    "op": "all pgnface ops",
                    "pass": "",
                    "calls": "",
                    "ms": r["pgnface_ops_ms"],
                    "%": r["pgnface_ops_pct"],
                },
                {"op": "everything else", "pass": "", "calls": "", "ms": r["other_ms"], "%": r["other_pct"]},
            ],
            ["op", "pass", "calls", "ms", "%"],
        ),
        "",
    ]
    t = r["target"]
    verdict = ("MET" if t["met"] else "NOT MET") if t["applies"] else "not applicable on a CPU (GPU target)"
    lines.append(f"target: {t['what']}: geometry + rendering = {t['pct']:.1f}% of this step: {verdict}")
    return "\n".join(lines)


def markdown(r: Dict[str, object]) -> str:
    """The result as a markdown section (for --output FILE.md)."""
    c = r["config"]
    out = [
        f"### Training step: {c['backbone']} x{c['width']:g}, B = {c['batch_size']}, "
        f"{c['size']} x {c['size']}, {r['device']}",
        "",
        "| | ms | images/s |",
        "|---|---:|---:|",
        f"| train step (data excluded) | {r['step_ms']:.1f} | {r['images_per_s']:.1f} |",
        f"| data: synthetic rendering of the batch | {r['data_ms']:.1f} | {r['data_images_per_s']:.1f} |",
        "",
        "| phase of one step | ms | % |",
        "|---|---:|---:|",
    ]
    out += [f"| {p['part']} | {p['ms']:.1f} | {p['pct']:.1f} |" for p in r["phases"]]
    out += ["", f"| pgnface op ({r['profiler_time']}) | pass | calls | ms | % |", "|---|---|---:|---:|---:|"]
    out += [f"| {o['op']} | {o['pass']} | {o['calls']} | {o['ms']:.2f} | {o['pct']:.2f} |" for o in r["ops"]]
    out += [
        f"| all pgnface ops | | | {r['pgnface_ops_ms']:.1f} | {r['pgnface_ops_pct']:.1f} |",
        f"| everything else | | | {r['other_ms']:.1f} | {r['other_pct']:.1f} |",
        "",
    ]
    t = r["target"]
    verdict = ("met" if t["met"] else "not met") if t["applies"] else "not applicable on a CPU"
    out.append(f"Target: {t['what']}: {t['pct']:.1f}%, {verdict}.")
    return "\n".join(out) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--device",
        default="cuda" if torch.cuda.is_available() else "cpu",
        help="cpu or cuda (default: cuda when available)",
    )
    parser.add_argument("--batch-size", type=int, default=64, help="images per step (default 64)")
    parser.add_argument("--size", type=int, default=224, help="crop size in pixels (default 224)")
    parser.add_argument("--backbone", default="resnet18", help="resnet18, resnet34 or mobilenetv2")
    parser.add_argument("--width", type=float, default=1.0, help="backbone channel multiplier (default 1)")
    parser.add_argument("--pose-mode", default="pgn", choices=["pgn", "regress"])
    parser.add_argument("--amp", action="store_true", help="mixed precision (bfloat16 on CPU, float16 on CUDA)")
    parser.add_argument("--steps", type=int, default=None, help="measured steps (default: 3 on CPU, 20 on CUDA)")
    parser.add_argument("--warmup", type=int, default=None, help="warm-up steps (default: 2 on CPU, 5 on CUDA)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's default)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any other TrainConfig override, e.g. data.clip_weight=1 (repeatable)",
    )
    parser.add_argument(
        "--output", "--json", default=None, help="also write the results: markdown if FILE ends in .md, JSON otherwise"
    )
    args = parser.parse_args(argv)
    device = resolve_device(args.device, ops.cuda_built())
    config = build_config(
        args.batch_size,
        args.size,
        args.backbone,
        args.width,
        args.pose_mode,
        args.amp,
        str(device),
        args.threads,
        args.overrides,
    )
    gpu = device.type == "cuda"
    steps = args.steps if args.steps is not None else (20 if gpu else 3)
    warmup = args.warmup if args.warmup is not None else (5 if gpu else 2)
    result = measure(config, steps=steps, warmup=warmup)
    print(report(result), flush=True)
    if args.output and args.output.endswith(".md"):
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(markdown(result))
    else:
        write_json(args.output, result)


if __name__ == "__main__":
    main()
