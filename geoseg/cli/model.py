"""``geoseg model``: inspect model files."""

from __future__ import annotations

import json

import click


@click.group("model")
def command() -> None:
    """Inspect geoseg model files (any kind: nn, nn-quantized, mjcr, ...)."""


@command.command("info")
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("--tile-px", type=int, default=None, help="Input tile side for MACs/BitOPs [default: the quantized file's, else 512].")
def info(model, as_json, tile_px) -> None:
    """Per-layer bits, MACs, BitOPs, weight bytes and totals of a model file, and its size.

    \b
    geoseg model info roads.w4a4.npz
    geoseg model info roads.nn.npz --json
    Other kinds (e.g. MJCR) print their kind, metadata and arrays.
    """
    from geoseg.nn.quant.summary import format_summary, model_summary

    summary = model_summary(model, tile_px)
    click.echo(json.dumps(summary, indent=2) if as_json else format_summary(summary))
