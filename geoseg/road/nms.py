"""Non-maximum suppression of a tensor-voting saliency map into a 1-pixel centerline raster.

Second half of stage 2 of Cheng, Zhu, Xiang, Pan, "Road centerline extraction via
semisupervised segmentation and multidirection nonmaximum suppression" (arXiv 1508.06163;
Neurocomputing 2016): the saliency ``λ1 - λ2`` of tensor voting (Medioni et al. 2000;
computed by :mod:`geoseg.road.tensor_voting`) is suppressed across the local road
direction, which gives smooth, spur-free centerlines instead of a morphological skeleton.

Steps
-----
1. Ridge test: a pixel is kept when its saliency is a maximum along the normal to its
   orientation, compared with the bilinearly interpolated saliency at ±1 px along the normal
   (``≥`` on the ``+normal`` side, ``>`` on the other, with a small tie margin, so a
   two-pixel plateau keeps one pixel; outside the image the saliency is mirrored about the
   border pixels, so a pixel of the border is a maximum when it beats its inner neighbour).
2. Ridge pixels at or above the low threshold are "weak"; a non-ridge pixel at or above the
   low threshold whose two neighbours along its orientation (rounded to the 8-neighbourhood)
   are weak is added (fills 1-pixel breaks of the ridge test on oblique lines).
3. Hysteresis: 8-connected groups of weak pixels are kept when they hold a pixel at or above
   the high threshold (strong seeds, weak continuation), as in Canny's edge detector; this
   is how gaps bridged by voting, where saliency dips, survive.
4. Thinning (:func:`skimage.morphology.thin`) removes the remaining two-pixel-thick corners
   and staircases, leaving an 8-connected one-pixel-wide raster.

Differences from the paper: Cheng et al. describe a "multidirection" NMS whose exact
directions and thresholds are not public to us; here the normal is continuous (interpolated
neighbours) and the thresholds are relative to a robust maximum (see
:func:`non_max_suppression`). Steps 2 to 4 are our additions.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from skimage.morphology import thin

from geoseg.errors import ConfigError, InputMismatchError

__all__ = ["non_max_suppression", "ridge_mask", "coverage_offsets"]

_EIGHT = np.ones((3, 3), dtype=bool)


def _bilinear(padded: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Bilinear samples of ``padded`` (the image with a border, 1 px before, 2 px after)."""
    r0 = np.floor(rows).astype(np.intp)
    c0 = np.floor(cols).astype(np.intp)
    fr = rows - r0
    fc = cols - c0
    return padded[r0, c0] * (1 - fr) * (1 - fc) + padded[r0, c0 + 1] * (1 - fr) * fc + padded[r0 + 1, c0] * fr * (1 - fc) + padded[r0 + 1, c0 + 1] * fr * fc


def ridge_mask(saliency: np.ndarray, orientation: np.ndarray, *, rtol: float = 1e-4) -> np.ndarray:
    """Pixels whose saliency is a local maximum across the road direction.

    Parameters
    ----------
    saliency : numpy.ndarray
        2-D saliency map.
    orientation : numpy.ndarray
        Road direction per pixel, radians, ``(dx, dy) = (cos θ, sin θ)`` with ``x`` = column,
        ``y`` = row (as returned by :func:`geoseg.road.tensor_voting.tensor_voting`).
    rtol : float, default 1e-4
        Ties: a pixel must exceed its ``-normal`` neighbour by ``rtol·max(saliency)`` and be
        at least its ``+normal`` neighbour minus that margin. A two-pixel plateau across the
        road keeps exactly one pixel and a plateau along the normal (as on the flanks of a
        straight road, where float round-off would pick random pixels) keeps none; the
        margin is far below the ``~1/σ²`` relative curvature of a real ridge and above the
        ``~1e-6`` round-off of float32 FFT voting.

    Returns
    -------
    numpy.ndarray
        Boolean mask of ridge pixels with positive saliency (not thresholded, not thinned).

    Examples
    --------
    A horizontal ridge (orientation 0: along the columns) peaks on row 2:

    >>> sal = np.tile(np.array([[0.0], [1.0], [2.0], [1.0], [0.0]]), (1, 4))
    >>> ridge_mask(sal, np.zeros_like(sal)).astype(int).tolist()
    [[0, 0, 0, 0], [0, 0, 0, 0], [1, 1, 1, 1], [0, 0, 0, 0], [0, 0, 0, 0]]
    """
    sal = np.asarray(saliency, dtype=np.float64)
    tol = rtol * sal.max(initial=0.0)
    # a ridge pixel exceeds its -normal neighbour (>= 0) by tol: only pixels above tol can be one
    rows, cols = np.nonzero(sal > tol)
    theta = np.asarray(orientation, dtype=np.float64)[rows, cols]
    here = sal[rows, cols]
    rows, cols = rows.astype(np.float64), cols.astype(np.float64)
    # Normal (dx, dy) = (-sin θ, cos θ); +1 for the mirrored border.
    dr, dc = np.cos(theta), -np.sin(theta)
    # The tie rule is asymmetric in the normal's sign, and θ ≈ +π/2 and θ ≈ −π/2 (or ±0) are
    # the same direction with opposite normals: orient every normal by its nearest pixel
    # step, so that both pixels of a plateau apply the rule the same way round.
    step_r, step_c = np.rint(dr), np.rint(dc)
    flip = (step_r < 0) | ((step_r == 0) & (step_c < 0))
    dr, dc = np.where(flip, -dr, dr), np.where(flip, -dc, dc)
    padded = np.pad(sal, (1, 2), mode="reflect")
    ahead = _bilinear(padded, rows + 1 + dr, cols + 1 + dc)
    behind = _bilinear(padded, rows + 1 - dr, cols + 1 - dc)
    ridge = np.zeros(sal.shape, dtype=bool)
    ridge[rows.astype(np.intp), cols.astype(np.intp)] = (here > 0) & (here >= ahead - tol) & (here > behind + tol)
    return ridge


