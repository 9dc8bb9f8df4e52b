"""Writing a scene's results to files: ``OUTDIR/<stem>.<ext>``, tile by tile, atomically."""

from __future__ import annotations

import os
from contextlib import ExitStack
from pathlib import Path

import numpy as np

from geoseg.errors import ConfigError, OutputWriteError
from geoseg.pipeline.engine import RunResult
from geoseg.pipeline.step import layer_kind
from geoseg.raster import GeoInfo, RasterTileWriter
from geoseg.tiling import Tile
from geoseg.vector import FORMATS, write_network

__all__ = ["output_paths", "GeoTiffSink", "write_network_output"]


def _raster_name(stem: str, layer: str, outputs: list[str]) -> str:
    rasters = [o for o in outputs if layer_kind(o) == "raster"]
    alone = len(rasters) == 1 and "network" not in outputs
    return f"{stem}.tif" if alone else f"{stem}_{layer}.tif"


def output_paths(outputs: list[str], outdir: Path, stem: str, fmt: str) -> list[Path]:
    """The files a scene's outputs will be written to (main network file first)."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown output format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if not stem.strip(".") or any(c and c in stem for c in (os.sep, os.altsep, "\0")):
        raise OutputWriteError(f"{stem!r}: not usable as an output file name in {outdir} (outputs never leave the output folder)")
    ext = FORMATS[fmt][0]
    paths: list[Path] = []
    if "network" in outputs:
        paths.append(outdir / f"{stem}{ext}")
        if "nodes" in outputs and fmt != "gpkg":
            paths.append(outdir / f"{stem}_nodes{ext}")
    paths += [outdir / _raster_name(stem, o, outputs) for o in outputs if layer_kind(o) == "raster"]
    return paths


def _as_written(array: np.ndarray) -> np.ndarray:
    """Masks and centerlines as uint8 0/255, float layers as float32."""
    if array.dtype == bool:
        return array.astype(np.uint8) * 255
    if np.issubdtype(array.dtype, np.floating):
        return array.astype(np.float32)
    return array


class GeoTiffSink:
    """Writes the chosen raster layers of each tile into scene-sized tiled GeoTIFFs.

    Use as a context manager: the files appear (atomically) only if the scene succeeds.
    """

    def __init__(self, outputs: list[str], outdir: Path, stem: str, geo: GeoInfo) -> None:
        self.names = {o for o in outputs if layer_kind(o) == "raster"}
        self.outputs, self.outdir, self.stem, self.geo = outputs, Path(outdir), stem, geo
        self.writers: dict[str, RasterTileWriter] = {}
        self.paths: list[Path] = []
        self._stack = ExitStack()

    def __enter__(self) -> GeoTiffSink:
        self._stack.__enter__()
        return self

    def write(self, name: str, array: np.ndarray, tile: Tile) -> None:
        """Write the core of layer ``name`` at the tile's place (other layers are ignored)."""
        if name not in self.names:
            return
        data = _as_written(array)
        if name not in self.writers:
            path = self.outdir / _raster_name(self.stem, name, self.outputs)
            count = 1 if data.ndim == 2 else data.shape[0]
            self.writers[name] = self._stack.enter_context(RasterTileWriter(path, self.geo, count, data.dtype.name))
            self.paths.append(path)
        self.writers[name].write(data, tile.row_off, tile.col_off)

    def __exit__(self, exc_type, exc, tb) -> bool | None:  # noqa: ANN001
        return self._stack.__exit__(exc_type, exc, tb)


def write_network_output(result: RunResult, outputs: list[str], outdir: Path, stem: str, fmt: str) -> list[Path]:
    """Write the network (and its nodes when ``nodes`` is among ``outputs``), if there is one."""
    if "network" not in outputs:
        return []
    edges, nodes = result.frames()
    return write_network(edges, nodes if "nodes" in outputs else None, Path(outdir) / f"{stem}{FORMATS[fmt][0]}", fmt=fmt)
