"""Quantizers, packing, BN folding, BitOPs, barrier and Prob-1 of geoseg.nn.quant (no training)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from geoseg.errors import ConfigError, ModelFileError
from geoseg.nn.quant.bitops import conv_macs, expected_bitops, total_bitops
from geoseg.nn.quant.bpnas import barrier_penalty, initial_logits, parse_bitops, prob1_regularizer, repair
from geoseg.nn.quant.gdrq import load_quant_config
from geoseg.nn.quant.packing import pack_codes, packed_size, unpack_codes
from geoseg.nn.quant.qat import LayerBits, QConv2d, fold_layer
from geoseg.nn.quant.quantizers import fake_quant_signed, fake_quant_unsigned, group_clips, group_ids, signed_levels


def test_ste_passes_gradient_inside_the_clip_and_zero_outside() -> None:
    x = torch.tensor([-3.0, -0.9, -0.2, 0.0, 0.3, 0.95, 2.5], requires_grad=True)
    fake_quant_signed(x, 1.0, 4).sum().backward()
    assert x.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0]
    x = torch.tensor([-1.0, 0.2, 0.7, 5.0], requires_grad=True)
    fake_quant_unsigned(x, 1.0, 2).sum().backward()
    assert x.grad.tolist() == [0.0, 1.0, 1.0, 0.0]


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_quantize_dequantize_error_bound(bits: int) -> None:
    x = torch.linspace(-2, 2, 1001)
    clip = 1.5
    q = fake_quant_signed(x, clip, bits)
    step = clip / signed_levels(bits)
    inside = x.abs() <= clip
    assert float((q - x)[inside].abs().max()) <= step / 2 + 1e-6
    assert float(q.abs().max()) <= clip + 1e-6
    u = fake_quant_unsigned(x, clip, bits)
    assert float((u - x)[(x >= 0) & (x <= clip)].abs().max()) <= clip / (2**bits - 1) / 2 + 1e-6
    assert len(torch.unique(u)) <= 2**bits


def test_scale_clip_is_k_times_mean_abs_per_group() -> None:
    torch.manual_seed(0)
    w = torch.randn(8, 3, 3, 3) * torch.linspace(0.1, 2.0, 8).view(-1, 1, 1, 1)
    ids = group_ids(w, 4)
    assert sorted(torch.bincount(ids).tolist()) == [2, 2, 2, 2]
    mags = w.abs().reshape(8, -1).mean(1)
    assert float(mags[ids == 0].max()) <= float(mags[ids == 3].min())  # groups follow magnitude rank
    clips = group_clips(w, ids, k=2.5)
    for g in range(4):
        assert float(clips[g]) == pytest.approx(2.5 * float(w[ids == g].abs().mean()), rel=1e-6)
    single = group_clips(w, torch.zeros(8, dtype=torch.int64), k=3.0)
    assert float(single[0]) == pytest.approx(3.0 * float(w.abs().mean()), rel=1e-6)
    assert float(group_clips(w, torch.zeros(8, dtype=torch.int64), 1.0, minmax=True)[0]) == pytest.approx(float(w.abs().max()))


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_quantized_weights_lie_on_2_to_the_b_levels_per_group(bits: int) -> None:
    torch.manual_seed(1)
    conv = nn.Conv2d(4, 16, 3)
    q = QConv2d(conv, LayerBits(bits, bits), groups_q=4)
    ids, clips = q.weight_clips(bits)
    wq = q.quant_weight(bits).detach()
    for g in range(4):
        vals = wq[ids == g]
        step = float(clips[g]) / signed_levels(bits)
        codes = vals / step
        assert torch.allclose(codes, codes.round(), atol=1e-4)
        assert len(torch.unique(codes.round())) <= 2**bits
        assert float(codes.abs().max()) <= signed_levels(bits) + 1e-4


def _random_bn(c: int) -> nn.BatchNorm2d:
    bn = nn.BatchNorm2d(c)
    with torch.no_grad():
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.normal_()
        bn.bias.normal_()
    return bn.eval()


@pytest.mark.parametrize(("bits", "signed_input"), [(8, False), (4, True), (2, False)])
def test_bn_folding_matches_the_unfolded_layer(bits: int, signed_input: bool) -> None:
    torch.manual_seed(2)
    q = QConv2d(nn.Conv2d(6, 10, 3, padding=1, bias=True), LayerBits(bits, bits), groups_q=3)
    x = torch.randn(2, 6, 12, 12)
    x = x if signed_input else torch.relu(x)
    q.train()
    q.quantize = False
    q(x)  # calibrate the activation statistics
    q.quantize = True
    q.eval()
    bn = _random_bn(10)
    with torch.no_grad():
        ref = bn(q(x))
        layer = fold_layer(q, bn)
        folded = layer(x)
    assert q.act_signed == signed_input
    # equal but for the bias, rounded to a whole number of accumulator steps |m_c| (as int32 in ONNX)
    half_step = (layer.mult.abs() / 2).view(1, -1, 1, 1)
    assert torch.all((folded - ref).abs() <= half_step + 1e-4)
    codes = layer.shift / layer.mult.abs()
    torch.testing.assert_close(codes, codes.round(), rtol=0, atol=1e-3)
    assert not torch.equal(codes, torch.zeros_like(codes))
    assert torch.equal(layer.weight, layer.weight.round())  # integer weight codes


@pytest.mark.parametrize("bits", [1, 2, 4, 8])
@pytest.mark.parametrize("n", [0, 1, 3, 7, 1001])
def test_pack_unpack_round_trip(bits: int, n: int) -> None:
    codes = np.random.default_rng(n).integers(0, 2**bits, n)
    packed = pack_codes(codes, bits)
    assert packed.dtype == np.uint8 and packed.size == packed_size(n, bits) == math.ceil(n * bits / 8)
    np.testing.assert_array_equal(unpack_codes(packed, bits, n), codes)


def test_pack_refuses_bad_codes_and_short_input() -> None:
    with pytest.raises(ValueError, match="codes must lie"):
        pack_codes(np.array([0, 4]), 2)
    with pytest.raises(ModelFileError):
        unpack_codes(np.zeros(1, np.uint8), 4, 5)


def test_macs_and_expected_bitops_of_a_two_layer_net() -> None:
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 2, 1))
    macs = conv_macs(net, 3, 32)
    assert macs == {"0": 32 * 32 * 4 * 3 * 9, "2": 32 * 32 * 2 * 4}
    pw = torch.tensor([[0.5, 0.5, 0.0], [0.0, 0.0, 1.0]])
    pa = torch.tensor([[1.0, 0.0, 0.0], [0.2, 0.3, 0.5]])
    cands = torch.tensor([2.0, 4.0, 8.0])
    m = torch.tensor([float(v) for v in macs.values()])
    hand = 110592 * (0.5 * 2 + 0.5 * 4) * 2 + 8192 * 8 * (0.2 * 2 + 0.3 * 4 + 0.5 * 8)
    assert float(expected_bitops(m, pw, pa, cands, fixed=7.0)) == pytest.approx(hand + 7.0)
    assert total_bitops(macs, {"0": (4, 2)}) == 110592 * 8 + 8192 * 32 * 32


def test_barrier_is_flat_inside_unbounded_at_the_edge_and_differentiable() -> None:
    budget = 1e9
    values, grads = [], []
    for r in (0.01, 0.5, 0.9, 1 - 1e-3, 1 - 1e-6, 1 - 1e-9):
        e = torch.tensor(r * budget, dtype=torch.float64, requires_grad=True)
        v = barrier_penalty(e, budget, mu=0.1)
        v.backward()
        values.append(float(v.detach()))
        grads.append(float(e.grad))
    assert values[0] < 1e-5  # ~0 well inside
    assert all(a < b for a, b in zip(values, values[1:])) and all(a < b for a, b in zip(grads, grads[1:]))
    assert values[-1] > 1.0 and grads[-1] * budget > 1e6  # steep wall at the budget
    beyond = torch.tensor(1.01 * budget, dtype=torch.float64, requires_grad=True)
    v = barrier_penalty(beyond, budget, mu=0.1)
    v.backward()
    assert math.isfinite(float(v.detach())) and float(v.detach()) > values[-1] and math.isfinite(float(beyond.grad))
    # shifted: exactly 0 (value and slope) below start * B, still unbounded at the edge
    for r, zero in ((0.3, True), (0.8, True), (0.9, False), (1 - 1e-9, False)):
        e = torch.tensor(r * budget, dtype=torch.float64, requires_grad=True)
        v = barrier_penalty(e, budget, mu=0.1, start=0.8)
        v.backward()
        assert (float(v.detach()) == 0.0 and float(e.grad) == 0.0) if zero else float(v.detach()) > 0.0
    assert float(barrier_penalty(torch.tensor((1 - 1e-9) * budget, dtype=torch.float64), budget, 0.1, 0.8)) > 1.0


def test_prob1_regularizer() -> None:
    one_hot = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    assert float(prob1_regularizer(one_hot)) == 0.0
    soft = torch.tensor([[0.1, 0.8, 0.1], [1 / 3, 1 / 3, 1 / 3]])
    assert float(prob1_regularizer(soft)) == pytest.approx(0.2 + 2 / 3)
    logits = torch.zeros(2, 3, requires_grad=True)
    prob1_regularizer(torch.softmax(logits + torch.tensor([0.0, 0.1, 0.0]), dim=1)).backward()
    assert logits.grad is not None and float(logits.grad.abs().sum()) > 0


def test_search_start_is_feasible_and_infeasible_budgets_are_refused() -> None:
    macs = torch.tensor([1e6, 4e6, 2e6], dtype=torch.float64)
    cands = torch.tensor([2.0, 4.0, 8.0])
    for budget in (3e7, 5e7, 1e8, 1e9):
        logits = initial_logits(macs, cands, budget, fixed=1e6, start_fraction=0.9)
        p = torch.softmax(logits.double(), dim=1)
        lowest = 1e6 + 4 * 7e6
        start = float(expected_bitops(macs, p, p, cands, 1e6))
        assert start < budget and start <= max(0.9 * budget, 0.5 * (lowest + budget)) * (1 + 1e-6)
    with pytest.raises(ConfigError, match="infeasible"):
        initial_logits(macs, cands, 2.8e7, fixed=1e6, start_fraction=0.9)


def test_repair_lowers_the_costliest_layers_until_within_budget() -> None:
    macs = {"a": 100, "b": 1000, "c": 10}
    bits = {"a": LayerBits(8, 8), "b": LayerBits(8, 4), "c": LayerBits(8, 8)}
    fixed, steps = repair(bits, macs, budget=20000, candidates=[2, 4, 8], frozen=["c"])
    assert total_bitops(macs, {n: (b.w_bits, b.a_bits) for n, b in fixed.items()}) <= 20000
    assert steps[0].startswith("b: weights") and fixed["c"].w_bits == 8


def test_budget_parsing_and_config_errors() -> None:
    assert parse_bitops("2.5G") == 2.5e9 and parse_bitops("2.5e9") == 2.5e9 and parse_bitops("300M") == 3e8
    with pytest.raises(ConfigError):
        parse_bitops("lots")
    with pytest.raises(ConfigError, match="field 'itrations': unknown field"):
        load_quant_config(None, ["itrations=3"])
    with pytest.raises(ConfigError, match="candidates"):
        load_quant_config(None, ["search.candidates=[3, 4]"])
