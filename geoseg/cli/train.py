"""``geoseg train``: fit classifiers (placeholder group filled by the classifier modules)."""

from __future__ import annotations

import click


@click.group("train")
def command() -> None:
    """Train a road classifier and write a model file."""
