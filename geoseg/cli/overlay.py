"""``geoseg overlay``: one road network drawn over its scene, as a PNG."""

from __future__ import annotations

from pathlib import Path

import click

from geoseg.report import save_overlay


@click.command("overlay")
@click.argument("scene", type=click.Path())
@click.argument("network", type=click.Path())
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="The PNG to write.")
@click.option("--max-size", type=click.IntRange(min=16), default=None, help="Longest side in pixels; the scene is read decimated (default: full resolution).")
@click.option("--line-width", type=click.IntRange(min=1), default=None, help="Line width in pixels (default from the image size).")
@click.option("--no-legend", is_flag=True, help="Leave out the legend strip below the scene.")
def command(scene: str, network: str, output: str, max_size: int | None, line_width: int | None, no_legend: bool) -> None:
    """Draw NETWORK (lines, e.g. OUTDIR/<stem>.shp) over SCENE and write a PNG.

    Edges are coloured by their confidence (0 = red to 1 = cyan, the same scale for every
    network; grey = none),
    junctions are white discs and dead ends black squares; a legend is added below.
    NETWORK must be in the CRS of SCENE (geoseg's outputs are); nothing is reprojected.
    Large scenes: give --max-size to read them decimated (overviews are used when present).

    \b
    Examples:
      geoseg overlay sample_data/scene_a.tif out/scene_a.shp -o scene_a.png
      geoseg overlay big_scene.tif out/big_scene.gpkg -o big.png --max-size 2000
    """
    if Path(output).suffix.lower() != ".png":
        raise click.BadParameter(f"{output}: the overlay is a PNG image; name the file .png", param_hint="-o")
    path = save_overlay(scene, network, output, max_size=max_size, line_width=line_width, legend=not no_legend)
    click.echo(str(path))
