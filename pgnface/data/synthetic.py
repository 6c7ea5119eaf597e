"""Batched, on-device synthetic face data with exact ground truth.

``SyntheticFaces(model).sample(B)`` renders B random faces: random identity,
expression, albedo and SH lighting, a random background (smooth noise,
stripes, cluttered shapes), a pose with yaw uniform over +-90 degrees and
in-the-wild-like pitch and roll, and crop jitter. ``sample_clips(B, F)``
renders B clips of F frames of one person each (shared identity and albedo,
smooth pose / expression / lighting trajectories), for multi-frame training.
Everything runs on the model's device and is deterministic for a seed.

Coordinates: crop pixels, OpenCV convention: x right, y down, z away from the
camera; pixel centres at integer + 0.5. 3D landmarks are (x, y, z) with z
centred on the landmarks' mean depth. The pose (R, s, t) maps model space to
this frame: ``p = s R x + t`` (see pgnface.morphable.camera).

Angle convention (degrees): the one of ``pgnface.ops.rotation_to_angles``,
applied to the head rotation in model space (+y up, +z towards the camera):
``R_model = Rz(roll) @ Ry(yaw) @ Rx(pitch)`` with right-handed elementary
rotations, so ``rotation_to_angles(R_model)`` gives the angles back. Positive
yaw turns the face towards the image's right, positive pitch tips the top of
the head towards the camera (the face looks down), positive roll rotates the
face counter-clockwise in the image. The image-frame rotation returned as
``rotation`` is ``FRONTAL @ R_model`` (FRONTAL is its own inverse).
"""

import math
from dataclasses import dataclass
from typing import Dict, Optional

import torch

from pgnface.morphable import FRONTAL, MorphableModel, WeakPerspectiveCamera, render
from pgnface.morphable.shading import directional_gamma
from pgnface.ops.pose import rotation_from_angles

FRAMINGS = ("face_width", "landmarks")


@dataclass
class SyntheticConfig:
    """Distributions of the generator (angles in degrees, sizes in pixels).

    Attributes:
        size: crop side S.
        yaw_max: yaw ~ U(-yaw_max, yaw_max).
        pitch_std, pitch_max: pitch ~ N(0, pitch_std) clipped to +-pitch_max.
        roll_std, roll_max: roll ~ N(0, roll_std) clipped to +-roll_max.
        id_std: spread of the identity coefficients (1 = the 3DMM's own range).
        albedo_std: spread of the albedo coefficients (1 = the 3DMM's own range; larger widens
            skin tone, redness, lip, brow and colour-field variation, clamped to valid colours).
        expression_prob: each expression is active with this probability.
        face_fraction: face width (the 3DMM's x extent) / crop size, before jitter.
        scale_jitter: crop scale varies by up to this fraction.
        shift_jitter: crop centre moves by up to this fraction of the crop size.
        ambient, diffuse: (low, high) ranges of the ambient and directional light.
        light_contrast: 1 = the default soft light; > 1 moves light from the ambient into the
            directional term (harder shading, a darker shadow side, the same mean irradiance).
        photo_prob: probability of a photo background, when a photo pool is given.
        framing: crop scale: "face_width" (face_fraction of the face's width) or "landmarks"
            (side = sqrt(2) x the 2D landmark box's longer side, as the AFLW2000-3D / 300W-LP
            crops), each with scale_jitter.
    """

    size: int = 128
    yaw_max: float = 90.0
    pitch_std: float = 12.0
    pitch_max: float = 35.0
    roll_std: float = 8.0
    roll_max: float = 30.0
    id_std: float = 1.0
    albedo_std: float = 1.0
    expression_prob: float = 0.35
    face_fraction: float = 0.72
    scale_jitter: float = 0.1
    shift_jitter: float = 0.06
    ambient: tuple = (0.35, 0.9)
    diffuse: tuple = (0.1, 0.8)
    light_contrast: float = 1.0
    photo_prob: float = 0.7
    framing: str = "face_width"

    def validate(self, prefix: str = "SyntheticConfig.") -> None:
        """Raises ValueError naming the first bad field (as `prefix` + field name)."""
        if self.framing == "model":
            raise ValueError(f"{prefix}framing 'model' is now called 'face_width'")
        if self.framing not in FRAMINGS:
            raise ValueError(f"{prefix}framing must be 'face_width' or 'landmarks', got {self.framing!r}")
        if not self.size >= 8:
            raise ValueError(f"{prefix}size must be at least 8 px, got {self.size!r}")
        for key in ("face_fraction", "light_contrast"):
            if not getattr(self, key) > 0:
                raise ValueError(f"{prefix}{key} must be > 0, got {getattr(self, key)!r}")
        for key in ("yaw_max", "pitch_std", "pitch_max", "roll_std", "roll_max", "id_std", "albedo_std"):
            if not getattr(self, key) >= 0:
                raise ValueError(f"{prefix}{key} must be >= 0, got {getattr(self, key)!r}")
        for key in ("expression_prob", "photo_prob", "scale_jitter", "shift_jitter"):
            if not 0 <= getattr(self, key) <= 1:
                raise ValueError(f"{prefix}{key} must be in [0, 1], got {getattr(self, key)!r}")
        for key in ("ambient", "diffuse"):
            low, high = getattr(self, key)
            if not 0 <= low <= high:
                raise ValueError(f"{prefix}{key} must be a range (low, high) with 0 <= low <= high, got {(low, high)}")


