"""Quantized road classifiers on the Ottawa RoadNet tiles: GDRQ, min-max and BP-NAS vs float.

Run ``nice -n 10 python benchmarks/bench_quant_ottawa.py [--seeds 3] [--float-set k=v ...]
[--set k=v ...] [--png out.png]``. Data: ``shared/data/ottawa_roadnet`` beside the repository
(skipped with a message when absent).

Protocol (CPU-sized; every budget is printed with the results):

- per seed, one float model is trained with ``pipelines/training/road_baseline.yaml`` on the
  first 6 tiles (sorted names) with the overrides in :data:`FLOAT_SET` (smaller crops and
  fewer iterations than the shipped config, to fit the shared 2-core machine), and shared by
  every quantized arm of that seed;
- arms: fp32; fp32 + fine-tuning (the float model trained further with the quantization
  arms' fine-tuning loop and budget, without quantization: the fair reference, since every
  quantized arm gets that extra training); GDRQ W8A8 / W4A4 / W2A2; plain min-max uniform quantization at the same bits
  with the **same** quantization-aware fine-tuning budget; BP-NAS at 3 BitOPs budgets (each
  searched then fine-tuned with GDRQ, same fine-tuning budget). The first convolution and the
  output convolutions stay at 8 bits in every quantized arm (``ends_bits``);
- budgets (BitOPs per 512×512 tile) are set from the uniform configurations' exact BitOPs:
  midway between W2A2 and W4A4, equal to W4A4, midway between W4A4 and W8A8;
- scores: road IoU (``p(road) > 0.5``) pooled over the other 5 tiles, of the model **as
  loaded from its file** (packed weights, folded BN, simulated integer arithmetic); the file
  size; exact BitOPs. Mean ± std over seeds 0..n-1.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

from geoseg.nn.config import load_train_config  # noqa: E402
from geoseg.nn.modelfile import load_nn_model  # noqa: E402
from geoseg.nn.quant.bitops import total_bitops  # noqa: E402
from geoseg.nn.quant.bpnas import search_bits  # noqa: E402
from geoseg.nn.quant.gdrq import layer_plan, load_quant_config, quantize_finetune, uniform_bits  # noqa: E402
from geoseg.nn.quant.qat import LayerBits  # noqa: E402
from geoseg.nn.quant.qmodelfile import save_quantized  # noqa: E402
from geoseg.nn.fitting import evaluate_iou  # noqa: E402
from geoseg.nn.train import train  # noqa: E402
from ottawa import DATA, TEST, TRAIN, scene  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
#: Float training budget (overrides of road_baseline.yaml): 300 batches of 8 crops of 128 px at the scenes' 0.21 m.
FLOAT_SET = ["threads=1", "epochs=6", "iterations_per_epoch=50", "data.crop_px=128", "data.batch_size=8", "data.work_gsd_m=null", "inference.tta=false"]
#: Quantization budget: 60 fine-tuning batches of 8 crops of 128 px, a 60-batch search.
QUANT_SET = ["threads=1", "iterations=60", "crop_px=128", "batch_size=8", "search.iterations=60"]
UNIFORM = (8, 4, 2)


def _ms(values: list[float], fmt: str = ".3f") -> str:
    return f"{np.mean(values):{fmt}} ± {np.std(values):{fmt}}"


def _plot(path: Path, points: dict[str, list[tuple[float, float]]]) -> None:
    """IoU vs BitOPs (log axis) scatter with PIL: one colour per arm family, mean points."""
    w, h, m = 900, 560, 70
    img = Image.new("RGB", (w, h), "white")
    d = ImageDraw.Draw(img)
    xs = [x for pts in points.values() for x, _ in pts]
    ys = [y for pts in points.values() for _, y in pts]
    lx0, lx1 = np.log10(min(xs)) - 0.1, np.log10(max(xs)) + 0.1
    y0, y1 = max(0.0, min(ys) - 0.05), min(1.0, max(ys) + 0.05)

    def to_px(x: float, y: float) -> tuple[float, float]:
        return m + (np.log10(x) - lx0) / (lx1 - lx0) * (w - 2 * m), h - m - (y - y0) / (y1 - y0) * (h - 2 * m)

    d.rectangle([m, m, w - m, h - m], outline="black")
    for e in range(int(np.ceil(lx0)), int(np.floor(lx1)) + 1):
        px, _ = to_px(10.0**e, y0)
        d.line([px, h - m, px, h - m + 5], fill="black")
        d.text((px - 12, h - m + 8), f"1e{e}", fill="black")
    for t in np.linspace(y0, y1, 6):
        _, py = to_px(10.0**lx0, t)
        d.line([m - 5, py, m, py], fill="black")
        d.text((8, py - 6), f"{t:.2f}", fill="black")
    d.text((w // 2 - 120, h - 30), "BitOPs per 512x512 tile (log scale)", fill="black")
    d.text((8, 20), "road IoU (test tiles, mean over seeds)", fill="black")
    colours = {"fp32": "black", "GDRQ": "blue", "min-max": "red", "BP-NAS": "green"}
    for i, (family, pts) in enumerate(points.items()):
        c = colours.get(family, "gray")
        for x, y in pts:
            px, py = to_px(x, y)
            d.ellipse([px - 5, py - 5, px + 5, py + 5], fill=c)
        if len(pts) > 1 and family != "fp32":
            d.line([to_px(x, y) for x, y in sorted(pts)], fill=c, width=2)
        d.rectangle([w - m - 150, m + 10 + 18 * i, w - m - 140, m + 20 + 18 * i], fill=c)
        d.text((w - m - 132, m + 8 + 18 * i), family, fill="black")
    img.save(path)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the tables; return the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--float-set", dest="float_set", action="append", default=[], help="float training override")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="quantization setting override")
    parser.add_argument("--png", default=str(REPO / "benchmarks" / "results" / "quant_ottawa_iou_bitops.png"))
    args = parser.parse_args(argv)
    if not DATA.is_dir():
        print(f"SKIP: data folder {DATA} not found (see shared/data/README.md).")
        return 0
    torch.set_num_threads(1)
    t_start = time.perf_counter()
    print(f"Ottawa RoadNet: train {len(TRAIN)} tiles, test {len(TEST)} tiles; float {FLOAT_SET + args.float_set}; quant {QUANT_SET + args.overrides}", flush=True)
    train_data = [scene(t) for t in TRAIN]
    test_data = [scene(t) for t in TEST]
    rows: dict[str, list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.seeds):
            cfg = load_train_config(REPO / "pipelines" / "training" / "road_baseline.yaml", [f"seed={seed}", *FLOAT_SET, *args.float_set])
            t0 = time.perf_counter()
            fpath = Path(tmp) / f"float{seed}.npz"
            train(cfg, train_data, best_path=fpath, progress=False)
            model = load_nn_model(fpath)
            qcfg = load_quant_config(None, [f"seed={seed}", *QUANT_SET, *args.overrides])
            macs, ends = layer_plan(model, qcfg.bitops_tile_px)
            fbits = total_bitops(macs, {})
            rows.setdefault("fp32", []).append({"iou": evaluate_iou(model, test_data), "bytes": fpath.stat().st_size, "bitops": fbits})
            print(f"seed {seed} fp32: IoU {rows['fp32'][-1]['iou']:.3f}, {fpath.stat().st_size:,} B, {fbits:.3g} BitOPs ({time.perf_counter() - t0:.0f} s)", flush=True)
            uni_cost = {b: total_bitops(macs, {n: (v.w_bits, v.a_bits) for n, v in uniform_bits(macs, ends, b, b, qcfg.ends_bits).items()}) for b in UNIFORM}
            budgets = {"B1 (W2A2..W4A4)": 0.5 * (uni_cost[2] + uni_cost[4]), "B2 (=W4A4)": float(uni_cost[4]), "B3 (W4A4..W8A8)": 0.5 * (uni_cost[4] + uni_cost[8])}
            arms: list[tuple[str, object, str, dict | None]] = []
            for b in UNIFORM:
                arms.append((f"GDRQ W{b}A{b}", uniform_bits(macs, ends, b, b, qcfg.ends_bits), "gdrq", None))
            for b in UNIFORM:
                arms.append((f"min-max W{b}A{b}", uniform_bits(macs, ends, b, b, qcfg.ends_bits), "minmax", None))
            for label, budget in budgets.items():
                t1 = time.perf_counter()
                found = search_bits(model, train_data, budget, qcfg, progress=False)
                s = found.summary()
                print(f"seed {seed} BP-NAS {label}: budget {budget:.4g}, found {found.bitops:.4g} (argmax {found.argmax_bitops:.4g}, "
                      f"{len(found.repairs)} repairs, {found.rejected_steps} rejected steps, max E/B {s['max_expected_ratio']:.3f}) "
                      f"({time.perf_counter() - t1:.0f} s)", flush=True)  # fmt: skip
                assert found.bitops <= budget, "searched configuration exceeds the budget"
                arms.append((f"BP-NAS {label}", found.bits, "gdrq", {**s, "budget": budget}))
            # the float model fine-tuned with the same loop and budget, no quantization: the fair fp32 reference
            t1 = time.perf_counter()
            ft = quantize_finetune(model, train_data, {n: LayerBits(32, 32) for n in macs}, qcfg, macs=macs, progress=False)
            rows.setdefault("fp32 + fine-tuning", []).append({"iou": evaluate_iou(ft.model, test_data), "bytes": fpath.stat().st_size, "bitops": fbits})
            print(f"seed {seed} fp32 + fine-tuning: IoU {rows['fp32 + fine-tuning'][-1]['iou']:.3f} ({time.perf_counter() - t1:.0f} s)", flush=True)
            for name, bits, method, search in arms:
                t1 = time.perf_counter()
                c = qcfg.model_copy(update={"method": method})
                q = quantize_finetune(model, train_data, bits, c, macs=macs, search=search, progress=False)  # type: ignore[arg-type]
                path = Path(tmp) / f"{name.replace(' ', '_').replace('(', '').replace(')', '').replace('=', '')}{seed}.npz"
                save_quantized(path, q)
                loaded = load_nn_model(path)
                bitops = total_bitops(macs, {n: (v.w_bits, v.a_bits) for n, v in q.bits.items()})  # type: ignore[union-attr]
                rec = {"iou": evaluate_iou(loaded, test_data), "bytes": path.stat().st_size, "bitops": bitops}
                if search is not None:
                    rec["budget"] = search["budget"]
                rows.setdefault(name, []).append(rec)
                print(f"seed {seed} {name}: IoU {rec['iou']:.3f}, {rec['bytes']:,} B, {bitops:.4g} BitOPs ({time.perf_counter() - t1:.0f} s)", flush=True)
            print(f"-- seed {seed} done at {time.perf_counter() - t_start:.0f} s", flush=True)
    print(f"\n== mean ± std over {args.seeds} seed(s); IoU pooled over {len(TEST)} test tiles; BitOPs per 512x512 tile ==")
    print(f"{'arm':24s} {'road IoU':>15s} {'file bytes':>12s} {'x fp32 size':>11s} {'BitOPs':>20s} {'budget':>10s}")
    fsize = np.mean([r["bytes"] for r in rows["fp32"]])
    for name, rs in rows.items():
        budget = f"{np.mean([r['budget'] for r in rs]):.4g}" if "budget" in rs[0] else ""
        print(f"{name:24s} {_ms([r['iou'] for r in rs]):>15s} {np.mean([r['bytes'] for r in rs]):12,.0f} {np.mean([r['bytes'] for r in rs]) / fsize:11.3f} "
              f"{_ms([r['bitops'] for r in rs], '.4g'):>20s} {budget:>10s}")  # fmt: skip
    over = [(n, r) for n, rs in rows.items() if n.startswith("BP-NAS") for r in rs if r["bitops"] > r["budget"]]
    print(f"BP-NAS configurations over budget: {len(over)} of {sum(len(rs) for n, rs in rows.items() if n.startswith('BP-NAS'))}")
    points: dict[str, list[tuple[float, float]]] = {}
    for name, rs in rows.items():
        family = "fp32" if name.startswith("fp32") else name.split(" ")[0]
        points.setdefault(family, []).append((float(np.mean([r["bitops"] for r in rs])), float(np.mean([r["iou"] for r in rs]))))
    Path(args.png).parent.mkdir(parents=True, exist_ok=True)
    _plot(Path(args.png), points)
    print(f"plot: {args.png}; total {time.perf_counter() - t_start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
