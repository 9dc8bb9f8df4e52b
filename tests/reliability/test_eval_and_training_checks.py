"""What users really feed `geoseg eval` and the training commands (issue 20): inputs in other
CRSs or other places, pixel-space data, text class fields, unwritable outputs, GSD warnings
that name each command's own option, memory sizes without units, missed latency targets.

Every behaviour runs through a real ``geoseg`` subprocess and asserts the exit code and the
words of the message; the output checks use nonexistent inputs, so a check that came after
reading data would fail with another message.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import warnings
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import rasterio.crs
from affine import Affine
import shapely
from PIL import Image

from geoseg.atomic import check_output_file
from geoseg.cli.train import config_gsd_option
from geoseg.errors import OutputWriteError
from geoseg.modelfile import load_model
from geoseg.pipeline.pipeline import load_pipeline
from tests.cli.test_cli_basics import GEOSEG
from tests.conftest import REPO, SAMPLE_DATA, plus_mask
from tests.nn.test_gas_search import TINY_SEARCH

SCENE_A_TRUTH = SAMPLE_DATA / "scene_a_centerlines.geojson"
SCENE_B_TRUTH = SAMPLE_DATA / "scene_b_centerlines.geojson"


def geoseg(*args: object, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([*GEOSEG, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=300)


def one_error_line(res: subprocess.CompletedProcess) -> str:
    """The single ``geoseg: error:`` line of a failed command (no traceback)."""
    assert res.returncode == 1, (res.stdout, res.stderr)
    assert "Traceback" not in res.stderr
    errors = [line for line in res.stderr.splitlines() if line.startswith("geoseg: error: ")]
    assert len(errors) == 1, res.stderr
    return errors[0]


# ----------------------------------------------------------------------------- geoseg eval
def test_eval_reprojects_a_reference_in_another_crs_and_says_so(tmp_path: Path) -> None:
    truth = tmp_path / "truth_4326.geojson"
    gpd.read_file(SCENE_A_TRUTH).to_crs(4326).to_file(truth)
    text = geoseg("eval", SCENE_A_TRUTH, truth)
    assert text.returncode == 0, text.stderr
    notes = [line for line in text.stdout.splitlines() if "reprojected" in line]
    assert notes == ["note:       the reference was reprojected on the fly from EPSG:4326 to the prediction's CRS EPSG:32633"]
    scores = json.loads(geoseg("eval", SCENE_A_TRUTH, truth, "--json").stdout)
    assert scores["reference_reprojected_from"] == "EPSG:4326" and scores["crs"] == "EPSG:32633"
    assert scores["quality"] == pytest.approx(1.0, abs=1e-6) and scores["truth_length_m"] == pytest.approx(scores["pred_length_m"], rel=1e-6)


@pytest.mark.filterwarnings("ignore:'crs' was not provided:UserWarning")  # writing the reference without CRS
def test_eval_reads_the_network_of_geosegs_geopackage_and_names_what_it_refuses(tmp_path: Path) -> None:
    """geoseg's GeoPackage holds edges and nodes: eval reads the edges without a warning; points, a
    file of several other layers and a reference without CRS are refused, naming the faulty file."""
    truth = gpd.read_file(SCENE_A_TRUTH)
    network = tmp_path / "network.gpkg"
    truth.to_file(network, layer="edges")
    gpd.GeoDataFrame(geometry=truth.geometry.boundary.explode(index_parts=False), crs=truth.crs).to_file(network, layer="nodes")
    res = geoseg("eval", network, SCENE_A_TRUTH, "--json")
    assert res.returncode == 0 and "layer" not in res.stderr, res.stderr
    assert json.loads(res.stdout)["quality"] == pytest.approx(1.0, abs=1e-6)
    nodes = tmp_path / "nodes.shp"
    gpd.read_file(network, layer="nodes").to_file(nodes)
    assert one_error_line(geoseg("eval", nodes, SCENE_A_TRUTH)).endswith(f"{nodes}: expected lines (road centerlines), found Point")
    other = tmp_path / "other.gpkg"
    truth.to_file(other, layer="roads")
    truth.to_file(other, layer="tracks")
    assert one_error_line(geoseg("eval", other, SCENE_A_TRUTH)).endswith(f"{other}: the file has several layers (roads, tracks); give a file of one layer, or geoseg's GeoPackage (lines in layer 'edges')")
    bare = tmp_path / "bare.shp"
    truth.set_crs(None, allow_override=True).to_file(bare)
    assert f"{bare}: has no CRS" in one_error_line(geoseg("eval", SCENE_A_TRUTH, bare))


def test_eval_refuses_a_road_mask_or_an_image_as_a_centerline_raster() -> None:
    """The sample masks sit beside the scenes; given as the reference they scored APLS 0 with exit 0."""
    line = one_error_line(geoseg("eval", SCENE_A_TRUTH, SAMPLE_DATA / "scene_a_mask.tif"))
    assert line.endswith("scene_a_mask.tif: its roads are areas, not lines one or two pixels wide: this looks like a road mask, not a centerline raster; "
                         "trace its centerlines first (geoseg run mask_to_centerlines) and compare those")
    line = one_error_line(geoseg("eval", SCENE_A_TRUTH, SAMPLE_DATA / "scene_a.tif"))
    assert line.endswith("scene_a.tif: 3 bands of uint8 with many grey levels: this looks like an image, not a centerline raster (one band, lines 1-2 pixels wide)")


def test_eval_refuses_inputs_that_do_not_overlap() -> None:
    line = one_error_line(geoseg("eval", SCENE_A_TRUTH, SCENE_B_TRUTH))
    assert str(SCENE_A_TRUTH.relative_to(REPO)) in line and str(SCENE_B_TRUTH.relative_to(REPO)) in line
    assert "EPSG:32633" in line and "EPSG:25832" in line and "do not overlap" in line


def test_eval_compares_a_straight_road_with_its_reference_beside_it(tmp_path: Path) -> None:
    """A road along an axis and its reference 1 m beside it have bounding boxes of zero height
    that do not touch: they are still one place, scored, and 1 km away they are refused."""
    from geoseg.errors import InputMismatchError
    from geoseg.evaluate import evaluate_files

    def write(name: str, y: float) -> Path:
        path = tmp_path / name
        gpd.GeoDataFrame(geometry=[shapely.LineString([(500000, y), (500100, y)])], crs=32633).to_file(path)
        return path

    truth = write("truth.geojson", 4000000.0)
    result = evaluate_files(write("beside.geojson", 4000001.0), truth)
    assert (result.completeness, result.correctness) == (pytest.approx(1.0), pytest.approx(1.0))
    with pytest.raises(InputMismatchError, match="do not overlap"):
        evaluate_files(write("far.geojson", 4001000.0), truth)


def test_eval_refuses_both_tolerances_before_reading_anything(tmp_path: Path) -> None:
    """--slack-px applies to two rasters, --buffer-m to lines: with both, one would be ignored
    in silence; it is refused (the inputs do not exist: nothing was read)."""
    res = geoseg("eval", tmp_path / "pred.shp", tmp_path / "truth.geojson", "--slack-px", 3, "--buffer-m", 2)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.splitlines()[-1] == "Error: give either --slack-px (two rasters on one grid) or --buffer-m (lines in metres), not both"
    from geoseg.errors import ConfigError
    from geoseg.evaluate import evaluate_files

    with pytest.raises(ConfigError, match="not both"):  # the same from Python
        evaluate_files(SCENE_A_TRUTH, SCENE_A_TRUTH, slack_px=3, buffer_m=2)


def test_eval_refuses_a_reference_from_another_continent(shared_data: Path) -> None:
    vegas = sorted((shared_data / "spacenet_vegas").rglob("AOI_2_Vegas_img0.geojson"))
    if not vegas:
        pytest.skip("no AOI_2_Vegas_img0.geojson under spacenet_vegas")
    line = one_error_line(geoseg("eval", SCENE_A_TRUTH, vegas[0]))
    assert "EPSG:32633" in line and "EPSG:4326" in line and "do not overlap" in line and "W 36." in line


def _pixel_lines(path: Path, shift: float = 0.0) -> Path:
    """A plus of two 100-px lines in pixel coordinates (no CRS)."""
    lines = [shapely.LineString([(0, 50 + shift), (100, 50 + shift)]), shapely.LineString([(50 + shift, 0), (50 + shift, 100)])]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "'crs' was not provided": on purpose
        gpd.GeoDataFrame(geometry=lines).to_file(path)
    return path


def test_eval_refuses_pixel_lines_written_as_geojson(tmp_path: Path) -> None:
    pixels = _pixel_lines(tmp_path / "pixels.geojson", 60.0)  # GDAL reads GeoJSON as EPSG:4326: y up to 160 degrees
    line = one_error_line(geoseg("eval", pixels, pixels))
    assert f"{pixels}: coordinates x 0..110, y 0..110 are not longitudes and latitudes of EPSG:4326" in line and ".gpkg" in line


def test_eval_says_the_gsd_it_assumes_for_pixel_data(tmp_path: Path) -> None:
    pred, truth = _pixel_lines(tmp_path / "pred.gpkg", 1.0), _pixel_lines(tmp_path / "truth.gpkg")
    text = geoseg("eval", pred, truth)
    assert text.returncode == 0, text.stderr
    assert "note:       no georeferencing: lengths are pixels x 0.3 m (assumed; set it with --gsd-m)" in text.stdout
    assumed = json.loads(geoseg("eval", pred, truth, "--json").stdout)
    assert assumed["pixel_gsd_m"] == 0.3 and assumed["gsd_assumed"] is True and "--gsd-m" in assumed["notes"][0]
    given = json.loads(geoseg("eval", pred, truth, "--json", "--gsd-m", "0.21").stdout)
    assert given["pixel_gsd_m"] == 0.21 and given["gsd_assumed"] is False and given["notes"] == ["no georeferencing: lengths are pixels x 0.21 m (from --gsd-m)"]
    assert given["truth_length_m"] == pytest.approx(200 * 0.21)


# ----------------------------------------------------------------------------- training inputs
def _samples(path: Path, values: list[object]) -> Path:
    """A road polygon across scene A, a background square and another square, with class ``values``."""
    x0, y0 = 533000.0, 5289846.4
    shapes = [shapely.box(x0 + 70, y0 + 10, x0 + 80, y0 + 140), shapely.box(x0 + 5, y0 + 5, x0 + 30, y0 + 30), shapely.box(x0 + 120, y0 + 5, x0 + 140, y0 + 25)]
    gpd.GeoDataFrame({"cls": values}, geometry=shapes[: len(values)], crs="EPSG:32633").to_file(path)
    return path


def test_train_mjcr_text_classes_need_the_value_options(tmp_path: Path) -> None:
    samples = _samples(tmp_path / "s.gpkg", ["road", "bg"])
    base = ["train", "mjcr", "--image", SAMPLE_DATA / "scene_a.tif", "--samples", samples, "--class-field", "cls", "--atoms", "50"]
    line = one_error_line(geoseg(*base, "-o", tmp_path / "m.npz"))
    assert f"{samples}: field 'cls' holds 'bg', 'road'; it must hold 1 for road and 0 for background" in line
    assert "--road-value" in line and "--background-value" in line
    assert not (tmp_path / "m.npz").exists()
    ok = geoseg(*base, "--road-value", "road", "--background-value", "bg", "-o", tmp_path / "m.npz")
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path / "m.npz").is_file()


def test_train_mjcr_numeric_classes_as_text_and_other_values(tmp_path: Path) -> None:
    samples = _samples(tmp_path / "s.gpkg", ["1", "0", "2"])
    res = geoseg("train", "mjcr", "--image", SAMPLE_DATA / "scene_a.tif", "--samples", samples, "--class-field", "cls", "--atoms", "50", "-o", tmp_path / "m.npz")
    assert res.returncode == 0, res.stderr
    assert f"warning: {samples}: 1 sample(s) whose field 'cls' is neither road (= 1) nor background (= 0) are left unlabelled (values: '2')" in res.stderr


@pytest.mark.parametrize(
    ("bands", "message"),
    [("1,2,5", "bands [1, 2, 5]: band(s) [5] do not exist (the training images have 3 band(s))"), ("0,1,2", "bands [0, 1, 2]: band numbers start at 1")],
)
def test_train_mjcr_refuses_bands_the_scenes_lack(tmp_path: Path, bands: str, message: str) -> None:
    """Band 5 of a 3-band scene failed with an IndexError; band 0 trained on band 3 (a negative index)."""
    res = geoseg("train", "mjcr", "--images", SAMPLE_DATA / "scene_b.tif", "--masks", SAMPLE_DATA / "scene_b_mask.tif", "--bands", bands, "-o", tmp_path / "m.npz")
    assert message in one_error_line(res)
    assert not (tmp_path / "m.npz").exists()


def test_train_mjcr_refuses_an_image_given_as_the_mask(tmp_path: Path) -> None:
    """An RGB scene paired as its own mask trained a model without a word (every non-zero red value a road)."""
    image, mask = tmp_path / "y.tif", tmp_path / "y_mask.tif"
    shutil.copy(SAMPLE_DATA / "scene_a.tif", image)
    shutil.copy(SAMPLE_DATA / "scene_a.tif", mask)
    line = one_error_line(geoseg("train", "mjcr", "--images", image, "--masks", mask, "-o", tmp_path / "m.npz"))
    assert line.endswith(f"{mask}: 3 bands of uint8 with many grey levels: this is not a road mask (one band, values 0/255, 0/1 or a probability in [0, 1]); pair {image} with its road mask")
    assert not (tmp_path / "m.npz").exists()


# ----------------------------------------------------------------------------- outputs checked first
MISSING = "no_such_scene.tif"
OUTPUT_CASES = {
    "train mjcr": ["train", "mjcr", "--images", MISSING, "--masks", MISSING, "-o", "{bad}"],
    "train nn": ["train", "nn", "--images", MISSING, "--masks", MISSING, "-o", "{bad}"],
    "train nn --checkpoint": ["train", "nn", "--images", MISSING, "--masks", MISSING, "-o", "{ok}", "--checkpoint", "{bad}"],
    "train sequence": ["train", "sequence", "-o", "{bad}"],
    "quantize": ["quantize", "no_such_model.npz", "--w-bits", "4", "--images", MISSING, "--masks", MISSING, "-o", "{bad}"],
    "search arch": ["search", "arch", "--images", MISSING, "--masks", MISSING, "--target-ms", "5", "-o", "{bad}"],
}


@pytest.mark.parametrize("case", OUTPUT_CASES)
def test_unwritable_outputs_are_refused_before_any_data_is_read(tmp_path: Path, case: str) -> None:
    bad = tmp_path / "no_folder" / "model.npz"
    args = [a.format(bad=bad, ok=tmp_path / "ok.npz") for a in OUTPUT_CASES[case]]
    line = one_error_line(geoseg(*args, cwd=tmp_path))
    option = "--checkpoint" if "checkpoint" in case else "-o"
    assert line == f"geoseg: error: {option} {bad}: the folder {bad.parent} does not exist; create it first (mkdir -p {bad.parent}) or choose another path"
    assert sorted(p.name for p in tmp_path.iterdir()) == []


SPARE_CASES = {
    "train mjcr -o MASK": (["train", "mjcr", "--images", "a.tif", "--masks", "a_mask.tif", "-o", "a_mask.tif"], "-o a_mask.tif: is one of the inputs (a_mask.tif)"),
    "train nn -o IMAGE": (["train", "nn", "--images", "a.tif", "--masks", "a_mask.tif", "-o", "a.tif"], "-o a.tif: is one of the inputs (a.tif)"),
    "train nn -o = --checkpoint": (["train", "nn", "--images", "a.tif", "--masks", "a_mask.tif", "-o", "m.npz", "--checkpoint", "m.npz"], "--checkpoint m.npz: is the file -o names too"),
    "train sequence -o = --checkpoint": (["train", "sequence", "-o", "m.npz", "--checkpoint", "./m.npz"], "--checkpoint ./m.npz: is the file -o names too"),
    "quantize -o MODEL": (["quantize", "m.npz", "--w-bits", "4", "--images", "a.tif", "--masks", "a_mask.tif", "-o", "m.npz"], "-o m.npz: is one of the inputs (m.npz)"),
    "search arch -o MASK": (["search", "arch", "--images", "a.tif", "--masks", "*_mask.tif", "--target-ms", "5", "-o", "a_mask.tif"], "-o a_mask.tif: is one of the inputs (a_mask.tif)"),
}  # fmt: skip


@pytest.mark.parametrize("case", SPARE_CASES)
def test_an_output_that_is_an_input_or_another_output_is_refused_first(tmp_path: Path, case: str) -> None:
    for name, source in (("a.tif", "scene_a.tif"), ("a_mask.tif", "scene_a_mask.tif"), ("m.npz", "roads.mjcr.npz")):
        shutil.copy(SAMPLE_DATA / source, tmp_path / name)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    args, message = SPARE_CASES[case]
    assert one_error_line(geoseg(*args, cwd=tmp_path)).startswith(f"geoseg: error: {message}")
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_check_output_file_names_each_problem(tmp_path: Path) -> None:
    assert check_output_file(tmp_path / "m.npz", "-o") == tmp_path / "m.npz"
    with pytest.raises(OutputWriteError, match=r"-o .*: is a folder; give a file path \(e.g\. .*roads.npz\)"):
        check_output_file(tmp_path, "-o", example_name="roads.npz")
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputWriteError, match="file is not a folder"):
        check_output_file(tmp_path / "file" / "m.npz", "--checkpoint")
    with pytest.raises(OutputWriteError, match="does not exist"):
        check_output_file(tmp_path / "a" / "b" / "m.npz", "-o")


# ----------------------------------------------------------------------------- GSD warnings
@pytest.fixture
def pixel_tile(tmp_path: Path) -> tuple[Path, Path]:
    """An RGB PNG tile and its road mask, both without georeferencing."""
    mask = plus_mask(96, 16)
    rng = np.random.default_rng(0)
    rgb = np.where(mask[..., None] > 0, 90, 160).astype(np.uint8) + rng.integers(0, 20, (96, 96, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "tile.png")
    Image.fromarray(mask).save(tmp_path / "tile_mask.png")
    return tmp_path / "tile.png", tmp_path / "tile_mask.png"


def _gsd_warnings(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "georeferencing" in line or "GSD" in line]


def test_train_mjcr_gsd_warning_names_gsd_m_and_goes_when_it_is_given(tmp_path: Path, pixel_tile: tuple[Path, Path]) -> None:
    image, mask = pixel_tile
    base = ["train", "mjcr", "--images", image, "--masks", mask, "--atoms", "50", "--scales-m", "1,2"]
    default = geoseg(*base, "-o", tmp_path / "a.npz")
    assert default.returncode == 0, default.stderr
    assert _gsd_warnings(default.stderr) == [f"warning: training data: {image}: no georeferencing; a GSD of 0.3 m is assumed (set it with --gsd-m)"]
    assert "geotransform" not in default.stderr  # rasterio's own warning, about the mask, is not the user's business
    given = geoseg(*base, "--gsd-m", "0.21", "-o", tmp_path / "b.npz")
    assert given.returncode == 0, given.stderr
    assert _gsd_warnings(given.stderr) == []


def test_train_nn_gsd_warning_names_data_gsd_m(tmp_path: Path, pixel_tile: tuple[Path, Path]) -> None:
    image, mask = pixel_tile
    tiny = ["threads=1", "model.width=8", "epochs=1", "iterations_per_epoch=1", "data.batch_size=2", "data.crop_px=64", "inference.tile_px=64", "inference.overlap_px=16"]
    res = geoseg("train", "nn", "--images", image, "--masks", mask, "-o", tmp_path / "m.npz", "--no-progress", *[f"--set={s}" for s in tiny])
    assert res.returncode == 0, res.stderr
    assert _gsd_warnings(res.stderr) == [
        f"warning: training data: {image}: no georeferencing; a GSD of 0.3 m is assumed (set it with --set data.gsd_m=VALUE, or data.gsd_m in the config)"
    ]


def test_config_gsd_option_is_none_when_the_user_set_the_gsd() -> None:
    assert config_gsd_option(0.3, [], "data.gsd_m") == "--set data.gsd_m=VALUE, or data.gsd_m in the config"
    assert config_gsd_option(0.3, ["data.gsd_m=0.3"], "data.gsd_m") is None
    assert config_gsd_option(0.21, [], "data.gsd_m") is None


def test_run_gsd_warning_only_while_assume_gsd_m_is_the_default(tmp_path: Path, pixel_tile: tuple[Path, Path]) -> None:
    _, mask = pixel_tile
    base = ["run", "mask_to_centerlines", mask, "--progress", "none"]
    default = geoseg(*base, "-o", tmp_path / "a")
    assert default.returncode == 0, default.stderr
    assert _gsd_warnings(default.stderr) == [
        f"warning: {mask}: no georeferencing; output coordinates are pixel coordinates (x = column, y = row) "
        "and a GSD of 0.3 m is assumed (set it with --set assume_gsd_m=VALUE)"
    ]
    for value in ("0.21", "0.3"):
        given = geoseg(*base, "-o", tmp_path / value, "--set", f"assume_gsd_m={value}", "--set", "max_gap_m=10")
        assert given.returncode == 0, given.stderr
        assert _gsd_warnings(given.stderr) == [f"warning: {mask}: no georeferencing; output coordinates are pixel coordinates (x = column, y = row)"]


def test_assume_gsd_m_given_survives_other_overrides() -> None:
    assert not load_pipeline("mask_to_centerlines", ["max_gap_m=10"]).engine.assume_gsd_m_given
    pipe = load_pipeline("mask_to_centerlines", ["assume_gsd_m=0.3"]).with_overrides(["max_memory=2GB"])
    assert pipe.engine.assume_gsd_m_given and pipe.engine.assume_gsd_m == 0.3


# ----------------------------------------------------------------------------- messages
def test_max_memory_without_unit_says_it_is_bytes(tmp_path: Path) -> None:
    line = one_error_line(geoseg("run", "mask_to_centerlines", SAMPLE_DATA / "scene_a_mask.tif", "-o", tmp_path / "o", "--set", "max_memory=512"))
    assert "max_memory 512 is below 16 MB (a bare number is bytes; give a unit, e.g. 512MB or 2GB)" in line


def test_search_arch_warns_and_records_a_missed_latency_target(tmp_path: Path) -> None:
    out = tmp_path / "g.npz"
    res = geoseg("search", "arch", "--images", SAMPLE_DATA / "scene_b.tif", "--masks", SAMPLE_DATA / "scene_b_mask.tif", "--target-ms", "0.001",
                 "-o", out, "--no-progress", *[f"--set={s}" for s in TINY_SEARCH])  # fmt: skip
    assert res.returncode == 0, res.stderr
    warned = [line for line in res.stderr.splitlines() if "above the target 0.001 ms" in line]
    assert len(warned) == 1 and warned[0].startswith("warning: the derived network takes") and "--target-ms" in warned[0]
    _, meta = load_model(out, kind="nn")
    assert meta["training"]["search"]["target_missed"] is True


def test_a_met_latency_target_is_recorded_too(tmp_path: Path) -> None:
    from geoseg.nn.search.config import load_search_config
    from geoseg.nn.search.run import run_gas
    from tests.nn.conftest import scene_b

    result = run_gas(load_search_config(None, [*TINY_SEARCH, "latency.target_ms=100000"]), [scene_b()])
    assert result.model.training["search"]["target_missed"] is False


@pytest.mark.parametrize(
    ("bands", "message"),
    [
        ("[4]", "a.tif: has 3 band(s); data.bands [4] asks for band 4"),  # an IndexError traceback
        ("[0]", "--set data.bands=[0]: field 'data.bands.0': Input should be greater than 0"),  # trained on the last band
    ],
)
def test_train_nn_refuses_bands_the_scenes_lack(tmp_path: Path, bands: str, message: str) -> None:
    shutil.copy(SAMPLE_DATA / "scene_a.tif", tmp_path / "a.tif")
    shutil.copy(SAMPLE_DATA / "scene_a_mask.tif", tmp_path / "a_mask.tif")
    line = one_error_line(geoseg("train", "nn", "--images", "a.tif", "--masks", "a_mask.tif", "--no-progress", "--set", f"data.bands={bands}", "-o", "m.npz", cwd=tmp_path))
    assert line.startswith(f"geoseg: error: {message}")
    assert not (tmp_path / "m.npz").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "mjcr", "--images", "aa.tif", "--masks", "a_mask.tif"], "aa.tif: no such file"),  # was: no mask with the same file stem
        (["train", "nn", "--images", "a.tif", "--masks", "a_mask.tif", "--val-images", "b.tif", "--val-masks", "a_mask.tif"], "b.tif: no such file"),
        (["train", "nn", "--images", "a.tif", "--masks", "a_mask.tif", "--edges", "a_lines.tif"], "no edge raster (--edges) with the same file stem for: a.tif"),
    ],
)
def test_training_inputs_that_do_not_pair_say_what_is_wrong(tmp_path: Path, args: list[str], message: str) -> None:
    for name, source in (("a.tif", "scene_a.tif"), ("a_mask.tif", "scene_a_mask.tif"), ("a_lines.tif", "scene_a_mask.tif")):
        shutil.copy(SAMPLE_DATA / source, tmp_path / name)
    assert one_error_line(geoseg(*args, "--no-progress" if args[1] == "nn" else "--gsd-m=0.5", "-o", "m.npz", cwd=tmp_path)) == f"geoseg: error: {message}"


@pytest.mark.parametrize(
    ("crs", "shift_m", "message"),
    [
        ("EPSG:25832", 0.0, "the mask is in EPSG:25832, its image"),
        ("EPSG:32633", 50.0, "the mask lies elsewhere than its image"),
        ("EPSG:32633", 0.01, None),  # a hundredth of a pixel: the same grid
    ],
)
def test_a_mask_on_another_grid_than_its_image_is_refused(tmp_path: Path, crs: str, shift_m: float, message: str | None) -> None:
    """Scene B's mask written on another CRS or place trained as if it lay on scene A."""
    from geoseg.classifiers.training_data import mask_labels
    from geoseg.errors import InputMismatchError
    from geoseg.raster import read_raster
    from tests.conftest import write_tif

    scene = read_raster(SAMPLE_DATA / "scene_a.tif")
    with rasterio.open(SAMPLE_DATA / "scene_a_mask.tif") as src:
        mask, transform = src.read(1), src.transform
    path = write_tif(tmp_path / "a_mask.tif", mask, rasterio.crs.CRS.from_user_input(crs), transform * Affine.translation(shift_m / transform.a, 0))
    if message is None:
        assert mask_labels(scene, path).sum() == (mask > 0).sum()
    else:
        with pytest.raises(InputMismatchError, match=message):
            mask_labels(scene, path)


