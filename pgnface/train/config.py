"""Training configuration: dataclasses, JSON files and ``key=value`` overrides.

    cfg = TrainConfig.from_json("train.json")        # any subset of the fields, nested by section
    cfg = apply_overrides(cfg, ["lr=3e-4", "net.backbone=mobilenetv2", "data.synthetic.light_contrast=8"])

Sections: ``net`` (pgnface.nn.NetworkConfig), ``data`` (DataConfig) with its
subsection ``data.synthetic`` (pgnface.data.SyntheticConfig), ``loss``
(LossWeights); everything else is top-level. Keys that have moved or no longer
exist are refused with a message that names them (see MOVED_KEYS and
REMOVED_KEYS); ``TrainConfig.from_stored`` reads the configs that older
checkpoints store.
"""

import json
import math
from dataclasses import asdict, dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Tuple

from pgnface.data import SyntheticConfig
from pgnface.nn import NetworkConfig

# Old key -> where the setting lives now.
MOVED_KEYS = {
    "data.model": "data.morphable",
    "data.yaw_max": "data.synthetic.yaw_max",
    "data.background_prob": "data.synthetic.photo_prob",
    "data.albedo_std": "data.synthetic.albedo_std",
    "data.light_contrast": "data.synthetic.light_contrast",
    "data.framing": "data.synthetic.framing",
}
# Removed key -> (the value whose behaviour is kept, why the key is gone).
REMOVED_KEYS = {
    "data.hide_tilted_faces": (True, "background photos are always searched for tilted faces too"),
    "data.head_prob": (0.0, "a head backdrop behind the synthetic faces did not improve the network"),
    "data.hair_prob": (0.0, "hair painted over the synthetic faces did not improve the network"),
    "data.neck_prob": (0.0, "a neck rendered under the synthetic faces did not improve the network"),
}
# Keys that follow another key, so that one setting has one value.
DERIVED_KEYS = {
    "data.synthetic.size": "data.size",
    "data.synthetic.face_fraction": "net.face_fraction",
}


def key_problem(name: str) -> Optional[str]:
    """Why the dotted config key `name` cannot be set (moved, removed or derived), or None."""
    if name in MOVED_KEYS:
        return f"config key {name!r} has moved: it is {MOVED_KEYS[name]!r} now"
    if name in REMOVED_KEYS:
        return f"config key {name!r} no longer exists: {REMOVED_KEYS[name][1]}"
    if name in DERIVED_KEYS:
        return f"config key {name!r} cannot be set: it follows {DERIVED_KEYS[name]!r}"
    return None


def real_groups(text: str) -> List[str]:
    """The subsets / splits named in a comma-separated config value (data.real300w_groups, data.ytf_groups)."""
    return [part.strip() for part in text.split(",") if part.strip()]


# The kinds of training batch (pgnface.train.batches), each drawn with weight data.<kind>_weight.
KINDS = ("single", "clip", "folder", "images", "video", "real300w", "ytf")
# The data folder each kind needs ("" for the synthetic kinds).
KIND_SOURCES = {
    "single": "",
    "clip": "",
    "folder": "folder",
    "images": "images",
    "video": "video",
    "real300w": "real300w",
    "ytf": "ytf",
}


