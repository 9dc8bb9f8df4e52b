"""GAS search: measured latency table, expected-latency term, GCN communication, latency target."""

from __future__ import annotations

import math
import statistics

import numpy as np
import pytest
import torch

from geoseg.errors import ConfigError
from geoseg.nn.arrays import band_statistics, normalise
from geoseg.nn.data import TrainingScene
from geoseg.nn.search import latency as latency_mod
from geoseg.nn.search.config import load_search_config
from geoseg.nn.search.gcn import chain_adjacency
from geoseg.nn.search.latency import build_lut, expected_latency, latency_penalty, time_module
from geoseg.nn.search.search import ArchParams, derive_genotype, search_architecture
from geoseg.nn.search.space import GASNet, SuperNet
from tests.nn.conftest import scene_b

#: A seconds-long search on sample scene B.
TINY_SEARCH = [
    "threads=1", "space.width=8", "search.epochs=1", "search.iterations_per_epoch=12", "search.warmup_iterations=2",
    "search.crop_px=64", "search.batch_size=2", "search.arch_lr=0.1", "latency.tile_px=128", "latency.repeats=5", "latency.warmup=2", "latency.rounds=1",
    "retrain.epochs=1", "retrain.iterations_per_epoch=2", "data.crop_px=64", "data.batch_size=2",
    "inference.tile_px=128", "inference.overlap_px=32",
]  # fmt: skip


def _scenes() -> list[TrainingScene]:
    s = scene_b()
    mean, std = band_statistics([s.image[:3]])
    return [TrainingScene(normalise(s.image[:3], mean, std), s.labels)]


def test_lut_is_measured_by_timing(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[int, ...]] = []
    real = latency_mod.time_module

    def spy(module, x, repeats=7, warmup=2):  # noqa: ANN001, ANN202
        calls.append(tuple(x.shape))
        return real(module, x, repeats, warmup)

    monkeypatch.setattr(latency_mod, "time_module", spy)
    net = SuperNet(width=8)
    lut = build_lut(net, 128, repeats=5, warmup=2, rounds=2)
    # one timing per (cell, op) at the cell's input shape for a 128 px tile, plus the fixed parts
    assert len(calls) == 2 * (len(net.strides) * len(net.op_names) + 1)  # two interleaved rounds
    assert calls[0] == (1, 8, 32, 32) and calls[-1] == (1, 3, 128, 128)
    table = lut.tensor()
    assert table.shape == (5, 6) and torch.isfinite(table).all() and (table >= 0).all()
    assert math.isfinite(lut.fixed_ms) and lut.fixed_ms > 0
    for cell in lut.ops:
        assert cell["sep_conv_3x3"] > 0 and cell["conv_3x3"] > 0
    # zero ~ nothing and skip costs no more than the biggest kernels (compared over all cells)
    assert sum(c["zero"] for c in lut.ops) <= sum(c["conv_3x3"] for c in lut.ops)
    assert sum(c["skip_connect"] for c in lut.ops) <= sum(c["sep_conv_5x5"] for c in lut.ops)


def test_time_module_times_real_work() -> None:
    x = torch.randn(1, 8, 64, 64)
    slow = torch.nn.Sequential(*[torch.nn.Conv2d(8, 8, 7, padding=3) for _ in range(6)])
    assert time_module(slow, x, repeats=3, warmup=1) > time_module(torch.nn.Identity(), x, repeats=3, warmup=1)


def test_expected_latency_is_differentiable_and_matches_hand_computation() -> None:
    torch.manual_seed(0)
    arch = ArchParams(3, 3, 4, gcn=False)
    with torch.no_grad():
        arch.alpha.normal_()
    lut = torch.tensor([[0.0, 0.01, 1.5, 2.0], [0.0, 0.02, 0.7, 1.1], [0.0, 0.01, 0.3, 0.6]])
    w = arch.weights()
    got = expected_latency(w, lut, 4.0)
    a = arch.alpha.detach().numpy()
    hand = 4.0
    for c in range(3):
        for e in range(3):
            p = np.exp(a[c, e]) / np.exp(a[c, e]).sum()
            hand += sum(p[k] * float(lut[c, k]) for k in range(4))
    assert float(got.detach()) == pytest.approx(hand, rel=1e-6)
    latency_penalty(got, target_ms=1.0, weight=2.0).backward()
    g = arch.alpha.grad
    assert g is not None and torch.isfinite(g).all() and g.abs().sum() > 0
    # gradient of the expected latency: lowering an expensive op's parameter lowers latency
    assert (g[..., 3] > 0).all() and (g[..., 0] < 0).all()
    # below the target the hinge gives no pressure
    assert float(latency_penalty(got.detach(), target_ms=1e6, weight=2.0)) == 0.0


