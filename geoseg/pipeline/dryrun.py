"""Dry runs: what a batch would do, checked from the scenes' headers and the models alone.

``geoseg run --dry-run`` reads no pixel and writes nothing: each scene's header (readable,
size, bands, CRS, GSD, ``max_pixels``), the steps' models, the output folder and the manifest
are checked, and the passes over the tiles are foreseen as the engine plans them (tile size and
count, halo, memory). Halos that depend on scene statistics (the road width) are estimated
from the steps' fallbacks and marked as such.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from geoseg.errors import GeosegError, OutputWriteError
from geoseg.inputs import SceneInput, scene_input
from geoseg.pipeline.batch import (
    _Manifest,
    _scene_checks,
    _scene_error,
    check_batch,
    output_folders,
    pipeline_hash,
)
from geoseg.vector import VectorFormat, vector_format

if TYPE_CHECKING:
    from geoseg.pipeline.pipeline import Pipeline

__all__ = ["PassPlan", "ScenePlan", "plan_batch"]


@dataclass
class PassPlan:
    """One pass over a scene's tiles, as a dry run foresees it.

    Attributes
    ----------
    index, total : int
        1-based number of the pass, and passes of the scene.
    steps : tuple of str
        Steps run on every tile (empty: the pass only measures).
    measures : tuple of str
        Steps whose scene-wide statistics the pass measures.
    tiles : int
        Number of tiles.
    tile_px, halo_px : int
        Core side and halo of the tiles (pixels).
    tile_bytes : int
        Estimated memory of the largest tile.
    estimated : bool
        The halo (and so the tile size) uses fallback statistics (e.g. the fallback road
        width) for steps that the run fits on the scene first; the run may choose another.
    """

    index: int
    total: int
    steps: tuple[str, ...]
    measures: tuple[str, ...]
    tiles: int
    tile_px: int
    halo_px: int
    tile_bytes: int
    estimated: bool


@dataclass
class ScenePlan:
    """What a batch would do with one scene (:func:`plan_batch`).

    Attributes
    ----------
    input : str
        The scene as given.
    status : {"ready", "skipped", "failed"}
        Would run; done by an earlier run (skipped without ``overwrite``); or refused, with
        ``error`` saying why.
    error : str or None
    width, height, bands : int
    dtype : str
    crs : str or None
        The scene's CRS (None: no georeferencing, pixel coordinates).
    gsd_m : float
        Ground sample distance in metres (assumed for scenes without georeferencing).
    extent : str or None
        Where the processing extent (engine setting ``extent``, ``--bbox``/``--aoi``) falls on
        the scene; the passes are planned over its window (earlier passes also read a margin
        around it).
    passes : list of PassPlan
    blocks : int
        Scene pixels per side of the blocks the passes are expected to work on (1: the scene's
        own pixels). A chain whose first step sizes blocks from the measured road width
        (``threshold_mask`` with ``work_road_px``) is planned for a typical road width; the run
        measures it, so its passes are marked estimated.
    memory_bytes : int
        Estimated peak memory: the largest tile, plus intermediate layers kept in memory.
    scratch_bytes : int
        Size of the intermediate layers kept between passes.
    scratch_on_disk : bool
        Whether they go to temporary files beside the outputs (large scenes) rather than memory.
    outputs : list of str
        The files it would write (or, skipped, the files written by the earlier run).
    """

    input: str
    status: str
    error: str | None = None
    width: int = 0
    height: int = 0
    bands: int = 0
    dtype: str = ""
    crs: str | None = None
    gsd_m: float = 0.0
    extent: str | None = None
    passes: list[PassPlan] = field(default_factory=list)
    blocks: int = 1
    memory_bytes: int = 0
    scratch_bytes: int = 0
    scratch_on_disk: bool = False
    outputs: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


def _check_output_folder(outdir: Path) -> None:
    """Refuse an output folder that cannot be created or written, without creating anything."""
    existing = next(p for p in (outdir, *outdir.parents) if p.exists())
    if not existing.is_dir():
        raise OutputWriteError(f"{outdir}: cannot create the output folder ({existing} is not a folder)")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputWriteError(f"{outdir}: cannot write output here ({existing} is not writable)")


def _halo_of(step: Any, geo: Any) -> tuple[int, bool]:
    """A step's halo before any statistics are measured, and whether it is exact.

    A step whose halo depends on scene statistics (e.g. the road width) gets the halo of its
    fallbacks (fitted without statistics); 0 when it has none.
    """
    try:
        return step.halo_px(geo), True
    except GeosegError:  # it may need its scene statistics: try its fallbacks
        pass
    try:
        fallback = step.fit([])
    except GeosegError:  # an unreadable model file: the scene's error
        raise
    except Exception:  # noqa: BLE001 - a step without fallbacks: the estimate leaves its halo out
        return 0, False
    return fallback.halo_px(geo), False


def _plan_passes_of(pipeline: Pipeline, geo: Any, steps: list[Any] | None = None) -> tuple[list[PassPlan], int]:
    """The passes and tiles :func:`geoseg.pipeline.engine.execute` would run, and the scratch layers' count.

    Mirrors ``execute``'s planning; halos that depend on scene statistics are estimates
    (see :func:`_halo_of`). ``steps`` replaces the pipeline's steps (e.g. with a first step
    fitted before the run).
    """
    from geoseg.pipeline.engine import (
        IMAGE_BYTES_PER_PIXEL,
        _needed_after,
        _pass_work,
        _plan_passes,
        _split,
        plan_tiles,
    )
    from geoseg.pipeline.step import layer_kind
    from geoseg.tiling import tile_grid

    engine = pipeline.engine
    raster_steps, vectorizer, network_steps = _split(list(pipeline.steps) if steps is None else steps)
    chain = [*raster_steps, *network_steps]
    plans = _plan_passes(chain, len(raster_steps))
    needed = [_needed_after(chain, plans, i, vectorizer) for i in range(len(plans))]
    sink_layers = {o for o in pipeline.output_layers() if layer_kind(o) == "raster"}
    stored: set[str] = set()
    passes = []
    for i, plan in enumerate(plans):
        work = _pass_work(chain, plan, vectorizer, stored, needed[i], sink_layers)
        running = [*work.steps, *([work.vectorizer] if work.vectorizer else [])]
        halos = [_halo_of(s, geo) for s in running]
        in_memory = (*running, *work.measure)
        core_px, halo = plan_tiles(
            [],
            geo,
            max_memory=engine.max_memory_bytes,
            tile_px=engine.tile_px,
            extra_halo=sum(h for h, _ in halos) + max((s.stats_halo_px(geo) for s in work.measure), default=0),
            also_in_memory=in_memory,
            extra_bytes_per_pixel=8 * len(work.reads),
        )
        tiles = tile_grid(geo.height, geo.width, core_px, halo)
        per_pixel = IMAGE_BYTES_PER_PIXEL + 8 * len(work.reads) + sum(s.bytes_per_pixel for s in in_memory)
        largest = max(t.win_height * t.win_width for t in tiles)
        passes.append(
            PassPlan(
                i + 1,
                len(plans),
                tuple(s.label for s in running),
                tuple(s.label for s in work.measure),
                len(tiles),
                core_px,
                halo,
                largest * per_pixel,
                not all(exact for _, exact in halos),
            )
        )
        stored |= {n for s in work.steps for n in s.outputs() if n in needed[i] and (work.keep is None or n in work.keep)}
    scratched = {n for i, plan in enumerate(plans) for step in chain[plan.start : plan.end] for n in step.outputs() if n in needed[i]}
    return passes, len(scratched)


def _plan_scene(pipeline: Pipeline, scene: SceneInput, folder: Path, fmt: VectorFormat) -> ScenePlan:
    """Check one scene from its header and foresee its passes, memory and outputs."""
    from geoseg.pipeline.engine import open_source, scene_extent
    from geoseg.pipeline.outputs import output_paths
    from geoseg.raster import read_geoinfo

    engine = pipeline.engine
    try:
        _scene_checks(scene, pipeline, fmt)  # its warning comes when the scene runs
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a dry run reports figures; the run gives the warnings
            source = open_source(scene.raster, engine.assume_gsd_m, engine.max_pixels)
            _, summary = read_geoinfo(scene.raster, assume_gsd_m=engine.assume_gsd_m)
        extent = None if engine.extent is None else scene_extent(engine.extent, source.geo, scene.raster)
        work_geo = source.geo if extent is None else extent.geo(source.geo)
        steps = list(pipeline.steps)
        for step in steps:
            step.check_bands(source.band_names, scene.raster)
        blocks = steps[0].expected_coarsening(work_geo) if steps and steps[0].wants_coarsening() else 1
        if blocks > 1:  # the run fits the first step on the scene's pixels before its passes
            steps[0] = steps[0].fit([])
        plan_geo = work_geo.coarsened(blocks)
        passes, scratch_layers = _plan_passes_of(pipeline, plan_geo, steps)
        if blocks > 1:  # the block size, and so the tiles, depend on the road width the run measures
            passes = [replace(p, estimated=True) for p in passes]
        outputs = output_paths(pipeline.output_layers(), folder, scene.stem, fmt)
    except GeosegError as exc:
        message = str(exc)
        named = scene.raster in message or scene.name in message or str(scene) in message
        return ScenePlan(str(scene), "failed", error=_scene_error(scene, message if named else f"{scene}: {message}"))
    geo = source.geo
    window = None if extent is None else extent.window
    where = (
        None
        if window is None or engine.extent is None
        else (f"{engine.extent.describe()}: {window.width} x {window.height} px from column {window.col0}, row {window.row0}")
    )
    scratch = 8 * scratch_layers * plan_geo.width * plan_geo.height
    on_disk = scratch > engine.max_memory_bytes // 4  # as the engine decides when a scene runs in one process
    return ScenePlan(
        str(scene),
        "ready",
        width=geo.width,
        height=geo.height,
        bands=summary["count"],
        dtype=",".join(sorted(set(summary["dtypes"]))),
        crs=geo.crs.to_string() if geo.georeferenced and geo.crs is not None else None,
        gsd_m=round(float(geo.gsd_m), 4),
        extent=where,
        passes=passes,
        blocks=blocks,
        memory_bytes=max(p.tile_bytes for p in passes) + (0 if on_disk else scratch),
        scratch_bytes=scratch,
        scratch_on_disk=on_disk,
        outputs=[str(p) for p in outputs],
    )


def plan_batch(
    pipeline: Pipeline,
    inputs: Sequence[str | Path | SceneInput],
    outdir: str | Path,
    *,
    fmt: str | VectorFormat = "shp",
    overwrite: bool = False,
    keep_folders: bool = False,
) -> list[ScenePlan]:
    """What :func:`run_batch` would do, checked without reading a pixel and without writing anything.

    For every scene: its header is read (file readable, size, bands, CRS, GSD, the
    ``max_pixels`` limit), the models of the steps are loaded, and the passes over its tiles
    are planned as the engine would (tile size and count, memory). The output folder must be
    writable (or creatable); the manifest tells which scenes an earlier run did already.
    A scene that cannot be processed is planned as ``"failed"`` with its error; the others
    are still planned.

    Parameters
    ----------
    pipeline : Pipeline
        A bound pipeline (all parameters set).
    inputs : sequence of str, pathlib.Path or SceneInput
        The scenes, as :func:`run_batch` takes them.
    outdir : str or pathlib.Path
        The batch's output folder (not created).
    fmt : str or VectorFormat, default "shp"
        Vector output format and options.
    overwrite : bool, default False
        Plan every scene, whatever the manifest says.
    keep_folders : bool, default False
        Mirror the input folders under ``outdir`` (:func:`output_folders`).

    Returns
    -------
    list of ScenePlan
        One per input, in input order: ``"skipped"`` (done by an earlier run), ``"ready"``
        or ``"failed"``.

    Raises
    ------
    ConfigError
        Two inputs would write the same output, the format or its options are invalid, or a
        parameter is unset (as :func:`run_batch`).
    ModelFileError
        A model file that no scene could use (as :func:`run_batch`).
    OutputWriteError
        The output folder cannot be created or written.
    """
    paths = [scene_input(p, strict=False) for p in inputs]
    out = Path(outdir)
    spec = vector_format(fmt)
    folders = output_folders(paths, out, keep_folders=keep_folders)
    check_batch(pipeline, paths, folders, spec, keep_folders=keep_folders)
    _check_output_folder(out)
    manifest = _Manifest.resume(out, pipeline.source, pipeline_hash(pipeline), spec, overwrite=overwrite)
    plans = []
    for path in paths:
        earlier = manifest.done_report(path, folders[str(path)])
        if earlier is not None:
            plans.append(ScenePlan(str(path), "skipped", outputs=earlier.outputs, crs=earlier.crs))
        else:
            plans.append(_plan_scene(pipeline, path, folders[str(path)], spec))
    return plans
