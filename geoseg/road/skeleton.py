"""Morphological thinning of a road mask: the baseline centerline extractor.

Cheng et al., "Road centerline extraction via semisupervised segmentation and multidirection
nonmaximum suppression" (arXiv 1508.06163; Neurocomputing 2016) name the spurs and the
distorted intersections of morphological thinning as the two faults their tensor-voting + NMS
centerlines avoid. This module is that thinning baseline, kept as its own step so that the
two can be compared on the same masks. The full text of the paper was not available to us;
the clean-up before thinning (filling small holes, a radius-1 opening and closing) is our
choice: it removes the one-pixel bumps and pinholes that otherwise each grow a spur or a
tiny ring, and it is too small to change a road's width or to join two roads.

:func:`estimate_road_width` measures the road width that the graph clean-up
(:mod:`geoseg.road.connect`) ties its thresholds to.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import ndimage as ndi
from skimage.morphology import disk, remove_small_holes, skeletonize

from geoseg.errors import InputMismatchError

__all__ = ["skeletonize_mask", "estimate_road_width"]


def _as_mask(mask: ArrayLike) -> NDArray[np.bool_]:
    arr = np.asarray(mask)
    if arr.ndim != 2:
        raise InputMismatchError(f"expected a 2-D mask, got shape {arr.shape}")
    return arr.astype(bool)


def _shifted(mask: NDArray[np.bool_], dr: int, dc: int) -> NDArray[np.bool_]:
    """``mask`` moved by ``(dr, dc)`` pixels: ``out[r, c] = mask[r - dr, c - dc]``, False where that falls outside."""
    rows, cols = mask.shape
    out = np.zeros_like(mask)
    if abs(dr) >= rows or abs(dc) >= cols:
        return out
    out[max(dr, 0) : rows + min(dr, 0), max(dc, 0) : cols + min(dc, 0)] = mask[max(-dr, 0) : rows - max(dr, 0), max(-dc, 0) : cols - max(dc, 0)]
    return out


def _erode(mask: NDArray[np.bool_], offsets: NDArray[np.intp]) -> NDArray[np.bool_]:
    """Binary erosion by a symmetric footprint given as its ``(dr, dc)`` offsets, outside the array False.

    Equals :func:`scipy.ndimage.binary_erosion` (whose default border is False) at a fraction
    of its cost for small footprints: one AND of a shifted copy per offset.
    """
    out = mask.copy()
    for dr, dc in offsets:
        out &= _shifted(mask, int(dr), int(dc))
    return out


def _dilate(mask: NDArray[np.bool_], offsets: NDArray[np.intp]) -> NDArray[np.bool_]:
    """Binary dilation by a symmetric footprint given as its ``(dr, dc)`` offsets (:func:`scipy.ndimage.binary_dilation`)."""
    out = mask.copy()
    for dr, dc in offsets:
        out |= _shifted(mask, int(dr), int(dc))
    return out


def skeletonize_mask(
    mask: ArrayLike,
    *,
    max_hole_area: int = 64,
    smooth_radius: int = 1,
) -> NDArray[np.bool_]:
    """Thin a binary road mask to a 1-pixel, 8-connected centerline raster.

    Parameters
    ----------
    mask : array_like of bool, shape (rows, cols)
        Road surface (non-zero = road).
    max_hole_area : int, default 64
        Holes in the mask (background components not touching the road's outside) of at
        most this many pixels are filled first; each would otherwise become a ring in the
        skeleton. ``0`` disables.
    smooth_radius : int, default 1
        Radius in pixels of the disk used for a binary opening then closing, which removes
        bumps and notches narrower than about ``2 * smooth_radius + 1`` pixels; each would
        otherwise grow a spur. ``0`` disables.

    Returns
    -------
    numpy.ndarray of bool, shape (rows, cols)
        The skeleton (:func:`skimage.morphology.skeletonize`).

    Raises
    ------
    geoseg.errors.InputMismatchError
        If ``mask`` is not 2-D.

    Examples
    --------
    >>> m = np.zeros((9, 15), bool); m[3:6, 2:13] = True
    >>> s = skeletonize_mask(m)
    >>> np.nonzero(s.any(axis=1))[0].tolist(), np.nonzero(s.any(axis=0))[0].tolist()
    ([4], [3, 4, 5, 6, 7, 8, 9, 10, 11])
    """
    m = _as_mask(mask)
    if max_hole_area > 0:
        m = remove_small_holes(m, max_size=max_hole_area)
    if smooth_radius > 0:
        offsets = np.argwhere(disk(smooth_radius)) - smooth_radius
        m = _erode(_dilate(_dilate(_erode(m, offsets), offsets), offsets), offsets)  # opening, then closing
    return skeletonize(m)


def estimate_road_width(mask: ArrayLike, centerline: ArrayLike | None = None) -> float:
    """Estimate the typical road width of a mask, in pixels.

    Twice the median distance-to-background sampled on the centerline pixels, minus one (the
    inscribed diameter of the road; at least 1), so that junction and dead-end pixels, a
    small minority, do not bias it.

    Parameters
    ----------
    mask : array_like of bool, shape (rows, cols)
        Road surface.
    centerline : array_like of bool, optional
        Centerline raster to sample on; by default the :func:`skeletonize_mask` of ``mask``.

    Returns
    -------
    float
        Road width in pixels; ``0.0`` when no centerline pixel lies on the road.

    Raises
    ------
    geoseg.errors.InputMismatchError
        If ``mask`` is not 2-D or ``centerline`` has another shape.

    Examples
    --------
    >>> m = np.zeros((11, 15), bool); m[3:8, 2:13] = True
    >>> estimate_road_width(m), estimate_road_width(m[:, :2])
    (5.0, 0.0)
    """
    m = _as_mask(mask)
    c = skeletonize_mask(m) if centerline is None else _as_mask(centerline)
    if c.shape != m.shape:
        raise InputMismatchError(f"centerline shape {c.shape} != mask shape {m.shape}")
    # Pad with road so that roads leaving the image are not measured as ending at the edge.
    dist = ndi.distance_transform_edt(np.pad(m, 1, mode="edge"))[1:-1, 1:-1]
    samples = dist[c & m]
    if samples.size == 0:
        return 0.0
    # A pixel centre at distance d from the nearest background pixel centre lies on a road
    # of about 2 d - 1 pixels.
    return float(max(2.0 * np.median(samples) - 1.0, 1.0))