def test_config_errors_name_what_the_user_did() -> None:
    from geoseg.errors import ConfigError
    from geoseg.nn.config import load_train_config
    from geoseg.nn.search.config import load_search_config
    from geoseg.sequence.train import load_sequence_train_config

    with pytest.raises(ConfigError, match=r"road_gas.yaml: a config for `geoseg search arch`, not for `geoseg train nn`$"):
        load_train_config("road_gas")
    with pytest.raises(ConfigError, match=r"road_decouple.yaml: a config for `geoseg train nn`, not for `geoseg search arch`$"):
        load_search_config("road_decouple")
    with pytest.raises(ConfigError, match=r"^--set frame_size=50: field 'frame_size': Input should be a multiple of 8"):  # it named the shipped file
        load_sequence_train_config("sequence_ovs", ["frame_size=50"])
    # two settings that fail only together (a torch traceback in the first batch), without the whole config in the message
    with pytest.raises(ConfigError, match=r"^--set data.batch_size=1 --set data.crop_px=64 \(together\): model.architecture decouple with data.batch_size 1 needs") as caught:
        load_train_config("road_decouple", ["epochs=1", "data.batch_size=1", "data.crop_px=64"])
    assert "schema_version" not in str(caught.value)
    load_train_config("road_decouple", ["data.batch_size=1", "data.crop_px=96"])  # a 96 px crop trains alone


