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
@click.option("--tile-px", type=click.IntRange(min=16), default=None, help="Input tile side for MACs/BitOPs [default: the quantized file's, else 512].")
def info(model, as_json, tile_px) -> None:
    """Per-layer bits, MACs, BitOPs, weight bytes and totals of a model file, and its size.

    \b
    geoseg model info roads.w4a4.npz
    geoseg model info roads.nn.npz --json
    geoseg model info roads.onnx
    Other kinds (e.g. MJCR) print their kind, metadata and arrays. An ONNX file (geoseg model
    export) prints its precision (float32 or int8), inputs and outputs, and the metadata QGIS
    Deepness and geoseg read from it (needs the extra geoseg[onnx]).
    """
    if model.lower().endswith(".onnx"):
        from geoseg.nn.onnx import format_onnx_summary, onnx_file_summary

        onnx_summary = onnx_file_summary(model)
        click.echo(json.dumps(onnx_summary, indent=2) if as_json else format_onnx_summary(onnx_summary))
        return
    from geoseg.nn.quant.summary import format_summary, model_summary

    summary = model_summary(model, tile_px)
    click.echo(json.dumps(summary, indent=2) if as_json else format_summary(summary))


@command.command("export")
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="The ONNX file to write (.onnx).")
def export(model: str, output: str) -> None:
    """Export a deep classifier (nn model file) as ONNX, for onnxruntime, QGIS Deepness or any ONNX runtime.

    The graph takes the model's bands normalised as geoseg normalises them and gives
    probabilities: `probabilities` (one channel per class) and, for models with a centerline
    head, `centerline`. The file carries Deepness's metadata (model_type Segmentor, class_names,
    resolution in cm/px, tiles_size, tiles_overlap, standardization_mean/std for 8-bit scenes)
    and geoseg's own, so `nn_classify` runs it as it runs the model file (model=FILE.onnx).
    A quantized model (geoseg quantize) is written as int8 quantize/dequantize operators with its
    learnt scales: about a quarter of the float file for W8A8, and faster in onnxruntime.
    Needs the extra geoseg[onnx].

    \b
    Examples:
      geoseg model export roads.nn.npz -o roads.onnx
      geoseg model export roads.w8a8.npz -o roads.int8.onnx
      geoseg run deep_road_centerlines scene.tif -o out/ --set model=roads.onnx
    """
    from geoseg.nn.modelfile import load_nn_model
    from geoseg.nn.onnx import export_onnx

    if not output.lower().endswith(".onnx"):  # geoseg and QGIS Deepness tell ONNX files by their suffix
        raise click.BadParameter(f"{output}: an ONNX file is named .onnx (geoseg and QGIS Deepness tell it by its suffix)", param_hint="-o")
    loaded = load_nn_model(model)
    path = export_onnx(loaded, output)
    kind = "int8 (quantize/dequantize)" if loaded.quantized else "float32"
    click.echo(f"{path}: ONNX {kind} ({path.stat().st_size / 1e6:.2f} MB); loads in QGIS Deepness as a Segmentor, and in geoseg with --set model={path}")
