"""APLS, graph and buffer scores of real SpaceNet-3 (Las Vegas) road networks, beside the
values of the reference APLS implementation.

Standalone benchmark of ``geoseg eval`` (:func:`geoseg.evaluate.evaluate_files`, the code a
user runs) on the developer data in ``shared/data`` (beside the repository; see
``shared/data/README.md``):

* ``img0``: the real SpaceNet-3 competition proposal ``proposals/sn3_sample_submission_albu.csv``
  (``ImageId,WKT_Pix`` in pixel coordinates of img0, placed by the image) against the
  SpaceNet ground truth ``centerlines/AOI_2_Vegas_img0.geojson``;
* ``img99 … img999``: OpenStreetMap roads (``vector_only/osm``) as the proposal against the
  SpaceNet ground truth (``vector_only/spacenetroads``), the pairs the APLS authors use.

For each pair: APLS and its halves, the reference implementation's APLS where
``shared/reference/apls_cosmiq.json`` has it (CosmiQ ``apls``, its defaults) and the
difference, TOPO F1, junction F1, and buffer quality (2 m). Sanity checks: the truth against
itself scores 1.0, and against itself without its longest edge less.

Run from anywhere: ``python3 benchmarks/bench_apls_spacenet.py``. Exits with a message (status
0) when the data folder is absent.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import geopandas as gpd
import networkx as nx
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
DATA = SHARED / "data" / "spacenet_vegas"
if str(REPO) not in sys.path:  # run as a script from a checkout, without installing geoseg
    sys.path.insert(0, str(REPO))

from geoseg.evaluate import evaluate_files  # noqa: E402
from geoseg.metrics import apls, graph_from_lines  # noqa: E402

CHIPS = ("img99", "img990", "img991", "img995", "img997", "img998", "img999")


def reference_values() -> dict[tuple[str, str], float]:
    """Reference APLS by (truth, proposal) path relative to shared/data."""
    path = SHARED / "reference" / "apls_cosmiq.json"
    if not path.is_file():
        return {}
    return {(p["truth"], p["proposal"]): p["apls"] for p in json.loads(path.read_text())["pairs"]}


def without_longest_edge(graph: nx.MultiGraph) -> nx.MultiGraph:
    """Copy of ``graph`` with its longest edge removed."""
    u, v, k, _ = max(graph.edges(keys=True, data=True), key=lambda e: e[3]["geometry"].length)
    pruned = graph.copy()
    pruned.remove_edge(u, v, k)
    return pruned


def score_pair(name: str, truth: Path, proposal: Path, reference: dict, image: Path | None = None) -> dict[str, float | str]:
    """The scores of one ground-truth / proposal pair."""
    t0 = time.perf_counter()
    e = evaluate_files(proposal, truth, image=image)
    seconds = time.perf_counter() - t0
    frame = gpd.read_file(truth)
    graph = graph_from_lines(frame.to_crs(frame.estimate_utm_crs()).geometry)
    key = (str(truth.relative_to(DATA.parent)), str(proposal.relative_to(DATA.parent)))
    ref = reference.get(key, float("nan"))
    return {
        "pair": name,
        "gt_km": e.truth_length_m / 1000,
        "prop_km": e.pred_length_m / 1000,
        "apls": e.apls,
        "reference": ref,
        "diff": e.apls - ref,
        "gt->prop": e.apls_scores.apls_gt_onto_prop,
        "prop->gt": e.apls_scores.apls_prop_onto_gt,
        "cp": f"{e.apls_scores.gt_control_points}/{e.apls_scores.prop_control_points}",
        "topo_f1": e.graph.topo_f1,
        "junc_f1": e.graph.junction_f1,
        "qual": e.quality,
        "sec": seconds,
        "self": apls(graph, graph).apls,
        "gt-1edge": apls(graph, without_longest_edge(graph)).apls,
    }


def main() -> int:
    """Score all pairs and print a table; return the exit status."""
    if not DATA.is_dir():
        print(f"skipped: SpaceNet developer data not found at {DATA}")
        return 0
    reference = reference_values()
    rows = [
        score_pair(
            "img0 albu",
            DATA / "centerlines" / "AOI_2_Vegas_img0.geojson",
            DATA / "proposals" / "sn3_sample_submission_albu.csv",
            reference,
            image=DATA / "images" / "RGB-PanSharpen_AOI_2_Vegas_img0.tif",
        )
    ]
    for chip in CHIPS:
        rows.append(score_pair(f"{chip} osm", DATA / "vector_only" / "spacenetroads" / f"AOI_2_Vegas_{chip}.geojson",
                               DATA / "vector_only" / "osm" / f"AOI_2_Vegas_{chip}.geojson", reference))
    table = pd.DataFrame(rows).set_index("pair")
    print("geoseg eval on SpaceNet Vegas pairs: APLS (50 m control points, 4 m snap), reference = CosmiQ apls "
          "(shared/reference/apls_cosmiq.json; NaN where the pair is kept aside), TOPO and junction F1, buffer quality (2 m)")
    with pd.option_context("display.width", 220, "display.max_columns", 30):
        print(table.round(3).to_string())
    known = table["reference"].notna()
    print(f"\n|APLS - reference| over {known.sum()} reference pairs: max {table.loc[known, 'diff'].abs().max():.3f}, "
          f"within 0.01 on {(table.loc[known, 'diff'].abs() <= 0.01).sum()}")
    ok = ((table["self"] - 1.0).abs() < 1e-9).all() and (table["gt-1edge"] < 1.0 - 1e-9).all()
    print("sanity checks:", "passed" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
