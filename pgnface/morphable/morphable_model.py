"""The 3D morphable model (3DMM) container used everywhere in pgnface.

A model is a mean shape plus linear identity and expression bases, optional
albedo (colour) mean and basis, a triangle list, the model's 68 iBUG landmark
vertices and optional UVs. Coefficients are always in units of standard
deviations: the stored bases are already multiplied by their standard
deviations, so ``N(0, 1)`` coefficients give plausible faces.

Conventions, the same for every model whatever file it came from:
- right-handed model space, +y up, +z towards the viewer of a frontal face;
- triangles counter-clockwise seen from outside the surface (loaders flip
  files that wind the other way), so normals point out of the face and
  back-face culling means the same for every model;
- landmark k of ``landmark_vertices`` is iBUG-68 point ``landmark_ids[k]``
  (0-based); models that do not define all 68 (the Surrey model lacks the
  face contour) simply have fewer.
"""

from dataclasses import dataclass, field, fields, replace
from typing import Optional

import torch

from pgnface import ops
from pgnface.morphable.albedo import with_derived_albedo
from pgnface.morphable.builtin import builtin_fields
from pgnface.morphable.loaders import read_fields, write_npz


@dataclass
class MorphableModel:
    """A linear 3D morphable model. Shapes: N vertices, T triangles, L landmarks.

    Attributes:
        mean: [N, 3] mean shape.
        id_basis: [N, 3, Ki] identity basis, scaled by its standard deviations.
        exp_basis: [N, 3, Ke] expression basis, scaled likewise (Ke may be 0).
        triangles: [T, 3] int32, counter-clockwise seen from outside (T may be 0
            for landmark-only models).
        landmark_vertices: [L] int64 vertex index of each landmark.
        landmark_ids: [L] int64 iBUG-68 index (0..67) of each landmark.
        albedo_mean: [N, 3] RGB in [0, 1], or None (see pgnface.morphable.albedo).
        albedo_basis: [N, 3, Ka] scaled colour basis, or None.
        uv: [N, 2] texture coordinates in [0, 1] (v = 0 at the top), or None.
        id_std: [Ki] the standard deviations id_basis is scaled by (for reference
            and for converting other tools' coefficients), or None.
        exp_std: [Ke] the same for exp_basis, or None.
        albedo_std: [Ka] the same for albedo_basis, or None.
        name: where the model came from.
        units: length unit of the coordinates ("mm", "um", ...).
        albedo_derived: True when the colour model was derived from the mesh
            rather than read from the file.
    """

    mean: torch.Tensor
    id_basis: torch.Tensor
    exp_basis: torch.Tensor
    triangles: torch.Tensor
    landmark_vertices: torch.Tensor
    landmark_ids: torch.Tensor
    albedo_mean: Optional[torch.Tensor] = None
    albedo_basis: Optional[torch.Tensor] = None
    uv: Optional[torch.Tensor] = None
    id_std: Optional[torch.Tensor] = None
    exp_std: Optional[torch.Tensor] = None
    albedo_std: Optional[torch.Tensor] = None
    name: str = "unnamed"
    units: str = "unknown"
    albedo_derived: bool = False
    _basis: Optional[torch.Tensor] = field(default=None, repr=False, compare=False)

    def __post_init__(self):
        self.validate()

    # --- construction ----------------------------------------------------------

    @classmethod
    def load(cls, path, **kwargs) -> "MorphableModel":
        """Reads any supported 3DMM file.

        Args:
            path: a .npz, BFM2009 .mat or 3DDFA-style .pkl file.
            **kwargs: passed on to pgnface.morphable.loaders.read_fields.

        Returns:
            The MorphableModel.

        Raises:
            FileNotFoundError: the file does not exist.
            ValueError: the file is not a supported 3DMM layout or is inconsistent.
        """
        return cls(**read_fields(path, **kwargs))

    @classmethod
    def builtin(cls) -> "MorphableModel":
        """A fresh copy of the built-in synthetic default model (see pgnface.morphable.builtin).

        Returns:
            The MorphableModel, float32 on the CPU.
        """
        return cls(**builtin_fields())

    def save(self, path) -> None:
        """Writes the model in the pgnface .npz format (see pgnface.morphable.loaders).

        Args:
            path: the .npz file to write.
        """
        write_npz(self, path)

    def validate(self) -> None:
        """Checks shapes, dtypes and index ranges.

        Raises:
            ValueError: a field has the wrong shape or an index out of range (naming the field).
        """
        N = self.mean.shape[0] if self.mean.dim() == 2 else -1
        if self.mean.dim() != 2 or self.mean.shape[1] != 3:
            raise ValueError(f"{self.name}: mean must have shape [N, 3], got {list(self.mean.shape)}")
        for key in ("id_basis", "exp_basis", "albedo_basis"):
            basis = getattr(self, key)
            if basis is not None and (basis.dim() != 3 or basis.shape[:2] != (N, 3)):
                raise ValueError(f"{self.name}: {key} must have shape [{N}, 3, K], got {list(basis.shape)}")
        if self.albedo_mean is not None and self.albedo_mean.shape != (N, 3):
            raise ValueError(f"{self.name}: albedo_mean must have shape [{N}, 3], got {list(self.albedo_mean.shape)}")
        if (self.albedo_basis is None) != (self.albedo_mean is None):
            raise ValueError(f"{self.name}: albedo_mean and albedo_basis must be given together")
        if self.uv is not None and self.uv.shape != (N, 2):
            raise ValueError(f"{self.name}: uv must have shape [{N}, 2], got {list(self.uv.shape)}")
        if self.triangles.dim() != 2 or self.triangles.shape[1] != 3:
            raise ValueError(f"{self.name}: triangles must have shape [T, 3], got {list(self.triangles.shape)}")
        if self.triangles.numel() and (int(self.triangles.min()) < 0 or int(self.triangles.max()) >= N):
            raise ValueError(
                f"{self.name}: triangle indices must lie in [0, {N - 1}], got "
                f"[{int(self.triangles.min())}, {int(self.triangles.max())}]"
            )
        lv, li = self.landmark_vertices, self.landmark_ids
        if lv.dim() != 1 or li.shape != lv.shape:
            raise ValueError(
                f"{self.name}: landmark_vertices and landmark_ids must be equal-length 1-D, "
                f"got {list(lv.shape)} and {list(li.shape)}"
            )
        if lv.numel() and (int(lv.min()) < 0 or int(lv.max()) >= N):
            raise ValueError(
                f"{self.name}: landmark vertex indices must lie in [0, {N - 1}], got [{int(lv.min())}, {int(lv.max())}]"
            )
        if li.numel() and (int(li.min()) < 0 or int(li.max()) > 67 or len(set(li.tolist())) != len(li)):
            raise ValueError(f"{self.name}: landmark_ids must be distinct iBUG-68 indices in [0, 67]")

    # --- sizes -------------------------------------------------------------------

    @property
    def num_vertices(self) -> int:
        """N, the number of vertices."""
        return self.mean.shape[0]

    @property
    def num_id(self) -> int:
        """Ki, the number of identity components."""
        return self.id_basis.shape[2]

    @property
    def num_exp(self) -> int:
        """Ke, the number of expression components (may be 0)."""
        return self.exp_basis.shape[2]

    @property
    def num_albedo(self) -> int:
        """Albedo components (deriving the colour model first if the file had none)."""
        self._ensure_albedo()
        return self.albedo_basis.shape[2]

    @property
    def device(self) -> torch.device:
        """The device of the model's tensors."""
        return self.mean.device

    @property
    def dtype(self) -> torch.dtype:
        """The floating dtype of the model's tensors."""
        return self.mean.dtype

    # --- device / dtype ----------------------------------------------------------

    def to(self, device=None, dtype=None) -> "MorphableModel":
        """A copy on another device and/or floating dtype (index tensors keep theirs).

        Args:
            device: the target device, or None to keep it.
            dtype: the target floating dtype, or None to keep it.

        Returns:
            A new MorphableModel.
        """
        changes = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "_basis" or not isinstance(value, torch.Tensor):
                continue
            changes[f.name] = value.to(device=device, dtype=dtype if value.is_floating_point() else None)
        changes["_basis"] = None
        return replace(self, **changes)

    # --- synthesis ---------------------------------------------------------------

    @property
    def shape_basis(self) -> torch.Tensor:
        """[N, 3, Ki + Ke] identity and expression bases side by side (cached)."""
        if self._basis is None or self._basis.device != self.mean.device or self._basis.dtype != self.mean.dtype:
            self._basis = torch.cat([self.id_basis, self.exp_basis], dim=2).contiguous()
        return self._basis

    def _coefficients(self, id_coeffs, exp_coeffs):
        if id_coeffs is None and exp_coeffs is None:
            raise ValueError("give id_coeffs [B, Ki] and/or exp_coeffs [B, Ke]")
        ref = id_coeffs if id_coeffs is not None else exp_coeffs
        if ref.dim() != 2:
            raise ValueError(f"coefficients must have shape [B, K], got {list(ref.shape)}")
        B = ref.shape[0]
        if id_coeffs is None:
            id_coeffs = ref.new_zeros((B, self.num_id))
        if exp_coeffs is None:
            exp_coeffs = ref.new_zeros((B, self.num_exp))
        for name, c, k in (("id_coeffs", id_coeffs, self.num_id), ("exp_coeffs", exp_coeffs, self.num_exp)):
            if c.dim() != 2 or c.shape != (B, k):
                raise ValueError(f"{name} must have shape [B, {k}] = [{B}, {k}], got {list(c.shape)}")
        return torch.cat([id_coeffs, exp_coeffs], dim=1)

    def vertices(
        self, id_coeffs=None, exp_coeffs=None, rotation=None, scale=None, translation=None, *, index=None
    ) -> torch.Tensor:
        """Posed vertices ``s R (mean + B_id a + B_exp b) + t`` (fused op).

        Args:
            id_coeffs: [B, Ki] identity coefficients (units of std); zeros if None.
            exp_coeffs: [B, Ke] expression coefficients; zeros if None.
            rotation: optional [B, 3, 3] rotation.
            scale: optional [B] scale.
            translation: optional [B, 3] translation.
            index: optional [L] vertex indices to synthesize only those.

        Returns:
            [B, N, 3] vertices ([B, L, 3] with index).

        Raises:
            ValueError: neither coefficient set given, or coefficients of the wrong shape.
        """
        coeffs = self._coefficients(id_coeffs, exp_coeffs)
        return ops.synthesize(self.mean, self.shape_basis, coeffs, rotation, scale, translation, index=index)

    def landmarks(self, id_coeffs=None, exp_coeffs=None, rotation=None, scale=None, translation=None) -> torch.Tensor:
        """The model's landmarks, synthesized alone (iBUG indices in ``landmark_ids``).

        Args:
            id_coeffs: [B, Ki] identity coefficients; zeros if None.
            exp_coeffs: [B, Ke] expression coefficients; zeros if None.
            rotation: optional [B, 3, 3] rotation.
            scale: optional [B] scale.
            translation: optional [B, 3] translation.

        Returns:
            [B, L, 3] landmarks.
        """
        return self.vertices(id_coeffs, exp_coeffs, rotation, scale, translation, index=self.landmark_vertices)

    def albedo(self, albedo_coeffs: torch.Tensor) -> torch.Tensor:
        """Per-vertex RGB albedo (not clamped); derives a colour model first if the file had none.

        Args:
            albedo_coeffs: [B, Ka] albedo coefficients (units of std).

        Returns:
            [B, N, 3] albedo.
        """
        self._ensure_albedo()
        return ops.synthesize(self.albedo_mean, self.albedo_basis, albedo_coeffs)

    def _ensure_albedo(self) -> None:
        """Derives a colour model from the mesh (once) when the file had none."""
        if self.albedo_mean is None:
            derived = with_derived_albedo(self)
            self.albedo_mean, self.albedo_basis = derived.albedo_mean, derived.albedo_basis
            self.albedo_std, self.albedo_derived = derived.albedo_std, True
