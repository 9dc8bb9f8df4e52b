"""GAS latency-constrained search on the Ottawa RoadNet tiles vs the hand-made classifiers.

Run ``python benchmarks/bench_gas_ottawa.py [--seeds 1] [--epochs 5] [--iterations 40]
[--targets auto|T1,T2] [--threads 1]``. Data: ``shared/data/ottawa_roadnet`` beside the
repository (skipped with a message when absent).

Protocol (as ``bench_deep_ottawa.py``): train on the first 6 tiles (sorted names), test on
the other 5. Arms, all retrained with the same budget (``--epochs`` × ``--iterations``
batches of 8 crops of 256 px; the shipped configs use 10 × 50, the default here is shorter
so the whole run fits in CPU minutes on a shared machine):

- ``gas``: ``pipelines/training/road_gas.yaml`` searched for each latency target, with and
  without the GCN (``search.gcn``), then retrained;
- ``baseline`` and ``decouple``: ``road_baseline.yaml`` / ``road_decouple.yaml`` (without the
  centerline head: road IoU is what is compared here).

The latency table is measured once and shared by all searches (so the targets mean the same
thing to each). ``--targets auto``  and sets three targets inside the range the
search space can reach: fixed parts + 10 %, 25 % and 50 % of the most expensive choice (the
uniform mixture at the start of the search sits near 45 %, so the last target barely binds).

Reported per arm: LUT-predicted latency (gas), latency **measured** on one 512² tile (batch 1,
``--threads`` torch threads, median over 5 interleaved rounds of medians of 7 runs after warm-up; the
machine is shared, so expect noise of ±10–20 %), the corresponding Mpx/s, and the road IoU of
``p(road) > 0.5`` averaged over the 5 test tiles (mean ± std over seeds). No validation-based
epoch selection (the last epoch is kept; the test tiles never influence training).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from geoseg.nn.config import load_train_config  # noqa: E402
from geoseg.nn.modelfile import NNModel, load_nn_model, save_nn_model  # noqa: E402
from geoseg.nn.search.config import load_search_config  # noqa: E402
from geoseg.nn.search.latency import LatencyTable, build_lut, time_module  # noqa: E402
from geoseg.nn.search.run import run_gas  # noqa: E402
from geoseg.nn.search.space import SuperNet  # noqa: E402
from geoseg.nn.fitting import evaluate_iou  # noqa: E402
from geoseg.nn.train import SceneData, train  # noqa: E402
from ottawa import DATA, TEST, TRAIN, scene  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "pipelines" / "training"
TILE = 512


def _test_iou(model: NNModel, tests: list[SceneData]) -> float:
    return float(np.mean([evaluate_iou(model, [t]) for t in tests]))


def _measure(models: dict[str, NNModel], rounds: int = 5) -> dict[str, float]:
    """Median latency (ms) per 512² tile, batch 1, over interleaved rounds."""
    x = torch.randn(1, 3, TILE, TILE)
    times: dict[str, list[float]] = {k: [] for k in models}
    for _ in range(rounds):
        for name, model in models.items():
            times[name].append(time_module(model.module.eval(), x, repeats=7, warmup=2))
    return {k: statistics.median(v) for k, v in times.items()}


def _table(overrides: list[str], cache: str | None) -> LatencyTable:
    cfg = load_search_config(CONFIGS / "road_gas.yaml", overrides)
    net = SuperNet(3, 2, cfg.space.width, cfg.space.strides, cfg.space.nodes, cfg.space.ops)
    saved = Path(cache) / "lut.json" if cache else None
    if saved is not None and saved.is_file():  # a resumed run keeps the table its earlier arms used
        d = json.loads(saved.read_text())
        lut = LatencyTable(d["op_names"], d["ops_ms"], d["fixed_ms"], d["tile_px"], d["device"], d["threads"])
    else:
        lut = build_lut(net, TILE, repeats=cfg.latency.repeats, warmup=cfg.latency.warmup, rounds=5)
        if saved is not None:
            saved.parent.mkdir(parents=True, exist_ok=True)
            saved.write_text(json.dumps({**lut.to_dict(), "op_names": lut.op_names}))
    most = sum(len(net.edges) * max(row.values()) for row in lut.ops)
    print(f"latency table (shared by all searches): fixed parts {lut.fixed_ms:.2f} ms, most expensive choice +{most:.2f} ms", flush=True)
    for k, row in enumerate(lut.ops):
        print(f"  cell {k}: " + ", ".join(f"{n} {v:.2f}" for n, v in row.items()), flush=True)
    return lut


def _cache_file(cache: str, name: str, seed: int, suffix: str) -> Path:
    return Path(cache) / f"{name.replace(' ', '_')}_seed{seed}{suffix}"


def _cached(cache: str | None, name: str, seed: int, models: dict[str, NNModel], info: dict[str, dict]) -> bool:
    """Load an arm's model and timings from the cache folder when present."""
    if cache is None or not _cache_file(cache, name, seed, ".json").is_file():
        return False
    models[name] = load_nn_model(_cache_file(cache, name, seed, ".npz"))
    info[name] = json.loads(_cache_file(cache, name, seed, ".json").read_text())
    print(f"seed {seed} {name}: from {_cache_file(cache, name, seed, '.npz')}", flush=True)
    return True