def non_max_suppression(
    saliency: np.ndarray,
    orientation: np.ndarray,
    *,
    threshold: float = 0.2,
    low_threshold: float | None = 0.1,
    relative: bool = True,
    fill_breaks: bool = True,
) -> np.ndarray:
    """One-pixel-wide road centerline raster from a saliency map and its orientations.

    Parameters
    ----------
    saliency : numpy.ndarray
        2-D saliency (``λ1 - λ2`` of tensor voting).
    orientation : numpy.ndarray
        Road direction per pixel in radians, same shape (pixel-space convention of
        :mod:`geoseg.road.tensor_voting`).
    threshold : float, default 0.2
        High (seed) threshold. With ``relative=True`` a fraction of the reference saliency:
        the 99th percentile of the saliency over ridge pixels with at least 1 % of the
        maximum saliency (the 1 % floor drops the float round-off ridges of empty
        background; the percentile ignores a few extreme pixels). 0.2 keeps roads with a
        fifth of the strongest road's support (saliency grows with road width, so narrow
        roads next to wide ones need a low value).
    low_threshold : float or None, default 0.1
        Low (continuation) threshold for hysteresis, same units as ``threshold``; ``None``
        means no hysteresis (equal to ``threshold``). At 0.1 a dead end is prolonged by
        roughly σ while a gap of half σ keeps well above it.
    relative : bool, default True
        Whether the thresholds are fractions of the reference saliency (else absolute
        saliency values).
    fill_breaks : bool, default True
        Whether to add a pixel whose two neighbours along its orientation are ridge pixels.

    Returns
    -------
    numpy.ndarray
        Boolean centerline raster, one pixel wide and 8-connected along each line.

    Raises
    ------
    geoseg.errors.InputMismatchError
        If the arrays are not 2-D of the same shape or hold non-finite values.
    geoseg.errors.ConfigError
        If a threshold is negative or ``low_threshold > threshold``.

    Examples
    --------
    >>> sal = np.tile(np.array([[0.0], [1.0], [2.0], [1.0], [0.0]]), (1, 5))
    >>> non_max_suppression(sal, np.zeros_like(sal)).astype(int).tolist()
    [[0, 0, 0, 0, 0], [0, 0, 0, 0, 0], [1, 1, 1, 1, 1], [0, 0, 0, 0, 0], [0, 0, 0, 0, 0]]
    >>> bool(non_max_suppression(sal, np.full_like(sal, np.pi / 2)).any())  # no ridge across columns
    False
    """
    sal = np.asarray(saliency, dtype=np.float64)
    theta = np.asarray(orientation, dtype=np.float64)
    if sal.ndim != 2 or sal.shape != theta.shape:
        raise InputMismatchError(f"saliency {sal.shape} and orientation {theta.shape} must be 2-D of the same shape")
    if not (np.all(np.isfinite(sal)) and np.all(np.isfinite(theta))):
        raise InputMismatchError("saliency and orientation must be finite")
    low = threshold if low_threshold is None else low_threshold
    if threshold < 0 or low < 0 or low > threshold:
        raise ConfigError(f"need 0 <= low_threshold <= threshold, got {low} and {threshold}")

    ridge = ridge_mask(sal, theta)
    if relative:
        peak = sal.max(initial=0.0)
        significant = sal[ridge & (sal >= 0.01 * peak)]
        scale = float(np.percentile(significant, 99)) if significant.size else 0.0
        if scale <= 0:
            return np.zeros(sal.shape, dtype=bool)
        high_abs, low_abs = threshold * scale, low * scale
    else:
        high_abs, low_abs = threshold, low

    weak = ridge & (sal >= low_abs)
    if fill_breaks:  # only pixels above the low threshold and not yet weak can be added
        rows, cols = np.nonzero((sal >= low_abs) & ~weak)
        along = theta[rows, cols]
        step_r = np.rint(np.sin(along)).astype(np.intp)
        step_c = np.rint(np.cos(along)).astype(np.intp)
        padded = np.pad(weak, 1)
        both = padded[rows + 1 + step_r, cols + 1 + step_c] & padded[rows + 1 - step_r, cols + 1 - step_c]
        weak[rows[both], cols[both]] = True

    labels, count = ndi.label(weak, structure=_EIGHT)
    seeded = np.zeros(count + 1, dtype=bool)
    seeded[labels[weak & (sal >= high_abs)]] = True
    seeded[0] = False
    return thin(seeded[labels])


