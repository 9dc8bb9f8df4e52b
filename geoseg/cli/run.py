"""``geoseg run``: a pipeline over a batch of scenes, resumable, on Dask."""

from __future__ import annotations

import contextlib
import logging
import math
from functools import partial
from pathlib import Path
from typing import Any

import click

from geoseg.cli._common import (
    print_plans,
    progress_option,
    progress_reporter,
    report_interrupt,
    set_option,
    vector_output,
    vector_output_options,
)
from geoseg.configfile import pipeline_kind
from geoseg.errors import RasterReadError
from geoseg.inputs import SceneInput, expand_scenes
from geoseg.manifest import MANIFEST_NAME
from geoseg.pipeline.batch import LocalCluster, pending_scenes, run_batch
from geoseg.pipeline.distributed import SCHEDULER_ENV, dask_client, default_workers
from geoseg.pipeline.dryrun import plan_batch

log = logging.getLogger("geoseg.cli")

#: Missing scenes named in the error when none of the inputs exists.
_MISSING_SHOWN = 3


def _check_crs(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """``--bbox-crs``: a CRS that pyproj knows."""
    if value is not None:
        from pyproj import CRS
        from pyproj.exceptions import CRSError

        try:
            CRS.from_user_input(value)
        except CRSError:
            raise click.BadParameter(f"unknown CRS {value!r} (e.g. EPSG:4326, a WKT or PROJ string)") from None
    return value


def _extent(bbox: tuple[float, float, float, float] | None, bbox_crs: str | None, aoi: str | None) -> dict[str, Any] | None:
    """The engine setting ``extent`` from ``--bbox``/``--bbox-crs``/``--aoi`` (None: none given).

    Raises
    ------
    click.UsageError
        Both --bbox and --aoi, --bbox-crs without --bbox, or a box without XMIN < XMAX and YMIN < YMAX.
    """
    if bbox is not None and aoi is not None:
        raise click.UsageError("--bbox and --aoi both give the processing extent: use one of them")
    if bbox_crs is not None and bbox is None:
        raise click.UsageError("--bbox-crs gives the CRS of --bbox: add --bbox XMIN YMIN XMAX YMAX")
    if bbox is None:
        return None if aoi is None else {"aoi": aoi}
    xmin, ymin, xmax, ymax = bbox
    if not all(math.isfinite(v) for v in bbox) or xmin >= xmax or ymin >= ymax:
        raise click.BadParameter(f"needs XMIN < XMAX and YMIN < YMAX (got {' '.join(f'{v:.10g}' for v in bbox)})", param_hint="'--bbox'")
    return {"bbox": list(bbox), "crs": bbox_crs}


def _stop_if_no_scene_exists(scenes: list[SceneInput], outdir: str) -> None:
    """Stop the batch before anything loads when none of its scenes exists.

    Each missing scene would fail on its own (a batch goes on past the scenes it cannot read),
    so the batch could do nothing. Scenes behind URLs and virtual paths are not looked for here. Not when OUTDIR has a manifest: it may record scenes as done
    whose inputs were removed since, and a rerun skips those.

    Raises
    ------
    RasterReadError
        No scene exists; the message is the raster reader's for each (at most
        :data:`_MISSING_SHOWN` of them).
    """
    if any(scene.exists() for scene in scenes) or (Path(outdir) / MANIFEST_NAME).exists():
        return
    errors = [f"{scene}: no such file" for scene in scenes[:_MISSING_SHOWN]]
    if len(scenes) > _MISSING_SHOWN:
        errors.append(f"and {len(scenes) - _MISSING_SHOWN} more input(s) that do not exist")
    raise RasterReadError("; ".join(errors))


@click.command("run")
@click.argument("pipeline")
@click.argument("inputs", nargs=-1, required=True)
@click.option("-o", "--outdir", required=True, type=click.Path(file_okay=False), help="Output folder (created if needed).")
@set_option
@vector_output_options
@progress_option
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="Worker processes of a local Dask cluster. Default: scenes run here, and a cluster of one worker per usable core "
    "(at most one per scene) starts for the rest of a batch once the scenes done show that it pays for its start-up. "
    "1 runs the scenes one by one in this process, without Dask. With one scene and N > 1, its tiles run on the workers.",
)
@click.option(
    "--scheduler",
    metavar="ADDRESS",
    envvar=SCHEDULER_ENV,
    default=None,
    help=f"Use the running Dask cluster at ADDRESS (tcp://HOST:PORT) instead of a local one; also ${SCHEDULER_ENV}.",
)
@click.option("--overwrite", is_flag=True, help=f"Redo every scene, also those that {MANIFEST_NAME} records as done.")
@click.option(
    "--keep-folders",
    is_flag=True,
    help="Mirror the input folders under OUTDIR (relative to the inputs' common parent folder): "
    "a/s1.tif and b/s1.tif write OUTDIR/a/s1.shp and OUTDIR/b/s1.shp.",
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="Check every scene from its header (readable, size, bands, CRS, GSD; models loadable; OUTDIR writable) and "
    "print the passes, tiles, memory and outputs of each; read no pixel, write nothing. Exit 1 if a scene would fail.",
)
@click.option("--report", "want_report", is_flag=True, help="After the batch, write an HTML report into OUTDIR.")
@click.option(
    "--truth",
    metavar="DIR_OR_GLOB",
    default=None,
    help="Reference networks (matched to scenes by stem) scored in the report; implies --report.",
)
@click.option(
    "--bbox",
    nargs=4,
    type=float,
    default=None,
    metavar="XMIN YMIN XMAX YMAX",
    help="Process only this box of each scene, in the scene's CRS (or --bbox-crs): rasters are written for the "
    "whole pixels covering it, networks clipped to it. Statistics (road width, ...) are measured over it.",
)
@click.option("--bbox-crs", metavar="CRS", default=None, callback=_check_crs, help="CRS of --bbox (e.g. EPSG:4326); it is reprojected to each scene's CRS.")
@click.option(
    "--asset",
    metavar="KEY",
    default=None,
    help="For inputs that are STAC Items (item.json, a file or URL): the asset to process [default: the item's "
    "visual asset (visual, rgb, image, data, or the one whose roles include visual)].",
)
@click.option(
    "--aoi",
    metavar="FILE",
    default=None,
    help="Process only the area of interest drawn as polygons in this vector file (their union, reprojected to each "
    "scene's CRS): like --bbox over the polygons' bounds, networks clipped to the polygons.",
)
def command(
    pipeline: str,
    inputs: tuple[str, ...],
    outdir: str,
    overrides: tuple[str, ...],
    fmt: str | None,
    dst_crs: str | None,
    rfc7946: bool,
    precision: int | None,
    progress: str,
    workers: int | None,
    scheduler: str | None,
    overwrite: bool,
    keep_folders: bool,
    dry_run: bool,
    want_report: bool,
    truth: str | None,
    bbox: tuple[float, float, float, float] | None,
    bbox_crs: str | None,
    asset: str | None,
    aoi: str | None,
) -> None:
    """Run PIPELINE (a YAML file, or the name of a shipped pipeline such as
    road_centerlines) on each INPUT scene and write OUTDIR/<stem>.<ext>.

    INPUTS are raster files or glob patterns (quoted globs are expanded by geoseg),
    GDAL virtual paths (/vsicurl/https://..., /vsis3/..., /vsizip//data/s.zip/a.tif),
    URLs (https://, s3://, gs://: read window by window, as GDAL does for COGs) and
    STAC Items (item.json, a file or URL: its visual asset, or --asset KEY; the outputs
    are named after the item's id). Outputs are named after the file name of a URL.
    A scene that fails is reported and the others go on; the exit code is 1 if any
    scene failed. Outputs are in each input's CRS (pixel coordinates for inputs
    without georeferencing) unless --dst-crs or --rfc7946 reprojects the vector
    outputs, and are written atomically.

    The batch is resumable: OUTDIR/geoseg-manifest.json records each scene's status,
    outputs, time and error. Running the same command again skips the scenes done
    (unless --overwrite) and redoes failed or interrupted ones; changing the pipeline
    or a --set value redoes all. Ctrl-C stops the batch (exit 130): the manifest records
    the unfinished scenes as interrupted, nothing partial is left, and the same command
    resumes it.

    Scenes run in this process, one by one, until the time they take shows that the
    rest of the batch would take much longer than starting a local Dask cluster (about
    4 s): the rest then runs in parallel on one (one single-threaded worker process per
    core, each allowed the machine's memory divided by the number of workers). So a
    batch of small scenes never waits for a cluster, and a long one uses every core.
    --workers N starts a cluster of N workers at once; --scheduler uses a running one;
    with either, a single scene's tiles are the Dask tasks. --workers 1 runs everything
    here, without Dask.

    \b
    Examples:
      geoseg run mask_to_centerlines sample_data/scene_a_mask.tif -o out/
      geoseg run road_centerlines "scenes/*.tif" -o out/ --set model=roads.mjcr.npz
      geoseg run road_centerlines a.tif -o out/ --format gpkg --set model=roads.mjcr.npz --set graph_cut.smoothness=3
      geoseg run my_pipeline.yaml a.tif -o out/          # a pipeline file of your own (geoseg pipelines lists the shipped ones)
      geoseg run mask_to_centerlines "masks/*.tif" -o out/ --workers 4     # rerun it to resume
      geoseg run mask_to_centerlines "masks/*.tif" -o out/ --scheduler tcp://10.0.0.5:8786
      geoseg run mask_to_centerlines "masks/*.tif" -o out/ --truth "truth/*.geojson"  # + HTML report
      geoseg run mask_to_centerlines "masks/*.tif" -o out/ --dry-run       # checks and plan, nothing written
      geoseg run mask_to_centerlines "masks/*.tif" -o out/ --rfc7946       # WGS84 GeoJSON, 7 decimals
      geoseg run mask_to_centerlines a/s1.tif b/s1.tif -o out/ --keep-folders   # out/a/s1.shp, out/b/s1.shp
      geoseg run mask_to_centerlines big.tif -o out/ --bbox 16.35 48.20 16.38 48.22 --bbox-crs EPSG:4326
      geoseg run road_centerlines https://example.com/cog/scene.tif -o out/ --set model=roads.mjcr.npz --bbox 500000 4999000 501000 5000000
      geoseg run road_centerlines /vsizip//data/scenes.zip/a.tif -o out/ --set model=roads.mjcr.npz
      geoseg run road_centerlines item.json -o out/ --set model=roads.mjcr.npz --asset visual      # a STAC Item
    """
    extent = _extent(bbox, bbox_crs, aoi)
    kind = pipeline_kind(pipeline)  # read without the libraries a pipeline loads; None: loading it says why
    if kind == "sequence":  # all INPUTS form one sequence (docs/SEQUENCES.md)
        from geoseg.pipeline.pipeline import load_pipeline
        from geoseg.pipeline.sequence import run_sequence_to_dir

        if extent is not None:
            raise click.UsageError("--bbox and --aoi work with raster pipelines; a sequence pipeline processes whole frames")
        if dry_run:
            raise click.UsageError("--dry-run checks scene pipelines; a sequence pipeline reads all its frames as one sequence")
        vector = vector_output(fmt, dst_crs, rfc7946, precision, default="gpkg")
        run_sequence_to_dir(load_pipeline(pipeline, overrides), [str(p) for p in inputs], outdir, fmt=vector)
        return
    vector = vector_output(fmt, dst_crs, rfc7946, precision, default="shp")
    scenes = expand_scenes(inputs, asset=asset)
    if kind is not None:
        _stop_if_no_scene_exists(scenes, outdir)
    from geoseg.pipeline.engine import read_aoi
    from geoseg.pipeline.pipeline import load_pipeline

    pipe = load_pipeline(pipeline, overrides)
    if extent is not None:
        pipe = pipe.with_overrides({"extent": extent})
    if pipe.engine.extent is not None and pipe.engine.extent.aoi is not None:
        read_aoi(pipe.engine.extent.aoi)  # an unreadable AOI stops the batch before any scene
    if truth:
        from geoseg.report.stats import truth_candidates

        truth_candidates(truth)  # so does a --truth that names no vector file
    pipe.steps  # noqa: B018 - bind now so a missing parameter fails before any scene
    if dry_run:
        plans = plan_batch(pipe, scenes, outdir, fmt=vector, overwrite=overwrite, keep_folders=keep_folders)
        raise SystemExit(print_plans(plans, as_json=progress == "json"))
    todo = pending_scenes(pipe, scenes, outdir, fmt=vector, overwrite=overwrite, keep_folders=keep_folders)
    if scheduler and workers is not None:
        log.warning("--workers is ignored with --scheduler: the cluster has its own workers")
    # Default: scenes run here; a local cluster (one worker per core, at most one per scene)
    # starts for the rest of the batch once the scenes done show that it pays. An explicit
    # --workers N always gets N workers, and a single scene then spreads its tiles over them.
    use_dask = bool(scheduler) or (workers is not None and workers > 1)
    local = min(default_workers(), max(1, len(todo)))
    adaptive = None if workers is not None or scheduler else LocalCluster(local, partial(dask_client, None, local))
    with contextlib.ExitStack() as bars:
        try:
            callback, tile_callback, close = progress_reporter(progress, len(scenes), "scene")
            bars.callback(close)
            with dask_client(scheduler, workers) if use_dask else contextlib.nullcontext() as client:
                reports = run_batch(
                    pipe,
                    scenes,
                    outdir,
                    fmt=vector,
                    progress=callback,
                    client=client,
                    overwrite=overwrite,
                    pipeline_name=pipeline,
                    tile_progress=tile_callback,
                    keep_folders=keep_folders,
                    cluster=adaptive,
                )
        except KeyboardInterrupt as stop:  # the cluster is closed: its workers are gone
            bars.close()
            report_interrupt(stop, len(scenes), len(scenes) - len(todo))
    failed = [r for r in reports if r.status == "failed"]
    skipped = sum(r.skipped for r in reports)
    log.info(
        "%d scene(s): %d done (%d by an earlier run), %d failed; outputs in %s",
        len(reports),
        len(reports) - len(failed),
        skipped,
        len(failed),
        outdir,
    )
    if want_report or truth:
        from geoseg.report import write_report

        log.info("report: %s", write_report(outdir, truth=truth))
    if failed:
        raise SystemExit(1)
