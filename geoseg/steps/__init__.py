"""Pipeline steps shipped with geoseg (thin adapters over :mod:`geoseg.road`).

Each class is registered under its ``type_name`` in the ``geoseg.steps`` entry-point group,
so it is usable in YAML (``type: road_network``) and from Python
(``steps.RoadNetwork(simplify_m=0.5)``).
"""

from geoseg.steps.centerlines import NonMaxSuppression, TensorVoting
from geoseg.steps.classify import GraphCut, MJCRClassify
from geoseg.steps.masks import BandProbability, ThresholdMask
from geoseg.steps.network import ConnectNetwork, RoadNetwork
from geoseg.steps.skeleton import Skeletonize

__all__ = [
    "BandProbability",
    "ConnectNetwork",
    "GraphCut",
    "MJCRClassify",
    "NonMaxSuppression",
    "RoadNetwork",
    "Skeletonize",
    "TensorVoting",
    "ThresholdMask",
]
