"""Running a chain of steps on one scene, tile by tile, in bounded memory.

The chain splits into three phases:

1. **raster steps** (everything before the vectorizer) run per tile on the tile's window
   (core + halo, the halo being the sum of the steps' neighbourhoods); their raster outputs
   are cropped to the core and handed to a sink (a tiled GeoTIFF, or an in-memory array);
2. the **vectorizer** (e.g. ``road_network``) runs per tile too; its network is clipped to
   the core, the pieces of all tiles are stitched into one topology, then finalized;
3. **network steps** (e.g. ``connect_network``) run once on the stitched network.

Steps that need scene-wide statistics split the raster steps into **passes** over the tiles
(see :mod:`geoseg.pipeline.step`): the pass that makes a layer also measures its statistics
on every tile, the statistics are reduced, and the next pass runs the fitted steps. Layers
that a later pass reads are stored in between (:mod:`geoseg.pipeline.scratch`), so every step
runs once per tile, with the halo of its own pass only. An untiled run is the same with one
tile per pass.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
import warnings
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from functools import partial
from itertools import islice
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, cast

import networkx as nx
import numpy as np
import shapely
from pyproj import CRS as ProjCRS
from rasterio.crs import CRS
from shapely.geometry import box

from geoseg.errors import ConfigError, GeosegError, InputMismatchError
from geoseg.inputs import is_remote
from geoseg.pipeline.config import Extent
from geoseg.pipeline.decimate import coarse_slices, pass_decimation, to_window
from geoseg.pipeline.distributed import default_workers
from geoseg.pipeline.scratch import FileScratch, MemoryScratch, ScratchView
from geoseg.pipeline.step import LAYER_KINDS, Step, StepContext, layer_kind, phase_error, writes_vectors
from geoseg.raster import GeoInfo, Raster, open_dataset, read_dataset_window, read_geoinfo
from geoseg.road.network import dissolve_degree2
from geoseg.tiling import (
    Region,
    Tile,
    canonical,
    clip_network,
    clip_to_core,
    drop_clip_vertices,
    read_ratio,
    stitch_pieces,
    tile_grid,
    tile_size_for_memory,
)
from geoseg.vector import import_vector_libraries, network_to_frames, read_lines

if TYPE_CHECKING:
    import geopandas as gpd

__all__ = [
    "RunResult",
    "SceneSource",
    "FileSource",
    "MemorySource",
    "RasterSink",
    "MemorySink",
    "TilePass",
    "SceneExtent",
    "execute",
    "open_source",
    "plan_tiles",
    "read_aoi",
    "scene_extent",
]

log = logging.getLogger("geoseg.engine")

#: Snapping distance (pixels) for the ends of network pieces meeting at tile borders.
STITCH_SNAP_PX = 1.0

#: Bytes per pixel of the scene image itself in a tile (several float copies of a few bands).
IMAGE_BYTES_PER_PIXEL = 48

#: Extent runs: plans of the passes' regions tried before one is kept (see :func:`execute`).
MAX_LAYOUTS = 3

#: An extent's bounds within this distance (pixels) of a pixel edge snap to it.
SNAP_EPS_PX = 1e-6


@dataclass
class RunResult:
    """Everything a pipeline produced for one scene (in-memory runs).

    Attributes
    ----------
    layers : dict
        Named layers: numpy arrays for rasters (whole scene, or the extent's window, on the
        grid of ``geo``), a ``networkx.MultiGraph`` (pixel space of the same grid) for
        ``network``, GeoDataFrames in the scene CRS for features layers (e.g. ``new``,
        ``missing``, ``matched``, ``links``).
    geo : GeoInfo
        The grid all raster layers share: the scene's, or its window's with an extent; a
        chain that works on blocks of pixels (``mask_to_centerlines``, ``work_road_px``) gives
        the grid of the blocks (coarser pixels, same extent and CRS). :attr:`lines` are in the
        scene's CRS either way.
    source : str
        The scene.
    warnings : list of str
        Warnings raised while processing it.
    timings : dict
        Seconds spent per phase.
    tiles : int
        Number of tiles the scene was processed in.
    """

    layers: dict[str, Any]
    geo: GeoInfo
    source: str
    warnings: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    tiles: int = 1

    @property
    def graph(self) -> nx.MultiGraph:
        """The road network in pixel space of :attr:`geo`'s grid."""
        if "network" not in self.layers:
            raise InputMismatchError(f"{self.source}: this pipeline produced no network")
        return self.layers["network"]

    def frames(self) -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame]:
        """The network as (edges, nodes) GeoDataFrames in the scene CRS."""
        return network_to_frames(self.graph, self.geo)

    @property
    def lines(self) -> gpd.GeoDataFrame:
        """The network's lines in the scene CRS, with their attributes."""
        return self.frames()[0]

    @property
    def nodes(self) -> gpd.GeoDataFrame:
        """The network's nodes in the scene CRS."""
        return self.frames()[1]

    def features(self, name: str) -> gpd.GeoDataFrame:
        """A features layer (e.g. ``"missing"`` from ``compare_network``) in the scene CRS."""
        if name not in self.layers or layer_kind(name) != "features":
            given = sorted(n for n in self.layers if n in LAYER_KINDS and layer_kind(n) == "features")
            raise InputMismatchError(f"{self.source}: this pipeline gave no features layer {name!r} (it gave: {', '.join(given) or 'none'})")
        return self.layers[name]


class SceneSource(Protocol):
    """Where tiles of a scene come from."""

    geo: GeoInfo
    source: str
    band_names: tuple[str, ...]
    coarsening: int
    """Scene pixels per side of one cell of ``geo`` (1: the scene's own pixels)."""

    def read(self, tile: Tile) -> Raster:
        """The tile's window."""


class _DecimatingSource(SceneSource, Protocol):
    """A :class:`SceneSource` that also reads windows decimated (the engine decimates only such a source)."""

    def read_decimated(self, tile: Tile, factor: int) -> Raster:
        """The tile's window read ``factor`` times coarser."""