def test_ctrl_c_in_training_says_how_to_go_on(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from geoseg.cli._common import resume_hint

    ckpt = tmp_path / "m.ckpt.npz"
    with pytest.raises(SystemExit) as stop, resume_hint(ckpt):
        raise KeyboardInterrupt  # before the first epoch ended
    assert stop.value.code == 130 and capsys.readouterr().err == "geoseg: interrupted before the first checkpoint\n"
    ckpt.write_bytes(b"")
    os.utime(ckpt, (1e9, 1e9))  # an earlier run's checkpoint does not count
    with pytest.raises(SystemExit), resume_hint(ckpt):
        raise KeyboardInterrupt
    assert capsys.readouterr().err == "geoseg: interrupted before the first checkpoint\n"
    with pytest.raises(SystemExit), resume_hint(ckpt):
        ckpt.write_bytes(b"epoch 1")
        raise KeyboardInterrupt
    assert capsys.readouterr().err == f"geoseg: interrupted; go on with the same command and --resume {ckpt}\n"


def test_quantize_refuses_a_budget_it_would_ignore(tmp_path: Path) -> None:
    res = geoseg("quantize", "m.npz", "--w-bits", "4", "--budget-bitops", "40G", "--images", "a.tif", "--masks", "a_mask.tif", "-o", "q.npz", cwd=tmp_path)
    assert res.returncode == 2 and "--budget-bitops is the budget of --search" in res.stderr
