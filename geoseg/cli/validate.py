"""``geoseg validate``: check a pipeline file without running it."""

from __future__ import annotations

import click

from geoseg.cli._common import set_option
from geoseg.pipeline.pipeline import load_pipeline


@click.command("validate")
@click.argument("pipeline")
@set_option
def command(pipeline: str, overrides: tuple[str, ...]) -> None:
    """Check PIPELINE: YAML syntax, schema_version, step types, fields and their types,
    and that each step's input layers are given by an earlier step.

    Once every required parameter is set, the files the steps read (models, road maps) are
    checked too. Errors name the file, the step and the field; the exit code is 1 if the file is
    invalid. Parameters without a value are listed (give them with --set NAME=VALUE).
    """
    pipe = load_pipeline(pipeline, overrides)
    required = pipe.required_params()
    if not required:  # model files, maps and areas the steps read: as a run checks them before its first scene
        for step in pipe.steps:
            step.check_files()
    extent = getattr(pipe.engine, "extent", None)
    if extent is not None and extent.aoi is not None:
        from geoseg.pipeline.engine import read_aoi

        read_aoi(extent.aoi)
    chain = " -> ".join(s.get("name") or s["type"] for s in pipe.specs)
    kind = "" if pipe.kind == "scene" else f"{pipe.kind} pipeline, "
    steps = f"{len(pipe.specs)} step{'s' if len(pipe.specs) > 1 else ''}"
    click.echo(f"{pipeline}: valid ({kind}{steps}: {chain}; outputs: {', '.join(pipe.output_layers())})")
    for name in required:
        click.echo(f"  parameter {name!r} is required: pass --set {name}=VALUE when running")
    unused = pipe.unused_params()
    for name in (n for n in pipe.unset_params() if n not in required and n not in unused):
        click.echo(f"  parameter {name!r} is unset: its steps use their own default (set it with --set {name}=VALUE)")
    for name in unused:
        click.echo(f"  parameter {name!r} is used by no step (no ${{{name}}} in the steps): it changes nothing")
