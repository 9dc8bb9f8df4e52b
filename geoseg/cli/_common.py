"""Options and helpers shared by several commands."""

from __future__ import annotations

import glob
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import click

from geoseg.errors import RasterReadError
from geoseg.inputs import is_glob
from geoseg.pipeline.batch import BatchInterrupted, SceneReport, discard_interrupted
from geoseg.vector import FORMATS, RFC7946_CRS, RFC7946_PRECISION, VectorFormat

if TYPE_CHECKING:
    from geoseg.pipeline.dryrun import PassPlan, ScenePlan
    from geoseg.pipeline.engine import TilePass

__all__ = [
    "set_option",
    "expand_inputs",
    "print_plans",
    "progress_reporter",
    "progress_option",
    "report_interrupt",
    "vector_output",
    "vector_output_options",
]

set_option = click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="NAME=VALUE",
    help="Override a pipeline parameter (model=roads.npz), an engine setting (assume_gsd_m=0.5) or a step field (graph_cut.smoothness=3). Repeatable.",
)

progress_option = click.option(
    "--progress",
    type=click.Choice(["bar", "json", "none"]),
    default="bar",
    show_default=True,
    help="Progress display: a bar on stderr, JSON lines on stdout (for tools such as the QGIS plugin), or none.",
)


def expand_inputs(patterns: tuple[str, ...]) -> list[Path]:
    """Expand globs (also when the shell did not); keep plain names as given, even missing ones.

    Raises
    ------
    RasterReadError
        A glob pattern matches no file (a missing plain file is the scene's own failure).
    """
    found: list[Path] = []
    for pattern in patterns:
        if is_glob(pattern):
            matches = sorted(glob.glob(pattern, recursive=True))
            if not matches:
                raise RasterReadError(f"{pattern}: no file matches this pattern")
            found += [Path(m) for m in matches]
        else:
            found.append(Path(pattern))
    return found


def named_files(*groups: Iterable[str | None]) -> list[str]:
    """The files that groups of names and globs name, for checks made before reading them.

    Unlike :func:`expand_inputs`, a glob matching nothing names nothing here (reading says so).

    Examples
    --------
    >>> named_files(["a.tif", None], ["/nonexistent/*.tif"])
    ['a.tif']
    """
    found: list[str] = []
    for name in (n for group in groups for n in group if n):
        found += sorted(glob.glob(name, recursive=True)) if is_glob(name) else [name]
    return found


def emit_json(event: dict) -> None:
    """One JSON progress line on stdout, flushed at once."""
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


def progress_reporter(
    mode: str, total: int, unit: str
) -> tuple[Callable[[int, int, SceneReport], None] | None, Callable[[str, int, int, TilePass], None] | None, Callable[[], None]]:
    """Progress callbacks (per scene, per tile of a scene's pass) for ``mode``, and a closer."""
    if mode == "none":
        return None, None, lambda: None
    if mode == "json":
        # Progress lines carry the scene report (input, status, outputs, seconds, error,
        # warnings, skipped: true for a scene done by an earlier run, crs of the outputs); tile
        # lines tell how far the current scene is: which pass over its tiles ("pass" of
        # "passes"), the steps it runs and those whose scene statistics it measures.
        emit_json({"event": "start", "total": total, "unit": unit})

        def report_json(done: int, n: int, report: SceneReport) -> None:
            emit_json({"event": "progress", "done": done, "total": n, "percent": round(100.0 * done / n, 1), **report.to_dict()})

        def tile_json(scene: str, done: int, n: int, stage: TilePass) -> None:
            emit_json(
                {
                    "event": "tile",
                    "input": scene,
                    "pass": stage.index,
                    "passes": stage.total,
                    "steps": list(stage.steps),
                    "measures": list(stage.measures),
                    "done": done,
                    "total": n,
                    "percent": round(100.0 * done / n, 1),
                }
            )

        return report_json, tile_json, lambda: None
    from tqdm import tqdm

    bar = tqdm(total=total, unit=unit, file=sys.stderr, dynamic_ncols=True, disable=None, position=0)
    tiles = tqdm(total=0, unit="tile", file=sys.stderr, dynamic_ncols=True, disable=None, position=1, leave=False)

    def report_bar(done: int, n: int, report: SceneReport) -> None:
        bar.set_postfix_str(f"{Path(report.input).name}: {'already done' if report.skipped else report.status}")
        bar.update(1)

    shown = {"label": ""}

    def tile_bar(scene: str, done: int, n: int, stage: TilePass) -> None:
        label = f"{Path(scene).name} pass {stage.index}/{stage.total}"
        if label != shown["label"] or tiles.total != n or done < tiles.n:
            tiles.reset(total=n)
            tiles.set_description(label)
            shown["label"] = label
        tiles.update(done - tiles.n)

    def close() -> None:
        tiles.close()
        bar.close()

    return report_bar, tile_bar, close


