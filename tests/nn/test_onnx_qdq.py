"""Quantized convolutions in ONNX's QDQ form: integer graphs that compute what the folded layers compute (issue 24)."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from torch import nn

from geoseg.nn.quant.onnx_qdq import qdq_module, requantize_outputs
from geoseg.nn.quant.qat import FoldedQConv2d, build_folded

onnx = pytest.importorskip("onnx", reason="ONNX export needs the extra geoseg[onnx]")
ort = pytest.importorskip("onnxruntime", reason="the ONNX backend needs the extra geoseg[onnx]")


def _folded(
    cin: int, cout: int, w_bits: int, a_bits: int, a_clip: float, a_signed: bool, seed: int, negative_bn: bool = False, full_range: bool = False
) -> FoldedQConv2d:
    """A 3×3 folded layer with random integer weights (or float ones at 32 bits) and a batch norm.

    8-bit codes stay within ±63 unless ``full_range``: onnxruntime's AVX2 kernel saturates pairs
    of large products after a ReLU too, where trained networks rarely have them
    (geoseg.nn.quant.onnx_qdq's docstring).
    """
    gen = torch.Generator().manual_seed(seed)
    conv = nn.Conv2d(cin, cout, 3, padding=1)
    n = min((1 << (w_bits - 1)) - 1, 127 if full_range else 63) if w_bits < 32 else 0
    w_int = torch.randint(-n, n + 1, conv.weight.shape, generator=gen).float() if n else torch.randn(conv.weight.shape, generator=gen) * 0.2
    bn = nn.BatchNorm2d(cout).eval()
    with torch.no_grad():
        bn.running_mean.uniform_(-0.5, 0.5, generator=gen)
        bn.running_var.uniform_(0.5, 2.0, generator=gen)
        bn.weight.uniform_(0.5, 1.5, generator=gen)
        if negative_bn:
            bn.weight[::2] *= -1  # negative multipliers: the channel's codes are negated in the file
        bn.bias.uniform_(-0.3, 0.3, generator=gen)
    w_step = torch.full((cout,), 0.05) if n else torch.ones(cout)
    return build_folded(conv, w_int, w_step, conv.bias, bn, a_bits, a_clip, a_signed)


class _Residual(nn.Module):
    """conv1 → ReLU → conv2, plus a residual sum of conv1's activation (a float Add)."""

    def __init__(self, conv1: nn.Module, conv2: nn.Module, residual: bool) -> None:
        super().__init__()
        self.conv1, self.conv2, self.residual = conv1, conv2, residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.conv1(x))
        out: torch.Tensor = self.conv2(h)
        return out + h if self.residual else out


def _export(net: nn.Module, channels: int) -> onnx.ModelProto:
    buffer = io.BytesIO()
    torch.onnx.export(
        qdq_module(net),
        (torch.zeros(1, channels, 16, 16),),
        buffer,
        input_names=["x"],
        output_names=["y"],
        opset_version=17,
        dynamo=False,
        dynamic_axes={"x": {0: "n"}},
    )
    return onnx.load_from_string(buffer.getvalue())


