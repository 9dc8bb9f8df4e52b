"""Input checks (issue 20): the wrong kind of input is refused with what it looks like and what to do.

A mask step given an image, a classifier given a scene unlike its training scenes (other
bands, another bit depth or unit) or a road mask, and any file that is no model given as a
model: each is one line naming the file, through a real ``geoseg`` subprocess, and the
setting the message proposes (``bands``, ``scale``, ``band``, ``check_input``) makes the run
work. The catalogue (``cases.py``) holds the same cases as scenes of a batch.
"""

from __future__ import annotations

import json
import pickle
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import rasterio

from geoseg.classifiers.mjcr import MJCRClassifier
from geoseg.errors import InputMismatchError, ModelFileError
from geoseg.modelfile import load_model, save_model
from geoseg.pipeline.pipeline import load_pipeline
from geoseg.scene_checks import TrainingScenes, ValueSummary, check_mask, check_value_range
from tests.cli.test_cli_basics import GEOSEG
from tests.conftest import REPO, SAMPLE_DATA, plus_mask

MODEL = SAMPLE_DATA / "roads.mjcr.npz"
SCENE = SAMPLE_DATA / "scene_a.tif"


def geoseg(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run([*GEOSEG, *map(str, args)], capture_output=True, text=True, cwd=REPO, timeout=300)


def run(*args: object) -> subprocess.CompletedProcess:
    """``geoseg run ARGS`` on one worker, without a progress display."""
    return geoseg("run", *args, "--workers", "1", "--progress", "none")


def _failed_with(res: subprocess.CompletedProcess, *needles: str) -> None:
    assert res.returncode == 1, res.stderr
    assert "Traceback" not in res.stderr and "unexpected" not in res.stderr, res.stderr
    for needle in needles:
        assert needle in res.stderr, res.stderr


def _like_scene_a(path: Path, array: np.ndarray, descriptions: tuple[str, ...] = (), **extra) -> Path:
    """``array`` on scene A's grid (GeoTIFF, deflate), with optional band descriptions."""
    with rasterio.open(SCENE) as src:
        profile = {"driver": "GTiff", "width": src.width, "height": src.height, "crs": src.crs, "transform": src.transform}
    profile.update(count=array.shape[0], dtype=array.dtype.name, compress="deflate", **extra)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(array)
        for i, name in enumerate(descriptions, start=1):
            dst.set_band_description(i, name)
    return path


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> dict[str, Path]:
    """Scene A as users have it in other forms: 11-bit counts, RGBN, named bands, a 3-band mask, a soft map."""
    d = tmp_path_factory.mktemp("scenes")
    with rasterio.open(SCENE) as src:
        rgb = src.read()
    with rasterio.open(SAMPLE_DATA / "scene_a_mask.tif") as src:
        mask = src.read()
    return {
        "x8": _like_scene_a(d / "scene_a_uint16.tif", rgb.astype(np.uint16) * 8),
        "rgbn": _like_scene_a(d / "scene_a_rgbn.tif", np.concatenate([rgb, rgb[:1]]), photometric="MINISBLACK"),
        "rgb_named": _like_scene_a(d / "scene_a_rgb.tif", rgb, ("red", "green", "blue")),
        "bgr_named": _like_scene_a(d / "scene_a_bgr.tif", rgb[::-1].copy(), ("blue", "green", "red")),
        "mask_3band": _like_scene_a(d / "mask_rgb.tif", np.repeat(mask, 3, axis=0)),
        "soft_map": _like_scene_a(d / "soft.tif", np.where(mask > 0, 200, 40).astype(np.uint8) + (np.arange(512) % 7).astype(np.uint8)),
    }


def _mask_of(out: Path, stem: str) -> np.ndarray:
    with rasterio.open(out / f"{stem}.tif") as ds:
        return ds.read(1)


@pytest.fixture(scope="module")
def reference_mask(tmp_path_factory) -> np.ndarray:
    """road_segmentation of scene A with the sample model."""
    out = tmp_path_factory.mktemp("reference")
    res = run("road_segmentation", SCENE, "-o", out, "--set", f"model={MODEL}")
    assert res.returncode == 0, res.stderr
    return _mask_of(out, "scene_a")


# ----------------------------------------------------------------------------- mask steps
def test_mask_pipeline_refuses_an_image_and_names_the_pipelines_for_images(tmp_path):
    res = run("mask_to_centerlines", SCENE, "-o", tmp_path / "out")
    _failed_with(
        res,
        f"{SCENE}: 3 bands of uint8 with many grey levels: this looks like an image, not a road mask "
        "(one band, values 0/255, 0/1 or a probability in [0, 1]); for images use road_centerlines (MJCR model) "
        "or deep_road_centerlines (deep model)",
    )
    assert not list((tmp_path / "out").glob("scene_a*"))


def test_a_mask_saved_as_three_bands_is_used_once_its_band_is_chosen(scenes, tmp_path):
    res = run("mask_to_centerlines", scenes["mask_3band"], "-o", tmp_path / "a")
    _failed_with(res, "3 bands of uint8 with 2 levels (0, 255): a road mask has one band; choose the band that holds it with --set threshold_mask.band=N")
    res = run("mask_to_centerlines", scenes["mask_3band"], "-o", tmp_path / "b", "--set", "threshold_mask.band=1")
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "b" / "mask_rgb.shp").is_file()


