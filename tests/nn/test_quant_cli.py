"""geoseg quantize / geoseg model info end to end on the tiny model: files, sizes, budgets, pipeline."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import geoseg
from geoseg.cli.main import cli
from geoseg.modelfile import save_model
from geoseg.nn.modelfile import load_nn_model
from geoseg.nn.quant.bitops import total_bitops
from geoseg.nn.quant.bpnas import search_bits
from geoseg.nn.quant.gdrq import layer_plan, load_quant_config, quantize_finetune, uniform_bits
from geoseg.nn.quant.packing import unpack_codes
from geoseg.nn.quant.qat import FoldedQConv2d, conv_bn_pairs, fold_layer, quantized_layers
from geoseg.nn.quant.qmodelfile import save_quantized
from tests.nn.conftest import SAMPLE, scene_b

QUICK = ["threads=1", "iterations=2", "batch_size=2", "crop_px=64", "calibration_batches=1", "search.iterations=6"]
DATA = ["--images", str(SAMPLE / "scene_b.tif"), "--masks", str(SAMPLE / "scene_b_mask.tif")]


def _set(values: list[str]) -> list[str]:
    return [f"--set={v}" for v in values]


@pytest.fixture(scope="module")
def quantized(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    """W8A8, W4A4 and W2A2 GDRQ files of the tiny model (no fine-tuning: calibration only)."""
    folder = tmp_path_factory.mktemp("q")
    model = load_nn_model(tiny_model)
    cfg = load_quant_config(None, [*QUICK, "iterations=0"])
    macs, ends = layer_plan(model, 256)
    out = {}
    for b in (8, 4, 2):
        q = quantize_finetune(model, [scene_b()], uniform_bits(macs, ends, b, b, 8), cfg, macs=macs, progress=False)
        out[b] = save_quantized(folder / f"w{b}.npz", q)
    return out


def test_packed_files_are_smaller_by_the_bits(tiny_model: Path, quantized: dict[int, Path]) -> None:
    fp32 = tiny_model.stat().st_size
    sizes = {b: p.stat().st_size / fp32 for b, p in quantized.items()}
    assert sizes[2] < sizes[4] < sizes[8] < 0.3
    assert 1 / 12 < sizes[4] < 1 / 6  # ~1/8 of the float file, plus scales and BN
    assert sizes[2] < 1 / 10


def test_loaded_weights_round_trip_bit_exactly(tiny_model: Path) -> None:
    model = load_nn_model(tiny_model)
    cfg = load_quant_config(None, [*QUICK, "iterations=0"])
    macs, ends = layer_plan(model, 256)
    q = quantize_finetune(model, [scene_b()], uniform_bits(macs, ends, 4, 4, 8), cfg, macs=macs, progress=False)
    path = save_quantized(Path(str(tiny_model) + ".w4.npz"), q)
    loaded = load_nn_model(path)
    pairs = conv_bn_pairs(q.model.module)
    for name, conv in quantized_layers(q.model.module).items():
        bn = pairs.get(name)
        expected = fold_layer(conv, q.model.module.get_submodule(bn) if bn else None)
        got = loaded.module.get_submodule(name)
        assert isinstance(got, FoldedQConv2d)
        assert torch.equal(got.weight, expected.weight), name
        assert torch.equal(got.mult, expected.mult) and torch.equal(got.shift, expected.shift), name
    arrays = np.load(path)
    meta = json.loads(arrays["__geoseg_header__"].tobytes())["metadata"]["quantization"]["layers"]
    spec = meta["encoder.stages.0.0.conv1.0"]
    raw = arrays["qcodes"][spec["codes_offset"] : spec["codes_offset"] + spec["codes_bytes"]]
    assert spec["w_bits"] == 4 and raw.size == int(np.prod(spec["shape"])) // 2  # two codes per byte
    assert unpack_codes(raw, 4, int(np.prod(spec["shape"]))).max() <= 14


def test_whole_network_folding_matches_fake_quant(tiny_model: Path) -> None:
    model = load_nn_model(tiny_model)
    cfg = load_quant_config(None, [*QUICK, "iterations=0"])
    macs, ends = layer_plan(model, 256)
    q = quantize_finetune(model, [scene_b()], uniform_bits(macs, ends, 4, 4, 8), cfg, macs=macs, progress=False)
    path = save_quantized(Path(str(tiny_model) + ".w4b.npz"), q)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ref = q.model.module.eval()(x)["seg"].softmax(1)[:, 1]
        got = load_nn_model(path).module(x)["seg"].softmax(1)[:, 1]
    # identical up to the biases, held on the accumulator's grid (half a step off at most: 1e-3 in
    # probability at W4A4), and where round-off flips an activation code
    assert float((ref - got).abs().median()) < 4e-3 and float(((ref - got).abs() > 0.05).float().mean()) < 0.01


@pytest.mark.parametrize("seed", [0, 1])
def test_searched_configurations_never_exceed_the_budget(tiny_model: Path, seed: int) -> None:
    model = load_nn_model(tiny_model)
    cfg = load_quant_config(None, [*QUICK, f"seed={seed}", "search.lr_arch=0.3"])
    macs, ends = layer_plan(model, cfg.bitops_tile_px)
    cost = {b: total_bitops(macs, {n: (v.w_bits, v.a_bits) for n, v in uniform_bits(macs, ends, b, b, 8).items()}) for b in (2, 4, 8)}
    for budget in (1.05 * cost[2], 0.5 * (cost[2] + cost[4]), float(cost[4]), 0.5 * (cost[4] + cost[8])):
        found = search_bits(model, [scene_b()], budget, cfg, progress=False)
        assert found.bitops <= budget
        assert max(found.expected_bitops) < budget  # the search never left the domain
        assert found.bitops == total_bitops(macs, {n: (b.w_bits, b.a_bits) for n, b in found.bits.items()})


def test_cli_quantize_runs_in_the_deep_pipeline_and_model_info(tiny_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "w4.npz"
    res = CliRunner().invoke(cli, ["quantize", str(tiny_model), "--w-bits", "4", "--a-bits", "4", *DATA, "-o", str(out), "--no-progress", *_set(QUICK)])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(cli, ["run", "deep_road_centerlines", str(SAMPLE / "scene_a.tif"), "-o", str(tmp_path / "run"),
                                   "--set", f"model={out}", "--set", "nn_classify.threads=1", "--progress", "none"])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert (tmp_path / "run" / "scene_a.shp").is_file()
    prob = geoseg.run("deep_road_centerlines", SAMPLE / "scene_a.tif", {"model": str(out), "nn_classify.threads": 1}).layers["probability"]
    assert prob.shape == (512, 512) and 0.0 <= prob.min() and prob.max() <= 1.0

    res = CliRunner().invoke(cli, ["model", "info", str(out), "--json"])
    assert res.exit_code == 0, res.output
    info = json.loads(res.output)
    assert info["kind"] == "nn-quantized" and info["file_bytes"] == out.stat().st_size and info["tile_px"] == 512
    layers = {r["name"]: r for r in info["layers"]}
    assert layers["encoder.stem.0"]["w_bits"] == 8 and layers["encoder.stages.0.0.conv1.0"]["a_bits"] == 4
    stem = layers["encoder.stem.0"]
    assert stem["macs"] == 256 * 256 * 8 * 3 * 9 and stem["bitops"] == stem["macs"] * 64
    assert info["totals"]["bitops"] == sum(r["bitops"] for r in info["layers"])
    res = CliRunner().invoke(cli, ["model", "info", str(tiny_model)])
    assert res.exit_code == 0 and "kind nn" in res.output and " 32  32 " in res.output


def test_cli_search_respects_the_budget(tiny_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "mp.npz"
    res = CliRunner().invoke(cli, ["quantize", str(tiny_model), "--search", "--budget-bitops", "12G", *DATA, "-o", str(out), "--no-progress", *_set(QUICK)])
    assert res.exit_code == 0, res.output
    info = json.loads(CliRunner().invoke(cli, ["model", "info", str(out), "--json"]).output)
    assert info["search"]["budget_bitops"] == 12e9 and info["totals"]["bitops"] <= 12e9 and info["search"]["feasible"]
    res = CliRunner().invoke(cli, ["quantize", str(tiny_model), "--search", "--budget-bitops", "1M", *DATA, "-o", str(out), *_set(QUICK)])
    assert res.exit_code != 0 and "infeasible" in res.output
    res = CliRunner().invoke(cli, ["quantize", str(tiny_model), *DATA, "-o", str(out)])
    assert res.exit_code != 0 and "--w-bits" in res.output


def test_model_info_of_other_kinds(tmp_path: Path) -> None:
    path = save_model(tmp_path / "other.npz", {"atoms": np.zeros((4, 3), np.float32)},
                      {"kind": "mjcr", "architecture": {"cells": [[1, 2], [3]]}, "hyper": {"width": 12}, "lam": 0.1})  # fmt: skip
    res = CliRunner().invoke(cli, ["model", "info", str(path), "--json"])
    assert res.exit_code == 0, res.output
    info = json.loads(res.output)
    assert info["kind"] == "mjcr" and info["metadata"]["architecture"] == {"cells": [[1, 2], [3]]}
    assert info["metadata"]["hyper"] == {"width": 12} and info["arrays"] == {"count": 1, "bytes": 48}
    text = CliRunner().invoke(cli, ["model", "info", str(path)]).output
    assert "kind mjcr" in text and "architecture: {'cells'" in text and "lam=0.1" in text
    res = CliRunner().invoke(cli, ["model", "info", str(tmp_path / "missing.npz")])
    assert res.exit_code != 0


def test_cli_quantize_checks_the_budget_before_reading_the_scenes(tiny_model: Path, tmp_path: Path) -> None:
    """A budget that is no number was refused only after every scene was read."""
    res = CliRunner().invoke(cli, ["quantize", str(tiny_model), "--search", "--budget-bitops", "lots", "--images", str(tmp_path / "missing.tif"),
                                   "--masks", str(tmp_path / "missing_mask.tif"), "-o", str(tmp_path / "q.npz")])  # fmt: skip
    assert res.exit_code != 0 and "lots" in res.output and "missing" not in res.output, res.output
