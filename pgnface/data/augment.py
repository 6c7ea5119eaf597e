"""Photo-like image augmentation for training crops: colour, blur, noise, JPEG, occlusion.

Synthetic renders are clean; photographs are not. ``augment_images`` degrades
a batch the ways real photos differ from renders. Geometry is untouched, so
landmark and mesh labels stay valid. Every random number comes from the given
generator, so a batch stays a pure function of the training step's seed.

    images = augment_images(images, generator, strength=1.0, group=clip_frames)
"""

import cv2
import numpy as np
import torch

GREY = torch.tensor([0.299, 0.587, 0.114])


def _uniform(r: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    return lo + (hi - lo) * r


def colour_jitter(images: torch.Tensor, r: torch.Tensor, strength: float) -> torch.Tensor:
    """Brightness, contrast, saturation, per-channel gain and gamma; then 5% become grey.

    Args:
        images: [n, 3, S, S] in [0, 1].
        r: [n, 8] uniform random numbers (one row per image; rows may repeat within a clip).
        strength: 0 (nothing) to 1 (the full ranges).

    Returns:
        [n, 3, S, S] in [0, 1].
    """
    s = strength
    view = (-1, 1, 1, 1)
    gain = _uniform(r[:, :3], 1 - 0.12 * s, 1 + 0.12 * s)[:, :, None, None]
    brightness = _uniform(r[:, 3], 1 - 0.35 * s, 1 + 0.25 * s).view(view)
    contrast = _uniform(r[:, 4], 1 - 0.4 * s, 1 + 0.3 * s).view(view)
    saturation = _uniform(r[:, 5], 1 - 0.6 * s, 1 + 0.3 * s).view(view)
    grey_weights = GREY.to(images).view(1, 3, 1, 1)
    x = images * gain * brightness
    grey = (x * grey_weights).sum(1, keepdim=True)
    x = grey + saturation * (x - grey)
    mean = grey.mean((2, 3), keepdim=True)
    x = (mean + contrast * (x - mean)).clamp(0, 1)
    gamma = torch.exp(_uniform(r[:, 6], -0.3 * s, 0.3 * s)).view(view)
    x = x.clamp_min(1e-6) ** gamma
    to_grey = (r[:, 7] < 0.05 * s).view(view)
    return torch.where(to_grey, (x * grey_weights).sum(1, keepdim=True).expand_as(x), x)


def _occlude(image: np.ndarray, r: np.ndarray) -> None:
    """Paints one rectangle or ellipse (10-40% of the side, random colour and texture) in place."""
    S = image.shape[0]
    w, h = (_uniform(torch.tensor(r[:2]), 0.1, 0.4).numpy() * S).astype(int) + 1
    cx, cy = (_uniform(torch.tensor(r[2:4]), 0.2, 0.8).numpy() * S).astype(int)
    colour = tuple(int(c) for c in (r[4:7] * 255))
    mask = np.zeros((S, S), np.uint8)
    if r[7] < 0.5:
        cv2.rectangle(mask, (cx - w // 2, cy - h // 2), (cx + w // 2, cy + h // 2), 255, -1)
    else:
        cv2.ellipse(mask, (int(cx), int(cy)), (int(w // 2), int(h // 2)), float(r[8] * 180), 0, 360, 255, -1)
    shade = 0.75 + 0.25 * np.sin(np.arange(S) * (0.1 + r[9]))[None, :, None]
    fill = np.clip(np.array(colour, np.float32)[None, None] * shade, 0, 255).astype(np.uint8)
    image[mask > 0] = np.broadcast_to(fill, image.shape)[mask > 0]


def degrade(image: np.ndarray, r: np.ndarray, strength: float) -> np.ndarray:
    """Occlusion, Gaussian blur, noise and JPEG on one image.

    Args:
        image: [S, S, 3] uint8 RGB (the occlusion paints it in place).
        r: [16] uniform random numbers that decide what happens.
        strength: 0 (nothing) to 1 (the full ranges).

    Returns:
        [S, S, 3] uint8 RGB, contiguous.
    """
    s = strength
    if r[0] < 0.2 * s:
        _occlude(image, r[6:16])
    if r[1] < 0.35 * s:
        sigma = 0.4 + 1.4 * s * r[2]
        image = cv2.GaussianBlur(image, (0, 0), sigmaX=sigma)
    if r[3] < 0.4 * s:
        rng = np.random.default_rng(int(r[4] * 2**31))
        noise = rng.normal(0.0, 255 * 0.04 * s * r[5], image.shape)
        image = np.clip(image + noise, 0, 255).astype(np.uint8)
    if r[5] < 0.4 * s:
        quality = int(25 + 65 * r[2])
        ok, buf = cv2.imencode(".jpg", image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
        if ok:
            image = cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1]
    return np.ascontiguousarray(image)


def augment_images(images: torch.Tensor, g: torch.Generator, strength: float = 1.0, group: int = 1) -> torch.Tensor:
    """Photo-like augmentation of a batch (a new tensor; the input is not changed).

    Args:
        images: [n, 3, S, S] RGB in [0, 1] (any device; the degradations run on the CPU).
        g: random generator (CPU).
        strength: 0 (nothing) to 1 (the full ranges); scales how often and how much.
        group: consecutive images sharing their colour change (a clip's frames);
            n must be a multiple of it. Blur, noise, JPEG and occlusion are per image.

    Returns:
        [n, 3, S, S] float tensor on the input's device, quantised to 8 bits like a photo.

    Raises:
        ValueError: images is not [n, 3, S, S], or n is not a multiple of group.
    """
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be [n, 3, S, S], got {tuple(images.shape)}")
    n = images.shape[0]
    if group < 1 or n % group:
        raise ValueError(f"the batch of {n} images is not a whole number of groups of {group}")
    if strength <= 0:
        return images.clone()
    colour = torch.rand(n // group, 8, generator=g).repeat_interleave(group, 0)
    degrade_r = torch.rand(n, 16, generator=g, dtype=torch.float64).numpy()
    x = colour_jitter(images.detach().float().cpu(), colour, strength)
    x = (x * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    out = np.stack([degrade(x[i].copy(), degrade_r[i], strength) for i in range(n)])
    return torch.from_numpy(out).permute(0, 3, 1, 2).float().div(255).to(images.device)
