"""The bad-input catalogue (issue 10): every case through the Python API and through a real
``geoseg run`` / ``geoseg validate`` subprocess. Each asserts the outcome (exit code or scene
status), that the message names the file and the problem, and that nothing partial is left.

Scene cases share one ``geoseg run --progress json --workers 1`` subprocess per pipeline (a
batch goes on after a failed scene and reports each failure as a JSON line); the other cases
run their subprocesses concurrently, started once for the module. ``docs/RELIABILITY.md``
is the table of these cases.
"""

from __future__ import annotations

import json
import resource
import shutil
import signal
import subprocess
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest

from geoseg.atomic import TEMP_PREFIX
from geoseg.errors import ConfigError, GeosegError, ModelFileError, OutputWriteError, StepNotFoundError
from geoseg.pipeline.batch import LOCK_NAME, MANIFEST_NAME, _folder_lock, run_batch
from geoseg.pipeline.pipeline import Pipeline, load_pipeline
from tests.cli.test_cli_basics import GEOSEG
from tests.conftest import REPO, SAMPLE_DATA, plus_mask, write_tif, UTM_TRANSFORM
from tests.reliability.cases import MODEL, SCENE_CASES, UTM, SceneCase, make_rgb

BOOKKEEPING = {MANIFEST_NAME, LOCK_NAME}
PIPELINES = {"mask": ("mask_to_centerlines", []), "seg": ("road_segmentation", [f"model={MODEL}"])}


def _pipeline(kind: str) -> Pipeline:
    name, sets = PIPELINES[kind]
    return load_pipeline(name, sets)


def _stem(case: SceneCase, folder: Path) -> str:
    return case.make(folder).stem


def _scene_files(out: Path, stem: str) -> set[str]:
    return {p.name for p in out.iterdir() if p.name.startswith((stem + ".", stem + "_nodes."))}


def _assert_no_partial(out: Path) -> None:
    assert not list(out.glob(TEMP_PREFIX + "*")), list(out.iterdir())


def _check_done(case: SceneCase, out: Path, stem: str) -> None:
    if case.pipeline == "mask":
        assert _scene_files(out, stem) == {f"{stem}{s}{e}" for s in ("", "_nodes") for e in (".shp", ".shx", ".dbf", ".cpg")} | (
            {f"{stem}.prj", f"{stem}_nodes.prj"} if "no georeferencing" not in case.needles else set()
        )
        lines = gpd.read_file(out / f"{stem}.shp")
    else:
        assert _scene_files(out, stem) == {f"{stem}.tif"}
        lines = None
    if case.check is not None:
        case.check(lines, out / f"{stem}.tif")


# ----------------------------------------------------------------------------- scene cases: API
@pytest.mark.parametrize("case", SCENE_CASES, ids=[c.id for c in SCENE_CASES])
def test_scene_case_python_api(case: SceneCase, tmp_path: Path):
    scene = case.make(tmp_path)
    out = tmp_path / "out"
    [report] = run_batch(_pipeline(case.pipeline), [scene], out)
    assert report.status == case.status, report.error
    _assert_no_partial(out)
    if case.status == "failed":
        assert report.error.startswith(str(scene) + ":"), report.error  # names the file first
        assert any(n in report.error for n in case.needles), report.error
        assert "Traceback" not in report.error and "unexpected" not in report.error
        assert {p.name for p in out.iterdir()} == BOOKKEEPING  # nothing written for it
        with pytest.raises(GeosegError, match=str(scene.name)):  # Pipeline.run: same error, raised
            _pipeline(case.pipeline).run(scene)
    else:
        assert report.error is None
        for needle in case.needles:
            assert any(needle in w and str(scene) in w for w in report.warnings), report.warnings
        _check_done(case, out, scene.stem)


