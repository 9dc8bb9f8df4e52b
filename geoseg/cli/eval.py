"""``geoseg eval``: score a road network against a reference."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click

from geoseg.errors import GeosegError

if TYPE_CHECKING:
    from geoseg.evaluate import Evaluation


@click.command("eval")
@click.argument("pred", type=click.Path())
@click.argument("truth", type=click.Path())
@click.option("--buffer-m", type=click.FloatRange(min=0), default=None, help="Buffer half-width in metres (default 2 m for vectors).")
@click.option("--slack-px", type=click.FloatRange(min=0), default=None, help="Pixel slack, for two centerline rasters on the same grid (default 3).")
@click.option("--gsd-m", type=click.FloatRange(min=0, min_open=True), default=None, help="GSD of data without georeferencing [default: 0.3, said in the output].")
@click.option("--json", "as_json", is_flag=True, help="Print the scores as JSON.")
def command(pred: str, truth: str, buffer_m: float | None, slack_px: float | None, gsd_m: float | None, as_json: bool) -> None:
    """Score PRED against TRUTH: completeness, correctness, quality (Wiedemann) and APLS.

    PRED and TRUTH are vector files of lines (.shp, .gpkg, .geojson, ...) or centerline
    rasters (non-zero = centerline). Two rasters on one grid are compared pixel-wise with
    --slack-px; anything else is measured as lines in metres with --buffer-m (in a local
    UTM zone for georeferenced data; pixels x --gsd-m otherwise). A TRUTH in another CRS is
    reprojected to PRED's on the fly (the output says so); inputs that do not overlap are refused.

    \b
    Examples:
      geoseg eval out/scene_a.shp sample_data/scene_a_centerlines.geojson --buffer-m 1
      geoseg eval pred_centerline.png truth_centerline.png --slack-px 3 --json
    """
    for path in map(Path, (pred, truth)):  # the readers' own message, before they load
        if not path.exists():
            raise GeosegError(f"{path}: no such file")
    from geoseg.evaluate import evaluate_files

    result = evaluate_files(pred, truth, buffer_m=buffer_m, slack_px=slack_px, assume_gsd_m=gsd_m)
    notes = _notes(result)
    if as_json:
        click.echo(json.dumps({**result.to_dict(), "notes": notes}))
        return
    tol = f"{result.tolerance:g} {result.tolerance_unit}"
    click.echo(f"prediction: {pred}\nreference:  {truth}\nmatching:   {result.mode}, tolerance {tol}")
    for note in notes:
        click.echo(f"note:       {note}")
    click.echo(f"completeness {result.completeness:.4f}")
    click.echo(f"correctness  {result.correctness:.4f}")
    click.echo(f"quality      {result.quality:.4f}")
    click.echo(f"APLS         {result.apls:.4f}")
    click.echo(f"length (m)   prediction {result.pred_length_m:.1f}, reference {result.truth_length_m:.1f}")


def _notes(result: Evaluation) -> list[str]:
    """What the user must know about how the inputs were measured: a reprojection, an assumed GSD."""
    notes = []
    if result.reference_reprojected_from is not None:
        notes.append(f"the reference was reprojected on the fly from {result.reference_reprojected_from} to the prediction's CRS {result.crs}")
    if result.pixel_gsd_m is not None:
        how = "assumed; set it with --gsd-m" if result.gsd_assumed else "from --gsd-m"
        notes.append(f"no georeferencing: lengths are pixels x {result.pixel_gsd_m:g} m ({how})")
    return notes