class FileSource:
    """Windowed reads from a raster file, virtual path or URL, through one open dataset.

    The dataset stays open while the source is used in a process, so GDAL's block cache
    serves the blocks that several tiles (their halos) or several passes read: a remote
    COG's tiles are fetched once, not once per tile. Reads are serialised (a dataset is not
    thread-safe); a pickled copy (a Dask worker's) opens its own; :meth:`close` (or ``with``)
    closes it. ``block`` is the internal tile size of a remote file (``None``: local, or not
    tiled), to which the engine aligns its tiles so that each window fetches few of them.
    """

    coarsening = 1

    def __init__(self, path: str, geo: GeoInfo, band_names: tuple[str, ...] = (), block: tuple[int, int] | None = None) -> None:
        self.path, self.geo, self.source, self.band_names, self.block = path, geo, path, band_names, block
        self._dataset: Any = None
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in ("_dataset", "_lock")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, _dataset=None, _lock=threading.Lock())

    def read(self, tile: Tile) -> Raster:
        """Read the tile's window from the file."""
        return self.read_decimated(tile, 1)

    def read_decimated(self, tile: Tile, factor: int) -> Raster:
        """Read the tile's window ``factor`` times coarser (from the file's overviews when it has them)."""
        with self._lock:
            if self._dataset is None:
                self._dataset = open_dataset(self.path)
            return read_dataset_window(
                self._dataset, self.path, self.geo, tile.win_row_off, tile.win_col_off, tile.win_height, tile.win_width, decimation=factor
            )  # fmt: skip

    def close(self) -> None:
        """Close the open dataset (a later read opens it again)."""
        with self._lock:
            if self._dataset is not None:
                self._dataset.close()
                self._dataset = None

    def __enter__(self) -> FileSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_source(path: str | os.PathLike[str], assume_gsd_m: float, max_pixels: int | None = None) -> FileSource:
    """A file source (reads the georeferencing now, the pixels tile by tile).

    Parameters
    ----------
    path : path-like
        The raster (a local file, a GDAL virtual path or a URL).
    assume_gsd_m : float
        Ground sample distance to assume when the file has no georeferencing, in metres.
    max_pixels : int, optional
        Refuse scenes with more pixels than this; None: no limit.

    Returns
    -------
    FileSource
        The source; its dataset is opened on the first read.

    Raises
    ------
    RasterReadError
        The raster cannot be opened.
    InputMismatchError
        The scene has more than ``max_pixels`` pixels (e.g. a header declaring a huge size):
        refused before anything is read or allocated.
    """
    geo, summary = read_geoinfo(path, assume_gsd_m=assume_gsd_m)
    pixels = geo.width * geo.height
    if max_pixels is not None and pixels > max_pixels:
        raise InputMismatchError(
            f"{path}: {geo.width} x {geo.height} px ({pixels / 1e9:.1f} Gpx) is more than max_pixels "
            f"({max_pixels / 1e9:g} Gpx) and would take very long; cut the scene into pieces "
            f"(e.g. gdal_retile.py), or --set max_pixels={pixels} to process it tile by tile anyway"
        )
    names = tuple(summary["band_names"])
    shapes = {tuple(shape) for shape in summary["block_shapes"]}
    rows, cols = shapes.pop() if len(shapes) == 1 else (0, 0)
    # Aligning pays where each block read is a request: remote files. Strips span the full width: not tiles.
    block = (rows, cols) if is_remote(path) and rows > 1 and cols < geo.width else None
    return FileSource(str(path), geo, names, block)


class MemorySource:
    """Windows of a raster already in memory."""

    coarsening = 1

    def __init__(self, raster: Raster) -> None:
        self.raster, self.geo, self.source, self.band_names = raster, raster.geo, raster.source, raster.band_names

    def read(self, tile: Tile) -> Raster:
        """Slice the tile's window."""
        rows = slice(tile.win_row_off, tile.win_row_off + tile.win_height)
        cols = slice(tile.win_col_off, tile.win_col_off + tile.win_width)
        return Raster(
            self.raster.array[:, rows, cols],
            self.geo.window(tile.win_row_off, tile.win_col_off, tile.win_height, tile.win_width),
            self.raster.valid[rows, cols],
            self.source,
            self.band_names,
        )


@dataclass(frozen=True)
class SceneExtent:
    """Where an extent falls on one scene (see :func:`scene_extent`).

    Attributes
    ----------
    window : Region
        The scene's pixels covering the extent, snapped outwards to whole pixels: what is
        processed, and the grid of the raster outputs.
    area : shapely.Geometry
        The extent (within the scene) in the window's pixel space (x = column, y = row from
        the window's corner): vector outputs are clipped to it.
    """

    window: Region
    area: shapely.Geometry

    def geo(self, scene: GeoInfo) -> GeoInfo:
        """The georeferencing of the window (the scene's, with a shifted transform)."""
        return scene.window(self.window.row0, self.window.col0, self.window.height, self.window.width)


def read_aoi(path: str | os.PathLike[str]) -> tuple[shapely.Geometry, ProjCRS | None]:
    """The union of a vector file's polygons, and the file's CRS (None if it has none).

    Features that are not polygons are left out.

    Parameters
    ----------
    path : path-like
        The area of interest (any OGR vector format).

    Returns
    -------
    area : shapely.Geometry
        The union of the polygons, made valid, in the file's coordinates.
    crs : pyproj.CRS or None
        The file's CRS.

    Raises
    ------
    VectorReadError
        The file is missing or not a readable vector file.
    InputMismatchError
        The file holds no polygons.

    Examples
    --------
    >>> import tempfile, geopandas as gpd
    >>> from pathlib import Path
    >>> from shapely.geometry import LineString, box
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = Path(tmp) / "aoi.geojson"
    ...     shapes = [box(0, 0, 2, 2), box(1, 0, 3, 2), LineString([(0, 0), (9, 9)])]
    ...     gpd.GeoDataFrame(geometry=shapes, crs=4326).to_file(path)
    ...     area, crs = read_aoi(path)
    >>> area.bounds, area.area, crs.to_epsg()
    ((0.0, 0.0, 3.0, 2.0), 6.0, 4326)
    """
    frame = read_lines(path)  # any OGR vector file, whatever its geometries
    polygons = frame.geometry[frame.geometry.geom_type.isin(["Polygon", "MultiPolygon"])]
    if polygons.empty:
        kinds = ", ".join(sorted(set(frame.geometry.geom_type.dropna()))) or "no features"
        raise InputMismatchError(f"{path}: no polygons to use as the area of interest (the file holds {kinds}); draw the area as polygons")
    return shapely.make_valid(shapely.union_all(polygons.to_numpy())), frame.crs