def test_a_soft_map_is_thresholded_when_the_user_says_so(scenes, tmp_path):
    res = run("mask_to_centerlines", scenes["soft_map"], "-o", tmp_path / "a")
    _failed_with(res, "1 band of uint8 with many grey levels: this looks like an image, not a road mask", "--set threshold_mask.check_input=false")
    args = ["--set", "threshold_mask.check_input=false", "--set", "threshold_mask.threshold=127"]
    res = run("mask_to_centerlines", scenes["soft_map"], "-o", tmp_path / "b", *args)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "b" / "soft.shp").is_file()


# ----------------------------------------------------------------------------- MJCR model
def test_other_bit_depth_is_refused_and_the_proposed_scale_gives_the_8_bit_result(scenes, reference_mask, tmp_path):
    res = run("road_segmentation", scenes["x8"], "-o", tmp_path / "a", "--set", f"model={MODEL}")
    _failed_with(
        res,
        f"{scenes['x8']}: uint16 values up to 2040, the MJCR model {MODEL} was trained on uint8 scenes (values 0-221): "
        "rescale with --set mjcr_classify.scale=0.125, or train a model on scenes like this one",
    )
    sets = ["--set", f"model={MODEL}", "--set", "mjcr_classify.scale=0.125"]
    res = run("road_segmentation", scenes["x8"], "-o", tmp_path / "b", *sets)
    assert res.returncode == 0, res.stderr
    np.testing.assert_array_equal(_mask_of(tmp_path / "b", "scene_a_uint16"), reference_mask)


def test_rgbn_scene_is_refused_and_the_proposed_bands_give_the_rgb_result(scenes, reference_mask, tmp_path):
    res = run("road_segmentation", scenes["rgbn"], "-o", tmp_path / "a", "--set", f"model={MODEL}")
    _failed_with(res, f"{scenes['rgbn']}: 4 data bands", "the model takes 3 bands: select them with --set mjcr_classify.bands=[1,2,3]")
    sets = ["--set", f"model={MODEL}", "--set", "mjcr_classify.bands=[1,2,3]"]
    res = run("road_segmentation", scenes["rgbn"], "-o", tmp_path / "b", *sets)
    assert res.returncode == 0, res.stderr
    np.testing.assert_array_equal(_mask_of(tmp_path / "b", "scene_a_rgbn"), reference_mask)


def test_band_numbers_are_1_based():
    res = geoseg("validate", "road_segmentation", "--set", f"model={MODEL}", "--set", "mjcr_classify.bands=[0,1,2]")
    _failed_with(res, "step 1 (mjcr_classify): field 'bands': band numbers start at 1")


def test_a_road_mask_given_to_the_mjcr_pipeline_is_sent_to_mask_to_centerlines(tmp_path):
    mask = SAMPLE_DATA / "scene_a_mask.tif"
    res = run("road_centerlines", mask, "-o", tmp_path, "--set", f"model={MODEL}")
    _failed_with(res, f"{mask}: 1 band of uint8 with 2 levels (0, 255): this looks like a road mask: use mask_to_centerlines")


