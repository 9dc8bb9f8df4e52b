"""Start-up: help, version and usage errors load no heavy library; every command still loads."""

from __future__ import annotations

import json
import subprocess
import sys

import click
import pytest

from geoseg.cli.main import COMMANDS, cli

HEAVY = ("torch", "geopandas", "scipy", "dask", "rasterio", "shapely", "pydantic")

_PROBE = """
import json, sys
from geoseg.cli.main import cli
try:
    cli(sys.argv[1:], prog_name="geoseg")
except SystemExit as exc:
    code = exc.code
print(json.dumps({"code": code, "loaded": sorted(m for m in %r if m in sys.modules)}), file=sys.stderr)
""" % (HEAVY,)


def _probe(*args: str) -> dict:
    res = subprocess.run([sys.executable, "-c", _PROBE, *args], capture_output=True, text=True, timeout=60)
    return json.loads(res.stderr.strip().splitlines()[-1])


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["nope"]], ids=["help", "version", "unknown_command"])
def test_help_version_and_usage_errors_import_nothing_heavy(args: list[str]) -> None:
    probe = _probe(*args)
    assert probe["loaded"] == [], probe
    assert probe["code"] == (2 if args == ["nope"] else 0)


def test_a_usage_error_of_run_imports_nothing_heavy() -> None:
    # `geoseg run` without inputs loads its own module (for its options) and nothing of what
    # a batch needs; a missing scene: tests/cli/test_startup_imports.py
    probe = _probe("run")
    assert probe == {"code": 2, "loaded": []}


def test_every_listed_command_loads_with_its_short_help() -> None:
    ctx = click.Context(cli)
    assert cli.list_commands(ctx)[: len(COMMANDS)] == list(COMMANDS)
    for name, (_, short_help) in COMMANDS.items():
        command = cli.get_command(ctx, name)
        assert command is not None and command.name == name
        assert command.get_short_help_str(limit=200) == short_help
    assert "Run a pipeline over scenes" in subprocess.run(["geoseg", "--help"], capture_output=True, text=True).stdout


def test_python_dash_m_geoseg_is_the_geoseg_command(tmp_path) -> None:
    res = subprocess.run([sys.executable, "-m", "geoseg", "--version"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and res.stdout.startswith("geoseg, version")
    missing = subprocess.run([sys.executable, "-m", "geoseg", "model", "info", str(tmp_path / "nope.npz")], capture_output=True, text=True, timeout=120)
    assert missing.returncode != 0 and "nope.npz" in missing.stderr


def _main(prelude: str, *args: str) -> subprocess.CompletedProcess:
    """``geoseg.cli.main.main()`` with ``args`` in a fresh interpreter, after running ``prelude``."""
    code = f"import sys\n{prelude}\nfrom geoseg.cli.main import main\nsys.argv = ['geoseg', *sys.argv[1:]]\nmain()\n"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120)


def test_the_quick_exit_keeps_the_status_the_output_and_the_exit_handlers() -> None:
    # main() ends the process without Python's module teardown: what it must not lose
    listed = _main("import atexit; atexit.register(print, 'exit handler ran')", "pipelines", "show", "road_centerlines")
    assert listed.returncode == 0, listed.stderr
    shown = subprocess.run([sys.executable, "-c", "from geoseg.cli.main import cli; cli(['pipelines', 'show', 'road_centerlines'])"], capture_output=True, text=True)
    assert listed.stdout == shown.stdout + "exit handler ran\n"  # all of a block-buffered pipe, then the handler's line
    missing = _main("", "model", "info", "/no/such/model.npz")
    assert missing.returncode == 1 and missing.stderr.startswith("geoseg: error: /no/such/model.npz")
    assert _main("", "steps", "no_such_step").returncode == 2  # click's usage error


def test_the_quick_exit_waits_for_a_running_thread() -> None:
    prelude = "import threading, time\nthreading.Thread(target=lambda: (time.sleep(1), print('thread finished', flush=True))).start()"
    res = _main(prelude, "--version")
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("geoseg, version") and res.stdout.endswith("\nthread finished\n")


@pytest.mark.parametrize(("code", "status", "said"), [(None, 0, ""), (0, 0, ""), (3, 3, ""), ("stopped: reason", 1, "stopped: reason\n")])
def test_exit_status_is_pythons(code: object, status: int, said: str, capsys: pytest.CaptureFixture[str]) -> None:
    from geoseg.cli.main import _exit_status

    assert _exit_status(code) == status
    assert capsys.readouterr().err == said
