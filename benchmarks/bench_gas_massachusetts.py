"""GAS latency-constrained search on the Massachusetts crops vs the hand-made classifiers at the same latency.

Run ``python benchmarks/bench_gas_massachusetts.py [--seeds 3] [--first-seed 0] [--target-ms auto]
[--threads 2] [--cache DIR]``. Data: ``shared/data/massachusetts_roads`` beside the repository
(skipped with a message when absent). Issue 22 asks for the seed modes on the stronger base
(200 labelled crops instead of 6 tiles); this is the GAS part.

Protocol (as :mod:`bench_massachusetts`): train on the 200 ``training_*`` crops, test on the 48
``validation_*`` crops with the shipped ``deep_road_centerlines`` pipeline; the last epoch is
kept. Every arm has the budget of the shipped hand-made recipes (``road_decouple.yaml``: 30 × 50
batches of 8 crops of 160 px at the 0.5 m working GSD, test-time augmentation), from scratch:

- ``baseline`` and ``decouple``: ``road_baseline.yaml`` / ``road_decouple.yaml`` as shipped;
- ``gas``: ``road_gas.yaml`` searched (its search budget, its GCN) for a latency target, the
  derived network then retrained with that same budget and working GSD. The shipped space
  (width 16) cannot reach the hand-made networks' latency: all its choices at their most
  expensive give about 20 ms per tile against the baseline's 100-120 ms. The search space here
  is therefore widened (``--gas-set space.width=48`` by default: 28 ms fixed + up to 98 ms of
  choices), so that the target binds.

The latency target (``--target-ms auto``) is the latency of the untrained ``baseline`` network,
measured here on one 512² tile (batch 1, ``--latency-threads`` torch threads): "the same
latency" as the lighter hand-made model. The ImageNet-pretrained ``road_general`` network is
timed too, for reference (its accuracy is in docs/RESULTS.md). Latency: median over 5
interleaved rounds of medians of 7 runs after warm-up; expect ±10-20 % noise on a shared machine.

Reported per arm, mean ± std over seeds: measured latency (ms per tile) and Mpx/s, pooled road
IoU, centerline quality at 2 px, parameters, training seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402

import bench_massachusetts as mass  # noqa: E402
from geoseg.nn.config import load_train_config  # noqa: E402
from geoseg.nn.fitting import new_model  # noqa: E402
from geoseg.nn.modelfile import NNModel, load_nn_model, save_nn_model  # noqa: E402
from geoseg.nn.search.config import load_search_config  # noqa: E402
from geoseg.nn.search.latency import build_lut, time_module  # noqa: E402
from geoseg.nn.search.run import run_gas  # noqa: E402
from geoseg.nn.search.space import SuperNet  # noqa: E402
from geoseg.nn.train import SceneData, train  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "pipelines" / "training"
TILE = 512
HAND_MADE = ("baseline", "decouple")
#: The hand-made recipes' data settings, given to every arm (GAS included): 1 m crops resampled to 0.5 m, 160 px crops.
DATA_SETTINGS = [f"data.gsd_m={mass.GSD_M}", "data.work_gsd_m=0.5", "data.crop_px=160", "inference.tta=true"]
_KEYS = (("ms", "ms/tile"), ("iou", "road IoU (pooled)"), ("qual", f"quality @{mass.SLACK_PX}px"), ("comp", "completeness"),
         ("corr", "correctness"), ("train_s", "train s"))  # fmt: skip


def _latency(modules: dict[str, torch.nn.Module], threads: int, rounds: int = 5) -> dict[str, float]:
    """Median ms per 512² tile (batch 1, ``threads`` torch threads) over interleaved rounds."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        x = torch.randn(1, 3, TILE, TILE)
        times: dict[str, list[float]] = {k: [] for k in modules}
        for _ in range(rounds):
            for name, module in modules.items():
                times[name].append(time_module(module.eval(), x, repeats=7, warmup=2))
        return {k: statistics.median(v) for k, v in times.items()}
    finally:
        torch.set_num_threads(before)


def _hand_made_config(arm: str, seed: int, args: argparse.Namespace):
    budget = [f"epochs={args.epochs}", f"iterations_per_epoch={args.iterations}"] if args.epochs else []
    return load_train_config(CONFIGS / f"road_{arm}.yaml", [f"seed={seed}", f"threads={args.threads}", *DATA_SETTINGS, *budget, "model.centerline_head=false"])


def _gas_config(seed: int, args: argparse.Namespace, target_ms: float):
    """road_gas.yaml with the hand-made recipes' data settings and retraining budget."""
    recipe = _hand_made_config("decouple", seed, args)
    budget = [f"retrain.epochs={recipe.epochs}", f"retrain.iterations_per_epoch={recipe.iterations_per_epoch}"]
    return load_search_config(CONFIGS / "road_gas.yaml", [f"seed={seed}", f"threads={args.threads}", *DATA_SETTINGS, *budget, f"latency.target_ms={target_ms}", *args.gas_set])


