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
import os
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import geopandas as gpd
import networkx as nx
import numpy as np
import shapely

from geoseg.errors import ConfigError, GeosegError, InputMismatchError
from geoseg.pipeline.scratch import FileScratch, MemoryScratch, ScratchView
from geoseg.pipeline.step import Step, StepContext
from geoseg.raster import GeoInfo, Raster, read_geoinfo, read_window
from geoseg.road.network import dissolve_degree2
from geoseg.tiling import Tile, canonical, clip_to_core, drop_clip_vertices, stitch_pieces, tile_grid, tile_size_for_memory
from geoseg.vector import network_to_frames

__all__ = ["RunResult", "SceneSource", "FileSource", "MemorySource", "RasterSink", "MemorySink", "execute", "open_source", "plan_tiles"]

log = logging.getLogger("geoseg.engine")

#: Snapping distance (pixels) for the ends of network pieces meeting at tile borders.
STITCH_SNAP_PX = 1.0

#: Bytes per pixel of the scene image itself in a tile (several float copies of a few bands).
IMAGE_BYTES_PER_PIXEL = 48


@dataclass
class RunResult:
    """Everything a pipeline produced for one scene (in-memory runs).

    Attributes
    ----------
    layers : dict
        Named layers: numpy arrays for rasters (whole scene), a ``networkx.MultiGraph``
        (pixel space) for ``network``.
    geo : GeoInfo
        The scene's georeferencing (all layers share its grid).
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
        """The road network in pixel space."""
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


class SceneSource(Protocol):
    """Where tiles of a scene come from."""

    geo: GeoInfo
    source: str
    band_names: tuple[str, ...]

    def read(self, tile: Tile) -> Raster:
        """The tile's window."""


class FileSource:
    """Windowed reads from a raster file."""

    def __init__(self, path: str, geo: GeoInfo, band_names: tuple[str, ...] = ()) -> None:
        self.path, self.geo, self.source, self.band_names = path, geo, path, band_names

    def read(self, tile: Tile) -> Raster:
        """Read the tile's window from the file."""
        return read_window(self.path, self.geo, tile.win_row_off, tile.win_col_off, tile.win_height, tile.win_width)


def open_source(path: str | os.PathLike[str], assume_gsd_m: float, max_pixels: int | None = None) -> FileSource:
    """A file source (reads the georeferencing now, the pixels tile by tile).

    Raises
    ------
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
    return FileSource(str(path), geo, names)


class MemorySource:
    """Windows of a raster already in memory."""

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


class RasterSink(Protocol):
    """Receives the core of each tile's raster layers."""

    def write(self, name: str, array: np.ndarray, tile: Tile) -> None:
        """Store ``array`` (the core of layer ``name``) at the tile's place."""


class MemorySink:
    """Assembles whole-scene arrays of the given layers."""

    def __init__(self, geo: GeoInfo, names: set[str] | None = None) -> None:
        self.geo, self.names, self.arrays = geo, names, {}

    def write(self, name: str, array: np.ndarray, tile: Tile) -> None:
        """Copy the core into the scene-sized array of ``name``."""
        if self.names is not None and name not in self.names:
            return
        if name not in self.arrays:
            self.arrays[name] = np.zeros((*array.shape[:-2], self.geo.height, self.geo.width), dtype=array.dtype)
        self.arrays[name][..., tile.row_off : tile.row_off + tile.height, tile.col_off : tile.col_off + tile.width] = array


