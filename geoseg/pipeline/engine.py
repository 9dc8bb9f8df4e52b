"""Running a chain of steps on one in-memory scene."""

from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import geopandas as gpd
import networkx as nx

from geoseg.errors import GeosegError, InputMismatchError
from geoseg.pipeline.step import Step, StepContext
from geoseg.raster import GeoInfo, Raster
from geoseg.vector import network_to_frames

__all__ = ["RunResult", "execute"]

log = logging.getLogger("geoseg.engine")


@dataclass
class RunResult:
    """Everything a pipeline produced for one scene.

    Attributes
    ----------
    layers : dict
        Named layers: numpy arrays for rasters, a ``networkx.MultiGraph`` (pixel space) for
        ``network``.
    geo : GeoInfo
        The scene's georeferencing (all layers share its grid).
    source : str
        The scene.
    warnings : list of str
        Warnings raised while processing it.
    timings : dict
        Seconds spent per step label.
    """

    layers: dict[str, Any]
    geo: GeoInfo
    source: str
    warnings: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def graph(self) -> nx.MultiGraph:
        """The road network in pixel space."""
        if "network" not in self.layers:
            raise InputMismatchError(f"{self.source}: this pipeline produced no network")
        return self.layers["network"]

    def frames(self) -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame]:
        """The network as (edges, nodes) GeoDataFrames in the scene CRS."""
        return network_to_frames(self.graph, self.geo)

    @property
    def lines(self) -> gpd.GeoDataFrame:
        """The network's lines in the scene CRS, with their attributes."""
        return self.frames()[0]

    @property
    def nodes(self) -> gpd.GeoDataFrame:
        """The network's nodes in the scene CRS."""
        return self.frames()[1]


def execute(steps: list[Step], raster: Raster) -> RunResult:
    """Run ``steps`` in order on a scene held in memory.

    Parameters
    ----------
    steps : list of Step
        Validated, bound steps.
    raster : Raster
        The scene (becomes the ``image`` layer).

    Returns
    -------
    RunResult
    """
    ctx = StepContext(geo=raster.geo, valid=raster.valid, source=raster.source, band_names=raster.band_names)
    layers: dict[str, Any] = {"image": raster.array}
    timings: dict[str, float] = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for step in steps:
            missing = [name for name in step.inputs() if name not in layers]
            if missing:
                raise InputMismatchError(f"{raster.source}: step {step.label} needs layer(s) {missing} that no earlier step gives")
            start = time.perf_counter()
            log.debug("%s: running %s", raster.source, step.label)
            try:
                wanted = [*step.inputs(), *(n for n in step.uses_if_present if n in layers)]
                produced = step.apply({name: layers[name] for name in wanted}, ctx)
            except GeosegError:
                raise
            except (ValueError, MemoryError) as exc:
                raise InputMismatchError(f"{raster.source}: step {step.label} failed: {exc}") from exc
            layers.update(produced)
            timings[step.label] = time.perf_counter() - start
    messages = [*ctx.warnings, *(str(w.message) for w in caught)]
    for msg in messages:
        log.warning("%s", msg)
    return RunResult(layers=layers, geo=raster.geo, source=raster.source, warnings=messages, timings=timings)
