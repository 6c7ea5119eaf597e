"""`pgnface reconstruct`: 3D faces from images, a folder, a video or a folder of frames."""

from pathlib import Path

from pgnface.cli import checks, outputs
from pgnface.cli.errors import LOAD_ERRORS, input_errors, report

FPS_RANGE = (0.1, 1000.0)  # frame rates the overlay video writer accepts


def _inputs(path: Path, mode: str):
    """("images", [paths]), ("frames", [paths]) or ("video", path) for INPUT.

    A folder is a clip of frames with --video, or by default when its images are
    a numbered sequence (frame_0000.jpg, ...); otherwise independent images.
    """
    from pgnface.io.images import IMAGE_SUFFIXES, VIDEO_SUFFIXES
    from pgnface.io.video import is_frame_sequence

    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise ValueError(f"{path}: no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        clip = mode == "video" or (mode == "auto" and is_frame_sequence(files))
        return ("frames" if clip else "images"), files
    if not path.exists():
        raise FileNotFoundError(f"input not found: {path}")
    if path.suffix.lower() in VIDEO_SUFFIXES:
        if mode == "images":
            raise ValueError(f"--images: {path} is a video file, not images")
        return "video", path
    if mode == "video":
        raise ValueError(f"--video: {path} is neither a video file nor a folder of frames")
    return "images", [path]


def _run_images(recon, files, boxes, out, report) -> int:
    """Every face of every image; returns the number of faces written."""
    from tqdm import tqdm

    from pgnface.apps.pipeline import output_stems, write_face
    from pgnface.io.images import read_image

    triangles = recon.morphable.triangles.cpu().numpy()
    written = 0
    stems = dict(zip(files, output_stems(files)))  # face.jpg and face.png get distinct names
    for path in tqdm(files, desc="reconstructing", unit="img", disable=len(files) < 4):
        stem = stems[path]
        try:
            image = read_image(path)
            results = recon.faces(image, boxes.get(path.name))
        except (ValueError, RuntimeError) as err:
            report(f"{path.name}: {err}" if path.name not in str(err) else str(err))
            continue
        if not results:
            report(f"{path.name}: no face found")
        for j, r in enumerate(results):
            write_face(r, triangles, out, f"{stem}_face{j}")
        written += len(results)
        outputs.write_image(out / f"{stem}_overlay.png", recon.overlay(image, results))
    return written


def _run_clip(recon, kind, items, boxes, out, fps, report) -> int:
    """A video file or a frame folder: the largest face per frame, one shared identity; faces written."""
    import cv2

    from pgnface.apps.clip import reconstruct_clip, shared_identity, write_clip
    from pgnface.io.video import folder_frames, video_frames

    if kind == "video":
        capture = cv2.VideoCapture(str(items))
        fps = fps or capture.get(cv2.CAP_PROP_FPS) or 25.0
        capture.release()
        frames, name = (lambda: video_frames(items)), items.stem
    else:
        frames, name = (lambda: folder_frames(items)), items[0].parent.name or "frames"

    def boxes_for(index, stem):
        return boxes.get(
            str(index), boxes.get(stem, boxes.get(f"{stem}{items[index].suffix}") if kind == "frames" else None)
        )

    results = reconstruct_clip(recon, frames(), boxes_for, report)
    identity = shared_identity(results)
    if identity is None:
        return 0
    found = sum(r is not None for r in results)
    print(f"{name}: a face in {found} of {len(results)} frames; identity averaged over them")
    return write_clip(recon, frames(), results, identity, out, name, fps or 25.0)


def run(args) -> int:
    """Reconstructs every input; exit code 0 when at least one face was written, else 1."""
    from pgnface.apps.pipeline import ReconstructionPipeline
    from pgnface.morphable import MorphableModel
    from pgnface.nn.checkpoint import REFERENCE_CHECKPOINT

    checks.in_range("--fps", args.fps, *FPS_RANGE, unit=" frames per second")
    checks.device(args.device)
    out = outputs.folder(args.output)
    mode = "video" if args.video else "images" if args.images else "auto"
    with input_errors():
        kind, items = _inputs(Path(args.input), mode)
    boxes = checks.boxes_file(args.boxes) if args.boxes else {}
    with input_errors(f"--morphable {args.morphable}", kinds=LOAD_ERRORS):
        morphable = MorphableModel.load(args.morphable) if args.morphable else None
    checkpoint = args.checkpoint or REFERENCE_CHECKPOINT
    with input_errors(f"--checkpoint {checkpoint}", kinds=LOAD_ERRORS):
        recon = ReconstructionPipeline(checkpoint, morphable, device=args.device)
    out.mkdir(parents=True, exist_ok=True)
    problems = []

    def problem(line):
        problems.append(line)
        report("reconstruct", line)

    with input_errors():  # a video that cannot be opened
        if kind == "images":
            written = _run_images(recon, items, boxes, out, problem)
        else:
            written = _run_clip(recon, kind, items, boxes, out, args.fps, problem)
    print(
        f"reconstructed {written} face(s) into {out}" + (f"; {len(problems)} input(s) had problems" if problems else "")
    )
    return 0 if written else 1


def add_parser(subparsers) -> None:
    """Adds `reconstruct` to the pgnface command line."""
    rec = subparsers.add_parser(
        "reconstruct",
        help="reconstruct the faces in images, a folder, a video or a folder of frames",
        description="Finds the faces (OpenCV's frontal-face detector, or boxes from --boxes), reconstructs them "
        "with a trained PGN network and writes per face: OBJ (vertex colours from the albedo) and PLY "
        "meshes, 68 landmarks and pose angles (JSON, image pixels), coefficients (.npz); per image an "
        "overlay PNG. A clip (a video file, or a folder of numbered frames) keeps only the largest "
        "face of each frame and shares one identity across the clip (the mean identity "
        "coefficients of the frames with a face; expression and pose stay per frame); it also "
        "gets NAME_overlay.mp4 and NAME_identity.npz. Exit code 0 when at least one face was "
        "reconstructed.",
    )
    rec.add_argument("input", help="an image, a folder of images, a video file, or a folder of video frames")
    rec.add_argument("-o", "--output", default="reconstruction", help="output folder (default ./reconstruction)")
    rec.add_argument(
        "--checkpoint",
        default=None,
        help="trained network (pgnface train's model.pt; default: the bundled reference network)",
    )
    rec.add_argument(
        "--morphable", default=None, help="the 3DMM file the checkpoint was trained with (default built-in)"
    )
    rec.add_argument(
        "--boxes",
        default=None,
        help='JSON {"image.jpg": [[x0, y0, x1, y1], ...]} instead of the detector; for a clip the '
        'keys may also be frame numbers ("0", "1", ...), and only the largest box is used',
    )
    kind = rec.add_mutually_exclusive_group()
    kind.add_argument(
        "--video",
        action="store_true",
        help="treat a folder as the frames of one clip (default: only when its images are "
        "numbered like frame_0000.jpg, frame_0001.jpg, ...)",
    )
    kind.add_argument(
        "--images",
        action="store_true",
        help="treat a folder as independent images even when they are numbered like frames",
    )
    rec.add_argument(
        "--fps",
        type=float,
        default=None,
        help="frame rate of the overlay video (default: the video's own, 25 for a folder of frames)",
    )
    rec.add_argument("--device", default="cpu", help="torch device (default cpu)")
    rec.set_defaults(run=run)
