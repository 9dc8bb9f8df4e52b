"""Training data for the raster classifiers: normalised scenes, random crops, augmentations.

Arrays in, tensors out; no file I/O (the CLI reads the scenes). Every random choice draws
from a ``torch.Generator`` the caller seeds, so a batch sequence is reproducible.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from torch import Tensor

from geoseg.errors import InputMismatchError
from geoseg.nn.losses import IGNORE_INDEX

__all__ = ["Augmentation", "Batch", "TrainingScene", "band_statistics", "buffer_centerlines", "centerline_target", "normalise", "sample_batch"]


@dataclass(frozen=True)
class Augmentation:
    """Random transforms applied to each training crop.

    Attributes
    ----------
    flips : bool
        Random horizontal and vertical flips.
    rotations : bool
        Random multiples of 90°.
    colour_jitter : float
        Per-band gain and offset drawn from ``U(-j, j)`` (in standard deviations of the band).
    scale : tuple of float
        Range of the random zoom factor (log-uniform); ``(1, 1)`` for none.
    free_rotation : bool
        Random rotation by any angle (uniform in [0°, 360°)), on top of ``rotations``: roads
        of every direction, not only the 4 of the training scenes' roads turned by 90°.
    """

    flips: bool = True
    rotations: bool = True
    colour_jitter: float = 0.1
    scale: tuple[float, float] = (1.0, 1.0)
    free_rotation: bool = False


@dataclass
class TrainingScene:
    """One training scene in memory.

    Attributes
    ----------
    image : numpy.ndarray
        ``(bands, rows, cols)`` float32, normalised (see :func:`normalise`).
    labels : numpy.ndarray
        ``(rows, cols)`` uint8: 1 road, 0 background, 255 unlabelled.
    edges : numpy.ndarray or None
        ``(rows, cols)`` uint8 0/1 edge ground truth (derived from ``labels`` when None).
    centerlines : numpy.ndarray or None
        ``(rows, cols)`` float32 centerline target in [0, 1] (:func:`centerline_target`), for the centerline head.
    """

    image: np.ndarray
    labels: np.ndarray
    edges: np.ndarray | None = None
    centerlines: np.ndarray | None = None

    def __post_init__(self) -> None:
        shape = self.image.shape[-2:]
        for name in ("labels", "edges", "centerlines"):
            arr = getattr(self, name)
            if arr is not None and arr.shape != shape:
                raise InputMismatchError(f"{name} raster is {arr.shape[1]}x{arr.shape[0]} px but the image is {shape[1]}x{shape[0]}")


@dataclass
class Batch:
    """A training batch: ``image`` (N, C, H, W) float, ``labels`` (N, H, W) int64, optional ``edges``/``centerlines`` (N, H, W) float."""

    image: Tensor
    labels: Tensor
    edges: Tensor | None
    centerlines: Tensor | None


def band_statistics(images: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per-band mean and standard deviation over all pixels of raw ``(bands, rows, cols)`` images."""
    stacked = np.concatenate([np.asarray(im, np.float64).reshape(im.shape[0], -1) for im in images], axis=1)
    return stacked.mean(axis=1), np.maximum(stacked.std(axis=1), 1e-6)


def normalise(image: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """z-score each band of a raw ``(bands, rows, cols)`` image, as float32."""
    m = np.asarray(mean, np.float32)[:, None, None]
    s = np.asarray(std, np.float32)[:, None, None]
    return (image.astype(np.float32) - m) / s


def buffer_centerlines(centerline: np.ndarray, radius_px: float) -> np.ndarray:
    """Buffer a 1-px centerline raster by ``radius_px`` (Euclidean), as uint8 0/1."""
    line = np.asarray(centerline) > 0
    if not line.any():
        return np.zeros(line.shape, np.uint8)
    return (ndimage.distance_transform_edt(~line) <= radius_px).astype(np.uint8)


def centerline_target(centerline: np.ndarray, sigma_px: float) -> np.ndarray:
    """Soft target of the centerline head: a Gaussian ridge along the annotated centerlines.

    ``exp(-d² / 2σ²)`` with ``d`` the Euclidean distance (pixels) to the nearest centerline
    pixel. Trained with a plain (soft-target) binary cross-entropy, the head then predicts a
    ridge that peaks on the annotated line instead of a band as wide as the road, so the
    ridge detection downstream (tensor voting + non-maximum suppression) places the line
    where the annotators did.

    Parameters
    ----------
    centerline : numpy.ndarray
        ``(rows, cols)`` 1-px centerline raster (non-zero = centerline).
    sigma_px : float
        Width of the ridge (standard deviation), pixels.

    Returns
    -------
    numpy.ndarray
        ``(rows, cols)`` float32 in ``[0, 1]`` (1 on the lines; all 0 without lines).
    """
    line = np.asarray(centerline) > 0
    if not line.any():
        return np.zeros(line.shape, np.float32)
    d = ndimage.distance_transform_edt(~line)
    return np.exp(-0.5 * (d / max(sigma_px, 1e-6)) ** 2).astype(np.float32)


def _uniform(gen: torch.Generator, lo: float, hi: float, n: int = 1) -> Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=gen, dtype=torch.float64)


