"""One scene from file to output files: the unit of work of a batch."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import rasterio

from geoseg.atomic import remove_outputs
from geoseg.errors import GeosegError, NotGeoreferencedWarning
from geoseg.pipeline.coarsen import working_source
from geoseg.pipeline.config import EngineSettings
from geoseg.pipeline.engine import FileSource, TilePass, execute, open_source
from geoseg.pipeline.outputs import GeoTiffSink, check_geojson_crs, output_paths, write_vector_outputs
from geoseg.pipeline.step import writes_vectors
from geoseg.raster import not_georeferenced_message
from geoseg.vector import VectorFormat

if TYPE_CHECKING:
    from geoseg.pipeline.pipeline import Pipeline

__all__ = ["SceneOutput", "process_scene"]

log = logging.getLogger("geoseg.scene")


@dataclass
class SceneOutput:
    """Files written for a scene and the warnings raised while processing it."""

    outputs: list[Path]
    warnings: list[str] = field(default_factory=list)
    tiles: int = 1


def process_scene(
    pipeline: Pipeline,
    scene: str | Path,
    outdir: str | Path,
    *,
    stem: str,
    fmt: str | VectorFormat,
    on_tile: Callable[[int, int, TilePass], None] | None = None,
    client: Any = None,
) -> SceneOutput:
    """Run ``pipeline`` on ``scene`` tile by tile and write ``outdir/<stem>...`` atomically.

    Raster outputs are written tile by tile into tiled GeoTIFFs and the network is stitched
    from per-tile pieces, so memory stays bounded by ``max_memory`` whatever the scene size
    (the network itself is held in memory: it is small next to the rasters). With the engine
    setting ``extent``, only the extent's window is processed and written (rasters on the
    window's grid, the network clipped to the extent). A scene that fails leaves none of its
    outputs.

    Parameters
    ----------
    pipeline : Pipeline
        A bound pipeline of kind ``scene``.
    scene : str or pathlib.Path
        The raster to process.
    outdir : str or pathlib.Path
        The folder written to (it must exist).
    stem : str
        The stem of the output files (:func:`~geoseg.pipeline.outputs.output_paths`).
    fmt : str or VectorFormat
        Vector output format and options.
    on_tile : callable, optional
        Called with (tiles done, tiles total, :class:`~geoseg.pipeline.engine.TilePass`)
        during each pass over the tiles.
    client : distributed.Client, optional
        Run the tiles as Dask tasks on this cluster; default: here, one after the other.

    Returns
    -------
    SceneOutput
        The files written, the warnings raised, and the number of tiles.

    Raises
    ------
    GeosegError
        Any geoseg error of reading, processing or writing the scene (e.g.
        :class:`~geoseg.errors.RasterReadError`, :class:`~geoseg.errors.InputMismatchError`,
        :class:`~geoseg.errors.OutputWriteError`); the message names the scene.
    """
    outputs = pipeline.output_layers()
    try:
        output_paths(outputs, Path(outdir), stem, fmt)  # a stem that is no plain file name is refused
    except GeosegError as exc:
        raise type(exc)(f"{scene}: {exc}") from None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        opened = open_source(scene, pipeline.engine.assume_gsd_m, pipeline.engine.max_pixels)
    with opened:  # the dataset closes when the scene is done, not when it is garbage-collected
        return _process_opened(pipeline, scene, opened, outputs, Path(outdir), stem, fmt, caught, on_tile, client)


def _check_vector_format(scene: str | Path, opened: FileSource, outputs: list[str], fmt: str | VectorFormat) -> None:
    """Refuse, before any tile, GeoJSON lines of a scene without a CRS: they would be pixel coordinates read as longitudes and latitudes."""
    if writes_vectors(outputs):
        check_geojson_crs(scene, opened.geo.crs, fmt)


def _process_opened(
    pipeline: Pipeline,
    scene: str | Path,
    opened: FileSource,
    outputs: list[str],
    outdir: Path,
    stem: str,
    fmt: str | VectorFormat,
    caught: list[warnings.WarningMessage],
    on_tile: Callable[[int, int, TilePass], None] | None,
    client: Any,
) -> SceneOutput:
    """:func:`process_scene` once its raster is open."""
    _check_vector_format(scene, opened, outputs, fmt)
    notes = [str(w.message) for w in caught if not issubclass(w.category, NotGeoreferencedWarning)]
    if not opened.geo.georeferenced:
        notes.insert(0, _not_georeferenced_note(scene, pipeline.engine))
    for note in notes:
        log.warning("warning: %s", note)
    work = working_source(pipeline.steps, opened, pipeline.engine.extent)
    source, extent = work.source, work.extent
    # GDAL's block cache defaults to 5 % of RAM and grows with the scene: bound it too. In
    # bytes: rasterio hands an integer GDAL_CACHEMAX to GDALSetCacheMax64 as is (64 would be
    # 64 bytes: every tile would fetch and decode again the blocks its neighbours read).
    cache_bytes = max(16 * 2**20, pipeline.engine.max_memory_bytes // 8)
    with rasterio.Env(GDAL_CACHEMAX=cache_bytes), GeoTiffSink(outputs, Path(outdir), stem, source.geo if extent is None else extent.geo(source.geo)) as sink:
        result = execute(
            work.steps,
            source,
            sink=sink,
            output_layers=set(outputs),  # rasters to the sink; features layers of raster steps into the result
            max_memory=pipeline.engine.max_memory_bytes,
            tile_px=pipeline.engine.tile_px,
            on_tile=on_tile,
            client=client,
            # intermediate layers of large scenes go beside the outputs: readable by a cluster's
            # workers, on the disk meant for the results (not a small /tmp), and removed by the
            # next batch in this folder if a run is killed
            scratch_dir=Path(outdir),
            extent=extent,
        )
    try:
        written = [*write_vector_outputs(result, outputs, Path(outdir), stem, fmt), *sink.paths]
    except BaseException as exc:
        # Each file is atomic, but a scene's outputs are several files: leave none of them.
        remove_outputs([*sink.paths, *output_paths(outputs, Path(outdir), stem, fmt)])
        if isinstance(exc, GeosegError) and str(scene) not in str(exc):
            raise type(exc)(f"{scene}: writing to {outdir}: {exc}") from exc
        raise
    return SceneOutput(written, [*notes, *result.warnings], result.tiles)


def _not_georeferenced_note(scene: str | Path, engine: EngineSettings) -> str:
    """The warning for a scene without georeferencing: the GSD part only when ``assume_gsd_m`` is the default."""
    assumed = None if engine.assume_gsd_m_given else engine.assume_gsd_m
    return not_georeferenced_message(str(scene), assumed, "--set assume_gsd_m=VALUE")
