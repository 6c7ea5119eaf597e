"""`pgnface render`: synthetic faces with exact ground truth, written in the 300W-LP layout."""

import time

from pgnface.cli import checks, outputs
from pgnface.cli.errors import LOAD_ERRORS, UsageError, input_errors

BATCH = 32  # faces rendered per call


def add_parser(subparsers) -> None:
    """Adds `render` to the pgnface command line."""
    parser = subparsers.add_parser(
        "render",
        help="render synthetic faces with exact ground truth",
        description="Renders random synthetic faces from a 3DMM (the built-in one by default) and writes "
        "them in the 300W-LP layout (NAME.jpg + NAME.mat with pt3d_68, Pose_Para, Shape_Para, "
        "Exp_Para), plus contact_sheet.png with the landmarks drawn (green visible, red hidden).",
    )
    parser.add_argument("-n", "--num", type=int, default=32, help="number of faces to write (default 32)")
    parser.add_argument("-o", "--output", default="synthetic", help="output folder (default ./synthetic)")
    parser.add_argument("--morphable", default=None, help="3DMM file (.npz, .mat or .pkl; default: built-in)")
    parser.add_argument("--size", type=int, default=128, help="crop size in pixels (default 128)")
    parser.add_argument(
        "--clips", type=int, default=0, help="render clips of this many frames of one person instead of single faces"
    )
    parser.add_argument("--sheet", type=int, default=32, help="faces on the contact sheet (default 32)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
    parser.set_defaults(run=run)


def _flat_clips(clips: dict, frames: int) -> dict:
    """Clip samples [B, F, ...] as single images [B F, ...] (per-clip tensors repeated per frame)."""
    return {
        k: v.reshape(-1, *v.shape[2:]) if v.dim() >= 2 and v.shape[1] == frames else v.repeat_interleave(frames, 0)
        for k, v in clips.items()
    }


def run(args) -> int:
    """Renders args.num faces into args.output."""
    checks.in_range("--num", args.num, 1)
    checks.in_range("--size", args.size, 8, checks.MAX_SIZE, unit=" px")
    checks.in_range("--clips", args.clips, 0)
    checks.in_range("--sheet", args.sheet, 0)
    checks.device(args.device)
    out = outputs.folder(args.output)
    import cv2  # noqa: F401  (the writers need opencv: a missing one names the [app] extra first)
    import torch
    from tqdm import tqdm

    from pgnface.data import SyntheticConfig, SyntheticFaces
    from pgnface.data.labelled_folder import write_300wlp
    from pgnface.io.overlays import contact_sheet, draw_landmarks, to_uint8_bgr
    from pgnface.morphable import MorphableModel

    with input_errors(f"--morphable {args.morphable}", kinds=LOAD_ERRORS):
        morphable = MorphableModel.load(args.morphable) if args.morphable else MorphableModel.builtin()
    if morphable.triangles.numel() == 0:
        raise UsageError(f"{args.morphable} has no triangles (a landmark-only 3DMM) and cannot be rendered")
    config = SyntheticConfig(size=args.size)
    with input_errors():
        config.validate(prefix="--")  # only the size comes from the command line
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    morphable = morphable.to(device)
    generator = SyntheticFaces(morphable, config, seed=args.seed)
    out.mkdir(parents=True, exist_ok=True)
    tiles, written, start = [], 0, time.perf_counter()
    with tqdm(total=args.num, desc="rendering", unit="img", disable=args.num < 64) as bar:
        while written < args.num:
            n = min(BATCH, args.num - written)
            if args.clips:
                clips = generator.sample_clips(max(1, n // args.clips), args.clips, seed=written)
                sample = _flat_clips(clips, args.clips)
                n = sample["image"].shape[0]
            else:
                sample = generator.sample(n, seed=written)
            write_300wlp(sample, out, start=written, morphable_name=morphable.name, landmark_ids=morphable.landmark_ids)
            for i in range(min(n, args.sheet - len(tiles))):
                image = to_uint8_bgr(sample["image"][i])
                landmarks, visible = sample["landmarks2d"][i].cpu().numpy(), sample["landmark_visible"][i].cpu().numpy()
                tiles.append(draw_landmarks(image, landmarks, visible))
            written += n
            bar.update(n)
    sheet = out / "contact_sheet.png"
    outputs.write_image(sheet, contact_sheet(tiles, columns=args.clips or 8))
    rate = written / (time.perf_counter() - start)
    print(
        f"wrote {written} faces ({morphable.name}, {morphable.units}) to {out} "
        f"({rate:.0f} img/s incl. writing); contact sheet: {sheet}"
    )
    return 0