def _crop(scene: TrainingScene, crop_px: int, aug: Augmentation, gen: torch.Generator) -> tuple[Tensor, ...]:
    """One augmented crop: image (C, s, s), labels (s, s), edges (s, s), centerlines (s, s)."""
    lo, hi = aug.scale
    zoom = math.exp(float(_uniform(gen, math.log(lo), math.log(hi)))) if hi > lo else lo
    side = max(8, int(round(crop_px / zoom)))
    final = side
    if aug.free_rotation:  # a turned crop is cut from the centre of a window that holds it in any direction
        side = int(math.ceil(side * math.sqrt(2)))
    rows, cols = scene.labels.shape
    r0 = int(torch.randint(0, max(rows - side, 0) + 1, (1,), generator=gen))
    c0 = int(torch.randint(0, max(cols - side, 0) + 1, (1,), generator=gen))
    win = (slice(r0, r0 + side), slice(c0, c0 + side))
    img = torch.from_numpy(np.ascontiguousarray(scene.image[(slice(None), *win)]))
    maps = [torch.from_numpy(scene.labels[win].astype(np.float32))]
    maps.append(torch.from_numpy(scene.edges[win].astype(np.float32)) if scene.edges is not None else torch.zeros_like(maps[0]))
    maps.append(torch.from_numpy(scene.centerlines[win].astype(np.float32)) if scene.centerlines is not None else torch.zeros_like(maps[0]))
    stack = torch.stack(maps)
    # a scene smaller than the window: pad (image with zeros = band mean, labels unlabelled)
    pad_r, pad_c = side - img.shape[1], side - img.shape[2]
    if pad_r or pad_c:
        img = F.pad(img, (0, pad_c, 0, pad_r))
        stack = torch.cat([F.pad(stack[:1], (0, pad_c, 0, pad_r), value=IGNORE_INDEX), F.pad(stack[1:], (0, pad_c, 0, pad_r))])
    if aug.free_rotation:
        img, stack = _turn(img, stack, float(_uniform(gen, 0.0, 2.0 * math.pi)), final)
        side = final
    if side != crop_px:
        img = F.interpolate(img[None], size=(crop_px, crop_px), mode="bilinear", align_corners=False)[0]
        stack = F.interpolate(stack[None], size=(crop_px, crop_px), mode="nearest")[0]
    if aug.flips:
        if bool(torch.rand(1, generator=gen) < 0.5):
            img, stack = img.flip(-1), stack.flip(-1)
        if bool(torch.rand(1, generator=gen) < 0.5):
            img, stack = img.flip(-2), stack.flip(-2)
    if aug.rotations:
        k = int(torch.randint(0, 4, (1,), generator=gen))
        img, stack = torch.rot90(img, k, (-2, -1)), torch.rot90(stack, k, (-2, -1))
    if aug.colour_jitter > 0:
        n = img.shape[0]
        gain = 1.0 + _uniform(gen, -aug.colour_jitter, aug.colour_jitter, n).float()
        offset = _uniform(gen, -aug.colour_jitter, aug.colour_jitter, n).float()
        img = img * gain[:, None, None] + offset[:, None, None]
    return img.contiguous(), stack[0].contiguous(), stack[1].contiguous(), stack[2].contiguous()


def _turn(img: Tensor, stack: Tensor, angle: float, side: int) -> tuple[Tensor, Tensor]:
    """The central ``side`` × ``side`` part of a square window turned by ``angle`` (radians).

    The image is sampled bilinearly, labels, edges and centerlines by nearest neighbour (so
    labels stay 0/1/255).
    """
    k = side / img.shape[-1]
    cos, sin = math.cos(angle) * k, math.sin(angle) * k
    theta = torch.tensor([[[cos, -sin, 0.0], [sin, cos, 0.0]]], dtype=torch.float32)
    grid = F.affine_grid(theta, [1, 1, side, side], align_corners=False)
    img = F.grid_sample(img[None], grid, mode="bilinear", padding_mode="border", align_corners=False)[0]
    stack = F.grid_sample(stack[None], grid, mode="nearest", padding_mode="border", align_corners=False)[0]
    return img, stack


def sample_batch(scenes: Sequence[TrainingScene], batch_size: int, crop_px: int, aug: Augmentation, gen: torch.Generator) -> Batch:
    """Draw a batch of augmented random crops from ``scenes`` (scene chosen uniformly per crop).

    Parameters
    ----------
    scenes : sequence of TrainingScene
        The training data.
    batch_size : int
        Crops per batch.
    crop_px : int
        Side of the crops after zoom (a multiple of the model stride).
    aug : Augmentation
        Random transforms.
    gen : torch.Generator
        Source of all random choices.
    """
    crops = [_crop(scenes[int(torch.randint(0, len(scenes), (1,), generator=gen))], crop_px, aug, gen) for _ in range(batch_size)]
    image, labels, edges, centerlines = (torch.stack(parts) for parts in zip(*crops))
    return Batch(
        image=image,
        labels=labels.round().long(),
        edges=edges if any(s.edges is not None for s in scenes) else None,
        centerlines=centerlines if any(s.centerlines is not None for s in scenes) else None,
    )
