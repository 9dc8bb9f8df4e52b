"""How `geoseg run` behaves as a command (issue 20): Ctrl-C, globs, -v/-q, formats and CRSs,
progress per pass, same stems in different folders, dry runs. Real subprocesses throughout."""

from __future__ import annotations

import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import geopandas as gpd
import pytest
from rasterio.crs import CRS

from geoseg.atomic import TEMP_PREFIX
from geoseg.pipeline.batch import MANIFEST_NAME, output_folders, read_manifest
from geoseg.vector import VectorFormat
from tests.cli.test_cli_basics import GEOSEG, geoseg
from tests.conftest import REPO, SAMPLE_DATA, plus_mask, write_tif

N_SCENES = 8
INTERRUPTED_LINE = re.compile(r"geoseg: interrupted; (\d+) of (\d+) scene\(s\) done(, \d+ failed)?, run the same command again to resume")


@pytest.fixture
def masks(tmp_path: Path) -> list[Path]:
    """Copies of the sample road mask under different names."""
    folder = tmp_path / "in"
    folder.mkdir()
    return [Path(shutil.copy(SAMPLE_DATA / "scene_a_mask.tif", folder / f"m{i}.tif")) for i in range(N_SCENES)]


def _interrupt(args: list[str], until: str, delay: float = 0.0) -> tuple[int, str]:
    """Start `geoseg ...`, send SIGINT to its process group (as Ctrl-C in a terminal does)
    ``delay`` seconds after a stdout line contains ``until``; return its exit code and stderr."""
    proc = subprocess.Popen([*GEOSEG, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO, start_new_session=True)
    buffer, deadline = b"", time.monotonic() + 120
    try:
        while until.encode() not in buffer and time.monotonic() < deadline:
            ready, _, _ = select.select([proc.stdout], [], [], 0.5)
            if ready:
                chunk = os.read(proc.stdout.fileno(), 65536)
                if not chunk:
                    break
                buffer += chunk
        assert until.encode() in buffer, f"no {until!r} on stdout before the deadline"
        time.sleep(delay)
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    return proc.returncode, err.decode()


def _run_args(masks: list[Path], out: Path, *extra: str) -> list[str]:
    return ["run", "mask_to_centerlines", *map(str, masks), "-o", str(out), "--progress", "json", *extra]


@pytest.mark.parametrize("workers", ["2", "1"], ids=["dask", "in_process"])
def test_ctrl_c_mid_batch_records_interrupted_scenes_and_the_rerun_resumes(masks, tmp_path, workers):
    out = tmp_path / "out"
    args = _run_args(masks, out, "--workers", workers)
    code, err = _interrupt(args, until='"event": "progress"')
    assert code == 130, err
    assert "Traceback" not in err and "Aborted" not in err
    *others, line = err.strip().splitlines()
    assert all(o.startswith("warning: ") for o in others), err  # a busy machine may log a Dask warning first
    match = INTERRUPTED_LINE.fullmatch(line)
    assert match and int(match[2]) == N_SCENES and 1 <= int(match[1]) < N_SCENES, line

    statuses = {Path(s["input"]).name: s["status"] for s in read_manifest(out)["scenes"]}
    assert set(statuses.values()) <= {"done", "interrupted"} and "interrupted" in statuses.values()
    done = {name for name, status in statuses.items() if status == "done"}
    assert len(done) == int(match[1])
    written = {p.name.split(".")[0].removesuffix("_nodes") for p in out.glob("*.shp")}
    assert written == {Path(n).stem for n in done}  # no output of an unfinished scene
    assert not list(out.glob(TEMP_PREFIX + "*"))

    again = geoseg(*args)
    assert again.returncode == 0, again.stderr
    events = [e for e in map(json.loads, again.stdout.splitlines()) if e["event"] == "progress"]
    assert sum(e["skipped"] for e in events) == len(done) and all(e["status"] == "done" for e in events)
    assert all(s["status"] == "done" for s in read_manifest(out)["scenes"])


@pytest.mark.parametrize("delay", [0.0, 1.5])
def test_ctrl_c_while_the_local_cluster_starts(masks, tmp_path, delay):
    out = tmp_path / "out"
    # the start line comes just before the cluster starts (2-8 s on 2 busy cores)
    code, err = _interrupt(_run_args(masks, out, "--workers", "2"), until='"event": "start"', delay=delay)
    assert code == 130, err
    assert "Traceback" not in err and "AssertionError" not in err
    *others, line = err.strip().splitlines()
    assert INTERRUPTED_LINE.fullmatch(line), err
    assert all(o.startswith("warning: ") for o in others), err  # a busy machine may log a Dask warning first
    if (out / MANIFEST_NAME).exists():
        assert "running" not in {s["status"] for s in read_manifest(out)["scenes"]}


def test_ctrl_c_while_geoseg_loads_its_modules():
    # SIGINT when `geoseg.cli.main` imports click: the moment is exact, not a race
    code = (
        "import builtins, os, signal, sys\n"
        "real = builtins.__import__\n"
        "def hook(name, *args, **kwargs):\n"
        "    if name == 'click':\n"
        "        os.kill(os.getpid(), signal.SIGINT)\n"
        "    return real(name, *args, **kwargs)\n"
        "builtins.__import__ = hook\n"
        "from geoseg.cli.main import cli\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert res.returncode == 130
    assert res.stderr == "geoseg: interrupted\n"


def test_a_glob_matching_nothing_is_refused_before_any_work(tmp_path):
    res = geoseg("run", "mask_to_centerlines", "masks/*.tif", "-o", "out", cwd=tmp_path)
    assert res.returncode == 1
    assert res.stderr == "geoseg: error: masks/*.tif: no file matches this pattern\n"
    assert not (tmp_path / "out").exists()


def test_a_truth_naming_no_vector_file_is_refused_before_any_scene(plus_tif, tmp_path):
    out = tmp_path / "out"
    res = geoseg("run", "mask_to_centerlines", plus_tif, "-o", out, "--truth", tmp_path / "nothere")
    assert res.returncode == 1
    assert res.stderr.startswith(f"geoseg: error: --truth {tmp_path / 'nothere'}: names no vector file") and res.stderr.count("\n") == 1
    assert not out.exists()


def test_verbosity_options_after_the_command(plus_tif, tmp_path):
    quiet = geoseg("run", "mask_to_centerlines", plus_tif, "-o", tmp_path / "q", "--progress", "none", "-q")
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stderr == ""
    verbose = geoseg("run", "mask_to_centerlines", plus_tif, "-o", tmp_path / "v", "--progress", "none", "-v")
    assert verbose.returncode == 0, verbose.stderr
    assert "DEBUG: " in verbose.stderr and "pass 1/" in verbose.stderr
    traced = geoseg("run", "mask_to_centerlines", "nothing/*.tif", "-o", tmp_path / "t", "-v")
    assert traced.returncode == 1 and "Traceback" in traced.stderr  # -v shows tracebacks, also after the command
    for args in (["info", plus_tif, "-q"], ["pipelines", "show", "mask_to_centerlines", "-v"], ["steps", "tensor_voting", "-q"]):
        res = geoseg(*args)
        assert res.returncode == 0 and "No such option" not in res.stderr, (args, res.stderr)


def test_every_command_takes_the_verbosity_options():
    import click

    from geoseg.cli.main import cli

    def commands(group: click.Group, prefix: str):
        ctx = click.Context(group)
        for name in group.list_commands(ctx):  # loads the lazily imported commands
            cmd = group.get_command(ctx, name)
            yield f"{prefix} {name}", cmd
            if isinstance(cmd, click.Group):
                yield from commands(cmd, f"{prefix} {name}")

    for name, cmd in commands(cli, "geoseg"):
        opts = {opt for param in cmd.params for opt in param.opts}
        assert {"-v", "--verbose", "-q", "--quiet"} <= opts, name


def test_tile_progress_names_the_pass(plus_tif, tmp_path):
    res = geoseg("run", "mask_to_centerlines", plus_tif, "-o", tmp_path, "--progress", "json", "--set", "tile_px=64", "--set", "work_road_px=null")
    assert res.returncode == 0, res.stderr
    tiles = [e for e in map(json.loads, res.stdout.splitlines()) if e["event"] == "tile"]
    passes = tiles[0]["passes"]
    assert passes >= 2 and {e["pass"] for e in tiles} == set(range(1, passes + 1))
    finished = [e for e in tiles if e["percent"] == 100]
    assert len(finished) == passes and len({json.dumps(e, sort_keys=True) for e in finished}) == passes  # no identical lines
    last = finished[-1]
    assert "road_network" in last["steps"] and last["total"] == 4  # 120 px in 64 px tiles
    assert any(e["measures"] for e in finished) and all(isinstance(e["steps"], list) for e in tiles)


@pytest.fixture
def twin_stems(tmp_path: Path) -> list[Path]:
    """a/s1.tif and b/c/s1.tif: the same stem in two folders."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b" / "c").mkdir(parents=True)
    return [Path(shutil.copy(SAMPLE_DATA / "scene_a_mask.tif", tmp_path / sub / "s1.tif")) for sub in ("a", "b/c")]


def test_same_stems_in_two_folders_with_keep_folders(twin_stems, tmp_path):
    out = tmp_path / "out"
    refused = geoseg("run", "mask_to_centerlines", *twin_stems, "-o", out)
    assert refused.returncode == 1
    assert "inputs would write the same output name" in refused.stderr and "--keep-folders" in refused.stderr
    assert not out.exists()
    args = ["run", "mask_to_centerlines", *twin_stems, "-o", out, "--keep-folders", "--progress", "json", "--workers", "1"]
    res = geoseg(*args)
    assert res.returncode == 0, res.stderr
    assert (out / "a" / "s1.shp").is_file() and (out / "b" / "c" / "s1_nodes.shp").is_file()
    again = [e for e in map(json.loads, geoseg(*args).stdout.splitlines()) if e["event"] == "progress"]
    assert [e["skipped"] for e in again] == [True, True]


def test_output_folders_mirror_the_inputs_relative_to_their_common_parent(tmp_path):
    inputs = [tmp_path / "x" / "a" / "s.tif", tmp_path / "x" / "b" / "c" / "s.tif"]
    assert output_folders(inputs, "out", keep_folders=True) == {str(inputs[0]): Path("out/a"), str(inputs[1]): Path("out/b/c")}
    assert set(output_folders(inputs, "out").values()) == {Path("out")}


def test_rfc7946_geojson_is_wgs84_lon_lat_with_7_decimals(plus_tif, tmp_path):
    out = tmp_path / "out"
    res = geoseg("run", "mask_to_centerlines", plus_tif, "-o", out, "--rfc7946", "--progress", "json")
    assert res.returncode == 0, res.stderr
    collection = json.loads((out / "plus.geojson").read_text())
    assert "crs" not in collection
    coords = [v for f in collection["features"] for xy in f["geometry"]["coordinates"] for v in xy]
    assert coords and all(round(v, 7) == v for v in coords) and not all(round(v, 5) == v for v in coords)
    lines = gpd.read_file(out / "plus.geojson")
    xmin, ymin, xmax, ymax = lines.total_bounds
    assert 14.9 < xmin < xmax < 15.1 and 45.0 < ymin < ymax < 45.2  # lon/lat of UTM 33N (500000, 5000000)
    [event] = [e for e in map(json.loads, res.stdout.splitlines()) if e["event"] == "progress"]
    assert event["crs"] == "EPSG:4326"
    assert read_manifest(out)["scenes"][0]["crs"] == "EPSG:4326"
    assert read_manifest(out)["vector_output"]["rfc7946"] is True


def test_dst_crs_and_precision(plus_tif, tmp_path):
    gpkg = geoseg("run", "mask_to_centerlines", plus_tif, "-o", tmp_path / "g", "--format", "gpkg", "--dst-crs", "EPSG:3857")
    assert gpkg.returncode == 0, gpkg.stderr
    assert CRS.from_user_input(gpd.read_file(tmp_path / "g" / "plus.gpkg", layer="nodes").crs) == CRS.from_epsg(3857)
    rounded = geoseg("run", "mask_to_centerlines", plus_tif, "-o", tmp_path / "p", "--format", "geojson", "--precision", "2")
    assert rounded.returncode == 0, rounded.stderr
    collection = json.loads((tmp_path / "p" / "plus.geojson").read_text())
    assert collection["crs"]["properties"]["name"] == "urn:ogc:def:crs:EPSG::32633"  # not reprojected
    coords = [v for f in collection["features"] for xy in f["geometry"]["coordinates"] for v in xy]
    assert coords and all(round(v, 2) == v for v in coords) and not all(round(v) == v for v in coords)

    for args, needle in [
        (["--precision", "3"], "--precision 3: sets the decimals of GeoJSON coordinates; shp stores full precision"),
        (["--dst-crs", "EPSG:nope"], "--dst-crs EPSG:nope: not a CRS"),
        (["--rfc7946", "--format", "gpkg"], "--rfc7946 writes GeoJSON, not gpkg"),
        (["--rfc7946", "--dst-crs", "EPSG:3857"], "RFC 7946 GeoJSON is always in EPSG:4326"),
    ]:
        res = geoseg("run", "mask_to_centerlines", plus_tif, "-o", tmp_path / "x", *args)
        assert res.returncode == 1 and needle in res.stderr, (args, res.stderr)
        assert res.stderr.startswith("geoseg: error: ") and len(res.stderr.splitlines()) == 1
    assert not (tmp_path / "x").exists()


def test_dst_crs_refuses_what_it_cannot_reproject(tmp_path):
    pixels = write_tif(tmp_path / "pixels.tif", plus_mask(), None, None)
    res = geoseg("run", "mask_to_centerlines", pixels, "-o", tmp_path / "o", "--dst-crs", "EPSG:4326", "--progress", "json")
    assert res.returncode == 1
    [event] = [e for e in map(json.loads, res.stdout.splitlines()) if e["event"] == "progress"]
    assert event["status"] == "failed" and "pixels.tif: no georeferencing" in event["error"] and "--dst-crs" in event["error"]
    rasters = geoseg("run", "road_segmentation", SAMPLE_DATA / "scene_a.tif", "-o", tmp_path / "r",
                     "--set", f"model={SAMPLE_DATA / 'roads.mjcr.npz'}", "--dst-crs", "EPSG:4326")
    assert rasters.returncode == 1 and "--dst-crs EPSG:4326: the pipeline writes only rasters" in rasters.stderr


def test_vector_format_checks_its_options():
    assert VectorFormat("geojson", rfc7946=True).target_crs == "EPSG:4326"
    assert VectorFormat("geojson", precision=3).layer_options()["COORDINATE_PRECISION"] == "3"
    assert VectorFormat("shp").to_dict() == {"name": "shp", "dst_crs": None, "precision": None, "rfc7946": False}


@pytest.fixture(scope="module")
def sequence_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained-enough sequence model (a few iterations): the tests check files, not detections."""
    from geoseg.sequence.modelfile import save_sequence_model
    from geoseg.sequence.train import load_sequence_train_config, train_sequence_model

    model = train_sequence_model(load_sequence_train_config(None, ["iterations=2", "frame_size=32"]))
    return save_sequence_model(tmp_path_factory.mktemp("seq") / "m.ovs.npz", model)


def test_sequence_pipeline_honours_the_format(sequence_model, tmp_path):
    frames = SAMPLE_DATA / "sequence" / "frames"
    res = geoseg("run", "sequence_objects", frames, "-o", tmp_path, "--set", f"model={sequence_model}", "--format", "shp")
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "frames.shp").is_file() and not (tmp_path / "frames.gpkg").exists()
    assert {"frame", "track_id"} <= set(gpd.read_file(tmp_path / "frames.shp").columns)
    default = geoseg("run", "sequence_objects", frames, "-o", tmp_path, "--set", f"model={sequence_model}")
    assert default.returncode == 0 and (tmp_path / "frames.gpkg").is_file()
    reproject = geoseg("run", "sequence_objects", frames, "-o", tmp_path / "w", "--set", f"model={sequence_model}", "--rfc7946")
    assert reproject.returncode == 1 and "the frames have no georeferencing" in reproject.stderr


def test_dry_run_checks_and_plans_without_writing(masks, tmp_path):
    out = tmp_path / "out" / "sub"
    missing = tmp_path / "missing.tif"
    args = ["run", "mask_to_centerlines", masks[0], missing, "-o", out, "--set", "tile_px=256", "--dry-run"]
    res = geoseg(*args)
    assert res.returncode == 1, res.stderr  # one scene would fail
    assert not (tmp_path / "out").exists()
    text = res.stdout
    assert f"{masks[0]}: 512 x 512 px, 1 band(s) uint8, EPSG:32633, GSD 0.3" in text
    assert f"{missing}: cannot run: {missing}: no such file" in text
    assert re.search(r"pass 1/\d: .*: ~1 tile\(s\) of ~256 px, halo", text)  # 256 blocks of 2 px cover the scene
    assert "memory: about" in text and f"would write: {out / 'm0.shp'}, {out / 'm0_nodes.shp'}" in text
    assert "dry run: 1 scene(s) would run, 0 already done, 1 cannot run; nothing was written" in text

    assert "blocks: ~2 x 2 px (0.6 m), for a typical road width" in text  # 7 m roads at 0.3 m, work_road_px 8

    def plan_and_run(*sets: str) -> tuple[dict, list[dict]]:
        settings = [a for item in ("tile_px=256", *sets) for a in ("--set", item)]
        plans = [json.loads(line) for line in geoseg("run", "mask_to_centerlines", masks[0], "-o", out, *settings, "--dry-run", "--progress", "json").stdout.splitlines()]
        run = geoseg("run", "mask_to_centerlines", masks[0], "-o", out, *settings, "--progress", "json", "--overwrite")
        assert run.returncode == 0, run.stderr
        return plans[0], [e for e in map(json.loads, run.stdout.splitlines()) if e["event"] == "tile" and e["percent"] == 100]

    # on the scene's own pixels the plan is the run's: same passes, same tiles per pass
    plan, tiles = plan_and_run("work_road_px=null")
    assert plan["blocks"] == 1 and not any(p["estimated"] for p in plan["passes"][:1])
    assert [(p["index"], p["tiles"], p["steps"]) for p in plan["passes"]] == [(e["pass"], e["total"], e["steps"]) for e in tiles]
    # on blocks (the default) the passes are the run's; their tiles are estimates (the run measures the road width)
    plan, tiles = plan_and_run()
    assert plan["blocks"] > 1 and all(p["estimated"] for p in plan["passes"])
    assert [(p["index"], p["steps"], p["measures"]) for p in plan["passes"]] == [(e["pass"], e["steps"], e["measures"]) for e in tiles]

    done = geoseg("run", "mask_to_centerlines", masks[0], "-o", out, "--set", "tile_px=256", "--dry-run")
    assert done.returncode == 0 and "done by an earlier run" in done.stdout


def test_dry_run_refuses_an_unwritable_output_folder(masks, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    res = geoseg("run", "mask_to_centerlines", masks[0], "-o", blocker / "out", "--dry-run")
    assert res.returncode == 1
    assert res.stderr == f"geoseg: error: {blocker / 'out'}: cannot create the output folder ({blocker} is not a folder)\n"


def test_dry_run_loads_the_models(tmp_path):
    """As a run: an unusable model stops it in one line; a scene of bands the model cannot read is found from its header."""
    bad = tmp_path / "bad.npz"
    bad.write_text("not a model")
    res = geoseg("run", "road_centerlines", SAMPLE_DATA / "scene_a.tif", "-o", tmp_path / "out", "--set", f"model={bad}", "--dry-run")
    assert res.returncode == 1
    assert res.stderr.startswith(f"geoseg: error: {bad}: not a geoseg model file") and res.stderr.count("\n") == 1, res.stderr
    assert not (tmp_path / "out").exists()
    model = SAMPLE_DATA / "roads.mjcr.npz"
    res = geoseg("run", "road_centerlines", SAMPLE_DATA / "scene_a_mask.tif", SAMPLE_DATA / "scene_a.tif", "-o", tmp_path / "out", "--set", f"model={model}", "--dry-run")
    assert res.returncode == 1
    assert f"scene_a_mask.tif: the MJCR model {model} was trained on 3-band scenes (using band(s) [1, 2, 3]); this scene has 1 band(s)" in res.stdout, res.stdout
    assert "dry run: 1 scene(s) would run, 0 already done, 1 cannot run; nothing was written" in res.stdout
    assert not (tmp_path / "out").exists()
