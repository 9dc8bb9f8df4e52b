"""The ``geoseg`` command line: a click group whose commands live one per module."""

from __future__ import annotations

import logging
import os
import sys
import warnings

# Idle OpenMP threads of torch spin by default and slow everything else on a busy machine
# (10-100x measured on 2 cores); set before torch is imported. A user's setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import click

from geoseg import __version__
from geoseg.errors import GeosegError

__all__ = ["cli"]


class _GeosegGroup(click.Group):
    """Turns geoseg errors into one line on stderr (traceback only with --verbose)."""

    def invoke(self, ctx: click.Context):  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except GeosegError as exc:
            if logging.getLogger("geoseg").isEnabledFor(logging.DEBUG):
                raise
            click.echo(f"geoseg: error: {exc}", err=True)
            ctx.exit(1)


def _setup_logging(verbose: int, quiet: bool) -> None:
    level = logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s" if verbose else "%(message)s"))
    root = logging.getLogger("geoseg")
    root.handlers[:] = [handler]
    root.setLevel(level)
    warnings.simplefilter("default")
    warnings.showwarning = _log_warning


def _log_warning(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
    """Show warnings as one log line, without source locations."""
    logging.getLogger("geoseg").warning("warning: %s", message)


@click.group(
    cls=_GeosegGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, prog_name="geoseg")
@click.option("-v", "--verbose", count=True, help="Debug logging and full tracebacks on errors.")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors.")
def cli(verbose: int, quiet: bool) -> None:
    """geoseg: road centerline networks from aerial and satellite scenes.

    Everything runs as a pipeline: a YAML file listing steps (see `geoseg steps`).
    Typical use:

    \b
      geoseg info scene.tif                      # size, bands, CRS, GSD in metres
      geoseg pipelines                           # the shipped pipelines and their parameters
      geoseg run mask_to_centerlines "masks/*.tif" -o out/
      geoseg run road_centerlines scene.tif -o out/ --set model=roads.mjcr.npz
      geoseg pipelines show road_centerlines > mine.yaml   # copy one, edit, run mine.yaml

    Outputs keep the input's CRS and are written atomically: OUTDIR/<input stem>.shp.
    """
    _setup_logging(verbose, quiet)


def _register() -> None:
    from geoseg.cli import eval as eval_cmd
    from geoseg.cli import info, overlay, pipelines, report, run, steps, train, validate

    for module in (run, validate, pipelines, steps, info, train, eval_cmd, report, overlay):
        cli.add_command(module.command)
    from geoseg.cli import search as search_cmd

    cli.add_command(search_cmd.command)
    from geoseg.cli import model as model_cmd
    from geoseg.cli import quantize as quantize_cmd

    cli.add_command(quantize_cmd.command)
    cli.add_command(model_cmd.command)


_register()
