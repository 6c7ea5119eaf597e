"""The PGN reconstructor: image crop -> landmarks, 3DMM coefficients, pose and the posed mesh.

    net = PGNNetwork(MorphableModel.builtin(), backbone="resnet18", pose_mode="pgn")
    out = net(images)            # images [B, 3, S, S] in [0, 1]
    out["vertices"]              # [B, N, 3] reconstruction in crop pixels (u, v, depth)

With ``pose_mode="pgn"`` the head pose is not predicted but solved: the
similarity that maps the model's landmarks (for the predicted identity and
expression) onto the landmark head's 3D landmarks, by ``similarity_align``.
With ``pose_mode="regress"`` the coefficient head also regresses the pose
(6D rotation, log-scale, translation), the baseline the PGN is compared with.
"""

from dataclasses import asdict, dataclass
from typing import Dict, Optional

import torch
from torch import nn

from pgnface import ops
from pgnface.morphable import FRONTAL, MorphableModel
from pgnface.nn.backbones import BACKBONES, build_backbone
from pgnface.nn.heads import LANDMARK_MODES, CoefficientHead, LandmarkHead
from pgnface.nn.refine import refine_shape
from pgnface.nn.rotation import rotation_from_6d, rotation_to_6d

POSE_MODES = ("pgn", "regress")
# Untrained networks predict this light: uniform irradiance, about the synthetic data's mean.
DEFAULT_AMBIENT = 0.75


@dataclass
class NetworkConfig:
    """Everything that determines the network's architecture (stored in checkpoints).

    Attributes:
        backbone: "resnet18", "resnet34" or "mobilenetv2".
        width: backbone channel multiplier.
        landmark_mode: "heatmap" (soft-argmax + depth maps) or "regress".
        pose_mode: "pgn" (solved from the landmarks) or "regress".
        refine_iters: shape refinement + re-alignment iterations after the first solve ("pgn" only).
        refine_strength: prior strength of each refinement (see refine_shape).
        head_hidden: hidden width of the coefficient head.
        fpn_channels: fused feature channels of the heatmap head.
        face_fraction: nominal face width / crop size, the regressed scale's starting point.
    """

    backbone: str = "resnet18"
    width: float = 1.0
    landmark_mode: str = "heatmap"
    pose_mode: str = "pgn"
    refine_iters: int = 0
    refine_strength: float = 0.1
    head_hidden: int = 256
    fpn_channels: int = 64
    face_fraction: float = 0.72

    def validate(self) -> None:
        """Checks every field.

        Raises:
            ValueError: an unknown backbone, landmark or pose mode, refine_iters with
                the regressed pose, or a size that is not positive (naming the field).
        """
        if self.backbone not in BACKBONES:
            raise ValueError(f"backbone must be one of {BACKBONES}, got {self.backbone!r}")
        if self.landmark_mode not in LANDMARK_MODES:
            raise ValueError(f"landmark_mode must be one of {LANDMARK_MODES}, got {self.landmark_mode!r}")
        if self.pose_mode not in POSE_MODES:
            raise ValueError(f"pose_mode must be one of {POSE_MODES}, got {self.pose_mode!r}")
        if not isinstance(self.refine_iters, int) or self.refine_iters < 0:
            raise ValueError(f"refine_iters must be a non-negative int, got {self.refine_iters!r}")
        if self.refine_iters and self.pose_mode != "pgn":
            raise ValueError("refine_iters needs pose_mode='pgn' (it re-solves the pose from the landmarks)")
        for key in ("width", "refine_strength", "face_fraction"):
            if not float(getattr(self, key)) > 0:
                raise ValueError(f"{key} must be positive, got {getattr(self, key)!r}")
        for key in ("head_hidden", "fpn_channels"):
            if not isinstance(getattr(self, key), int) or getattr(self, key) < 1:
                raise ValueError(f"{key} must be a positive int, got {getattr(self, key)!r}")


def lighting_from_head(raw: torch.Tensor) -> torch.Tensor:
    """SH lighting from the coefficient head's 27 lighting numbers: an offset from DEFAULT_AMBIENT.

    Args:
        raw: [B, 27] head outputs.

    Returns:
        [B, 9, 3] SH coefficients.
    """
    gamma = raw.reshape(-1, 9, 3)
    return gamma + torch.cat([gamma.new_full((1, 1, 3), DEFAULT_AMBIENT), gamma.new_zeros(1, 8, 3)], 1)


