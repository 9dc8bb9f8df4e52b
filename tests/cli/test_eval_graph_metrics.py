"""``geoseg eval``: TOPO, junction and connected-component scores (issue 21), text and JSON.

Hand-made networks in EPSG:32633 whose junctions and components are known: a 200 m road with
two 50 m side roads at x = 50 and x = 150 (two T junctions) as the reference.
"""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import pytest
import shapely
from click.testing import CliRunner

from geoseg.cli.main import cli

X0, Y0 = 500000.0, 5000000.0
ROAD = [(0, 0), (50, 0), (150, 0), (200, 0)]  # vertices where the side roads join it


def _network(path: Path, lines: list[list[tuple[float, float]]]) -> str:
    """A GeoPackage of ``lines`` (metres from (X0, Y0)) in EPSG:32633."""
    geoms = [shapely.LineString([(X0 + x, Y0 + y) for x, y in line]) for line in lines]
    gpd.GeoDataFrame(geometry=geoms, crs="EPSG:32633").to_file(path)
    return str(path)


def _strict_json(text: str) -> dict:
    """Parse ``text``, refusing NaN and Infinity (not JSON)."""

    def refuse(constant: str) -> None:
        raise ValueError(f"{constant} in the JSON output")

    return json.loads(text, parse_constant=refuse)


def _eval(*args: str) -> str:
    res = CliRunner().invoke(cli, ["eval", *args])
    assert res.exit_code == 0, res.output
    return res.output


@pytest.fixture
def truth(tmp_path: Path) -> str:
    """The reference: two T junctions, one component."""
    return _network(tmp_path / "truth.gpkg", [ROAD, [(50, 0), (50, 50)], [(150, 0), (150, 50)]])


def test_a_missing_side_road_and_a_loose_piece(truth: str, tmp_path: Path) -> None:
    # The prediction has the road and the side road at x = 50 (one of the two Ts), and a 30 m
    # piece of road away from the rest (a second component).
    pred = _network(tmp_path / "pred.gpkg", [ROAD, [(50, 0), (50, 50)], [(0, 100), (30, 100)]])
    scores = _strict_json(_eval(pred, truth, "--json"))
    assert {k: scores[k] for k in ("junction_precision", "junction_recall", "truth_junctions", "pred_junctions", "matched_junctions",
                                   "junction_radius_m", "truth_components", "pred_components", "component_ratio")} == {
        "junction_precision": 1.0, "junction_recall": 0.5, "truth_junctions": 2, "pred_junctions": 1, "matched_junctions": 1,
        "junction_radius_m": 10.0, "truth_components": 1, "pred_components": 2, "component_ratio": 2.0}
    assert scores["junction_f1"] == pytest.approx(2 / 3)
    # TOPO: points every 5 m, 61 on the reference (300 m of tree), 51 on the connected part of
    # the prediction, all on the reference; seeds every 20th reference point (4), one of them on
    # the missing side road (no prediction within 5 m): its 61 holes stay empty. The loose
    # piece is reached from no seed.
    assert scores["topo_seeds"] == 4 and scores["topo_precision"] == 1.0
    assert scores["topo_recall"] == pytest.approx(3 * 51 / (4 * 61))
    assert scores["topo_f1"] == pytest.approx(2 * scores["topo_recall"] / (1 + scores["topo_recall"]))
    lines = _eval(pred, truth).splitlines()
    assert "TOPO         P 1.000 R 0.627 F1 0.771 (4 seed(s))" in lines
    assert "junctions    P 1.000 R 0.500 F1 0.667 (1 matched within 10 m; prediction 1, reference 2)" in lines
    assert "components   prediction 2, reference 1, ratio 2.000" in lines


def test_junction_radius(truth: str, tmp_path: Path) -> None:
    # The side road meets the road 8 m from the reference's T at x = 50.
    pred = _network(tmp_path / "pred.gpkg", [[(0, 0), (58, 0), (200, 0)], [(58, 0), (58, 50)]])
    near = _strict_json(_eval(pred, truth, "--json"))
    assert (near["matched_junctions"], near["junction_precision"], near["junction_recall"]) == (1, 1.0, 0.5)
    far = _strict_json(_eval(pred, truth, "--json", "--junction-radius-m", "5"))
    assert (far["matched_junctions"], far["junction_precision"], far["junction_recall"], far["junction_f1"]) == (0, 0.0, 0.0, 0.0)
    assert far["junction_radius_m"] == 5.0
    assert "junctions    P 0.000 R 0.000 F1 0.000 (0 matched within 5 m; prediction 1, reference 2)" in _eval(
        pred, truth, "--junction-radius-m", "5").splitlines()
    assert "--junction-radius-m" in _eval("--help")
    refused = CliRunner().invoke(cli, ["eval", pred, truth, "--junction-radius-m", "0"])
    assert refused.exit_code == 2 and "--junction-radius-m" in refused.output


def test_undefined_junction_scores_are_null_and_n_a(tmp_path: Path) -> None:
    road = _network(tmp_path / "road.gpkg", [ROAD])  # no junction on either side
    scores = _strict_json(_eval(road, road, "--json"))
    assert (scores["junction_precision"], scores["junction_recall"], scores["junction_f1"]) == (None, None, None)
    assert (scores["truth_junctions"], scores["pred_junctions"], scores["component_ratio"], scores["topo_f1"]) == (0, 0, 1.0, 1.0)
    assert "junctions    P n/a R n/a F1 n/a (0 matched within 10 m; prediction 0, reference 0)" in _eval(road, road).splitlines()


def test_an_empty_prediction_has_no_correctness_nor_topo_precision(tmp_path: Path) -> None:
    """Both are undefined (n/a, null) for a prediction without lines; the text showed 'nan' and TOPO 0.000."""
    road = _network(tmp_path / "road.gpkg", [ROAD])
    empty = _network(tmp_path / "empty.gpkg", [])
    scores = _strict_json(_eval(empty, road, "--json"))
    assert (scores["correctness"], scores["topo_precision"], scores["topo_recall"], scores["completeness"]) == (None, None, 0.0, 0.0)
    text = _eval(empty, road).splitlines()
    assert "correctness  n/a" in text and any(line.startswith("TOPO         P n/a R 0.000 F1 0.000") for line in text), text


def test_lines_join_where_they_share_a_vertex_unless_join_ends_is_given(truth: str, tmp_path: Path) -> None:
    # The same T junctions drawn without a vertex on the road where the side roads end: as in
    # SpaceNet's APLS they do not join (0 junctions), unless --join-ends-m joins them.
    unsplit = _network(tmp_path / "unsplit.gpkg", [[(0, 0), (200, 0)], [(50, 0), (50, 50)], [(150, 0), (150, 50)]])
    apart = _strict_json(_eval(unsplit, truth, "--json"))
    assert (apart["pred_junctions"], apart["pred_components"]) == (0, 3)
    joined = _strict_json(_eval(unsplit, truth, "--json", "--join-ends-m", "0.5"))
    assert (joined["pred_junctions"], joined["matched_junctions"], joined["pred_components"]) == (2, 2, 1)
    assert joined["apls"] == pytest.approx(1.0)
