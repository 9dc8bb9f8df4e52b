"""``geoseg steps``: list the registered step types and their parameters."""

from __future__ import annotations

import json

import click
from pydantic_core import PydanticUndefined

from geoseg.pipeline.registry import available_steps


def _describe(cls: type) -> dict:
    fields = {}
    for name, info in cls.model_fields.items():
        if name == "name":
            continue
        default = None if info.default is PydanticUndefined else info.default
        fields[name] = {
            "type": getattr(info.annotation, "__name__", str(info.annotation)).replace("typing.", ""),
            "default": default,
            "required": info.is_required(),
            "help": info.description or "",
        }
    doc = (cls.__doc__ or "").strip().splitlines()
    return {"summary": doc[0] if doc else "", "takes": list(cls.takes), "gives": list(cls.gives), "fields": fields}


@click.command("steps")
@click.argument("names", nargs=-1)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def command(names: tuple[str, ...], as_json: bool) -> None:
    """List the step types a pipeline can use, with their parameters.

    Give step NAMES to show only those. Steps come from geoseg and from any installed
    package that registers entry points in the "geoseg.steps" group.
    """
    registry = available_steps()
    chosen = {n: registry[n] for n in (names or registry) if n in registry}
    unknown = [n for n in names if n not in registry]
    if unknown:
        raise click.BadParameter(f"unknown step(s): {', '.join(unknown)}", param_hint="NAMES")
    described = {name: _describe(cls) for name, cls in chosen.items()}
    if as_json:
        click.echo(json.dumps(described, indent=2, default=str))
        return
    for name, d in described.items():
        click.echo(f"{name}: {d['summary']}")
        click.echo(f"  takes: {', '.join(d['takes']) or '-'}   gives: {', '.join(d['gives'])}")
        for fname, f in d["fields"].items():
            default = "required" if f["required"] else f"default {f['default']!r}"
            click.echo(f"    {fname} ({f['type']}, {default}){': ' + f['help'] if f['help'] else ''}")
        click.echo("")