class SyntheticFaces:
    """Random faces rendered from a morphable model, with exact ground truth.

    Args:
        model: the 3DMM (MorphableModel.builtin() by default); its device is used.
        config: SyntheticConfig.
        seed: base seed; ``sample(..., seed=k)`` is deterministic for (seed, k).
        photos: optional pgnface.data.PhotoBackgrounds; each background is then
            a photo patch with probability config.photo_prob (the procedural
            backgrounds otherwise). Without photos the random stream is
            unchanged, so existing seeds give the same faces.
    """

    def __init__(
        self,
        morphable: Optional[MorphableModel] = None,
        config: Optional[SyntheticConfig] = None,
        seed: int = 0,
        photos=None,
    ):
        self.morphable = morphable if morphable is not None else MorphableModel.builtin()
        self.config = config or SyntheticConfig()
        self.config.validate()
        self.seed = seed
        self.photos = photos
        self._width = float(self.morphable.mean[:, 0].max() - self.morphable.mean[:, 0].min())
        self._calls = 0

    @property
    def device(self) -> torch.device:
        return self.morphable.device

    def _generator(self, seed: Optional[int]) -> torch.Generator:
        if seed is None:
            seed = self._calls
            self._calls += 1
        g = torch.Generator(device=self.device)
        g.manual_seed(self.seed * 1_000_003 + seed)
        return g

    def _uniform(self, g, shape, lo, hi):
        return torch.rand(shape, generator=g, device=self.device) * (hi - lo) + lo

    def _randn(self, g, shape):
        return torch.randn(shape, generator=g, device=self.device)

    # --- random parameters --------------------------------------------------------

    def _expressions(self, g, B):
        cfg, K = self.config, self.morphable.num_exp
        active = torch.rand(B, K, generator=g, device=self.device) < cfg.expression_prob
        return active * self._uniform(g, (B, K), 0.0, 1.0)

    def _angles(self, g, B):
        cfg = self.config
        yaw = self._uniform(g, (B,), -cfg.yaw_max, cfg.yaw_max)
        pitch = (self._randn(g, (B,)) * cfg.pitch_std).clamp(-cfg.pitch_max, cfg.pitch_max)
        roll = (self._randn(g, (B,)) * cfg.roll_std).clamp(-cfg.roll_max, cfg.roll_max)
        return yaw, pitch, roll

    def _lighting(self, g, B):
        cfg = self.config
        ambient = self._uniform(g, (B,), *cfg.ambient)
        diffuse = self._uniform(g, (B,), *cfg.diffuse)
        if cfg.light_contrast != 1.0:
            # Move light from the ambient term into the directional one: the frontal
            # irradiance (ambient + diffuse / 4 + diffuse / 2) barely changes, the shadow side darkens.
            extra = (cfg.light_contrast - 1.0) * diffuse
            ambient = (ambient - 0.75 * extra).clamp(min=0.05)
            diffuse = diffuse + extra
        direction = torch.nn.functional.normalize(
            self._randn(g, (B, 3)) * torch.tensor([1.0, 0.7, 0.5], device=self.device)
            + torch.tensor([0.0, 0.3, 1.0], device=self.device),
            dim=1,
        )
        tint = 1 + 0.04 * self._randn(g, (B, 3))
        gamma = torch.zeros(B, 9, 3, device=self.device)
        unit = directional_gamma(1, ambient=0.0, diffuse=1.0, direction=(0.0, 0.0, 1.0), device=self.device)[0]
        c1 = float(unit[2, 0])  # SH weight of a unit light along the axis
        gamma[:, 0] = (ambient + 0.25 * diffuse)[:, None] * tint
        gamma[:, 1] = (diffuse * c1 * direction[:, 1])[:, None] * tint
        gamma[:, 2] = (diffuse * c1 * direction[:, 2])[:, None] * tint
        gamma[:, 3] = (diffuse * c1 * direction[:, 0])[:, None] * tint
        gamma[:, 4:] = 0.05 * self._randn(g, (B, 5, 1))
        return gamma

    def backgrounds(self, g, B) -> torch.Tensor:
        """[B, H, W, 3] random backgrounds: smooth noise, stripes, cluttered shapes or photo patches."""
        S, dev = self.config.size, self.device
        kind = torch.randint(0, 3, (B,), generator=g, device=dev)
        out = torch.empty(B, S, S, 3, device=dev)
        ys, xs = torch.meshgrid(
            torch.arange(S, device=dev, dtype=torch.float32),
            torch.arange(S, device=dev, dtype=torch.float32),
            indexing="ij",
        )
        # Each kind is drawn only for the images that get it.
        for k, draw in enumerate((self._smooth, self._stripes, self._clutter)):
            idx = torch.nonzero(kind == k).flatten()
            if idx.numel():
                out[idx] = draw(g, idx.numel(), xs, ys)
        if self.photos is not None:
            use = torch.nonzero(torch.rand(B, generator=g, device=dev) < self.config.photo_prob).flatten()
            if use.numel():
                out[use] = self.photos.draw(g, use.numel(), dev)
        return out

    def _smooth(self, g, n, xs, ys):
        S = self.config.size
        coarse = torch.rand(n, 3, 6, 6, generator=g, device=self.device)
        smooth = torch.nn.functional.interpolate(coarse, size=(S, S), mode="bicubic", align_corners=False)
        return smooth.clamp(0, 1).permute(0, 2, 3, 1)

    def _stripes(self, g, n, xs, ys):
        angle = self._uniform(g, (n, 1, 1), 0, math.pi)
        freq = self._uniform(g, (n, 1, 1), 0.05, 0.4)
        stripes = (0.5 + 0.5 * torch.sin((xs * angle.cos() + ys * angle.sin()) * freq))[..., None]
        colours = torch.rand(n, 2, 3, generator=g, device=self.device)
        return stripes * colours[:, None, None, 0] + (1 - stripes) * colours[:, None, None, 1]

    def _clutter(self, g, n, xs, ys):
        S = self.config.size
        canvas = self._smooth(g, n, xs, ys)
        for _ in range(6):
            cx, cy = self._uniform(g, (n, 1, 1), 0, S), self._uniform(g, (n, 1, 1), 0, S)
            rx, ry = self._uniform(g, (n, 1, 1), S * 0.05, S * 0.3), self._uniform(g, (n, 1, 1), S * 0.05, S * 0.3)
            is_box = torch.rand(n, 1, 1, generator=g, device=self.device) < 0.5
            dx, dy = (xs - cx) / rx, (ys - cy) / ry
            inside = torch.where(is_box, (dx.abs() < 1) & (dy.abs() < 1), dx * dx + dy * dy < 1)
            colour = torch.rand(n, 1, 1, 3, generator=g, device=self.device)
            canvas = torch.where(inside[..., None], colour, canvas)
        return canvas

    # --- rendering ----------------------------------------------------------------

    def _crop_scale(self, g, B):
        cfg, S = self.config, self.config.size
        jitter = 1 + cfg.scale_jitter * (2 * torch.rand(B, generator=g, device=self.device) - 1)
        return (cfg.face_fraction * S / self._width) * jitter

    def _pose(self, g, rot_model, B, scale=None):
        """Image rotation, scale and translation that put the face in the crop, with jitter."""
        cfg, S = self.config, self.config.size
        if scale is None:
            scale = self._crop_scale(g, B)
        rotation = FRONTAL.to(self.device) @ rot_model
        # The mean face's landmarks at unit scale; scaled below (the landmarks are s R x).
        unit = self.morphable.landmarks(
            torch.zeros(B, self.morphable.num_id, device=self.device), None, rotation, torch.ones(B, device=self.device)
        )
        if cfg.framing == "landmarks":
            # The standard landmark-box crop: side = sqrt(2) x the box's longer side. The
            # jitter drawn for the face-width framing is kept (a clip shares it).
            side = math.sqrt(2.0) * (unit.amax(1) - unit.amin(1))[:, :2].amax(1)
            scale = (S / side) * scale / (cfg.face_fraction * S / self._width)
        lm = unit * scale[:, None, None]
        centre = (lm.amax(1) + lm.amin(1)) / 2
        shift = cfg.shift_jitter * S * (2 * torch.rand(B, 2, generator=g, device=self.device) - 1)
        translation = torch.zeros(B, 3, device=self.device)
        translation[:, :2] = S / 2 - centre[:, :2] + shift
        translation[:, 2] = 1000.0
        return rotation, scale, translation

    def _render(self, id_c, exp_c, alb_c, gamma, rotation, scale, translation, background):
        morphable, S = self.morphable, self.config.size
        camera = WeakPerspectiveCamera(scale, rotation, translation)
        verts = morphable.vertices(id_c, exp_c)
        colours = morphable.albedo(alb_c).clamp(0, 1)
        out = render(verts, morphable.triangles, colours, gamma, camera, S, background=background)
        image_verts = out.image_points
        lm3d = image_verts[:, morphable.landmark_vertices]
        lm3d = torch.cat([lm3d[..., :2], lm3d[..., 2:] - lm3d[..., 2:].mean(1, keepdim=True)], -1)
        return out, image_verts, lm3d

    @torch.no_grad()
    def sample(self, batch_size: int, seed: Optional[int] = None) -> Dict[str, torch.Tensor]:
        """Renders `batch_size` random faces.

        Returns a dict of tensors (B = batch_size, S = config.size, L = landmarks):
            image [B, 3, S, S] in [0, 1]; mask [B, S, S]; landmarks3d [B, L, 3]
            (x, y, z) crop pixels; landmarks2d [B, L, 2]; landmark_visible [B, L];
            vertices [B, N, 3] crop-frame vertices; yaw, pitch, roll [B] degrees;
            rotation [B, 3, 3], scale [B], translation [B, 3] (p = s R x + t);
            id, exp, albedo coefficients; gamma [B, 9, 3] SH lighting.
        """
        g = self._generator(seed)
        B, morphable = batch_size, self.morphable
        id_c = self._randn(g, (B, morphable.num_id)) * self.config.id_std
        exp_c = self._expressions(g, B)
        alb_c = self._randn(g, (B, morphable.num_albedo)) * self.config.albedo_std
        gamma = self._lighting(g, B)
        yaw, pitch, roll = self._angles(g, B)
        rotation, scale, translation = self._pose(g, rotation_from_angles(yaw, pitch, roll), B)
        background = self.backgrounds(g, B)
        out, verts, lm3d = self._render(id_c, exp_c, alb_c, gamma, rotation, scale, translation, background)
        return dict(
            image=out.image.clamp(0, 1).permute(0, 3, 1, 2).contiguous(),
            mask=out.mask,
            landmarks3d=lm3d,
            landmarks2d=lm3d[..., :2].contiguous(),
            landmark_visible=out.visible[:, morphable.landmark_vertices],
            vertices=verts,
            yaw=yaw,
            pitch=pitch,
            roll=roll,
            rotation=rotation,
            scale=scale,
            translation=translation,
            id=id_c,
            exp=exp_c,
            albedo=alb_c,
            gamma=gamma,
        )

    @torch.no_grad()
    def sample_clips(self, batch_size: int, frames: int, seed: Optional[int] = None) -> Dict[str, torch.Tensor]:
        """Renders `batch_size` clips of `frames` frames of one person each.

        Identity and albedo are shared within a clip; pose, expression and
        lighting follow smooth trajectories (eased interpolation between two
        random states plus a slow oscillation), as in a video. Returns the
        same keys as :meth:`sample`, each with a [B, F, ...] leading shape.
        """
        g = self._generator(seed)
        B, F, morphable = batch_size, frames, self.morphable
        id_c = self._randn(g, (B, morphable.num_id)) * self.config.id_std
        alb_c = self._randn(g, (B, morphable.num_albedo)) * self.config.albedo_std
        t = torch.linspace(0, 1, F, device=self.device)
        ease = (t * t * (3 - 2 * t))[None, :]  # [1, F]

        def trajectory(start, end, wobble):
            phase = self._uniform(g, start.shape, 0, 2 * math.pi)
            path = start[:, None] + (end - start)[:, None] * ease.reshape(1, F, *([1] * (start.dim() - 1)))
            osc = torch.sin(2 * math.pi * t.reshape(1, F, *([1] * (start.dim() - 1))) + phase[:, None])
            return path + wobble * osc

        angles = [trajectory(a0, a1, w) for a0, a1, w in zip(self._angles(g, B), self._angles(g, B), (4.0, 2.0, 1.5))]
        angles[0] = angles[0].clamp(-self.config.yaw_max, self.config.yaw_max)
        exp_c = trajectory(self._expressions(g, B), self._expressions(g, B), 0.05).clamp(min=0)
        gamma = trajectory(self._lighting(g, B), self._lighting(g, B), 0.0)
        flat = lambda x: x.reshape(B * F, *x.shape[2:])  # noqa: E731
        yaw, pitch, roll = (flat(a) for a in angles)
        rot_model = rotation_from_angles(yaw, pitch, roll)
        scale = self._crop_scale(g, B).repeat_interleave(F)  # one crop scale per clip
        rotation, scale, translation = self._pose(g, rot_model, B * F, scale)
        S = self.config.size
        background = self.backgrounds(g, B)[:, None].expand(B, F, S, S, 3).reshape(B * F, S, S, 3)
        out, verts, lm3d = self._render(
            id_c.repeat_interleave(F, 0),
            flat(exp_c),
            alb_c.repeat_interleave(F, 0),
            flat(gamma),
            rotation,
            scale,
            translation,
            background,
        )
        unflat = lambda x: x.reshape(B, F, *x.shape[1:])  # noqa: E731
        return dict(
            image=unflat(out.image.clamp(0, 1).permute(0, 3, 1, 2).contiguous()),
            mask=unflat(out.mask),
            landmarks3d=unflat(lm3d),
            landmarks2d=unflat(lm3d[..., :2].contiguous()),
            landmark_visible=unflat(out.visible[:, morphable.landmark_vertices]),
            vertices=unflat(verts),
            yaw=unflat(yaw),
            pitch=unflat(pitch),
            roll=unflat(roll),
            rotation=unflat(rotation),
            scale=unflat(scale),
            translation=unflat(translation),
            id=id_c,
            exp=exp_c,
            albedo=alb_c,
            gamma=gamma,
        )
