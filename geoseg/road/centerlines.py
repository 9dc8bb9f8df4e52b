"""From a road mask or probability to the tensor-voting input and scales, tied to road width.

Stage 2 of Cheng et al., arXiv 1508.06163, votes on the road segmentation. Voting directly
on a filled road surface makes the stick saliency peak along both road *edges* (each edge is
a long straight run of voters), not along the middle. Our choice (not in the paper, whose
text was not available to us): each road pixel votes with the weight
``p · min(1, d / h)^k``, where ``d`` is its distance to the road edge and ``h`` the local
half-width of the road, so that a wide road votes like a line along its medial axis. Scales (voting σ, gap
length) are multiples of the road width measured on the scene, so the same pipeline serves
scenes of any resolution and road class. Measured on the Ottawa ground-truth masks in
``benchmarks/bench_centerlines_ottawa.py``.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from geoseg.road.skeleton import skeletonize_mask

__all__ = ["centrality_weights", "distance_to_background", "width_histogram", "width_from_histogram", "WIDTH_BIN_PX"]

#: Resolution (pixels) of the road-width histogram.
WIDTH_BIN_PX = 0.25


def width_histogram(prob: np.ndarray, core: tuple[slice, slice] = (slice(None), slice(None))) -> np.ndarray:
    """Histogram of inscribed road widths sampled on the centerline of ``prob > 0.5``.

    Counts of ``2 d − 1`` (``d``: distance to the road edge on the mask's skeleton) in bins
    of :data:`WIDTH_BIN_PX`, over the ``core`` part of the array only, so that histograms of
    tiles add up to the scene's. See :func:`geoseg.road.skeleton.estimate_road_width`.

    Parameters
    ----------
    prob : numpy.ndarray
        Road probability or mask, ``(rows, cols)``; pixels above 0.5 are road.
    core : (slice, slice), default the whole array
        Part of the array whose centerline pixels are counted (the mask is thinned whole).

    Returns
    -------
    numpy.ndarray of int64
        Counts per bin; bin ``i`` holds widths near ``i * WIDTH_BIN_PX``. A single zero bin
        when ``core`` holds no road.

    Examples
    --------
    A road 5 pixels wide whose centerline runs over 7 pixels, 3 of them in columns 0 to 6:

    >>> m = np.zeros((11, 15)); m[3:8, 2:13] = 1
    >>> h = width_histogram(m)
    >>> {int(i) * WIDTH_BIN_PX: int(h[i]) for i in np.nonzero(h)[0]}
    {5.0: 7}
    >>> h = width_histogram(m, (slice(None), slice(0, 7)))
    >>> {int(i) * WIDTH_BIN_PX: int(h[i]) for i in np.nonzero(h)[0]}
    {5.0: 3}
    """
    mask = np.asarray(prob) > 0.5
    if not mask[core].any():
        return np.zeros(1, dtype=np.int64)
    skeleton = skeletonize_mask(mask)
    sampled = np.zeros(mask.shape, dtype=bool)
    sampled[core] = skeleton[core] & mask[core]
    rows, cols = np.nonzero(sampled)
    samples = np.maximum(2.0 * distance_to_background(mask, (rows, cols)) - 1.0, 1.0)
    return np.bincount(np.rint(samples / WIDTH_BIN_PX).astype(np.int64))


def distance_to_background(mask: np.ndarray, pixels: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Euclidean distance (pixels) from each of ``pixels``, pixels of ``mask``, to the nearest pixel outside it, the mask extended at its border.

    Equals ``distance_transform_edt(np.pad(mask, 1, mode="edge"))[1:-1, 1:-1][pixels]``, at a
    cost that grows with the length of the mask's outline rather than with the array's area:
    the nearest outside pixel always has a mask pixel beside it (the step from it towards the
    query pixel is closer still), so only those outline pixels are searched.

    Parameters
    ----------
    mask : numpy.ndarray
        Boolean mask, ``(rows, cols)``.
    pixels : (numpy.ndarray, numpy.ndarray)
        Row and column indices of the query pixels, all inside ``mask``.

    Returns
    -------
    numpy.ndarray
        Distance of each query pixel, in pixels.

    Examples
    --------
    >>> m = np.zeros((7, 9), bool); m[1:6, :] = True
    >>> distance_to_background(m, (np.array([3, 1]), np.array([4, 0]))).tolist()
    [3.0, 1.0]
    """
    rows, cols = pixels
    padded = np.pad(np.asarray(mask, dtype=bool), 1, mode="edge")
    outline = ndimage.binary_dilation(padded) & ~padded
    if rows.size == 0 or not outline.any():  # nothing asked, or no outside pixel: the transform's own convention
        return ndimage.distance_transform_edt(padded)[1:-1, 1:-1][rows, cols]
    distances, _ = cKDTree(np.argwhere(outline)).query(np.column_stack([rows + 1, cols + 1]))
    return distances


def width_from_histogram(histograms: list[np.ndarray], fallback_px: float, max_px: float) -> float:
    """Median road width (pixels) of summed histograms; ``fallback_px`` if they are empty.

    Parameters
    ----------
    histograms : list of numpy.ndarray
        Histograms from :func:`width_histogram`, of any lengths (e.g. one per tile).
    fallback_px : float
        Width returned when the histograms hold no sample.
    max_px : float
        Upper bound on the returned width.

    Returns
    -------
    float
        The median width, in pixels, at most ``max_px``.

    Examples
    --------
    >>> h = np.bincount([4, 12, 12])  # widths 1, 3 and 3 pixels
    >>> width_from_histogram([h], 5.0, 10.0), width_from_histogram([h], 5.0, 2.0)
    (3.0, 2.0)
    >>> width_from_histogram([], 5.0, 10.0)
    5.0
    """
    total = np.zeros(max(h.size for h in histograms), dtype=np.int64) if histograms else np.zeros(1, np.int64)
    for h in histograms:
        total[: h.size] += h
    if total.sum() == 0:
        return float(fallback_px)
    cumulative = np.cumsum(total)
    median_bin = int(np.searchsorted(cumulative, cumulative[-1] / 2.0))
    return float(min(median_bin * WIDTH_BIN_PX, max_px))


def centrality_weights(prob: np.ndarray, width_px: float, power: float = 4.0) -> np.ndarray:
    """Voter weights ``p · min(1, d / h)^power``.

    ``d`` is the distance to the road edge and ``h`` the local half-width: the largest ``d``
    within a window of the typical road width ``width_px`` (so narrow roads are not muted).

    Parameters
    ----------
    prob : numpy.ndarray
        Road probability or mask, ``(rows, cols)``.
    width_px : float
        Road width in pixels.
    power : float, default 4.0
        Sharpness of the centrality term; 0 returns ``prob`` itself.

    Returns
    -------
    numpy.ndarray
        float32 weights.

    Examples
    --------
    >>> m = np.zeros((9, 9)); m[2:7, :] = 1
    >>> w = centrality_weights(m, 5.0, power=1.0)
    >>> [round(float(v), 1) for v in w[1:8, 4]]
    [0.0, 0.3, 0.7, 1.0, 0.7, 0.3, 0.0]
    """
    p = np.asarray(prob, dtype=np.float32)
    if power == 0:
        return p
    mask = p > 0.5
    # Edge padding: a road leaving the image is not cut short at the border.
    dist = ndimage.distance_transform_edt(np.pad(mask, 1, mode="edge"))[1:-1, 1:-1]
    # Local half-width: the largest distance within a typical road width, so that a narrow
    # road beside wide ones still votes along its own middle.
    size = max(3, int(round(width_px)) | 1)
    half_width = np.maximum(ndimage.maximum_filter(dist, size=size), 1.0)
    return (p * np.clip(dist / half_width, 0.0, 1.0) ** power).astype(np.float32)