def test_gcn_passes_information_between_cells() -> None:
    adj = chain_adjacency(4)
    assert torch.allclose(adj, adj.T) and adj[0, 2] == 0 and adj[0, 1] > 0
    for gcn, coupled in ((True, True), (False, False)):
        torch.manual_seed(0)
        arch = ArchParams(4, 3, 5, gcn=gcn)
        with torch.no_grad():
            arch.alpha.normal_()
        arch.weights()[0].pow(2).sum().backward()  # a loss on cell 0's weights only
        g = arch.alpha.grad
        assert g is not None and g[0].abs().sum() > 0
        assert (g[1].abs().sum() > 0) == coupled  # the neighbouring cell learns from it only through the GCN


def _search(overrides: list[str], lut=None):  # noqa: ANN001, ANN202
    cfg = load_search_config(None, [*TINY_SEARCH, *overrides])
    torch.manual_seed(cfg.seed)
    net = SuperNet(3, 2, cfg.space.width, cfg.space.strides, cfg.space.nodes, cfg.space.ops)
    arch = ArchParams(len(cfg.space.strides), len(net.edges), len(cfg.space.ops), cfg.search.gcn)
    lut = lut or build_lut(net, cfg.latency.tile_px, repeats=cfg.latency.repeats, warmup=cfg.latency.warmup)
    return search_architecture(cfg, net, arch, _scenes(), lut), arch, lut


def test_gcn_switch_changes_architecture_updates() -> None:
    on, arch_on, lut = _search(["latency.target_ms=1000", "search.iterations_per_epoch=5"])
    off, arch_off, _ = _search(["latency.target_ms=1000", "search.iterations_per_epoch=5", "search.gcn=false"], lut)
    assert arch_on.gcn is not None and arch_off.gcn is None
    assert not torch.allclose(arch_on.alpha, arch_off.alpha)
    assert not np.allclose(on.weights, off.weights)


def _interleaved_ms(nets: list[torch.nn.Module], tile_px: int, rounds: int = 5) -> list[float]:
    x = torch.randn(1, 3, tile_px, tile_px)
    times: list[list[float]] = [[] for _ in nets]
    for _ in range(rounds):
        for k, net in enumerate(nets):
            times[k].append(time_module(net, x, repeats=3, warmup=1))
    return [statistics.median(t) for t in times]


def test_tighter_target_gives_a_faster_network() -> None:
    # targets far apart: 0.001 ms is unreachable (all pressure), 10 s is never binding
    tight, _, lut = _search(["latency.target_ms=0.001", "latency.weight=5"])
    loose, _, _ = _search(["latency.target_ms=10000"], lut)
    assert tight.predicted_ms < loose.predicted_ms
    assert all(op in ("zero", "skip_connect") for cell in tight.genotype for op in cell)
    # the derived networks measured for real (interleaved medians: load on the machine hits both)
    nets = [GASNet(3, 2, 8, [4, 8, 8, 16, 16], 2, g.genotype) for g in (tight, loose)]
    fast, slow = _interleaved_ms(nets, 256)
    assert fast < slow


def test_derive_takes_the_strongest_operation() -> None:
    w = torch.zeros(2, 3, 3)
    w[0, :, 2] = 1
    w[1, :, 0] = 1
    w[1, 1, 1] = 2
    assert derive_genotype(w, ["zero", "skip_connect", "conv_3x3"]) == [["conv_3x3"] * 3, ["zero", "skip_connect", "zero"]]


def test_config_errors_name_the_field(tmp_path) -> None:  # noqa: ANN001
    cfg = tmp_path / "g.yaml"
    cfg.write_text("search:\n  gnc: false\n")
    with pytest.raises(ConfigError, match=r"g\.yaml: field 'search\.gnc': unknown field"):
        load_search_config(cfg)
    with pytest.raises(ConfigError, match=r"space"):
        load_search_config(None, ["space.strides=[4, 16]"])
    with pytest.raises(ConfigError, match=r"space\.ops"):
        load_search_config(None, ["space.ops=[zero, conv_9x9]"])
    with pytest.raises(ConfigError, match="target_ms"):
        _search([])
