"""Training labels from a road map (geoseg.classifiers.road_map): widths in metres across CRSs,
the ignore band, per-line widths, partial maps; and on SpaceNet Vegas's real centerlines."""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
from affine import Affine
from click.testing import CliRunner, Result
from pydantic import ValidationError
from rasterio.crs import CRS
from shapely.geometry import LineString, box

from geoseg.classifiers.road_map import RoadMapSettings, read_road_map, road_map_labels
from geoseg.cli.main import cli
from geoseg.errors import InputMismatchError
from geoseg.nn.modelfile import load_nn_model
from geoseg.raster import GeoInfo, Raster, read_raster
from tests.conftest import SHARED_DATA

UTM = CRS.from_epsg(32611)
SPACENET = SHARED_DATA / "spacenet_vegas"


def _scene(n: int = 80, gsd: float = 0.5, crs: CRS | None = UTM) -> Raster:
    geo = GeoInfo(n, n, crs, Affine(gsd, 0, 500000, 0, -gsd, 4000000) if crs else Affine.identity(), (gsd, gsd), crs is not None)
    return Raster(np.zeros((3, n, n), np.uint8), geo, np.ones((n, n), bool), "scene.tif")


def _roads(lines: list[LineString], crs: CRS | None = UTM, **fields: list[object]) -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame(fields, geometry=lines, crs=crs)


def _row_profile(labels: np.ndarray, col: int) -> dict[int, int]:
    values, counts = np.unique(labels[:, col], return_counts=True)
    return dict(zip(values.tolist(), counts.tolist()))


def test_width_and_ignore_band_in_metres() -> None:
    scene = _scene()
    road = _roads([LineString([(500000, 3999980), (500040, 3999980)])])  # row 40
    for width, ignore in ((6.0, 1.0), (10.0, 0.0), (4.0, 2.0)):
        labels = road_map_labels(scene, road, "map", RoadMapSettings(width_m=width, ignore_m=ignore))
        profile = _row_profile(labels, 30)
        core_px = max(width - 2 * ignore, 0) / 0.5
        assert profile[1] == max(core_px, 1)  # at least the pixels the line passes through
        assert profile[1] + profile.get(255, 0) == (width + 2 * ignore) / 0.5  # the band reaches `ignore` beyond the edge
        assert profile[0] == 80 - (width + 2 * ignore) / 0.5


def test_a_map_in_another_crs_labels_the_same_pixels() -> None:
    scene = _scene()
    road = _roads([LineString([(500005, 3999990), (500035, 3999970)]), LineString([(500020, 4000000), (500020, 3999960)])])
    settings = RoadMapSettings(width_m=5, ignore_m=1)
    same = road_map_labels(scene, road, "utm", settings)
    wgs84 = road_map_labels(scene, road.to_crs(4326), "wgs84", settings)
    assert (same == 1).sum() > 300
    assert np.mean(same != wgs84) < 0.005  # a few edge pixels at most (the reprojected lines are not exactly straight)


def test_a_scene_in_degrees_is_labelled_in_metres() -> None:
    # a 0.3 m grid in EPSG:4326 (as SpaceNet's): 2.7e-6 degrees per pixel at Vegas's latitude
    lat = 36.2
    dx, dy = 0.3 / (111_320 * np.cos(np.radians(lat))), 0.3 / 110_574
    geo = GeoInfo(200, 200, CRS.from_epsg(4326), Affine(dx, 0, -115.3, 0, -dy, lat), (0.3, 0.3), True)
    scene = Raster(np.zeros((3, 200, 200), np.uint8), geo, np.ones((200, 200), bool), "degrees.tif")
    road = _roads([LineString([(-115.3, lat - 100 * dy), (-115.3 + 200 * dx, lat - 100 * dy)])], crs=CRS.from_epsg(4326))
    labels = road_map_labels(scene, road, "map", RoadMapSettings(width_m=6, ignore_m=0))
    assert _row_profile(labels, 100)[1] == 20  # 6 m at 0.3 m


def test_widths_and_lanes_from_attributes() -> None:
    scene = _scene()
    lines = [LineString([(500000, 3999990), (500040, 3999990)]), LineString([(500000, 3999970), (500040, 3999970)]),
             LineString([(500000, 3999975 + 5), (500000, 3999975 + 5)])]  # fmt: skip
    by_width = road_map_labels(scene, _roads(lines[:2], width=[8.0, None]), "map", RoadMapSettings(width_m=3, width_field="width", ignore_m=0))
    assert _row_profile(by_width[:30], 5)[1] == 16 and _row_profile(by_width[50:], 5)[1] == 6  # 8 m; the default 3 m
    by_lanes = road_map_labels(scene, _roads(lines[:2], lanes=["2", "x"]), "map", RoadMapSettings(width_m=3, lanes_field="lanes", ignore_m=0))
    assert _row_profile(by_lanes[:30], 5)[1] == 14 and _row_profile(by_lanes[50:], 5)[1] == 6  # 2 x 3.5 m; "x" is no number


