"""Writing a scene's results to files: ``OUTDIR/<stem>.<ext>``, tile by tile, atomically."""

from __future__ import annotations

import os
from contextlib import ExitStack
from pathlib import Path

import numpy as np

from geoseg.errors import ConfigError, InputMismatchError, OutputWriteError
from geoseg.pipeline.engine import RunResult
from geoseg.pipeline.step import layer_kind
from geoseg.raster import GeoInfo, RasterTileWriter
from geoseg.tiling import Tile
from geoseg.vector import FORMATS, VectorFormat, layer_paths, vector_format, write_layers

__all__ = ["output_paths", "output_crs", "GeoTiffSink", "write_vector_outputs"]


def _raster_name(stem: str, layer: str, outputs: list[str]) -> str:
    rasters = [o for o in outputs if layer_kind(o) == "raster"]
    alone = len(rasters) == 1 and len(rasters) == len(outputs)
    return f"{stem}.tif" if alone else f"{stem}_{layer}.tif"


def check_stem(stem: str, outdir: Path) -> None:
    """Refuse a stem that is no file name in ``outdir`` (empty, dots only, or holding a path separator).

    Raises
    ------
    OutputWriteError
        The message names the stem and the folder.

    Examples
    --------
    >>> check_stem("../escaped", Path("out"))
    Traceback (most recent call last):
    ...
    geoseg.errors.OutputWriteError: '../escaped': not usable as an output file name in out (outputs never leave the output folder)
    """
    if not stem.strip(".") or any(c and c in stem for c in (os.sep, os.altsep, "\0")):
        raise OutputWriteError(f"{stem!r}: not usable as an output file name in {outdir} (outputs never leave the output folder)")


def check_geojson_crs(source: str | Path, crs: object, fmt: str | VectorFormat) -> None:
    """Refuse GeoJSON lines in pixel coordinates: a scene without a CRS, and no reprojection asked for.

    Raises
    ------
    InputMismatchError
        GeoJSON is always read as EPSG:4326 longitudes and latitudes.
    """
    spec = vector_format(fmt)
    if spec.name == "geojson" and spec.target_crs is None and crs is None:
        raise InputMismatchError(
            f"{source}: the scene has no CRS, so its vectors would be in pixel coordinates, which GeoJSON cannot hold "
            "(it is always read as EPSG:4326 longitudes and latitudes): use --format shp or gpkg"
        )


def output_paths(outputs: list[str], outdir: Path, stem: str, fmt: str | VectorFormat) -> list[Path]:
    """The files a scene's outputs will be written to (main network file first).

    Vector layers come first (the network's ``edges``, then ``nodes`` and features layers:
    ``<stem>.<ext>`` and ``<stem>_<layer>.<ext>``, or one GeoPackage), then one GeoTIFF per
    raster layer: ``<stem>_<layer>.tif``, or ``<stem>.tif`` when it is the only output.

    Parameters
    ----------
    outputs : list of str
        The layers written.
    outdir : pathlib.Path
        The scene's output folder.
    stem : str
        The scene's file stem.
    fmt : str or VectorFormat
        Vector output format (a name of :data:`~geoseg.vector.FORMATS`).

    Returns
    -------
    list of pathlib.Path
        The main file of each output (a shapefile's sidecars are not listed).

    Raises
    ------
    ConfigError
        An unknown format, or a layer whose kind no step declared.
    OutputWriteError
        ``stem`` is not usable as a file name in ``outdir`` (empty, dots only, or with a path
        separator).

    Examples
    --------
    >>> from pathlib import Path
    >>> layers = ["network", "nodes", "mask"]
    >>> [p.as_posix() for p in output_paths(layers, Path("out"), "s1", "shp")]
    ['out/s1.shp', 'out/s1_nodes.shp', 'out/s1_mask.tif']
    >>> [p.as_posix() for p in output_paths(layers, Path("out"), "s1", "gpkg")]
    ['out/s1.gpkg', 'out/s1_mask.tif']
    >>> [p.as_posix() for p in output_paths(["mask"], Path("out"), "s1", "shp")]
    ['out/s1.tif']
    """
    name = fmt.name if isinstance(fmt, VectorFormat) else fmt
    if name not in FORMATS:
        raise ConfigError(f"unknown output format {name!r}; choose one of {', '.join(FORMATS)}")
    check_stem(stem, outdir)
    ext = FORMATS[name][0]
    paths = layer_paths(_vector_layers(outputs), outdir / f"{stem}{ext}", name)
    paths += [outdir / _raster_name(stem, o, outputs) for o in outputs if layer_kind(o) == "raster"]
    return paths


