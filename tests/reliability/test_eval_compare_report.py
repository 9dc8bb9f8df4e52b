"""Evaluation, map comparison and reports as a user meets them: no data, empty networks, copies, options.

Each test reproduces a defect found by touring ``geoseg eval``, ``compare`` and ``report``
(docs/RELIABILITY.md) and fails on the code before its fix.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from rasterio.features import rasterize

from geoseg.errors import ConfigError, InputMismatchError, OutputWriteError
from geoseg.evaluate import evaluate_files
from geoseg.map_update import compare_files
from tests.cli.test_cli_basics import GEOSEG
from tests.conftest import SAMPLE_DATA


def _centerline_rasters(tmp_path: Path) -> tuple[Path, Path]:
    """Scene A's truth burnt into two 1-px centerline rasters; the second has no data east of column 300."""
    with rasterio.open(SAMPLE_DATA / "scene_a_mask.tif") as src:
        profile, shape, transform = src.profile, src.shape, src.transform
    lines = rasterize(gpd.read_file(SAMPLE_DATA / "scene_a_centerlines.geojson").geometry, out_shape=shape, transform=transform).astype(np.uint8)
    profile.update(driver="GTiff", dtype="uint8", count=1, nodata=None)
    pred, truth = tmp_path / "pred.tif", tmp_path / "truth.tif"
    with rasterio.open(pred, "w", **profile) as dst:
        dst.write(lines, 1)
    lines[:, 300:] = 255
    profile.update(nodata=255)
    with rasterio.open(truth, "w", **profile) as dst:
        dst.write(lines, 1)
    return pred, truth


@pytest.mark.parametrize("buffer_m", [None, 1.0])  # pixel matching on one grid, line matching in metres
def test_pixels_without_data_in_one_raster_are_scored_in_neither(tmp_path: Path, buffer_m: float | None) -> None:
    pred, truth = _centerline_rasters(tmp_path)
    whole = evaluate_files(pred, pred).truth_length_m
    for a, b in ((pred, truth), (truth, pred)):
        result = evaluate_files(a, b, buffer_m=buffer_m)
        assert (result.completeness, result.correctness) == (pytest.approx(1.0), pytest.approx(1.0)), (a.name, result.mode)
        assert result.pred_length_m == pytest.approx(result.truth_length_m, rel=0.02)
        assert 0.3 * whole < result.truth_length_m < 0.9 * whole  # the western part only


def test_compare_reads_a_map_given_as_a_gdal_virtual_path(tmp_path: Path) -> None:
    import zipfile

    archive = tmp_path / "map.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(SAMPLE_DATA / "scene_b_centerlines.geojson", "roads.geojson")
    summary = compare_files(SAMPLE_DATA / "scene_b_centerlines.geojson", f"/vsizip/{archive}/roads.geojson", tmp_path / "out")
    assert summary.totals["missing"]["length_m"] == 0 and summary.totals["matched"]["length_m"] > 250


def test_compare_takes_an_empty_network_and_reports_every_map_road_missing(tmp_path: Path) -> None:
    empty = tmp_path / "empty.geojson"
    gpd.GeoDataFrame(geometry=gpd.GeoSeries([], crs=32633)).to_file(empty)
    summary = compare_files(empty, SAMPLE_DATA / "scene_a_centerlines.geojson", tmp_path / "out", image=SAMPLE_DATA / "scene_a.tif")
    assert summary.totals["new"]["length_m"] == 0 and summary.totals["missing"]["length_m"] == pytest.approx(450, abs=10)
    with pytest.raises(InputMismatchError, match=r"empty.geojson: the network has no lines; give --image"):
        compare_files(empty, SAMPLE_DATA / "scene_a_centerlines.geojson", tmp_path / "out2")


