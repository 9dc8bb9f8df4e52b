"""Batches in-process: the manifest, resuming, --overwrite, invalidation, temporaries, lock."""

from __future__ import annotations

import json
import logging
import pickle
from pathlib import Path

import pytest
from rasterio.crs import CRS

from geoseg.atomic import TEMP_PREFIX
from geoseg.errors import ConfigError, OutputWriteError
from geoseg.manifest import MANIFEST_NAME, read_manifest
from geoseg.pipeline.batch import BatchInterrupted, _folder_lock, discard_interrupted, pending_scenes, pipeline_hash, run_batch
from geoseg.pipeline.pipeline import Pipeline, load_pipeline
from tests.conftest import REPO, UTM_TRANSFORM, plus_mask, write_tif

PIPELINE = REPO / "pipelines" / "mask_to_centerlines.yaml"


@pytest.fixture
def scenes(tmp_path: Path) -> list[Path]:
    """Two plus-shaped masks and a third input that does not exist (yet)."""
    folder = tmp_path / "in"
    folder.mkdir()
    a = write_tif(folder / "a.tif", plus_mask(), CRS.from_epsg(32633), UTM_TRANSFORM)
    b = write_tif(folder / "b.tif", plus_mask(width=8), CRS.from_epsg(32633), UTM_TRANSFORM)
    return [a, b, folder / "c.tif"]


def _mtimes(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in folder.iterdir() if p.suffix in (".shp", ".dbf", ".shx")}


def test_manifest_records_each_scene_and_its_failure(scenes, tmp_path):
    pipe = load_pipeline(PIPELINE)
    out = tmp_path / "out"
    seen = []
    reports = run_batch(pipe, scenes, out, progress=lambda i, n, r: seen.append((i, n, r.input, r.status)), pipeline_name="mask_to_centerlines")
    assert [r.status for r in reports] == ["done", "done", "failed"]
    assert seen == [(1, 3, str(scenes[0]), "done"), (2, 3, str(scenes[1]), "done"), (3, 3, str(scenes[2]), "failed")]
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    assert {k: manifest[k] for k in ("format", "version", "pipeline", "format_ext")} == {
        "format": "geoseg-manifest",
        "version": 1,
        "pipeline": "mask_to_centerlines",
        "format_ext": "shp",
    }
    assert manifest["pipeline_hash"] == pipeline_hash(pipe) and len(manifest["pipeline_hash"]) == 64
    a, b, c = manifest["scenes"]
    assert set(a) == {"input", "status", "outputs", "seconds", "error", "warnings", "crs", "stac", "source"}
    assert a["stac"] is None  # set for scenes given as STAC items (tests/remote)
    assert a["input"] == str(scenes[0]) and a["status"] == "done" and a["error"] is None and a["seconds"] > 0
    assert a["outputs"] == [str(out / "a.shp"), str(out / "a_nodes.shp")]
    assert all(Path(o).is_file() for o in a["outputs"] + b["outputs"])
    assert c["status"] == "failed" and c["outputs"] == [] and "c.tif: no such file" in c["error"]
    assert read_manifest(out) == manifest


def test_rerun_skips_done_scenes_and_redoes_a_fixed_failure(scenes, tmp_path):
    pipe = load_pipeline(PIPELINE)
    out = tmp_path / "out"
    run_batch(pipe, scenes, out)
    before = _mtimes(out)
    write_tif(scenes[2], plus_mask(width=10), CRS.from_epsg(32633), UTM_TRANSFORM)  # the input is fixed
    assert pending_scenes(pipe, scenes, out) == [scenes[2]]
    reports = run_batch(pipe, scenes, out)
    assert [(r.status, r.skipped) for r in reports] == [("done", True), ("done", True), ("done", False)]
    after = _mtimes(out)
    assert {k: after[k] for k in before} == before  # a and b were not rewritten
    assert (out / "c.shp").is_file()
    assert [s["status"] for s in read_manifest(out)["scenes"]] == ["done"] * 3


def test_overwrite_redoes_every_scene(scenes, tmp_path):
    pipe = load_pipeline(PIPELINE)
    out = tmp_path / "out"
    run_batch(pipe, scenes[:2], out)
    before = _mtimes(out)
    reports = run_batch(pipe, scenes[:2], out, overwrite=True)
    assert [r.skipped for r in reports] == [False, False]
    assert all(_mtimes(out)[k] > before[k] for k in before)


