"""What the wheel is made of, checked from the sources (fast; the wheel itself: test_wheel.py)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

import geoseg
from geoseg.cli.main import cli
from geoseg.cli.pipelines import describe_shipped, training_command
from geoseg.errors import ConfigError
from geoseg.shipped import resolve_file, shipped_names, shipped_path, shipped_text

REPO = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))


def test_pyproject_lists_every_package_and_maps_the_pipelines_folder() -> None:
    on_disk = {".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "geoseg").rglob("__init__.py")}
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    assert listed == on_disk | {"geoseg.pipelines", "geoseg.pipelines.training"}
    assert PYPROJECT["tool"]["setuptools"]["package-dir"] == {"geoseg.pipelines": "pipelines"}


def test_version_lives_in_one_place() -> None:
    assert "version" not in PYPROJECT["project"] and PYPROJECT["project"]["dynamic"] == ["version"]
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "geoseg.__version__"}
    assert re.fullmatch(r"\d+\.\d+\.\d+", geoseg.__version__)
    result = CliRunner().invoke(cli, ["--version"])
    assert result.output.strip() == f"geoseg, version {geoseg.__version__}"


def test_shipped_files_are_the_repository_folder() -> None:
    assert shipped_names("pipeline") == sorted(p.stem for p in (REPO / "pipelines").glob("*.yaml"))
    assert shipped_names("training") == sorted(p.stem for p in (REPO / "pipelines" / "training").glob("*.yaml"))
    assert shipped_path("road_centerlines", "pipeline").read_bytes() == (REPO / "pipelines" / "road_centerlines.yaml").read_bytes()
    assert shipped_text("road_gas", "training") == (REPO / "pipelines" / "training" / "road_gas.yaml").read_text(encoding="utf-8")


def test_shipped_names_are_unique_across_kinds() -> None:
    # `geoseg pipelines show NAME` must know which file NAME is.
    assert not set(shipped_names("pipeline")) & set(shipped_names("training"))


def test_a_users_file_wins_and_unknown_names_list_the_shipped_ones(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert resolve_file("road_centerlines", "pipeline") == shipped_path("road_centerlines", "pipeline")
    (tmp_path / "road_centerlines").write_text("schema_version: 1\n")
    assert resolve_file("road_centerlines", "pipeline") == Path("road_centerlines")
    assert resolve_file("configs/mine", "training") == Path("configs/mine")
    with pytest.raises(ConfigError, match=r"road_decoupel: no such training config file, .*road_baseline, road_decouple"):
        resolve_file("road_decoupel", "training")


def _config_model(command: str) -> object:
    from geoseg.nn.config import load_train_config
    from geoseg.nn.search.config import load_search_config
    from geoseg.sequence.train import load_sequence_train_config

    return {"geoseg train nn": load_train_config, "geoseg search arch": load_search_config, "geoseg train sequence": load_sequence_train_config}[command]


@pytest.mark.parametrize("name", shipped_names("training"))
def test_each_training_config_is_valid_for_the_command_it_is_listed_with(name: str) -> None:
    raw = yaml.safe_load(shipped_text(name, "training"))
    command = training_command(raw)
    _config_model(command)(shipped_path(name, "training"))  # raises ConfigError when it does not fit
    assert raw.get("description"), f"{name}: no description for `geoseg pipelines`"


def test_pipelines_lists_every_shipped_file_with_summary_and_parameters() -> None:
    described = {d["name"]: d for d in describe_shipped()}
    assert set(described) == set(shipped_names("pipeline")) | set(shipped_names("training"))
    assert all(d["summary"].endswith(".") and len(d["summary"]) > 20 for d in described.values())
    road = described["road_centerlines"]
    assert road["params"] == {"model": None, "smoothness": 1.0, "sigma_m": None, "max_gap_m": None}
    assert road["required"] == ["model"] and described["mask_to_centerlines"]["required"] == []
    assert described["sequence_objects"]["kind"] == "sequence"
    assert described["road_gas"]["use"].startswith("geoseg search arch road_gas")
    assert described["sequence_ovs"]["use"].startswith("geoseg train sequence sequence_ovs")
    assert described["road_uda"]["settings"]["mode"] == "uda"
    # the summary is the first sentence, not cut at "e.g." or "et al."
    assert described["deep_road_centerlines"]["summary"].endswith("fitting-based connection.")
    assert "Cheng et al. (arXiv 1508.06163)" in described["road_centerlines"]["summary"]


def test_pipelines_command_text_json_and_show(tmp_path: Path) -> None:
    runner = CliRunner()
    listing = runner.invoke(cli, ["pipelines"])
    assert listing.exit_code == 0, listing.output
    for name in shipped_names("pipeline") + shipped_names("training"):
        assert f"\n  {name}" in listing.output
    assert "model (required)" in listing.output and "max_gap_m=auto" in listing.output and "smoothness=1.0" in listing.output
    as_json = runner.invoke(cli, ["pipelines", "--json"])
    assert {d["name"] for d in yaml.safe_load(as_json.output)} == set(shipped_names("pipeline")) | set(shipped_names("training"))
    shown = runner.invoke(cli, ["pipelines", "show", "road_centerlines"])
    assert shown.output == (REPO / "pipelines" / "road_centerlines.yaml").read_text(encoding="utf-8")
    missing = runner.invoke(cli, ["pipelines", "show", "road_centrelines"])
    assert missing.exit_code == 1 and "road_centrelines: no shipped pipeline or training config" in missing.output