@dataclass
class DataConfig:
    """Where training images come from and how they are mixed.

    Attributes:
        size: crop size S in pixels, of every source.
        morphable: 3DMM file for the network and the data ("" = the built-in model).
        single_weight, clip_weight: how often a step draws synthetic single faces or clips.
        clip_frames: frames per clip (a clip step has batch_size // clip_frames clips).
        clip_labels: use the clips' labels; False trains on clips as unlabelled video
            (only self-supervised and multi-frame losses).
        folder: a folder in 300W-LP layout (labelled faces; see pgnface.data.labelled_folder), or "".
        folder_weight: how often a step draws from the folder.
        crop_scale: folder crops: crop side / the landmark box's longer side.
        fixed_batches: > 0 cycles through this many fixed batches instead of
            fresh faces every step (overfitting checks, smoke tests).
        backgrounds: a folder of photos; synthetic faces are then rendered over
            random patches of them (with probability synthetic.photo_prob), their
            own faces painted out first.
        background_faces: half of the photo patches framed on a detected real face
            (the rendered face covers it).
        augment: photo-like augmentation strength of synthetic and folder
            images, 0 (off) to 1 (colour, blur, noise, JPEG, occlusion; see
            pgnface.data.augment).
        images: a folder of unlabelled photos (faces found by the face detector), or "".
        images_weight: how often a step draws unlabelled photo faces.
        video: a video file or a folder of frames of one person (unlabelled clips), or "".
        video_weight: how often a step draws video clips (clip_frames frames each).
        video_stride: video clips take every k-th frame, k random in [1, video_stride].
        real300w: a 300-W folder with landmarks.npz (real 2D labels; pgnface.data.landmarks2d), or "".
        real300w_groups: comma-separated 300-W subsets to train on (never helen_test,
            the validation split).
        real300w_weight: how often a step draws 300-W faces.
        ytf: a YouTube Faces folder with landmarks.npz, or "".
        ytf_groups: comma-separated YouTube Faces splits to train on.
        ytf_weight: how often a step draws YouTube Faces frames.
        ytf_quality: the YouTube Faces labels' weight in loss.landmarks2d (300-W's is 1;
            their labels are about twice as noisy).
        synthetic: the synthetic faces' distributions (pgnface.data.SyntheticConfig);
            its size follows ``size``.
    """

    size: int = 120
    morphable: str = ""
    single_weight: float = 1.0
    clip_weight: float = 0.0
    clip_frames: int = 4
    clip_labels: bool = True
    folder: str = ""
    folder_weight: float = 0.0
    crop_scale: float = 1.4
    fixed_batches: int = 0
    backgrounds: str = ""
    background_faces: bool = False
    augment: float = 0.0
    images: str = ""
    images_weight: float = 0.0
    video: str = ""
    video_weight: float = 0.0
    video_stride: int = 3
    real300w: str = ""
    real300w_groups: str = "afw,helen_train"
    real300w_weight: float = 0.0
    ytf: str = ""
    ytf_groups: str = "train"
    ytf_weight: float = 0.0
    ytf_quality: float = 0.5
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)

    def __post_init__(self):
        if self.synthetic.size != self.size:
            self.synthetic = replace(self.synthetic, size=self.size)

    def validate(self, prefix: str = "data.") -> None:
        """Raises ValueError naming the first bad field (as `prefix` + field name)."""
        if not self.size >= 32:
            raise ValueError(f"{prefix}size must be at least 32 px, got {self.size}")
        if not self.clip_frames > 0:
            raise ValueError(f"{prefix}clip_frames must be positive, got {self.clip_frames}")
        if self.fixed_batches < 0:
            raise ValueError(f"{prefix}fixed_batches must be >= 0, got {self.fixed_batches}")
        if (self.clip_weight > 0 or self.video_weight > 0) and self.clip_frames < 2:
            raise ValueError(f"{prefix}clip_frames must be at least 2 when clips are used, got {self.clip_frames}")
        mix = [getattr(self, f"{k}_weight") for k in KINDS]
        if min(mix) < 0 or sum(mix) <= 0:
            names = ", ".join(f"{prefix}{k}_weight" for k in KINDS)
            raise ValueError(f"{names} must be >= 0 with a positive sum")
        for source, what in (
            ("folder", "a 300W-LP-layout folder"),
            ("images", "a folder of photos"),
            ("video", "a video file or a folder of frames"),
            ("real300w", "a 300-W folder with landmarks.npz"),
            ("ytf", "a YouTube Faces folder with landmarks.npz"),
        ):
            if getattr(self, f"{source}_weight") > 0 and not getattr(self, source):
                raise ValueError(f"{prefix}{source}_weight > 0 needs {prefix}{source} ({what})")
        for key in ("real300w_groups", "ytf_groups"):
            held_out = {"helen_test", "test"} & set(real_groups(getattr(self, key)))
            if held_out:
                raise ValueError(f"{prefix}{key} must not name a validation or test split, got {sorted(held_out)}")
        if not self.ytf_quality > 0:
            raise ValueError(f"{prefix}ytf_quality must be positive, got {self.ytf_quality}")
        if not 0 <= self.augment <= 1:
            raise ValueError(f"{prefix}augment must be in [0, 1], got {self.augment}")
        if self.video_stride < 1:
            raise ValueError(f"{prefix}video_stride must be >= 1, got {self.video_stride}")
        if not self.crop_scale > 0:
            raise ValueError(f"{prefix}crop_scale must be positive, got {self.crop_scale}")
        self.synthetic.validate(prefix + "synthetic.")


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
    landmarks2d: float = 1.0  # real 2D labels (300-W, YouTube Faces), the jaw as an outline


