"""``geoseg run``: a pipeline over a batch of scenes, resumable, on Dask."""

from __future__ import annotations

import contextlib
import logging

import click

from geoseg.cli._common import expand_inputs, progress_option, progress_reporter, set_option
from geoseg.pipeline.batch import MANIFEST_NAME, pending_scenes, run_batch
from geoseg.pipeline.distributed import SCHEDULER_ENV, dask_client, default_workers
from geoseg.pipeline.pipeline import load_pipeline
from geoseg.vector import FORMATS

log = logging.getLogger("geoseg.cli")


@click.command("run")
@click.argument("pipeline")
@click.argument("inputs", nargs=-1, required=True)
@click.option("-o", "--outdir", required=True, type=click.Path(file_okay=False), help="Output folder (created if needed).")
@set_option
@click.option(
    "--format",
    "fmt",
    type=click.Choice(sorted(FORMATS)),
    default="shp",
    show_default=True,
    help="Vector output format (rasters are always GeoTIFF).",
)
@progress_option
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="Worker processes of the local Dask cluster [default: the usable cores, at most one per scene]. "
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
@click.option("--report", "want_report", is_flag=True, help="After the batch, write an HTML report into OUTDIR.")
@click.option(
    "--truth",
    metavar="DIR_OR_GLOB",
    default=None,
    help="Reference networks (matched to scenes by stem) scored in the report; implies --report.",
)
def command(
    pipeline: str,
    inputs: tuple[str, ...],
    outdir: str,
    overrides: tuple[str, ...],
    fmt: str,
    progress: str,
    workers: int | None,
    scheduler: str | None,
    overwrite: bool,
    want_report: bool,
    truth: str | None,
) -> None:
    """Run PIPELINE (a YAML file, or the name of a shipped pipeline such as
    road_centerlines) on each INPUT scene and write OUTDIR/<stem>.<ext>.

    INPUTS are raster files or glob patterns (quoted globs are expanded by geoseg).
    A scene that fails is reported and the others go on; the exit code is 1 if any
    scene failed. Outputs are in each input's CRS (pixel coordinates for inputs
    without georeferencing) and are written atomically.

    The batch is resumable: OUTDIR/geoseg-manifest.json records each scene's status,
    outputs, time and error. Running the same command again skips the scenes done
    (unless --overwrite) and redoes failed or interrupted ones; changing the pipeline
    or a --set value redoes all.

    Several scenes run in parallel on a local Dask cluster (one single-threaded worker
    process per core, each allowed the machine's memory divided by the number of
    workers), or on a running cluster with --scheduler. A single scene runs in this
    process, unless --workers N (N > 1) or --scheduler is given: then its tiles are the
    Dask tasks. --workers 1 runs everything here, without Dask.

    \b
    Examples:
      geoseg run pipelines/mask_to_centerlines.yaml sample_data/scene_a_mask.tif -o out/
      geoseg run pipelines/road_centerlines.yaml "scenes/*.tif" -o out/ --set model=roads.mjcr.npz
      geoseg run pipelines/road_centerlines.yaml a.tif -o out/ --format gpkg --set graph_cut.smoothness=3
      geoseg run mask_to_centerlines "masks/*.tif" -o out/ --workers 4     # rerun it to resume
      geoseg run mask_to_centerlines "masks/*.tif" -o out/ --scheduler tcp://10.0.0.5:8786
      geoseg run mask_to_centerlines "masks/*.tif" -o out/ --truth "truth/*.geojson"  # + HTML report
    """
    from geoseg.sequence.pipeline import is_sequence_pipeline, run_sequence_to_dir

    if is_sequence_pipeline(pipeline):  # `kind: sequence`: all INPUTS form one sequence (docs/SEQUENCES.md)
        run_sequence_to_dir(pipeline, [str(p) for p in inputs], outdir, overrides)
        return
    pipe = load_pipeline(pipeline, overrides)
    pipe.steps  # noqa: B018 - bind now so a missing parameter fails before any scene
    scenes = expand_inputs(inputs)
    todo = pending_scenes(pipe, scenes, outdir, fmt=fmt, overwrite=overwrite)
    if scheduler and workers is not None:
        log.warning("--workers is ignored with --scheduler: the cluster has its own workers")
    # Default: one worker per core, at most one per scene (a single scene runs here, cheaper
    # than starting a cluster); an explicit --workers N always gets N workers, and a single
    # scene then spreads its tiles over them.
    local_workers = workers if workers is not None else min(default_workers(), len(todo))
    use_dask = bool(scheduler) or local_workers > 1
    callback, tile_callback, close = progress_reporter(progress, len(scenes), "scene")
    try:
        with dask_client(scheduler, local_workers) if use_dask else contextlib.nullcontext() as client:
            reports = run_batch(
                pipe, scenes, outdir, fmt=fmt, progress=callback, client=client, overwrite=overwrite, pipeline_name=pipeline,
                tile_progress=tile_callback,
            )
    finally:
        close()
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
