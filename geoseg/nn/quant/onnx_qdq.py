"""Quantized convolutions in ONNX's quantize/dequantize (QDQ) form, with their learnt scales.

A :class:`~geoseg.nn.quant.qat.FoldedQConv2d` computes ``y_c = m_c · conv(x_int, W_int)_c + b_c``
with ``x_int = round(clip(x) / s_a)``. Written as ONNX operators this is

``Conv(DequantizeLinear(QuantizeLinear(x, s_a)), DequantizeLinear(W_int, m_c / s_a, axis=0),
DequantizeLinear(b_c / m_c, m_c, axis=0))`` (``b_c`` is a whole number of ``m_c``: the folded
layer keeps its bias on the accumulator's grid)

so an ONNX runtime sees integer activations (``uint8``, or ``int8`` for signed inputs), integer
weights (one scale per output channel: GDRQ's group steps, the activation step and the batch
norm folded into it) and an ``int32`` bias, and may run the convolution on integer kernels
(onnxruntime fuses a ``DequantizeLinear → Conv → QuantizeLinear`` group into ``QLinearConv``).
Negative per-channel multipliers (a batch norm with a negative scale) are made positive by
negating that channel's codes, which ONNX runtimes expect.

The weight codes are ``int8``, the standard QDQ form, but where they could saturate
onnxruntime. On x86 CPUs without VNNI (AVX2 only, as this project's machines), onnxruntime
multiplies ``uint8`` activations by ``int8`` weights with an instruction that adds pairs of
products into 16 bits with saturation (``|a1·w1 + a2·w2| > 32767``): random full-range weights
in a test network gave errors of 17 on values of ±40. Signed activations reach that kernel
shifted by 128 (``int8`` → ``uint8``), so every pair is large there: a layer with a signed input
and codes above 64 stores its codes as ``uint8`` with zero point 128 instead, whose ``uint8 ×
uint8`` kernel widens to 16 bits first and never saturates (:func:`saturates_as_int8`). After a
ReLU, activation codes are small (their clip is 32·mean|x|) and two large ones meeting two large
weights is rare: on a W8A8 ``road_decouple`` model the mean probability difference to the torch
simulation was 1.0e-4 with ``int8`` weights against 5.8e-5 with ``uint8`` ones everywhere, and
``int8`` ran 14 % (1 thread) to 27 % (2 threads) faster, so those layers keep ``int8``. CPUs
with VNNI, ARM and GPUs have no such saturation.

:func:`qdq_module` swaps every folded layer of a network for a module that computes exactly
what the folded layer computes in torch and exports as that QDQ group (a ``torch.autograd``
function with an ONNX symbolic). :func:`requantize_outputs` then adds the quantization of a
convolution's *output* where the network quantizes it anyway before its next use: when every
consumer of the output (after an optional ReLU) is the input quantizer of another quantized
convolution with the same scale, quantizing right after the convolution gives the same values
(a ReLU before an unsigned quantizer with zero point 0 is the quantizer's own clamp) and lets
the runtime fuse the convolution with its requantization. Outputs that feed a residual sum,
an upsampling or a float layer stay float, as the quantization-aware training simulated them.

Float weights (a layer kept at 32 bits) are written as float with the scales folded in; a
float input (activations at 32 bits) goes to the convolution as it is. Activations of 9 to 31
bits are refused: ONNX's integer types below opset 21 are 8-bit, and geoseg quantizes to 2, 4
or 8 bits.

References
----------
Yu et al., "Towards Efficient Training for Neural Network Quantization" (GDRQ), arXiv
1908.01477: group scales merged into batch norm. ONNX operators QuantizeLinear /
DequantizeLinear (opset 13, per-axis scales).
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from geoseg.nn.quant.qat import FoldedQConv2d, accumulator_codes, set_module

__all__ = ["integer_conv_indices", "qdq_module", "requantize_outputs", "saturates_as_int8"]


def _const(g: Any, value: Tensor) -> Any:
    return g.op("Constant", value_t=value)


def _quantize_input(g: Any, x: Any, a_bits: int, a_clip: float, a_signed: bool, step: float) -> Any:
    """The layer's input activation on its integer grid: a QDQ pair (``a_bits`` 32: the float input)."""
    if a_bits >= 32:
        return x
    lo = -a_clip if a_signed else 0.0
    exact_by_saturation = a_bits == 8 and not a_signed  # uint8 saturation is the clamp to [0, clip]
    if not exact_by_saturation:
        x = g.op("Clip", x, _const(g, torch.tensor(lo)), _const(g, torch.tensor(a_clip)))
    s = _const(g, torch.tensor(step, dtype=torch.float32))
    zero = _const(g, torch.tensor(0, dtype=torch.int8 if a_signed else torch.uint8))
    return g.op("DequantizeLinear", g.op("QuantizeLinear", x, s, zero), s, zero)


