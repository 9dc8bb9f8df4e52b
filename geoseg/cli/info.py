"""``geoseg info``: what a raster is, as geoseg sees it."""

from __future__ import annotations

import json
import warnings

import click

from geoseg.errors import GeosegError, NotGeoreferencedWarning
from geoseg.inputs import is_stac_name, redact, scene_input
from geoseg.raster import read_geoinfo


@click.command("info")
@click.argument("inputs", nargs=-1, required=True)
@click.option("--asset", metavar="KEY", default=None, help="For STAC Items: the asset to show [default: the visual one].")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def command(inputs: tuple[str, ...], asset: str | None, as_json: bool) -> None:
    """Show size, bands, CRS, ground sample distance (metres) and nodata of INPUTS.

    INPUTS are raster files, GDAL virtual paths (/vsicurl/..., /vsizip/...), URLs or STAC
    Items (item.json), as for geoseg run; only their headers are read. An input that cannot
    be read is said on stderr and the others are shown (exit status 1).
    The GSD is measured on the ground (geodesic), so it is right for geographic CRSs
    (degrees) and for Web Mercator. Files without georeferencing are reported as such.
    """
    if asset is not None and not any(is_stac_name(path) for path in inputs):
        raise click.UsageError(f"--asset {asset}: picks an asset of STAC Items (item.json), and no input is one")
    failed = 0
    for path in inputs:
        try:
            scene = scene_input(path, asset=asset)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", NotGeoreferencedWarning)  # the crs and gsd lines say it
                geo, summary = read_geoinfo(scene.raster)
        except GeosegError as exc:  # said, and the other inputs shown
            if len(inputs) == 1:
                raise
            click.echo(f"geoseg: error: {exc}", err=True)
            failed += 1
            continue
        record = {
            "path": str(scene),  # URL secrets hidden, as everywhere geoseg writes a name
            "raster": redact(scene.raster),
            "stac": None if scene.stac is None else scene.stac.to_dict(),
            "width": geo.width,
            "height": geo.height,
            "bands": summary["count"],
            "dtypes": summary["dtypes"],
            "driver": summary["driver"],
            "crs": geo.crs.to_string() if geo.crs else None,
            "georeferenced": geo.georeferenced,
            "gsd_m": [round(v, 4) for v in geo.gsd_xy_m],
            "nodata": geo.nodata,
            "bounds": list(_bounds(geo)),
            "block_shape": summary["block_shapes"][0] if summary["block_shapes"] else None,
        }
        if as_json:
            click.echo(json.dumps(record))
            continue
        click.echo(str(scene))
        if scene.stac is not None:
            click.echo(f"  stac:    item {scene.stac.item}, asset {scene.stac.asset}: {redact(scene.raster)}")
        click.echo(f"  size:    {geo.width} x {geo.height} px, {summary['count']} band(s) {', '.join(summary['dtypes'])} ({summary['driver']})")
        click.echo(f"  crs:     {record['crs'] or 'none (pixel coordinates: x = column, y = row)'}")
        gx, gy = record["gsd_m"]
        suffix = "" if geo.georeferenced else " (assumed: not georeferenced; give it with --set assume_gsd_m=VALUE in runs, --gsd-m in eval, compare and train)"
        click.echo(f"  gsd:     {gx} m x {gy} m{suffix}")
        click.echo(f"  nodata:  {geo.nodata}")
        click.echo(f"  bounds:  {', '.join(f'{v:.3f}' for v in record['bounds'])}")
    if failed:
        raise SystemExit(1)


def _bounds(geo) -> tuple[float, float, float, float]:
    xs, ys = zip(*(geo.transform @ (c, r) for c, r in ((0, 0), (geo.width, 0), (0, geo.height), (geo.width, geo.height))))
    return min(xs), min(ys), max(xs), max(ys)