def _store(cache: str | None, name: str, seed: int, model: NNModel, record: dict) -> None:
    if cache is None:
        return
    Path(cache).mkdir(parents=True, exist_ok=True)
    save_nn_model(_cache_file(cache, name, seed, ".npz"), model)
    _cache_file(cache, name, seed, ".json").write_text(json.dumps(record))


def _auto_targets(lut: LatencyTable, edges: int) -> list[float]:
    most = sum(edges * max(row.values()) for row in lut.ops)
    return [round(lut.fixed_ms + f * most, 1) for f in (0.1, 0.25, 0.5)]


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the table; return the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--iterations", type=int, default=40)
    parser.add_argument("--targets", default="auto", help="comma-separated ms per 512 px tile, or auto")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cache", default=None, help="folder keeping each arm's model file (and timings) to resume an interrupted run")
    parser.add_argument("--gas-set", action="append", default=[], help="override of road_gas.yaml, e.g. search.epochs=2")
    args = parser.parse_args(argv)
    if not DATA.is_dir():
        print(f"SKIP: data folder {DATA} not found (see shared/data/README.md).")
        return 0
    torch.set_num_threads(args.threads)
    common = [f"threads={args.threads}", "data.gsd_m=0.21"]
    budget = [f"epochs={args.epochs}", f"iterations_per_epoch={args.iterations}"]
    gas_budget = [f"retrain.epochs={args.epochs}", f"retrain.iterations_per_epoch={args.iterations}"]
    lut = _table(common, args.cache)
    targets = _auto_targets(lut, 3) if args.targets == "auto" else [float(t) for t in args.targets.split(",")]
    print(f"Ottawa RoadNet: train {len(TRAIN)} tiles, test {len(TEST)}; torch threads {args.threads}; budget {args.epochs} x {args.iterations} "
          f"batches of 8 x 256 px; targets {targets} ms per {TILE} px tile", flush=True)  # fmt: skip
    train_data, tests = [scene(t) for t in TRAIN], [scene(t) for t in TEST]
    rows: dict[str, list[dict]] = {}
    for seed in range(args.seeds):
        models: dict[str, NNModel] = {}
        info: dict[str, dict] = {}
        for target in targets:
            for gcn in (True, False):
                name = f"gas {target:g} ms {'gcn' if gcn else 'no-gcn'}"
                if _cached(args.cache, name, seed, models, info):
                    continue
                cfg = load_search_config(CONFIGS / "road_gas.yaml", [*common, *gas_budget, f"seed={seed}", f"latency.target_ms={target}", f"search.gcn={str(gcn).lower()}", *args.gas_set])
                t0 = time.perf_counter()
                res = run_gas(cfg, train_data, lut=lut)
                s = res.model.training["search"]
                info[name] = {"predicted": s["predicted_ms"], "searched_measured": s["measured_ms"], "seconds": time.perf_counter() - t0, "genotype": s["genotype"]}
                models[name] = res.model
                _store(args.cache, name, seed, res.model, info[name])
                print(f"seed {seed} {name}: {info[name]['seconds']:.0f} s; LUT {s['predicted_ms']:.2f} ms, measured after search {s['measured_ms']:.2f} ms", flush=True)
                for line in s["genotype"]:
                    print(f"    {line}", flush=True)
        for arm in ("baseline", "decouple"):
            if _cached(args.cache, arm, seed, models, info):
                continue
            t0 = time.perf_counter()
            # road IoU only: the shipped decouple config's centerline head needs centerline rasters, not used here
            # on the GAS network's grid and crops: the scenes' 0.21 m, 256 px, no test-time augmentation
            native = ["data.work_gsd_m=null", "data.crop_px=256", "inference.tta=false"]
            cfg = load_train_config(CONFIGS / f"road_{arm}.yaml", [*common, *budget, *native, f"seed={seed}", "model.centerline_head=false"])
            models[arm] = train(cfg, train_data, progress=False).model
            info[arm] = {"seconds": time.perf_counter() - t0}
            _store(args.cache, arm, seed, models[arm], info[arm])
            print(f"seed {seed} {arm}: {info[arm]['seconds']:.0f} s", flush=True)
        latency = _measure(models)
        for name, model in models.items():
            row = {**info[name], "ms": latency[name], "iou": _test_iou(model, tests), "params": sum(p.numel() for p in model.module.parameters())}
            rows.setdefault(name, []).append(row)
            print(f"seed {seed} {name}: IoU {row['iou']:.3f}, {row['ms']:.2f} ms per tile, {row['params']} parameters", flush=True)
    print(f"\n== {args.seeds} seed(s), {len(TEST)} test tiles, latency per {TILE}x{TILE} tile (batch 1, {args.threads} thread(s), medians) ==")
    print(f"{'model':24s} {'LUT ms':>7s} {'meas. ms':>9s} {'Mpx/s':>7s} {'road IoU':>15s} {'params':>9s} {'time s':>7s}")
    for name, rs in rows.items():
        pred = f"{np.mean([r['predicted'] for r in rs]):7.2f}" if "predicted" in rs[0] else f"{'-':>7s}"
        ms = float(np.mean([r["ms"] for r in rs]))
        iou = [r["iou"] for r in rs]
        print(f"{name:24s} {pred} {ms:9.2f} {TILE * TILE / ms / 1e3:7.2f} {np.mean(iou):7.3f} ± {np.std(iou):.3f} {rs[0]['params']:9d} {np.mean([r['seconds'] for r in rs]):7.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
