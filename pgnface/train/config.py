"""Training configuration: dataclasses, JSON files and ``key=value`` overrides.

    cfg = TrainConfig.from_json("train.json")        # any subset of the fields, nested by section
    cfg = apply_overrides(cfg, ["lr=3e-4", "net.backbone=mobilenetv2", "loss.photometric=0"])

Sections: ``net`` (pgnface.nn.NetworkConfig), ``data`` (DataConfig), ``loss``
(LossWeights); everything else is top-level.
"""

import json
from dataclasses import asdict, dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any, Dict, Iterable

from pgnface.nn import NetworkConfig


@dataclass
class DataConfig:
    """On-the-fly synthetic data.

    Attributes:
        size: crop size S in pixels.
        model: 3DMM file for the network and the data ("" = the built-in model).
        single_weight, clip_weight: how often a step draws single faces or clips.
        clip_frames: frames per clip (a clip step has batch_size // clip_frames clips).
        clip_labels: use the clips' labels; False trains on clips as unlabeled video
            (only self-supervised and multi-frame losses).
        yaw_max: largest |yaw| of the synthetic faces, degrees.
        folder: a folder in 300W-LP layout (labelled faces; see pgnface.data.labelled_folder), or "".
        folder_weight: how often a step draws from the folder.
        crop_scale: folder crops: crop side / the landmark box's longer side.
        fixed_batches: > 0 cycles through this many fixed batches instead of
            fresh faces every step (overfitting checks, smoke tests).
        backgrounds: a folder of photos; synthetic faces are then rendered over
            random patches of them (with probability background_prob).
        hide_tilted_faces: when painting the faces out of the background photos,
            also find heads tilted by +-20 degrees and leave out face close-ups
            (the upright-only search missed some; false reproduces the bundled
            networks, trained before this existed).
        background_faces: half of the photo patches framed on a detected real face
            (the rendered face covers it; off by default: see docs/reference_model.md).
        framing: synthetic crop framing, "model" (a fixed fraction of the face
            width) or "landmarks" (the standard AFLW2000-3D / 300W-LP crop: side =
            sqrt(2) x the 2D landmark box's longer side, as `pgnface eval` crops).
        head_prob: probability of a shaded head (hair) and neck drawn behind a
            synthetic face (the built-in face mask has neither).
        hair_prob: probability of hair painted over a synthetic face's forehead
            and temples (a hairline, a fringe; the built-in face is bare skin to
            the top of the forehead).
        albedo_std: spread of the synthetic faces' albedo coefficients (1 = the
            model's own range; larger widens skin tone, redness, lip, brow and
            colour-field variation, clamped to valid colours).
        neck_prob: probability of a neck rendered under a synthetic face, in its
            skin tone and light (in photos skin goes on below the jaw).
        light_contrast: synthetic lighting; 1 = the default soft light, > 1 moves
            light from the ambient into the directional term (harder shading, darker
            shadow side, as in many photos).
        augment: photo-like augmentation strength of synthetic and folder
            images, 0 (off) to 1 (colour, blur, noise, JPEG, occlusion; see
            pgnface.data.augment).
        images: a folder of unlabelled photos (faces found by OpenCV's cascade), or "".
        images_weight: how often a step draws unlabelled photo faces.
        video: a video file or a folder of frames of one person (unlabelled clips), or "".
        video_weight: how often a step draws video clips (clip_frames frames each).
        video_stride: video clips take every k-th frame, k random in [1, video_stride].
    """

    size: int = 120
    morphable: str = ""
    single_weight: float = 1.0
    clip_weight: float = 0.0
    clip_frames: int = 4
    clip_labels: bool = True
    yaw_max: float = 90.0
    folder: str = ""
    folder_weight: float = 0.0
    crop_scale: float = 1.4
    fixed_batches: int = 0
    backgrounds: str = ""
    background_prob: float = 0.7
    background_faces: bool = False
    hide_tilted_faces: bool = True
    head_prob: float = 0.0
    hair_prob: float = 0.0
    neck_prob: float = 0.0
    albedo_std: float = 1.0
    light_contrast: float = 1.0
    framing: str = "model"
    augment: float = 0.0
    images: str = ""
    images_weight: float = 0.0
    video: str = ""
    video_weight: float = 0.0
    video_stride: int = 3


