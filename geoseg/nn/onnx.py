"""ONNX: a geoseg raster classifier exported for any ONNX runtime, and run through onnxruntime.

:func:`export_onnx` writes the network of an ``nn`` model file as an ONNX graph (opset 17,
float32, any batch size and tile side that is a multiple of 16) whose outputs are
probabilities: ``probabilities`` (``N × classes × H × W``, the softmax of the segmentation
head) and, for models with a centerline head, ``centerline`` (``N × 1 × H × W``). The input is
the model's bands normalised as geoseg normalises them (``(value - band_mean) / band_std``).

The file carries the metadata that the QGIS plugin Deepness reads for segmentation models
(``model_type``, ``class_names``, ``resolution`` in cm per pixel, ``tiles_size``,
``tiles_overlap`` in percent, ``standardization_mean`` / ``standardization_std``: Deepness
scales 8-bit images to [0, 1] first, so these are the band statistics divided by 255 and hold
for models trained on 8-bit scenes), and under ``geoseg`` the model's whole geoseg metadata
(bands, statistics, value ranges, GSD, tiling), so that :func:`~geoseg.nn.onnx_runtime.load_onnx_model` gives back an
:class:`~geoseg.nn.modelfile.NNModel` whose ``module`` runs in onnxruntime: the ``nn_classify``
step then tiles, blends, resamples and checks scenes exactly as with the torch backend.

onnxruntime and onnx are the optional extra ``geoseg[onnx]``; without them the torch backend
works unchanged and the ONNX functions raise a :class:`~geoseg.errors.ConfigError` naming the
extra.

A quantized model (``geoseg quantize``: GDRQ or BP-NAS) is exported in ONNX's
quantize/dequantize form (:mod:`geoseg.nn.quant.onnx_qdq`): ``int8`` weights with their learnt
per-channel scales (group steps and batch norm folded in), ``int32`` biases, and each quantized
layer's input activation through ``QuantizeLinear`` at its learnt step, so that onnxruntime runs
the convolutions on integer kernels. Its outputs equal the torch simulation of the quantized
model up to integer rounding ties (a few codes one step apart).

Examples
--------
>>> from geoseg.nn.modelfile import load_nn_model
>>> export_onnx(load_nn_model("roads.nn.npz"), "roads.onnx")  # doctest: +SKIP
PosixPath('roads.onnx')
>>> from geoseg.nn.onnx_runtime import load_onnx_model
>>> load_onnx_model("roads.onnx").heads  # doctest: +SKIP
['background', 'road', 'centerline']
"""

from __future__ import annotations

import io
import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from geoseg.atomic import atomic_path
from geoseg.errors import ModelFileError
from geoseg.nn.modelfile import NNModel
from geoseg.nn.onnx_runtime import OPSET, require_module
from geoseg.nn.quant.onnx_qdq import integer_conv_indices, qdq_module, requantize_outputs

__all__ = ["export_onnx", "format_onnx_summary", "onnx_file_summary", "onnx_graph_bytes", "onnx_metadata"]


class _Probabilities(nn.Module):
    """The classifier with its outputs turned into probabilities, as exported."""

    def __init__(self, module: nn.Module, centerline: bool) -> None:
        super().__init__()
        self.module, self.centerline = module, centerline

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.module(x)
        # The softmax over the class axis written out: onnxruntime's Softmax works on the last
        # axis and transposes the whole tensor twice for axis 1 (15 % of a tile's time).
        logits = out["seg"]
        exp = torch.exp(logits - logits.amax(dim=1, keepdim=True))
        probs = exp / exp.sum(dim=1, keepdim=True)
        return (probs, torch.sigmoid(out["centerline"])) if self.centerline else (probs,)


def onnx_metadata(model: NNModel) -> dict[str, str]:
    """The metadata entries of the exported file: Deepness's keys, and geoseg's own under ``geoseg``."""
    meta = model.metadata()
    meta.pop("training", None)  # the training summary stays in the geoseg model file
    entries = {
        "model_type": "Segmentor",
        "class_names": json.dumps({str(i): name for i, name in enumerate(model.classes)}),
        "tiles_size": str(model.tile_px),
        "tiles_overlap": str(int(round(100 * model.overlap_px / model.tile_px))),
        "standardization_mean": json.dumps([v / 255.0 for v in model.band_mean]),
        "standardization_std": json.dumps([v / 255.0 for v in model.band_std]),
        "geoseg": json.dumps(meta),
    }
    if np.isfinite(model.train_gsd_m):
        entries["resolution"] = f"{100 * model.train_gsd_m:g}"
    return entries


