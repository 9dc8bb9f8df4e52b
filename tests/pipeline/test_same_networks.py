"""Speed work changes no result (issue 18): the sample scenes' networks equal those of the code before it.

``reference_networks/`` holds the networks of the sample scenes computed by commit c98c4ae
(before the caching, block-grid, strip and tile-size changes of issue 18), for the mask chain
on the scene's own pixels and on pixel blocks, and for the MJCR chain. Regenerate them only
when an algorithm changes on purpose, and say so in the commit.
"""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import pytest

from geoseg.pipeline import load_pipeline
from tests.conftest import SAMPLE_DATA

REFERENCE = Path(__file__).parent / "reference_networks"
CASES = {
    "mask_native": ("mask_to_centerlines", ["work_road_px=null"], "_mask"),
    "mask_blocks": ("mask_to_centerlines", ["work_road_px=8"], "_mask"),
    "mjcr": ("road_centerlines", [f"model={SAMPLE_DATA / 'roads.mjcr.npz'}"], ""),
}
#: One pixel of the sample scenes (0.3 m).
PIXEL_M = 0.3


def _quality(ours: gpd.GeoSeries, theirs: gpd.GeoSeries, buffer_m: float) -> float:
    """Buffer quality of two line sets: matched length over the length of both less the matched."""
    a, b = ours.union_all(), theirs.union_all()
    matched_a = a.intersection(b.buffer(buffer_m)).length
    matched_b = b.intersection(a.buffer(buffer_m)).length
    return min(matched_a, matched_b) / (a.length + b.length - min(matched_a, matched_b))


@pytest.mark.parametrize("scene", ["scene_a", "scene_b"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_the_network_is_the_one_before_the_speed_work(case, scene):
    pipeline, settings, suffix = CASES[case]
    lines = load_pipeline(pipeline, settings).run(SAMPLE_DATA / f"{scene}{suffix}.tif").lines
    reference = gpd.read_file(REFERENCE / f"{case}_{scene}{suffix}.geojson")
    assert len(lines) == len(reference)
    assert lines.length.sum() == pytest.approx(reference.length.sum(), rel=1e-4)
    assert _quality(lines.geometry, reference.geometry, PIXEL_M) >= 0.99
    assert lines.union_all().hausdorff_distance(reference.union_all()) < 0.05  # metres
