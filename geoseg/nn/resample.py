"""Resampling of images, labels and soft maps between a scene's GSD and a model's working GSD.

A raster classifier sees roads at one scale: the GSD it was trained at. Models trained with
``data.work_gsd_m`` (a coarser grid than the imagery, e.g. 0.5 m for 0.2 m imagery: roads stay
several pixels wide while a crop covers a few times more ground, so training and inference
cost a fraction) resample every scene to that GSD and their probabilities back to the
scene's grid. Training and inference use the same functions, so the model sees at inference
exactly the kind of pixels it was trained on:

- images and soft maps shrink by area averaging (no aliasing) and grow bilinearly;
- labels shrink by majority over the labelled part of each coarse pixel (a coarse pixel
  that is mostly unlabelled stays unlabelled);
- thin binary rasters (edges) mark a coarse pixel where any fine pixel is marked.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from geoseg.nn.losses import IGNORE_INDEX

__all__ = ["resample_any", "resample_bands", "resample_labels", "zoomed_shape"]


def zoomed_shape(shape: tuple[int, ...], zoom: float) -> tuple[int, int]:
    """``(rows, cols)`` of a grid of ``shape[-2:]`` scaled by ``zoom`` (at least 1 px each)."""
    rows, cols = shape[-2:]
    return max(1, int(round(rows * zoom))), max(1, int(round(cols * zoom)))


def resample_bands(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resample a ``(bands, rows, cols)`` (or ``(rows, cols)``) float array to ``size``.

    Area averaging where the grid shrinks, bilinear interpolation where it grows.

    Parameters
    ----------
    image : numpy.ndarray
        Values to resample (any float or integer type).
    size : tuple of int
        Target ``(rows, cols)``.

    Returns
    -------
    numpy.ndarray
        float32, ``(bands, *size)`` (or ``size`` for a 2-D input).
    """
    arr = np.asarray(image, np.float32)
    if tuple(arr.shape[-2:]) == tuple(size):
        return arr.copy()
    t = torch.from_numpy(np.ascontiguousarray(arr))
    t = t[None] if arr.ndim == 3 else t[None, None]
    shrink = size[0] <= arr.shape[-2] and size[1] <= arr.shape[-1]
    if shrink:
        out = F.interpolate(t, size=size, mode="area")
    else:
        out = F.interpolate(t, size=size, mode="bilinear", align_corners=False)
    return out[0].numpy() if arr.ndim == 3 else out[0, 0].numpy()


def resample_labels(labels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resample ``(rows, cols)`` uint8 labels (1 road, 0 background, 255 unlabelled) to ``size``.

    A target pixel is unlabelled when less than half of the area it covers is labelled, else
    road when road covers more than half of its labelled area.
    """
    labels = np.asarray(labels)
    if tuple(labels.shape) == tuple(size):
        return labels.astype(np.uint8)
    labelled = labels != IGNORE_INDEX
    road = resample_bands((labels == 1).astype(np.float32), size)
    known = resample_bands(labelled.astype(np.float32), size)
    out = np.where(road > 0.5 * np.maximum(known, 1e-6), 1, 0).astype(np.uint8)
    out[known < 0.5] = IGNORE_INDEX
    return out


def resample_any(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resample a thin ``(rows, cols)`` binary raster: a target pixel is set where any part of it is."""
    mask = np.asarray(mask) > 0
    if tuple(mask.shape) == tuple(size):
        return mask.astype(np.uint8)
    return (resample_bands(mask.astype(np.float32), size) > 1e-6).astype(np.uint8)
