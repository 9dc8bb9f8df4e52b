"""``geoseg steps``: list the registered step types and their parameters."""

from __future__ import annotations

import json
import types
import typing
from typing import Any

import click

from geoseg.pipeline.registry import available_steps
from geoseg.pipeline.step import Step


def type_label(annotation: Any) -> str:
    """A field's type as users read it: ``'mask' | 'probability'``, ``float | None``, ``list[int]``.

    Examples
    --------
    >>> type_label(typing.Literal["mask", "probability"])
    "'mask' | 'probability'"
    >>> type_label(float | None)
    'float | None'
    """
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Literal:
        return " | ".join(repr(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_label(a) for a in args)
    if origin is not None:
        name = getattr(origin, "__name__", str(origin))
        return f"{name}[{', '.join(type_label(a) for a in args)}]" if args else name
    if annotation is type(None):
        return "None"
    return getattr(annotation, "__name__", str(annotation)).replace("typing.", "")


def _takes(cls: type[Step]) -> tuple[list[str], bool]:
    """The layers a step takes with its default settings, and whether settings change them."""
    chosen_by_settings = cls.inputs is not Step.inputs
    if not chosen_by_settings:
        return list(cls.takes), False
    return list(cls.model_construct().inputs()), True


def _describe(cls: type[Step]) -> dict:
    fields = {}
    for name, info in cls.model_fields.items():
        if name == "name":
            continue
        default = None if info.is_required() else info.get_default(call_default_factory=True)
        fields[name] = {
            "type": type_label(info.annotation),
            "default": default,
            "required": info.is_required(),
            "help": info.description or "",
        }
    doc = (cls.__doc__ or "").strip().splitlines()
    takes, by_settings = _takes(cls)
    return {"summary": doc[0] if doc else "", "takes": takes, "takes_depends_on_settings": by_settings, "gives": list(cls.gives), "fields": fields}


@click.command("steps")
@click.argument("names", nargs=-1)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def command(names: tuple[str, ...], as_json: bool) -> None:
    """List the step types a pipeline can use, with their parameters.

    Give step NAMES (types as in YAML, graph_cut, or their Python classes, GraphCut) to show
    only those. Steps come from geoseg and from any installed
    package that registers entry points in the "geoseg.steps" group.
    """
    registry = available_steps()
    by_class = {cls.__name__: name for name, cls in registry.items()}  # steps.GraphCut is graph_cut
    names = tuple(by_class.get(n, n) for n in names)
    chosen = {n: registry[n] for n in (names or registry) if n in registry}
    unknown = [n for n in names if n not in registry]
    if unknown:
        raise click.BadParameter(f"unknown step(s): {', '.join(unknown)} (steps: {', '.join(sorted(registry))})", param_hint="NAMES")
    described = {name: _describe(cls) for name, cls in chosen.items()}
    if as_json:
        click.echo(json.dumps(described, indent=2, default=str))
        return
    for name, d in described.items():
        click.echo(f"{name}: {d['summary']}")
        takes = ", ".join(d["takes"]) or "-"
        if d["takes_depends_on_settings"]:
            takes += " (by default; its settings choose the layer)"
        click.echo(f"  takes: {takes}   gives: {', '.join(d['gives'])}")
        for fname, f in d["fields"].items():
            default = "required" if f["required"] else f"default {f['default']!r}"
            click.echo(f"    {fname} ({f['type']}, {default}){': ' + f['help'] if f['help'] else ''}")
        click.echo("")
