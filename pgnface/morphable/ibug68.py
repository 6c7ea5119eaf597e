"""The iBUG-68 landmark scheme's left/right pairing, for mirrored images.

mirrored = mirror_landmarks(landmarks, size)   # the landmarks of images.flip(-1)
"""

import torch

# Landmark i of a mirrored face is landmark IBUG68_MIRROR[i] of the original (0-based).
IBUG68_MIRROR = (
    list(range(16, -1, -1))  # jaw 0..16
    + list(range(26, 16, -1))  # brows 17..26
    + [27, 28, 29, 30]
    + [35, 34, 33, 32, 31]  # nose bridge, nostrils
    + [45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40]  # eyes
    + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55]  # outer lips
    + [64, 63, 62, 61, 60, 67, 66, 65]
)  # inner lips


def mirror_landmarks(landmarks: torch.Tensor, size: float) -> torch.Tensor:
    """The landmarks of horizontally mirrored crops.

    u -> S - u (pixel centres at i + 0.5 map onto each other), left and right
    points swap names; v and any further columns (depth) are unchanged.

    Args:
        landmarks: [B, 68, 2+] crop-pixel iBUG-68 landmarks.
        size: crop side S in pixels.

    Returns:
        [B, 68, 2+] mirrored landmarks.

    Raises:
        ValueError: landmarks is not [B, 68, 2+].
    """
    if landmarks.dim() != 3 or landmarks.shape[1] != 68 or landmarks.shape[2] < 2:
        raise ValueError(f"landmarks must be [B, 68, 2+] iBUG-68 points, got {list(landmarks.shape)}")
    out = landmarks[:, torch.tensor(IBUG68_MIRROR, device=landmarks.device)].clone()
    out[..., 0] = size - out[..., 0]
    return out
