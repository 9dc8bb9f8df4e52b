"""Speed of the road chain against plain thinning, measured in the same run (issue 18).

Run ``python benchmarks/bench_speed.py [--size 4096] [--repeats 3]``. Needs ``sknw`` (``pip
install sknw``; the anchor only) and ``../shared/data/ottawa_roadnet/masks`` (skipped with a
message when absent).

Figures, each beside its anchor and as a ratio (``--goals`` picks them; ``--repeats`` runs,
medians):

1. **mask → network**: ``geoseg run mask_to_centerlines`` with CLI defaults on a mosaic of
   the real Ottawa road masks (each 512² mask mirrored into a 1024² block so that roads join
   across blocks; blocks cycle through the 11 masks), GeoTIFF at 0.21 m in EPSG:32618.
   Anchor: read the same file, scikit-image ``skeletonize`` + ``sknw`` graph, in this
   process with the JIT warm. Also the peak RSS of the geoseg run (goal ≤ 1 GB) and, for
   information, the same pipeline through the Python API in this process after a warm-up run
   (the anchor's condition: no interpreter start-up, imports or files).
2. **image → network**: ``road_centerlines`` with the sample MJCR model on a generated
   ``--size``² scene at 0.3 m, against the anchor on that scene's road mask (goal ≤ 10×).
3. **deep chain**: ``deep_road_centerlines`` with a model of the shipped ``road_decouple``
   config (trained briefly on the sample scene B here) on a generated ``--deep-size``² scene
   at 0.3 m, with ``tta=false`` (goal ≥ 1 Mpx/s) and with TTA (goal ≥ 0.3 Mpx/s). A fresh
   cache folder is used, so the first run shows what converting a new model to ONNX costs
   (once per model file); the goals are read from the runs after it.
4. **halo overhead**: each pass's read-area ratio from the ``-v`` logs of the runs above
   (goal ≤ 1.5).
5. **defaults that pay**: the default execution against ``--workers 1`` on one 512² mask,
   ten 512² masks and one ``--large``² mosaic; cores used (CPU time over wall time).
6. **start-up**: ``geoseg --help``, ``geoseg --version`` and the one-line error for a
   missing input, wall time and whether torch, geopandas, scipy or dask were imported.

Goal 7 (training throughput) is measured by ``benchmarks/bench_train_epoch.py``.

Before it measures, it compiles the ``geoseg`` package it runs to bytecode, as pip does when it
installs the wheel: a checkout run with ``PYTHONDONTWRITEBYTECODE`` set (as on the machine
here) would otherwise compile geoseg's modules again at every start, up to 0.4 s that an
installed geoseg never pays. ``--no-compile`` measures without.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np
import rasterio
from affine import Affine
from PIL import Image
from rasterio.crs import CRS

MASKS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ottawa_roadnet" / "masks"
GSD_M = 0.21
SAMPLE = Path(__file__).resolve().parents[1] / "sample_data"
SAMPLE_MODEL = SAMPLE / "roads.mjcr.npz"
HEAVY = ("torch", "geopandas", "scipy", "dask")


def build_mosaic(size: int, path: Path) -> None:
    """The mosaic of mirrored Ottawa masks (0/255, deflate-compressed tiled GeoTIFF)."""
    blocks = []
    for tile in sorted(MASKS.glob("*.png")):
        mask = (np.asarray(Image.open(tile)) > 127).astype(np.uint8) * 255
        top = np.concatenate([mask, mask[:, ::-1]], axis=1)
        blocks.append(np.concatenate([top, top[::-1]], axis=0))
    n = size // 1024
    rows = [np.concatenate([blocks[(i * n + j) % len(blocks)] for j in range(n)], axis=1) for i in range(n)]
    profile = dict(driver="GTiff", width=size, height=size, count=1, dtype="uint8", crs=CRS.from_epsg(32618),
                   transform=Affine(GSD_M, 0, 500000, 0, -GSD_M, 5030000), tiled=True, blockxsize=256, blockysize=256, compress="deflate")  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(np.concatenate(rows, axis=0), 1)


def anchor(path: Path) -> tuple[float, int]:
    """Seconds to read the mask, skeletonize it and build the sknw graph; the graph's edge count."""
    import sknw
    from skimage.morphology import skeletonize

    t0 = time.perf_counter()
    with rasterio.open(path) as src:
        mask = src.read(1) > 0
    graph = sknw.build_sknw(skeletonize(mask))
    return time.perf_counter() - t0, graph.number_of_edges()


