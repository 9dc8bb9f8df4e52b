"""Intermediate layers kept between passes over a scene's tiles.

A pipeline whose steps need scene statistics runs in several passes (see
:mod:`geoseg.pipeline.engine`). The layers a pass computes and a later pass needs are
stored here, tile core by tile core, so that no pass recomputes an earlier one and each pass
only needs the halo of its own steps. Two stores:

- :class:`MemoryScratch`: whole-scene arrays in memory (small scenes, in-memory scenes);
- :class:`FileScratch`: tiled GeoTIFFs in a temporary folder, read back window by window,
  so memory stays bounded whatever the scene size. On a Dask cluster the folder must be
  one the workers can read (the engine puts it beside the outputs).

A pass reads through a :class:`ScratchView`: a small, picklable snapshot of what was stored
before the pass, handed to tile tasks.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
from rasterio.errors import NotGeoreferencedWarning
from rasterio.windows import Window

from geoseg.atomic import TEMP_PREFIX
from geoseg.raster import GeoInfo
from geoseg.tiling import Tile

__all__ = ["ScratchView", "MemoryScratch", "FileScratch"]


def _window(array: np.ndarray, tile: Tile) -> np.ndarray:
    rows = slice(tile.win_row_off, tile.win_row_off + tile.win_height)
    cols = slice(tile.win_col_off, tile.win_col_off + tile.win_width)
    return array[..., rows, cols]


@dataclass(frozen=True)
class _StoredFile:
    path: str
    dtype: str
    bands: int | None  # None: a 2-D layer


@dataclass
class ScratchView:
    """What earlier passes stored, readable by tile window (picklable for Dask tasks)."""

    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    files: dict[str, _StoredFile] = field(default_factory=dict)

    def names(self) -> set[str]:
        """Names of the stored layers."""
        return set(self.arrays) | set(self.files)

    def read(self, name: str, tile: Tile) -> np.ndarray:
        """Layer ``name`` over the tile's window (core and halo)."""
        if name in self.arrays:
            return _window(self.arrays[name], tile)
        stored = self.files[name]
        window = Window(tile.win_col_off, tile.win_row_off, tile.win_width, tile.win_height)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(stored.path) as src:
                data = src.read(window=window)
        data = data[0] if stored.bands is None else data
        return data.astype(bool) if stored.dtype == "bool" else data


class MemoryScratch:
    """Intermediate layers as whole-scene arrays."""

    def __init__(self, geo: GeoInfo) -> None:
        self.geo = geo
        self._arrays: dict[str, np.ndarray] = {}
        self._pending: dict[str, np.ndarray] = {}

    def write(self, name: str, core: np.ndarray, tile: Tile) -> None:
        """Store the core of layer ``name`` at the tile's place (visible after :meth:`commit`)."""
        if name not in self._pending:
            self._pending[name] = np.zeros((*core.shape[:-2], self.geo.height, self.geo.width), dtype=core.dtype)
        self._pending[name][..., tile.row_off : tile.row_off + tile.height, tile.col_off : tile.col_off + tile.width] = core

    def commit(self) -> None:
        """End of a pass: what it wrote becomes readable (replacing layers of the same name)."""
        self._arrays.update(self._pending)
        self._pending = {}

    def view(self) -> ScratchView:
        """Snapshot for the next pass."""
        return ScratchView(arrays=dict(self._arrays))

    def close(self) -> None:
        """Release the arrays."""
        self._arrays, self._pending = {}, {}


class FileScratch:
    """Intermediate layers as tiled GeoTIFFs in a temporary folder (removed by :meth:`close`).

    Parameters
    ----------
    geo : GeoInfo
        The scene's grid.
    parent : path, optional
        Where to create the temporary folder (default: the system's temporary folder). Its
        name starts with geoseg's temporary prefix, so a batch rerun removes what a killed
        run left.
    """

    def __init__(self, geo: GeoInfo, parent: str | os.PathLike[str] | None = None) -> None:
        self.geo = geo
        if parent is not None:
            Path(parent).mkdir(parents=True, exist_ok=True)
        self.folder = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX + "scratch-", dir=parent))
        self._files: dict[str, _StoredFile] = {}
        self._pending: dict[str, tuple[rasterio.io.DatasetWriter, _StoredFile]] = {}
        self._passes = 0

    def write(self, name: str, core: np.ndarray, tile: Tile) -> None:
        """Write the core of layer ``name`` at the tile's place (visible after :meth:`commit`)."""
        if name not in self._pending:
            self._pending[name] = self._open(name, core)
        dst, stored = self._pending[name]
        data = core.astype(np.uint8) if stored.dtype == "bool" else core
        data = data[None] if stored.bands is None else data
        dst.write(data, window=Window(tile.col_off, tile.row_off, tile.width, tile.height))

    def _open(self, name: str, sample: np.ndarray) -> tuple[rasterio.io.DatasetWriter, _StoredFile]:
        dtype = "bool" if sample.dtype == bool else sample.dtype.name
        bands = None if sample.ndim == 2 else sample.shape[0]
        path = self.folder / f"{name}.{self._passes}.tif"
        profile = {
            "driver": "GTiff",
            "width": self.geo.width,
            "height": self.geo.height,
            "count": 1 if bands is None else bands,
            "dtype": "uint8" if dtype == "bool" else dtype,
            "tiled": True,
            "blockxsize": 256,
            "blockysize": 256,
            "compress": "zstd",
            "zstd_level": 1,
            "BIGTIFF": "IF_SAFER",
        }
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            dst = rasterio.open(path, "w", **profile)
        return dst, _StoredFile(str(path), dtype, bands)

    def commit(self) -> None:
        """End of a pass: close its files; they become readable (replacing layers of the same name)."""
        for name, (dst, stored) in self._pending.items():
            dst.close()
            self._files[name] = stored
        self._pending = {}
        self._passes += 1

    def view(self) -> ScratchView:
        """Snapshot for the next pass."""
        return ScratchView(files=dict(self._files))

    def close(self) -> None:
        """Close open files and delete the folder."""
        for dst, _ in self._pending.values():
            dst.close()
        self._pending, self._files = {}, {}
        shutil.rmtree(self.folder, ignore_errors=True)