def test_changed_pipeline_or_format_redoes_everything(scenes, tmp_path, caplog):
    out = tmp_path / "out"
    run_batch(load_pipeline(PIPELINE), scenes[:2], out)
    changed = load_pipeline(PIPELINE, ["max_gap_m=21"])
    assert pipeline_hash(changed) != pipeline_hash(load_pipeline(PIPELINE))
    with caplog.at_level(logging.INFO, logger="geoseg.batch"):
        reports = run_batch(changed, scenes[:2], out)
    assert [r.skipped for r in reports] == [False, False]
    assert "--set values or a file it reads (model, map, AOI) changed" in caplog.text
    assert read_manifest(out)["pipeline_hash"] == pipeline_hash(changed)
    reports = run_batch(changed, scenes[:2], out, fmt="geojson")
    assert [r.skipped for r in reports] == [False, False] and (out / "a.geojson").is_file()


def test_interrupted_scene_and_missing_output_are_redone(scenes, tmp_path):
    pipe = load_pipeline(PIPELINE)
    out = tmp_path / "out"
    write_tif(scenes[2], plus_mask(width=10), CRS.from_epsg(32633), UTM_TRANSFORM)
    run_batch(pipe, scenes, out)
    manifest = read_manifest(out)
    manifest["scenes"][0]["status"] = "running"  # as left by a killed run
    (out / MANIFEST_NAME).write_text(json.dumps(manifest))
    (out / "b_nodes.shp").unlink()
    stale = out / f"{TEMP_PREFIX}killed"
    stale.mkdir()
    (stale / "a.shp").write_bytes(b"partial")
    reports = run_batch(pipe, scenes, out)
    assert [r.skipped for r in reports] == [False, False, True]
    assert (out / "b_nodes.shp").is_file() and not stale.exists()


def test_a_scene_whose_file_changed_is_redone(scenes, tmp_path, caplog):
    """A file replaced in place (same name, new content) is not taken as done; a manifest of an
    older geoseg, without the files' sizes and times, keeps its scenes done."""
    pipe = load_pipeline(PIPELINE)
    out = tmp_path / "out"
    run_batch(pipe, scenes[:2], out)
    assert read_manifest(out)["scenes"][0]["source"]["size"] == scenes[0].stat().st_size
    write_tif(scenes[0], plus_mask(width=12), CRS.from_epsg(32633), UTM_TRANSFORM)
    with caplog.at_level(logging.INFO, logger="geoseg.batch"):
        reports = run_batch(pipe, scenes[:2], out)
    assert [r.skipped for r in reports] == [False, True]
    assert f"{scenes[0]}: the file changed since the earlier run (size or modification time); redoing the scene" in caplog.text
    scenes[1].unlink()  # a scene removed after its run stays done
    assert [r.skipped for r in run_batch(pipe, scenes[:2], out)] == [True, True]
    manifest = read_manifest(out)
    for entry in manifest["scenes"]:
        del entry["source"]
    (out / MANIFEST_NAME).write_text(json.dumps(manifest))
    assert [r.skipped for r in run_batch(pipe, scenes[:2], out)] == [True, True]


def test_a_failed_rerun_says_the_earlier_outputs_stay(scenes, tmp_path):
    out = tmp_path / "out"
    run_batch(load_pipeline(PIPELINE), scenes[:1], out)
    scenes[0].write_bytes(scenes[0].read_bytes()[:300])  # replaced by a broken file
    [report] = run_batch(load_pipeline(PIPELINE), scenes[:1], out)
    assert report.status == "failed"
    assert report.warnings == [f"{scenes[0]}: the outputs of an earlier run stay in place, not made by this one: a.shp, a_nodes.shp"]
    assert (out / "a.shp").is_file() and read_manifest(out)["scenes"][0]["warnings"] == report.warnings


def test_other_settings_say_which_earlier_outputs_leave_the_manifest(scenes, tmp_path, caplog):
    out = tmp_path / "out"
    run_batch(load_pipeline(PIPELINE), scenes[:1], out)
    with caplog.at_level(logging.INFO, logger="geoseg.batch"):
        run_batch(load_pipeline(PIPELINE, ["max_gap_m=5"]), scenes[1:2], out)
    assert "the pipeline, its --set values or a file it reads (model, map, AOI) changed since" in caplog.text and "redoing the batch's scenes" in caplog.text
    assert f"holds the outputs of 1 scene(s) made with the earlier settings that this batch does not redo ({scenes[0]})" in caplog.text
    assert [e["input"] for e in read_manifest(out)["scenes"]] == [str(scenes[1])]


def test_refusals_before_any_scene(scenes, tmp_path):
    pipe = load_pipeline(PIPELINE)
    with pytest.raises(ConfigError, match=r"a\.tif: the same file is given twice; give each scene once"):  # it said 'rename them'
        run_batch(pipe, [scenes[0], scenes[0].parent / "." / "a.tif"], tmp_path / "out")
    twin = tmp_path / "other" / "a.tif"
    with pytest.raises(ConfigError, match="same output name"):
        run_batch(pipe, [scenes[0], twin], tmp_path / "out")
    out = tmp_path / "busy"
    out.mkdir()
    with _folder_lock(out), pytest.raises(OutputWriteError, match="another geoseg batch"):
        run_batch(pipe, scenes[:1], out)
    assert not (out / MANIFEST_NAME).exists()


