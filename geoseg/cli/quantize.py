"""``geoseg quantize``: low-bit raster classifiers (GDRQ fine-tuning, BP-NAS bit-width search)."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import click

log = logging.getLogger("geoseg.cli")


@click.command("quantize")
@click.argument("float_model", type=click.Path(dir_okay=False))
@click.option("--w-bits", type=click.Choice(["2", "4", "8"]), default=None, help="Weight bits of every layer (not with --search).")
@click.option("--a-bits", type=click.Choice(["2", "4", "8"]), default=None, help="Activation bits [default: --w-bits].")
@click.option("--search", is_flag=True, help="BP-NAS: search per-layer bits under --budget-bitops, then fine-tune.")
@click.option("--budget-bitops", default=None, help="BitOPs budget per tile (bitops_tile_px, 512 by default), e.g. 2.5e9 or 2.5G.")
@click.option("--method", type=click.Choice(["gdrq", "minmax"]), default=None, help="gdrq (Scale-Clip + groups) [default] or plain min-max.")
@click.option("--images", "images", multiple=True, required=True, help="Training scenes (files or globs).")
@click.option("--masks", "masks", multiple=True, required=True, help="Road masks paired with the images by file stem.")
@click.option("--centerlines", "centerlines", multiple=True, help="Centerline rasters (for models with the centerline head).")
@click.option("--gsd-m", type=float, default=None, help="GSD assumed for files without georeferencing (e.g. 0.21 for Ottawa PNGs) [0.3].")
@click.option("--config", "config", type=click.Path(dir_okay=False), default=None, help="YAML file of quantization settings.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a setting: iterations=300, lr=1e-4, groups=8, search.iterations=200, search.mu=0.01, ... Repeatable.")  # fmt: skip
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Quantized model file to write.")
@click.option("--checkpoint", type=click.Path(dir_okay=False), default=None, help="Checkpoint written every tenth of each phase [default: OUTPUT, .ckpt.npz].")
@click.option("--resume", type=click.Path(dir_okay=False), default=None, help="Continue from a checkpoint written by an earlier run of the same command.")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Progress bar on stderr.")
def command(
    float_model, w_bits, a_bits, search, budget_bitops, method, images, masks, centerlines, gsd_m, config, overrides, output, checkpoint, resume, progress
) -> None:
    """Quantize a float deep classifier (from `geoseg train nn`) and write a packed low-bit model file.

    \b
    Uniform bits, GDRQ quantization-aware fine-tuning:
      geoseg quantize roads.nn.npz --w-bits 4 --a-bits 4 --images "tiles/*.png" --masks "masks/*.png" -o roads.w4a4.npz
    Mixed precision searched under a BitOPs budget (BP-NAS), then fine-tuned:
      geoseg quantize roads.nn.npz --search --budget-bitops 2.5G --images ... --masks ... -o roads.mp.npz
    Then: geoseg run deep_road_centerlines scene.tif -o out/ --set model=roads.w4a4.npz
          geoseg model info roads.w4a4.npz
    """
    from geoseg.atomic import check_output_file, check_spares_inputs
    from geoseg.cli._common import named_files, resume_hint
    from geoseg.cli.train import config_gsd_option, read_scenes
    from geoseg.nn.modelfile import load_nn_model
    from geoseg.nn.quant.bpnas import parse_bitops, search_bits
    from geoseg.nn.quant.gdrq import layer_plan, load_quant_config, quantize_finetune, resumed_checkpoint, uniform_bits
    from geoseg.nn.quant.qat import LayerBits
    from geoseg.nn.quant.qmodelfile import save_quantized

    if search:
        if budget_bitops is None or w_bits or a_bits:
            raise click.UsageError("--search needs --budget-bitops and takes no --w-bits/--a-bits")
    elif w_bits is None:
        raise click.UsageError("give --w-bits (and --a-bits), or --search with --budget-bitops")
    elif budget_bitops is not None:
        raise click.UsageError("--budget-bitops is the budget of --search; with fixed --w-bits/--a-bits it would be ignored")
    check_output_file(output, "-o", example_name="roads.w4a4.npz")
    ckpt = checkpoint or str(Path(output).with_suffix("")) + ".ckpt.npz"
    check_output_file(ckpt, "--checkpoint", example_name="roads.w4a4.ckpt.npz")
    check_spares_inputs({"-o": output, "--checkpoint": ckpt}, named_files([float_model], images, masks, centerlines))
    extra = [f"method={method}"] if method else []
    extra += [f"data_gsd_m={gsd_m}"] if gsd_m is not None else []
    cfg = load_quant_config(config, [*overrides, *extra])
    model = load_nn_model(float_model)
    if "quantization" in model.training:
        raise click.UsageError(f"{float_model} is already quantized; give the float model")
    start = time.perf_counter()
    gsd_given = gsd_m is not None or config_gsd_option(cfg.data_gsd_m, overrides, "data_gsd_m") is None
    gsd_option = None if gsd_given else "--gsd-m"
    macs, ends = layer_plan(model, cfg.bitops_tile_px)
    ck = resumed_checkpoint(resume, model) if resume else None  # the checkpoint and the budget are checked before the scenes are read
    phase = ck.extra["phase"] if ck is not None else None
    if phase == "search" and not search:
        raise click.UsageError(f"{resume} is a checkpoint of a BP-NAS search: resume it with --search and the same --budget-bitops")
    budget = parse_bitops(budget_bitops) if search and phase != "finetune" else None
    data = read_scenes(list(images), list(masks), [], list(centerlines), cfg.data_gsd_m, "training data", gsd_option=gsd_option)
    summary = None
    if phase == "finetune":
        assert ck is not None
        bits, summary = {n: LayerBits(*wa) for n, wa in ck.extra["bits"].items()}, ck.extra["search"]
        log.info("resuming the fine-tuning from %s (the bits are the checkpoint's)", resume)
    elif budget is not None:
        log.info("BP-NAS search over %s bits under %.4g BitOPs per %d px tile", cfg.search.candidates, budget, cfg.bitops_tile_px)
        with resume_hint(ckpt):
            found = search_bits(model, data, budget, cfg, progress=progress, checkpoint_path=ckpt, resume=ck)
        bits, summary = found.bits, found.summary()
        log.info("found %.4g BitOPs (budget %.4g)%s", found.bitops, budget, f"; repaired: {'; '.join(found.repairs)}" if found.repairs else "")
    else:
        bits = uniform_bits(macs, ends, int(w_bits), int(a_bits or w_bits), cfg.ends_bits)
    finetune = ck if phase == "finetune" else None
    with resume_hint(ckpt):
        result = quantize_finetune(model, data, bits, cfg, macs=macs, search=summary, progress=progress, checkpoint_path=ckpt, resume=finetune)
    path = save_quantized(output, result)
    log.info("wrote %s (%s, %.1f s)", path, f"{path.stat().st_size:,} bytes", time.perf_counter() - start)