def coverage_offsets(coverage: np.ndarray, orientation: np.ndarray, centerline: np.ndarray, reach_px: float) -> np.ndarray:
    """Sub-pixel road middle at each centerline pixel: the centroid of the road coverage across the road.

    Along the normal to the pixel's orientation, the road coverage (a mask, a road share of
    pixel blocks, or a road probability) is sampled every pixel up to ``reach_px`` each side;
    the centroid of the stretch of non-zero coverage through the pixel is the road's middle.
    Block means keep the first moment of the road surface, so on coarse blocks the middle is
    still found to a fraction of a block. The shift is clipped to ±1 px: the pixel is a
    saliency ridge, so the middle is near it, and a stretch that runs into a crossing road
    must not pull it far.

    Parameters
    ----------
    coverage : numpy.ndarray
        2-D road coverage in [0, 1].
    orientation : numpy.ndarray
        Road direction per pixel, as for :func:`ridge_mask`.
    centerline : numpy.ndarray
        Boolean raster of the pixels to place (e.g. :func:`non_max_suppression`'s output).
    reach_px : float
        How far each side to look (about the half-width of the widest road).

    Returns
    -------
    numpy.ndarray
        float32 ``(2, rows, cols)``: the ``(dx, dy)`` shift of each centerline pixel's centre
        (x = column, y = row), 0 elsewhere. Only the centerline pixels are sampled.

    Examples
    --------
    A road over rows 1 to 3 and a quarter of row 4 has its middle 0.125 px below the centre of
    row 2; the centroid of the samples puts it at 0.154 px (a partly covered pixel weighs at
    its centre):

    >>> cov = np.zeros((7, 5)); cov[1:4] = 1.0; cov[4] = 0.25
    >>> line = np.zeros((7, 5), bool); line[2] = True
    >>> off = coverage_offsets(cov, np.zeros((7, 5)), line, 4)
    >>> round(float(off[1, 2, 2]), 3), abs(float(off[0, 2, 2]))
    (0.154, 0.0)
    """
    cov = np.asarray(coverage, dtype=np.float32)
    out = np.zeros((2, *cov.shape), dtype=np.float32)
    rows, cols = np.nonzero(centerline)
    if rows.size == 0:
        return out
    theta = np.asarray(orientation)[rows, cols].astype(np.float64)
    normal_x, normal_y = -np.sin(theta), np.cos(theta)
    reach = max(1, int(np.ceil(reach_px)))
    t = np.arange(-reach, reach + 1, dtype=np.float64)
    pad = reach + 1
    padded = np.pad(cov, (pad, pad + 1))
    samples = _bilinear(padded, rows[:, None] + pad + normal_y[:, None] * t, cols[:, None] + pad + normal_x[:, None] * t)
    # The stretch of road through the pixel: stop at the first sample without coverage on each side.
    road = samples > 1e-3
    before = np.cumprod(road[:, reach::-1], axis=1)[:, ::-1]
    after = np.cumprod(road[:, reach:], axis=1)
    weights = samples * np.concatenate([before[:, :-1], after], axis=1)
    total = weights.sum(axis=1)
    shift = np.divide((weights * t).sum(axis=1), total, out=np.zeros_like(total), where=total > 0)
    shift = np.clip(shift, -1.0, 1.0)
    out[0, rows, cols] = shift * normal_x
    out[1, rows, cols] = shift * normal_y
    return out
