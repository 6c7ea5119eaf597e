"""The pgnface command line.

pgnface render [-n N] [-o OUTDIR] [--morphable FILE] [--size PX] [--clips F] [--seed S] [--device DEV]
pgnface train [--config FILE] [--out DIR] [--steps N] [--batch-size B] [--resume] [key=value ...]
pgnface eval aflw2000 DIR [--checkpoint CKPT] [-o OUTDIR] [--reannotated FILE]
pgnface eval dense PRED GT [-o OUTDIR] [--crop-radius R]
pgnface eval synthetic [--checkpoint CKPT ...] [-n N] [--seed S] [--size S] [--yaw-max DEG] [-o OUTDIR]
pgnface reconstruct INPUT [--checkpoint CKPT] [-o OUTDIR] [--morphable FILE] [--boxes JSON] [--video|--images]
pgnface demo [-o OUTDIR] [--checkpoint CKPT] [--compare CKPT ...]
pgnface export-onnx [--checkpoint CKPT] [-o FILE.onnx] [--opset N]
"""

import argparse
import sys
import time
from pathlib import Path

import torch


def _render(args) -> int:
    from tqdm import tqdm

    from pgnface.data import SyntheticConfig, SyntheticFaces
    from pgnface.data.labelled_folder import write_300wlp
    from pgnface.io.overlays import contact_sheet, draw_landmarks, to_uint8_bgr
    from pgnface.morphable import MorphableModel

    try:
        morphable = MorphableModel.load(args.morphable) if args.morphable else MorphableModel.builtin()
    except (FileNotFoundError, ValueError) as err:
        print(f"pgnface render: {err}", file=sys.stderr)
        return 2
    if morphable.triangles.numel() == 0:
        print(
            f"pgnface render: {args.morphable} has no triangles (a landmark-only model) and cannot be rendered",
            file=sys.stderr,
        )
        return 2
    device = torch.device(args.device)
    morphable = morphable.to(device)
    units_per_mm = {"mm": 1.0, "um": 1000.0}.get(morphable.units, 1.0)
    gen = SyntheticFaces(morphable, SyntheticConfig(size=args.size), seed=args.seed)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    sheet_tiles, written, start = [], 0, time.perf_counter()
    batch = 32
    with tqdm(total=args.num, desc="rendering", unit="img", disable=args.num < 64) as bar:
        while written < args.num:
            n = min(batch, args.num - written)
            if args.clips:
                clips = gen.sample_clips(max(1, n // args.clips), args.clips, seed=written)
                sample = {
                    k: v.reshape(-1, *v.shape[2:])
                    if v.dim() >= 2 and v.shape[1] == args.clips
                    else v.repeat_interleave(args.clips, 0)
                    for k, v in clips.items()
                }
                n = sample["image"].shape[0]
            else:
                sample = gen.sample(n, seed=written)
            write_300wlp(sample, out, start=written, morphable_name=morphable.name, landmark_ids=morphable.landmark_ids)
            for i in range(n):
                if len(sheet_tiles) < args.sheet:
                    tile = draw_landmarks(
                        to_uint8_bgr(sample["image"][i]),
                        sample["landmarks2d"][i].cpu().numpy(),
                        sample["landmark_visible"][i].cpu().numpy(),
                    )
                    sheet_tiles.append(tile)
            written += n
            bar.update(n)
    sheet_path = out / "contact_sheet.png"
    import cv2

    cv2.imwrite(str(sheet_path), contact_sheet(sheet_tiles, columns=args.clips or 8))
    rate = written / (time.perf_counter() - start)
    print(
        f"wrote {written} faces ({morphable.name}, {units_per_mm and morphable.units}) to {out} "
        f"({rate:.0f} img/s incl. writing); contact sheet: {sheet_path}"
    )
    return 0


def _train(args) -> int:
    from pgnface.train import TrainConfig, apply_overrides, train

    try:
        config = TrainConfig.from_json(args.config) if args.config else TrainConfig()
        overrides = list(args.overrides)
        if args.steps is not None:
            overrides.append(f"steps={args.steps}")
        if args.batch_size is not None:
            overrides.append(f"batch_size={args.batch_size}")
        if args.init is not None:
            overrides.append(f"init={args.init}")
        config = apply_overrides(config, overrides)
        config.validate()
    except (FileNotFoundError, ValueError) as err:
        print(f"pgnface train: {err}", file=sys.stderr)
        return 2
    try:
        summary = train(config, args.out, resume=args.resume, progress=not args.quiet)
    except (FileNotFoundError, ValueError) as err:
        print(f"pgnface train: {err}", file=sys.stderr)
        return 2
    if summary["rank"] != 0:
        pass  # DDP: rank 0 reports
    elif summary["history"]:
        print(
            f"trained to step {summary['step']}: loss {summary['last']['loss']:.4f}, "
            f"{summary['img_per_s']:.1f} img/s; run folder {args.out}"
        )
    else:
        print(f"nothing to do: {args.out} is already at step {summary['step']} of {config.steps}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pgnface", description="pgnface: 3D face reconstruction tools.")
    sub = parser.add_subparsers(dest="command", required=True)
    render = sub.add_parser(
        "render",
        help="render synthetic faces with exact ground truth",
        description="Render random synthetic faces from a 3DMM (the built-in model by default) and write "
        "them in the 300W-LP layout (NAME.jpg + NAME.mat with pt3d_68, Pose_Para, Shape_Para, "
        "Exp_Para) plus contact_sheet.png with the landmarks drawn (green visible, red hidden).",
    )
    render.add_argument("-n", "--num", type=int, default=32, help="number of faces to write (default 32)")
    render.add_argument("-o", "--output", default="synthetic", help="output folder (default ./synthetic)")
    render.add_argument(
        "--morphable",
        default=None,
        help="3DMM file (.npz/.mat/.pkl; e.g. ../shared/data/sfm3448.npz); default: built-in",
    )
    render.add_argument("--size", type=int, default=128, help="crop size in pixels (default 128)")
    render.add_argument(
        "--clips", type=int, default=0, help="render clips of this many frames of one person instead of single faces"
    )
    render.add_argument("--sheet", type=int, default=32, help="faces on the contact sheet (default 32)")
    render.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    render.add_argument(
        "--device",
        default="cuda" if torch.cuda.is_available() else "cpu",
        help="torch device (default: cuda when available)",
    )
    render.set_defaults(run=_render)

    tr = sub.add_parser(
        "train",
        help="train the PGN reconstructor",
        description="Train the PGN reconstructor. Data, mixed by weight: on-the-fly synthetic faces and clips "
        "(optionally over real-photo backgrounds, with photo augmentation), a 300W-LP-layout folder, "
        "unlabelled photos and an unlabelled video (see the README's data-source table). "
        "Settings come from the defaults, then --config FILE (JSON, nested by section: net, data, "
        "loss), then key=value overrides (e.g. lr=3e-4 net.backbone=mobilenetv2 data.size=120 "
        "loss.photometric=0). Multi-GPU / multi-node: launch with torchrun.",
        epilog="The run folder gets config.json, log.jsonl, checkpoint.pt (resumable) and model.pt (final network).",
    )
    tr.add_argument("--config", default=None, help="JSON config file (any subset of the fields)")
    tr.add_argument("--out", default="runs/pgn", help="run folder (default runs/pgn)")
    tr.add_argument("--steps", type=int, default=None, help="total optimizer steps (config key steps)")
    tr.add_argument("--batch-size", type=int, default=None, help="images per step per process (batch_size)")
    tr.add_argument(
        "--resume", action="store_true", help="continue from OUT/checkpoint.pt with its config (steps may be raised)"
    )
    tr.add_argument(
        "--init",
        default=None,
        metavar="MODEL_PT",
        help="start from this network's weights and architecture (fine-tuning; config key init)",
    )
    tr.add_argument("--quiet", action="store_true", help="no progress bar")
    tr.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    tr.set_defaults(run=_train)
    from pgnface.apps.demo import add_demo_parser
    from pgnface.cli.eval import add_eval_parser
    from pgnface.cli.export_onnx import add_export_parser
    from pgnface.cli.reconstruct import add_reconstruct_parser

    add_eval_parser(sub)
    add_reconstruct_parser(sub)
    add_demo_parser(sub)
    add_export_parser(sub)
    bench = sub.add_parser(
        "bench",
        help="run the benchmarks (from a source checkout)",
        description="Run benchmarks of bench/ in the source repository (each compares a pgnface op with the "
        "baseline a user would otherwise use, measured in the same run). Extra arguments after -- "
        "go to every benchmark, e.g. pgnface bench rasterize -- --device cuda.",
    )
    bench.add_argument(
        "names", nargs="*", metavar="NAME", help=f"benchmarks to run (default: all of {', '.join(BENCHMARKS)})"
    )
    bench.set_defaults(run=_bench)
    return parser


BENCHMARKS = ("synthesize", "rasterize", "procrustes", "synthetic", "train_step")


def _bench(args) -> int:
    import subprocess

    root = Path(__file__).resolve().parents[2]
    if not (root / "bench" / "common.py").is_file():
        print(
            "pgnface bench: the benchmarks live in the source repository (bench/); run this from a checkout "
            "installed with pip install -e .",
            file=sys.stderr,
        )
        return 2
    unknown = [n for n in args.names if n not in BENCHMARKS]
    if unknown:
        print(f"pgnface bench: unknown benchmark {unknown[0]!r}; choose from {', '.join(BENCHMARKS)}", file=sys.stderr)
        return 2
    for name in args.names or BENCHMARKS:
        rc = subprocess.call([sys.executable, "-m", f"bench.{name}", *args.extra], cwd=root)
        if rc:
            print(f"pgnface bench: {name} failed (exit code {rc})", file=sys.stderr)
            return rc
    return 0


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = []
    if argv[:1] == ["bench"] and "--" in argv:  # everything after -- goes to the benchmarks
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1 :]
    args = build_parser().parse_args(argv)
    args.extra = extra
    if args.command == "render" and args.num < 1:
        print("pgnface render: --num must be at least 1", file=sys.stderr)
        return 2
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
