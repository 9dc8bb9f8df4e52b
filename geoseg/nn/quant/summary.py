"""Per-layer and total size/cost summary of any geoseg model file (``geoseg model info``).

For ``nn`` and ``nn-quantized`` files: every convolution's weight shape, weight and
activation bits (32 for float), weight groups, MACs and BitOPs per ``tile_px``² input tile,
stored weight bytes, and the totals with the file size. For any other kind (MJCR, ...): the
kind, the metadata's scalar entries, its ``architecture``/``hyper`` entries when present (e.g.
the architecture-search models), and the arrays' count and bytes.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from geoseg.errors import ModelFileError
from geoseg.modelfile import load_model
from geoseg.nn.quant.bitops import DEFAULT_TILE_PX, FLOAT_BITS, conv_macs

__all__ = ["model_summary", "format_summary"]

_GENERIC_KEYS = ("architecture", "hyper", "hyper_parameters", "hyperparameters", "genotype")


def _jsonable(value: Any, depth: int = 0) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v, depth + 1) for v in value]
    return value


def _is_small(value: Any) -> bool:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return True
    return isinstance(value, list) and len(value) <= 16 and all(isinstance(v, (str, int, float, bool)) for v in value)


def _metadata_overview(meta: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in meta.items():
        if key in _GENERIC_KEYS:
            out[key] = _jsonable(value)
        elif (
            isinstance(value, (str, int, float, bool))
            or value is None
            or isinstance(value, list)
            and len(value) <= 16
            and all(isinstance(v, (str, int, float, bool)) for v in value)
        ):
            out[key] = value
        elif isinstance(value, dict) and all(_is_small(v) for v in value.values()):
            out[key] = _jsonable(value)  # e.g. a classifier's hyper-parameters
        elif isinstance(value, (list, dict)):
            out[key] = f"<{type(value).__name__} of {len(value)}>"
    return out


def model_summary(path: str | os.PathLike[str], tile_px: int | None = None) -> dict[str, Any]:
    """Summary of a model file.

    Parameters
    ----------
    path : path-like
        Any geoseg model file.
    tile_px : int, optional
        Input tile side for MACs/BitOPs (default: the quantized file's, else 512).

    Returns
    -------
    dict
        ``file``, ``file_bytes``, ``kind``, ``metadata`` (overview), ``arrays``; for nn models
        also ``tile_px``, ``layers`` (list) and ``totals``.

    Raises
    ------
    ModelFileError
        Not a readable geoseg model file.
    """
    path = Path(path)
    arrays, meta = load_model(path)
    out: dict[str, Any] = {
        "file": str(path),
        "file_bytes": path.stat().st_size,
        "kind": meta["kind"],
        "metadata": _metadata_overview(meta),
        "arrays": {"count": len(arrays), "bytes": int(sum(np.asarray(a).nbytes for a in arrays.values()))},
    }
    if meta["kind"] not in ("nn", "nn-quantized"):
        return out
    from geoseg.nn.modelfile import load_nn_model

    try:
        model = load_nn_model(path)
    except ModelFileError as exc:
        out["error"] = f"cannot rebuild the network: {exc}"
        return out
    quant = meta.get("quantization") or {}
    qlayers: dict[str, dict[str, Any]] = quant.get("layers", {})
    tile = int(tile_px or quant.get("tile_px") or DEFAULT_TILE_PX)
    macs = conv_macs(model.module, len(model.bands), tile)
    convs = {n: m for n, m in model.module.named_modules() if isinstance(m, nn.Conv2d)}
    layers = []
    for name, conv in convs.items():
        q = qlayers.get(name)
        wb, ab = (int(q["w_bits"]), int(q["a_bits"])) if q else (FLOAT_BITS, FLOAT_BITS)
        m = int(macs.get(name, 0))
        layers.append({
            "name": name, "shape": list(conv.weight.shape), "w_bits": wb, "a_bits": ab, "groups": int(q["groups"]) if q else None,
            "macs": m, "bitops": m * wb * ab, "weight_bytes": int(q["codes_bytes"]) if q else int(conv.weight.numel() * 4),
        })  # fmt: skip
    params = int(sum(p.numel() for p in model.module.parameters()))
    out.update(
        architecture=model.architecture,
        hyper=model.hyper,
        tile_px=tile,
        method=quant.get("method", "float"),
        search=quant.get("search"),
        layers=layers,
        totals={
            "layers": len(layers), "params": params, "macs": int(sum(r["macs"] for r in layers)),
            "bitops": int(sum(r["bitops"] for r in layers)), "weight_bytes": int(sum(r["weight_bytes"] for r in layers)),
            "file_bytes": out["file_bytes"],
        },
    )  # fmt: skip
    return out


def _si(value: float) -> str:
    for unit, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.3g}{unit}"
    return f"{value:.3g}"


def format_summary(s: dict[str, Any]) -> str:
    """Human-readable text of :func:`model_summary`."""
    lines = [f"{s['file']}: kind {s['kind']}, {s['file_bytes']:,} bytes ({s['arrays']['count']} arrays, {s['arrays']['bytes']:,} bytes unpacked)"]
    meta = s["metadata"]
    for key in _GENERIC_KEYS:
        if key in meta:
            lines.append(f"{key}: {meta[key]}")
    others = {k: v for k, v in meta.items() if k not in _GENERIC_KEYS and k != "kind"}
    if others:
        lines.append("metadata: " + ", ".join(f"{k}={v}" for k, v in others.items()))
    if "error" in s:
        lines.append(s["error"])
    if "layers" not in s:
        return "\n".join(lines)
    lines.append(f"quantization: {s['method']}; MACs and BitOPs per {s['tile_px']}x{s['tile_px']} input tile")
    if s.get("search"):
        sr = s["search"]
        lines.append(f"BP-NAS: budget {_si(sr['budget_bitops'])} BitOPs, found {_si(sr['bitops'])} (argmax {_si(sr['argmax_bitops'])}, "
                     f"{len(sr['repairs'])} repair step(s), {sr['rejected_steps']} rejected search step(s))")  # fmt: skip
    width = max(len(r["name"]) for r in s["layers"]) if s["layers"] else 5
    lines.append(f"{'layer':{width}s} {'weight shape':>16s} {'W':>3s} {'A':>3s} {'groups':>6s} {'MACs':>8s} {'BitOPs':>8s} {'bytes':>9s}")
    for r in s["layers"]:
        shape = "x".join(str(v) for v in r["shape"])
        lines.append(f"{r['name']:{width}s} {shape:>16s} {r['w_bits']:3d} {r['a_bits']:3d} {r['groups'] or '-':>6} {_si(r['macs']):>8s} "
                     f"{_si(r['bitops']):>8s} {r['weight_bytes']:9,d}")  # fmt: skip
    t = s["totals"]
    lines.append(f"total: {t['layers']} conv layers, {t['params']:,} parameters, {_si(t['macs'])} MACs, {_si(t['bitops'])} BitOPs, "
                 f"{t['weight_bytes']:,} conv weight bytes, file {t['file_bytes']:,} bytes")  # fmt: skip
    return "\n".join(lines)
