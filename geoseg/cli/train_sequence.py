"""``geoseg train sequence``: train the one-pass sequence model on generated sequences."""

from __future__ import annotations

import logging

import click

log = logging.getLogger("geoseg.cli")


@click.command("sequence")
@click.argument("config", required=False, type=click.Path(dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Model file to write (e.g. objects.ovs.npz).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a config key (iterations=600). Repeatable.")
def command(config: str | None, output: str, overrides: tuple[str, ...]) -> None:
    """Train the OVS-Net-style sequence model (detector + mask-guided mask head + re-id
    embeddings) on sequences generated from CONFIG (a YAML file; defaults when omitted) and
    write OUTPUT (safe .npz + JSON model file).

    \b
    Examples:
      geoseg train sequence sample_data/sequence/train_sequence.yaml -o objects.ovs.npz
      geoseg train sequence -o objects.ovs.npz --set iterations=600 --set "backgrounds=[img/*.tif]"
    Then: geoseg run pipelines/sequence_objects.yaml frames/ -o out/ --set model=objects.ovs.npz
    """
    from geoseg.sequence.modelfile import save_sequence_model
    from geoseg.sequence.train import load_sequence_train_config, train_sequence_model

    cfg = load_sequence_train_config(config, overrides)
    step = max(1, cfg.iterations // 10)

    def progress(it: int, total: int, losses: dict[str, float]) -> None:
        if it % step == 0 or it == total:
            log.info("iteration %d/%d: %s", it, total, ", ".join(f"{k} {v:.3f}" for k, v in losses.items()))

    model = train_sequence_model(cfg, progress=progress)
    save_sequence_model(output, model)
    log.info("wrote %s (%.1f s of training)", output, model.training["seconds"])