class PGNNetwork(nn.Module):
    """Backbone + landmark head + coefficient head + pose (solved or regressed) + 3DMM synthesis.

    Args:
        morphable: the MorphableModel whose coefficients the network predicts. It
            is not a parameter: it follows the input's device at forward time
            and always computes in float32.
        **config: NetworkConfig fields (backbone, width, landmark_mode,
            pose_mode, refine_iters, ...).
    """

    def __init__(self, morphable: MorphableModel, **config):
        super().__init__()
        if not isinstance(morphable, MorphableModel):
            raise TypeError(f"model must be a MorphableModel, got {type(morphable).__name__}")
        unknown = set(config) - set(NetworkConfig.__dataclass_fields__)
        if unknown:
            raise TypeError(f"unknown PGNNetwork options: {sorted(unknown)}")
        self.config = NetworkConfig(**config)
        self.config.validate()
        if morphable.landmark_ids.numel() < 3:
            raise ValueError(
                f"model {morphable.name!r} defines {morphable.landmark_ids.numel()} landmarks; "
                "the pose solve needs at least 3"
            )
        cfg = self.config
        self.morphable = morphable.to(dtype=torch.float32)
        self._morphables = {self.morphable.device: self.morphable}
        self.backbone = build_backbone(cfg.backbone, cfg.width)
        self.landmark_head = LandmarkHead(self.backbone.channels, cfg.landmark_mode, cfg.fpn_channels)
        morphable = self.morphable  # (num_albedo may derive a colour model: do it once, on our copy)
        sizes = {"id": morphable.num_id, "exp": morphable.num_exp, "albedo": morphable.num_albedo, "gamma": 27}
        if cfg.pose_mode == "regress":
            sizes["pose"] = 10  # 6D rotation, log-scale, translation
        self.coefficient_head = CoefficientHead(self.backbone.channels[-1], sizes, cfg.head_hidden)
        width = float(self.morphable.mean[:, 0].max() - self.morphable.mean[:, 0].min())
        self._scale_per_pixel = cfg.face_fraction / width  # nominal pose scale / crop size

    # --- helpers --------------------------------------------------------------------

    def morphable_on(self, device: torch.device) -> MorphableModel:
        """The 3DMM on a device (copied once per device and cached).

        Args:
            device: the device.

        Returns:
            The MorphableModel on `device`.
        """
        device = torch.device(device)
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        if device not in self._morphables:
            self._morphables[device] = self.morphable.to(device)
        return self._morphables[device]

    def __getstate__(self):
        # The per-device cache holds CUDA copies; rebuild it after unpickling.
        state = dict(self.__dict__)
        state["_morphables"] = {}
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._morphables = {self.morphable.device: self.morphable}

    @staticmethod
    def _check_images(images) -> None:
        if not isinstance(images, torch.Tensor):
            raise TypeError(f"images must be a tensor, got {type(images).__name__}")
        if not images.is_floating_point():
            raise TypeError(f"images must be floating point in [0, 1], got {images.dtype}")
        if images.dim() != 4 or images.shape[1] != 3 or images.shape[2] != images.shape[3]:
            raise ValueError(f"images must have shape [B, 3, S, S] (square RGB crops), got {list(images.shape)}")
        if images.shape[2] < 32:
            raise ValueError(f"images must be at least 32 px (the backbone's stride), got {images.shape[2]}")

    def _regressed_pose(self, raw: torch.Tensor, size: int):
        base = rotation_to_6d(FRONTAL.to(raw))  # an untrained network sees a frontal face
        rotation = rotation_from_6d(base + raw[:, :6])
        scale = size * self._scale_per_pixel * torch.exp(raw[:, 6])
        translation = torch.cat([size / 2 + raw[:, 7:9] * (size / 2), raw[:, 9:] * (size / 2)], 1)
        return scale, rotation, translation

    # --- forward --------------------------------------------------------------------

    def features(self, images: torch.Tensor):
        """Backbone feature maps of the crops.

        Args:
            images: [B, 3, S, S] RGB in [0, 1].

        Returns:
            [C3, C4, C5] feature maps at strides 8, 16 and 32.
        """
        return self.backbone((images - 0.5) * 4.0)  # roughly zero mean, unit spread

    def forward(self, images: torch.Tensor, landmark_weights: Optional[torch.Tensor] = None) -> Dict[str, torch.Tensor]:
        """Reconstructs the face in every crop.

        Args:
            images: [B, 3, S, S] RGB in [0, 1] (any memory format; autocast is fine).
            landmark_weights: optional [B, L] non-negative weights of the model's
                landmarks in the pose solve (e.g. 0 for landmarks known to be wrong).

        Returns:
            dict of float32 tensors (L = the model's landmarks, N its vertices):
            landmarks [B, 68, 3] landmark head, crop pixels (u, v, depth);
            heatmaps [B, 68, h, w] (heatmap mode only); id [B, Ki]; exp [B, Ke];
            albedo [B, Ka]; gamma [B, 9, 3] SH lighting; scale [B];
            rotation [B, 3, 3]; translation [B, 3] (crop point = s R x + t);
            shape [B, N, 3] model-space shape (id + exp, unposed);
            vertices [B, N, 3] posed reconstruction in crop pixels;
            projected [B, N, 2] its weak-perspective projection (u, v);
            landmarks_recon [B, L, 3] the reconstruction's landmarks (model.landmark_ids order).
        """
        self._check_images(images)
        size = images.shape[-1]
        features = self.features(images)
        out = self.landmark_head(features, size)
        out.update(self.geometry(out["landmarks"], self.coefficient_head(features[-1]), size, landmark_weights))
        return out

    def geometry(
        self,
        landmarks: torch.Tensor,
        heads: Dict[str, torch.Tensor],
        size: int,
        landmark_weights: Optional[torch.Tensor] = None,
    ) -> Dict[str, torch.Tensor]:
        """The head outputs -> pose and reconstruction (the part of forward after the CNN).

        Args:
            landmarks: [B, 68, 3] crop-pixel landmarks (the landmark head's).
            heads: the coefficient head's {"id", "exp", "albedo", "gamma" [B, 27]
                (offset from the default light), and "pose" [B, 10] when regressed}.
            size: crop size S in pixels.
            landmark_weights: optional [B, L] weights of the pose solve.

        Returns:
            The coefficient, pose and reconstruction entries of forward's dict.
        """
        morphable = self.morphable_on(landmarks.device)
        # Geometry in float32 whatever autocast says: Procrustes and synthesis need the precision.
        with torch.autocast(device_type=landmarks.device.type, enabled=False):
            id_c, exp_c = heads["id"].float(), heads["exp"].float()
            gamma = lighting_from_head(heads["gamma"].float())
            landmarks = landmarks.float()
            if self.config.pose_mode == "regress":
                scale, rotation, translation = self._regressed_pose(heads["pose"].float(), size)
            else:
                target = landmarks[:, morphable.landmark_ids]
                scale, rotation, translation = ops.similarity_align(
                    morphable.landmarks(id_c, exp_c), target, landmark_weights
                )
                for _ in range(self.config.refine_iters):
                    coeffs = refine_shape(
                        morphable,
                        torch.cat([id_c, exp_c], 1),
                        target,
                        scale,
                        rotation,
                        translation,
                        self.config.refine_strength,
                        landmark_weights,
                    )
                    id_c, exp_c = coeffs.split([morphable.num_id, morphable.num_exp], 1)
                    scale, rotation, translation = ops.similarity_align(
                        morphable.landmarks(id_c, exp_c), target, landmark_weights
                    )
            shape = morphable.vertices(id_c, exp_c)
            vertices = ops.apply_similarity(shape, scale, rotation, translation)
        return dict(
            id=id_c,
            exp=exp_c,
            albedo=heads["albedo"].float(),
            gamma=gamma,
            scale=scale,
            rotation=rotation,
            translation=translation,
            shape=shape,
            vertices=vertices,
            projected=vertices[..., :2],
            landmarks_recon=vertices[:, morphable.landmark_vertices],
        )


def network_config(net: nn.Module) -> Dict:
    """The configuration of a network as a plain dict.

    Args:
        net: a PGNNetwork, or a DDP wrapper of one.

    Returns:
        The NetworkConfig's fields.
    """
    net = getattr(net, "module", net)
    return asdict(net.config)