def test_the_model_records_its_scenes_and_refuses_bands_in_another_order(scenes, tmp_path):
    model = tmp_path / "named.mjcr.npz"
    mask = shutil.copy(SAMPLE_DATA / "scene_a_mask.tif", tmp_path / "scene_a_rgb_mask.tif")  # paired by stem
    res = geoseg("train", "mjcr", "--images", scenes["rgb_named"], "--masks", mask, "-o", model, "--atoms", "100")
    assert res.returncode == 0, res.stderr
    info = json.loads(geoseg("model", "info", model, "--json").stdout)
    record = info["metadata"]["trained_on"]
    assert (record["dtype"], record["scene_bands"], record["band_names"]) == ("uint8", 3, ["red", "green", "blue"])
    assert all(lo <= p1 <= p99 <= hi <= 255 for lo, p1, p99, hi in zip(record["min"], record["p01"], record["p99"], record["max"]))

    res = run("road_segmentation", scenes["bgr_named"], "-o", tmp_path / "a", "--set", f"model={model}")
    _failed_with(res, "the bands the MJCR model", "(red, green, blue) are bands [3,2,1] of this scene", "select them with --set mjcr_classify.bands=[3,2,1]")
    res = run("road_segmentation", scenes["bgr_named"], "-o", tmp_path / "b", "--set", f"model={model}", "--set", "mjcr_classify.bands=[3,2,1]")
    assert res.returncode == 0, res.stderr
    res = run("road_segmentation", scenes["rgb_named"], "-o", tmp_path / "c", "--set", f"model={model}")
    assert res.returncode == 0, res.stderr
    np.testing.assert_array_equal(_mask_of(tmp_path / "b", "scene_a_bgr"), _mask_of(tmp_path / "c", "scene_a_rgb"))


def test_older_model_files_without_the_record_load_and_are_checked_on_what_they_record(scenes, tmp_path):
    arrays, meta = load_model(MODEL)
    del meta["trained_on"]
    old = save_model(tmp_path / "old.mjcr.npz", arrays, meta)
    assert MJCRClassifier.load(old).trained_on == TrainingScenes(scene_bands=3)
    res = run("road_segmentation", scenes["x8"], "-o", tmp_path / "a", "--set", f"model={old}")
    assert res.returncode == 0, res.stderr  # no value range recorded: not checked
    res = run("road_segmentation", scenes["rgbn"], "-o", tmp_path / "b", "--set", f"model={old}")
    _failed_with(res, "select them with --set mjcr_classify.bands=[1,2,3]")  # the band count is recorded


# ----------------------------------------------------------------------------- files that are no model
def _not_models(folder: Path) -> dict[str, tuple[Path, str]]:
    text = folder / "notes.txt"
    text.write_text("road model, version 2\n")
    return {
        "geotiff": (SCENE, "it looks like a TIFF or GeoTIFF raster"),
        "geojson": (SAMPLE_DATA / "scene_a_centerlines.geojson", "it looks like JSON or GeoJSON text"),
        "text": (text, "it looks like text"),
    }


@pytest.mark.parametrize("kind", ["geotiff", "geojson", "text"])
def test_a_file_that_is_no_model_is_named_for_what_it_is(kind, tmp_path):
    path, looks = _not_models(tmp_path)[kind]
    expected = f"{path}: not a geoseg model file ({looks}; model files are the .npz files written by geoseg train)"
    batch = run("road_segmentation", SCENE, "-o", tmp_path / "out", "--set", f"model={path}")
    _failed_with(batch, expected)
    info = geoseg("model", "info", path)
    _failed_with(info, f"geoseg: error: {expected}")
    assert "pickle" not in batch.stderr + info.stderr


@pytest.mark.parametrize("kind", ["geotiff", "geojson", "text"])
def test_every_model_loader_says_not_a_geoseg_model_file(kind, tmp_path):
    from geoseg.nn.modelfile import load_nn_model
    from geoseg.sequence.modelfile import load_sequence_model

    path, looks = _not_models(tmp_path)[kind]
    for load in (load_model, MJCRClassifier.load, load_nn_model, load_sequence_model):
        with pytest.raises(ModelFileError, match="not a geoseg model file") as info:
            load(path)
        assert looks in str(info.value) and "pickle" not in str(info.value), (load, info.value)