@dataclass
class LossWeights:
    """Weights of the loss terms (0 switches a term off; see pgnface.train.losses)."""

    landmarks3d: float = 1.0  # landmark head vs labels
    landmarks_recon: float = 1.0  # reconstruction's landmarks after the pose vs labels
    depth: float = 0.5  # factor on the depth part of both landmark losses
    heatmap: float = 0.0  # landmark heatmaps vs a 1-cell Gaussian at the label (heatmap head)
    coefficients: float = 0.05  # id / exp / albedo vs labels
    vertices: float = 1.0  # dense vertices vs labels
    prior: float = 1e-3  # Gaussian prior on id / exp / albedo
    lighting: float = 1e-3  # SH lighting towards grey
    photometric: float = 0.2  # rendered face vs image
    landmark_consistency: float = 0.2  # reconstruction vs landmark head, 2D
    identity: float = 0.1  # clip: identity spread
    geometric: float = 0.5  # clip: unposed, expression-free vertices agree
    photometric_cross: float = 0.2  # clip: colours at a vertex's projections agree
    equivariance: float = 0.0  # unlabelled crops: the head's landmarks follow a random warp / mirror
    flow: float = 0.0  # video clips: vertex motion between frames agrees with DIS optical flow


@dataclass
class TrainConfig:
    """Everything a training run needs (saved as config.json and in every checkpoint).

    Attributes:
        seed: seeds the network's initialisation and, with the step and rank, every batch.
        steps: total optimizer steps (the schedule's length).
        batch_size: images per step per process (DDP: per rank).
        lr, weight_decay: AdamW.
        warmup_steps: linear warm-up, then cosine decay to lr * min_lr_ratio ("cosine")
            or constant ("constant").
        grad_clip: max global gradient norm (0: no clipping).
        amp: mixed precision (bfloat16 on CPU, float16 + GradScaler on CUDA).
        channels_last: run the CNN in channels-last memory format.
        device: "auto" (CUDA when available), "cpu", "cuda".
        threads: torch CPU threads (0: leave torch's default).
        log_every: steps between JSON-lines log records.
        checkpoint_every: steps between checkpoints (one is always written at the end).
        tensorboard: also write every logged record to TensorBoard event files
            in OUT/tensorboard (needs the tensorboard package).
        init: a model.pt / checkpoint.pt whose weights start the run (fine-tuning);
            its network architecture replaces ``net``. "" starts from scratch.
    """

    seed: int = 0
    steps: int = 1000
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 50
    schedule: str = "cosine"
    min_lr_ratio: float = 0.01
    grad_clip: float = 5.0
    amp: bool = False
    channels_last: bool = False
    device: str = "auto"
    threads: int = 0
    log_every: int = 10
    checkpoint_every: int = 500
    tensorboard: bool = False
    init: str = ""
    net: NetworkConfig = field(default_factory=NetworkConfig)
    data: DataConfig = field(default_factory=DataConfig)
    loss: LossWeights = field(default_factory=LossWeights)

    def validate(self) -> None:
        """Raises ValueError naming the first bad field."""
        self.net.validate()
        positive = {
            "steps": self.steps,
            "batch_size": self.batch_size,
            "lr": self.lr,
            "data.size": self.data.size,
            "data.clip_frames": self.data.clip_frames,
            "log_every": self.log_every,
            "checkpoint_every": self.checkpoint_every,
        }
        for key, value in positive.items():
            if not value > 0:
                raise ValueError(f"{key} must be positive, got {value!r}")
        if self.data.fixed_batches < 0:
            raise ValueError(f"data.fixed_batches must be >= 0, got {self.data.fixed_batches}")
        if self.data.size < 32:
            raise ValueError(f"data.size must be at least 32 px, got {self.data.size}")
        if self.data.clip_weight > 0 and self.data.clip_frames < 2:
            raise ValueError(f"data.clip_frames must be at least 2 when clips are used, got {self.data.clip_frames}")
        d = self.data
        mix = (d.single_weight, d.clip_weight, d.folder_weight, d.images_weight, d.video_weight)
        if min(mix) < 0 or sum(mix) <= 0:
            raise ValueError(
                "data.single_weight, data.clip_weight, data.folder_weight, data.images_weight and "
                "data.video_weight must be >= 0 with a positive sum"
            )
        for source, weight, what in (
            ("folder", d.folder_weight, "a 300W-LP-layout folder"),
            ("images", d.images_weight, "a folder of photos"),
            ("video", d.video_weight, "a video file or a folder of frames"),
        ):
            if weight > 0 and not getattr(d, source):
                raise ValueError(f"data.{source}_weight > 0 needs data.{source} ({what})")
        if d.video_weight > 0 and d.clip_frames < 2:
            raise ValueError(f"data.clip_frames must be at least 2 when video clips are used, got {d.clip_frames}")
        if not 0 <= d.augment <= 1:
            raise ValueError(f"data.augment must be in [0, 1], got {d.augment}")
        if d.framing not in ("model", "landmarks"):
            raise ValueError(f"data.framing must be 'model' or 'landmarks', got {d.framing!r}")
        if not 0 <= d.head_prob <= 1:
            raise ValueError(f"data.head_prob must be in [0, 1], got {d.head_prob}")
        if not 0 <= d.hair_prob <= 1:
            raise ValueError(f"data.hair_prob must be in [0, 1], got {d.hair_prob}")
        if not 0 <= d.neck_prob <= 1:
            raise ValueError(f"data.neck_prob must be in [0, 1], got {d.neck_prob}")
        if not d.albedo_std >= 0:
            raise ValueError(f"data.albedo_std must be >= 0 (1 = the model's own range), got {d.albedo_std}")
        if not d.light_contrast > 0:
            raise ValueError(f"data.light_contrast must be > 0 (1 = the default soft light), got {d.light_contrast}")
        if not 0 <= d.background_prob <= 1:
            raise ValueError(f"data.background_prob must be in [0, 1], got {d.background_prob}")
        if d.video_stride < 1:
            raise ValueError(f"data.video_stride must be >= 1, got {d.video_stride}")
        if not self.data.crop_scale > 0:
            raise ValueError(f"data.crop_scale must be positive, got {self.data.crop_scale}")
        if self.schedule not in ("cosine", "constant"):
            raise ValueError(f"schedule must be 'cosine' or 'constant', got {self.schedule!r}")
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ValueError(f"device must be 'auto', 'cpu' or 'cuda[:N]', got {self.device!r}")
        for f in fields(self.loss):
            if getattr(self.loss, f.name) < 0:
                raise ValueError(f"loss.{f.name} must be >= 0, got {getattr(self.loss, f.name)}")

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: Dict[str, Any]) -> "TrainConfig":
        """A config from a (possibly partial, nested) dict; unknown keys raise ValueError."""
        return _from_dict(cls(), values, "")

    @classmethod
    def from_json(cls, path) -> "TrainConfig":
        path = Path(path)
        try:
            values = json.loads(path.read_text())
        except FileNotFoundError:
            raise FileNotFoundError(f"config file {path} does not exist") from None
        except json.JSONDecodeError as err:
            raise ValueError(f"config file {path} is not valid JSON: {err}") from None
        if not isinstance(values, dict):
            raise ValueError(f"config file {path} must hold a JSON object")
        return cls.from_dict(values)