# ----------------------------------------------------------------------------- scene cases: CLI
def _popen(args: list[str], **kw) -> subprocess.Popen:
    return subprocess.Popen([*GEOSEG, *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO, **kw)


def _finish(proc: subprocess.Popen, timeout: float = 120) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise
    return proc.returncode, out, err


@pytest.fixture(scope="module")
def cli_scene_runs(tmp_path_factory) -> dict[str, dict]:
    """One `geoseg run` subprocess per pipeline over all its scene cases, run concurrently."""
    runs = {}
    for kind, (name, sets) in PIPELINES.items():
        folder = tmp_path_factory.mktemp(f"cli_{kind}")
        cases = [c for c in SCENE_CASES if c.pipeline == kind]
        scenes = {c.id: c.make(folder) for c in cases}
        out = folder / "out"
        args = ["run", name, *scenes.values(), "-o", out, "--progress", "json", "--workers", "1"]
        for s in sets:
            args += ["--set", s]
        runs[kind] = {"proc": _popen(args), "scenes": scenes, "out": out}
    for run in runs.values():
        run["rc"], stdout, run["stderr"] = _finish(run.pop("proc"))
        events = [json.loads(line) for line in stdout.splitlines()]
        run["events"] = {e["input"]: e for e in events if e["event"] == "progress"}
        run["start"] = events[0]
    return runs


@pytest.mark.parametrize("kind", sorted(PIPELINES))
def test_scene_batch_cli_exit_code_and_no_traceback(kind, cli_scene_runs):
    run = cli_scene_runs[kind]
    any_failed = any(c.status == "failed" for c in SCENE_CASES if c.pipeline == kind)
    assert run["rc"] == (1 if any_failed else 0), run["stderr"]
    assert run["start"]["total"] == len(run["scenes"]) == len(run["events"])
    assert "Traceback" not in run["stderr"] and "unexpected" not in run["stderr"]
    _assert_no_partial(run["out"])


@pytest.mark.parametrize("case", SCENE_CASES, ids=[c.id for c in SCENE_CASES])
def test_scene_case_cli(case: SceneCase, cli_scene_runs):
    run = cli_scene_runs[case.pipeline]
    scene = run["scenes"][case.id]
    event = run["events"][str(scene)]
    assert event["status"] == case.status, event
    if case.status == "failed":
        assert event["error"].startswith(str(scene) + ":") and any(n in event["error"] for n in case.needles), event["error"]
        assert event["error"] in run["stderr"]  # the user sees the same line on stderr
        assert _scene_files(run["out"], scene.stem) == set()
    else:
        assert event["outputs"] and all(Path(o).is_file() for o in event["outputs"])
        for needle in case.needles:
            assert any(needle in w for w in event["warnings"]) and needle in run["stderr"]
        _check_done(case, run["out"], scene.stem)


# ----------------------------------------------------------------------------- other cases
GOOD_STEPS = "steps:\n  - type: threshold_mask\n  - type: skeletonize\n  - type: road_network\noutputs: [network]\n"

PIPELINE_CASES: dict[str, tuple[str, str, type]] = {
    # id: (YAML text, words of the message, error class)
    "yaml_syntax_error": ("schema_version: 1\nsteps: [\n  - type: threshold_mask\n", "invalid YAML", ConfigError),
    "yaml_not_a_mapping": ("- threshold_mask\n- skeletonize\n", "must be a YAML mapping", ConfigError),
    "unknown_step": ("schema_version: 1\nsteps:\n  - type: no_such_step\n", "no_such_step", StepNotFoundError),
    "unknown_key": ("schema_version: 1\nsteps:\n  - type: threshold_mask\n    treshold: 3\n", "field 'treshold': unknown field", ConfigError),
    "unknown_top_key": ("schema_version: 1\nstepz: []\n" + GOOD_STEPS, "field 'stepz': unknown field", ConfigError),
    "wrong_type": ("schema_version: 1\nsteps:\n  - type: threshold_mask\n    threshold: high\n", "field 'threshold'", ConfigError),
    "wrong_schema_version": ("schema_version: 2\n" + GOOD_STEPS, "unsupported schema_version 2", ConfigError),
    "missing_layer": ("schema_version: 1\nsteps:\n  - type: road_network\n", "needs layer(s) ['centerline']", ConfigError),
}


def _write_model_cases(folder: Path) -> dict[str, Path]:
    """Model files that must be refused: another band count, corrupt, wrong format."""
    from geoseg.classifiers.mjcr import MJCRClassifier

    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (4, 48, 48)).astype(np.uint8)
    labels = (plus_mask(48, 8) > 0).astype(np.uint8)
    four_band = folder / "nir_model.npz"
    MJCRClassifier.train([image], [labels], [0.3], bands=[1, 2, 3, 4], atoms_per_class=30).save(four_band)
    corrupt = folder / "corrupt_model.npz"
    corrupt.write_bytes(MODEL.read_bytes()[: MODEL.stat().st_size // 2])
    foreign = folder / "foreign_model.npz"
    np.savez(foreign, weights=np.ones(3))
    return {"model_other_band_count": four_band, "model_corrupt": corrupt, "model_wrong_format": foreign}


MODEL_NEEDLES = {
    "model_other_band_count": "using band(s) [1, 2, 3, 4]",
    "model_corrupt": "truncated model file",
    "model_wrong_format": "missing geoseg format marker",
}
#: Models no scene can use: checked once, before any scene (the batch stops with one error line).
UNREADABLE_MODELS = ("model_corrupt", "model_wrong_format")


@pytest.fixture(scope="module")
def other_cases(tmp_path_factory) -> dict[str, dict]:
    """Every non-scene case: its files, and its CLI subprocess (run concurrently, once)."""
    d = tmp_path_factory.mktemp("other")
    mask = write_tif(d / "mask.tif", plus_mask(), UTM, UTM_TRANSFORM)
    rgb = make_rgb(d)
    cases: dict[str, dict] = {}
    for cid, (text, needle, _) in PIPELINE_CASES.items():
        path = d / f"{cid}.yaml"
        path.write_text(text)
        cases[cid] = {"file": path, "needle": needle, "args": ["validate", path]}
    cases["missing_required_param"] = {"file": "road_segmentation", "needle": "pipeline parameter model is not set (use --set model=VALUE)",
                                       "args": ["run", "road_segmentation", rgb, "-o", d / "out_missing"]}
    cases["set_unknown_parameter"] = {"file": "--set nope", "needle": "no pipeline parameter or engine setting 'nope'",
                                      "args": ["run", "mask_to_centerlines", mask, "-o", d / "out_set", "--set", "nope=1"]}
    cases["set_unknown_step_field"] = {"file": "--set tensor_voting.nope", "needle": "has no field 'nope'",
                                       "args": ["run", "mask_to_centerlines", mask, "-o", d / "out_set2", "--set", "tensor_voting.nope=1"]}
    for cid, model in _write_model_cases(d).items():
        cases[cid] = {"file": rgb if cid == "model_other_band_count" else model, "model": model, "needle": MODEL_NEEDLES[cid], "scene": rgb, "out": d / f"out_{cid}",
                      "args": ["run", "road_segmentation", rgb, "-o", d / f"out_{cid}", "--set", f"model={model}", "--workers", "1"]}
    blocker = d / "a_file"
    blocker.write_text("x")
    cases["output_dir_unwritable"] = {"file": blocker / "out", "needle": "cannot create the output folder",
                                      "args": ["run", "mask_to_centerlines", mask, "-o", blocker / "out"]}
    big = Path(shutil.copy(SAMPLE_DATA / "scene_a_mask.tif", d / "big.tif"))
    cases["output_disk_full"] = {"file": "big_nodes.shp", "needle": "is the disk full?", "out": d / "out_full",
                                 "args": ["run", "mask_to_centerlines", big, "-o", d / "out_full", "--workers", "1"],
                                 "preexec_fn": _limit_file_size}
    (d / "a").mkdir(), (d / "b").mkdir()
    same = [write_tif(d / sub / "scene.tif", plus_mask(), UTM, UTM_TRANSFORM) for sub in ("a", "b")]
    cases["same_stem_two_folders"] = {"file": str(same[1]), "needle": "inputs would write the same output name", "out": d / "out_same",
                                      "args": ["run", "mask_to_centerlines", *same, "-o", d / "out_same"]}
    _run_all(cases)
    return cases


def _run_all(cases: dict[str, dict], at_once: int = 2) -> None:
    """Run each case's subprocess, ``at_once`` at a time (one per core: the machine is small)."""
    todo, running = list(cases.values()), []
    while todo or running:
        while todo and len(running) < at_once:
            case = todo.pop(0)
            case["proc"] = _popen(case.pop("args"), preexec_fn=case.pop("preexec_fn", None))
            running.append(case)
        case = running.pop(0)
        case["rc"], case["stdout"], case["stderr"] = _finish(case.pop("proc"))


def _limit_file_size() -> None:
    """In the child: files may not grow past 1000 bytes, as on a full disk (writes fail short).

    The manifest (~500 bytes) fits; the scene's .dbf files (~1.1 KB) do not. Python ignores
    SIGXFSZ, so writes fail with EFBIG instead of killing the process.
    """
    resource.setrlimit(resource.RLIMIT_FSIZE, (1000, 1000))


OTHER_IDS = [*PIPELINE_CASES, "missing_required_param", "set_unknown_parameter", "set_unknown_step_field", *MODEL_NEEDLES,
             "output_dir_unwritable", "output_disk_full", "same_stem_two_folders"]


@pytest.mark.parametrize("cid", OTHER_IDS)
def test_other_case_cli(cid, other_cases):
    case = other_cases[cid]
    assert case["rc"] == 1, (case["stdout"], case["stderr"])
    assert "Traceback" not in case["stderr"] and "unexpected" not in case["stderr"]
    lines = [line for line in case["stderr"].splitlines() if case["needle"] in line]
    assert lines and str(case["file"]) in lines[0], case["stderr"]
    if "out" in case and case["out"].exists():  # a failed scene leaves nothing but the bookkeeping
        assert {p.name for p in case["out"].iterdir()} <= BOOKKEEPING, list(case["out"].iterdir())
    if cid in PIPELINE_CASES or cid in ("missing_required_param", "set_unknown_parameter", "set_unknown_step_field", "same_stem_two_folders", *UNREADABLE_MODELS):
        assert case["stderr"].startswith("geoseg: error: ") and case["stderr"].count("\n") == 1  # one line, before anything runs
        assert "out" not in case or not case["out"].exists()


@pytest.mark.parametrize("cid", list(PIPELINE_CASES))
def test_pipeline_case_python_api(cid, tmp_path):
    text, needle, error = PIPELINE_CASES[cid]
    path = tmp_path / f"{cid}.yaml"
    path.write_text(text)
    with pytest.raises(error) as info:
        load_pipeline(path)
    assert str(path) in str(info.value) and needle in str(info.value)


def test_list_values_and_layer_names_say_how_to_write_them(tmp_path):
    """A --set value of the wrong type is said of that --set (not of the shipped file it changes)."""
    with pytest.raises(ConfigError, match=r"^--set mjcr_classify.bands=1,2,3: step 1 \(mjcr_classify\): field 'bands': Input should be a valid list, written in brackets: \[1, 2, 3\] \(got '1,2,3'\)$"):
        load_pipeline("road_centerlines", ["model=m.npz", "mjcr_classify.bands=1,2,3"])
    with pytest.raises(ConfigError, match=r"^--set smoothness=abc: step 2 \(graph_cut\): field 'smoothness': Input should be a valid number"):
        load_pipeline("road_centerlines", ["model=m.npz", "smoothness=abc"])
    path = tmp_path / "p.yaml"
    path.write_text("schema_version: 1\nsteps:\n  - type: threshold_mask\n  - type: skeletonize\n  - type: road_network\noutputs: [network, node]\n")
    with pytest.raises(ConfigError, match=r"layer 'node' is given by no step \(available: \[.*'network', 'nodes'\]\)"):
        load_pipeline(path).steps  # noqa: B018


def test_graph_cut_bands_given_are_bands_of_the_scene(tmp_path):
    """graph_cut.bands=[1, 2, 9] dropped band 9 without a word; [0, 1] read the last band."""
    with pytest.raises(ConfigError, match=r"field 'bands': band numbers start at 1"):
        load_pipeline("road_centerlines", ["model=m.npz", "graph_cut.bands=[0, 1]"])
    pipe = load_pipeline("road_centerlines", [f"model={MODEL}", "graph_cut.bands=[1, 2, 9]"])
    [report] = run_batch(pipe, [SAMPLE_DATA / "scene_a.tif"], tmp_path / "out")
    assert report.status == "failed" and report.error.endswith("scene_a.tif: graph_cut.bands [1, 2, 9]: band(s) [9] do not exist (the scene has 3)")
    assert load_pipeline("road_centerlines", [f"model={MODEL}"]).steps[1].bands == [1, 2, 3]  # the default takes what a scene has


def test_override_cases_python_api():
    with pytest.raises(ConfigError, match="road_segmentation.yaml: step 1 .*pipeline parameter model is not set"):
        load_pipeline("road_segmentation").steps  # noqa: B018
    with pytest.raises(ConfigError, match="--set nope: no pipeline parameter"):
        load_pipeline("mask_to_centerlines", ["nope=1"])
    with pytest.raises(ConfigError, match="--set tensor_voting.nope: step 'tensor_voting' .* has no field 'nope'"):
        load_pipeline("mask_to_centerlines", ["tensor_voting.nope=1"])


def test_model_cases_python_api(other_cases, tmp_path):
    """An unreadable model stops the batch before its first scene; a model unfit for one scene fails that scene."""
    scene = other_cases["model_corrupt"]["scene"]
    for cid, needle in MODEL_NEEDLES.items():
        model = other_cases[cid]["model"]
        out = tmp_path / cid
        pipe = load_pipeline("road_segmentation", [f"model={model}"])
        if cid in UNREADABLE_MODELS:
            with pytest.raises(ModelFileError, match=needle) as info:
                run_batch(pipe, [scene], out)
            assert str(model) in str(info.value) and not out.exists()
            continue
        [report] = run_batch(pipe, [scene], out)
        assert report.status == "failed" and needle in report.error, report.error
        assert str(scene) in report.error
        assert {p.name for p in out.iterdir()} == BOOKKEEPING
    with pytest.raises(ModelFileError, match="corrupt_model.npz"):
        load_pipeline("road_segmentation", [f"model={other_cases['model_corrupt']['model']}"]).run(scene)


def test_output_cases_python_api(tmp_path, plus_tif, monkeypatch):
    pipe = load_pipeline("mask_to_centerlines")
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(OutputWriteError, match="a_file/out: cannot create the output folder"):
        run_batch(pipe, [plus_tif], blocker / "out")

    # a full disk once the nodes are written: the scene fails and its nodes file goes too
    import geoseg.vector as vector

    real = vector._write_frame

    def fail_on_lines(frame, path, driver, layer, *rest):
        if "_nodes" not in path.name:
            raise OSError(28, "No space left on device")
        real(frame, path, driver, layer, *rest)

    monkeypatch.setattr(vector, "_write_frame", fail_on_lines)
    out = tmp_path / "full"
    [report] = run_batch(pipe, [plus_tif], out)
    assert report.status == "failed" and "No space left on device" in report.error and str(plus_tif) in report.error
    assert {p.name for p in out.iterdir()} == BOOKKEEPING
    monkeypatch.undo()

    twin = tmp_path / "b" / "plus.tif"
    twin.parent.mkdir()
    shutil.copy(plus_tif, twin)
    with pytest.raises(ConfigError, match=r"same output name \(plus: .*plus.tif, .*b/plus.tif\)"):
        run_batch(pipe, [plus_tif, twin], tmp_path / "same")
    assert not (tmp_path / "same").exists()


def test_output_names_never_leave_the_output_folder(tmp_path, plus_tif):
    """Stems become names inside OUTDIR; no user string turns into a path elsewhere."""
    pipe = load_pipeline("mask_to_centerlines", ["1.name=../../escape"])  # a step label is only a label
    odd = tmp_path / "in" / "..%2F..%2Fevil.tif"
    odd.parent.mkdir()
    shutil.copy(plus_tif, odd)
    dotted = tmp_path / "in" / "...tif"
    shutil.copy(plus_tif, dotted)
    before = {p for p in tmp_path.rglob("*")}
    out = tmp_path / "deep" / "out"
    reports = run_batch(pipe, [odd, dotted, tmp_path / "in" / ".." / "in" / "..%2F..%2Fevil.tif.x"], out)
    assert [r.status for r in reports] == ["done", "failed", "failed"]
    assert reports[1].error == f"{dotted}: '..': not usable as an output file name in {out} (outputs never leave the output folder)"
    created = {p for p in tmp_path.rglob("*")} - before
    assert all(out in p.parents or p in (out, out.parent) for p in created), created
    assert (out / "..%2F..%2Fevil.shp").is_file()
    with pytest.raises(ConfigError, match="outputs: layer '../x' is given by no step"):
        Pipeline.from_yaml_text("schema_version: 1\n" + GOOD_STEPS.replace("[network]", "['../x']"))

    from geoseg.pipeline.outputs import output_paths

    for stem in ("../x", "a/b", "", "..", "/etc/x"):
        with pytest.raises(OutputWriteError, match="not usable as an output file name"):
            output_paths(["network"], out, stem, "shp")


def test_two_concurrent_runs_on_one_folder(tmp_path):
    """A second batch on a folder in use is refused at once; the first finishes intact."""
    scenes = [shutil.copy(SAMPLE_DATA / "scene_a_mask.tif", tmp_path / f"m{i}.tif") for i in range(4)]
    out = tmp_path / "out"
    first = _popen(["run", "mask_to_centerlines", *scenes, "-o", out, "--progress", "json", "--workers", "1"])
    try:
        event = {"event": "start"}
        while event["event"] != "progress":  # skip "start" and per-tile lines
            event = json.loads(first.stdout.readline())
        assert event["status"] == "done"  # one scene done: the first run holds the lock now
        first.send_signal(signal.SIGSTOP)  # keep it mid-batch, however fast the other scenes are
        try:
            rc, _, err = _finish(_popen(["run", "mask_to_centerlines", scenes[0], "-o", out, "--workers", "1"]), timeout=60)
        finally:
            first.send_signal(signal.SIGCONT)
        assert rc == 1 and f"geoseg: error: {out}: another geoseg batch is writing to this folder" in err
        rc1, rest, err1 = _finish(first)
    finally:
        if first.poll() is None:
            first.kill()
            first.communicate()
    assert rc1 == 0, err1
    assert [e["status"] for e in map(json.loads, rest.splitlines()) if e["event"] == "progress"] == ["done"] * 3
    assert {p.name for p in out.glob("*.shp")} == {f"m{i}{s}.shp" for i in range(4) for s in ("", "_nodes")}

    with _folder_lock(out), pytest.raises(OutputWriteError, match="another geoseg batch is writing"):
        run_batch(load_pipeline("mask_to_centerlines"), scenes[:1], out)
