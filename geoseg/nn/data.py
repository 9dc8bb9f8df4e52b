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
from geoseg.nn.arrays import IGNORE_INDEX

__all__ = ["Augmentation", "Batch", "TrainingScene", "buffer_centerlines", "centerline_target", "sample_batch"]


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
        ``(bands, rows, cols)`` float32, normalised (see :func:`geoseg.nn.arrays.normalise`).
    labels : numpy.ndarray
        ``(rows, cols)`` uint8: 1 road, 0 background, 255 unlabelled.
    edges : numpy.ndarray or None
        ``(rows, cols)`` uint8 0/1 edge ground truth (derived from ``labels`` when None).
    centerlines : numpy.ndarray or None
        ``(rows, cols)`` float32 centerline target in [0, 1] (:func:`centerline_target`), for the centerline head.
    weight : float
        Relative probability that a crop comes from this scene (:func:`sample_batch`).
    """

    image: np.ndarray
    labels: np.ndarray
    edges: np.ndarray | None = None
    centerlines: np.ndarray | None = None
    weight: float = 1.0

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


@dataclass(frozen=True)
class _CropDraw:
    """The random choices of one crop, as a map from crop pixels to scene pixels.

    Crop pixel ``(i, j)`` (offsets ``v = i + ½ − s/2``, ``u = j + ½ − s/2`` from the crop's
    centre) samples the scene at row ``centre[0] + m[0]·v + m[1]·u`` and column
    ``centre[1] + m[2]·v + m[3]·u``: zoom, free rotation, flips and quarter turns in one
    affine map, so each crop is resampled once.
    """

    scene: int
    centre: tuple[float, float]
    matrix: tuple[float, float, float, float]
    gain: Tensor | None
    offset: Tensor | None


def _pick_scene(scenes: Sequence[TrainingScene], gen: torch.Generator) -> int:
    """Index of a scene drawn with probability proportional to its weight (uniformly when all are equal)."""
    weights = [s.weight for s in scenes]
    if min(weights) == max(weights):
        return int(torch.randint(0, len(scenes), (1,), generator=gen))
    return int(torch.multinomial(torch.tensor(weights, dtype=torch.float64), 1, generator=gen))


def _draw(scenes: Sequence[TrainingScene], crop_px: int, aug: Augmentation, gen: torch.Generator) -> _CropDraw:
    """Draw one crop's scene, window, angle, flips, quarter turns and colour jitter from ``gen``.

    The window is ``round(crop_px / zoom)`` px (``√2`` times that, rounded up, with free
    rotation, so that the turned crop fits in any direction), placed uniformly where it fits
    in the scene (at the top-left corner of a smaller scene, which is then padded); the crop
    is its central part turned by the angle, scaled to ``crop_px``, flipped and turned by the
    quarter turns, in that order.
    """
    index = _pick_scene(scenes, gen)
    scene = scenes[index]
    lo, hi = aug.scale
    zoom = math.exp(float(_uniform(gen, math.log(lo), math.log(hi)))) if hi > lo else lo
    side = max(8, int(round(crop_px / zoom)))
    window = int(math.ceil(side * math.sqrt(2))) if aug.free_rotation else side
    rows, cols = scene.labels.shape
    r0 = int(torch.randint(0, max(rows - window, 0) + 1, (1,), generator=gen))
    c0 = int(torch.randint(0, max(cols - window, 0) + 1, (1,), generator=gen))
    angle = float(_uniform(gen, 0.0, 2.0 * math.pi)) if aug.free_rotation else 0.0
    h_flip = v_flip = False
    if aug.flips:
        h_flip = bool(torch.rand(1, generator=gen) < 0.5)
        v_flip = bool(torch.rand(1, generator=gen) < 0.5)
    turns = int(torch.randint(0, 4, (1,), generator=gen)) if aug.rotations else 0
    gain = offset = None
    if aug.colour_jitter > 0:
        n = scene.image.shape[0]
        gain = 1.0 + _uniform(gen, -aug.colour_jitter, aug.colour_jitter, n).float()
        offset = _uniform(gen, -aug.colour_jitter, aug.colour_jitter, n).float()
    # (v, u) of the unturned, unflipped crop as linear forms (coefficients of v, u) of the output's (v, u)
    v, u = (1.0, 0.0), (0.0, 1.0)
    for _ in range(turns):  # torch.rot90(x, 1, (-2, -1)): output (v, u) shows input (u, -v)
        v, u = u, (-v[0], -v[1])
    if v_flip:
        v = (-v[0], -v[1])
    if h_flip:
        u = (-u[0], -u[1])
    f = side / crop_px
    cos, sin = math.cos(angle) * f, math.sin(angle) * f
    matrix = (
        sin * u[0] + cos * v[0], sin * u[1] + cos * v[1],
        cos * u[0] - sin * v[0], cos * u[1] - sin * v[1],
    )  # fmt: skip
    centre = (r0 + (window - 1) / 2, c0 + (window - 1) / 2)
    return _CropDraw(index, centre, matrix, gain, offset)


def _sample_points(draws: Sequence[_CropDraw], crop_px: int) -> tuple[Tensor, Tensor]:
    """Scene rows and columns (float64, ``(len(draws), crop_px, crop_px)``) that the crops' pixels sample."""
    offsets = torch.arange(crop_px, dtype=torch.float64) + 0.5 - crop_px / 2
    v, u = offsets[None, :, None], offsets[None, None, :]
    centre = torch.tensor([d.centre for d in draws], dtype=torch.float64)[:, :, None, None]
    m = torch.tensor([d.matrix for d in draws], dtype=torch.float64)[:, :, None, None]
    return centre[:, 0] + m[:, 0] * v + m[:, 1] * u, centre[:, 1] + m[:, 2] * v + m[:, 3] * u


