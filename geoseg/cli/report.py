"""``geoseg report``: an HTML report of a ``geoseg run`` output folder."""

from __future__ import annotations

from pathlib import Path

import click

from geoseg.errors import ManifestError


@click.command("report")
@click.argument("outdir", type=click.Path(file_okay=False))
@click.option(
    "--truth",
    metavar="DIR_OR_GLOB",
    default=None,
    help="Reference networks (vector files), matched to scenes by stem: <stem>.<ext> or <stem>_centerlines.<ext>.",
)
@click.option(
    "--buffer-m", type=click.FloatRange(min=0, min_open=True), default=2.0, show_default=True, help="Buffer half-width in metres for the truth scores."
)
@click.option(
    "--max-size", type=click.IntRange(min=16), default=768, show_default=True, help="Longest side of the overlays in pixels (scenes are read decimated)."
)
@click.option("--embed", is_flag=True, help="Embed the overlays in report.html (one portable file) instead of OUTDIR/report_files/.")
def command(outdir: str, truth: str | None, buffer_m: float, max_size: int, embed: bool) -> None:
    """Write OUTDIR/report.html for the batch that `geoseg run` wrote into OUTDIR.

    Per scene: the network drawn over the scene (edges coloured by confidence, junctions
    and dead ends marked), road length, junctions, dead ends, processing time, warnings;
    with --truth also completeness, correctness, quality, APLS, TOPO, junction and
    connected-component scores (as `geoseg eval`), worst scenes first.
    Failed scenes are listed with their error. Open the page in any browser; no network
    access is needed. Needs OUTDIR/geoseg-manifest.json (written by `geoseg run`).

    \b
    Examples:
      geoseg run road_centerlines "scenes/*.tif" -o out/ --set model=roads.mjcr.npz
      geoseg report out/
      geoseg report out/ --truth "truth/*.geojson" --buffer-m 1 --embed
    """
    if not Path(outdir).is_dir():  # the message of geoseg.manifest.read_manifest, before the report's libraries load
        raise ManifestError(f"{Path(outdir)}: no such output folder")
    from geoseg.report import write_report

    path = write_report(outdir, truth, buffer_m=buffer_m, max_size=max_size, embed=embed)
    click.echo(str(path))