def scene_extent(setting: Extent, geo: GeoInfo, source: str) -> SceneExtent:
    """Where the extent ``setting`` falls on a scene: its window of whole pixels and its area.

    A bbox with a ``crs``, or an AOI file with a CRS, is reprojected to the scene's CRS
    (densified, so that straight sides follow the projection); without one it is taken in
    the scene's CRS (pixel coordinates for a scene without georeferencing).

    Parameters
    ----------
    setting : Extent
        The extent: a bbox (optionally with its CRS) or an AOI file.
    geo : GeoInfo
        The scene's georeferencing.
    source : str
        The scene's name, for messages.

    Returns
    -------
    SceneExtent
        The window (snapped outwards to whole pixels) and the extent's area within the scene,
        in the window's pixel space.

    Raises
    ------
    InputMismatchError
        The extent does not overlap the scene, it has a CRS and the scene has none, or the AOI
        file holds no polygons.
    VectorReadError
        The AOI file cannot be read.
    """
    geometry, crs = _extent_geometry(setting)
    if crs is not None:
        if not geo.georeferenced or geo.crs is None:
            what = setting.describe() if setting.crs else f"{setting.describe()} (in {crs.to_string()})"
            raise InputMismatchError(
                f"{source}: the scene has no georeferencing, so {what} cannot be placed on it; "
                "give the extent in the scene's pixel coordinates (x = column, y = row) without a CRS"
            )
        geometry = _to_scene_crs(geometry, crs, geo.crs)
    area = shapely.intersection(geo.to_pixels(geometry), box(0, 0, geo.width, geo.height))
    if area.is_empty or area.area <= 0:
        where = f"in {geo.crs.to_string()}" if geo.georeferenced and geo.crs is not None else "in pixel coordinates, the scene having no georeferencing"
        xmin, ymin, xmax, ymax = geo.bounds
        raise InputMismatchError(
            f"{source}: {setting.describe()} does not overlap the scene (bounds {xmin:.3f}, {ymin:.3f}, {xmax:.3f}, {ymax:.3f} {where}); "
            "give an extent that overlaps these bounds"
        )
    window = _snap(area.bounds, geo)
    return SceneExtent(window, shapely.transform(area, lambda xy: xy - (window.col0, window.row0)))


def _extent_geometry(setting: Extent) -> tuple[shapely.Geometry, ProjCRS | None]:
    """The extent's polygon and its CRS (None: the scene's)."""
    if setting.aoi is not None:
        return read_aoi(setting.aoi)
    return box(*setting.bbox or ()), None if setting.crs is None else ProjCRS.from_user_input(setting.crs)


def _to_scene_crs(geometry: shapely.Geometry, crs: ProjCRS, scene_crs: CRS) -> shapely.Geometry:
    """``geometry`` (in ``crs``) in the scene's CRS ``scene_crs``; empty where the projection fails (out of its area of use)."""
    target = ProjCRS.from_user_input(scene_crs.to_wkt())
    if crs == target:
        return geometry
    xmin, ymin, xmax, ymax = geometry.bounds
    dense = shapely.segmentize(geometry, max(xmax - xmin, ymax - ymin) / 64)
    import geopandas as gpd

    out = gpd.GeoSeries([dense], crs=crs).to_crs(target).iloc[0]
    return out if np.isfinite(shapely.get_coordinates(out)).all() else shapely.Polygon()


def _snap(bounds: tuple[float, float, float, float], geo: GeoInfo) -> Region:
    """The whole pixels covering ``bounds`` (pixel space, inside the scene): at least one."""
    xmin, ymin, xmax, ymax = bounds
    col0 = min(geo.width - 1, math.floor(xmin + SNAP_EPS_PX))
    row0 = min(geo.height - 1, math.floor(ymin + SNAP_EPS_PX))
    return Region(row0, col0, max(row0 + 1, math.ceil(ymax - SNAP_EPS_PX)), max(col0 + 1, math.ceil(xmax - SNAP_EPS_PX)))


class _FramedSource:
    """A rectangle of a scene seen as a scene of its own: tiles are in its pixel coordinates."""

    def __init__(self, inner: SceneSource, frame: Region) -> None:
        self.inner, self.frame = inner, frame
        self.geo = inner.geo.window(frame.row0, frame.col0, frame.height, frame.width)
        self.source, self.band_names, self.coarsening = inner.source, inner.band_names, inner.coarsening

    def read(self, tile: Tile) -> Raster:
        """The tile's window, read from the scene."""
        return self.inner.read(tile.shifted(self.frame.row0, self.frame.col0))

    def read_decimated(self, tile: Tile, factor: int) -> Raster:
        """The tile's window read ``factor`` times coarser, from the scene."""
        inner = cast(_DecimatingSource, self.inner)  # called only when the inner source reads decimated (see execute)
        return inner.read_decimated(tile.shifted(self.frame.row0, self.frame.col0), factor)


class RasterSink(Protocol):
    """Receives the core of each tile's raster layers."""

    def write(self, name: str, array: np.ndarray, tile: Tile) -> None:
        """Store ``array`` (the core of layer ``name``) at the tile's place (in the window's pixels with an extent)."""


class MemorySink:
    """Assembles whole-scene arrays of the given layers."""

    def __init__(self, geo: GeoInfo, names: set[str] | None = None) -> None:
        self.geo, self.names = geo, names
        self.arrays: dict[str, np.ndarray] = {}

    def write(self, name: str, array: np.ndarray, tile: Tile) -> None:
        """Copy the core into the scene-sized array of ``name``."""
        if self.names is not None and name not in self.names:
            return
        if name not in self.arrays:
            self.arrays[name] = np.zeros((*array.shape[:-2], self.geo.height, self.geo.width), dtype=array.dtype)
        self.arrays[name][..., tile.row_off : tile.row_off + tile.height, tile.col_off : tile.col_off + tile.width] = array


def _split(steps: list[Step]) -> tuple[list[Step], Step | None, list[Step]]:
    problem = phase_error(steps)
    if problem is not None:
        raise ConfigError(f"step {problem[0] + 1} ({steps[problem[0]].label}): {problem[1]}")
    v = next((i for i, s in enumerate(steps) if s.vectorizer), None)
    if v is None:
        if any("network" in s.inputs() for s in steps):
            raise ConfigError("a step takes the network but no step builds it")
        return steps, None, []
    return steps[:v], steps[v], steps[v + 1 :]


