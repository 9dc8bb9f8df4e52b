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

    Errors name the file, the step and the field; the exit code is 1 if the file is
    invalid. Parameters without a value are listed (give them with --set NAME=VALUE).
    """
    pipe = load_pipeline(pipeline, overrides)
    chain = " -> ".join(s.get("name") or s["type"] for s in pipe.specs)
    kind = "" if pipe.kind == "scene" else f"{pipe.kind} pipeline, "
    steps = f"{len(pipe.specs)} step{'s' if len(pipe.specs) > 1 else ''}"
    click.echo(f"{pipeline}: valid ({kind}{steps}: {chain}; outputs: {', '.join(pipe.output_layers())})")
    required = pipe.required_params()
    for name in required:
        click.echo(f"  parameter {name!r} is required: pass --set {name}=VALUE when running")
    for name in (n for n in pipe.unset_params() if n not in required):
        click.echo(f"  parameter {name!r} is unset: its steps use their own default (set it with --set {name}=VALUE)")