def _run(graph: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(graph.SerializeToString(), options, providers=["CPUExecutionProvider"])
    out: np.ndarray = session.run(None, {"x": x})[0]
    return out


def _ops(graph: onnx.ModelProto) -> list[str]:
    return [n.op_type for n in graph.graph.node]


def _conv_inputs(graph: onnx.ModelProto) -> list[tuple[np.ndarray | None, np.ndarray | None]]:
    """Per convolution: its stored weight and bias tensors when they are dequantized integers (else None)."""
    from onnx import numpy_helper

    arrays = {n.output[0]: numpy_helper.to_array(n.attribute[0].t) for n in graph.graph.node if n.op_type == "Constant"}
    arrays.update({t.name: numpy_helper.to_array(t) for t in graph.graph.initializer})
    producers = {n.output[0]: n for n in graph.graph.node}

    def stored(name: str) -> np.ndarray | None:
        node = producers.get(name)
        return arrays.get(node.input[0]) if node is not None and node.op_type == "DequantizeLinear" else None

    return [(stored(n.input[1]), stored(n.input[2])) for n in graph.graph.node if n.op_type == "Conv"]


@pytest.mark.parametrize(
    ("w_bits", "a_bits", "signed"),
    [(8, 8, False), (8, 8, True), (4, 4, False), (2, 2, True), (32, 8, False), (8, 32, False)],
)
def test_a_qdq_layer_computes_what_the_folded_layer_computes(w_bits: int, a_bits: int, signed: bool) -> None:
    layer = _folded(4, 6, w_bits, a_bits, 1.5, signed, seed=w_bits + a_bits, negative_bn=True)
    x = np.random.default_rng(0).normal(scale=0.8, size=(2, 4, 16, 16)).astype(np.float32)
    expected = layer(torch.from_numpy(x)).detach().numpy()
    graph = _export(layer, 4)
    got = _run(graph, x)
    assert np.abs(got - expected).max() < 1e-4
    assert np.abs(qdq_module(layer)(torch.from_numpy(x)).detach().numpy() - expected).max() == 0  # the torch copy computes as before
    assert ("QuantizeLinear" in _ops(graph)) == (a_bits <= 8)
    [(weight, bias)] = _conv_inputs(graph)
    if w_bits <= 8 and a_bits <= 8:  # integer weight codes and an int32 bias
        assert weight is not None and weight.dtype == np.int8 and bias is not None and bias.dtype == np.int32
        assert np.array_equal(np.abs(weight), np.abs(layer.weight.detach().numpy()))  # negative multipliers negate codes
    else:
        assert weight is None and bias is None


def test_full_range_codes_after_a_signed_input_are_stored_so_that_they_cannot_saturate() -> None:
    layer = _folded(8, 6, 8, 8, 2.5, True, seed=3, full_range=True)
    x = np.random.default_rng(3).normal(scale=1.5, size=(2, 8, 16, 16)).astype(np.float32)
    expected = layer(torch.from_numpy(x)).detach().numpy()
    graph = _export(layer, 8)
    [(weight, _)] = _conv_inputs(graph)
    assert weight is not None and weight.dtype == np.uint8  # zero point 128
    assert np.array_equal(np.abs(weight.astype(int) - 128), np.abs(layer.weight.detach().numpy()))
    assert np.abs(layer.weight.detach().numpy()).max() == 127
    assert np.abs(_run(graph, x) - expected).max() < 1e-4 * np.abs(expected).max()


def test_activations_of_more_than_8_bits_have_no_onnx_integer_type() -> None:
    with pytest.raises(ValueError, match="16-bit activations have no ONNX integer type"):
        qdq_module(_folded(2, 2, 8, 16, 1.0, False, seed=0))


def test_a_convolution_feeding_only_quantized_layers_is_requantized_without_changing_values() -> None:
    net = _Residual(_folded(3, 8, 8, 8, 2.0, True, seed=1), _folded(8, 4, 8, 8, 1.2, False, seed=2), residual=False).eval()
    x = np.random.default_rng(1).normal(size=(1, 3, 16, 16)).astype(np.float32)
    graph = _export(net, 3)
    before = _run(graph, x)
    assert requantize_outputs(graph.graph) == 1  # conv1 (→ ReLU → conv2's uint8 quantizer); conv2 feeds the output
    onnx.checker.check_model(graph)
    conv1 = next(n for n in graph.graph.node if n.op_type == "Conv")
    consumers = [n for n in graph.graph.node if conv1.output[0] in n.input]
    assert [n.op_type for n in consumers] == ["QuantizeLinear"]
    after = _run(graph, x)
    assert np.abs(after - before).max() < 1e-5
    assert np.abs(after - net(torch.from_numpy(x)).detach().numpy()).max() < 1e-4


def test_an_output_that_feeds_a_float_sum_stays_float() -> None:
    net = _Residual(_folded(3, 8, 8, 8, 2.0, True, seed=1), _folded(8, 8, 8, 8, 1.2, False, seed=2), residual=True).eval()
    graph = _export(net, 3)
    assert requantize_outputs(graph.graph) == 0
    x = np.random.default_rng(2).normal(size=(1, 3, 16, 16)).astype(np.float32)
    assert np.abs(_run(graph, x) - net(torch.from_numpy(x)).detach().numpy()).max() < 1e-4