def kind_in_use(config: DataConfig, kind: str) -> bool:
    """Whether a run draws batches of `kind`: a positive weight and, for the photo kinds, a folder."""
    source = KIND_SOURCES[kind]
    return getattr(config, f"{kind}_weight") > 0 and (not source or bool(getattr(config, source)))


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
        ema_decay: the run exports (model.pt, best.pt) and validates an exponential moving
            average of its weights with this decay per step (pgnface.train.weight_average);
            0 exports the trained weights themselves.
        bn_calibration: a batch kind (KINDS, e.g. "real300w"): the exported network's
            batch-norm statistics are recomputed on bn_calibration_batches batches of that
            kind (pgnface.train.batch_norm_calibration); "" keeps the running statistics.
        bn_calibration_batches: batches of batch_size images for that average.
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
    ema_decay: float = 0.0
    bn_calibration: str = ""
    bn_calibration_batches: int = 40
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
        for key, value in _numbers(self):
            if not math.isfinite(value):
                raise ValueError(f"{key} must be a finite number, got {value!r}")
        for key, value, low in (
            ("weight_decay", self.weight_decay, 0),
            ("warmup_steps", self.warmup_steps, 0),
            ("grad_clip", self.grad_clip, 0),
            ("threads", self.threads, 0),
            ("min_lr_ratio", self.min_lr_ratio, 0),
        ):
            if value < low:
                raise ValueError(f"{key} must be >= {low}, got {value!r}")
        if self.min_lr_ratio > 1:
            raise ValueError(f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio!r}")
        if self.bn_calibration:
            if self.bn_calibration not in KINDS:
                raise ValueError(f"bn_calibration must be '' or one of {', '.join(KINDS)}, got {self.bn_calibration!r}")
            source = KIND_SOURCES[self.bn_calibration]
            if source and not getattr(self.data, source):
                raise ValueError(
                    f"bn_calibration={self.bn_calibration} needs data.{source}, the folder its images come from"
                )
        if self.bn_calibration_batches <= 0:
            raise ValueError(f"bn_calibration_batches must be positive, got {self.bn_calibration_batches!r}")
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"ema_decay must be in [0, 1) (0: no average), got {self.ema_decay!r}")
        self.net.validate()
        positive = {
            "steps": self.steps,
            "batch_size": self.batch_size,
            "lr": self.lr,
            "log_every": self.log_every,
            "checkpoint_every": self.checkpoint_every,
        }
        for key, value in positive.items():
            if not value > 0:
                raise ValueError(f"{key} must be positive, got {value!r}")
        self.data.validate("data.")
        if self.schedule not in ("cosine", "constant"):
            raise ValueError(f"schedule must be 'cosine' or 'constant', got {self.schedule!r}")
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ValueError(f"device must be 'auto', 'cpu' or 'cuda[:N]', got {self.device!r}")
        for f in fields(self.loss):
            if getattr(self.loss, f.name) < 0:
                raise ValueError(f"loss.{f.name} must be >= 0, got {getattr(self.loss, f.name)}")

    def __post_init__(self):
        if self.data.synthetic.face_fraction != self.net.face_fraction:
            synthetic = replace(self.data.synthetic, face_fraction=self.net.face_fraction)
            self.data = replace(self.data, synthetic=synthetic)

    def to_dict(self) -> Dict[str, Any]:
        """The config as a nested dict of JSON types, without the derived keys."""
        values = json.loads(json.dumps(asdict(self)))
        for name in DERIVED_KEYS:
            *path, leaf = name.split(".")
            node = values
            for part in path:
                node = node[part]
            del node[leaf]
        return values

    @classmethod
    def from_dict(cls, values: Dict[str, Any]) -> "TrainConfig":
        """A config from a (possibly partial, nested) dict; unknown, moved or removed keys raise ValueError."""
        return _from_dict(cls(), values, "")

    @classmethod
    def from_stored(cls, values: Dict[str, Any]) -> "TrainConfig":
        """The config a checkpoint stores, also in the layout of older versions.

        Moved keys are read from their old place; a removed key is accepted when it
        holds the value whose behaviour is kept, and refused otherwise (the run
        cannot continue as configured).
        """
        values = json.loads(json.dumps(values))
        data = values.get("data")
        if isinstance(data, dict):
            for old, new in MOVED_KEYS.items():
                key = old.split(".", 1)[1]
                if key in data:
                    node = values
                    *path, leaf = new.split(".")
                    for part in path:
                        node = node.setdefault(part, {})
                    node[leaf] = data.pop(key)
            for old, (kept, why) in REMOVED_KEYS.items():
                key = old.split(".", 1)[1]
                if key in data and data.pop(key) != kept:
                    raise ValueError(
                        f"this run used {old}, which no longer exists ({why}); start a new run from its "
                        "network with --init instead of resuming it"
                    )
            synthetic = data.get("synthetic")
            if isinstance(synthetic, dict) and synthetic.get("framing") == "model":
                synthetic["framing"] = "face_width"
        return cls.from_dict(values)

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


