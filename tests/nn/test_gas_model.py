"""GAS result as an ordinary nn model file: round trip, CLI end to end, deep pipeline."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from geoseg.cli.main import cli
from geoseg.errors import ConfigError
from geoseg.modelfile import load_model
from geoseg.nn.modelfile import load_nn_model, save_nn_model
from geoseg.nn.models import build_model
from geoseg.nn.search.config import load_search_config
from geoseg.nn.search.run import run_gas
from geoseg.nn.search.space import GASNet
from tests.nn.conftest import SAMPLE, scene_b
from tests.nn.test_gas_search import TINY_SEARCH

SHIPPED = Path(__file__).resolve().parents[2] / "pipelines" / "training" / "road_gas.yaml"


def test_shipped_config_is_valid() -> None:
    cfg = load_search_config(SHIPPED)
    assert cfg.search.gcn and cfg.latency.tile_px == 512 and cfg.latency.target_ms is None
    assert cfg.retrain.epochs * cfg.retrain.iterations_per_epoch == 500  # 500 batches, on the scenes' own grid


def test_build_model_knows_gas() -> None:
    genotype = [["sep_conv_3x3", "zero", "conv_3x3"], ["skip_connect", "dil_conv_3x3", "zero"], ["zero"] * 3]
    net = build_model("gas", in_channels=4, num_classes=2, width=8, strides=[4, 8, 16], nodes=2, genotype=genotype, centerline_head=True)
    assert isinstance(net, GASNet)
    out = net(torch.randn(2, 4, 64, 48))
    assert out["seg"].shape == (2, 2, 64, 48) and out["centerline"].shape == (2, 1, 64, 48)
    with pytest.raises(ConfigError, match="unknown operation"):
        build_model("gas", genotype=[["conv_9x9"] * 3] * 5)


def test_derived_architecture_round_trips_through_the_model_file(tmp_path: Path) -> None:
    cfg = load_search_config(None, [*TINY_SEARCH, "latency.target_ms=2"])
    path = tmp_path / "g.nn.npz"
    result = run_gas(cfg, [scene_b()], output=path)
    loaded = load_nn_model(path)
    assert loaded.architecture == "gas" and loaded.hyper["genotype"] == result.search.genotype
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        np.testing.assert_array_equal(loaded.module(x)["seg"].numpy(), result.model.module(x)["seg"].numpy())
    search = loaded.training["search"]
    assert search["target_ms"] == 2 and search["measured_ms"] > 0 and len(search["genotype"]) == 5
    assert search["lut"]["tile_px"] == 128 and search["predicted_ms"] == pytest.approx(result.lut.predict(result.search.genotype))
    # the metadata is plain JSON: the genotype is readable there
    _, meta = load_model(path, kind="nn")
    assert "cell 0 (stride 4): 0->1 " in json.dumps(meta["training"]["search"]["genotype"])
    save_nn_model(tmp_path / "again.npz", loaded)
    assert load_nn_model(tmp_path / "again.npz").hyper == loaded.hyper


def test_cli_search_end_to_end_then_deep_pipeline(tmp_path: Path) -> None:
    out = tmp_path / "roads.gas.npz"
    args = ["search", "arch", "road_gas", "--images", str(SAMPLE / "scene_b.tif"), "--masks", str(SAMPLE / "scene_b_mask.tif"),
            "--target-ms", "3", "-o", str(out), "--no-progress", *[f"--set={s}" for s in TINY_SEARCH]]  # fmt: skip
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    model = load_nn_model(out)
    assert model.architecture == "gas" and model.training["search"]["gcn"] is True
    res = CliRunner().invoke(cli, ["run", "deep_road_centerlines", str(SAMPLE / "scene_a.tif"), "-o", str(tmp_path / "run"),
                                   "--set", f"model={out}", "--set", "nn_classify.threads=1", "--progress", "none"])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert (tmp_path / "run" / "scene_a.shp").is_file()


def test_cli_errors_exit_non_zero(tmp_path: Path) -> None:
    base = ["search", "arch", "road_gas", "--images", str(SAMPLE / "scene_b.tif"), "--masks", str(SAMPLE / "scene_b_mask.tif"), "-o", str(tmp_path / "m.npz")]
    res = CliRunner().invoke(cli, base)
    assert res.exit_code != 0 and "--target-ms" in res.output
    res = CliRunner().invoke(cli, [*base, "--target-ms", "5", "--set", "search.gnc=false"])
    assert res.exit_code != 0 and "field 'search.gnc': unknown field" in res.output
    assert not (tmp_path / "m.npz").exists()


def test_a_given_latency_table_must_fit_the_config() -> None:
    from geoseg.nn.search.latency import LatencyTable

    cfg = load_search_config(None, [*TINY_SEARCH, "latency.target_ms=2"])
    ops = {name: 0.1 for name in cfg.space.ops}
    wrong_tile = LatencyTable(list(cfg.space.ops), [dict(ops) for _ in cfg.space.strides], 1.0, 512, "cpu", 1)
    with pytest.raises(ConfigError, match="latency table does not fit"):
        run_gas(cfg, [scene_b()], lut=wrong_tile)