def onnx_graph_bytes(model: NNModel) -> bytes:
    """The ONNX graph of the model (dynamic batch and tile side) with its metadata, as a file holds it.

    A float model gives a float32 graph; a quantized one (``geoseg quantize``) its QDQ form:
    integer weights with their learnt per-channel scales, integer activations at their learnt
    steps (:mod:`geoseg.nn.quant.onnx_qdq`).

    Raises
    ------
    ConfigError
        onnx is not installed.
    """
    onnx = require_module("onnx")
    heads = ["probabilities", *(["centerline"] if "centerline" in model.heads else [])]
    network = model.module
    if model.quantized:
        network = qdq_module(network)
    wrapped = _Probabilities(network, "centerline" in model.heads).eval()
    x = torch.zeros(1, len(model.bands), 64, 64)
    axes = {"image": {0: "batch", 2: "height", 3: "width"}, **{h: {0: "batch", 2: "height", 3: "width"} for h in heads}}
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's notes on its own deprecation
        torch.onnx.export(
            wrapped,
            (x,),
            buffer,  # type: ignore[arg-type]  # file-like objects work (TorchScript exporter)
            dynamo=False,
            input_names=["image"],
            output_names=heads,
            dynamic_axes=axes,
            opset_version=OPSET,
        )
    graph = onnx.load_from_string(buffer.getvalue())
    if model.quantized:
        requantize_outputs(graph.graph)
    channels = {"probabilities": len(model.classes), "centerline": 1}
    for output in graph.graph.output:  # the class axis is fixed (the written-out softmax left it symbolic): Deepness counts classes there
        dim = output.type.tensor_type.shape.dim[1]
        dim.ClearField("dim_param")
        dim.dim_value = channels[output.name]
    for key, value in onnx_metadata(model).items():
        entry = graph.metadata_props.add()
        entry.key, entry.value = key, value
    data: bytes = graph.SerializeToString()
    return data


def export_onnx(model: NNModel, path: str | os.PathLike[str]) -> Path:
    """Write ``model`` as an ONNX file (atomically).

    Raises
    ------
    ConfigError
        onnx is not installed.
    """
    data = onnx_graph_bytes(model)
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(data)
    return Path(path)


#: The metadata keys that QGIS Deepness reads for a segmentation model.
DEEPNESS_KEYS = ("model_type", "class_names", "resolution", "tiles_size", "tiles_overlap", "standardization_mean", "standardization_std")


def _shape(value_info: Any) -> list[int | str]:
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


def onnx_file_summary(path: str | os.PathLike[str]) -> dict[str, Any]:
    """What an ONNX file holds: precision, inputs and outputs, Deepness's metadata and geoseg's (``geoseg model info``).

    ``precision`` is ``int8`` when the convolutions take dequantized integer weights (the QDQ
    form of a quantized model), else ``float32``; ``geoseg`` is None for a file that geoseg did
    not export.

    Raises
    ------
    ModelFileError
        The file cannot be read as an ONNX graph.
    ConfigError
        onnx is not installed.

    Examples
    --------
    >>> onnx_file_summary("roads.int8.onnx")["precision"]  # doctest: +SKIP
    'int8'
    """
    onnx = require_module("onnx")
    source = Path(path)
    try:
        graph = onnx.load(str(source), load_external_data=False)
    except OSError as exc:
        raise ModelFileError(f"{source}: cannot read the ONNX file ({exc.strerror or exc})") from None
    except Exception as exc:  # protobuf raises its own DecodeError for a file that is no ONNX graph
        raise ModelFileError(f"{source}: not an ONNX graph ({str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__})") from None
    props = {p.key: p.value for p in graph.metadata_props}
    convs = [n for n in graph.graph.node if n.op_type == "Conv"]
    integer = integer_conv_indices(graph.graph)
    ours: dict[str, Any] | None = None
    if "geoseg" in props:
        try:
            meta = json.loads(props["geoseg"])
        except ValueError:
            meta = {}
        keys = ("architecture", "bands", "classes", "heads", "train_gsd_m", "tile_px", "overlap_px")
        ours = {k: meta[k] for k in keys if k in meta}
    return {
        "file": str(source),
        "file_bytes": source.stat().st_size,
        "kind": "onnx",
        "opset": max((o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")), default=None),
        "precision": "int8" if integer else "float32",
        "convolutions": len(convs),
        "integer_convolutions": len(integer),
        "inputs": {i.name: _shape(i) for i in graph.graph.input},
        "outputs": {o.name: _shape(o) for o in graph.graph.output},
        "deepness": {k: props[k] for k in DEEPNESS_KEYS if k in props},
        "geoseg": ours,
    }


def format_onnx_summary(summary: dict[str, Any]) -> str:
    """Human-readable text of :func:`onnx_file_summary`."""
    s = summary
    precision = "float32"
    if s["precision"] == "int8":
        precision = f"int8 quantize/dequantize ({s['integer_convolutions']} of {s['convolutions']} convolutions on integer weights)"
    lines = [f"{s['file']}: ONNX (opset {s['opset']}), {s['file_bytes']:,} bytes, {precision}"]
    lines += [f"input {name}: {'x'.join(str(d) for d in shape)}" for name, shape in s["inputs"].items()]
    lines += [f"output {name}: {'x'.join(str(d) for d in shape)}" for name, shape in s["outputs"].items()]
    if s["deepness"]:
        lines.append("QGIS Deepness: " + ", ".join(f"{k}={v}" for k, v in s["deepness"].items()))
    else:
        lines.append("QGIS Deepness: no metadata (set the model type, resolution and tiling by hand)")
    if s["geoseg"] is None:
        lines.append("geoseg: no metadata (not exported by `geoseg model export`: nn_classify cannot run it)")
    else:
        lines.append("geoseg: " + ", ".join(f"{k}={v}" for k, v in s["geoseg"].items()))
    return "\n".join(lines)
