"""The ``nn-quantized`` model file: bit-packed integer weights, group steps and activation clips.

Same safe container as every geoseg model (:mod:`geoseg.modelfile`: npz + JSON, no pickle)
and the same metadata as a float ``nn`` model (architecture, bands, statistics, tiling), plus
a ``quantization`` entry (method, per-layer bits, activation clips, MACs and BitOPs per tile,
fine-tuning settings, BP-NAS summary). Per quantized convolution ``<name>``:

the unsigned weight codes ``q + 2^(b−1) − 1`` packed ``8/b`` per byte (:mod:`.packing`: a
4-bit layer takes half a byte per weight, a 2-bit layer a quarter), and the layer's
per-channel multiplier and shift, into which its group weight steps, its activation step,
its bias and the following batch norm are **folded at save time** (GDRQ: group scales merged
into BN; :func:`.qat.fold_layer`). The layer's activation clip and bit widths are metadata.

To keep the per-array overhead of the npz container (a few hundred bytes per member) from
dominating small models, all layers share three arrays: ``qcodes`` (uint8, all packed codes),
``qaffine`` (float32, multipliers and shifts) and ``fstate`` (float32, the remaining float
tensors, e.g. of layers that were not quantized); offsets and shapes are in the metadata.

Loading unpacks the codes, rebuilds the architecture by name (through the same code as an
``nn`` file) and swaps each quantized convolution for a :class:`.qat.FoldedQConv2d` (its batch
norm for an identity), so :func:`geoseg.nn.modelfile.load_nn_model` returns an
:class:`~geoseg.nn.modelfile.NNModel` that the ``nn_classify`` step runs unchanged
(simulated integer arithmetic in float32; no integer kernels).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from geoseg.errors import ModelFileError
from geoseg.modelfile import save_model
from geoseg.nn.modelfile import QUANTIZED_KIND, NNModel, build_nn_model
from geoseg.nn.quant.bitops import total_bitops
from geoseg.nn.quant.gdrq import QuantizedNN
from geoseg.nn.quant.packing import pack_codes, unpack_codes
from geoseg.nn.quant.qat import FoldedQConv2d, conv_bn_pairs, fold_layer, quantized_layers, set_module
from geoseg.nn.quant.quantizers import signed_levels

__all__ = ["QUANTIZED_KIND", "build_quantized", "save_quantized"]

_CODES, _AFFINE, _FSTATE = "qcodes", "qaffine", "fstate"


def save_quantized(path: str | os.PathLike[str], qnn: QuantizedNN) -> Path:
    """Write a quantization-aware-trained model as an ``nn-quantized`` file (atomically).

    Parameters
    ----------
    path : path-like
        Destination ``.npz``.
    qnn : QuantizedNN
        Result of :func:`geoseg.nn.quant.gdrq.quantize_finetune`.

    Returns
    -------
    Path
        The written file.
    """
    module = qnn.model.module.eval()
    layers = quantized_layers(module)
    pairs = conv_bn_pairs(module)
    skip: set[str] = set()
    codes_parts: list[np.ndarray] = []
    affine_parts: list[np.ndarray] = []
    info: dict[str, Any] = {}
    code_off = aff_off = 0
    for name, conv in layers.items():
        bn_name = pairs.get(name)
        folded = fold_layer(conv, module.get_submodule(bn_name) if bn_name else None)  # type: ignore[arg-type]
        b = conv.bits
        n = signed_levels(b.w_bits)
        packed = pack_codes((folded.weight.detach().numpy().astype(np.int64) + n), b.w_bits)
        affine = np.concatenate([folded.mult.numpy(), folded.shift.numpy()]).astype(np.float32)
        codes_parts.append(packed)
        affine_parts.append(affine)
        info[name] = {
            "w_bits": b.w_bits, "a_bits": b.a_bits, "a_clip": folded.a_clip, "a_signed": folded.a_signed,
            "shape": list(conv.weight.shape), "groups": int(conv.weight_clips(b.w_bits)[1].numel()),
            "macs": int(qnn.macs.get(name, 0)), "bn": bn_name, "codes_offset": code_off, "codes_bytes": int(packed.size),
            "affine_offset": aff_off,
        }  # fmt: skip
        code_off += packed.size
        aff_off += affine.size
        skip |= {f"{name}.{k}" for k in ("weight", "bias", "act_stat", "act_min", "observed")}
        if bn_name:
            skip |= {f"{bn_name}.{k}" for k in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")}
    fstate, entries, off = [], [], 0
    for key, value in module.state_dict().items():
        if key in skip or not value.is_floating_point():
            continue
        flat = value.detach().float().reshape(-1).numpy()
        entries.append({"name": key, "shape": list(value.shape), "offset": off})
        fstate.append(flat)
        off += flat.size
    arrays = {
        _CODES: np.concatenate(codes_parts) if codes_parts else np.zeros(0, np.uint8),
        _AFFINE: np.concatenate(affine_parts) if affine_parts else np.zeros(0, np.float32),
        _FSTATE: np.concatenate(fstate).astype(np.float32) if fstate else np.zeros(0, np.float32),
    }
    bits = {n: (v["w_bits"], v["a_bits"]) for n, v in info.items()}
    meta = qnn.model.metadata()
    meta["kind"] = QUANTIZED_KIND
    meta["quantization"] = {
        "method": qnn.config.method,
        "tile_px": qnn.config.bitops_tile_px,
        "layers": info,
        "float_state": entries,
        "macs": {n: int(m) for n, m in qnn.macs.items()},
        "bitops": total_bitops(qnn.macs, bits),
        "config": qnn.config.model_dump(mode="json"),
        "history": qnn.history,
        "search": qnn.search,
        "arithmetic": "simulated: integer weight and activation codes with folded per-channel scales, evaluated in float32",
    }
    return save_model(path, arrays, meta)


def build_quantized(path: Path, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> NNModel:
    """Rebuild the inference model of an ``nn-quantized`` file (called by ``load_nn_model``).

    Raises
    ------
    ModelFileError
        Missing or inconsistent quantization entries; the message names the file.
    """
    from geoseg.nn.models import build_model

    try:
        quant = meta["quantization"]
        layers: dict[str, dict[str, Any]] = dict(quant["layers"])
        codes_blob, affine_blob, fblob = arrays[_CODES], arrays[_AFFINE], arrays[_FSTATE]
        template = build_model(meta["architecture"], **meta["hyper"]).state_dict()
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(f"{path}: incomplete nn-quantized file ({exc!r})") from exc
    state = {k: v.detach().numpy() for k, v in template.items()}
    try:
        for e in quant["float_state"]:
            size = int(np.prod(e["shape"]))
            if e["name"] not in state or e["offset"] + size > fblob.size:
                raise ModelFileError(f"{path}: float tensor {e['name']} does not fit the file or the architecture")
            state[e["name"]] = fblob[e["offset"] : e["offset"] + size].reshape(e["shape"]).astype(state[e["name"]].dtype)
        ints: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        for name, spec in layers.items():
            bits, shape = int(spec["w_bits"]), tuple(int(s) for s in spec["shape"])
            raw = codes_blob[spec["codes_offset"] : spec["codes_offset"] + spec["codes_bytes"]]
            n = signed_levels(bits)
            q = (unpack_codes(raw, bits, int(np.prod(shape))).astype(np.int64) - n).astype(np.float32).reshape(shape)
            aff = affine_blob[spec["affine_offset"] : spec["affine_offset"] + 2 * shape[0]]
            if aff.size != 2 * shape[0] or np.abs(q).max(initial=0) > n:
                raise ModelFileError(f"{path}: layer {name}: codes or scales do not fit")
            ints[name] = (q, aff[: shape[0]], aff[shape[0] :])
            state[name + ".weight"] = q
    except ModelFileError:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(f"{path}: inconsistent nn-quantized file ({exc!r})") from exc
    model = build_nn_model(path, {"state/" + k: v for k, v in state.items()}, meta)
    module = model.module
    for name, spec in layers.items():
        conv = module.get_submodule(name)
        if not isinstance(conv, nn.Conv2d):
            raise ModelFileError(f"{path}: {name} is not a convolution of the {model.architecture} architecture")
        q, mult, shift = ints[name]
        folded = FoldedQConv2d(conv, torch.from_numpy(q), torch.from_numpy(mult.copy()), torch.from_numpy(shift.copy()),
                               int(spec["a_bits"]), float(spec["a_clip"]), bool(spec["a_signed"]))  # fmt: skip
        set_module(module, name, folded)
        if spec.get("bn"):
            set_module(module, spec["bn"], nn.Identity())
    module.eval()
    model.training = {**model.training, "quantization": {k: quant.get(k) for k in ("method", "tile_px", "bitops", "search")}}
    return model