def _train_arm(arm: str, seed: int, args: argparse.Namespace, data: list[SceneData], target_ms: float, lut, path: Path) -> dict:
    """Train one arm for one seed into ``path``; the record of its search (GAS) and training time."""
    t0 = time.perf_counter()
    record: dict = {}
    if arm == "gas":
        res = run_gas(_gas_config(seed, args, target_ms), data, lut=lut)
        search = res.model.training["search"]
        record = {"predicted_ms": search["predicted_ms"], "genotype": search["genotype"]}
        save_nn_model(path, res.model)
    else:
        train(_hand_made_config(arm, seed, args), data, best_path=path, progress=False)
    return {**record, "train_s": time.perf_counter() - t0}


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its table; return the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--target-ms", default="auto", help="GAS latency target in ms per 512 px tile, or auto (the untrained baseline's measured latency)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads for search and training")
    parser.add_argument("--latency-threads", type=int, default=1, help="torch threads for the latency table and the timings")
    parser.add_argument("--cache", type=Path, default=None, help="folder keeping each arm's model file and record (an interrupted run resumes)")
    parser.add_argument("--gas-set", action="append", default=None, help="override of road_gas.yaml, e.g. search.gcn=false (default: space.width=48)")
    parser.add_argument("--arms", default="baseline,decouple,gas")
    parser.add_argument("--epochs", type=int, default=None, help="training budget of every arm (default: road_decouple.yaml's epochs, 30)")
    parser.add_argument("--iterations", type=int, default=None, help="iterations per epoch with --epochs (default 50)")
    parser.add_argument("--crops", type=int, default=None, help="use only the first N crops of each split (a smoke run)")
    args = parser.parse_args(argv)
    args.gas_set = ["space.width=48"] if args.gas_set is None else args.gas_set
    if args.epochs and not args.iterations:
        args.iterations = 50
    arms = [a for a in args.arms.split(",") if a]
    if unknown := [a for a in arms if a not in (*HAND_MADE, "gas")]:
        parser.error(f"unknown arm(s): {', '.join(unknown)}")
    if not mass.DATA.is_dir():
        print(f"SKIP: data folder {mass.DATA} not found (see shared/data/README.md).")
        return 0
    train_names, test_names = mass._names("training")[: args.crops], mass._names("validation")[: args.crops]
    data = [SceneData(mass._image(n), mass._mask(n).astype(np.uint8), mass.GSD_M, n) for n in train_names]
    torch.set_num_threads(args.threads)

    # Latency of the untrained hand-made networks (and of road_general's, for reference): the target.
    untrained = {arm: new_model(_hand_made_config(arm, 0, args), data, [1, 2, 3]).module for arm in HAND_MADE}
    general = load_train_config(CONFIGS / "road_general.yaml", [*DATA_SETTINGS, "model.pretrained=false"])
    untrained["road_general (Lite0)"] = new_model(general, data, [1, 2, 3]).module
    reference = _latency(untrained, args.latency_threads)
    print("untrained networks, ms per 512 px tile: " + ", ".join(f"{k} {v:.2f}" for k, v in reference.items()), flush=True)
    target = round(reference["baseline"], 1) if args.target_ms == "auto" else float(args.target_ms)

    lut = None
    if "gas" in arms:
        space = _gas_config(0, args, target).space
        net = SuperNet(3, 2, space.width, space.strides, space.nodes, space.ops)
        torch.set_num_threads(args.latency_threads)
        lut = build_lut(net, TILE, repeats=7, warmup=3, rounds=5)
        torch.set_num_threads(args.threads)
        most = sum(len(net.edges) * max(row.values()) for row in lut.ops)
        print(f"GAS latency table (space {args.gas_set}): fixed parts {lut.fixed_ms:.2f} ms, most expensive choice +{most:.2f} ms; target {target:g} ms", flush=True)
        if target >= lut.fixed_ms + most:
            print("WARNING: the target does not bind (every network of the space is faster): widen the space (--gas-set space.width=...)", flush=True)
    print(f"Massachusetts Roads: train {len(train_names)} crops, test {len(test_names)}; arms {arms}; seeds {args.first_seed}..{args.first_seed + args.seeds - 1}", flush=True)

    rows: dict[str, list[dict]] = {arm: [] for arm in arms}
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.cache or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            paths = {arm: folder / f"{arm}_seed{seed}.npz" for arm in arms}
            for arm in arms:
                saved = paths[arm].with_suffix(".json")
                if saved.is_file():
                    print(f"seed {seed} {arm}: from {paths[arm]}", flush=True)
                    continue
                record = {**_train_arm(arm, seed, args, data, target, lut, paths[arm])}
                record.update(mass.evaluate(paths[arm], test_names))
                saved.write_text(json.dumps(record))
            models: dict[str, NNModel] = {arm: load_nn_model(paths[arm]) for arm in arms}
            latency = _latency({arm: m.module for arm, m in models.items()}, args.latency_threads)
            for arm in arms:
                row = {**json.loads(paths[arm].with_suffix(".json").read_text()), "ms": latency[arm], "params": sum(p.numel() for p in models[arm].module.parameters())}
                rows[arm].append(row)
                extra = f"; LUT {row['predicted_ms']:.2f} ms; {' | '.join(row['genotype'])}" if arm == "gas" else ""
                print(f"seed {seed} {arm}: road IoU {row['iou']:.3f}, quality {row['qual']:.3f} (comp {row['comp']:.3f}, corr {row['corr']:.3f}), "
                      f"{row['ms']:.2f} ms per tile, {row['params']} parameters, {row['train_s']:.0f} s{extra}", flush=True)  # fmt: skip
    print(f"\n== mean ± std over {args.seeds} seed(s), {len(test_names)} test crops; latency per {TILE}² tile, batch 1, {args.latency_threads} thread(s) ==")
    print(f"{'arm':10s} " + " | ".join(label for _, label in _KEYS) + " | Mpx/s | params")
    for arm, rs in rows.items():
        cells = [f"{np.mean([r[k] for r in rs]):.3f} ± {np.std([r[k] for r in rs]):.3f}" for k, _ in _KEYS]
        ms = float(np.mean([r["ms"] for r in rs]))
        print(f"{arm:10s} " + " | ".join(cells) + f" | {TILE * TILE / ms / 1e3:.2f} | {rs[0]['params']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