def geoseg_run(inputs: list[Path], outdir: Path, sets: list[str], pipeline: str = "mask_to_centerlines", extra: list[str] | None = None) -> Run:
    """``geoseg run PIPELINE INPUTS -o OUTDIR -v`` with ``--set`` items: wall time, peak RSS, cores used, read ratios."""
    args = [*map(str, inputs), "-o", str(outdir), "-v", "--overwrite", "--progress", "none", *(extra or [])]
    args += [a for item in sets for a in ("--set", item)]
    code = (
        "import resource, subprocess, sys, time; t = time.perf_counter(); "
        f"r = subprocess.run(['geoseg', 'run', {pipeline!r}, *{args!r}], stderr=subprocess.PIPE, text=True); "
        "dt = time.perf_counter() - t; u = resource.getrusage(resource.RUSAGE_CHILDREN); "
        "print(dt, u.ru_maxrss, u.ru_utime + u.ru_stime, r.returncode); print(r.stderr, file=sys.stderr)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    seconds, rss, cpu, rc = done.stdout.split()
    if rc != "0":
        raise SystemExit(f"geoseg run {pipeline} failed on {inputs[0]}:\n{done.stderr[-2000:]}")
    ratios = [float(m) for m in re.findall(r"reads ([0-9.]+)x the pass's pixels", done.stderr)]
    return Run(float(seconds), int(rss) / 1024**2, float(cpu) / float(seconds), ratios)


class Run(NamedTuple):
    """One ``geoseg run``: seconds, peak RSS (GB), cores used (CPU time / wall time), each pass's read-area ratio."""

    seconds: float
    peak_gb: float
    cores: float
    read_ratios: list[float]


def skeleton_anchor(mask_path: Path, repeats: int) -> float:
    """Median seconds of :func:`anchor` on a mask file (after a JIT warm-up)."""
    anchor(mask_path)
    return statistics.median(anchor(mask_path)[0] for _ in range(repeats))


def write_scene(path: Path, array: np.ndarray, gsd_m: float) -> Path:
    """A ``(bands, rows, cols)`` uint8 array as a tiled, deflate-compressed GeoTIFF in EPSG:32633."""
    profile = dict(driver="GTiff", width=array.shape[2], height=array.shape[1], count=array.shape[0], dtype="uint8", crs=CRS.from_epsg(32633),
                   transform=Affine(gsd_m, 0, 500000, 0, -gsd_m, 5000000), tiled=True, blockxsize=256, blockysize=256, compress="deflate")  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(array)
    return path


def generated_scene(size: int, folder: Path, seed: int = 7) -> tuple[Path, Path]:
    """A generated RGB scene at 0.3 m and its road mask (0/255), as GeoTIFFs."""
    from geoseg.synthetic import render_scene

    scene = render_scene(size, size, gsd_m=0.3, seed=seed)
    image = write_scene(folder / f"generated_{size}.tif", scene.image, 0.3)
    mask = write_scene(folder / f"generated_{size}_mask.tif", (scene.road_mask * 255).astype(np.uint8)[None], 0.3)
    return image, mask


def _ratio_line(label: str, run: Run, mpx: float, anchor_s: float | None, goal: str) -> str:
    versus = f", {run.seconds / anchor_s:.1f}x the anchor" if anchor_s else ""
    return f"{label:58s} {run.seconds:7.2f} s ({mpx / run.seconds:5.2f} Mpx/s, {run.cores:.1f} cores, peak RSS {run.peak_gb:.2f} GB){versus}  [{goal}]"


def goal_image_to_network(tmp: Path, size: int, repeats: int) -> list[Run]:
    """Goal 2: road_centerlines with the sample model on a generated scene, against the anchor on its mask."""
    image, mask = generated_scene(size, tmp)
    a = skeleton_anchor(mask, repeats)
    run = geoseg_run([image], tmp / "out2", [f"model={SAMPLE_MODEL}"], "road_centerlines")
    mpx = size**2 / 1e6
    print(f"\n== 2. image -> network, generated {size}^2 scene at 0.3 m ({mpx:.1f} Mpx), one run ==")
    print(f"anchor  skeletonize + sknw on the scene's road mask: {a:6.2f} s")
    print(_ratio_line("geoseg  run road_centerlines --set model=sample_data/roads.mjcr.npz", run, mpx, a, "goal <= 10x"))
    return [run]


def goal_deep_chain(tmp: Path, size: int, repeats: int) -> list[Run]:
    """Goal 3: deep_road_centerlines with a road_decouple model on a generated scene at 0.3 m, with and without TTA.

    The model is the shipped architecture trained briefly on the sample scene B (speed does not
    depend on how well it is trained, only on the network and on what it finds). The model's
    first run converts it to ONNX (once per model file, kept in the cache folder) and is shown
    apart; each goal's figure is the median of ``repeats`` runs after it.
    """
    model = tmp / "decouple.nn.npz"
    train = ["geoseg", "train", "nn", "road_decouple", "--images", str(SAMPLE / "scene_b.tif"), "--masks", str(SAMPLE / "scene_b_mask.tif"),
             "-o", str(model), "--no-progress", "--set", "epochs=2", "--set", "iterations_per_epoch=20"]  # fmt: skip
    subprocess.run(train, check=True, capture_output=True)
    image, _ = generated_scene(size, tmp, seed=11)
    mpx = size**2 / 1e6
    os.environ["GEOSEG_CACHE_DIR"] = str(tmp / "cache")  # a fresh cache folder: the first run converts the model to ONNX
    print(f"\n== 3. deep chain, generated {size}^2 scene at 0.3 m ({mpx:.1f} Mpx), median of {repeats} run(s) each ==")
    first = geoseg_run([image], tmp / "out3", [f"model={model}", "nn_classify.tta=false"], "deep_road_centerlines")
    label = "geoseg  run deep_road_centerlines, tta=false, the model's first run (converts it to ONNX, cached)"
    print(_ratio_line(label, first, mpx, None, "no goal: once per model file"))
    runs = []
    for label, sets, goal in (("tta=false", ["nn_classify.tta=false"], "goal >= 1 Mpx/s"), ("with TTA (default)", [], "goal >= 0.3 Mpx/s")):
        repeated = [geoseg_run([image], tmp / "out3", [f"model={model}", *sets], "deep_road_centerlines") for _ in range(repeats)]
        run = sorted(repeated, key=lambda r: r.seconds)[len(repeated) // 2]
        print(_ratio_line(f"geoseg  run deep_road_centerlines, {label}", run, mpx, None, goal) + f"  runs: {' '.join(f'{r.seconds:.2f}' for r in repeated)} s")
        runs.append(run)
    return [first, *runs]


def goal_defaults(tmp: Path, large: Path, repeats: int) -> None:
    """Goal 5: the default execution against ``--workers 1``: one small scene, ten small scenes, one large scene."""
    small = sorted(MASKS.glob("*.png"))[:10]
    smalls = [write_scene(tmp / f"small_{i}.tif", ((np.asarray(Image.open(p)) > 127) * 255).astype(np.uint8)[None], GSD_M) for i, p in enumerate(small)]
    print(f"\n== 5. default execution against --workers 1 (median of {repeats}) ==")
    for label, inputs in (("one 512^2 mask", smalls[:1]), ("ten 512^2 masks", smalls), (f"one {_side(large)}^2 mosaic", [large])):
        times = {}
        for name, extra in (("default", []), ("--workers 1", ["--workers", "1"])):
            measured = [geoseg_run(inputs, tmp / "out5", [], extra=extra) for _ in range(repeats)]
            times[name] = (statistics.median(r.seconds for r in measured), max(r.cores for r in measured))
        (d, dc), (w, wc) = times["default"], times["--workers 1"]
        print(f"{label:20s} default {d:7.2f} s ({dc:.1f} cores)   --workers 1 {w:7.2f} s ({wc:.1f} cores)   default/workers-1 {d / w:.2f}  [goal <= 1]")


def compile_package() -> None:
    """Compile the ``geoseg`` that ``geoseg`` on the PATH imports to bytecode (``__pycache__``), as a wheel install does."""
    import compileall

    probe = subprocess.run([sys.executable, "-c", "import geoseg, os; print(os.path.dirname(geoseg.__file__))"], capture_output=True, text=True, check=True)
    package = probe.stdout.strip()
    compileall.compile_dir(package, quiet=1)
    print(f"(geoseg's modules in {package} compiled to bytecode, as pip does when it installs the wheel; --no-compile to skip)")


def _side(path: Path) -> int:
    with rasterio.open(path) as src:
        return src.width


def startup(args: list[str]) -> tuple[float, list[str]]:
    """Wall time of ``geoseg ARGS`` and the heavy modules it imported."""
    probe = (
        "import sys; sys.argv = ['geoseg', *sys.argv[1:]]\n"
        "from geoseg.cli.main import cli\n"
        "try:\n    cli()\n"
        "except SystemExit:\n    pass\n"
        f"print('IMPORTED', *[m for m in {HEAVY!r} if m in sys.modules], file=sys.stderr)"
    )
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", probe, *args], capture_output=True, text=True, check=False)
    dt = time.perf_counter() - t0
    line = [ln for ln in done.stderr.splitlines() if ln.startswith("IMPORTED")][-1]
    return dt, line.split()[1:]


def goal_mask_to_network(tmp: Path, size: int, repeats: int, native: bool) -> tuple[Path, list[Run]]:
    """Goal 1: mask_to_centerlines with the CLI defaults on the Ottawa mosaic, against the anchor on the same file."""
    scene = tmp / f"ottawa_mosaic_{size}.tif"
    build_mosaic(size, scene)
    anchor(scene)  # JIT warm-up
    variants = {"(CLI defaults: pixel blocks)": [], **({"--set work_road_px=null (own pixels)": ["work_road_px=null"]} if native else {})}
    anchors: list[float] = []
    runs: dict[str, list[Run]] = {name: [] for name in variants}
    edges = 0
    for _ in range(repeats):
        seconds, edges = anchor(scene)
        anchors.append(seconds)
        for name, sets in variants.items():
            if not sets or not runs[name]:  # the slow run on the own pixels once
                runs[name].append(geoseg_run([scene], tmp / "out1", sets))
    a = statistics.median(anchors)
    mpx = size**2 / 1e6
    print(f"== 1. mask -> network, {size}^2 Ottawa mask mosaic ({mpx:.1f} Mpx), median of {repeats} ==")
    print(f"anchor  skeletonize + sknw (in process, JIT warm): {a:6.2f} s  ({mpx / a:5.2f} Mpx/s, {edges} edges)")
    for name, measured in runs.items():
        median = sorted(measured, key=lambda r: r.seconds)[len(measured) // 2]
        run = median._replace(peak_gb=max(r.peak_gb for r in measured))
        print(_ratio_line(f"geoseg  run mask_to_centerlines {name}", run, mpx, a, "goal <= 2x, RSS <= 1 GB"))
    warm = in_process_runs(scene, repeats)
    print(f"geoseg  Pipeline.run in this process, warm as the anchor (no files written; not the goal's figure): {warm:6.2f} s  "
          f"({mpx / warm:5.2f} Mpx/s)  {warm / a:5.1f}x")  # fmt: skip
    return scene, [r for measured in runs.values() for r in measured]


def in_process_runs(scene: Path, repeats: int) -> float:
    """Median seconds of ``mask_to_centerlines`` through the Python API in this process, after one warm-up run.

    The same condition as the anchor's (imports done, caches warm): what the pipeline itself
    costs without the CLI's start-up (interpreter, imports) and without writing files.
    """
    import geoseg

    pipeline = geoseg.load_pipeline("mask_to_centerlines")
    pipeline.run(scene)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        pipeline.run(scene)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> int:
    """Print each figure beside its anchor; return the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=4096, help="side of the mask mosaic and of the generated scene of goal 2 (a multiple of 1024)")
    parser.add_argument("--deep-size", type=int, default=2048, help="side of the generated scene of goal 3")
    parser.add_argument("--large", type=int, default=8192, help="side of the large mosaic of goal 5")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--goals", default="1,2,3,4,5,6", help="comma-separated goals to measure (7: benchmarks/bench_train_epoch.py)")
    parser.add_argument("--native", action="store_true", help="goal 1: also time the run on the scene's own pixels (about 70 s at 4096²)")
    parser.add_argument("--no-compile", action="store_true", help="leave geoseg's modules uncompiled (an installed wheel has them compiled)")
    args = parser.parse_args()
    if not args.no_compile:
        compile_package()
    goals = {int(g) for g in args.goals.split(",")}
    if not MASKS.is_dir():
        print(f"SKIP: {MASKS} not found (see shared/data/README.md)")
        return 0
    try:
        import sknw  # noqa: F401
    except ImportError:
        print("SKIP: the anchor needs sknw (pip install sknw)")
        return 0
    halo_runs: list[tuple[str, Run]] = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        if goals & {1, 4}:
            _, runs = goal_mask_to_network(tmp, args.size, args.repeats, args.native)
            halo_runs += [("mask_to_centerlines", r) for r in runs]
        if goals & {2, 4}:
            halo_runs += [("road_centerlines", r) for r in goal_image_to_network(tmp, args.size, args.repeats)]
        if goals & {3, 4}:
            halo_runs += [("deep_road_centerlines", r) for r in goal_deep_chain(tmp, args.deep_size, args.repeats)]
        if 4 in goals:
            print("\n== 4. halo overhead: pixels each pass reads over its pixels (runs above, -v logs) ==")
            for name, run in halo_runs:
                print(f"{name:24s} passes {' '.join(f'{r:.2f}' for r in run.read_ratios)}   max {max(run.read_ratios):.2f}  [goal <= 1.5]")
        if 5 in goals:
            large = tmp / f"ottawa_mosaic_{args.large}.tif"
            build_mosaic(args.large, large)
            goal_defaults(tmp, large, args.repeats)
    if 6 in goals:
        print("\n== 6. start-up (one run each) ==")
        missing_out = Path(tempfile.mkdtemp()) / "out"  # a fresh folder: no manifest of an earlier run to honour
        for cmd in (["--help"], ["--version"], ["run", "mask_to_centerlines", "/nonexistent/scene.tif", "-o", str(missing_out)]):
            seconds, heavy = startup(cmd)
            print(f"geoseg {' '.join(cmd):58s} {seconds:5.2f} s  heavy imports: {', '.join(heavy) or 'none'}  [goal: none]")
    print(f"\n(this process: peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2:.2f} GB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
