"""``geoseg eval``: score a road network against a reference."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING

import click

from geoseg.errors import GeosegError

if TYPE_CHECKING:
    from geoseg.evaluate import Evaluation


@click.command("eval")
@click.argument("pred", type=click.Path())
@click.argument("truth", type=click.Path())
@click.option("--buffer-m", type=click.FloatRange(min=0, min_open=True), default=None, help="Buffer half-width in metres (default 2 m for vectors).")
@click.option("--slack-px", type=click.FloatRange(min=0), default=None, help="Pixel slack, for two centerline rasters on the same grid (default 3).")
@click.option(
    "--gsd-m", type=click.FloatRange(min=0, min_open=True), default=None, help="GSD of data without georeferencing [default: 0.3, said in the output]."
)
@click.option(
    "--junction-radius-m",
    type=click.FloatRange(min=0, min_open=True),
    default=10.0,
    show_default=True,
    help="Largest distance in metres at which a junction of PRED matches one of TRUTH.",
)
@click.option(
    "--join-ends-m",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="Join a line's end to another line within this distance in the graphs (0: only shared vertices join lines, as in SpaceNet's APLS).",
)
@click.option(
    "--image", type=click.Path(exists=True, dir_okay=False), default=None, help="Image whose georeferencing places a SpaceNet CSV's pixel coordinates."
)
@click.option(
    "--image-id", default=None, help="ImageId of the SpaceNet CSV rows to score [default: the only one, else --image's name without RGB-PanSharpen_ etc.]."
)
@click.option("--json", "as_json", is_flag=True, help="Print the scores as JSON (undefined scores as null).")
def command(
    pred: str,
    truth: str,
    buffer_m: float | None,
    slack_px: float | None,
    gsd_m: float | None,
    junction_radius_m: float,
    join_ends_m: float,
    image: str | None,
    image_id: str | None,
    as_json: bool,
) -> None:
    """Score PRED against TRUTH: completeness, correctness, quality (Wiedemann), APLS, TOPO, junctions, components.

    PRED and TRUTH are vector files of lines (.shp, .gpkg, .geojson, ...) or centerline
    rasters (non-zero = centerline). Two rasters on one grid are compared pixel-wise with
    --slack-px; anything else is measured as lines in metres with --buffer-m (in a local
    UTM zone for georeferenced data; pixels x --gsd-m otherwise). A TRUTH in another CRS is
    reprojected to PRED's on the fly (the output says so); inputs that do not overlap are refused.
    Either one may be a SpaceNet submission CSV (ImageId,WKT_Pix in pixel coordinates):
    --image gives its georeferencing, --image-id the rows to score.

    APLS follows the SpaceNet reference implementation (CosmiQ apls, its defaults: control
    points every 50 m, 4 m snapping); graphs join lines where they share a vertex.

    The graph scores (docs/METRICS.md): TOPO precision/recall/F1 (Biagioni & Eriksson 2012);
    junctions (nodes of degree 3 or more) matched within --junction-radius-m: precision,
    recall, F1 and counts; connected components of each side and their ratio (PRED / TRUTH).
    Undefined scores (no junction on a side) show as n/a.

    \b
    Examples:
      geoseg eval out/scene_a.shp sample_data/scene_a_centerlines.geojson --buffer-m 1
      geoseg eval pred_centerline.png truth_centerline.png --slack-px 3 --json
      geoseg eval out/scene_a.gpkg truth/scene_a.gpkg --junction-radius-m 5
      geoseg eval submission.csv AOI_2_Vegas_img0.geojson --image RGB-PanSharpen_AOI_2_Vegas_img0.tif
    """
    if buffer_m is not None and slack_px is not None:
        raise click.UsageError("give either --slack-px (two rasters on one grid) or --buffer-m (lines in metres), not both")
    for path in map(Path, (pred, truth)):  # the readers' own message, before they load
        if not path.exists():
            raise GeosegError(f"{path}: no such file")
    from geoseg.evaluate import evaluate_files

    result = evaluate_files(
        pred,
        truth,
        buffer_m=buffer_m,
        slack_px=slack_px,
        assume_gsd_m=gsd_m,
        junction_radius_m=junction_radius_m,
        join_ends_m=join_ends_m,
        image=image,
        image_id=image_id,
    )
    notes = _notes(result)
    if as_json:
        click.echo(json.dumps({**result.to_dict(), "notes": notes}))
        return
    tol = f"{result.tolerance:g} {result.tolerance_unit}"
    click.echo(f"prediction: {pred}\nreference:  {truth}\nmatching:   {result.mode}, tolerance {tol}")
    for note in notes:
        click.echo(f"note:       {note}")
    click.echo(f"completeness {_score(result.completeness, '.4f')}")
    click.echo(f"correctness  {_score(result.correctness, '.4f')}")
    click.echo(f"quality      {_score(result.quality, '.4f')}")
    click.echo(f"APLS         {_score(result.apls, '.4f')}")
    for label, text in result.graph.summary():
        click.echo(f"{label:<12} {text}")
    click.echo(f"length (m)   prediction {result.pred_length_m:.1f}, reference {result.truth_length_m:.1f}")


def _score(value: float, spec: str) -> str:
    """A score as text; ``n/a`` for NaN (undefined)."""
    return "n/a" if math.isnan(value) else format(value, spec)


def _notes(result: Evaluation) -> list[str]:
    """What the user must know about how the inputs were measured: a reprojection, an assumed GSD."""
    notes = []
    if result.reference_reprojected_from is not None:
        notes.append(f"the reference was reprojected on the fly from {result.reference_reprojected_from} to the prediction's CRS {result.crs}")
    if result.pixel_gsd_m is not None:
        how = "assumed; set it with --gsd-m" if result.gsd_assumed else "from --gsd-m"
        notes.append(f"no georeferencing: lengths are pixels x {result.pixel_gsd_m:g} m ({how})")
    return notes
