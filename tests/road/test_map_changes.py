"""compare_lines and link_changes on hand-made networks whose answers are known exactly."""

from __future__ import annotations

import numpy as np
import pytest
from shapely.geometry import LineString

from geoseg.errors import ConfigError
from geoseg.road.map_changes import compare_lines, line_parts, link_changes
from geoseg.road.network import lines_to_graph


def _lengths(stretches) -> list[float]:
    return sorted(round(float(v), 6) for v in stretches.lengths)


def test_a_road_offset_within_the_tolerance_is_matched_with_its_exact_offset() -> None:
    extracted = [LineString([(0, 0), (200, 0)])]
    road_map = [LineString([(0, 3), (200, 3)])]
    result = compare_lines(extracted, road_map, tolerance_px=5, extracted_confidence=[0.8])
    assert _lengths(result.matched) == [200.0]
    assert result.matched.offset_mean_px[0] == pytest.approx(3.0) and result.matched.offset_max_px[0] == pytest.approx(3.0)
    assert result.matched.confidence[0] == pytest.approx(0.8)
    assert len(result.new) == 0 and len(result.missing) == 0


def test_a_road_beyond_the_tolerance_is_both_new_and_missing() -> None:
    result = compare_lines([LineString([(0, 0), (200, 0)])], [LineString([(0, 6), (200, 6)])], tolerance_px=5)
    assert _lengths(result.new) == [200.0] and _lengths(result.missing) == [200.0] and len(result.matched) == 0


def test_partial_overlap_is_cut_where_the_roads_part() -> None:
    # the map road goes on 120 units beyond the extracted one; the extracted one begins 50 before the map's
    extracted = [LineString([(-50, 0), (300, 0)])]
    road_map = [LineString([(0, 1), (420, 1)])]
    result = compare_lines(extracted, road_map, tolerance_px=4, min_length_px=10)
    # the map's buffer reaches 4 units beyond its end: the new stretch ends there (sqrt(4^2 - 1^2) from x=0)
    reach = np.sqrt(4**2 - 1**2)
    assert _lengths(result.new) == [pytest.approx(50 - reach, abs=0.05)]
    assert _lengths(result.missing) == [pytest.approx(420 - 300 - reach, abs=0.05)]
    assert _lengths(result.matched) == [pytest.approx(300 + reach, abs=0.05)]
    assert result.missing.start[0] == pytest.approx(300 + reach, abs=0.05) and result.missing.end[0] == pytest.approx(420)


def test_a_crossing_road_is_not_matched_by_the_road_it_crosses() -> None:
    extracted = [LineString([(0, 0), (200, 0)])]
    road_map = [LineString([(0, 0), (200, 0)]), LineString([(100, -100), (100, 100)])]
    result = compare_lines(extracted, road_map, tolerance_px=5)
    # the crossing map road is missing over its whole length, in one stretch
    assert _lengths(result.missing) == [200.0] and result.missing.source.tolist() == [1]
    assert _lengths(result.matched) == [200.0]


def test_short_differences_are_not_reported_and_short_matches_do_not_split_a_stretch() -> None:
    # an extracted road that stops 6 units short of the map's end: below the shortest stretch (2 x tolerance)
    result = compare_lines([LineString([(0, 0), (194, 0)])], [LineString([(0, 0), (200, 0)])], tolerance_px=5)
    assert len(result.missing) == 0 and len(result.new) == 0
    # a map road running 300 units beside nothing but touching a 4-unit extracted road at 20 degrees
    road_map = [LineString([(0, 50), (300, 50)])]
    touch = LineString([(150, 48.6), (150 + 4 * np.cos(np.radians(20)), 48.6 + 4 * np.sin(np.radians(20)))])
    result = compare_lines([touch], road_map, tolerance_px=5)
    assert _lengths(result.missing) == [300.0] and len(result.matched) == 0


def test_the_angle_setting_decides_whether_roads_run_the_same_way() -> None:
    # a map line zigzagging at 40 degrees across a straight extracted road, never more than 4.2 units from it
    rise = 5 * np.tan(np.radians(40))
    zigzag = [LineString([(5 * i, rise * (i % 2)) for i in range(42)])]
    straight = [LineString([(0, 0), (205, 0)])]
    strict = compare_lines(straight, zigzag, tolerance_px=5, max_angle_deg=30)
    loose = compare_lines(straight, zigzag, tolerance_px=5, max_angle_deg=45)
    assert len(strict.matched) == 0 and _lengths(strict.missing) == [pytest.approx(zigzag[0].length)]
    assert _lengths(loose.matched) == [pytest.approx(zigzag[0].length)] and len(loose.missing) == 0


def test_settings_out_of_range_are_refused() -> None:
    with pytest.raises(ConfigError, match="tolerance must be positive"):
        compare_lines([], [], tolerance_px=0)
    with pytest.raises(ConfigError, match="max_angle_deg"):
        compare_lines([], [], tolerance_px=1, max_angle_deg=0)


