"""``geoseg compare``: what an extracted network says is different from an existing road map."""

from __future__ import annotations

import json
import math

import click


@click.command("compare")
@click.argument("network", type=click.Path())
@click.argument("road_map", metavar="MAP", type=click.Path())
@click.option("-o", "--outdir", required=True, type=click.Path(file_okay=False), help="Folder for the change layers.")
@click.option("--image", type=click.Path(), default=None, help="The scene NETWORK comes from: roads are compared within its valid-data area.")
@click.option("--footprint", type=click.Path(), default=None, help="Polygons (any vector format and CRS) within which roads are compared.")
@click.option(
    "--tolerance-m",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="How far apart two lines may be and be the same road [default: --road-width-m].",
)
@click.option("--road-width-m", type=click.FloatRange(min=0, min_open=True), default=7.0, show_default=True, help="Typical road width in metres.")
@click.option(
    "--max-angle-deg", type=click.FloatRange(0, 90, min_open=True), default=30.0, show_default=True, help="How far the directions of matched roads may differ."
)
@click.option("--min-length-m", type=click.FloatRange(min=0), default=None, help="Shortest new or missing stretch reported [default: twice the tolerance].")
@click.option(
    "--link-radius-m", type=click.FloatRange(min=0), default=250.0, show_default=True, help="New links are looked for between map nodes this close (0: none)."
)
@click.option(
    "--gsd-m", type=click.FloatRange(min=0, min_open=True), default=None, help="GSD of an --image without georeferencing [default: 0.3, said in the notes]."
)
@click.option("--map-layer", default=None, help="Layer of MAP (needed when it has several).")
@click.option("--network-layer", default=None, help="Layer of NETWORK (needed when it has several, but for the edges of a geoseg GeoPackage).")
@click.option("--format", "fmt", type=click.Choice(["shp", "gpkg", "geojson"]), default="shp", show_default=True, help="Output format.")
@click.option("--json", "as_json", is_flag=True, help="Print the totals as JSON.")
def command(
    network: str,
    road_map: str,
    outdir: str,
    image: str | None,
    footprint: str | None,
    tolerance_m: float | None,
    road_width_m: float,
    max_angle_deg: float,
    min_length_m: float | None,
    link_radius_m: float,
    gsd_m: float | None,
    map_layer: str | None,
    network_layer: str | None,
    fmt: str,
    as_json: bool,
) -> None:
    """Compare NETWORK (lines extracted from imagery) with MAP (an existing road map) and write what changed.

    Two roads are the same where they run within the tolerance of each other in about the same
    direction. Written into OUTDIR, in NETWORK's CRS (in the --image's with --image; MAP and the
    others are reprojected to it, and this says so), as <stem>_new, _missing, _matched and
    _links (.shp or .geojson), or one <stem>_changes.gpkg:

    \b
      new      extracted road with no map road near it (candidate additions)
      missing  map road within the footprint with no extracted road near it
               (candidate removals, or roads hidden under trees)
      matched  map road confirmed, with offset_m / offset_max: how far the map
               is from the imagery (metres), a map to realign
      links    new_link: map junctions joined through the network by a path
               under half their map path; broken_link: a map edge whose ends
               the network does not join (or only by a 2x detour)

    Changes are reported within the valid-data area of --image, the --footprint polygons, or
    else the network's bounding box; map roads just outside it still match roads inside. Ways
    of MAP that meet end to end are compared as one road. A MAP with several layers needs
    --map-layer; a NETWORK GeoPackage written by geoseg is read from its edges layer. To run
    image -> network -> comparison in one go, use the pipeline update_map (geoseg run
    update_map SCENE -o OUT --set model=M --set map=MAP).

    \b
    Examples:
      geoseg compare out/scene_a.shp osm_roads.gpkg -o changes/ --image sample_data/scene_a.tif
      geoseg compare network.gpkg national_roads.shp -o changes/ --footprint aoi.gpkg --tolerance-m 10 --json
    """
    from geoseg.map_update import compare_files

    settings = {"max_angle_deg": max_angle_deg, "min_length_m": min_length_m, "link_radius_m": link_radius_m}
    if tolerance_m is not None:
        settings["tolerance_m"] = tolerance_m
    summary = compare_files(
        network, road_map, outdir, image=image, footprint=footprint, network_layer=network_layer, map_layer=map_layer, fmt=fmt,
        road_width_m=road_width_m, assume_gsd_m=gsd_m, **settings,
    )  # fmt: skip
    if as_json:
        totals = {k: {n: (None if isinstance(v, float) and math.isnan(v) else v) for n, v in t.items()} for k, t in summary.totals.items()}
        click.echo(
            json.dumps({"tolerance_m": summary.tolerance_m, "totals": totals, "outputs": [str(p) for p in summary.outputs], "notes": summary.notes}, indent=2)
        )
        return
    t = summary.totals
    click.echo(f"tolerance {summary.tolerance_m:g} m")
    click.echo(f"new      {t['new']['count']:5d} stretch(es)  {t['new']['length_m'] / 1000:8.3f} km")
    click.echo(f"missing  {t['missing']['count']:5d} stretch(es)  {t['missing']['length_m'] / 1000:8.3f} km")
    offset = t["matched"]["offset_m"]
    click.echo(
        f"matched  {t['matched']['count']:5d} stretch(es)  {t['matched']['length_m'] / 1000:8.3f} km"
        + (f"  mean offset {offset:.2f} m" if offset == offset else "")
    )
    click.echo(f"links    {int(t['links']['new_link'])} new, {int(t['links']['broken_link'])} broken")
    for path in summary.outputs:
        click.echo(str(path))
