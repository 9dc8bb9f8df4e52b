"""``geoseg eval``: score a road network against a reference."""

from __future__ import annotations

import json

import click

from geoseg.evaluate import evaluate_files


@click.command("eval")
@click.argument("pred", type=click.Path())
@click.argument("truth", type=click.Path())
@click.option("--buffer-m", type=click.FloatRange(min=0), default=None, help="Buffer half-width in metres (default 2 m for vectors).")
@click.option("--slack-px", type=click.FloatRange(min=0), default=None, help="Pixel slack, for two centerline rasters on the same grid (default 3).")
@click.option("--gsd-m", type=click.FloatRange(min=0, min_open=True), default=0.3, show_default=True, help="GSD assumed for data without georeferencing.")
@click.option("--json", "as_json", is_flag=True, help="Print the scores as JSON.")
def command(pred: str, truth: str, buffer_m: float | None, slack_px: float | None, gsd_m: float, as_json: bool) -> None:
    """Score PRED against TRUTH: completeness, correctness, quality (Wiedemann) and APLS.

    PRED and TRUTH are vector files of lines (.shp, .gpkg, .geojson, ...) or centerline
    rasters (non-zero = centerline). Two rasters on one grid are compared pixel-wise with
    --slack-px; anything else is measured as lines in metres with --buffer-m (in a local
    UTM zone for georeferenced data; pixels x --gsd-m otherwise).

    \b
    Examples:
      geoseg eval out/scene_a.shp sample_data/scene_a_centerlines.geojson --buffer-m 1
      geoseg eval pred_centerline.png truth_centerline.png --slack-px 3 --json
    """
    result = evaluate_files(pred, truth, buffer_m=buffer_m, slack_px=slack_px, assume_gsd_m=gsd_m)
    if as_json:
        click.echo(json.dumps(result.to_dict()))
        return
    tol = f"{result.tolerance:g} {result.tolerance_unit}"
    click.echo(f"prediction: {pred}\nreference:  {truth}\nmatching:   {result.mode}, tolerance {tol}")
    click.echo(f"completeness {result.completeness:.4f}")
    click.echo(f"correctness  {result.correctness:.4f}")
    click.echo(f"quality      {result.quality:.4f}")
    click.echo(f"APLS         {result.apls:.4f}")
    click.echo(f"length (m)   prediction {result.pred_length_m:.1f}, reference {result.truth_length_m:.1f}")
