"""The ``geoseg`` command line: a click group whose commands live one per module.

Each command's module is imported only when the command runs (or shows its own help), so
``geoseg --help``, ``geoseg --version`` and a usage error load click and nothing heavy:
no torch, geopandas, scipy or dask (``tests/cli/test_startup.py``).
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import logging
import os
import signal
import sys
import threading
import warnings
from typing import NoReturn

#: Exit status after Ctrl-C (SIGINT), as shells report a process killed by it: 128 + 2.
INTERRUPTED_EXIT = 130


def _interrupted_while_loading(signum: int, frame: object) -> None:
    """Ctrl-C while geoseg loads its modules: nothing ran yet, stop quietly."""
    sys.stderr.write("geoseg: interrupted\n")
    raise SystemExit(INTERRUPTED_EXIT)


# Loading the commands' modules takes a second or two: a Ctrl-C then gives one line, not an
# import traceback. Python's own handler is back at the end of this module (commands get a
# KeyboardInterrupt, see _GeosegGroup.invoke); a SIGINT that the parent process ignores (a
# background job) stays ignored.
_LOADING = threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGINT) is signal.default_int_handler
if _LOADING:
    signal.signal(signal.SIGINT, _interrupted_while_loading)

# Idle OpenMP threads of torch spin by default and slow everything else on a busy machine
# (10-100x measured on 2 cores); set before torch is imported. A user's setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import click  # noqa: E402 - after the signal handler and OMP setting above

from geoseg import __version__  # noqa: E402
from geoseg.errors import GeosegError  # noqa: E402

__all__ = ["COMMANDS", "INTERRUPTED_EXIT", "cli", "main"]

#: The commands: name -> (module defining ``command``, the one line ``geoseg --help`` shows).
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("geoseg.cli.run", "Run a pipeline over scenes, writing OUTDIR/<stem>.<ext> (resumable batches)."),
    "validate": ("geoseg.cli.validate", "Check a pipeline file without running it."),
    "pipelines": ("geoseg.cli.pipelines", "List the shipped pipelines and training configs; print one to copy."),
    "steps": ("geoseg.cli.steps", "List the step types a pipeline can use, with their parameters."),
    "info": ("geoseg.cli.info", "Size, bands, CRS, GSD in metres and nodata of rasters."),
    "train": ("geoseg.cli.train", "Train a road classifier (mjcr, nn) or a sequence model."),
    "eval": ("geoseg.cli.eval", "Score a network against a reference: completeness, correctness, quality, APLS, TOPO, junctions."),
    "compare": ("geoseg.cli.compare", "Compare a network with a road map: new, missing and matched roads, new and broken links."),
    "report": ("geoseg.cli.report", "Write OUTDIR/report.html for a batch that geoseg run wrote."),
    "overlay": ("geoseg.cli.overlay", "Draw a network over its scene as a PNG."),
    "search": ("geoseg.cli.search", "Search a classifier architecture for this machine (GAS)."),
    "quantize": ("geoseg.cli.quantize", "Quantize a deep classifier to low bit widths (GDRQ, BP-NAS)."),
    "model": ("geoseg.cli.model", "Inspect geoseg model files."),
}


class _GeosegGroup(click.Group):
    """Turns geoseg errors into one line on stderr (traceback only with --verbose), Ctrl-C into exit 130.

    Every command registered (and every command of a registered group) also takes ``-v`` and
    ``-q`` after its name: ``geoseg run ... -v`` is ``geoseg -v run ...``.
    """

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        """Register ``cmd`` with the verbosity options added to it and its subcommands."""
        _add_verbosity_options(cmd)
        super().add_command(cmd, name)

    def list_commands(self, ctx: click.Context) -> list[str]:
        """Every command, loaded or not, in the order of :data:`COMMANDS`."""
        return [*COMMANDS, *(name for name in self.commands if name not in COMMANDS)]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """The command, its module imported on first use."""
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            module, short_help = COMMANDS[cmd_name]
            command = importlib.import_module(module).command
            command.short_help = short_help
            self.add_command(command, cmd_name)
        return self.commands.get(cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list of ``geoseg --help``, from :data:`COMMANDS` (no module imported)."""
        with formatter.section("Commands"):
            formatter.write_dl([(name, short_help) for name, (_, short_help) in COMMANDS.items()])

    def invoke(self, ctx: click.Context):  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except GeosegError as exc:
            if logging.getLogger("geoseg").isEnabledFor(logging.DEBUG):
                raise
            click.echo(f"geoseg: error: {exc}", err=True)
            ctx.exit(1)
        except KeyboardInterrupt:
            # commands that have more to say (`geoseg run`: how far the batch got) exit 130 themselves
            click.echo("geoseg: interrupted", err=True)
            ctx.exit(INTERRUPTED_EXIT)