def test_a_pickle_is_still_refused_as_pickled_without_pointing_at_allow_pickle(tmp_path):
    member = tmp_path / "member.npz"
    np.savez(member, w=np.array([{"x": 1}], dtype=object))
    raw = tmp_path / "raw.npz"
    raw.write_bytes(pickle.dumps({"weights": [1, 2]}))
    for path in (member, raw):
        res = geoseg("model", "info", path)
        _failed_with(res, f"{path}: refused, the file holds pickled data")
        assert "allow_pickle" not in res.stderr


# ----------------------------------------------------------------------------- deep model
@pytest.fixture(scope="module")
def nn_model(tmp_path_factory) -> Path:
    """A tiny deep model trained in a second on scene B, its band names known."""
    import torch

    from geoseg.classifiers.training_data import mask_labels
    from geoseg.nn.config import load_train_config
    from geoseg.nn.train import SceneData, train
    from geoseg.raster import read_raster

    scene = read_raster(SAMPLE_DATA / "scene_b.tif")
    data = SceneData(scene.array, mask_labels(scene, SAMPLE_DATA / "scene_b_mask.tif"), scene.geo.gsd_m, scene.source, band_names=scene.band_names)
    settings = ["threads=1", "model.width=4", "epochs=1", "iterations_per_epoch=2", "data.batch_size=2", "data.crop_px=64",
                "inference.tile_px=128", "inference.overlap_px=16"]  # fmt: skip
    path = tmp_path_factory.mktemp("nn") / "tiny.nn.npz"
    prev = torch.get_num_threads()
    try:
        train(load_train_config(None, settings), [data], best_path=path, progress=False)
    finally:
        torch.set_num_threads(prev)
    return path


def test_deep_model_records_its_training_scenes(nn_model):
    from geoseg.nn.modelfile import load_nn_model

    record = load_nn_model(nn_model).trained_on
    assert (record.dtype, record.scene_bands, record.band_names) == ("uint8", 3, ("band1", "band2", "band3"))
    assert len(record.maximum) == 3 and max(record.maximum) == 221


def test_nn_classify_refuses_unlike_scenes_and_its_bands_and_scale_fix_them(nn_model, scenes, tmp_path):
    sets = ["--set", f"model={nn_model}", "--set", "nn_classify.threads=1"]
    res = run("deep_road_centerlines", scenes["x8"], "-o", tmp_path / "a", *sets)
    _failed_with(res, f"{scenes['x8']}: uint16 values up to 2040, the model {nn_model} was trained on uint8 scenes", "--set nn_classify.scale=0.125")
    res = run("deep_road_centerlines", scenes["rgbn"], "-o", tmp_path / "b", *sets)
    _failed_with(res, "the model takes 3 bands: select them with --set nn_classify.bands=[1,2,3]")
    res = run("deep_road_centerlines", scenes["rgbn"], "-o", tmp_path / "c", *sets, "--set", "nn_classify.bands=[1,2,3]")
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "c" / "scene_a_rgbn.shp").is_file()


def test_a_model_of_the_wrong_kind_says_where_it_belongs(nn_model, tmp_path):
    res = run("road_segmentation", SCENE, "-o", tmp_path, "--set", f"model={nn_model}")
    _failed_with(res, f"{nn_model}: model kind is 'nn', expected 'mjcr'; a nn model is for the nn_classify step (deep_road_centerlines)")


# ----------------------------------------------------------------------------- the checks on arrays
def _summary(values: np.ndarray, valid: np.ndarray | None = None) -> ValueSummary:
    values = values[None] if values.ndim == 2 else values
    return ValueSummary.of(values, np.ones(values.shape[1:], bool) if valid is None else valid, "s.tif", values.shape[0])


