"""Batches on real Dask clusters: a LocalCluster of 2 worker processes, a worker that dies,
and a `dask scheduler` / `dask worker` pair driven through `geoseg run --scheduler`."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import cloudpickle
import pytest
from distributed.diagnostics.plugin import WorkerPlugin
from rasterio.crs import CRS

from geoseg.manifest import read_manifest
from geoseg.pipeline.batch import run_batch
from geoseg.pipeline.distributed import dask_client
from geoseg.pipeline.pipeline import Pipeline, load_pipeline
from geoseg.pipeline.registry import register_step
from tests.conftest import REPO, UTM_TRANSFORM, plus_mask, write_tif

PIPELINE = REPO / "pipelines" / "mask_to_centerlines.yaml"

cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import tests


def _scenes(folder: Path, names: list[str]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return [write_tif(folder / f"{n}.tif", plus_mask(width=8 + 2 * i), CRS.from_epsg(32633), UTM_TRANSFORM) for i, n in enumerate(names)]


@pytest.fixture(scope="module")
def client():
    with dask_client(workers=2) as c:
        yield c


def test_local_cluster_runs_scenes_as_tasks(client, tmp_path):
    assert len(client.nthreads()) == 2
    scenes = [*_scenes(tmp_path / "in", ["a", "b", "c"]), tmp_path / "in" / "missing.tif"]
    pipe = load_pipeline(PIPELINE)
    seen = []
    reports = run_batch(pipe, scenes, tmp_path / "dask", client=client, progress=lambda i, n, r: seen.append(i))
    assert seen == [1, 2, 3, 4]
    assert [r.status for r in reports] == ["done", "done", "done", "failed"]
    assert reports[3].error == f"{scenes[3]}: no such file"  # the geoseg message, not a Dask traceback
    here = run_batch(pipe, scenes[:3], tmp_path / "here")
    for on_dask, local in zip(reports, here):
        for a, b in zip(on_dask.outputs, local.outputs):
            for ext in (".shp", ".shx", ".dbf"):
                assert Path(a).with_suffix(ext).read_bytes() == Path(b).with_suffix(ext).read_bytes()
    manifest = read_manifest(tmp_path / "dask")
    assert [(s["input"], s["status"]) for s in manifest["scenes"]] == [(str(s), r.status) for s, r in zip(scenes, reports)]


def _crash_step_class() -> type:
    """A step that kills its worker process on scenes named ``boom*`` (else: threshold)."""
    from geoseg.steps.masks import ThresholdMask

    class CrashOnBoom(ThresholdMask):
        type_name = "crash_on_boom"

        def apply(self, layers, ctx):
            if Path(ctx.source).stem.startswith("boom"):
                os._exit(1)
            return super().apply(layers, ctx)

    return CrashOnBoom


class _RegisterCrashStep(WorkerPlugin):
    def setup(self, worker) -> None:
        register_step(_crash_step_class())


def test_a_dead_worker_fails_its_scene_and_the_batch_goes_on(client, tmp_path):
    register_step(_crash_step_class())
    client.register_plugin(_RegisterCrashStep(), name="geoseg-test-crash-step")
    pipe = Pipeline([{"type": "crash_on_boom"}, {"type": "skeletonize"}, {"type": "road_network"}])
    scenes = _scenes(tmp_path / "in", ["a", "boom", "c"])
    reports = run_batch(pipe, scenes, tmp_path / "out", client=client)
    assert [r.status for r in reports] == ["done", "failed", "done"]
    assert "worker running it died" in reports[1].error and "KilledWorker" in reports[1].error
    assert [s["status"] for s in read_manifest(tmp_path / "out")["scenes"]] == ["done", "failed", "done"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def test_geoseg_run_on_a_scheduler_worker_pair(tmp_path):
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    dask = [sys.executable, "-m", "dask"]
    logs = tmp_path / "logs"
    logs.mkdir()
    procs: list[subprocess.Popen] = []
    handles = []
    try:
        for name, args in (
            ("scheduler", ["scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"]),
            ("worker", ["worker", address, "--nworkers", "1", "--nthreads", "1", "--no-dashboard"]),
        ):
            log = open(logs / f"{name}.log", "w")  # noqa: SIM115 - closed in the finally block
            handles.append(log)
            procs.append(subprocess.Popen([*dask, *args], stdout=log, stderr=subprocess.STDOUT, cwd=REPO, start_new_session=True))
        scenes = _scenes(tmp_path / "in", ["a", "b"])
        out = tmp_path / "out"
        env = {**os.environ, "GEOSEG_SCHEDULER": address}
        res = subprocess.run(
            [sys.executable, "-m", "geoseg.cli", "run", "mask_to_centerlines", *map(str, scenes), "-o", str(out), "--progress", "none"],
            capture_output=True, text=True, cwd=REPO, env=env, timeout=120,
        )  # fmt: skip
        assert res.returncode == 0, res.stderr + (logs / "worker.log").read_text()
        assert f"using the Dask cluster at {address}" in res.stderr
        assert {p.name for p in out.glob("*.shp")} == {"a.shp", "a_nodes.shp", "b.shp", "b_nodes.shp"}
        assert [s["status"] for s in read_manifest(out)["scenes"]] == ["done", "done"]
        assert all(p.poll() is None for p in procs)  # geoseg left the cluster running
    finally:
        for proc in reversed(procs):
            _stop(proc)
        for handle in handles:
            handle.close()


def test_the_default_batch_starts_a_cluster_only_when_it_pays(client, tmp_path, monkeypatch):
    """Small scenes run here; once the rest would take long enough here, it runs on a cluster."""
    import geoseg.pipeline.batch as batch

    scenes = _scenes(tmp_path / "in", ["a", "b", "c", "d"])
    pipe = load_pipeline(PIPELINE)
    started = []

    @contextmanager
    def start():
        started.append(1)
        yield client

    small = run_batch(pipe, scenes, tmp_path / "small", cluster=batch.LocalCluster(2, start))
    assert not started and [r.status for r in small] == ["done"] * 4  # four plus-shaped masks: far below the start-up cost
    monkeypatch.setattr(batch, "CLUSTER_START_S", 0.0)  # a cluster that starts for free pays at once
    seen = []
    paid = run_batch(pipe, scenes, tmp_path / "paid", cluster=batch.LocalCluster(2, start), progress=lambda i, n, r: seen.append((i, n)))
    assert started == [1] and seen == [(1, 4), (2, 4), (3, 4), (4, 4)]  # the first scene here, then the cluster
    for here, there in zip(small, paid):
        assert there.status == "done" and Path(there.outputs[0]).read_bytes() == Path(here.outputs[0]).read_bytes()
