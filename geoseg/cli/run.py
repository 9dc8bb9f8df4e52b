"""``geoseg run``: a pipeline over a batch of scenes."""

from __future__ import annotations

import logging

import click

from geoseg.cli._common import expand_inputs, progress_option, progress_reporter, set_option
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
def command(pipeline: str, inputs: tuple[str, ...], outdir: str, overrides: tuple[str, ...], fmt: str, progress: str) -> None:
    """Run PIPELINE (a YAML file, or the name of a shipped pipeline such as
    road_centerlines) on each INPUT scene and write OUTDIR/<stem>.<ext>.

    INPUTS are raster files or glob patterns (quoted globs are expanded by geoseg).
    A scene that fails is reported and the others go on; the exit code is 1 if any
    scene failed. Outputs are in each input's CRS (pixel coordinates for inputs
    without georeferencing) and are written atomically.

    \b
    Examples:
      geoseg run pipelines/mask_to_centerlines.yaml sample_data/scene_a_mask.tif -o out/
      geoseg run pipelines/road_centerlines.yaml "scenes/*.tif" -o out/ --set model=roads.mjcr.npz
      geoseg run pipelines/road_centerlines.yaml a.tif -o out/ --format gpkg --set graph_cut.smoothness=3
    """
    pipe = load_pipeline(pipeline, overrides)
    pipe.steps  # noqa: B018 - bind now so a missing parameter fails before any scene
    scenes = expand_inputs(inputs)
    callback, close = progress_reporter(progress, len(scenes), "scene")
    try:
        reports = pipe.run_batch(scenes, outdir, fmt=fmt, progress=callback)
    finally:
        close()
    failed = [r for r in reports if r.status == "failed"]
    done = len(reports) - len(failed)
    log.info("%d scene(s): %d done, %d failed; outputs in %s", len(reports), done, len(failed), outdir)
    if failed:
        raise SystemExit(1)