def _apply(step: Step, layers: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
    missing = [name for name in step.inputs() if name not in layers]
    if missing:
        raise InputMismatchError(f"{ctx.source}: step {step.label} needs layer(s) {missing} that no earlier step gives")
    wanted = [*step.inputs(), *(n for n in step.uses_if_present if n in layers)]
    try:
        return step.apply({name: layers[name] for name in wanted}, ctx)
    except GeosegError:
        raise
    except (ValueError, MemoryError) as exc:
        raise InputMismatchError(f"{ctx.source}: step {step.label} failed: {exc}") from exc


def _halo(steps: list[Step], geo: GeoInfo) -> int:
    return sum(s.halo_px(geo) for s in steps)


def plan_tiles(
    steps: list[Step],
    geo: GeoInfo,
    *,
    max_memory: int,
    tile_px: int | None,
    extra_halo: int = 0,
    also_in_memory: tuple[Step, ...] = (),
    extra_bytes_per_pixel: int = 0,
) -> tuple[int, int]:
    """Core size and halo for running ``steps`` on a scene of ``geo`` within ``max_memory``.

    ``also_in_memory`` are the steps whose statistics the pass measures (their
    :meth:`~geoseg.pipeline.step.Step.statistics_bytes_per_pixel` counts);
    ``extra_halo`` is added to the steps' own neighbourhoods, ``extra_bytes_per_pixel`` to
    their memory (layers read back from earlier passes).

    Parameters
    ----------
    steps : list of Step
        The steps run on each tile; their halos add up.
    geo : GeoInfo
        The scene's georeferencing (the steps' halos may depend on its GSD).
    max_memory : int
        Bytes a tile may use.
    tile_px : int or None
        A forced core size, returned as is; None: the largest that fits ``max_memory``
        (:func:`~geoseg.tiling.tile_size_for_memory`).
    extra_halo : int, default 0
        Pixels added to the halo.
    also_in_memory : tuple of Step, default ()
        Steps whose statistics the pass measures.
    extra_bytes_per_pixel : int, default 0
        Bytes per pixel added to the steps' own.

    Returns
    -------
    tile_px : int
        Core side of the tiles, in pixels.
    halo : int
        Halo on each side of the core, in pixels.

    Examples
    --------
    >>> plan_tiles([], None, max_memory=2**30, tile_px=None, extra_halo=8)
    (4608, 8)
    >>> plan_tiles([], None, max_memory=2**30, tile_px=None, extra_halo=8, extra_bytes_per_pixel=48)
    (3328, 8)
    >>> plan_tiles([], None, max_memory=2**30, tile_px=1000)
    (1000, 0)
    """
    halo = _halo(steps, geo) + extra_halo
    if tile_px is None:
        per_pixel = (
            IMAGE_BYTES_PER_PIXEL + extra_bytes_per_pixel + sum(s.bytes_per_pixel for s in steps) + sum(s.statistics_bytes_per_pixel() for s in also_in_memory)
        )
        tile_px = tile_size_for_memory(max_memory, per_pixel, halo)
    return tile_px, halo


def _tile_context(source: SceneSource, tile: Tile, raster: Raster, threads: int = 1) -> StepContext:
    return StepContext(
        geo=raster.geo, valid=raster.valid, core=tile.core_in_window, source=source.source, band_names=source.band_names,
        coarsening=source.coarsening, threads=threads,
    )  # fmt: skip


def _map_tiles(
    fn: Callable[..., Any], tiles: list[Tile], client: Any, *args: Any, concurrent: int = 1, while_waiting: Callable[[], None] | None = None
) -> Iterator[tuple[Tile, Any]]:
    """``fn(*args, tile)`` for every tile: here one by one, in ``concurrent`` threads, or as Dask tasks on ``client``.

    Threads and Dask keep at most twice as many tiles in flight as they run at once, so that
    results (tile cores) never pile up in memory. Threads give the results in the tiles'
    order (so a run's output does not depend on timing); Dask as they complete. With
    threads, this thread calls ``while_waiting`` once the first tiles are under way.
    """
    if client is None and concurrent > 1:
        yield from _map_tiles_threaded(fn, tiles, concurrent, *args, while_waiting=while_waiting)
        return
    if client is None:
        for tile in tiles:
            yield tile, fn(*args, tile)
        return
    from geoseg.pipeline.distributed import finished

    limit = max(2, 2 * sum(client.nthreads().values()))
    queue = list(reversed(tiles))
    owner: dict[Any, Tile] = {}
    while queue or owner:
        while queue and len(owner) < limit:
            tile = queue.pop()
            owner[client.submit(fn, *args, tile, pure=False)] = tile
        for future in finished(owner):
            yield owner.pop(future), future.result()


#: A pass over a region of at least twice this side is cut into tiles for the cores even when one tile would fit in memory.
SPLIT_MIN_PX = 512


def _map_tiles_threaded(
    fn: Callable[..., Any], tiles: list[Tile], threads: int, *args: Any, while_waiting: Callable[[], None] | None = None
) -> Iterator[tuple[Tile, Any]]:
    """``fn(*args, tile)`` for every tile in ``threads`` threads, results in the tiles' order."""
    pending: deque[tuple[Tile, Future[Any]]] = deque()
    queue = iter(tiles)
    with ThreadPoolExecutor(threads, thread_name_prefix="geoseg-tile") as pool:
        try:
            for tile in islice(queue, 2 * threads):
                pending.append((tile, pool.submit(fn, *args, tile)))
            if while_waiting is not None:
                while_waiting()
            while pending:
                tile, future = pending.popleft()
                result = future.result()
                if (following := next(queue, None)) is not None:
                    pending.append((following, pool.submit(fn, *args, following)))
                yield tile, result
        finally:
            for _, future in pending:  # a failed tile (or a consumer that stopped) cancels the tiles not started
                future.cancel()


def _last_producer(steps: list[Step], j: int) -> int:
    """Index of the last step before ``j`` giving a layer that step ``j`` measures (-1: none)."""
    needs = set(steps[j].statistics_inputs())
    return max((k for k in range(j) if needs & set(steps[k].outputs())), default=-1)


class TilePass(NamedTuple):
    """The pass over the tiles that a tile-progress call (``on_tile``) reports on.

    Attributes
    ----------
    index : int
        1-based number of the pass.
    total : int
        Passes over the tiles of this scene.
    steps : tuple of str
        Labels of the steps run on every tile in this pass (empty: the pass only measures).
    measures : tuple of str
        Labels of the steps whose scene-wide statistics this pass measures.
    """

    index: int  # type: ignore[assignment]  # a field named like tuple.index, public API of the on_tile callback
    total: int
    steps: tuple[str, ...]
    measures: tuple[str, ...]


@dataclass(frozen=True)
class _PassPlan:
    """One pass over the tiles: raster steps ``[start, end)`` of the chain, the statistics it measures."""

    start: int
    end: int
    measure: tuple[int, ...]
    final: bool


def _plan_passes(chain: list[Step], n_raster: int) -> list[_PassPlan]:
    """Split the raster steps into passes at every statistics level.

    A step that needs scene statistics of layers made by step ``e`` runs in a later pass than
    ``e``: the pass that runs ``e`` measures them on every tile, and what later passes need
    is stored (see :mod:`geoseg.pipeline.scratch`) instead of being computed again. Steps
    that measure the image get a first pass that only reads it.
    """
    producers = {j: _last_producer(chain, j) for j, step in enumerate(chain) if step.statistics_inputs() and step._fitted is None}
    cuts = sorted({0, *(e + 1 for e in producers.values() if 0 <= e + 1 < n_raster)})
    bounds = [*cuts, n_raster]
    passes = []
    image_stats = tuple(j for j, e in producers.items() if e < 0)
    if image_stats:
        passes.append(_PassPlan(0, 0, image_stats, False))
    for i, (start, end) in enumerate(zip(bounds[:-1], bounds[1:])):
        final = i == len(bounds) - 2
        measure = tuple(j for j, e in producers.items() if start <= e < end)
        passes.append(_PassPlan(start, end, measure, final))
    if n_raster == 0:
        passes.append(_PassPlan(0, 0, (), True))
    return passes


def _consumes(step: Step) -> tuple[str, ...]:
    return (*step.inputs(), *step.uses_if_present)


@dataclass
class _PassWork:
    """What a tile task of one pass does (picklable for Dask)."""

    steps: list[Step]
    vectorizer: Step | None
    measure: list[Step]
    reads: list[str]
    keep: set[str] | None
    measure_in: Region | None = None
    """Where statistics are measured (the extent's window), default: every tile's whole core."""
    threads: int = 1
    """Threads each step may use on a tile (:attr:`StepContext.threads`)."""
    decimation: int = 1
    """How many times coarser the image is read (:mod:`geoseg.pipeline.decimate`)."""


@dataclass
class _TileOutput:
    cores: dict[str, np.ndarray]
    pieces: list[tuple[shapely.LineString, dict[str, float]]]
    statistics: list[Any] | Future[_Measured]
    warnings: list[str]
    features: dict[str, gpd.GeoDataFrame] = field(default_factory=dict)
    """Features layers given by raster steps: the tile's features whose representative point is in its core."""


def _is_features(name: str) -> bool:
    return LAYER_KINDS.get(name) == "features"


def _split_outputs(
    layers: dict[str, Any], produced: list[str], keep: set[str] | None, core: Callable[[np.ndarray], np.ndarray], tile: Tile, grid: GeoInfo
) -> tuple[dict[str, np.ndarray], dict[str, gpd.GeoDataFrame]]:
    """The kept raster layers of a tile cut to its core, and its kept features layers cut to the features it owns."""
    kept = [n for n in produced if keep is None or n in keep]
    cores = {n: core(layers[n]) for n in kept if not _is_features(n)}
    return cores, {n: _owned_features(layers[n], tile, grid) for n in kept if _is_features(n)}


def _owned_features(frame: gpd.GeoDataFrame, tile: Tile, grid: GeoInfo) -> gpd.GeoDataFrame:
    """The features whose representative point lies in the tile's core (half-open, in pixels of ``grid``): each feature once over all tiles."""
    if frame.empty:
        return frame
    points = shapely.get_coordinates(frame.geometry.representative_point().to_numpy())
    cols, rows = (~grid.transform) * (points[:, 0], points[:, 1])
    inside = (tile.col_off <= cols) & (cols < tile.col_off + tile.width) & (tile.row_off <= rows) & (rows < tile.row_off + tile.height)
    return frame[inside]


def _tile_task(work: _PassWork, source: SceneSource, scratch: ScratchView, tile: Tile, behind: ThreadPoolExecutor | None = None) -> _TileOutput:
    """One pass on one tile: read, run the steps, measure; return core layers and line pieces.

    With ``behind``, the statistics are measured there (a :class:`_Measured` future) while the
    caller goes on to the next tile.
    """
    if work.decimation > 1:  # only for a source that reads decimated (see execute)
        return _decimated_tile_task(work, cast(_DecimatingSource, source), tile)
    raster = source.read(tile)
    ctx = _tile_context(source, tile, raster, work.threads)
    layers: dict[str, Any] = {"image": raster.array}
    for name in work.reads:
        layers[name] = scratch.read(name, tile)
    produced: list[str] = []
    for step in work.steps:
        out = _apply(step, layers, ctx)
        layers.update(out)
        produced += [n for n in out if n not in produced]
    statistics: list[Any] | Future[_Measured]
    if behind is None:
        statistics = _tile_statistics(work, layers, ctx, tile)
    else:
        statistics = behind.submit(_measure_apart, work, dict(layers), ctx, tile)
    rows, cols = tile.core_in_window
    cores, features = _split_outputs(layers, produced, work.keep, lambda a: a[..., rows, cols], tile, source.geo)
    pieces = []
    if work.vectorizer is not None:
        local = _apply(work.vectorizer, layers, ctx)["network"]
        pieces = clip_to_core(_translate(local, tile.win_col_off, tile.win_row_off), tile)
    return _TileOutput(cores, pieces, statistics, ctx.warnings, features)


def _decimated_tile_task(work: _PassWork, source: _DecimatingSource, tile: Tile) -> _TileOutput:
    """A pass of image-only steps on one tile, on its window read ``work.decimation`` times coarser.

    The steps and their statistics run on the coarse grid; the raster layers they give are
    brought back to the window's grid (:func:`~geoseg.pipeline.decimate.to_window`).
    """
    raster = source.read_decimated(tile, work.decimation)
    window = (tile.win_height, tile.win_width)
    coarse = raster.shape

    def on_coarse(core: tuple[slice, slice]) -> tuple[slice, slice]:
        return coarse_slices(core, window, coarse)

    ctx = replace(_tile_context(source, tile, raster, work.threads), core=on_coarse(tile.core_in_window))
    layers: dict[str, Any] = {"image": raster.array}
    produced: list[str] = []
    for step in work.steps:
        out = _apply(step, layers, ctx)
        layers.update(out)
        produced += [n for n in out if n not in produced]
    part = tile.core_in_window if work.measure_in is None else tile.part_in_window(work.measure_in)
    statistics = [] if part is None else [
        step.tile_statistics({n: layers[n] for n in step.statistics_inputs() if n in layers}, replace(ctx, core=on_coarse(part)))
        for step in work.measure
    ]  # fmt: skip
    rows, cols = tile.core_in_window
    cores, features = _split_outputs(layers, produced, work.keep, lambda a: to_window(a, window)[..., rows, cols], tile, source.geo)
    return _TileOutput(cores, [], statistics, ctx.warnings, features)


def _tile_statistics(work: _PassWork, layers: dict[str, Any], ctx: StepContext, tile: Tile) -> list[Any]:
    """Partial statistics of the steps measured in a pass, over the tile's core or its part in ``work.measure_in``."""
    core = tile.core_in_window if work.measure_in is None else tile.part_in_window(work.measure_in)
    if core is None:
        return []
    at = replace(ctx, core=core)
    return [step.tile_statistics({n: layers[n] for n in step.statistics_inputs() if n in layers}, at) for step in work.measure]


class _Measured(NamedTuple):
    """A tile's statistics measured apart from its steps, and the warnings the measuring gave."""

    statistics: list[Any]
    warnings: list[str]


def _measure_apart(work: _PassWork, layers: dict[str, Any], ctx: StepContext, tile: Tile) -> _Measured:
    """:func:`_tile_statistics` with warnings of its own (the tile's output has already left)."""
    apart = replace(ctx, warnings=[])
    return _Measured(_tile_statistics(work, layers, apart, tile), apart.warnings)


def _measures_behind(work: _PassWork, client: Any, concurrent: int, tiles: int) -> bool:
    """Whether a pass measures each tile's statistics in a thread of their own while the next tile runs.

    So when the tiles run one at a time in this process on more than one core, and the measured
    steps allow it (:attr:`~geoseg.pipeline.step.Step.concurrent_tiles`): the steps of a pass
    that does not run tiles side by side (a network that uses the cores itself) then overlap the
    statistics of the tile before. The tile plan already counts the steps' and the statistics'
    memory as held together; the layers the statistics read are held one tile longer.
    """
    return client is None and concurrent == 1 and tiles > 1 and work.threads > 1 and bool(work.measure) and all(s.concurrent_tiles for s in work.measure)


def _gather(partials: list[list[Any]], messages: list[str], measured: _Measured) -> None:
    """Add a tile's statistics to each measured step's partials, and its warnings to the run's."""
    for bucket, value in zip(partials, measured.statistics):
        bucket.append(value)
    messages.extend(measured.warnings)


def _pass_work(chain: list[Step], plan: _PassPlan, vectorizer: Step | None, stored: set[str], later: set[str], outputs: set[str] | None) -> _PassWork:
    """The steps, scratch reads and kept layers of a pass, given what earlier passes stored."""
    steps = chain[plan.start : plan.end]
    consumers = [*steps, *([vectorizer] if plan.final and vectorizer else [])]
    reads: list[str] = []
    made: set[str] = set()
    for step in consumers:
        reads += [n for n in _consumes(step) if n in stored and n not in made and n not in reads]
        made |= set(step.outputs())
    measure = [chain[j] for j in plan.measure]
    for step in measure:
        reads += [n for n in step.statistics_inputs() if n in stored and n not in made and n not in reads]
    keep = None if outputs is None else (later | outputs)
    return _PassWork(steps, vectorizer if plan.final else None, measure, reads, keep)


def _needed_after(chain: list[Step], plans: list[_PassPlan], index: int, vectorizer: Step | None) -> set[str]:
    """Layers that passes after ``plans[index]`` read (inputs, optional inputs, statistics inputs)."""
    needed: set[str] = set()
    for plan in plans[index + 1 :]:
        for step in chain[plan.start : plan.end]:
            needed |= set(_consumes(step))
        for j in plan.measure:
            needed |= set(chain[j].statistics_inputs())
        if plan.final and vectorizer is not None:
            needed |= set(_consumes(vectorizer))
    return needed - {"image"}


@dataclass(frozen=True)
class _Layout:
    """Where the passes of a run go, in scene pixels.

    ``regions[i]`` holds the cores of pass ``i``: the window grown by the halos of the
    passes after it, whose tiles read what pass ``i`` stores (so the last pass covers the
    window exactly); ``frame`` is all that is read: the window grown by every pass's halo.
    Without an extent all of them are the whole scene. ``halos`` are those planned for.
    """

    window: Region
    regions: tuple[Region, ...]
    frame: Region
    halos: tuple[int, ...]

    def in_frame(self, region: Region) -> Region:
        """``region`` in the frame's pixel coordinates."""
        return region.shift(-self.frame.row0, -self.frame.col0)


class _Replan(Exception):
    """Fitted halos need wider pass regions than a run planned: run again with ``halos``."""

    def __init__(self, halos: tuple[int, ...]) -> None:
        super().__init__(halos)
        self.halos = halos


def _plan_layout(scene: Region, window: Region, halos: Sequence[int]) -> _Layout:
    """Pass regions around ``window`` for passes with these halos (clipped to the scene)."""
    regions: list[Region] = []
    margin = 0
    for halo in reversed(halos):
        regions.insert(0, window.grow(margin, scene))
        margin += halo
    return _Layout(window, tuple(regions), window.grow(margin, scene), tuple(halos))


def _step_halo(step: Step, geo: GeoInfo) -> int:
    """A step's halo; before its statistics are measured, the halo it has without any (its fallbacks).

    The guess only sizes the regions of the passes before the step; :func:`_next_layout`
    checks it once the step is fitted.
    """
    try:
        return step.halo_px(geo)  # fitted, or a halo that does not depend on the statistics
    except GeosegError:
        if step._fitted is not None or not step.statistics_inputs():
            raise
    try:
        return step.fit([]).halo_px(geo)
    except (GeosegError, ValueError):  # a step that cannot fit without tiles: guess no halo
        return 0


def _layout_halos(chain: list[Step], plans: list[_PassPlan], vectorizer: Step | None, geo: GeoInfo, floor: Sequence[int]) -> tuple[int, ...]:
    """Each pass's halo as :func:`plan_tiles` will give it (guessed for unfitted steps), at least ``floor``."""
    halos = []
    for i, plan in enumerate(plans):
        running = [*chain[plan.start : plan.end], *([vectorizer] if plan.final and vectorizer else [])]
        halo = sum(_step_halo(s, geo) for s in running) + max((chain[j].stats_halo_px(geo) for j in plan.measure), default=0)
        halos.append(max(halo, floor[i] if i < len(floor) else 0))
    return tuple(halos)


def _next_layout(layout: _Layout, scene: Region, halos: tuple[int, ...], done: int, replan: bool) -> _Layout:
    """The layout after pass ``done``, now that its statistics fixed more halos.

    The passes still to run get regions for the new halos (within the frame). When a pass
    already run should have covered more, :class:`_Replan` is raised with the new halos, those
    larger than planned by a quarter more (a rerun measures statistics on slightly different
    borders), unless ``replan`` is False: then the run goes on, the pixels at the window's
    border possibly seeing less context than in a full run.
    """
    new = _plan_layout(scene, layout.window, halos)
    short = any(not used.contains(need) for used, need in zip(layout.regions[: done + 1], new.regions))
    if short and replan:
        raise _Replan(tuple(h + h // 4 if h > planned else h for h, planned in zip(halos, layout.halos)))
    later = tuple(region.grow(0, layout.frame) for region in new.regions[done + 1 :])
    return _Layout(layout.window, (*layout.regions[: done + 1], *later), layout.frame, halos)


def _write_window(target: RasterSink, name: str, core: np.ndarray, tile: Tile, window: Region) -> None:
    """Hand the part of a tile's core inside ``window`` to ``target``, in the window's coordinates."""
    part = tile.crop(window)
    if part is not None:
        (rows, cols), placed = part
        target.write(name, core[..., rows, cols], placed)


def _open_scratch(source: SceneSource, client: Any, layers: int, max_memory: int, scratch_dir: str | os.PathLike[str] | None) -> MemoryScratch | FileScratch:
    """Whole-scene arrays when they fit in a quarter of ``max_memory`` (and no cluster reads them), else files."""
    size = 8 * layers * source.geo.width * source.geo.height
    if client is None and (isinstance(source, MemorySource) or size <= max_memory // 4):
        return MemoryScratch(source.geo)
    return FileScratch(source.geo, scratch_dir)


def execute(
    steps: list[Step],
    source: SceneSource,
    *,
    sink: RasterSink | None = None,
    output_layers: set[str] | None = None,
    max_memory: int = 1 << 30,
    tile_px: int | None = None,
    on_tile: Callable[[int, int, TilePass], None] | None = None,
    client: Any = None,
    scratch_dir: str | os.PathLike[str] | None = None,
    extent: SceneExtent | None = None,
) -> RunResult:
    """Run bound steps on a scene, tile by tile.

    Steps that need scene statistics split the chain into passes over the tiles: each pass
    runs its steps once per tile (with the halo of its own steps), measures the statistics of
    the next level, and stores the layers that later passes read; the last pass also
    vectorizes. Network steps then run once on the stitched network.

    Parameters
    ----------
    steps : list of Step
        Validated, bound steps.
    source : SceneSource
        The scene (a file read by windows, or a raster in memory).
    sink : RasterSink, optional
        Receives raster layers tile by tile (e.g. GeoTIFF writers). Default: the layers are
        assembled in memory and returned in the result.
    output_layers : set of str, optional
        Layers written: raster layers handed to the sink, features layers of raster steps kept
        in the result (default: all).
    max_memory : int, default 1 << 30
        Bytes a tile may use; chooses the tile size.
    tile_px : int, optional
        Force the core size of tiles (default: from ``max_memory``).
    on_tile : callable, optional
        Called with (tiles done, tiles total, :class:`TilePass`) during each pass over the tiles.
    client : distributed.Client, optional
        Run the tiles as Dask tasks on this cluster (the scene must be a file the workers
        can read); default: one after the other in this process.
    scratch_dir : str or path-like, optional
        Folder for the intermediate layers of large scenes (default: the system's temporary
        folder); on a cluster it must be readable by the workers.
    extent : SceneExtent, optional
        Process only the extent's window (see :func:`scene_extent`): the last pass covers
        the window, each earlier pass the window grown by the halos of the passes after it,
        and tiles read their halo beyond it where the scene has pixels, so results inside
        the window match a full run's as tiles do. Statistics are measured over the window
        only. Raster layers cover the window (the sink gets window coordinates), the network
        is clipped to the extent's area, and the result's ``geo`` is the window's. Halos
        that depend on statistics are guessed before these are measured; when a fitted halo
        needs more than was processed, the run starts again with wider regions (at most
        :data:`MAX_LAYOUTS` runs).

    Returns
    -------
    RunResult
        The network and features layers, the raster layers when no ``sink`` takes them,
        the output grid, warnings and timings.

    Raises
    ------
    ConfigError
        More than one step vectorizes, a step takes the network but no step builds it, or a
        step after the vectorizer gives rasters.
    InputMismatchError
        A step needs a layer that no earlier step gives, or fails on the scene's data.
    RasterReadError
        The scene cannot be read.
    """
    run = partial(
        _execute,
        steps,
        source,
        sink=sink,
        output_layers=output_layers,
        max_memory=max_memory,
        tile_px=tile_px,
        on_tile=on_tile,
        client=client,
        scratch_dir=scratch_dir,
        extent=extent,
    )
    floor: tuple[int, ...] = ()
    for _ in range(MAX_LAYOUTS - 1):
        try:
            return run(floor=floor, replan=True)
        except _Replan as replan:
            log.debug("%s: fitted halos %s px need wider pass regions than planned: running again", source.source, replan.halos)
            floor = replan.halos
    return run(floor=floor, replan=False)


def _execute(
    steps: list[Step],
    source: SceneSource,
    *,
    sink: RasterSink | None,
    output_layers: set[str] | None,
    max_memory: int,
    tile_px: int | None,
    on_tile: Callable[[int, int, TilePass], None] | None,
    client: Any,
    scratch_dir: str | os.PathLike[str] | None,
    extent: SceneExtent | None,
    floor: tuple[int, ...],
    replan: bool,
) -> RunResult:
    """One run of :func:`execute`, its pass regions planned for halos of at least ``floor``.

    Raises :class:`_Replan` (if ``replan``) when fitted halos need wider regions.
    """
    start = time.perf_counter()
    raster_steps, vectorizer, network_steps = _split(steps)
    chain = [*raster_steps, *network_steps]
    plans = _plan_passes(chain, len(raster_steps))
    scene = Region(0, 0, source.geo.height, source.geo.width)
    window = scene if extent is None else extent.window
    layout = _plan_layout(scene, window, _layout_halos(chain, plans, vectorizer, source.geo, floor) if window != scene else [0] * len(plans))
    framed = source if layout.frame == scene else _FramedSource(source, layout.frame)
    out_geo = source.geo if extent is None else extent.geo(source.geo)
    needed = [_needed_after(chain, plans, i, vectorizer) for i in range(len(plans))]
    scratched = {n for i, plan in enumerate(plans) for step in chain[plan.start : plan.end] for n in step.outputs() if n in needed[i]}
    timings: dict[str, float] = {"statistics": 0.0, "tiles": 0.0}
    memory = MemorySink(out_geo) if sink is None else None
    target = sink if sink is not None else memory
    outputs = output_layers if sink is not None else None
    pieces: list[tuple[shapely.LineString, dict[str, float]]] = []
    raster_features: dict[str, list[gpd.GeoDataFrame]] = {}
    messages: list[str] = []
    tiles: list[Tile] = []
    scratch = _open_scratch(framed, client, len(scratched), max_memory, scratch_dir)
    # A run that ends in vectors imports their libraries (about 0.3 s) while the first tiles compute.
    idle = import_vector_libraries if writes_vectors([n for step in steps for n in step.outputs()]) else None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            for i, plan in enumerate(plans):
                t0 = time.perf_counter()
                view = scratch.view()
                work = _pass_work(chain, plan, vectorizer, view.names(), needed[i], outputs)
                work.measure_in = None if extent is None else layout.in_frame(window)
                work.threads = 1 if client is not None else default_workers()  # the cores this process may use
                if hasattr(source, "read_decimated"):
                    work.decimation = pass_decimation(
                        work.steps, work.measure, source.geo, has_vectorizer=work.vectorizer is not None, reads_layers=bool(work.reads)
                    )  # fmt: skip
                running = [*work.steps, *([work.vectorizer] if work.vectorizer else [])]
                plan_pass = partial(
                    plan_tiles, running, source.geo, tile_px=tile_px, extra_halo=max((s.stats_halo_px(source.geo) for s in work.measure), default=0),
                    also_in_memory=tuple(work.measure), extra_bytes_per_pixel=8 * len(work.reads),
                )  # fmt: skip
                region = layout.in_frame(layout.regions[i])
                concurrent = work.threads if all(s.concurrent_tiles for s in (*running, *work.measure)) else 1
                for share in dict.fromkeys((concurrent, 1)):  # tiles in threads share the memory; one tile has it all
                    core_px, halo = plan_pass(max_memory=max_memory // share)
                    if share > 1 and tile_px is None and core_px >= max(region.height, region.width) >= 2 * SPLIT_MIN_PX:
                        core_px = math.ceil(max(region.height, region.width) / 2)  # one tile would leave the other cores idle
                    core_px, phase = _aligned(source, core_px, tile_px, layout.frame)
                    tiles = tile_grid(framed.geo.height, framed.geo.width, core_px, halo, region, phase=phase)
                    if len(tiles) > 1:
                        break
                concurrent = min(share, len(tiles))
                if concurrent > 1:
                    work = replace(work, threads=1)  # each tile on one core
                log.debug(
                    "%s: pass %d/%d (%s): %d tile(s) of %d px, halo %d px, reads %.2fx the pass's pixels%s%s",
                    source.source, i + 1, len(plans), [s.label for s in (*running, *work.measure)], len(tiles), core_px, halo, read_ratio(tiles),
                    f", {work.decimation}x coarser (overviews)" if work.decimation > 1 else "", f", {concurrent} at a time" if concurrent > 1 else "",
                )  # fmt: skip
                partials: list[list[Any]] = [[] for _ in work.measure]
                measuring: deque[Future[_Measured]] = deque()
                behind = ThreadPoolExecutor(1, thread_name_prefix="geoseg-statistics") if _measures_behind(work, client, concurrent, len(tiles)) else None
                task = partial(_tile_task, behind=behind) if behind is not None else _tile_task
                try:
                    mapped = _map_tiles(task, tiles, client, work, framed, view, concurrent=concurrent, while_waiting=idle)
                    for done, (tile, out) in enumerate(mapped, start=1):
                        for name, core in out.cores.items():
                            if name in needed[i]:
                                scratch.write(name, core, tile)
                            if target is not None and (outputs is None or name in outputs):
                                _write_window(target, name, core, tile, layout.in_frame(window))
                        messages += out.warnings
                        if isinstance(out.statistics, Future):
                            measuring.append(out.statistics)
                            while len(measuring) > 1:  # the tile before this one: measured while this one ran
                                _gather(partials, messages, measuring.popleft().result())
                        else:
                            _gather(partials, messages, _Measured(out.statistics, []))
                        pieces += out.pieces
                        for name, frame in out.features.items():
                            raster_features.setdefault(name, []).append(frame)
                        if on_tile is not None:
                            on_tile(done, len(tiles), TilePass(i + 1, len(plans), tuple(s.label for s in running), tuple(s.label for s in work.measure)))
                    while measuring:
                        _gather(partials, messages, measuring.popleft().result())
                finally:
                    if behind is not None:
                        behind.shutdown(cancel_futures=True)
                scratch.commit()
                for j, bucket in zip(plan.measure, partials):
                    chain[j] = chain[j].fit(bucket)
                if plan.measure and window != scene:
                    layout = _next_layout(layout, scene, _layout_halos(chain, plans, vectorizer, source.geo, floor), i, replan)
                timings["tiles" if plan.final else "statistics"] += time.perf_counter() - t0
        finally:
            scratch.close()
        network_steps = chain[len(raster_steps) :]
        result_layers: dict[str, Any] = dict(memory.arrays) if memory is not None else {}
        for name, frames in raster_features.items():
            if outputs is None or name in outputs:
                result_layers[name] = _within_extent(_concat_features(frames), framed.geo, layout.in_frame(window), extent)
        if vectorizer is not None:
            t0 = time.perf_counter()
            scene_ctx = StepContext(geo=out_geo, valid=None, source=source.source, band_names=source.band_names, area=None if extent is None else extent.area)
            corner = layout.in_frame(window)
            network = drop_clip_vertices(dissolve_degree2(stitch_pieces(pieces, STITCH_SNAP_PX)))
            network = canonical(_translate(network, -corner.col0, -corner.row0))
            network = canonical(vectorizer.finalize(network, scene_ctx))
            layers = {"network": network}
            for step in network_steps:
                layers.update(_apply(step, layers, scene_ctx))
            result_layers["network"] = layers["network"] if extent is None else canonical(clip_network(layers["network"], extent.area))
            result_layers.update({name: value for name, value in layers.items() if LAYER_KINDS.get(name) == "features"})  # within ctx.area
            messages += scene_ctx.warnings
            timings["network"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - start
    messages += [str(w.message) for w in caught]
    for msg in dict.fromkeys(messages):
        log.warning("%s", msg)
    return RunResult(result_layers, out_geo, source.source, list(dict.fromkeys(messages)), timings, len(tiles))


def _concat_features(frames: list[gpd.GeoDataFrame]) -> gpd.GeoDataFrame:
    """The tiles' parts of a features layer as one frame (columns and CRS of the first tile's)."""
    import geopandas as gpd
    import pandas as pd

    whole = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0].reset_index(drop=True)
    return gpd.GeoDataFrame(whole, geometry=frames[0].geometry.name, crs=frames[0].crs)


def _within_extent(frame: gpd.GeoDataFrame, grid: GeoInfo, window: Region, extent: SceneExtent | None) -> gpd.GeoDataFrame:
    """Raster steps' features whose representative point lies in the extent's area (pixel space of its window), as the network is clipped."""
    if extent is None or frame.empty:
        return frame
    points = shapely.get_coordinates(frame.geometry.representative_point().to_numpy())
    cols, rows = (~grid.transform) * (points[:, 0], points[:, 1])
    inside = shapely.contains_xy(extent.area, np.asarray(cols) - window.col0, np.asarray(rows) - window.row0)
    return frame[inside].reset_index(drop=True)


def _aligned(source: SceneSource, core_px: int, forced_px: int | None, frame: Region) -> tuple[int, tuple[int, int] | None]:
    """Tile size and phase that line the tiles up with the file's internal (square) tiles.

    The cores become a multiple of the file's tile size and are cut on multiples of it in the
    file, so that a window reads as few of the file's tiles as it can: with an extent, the
    tiles of a remote COG fetched are those under it and its halo. A size forced by
    ``tile_px``, a source without internal tiles, or cores smaller than one keep the plain grid.
    """
    block = getattr(source, "block", None)
    if forced_px is not None or block is None or block[0] != block[1] or core_px < block[0]:
        return core_px, None
    return core_px // block[0] * block[0], (frame.row0, frame.col0)


def _translate(graph: nx.MultiGraph, dx: float, dy: float) -> nx.MultiGraph:
    """A copy of a pixel-space network shifted by (dx, dy)."""
    if dx == 0 and dy == 0:
        return graph
    out = graph.copy()
    for _, data in out.nodes(data=True):
        data["x"] += dx
        data["y"] += dy
    for _, _, data in out.edges(data=True):
        data["geometry"] = shapely.transform(data["geometry"], lambda xy: xy + (dx, dy))
    return out