def test_empty_sides() -> None:
    nothing = compare_lines([], [LineString([(0, 0), (50, 0)])], tolerance_px=2)
    assert _lengths(nothing.missing) == [50.0] and len(nothing.new) == 0
    nothing = compare_lines([LineString([(0, 0), (50, 0)])], [], tolerance_px=2)
    assert _lengths(nothing.new) == [50.0] and len(nothing.missing) == 0


def test_line_parts_splits_multilines_and_keeps_their_index() -> None:
    from shapely.geometry import MultiLineString, Point

    parts, index = line_parts([LineString([(0, 0), (1, 0)]), MultiLineString([[(0, 1), (1, 1)], [(0, 2), (2, 2)]]), Point(1, 1), None])
    assert [p.length for p in parts] == [1.0, 1.0, 2.0] and index.tolist() == [0, 1, 1]


def _grid_map() -> list[LineString]:
    """A 2 x 1 block street grid, 100 units a block: nodes at x = 0, 100, 200 and y = 0, 100."""
    return [
        LineString([(0, 0), (100, 0), (200, 0)]),
        LineString([(0, 100), (100, 100), (200, 100)]),
        LineString([(0, 0), (0, 100)]),
        LineString([(100, 0), (100, 100)]),
        LineString([(200, 0), (200, 100)]),
    ]


def test_a_road_cut_in_the_image_is_a_broken_link_between_its_junctions() -> None:
    road_map = _grid_map()
    # the image lacks the middle street (100, 0)-(100, 100) and the grid is otherwise there
    extracted = [g for i, g in enumerate(road_map) if i != 3]
    network = lines_to_graph(extracted)
    links = link_changes(network, road_map, tolerance_px=3, radius_px=500)
    assert links.kind.tolist() == ["broken_link"]
    assert links.map_length[0] == pytest.approx(100.0)
    # the network still joins the two junctions, round the block: 300 > 2 x 100
    assert links.image_length[0] == pytest.approx(300.0)
    assert links.geometry[0].equals(LineString([(100, 0), (100, 100)])) or links.geometry[0].equals(LineString([(100, 100), (100, 0)]))


def test_a_detour_below_the_ratio_is_not_a_broken_link() -> None:
    road_map = _grid_map()
    network = lines_to_graph([g for i, g in enumerate(road_map) if i != 3])
    assert len(link_changes(network, road_map, tolerance_px=3, radius_px=500, detour_ratio=3.5)) == 0


def test_a_new_road_joining_two_dead_ends_is_one_new_link() -> None:
    # two cul-de-sacs 40 units apart, joined in the map only round a 400-unit loop
    road_map = [
        LineString([(0, 0), (0, 100), (180, 100)]),
        LineString([(0, 0), (400, 0), (400, 100), (220, 100)]),
    ]
    link = LineString([(180, 100), (220, 100)])
    extracted = [*road_map, link]
    network = lines_to_graph(extracted)
    edges = [d["geometry"] for *_, d in network.edges(keys=True, data=True)]
    new = compare_lines(edges, road_map, tolerance_px=3, min_length_px=5).new
    assert _lengths(new) == [40.0]
    links = link_changes(network, road_map, tolerance_px=3, radius_px=200, new_edges=set(new.source.tolist()))
    assert links.kind.tolist() == ["new_link"]
    assert links.image_length[0] == pytest.approx(40.0) and links.map_length[0] == pytest.approx(100 + 180 + 400 + 100 + 180)
    assert links.geometry[0].length == pytest.approx(40.0)


def test_no_new_link_without_new_road() -> None:
    road_map = _grid_map()
    network = lines_to_graph(road_map)
    assert len(link_changes(network, road_map, tolerance_px=3, radius_px=500)) == 0


def test_closed_lines_match_themselves() -> None:
    ring = LineString([(0, 0), (100, 0), (100, 100), (0, 100), (0, 0)])
    result = compare_lines([ring], [ring], tolerance_px=5)
    assert _lengths(result.matched) == [400.0] and len(result.new) == 0 and len(result.missing) == 0
    # a ring half seen: the other half is missing, in one stretch across the ring's seam at (0, 50); where
    # the ring turns away from the seen half's ends it runs across it, not along (a few units at a corner)
    half = LineString([(0, 0), (100, 0), (100, 100)])
    ring = LineString([(0, 50), (0, 0), (100, 0), (100, 100), (0, 100), (0, 50)])
    result = compare_lines([half], [ring], tolerance_px=5)
    assert len(result.missing) == 1 and result.missing.lengths[0] == pytest.approx(200, abs=4)
    assert len(result.matched) == 1 and result.matched.lengths[0] == pytest.approx(200, abs=4)


def test_chained_lines_are_one_road() -> None:
    from geoseg.road.map_changes import chain_lines

    ways = [LineString([(10 * i, 0), (10 * (i + 1), 0)]) for i in range(10)]
    chains, index = chain_lines(ways)
    assert [c.length for c in chains] == [100.0] and index.tolist() == [0]
    # at a junction of three ways, chains stop
    star = [LineString([(0, 0), (10, 0)]), LineString([(10, 0), (20, 0)]), LineString([(10, 0), (10, 10)])]
    chains, _ = chain_lines(star)
    assert sorted(c.length for c in chains) == [10.0, 10.0, 10.0]