def _numbers(config, prefix: str = "") -> Iterable[Tuple[str, float]]:
    """(dotted key, value) of every int and float field of a config, sections included."""
    for f in fields(config):
        value = getattr(config, f.name)
        if is_dataclass(value):
            yield from _numbers(value, f"{prefix}{f.name}.")
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            yield prefix + f.name, value


def _parse(text: str, like: Any, key: str) -> Any:
    """Converts an override's text to the type of the field's current value."""
    if isinstance(like, tuple):
        try:
            parsed = tuple(float(part) for part in text.split(","))
        except ValueError:
            parsed = ()
        if len(parsed) != len(like):
            raise ValueError(f"{key} must be {len(like)} comma-separated numbers, got {text!r}")
        return parsed
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
        problem = key_problem(name)
        if problem:
            raise ValueError(problem)
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
        elif isinstance(current, tuple):
            numbers = isinstance(value, (list, tuple)) and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in value
            )
            if not numbers or len(value) != len(current):
                raise ValueError(f"config key {name!r} must be a list of {len(current)} numbers, got {value!r}")
            changes[key] = tuple(float(v) for v in value)
        else:
            changes[key] = value
    return replace(base, **changes)


def apply_overrides(config: TrainConfig, overrides: Iterable[str]) -> TrainConfig:
    """Applies ``key=value`` strings (``section.key=value`` for net / data / data.synthetic / loss) to a config."""
    values: Dict[str, Any] = {}
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"override {item!r} must look like key=value (e.g. lr=3e-4 or net.backbone=mobilenetv2)")
        key, text = item.split("=", 1)
        problem = key_problem(key.strip())
        if problem:
            raise ValueError(problem)
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