def _split(steps: list[Step]) -> tuple[list[Step], Step | None, list[Step]]:
    vectorizers = [i for i, s in enumerate(steps) if s.vectorizer]
    if len(vectorizers) > 1:
        raise ConfigError(f"a pipeline can turn rasters into a network once; steps {[steps[i].label for i in vectorizers]} all do")
    if not vectorizers:
        if any("network" in s.inputs() for s in steps):
            raise ConfigError("a step takes the network but no step builds it")
        return steps, None, []
    v = vectorizers[0]
    after = steps[v + 1 :]
    raster_after = [s.label for s in after if any(name != "network" for name in s.outputs())]
    if raster_after:
        raise ConfigError(f"steps after {steps[v].label} work on the network only; {raster_after} give rasters")
    return steps[:v], steps[v], after


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

    ``also_in_memory`` are steps whose memory counts too (those measuring statistics);
    ``extra_halo`` is added to the steps' own neighbourhoods, ``extra_bytes_per_pixel`` to
    their memory (layers read back from earlier passes).
    """
    halo = _halo(steps, geo) + extra_halo
    if tile_px is None:
        per_pixel = IMAGE_BYTES_PER_PIXEL + extra_bytes_per_pixel + sum(s.bytes_per_pixel for s in (*steps, *also_in_memory))
        tile_px = tile_size_for_memory(max_memory, per_pixel, halo)
    return tile_px, halo


def _tile_context(source: SceneSource, tile: Tile, raster: Raster) -> StepContext:
    return StepContext(geo=raster.geo, valid=raster.valid, core=tile.core_in_window, source=source.source, band_names=source.band_names)


def _map_tiles(fn: Callable[..., Any], tiles: list[Tile], client: Any, *args: Any) -> Iterator[tuple[Tile, Any]]:
    """``fn(*args, tile)`` for every tile: here one by one, or as Dask tasks on ``client``.

    On Dask, at most twice as many tiles as the cluster has threads are in flight, so that
    results (tile cores) never pile up in memory; results come back as they complete.
    """
    if client is None:
        for tile in tiles:
            yield tile, fn(*args, tile)
        return
    from distributed import as_completed

    limit = max(2, 2 * sum(client.nthreads().values()))
    queue = list(reversed(tiles))
    futures = as_completed()
    owner = {}
    while queue or owner:
        while queue and len(owner) < limit:
            tile = queue.pop()
            future = client.submit(fn, *args, tile, pure=False)
            owner[future.key] = tile
            futures.add(future)
        future = next(futures)
        tile = owner.pop(future.key)
        yield tile, future.result()


def _last_producer(steps: list[Step], j: int) -> int:
    """Index of the last step before ``j`` giving a layer that step ``j`` measures (-1: none)."""
    needs = set(steps[j].statistics_inputs())
    return max((k for k in range(j) if needs & set(steps[k].outputs())), default=-1)


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


@dataclass
class _TileOutput:
    cores: dict[str, np.ndarray]
    pieces: list[tuple[shapely.LineString, float]]
    statistics: list[Any]
    warnings: list[str]


def _tile_task(work: _PassWork, source: SceneSource, scratch: ScratchView, tile: Tile) -> _TileOutput:
    """One pass on one tile: read, run the steps, measure; return core layers and line pieces."""
    raster = source.read(tile)
    ctx = _tile_context(source, tile, raster)
    layers: dict[str, Any] = {"image": raster.array}
    for name in work.reads:
        layers[name] = scratch.read(name, tile)
    produced: list[str] = []
    for step in work.steps:
        out = _apply(step, layers, ctx)
        layers.update(out)
        produced += [n for n in out if n not in produced]
    statistics = [step.tile_statistics({n: layers[n] for n in step.statistics_inputs() if n in layers}, ctx) for step in work.measure]
    rows, cols = tile.core_in_window
    cores = {n: layers[n][..., rows, cols] for n in produced if work.keep is None or n in work.keep}
    pieces = []
    if work.vectorizer is not None:
        local = _apply(work.vectorizer, layers, ctx)["network"]
        pieces = clip_to_core(_translate(local, tile.win_col_off, tile.win_row_off), tile)
    return _TileOutput(cores, pieces, statistics, ctx.warnings)


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
    on_tile: Callable[[int, int], None] | None = None,
    client: Any = None,
    scratch_dir: str | os.PathLike[str] | None = None,
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
        Raster layers to hand to the sink (default: all).
    max_memory : int
        Bytes a tile may use; chooses the tile size.
    tile_px : int, optional
        Force the core size of tiles (default: from ``max_memory``).
    on_tile : callable, optional
        Called with (tiles done, tiles total) during each pass over the tiles.
    client : dask.distributed.Client, optional
        Run the tiles as Dask tasks on this cluster (the scene must be a file the workers
        can read); default: one after the other in this process.
    scratch_dir : path, optional
        Folder for the intermediate layers of large scenes (default: the system's temporary
        folder); on a cluster it must be readable by the workers.

    Returns
    -------
    RunResult
    """
    start = time.perf_counter()
    raster_steps, vectorizer, network_steps = _split(steps)
    chain = [*raster_steps, *network_steps]
    plans = _plan_passes(chain, len(raster_steps))
    needed = [_needed_after(chain, plans, i, vectorizer) for i in range(len(plans))]
    scratched = {n for i, plan in enumerate(plans) for step in chain[plan.start : plan.end] for n in step.outputs() if n in needed[i]}
    timings: dict[str, float] = {"statistics": 0.0, "tiles": 0.0}
    memory = MemorySink(source.geo) if sink is None else None
    target = sink if sink is not None else memory
    outputs = output_layers if sink is not None else None
    pieces: list[tuple[shapely.LineString, float]] = []
    messages: list[str] = []
    tiles: list[Tile] = []
    scratch = _open_scratch(source, client, len(scratched), max_memory, scratch_dir)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            for i, plan in enumerate(plans):
                t0 = time.perf_counter()
                view = scratch.view()
                work = _pass_work(chain, plan, vectorizer, view.names(), needed[i], outputs)
                running = [*work.steps, *([work.vectorizer] if work.vectorizer else [])]
                core_px, halo = plan_tiles(
                    running,
                    source.geo,
                    max_memory=max_memory,
                    tile_px=tile_px,
                    extra_halo=max((s.stats_halo_px(source.geo) for s in work.measure), default=0),
                    also_in_memory=tuple(work.measure),
                    extra_bytes_per_pixel=8 * len(work.reads),
                )
                tiles = tile_grid(source.geo.height, source.geo.width, core_px, halo)
                log.debug("%s: pass %d/%d (%s): %d tile(s) of %d px, halo %d px", source.source, i + 1, len(plans), [s.label for s in (*running, *work.measure)], len(tiles), core_px, halo)
                partials: list[list[Any]] = [[] for _ in work.measure]
                for done, (tile, out) in enumerate(_map_tiles(_tile_task, tiles, client, work, source, view), start=1):
                    for name, core in out.cores.items():
                        if name in needed[i]:
                            scratch.write(name, core, tile)
                        if target is not None and (outputs is None or name in outputs):
                            target.write(name, core, tile)
                    for bucket, value in zip(partials, out.statistics):
                        bucket.append(value)
                    pieces += out.pieces
                    messages += out.warnings
                    if on_tile is not None:
                        on_tile(done, len(tiles))
                scratch.commit()
                for j, bucket in zip(plan.measure, partials):
                    chain[j] = chain[j].fit(bucket)
                timings["tiles" if plan.final else "statistics"] += time.perf_counter() - t0
        finally:
            scratch.close()
        network_steps = chain[len(raster_steps) :]
        result_layers: dict[str, Any] = dict(memory.arrays) if memory is not None else {}
        if vectorizer is not None:
            t0 = time.perf_counter()
            scene_ctx = StepContext(geo=source.geo, valid=None, source=source.source, band_names=source.band_names)
            network = canonical(drop_clip_vertices(dissolve_degree2(stitch_pieces(pieces, STITCH_SNAP_PX))))
            network = canonical(vectorizer.finalize(network, scene_ctx))
            layers = {"network": network}
            for step in network_steps:
                layers.update(_apply(step, layers, scene_ctx))
            result_layers["network"] = layers["network"]
            messages += scene_ctx.warnings
            timings["network"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - start
    messages += [str(w.message) for w in caught]
    for msg in dict.fromkeys(messages):
        log.warning("%s", msg)
    return RunResult(result_layers, source.geo, source.source, list(dict.fromkeys(messages)), timings, len(tiles))


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