def test_value_summaries_count_levels_across_tiles():
    zeros, ones, twos = (np.full((4, 4), v, np.uint8) for v in (0, 1, 2))
    assert _summary(zeros).levels == (0.0,) and _summary(np.r_[zeros, ones]).levels == (0.0, 1.0)
    merged = ValueSummary.merge([_summary(zeros), _summary(ones), _summary(twos)])
    assert merged.levels == (0.0, 1.0, 2.0) and not merged.looks_like_mask()  # a class map spread over tiles
    assert ValueSummary.merge([merged, _summary(np.full((2, 2), 3, np.uint8))]).levels is None
    assert _summary(np.arange(16, dtype=np.uint8).reshape(4, 4)).levels is None
    assert _summary(np.r_[zeros, np.full((4, 4), 2047, np.uint16)]).looks_like_mask()  # 11-bit 0/2047
    soft = np.linspace(0, 1, 16, dtype=np.float32).reshape(4, 4)
    assert _summary(soft).looks_like_mask() and not _summary(soft * 2).looks_like_mask()
    nodata = np.zeros((4, 4), bool)
    assert _summary(np.arange(16, dtype=np.uint8).reshape(4, 4), nodata).looks_like_mask()  # nothing valid: nothing to refuse
    with pytest.raises(InputMismatchError, match=r"s\.tif: 1 band of float32 with values from 0 to 2: this looks like an image"):
        check_mask(_summary(soft * 2), "threshold_mask")


def test_value_range_accepts_other_brightness_and_refuses_other_units():
    record = TrainingScenes.measure([plus_mask(64)[None].repeat(3, axis=0) // 2 + 20], [1, 2, 3], scene_bands=3)  # uint8, 20..147
    assert record.dtype == "uint8" and record.maximum == (147.0,) * 3 and record.minimum == (20.0,) * 3
    scene = plus_mask(64)[None].repeat(3, axis=0)

    def check(values: np.ndarray, scale: float | None = None) -> None:
        check_value_range(_summary(values), record, scale=scale, model="the model m.npz", label="mjcr_classify")

    check(scene)  # brighter 8-bit
    check(scene // 5)  # darker 8-bit (up to 51)
    expected = r"uint16 values up to 4080, the model m\.npz was trained on uint8 scenes \(values 20-147\): rescale with --set mjcr_classify\.scale=0\.0623,"
    with pytest.raises(InputMismatchError, match=expected):
        check(scene.astype(np.uint16) * 16)  # 12-bit counts
    check(scene.astype(np.uint16) * 16, scale=0.0623)
    with pytest.raises(InputMismatchError, match=r"mjcr_classify\.scale=255,"):
        check((scene / 255).astype(np.float32))  # reflectance
    assert TrainingScenes.from_json(record.to_json()) == record and TrainingScenes.from_json(None) == TrainingScenes()


def test_a_deep_model_trained_from_the_cli_records_band_count_and_names(tmp_path):
    model = tmp_path / "cli.nn.npz"
    tiny = ["threads=1", "model.width=4", "epochs=1", "iterations_per_epoch=2", "data.batch_size=2", "data.crop_px=64",
            "optimizer.warmup_iterations=1", "inference.tile_px=128", "inference.overlap_px=32"]  # fmt: skip
    args = ["train", "nn", "--images", SAMPLE_DATA / "scene_b.tif", "--masks", SAMPLE_DATA / "scene_b_mask.tif", "-o", model, "--no-progress"]
    res = geoseg(*args, *[a for t in tiny for a in ("--set", t)])
    assert res.returncode == 0, res.stderr
    from geoseg.nn.modelfile import load_nn_model

    record = load_nn_model(model).trained_on
    assert record is not None and record.scene_bands == 3 and record.dtype == "uint8" and len(record.band_names) == 3


def test_an_image_thresholded_anyway_runs_on_blocks_no_wider_than_the_widest_road():
    """check_input=false on an RGB scene (every pixel above the threshold) made blocks of the
    scene's size and a ZeroDivisionError in tensor voting; the block size stops at roads of 40 m."""
    result = load_pipeline("mask_to_centerlines", ["threshold_mask.check_input=false"]).run(SAMPLE_DATA / "scene_a.tif")
    assert result.geo.gsd_m <= 40.0 / 8 + 1e-6  # work_road_px 8 blocks across a 40 m road at most
    assert result.geo.width >= 512 * 0.3 / 5.0 - 1
