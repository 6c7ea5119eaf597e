"""`pgnface export-onnx`: the network (CNN and heads) as one ONNX file, checked against PyTorch."""

import logging

from pgnface.cli import checks, outputs
from pgnface.cli.errors import LOAD_ERRORS, UsageError, input_errors, report

TOLERANCE = 1e-3  # max |ONNX - PyTorch| per output, relative to max(1, |PyTorch|)
# Opsets torch's torch.export-based exporter writes (its ONNX_MAX_OPSET); the written one is checked too.
OPSETS = (18, 23)


def written_opset(path) -> int:
    """The default-domain opset version an ONNX file declares."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return max(entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx"))


def compare_with_torch(net, path, size: int, batch: int = 3, seed: int = 0):
    """{output: max |onnxruntime - PyTorch| / max(1, max |PyTorch|)} on random crops [batch, 3, S, S]."""
    import numpy as np
    import torch

    from pgnface.apps.export.graph import ExportableHeads, run_onnx

    images = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))
    module = ExportableHeads(net, size).eval()
    with torch.no_grad():
        expected = dict(zip(module.output_names, module(images)))
    got = run_onnx(path, images)
    return {
        name: float(np.abs(got[name] - ref.numpy()).max() / max(1.0, float(ref.abs().max())))
        for name, ref in expected.items()
    }


def run(args) -> int:
    """Exports args.checkpoint; exit code 1 when onnxruntime disagrees with PyTorch."""
    import onnx  # noqa: F401  (the exporter needs onnx and onnxscript: a missing one names the [app] extra)
    import onnxscript  # noqa: F401

    from pgnface.apps.export.graph import export_onnx
    from pgnface.nn import REFERENCE_CHECKPOINT, load_network
    from pgnface.nn.checkpoint import network_name

    checks.in_range("--opset", args.opset, *OPSETS)
    checks.in_range("--size", args.size, 32, checks.MAX_SIZE, unit=" px")
    checkpoint = args.checkpoint or str(REFERENCE_CHECKPOINT)
    output = outputs.file(args.output or f"{network_name(checkpoint)}.onnx")
    with input_errors(f"--checkpoint {checkpoint}", kinds=LOAD_ERRORS):
        net, payload = load_network(checkpoint)
    size = int(args.size or payload.get("input_size") or 120)
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)  # e.g. "torchvision is not installed"
    try:
        metadata = export_onnx(net, output, size, opset=args.opset)
    except Exception as err:  # the exporter raises many types; say which step failed
        raise UsageError(f"exporting {checkpoint} failed: {type(err).__name__}: {err}") from err
    if written_opset(output) != args.opset:
        raise UsageError(f"--opset {args.opset}: the exporter wrote opset {written_opset(output)}; choose another")
    print(
        f"wrote {output} ({output.stat().st_size / 2**20:.1f} MiB, opset {args.opset}): "
        f"images [B, 3, {size}, {size}] RGB in [0, 1] -> {metadata['outputs'].replace(',', ', ')} "
        f"({metadata['pose_mode']} pose)"
    )
    if metadata["pose_mode"] == "pgn":
        print(
            "finish the PGN pose with similarity_align(model_landmarks, landmarks[:, landmark_ids]) "
            "(pgnface.ops.similarity_align, or NumPy: pgnface.apps.export.finish_pose; landmark_ids is in the "
            "graph's metadata)"
        )
    if args.no_check:
        return 0
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        print("onnxruntime is not installed: the graph was not checked against PyTorch")
        return 0
    try:
        errors = compare_with_torch(net, output, size)
    except Exception as err:  # onnxruntime raises its own types for graphs it cannot load or run
        report("export-onnx", f"onnxruntime cannot run {output}: {err}")
        return 1
    worst = max(errors, key=errors.get)
    print(f"onnxruntime vs PyTorch on 3 random crops: largest relative difference {errors[worst]:.1e} ({worst})")
    if errors[worst] > TOLERANCE:
        report(
            "export-onnx",
            f"{output} differs from the PyTorch network by more than {TOLERANCE:g} ({worst}); do not use it",
        )
        return 1
    return 0


def add_parser(subparsers) -> None:
    """Adds `export-onnx` to the pgnface command line."""
    exp = subparsers.add_parser(
        "export-onnx",
        help="export the network (CNN + heads) to ONNX",
        description="Exports a PGN network to one self-contained ONNX file: images [B, 3, S, S] (RGB in [0, 1], "
        "S fixed, B dynamic) -> landmarks [B, 68, 3] (crop pixels), id_coeffs / exp_coeffs / "
        "albedo_coeffs, gamma [B, 9, 3] SH lighting, model_landmarks [B, L, 3] (the 3DMM's landmarks "
        "for these coefficients, unposed) and, for pose_mode=regress, scale / rotation / "
        "translation. The PGN pose solve (a similarity alignment of model_landmarks to the "
        "landmarks) uses custom ops and is left to the caller: pgnface.ops.similarity_align or the "
        "NumPy pgnface.apps.export.finish_pose. The graph is run with onnxruntime (when installed) and "
        "compared with PyTorch.",
    )
    exp.add_argument(
        "--checkpoint",
        default=None,
        metavar="CKPT",
        help="network to export (pgnface train's model.pt; default: the bundled reference network)",
    )
    exp.add_argument(
        "-o",
        "--output",
        default=None,
        metavar="FILE",
        help="the .onnx file (default: ./NAME.onnx, NAME the checkpoint's folder for model.pt, else its stem)",
    )
    exp.add_argument(
        "--opset",
        type=int,
        default=18,
        metavar="N",
        help=f"ONNX opset version, {OPSETS[0]} to {OPSETS[1]} (default 18)",
    )
    exp.add_argument(
        "--size",
        type=int,
        default=None,
        metavar="S",
        help="crop size S of the graph (default: the size the network was trained at)",
    )
    exp.add_argument("--no-check", action="store_true", help="skip the onnxruntime-vs-PyTorch comparison")
    exp.set_defaults(run=run)
