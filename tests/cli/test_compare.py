"""``geoseg compare``: change layers with exact lengths on hand-made files, errors that name the file, real SpaceNet/OSM pairs."""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely
from affine import Affine
from click.testing import CliRunner
from shapely.geometry import LineString, box

from geoseg.cli.main import cli

X0, Y0 = 500000.0, 5001000.0  # EPSG:32633


def _lines(path: Path, lines: list[list[tuple[float, float]]], crs: str | None = "EPSG:32633", **columns: list) -> Path:
    geoms = [LineString([(X0 + x, Y0 - y) for x, y in line]) for line in lines]
    gpd.GeoDataFrame(columns, geometry=geoms, crs=crs).to_file(path)
    return path


def _run(*args: str) -> tuple[int, str]:
    res = CliRunner().invoke(cli, ["compare", *args])
    return res.exit_code, res.output


def test_changes_have_exact_lengths_and_offsets(tmp_path: Path) -> None:
    # network: a road along y=100 from x=0 to 400 and a new side road at x=200 going 150 south
    network = _lines(tmp_path / "net.gpkg", [[(0, 100), (200, 100), (400, 100)], [(200, 100), (200, 250)]], confidence=[0.9, 0.6])
    # map (in WGS84): the same road 2 m off, and a road the image does not show along y=400
    road_map = tmp_path / "map.geojson"
    gpd.read_file(_lines(tmp_path / "utm_map.gpkg", [[(0, 102), (400, 102)], [(0, 400), (400, 400)]])).to_crs(4326).to_file(road_map)
    footprint = tmp_path / "scene.gpkg"
    gpd.GeoDataFrame(geometry=[box(X0, Y0 - 500, X0 + 400, Y0)], crs="EPSG:32633").to_file(footprint)
    code, out = _run(str(network), str(road_map), "-o", str(tmp_path / "out"), "--footprint", str(footprint), "--tolerance-m", "5", "--json")
    assert code == 0, out
    report = json.loads(out[out.index("{") :])
    # lengths are on the ground (geodesic): 1/0.9996 of UTM lengths on the zone's central meridian
    scale = 1 / 0.9996
    assert report["totals"]["new"]["length_m"] == pytest.approx(150 * scale, abs=0.01)  # the side road: crossing is not running along
    assert report["totals"]["missing"]["length_m"] == pytest.approx(400 * scale, abs=0.01)
    assert report["totals"]["matched"]["length_m"] == pytest.approx(400 * scale, abs=0.01)
    assert report["totals"]["matched"]["offset_m"] == pytest.approx(2.0, abs=0.002)
    assert any("reprojected from EPSG:4326" in n for n in report["notes"])
    new = gpd.read_file(tmp_path / "out" / "net_new.shp")
    assert new.crs == "EPSG:32633" and new["confidence"].tolist() == [pytest.approx(0.6)]
    missing = gpd.read_file(tmp_path / "out" / "net_missing.shp")
    assert missing["map_id"].tolist() == [1]


def test_the_footprint_limits_the_missing_roads(tmp_path: Path) -> None:
    network = _lines(tmp_path / "net.shp", [[(0, 100), (400, 100)]])
    road_map = _lines(tmp_path / "map.shp", [[(0, 100), (400, 100)], [(0, 300), (400, 300)]])
    footprint = tmp_path / "half.gpkg"
    gpd.GeoDataFrame(geometry=[box(X0, Y0 - 500, X0 + 150, Y0)], crs="EPSG:32633").to_file(footprint)
    code, out = _run(str(network), str(road_map), "-o", str(tmp_path / "out"), "--footprint", str(footprint), "--json")
    assert code == 0, out
    assert json.loads(out[out.index("{") :])["totals"]["missing"]["length_m"] == pytest.approx(150 / 0.9996, abs=0.01)
    # without a footprint: the network's bounding box, a line with no height: the road at y=300 is outside it
    code, out = _run(str(network), str(road_map), "-o", str(tmp_path / "out2"), "--json")
    assert code == 0 and json.loads(out[out.index("{") :])["totals"]["missing"]["count"] == 0
    assert "compared within the network's bounding box" in out


