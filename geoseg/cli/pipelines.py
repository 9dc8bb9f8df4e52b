"""``geoseg pipelines``: list the shipped pipelines and training configs, print one to copy."""

from __future__ import annotations

import json
import re
import shutil
import textwrap
from typing import Any

import click

from geoseg.configfile import training_command
from geoseg.errors import ConfigError

__all__ = ["command", "describe_shipped", "training_command"]

#: How a pipeline runs, by its ``kind`` key.
_RUN = {"pipeline": "geoseg run {name} SCENE... -o OUTDIR", "sequence": "geoseg run {name} FRAMES... -o OUTDIR"}
_FIRST_SENTENCE = re.compile(r"(?<!e\.g)(?<!i\.e)(?<! al)(?<=[a-z0-9)])\.\s+(?=[A-Z`])")


def _summary(description: str) -> str:
    text = " ".join(description.split())
    return _FIRST_SENTENCE.split(text, maxsplit=1)[0].rstrip(".") + "." if text else ""


def describe_shipped() -> list[dict[str, Any]]:
    """Every shipped pipeline and training config, as plain data.

    Returns
    -------
    list of dict
        Per file: ``name``, ``kind`` (``pipeline``, ``sequence`` or ``training``), ``use`` (the
        command line that runs it), ``summary`` (the description's first sentence),
        ``description``, and ``params`` (a pipeline's template parameters and their defaults,
        ``None`` when unset) with ``required`` (the unset ones a run must be given) or
        ``settings`` (a training config's keys, sections as nested mappings).

    Examples
    --------
    >>> names = {d["name"]: d for d in describe_shipped()}
    >>> names["road_centerlines"]["params"]["model"] is None
    True
    >>> names["road_decouple"]["use"].startswith("geoseg train nn road_decouple")
    True
    """
    from geoseg.configfile import parse_yaml_mapping
    from geoseg.pipeline.pipeline import load_pipeline
    from geoseg.shipped import shipped_names, shipped_text

    out: list[dict[str, Any]] = []
    for name in shipped_names("pipeline"):
        raw = parse_yaml_mapping(shipped_text(name, "pipeline"), name, "pipeline file")
        kind = "sequence" if raw.get("kind") == "sequence" else "pipeline"
        description = str(raw.get("description") or "")
        params = dict(raw.get("params") or {})
        required = load_pipeline(name).required_params()
        out.append(
            {
                "name": name,
                "kind": kind,
                "use": _RUN[kind].format(name=name),
                "summary": _summary(description),
                "description": " ".join(description.split()),
                "params": params,
                "required": required,
            }
        )
    for name in shipped_names("training"):
        raw = parse_yaml_mapping(shipped_text(name, "training"), name, "training config")
        description = str(raw.pop("description", "") or "")
        raw.pop("schema_version", None)
        out.append(
            {
                "name": name,
                "kind": "training",
                "use": f"{training_command(raw)} {name} ... -o MODEL",
                "summary": _summary(description),
                "description": " ".join(description.split()),
                "settings": raw,
            }
        )
    return out


def _params_line(params: dict[str, Any], required: list[str]) -> str:
    shown = [f"{name} (required)" if name in required else f"{name}=auto" if value is None else f"{name}={value}" for name, value in params.items()]
    return ", ".join(shown) or "(none)"


def _settings_line(settings: dict[str, Any]) -> str:
    return ", ".join(f"{key}.*" if isinstance(value, dict) else f"{key}={value}" for key, value in settings.items())


def _echo_wrapped(text: str, indent: str, width: int) -> None:
    click.echo(textwrap.fill(text, width=width, initial_indent=indent, subsequent_indent=indent + "  "))


@click.group("pipelines", invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable list (name, kind, use, description, params or settings).")
@click.pass_context
def command(ctx: click.Context, as_json: bool) -> None:
    """List the pipelines and training configs shipped with geoseg.

    Each is used by name from any folder (`geoseg run road_centerlines ...`,
    `geoseg train nn road_decouple ...`). To change one, print it into a file, edit it and
    run the file:

    \b
      geoseg pipelines                                   # names, summaries, parameters
      geoseg pipelines show road_centerlines > mine.yaml
      geoseg run mine.yaml scene.tif -o out/ --set model=roads.mjcr.npz

    Parameters show their default (NAME=VALUE); "auto" leaves the choice to the step (e.g. a
    scale from the measured road width), "(required)" must be given with --set NAME=VALUE.
    """
    if ctx.invoked_subcommand is not None:
        return
    described = describe_shipped()
    if as_json:
        click.echo(json.dumps(described, indent=2, default=str))
        return
    width = min(shutil.get_terminal_size((100, 24)).columns, 110)
    sections = [
        ("Pipelines (geoseg run NAME INPUT... -o OUTDIR --set PARAM=VALUE):", ("pipeline", "sequence")),
        ("Training configs (the command each is for is shown; --set KEY=VALUE overrides a key):", ("training",)),
    ]
    for title, kinds in sections:
        click.echo(title)
        for d in (d for d in described if d["kind"] in kinds):
            click.echo(f"  {d['name']}" + ("   [image sequences]" if d["kind"] == "sequence" else ""))
            _echo_wrapped(d["summary"], "      ", width)
            if d["kind"] == "training":
                _echo_wrapped(f"use: {d['use']}", "      ", width)
                _echo_wrapped(f"keys: {_settings_line(d['settings'])}", "      ", width)
            else:
                _echo_wrapped(f"params: {_params_line(d['params'], d['required'])}", "      ", width)
        click.echo("")
    click.echo("Print one with `geoseg pipelines show NAME` (e.g. > mine.yaml to edit it).")


@command.command("show")
@click.argument("name")
def show(name: str) -> None:
    """Print the shipped pipeline or training config NAME exactly as shipped.

    \b
      geoseg pipelines show road_centerlines > mine.yaml
      geoseg pipelines show road_decouple > my_training.yaml
    """
    from geoseg.shipped import shipped_names, shipped_text

    for kind in ("pipeline", "training"):
        if name in shipped_names(kind):
            click.echo(shipped_text(name, kind), nl=False)
            return
    every = shipped_names("pipeline") + shipped_names("training")
    raise ConfigError(f"{name}: no shipped pipeline or training config of that name (shipped: {', '.join(every)})")