class _QDQConvFunction(torch.autograd.Function):
    """A float stand-in while tracing; exported as the QDQ convolution group."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor, w_scale: Tensor, w_zero: Tensor, bias: Tensor, b_scale: Tensor,  # noqa: ARG004
                b_zero: Tensor, layer: dict[str, Any]) -> Tensor:  # fmt: skip
        shape = (-1, *([1] * (weight.dim() - 1)))
        w = (weight.float() - w_zero.float().view(shape)) * w_scale.view(shape)
        return torch.nn.functional.conv2d(x, w, bias.float() * b_scale, layer["stride"], layer["padding"], layer["dilation"], layer["groups"])

    @staticmethod
    def symbolic(g: Any, x: Any, weight: Any, w_scale: Any, w_zero: Any, bias: Any, b_scale: Any, b_zero: Any, layer: dict[str, Any]) -> Any:
        xq = _quantize_input(g, x, layer["a_bits"], layer["a_clip"], layer["a_signed"], layer["step"])
        if layer["int_weights"]:
            weight = g.op("DequantizeLinear", weight, w_scale, w_zero, axis_i=0)
            bias = g.op("DequantizeLinear", bias, b_scale, b_zero, axis_i=0)
        pads = list(layer["padding"])
        return g.op(
            "Conv", xq, weight, bias,
            kernel_shape_i=list(layer["kernel"]), strides_i=list(layer["stride"]), dilations_i=list(layer["dilation"]),
            group_i=layer["groups"], pads_i=pads + pads,
        )  # fmt: skip


class _QDQConv(nn.Module):
    """A folded layer: computes as it does in torch, exports as its QDQ group.

    The weights are held as ``int8`` codes with one positive scale per output channel
    (``m_c / s_a``; a negative multiplier negates the channel's codes) and the bias as ``int32``
    codes at the accumulator's scale ``m_c``, or both as float when the weights are float (or
    wider than 8 bits) or the input stays float.
    """

    def __init__(self, layer: FoldedQConv2d) -> None:
        super().__init__()
        if isinstance(layer.padding, str) or layer.padding_mode != "zeros":
            raise ValueError(f"QDQ export handles zero padding given in pixels, not {layer.padding!r} / {layer.padding_mode!r}")
        if 8 < layer.a_bits < 32:
            raise ValueError(f"{layer.a_bits}-bit activations have no ONNX integer type (8 bits at most)")
        self.layer = layer
        per_channel = (-1, *([1] * (layer.weight.dim() - 1)))
        mult = layer.mult.detach()
        codes = layer.weight.detach() * torch.where(mult < 0, -1.0, 1.0).view(per_channel)
        b_scale = mult.abs()
        w_scale = b_scale / layer.act_step()
        bias_codes, fits = accumulator_codes(layer.shift.detach(), mult)
        max_code = int(codes.abs().max())
        int_weights = layer.integer_codes and max_code <= 127 and bool(torch.all(fits))
        channels = layer.out_channels
        offset = int_weights and saturates_as_int8(layer.a_signed, max_code)
        if int_weights:
            self.register_buffer("weight", (codes + 128).to(torch.uint8) if offset else codes.to(torch.int8))
            self.register_buffer("bias", bias_codes.to(torch.int32))
            self.register_buffer("w_scale", w_scale.float())
            self.register_buffer("b_scale", b_scale.float())
        else:  # float weights: the scales are folded in, and the scale tensors are ones
            self.register_buffer("weight", (codes * w_scale.view(per_channel)).float())
            self.register_buffer("bias", layer.shift.detach().float())
            self.register_buffer("w_scale", torch.ones(channels))
            self.register_buffer("b_scale", torch.ones(channels))
        self.register_buffer("w_zero", torch.full((channels,), 128, dtype=torch.uint8) if offset else torch.zeros(channels, dtype=torch.int8))
        self.register_buffer("b_zero", torch.zeros(channels, dtype=torch.int32))
        self.spec = {
            "a_bits": layer.a_bits, "a_clip": max(layer.a_clip, 1e-8), "a_signed": layer.a_signed, "step": layer.act_step(),
            "int_weights": int_weights, "kernel": tuple(layer.kernel_size), "stride": tuple(layer.stride),
            "padding": tuple(int(p) for p in layer.padding), "dilation": tuple(layer.dilation), "groups": layer.groups,
        }  # fmt: skip

    def forward(self, x: Tensor) -> Tensor:
        if not torch.onnx.is_in_onnx_export():
            out: Tensor = self.layer(x)
            return out
        exported: Tensor = _QDQConvFunction.apply(x, self.weight, self.w_scale, self.w_zero, self.bias, self.b_scale, self.b_zero, self.spec)
        return exported


#: The largest sum of two products that onnxruntime's ``uint8 × int8`` kernel holds (int16) on x86 without VNNI.
_PAIR_LIMIT = 32767


def saturates_as_int8(a_signed: bool, max_code: int) -> bool:
    """Whether a layer's ``int8`` weights would often saturate onnxruntime's x86 ``uint8 × int8`` kernel.

    That kernel adds products in pairs into 16 bits. Signed activations reach it shifted by 128
    (``int8`` → ``uint8``), so every pair is large and two weight codes above 64 overflow it.
    Unsigned activations (after a ReLU) reach it as they are: below 8 bits they cannot overflow
    it, and at 8 bits only where two large codes meet two large activations, which their clip at
    32·mean|x| makes rare (measured: see the module docstring), so those layers keep ``int8``.

    Examples
    --------
    >>> saturates_as_int8(True, 127), saturates_as_int8(True, 64), saturates_as_int8(False, 127)
    (True, False, False)
    """
    return a_signed and 2 * 255 * max_code > _PAIR_LIMIT


def qdq_module(module: nn.Module) -> nn.Module:
    """A copy of ``module`` whose folded quantized layers export as QDQ convolutions (same outputs in torch).

    Examples
    --------
    >>> from geoseg.nn.modelfile import load_nn_model
    >>> exported = qdq_module(load_nn_model("roads.w8a8.npz").module)  # doctest: +SKIP
    """
    copied = copy.deepcopy(module).eval()
    if isinstance(copied, FoldedQConv2d):
        return _QDQConv(copied)
    for name, layer in list(copied.named_modules()):
        if isinstance(layer, FoldedQConv2d):
            set_module(copied, name, _QDQConv(layer))
    return copied


def integer_conv_indices(graph: Any) -> list[int]:
    """Positions in ``graph.node`` (an ``onnx.GraphProto``) of the convolutions whose weights are dequantized integers."""
    producers = {out: node for node in graph.node for out in node.output}
    return [
        i for i, node in enumerate(graph.node)
        if node.op_type == "Conv" and len(node.input) > 1 and node.input[1] in producers and producers[node.input[1]].op_type == "DequantizeLinear"
    ]  # fmt: skip


#: Operators that a per-tensor quantizer after them may move before: it gives the same values
#: (a ReLU only in front of an unsigned quantizer whose zero point is 0: its clamp is the ReLU).
_TRANSPARENT = {"Identity", "Relu", "Concat", "Expand", "MaxPool"}


def requantize_outputs(graph: Any) -> int:
    """Quantize convolution outputs that the network quantizes anyway before every use (in place).

    ``graph`` is an ``onnx.GraphProto`` written from :func:`qdq_module`. When every path from a
    QDQ convolution's output passes only through :data:`_TRANSPARENT` operators (identity,
    ReLU, concatenation, broadcast, max pooling) and ends in a ``QuantizeLinear``, and all those
    quantizers share one scale and zero point, that quantization is added right after the
    convolution (``Conv → QuantizeLinear → DequantizeLinear``). No value changes (the later
    quantizers find values already on their grid) and a runtime can run the convolution with an
    integer output. Returns the number of convolutions requantized.
    """
    from onnx import helper, numpy_helper

    constants = {n.output[0]: numpy_helper.to_array(n.attribute[0].t) for n in graph.node if n.op_type == "Constant" and n.attribute}
    constants.update({t.name: numpy_helper.to_array(t) for t in graph.initializer})
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    outputs = {o.name for o in graph.output}

    def final_quantizers(name: str, quantizers: list[Any]) -> bool:
        """Collect the quantizers at the ends of every path from ``name``; False if a path ends elsewhere."""
        uses = consumers.get(name, [])
        if not uses or name in outputs:
            return False
        for use in uses:
            if use.op_type == "QuantizeLinear" and len(use.input) == 3 and use.input[0] == name:
                quantizers.append(use)
            elif use.op_type not in _TRANSPARENT or (use.input[0] != name and use.op_type != "Concat"):
                return False
            elif use.op_type == "Relu":
                quantizers.append(use)  # marks a ReLU on the way
                if not final_quantizers(use.output[0], quantizers):
                    return False
            elif not final_quantizers(use.output[0], quantizers):
                return False
        return True

    def shared_quantizer(quantizers: list[Any]) -> tuple[str, str] | None:
        keys = sorted({(q.input[1], q.input[2]) for q in quantizers if q.op_type == "QuantizeLinear"})
        values = [(constants[s], constants[z]) for s, z in keys if s in constants and z in constants]
        if not values or len(values) < len(keys) or any(s.size != 1 for s, _ in values):
            return None
        scale, zero = values[0]
        if any(z.dtype != zero.dtype or s.item() != scale.item() or z.item() != zero.item() for s, z in values):
            return None
        if any(q.op_type == "Relu" for q in quantizers) and (zero.dtype != np.uint8 or zero.item() != 0):
            return None
        return keys[0]

    added = 0
    new_nodes: dict[int, list[Any]] = {}
    for index in integer_conv_indices(graph):
        node = graph.node[index]
        out = node.output[0]
        quantizers: list[Any] = []
        found = shared_quantizer(quantizers) if final_quantizers(out, quantizers) else None
        if found is None:
            continue
        q_name, dq_name = f"{out}_requantized", f"{out}_dequantized"
        new_nodes[index] = [
            helper.make_node("QuantizeLinear", [out, *found], [q_name], name=f"{node.name}_requantize"),
            helper.make_node("DequantizeLinear", [q_name, *found], [dq_name], name=f"{node.name}_dequantize"),
        ]
        for use in consumers[out]:
            for i, name in enumerate(use.input):
                if name == out:
                    use.input[i] = dq_name
        added += 1
    if added:  # constants first (a new quantizer uses the scale of a later layer), then the nodes in order
        nodes = [n for n in graph.node if n.op_type == "Constant"]
        for index, node in enumerate(graph.node):
            if node.op_type != "Constant":
                nodes.append(node)
            nodes.extend(new_nodes.get(index, []))
        del graph.node[:]
        graph.node.extend(nodes)
    return added