def test_an_output_over_an_input_is_refused_before_any_scene(scenes, tmp_path):
    """A raster output named like a scene in the output folder would replace the scene: refused, nothing written."""
    pipe = Pipeline.from_yaml_text("schema_version: 1\nsteps:\n  - type: threshold_mask\noutputs: [mask]\n")
    before = scenes[0].read_bytes()
    with pytest.raises(ConfigError, match=r"a\.tif: its output .*a\.tif would overwrite the input .*a\.tif; choose another output folder"):
        run_batch(pipe, scenes, scenes[1].parent)
    assert scenes[0].read_bytes() == before
    assert not (scenes[1].parent / MANIFEST_NAME).exists()
    # through a symbolic link to the scene's folder too
    link = tmp_path / "link"
    link.symlink_to(scenes[1].parent, target_is_directory=True)
    with pytest.raises(ConfigError, match="would overwrite the input"):
        run_batch(pipe, scenes[1:2], link)


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")  # writing the scene without a CRS
def test_geojson_of_a_scene_without_crs_fails_that_scene_before_its_tiles(scenes, tmp_path):
    """Pixel coordinates in a GeoJSON file would be read as longitudes and latitudes: that scene fails, the others run."""
    bare = write_tif(tmp_path / "in" / "bare.tif", plus_mask(), None, None)
    reports = run_batch(load_pipeline(PIPELINE, ["assume_gsd_m=0.5"]), [scenes[0], bare], tmp_path / "out", fmt="geojson")
    assert [r.status for r in reports] == ["done", "failed"]
    assert "bare.tif: the scene has no CRS, so its vectors would be in pixel coordinates, which GeoJSON cannot hold" in reports[1].error
    assert "use --format shp or gpkg" in reports[1].error
    assert not list((tmp_path / "out").glob("bare*"))


def test_pipeline_pickles_and_hashes_the_same():
    pipe = load_pipeline("mask_to_centerlines", ["max_gap_m=12"])
    copy = pickle.loads(pickle.dumps(pipe))
    assert copy == pipe and pipeline_hash(copy) == pipeline_hash(pipe)
    rebuilt = type(pipe).from_dict(pipe.to_dict(), pipe.source)
    assert pipeline_hash(rebuilt) == pipeline_hash(pipe)
    assert pipeline_hash(load_pipeline(PIPELINE, ["max_gap_m=12"])) == pipeline_hash(pipe)


def test_an_output_the_interrupted_batch_cannot_remove_is_a_warning_not_a_traceback(tmp_path, caplog):
    """After Ctrl-C the batch removes the running scenes' outputs; one that cannot be removed
    (here a folder in its place) is named in a warning and the rest is still removed."""
    blocked = tmp_path / "b.tif"
    blocked.mkdir()
    (blocked / "x").write_text("x")
    left = tmp_path / "a.shp"
    left.write_bytes(b"partial")
    stop = BatchInterrupted(tmp_path, 0, 0, 2, [left, blocked], [tmp_path])
    with caplog.at_level(logging.WARNING, logger="geoseg.batch"):
        discard_interrupted(stop)
    assert not left.exists() and blocked.is_dir()
    assert f"{tmp_path}: could not remove what the interrupted scenes left" in caplog.text


def _lock_error_from_ctrl_c(*args, **kwargs):
    """What a Ctrl-C between a lock's release and its ``with`` block's end raises (CPython)."""
    try:
        raise KeyboardInterrupt
    except KeyboardInterrupt:
        raise RuntimeError("cannot release un-acquired lock") from None


def test_an_error_a_ctrl_c_caused_in_a_library_stops_the_batch_instead_of_failing_the_scene(scenes, tmp_path, monkeypatch):
    out = tmp_path / "out"
    pipe = load_pipeline(PIPELINE)
    run_batch(pipe, scenes[:1], out)
    monkeypatch.setattr("geoseg.pipeline.scene.process_scene", _lock_error_from_ctrl_c)
    with pytest.raises(BatchInterrupted) as stop:
        run_batch(pipe, scenes[:2], out)
    assert (stop.value.done, stop.value.failed, stop.value.total) == (1, 0, 2)
    assert [s["status"] for s in read_manifest(out)["scenes"]] == ["done", "interrupted"]


def test_an_error_with_no_ctrl_c_behind_it_still_fails_only_its_scene(scenes, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("cannot release un-acquired lock")

    monkeypatch.setattr("geoseg.pipeline.scene.process_scene", broken)
    reports = run_batch(load_pipeline(PIPELINE), scenes[:2], tmp_path / "out")
    assert [r.status for r in reports] == ["failed", "failed"]
    assert all("unexpected RuntimeError: cannot release un-acquired lock" in r.error for r in reports)
