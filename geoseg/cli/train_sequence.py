"""``geoseg train sequence``: train the one-pass sequence model on generated sequences."""

from __future__ import annotations

import logging
from pathlib import Path

import click

log = logging.getLogger("geoseg.cli")


@click.command("sequence")
@click.argument("config", required=False, type=click.Path(dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Model file to write (e.g. objects.ovs.npz).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a config key (iterations=600). Repeatable.")
@click.option("--checkpoint", type=click.Path(dir_okay=False), default=None, help="Checkpoint written every tenth of the run [default: OUTPUT with .ckpt.npz].")
@click.option("--resume", type=click.Path(dir_okay=False), default=None, help="Continue from a checkpoint written by an earlier run of the same config.")
@click.option("--progress/--no-progress", default=True, help="Show a progress bar on stderr.")
def command(config: str | None, output: str, overrides: tuple[str, ...], checkpoint: str | None, resume: str | None, progress: bool) -> None:
    """Train the OVS-Net-style sequence model (detector + mask-guided mask head + re-id
    embeddings) on sequences generated from CONFIG (a YAML file; defaults when omitted) and
    write OUTPUT (safe .npz + JSON model file). CONFIG may be the name of a shipped config
    (sequence_ovs: about 1-2 CPU minutes; `geoseg pipelines show sequence_ovs`).

    \b
    Examples:
      geoseg train sequence sequence_ovs -o objects.ovs.npz
      geoseg train sequence sequence_ovs -o objects.ovs.npz --set iterations=600 --set "backgrounds=[img/*.tif]"
      geoseg train sequence sequence_ovs -o objects.ovs.npz --resume objects.ovs.ckpt.npz   # after an interruption
    Then: geoseg run sequence_objects frames/ -o out/ --set model=objects.ovs.npz
    """
    from geoseg.atomic import check_output_file, check_spares_inputs
    from geoseg.cli._common import resume_hint
    from geoseg.sequence.modelfile import save_sequence_model
    from geoseg.sequence.train import load_sequence_train_config, train_sequence_model

    cfg = load_sequence_train_config(config or None, overrides)
    check_output_file(output, "-o", example_name="objects.ovs.npz")
    ckpt = checkpoint or str(Path(output).with_suffix("")) + ".ckpt.npz"
    check_output_file(ckpt, "--checkpoint", example_name="objects.ckpt.npz")
    check_spares_inputs({"-o": output, "--checkpoint": ckpt}, [])
    with resume_hint(ckpt):
        model = train_sequence_model(cfg, progress=progress, checkpoint_path=ckpt, resume=resume)
    save_sequence_model(output, model)
    log.info("wrote %s (%.1f s of training)", output, model.training["seconds"])
