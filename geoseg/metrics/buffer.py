"""Buffer-based completeness, correctness and quality of extracted road centerlines.

Source: C. Wiedemann, C. Heipke, H. Mayer, O. Jamet, "Empirical evaluation of automatically
extracted road axes", in *Empirical Evaluation Techniques in Computer Vision*, IEEE Computer
Society, 1998, pp. 172-187.

A part of the extraction is *matched* when it lies within a buffer (the slack) around the
reference, and a part of the reference is matched when it lies within the same buffer around
the extraction:

- completeness = matched reference / reference,
- correctness = matched extraction / extraction,
- quality = comp · corr / (comp + corr − comp · corr), with comp = completeness and
  corr = correctness.

Two forms are provided: a raster form on 1-px centerline masks, measured in pixels with a
Euclidean distance transform, and a vector form on shapely lines, measured in lengths.

Where this differs from Wiedemann et al. (1998):

- The paper measures lengths of vector road axes. The raster form counts pixels instead, so a
  diagonal run of pixels weighs 1/√2 of its length relative to a straight one; use the
  vector form when exact lengths matter.
- Matching is a pure distance test: a piece within the buffer is matched whatever its
  direction.
- Only the three ratios are computed, not the paper's redundancy, RMS offset or gap statistics.
- Empty inputs, which the paper does not discuss, get these values: when both the extraction and
  the reference are empty, all three scores are 1.0; a ratio whose denominator is empty
  (completeness without reference, correctness without extraction) is ``nan``, because it is
  undefined; quality is then 0.0, since exactly one of the two is empty and nothing matches.
  Average per-tile scores with :func:`numpy.nanmean` or, better, pool the matched and total
  amounts of :class:`BufferScores` over tiles before dividing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass

import numpy as np
import shapely
from numpy.typing import ArrayLike
from scipy import ndimage

from geoseg.errors import ConfigError, InputMismatchError

__all__ = ["BufferScores", "raster_buffer_scores", "vector_buffer_scores", "quality_from"]


@dataclass(frozen=True)
class BufferScores:
    """Completeness, correctness and quality with the amounts they come from.

    Attributes
    ----------
    completeness : float
        ``reference_matched / reference_total``; ``nan`` when the reference is empty and the
        extraction is not.
    correctness : float
        ``extraction_matched / extraction_total``; ``nan`` when the extraction is empty and the
        reference is not.
    quality : float
        ``comp · corr / (comp + corr − comp · corr)``; 0.0 when either ratio is 0 or
        undefined, 1.0 when both inputs are empty.
    reference_total, reference_matched : float
        Amount of reference (ground truth): pixels for the raster form, length in CRS units
        for the vector form, and the part of it within the buffer around the extraction.
    extraction_total, extraction_matched : float
        The same for the extraction (prediction) within the buffer around the reference.
    """

    completeness: float
    correctness: float
    quality: float
    reference_total: float
    reference_matched: float
    extraction_total: float
    extraction_matched: float

    def to_dict(self) -> dict[str, float]:
        """Return the fields as a plain ``dict`` (e.g. for a JSON report or a DataFrame row)."""
        return asdict(self)

    @classmethod
    def from_amounts(
        cls,
        reference_total: float,
        reference_matched: float,
        extraction_total: float,
        extraction_matched: float,
    ) -> BufferScores:
        """Build the scores from matched and total amounts (pixels or lengths).

        Parameters
        ----------
        reference_total, reference_matched : float
            Total reference amount and the part of it matched by the extraction.
        extraction_total, extraction_matched : float
            Total extraction amount and the part of it matched by the reference.

        Returns
        -------
        BufferScores
            With the empty-input conventions of this module. Useful to pool amounts over
            several tiles: sum each amount over the tiles, then call this once.
        """
        ref_empty = reference_total <= 0
        ext_empty = extraction_total <= 0
        if ref_empty and ext_empty:
            completeness = correctness = 1.0
        else:
            completeness = np.nan if ref_empty else reference_matched / reference_total
            correctness = np.nan if ext_empty else extraction_matched / extraction_total
        return cls(
            completeness=float(completeness),
            correctness=float(correctness),
            quality=quality_from(completeness, correctness),
            reference_total=float(reference_total),
            reference_matched=float(reference_matched),
            extraction_total=float(extraction_total),
            extraction_matched=float(extraction_matched),
        )


def quality_from(completeness: float, correctness: float) -> float:
    """Combine completeness and correctness into Wiedemann's quality.

    Parameters
    ----------
    completeness, correctness : float
        Ratios in [0, 1], or ``nan`` when undefined.

    Returns
    -------
    float
        ``comp · corr / (comp + corr − comp · corr)``; 0.0 when either ratio is 0 or ``nan``.

    Examples
    --------
    >>> round(quality_from(0.8, 0.5), 4), quality_from(float("nan"), 1.0)
    (0.4444, 0.0)
    """
    if not (completeness > 0 and correctness > 0):  # also catches nan
        return 0.0
    return float(completeness * correctness / (completeness + correctness - completeness * correctness))


def raster_buffer_scores(pred: ArrayLike, truth: ArrayLike, slack_px: float) -> BufferScores:
    """Buffer scores of two 1-px centerline rasters.

    A centerline pixel of one raster is matched when the Euclidean distance from its centre to
    the centre of the nearest centerline pixel of the other raster is at most ``slack_px``.

    Parameters
    ----------
    pred : array_like of bool, shape (rows, cols)
        Extracted centerline pixels (nonzero = centerline).
    truth : array_like of bool, shape (rows, cols)
        Reference centerline pixels (nonzero = centerline).
    slack_px : float
        Buffer width in pixels (>= 0). A typical choice is the half road width.

    Returns
    -------
    BufferScores
        Amounts are pixel counts.

    Raises
    ------
    geoseg.errors.InputMismatchError
        If the rasters are not 2-D or differ in shape.
    geoseg.errors.ConfigError
        If ``slack_px`` is negative or not finite.

    Examples
    --------
    A prediction one row off the reference and one pixel longer:

    >>> pred = np.zeros((5, 5), bool); pred[2, :] = True
    >>> truth = np.zeros((5, 5), bool); truth[3, 1:] = True
    >>> s = raster_buffer_scores(pred, truth, 1.0)
    >>> s.completeness, s.correctness, s.extraction_matched
    (1.0, 0.8, 4.0)
    >>> raster_buffer_scores(pred, truth, 0.5).quality
    0.0
    """
    pred_b, truth_b = _as_masks(pred, truth)
    if not (np.isfinite(slack_px) and slack_px >= 0):
        raise ConfigError(f"slack_px must be a finite number >= 0, got {slack_px!r}")
    return BufferScores.from_amounts(
        reference_total=int(truth_b.sum()),
        reference_matched=int((truth_b & _within(pred_b, slack_px)).sum()),
        extraction_total=int(pred_b.sum()),
        extraction_matched=int((pred_b & _within(truth_b, slack_px)).sum()),
    )


def vector_buffer_scores(
    pred_lines: Iterable[shapely.Geometry | None],
    truth_lines: Iterable[shapely.Geometry | None],
    buffer: float,
) -> BufferScores:
    """Buffer scores of two sets of centerline geometries, by length.

    Each set is first dissolved with :func:`shapely.union_all`, so that a stretch of road drawn
    twice counts once. The matched extraction is the length of the extraction inside the
    ``buffer``-wide (round-capped) buffer around the reference, and the matched reference the
    length of the reference inside the buffer around the extraction.

    Parameters
    ----------
    pred_lines : iterable of shapely geometries
        Extracted centerlines (LineString / MultiLineString; ``None`` and empty geometries are
        ignored), in a projected CRS whose unit is that of ``buffer`` (e.g. metres).
    truth_lines : iterable of shapely geometries
        Reference centerlines, same CRS.
    buffer : float
        Buffer half-width (>= 0), in CRS units.

    Returns
    -------
    BufferScores
        Amounts are lengths in CRS units.

    Raises
    ------
    geoseg.errors.ConfigError
        If ``buffer`` is negative or not finite.
    geoseg.errors.InputMismatchError
        If a geometry is not linear.

    Examples
    --------
    Half of the reference lies near the extraction; the buffer's round cap matches a little
    more than half of the extraction:

    >>> from shapely.geometry import LineString
    >>> truth = [LineString([(0, 2), (50, 2)]), LineString([(50, 20), (100, 20)])]
    >>> s = vector_buffer_scores([LineString([(0, 0), (100, 0)])], truth, 5.0)
    >>> s.completeness, round(s.correctness, 3), s.reference_total
    (0.5, 0.546, 100.0)
    """
    if not (np.isfinite(buffer) and buffer >= 0):
        raise ConfigError(f"buffer must be a finite number >= 0, got {buffer!r}")
    pred_net = _dissolve(pred_lines)
    truth_net = _dissolve(truth_lines)
    pred_len = float(shapely.length(pred_net))
    truth_len = float(shapely.length(truth_net))
    pred_matched = truth_matched = 0.0
    if pred_len > 0 and truth_len > 0:
        pred_matched = float(shapely.length(shapely.intersection(pred_net, shapely.buffer(truth_net, buffer))))
        truth_matched = float(shapely.length(shapely.intersection(truth_net, shapely.buffer(pred_net, buffer))))
    return BufferScores.from_amounts(
        reference_total=truth_len,
        reference_matched=truth_matched,
        extraction_total=pred_len,
        extraction_matched=pred_matched,
    )


def _as_masks(pred: ArrayLike, truth: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Return two equally shaped 2-D boolean masks (nonzero = True)."""
    pred_b = np.asarray(pred) != 0
    truth_b = np.asarray(truth) != 0
    if pred_b.ndim != 2 or pred_b.shape != truth_b.shape:
        raise InputMismatchError(f"pred and truth must be 2-D arrays of the same shape, got {pred_b.shape} and {truth_b.shape}")
    return pred_b, truth_b


def _within(mask: np.ndarray, tolerance_px: float) -> np.ndarray:
    """Pixels whose centre is within ``tolerance_px`` of a True pixel of ``mask`` (none if empty)."""
    if not mask.any():
        return np.zeros_like(mask)
    return ndimage.distance_transform_edt(~mask) <= tolerance_px


def _dissolve(lines: Iterable[shapely.Geometry | None]) -> shapely.Geometry:
    """Union of the non-empty linear geometries of ``lines`` (an empty geometry if none)."""
    geoms = np.asarray(list(lines), dtype=object)
    if geoms.size:
        geoms = geoms[~shapely.is_missing(geoms) & ~shapely.is_empty(geoms)]
    kinds = shapely.get_type_id(geoms)
    linear = np.isin(kinds, [1, 2, 5])  # LineString, LinearRing, MultiLineString
    if not linear.all():
        bad = geoms[~linear][0].geom_type
        raise InputMismatchError(f"expected LineString or MultiLineString, got {bad}")
    return shapely.union_all(geoms)
