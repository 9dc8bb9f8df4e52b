"""Passes that read the image decimated: the file's overviews instead of its full resolution.

A step that works at a coarser GSD than the scene's (a deep classifier trained at a working
GSD: it shrinks every tile to that grid first) says so with
:meth:`~geoseg.pipeline.step.Step.image_decimation`. When every step of a pass uses nothing
but the image and all ask the same factor ``k`` >= 2, the engine reads each tile's window
``k`` times smaller: GDAL takes it from the file's overviews when it has them (a COG's, so a
remote scene's full-resolution tiles are never fetched) and averages the full resolution
otherwise. The steps run on that grid, and their raster outputs are brought back to the
scene's grid bilinearly (nearest for masks), as the classifier would have done itself.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from geoseg.pipeline.step import Step
from geoseg.raster import GeoInfo

__all__ = ["pass_decimation", "coarse_slices", "to_window"]


def pass_decimation(steps: list[Step], measured: list[Step], geo: GeoInfo, *, has_vectorizer: bool, reads_layers: bool) -> int:
    """The factor a pass reads its image decimated by (1: full resolution).

    Above 1 only when the pass neither vectorizes nor reads layers of earlier passes, every
    step it runs or measures uses only the image, and all of them ask the same factor.

    Parameters
    ----------
    steps : list of Step
        The steps the pass runs.
    measured : list of Step
        The steps whose statistics the pass measures.
    geo : GeoInfo
        The scene's georeferencing (the steps' factors may depend on its GSD).
    has_vectorizer : bool
        Whether the pass vectorizes.
    reads_layers : bool
        Whether the pass reads layers stored by earlier passes.

    Returns
    -------
    int
        The decimation factor :meth:`~geoseg.pipeline.step.Step.image_decimation` all steps ask
        for, else 1.

    Examples
    --------
    >>> pass_decimation([], [], None, has_vectorizer=False, reads_layers=False)
    1
    """
    users = [*steps, *measured]
    if not users or has_vectorizer or reads_layers:
        return 1
    if any(set(s.inputs()) - {"image"} for s in steps) or any(set(s.statistics_inputs()) - {"image"} for s in measured):
        return 1
    factors = {s.image_decimation(geo) for s in users}
    return factors.pop() if len(factors) == 1 else 1


def coarse_slices(core: tuple[slice, slice], window: tuple[int, int], coarse: tuple[int, int]) -> tuple[slice, slice]:
    """The cells of a decimated window that cover the part ``core`` of the full window.

    Parameters
    ----------
    core : tuple of slice
        Rows and columns of the part, in the full window.
    window : tuple of int
        Full window size ``(rows, cols)``.
    coarse : tuple of int
        Decimated window size ``(rows, cols)``.

    Returns
    -------
    tuple of slice
        Rows and columns of the decimated window, rounded outwards to whole cells.

    Examples
    --------
    >>> coarse_slices((slice(10, 30), slice(0, 20)), (40, 20), (10, 5))
    (slice(2, 8, None), slice(0, 5, None))
    """
    out = []
    for part, full, cells in zip(core, window, coarse):
        start, stop, _ = part.indices(full)
        out.append(slice(start * cells // full, -(-stop * cells // full)))
    return out[0], out[1]


def _axis(full: int, cells: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bilinear sampling of ``cells`` values at the centres of ``full`` pixels: lower index, upper, weight."""
    position = np.clip((np.arange(full) + 0.5) * cells / full - 0.5, 0, cells - 1)
    lower = np.floor(position).astype(np.intp)
    upper = np.minimum(lower + 1, cells - 1)
    return lower, upper, (position - lower).astype(np.float32)


def to_window(array: Any, size: tuple[int, int]) -> Any:
    """A layer of a decimated window brought back to the window's ``size`` (rows, cols).

    Float layers are interpolated bilinearly between cell centres (edges held); boolean and
    integer layers (masks, classes) take the nearest cell. Other values pass unchanged.

    Parameters
    ----------
    array : Any
        The layer: a ``(..., cells_r, cells_c)`` array, or any other value.
    size : tuple of int
        The window's ``(rows, cols)``.

    Returns
    -------
    Any
        An array of the same dtype and shape ``(..., rows, cols)``; ``array`` itself when it is
        not an array of at least two dimensions or already has that size.

    Examples
    --------
    >>> to_window(np.array([[0.0, 1.0]], np.float32), (1, 4)).round(2).tolist()
    [[0.0, 0.25, 0.75, 1.0]]
    >>> to_window(np.array([[True, False]]), (2, 4)).astype(int).tolist()
    [[1, 1, 0, 0], [1, 1, 0, 0]]
    """
    if not isinstance(array, np.ndarray) or array.ndim < 2 or array.shape[-2:] == tuple(size):
        return array
    (rows, cols), (cells_r, cells_c) = size, array.shape[-2:]
    if array.dtype.kind != "f":
        r = np.minimum((np.arange(rows) + 0.5) * cells_r // rows, cells_r - 1).astype(np.intp)
        c = np.minimum((np.arange(cols) + 0.5) * cells_c // cols, cells_c - 1).astype(np.intp)
        return array[..., r[:, None], c[None, :]]
    r0, r1, wr = _axis(rows, cells_r)
    c0, c1, wc = _axis(cols, cells_c)
    along_rows = array[..., r0, :] * (1 - wr)[:, None] + array[..., r1, :] * wr[:, None]
    return (along_rows[..., c0] * (1 - wc) + along_rows[..., c1] * wc).astype(array.dtype, copy=False)