def _vector_layers(outputs: list[str]) -> list[str]:
    """The vector layers written for ``outputs``, as named in files: the network's ``edges`` (and ``nodes``), then features layers."""
    names = ["edges", *(["nodes"] if "nodes" in outputs else [])] if "network" in outputs else []
    return names + [o for o in outputs if layer_kind(o) == "features"]


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


def write_vector_outputs(result: RunResult, outputs: list[str], outdir: Path, stem: str, fmt: str | VectorFormat) -> list[Path]:
    """Write the network (and its nodes when ``nodes`` is among ``outputs``) and the features layers asked for.

    In the scene's CRS, or in the one ``fmt`` (a :class:`~geoseg.vector.VectorFormat`) asks for:
    one GeoPackage with a layer each, or ``<stem>.<ext>`` for the network and
    ``<stem>_<layer>.<ext>`` for the others. Raster layers among ``outputs`` are left out (see
    :class:`GeoTiffSink`).

    Parameters
    ----------
    result : RunResult
        The scene's results.
    outputs : list of str
        The layers written.
    outdir : pathlib.Path
        The scene's output folder.
    stem : str
        The scene's file stem.
    fmt : str or VectorFormat
        Vector output format and options.

    Returns
    -------
    list of pathlib.Path
        The files written (empty when no vector layer is asked for).

    Raises
    ------
    ConfigError
        An unknown format, or a layer whose kind no step declared.
    InputMismatchError
        The run gave no network or no features layer that ``outputs`` asks for, or a
        reprojection is asked for and the scene has no CRS.
    OutputWriteError
        The folder cannot be written to, or a written file reads back incomplete.
    """
    spec = vector_format(fmt)
    frames = {}
    if "network" in outputs:
        edges, nodes = result.frames()
        frames["edges"] = edges
        if "nodes" in outputs:
            frames["nodes"] = nodes
    for name in outputs:
        if layer_kind(name) == "features":
            frames[name] = result.features(name)
    return write_layers(frames, Path(outdir) / f"{stem}{spec.ext}", fmt=spec) if frames else []


def output_crs(path: str | os.PathLike[str]) -> str | None:
    """The CRS of a written output (vector or GeoTIFF) as ``AUTHORITY:CODE`` or WKT; None if it has none.

    Parameters
    ----------
    path : path-like
        The output file (``.tif`` and ``.tiff`` are read as rasters, anything else as vectors).

    Returns
    -------
    str or None
        The CRS, or None for an output in pixel coordinates.

    Raises
    ------
    OutputWriteError
        The file cannot be read back.

    Examples
    --------
    >>> import tempfile, geopandas as gpd
    >>> from pathlib import Path
    >>> from shapely.geometry import LineString
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = Path(tmp) / "roads.gpkg"
    ...     gpd.GeoDataFrame(geometry=[LineString([(0, 0), (1, 1)])], crs=32633).to_file(path)
    ...     print(output_crs(path))
    EPSG:32633
    """
    from pyogrio.errors import DataLayerError, DataSourceError

    target = Path(path)
    try:
        if target.suffix.lower() in (".tif", ".tiff"):
            import rasterio

            with rasterio.open(target) as ds:
                return ds.crs.to_string() if ds.crs else None
        import pyogrio

        return pyogrio.read_info(target, layer=0)["crs"]
    except (OSError, DataSourceError, DataLayerError) as exc:
        raise OutputWriteError(f"{target}: cannot read back the CRS of the output ({exc})") from None