def vector_output_options(command: Callable) -> Callable:
    """``--format``, ``--dst-crs``, ``--rfc7946`` and ``--precision`` (read by :func:`vector_output`)."""
    options = [
        click.option(
            "--format",
            "fmt",
            type=click.Choice(sorted(FORMATS)),
            default=None,
            help="Vector output format; rasters are always GeoTIFF. [default: shp; gpkg for sequence pipelines]",
        ),
        click.option(
            "--dst-crs",
            metavar="CRS",
            default=None,
            help="Reproject the vector outputs to this CRS (EPSG:4326, a WKT or PROJ string); by default they keep "
            "each input's CRS. Rasters always keep the scene's grid.",
        ),
        click.option(
            "--rfc7946",
            is_flag=True,
            help=f"GeoJSON per RFC 7946 (implies --format geojson): reprojected to {RFC7946_CRS} (WGS84, longitude/latitude), "
            f"{RFC7946_PRECISION} decimals, no crs member.",
        ),
        click.option(
            "--precision",
            type=int,
            default=None,
            metavar="N",
            help="Decimals of GeoJSON coordinates [default: GDAL's 15 significant digits; 7 with --rfc7946].",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def vector_output(fmt: str | None, dst_crs: str | None, rfc7946: bool, precision: int | None, *, default: str) -> VectorFormat:
    """The vector output the options of :func:`vector_output_options` ask for.

    Raises
    ------
    ConfigError
        The options contradict each other, or the CRS is unknown (see :class:`VectorFormat`).
    """
    name = fmt or ("geojson" if rfc7946 else default)
    return VectorFormat(name, dst_crs=dst_crs, precision=precision, rfc7946=rfc7946)


def report_interrupt(stop: KeyboardInterrupt, total: int, done_before: int) -> NoReturn:
    """After Ctrl-C in ``geoseg run``: clean up, say how far the batch got and how to resume; exit 130.

    ``stop`` is the :class:`BatchInterrupted` of a batch that had started (its counts win), or
    a ``KeyboardInterrupt`` from before it started (``done_before`` scenes were done then).
    """
    done, failed = done_before, 0
    if isinstance(stop, BatchInterrupted):
        discard_interrupted(stop)
        done, failed = stop.done, stop.failed
    from geoseg.cli.main import INTERRUPTED_EXIT

    also = f", {failed} failed" if failed else ""
    click.echo(f"geoseg: interrupted; {done} of {total} scene(s) done{also}, run the same command again to resume", err=True)
    raise SystemExit(INTERRUPTED_EXIT)


@contextmanager
def resume_hint(checkpoint: str | os.PathLike[str]) -> Iterator[None]:
    """On Ctrl-C during training, say how to go on: the checkpoint this run wrote, for ``--resume``; exit 130."""
    start = time.time()
    try:
        yield
    except KeyboardInterrupt:
        from geoseg.cli.main import INTERRUPTED_EXIT

        ck = Path(checkpoint)
        if ck.is_file() and ck.stat().st_mtime >= start:
            click.echo(f"geoseg: interrupted; go on with the same command and --resume {ck}", err=True)
        else:
            click.echo("geoseg: interrupted before the first checkpoint", err=True)
        raise SystemExit(INTERRUPTED_EXIT) from None


def _size(n_bytes: int) -> str:
    """Bytes as MiB or GiB, for people."""
    return f"{n_bytes / 2**30:.1f} GiB" if n_bytes >= 2**30 else f"{n_bytes / 2**20:.0f} MiB"


def _pass_line(plan: PassPlan) -> str:
    """One pass of a dry run, in words."""
    work = ", ".join(plan.steps) if plan.steps else "reads the scene"
    measures = f"; measures for {', '.join(plan.measures)}" if plan.measures else ""
    approx = "~" if plan.estimated else ""
    tiles = f"{approx}{plan.tiles} tile(s) of {approx}{plan.tile_px} px, halo {approx}{plan.halo_px} px, {approx}{_size(plan.tile_bytes)} per tile"
    return f"  pass {plan.index}/{plan.total}: {work}{measures}: {tiles}"


def _scene_lines(plan: ScenePlan) -> list[str]:
    """A dry run's lines for one scene."""
    if plan.status == "failed":
        return [f"{plan.input}: cannot run: {plan.error}"]
    if plan.status == "skipped":
        return [f"{plan.input}: done by an earlier run ({', '.join(plan.outputs)}); skipped (--overwrite redoes it)"]
    crs = plan.crs or "no georeferencing (pixel coordinates)"
    lines = [f"{plan.input}: {plan.width} x {plan.height} px, {plan.bands} band(s) {plan.dtype}, {crs}, GSD {plan.gsd_m:g} m"]
    if plan.extent:
        lines.append(f"  extent: {plan.extent}")
    if plan.blocks > 1:
        lines.append(
            f"  blocks: ~{plan.blocks} x {plan.blocks} px ({plan.gsd_m * plan.blocks:.3g} m), for a typical road width; "
            "the run first reads the scene once to measure the road width, then works on blocks"
        )
    lines += [_pass_line(p) for p in plan.passes]
    where = "on disk beside the outputs" if plan.scratch_on_disk else "in memory"
    lines.append(f"  memory: about {_size(plan.memory_bytes)} at most (intermediate layers: {_size(plan.scratch_bytes)} {where})")
    lines.append(f"  would write: {', '.join(plan.outputs) or 'nothing'}")
    return lines


def print_plans(plans: list[ScenePlan], as_json: bool) -> int:
    """Print a dry run (text, or one JSON line per scene); the exit code a run would have."""
    for plan in plans:
        if as_json:
            emit_json({"event": "plan", **plan.to_dict()})
        else:
            click.echo("\n".join(_scene_lines(plan)))
    counts = Counter(plan.status for plan in plans)
    summary = f"dry run: {counts['ready']} scene(s) would run, {counts['skipped']} already done, {counts['failed']} cannot run; nothing was written"
    click.echo(summary, err=as_json)
    return 1 if counts["failed"] else 0