def _parse(text: str, like: Any, key: str) -> Any:
    """Converts an override's text to the type of the field's current value."""
    if isinstance(like, bool):
        lowered = text.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"{key} must be true or false, got {text!r}")
    try:
        if isinstance(like, int):
            return int(text)
        if isinstance(like, float):
            return float(text)
    except ValueError:
        raise ValueError(f"{key} must be a{'n int' if isinstance(like, int) else ' number'}, got {text!r}") from None
    return text


def _from_dict(base, values: Dict[str, Any], prefix: str):
    known = {f.name for f in fields(base)}
    changes = {}
    for key, value in values.items():
        name = prefix + key
        if key not in known:
            raise ValueError(f"unknown config key {name!r} (known: {', '.join(sorted(known))})")
        current = getattr(base, key)
        if is_dataclass(current):
            if not isinstance(value, dict):
                raise ValueError(f"config key {name!r} must be an object")
            changes[key] = _from_dict(current, value, name + ".")
        elif isinstance(current, bool) and not isinstance(value, bool):
            raise ValueError(f"config key {name!r} must be true or false, got {value!r}")
        elif isinstance(current, (int, float)) and not isinstance(current, bool):
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or (isinstance(current, int) and not isinstance(value, int))
            ):
                raise ValueError(
                    f"config key {name!r} must be a{'n int' if isinstance(current, int) else ' number'}, got {value!r}"
                )
            changes[key] = type(current)(value)
        elif isinstance(current, str) and not isinstance(value, str):
            raise ValueError(f"config key {name!r} must be a string, got {value!r}")
        else:
            changes[key] = value
    return replace(base, **changes)


def apply_overrides(config: TrainConfig, overrides: Iterable[str]) -> TrainConfig:
    """Applies ``key=value`` strings (``section.key=value`` for net / data / loss) to a config."""
    values: Dict[str, Any] = {}
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"override {item!r} must look like key=value (e.g. lr=3e-4 or net.backbone=mobilenetv2)")
        key, text = item.split("=", 1)
        parts = key.strip().split(".")
        target, node, where = values, config, ""
        for part in parts[:-1]:
            if not hasattr(node, part) or not is_dataclass(getattr(node, part)):
                raise ValueError(f"unknown config section {where + part!r} in override {item!r}")
            node, where = getattr(node, part), where + part + "."
            target = target.setdefault(part, {})
        leaf = parts[-1]
        if not hasattr(node, leaf) or is_dataclass(getattr(node, leaf)):
            raise ValueError(f"unknown config key {where + leaf!r} in override {item!r}")
        target[leaf] = _parse(text, getattr(node, leaf), where + leaf)
    return _from_dict(config, values, "")