@dataclass(frozen=True)
class _Nearest:
    """The raster pixels nearest to float positions: flat indices (clamped onto the raster) and
    whether each position lies on it. Computed once per scene, then read from every raster of
    that scene's grid (labels, edges, centerlines)."""

    index: Tensor
    inside: Tensor

    @classmethod
    def at(cls, rows: Tensor, cols: Tensor, shape: tuple[int, int]) -> _Nearest:
        h, w = shape
        r, c = torch.round(rows).long(), torch.round(cols).long()
        inside = (r >= 0) & (r < h) & (c >= 0) & (c < w)
        return cls(r.clamp_(0, h - 1) * w + c.clamp_(0, w - 1), inside)

    def sample(self, raster: np.ndarray, outside: float, dtype: torch.dtype) -> Tensor:
        """``raster``'s values at the positions, ``outside`` beyond it."""
        values = torch.take(torch.from_numpy(np.ascontiguousarray(raster)), self.index).to(dtype)
        return values.masked_fill_(~self.inside, outside)


def sample_batch(scenes: Sequence[TrainingScene], batch_size: int, crop_px: int, aug: Augmentation, gen: torch.Generator) -> Batch:
    """Draw a batch of augmented random crops from ``scenes`` (scene chosen per crop, in proportion to its weight).

    Each crop is resampled from its scene once, through the affine map of its zoom, free
    rotation, flips and quarter turns: the image bilinearly, labels, edges and centerlines by
    nearest neighbour (so labels stay 0/1/255); beyond the scene the image is 0 (the band
    mean after :func:`~geoseg.nn.arrays.normalise`), labels are unlabelled, edges and centerlines 0. The crops
    of one scene are sampled together, by one ``grid_sample`` call.

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

    Returns
    -------
    Batch
    """
    draws = [_draw(scenes, crop_px, aug, gen) for _ in range(batch_size)]
    rows, cols = _sample_points(draws, crop_px)
    image = torch.empty((batch_size, scenes[0].image.shape[0], crop_px, crop_px), dtype=torch.float32)
    labels = torch.empty((batch_size, crop_px, crop_px), dtype=torch.long)
    has_edges, has_lines = any(s.edges is not None for s in scenes), any(s.centerlines is not None for s in scenes)
    edges = torch.zeros((batch_size, crop_px, crop_px), dtype=torch.float32) if has_edges else None
    lines = torch.zeros((batch_size, crop_px, crop_px), dtype=torch.float32) if has_lines else None
    for index in sorted({d.scene for d in draws}):
        scene = scenes[index]
        sel = torch.tensor([k for k, d in enumerate(draws) if d.scene == index])
        r, c = rows[sel], cols[sel]
        h, w = scene.labels.shape
        # grid_sample's normalised coordinates (align_corners=False): pixel centres at (2k + 1) / size - 1
        grid = torch.stack([(2.0 * c + 1.0) / w - 1.0, (2.0 * r + 1.0) / h - 1.0], dim=-1).float()
        src = torch.from_numpy(np.ascontiguousarray(scene.image, dtype=np.float32))[None]
        sampled = F.grid_sample(src, grid.reshape(1, -1, crop_px, 2), mode="bilinear", padding_mode="zeros", align_corners=False)
        image[sel] = sampled[0].unflatten(1, (len(sel), crop_px)).transpose(0, 1)
        nearest = _Nearest.at(r, c, (h, w))
        labels[sel] = nearest.sample(scene.labels, IGNORE_INDEX, torch.long)
        if edges is not None and scene.edges is not None:
            edges[sel] = nearest.sample(scene.edges, 0.0, torch.float32)
        if lines is not None and scene.centerlines is not None:
            lines[sel] = nearest.sample(scene.centerlines, 0.0, torch.float32)
    for k, d in enumerate(draws):
        if d.gain is not None and d.offset is not None:
            image[k] = image[k] * d.gain[:, None, None] + d.offset[:, None, None]
    return Batch(image=image, labels=labels, edges=edges, centerlines=lines)