def _add_verbosity_options(cmd: click.Command) -> None:
    """Give ``cmd`` (and, for a group, each of its commands) its own ``-v`` and ``-q``."""
    cmd.params += [
        click.Option(
            ["-v", "--verbose"], count=True, expose_value=False, callback=_more_logging, help="Debug logging and full tracebacks on errors (as geoseg -v)."
        ),
        click.Option(["-q", "--quiet"], is_flag=True, expose_value=False, callback=_more_logging, help="Only warnings and errors (as geoseg -q)."),
    ]
    if isinstance(cmd, click.Group):
        for sub in cmd.commands.values():
            _add_verbosity_options(sub)


def _more_logging(ctx: click.Context, param: click.Parameter, value: int | bool) -> None:
    """``-v``/``-q`` given after a command's name: added to those given before it."""
    if not value:
        return
    root = ctx.find_root()
    levels = root.meta.setdefault("geoseg.logging", {"verbose": root.params.get("verbose", 0), "quiet": root.params.get("quiet", False)})
    if param.name == "verbose":
        levels["verbose"] += value
    else:
        levels["quiet"] = True
    _setup_logging(levels["verbose"], levels["quiet"])


class _RedactingFormatter(logging.Formatter):
    """Log lines with the secrets of URLs (query string values, passwords) hidden (:func:`geoseg.inputs.redact`)."""

    def format(self, record: logging.LogRecord) -> str:
        from geoseg.inputs import redact

        return redact(super().format(record))


def _setup_logging(verbose: int, quiet: bool) -> None:
    level = logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_RedactingFormatter("%(levelname)s: %(message)s" if verbose else "%(message)s"))
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


def main() -> NoReturn:
    """The ``geoseg`` command (also ``python -m geoseg``): :func:`cli`, then a quick exit.

    When the command has finished, the exit handlers run (log handlers, temporary folders),
    stdout and stderr are flushed, and the process ends without Python's teardown of every
    loaded module: 0.3 s after a pipeline run on this project's 2-core machine (scipy,
    pandas, GDAL and onnxruntime loaded), a tenth of a short run (docs/RESULTS.md). Outputs
    are complete by then (written atomically and closed by the command). While a thread
    other than a daemon one is still alive, the exit is Python's usual one, which waits for
    it.

    Examples
    --------
    In ``pyproject.toml``: ``geoseg = "geoseg.cli.main:main"``. Calling :func:`cli` instead
    (click's ``CliRunner`` in tests) runs a command without ending the process.
    """
    try:
        cli.main(prog_name="geoseg")
        code = 0
    except SystemExit as exc:
        code = _exit_status(exc.code)
    if any(t.is_alive() and not t.daemon for t in threading.enumerate() if t is not threading.main_thread()):
        sys.exit(code)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe (geoseg ... | head) or stream
            stream.flush()
    os._exit(code)


def _exit_status(code: object) -> int:
    """The process exit status of ``SystemExit(code)``, as Python gives it (a message is printed, status 1)."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


if _LOADING:
    signal.signal(signal.SIGINT, signal.default_int_handler)
