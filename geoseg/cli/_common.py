"""Options and helpers shared by several commands."""

from __future__ import annotations

import glob
import json
import sys
from collections.abc import Callable
from pathlib import Path

import click
from tqdm import tqdm

from geoseg.pipeline.batch import SceneReport

__all__ = ["set_option", "expand_inputs", "progress_reporter", "progress_option"]

set_option = click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="NAME=VALUE",
    help="Override a pipeline parameter (model=roads.npz), an engine setting "
    "(assume_gsd_m=0.5) or a step field (graph_cut.smoothness=3). Repeatable.",
)

progress_option = click.option(
    "--progress",
    type=click.Choice(["bar", "json", "none"]),
    default="bar",
    show_default=True,
    help="Progress display: a bar on stderr, JSON lines on stdout (for tools such as the QGIS plugin), or none.",
)


def expand_inputs(patterns: tuple[str, ...]) -> list[Path]:
    """Expand globs (also when the shell did not); keep non-matching names as given."""
    found: list[Path] = []
    for pattern in patterns:
        if glob.has_magic(pattern):
            matches = sorted(glob.glob(pattern, recursive=True))
            found += [Path(m) for m in matches] if matches else [Path(pattern)]
        else:
            found.append(Path(pattern))
    return found


def emit_json(event: dict) -> None:
    """One JSON progress line on stdout, flushed at once."""
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


def progress_reporter(
    mode: str, total: int, unit: str
) -> tuple[Callable[[int, int, SceneReport], None] | None, Callable[[str, int, int], None] | None, Callable[[], None]]:
    """Progress callbacks (per scene, per tile of a scene) for ``mode``, and a closer."""
    if mode == "none":
        return None, None, lambda: None
    if mode == "json":
        # Progress lines carry the scene report (input, status, outputs, seconds, error,
        # warnings, skipped: true for a scene done by an earlier run); tile lines tell how far
        # the current scene is.
        emit_json({"event": "start", "total": total, "unit": unit})

        def report_json(done: int, n: int, report: SceneReport) -> None:
            emit_json({"event": "progress", "done": done, "total": n, "percent": round(100.0 * done / n, 1), **report.to_dict()})

        def tile_json(scene: str, done: int, n: int) -> None:
            emit_json({"event": "tile", "input": scene, "done": done, "total": n, "percent": round(100.0 * done / n, 1)})

        return report_json, tile_json, lambda: None
    bar = tqdm(total=total, unit=unit, file=sys.stderr, dynamic_ncols=True, disable=None, position=0)
    tiles = tqdm(total=0, unit="tile", file=sys.stderr, dynamic_ncols=True, disable=None, position=1, leave=False)

    def report_bar(done: int, n: int, report: SceneReport) -> None:
        bar.set_postfix_str(f"{Path(report.input).name}: {'already done' if report.skipped else report.status}")
        bar.update(1)

    def tile_bar(scene: str, done: int, n: int) -> None:
        if tiles.total != n or done < tiles.n:
            tiles.reset(total=n)
            tiles.set_description(Path(scene).name)
        tiles.update(done - tiles.n)

    def close() -> None:
        tiles.close()
        bar.close()

    return report_bar, tile_bar, close
