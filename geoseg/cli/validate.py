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
    from geoseg.sequence.pipeline import is_sequence_pipeline, load_sequence_pipeline

    if is_sequence_pipeline(pipeline):
        seq = load_sequence_pipeline(pipeline, overrides)
        click.echo(f"{pipeline}: valid (sequence pipeline; output: objects)")
        if seq.params.get("model") is None:
            click.echo("  parameter 'model' has no default: pass --set model=VALUE when running")
        return
    pipe = load_pipeline(pipeline, overrides)
    chain = " -> ".join(s.get("name") or s["type"] for s in pipe.specs)
    click.echo(f"{pipeline}: valid ({len(pipe.specs)} steps: {chain}; outputs: {', '.join(pipe.output_layers())})")
    required = pipe.required_params()
    for name in required:
        click.echo(f"  parameter {name!r} is required: pass --set {name}=VALUE when running")
    for name in (n for n in pipe.unset_params() if n not in required):
        click.echo(f"  parameter {name!r} is unset: its steps use their own default (set it with --set {name}=VALUE)")
