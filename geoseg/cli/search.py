"""``geoseg search``: latency-constrained architecture search of road classifiers (GAS)."""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import click

log = logging.getLogger("geoseg.cli")


@click.group("search")
def command() -> None:
    """Search a network architecture for this machine and write a model file."""


@command.command("arch")
@click.argument("config", required=False, type=click.Path(dir_okay=False))
@click.option("--images", "images", multiple=True, help="Training scenes (files or globs); replace the config's data.images.")
@click.option("--masks", "masks", multiple=True, help="Road masks (non-zero = road) paired by file stem; replace data.masks.")
@click.option("--val-images", "val_images", multiple=True, help="Validation scenes: best retraining epoch by road IoU.")
@click.option("--val-masks", "val_masks", multiple=True, help="Validation masks paired by stem.")
@click.option(
    "--target-ms",
    type=click.FloatRange(min=0, min_open=True, max=math.inf, max_open=True),
    default=None,
    help="Target latency per tile (latency.tile_px, 512 px) in ms on this machine [default: the config's].",
)
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Model file to write, e.g. roads.gas.npz.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a config field, e.g. search.gcn=false or retrain.epochs=5. Repeatable.")
@click.option("--checkpoint", type=click.Path(dir_okay=False), default=None, help="Checkpoint written every epoch [default: OUTPUT with .ckpt.npz].")
@click.option("--resume", type=click.Path(dir_okay=False), default=None, help="Continue from a checkpoint written by an earlier run of the same config.")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Progress bars on stderr.")
def arch(config, images, masks, val_images, val_masks, target_ms, output, overrides, checkpoint, resume, progress) -> None:
    """Latency-constrained architecture search (GAS) of a light road classifier.

    Measures a latency table of the candidate operations on this machine (device and
    threads of the config), searches cells of operations under the target latency, derives
    the network, measures it, retrains it and writes an ordinary nn model file.

    \b
    geoseg search arch road_gas --images "tiles/*.png" --masks "masks/*.png" \\
        --target-ms 25 -o roads.gas.npz --set data.gsd_m=0.21
    Then: geoseg run deep_road_centerlines scene.tif -o out/ --set model=roads.gas.npz
    After an interruption, the same command with --resume roads.gas.ckpt.npz goes on.

    CONFIG is a YAML file or the name of a shipped config (road_gas); without it the
    defaults are used.
    """
    from geoseg.atomic import check_output_file, check_spares_inputs
    from geoseg.cli._common import named_files, resume_hint
    from geoseg.cli.train import config_gsd_option, read_scenes
    from geoseg.nn.search.config import load_search_config
    from geoseg.nn.search.run import run_gas

    cfg = load_search_config(config or None, overrides)
    given = {"images": images, "masks": masks, "val_images": val_images, "val_masks": val_masks}
    data = cfg.data.model_copy(update={k: list(v) for k, v in given.items() if v})
    if not data.images:
        raise click.UsageError("no training data: give --images and --masks, or data.images/data.masks in the config")
    latency = cfg.latency if target_ms is None else cfg.latency.model_copy(update={"target_ms": target_ms})
    if latency.target_ms is None or not 0 < latency.target_ms < math.inf:  # nan passes the option's range
        raise click.UsageError(f"give a positive, finite --target-ms (or latency.target_ms in the config), not {latency.target_ms}")
    cfg = cfg.model_copy(update={"data": data, "latency": latency})
    check_output_file(output, "-o", example_name="roads.gas.npz")
    ckpt = checkpoint or str(Path(output).with_suffix("")) + ".ckpt.npz"
    check_output_file(ckpt, "--checkpoint", example_name="roads.gas.ckpt.npz")
    check_spares_inputs({"-o": output, "--checkpoint": ckpt}, named_files(data.images, data.masks, data.val_images, data.val_masks))
    gsd_option = config_gsd_option(data.gsd_m, overrides, "data.gsd_m")
    start = time.perf_counter()
    train_scenes = read_scenes(data.images, data.masks, [], [], data.gsd_m, "training data", gsd_option=gsd_option)
    val_scenes = read_scenes(data.val_images, data.val_masks, [], [], data.gsd_m, "validation data", gsd_option=gsd_option) if data.val_images else []
    log.info(
        "searching on %d scene(s) for %g ms per %d px tile (%s, GCN %s)",
        len(train_scenes),
        latency.target_ms,
        latency.tile_px,
        cfg.device,
        "on" if cfg.search.gcn else "off",
    )
    with resume_hint(ckpt):
        result = run_gas(cfg, train_scenes, val_scenes, output=output, progress=progress, checkpoint_path=ckpt, resume=resume)
    best = f", best val road IoU {result.best_iou:.4f}" if val_scenes else ""
    log.info(
        "wrote %s: measured %.2f ms per tile (LUT %.2f ms, target %g ms)%s (%.1f s)",
        output, result.measured_ms, result.search.predicted_ms, latency.target_ms, best, time.perf_counter() - start,
    )  # fmt: skip
