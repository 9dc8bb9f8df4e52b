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

from typing import TYPE_CHECKING

import numpy as np

from geoseg.nn.arrays import IGNORE_INDEX

if TYPE_CHECKING:
    from geoseg.nn.modelfile import NNModel

__all__ = ["GSD_EXACT", "resample_any", "resample_bands", "resample_labels", "resize_bilinear", "working_zoom", "zoomed_shape"]

#: Relative GSD difference under which a scene counts as being at the working GSD already.
GSD_EXACT = 0.01


def working_zoom(model: NNModel, gsd_m: float) -> float:
    """Scale factor from a scene at ``gsd_m`` to the grid of a model that resamples (else 1).

    Parameters
    ----------
    model : NNModel
        The classifier; only its ``resample`` and ``train_gsd_m`` are read.
    gsd_m : float
        The scene's GSD, metres.

    Returns
    -------
    float
        ``gsd_m / model.train_gsd_m``; 1.0 when the model does not resample, its GSD is not
        finite, or the two GSDs differ by less than :data:`GSD_EXACT` (relative).

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> model = SimpleNamespace(resample=True, train_gsd_m=0.5)
    >>> working_zoom(model, 0.2), working_zoom(model, 0.502)
    (0.4, 1.0)
    """
    if not model.resample or not np.isfinite(model.train_gsd_m) or abs(gsd_m / model.train_gsd_m - 1.0) < GSD_EXACT:
        return 1.0
    return gsd_m / model.train_gsd_m


def zoomed_shape(shape: tuple[int, ...], zoom: float) -> tuple[int, int]:
    """``(rows, cols)`` of a grid of ``shape[-2:]`` scaled by ``zoom`` (at least 1 px each).

    Parameters
    ----------
    shape : tuple of int
        Shape of an array whose last two axes are rows and columns.
    zoom : float
        Scale factor (e.g. from :func:`working_zoom`).

    Returns
    -------
    tuple of int
        ``(rows, cols)``, each rounded to the nearest integer and at least 1.

    Examples
    --------
    >>> zoomed_shape((3, 100, 50), 0.4), zoomed_shape((2, 2), 0.1)
    ((40, 20), (1, 1))
    """
    rows, cols = shape[-2:]
    return max(1, int(round(rows * zoom))), max(1, int(round(cols * zoom)))


def resample_bands(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resample a ``(bands, rows, cols)`` (or ``(rows, cols)``) float array to ``size``.

    Area averaging where the grid shrinks (along both axes), else bilinear interpolation: the
    definitions of torch's ``interpolate`` modes ``area`` and ``bilinear`` (without aligned
    corners), computed in numpy, so inference in onnxruntime needs no torch.

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

    Examples
    --------
    >>> resample_bands(np.array([[0.0, 2.0, 4.0, 6.0]]), (1, 2)).tolist()
    [[1.0, 5.0]]
    >>> resample_bands(np.array([[0.0, 4.0]]), (1, 4)).tolist()
    [[0.0, 1.0, 3.0, 4.0]]
    """
    arr = np.asarray(image, np.float32)
    if tuple(arr.shape[-2:]) == tuple(size):
        return arr.copy()
    if size[0] <= arr.shape[-2] and size[1] <= arr.shape[-1]:
        return _area_axis(_area_axis(arr, size[0], -2), size[1], -1)
    return resize_bilinear(arr, size)


def resize_bilinear(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resampling of the last two axes to ``size``, pixel centres aligned as torch's ``bilinear`` mode without aligned corners.

    Unlike :func:`resample_bands`, it interpolates when the grid shrinks too (no area
    averaging).

    Parameters
    ----------
    image : numpy.ndarray
        Values to resample; the last two axes are rows and columns.
    size : tuple of int
        Target ``(rows, cols)``.

    Returns
    -------
    numpy.ndarray
        float32, the leading axes of ``image`` followed by ``size``.

    Examples
    --------
    >>> resize_bilinear(np.array([[0.0, 4.0]]), (1, 4)).tolist()
    [[0.0, 1.0, 3.0, 4.0]]
    """
    arr = np.asarray(image, np.float32)
    return _bilinear_axis(_bilinear_axis(arr, size[0], -2), size[1], -1)


def _area_axis(arr: np.ndarray, size: int, axis: int) -> np.ndarray:
    """Mean over each output cell's input span ``[floor(i·n/size), ceil((i + 1)·n/size))`` along ``axis`` (adaptive average pooling)."""
    n = arr.shape[axis]
    if n == size:
        return arr
    i = np.arange(size)
    start, stop = (i * n) // size, -((-(i + 1) * n) // size)
    count = stop - start
    shape = [1] * arr.ndim
    shape[axis] = size
    total = np.take(arr, start, axis=axis)
    for k in range(1, int(count.max())):  # the k-th input of every span at once (spans hold at most ceil(n / size) + 1)
        total += np.take(arr, np.minimum(start + k, n - 1), axis=axis) * (k < count).astype(np.float32).reshape(shape)
    return total / count.astype(np.float32).reshape(shape)


def _bilinear_axis(arr: np.ndarray, size: int, axis: int) -> np.ndarray:
    """Linear interpolation along ``axis`` at the source positions ``(i + 0.5)·n/size - 0.5``, clamped to the first pixel."""
    n = arr.shape[axis]
    if n == size:
        return arr
    position = np.maximum((np.arange(size) + 0.5) * (n / size) - 0.5, 0.0)
    below = np.minimum(position.astype(np.int64), n - 1)
    above = np.minimum(below + 1, n - 1)
    shape = [1] * arr.ndim
    shape[axis] = size
    frac = (position - below).astype(np.float32).reshape(shape)
    low = np.take(arr, below, axis=axis)
    return low + (np.take(arr, above, axis=axis) - low) * frac


def resample_labels(labels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resample ``(rows, cols)`` uint8 labels (1 road, 0 background, 255 unlabelled) to ``size``.

    A target pixel is unlabelled when less than half of the area it covers is labelled, else
    road when road covers more than half of its labelled area (a tie is background).

    Parameters
    ----------
    labels : numpy.ndarray
        ``(rows, cols)`` labels: 1 road, 0 background, 255 (``IGNORE_INDEX``) unlabelled.
    size : tuple of int
        Target ``(rows, cols)``.

    Returns
    -------
    numpy.ndarray
        ``size`` uint8 labels, with the same values.

    Examples
    --------
    >>> resample_labels(np.array([[1, 0, 1, 1, 0, 255, 255, 255]], np.uint8), (1, 4)).tolist()
    [[0, 1, 0, 255]]
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
    """Resample a thin ``(rows, cols)`` binary raster: a target pixel is set where any part of it is.

    Parameters
    ----------
    mask : numpy.ndarray
        ``(rows, cols)`` raster; non-zero is set.
    size : tuple of int
        Target ``(rows, cols)``.

    Returns
    -------
    numpy.ndarray
        ``size`` uint8 0/1.

    Examples
    --------
    >>> resample_any(np.array([[0, 1, 0, 0, 0, 0]]), (1, 3)).tolist()
    [[1, 0, 0]]
    """
    mask = np.asarray(mask) > 0
    if tuple(mask.shape) == tuple(size):
        return mask.astype(np.uint8)
    return (resample_bands(mask.astype(np.float32), size) > 1e-6).astype(np.uint8)