def test_partial_maps_label_only_their_area() -> None:
    scene = _scene()
    road = _roads([LineString([(500000, 3999980), (500040, 3999980)])])
    near = road_map_labels(scene, road, "map", RoadMapSettings(width_m=4, ignore_m=0, labelled_within_m=5))
    assert _row_profile(near, 10) == {0: 12, 1: 8, 255: 60}  # 5 m either side of the line: 20 rows labelled
    area = gpd.GeoDataFrame(geometry=[box(500000, 3999960, 500020, 4000000)], crs=UTM)  # the left half
    half = road_map_labels(scene, road, "map", RoadMapSettings(width_m=4, ignore_m=0), labelled_area=area)
    assert (half[:, 40:] == 255).all() and (half[:, :40] != 255).all()


def test_errors_name_the_map_and_the_problem(tmp_path: Path) -> None:
    scene = _scene()
    with pytest.raises(InputMismatchError, match=r"map: the map has no CRS but scene\.tif is georeferenced"):
        road_map_labels(scene, _roads([LineString([(0, 0), (1, 1)])], crs=None), "map", RoadMapSettings())
    with pytest.raises(InputMismatchError, match=r"has no georeferencing, so the map cannot be placed"):
        road_map_labels(_scene(crs=None), _roads([LineString([(0, 0), (1, 1)])]), "map", RoadMapSettings())
    points = tmp_path / "points.gpkg"
    gpd.GeoDataFrame(geometry=gpd.points_from_xy([0, 1], [0, 1]), crs=UTM).to_file(points)
    with pytest.raises(InputMismatchError, match=r"points\.gpkg: a road map needs lines .* this file has Point"):
        read_road_map(points)
    lines = tmp_path / "lines.gpkg"
    _roads([LineString([(0, 0), (1, 1)])], lanes=[2]).to_file(lines)
    with pytest.raises(InputMismatchError, match=r"lines\.gpkg: no field 'width' \(fields: lanes\)"):
        read_road_map(lines, RoadMapSettings(width_field="width"))
    with pytest.raises(ValidationError, match="not both"):
        RoadMapSettings(width_field="w", lanes_field="l")


@pytest.mark.skipif(not SPACENET.is_dir(), reason="../shared/data/spacenet_vegas is absent (real SpaceNet data, not redistributed)")
def test_spacenet_centerlines_give_solaris_own_road_mask() -> None:
    """The SpaceNet PAN chip (EPSG:4326, 0.3 m): geoseg's labels from its centerlines agree with the
    mask solaris made from the same lines by buffering them (road 3.3 % of the chip)."""
    scene = read_raster(SPACENET / "images" / "AOI_2_Vegas_PAN_solaris_chip.tif")
    roads = read_road_map(SPACENET / "centerlines" / "AOI_2_Vegas_PAN_solaris_chip.geojson")
    mask = read_raster(SPACENET / "masks" / "AOI_2_Vegas_PAN_solaris_chip_mask.tif").array[0] > 0
    best = 0.0
    for width in (3.0, 4.0, 5.0, 6.0):
        labels = road_map_labels(scene, roads, "solaris", RoadMapSettings(width_m=width, ignore_m=0))
        road = labels == 1
        best = max(best, (road & mask).sum() / (road | mask).sum())
    assert best > 0.85
    labels = road_map_labels(scene, roads, "solaris", RoadMapSettings(width_m=4, ignore_m=1))
    assert ((labels == 1) & ~mask).sum() < 0.02 * (labels == 1).sum()  # the core lies inside solaris's roads
    assert (labels == 255).sum() > 0.3 * mask.sum()


# ---- through the CLI: geoseg train mjcr / nn --roads ----------------------------------------------

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data"
NN_FAST = ["threads=1", "model.width=4", "epochs=1", "iterations_per_epoch=3", "data.batch_size=2", "data.crop_px=64",
           "inference.tile_px=128", "inference.overlap_px=32"]  # fmt: skip


