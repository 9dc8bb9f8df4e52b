"""Pixel-wise scores of binary segmentation masks, and a boundary F-score.

:func:`binary_scores` gives the usual confusion-matrix scores (IoU, precision, recall, F1) of a
predicted road mask against a reference mask.

:func:`boundary_f_score` is the boundary F-measure of G. Csurka, D. Larlus, F. Perronnin,
"What is a good evaluation measure for semantic segmentation?", BMVC 2013: the harmonic mean
of the precision and recall of the mask boundaries, where a boundary pixel is matched when a
boundary pixel of the other mask lies within a distance tolerance. Where it differs: boundaries
are the 4-connected inner boundary pixels of each mask (no morphological thinning of the
boundary map), distances are Euclidean between pixel centres, and the image frame is not a
boundary (a mask running off the image has no boundary along the frame).

Empty inputs: a ratio with an empty denominator is ``nan`` (undefined), except that two empty
masks score 1.0 everywhere; IoU and F1 are 0.0 when exactly one mask is empty.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike
from scipy import ndimage

from geoseg.errors import ConfigError
from geoseg.metrics.buffer import _as_masks, raster_buffer_scores

__all__ = ["binary_scores", "boundary_f_score", "mask_boundary"]

_CROSS = ndimage.generate_binary_structure(2, 1)


def binary_scores(pred: ArrayLike, truth: ArrayLike) -> dict[str, float]:
    """IoU, precision, recall and F1 of a predicted mask against a reference mask.

    Parameters
    ----------
    pred : array_like of bool, shape (rows, cols)
        Predicted mask (nonzero = positive).
    truth : array_like of bool, shape (rows, cols)
        Reference mask (nonzero = positive).

    Returns
    -------
    dict of str to float
        ``iou`` = TP / (TP + FP + FN), ``precision`` = TP / (TP + FP), ``recall`` =
        TP / (TP + FN), ``f1`` = 2 TP / (2 TP + FP + FN), and the counts ``tp``, ``fp``,
        ``fn``, ``tn`` (as floats). Two empty masks give 1.0 for all four scores; an empty
        prediction with a non-empty reference gives ``precision`` ``nan`` and the others 0.0;
        a non-empty prediction with an empty reference gives ``recall`` ``nan`` and the
        others 0.0.

    Raises
    ------
    geoseg.errors.InputMismatchError
        If the masks are not 2-D or differ in shape.

    Examples
    --------
    >>> s = binary_scores(np.array([[1, 1, 0, 0]]), np.array([[0, 1, 1, 0]]))
    >>> round(s["iou"], 3), s["precision"], s["recall"], s["tn"]
    (0.333, 0.5, 0.5, 1.0)
    """
    p, t = _as_masks(pred, truth)
    tp = float(np.count_nonzero(p & t))
    fp = float(np.count_nonzero(p & ~t))
    fn = float(np.count_nonzero(~p & t))
    tn = float(p.size) - tp - fp - fn
    if tp + fp + fn == 0:
        iou = precision = recall = f1 = 1.0
    else:
        iou = tp / (tp + fp + fn)
        f1 = 2 * tp / (2 * tp + fp + fn)
        precision = tp / (tp + fp) if tp + fp > 0 else np.nan
        recall = tp / (tp + fn) if tp + fn > 0 else np.nan
    return {
        "iou": iou,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
    }


def mask_boundary(mask: ArrayLike) -> np.ndarray:
    """Inner boundary pixels of a binary mask.

    Parameters
    ----------
    mask : array_like of bool, shape (rows, cols)
        The mask (nonzero = inside).

    Returns
    -------
    numpy.ndarray of bool, shape (rows, cols)
        Pixels of the mask with at least one 4-neighbour outside it. Pixels beyond the image
        frame count as inside, so the frame itself is not a boundary.

    Examples
    --------
    >>> m = np.zeros((5, 5), bool); m[1:4, 1:4] = True
    >>> mask_boundary(m).astype(int).tolist()
    [[0, 0, 0, 0, 0], [0, 1, 1, 1, 0], [0, 1, 0, 1, 0], [0, 1, 1, 1, 0], [0, 0, 0, 0, 0]]
    >>> bool(mask_boundary(np.ones((3, 3))).any())  # the image frame is no boundary
    False
    """
    m = np.asarray(mask) != 0
    return m & ~ndimage.binary_erosion(m, structure=_CROSS, border_value=1)


def boundary_f_score(pred: ArrayLike, truth: ArrayLike, tolerance_px: float) -> float:
    """Boundary F-score of a predicted mask against a reference mask.

    Parameters
    ----------
    pred : array_like of bool, shape (rows, cols)
        Predicted mask (nonzero = positive).
    truth : array_like of bool, shape (rows, cols)
        Reference mask (nonzero = positive).
    tolerance_px : float
        Largest distance (>= 0, pixels, between pixel centres) at which a boundary pixel of one
        mask is matched by a boundary pixel of the other.

    Returns
    -------
    float
        ``2 P R / (P + R)`` where P is the fraction of predicted boundary pixels matched by the
        reference boundary and R the fraction of reference boundary pixels matched by the
        predicted boundary. 1.0 when neither mask has a boundary, 0.0 when only one has.

    Raises
    ------
    geoseg.errors.InputMismatchError
        If the masks are not 2-D or differ in shape.
    geoseg.errors.ConfigError
        If ``tolerance_px`` is negative or not finite.

    Examples
    --------
    A 3 × 3 square against the same square one column wider, whose right side reaches the
    image frame:

    >>> pred = np.zeros((5, 5), bool); pred[1:4, 1:4] = True
    >>> truth = np.zeros((5, 5), bool); truth[1:4, 1:5] = True
    >>> round(boundary_f_score(pred, truth, 0.0), 3), boundary_f_score(pred, truth, 1.0)
    (0.824, 1.0)
    """
    p, t = _as_masks(pred, truth)
    if not (np.isfinite(tolerance_px) and tolerance_px >= 0):
        raise ConfigError(f"tolerance_px must be a finite number >= 0, got {tolerance_px!r}")
    scores = raster_buffer_scores(mask_boundary(p), mask_boundary(t), tolerance_px)
    precision, recall = scores.correctness, scores.completeness
    if not (precision > 0 and recall > 0):  # also catches nan (one boundary empty)
        return 0.0
    return float(2 * precision * recall / (precision + recall))
