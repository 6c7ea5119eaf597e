"""The exportable part of a PGN reconstructor (CNN + heads) and its ONNX export.

The pose solve of ``pose_mode="pgn"`` and the dense synthesis run on
pgnface's custom ops (``pgnface::similarity_align``, ``pgnface::synthesize``),
which have no ONNX form. The exported graph therefore stops before them:

    images [B, 3, S, S] RGB in [0, 1] (S fixed at export, B dynamic) ->
        landmarks        [B, 68, 3]  landmark head, crop pixels (u right, v down, depth away, centred)
        id_coeffs        [B, Ki]     identity coefficients (units of std)
        exp_coeffs       [B, Ke]     expression coefficients
        albedo_coeffs    [B, Ka]     albedo coefficients
        gamma            [B, 9, 3]   SH lighting (default light included)
        model_landmarks  [B, L, 3]   the 3DMM's landmarks for (id, exp), model space, unposed
      pose_mode="regress" only:
        scale [B], rotation [B, 3, 3], translation [B, 3]   crop point = scale * rotation @ x + translation

``model_landmarks`` is a plain linear map (the landmark rows of the 3DMM's
mean and bases, stored in the graph), so the pose of ``pose_mode="pgn"``
is one similarity alignment away:
``similarity_align(model_landmarks, landmarks[:, landmark_ids])``, with
``pgnface.ops.similarity_align`` or the NumPy ``umeyama`` of
pgnface.apps.export.pose. The graph's metadata records ``landmark_ids``, the
input size, the pose mode and the 3DMM's name.
"""

import json
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import torch
from torch import nn

from pgnface.nn.network import PGNNetwork, lighting_from_head

# Distinct from ONNX op names (an output called "exp" clashes with the Exp node of the regressed scale).
BASE_OUTPUTS = ("landmarks", "id_coeffs", "exp_coeffs", "albedo_coeffs", "gamma", "model_landmarks")
POSE_OUTPUTS = ("scale", "rotation", "translation")


class ExportableHeads(nn.Module):
    """Backbone + landmark head + coefficient head (+ regressed pose) of a PGNNetwork.

    Args:
        net: the reconstructor (its weights are shared, not copied).
        size: the crop size S the graph is built for.
    """

    def __init__(self, net: PGNNetwork, size: int):
        super().__init__()
        self.net, self.size = net, int(size)
        morphable = net.morphable.to("cpu")
        rows = morphable.landmark_vertices
        self.register_buffer("landmark_mean", morphable.mean[rows].float().clone())  # [L, 3]
        self.register_buffer("landmark_basis", morphable.shape_basis[rows].float().clone())  # [L, 3, Ki + Ke]

    @property
    def output_names(self) -> List[str]:
        """The graph's output names, in output order (the regressed pose's three last when present)."""
        return list(BASE_OUTPUTS) + (list(POSE_OUTPUTS) if self.net.config.pose_mode == "regress" else [])

    def forward(self, images: torch.Tensor):
        """Args:
            images: [B, 3, S, S] RGB in [0, 1].

        Returns:
            The tensors named by output_names (see the module docstring for their shapes).
        """
        features = self.net.features(images)
        landmarks = self.net.landmark_head(features, self.size)["landmarks"]
        heads = self.net.coefficient_head(features[-1])
        coeffs = torch.cat([heads["id"], heads["exp"]], 1)
        model_landmarks = self.landmark_mean + torch.einsum("lck,bk->blc", self.landmark_basis, coeffs)
        out = (
            landmarks,
            heads["id"],
            heads["exp"],
            heads["albedo"],
            lighting_from_head(heads["gamma"]),
            model_landmarks,
        )
        if self.net.config.pose_mode == "regress":
            out = out + tuple(self.net._regressed_pose(heads["pose"], self.size))
        return out


def export_onnx(net: PGNNetwork, path, size: int, opset: int = 18, verbose: bool = False) -> Dict[str, str]:
    """Writes the ONNX graph of `net`'s exportable part to `path` (one self-contained file).

    Args:
        net: the reconstructor (put in eval mode; on the CPU for the export).
        path: the .onnx file to write.
        size: the crop size S (fixed in the graph; the batch size stays dynamic).
        opset: ONNX opset version (18 or newer).
        verbose: let the exporter print its progress.

    Returns:
        The metadata written into the graph (input_size, pose_mode, landmark_ids, outputs, model).
    """
    import onnx  # noqa: PLC0415 (optional dependency)

    net = net.to("cpu").eval()
    module = ExportableHeads(net, size).eval()
    example = torch.rand(2, 3, size, size)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(
        module,
        (example,),
        str(path),
        dynamo=True,
        input_names=["images"],
        output_names=module.output_names,
        opset_version=opset,
        external_data=False,
        dynamic_shapes={"images": {0: torch.export.Dim("batch", min=1)}},
        verbose=verbose,
    )
    metadata = {
        "input_size": str(size),
        "pose_mode": net.config.pose_mode,
        "landmark_ids": json.dumps(net.morphable.landmark_ids.tolist()),
        "outputs": ",".join(module.output_names),
        "model": net.morphable.name,
        "producer": "pgnface export-onnx",
    }
    graph = onnx.load(str(path))
    onnx.helper.set_model_props(graph, metadata)
    onnx.save(graph, str(path))
    return metadata


def run_onnx(path, images, providers: Optional[List[str]] = None) -> Dict[str, "object"]:
    """Runs an exported graph with onnxruntime.

    Args:
        path: the .onnx file.
        images: [B, 3, S, S] RGB in [0, 1] (tensor or array; run as float32).
        providers: onnxruntime execution providers (the CPU if None).

    Returns:
        {output name: array}.
    """
    import onnxruntime  # noqa: PLC0415 (optional dependency)

    session = onnxruntime.InferenceSession(str(path), providers=providers or ["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    images = images.detach().cpu().numpy() if isinstance(images, torch.Tensor) else images
    return dict(zip(names, session.run(names, {"images": np.ascontiguousarray(images, dtype=np.float32)})))
