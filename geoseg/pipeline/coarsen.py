"""Working resolution: running a chain on blocks of the scene's pixels, where the first step asks for it.

Tensor voting and the steps after it cost a fixed amount per pixel, while what they need to
see is the road: a road 30 px wide holds no more of its centerline than the same road 8 px
wide. A first step that can measure the scene's typical road width (``threshold_mask`` with
``work_road_px``) fixes a block size ``f`` from it before any tile is processed; the rest of
the chain then runs on the grid of ``f × f`` blocks, each block holding the mean of its valid
pixels (for a mask: the share of the block that is road). The network comes out in the
scene's CRS as always; raster outputs are on the coarser grid (their GSD says so).

Cost: the first step's statistics pass reads the scene at full resolution (it did so before,
to check the input); the block grid is then read once more and kept in memory for the
chain's passes (:class:`CoarsenedSource`; larger grids are reduced block by block under
each tile).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from geoseg.pipeline.config import Extent
from geoseg.pipeline.engine import SceneExtent, scene_extent
from geoseg.pipeline.step import Step, StepContext
from geoseg.raster import GeoInfo, Raster
from geoseg.tiling import Region, Tile, tile_grid

__all__ = ["CoarsenedSource", "block_mean", "measure_first_step", "working_source"]

log = logging.getLogger("geoseg.engine")

#: Side (pixels) of the tiles of the first step's measuring pass (full resolution, no halo).
MEASURE_TILE_PX = 4096


def block_mean(array: np.ndarray, valid: np.ndarray, factor: int) -> tuple[np.ndarray, np.ndarray]:
    """Means over ``factor × factor`` blocks of the valid pixels, and which blocks are valid.

    Parameters
    ----------
    array : numpy.ndarray
        ``(bands, rows, cols)`` values; a partial block at the bottom or right edge averages
        the pixels it has.
    valid : numpy.ndarray
        Boolean ``(rows, cols)``.
    factor : int
        Block size in pixels.

    Returns
    -------
    means : numpy.ndarray
        float32 ``(bands, ceil(rows / factor), ceil(cols / factor))`` means (0 where a block
        has no valid pixel).
    valid : numpy.ndarray
        Boolean ``(ceil(rows / factor), ceil(cols / factor))``: True for the blocks of which
        at least half the pixels present are valid.

    Examples
    --------
    >>> a = np.array([[[0, 255, 0], [255, 255, 0]]], np.uint8)
    >>> means, ok = block_mean(a, np.ones((2, 3), bool), 2)
    >>> means.tolist(), ok.tolist()
    ([[[191.25, 0.0]]], [[True, True]])
    """
    bands, rows, cols = array.shape
    rb, cb = -(-rows // factor), -(-cols // factor)
    pad = ((0, rb * factor - rows), (0, cb * factor - cols))
    # pixels the scene has in each block: factor² but at the partial bottom and right blocks
    n_present = np.outer(np.minimum(factor, rows - factor * np.arange(rb)), np.minimum(factor, cols - factor * np.arange(cb))).astype(np.float32)
    all_valid = bool(valid.all())
    n_valid = n_present if all_valid else _block_sum(np.pad(valid, pad), rb, cb, factor)
    out = np.empty((bands, rb, cb), np.float32)
    for b in range(bands):
        band = array[b] if all_valid else np.where(valid, array[b], 0)
        sums = _block_sum(np.pad(band, pad), rb, cb, factor)
        out[b] = np.divide(sums, n_valid, out=np.zeros_like(sums), where=n_valid > 0)
    return out, n_valid >= 0.5 * n_present


def _block_sum(values: np.ndarray, rb: int, cb: int, factor: int) -> np.ndarray:
    """float32 sums of ``factor × factor`` blocks of a ``(rb·f, cb·f)`` array (exact integer sums for booleans and integers)."""
    exact = values.dtype == bool or (np.issubdtype(values.dtype, np.integer) and values.dtype.itemsize <= 2)
    summed = values.reshape(rb, factor, cb, factor).sum(axis=(1, 3), dtype=np.int64 if exact else np.float64)
    return summed.astype(np.float32)


#: Largest block grid (bytes, float32 over all bands) that a :class:`CoarsenedSource` keeps in
#: memory after its first read; larger grids are read block by block under each tile.
GRID_CACHE_BYTES = 128 * 2**20


class CoarsenedSource:
    """A scene seen on the grid of its ``factor × factor`` pixel blocks (:func:`block_mean` of its pixels).

    ``values`` maps each read window of the scene, ``(bands, rows, cols)``, to the values to
    average (default: the pixels themselves). A grid of at most :data:`GRID_CACHE_BYTES` is
    computed whole on the first read, reading the scene once, and kept for later passes
    (not with ``keep_grid=False``, e.g. when only a window of the scene is processed, and not
    across processes: a copy sent to a Dask worker reads under each tile).
    """

    def __init__(self, inner: Any, factor: int, values: Callable[[np.ndarray], np.ndarray] | None = None, *, keep_grid: bool = True) -> None:
        self.inner, self.factor = inner, int(factor)
        self.values = values
        self.geo: GeoInfo = inner.geo.coarsened(self.factor)
        self.source, self.band_names = inner.source, inner.band_names
        self._grid: tuple[np.ndarray, np.ndarray] | None = None
        self._may_cache = keep_grid
        self._grid_lock = threading.Lock()  # tiles run in threads compute the grid once

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "_grid_lock"} | {"_grid": None, "_may_cache": False}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, _grid_lock=threading.Lock())

    @property
    def coarsening(self) -> int:
        """Scene pixels per block side."""
        return self.factor

    def _blocks_under(self, row0: int, col0: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        """Block means and validity of a window of blocks, from the scene's pixels under it."""
        f, scene = self.factor, self.inner.geo
        r0, c0 = row0 * f, col0 * f
        r1, c1 = min((row0 + height) * f, scene.height), min((col0 + width) * f, scene.width)
        raster = self.inner.read(Tile(0, r0, c0, r1 - r0, c1 - c0, r0, c0, r1 - r0, c1 - c0))
        values = raster.array if self.values is None else self.values(raster.array)
        return block_mean(values, raster.valid, f)

    def _whole_grid(self) -> tuple[np.ndarray, np.ndarray] | None:
        """The whole grid (computed on first use, in strips of the scene), or None when too large to keep."""
        with self._grid_lock:  # tiles run in threads compute it once
            if self._grid is None and self._may_cache:
                strip = max(1, MEASURE_TILE_PX // self.factor)
                parts = []
                for r in range(0, self.geo.height, strip):
                    parts.append(self._blocks_under(r, 0, min(strip, self.geo.height - r), self.geo.width))
                    if parts[0][0].shape[0] * self.geo.height * self.geo.width * 4 > GRID_CACHE_BYTES:
                        self._may_cache = False
                        return None
                self._grid = (np.concatenate([p[0] for p in parts], axis=1), np.concatenate([p[1] for p in parts], axis=0))
            return self._grid

    def read(self, tile: Tile) -> Raster:
        """The tile's window of blocks, from the scene's pixels under it."""
        grid = self._whole_grid()
        rows = slice(tile.win_row_off, tile.win_row_off + tile.win_height)
        cols = slice(tile.win_col_off, tile.win_col_off + tile.win_width)
        if grid is not None:
            means, valid = grid[0][:, rows, cols].copy(), grid[1][rows, cols].copy()
        else:
            means, valid = self._blocks_under(tile.win_row_off, tile.win_col_off, tile.win_height, tile.win_width)
        return Raster(means, self.geo.window(tile.win_row_off, tile.win_col_off, tile.win_height, tile.win_width), valid, self.source, self.band_names)


def measure_first_step(step: Step, source: Any, window: Region | None = None) -> Step:
    """The first step of a chain fitted on the scene (or ``window``) at full resolution.

    The scene is read in tiles of :data:`MEASURE_TILE_PX` without halo (the step's
    statistics are per-pixel counts over each tile), one tile at a time.

    Parameters
    ----------
    step : Step
        The first step of the chain; it reads only the image.
    source : Any
        The scene source (e.g. :class:`~geoseg.pipeline.engine.FileSource`).
    window : Region, optional
        Measure only this window of the scene; None: the whole scene.

    Returns
    -------
    Step
        The step fitted on the statistics of all tiles (:meth:`~geoseg.pipeline.step.Step.fit`).

    Raises
    ------
    RasterReadError
        The scene cannot be read.
    """
    geo = source.geo
    partials = []
    for tile in tile_grid(geo.height, geo.width, MEASURE_TILE_PX, 0, window):
        raster = source.read(tile)
        ctx = StepContext(geo=raster.geo, valid=raster.valid, core=tile.core_in_window, source=source.source, band_names=source.band_names)
        layers = {"image": raster.array}
        partials.append(step.tile_statistics({n: layers[n] for n in step.statistics_inputs() if n in layers}, ctx))
    return step.fit(partials)


@dataclass(frozen=True)
class WorkingSource:
    """What a run works on: the (possibly fitted) steps, the source, and the extent on its grid."""

    steps: list[Step]
    source: Any
    extent: SceneExtent | None


def working_source(steps: list[Step], source: Any, extent: Extent | None = None) -> WorkingSource:
    """The steps, source and extent a run should use: coarsened when the first step asks for it.

    A first step that :meth:`~geoseg.pipeline.step.Step.wants_coarsening` (e.g.
    ``threshold_mask`` with ``work_road_px``) is fitted here at full resolution, over the
    extent's window; when the block size it gives is above 1, the run uses a
    :class:`CoarsenedSource` and the extent is placed on the block grid.

    Parameters
    ----------
    steps : list of Step
        The chain's bound steps.
    source : Any
        The scene source.
    extent : Extent, optional
        Process only this part of the scene; None: all of it.

    Returns
    -------
    WorkingSource
        The steps (the first one fitted when it was measured), the source (a
        :class:`CoarsenedSource` when coarsened) and the extent on the source's grid (None
        without ``extent``).

    Raises
    ------
    InputMismatchError
        The extent does not overlap the scene, or it cannot be placed on it
        (:func:`~geoseg.pipeline.engine.scene_extent`).
    VectorReadError
        The extent's AOI file cannot be read.
    RasterReadError
        The scene cannot be read while the first step is measured.
    """
    window = None if extent is None else scene_extent(extent, source.geo, source.source)
    if not steps or not steps[0].wants_coarsening():
        return WorkingSource(steps, source, window)
    first = measure_first_step(steps[0], source, None if window is None else window.window)
    factor = first.coarsening()
    if factor == 1:
        return WorkingSource([first, *steps[1:]], source, window)
    log.debug("%s: working resolution %.3g m: blocks of %d x %d px (%s)", source.source, source.geo.gsd_m * factor, factor, factor, first.coarsening_reason())
    blocks = CoarsenedSource(source, factor, first.block_values, keep_grid=window is None)
    return WorkingSource([first, *steps[1:]], blocks, None if extent is None else scene_extent(extent, blocks.geo, source.source))
