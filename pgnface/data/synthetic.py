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


@dataclass
class SyntheticConfig:
    """Distributions of the generator (angles in degrees, sizes in pixels)."""

    size: int = 128
    yaw_max: float = 90.0  # yaw ~ U(-yaw_max, yaw_max)
    pitch_std: float = 12.0  # pitch ~ N(0, std) clipped to +-pitch_max
    pitch_max: float = 35.0
    roll_std: float = 8.0
    roll_max: float = 30.0
    id_std: float = 1.0
    albedo_std: float = 1.0
    expression_prob: float = 0.35  # each expression is active with this probability
    face_fraction: float = 0.72  # face width (model x extent) / crop size, before jitter
    scale_jitter: float = 0.1
    shift_jitter: float = 0.06  # fraction of the crop size
    ambient: tuple = (0.35, 0.9)
    diffuse: tuple = (0.1, 0.8)
    light_contrast: float = 1.0  # > 1: stronger directional light, less ambient (same mean irradiance)
    photo_prob: float = 0.7  # background from the photo pool, when one is given
    head_prob: float = 0.0  # a shaded head (hair) and neck drawn behind the face (see _head_backdrop)
    hair_prob: float = 0.0  # hair painted over the forehead and temples (see _hair)
    neck_prob: float = 0.0  # a shaded skin neck under the jaw, lit like the face (see _neck)
    framing: str = "model"  # crop scale: "model" (face_fraction of the model's width) or "landmarks"
    # (side = sqrt(2) x the 2D landmark box's longer side, as the
    # AFLW2000-3D / 300W-LP crops), each with scale_jitter


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

    # --- a head behind the face ------------------------------------------------------

    # Ellipsoids in the built-in model's frame (mm; +y up, +z towards the camera), as
    # fractions of the face mask's width: the skull with its hair, and the neck.
    HEAD = ((0.0, 0.2, -0.8), (1.12, 1.45, 1.25))  # centre, semi-axes
    NECK = ((0.0, -1.0, -0.65), (0.62, 0.8, 0.62))
    HAIR = (
        (0.05, 0.04, 0.03),
        (0.18, 0.11, 0.06),
        (0.33, 0.21, 0.12),
        (0.62, 0.5, 0.3),
        (0.55, 0.55, 0.55),
        (0.45, 0.18, 0.08),
    )

    def _head_backdrop(self, g, background, rotation, scale, translation, albedo, group: int):
        """Draws a shaded hair-coloured head and a skin-coloured neck into [n, S, S, 3] backgrounds.

        The face mask ends at the forehead and jaw; photos show a head around
        it, and for a turned face the back of the head sticks out behind.
        Both are ellipsoids posed with the face (weak perspective: an
        ellipsoid projects to the ellipse whose covariance is s^2 (R A^2 R^T)
        restricted to x, y) and drawn with probability config.head_prob; a
        clip (`group` frames) shares its colours and whether it has a head.
        """
        n, S, dev = background.shape[0], self.config.size, self.device
        clips = n // group
        ys, xs = torch.meshgrid(
            torch.arange(S, device=dev, dtype=torch.float32) + 0.5,
            torch.arange(S, device=dev, dtype=torch.float32) + 0.5,
            indexing="ij",
        )
        pixels = torch.stack([xs, ys], -1).reshape(1, S * S, 2)
        draw = (torch.rand(clips, generator=g, device=dev) < self.config.head_prob).repeat_interleave(group)
        palette = torch.tensor(self.HAIR, device=dev)
        hair = palette[torch.randint(len(self.HAIR), (clips,), generator=g, device=dev)]
        hair = hair * self._uniform(g, (clips, 1), 0.7, 1.3)
        bald = torch.rand(clips, 1, generator=g, device=dev) < 0.08
        skin = self.morphable.albedo(albedo[::group]).mean(1).clamp(0, 1) * self._uniform(g, (clips, 1), 0.6, 0.95)
        hair = torch.where(bald, skin, hair).repeat_interleave(group, 0)
        skin = skin.repeat_interleave(group, 0)
        out = background.clone()
        width = self._width
        for (centre, axes), colour in ((self.NECK, skin), (self.HEAD, hair)):
            c = torch.tensor(centre, device=dev) * width
            a2 = torch.diag((torch.tensor(axes, device=dev) * width / 2) ** 2)
            c2 = (scale[:, None] * (rotation @ c) + translation)[:, :2]  # [n, 2]
            cov = (scale[:, None, None] ** 2 * (rotation @ a2 @ rotation.transpose(1, 2)))[:, :2, :2]
            d = pixels - c2[:, None]
            m = (d @ torch.linalg.inv(cov) * d).sum(-1).reshape(n, S, S)  # squared ellipse radius
            shade = (0.55 + 0.45 * (1 - m).clamp(0, 1).sqrt())[..., None]  # darker at the rim
            inside = ((m < 1) & draw[:, None, None])[..., None]
            out = torch.where(inside, (colour[:, None, None] * shade).clamp(0, 1), out)
        return out

    def _hair(self, g, n: int, group: int):
        """Hair painted over the upper face: per-vertex weights [n, N, 1] and colours [n, N, 3].

        The built-in face is bare skin up to the top of the forehead, while in
        photos hair (a hairline, a fringe, hair over the temples) covers part
        of it, so the skin region ends lower. Each face gets, with probability
        config.hair_prob: a hairline at a random height between the brows and
        the top of the mesh, tilted (a side fringe) and wavy, and hair over
        the temples beyond a random width. Colours come from the HAIR palette
        with strand-like streaks; a clip (`group` frames) shares its hair.
        """
        morphable, dev = self.morphable, self.device
        clips = n // group
        x, y = morphable.mean[:, 0].to(dev), morphable.mean[:, 1].to(dev)  # model space, millimetres
        brow_top = float(morphable.mean[morphable.landmark_vertices[17:27], 1].max())
        top = float(y.max())
        u = lambda lo, hi: self._uniform(g, (clips, 1), lo, hi)  # noqa: E731
        draw = (torch.rand(clips, 1, generator=g, device=dev) < self.config.hair_prob).float()
        height = u(brow_top + 4.0, top - 4.0)
        tilt, wave, freq, phase = u(-0.5, 0.5), u(0.0, 6.0), u(0.05, 0.2), u(0.0, 2 * math.pi)
        line = height + tilt * x + wave * torch.sin(freq * x + phase)  # [clips, N]
        side_x, side_y = u(50.0, 90.0), u(-20.0, 40.0)
        soft = 2.5  # mm: a soft edge, wider than a triangle of the built-in mesh
        above = torch.sigmoid((y - line) / soft)
        temples = torch.sigmoid((x.abs() - side_x) / soft) * torch.sigmoid((y - side_y) / soft)
        weight = (torch.maximum(above, temples) * draw)[..., None]
        palette = torch.tensor(self.HAIR, device=dev)
        colour = palette[torch.randint(len(self.HAIR), (clips,), generator=g, device=dev)] * u(0.7, 1.3)
        streaks = 0.85 + 0.15 * torch.sin(u(0.5, 1.5) * x + u(0.0, 2 * math.pi))  # [clips, N]
        colour = (colour[:, None, :] * streaks[..., None]).clamp(0, 1)
        return weight.repeat_interleave(group, 0), colour.repeat_interleave(group, 0)

    def _neck(self, g, background, albedo, gamma, rotation, scale, translation, group: int):
        """Renders a neck under the face into [n, S, S, 3] backgrounds, lit by the face's light.

        In photos skin goes on below the jaw, and only shading and a faint
        edge mark the chin; the built-in face mask ends at the jaw, so without
        a neck the chin is wherever skin stops. The neck is an elliptic
        cylinder (random width and depth) behind the chin, in the face's skin
        tone, darker just under the jaw, ending in a collar of random colour
        and height; drawn with probability config.neck_prob, before the face,
        which covers it. A clip (`group` frames) shares its neck.
        """
        n, dev = background.shape[0], self.device
        clips = n // group
        u = lambda lo, hi: self._uniform(g, (clips, 1), lo, hi)  # noqa: E731
        draw = torch.rand(clips, generator=g, device=dev) < self.config.neck_prob
        # Placed from the model's chin (iBUG point 8), in its millimetres.
        chin_y, chin_z = (float(v) for v in self.morphable.mean[self.morphable.landmark_vertices[8], 1:])
        rx, rz, front = u(42.0, 56.0), u(30.0, 42.0), chin_z + u(-9.4, 0.6)
        collar, collar_colour = chin_y + u(-91.0, -21.0), self._uniform(g, (clips, 1, 3), 0.05, 0.95)
        tone = u(0.75, 1.0)
        theta, ys = self._NECK_GRID
        theta, ys = theta.to(dev), ys.to(dev) + chin_y
        verts = torch.stack([rx * theta.cos(), ys.expand(clips, -1), front - rz + rz * theta.sin()], -1)
        skin = self.morphable.albedo(albedo[::group]).mean(1, keepdim=True).clamp(0, 1)  # [clips, 1, 3]
        under_jaw = 0.55 + 0.45 * ((chin_y + 49.0 - ys) / 50.0).clamp(0, 1)  # [1, M]
        colour = skin * (tone * under_jaw)[..., None]
        colour = torch.where((ys < collar)[..., None], collar_colour, colour)
        # Rendered only for the images that get a neck (every random number is drawn above).
        drawn = torch.nonzero(draw.repeat_interleave(group, 0)).flatten()
        if drawn.numel() == 0:
            return background
        pick = lambda x: x.repeat_interleave(group, 0)[drawn]  # noqa: E731
        camera = WeakPerspectiveCamera(scale[drawn], rotation[drawn], translation[drawn])
        out = render(
            pick(verts),
            self._neck_triangles().to(dev),
            pick(colour),
            gamma[drawn],
            camera,
            self.config.size,
            background=background[drawn],
        )
        background = background.clone()
        background[drawn] = out.image.clamp(0, 1)
        return background

    # Cylinder grid of the neck: angle around it x height above the chin (millimetres: from
    # hidden behind the jaw down past any crop's bottom edge).
    _NECK_ANGLES, _NECK_RINGS = 32, 12
    _NECK_GRID = (
        torch.linspace(0, 2 * math.pi, _NECK_ANGLES + 1)[:-1].repeat(_NECK_RINGS)[None],
        torch.linspace(49.0, -171.0, _NECK_RINGS).repeat_interleave(_NECK_ANGLES)[None],
    )

    def _neck_triangles(self) -> torch.Tensor:
        """[T, 3] int32 triangles of the neck cylinder, counter-clockwise seen from outside."""
        A, R = self._NECK_ANGLES, self._NECK_RINGS
        ring, j = torch.meshgrid(torch.arange(R - 1), torch.arange(A), indexing="ij")
        a, b = ring * A + j, ring * A + (j + 1) % A  # this ring
        c, d = a + A, b + A  # the ring below
        quads = torch.stack([torch.stack([a, b, d], -1), torch.stack([a, d, c], -1)], 2).reshape(-1, 3)
        return quads.to(torch.int32)

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
            # jitter drawn for the model framing is kept (a clip shares it).
            side = math.sqrt(2.0) * (unit.amax(1) - unit.amin(1))[:, :2].amax(1)
            scale = (S / side) * scale / (cfg.face_fraction * S / self._width)
        elif cfg.framing != "model":
            raise ValueError(f"SyntheticConfig.framing must be 'model' or 'landmarks', got {cfg.framing!r}")
        lm = unit * scale[:, None, None]
        centre = (lm.amax(1) + lm.amin(1)) / 2
        shift = cfg.shift_jitter * S * (2 * torch.rand(B, 2, generator=g, device=self.device) - 1)
        translation = torch.zeros(B, 3, device=self.device)
        translation[:, :2] = S / 2 - centre[:, :2] + shift
        translation[:, 2] = 1000.0
        return rotation, scale, translation

    def _render(self, id_c, exp_c, alb_c, gamma, rotation, scale, translation, background, hair=None):
        morphable, S = self.morphable, self.config.size
        camera = WeakPerspectiveCamera(scale, rotation, translation)
        verts = morphable.vertices(id_c, exp_c)
        colours = morphable.albedo(alb_c).clamp(0, 1)
        if hair is not None:
            weight, hair_colour = hair
            colours = colours + weight * (hair_colour - colours)
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
        if self.config.head_prob > 0:
            background = self._head_backdrop(g, background, rotation, scale, translation, alb_c, 1)
        hair = self._hair(g, B, 1) if self.config.hair_prob > 0 else None
        if self.config.neck_prob > 0:
            background = self._neck(g, background, alb_c, gamma, rotation, scale, translation, 1)
        out, verts, lm3d = self._render(id_c, exp_c, alb_c, gamma, rotation, scale, translation, background, hair)
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
        if self.config.head_prob > 0:
            background = self._head_backdrop(
                g, background, rotation, scale, translation, alb_c.repeat_interleave(F, 0), F
            )
        hair = self._hair(g, B * F, F) if self.config.hair_prob > 0 else None
        if self.config.neck_prob > 0:
            background = self._neck(
                g, background, alb_c.repeat_interleave(F, 0), flat(gamma), rotation, scale, translation, F
            )
        out, verts, lm3d = self._render(
            id_c.repeat_interleave(F, 0),
            flat(exp_c),
            alb_c.repeat_interleave(F, 0),
            flat(gamma),
            rotation,
            scale,
            translation,
            background,
            hair,
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