def test_the_image_footprint_is_its_valid_data_area(tmp_path: Path) -> None:
    data = np.full((1, 200, 400), 100, np.uint8)
    data[:, :, 200:] = 0  # the right half has no data
    image = tmp_path / "scene.tif"
    with rasterio.open(image, "w", driver="GTiff", width=400, height=200, count=1, dtype="uint8", crs="EPSG:32633",
                       transform=Affine(1, 0, X0, 0, -1, Y0), nodata=0) as dst:  # fmt: skip
        dst.write(data)
    network = _lines(tmp_path / "net.shp", [[(0, 50), (400, 50)]])
    road_map = _lines(tmp_path / "map.shp", [[(0, 50), (400, 50)], [(0, 150), (400, 150)]])
    code, out = _run(str(network), str(road_map), "-o", str(tmp_path / "out"), "--image", str(image), "--json", "--format", "gpkg")
    assert code == 0, out
    assert json.loads(out[out.index("{") :])["totals"]["missing"]["length_m"] == pytest.approx(200, abs=0.5)
    assert (tmp_path / "out" / "net_changes.gpkg").exists()


def test_bad_input_names_the_file_and_writes_nothing(tmp_path: Path) -> None:
    network = _lines(tmp_path / "net.shp", [[(0, 100), (400, 100)]])
    out = tmp_path / "out"
    code, text = _run(str(network), str(tmp_path / "nope.gpkg"), "-o", str(out))
    assert code != 0 and "nope.gpkg: no such file" in text
    points = tmp_path / "points.gpkg"
    gpd.GeoDataFrame(geometry=gpd.points_from_xy([X0], [Y0]), crs="EPSG:32633").to_file(points)
    code, text = _run(str(network), str(points), "-o", str(out))
    assert code != 0 and "points.gpkg: a road map needs lines" in text
    no_crs = _lines(tmp_path / "nocrs.shp", [[(0, 0), (10, 0)]], crs=None)
    code, text = _run(str(no_crs), str(network), "-o", str(out))
    assert code != 0 and "nocrs.shp: the network has no CRS" in text
    not_degrees = _lines(tmp_path / "utm.geojson", [[(0, 0), (10, 0)]], crs=None)  # GeoJSON is read as EPSG:4326
    code, text = _run(str(network), str(not_degrees), "-o", str(out))
    assert code != 0 and "utm.geojson: coordinates x 500000..500010" in text and "are not longitudes and latitudes" in text
    assert not out.exists() or not any(out.iterdir())


def test_help_teaches_the_classes() -> None:
    res = CliRunner().invoke(cli, ["compare", "--help"])
    assert res.exit_code == 0 and "missing  map road within the footprint" in res.output and "update_map" in res.output


@pytest.mark.parametrize("chip", ["img99", "img991"])
def test_osm_against_spacenet_truth(tmp_path: Path, shared_data: Path, chip: str) -> None:
    """Real data: the OSM roads of a SpaceNet Vegas chip as the map, SpaceNet's truth as the network."""
    folder = shared_data / "spacenet_vegas" / "vector_only"
    truth, osm = folder / "spacenetroads" / f"AOI_2_Vegas_{chip}.geojson", folder / "osm" / f"AOI_2_Vegas_{chip}.geojson"
    code, out = _run(str(truth), str(osm), "-o", str(tmp_path), "--json")
    assert code == 0, out
    totals = json.loads(out[out.index("{") :])["totals"]
    # the figures of docs/MAP_UPDATING.md (km), and what they add up to
    expected = {"img99": (0.000, 0.000, 0.308), "img991": (0.184, 0.299, 2.430)}[chip]
    assert (totals["new"]["length_m"] / 1000, totals["missing"]["length_m"] / 1000, totals["matched"]["length_m"] / 1000) == pytest.approx(expected, abs=0.005)
    utm = gpd.read_file(truth).estimate_utm_crs()
    osm_lines = gpd.read_file(osm).to_crs(utm)
    inside = shapely.intersection(shapely.union_all(osm_lines.geometry.to_numpy()), box(*gpd.read_file(truth).to_crs(utm).total_bounds)).length
    assert totals["matched"]["length_m"] + totals["missing"]["length_m"] <= inside * 1.001 + 1
    assert 0 < totals["matched"]["offset_m"] < 3.0