def test_compare_refuses_unwritable_outputs_before_comparing_and_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("")
    truth = SAMPLE_DATA / "scene_a_centerlines.geojson"
    res = subprocess.run([*GEOSEG, "compare", str(truth), str(truth), "-o", str(tmp_path / "notes.txt" / "changes")], capture_output=True, text=True)
    assert res.returncode == 1 and res.stderr.strip().splitlines() == [
        f"geoseg: error: -o {tmp_path / 'notes.txt' / 'changes'}: cannot create the output folder ({tmp_path / 'notes.txt'} is a file, not a folder)"
    ]
    (tmp_path / "out" / "scene_a_centerlines_missing.shp").mkdir(parents=True)
    with pytest.raises(OutputWriteError, match="scene_a_centerlines_missing.shp: a folder is in the way of this output"):
        compare_files(truth, truth, tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["scene_a_centerlines_missing.shp"]  # nothing written


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["eval", "{truth}", "{truth}", "--buffer-m", "0"], "Invalid value for '--buffer-m': 0.0 is not in the range x>0"),
        (["report", ".", "--buffer-m", "0"], "Invalid value for '--buffer-m': 0.0 is not in the range x>0"),
        (["train", "mjcr", "--images", "a.tif", "--masks", "a_mask.tif", "--atoms", "0", "-o", "m.npz"], "'--atoms': 0 is not in the range x>=1"),
        (["search", "arch", "--images", "a.tif", "--masks", "a_mask.tif", "--target-ms", "inf", "-o", "g.npz"], "inf is not in the range 0<x<inf"),
        (["search", "arch", "--images", "a.tif", "--masks", "a_mask.tif", "--target-ms", "nan", "-o", "g.npz"], "give a positive, finite --target-ms"),
    ],
)
def test_settings_that_cannot_work_are_usage_errors(tmp_path: Path, args: list[str], message: str) -> None:
    """A zero buffer scored a network against itself as 0; 0 atoms wrote a model that finds nothing; a search for inf ms ran to its end."""
    res = subprocess.run([*GEOSEG, *(a.format(truth=SAMPLE_DATA / "scene_b_centerlines.geojson") for a in args)], capture_output=True, text=True, cwd=tmp_path)
    assert res.returncode == 2 and message in res.stderr, res.stderr
    assert list(tmp_path.iterdir()) == []


def test_info_on_a_vector_file_says_so() -> None:
    res = subprocess.run([*GEOSEG, "info", str(SAMPLE_DATA / "scene_b_centerlines.geojson")], capture_output=True, text=True)
    assert res.returncode == 1
    assert "scene_b_centerlines.geojson: a vector file (GeoJSON FeatureCollection without STAC assets), not a raster scene" in res.stderr


def test_compare_takes_the_gsd_of_an_image_without_georeferencing(tmp_path: Path) -> None:
    """Lengths and tolerance of a PNG scene were fixed at 0.3 m per pixel, and the note named an option compare lacks."""
    import shapely

    lines = gpd.GeoDataFrame(geometry=[shapely.LineString([(10, 128), (246, 128)]), shapely.LineString([(128, 10), (128, 246)])])
    lines.to_file(tmp_path / "net.shp")
    default = compare_files(tmp_path / "net.shp", tmp_path / "net.shp", tmp_path / "a", image=SAMPLE_DATA / "tile_c.png")
    given = compare_files(tmp_path / "net.shp", tmp_path / "net.shp", tmp_path / "b", image=SAMPLE_DATA / "tile_c.png", assume_gsd_m=0.5)
    assert default.totals["matched"]["length_m"] == pytest.approx(472 * 0.3, rel=0.01)
    assert given.totals["matched"]["length_m"] == pytest.approx(472 * 0.5, rel=0.01)
    assert any("a GSD of 0.3 m is assumed (set it with --gsd-m)" in n for n in default.notes)
    assert any("a GSD of 0.5 m is assumed" in n and "--gsd-m" not in n for n in given.notes)


def test_compare_names_its_own_layer_option_for_a_map_of_several_layers(tmp_path: Path) -> None:
    import shapely

    truth = gpd.read_file(SAMPLE_DATA / "scene_a_centerlines.geojson")
    truth.to_file(tmp_path / "multi.gpkg", layer="roads")
    gpd.GeoDataFrame(geometry=[shapely.Point(truth.total_bounds[:2])], crs=truth.crs).to_file(tmp_path / "multi.gpkg", layer="pts")
    with pytest.raises(ConfigError, match=r"several layers \(roads, pts\); choose one with --map-layer NAME \(geoseg compare\)"):
        compare_files(SAMPLE_DATA / "scene_a_centerlines.geojson", tmp_path / "multi.gpkg", tmp_path / "out")
    assert compare_files(SAMPLE_DATA / "scene_a_centerlines.geojson", tmp_path / "multi.gpkg", tmp_path / "out", map_layer="roads").totals["missing"]["length_m"] == 0


def test_info_on_a_png_says_how_to_give_its_gsd_once() -> None:
    res = subprocess.run([*GEOSEG, "info", str(SAMPLE_DATA / "tile_c.png")], capture_output=True, text=True)
    assert res.returncode == 0 and "assume_gsd_m)" not in res.stderr  # the hint named no option of info
    assert "(assumed: not georeferenced; give it with --set assume_gsd_m=VALUE in runs, --gsd-m in eval, compare and train)" in res.stdout