def _cli(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def test_cli_mjcr_from_a_road_map_finds_the_roads(tmp_path: Path) -> None:
    model = tmp_path / "roads.mjcr.npz"
    res = _cli("train", "mjcr", "--images", str(SAMPLE / "scene_b.tif"), "--roads", str(SAMPLE / "scene_b_centerlines.geojson"),
               "--width-field", "width_m", "--atoms", "300", "-o", str(model))  # fmt: skip
    assert res.exit_code == 0, res.output
    out = tmp_path / "out"
    res = _cli("run", "road_centerlines", str(SAMPLE / "scene_a.tif"), "-o", str(out), "--set", f"model={model}", "--workers", "1")
    assert res.exit_code == 0, res.output
    scores = json.loads(_cli("eval", str(out / "scene_a.shp"), str(SAMPLE / "scene_a_centerlines.geojson"), "--json").output)
    assert scores["completeness"] > 0.8 and scores["correctness"] > 0.8  # trained on scene B's map, applied to scene A


def test_cli_nn_from_a_road_map_and_partial_maps_in_ssl(tmp_path: Path) -> None:
    base = ["train", "nn", "--images", str(SAMPLE / "scene_b.tif"), "--roads", str(SAMPLE / "scene_b_centerlines.geojson"), "--no-progress"]
    sets = [f"--set={s}" for s in NN_FAST]
    res = _cli(*base, "--width-field", "width_m", "--val-images", str(SAMPLE / "scene_a.tif"), *sets, "-o", str(tmp_path / "a.npz"))
    assert res.exit_code == 0, res.output
    history = load_nn_model(tmp_path / "a.npz").training["history"]
    assert 0.0 <= history[-1]["val_iou"] <= 1.0  # the validation scene is labelled by the same map (its roads are outside it: background)
    res = _cli(*base, "road_ssl", "--labelled-within-m", "15", *sets, "--set=ssl.rounds=1", "--set=ssl.epochs_per_round=1", "-o", str(tmp_path / "s.npz"))
    assert res.exit_code == 0, res.output
    training = load_nn_model(tmp_path / "s.npz").training
    assert training["unlabeled"] == [str(SAMPLE / "scene_b.tif")]  # the map's unlabelled rest goes to self-training
    assert any("pseudo_iou" in h for h in training["history"])  # checked against the map's labels


def test_cli_road_map_errors(tmp_path: Path) -> None:
    scene, roads = str(SAMPLE / "scene_b.tif"), str(SAMPLE / "scene_b_centerlines.geojson")
    res = _cli("train", "nn", "--images", scene, "--masks", str(SAMPLE / "scene_b_mask.tif"), "--roads", roads, "-o", str(tmp_path / "m.npz"))
    assert res.exit_code == 2 and "not both" in res.output
    res = _cli("train", "mjcr", "--images", scene, "--roads", roads, "--lanes-field", "lanes", "-o", str(tmp_path / "m.npz"))
    assert res.exit_code != 0 and "scene_b_centerlines.geojson: no field 'lanes' (fields: width_m)" in res.output
    res = _cli("train", "mjcr", "--images", scene, "--roads", roads, "--lanes-field", "a", "--width-field", "b", "-o", str(tmp_path / "m.npz"))
    assert res.exit_code == 2 and "not both" in res.output
    assert not (tmp_path / "m.npz").exists()


@pytest.mark.skipif(not SPACENET.is_dir(), reason="../shared/data/spacenet_vegas is absent (real SpaceNet data, not redistributed)")
def test_cli_trains_on_spacenet_img0_from_its_vector_centerlines(tmp_path: Path) -> None:
    """SpaceNet Vegas img0 (EPSG:4326, 0.3 m, 4 bands of which 3 are read) with its road map (lanes in ``lane_number``)."""
    image, lines = SPACENET / "images" / "RGB-PanSharpen_AOI_2_Vegas_img0.tif", SPACENET / "centerlines" / "AOI_2_Vegas_img0.geojson"
    labels = road_map_labels(read_raster(image), read_road_map(lines), "img0", RoadMapSettings(lanes_field="lane_number"))
    assert 0.05 < np.mean(labels == 1) < 0.25 and np.mean(labels == 255) > 0.02  # 4.5 km of 1-2 lane roads on 390 m x 390 m
    res = _cli("train", "nn", "--images", str(image), "--roads", str(lines), "--lanes-field", "lane_number", "--no-progress",
               *[f"--set={s}" for s in NN_FAST], "-o", str(tmp_path / "img0.npz"))  # fmt: skip
    assert res.exit_code == 0, res.output
    model = load_nn_model(tmp_path / "img0.npz")
    assert model.bands == [1, 2, 3] and model.train_gsd_m == pytest.approx(0.27, abs=0.01)  # 0.24 m x 0.30 m pixels at 36° N


@pytest.mark.parametrize("crs", [UTM, None], ids=["georeferenced", "pixels"])
def test_samples_are_drawn_at_a_width_in_metres_with_or_without_georeferencing(tmp_path: Path, crs: CRS | None) -> None:
    """``train mjcr --samples``: a road line is drawn ``line_width_m`` wide on the ground; on a
    scene without georeferencing (samples in pixels) the assumed GSD converts it (was: as pixels)."""
    from geoseg.classifiers.training_data import sample_labels

    scene = _scene(crs=crs)  # 80 px at 0.5 m
    at = (lambda x, y: (500000 + 0.5 * x, 4000000 - 0.5 * y)) if crs else (lambda x, y: (x, y))
    lines = [LineString([at(0, 40.5), at(80, 40.5)]), LineString([at(10.5, 0), at(10.5, 20)])]  # a road along row 40, background along column 10
    path = tmp_path / "samples.geojson"
    _roads(lines, crs, cls=[1, 0]).to_file(path)
    labels = sample_labels(scene, path, "cls", line_width_m=6.0)
    assert _row_profile(labels, 60) == {1: 13, 255: 67}  # 6 m = 12 px, and the row the buffer's edge touches (all_touched)
    assert _row_profile(labels, 10)[0] >= 20


@pytest.mark.parametrize("command", ["mjcr", "nn"])
def test_cli_road_width_m_reaches_the_labels(command: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """``--road-width-m 20`` draws the map's roads 20 m wide (it used to be dropped: 6 m whatever was given)."""
    import geoseg.cli.train as train_cli
    import geoseg.nn.train as nn_train

    class Seen(Exception):
        pass

    def stop(settings: RoadMapSettings) -> None:
        raise Seen(settings.width_m)

    if command == "mjcr":
        monkeypatch.setattr(train_cli, "read_road_map_option", lambda roads, settings, area: stop(settings))
    else:
        monkeypatch.setattr(nn_train, "train", lambda cfg, *a, **k: stop(cfg.data.road_map))
    res = _cli("train", command, "--images", str(SAMPLE / "scene_b.tif"), "--roads", str(SAMPLE / "scene_b_centerlines.geojson"),
               "--road-width-m", "20", "-o", str(tmp_path / "m.npz"))  # fmt: skip
    assert isinstance(res.exception, Seen) and res.exception.args == (20.0,), res.output


def test_a_geojson_map_in_projected_coordinates_without_its_crs_is_refused(tmp_path: Path) -> None:
    """GDAL reads it as EPSG:4326; labelling it crashed the process (a buffer of infinite coordinates)."""
    data = json.loads((SAMPLE / "scene_a_centerlines.geojson").read_text())
    data.pop("crs", None)
    bare = tmp_path / "roads.geojson"
    bare.write_text(json.dumps(data))
    with pytest.raises(InputMismatchError, match=r"roads.geojson: coordinates x 533\d+\.\.533\d+, .* are not longitudes and latitudes of EPSG:4326"):
        read_road_map(bare)


def test_a_labelled_area_off_the_scene_is_blamed_not_the_roads(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from geoseg.classifiers.road_map import RoadMap

    scene = read_raster(SAMPLE / "scene_a.tif")
    west, south, east, north = scene.geo.transform * (0, scene.geo.height) + scene.geo.transform * (scene.geo.width, 0)
    elsewhere, here = tmp_path / "elsewhere.gpkg", tmp_path / "here.gpkg"
    gpd.GeoDataFrame(geometry=[box(west + 5000, south, east + 5000, north)], crs=scene.geo.crs).to_file(elsewhere)
    gpd.GeoDataFrame(geometry=[box(west, south, east, north)], crs=scene.geo.crs).to_crs(4326).to_file(here)
    with caplog.at_level("INFO", logger="geoseg"):
        labels = RoadMap.read(SAMPLE / "scene_a_centerlines.geojson", RoadMapSettings(), elsewhere).labels(scene)
    assert not (labels == 1).any() and "the labelled area " + str(elsewhere) + " leaves none of this scene's roads" in caplog.text
    caplog.clear()
    with caplog.at_level("INFO", logger="geoseg"):
        assert (RoadMap.read(SAMPLE / "scene_a_centerlines.geojson", RoadMapSettings(), here).labels(scene) == 1).any()
    assert f"{here}: reprojected from EPSG:4326" in caplog.text and "scene_a_centerlines.geojson: reprojected" not in caplog.text
